//! Linux: `O_TMPFILE` + `linkat`, `renameat2` flags, `fallocate`, `syncfs`.
//! Each wrapper names the syscall it makes; `unsafe` is not needed here (rustix).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use rustix::fs::{self, AtFlags, FallocateFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::FsInfo;
use crate::error::errno;

/// `statfs.f_type` of btrfs (`BTRFS_SUPER_MAGIC`).
pub(crate) const BTRFS_MAGIC: u64 = 0x9123_683e;

/// `fstatfs(2)`: filesystem type and `f_namelen`.
pub(crate) fn fs_info(dir: BorrowedFd<'_>) -> io::Result<FsInfo> {
    let s = fs::fstatfs(dir).map_err(errno)?;
    let name_max = if s.f_namelen > 0 {
        s.f_namelen as usize
    } else {
        255
    };
    Ok(FsInfo {
        fs_type: s.f_type as u64,
        name_max,
    })
}

/// Whether `fs_type` needs a data sync after `linkat` of an `O_TMPFILE` inode: on btrfs an
/// `fsync` of an unlinked inode does not make its data durable once it is linked
/// (atomic-write-file issue #6).
pub(crate) fn needs_sync_after_link(fs_type: u64) -> bool {
    fs_type == BTRFS_MAGIC
}

fn proc_fd_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| std::path::Path::new("/proc/self/fd").is_dir())
}

/// `openat(dir, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, mode)`: an anonymous inode in `dir` that
/// vanishes if the process dies before it is linked. `Ok(None)` when the filesystem (or the
/// kernel, or a missing `/proc`) does not support it; the caller falls back to a named temp.
pub(crate) fn open_anonymous(dir: BorrowedFd<'_>, mode: u32) -> io::Result<Option<OwnedFd>> {
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
        // EOPNOTSUPP: the filesystem lacks ->tmpfile; EISDIR/EINVAL: kernel without O_TMPFILE;
        // ENOENT: some FUSE filesystems. All mean "use the portable path".
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOENT | Errno::NOSYS) => {
            Ok(None)
        }
        Err(e) => Err(errno(e)),
    }
}

/// `linkat(AT_FDCWD, "/proc/self/fd/N", dir, name, AT_SYMLINK_FOLLOW)`: gives an `O_TMPFILE`
/// inode a name. Fails with `EEXIST` if `name` exists, which makes it the create-only publish.
pub(crate) fn link_anonymous(
    fd: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
) -> io::Result<()> {
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    fs::linkat(
        fs::CWD,
        proc_path.as_str(),
        dir,
        name,
        AtFlags::SYMLINK_FOLLOW,
    )
    .map_err(errno)
}

/// `renameat2(RENAME_NOREPLACE)`. `Ok(false)` when the filesystem does not support the flag
/// (`EINVAL` on ZFS and some FUSE filesystems, `ENOSYS` on old kernels).
pub(crate) fn rename_noreplace(
    dir: BorrowedFd<'_>,
    from: &std::ffi::OsStr,
    to: &std::ffi::OsStr,
) -> io::Result<bool> {
    match fs::renameat_with(dir, from, dir, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => Ok(false),
        Err(e) => Err(errno(e)),
    }
}

/// `renameat2(RENAME_EXCHANGE)`: swaps two names atomically. `Ok(false)` when unsupported.
pub(crate) fn rename_exchange(
    dir_a: BorrowedFd<'_>,
    a: &std::ffi::OsStr,
    dir_b: BorrowedFd<'_>,
    b: &std::ffi::OsStr,
) -> io::Result<bool> {
    match fs::renameat_with(dir_a, a, dir_b, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(true),
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => Ok(false),
        Err(e) => Err(errno(e)),
    }
}

/// `fsync(2)` of a file: its data and the metadata needed to read it back.
pub(crate) fn sync_file(fd: BorrowedFd<'_>) -> io::Result<()> {
    fs::fsync(fd).map_err(errno)
}

/// `fdatasync(2)`.
pub(crate) fn sync_data(fd: BorrowedFd<'_>) -> io::Result<()> {
    fs::fdatasync(fd).map_err(errno)
}

/// `fsync(2)` of a directory: makes its entries (creations, renames, unlinks) durable.
pub(crate) fn sync_dir(fd: BorrowedFd<'_>) -> io::Result<()> {
    fs::fsync(fd).map_err(errno)
}

/// `syncfs(2)`: flushes every dirty inode of the filesystem holding `fd`, with one barrier.
pub(crate) fn sync_filesystem(fd: BorrowedFd<'_>) -> io::Result<()> {
    fs::syncfs(fd).map_err(errno)
}

/// `fallocate(FALLOC_FL_KEEP_SIZE)`: reserve space without changing the size. Filesystems
/// without it (`EOPNOTSUPP`) are simply not preallocated; `ENOSPC` is reported.
pub(crate) fn preallocate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    match fs::fallocate(fd, FallocateFlags::KEEP_SIZE, 0, len) {
        Ok(()) | Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => Ok(()),
        Err(e) => Err(errno(e)),
    }
}

/// The process umask, read from `/proc/self/status` (Linux 4.7+) without changing it; falls back
/// to the portable set-and-restore.
pub(crate) fn umask() -> u32 {
    if let Ok(s) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = s.lines().find(|l| l.starts_with("Umask:"))
        && let Ok(m) = u32::from_str_radix(line["Umask:".len()..].trim(), 8)
    {
        return m;
    }
    super_umask_swap()
}

fn super_umask_swap() -> u32 {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let old = rustix::process::umask(Mode::from_raw_mode(0o022));
    rustix::process::umask(old);
    old.as_raw_mode()
}

/// `ioctl(FICLONE)`: share the source's extents (btrfs, xfs with reflink). `Ok(false)` when
/// unsupported by the filesystem or across filesystems.
pub(crate) fn reflink(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<bool> {
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
pub(crate) fn copy_range(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    len: usize,
) -> io::Result<Option<usize>> {
    match fs::copy_file_range(src, None, dst, None, len) {
        Ok(n) => Ok(Some(n)),
        Err(Errno::XDEV | Errno::INVAL | Errno::OPNOTSUPP | Errno::NOSYS | Errno::PERM) => Ok(None),
        Err(e) => Err(errno(e)),
    }
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
