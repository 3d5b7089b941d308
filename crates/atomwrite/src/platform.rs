//! Low-level helpers over the platform layer, for the CLI and sibling crates (directory
//! publish, `cp`, `doctor`). Each names the syscall it makes; each returns `Ok(false)` /
//! `Ok(None)` where the platform or filesystem lacks the feature, so callers can fall back.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

pub use crate::dest::open_dir;
use crate::sys;

/// `renameat2(RENAME_EXCHANGE)`: atomically swaps `a` and `b` (both must exist). `Ok(false)`
/// when unsupported (non-Linux, or a filesystem that refuses the flag).
pub fn rename_exchange(dir_a: &OwnedFd, a: &Path, dir_b: &OwnedFd, b: &Path) -> io::Result<bool> {
    sys::host().rename_exchange(dir_a.as_fd(), a.as_os_str(), dir_b.as_fd(), b.as_os_str())
}

/// `renameat2(RENAME_NOREPLACE)`: `Ok(false)` when unsupported; `AlreadyExists` when `to` exists.
pub fn rename_noreplace(dir: &OwnedFd, from: &Path, to: &Path) -> io::Result<bool> {
    sys::host().rename_noreplace(dir.as_fd(), from.as_os_str(), to.as_os_str())
}

/// `ioctl(FICLONE)`: makes `dst` share `src`'s extents (O(1) copy on btrfs, xfs). `Ok(false)`
/// when unsupported.
pub fn reflink(src: &impl AsFd, dst: &impl AsFd) -> io::Result<bool> {
    sys::host().reflink(src.as_fd(), dst.as_fd())
}

/// `copy_file_range(2)` of up to `len` bytes at the current offsets; `Ok(None)` if unsupported.
pub fn copy_range(src: &impl AsFd, dst: &impl AsFd, len: usize) -> io::Result<Option<usize>> {
    sys::host().copy_range(src.as_fd(), dst.as_fd(), len)
}

/// `fsync(2)` of a file (`F_FULLFSYNC` on Apple platforms).
pub fn sync_file(fd: &impl AsFd) -> io::Result<()> {
    sys::host().sync_file(fd.as_fd())
}

/// `fsync(2)` of a directory.
pub fn sync_dir(fd: &impl AsFd) -> io::Result<()> {
    sys::sync_dir(fd.as_fd())
}

/// `syncfs(2)` of the filesystem holding `fd`, where it reports every error: Linux 5.17 and
/// later (earlier kernels drop writeback or `->sync_fs` errors). `Ok(false)` without a syscall
/// elsewhere, and then nothing has been flushed: the caller must [`sync_file`] each file.
pub fn sync_filesystem(fd: &impl AsFd) -> io::Result<bool> {
    sys::host().sync_filesystem(fd.as_fd())
}

/// Filesystem type (`statfs.f_type`, 0 where unknown) and `NAME_MAX` of the filesystem holding `dir`.
pub fn fs_info(dir: &impl AsFd) -> io::Result<(u64, usize)> {
    let i = sys::host().fs_info(dir.as_fd())?;
    Ok((i.fs_type, i.name_max))
}

/// Whether `O_TMPFILE` works in `dir` (creates and closes an anonymous inode: leaves nothing).
pub fn probe_tmpfile(dir: &impl AsFd) -> io::Result<bool> {
    Ok(sys::host().open_anonymous(dir.as_fd(), 0o600)?.is_some())
}

/// The process umask, read without changing it where the platform allows.
pub fn umask() -> u32 {
    sys::host().umask()
}
