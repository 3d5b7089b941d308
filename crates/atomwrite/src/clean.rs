//! [`clean`]: remove temporary files left behind by writers that crashed.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{self, AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use serde::Serialize;

use crate::error::errno;
use crate::tempname::is_temp_name;
use crate::{Error, Op, Result};

/// What [`clean_with`] should do.
#[derive(Debug, Clone)]
pub struct CleanOptions {
    /// Only temps whose last modification is at least this old are candidates (default 1 hour).
    pub older_than: Duration,
    /// Report what would be removed without removing anything.
    pub dry_run: bool,
    /// Descend into subdirectories (never following symlinks).
    pub recursive: bool,
}

impl Default for CleanOptions {
    fn default() -> Self {
        CleanOptions {
            older_than: Duration::from_secs(3600),
            dry_run: false,
            recursive: false,
        }
    }
}

/// What [`clean`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanReport {
    /// Temps removed (or, in a dry run, that would be removed).
    pub removed: Vec<PathBuf>,
    /// Temps skipped because a live writer holds their lock.
    pub locked: Vec<PathBuf>,
    /// Temps skipped because they are younger than the threshold.
    pub young: Vec<PathBuf>,
    /// Bytes freed (or that would be freed).
    pub bytes: u64,
}

/// Removes atomwrite temporary files (`.{name}.{random}.tmp`) in `dir` that are at least
/// `older_than` old and not held by a live writer, and the leftovers of crashed publishers in
/// any `NAME.versions/` directory (versions newer than the current one and staging
/// directories, found under the publishers' lock, so never one a live publisher is writing).
///
/// Guarantees: only regular files whose names have the exact shape of atomwrite's temps are
/// touched; a temp whose `flock` is held (every live writer holds one on its named temp) is
/// never removed, whatever its age; symlinks are never followed. Does not guarantee anything
/// about other tools' temporary files, which it leaves alone.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let report = atomwrite::clean(dir.path(), std::time::Duration::from_secs(3600))?;
/// assert!(report.removed.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn clean(dir: impl AsRef<Path>, older_than: Duration) -> Result<CleanReport> {
    clean_with(
        dir,
        &CleanOptions {
            older_than,
            ..CleanOptions::default()
        },
    )
}

/// [`clean`] with [`CleanOptions`] (dry run, recursion).
pub fn clean_with(dir: impl AsRef<Path>, opts: &CleanOptions) -> Result<CleanReport> {
    let dir = dir.as_ref();
    let fd = fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::new(Op::OpenDir, dir, errno(e)))?;
    let mut report = CleanReport::default();
    clean_dir(&fd, dir, opts, &mut report, SystemTime::now())?;
    Ok(report)
}

fn clean_dir(
    fd: &OwnedFd,
    dir: &Path,
    opts: &CleanOptions,
    report: &mut CleanReport,
    now: SystemTime,
) -> Result<()> {
    let entries = fs::Dir::read_from(fd).map_err(|e| Error::new(Op::ReadDir, dir, errno(e)))?;
    let mut removed_any = false;
    for entry in entries {
        let entry = entry.map_err(|e| Error::new(Op::ReadDir, dir, errno(e)))?;
        let name = std::ffi::OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let path = dir.join(name);
        if entry.file_type() == FileType::Directory
            && let Some(dst) = name
                .as_bytes()
                .strip_suffix(b".versions")
                .filter(|d| !d.is_empty())
        {
            // A publisher that crashed between writing a version and swapping the pointer left
            // an unreferenced version: found and removed under the publishers' lock.
            let r = crate::versions::clean_versions(
                dir.join(std::ffi::OsStr::from_bytes(dst)),
                opts.dry_run,
            )?;
            report.removed.extend(r.removed);
        }
        if is_temp_name(name) {
            if clean_one(fd, name, &path, opts, report, now)? {
                removed_any = true;
            }
        } else if opts.recursive && entry.file_type() == FileType::Directory {
            match fs::openat(
                fd,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(sub) => clean_dir(&sub, &path, opts, report, now)?,
                Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR | Errno::ACCESS) => {}
                Err(e) => return Err(Error::new(Op::OpenDir, &path, errno(e))),
            }
        }
    }
    if removed_any {
        // Makes the removals durable, so a power loss does not bring the temps back.
        crate::sys::sync_dir(fd.as_fd()).map_err(|e| Error::new(Op::SyncDir, dir, e))?;
    }
    Ok(())
}

fn clean_one(
    dir: &OwnedFd,
    name: &std::ffi::OsStr,
    path: &Path,
    opts: &CleanOptions,
    report: &mut CleanReport,
    now: SystemTime,
) -> Result<bool> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let f = match fs::openat(dir, name, flags, Mode::empty()) {
        Ok(f) => f,
        // Gone already (its writer committed), or a symlink/non-file squatting on the name.
        Err(Errno::NOENT | Errno::LOOP | Errno::NXIO | Errno::ACCESS) => return Ok(false),
        Err(e) => return Err(Error::new(Op::RemoveTemp, path, errno(e))),
    };
    let st = fs::fstat(&f).map_err(|e| Error::new(Op::Inspect, path, errno(e)))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(false);
    }
    let mtime =
        SystemTime::UNIX_EPOCH + Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32);
    if now.duration_since(mtime).unwrap_or(Duration::ZERO) < opts.older_than {
        report.young.push(path.to_path_buf());
        return Ok(false);
    }
    match fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => {
            report.locked.push(path.to_path_buf());
            return Ok(false);
        }
        Err(e) => return Err(Error::new(Op::Lock, path, errno(e))),
    }
    // Holding the lock: no writer can be using this temp. Make sure the name still refers to
    // the file we locked before removing it.
    match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(now_st) if now_st.st_ino == st.st_ino && now_st.st_dev == st.st_dev => {}
        _ => return Ok(false),
    }
    report.removed.push(path.to_path_buf());
    report.bytes += st.st_size as u64;
    if opts.dry_run {
        return Ok(false);
    }
    match fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(true),
        Err(e) => Err(Error::new(Op::RemoveTemp, path, errno(e))),
    }
}
