//! The publishers' lock: `DST.versions/.lock`, `flock`ed by every publisher of `DST`.
//!
//! The lock file is created with the permissions of the versions directory's writers (0600 when
//! only its owner may write; group or others get read/write only when they may write the
//! directory, i.e. may publish anyway), so a user who cannot publish cannot open it and so cannot
//! hold every publisher off with an `flock` (which works on a read-only descriptor). A lock file
//! left with wider permissions by an older atomwrite is narrowed by the next publisher that owns it.
//!
//! Waiting is a poll of `flock(LOCK_EX|LOCK_NB)` (1 ms growing to 50 ms), so it notices a
//! cancellation ([`crate::interrupt::cancel_requested`]) and a deadline within 50 ms; a blocking
//! `flock` could be woken by neither.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::fs::{self as rfs, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::error::errno;
use crate::{Error, Op, Result};

pub(crate) const LOCK_NAME: &str = ".lock";

/// Who holds the publishers' lock, as far as the system tells (Linux: `/proc/locks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockWait {
    /// The lock file.
    pub lock_path: PathBuf,
    /// The process holding it, when known.
    pub holder_pid: Option<u32>,
    /// That process's command line, when readable.
    pub holder_command: Option<String>,
}

/// Called once when a publisher has to wait for the lock (the CLI prints a notice on a terminal).
pub type WaitNotice = Arc<dyn Fn(&LockWait) + Send + Sync>;

/// How long and how to wait for the lock.
#[derive(Clone, Default)]
pub(crate) struct WaitPolicy {
    pub timeout: Option<Duration>,
    pub notice: Option<WaitNotice>,
}

impl std::fmt::Debug for WaitPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitPolicy")
            .field("timeout", &self.timeout)
            .field("notice", &self.notice.is_some())
            .finish()
    }
}

/// A held lock; released when dropped (the fd closes).
#[derive(Debug)]
pub(crate) struct Lock {
    fd: OwnedFd,
}

impl Lock {
    /// Whether the lock file was unlinked while we waited for it (a failed first publish removes
    /// the versions directory it created): the lock then protects nothing.
    pub(crate) fn is_stale(&self) -> bool {
        rfs::fstat(&self.fd).map_or(true, |st| st.st_nlink == 0)
    }

    /// The next-number hint a previous publisher left in the lock file (`next=N`), if any. Only a
    /// hint: numbers are claimed with `O_EXCL`, so a stale or lost hint costs a few probes, never
    /// a reused number.
    pub(crate) fn next_hint(&self) -> Option<u64> {
        let mut buf = [0u8; 32];
        let n = rustix::io::pread(&self.fd, &mut buf, 0).ok()?;
        let s = std::str::from_utf8(&buf[..n]).ok()?;
        let v = s.trim().strip_prefix("next=")?;
        if v.is_empty() || v.len() > super::name::DIGITS || !v.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        v.parse().ok()
    }

    /// Records the next-number hint (best effort, not synced: see [`Lock::next_hint`]).
    pub(crate) fn set_next_hint(&self, next: u64) {
        let s = format!("next={next:010}\n");
        if rustix::io::pwrite(&self.fd, s.as_bytes(), 0).is_ok() {
            let _ = rfs::ftruncate(&self.fd, s.len() as u64);
        }
    }
}

/// The mode the lock file should have: read/write for exactly the classes that may write `vdir`.
fn lock_mode(vdir_mode: u32) -> u32 {
    let mut m = 0o600;
    if vdir_mode & 0o020 != 0 {
        m |= 0o060;
    }
    if vdir_mode & 0o002 != 0 {
        m |= 0o006;
    }
    m
}

fn open_lock(vdir_fd: &OwnedFd, lock_path: &Path, create: bool) -> Result<Option<OwnedFd>> {
    let base = OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let dir_st = rfs::fstat(vdir_fd).map_err(|e| Error::new(Op::Lock, lock_path, errno(e)))?;
    let want = lock_mode(dir_st.st_mode);
    let create_flag = if create {
        OFlags::CREATE
    } else {
        OFlags::empty()
    };
    let fd = match rfs::openat(
        vdir_fd,
        LOCK_NAME,
        base | OFlags::RDWR | create_flag,
        Mode::from_raw_mode(want),
    ) {
        Ok(fd) => fd,
        // Read-only filesystem, or a lock file we may read but not write: lock without the hint.
        Err(Errno::ROFS | Errno::ACCESS) => {
            match rfs::openat(vdir_fd, LOCK_NAME, base | OFlags::RDONLY, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if !create => return Ok(None),
                Err(e) => return Err(Error::new(Op::Lock, lock_path, errno(e))),
            }
        }
        Err(Errno::NOENT) if !create => return Ok(None),
        Err(e) => return Err(Error::new(Op::Lock, lock_path, errno(e))),
    };
    let st = rfs::fstat(&fd).map_err(|e| Error::new(Op::Lock, lock_path, errno(e)))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(Error::other(
            Op::Lock,
            lock_path,
            io::ErrorKind::InvalidInput,
            "the lock is not a regular file",
        ));
    }
    if create && st.st_mode & 0o777 != want {
        // Created under a umask, or left wider by an older atomwrite: narrow (or widen to the
        // directory's writers) when it is ours to change; someone else's lock file stays as is.
        let _ = rfs::fchmod(&fd, Mode::from_raw_mode(want));
    }
    Ok(Some(fd))
}

/// Takes the lock, creating the lock file if needed, waiting as `policy` says.
pub(crate) fn acquire(vdir_fd: &OwnedFd, vdir: &Path, policy: &WaitPolicy) -> Result<Lock> {
    let lock_path = vdir.join(LOCK_NAME);
    let fd = open_lock(vdir_fd, &lock_path, true)?.expect("created");
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    let mut noticed = false;
    loop {
        match rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Lock { fd }),
            Err(Errno::WOULDBLOCK | Errno::INTR) => {}
            Err(e) => return Err(Error::new(Op::Lock, &lock_path, errno(e))),
        }
        if !noticed {
            noticed = true;
            if let Some(n) = &policy.notice {
                n(&holder(&fd, &lock_path));
            }
        }
        if crate::interrupt::cancel_requested() {
            return Err(Error::other(
                Op::Lock,
                &lock_path,
                io::ErrorKind::Interrupted,
                "interrupted while waiting for another publisher",
            ));
        }
        if let Some(t) = policy.timeout
            && start.elapsed() >= t
        {
            let who = holder(&fd, &lock_path);
            let by = match (who.holder_pid, who.holder_command) {
                (Some(pid), Some(cmd)) => format!(" (held by pid {pid}: {cmd})"),
                (Some(pid), None) => format!(" (held by pid {pid})"),
                _ => String::new(),
            };
            return Err(Error::other(
                Op::Lock,
                &lock_path,
                io::ErrorKind::WouldBlock,
                format!(
                    "another publisher still holds the lock after {}{by}",
                    humantime::format_duration(t)
                ),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The outcome of [`try_acquire`].
pub(crate) enum Try {
    Acquired(Lock),
    /// A publisher holds it now.
    Held,
    /// No lock file: no publisher of this atomwrite ever ran here (nothing is created to find out).
    Missing,
}

/// Takes the lock without waiting and without creating anything (for `clean`, dry runs and
/// read-only filesystems included).
pub(crate) fn try_acquire(vdir_fd: &OwnedFd, vdir: &Path) -> Result<Try> {
    let lock_path = vdir.join(LOCK_NAME);
    let Some(fd) = open_lock(vdir_fd, &lock_path, false)? else {
        return Ok(Try::Missing);
    };
    match rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Try::Acquired(Lock { fd })),
        Err(Errno::WOULDBLOCK | Errno::INTR) => Ok(Try::Held),
        Err(e) => Err(Error::new(Op::Lock, &lock_path, errno(e))),
    }
}

/// Who holds the flock on `fd`'s inode, from `/proc/locks` (Linux; `None` elsewhere).
fn holder(fd: &OwnedFd, lock_path: &Path) -> LockWait {
    let mut w = LockWait {
        lock_path: lock_path.to_path_buf(),
        holder_pid: None,
        holder_command: None,
    };
    let Ok(st) = rfs::fstat(fd.as_fd()) else {
        return w;
    };
    let (maj, min) = (rfs::major(st.st_dev), rfs::minor(st.st_dev));
    let key = format!("{maj:02x}:{min:02x}:{}", st.st_ino);
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return w;
    };
    // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (a blocked waiter's line has "->").
    // The device there is the superblock's, which btrfs subvolumes report differently from
    // stat(2): fall back to the inode number when exactly one flock holds it.
    let ino_suffix = format!(":{}", st.st_ino);
    let mut exact = None;
    let mut by_ino = Vec::new();
    for line in locks.lines().filter(|l| !l.contains("->")) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 6 && f[1] == "FLOCK" {
            if f[5] == key {
                exact = f[4].parse().ok();
                break;
            }
            if f[5].ends_with(&ino_suffix) {
                by_ino.push(f[4]);
            }
        }
    }
    w.holder_pid = exact.or_else(|| match by_ino.as_slice() {
        [pid] => pid.parse().ok(),
        _ => None,
    });
    if let Some(pid) = w.holder_pid
        && let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline"))
    {
        let words: Vec<String> = cmd
            .split(|&c| c == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        if !words.is_empty() {
            w.holder_command = Some(
                words
                    .iter()
                    .map(|w| shell_quoted(w))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
    }
    w
}

/// `word` as a POSIX shell reads it back: as it is when it holds only safe characters,
/// else in single quotes (a `'` inside as `'\''`), so a command line shown to the user keeps
/// its word boundaries.
pub fn shell_quoted(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_command_keeps_its_quoting() {
        assert_eq!(shell_quoted("make_report"), "make_report");
        assert_eq!(shell_quoted("a b"), "'a b'");
        assert_eq!(shell_quoted("it's"), "'it'\\''s'");
        assert_eq!(shell_quoted(""), "''");
    }

    #[test]
    fn lock_mode_follows_the_directory_writers() {
        assert_eq!(lock_mode(0o40755), 0o600);
        assert_eq!(lock_mode(0o40775), 0o660);
        assert_eq!(lock_mode(0o41777), 0o666);
        assert_eq!(lock_mode(0o40700), 0o600);
    }
}
