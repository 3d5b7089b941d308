//! Linux: the fast paths. `O_TMPFILE` + `linkat`, `renameat2` flags, `fallocate`, `FICLONE`,
//! `copy_file_range`, `syncfs` (on kernels where it reports errors), `fdatasync`, the umask
//! from `/proc`, and the filesystem type from `fstatfs`.
//!
//! [`Linux`] implements the portable [`Backend`] trait and overrides only these; `fsync` of a
//! file or a directory is the portable code in `unix.rs`. Each override names the syscall it
//! makes; `unsafe` is not needed here (rustix).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use rustix::fs::{self, AtFlags, FallocateFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::unix::{Backend, Portable};
use super::{Feature, FsInfo, SyncfsSupport};
use crate::error::errno;

/// `statfs.f_type` of btrfs (`BTRFS_SUPER_MAGIC`).
pub(crate) const BTRFS_MAGIC: u64 = 0x9123_683e;

/// See [`super::exact_names`].
pub(crate) fn exact_names(dir: BorrowedFd<'_>, fs_type: u64) -> bool {
    const EXT4: u64 = 0xef53;
    /// `FS_CASEFOLD_FL` (`linux/fs.h`).
    const CASEFOLD: u32 = 0x4000_0000;
    // Casefolding is per directory (`chattr +F`): ask this one.
    fs_type == EXT4 && fs::ioctl_getflags(dir).is_ok_and(|f| f.bits() & CASEFOLD == 0)
}

/// See [`super::list_names`]. One `getdents64` buffer of 256 KiB: a directory of one block
/// (up to 64 KiB) is read in one call, under the directory's lock, so the conversion of a
/// one-block directory to a hashed one (which reorders it) cannot fall between two calls; a
/// hashed directory is read in hash order, in which an entry never moves.
pub(crate) fn list_names(
    dir: BorrowedFd<'_>,
    max: usize,
    each: &mut dyn FnMut(&[u8]),
) -> io::Result<bool> {
    use std::mem::MaybeUninit;
    let fd = fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 256 << 10];
    let mut it = fs::RawDir::new(&fd, &mut buf);
    let mut n = 0;
    while let Some(entry) = it.next() {
        let entry = entry.map_err(errno)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if n == max {
            return Ok(false);
        }
        n += 1;
        each(name);
    }
    Ok(true)
}

/// The Linux backend (see the module docs).
#[derive(Debug)]
pub(crate) struct Linux;

fn proc_fd_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| std::path::Path::new("/proc/self/fd").is_dir())
}

/// The running kernel's `syncfs` verdict, read once (`uname(2)`).
fn running_kernel_syncfs() -> &'static SyncfsSupport {
    static V: OnceLock<SyncfsSupport> = OnceLock::new();
    V.get_or_init(|| {
        let u = rustix::system::uname();
        super::syncfs_support(&u.release().to_string_lossy())
    })
}

impl Backend for Linux {
    fn name(&self) -> &'static str {
        "linux"
    }

    /// `fstatfs(2)`: filesystem type and `f_namelen`; `fstat(2)`: the device.
    fn fs_info(&self, dir: BorrowedFd<'_>) -> io::Result<FsInfo> {
        let s = fs::fstatfs(dir).map_err(errno)?;
        let dev = fs::fstat(dir).map_err(errno)?.st_dev;
        let name_max = if s.f_namelen > 0 {
            s.f_namelen as usize
        } else {
            255
        };
        Ok(FsInfo {
            fs_type: s.f_type as u64,
            name_max,
            dev,
        })
    }

    /// On btrfs an `fsync` of an unlinked inode does not make its data durable once it is
    /// linked (atomic-write-file issue #6).
    fn needs_sync_after_link(&self, fs_type: u64) -> bool {
        fs_type == BTRFS_MAGIC
    }

    fn known_refused(&self, fs_type: u64, feature: Feature) -> bool {
        super::known_refused(fs_type, feature)
    }

    fn remember_refused(&self, fs_type: u64, feature: Feature) {
        super::remember_refused(fs_type, feature)
    }

    /// `openat(dir, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, mode)`: an anonymous inode in `dir`
    /// that vanishes if the process dies before it is linked. `Ok(None)` when the filesystem
    /// (or the kernel, or a missing `/proc`) does not support it.
    fn open_anonymous(&self, dir: BorrowedFd<'_>, mode: u32) -> io::Result<Option<OwnedFd>> {
        if !proc_fd_available() {
            return Ok(None);
        }
        match fs::openat(
            dir,
            ".",
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        ) {
            Ok(fd) => Ok(Some(fd)),
            // EOPNOTSUPP: the filesystem lacks ->tmpfile; EISDIR/EINVAL: kernel without
            // O_TMPFILE; ENOENT: some FUSE filesystems. All mean "use the portable path".
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOENT | Errno::NOSYS) => {
                Ok(None)
            }
            Err(e) => Err(errno(e)),
        }
    }

    /// `linkat(fd, "", dir, name, AT_EMPTY_PATH)`: gives an `O_TMPFILE` inode a name. Fails with
    /// `EEXIST` if `name` exists, which makes it the create-only publish. A kernel before 6.10
    /// allows `AT_EMPTY_PATH` only with `CAP_DAC_READ_SEARCH` (`ENOENT` otherwise): then, and
    /// for the rest of the process once that fallback worked, the same link through
    /// `linkat(AT_FDCWD, "/proc/self/fd/N", dir, name, AT_SYMLINK_FOLLOW)`, whose walk of
    /// `/proc` cost a quarter of each link (`perf`, 10,000 files on ext4).
    fn link_anonymous(
        &self,
        fd: BorrowedFd<'_>,
        dir: BorrowedFd<'_>,
        name: &OsStr,
    ) -> io::Result<()> {
        static EMPTY_PATH_REFUSED: std::sync::atomic::AtomicBool =
            std::sync::atomic::AtomicBool::new(false);
        use std::sync::atomic::Ordering::Relaxed;
        if !EMPTY_PATH_REFUSED.load(Relaxed) {
            match fs::linkat(fd, "", dir, name, AtFlags::EMPTY_PATH) {
                Err(Errno::NOENT) => {}
                r => return r.map_err(errno),
            }
        }
        let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        fs::linkat(
            fs::CWD,
            proc_path.as_str(),
            dir,
            name,
            AtFlags::SYMLINK_FOLLOW,
        )
        .map_err(errno)?;
        // ENOENT came from the missing capability, not from `dir` (the same link just worked).
        EMPTY_PATH_REFUSED.store(true, Relaxed);
        Ok(())
    }

    /// `renameat2(RENAME_NOREPLACE)`. `Ok(false)` when the filesystem does not support the
    /// flag (`EINVAL` on ZFS and some FUSE filesystems, `ENOSYS` on old kernels).
    fn rename_noreplace(&self, dir: BorrowedFd<'_>, from: &OsStr, to: &OsStr) -> io::Result<bool> {
        match fs::renameat_with(dir, from, dir, to, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(true),
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => Ok(false),
            Err(e) => Err(errno(e)),
        }
    }

    /// `renameat2(RENAME_EXCHANGE)`: swaps two names atomically. `Ok(false)` when unsupported.
    fn rename_exchange(
        &self,
        dir_a: BorrowedFd<'_>,
        a: &OsStr,
        dir_b: BorrowedFd<'_>,
        b: &OsStr,
    ) -> io::Result<bool> {
        match fs::renameat_with(dir_a, a, dir_b, b, RenameFlags::EXCHANGE) {
            Ok(()) => Ok(true),
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => Ok(false),
            Err(e) => Err(errno(e)),
        }
    }

    /// `fdatasync(2)`.
    fn sync_data(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        fs::fdatasync(fd).map_err(errno)
    }

    /// `syncfs(2)`: flushes every dirty inode of the filesystem holding `fd`, with one
    /// barrier, but only on kernels where it reports the errors it meets
    /// ([`syncfs_support`](super::syncfs_support)); elsewhere `Ok(false)` without a syscall,
    /// so the caller fsyncs each file.
    fn sync_filesystem(&self, fd: BorrowedFd<'_>) -> io::Result<bool> {
        if !running_kernel_syncfs().available {
            return Ok(false);
        }
        fs::syncfs(fd).map_err(errno)?;
        Ok(true)
    }

    fn sync_filesystem_support(&self) -> SyncfsSupport {
        running_kernel_syncfs().clone()
    }

    /// `fallocate(FALLOC_FL_KEEP_SIZE)`: reserve space without changing the size. Filesystems
    /// without it (`EOPNOTSUPP`) are simply not preallocated; `ENOSPC` is reported.
    fn preallocate(&self, fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        match fs::fallocate(fd, FallocateFlags::KEEP_SIZE, 0, len) {
            Ok(()) | Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => Ok(()),
            Err(e) => Err(errno(e)),
        }
    }

    /// `posix_fadvise(POSIX_FADV_DONTNEED)`: starts asynchronous writeback of the range
    /// (`WB_SYNC_NONE`) and then drops only the pages of the range that are already clean, so
    /// the pages just written, dirty or under writeback, stay cached. (`sync_file_range` would
    /// say it more directly, but rustix does not offer it and this crate has no `unsafe`.)
    /// Errors are ignored: it is a hint, and a real I/O error surfaces at the commit's `fsync`.
    fn start_writeback(&self, fd: BorrowedFd<'_>, offset: u64, len: u64) {
        let _ = fs::fadvise(
            fd,
            offset,
            std::num::NonZeroU64::new(len),
            fs::Advice::DontNeed,
        );
    }

    /// The process umask, read from `/proc/self/status` (Linux 4.7+) without changing it;
    /// falls back to the portable set-and-restore.
    fn umask(&self) -> u32 {
        if let Ok(s) = std::fs::read_to_string("/proc/self/status")
            && let Some(m) = parse_status_umask(&s)
        {
            return m;
        }
        Portable.umask()
    }

    /// `ioctl(FICLONE)`: share the source's extents (btrfs, xfs with reflink). `Ok(false)`
    /// when unsupported by the filesystem or across filesystems.
    fn reflink(&self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<bool> {
        match fs::ioctl_ficlone(dst, src) {
            Ok(()) => Ok(true),
            Err(
                Errno::OPNOTSUPP
                | Errno::XDEV
                | Errno::INVAL
                | Errno::NOTTY
                | Errno::PERM
                | Errno::NOSYS,
            ) => Ok(false),
            Err(e) => Err(errno(e)),
        }
    }

    /// `copy_file_range(2)` of up to `len` bytes from the current offsets. `Ok(None)` when the
    /// kernel or filesystem pair does not support it.
    fn copy_range(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        len: usize,
    ) -> io::Result<Option<usize>> {
        match fs::copy_file_range(src, None, dst, None, len) {
            Ok(n) => Ok(Some(n)),
            Err(Errno::XDEV | Errno::INVAL | Errno::OPNOTSUPP | Errno::NOSYS | Errno::PERM) => {
                Ok(None)
            }
            Err(e) => Err(errno(e)),
        }
    }
}

/// The `Umask:` line of `/proc/self/status`, in octal.
fn parse_status_umask(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
}

/// `openat2(at, dir, O_DIRECTORY, RESOLVE_NO_SYMLINKS)`: opens the directory `dir` (relative to
/// `at`, or absolute) in one syscall when no component is a symlink. `None` when one is, when
/// it is missing, or when the kernel lacks `openat2` (before 5.6, or filtered by seccomp): the
/// caller then walks the path itself.
pub(crate) fn open_dir_no_symlinks(at: BorrowedFd<'_>, dir: &std::path::Path) -> Option<OwnedFd> {
    fs::openat2(
        at,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        fs::ResolveFlags::NO_SYMLINKS,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn only_filesystems_known_to_compare_names_exactly_may_be_listed() {
        let d = tempfile::tempdir().unwrap();
        let dir = fs::open(d.path(), OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        let fd = dir.as_fd();
        // Case-insensitive, unknown, or (btrfs, tmpfs) a replaced name moves to the end of
        // the listing order: vfat, exfat, ntfs3, xfs (ascii-ci), NFS, FUSE, btrfs, tmpfs.
        for magic in [
            0x4d44,
            0x2011_bab0,
            0x7366_746e,
            0x5846_5342,
            0x6969,
            0x6573_5546,
            BTRFS_MAGIC,
            0x0102_1994,
        ] {
            assert!(!exact_names(fd, magic), "{magic:#x}");
        }
        // ext4 is asked about this directory: an ordinary one is not casefolded.
        if Linux.fs_info(fd).unwrap().fs_type == 0xef53 {
            assert!(exact_names(fd, 0xef53));
        }
    }

    #[test]
    fn a_listing_stops_past_its_bound_and_skips_the_dot_entries() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..10 {
            std::fs::write(d.path().join(format!("n{i}")), b"").unwrap();
        }
        let dir = fs::open(d.path(), OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        let mut seen = Vec::new();
        assert!(list_names(dir.as_fd(), 10, &mut |n| seen.push(n.to_vec())).unwrap());
        seen.sort();
        let want: Vec<Vec<u8>> = (0..10).map(|i| format!("n{i}").into_bytes()).collect();
        let mut want = want;
        want.sort();
        assert_eq!(seen, want);
        assert!(!list_names(dir.as_fd(), 9, &mut |_| {}).unwrap());
    }

    #[test]
    fn fast_and_portable_agree_on_what_both_can_answer() {
        let d = tempfile::tempdir().unwrap();
        let dir = fs::open(d.path(), OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        // fstatfs (Linux) and fstatvfs (portable) must report the same name limit.
        let fast = Linux.fs_info(dir.as_fd()).unwrap();
        let portable = Portable.fs_info(dir.as_fd()).unwrap();
        assert_eq!(fast.name_max, portable.name_max);
        assert_ne!(fast.fs_type, 0);
        assert_eq!(portable.fs_type, 0);
        // /proc and the set-and-restore read the same umask, and the latter restores it.
        let before = Linux.umask();
        assert_eq!(Portable.umask(), before);
        assert_eq!(Linux.umask(), before);
    }

    #[test]
    fn umask_line_parses() {
        assert_eq!(
            parse_status_umask("Name:\tx\nUmask:\t0027\nState:\tR\n"),
            Some(0o027)
        );
        assert_eq!(parse_status_umask("Name:\tx\n"), None);
    }
}
