//! The portable POSIX backend: named temporary files, `renameat`, `linkat` + `unlinkat` for
//! create-only, `fsync` of every file (`F_FULLFSYNC` on Apple platforms).
//!
//! Every method of [`Backend`] has its portable implementation here, as the trait's default.
//! [`Portable`] takes all of them: it is what macOS and the BSDs run, and what Linux runs under
//! `Options::portable(true)` / `ATOMWRITE_PORTABLE=1`, so this file is compiled and exercised by
//! the test suites on Linux too. The Linux backend (`linux.rs`) implements the same trait and
//! overrides only its fast paths; everything it does not override is this code.

use std::ffi::OsStr;
use std::fmt::Debug;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{self, Mode};

use super::FsInfo;
use crate::error::errno;

/// Every platform operation the crate uses. The default methods are the portable POSIX path;
/// a platform backend overrides the ones it can do better.
pub(crate) trait Backend: Debug + Send + Sync {
    /// Short name for diagnostics (`"linux"`, `"portable"`).
    fn name(&self) -> &'static str;

    /// `fstatvfs(2)`: `f_namemax` (`fs_type` is 0: POSIX does not name filesystem types);
    /// `fstat(2)`: the device.
    fn fs_info(&self, dir: BorrowedFd<'_>) -> io::Result<FsInfo> {
        let s = fs::fstatvfs(dir).map_err(errno)?;
        let dev = fs::fstat(dir).map_err(errno)?.st_dev;
        let name_max = if s.f_namemax > 0 {
            s.f_namemax as usize
        } else {
            255
        };
        Ok(FsInfo {
            fs_type: 0,
            name_max,
            dev,
        })
    }

    /// Whether the filesystem type needs a data sync after the anonymous inode is linked.
    /// Only meaningful where [`open_anonymous`](Backend::open_anonymous) can succeed.
    fn needs_sync_after_link(&self, _fs_type: u64) -> bool {
        false
    }

    /// Whether a fast path is known to be refused by filesystems of this type (the caller
    /// then skips straight to the portable path). The portable backend has no fast paths.
    fn known_refused(&self, _fs_type: u64, _feature: super::Feature) -> bool {
        false
    }

    /// Records that a filesystem type refused a fast path. Nothing to record here.
    fn remember_refused(&self, _fs_type: u64, _feature: super::Feature) {}

    /// An anonymous temporary inode in `dir`. `Ok(None)`: not available, use a named temp.
    fn open_anonymous(&self, _dir: BorrowedFd<'_>, _mode: u32) -> io::Result<Option<OwnedFd>> {
        Ok(None)
    }

    /// Gives an anonymous inode the name `name` in `dir` (fails with `EEXIST` if it exists).
    fn link_anonymous(
        &self,
        _fd: BorrowedFd<'_>,
        _dir: BorrowedFd<'_>,
        _name: &OsStr,
    ) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "anonymous temporary files are not available on the portable path",
        ))
    }

    /// Rename that refuses to replace. `Ok(false)`: not available; the caller publishes with
    /// `linkat` + `unlinkat` instead (POSIX: `link` fails with `EEXIST`).
    fn rename_noreplace(
        &self,
        _dir: BorrowedFd<'_>,
        _from: &OsStr,
        _to: &OsStr,
    ) -> io::Result<bool> {
        Ok(false)
    }

    /// Atomic swap of two names. `Ok(false)`: not available (POSIX has none).
    fn rename_exchange(
        &self,
        _dir_a: BorrowedFd<'_>,
        _a: &OsStr,
        _dir_b: BorrowedFd<'_>,
        _b: &OsStr,
    ) -> io::Result<bool> {
        Ok(false)
    }

    /// Makes a file's data and the metadata needed to read it back durable: `fcntl(F_FULLFSYNC)`
    /// on Apple platforms (their plain `fsync` does not flush the drive's cache), `fsync(2)`
    /// elsewhere.
    fn sync_file(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        #[cfg(target_vendor = "apple")]
        {
            fs::fcntl_fullfsync(fd).map_err(errno)
        }
        #[cfg(not(target_vendor = "apple"))]
        {
            fs::fsync(fd).map_err(errno)
        }
    }

    /// Data-only sync. POSIX `fdatasync` is not on every Unix (and is no cache flush on Apple),
    /// so the portable path makes the full [`sync_file`](Backend::sync_file).
    fn sync_data(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.sync_file(fd)
    }

    /// `fsync(2)` of a directory: makes its entries (creations, renames, unlinks) durable.
    fn sync_dir(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        fs::fsync(fd).map_err(errno)
    }

    /// One barrier that makes every dirty file of the filesystem holding `fd` durable *and*
    /// reports any write error of any of them. `Ok(false)`: this backend has no such barrier
    /// (POSIX has none: `sync(2)` reports nothing), so the caller must
    /// [`sync_file`](Backend::sync_file) every file itself. Never `Ok(true)` unless the barrier
    /// ran and would have reported an error.
    fn sync_filesystem(&self, _fd: BorrowedFd<'_>) -> io::Result<bool> {
        Ok(false)
    }

    /// Why [`sync_filesystem`](Backend::sync_filesystem) is or is not available, for `doctor`.
    fn sync_filesystem_support(&self) -> super::SyncfsSupport {
        super::SyncfsSupport {
            available: false,
            kernel: None,
            reason: "the portable path has no filesystem-wide barrier that reports errors; \
                     every file is fsynced"
                .to_string(),
        }
    }

    /// Reserves `len` bytes. Nothing portable does that without side effects
    /// (`posix_fallocate` writes zeroes on some systems), so the portable path does not.
    fn preallocate(&self, _fd: BorrowedFd<'_>, _len: u64) -> io::Result<()> {
        Ok(())
    }

    /// The process umask. POSIX can only read it by setting it: set 077, read the old value,
    /// restore it (serialised). Another thread creating a file in that instant gets owner-only
    /// permissions: stricter than intended, never looser.
    fn umask(&self) -> u32 {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let old = rustix::process::umask(Mode::from_raw_mode(0o077));
        rustix::process::umask(old);
        old.as_raw_mode()
    }

    /// Asks the kernel to start writing `len` bytes at `offset` of `fd` back to the device now,
    /// without waiting, so a long stream's device writes overlap its copying and the final
    /// flush has only the tail left. A hint, not a flush: durability still comes from the
    /// `fsync` at commit. The portable path has no such hint and does nothing.
    fn start_writeback(&self, _fd: BorrowedFd<'_>, _offset: u64, _len: u64) {}

    /// Shares `src`'s extents with `dst`. `Ok(false)`: not available; the caller copies.
    fn reflink(&self, _src: BorrowedFd<'_>, _dst: BorrowedFd<'_>) -> io::Result<bool> {
        Ok(false)
    }

    /// In-kernel copy of up to `len` bytes. `Ok(None)`: not available; the caller copies.
    fn copy_range(
        &self,
        _src: BorrowedFd<'_>,
        _dst: BorrowedFd<'_>,
        _len: usize,
    ) -> io::Result<Option<usize>> {
        Ok(None)
    }
}

/// The portable POSIX backend: every default method of [`Backend`].
#[derive(Debug)]
pub(crate) struct Portable;

impl Backend for Portable {
    fn name(&self) -> &'static str {
        "portable"
    }
}

/// No `openat2` here: always `None`, so the caller walks the path one component at a time.
#[cfg_attr(target_os = "linux", allow(dead_code))]
pub(crate) fn open_dir_no_symlinks(_at: BorrowedFd<'_>, _dir: &std::path::Path) -> Option<OwnedFd> {
    None
}
