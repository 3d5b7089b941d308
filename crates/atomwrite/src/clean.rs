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

/// What [`clean`] found, by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanReport {
    /// Temps removed (or, in a dry run, that would be removed).
    pub removed: Vec<PathBuf>,
    /// Bytes of those temps.
    pub bytes: u64,
    /// Leftovers of crashed publishes removed (or that would be): versions never made current,
    /// their manifests and pending markers, staging directories (see
    /// [`clean_versions`](crate::clean_versions)).
    pub leftovers: Vec<PathBuf>,
    /// Bytes of those leftovers.
    pub leftover_bytes: u64,
    /// Temps skipped because a live writer holds their lock, or because someone holds their
    /// directory's lock (a batch with parked temps there, a writer between creating a temp
    /// and locking it; or any process that can open the directory, in which case a dead
    /// writer's temp is kept too: a lock that cannot be taken is no evidence either way).
    pub locked: Vec<PathBuf>,
    /// Versions directories skipped because a publisher holds their lock.
    pub busy: Vec<PathBuf>,
    /// Temps skipped because they are younger than the threshold.
    pub young: Vec<PathBuf>,
    /// What was skipped because it could not be understood or examined, and why (one line each).
    pub warnings: Vec<String>,
}

/// Removes atomwrite temporary files (`.{name}.{random}.tmp`) in `dir` that are at least
/// `older_than` old and not held by a live writer, and the leftovers of crashed publishes in any
/// `NAME.versions/` directory (found under the publishers' lock, so never one a live publisher is
/// writing; see [`clean_versions`](crate::clean_versions) for the evidence required).
///
/// Guarantees: only regular files whose names have the exact shape of atomwrite's temps are
/// touched; a temp whose `flock` is held (every live writer holds one on its named temp) is
/// never removed, whatever its age; nor is a temp of a directory whose shared `flock` someone
/// holds (see below); in a sticky directory that others
/// may write, only the caller's own temps are removed (another user's file is reported in
/// `warnings`: a name, an age and a missing lock can all be forged, so they are no evidence
/// there); symlinks are never followed; every step is relative to a
/// directory fd opened once; nothing is created (a dry run works on a read-only filesystem).
///
/// The directory's own `flock` covers the temps that carry no lock of their own yet or any
/// more: a writer creates its named temp and only then `flock`s it, so it holds a shared lock
/// on the directory from before the create until after the temp's lock; a
/// [`Batch`](crate::Batch) holds one from its first named or parked temp there until it ends.
/// `clean` takes the directory lock exclusively, without waiting, around its check of each
/// temp, and reports the temp `locked` when it cannot: so even a zero `older_than` never
/// removes a live writer's just-created temp, while a writer killed at any instant (`SIGKILL`
/// included: its locks die with it) leaves a temp that the next `clean` removes. Not
/// guaranteed: a writer that could not get the directory lock within ~2 s (someone else holds
/// it exclusively, e.g. any user who can open a shared `/tmp`) goes on without it; a `clean`
/// cannot take the lock while that holder keeps it either, but one with a zero `older_than`
/// in the instant after the holder lets go could take that writer's temp (the write then
/// fails, nothing replaced). Nor on a filesystem without `flock`, where no lock protects a
/// temp and only its age does.
/// What cannot be examined (a foreign symlink beside a versions directory, an unreadable
/// subdirectory) is skipped with a warning in the report, not an error. Does not guarantee
/// anything about other tools' temporary files, which it leaves alone.
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
    clean_dir(
        &std::sync::Arc::new(fd),
        dir,
        opts,
        &mut report,
        SystemTime::now(),
    )?;
    Ok(report)
}

fn clean_dir(
    fd: &std::sync::Arc<OwnedFd>,
    dir: &Path,
    opts: &CleanOptions,
    report: &mut CleanReport,
    now: SystemTime,
) -> Result<()> {
    // In a sticky directory others may write, a file of another user is theirs to remove: its
    // name, age and missing lock are no evidence that atomwrite made it (they can all be made).
    let only_owner = fs::fstat(&**fd)
        .ok()
        .filter(|st| crate::dest::is_shared_sticky(st.st_mode))
        .map(|_| rustix::process::geteuid().as_raw());
    let entries = fs::Dir::read_from(&**fd).map_err(|e| Error::new(Op::ReadDir, dir, errno(e)))?;
    let mut removed_any = false;
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                report
                    .warnings
                    .push(Error::new(Op::ReadDir, dir, errno(e)).to_string());
                break;
            }
        };
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
            let dst = std::ffi::OsStr::from_bytes(dst);
            clean_versions_of(fd, dir, dst, &path, opts, report);
        }
        if is_temp_name(name) {
            match clean_one(fd, name, &path, opts, report, (now, only_owner)) {
                Ok(true) => removed_any = true,
                Ok(false) => {}
                Err(e) => report.warnings.push(e.to_string()),
            }
        } else if opts.recursive && entry.file_type() == FileType::Directory {
            clean_subdir(fd, name, &path, opts, report, now)?;
        }
    }
    if removed_any {
        // Makes the removals durable, so a power loss does not bring the temps back.
        crate::sys::sync_dir(fd.as_fd()).map_err(|e| Error::new(Op::SyncDir, dir, e))?;
    }
    Ok(())
}

/// Cleans the versions directory of `dst` (an entry of `dir`, shown as `path`), adding what it
/// found to `report`; a failure is a warning.
fn clean_versions_of(
    fd: &std::sync::Arc<OwnedFd>,
    dir: &Path,
    dst: &std::ffi::OsStr,
    path: &Path,
    opts: &CleanOptions,
    report: &mut CleanReport,
) {
    match crate::versions::clean_versions_at(fd.clone(), dir, dst, opts.dry_run) {
        Ok(r) => {
            report.leftovers.extend(r.removed);
            report.leftover_bytes += r.bytes;
            report.warnings.extend(r.warnings);
            if r.locked {
                report.busy.push(path.to_path_buf());
            }
        }
        Err(e) => report
            .warnings
            .push(format!("skipped `{}`: {e}", path.display())),
    }
}

/// Opens the subdirectory `name` of `fd` (never through a symlink) and cleans it; one that
/// vanished or is no longer a directory is skipped.
fn clean_subdir(
    fd: &OwnedFd,
    name: &std::ffi::OsStr,
    path: &Path,
    opts: &CleanOptions,
    report: &mut CleanReport,
    now: SystemTime,
) -> Result<()> {
    match fs::openat(
        fd,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(sub) => clean_dir(&std::sync::Arc::new(sub), path, opts, report, now)?,
        Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => {}
        Err(e) => report
            .warnings
            .push(Error::new(Op::OpenDir, path, errno(e)).to_string()),
    }
    Ok(())
}

/// Takes a shared `flock` on the directory `dir`, which says "temps here may carry no lock of
/// their own": a writer holds it from before creating a named temp until that temp is
/// `flock`ed, a batch from its first named or parked temp in `dir` until it ends. [`clean`]
/// takes it exclusively (without waiting) around its check of each temp and leaves the temp
/// alone when it cannot, so it never examines a temp in that window.
///
/// `flock` locks belong to the open file description: the caller must own `dir`'s (no one else
/// may rely on, or drop, its lock) or keep the lock until every user of the descriptor is done,
/// as a batch does.
///
/// Waits up to ~2 s (polling, 1 ms growing to 50 ms, so a cancel ends the wait at once) while
/// the lock is held exclusively, which a `clean` does for the check of one temp. Returns
/// whether the lock is held: `false` after the wait (someone keeps it exclusively, e.g. any
/// user who can open a shared `/tmp`: a writer must not hang), after a cancel, or on a
/// filesystem without directory locks; the caller then goes on without it (see [`clean`] for
/// what that leaves open).
///
/// A directory whose lock was refused after the wait is remembered for the life of the process
/// (by device and inode): later calls for it try once and do not wait again, so a hostile
/// holder costs a process one wait, not one per file (a `cp --manifest` of many files).
pub(crate) fn lock_dir_shared(dir: &impl AsFd) -> bool {
    /// Directories `(st_dev, st_ino)` whose lock was refused after a full wait.
    static REFUSED: std::sync::Mutex<Vec<(u64, u64)>> = std::sync::Mutex::new(Vec::new());
    match fs::flock(dir, FlockOperation::NonBlockingLockShared) {
        Ok(()) => return true,
        Err(Errno::WOULDBLOCK) => {}
        Err(_) => return false,
    }
    let key = fs::fstat(dir).ok().map(|st| (st.st_dev, st.st_ino));
    let refused = || REFUSED.lock().unwrap_or_else(|e| e.into_inner());
    if key.is_some_and(|k| refused().contains(&k)) {
        return false;
    }
    let mut wait = Duration::from_millis(1);
    for _ in 0..50 {
        match fs::flock(dir, FlockOperation::NonBlockingLockShared) {
            Ok(()) => return true,
            Err(Errno::WOULDBLOCK) => {}
            Err(_) => return false,
        }
        if crate::interrupt::sleep_unless_cancelled(wait) {
            return false;
        }
        wait = (wait * 2).min(Duration::from_millis(50));
    }
    if let Some(k) = key {
        refused().push(k);
    }
    false
}

fn clean_one(
    dir: &OwnedFd,
    name: &std::ffi::OsStr,
    path: &Path,
    opts: &CleanOptions,
    report: &mut CleanReport,
    (now, only_owner): (SystemTime, Option<u32>),
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
    if only_owner.is_some_and(|me| st.st_uid != me) {
        report.warnings.push(format!(
            "kept `{}`: it belongs to uid {} in a shared sticky directory",
            path.display(),
            st.st_uid
        ));
        return Ok(false);
    }
    let mtime =
        SystemTime::UNIX_EPOCH + Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32);
    if now.duration_since(mtime).unwrap_or(Duration::ZERO) < opts.older_than {
        report.young.push(path.to_path_buf());
        return Ok(false);
    }
    // Holding the directory exclusively, no writer is between creating a temp here and locking
    // it, and no batch has parked one (see `lock_dir_shared`): then an unlocked temp is no live
    // writer's. Held only for this check, so a writer waits for one temp, never for a sweep.
    let dir_held = match fs::flock(dir, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => true,
        Err(Errno::WOULDBLOCK) => {
            report.locked.push(path.to_path_buf());
            return Ok(false);
        }
        // A filesystem without directory locks: the temps' own locks decide alone.
        Err(_) => false,
    };
    let locked = fs::flock(&f, FlockOperation::NonBlockingLockExclusive);
    if dir_held {
        // Our own descriptor (opened by this sweep): no one else relies on its lock.
        let _ = fs::flock(dir, FlockOperation::Unlock);
    }
    match locked {
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
    if !opts.dry_run {
        match fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            // Reported as a warning by the caller, and not as removed: the report tells the truth.
            Err(e) => return Err(Error::new(Op::RemoveTemp, path, errno(e))),
        }
    }
    report.removed.push(path.to_path_buf());
    // A name with other links (a portable create-only publish whose second name could not be
    // dropped, or a link someone else made to one of our files) frees no bytes.
    if st.st_nlink == 1 {
        report.bytes += st.st_size as u64;
    }
    Ok(!opts.dry_run)
}
