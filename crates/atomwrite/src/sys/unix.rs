//! Portable POSIX path for Unix other than Linux (macOS, the BSDs): named temporary files,
//! `renameat`, `linkat` + `unlinkat` for create-only, `F_FULLFSYNC` on Apple platforms.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{self, Mode};

use super::FsInfo;
use crate::error::errno;

pub(crate) fn fs_info(dir: BorrowedFd<'_>) -> io::Result<FsInfo> {
    let s = fs::fstatvfs(dir).map_err(errno)?;
    let name_max = if s.f_namemax > 0 {
        s.f_namemax as usize
    } else {
        255
    };
    Ok(FsInfo {
        fs_type: 0,
        name_max,
    })
}

pub(crate) fn needs_sync_after_link(_fs_type: u64) -> bool {
    false
}

pub(crate) fn open_anonymous(_dir: BorrowedFd<'_>, _mode: u32) -> io::Result<Option<OwnedFd>> {
    Ok(None)
}

pub(crate) fn link_anonymous(
    _fd: BorrowedFd<'_>,
    _dir: BorrowedFd<'_>,
    _name: &std::ffi::OsStr,
) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "anonymous temporary files are Linux-only",
    ))
}

pub(crate) fn rename_noreplace(
    _dir: BorrowedFd<'_>,
    _from: &std::ffi::OsStr,
    _to: &std::ffi::OsStr,
) -> io::Result<bool> {
    Ok(false)
}

pub(crate) fn rename_exchange(
    _dir_a: BorrowedFd<'_>,
    _a: &std::ffi::OsStr,
    _dir_b: BorrowedFd<'_>,
    _b: &std::ffi::OsStr,
) -> io::Result<bool> {
    Ok(false)
}

/// `fcntl(F_FULLFSYNC)` on Apple platforms (plain `fsync` there does not flush the drive cache),
/// `fsync` elsewhere.
pub(crate) fn sync_file(fd: BorrowedFd<'_>) -> io::Result<()> {
    #[cfg(apple)]
    {
        return fs::fcntl_fullfsync(fd).map_err(errno);
    }
    #[allow(unreachable_code)]
    fs::fsync(fd).map_err(errno)
}

pub(crate) fn sync_data(fd: BorrowedFd<'_>) -> io::Result<()> {
    sync_file(fd)
}

pub(crate) fn sync_dir(fd: BorrowedFd<'_>) -> io::Result<()> {
    fs::fsync(fd).map_err(errno)
}

pub(crate) fn sync_filesystem(fd: BorrowedFd<'_>) -> io::Result<()> {
    sync_file(fd)
}

pub(crate) fn preallocate(_fd: BorrowedFd<'_>, _len: u64) -> io::Result<()> {
    Ok(())
}

pub(crate) fn umask() -> u32 {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let old = rustix::process::umask(Mode::from_raw_mode(0o022));
    rustix::process::umask(old);
    old.as_raw_mode()
}

pub(crate) fn reflink(_src: BorrowedFd<'_>, _dst: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(false)
}

pub(crate) fn copy_range(
    _src: BorrowedFd<'_>,
    _dst: BorrowedFd<'_>,
    _len: usize,
) -> io::Result<Option<usize>> {
    Ok(None)
}

/// No `openat2` here: always `None`, so the caller walks the path one component at a time.
pub(crate) fn open_dir_no_symlinks(_at: BorrowedFd<'_>, _dir: &std::path::Path) -> Option<OwnedFd> {
    None
}
