//! Crate-private helpers over the platform layer for the directory-tree copy (`tree.rs`). Each
//! names the syscall it makes; each returns `Ok(false)` / `Ok(None)` where the platform or
//! filesystem lacks the feature, so callers can fall back.

use std::io;
use std::os::fd::AsFd;

use crate::sys;

/// `ioctl(FICLONE)`: makes `dst` share `src`'s extents (O(1) copy on btrfs, xfs). `Ok(false)`
/// when unsupported.
pub(crate) fn reflink(src: &impl AsFd, dst: &impl AsFd) -> io::Result<bool> {
    sys::host().reflink(src.as_fd(), dst.as_fd())
}

/// `copy_file_range(2)` of up to `len` bytes at the current offsets; `Ok(None)` if unsupported.
pub(crate) fn copy_range(
    src: &impl AsFd,
    dst: &impl AsFd,
    len: usize,
) -> io::Result<Option<usize>> {
    sys::host().copy_range(src.as_fd(), dst.as_fd(), len)
}

/// `fsync(2)` of a file (`F_FULLFSYNC` on Apple platforms).
pub(crate) fn sync_file(fd: &impl AsFd) -> io::Result<()> {
    sys::host().sync_file(fd.as_fd())
}

/// `fsync(2)` of a directory.
pub(crate) fn sync_dir(fd: &impl AsFd) -> io::Result<()> {
    sys::sync_dir(fd.as_fd())
}

/// The process umask, read without changing it where the platform allows.
pub(crate) fn umask() -> u32 {
    sys::host().umask()
}
