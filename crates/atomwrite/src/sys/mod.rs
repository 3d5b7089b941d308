//! The only place that chooses an operating system. The rest of the crate never sees a `cfg`:
//! it asks for a backend ([`backend`], [`host`]) and calls the [`Backend`] methods on it.
//!
//! Two backends, both compiled on Linux:
//! - `unix.rs`, [`Portable`]: the portable POSIX path (named temp, `renameat`, `linkat` +
//!   `unlinkat` for create-only, `fsync` of every file, `F_FULLFSYNC` on Apple). It is the
//!   host backend on macOS and the BSDs, and what Linux runs under `Options::portable(true)` or
//!   `ATOMWRITE_PORTABLE=1`, so the test suites exercise it on Linux.
//! - `linux.rs`, `Linux`: implements the same trait and overrides only the fast paths
//!   (`O_TMPFILE`, `renameat2`, `fallocate`, `FICLONE`, `copy_file_range`, `syncfs`,
//!   `fdatasync`, the umask from `/proc`, `fstatfs`). A filesystem that refuses a fast path
//!   gets the portable code for that step.
//!
//! Facts about a filesystem ([`fs_info`]: type and `NAME_MAX`) come from the host backend for
//! both, since they choose no code path; the portable `fstatvfs` version is unit-tested against
//! Linux's `fstatfs`. Directory `fsync` ([`sync_dir`]) is the same code on both.
//!
//! Windows is not supported yet: it would be one more backend here.

#[cfg(target_os = "linux")]
mod linux;
mod unix;

use std::collections::HashSet;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Mutex;

pub(crate) use unix::{Backend, Portable};

/// A backend, chosen per [`AtomicFile`](crate::AtomicFile).
pub(crate) type Sys = &'static dyn Backend;

/// The best backend for this platform.
#[cfg(target_os = "linux")]
pub(crate) fn host() -> Sys {
    &linux::Linux
}

/// The best backend for this platform.
#[cfg(not(target_os = "linux"))]
pub(crate) fn host() -> Sys {
    &Portable
}

/// The portable backend when `portable` is set, the host's otherwise.
pub(crate) fn backend(portable: bool) -> Sys {
    if portable { &Portable } else { host() }
}

#[cfg(not(unix))]
compile_error!(
    "atomwrite supports Unix only for now; Windows support would be a new backend in src/sys/"
);

/// A fast path that a filesystem type may refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Feature {
    Tmpfile,
    RenameNoreplace,
    /// `ioctl(FICLONE)` between two filesystems (remembered per pair, see [`pair_refused`]).
    Reflink,
    /// `copy_file_range(2)` between two filesystems (remembered per pair).
    CopyRange,
}

static REFUSED: Mutex<Option<HashSet<(u64, Feature)>>> = Mutex::new(None);

/// Remembers that filesystems of type `fs_type` refused `feature` (recognised by errno), so the
/// next write there goes straight to the portable path.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn remember_refused(fs_type: u64, feature: Feature) {
    let mut g = REFUSED.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(HashSet::new)
        .insert((fs_type, feature));
}

/// Whether filesystems of type `fs_type` are known to refuse `feature`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn known_refused(fs_type: u64, feature: Feature) -> bool {
    let g = REFUSED.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref().is_some_and(|s| s.contains(&(fs_type, feature)))
}

/// Source and destination filesystems (`st_dev` of each) whose copies refused a fast path.
static REFUSED_PAIRS: Mutex<Option<HashSet<(u64, u64, Feature)>>> = Mutex::new(None);

/// Remembers that copies from the filesystem `src_dev` to `dst_dev` refused `feature`
/// (recognised by errno), so the next copy between them goes straight to the next method:
/// one refused `FICLONE` per pair and process, not one per file.
pub(crate) fn remember_pair_refused(src_dev: u64, dst_dev: u64, feature: Feature) {
    let mut g = REFUSED_PAIRS.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(HashSet::new)
        .insert((src_dev, dst_dev, feature));
}

/// Whether copies from `src_dev` to `dst_dev` are known to refuse `feature`.
pub(crate) fn pair_refused(src_dev: u64, dst_dev: u64, feature: Feature) -> bool {
    let g = REFUSED_PAIRS.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref()
        .is_some_and(|s| s.contains(&(src_dev, dst_dev, feature)))
}

/// What the filesystem holding a directory can do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FsInfo {
    /// `statfs.f_type` (0 where the platform does not report one).
    pub fs_type: u64,
    /// The longest file name, in bytes (`f_namelen` / `f_namemax`).
    pub name_max: usize,
    /// `st_dev` of the directory: which filesystem it is (keys per-pair fast-path memory).
    pub dev: u64,
}

/// Filesystem type, name limit and device of the filesystem holding `dir` (host backend).
pub(crate) fn fs_info(dir: BorrowedFd<'_>) -> io::Result<FsInfo> {
    host().fs_info(dir)
}

/// Whether a listing of directory `dir` (on a filesystem of type `fs_type`) that lacks a name
/// proves that no entry answered to it while it was read: names compare byte for byte, and
/// an entry never moves in the listing order, not even when a file is renamed over it (a
/// rename-over rewrites the entry in place). True only for ext2/3/4 directories that are not
/// casefolded (`FS_CASEFOLD_FL`). False elsewhere: case-insensitive filesystems (vfat, exfat,
/// ntfs, hfs, xfs's `ascii-ci`, casefolded directories), btrfs and tmpfs (a name replaced by a
/// rename gets a new, later position, past the end a listing in progress reads to), network
/// and FUSE filesystems, other systems: the caller then looks every name up.
pub(crate) fn exact_names(dir: BorrowedFd<'_>, fs_type: u64) -> bool {
    #[cfg(target_os = "linux")]
    {
        linux::exact_names(dir, fs_type)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (dir, fs_type);
        false
    }
}

/// Hands each name of directory `dir` (not `.` and `..`) to `each`, read through a new open
/// file description (the caller's offset is untouched). `Ok(false)`: it stopped after `max`
/// names, more were there. Linux only (where [`exact_names`] may be true); elsewhere an error.
pub(crate) fn list_names(
    dir: BorrowedFd<'_>,
    max: usize,
    each: &mut dyn FnMut(&[u8]),
) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        linux::list_names(dir, max, each)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (dir, max, each);
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Grows the process's descriptor table at once to hold descriptor `n` (an `F_DUPFD_CLOEXEC`
/// at or above `n`, closed again), for a batch about to hold that many open. Linux grows the
/// table by doubling, and while another thread shares it each growth waits for an RCU grace
/// period (`synchronize_rcu`, milliseconds here): a batch of 1,000 files paid four of them
/// (128, 256, 512, 1,024), ~15 ms; now one. Best effort: nothing happens on any error (a low
/// descriptor limit, no `/`).
pub(crate) fn reserve_descriptors(n: usize) {
    let Ok(min) = i32::try_from(n) else {
        return;
    };
    let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC;
    #[cfg(not(target_os = "linux"))]
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC;
    if let Ok(fd) = rustix::fs::open("/", flags, rustix::fs::Mode::empty()) {
        drop(rustix::io::fcntl_dupfd_cloexec(&fd, min));
    }
}

/// `fsync(2)` of a directory (the same code on every backend).
pub(crate) fn sync_dir(fd: BorrowedFd<'_>) -> io::Result<()> {
    host().sync_dir(fd)
}

/// Opens the directory `dir` (relative to `at`, or absolute) in one `openat2(RESOLVE_NO_SYMLINKS)`
/// on Linux; `None` where a component is a symlink, the path is missing, or the kernel lacks
/// `openat2` (and always on other systems): the caller then walks the path itself.
pub(crate) fn open_dir_no_symlinks(
    at: BorrowedFd<'_>,
    dir: &std::path::Path,
) -> Option<std::os::fd::OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        linux::open_dir_no_symlinks(at, dir)
    }
    #[cfg(not(target_os = "linux"))]
    {
        unix::open_dir_no_symlinks(at, dir)
    }
}

/// `renameat2(RENAME_EXCHANGE)` through the host backend: `Ok(false)` where unsupported.
pub(crate) fn rename_exchange(
    dir_a: BorrowedFd<'_>,
    a: &std::ffi::OsStr,
    dir_b: BorrowedFd<'_>,
    b: &std::ffi::OsStr,
) -> io::Result<bool> {
    host().rename_exchange(dir_a, a, dir_b, b)
}

/// Whether a filesystem-wide barrier (`syncfs`) may stand in for an `fsync` of every file, and
/// why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncfsSupport {
    /// `syncfs` is used: it reports writeback and `->sync_fs` errors on this kernel.
    pub available: bool,
    /// The kernel release the verdict was made from (`uname -r`), where there is one.
    pub kernel: Option<String>,
    /// One sentence: why.
    pub reason: String,
}

/// The first Linux release whose `syncfs(2)` reports both kinds of error: writeback errors of
/// any inode (per-superblock `errseq`, Linux 5.8, commit 735e4ae5ba28) and errors returned by
/// the filesystem's `->sync_fs` (dropped until commit 5679897eb104 "vfs: make sync_filesystem
/// return errors from ->sync_fs", merged for Linux 5.17-rc3). Stable 5.15.y/5.16.y kernels
/// received partial backports that a version string cannot tell apart, so they count as old.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) const SYNCFS_HONEST_SINCE: (u32, u32) = (5, 17);

/// `major.minor` of a Linux release string (`"6.8.0-45-generic"` → `(6, 8)`), `None` when it
/// does not start with two dot-separated numbers.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor_part = parts.next()?;
    let end = minor_part
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(minor_part.len());
    let minor = minor_part[..end].parse().ok()?;
    Some((major, minor))
}

/// The `syncfs` verdict for a Linux kernel release string: usable only from
/// [`SYNCFS_HONEST_SINCE`] on; an older or unparseable release gets per-file `fsync`, since an
/// `fsync` error must never be reported as success.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn syncfs_support(release: &str) -> SyncfsSupport {
    let (available, reason) = match parse_kernel_version(release) {
        None => (
            false,
            format!(
                "kernel release {release:?} is not understood, so syncfs is not trusted to \
                 report errors; every file is fsynced"
            ),
        ),
        Some(v) if v < (5, 8) => (
            false,
            format!(
                "Linux {}.{} < 5.8: syncfs does not report writeback errors; every file is fsynced",
                v.0, v.1
            ),
        ),
        Some(v) if v < SYNCFS_HONEST_SINCE => (
            false,
            format!(
                "Linux {}.{} < {}.{}: syncfs drops errors from the filesystem's ->sync_fs; \
                 every file is fsynced",
                v.0, v.1, SYNCFS_HONEST_SINCE.0, SYNCFS_HONEST_SINCE.1
            ),
        ),
        Some(v) => (
            true,
            format!(
                "Linux {}.{} >= {}.{}: syncfs reports writeback and ->sync_fs errors",
                v.0, v.1, SYNCFS_HONEST_SINCE.0, SYNCFS_HONEST_SINCE.1
            ),
        ),
    };
    SyncfsSupport {
        available,
        kernel: Some(release.to_string()),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_kernel_version("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(parse_kernel_version("5.15.0"), Some((5, 15)));
        assert_eq!(parse_kernel_version("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(parse_kernel_version("6.1-rc3"), Some((6, 1)));
        assert_eq!(parse_kernel_version("4.19.0+"), Some((4, 19)));
        for garbage in ["", "six", "6", "6.", ".5", "6.x.1", "-1.2", "99999999999.1"] {
            assert_eq!(parse_kernel_version(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn syncfs_is_trusted_only_where_it_reports_every_error() {
        let cases = [
            ("4.19.0", false),
            ("5.4.0-150-generic", false),
            ("5.7.19", false),
            ("5.8.0", false),
            ("5.15.0", false),
            ("5.16.0", false),
            ("5.16.20-arch1", false),
            ("5.17.0", true),
            ("6.18.44-fc-v782", true),
            ("10.0.0", true),
            ("garbage", false),
            ("", false),
        ];
        for (release, want) in cases {
            let s = syncfs_support(release);
            assert_eq!(s.available, want, "{release}: {s:?}");
            assert_eq!(s.kernel.as_deref(), Some(release));
            assert!(!s.reason.is_empty());
        }
        assert!(syncfs_support("5.4.0").reason.contains("writeback"));
        assert!(syncfs_support("5.10.0").reason.contains("->sync_fs"));
        assert!(syncfs_support("nonsense").reason.contains("not understood"));
    }

    #[test]
    fn portable_backend_is_what_portable_asks_for() {
        assert_eq!(backend(true).name(), "portable");
        assert_eq!(backend(false).name(), host().name());
        // The portable path has no filesystem-wide barrier: its callers must fsync every file.
        let d = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(d.path().join("x")).unwrap();
        use std::os::fd::AsFd;
        assert!(!Portable.sync_filesystem(f.as_fd()).unwrap());
        assert!(!Portable.sync_filesystem_support().available);
    }
}
