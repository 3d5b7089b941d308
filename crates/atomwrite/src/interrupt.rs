//! Interruption: named temporaries to remove, commits to let finish, cooperative
//! cancellation, and a record of what this process made visible. Process-global, and cheap
//! when unused.
//!
//! A program that handles SIGINT/SIGTERM itself (the `atomwrite` CLI does, from a dedicated
//! thread) uses this module to stop without leaving anything behind and to say the truth:
//!
//! ```no_run
//! use atomwrite::interrupt;
//! interrupt::record_replaced(true);
//! // ... on a signal, from a thread that is not inside a commit:
//! interrupt::quiesce(|| {
//!     interrupt::remove_temps();
//!     eprintln!("interrupted; replaced so far: {:?}", interrupt::replaced());
//!     std::process::exit(130)
//! });
//! ```
//!
//! # What it guarantees
//!
//! - Every named temporary an [`AtomicFile`](crate::AtomicFile) or a [`Batch`](crate::Batch)
//!   of this process holds (a `.{name}.{random}.tmp` created on the portable path, or the
//!   name an `O_TMPFILE` inode gets just before its rename) is in the registry from the
//!   instant it exists on disk (creation and registration happen under one lock) until it is
//!   renamed into place or removed. [`remove_temps`] unlinks them, each relative to the
//!   directory fd it was created in (a renamed or moved directory does not misdirect it).
//! - A commit's publish (rename or link) and its directory `fsync` run inside [`critical`];
//!   [`quiesce`] (and so [`remove_temps`]) waits for every commit in progress to finish and
//!   keeps new ones from starting, so a report printed inside `quiesce` matches the disk.
//! - [`request_cancel`] is seen by a [`Batch`](crate::Batch) commit before each rename (it
//!   stops, makes what it already renamed durable, removes the rest and says which is which),
//!   and wakes every thread in [`sleep_unless_cancelled`] at once.
//!
//! # What it does not
//!
//! - Nothing survives `SIGKILL` or a crash: then an anonymous `O_TMPFILE` inode (the Linux fast
//!   path) vanishes by itself, and a named temp stays until `atomwrite clean` removes it (its
//!   `flock` is gone with the process, which is how `clean` knows it is dead).
//! - It installs no signal handler: the program decides what a signal means and calls these
//!   functions from a normal thread (they take locks, so never from a signal handler).
//! - A cancel is not seen inside a long data flush (`fsync`, `syncfs`): it takes effect at
//!   the next check, before the first rename.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use rustix::fs::AtFlags;

use crate::{Error, Op, Result};

/// A registered temp: `name` relative to `dir`; `shown_dir` (the path of `dir`, for messages)
/// is shared by consecutive temps of one directory, so a batch of a million temps stores one
/// copy of it, not a million.
struct Entry {
    dir: Arc<OwnedFd>,
    shown_dir: Arc<Path>,
    name: Box<OsStr>,
}

struct Registry {
    next: u64,
    temps: BTreeMap<u64, Entry>,
    /// The `shown_dir` of the last temp registered (reused while the next ones share it).
    last_dir: Option<Arc<Path>>,
}

impl Registry {
    fn insert(&mut self, dir: Arc<OwnedFd>, shown_dir: &Path, name: &OsStr) -> u64 {
        let shown_dir = match &self.last_dir {
            Some(d) if **d == *shown_dir => Arc::clone(d),
            _ => Arc::clone(self.last_dir.insert(Arc::from(shown_dir))),
        };
        let id = self.next;
        self.next += 1;
        self.temps.insert(
            id,
            Entry {
                dir,
                shown_dir,
                name: name.into(),
            },
        );
        id
    }
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    temps: BTreeMap::new(),
    last_dir: None,
});

/// Set by [`remove_temps`]: the process is winding down; no new temp may appear.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Commits hold it shared; [`quiesce`] holds it exclusively.
static CRITICAL: RwLock<()> = RwLock::new(());

static CANCEL: AtomicBool = AtomicBool::new(false);
static WAKE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

static RECORD: AtomicBool = AtomicBool::new(false);
/// The replaced paths in order, and the same paths (shared, not copied) as a set for the
/// "each path once" check: one copy of each path however many files a batch renames.
#[allow(clippy::type_complexity)]
static REPLACED: Mutex<(Vec<Arc<Path>>, Option<HashSet<Arc<Path>>>)> =
    Mutex::new((Vec::new(), None));

thread_local! {
    /// How deep this thread is in `critical` sections (they nest).
    static IN_CRITICAL: Cell<u32> = const { Cell::new(0) };
    /// Whether this thread is inside `quiesce`.
    static IN_QUIESCE: Cell<bool> = const { Cell::new(false) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves consistent data (every update is one
    // insert or remove): keep going rather than lose track of temps.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A registration in the temp registry. Dropping it (or [`forget`](TempToken::forget))
/// deregisters the temp: call it once the temp was renamed into place or removed.
#[derive(Debug)]
#[must_use = "dropping the token deregisters the temp at once"]
pub struct TempToken {
    id: u64,
}

impl TempToken {
    /// Deregisters now (the temp was published or removed by its owner). Same as dropping.
    pub fn forget(self) {}

    /// The temp's name (relative to its directory), or `None` once [`remove_temps`] removed it.
    pub(crate) fn name(&self) -> Option<OsString> {
        lock(&REGISTRY)
            .temps
            .get(&self.id)
            .map(|e| e.name.to_os_string())
    }

    /// Unlinks the temp (relative to its directory fd), still registered: dropping the token
    /// after a success deregisters it. `None` once [`remove_temps`] removed it.
    pub(crate) fn unlink(&self) -> Option<rustix::io::Result<()>> {
        let reg = lock(&REGISTRY);
        let e = reg.temps.get(&self.id)?;
        Some(rustix::fs::unlinkat(&*e.dir, &*e.name, AtFlags::empty()))
    }
}

impl Drop for TempToken {
    fn drop(&mut self) {
        lock(&REGISTRY).temps.remove(&self.id);
    }
}

fn closed_error(shown: &Path) -> Error {
    Error::other(
        Op::CreateTemp,
        shown,
        io::ErrorKind::Interrupted,
        "interrupted: the process is stopping (its temporary files were removed)",
    )
}

/// Registers a named temporary that already exists, so that [`remove_temps`] unlinks `name`
/// relative to `dir`. `shown` is the temp's path, for messages; [`registered_temps`] reports it
/// as its parent joined with `name`.
///
/// Prefer creating the temp inside the registry lock (as `AtomicFile` does) so that no
/// interruption can fall between creation and registration; this function is for callers
/// whose temps are made elsewhere (pointer symlinks, markers). If [`remove_temps`] has
/// already run, the temp is unlinked at once (the process is stopping) and the token is inert.
pub fn register_temp(dir: Arc<OwnedFd>, name: OsString, shown: PathBuf) -> TempToken {
    let mut reg = lock(&REGISTRY);
    if CLOSED.load(Ordering::SeqCst) {
        let _ = rustix::fs::unlinkat(&*dir, &name, AtFlags::empty());
        let id = reg.next;
        reg.next += 1;
        return TempToken { id };
    }
    let shown_dir = shown.parent().unwrap_or(Path::new(""));
    let id = reg.insert(dir, shown_dir, &name);
    TempToken { id }
}

/// Runs `create` (which makes a temp named by its second result, in `dir`) under the registry
/// lock and registers the result before the lock is released: no [`remove_temps`] can run
/// between the temp's creation and its registration. Fails with `ErrorKind::Interrupted`
/// without calling `create` once [`remove_temps`] has run.
pub(crate) fn create_registered<T>(
    dir: &Arc<OwnedFd>,
    dir_path: &Path,
    create: impl FnOnce() -> Result<(T, OsString)>,
) -> Result<(T, OsString, TempToken)> {
    let mut reg = lock(&REGISTRY);
    if CLOSED.load(Ordering::SeqCst) {
        return Err(closed_error(dir_path));
    }
    let (t, name) = create()?;
    let id = reg.insert(Arc::clone(dir), dir_path, &name);
    Ok((t, name, TempToken { id }))
}

/// Whether [`remove_temps`] has run: a commit then refuses to publish.
pub(crate) fn closed() -> bool {
    CLOSED.load(Ordering::SeqCst)
}

/// Unlinks every registered named temporary of this process, relative to its directory fd,
/// after waiting for any commit in progress (see [`quiesce`]). Errors are ignored (a temp
/// may be gone already). Safe to call from a signal-handling thread (not from a signal
/// handler).
///
/// It is meant for a process that is about to exit: afterwards the registry is closed, so
/// creating a named temp fails with `ErrorKind::Interrupted` and commits refuse to publish;
/// nothing new appears on disk while the process winds down.
///
/// Only names this process created (with `O_EXCL`, 80 random bits) and still holds are
/// removed. It cannot help after `SIGKILL` (see the module docs).
pub fn remove_temps() {
    quiesce(|| {
        let mut reg = lock(&REGISTRY);
        CLOSED.store(true, Ordering::SeqCst);
        for (_, e) in std::mem::take(&mut reg.temps) {
            let _ = rustix::fs::unlinkat(&*e.dir, &*e.name, AtFlags::empty());
        }
    });
}

/// The paths of the named temporaries registered now (for diagnostics and tests): each the
/// path of its directory, as given when it was registered, joined with its name.
pub fn registered_temps() -> Vec<PathBuf> {
    lock(&REGISTRY)
        .temps
        .values()
        .map(|e| e.shown_dir.join(&*e.name))
        .collect()
}

/// Runs `f`, a commit's publish (rename or link) and directory `fsync`, so that [`quiesce`]
/// and [`remove_temps`] wait for it to finish. Commits on different threads do not wait for
/// each other (a shared lock); nested calls on one thread are fine. If a `quiesce` is
/// waiting, a new critical section waits for it (for a process that is exiting: forever).
///
/// Keep `f` short and bounded (a rename, a link, an `fsync`): never wait inside it for
/// another thread that itself enters `critical`, nor for anything unbounded (a lock held by
/// another process): a signal report waits for it.
pub fn critical<T>(f: impl FnOnce() -> T) -> T {
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            IN_CRITICAL.with(|d| d.set(d.get() - 1));
        }
    }
    if IN_CRITICAL.with(Cell::get) > 0 || IN_QUIESCE.with(Cell::get) {
        return f();
    }
    let _g = CRITICAL.read().unwrap_or_else(PoisonError::into_inner);
    IN_CRITICAL.with(|d| d.set(d.get() + 1));
    let _depth = Depth;
    f()
}

/// Waits until no [`critical`] section is in progress, then runs `f` while none can start:
/// what `f` reads from disk or from [`replaced`] is then the final word (the CLI prints its
/// signal report here and exits inside `f`). Nested calls run `f` directly.
///
/// # Panics
///
/// If called from inside a [`critical`] section of the same thread (it would wait for
/// itself).
pub fn quiesce<T>(f: impl FnOnce() -> T) -> T {
    struct Flag;
    impl Drop for Flag {
        fn drop(&mut self) {
            IN_QUIESCE.with(|q| q.set(false));
        }
    }
    if IN_QUIESCE.with(Cell::get) {
        return f();
    }
    assert!(
        IN_CRITICAL.with(Cell::get) == 0,
        "interrupt::quiesce called inside interrupt::critical"
    );
    let _g = CRITICAL.write().unwrap_or_else(PoisonError::into_inner);
    IN_QUIESCE.with(|q| q.set(true));
    let _flag = Flag;
    f()
}

/// Asks cooperative work to stop: a [`Batch`](crate::Batch) commit checks it before each
/// rename; [`sleep_unless_cancelled`] returns at once. The request is sticky (for the rest of
/// the process).
pub fn request_cancel() {
    CANCEL.store(true, Ordering::SeqCst);
    let _g = lock(&WAKE.0);
    WAKE.1.notify_all();
}

/// Whether [`request_cancel`] was called.
pub fn cancel_requested() -> bool {
    CANCEL.load(Ordering::SeqCst)
}

/// Sleeps for `d` or until [`request_cancel`] is called, whichever comes first; returns
/// whether a cancel was requested. For polling loops that must stay responsive (waiting for
/// a lock): a cancel wakes the sleeper immediately, not at the next poll.
pub fn sleep_unless_cancelled(d: Duration) -> bool {
    let g = lock(&WAKE.0);
    let (_g, _) = WAKE
        .1
        .wait_timeout_while(g, d, |_| !cancel_requested())
        .unwrap_or_else(PoisonError::into_inner);
    cancel_requested()
}

/// Turns the record of [`replaced`] paths on or off (off by default, so a long-running
/// process that writes many distinct files does not accumulate their names).
pub fn record_replaced(on: bool) {
    RECORD.store(on, Ordering::SeqCst);
}

/// Records that new contents became visible at `path` (a rename, link or pointer swap
/// completed). Called by the library; a no-op unless [`record_replaced`] is on.
pub fn note_replaced(path: &Path) {
    if !RECORD.load(Ordering::Relaxed) {
        return;
    }
    let mut g = lock(&REPLACED);
    let (list, seen) = &mut *g;
    let seen = seen.get_or_insert_with(HashSet::new);
    if !seen.contains(path) {
        let p: Arc<Path> = Arc::from(path);
        seen.insert(Arc::clone(&p));
        list.push(p);
    }
}

/// What this process made visible so far (while [`record_replaced`] was on), in order, each
/// path once. Read it inside [`quiesce`] for a list no commit can extend meanwhile.
pub fn replaced() -> Vec<PathBuf> {
    lock(&REPLACED).0.iter().map(|p| p.to_path_buf()).collect()
}

/// Pause points for tests (`--features test-hooks`, never in a release build): a test can
/// stop a batch between its phases. With `ATOMWRITE_TEST_PAUSE=point[:index]` and
/// `ATOMWRITE_TEST_PAUSE_FILE=PATH` set, the process writes `POINT PID` to PATH when it
/// reaches the point and waits until PATH is removed or a cancel is requested. Points: `batch-linked` (every
/// temp named, before the data flush), `batch-synced` (before the first rename),
/// `batch-renamed:N` (after the Nth rename); `copy-next:N` (a [`copy_many`] that is no batch,
/// after its Nth copy); `named-created` (a named temp just created, not yet `flock`ed).
///
/// [`copy_many`]: crate::destination::Destination::copy_many
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod test_hooks {
    use std::sync::Mutex;
    use std::time::Duration;

    type Hook = Box<dyn Fn(&str, usize) + Send + Sync>;
    static HOOK: Mutex<Option<Hook>> = Mutex::new(None);

    /// Sets an in-process hook called at every pause point (replaces the environment's).
    pub fn set(f: impl Fn(&str, usize) + Send + Sync + 'static) {
        *super::lock(&HOOK) = Some(Box::new(f));
    }

    pub(crate) fn point(name: &str, index: usize) {
        if let Some(h) = &*super::lock(&HOOK) {
            h(name, index);
            return;
        }
        let (Some(want), Some(file)) = (
            std::env::var_os("ATOMWRITE_TEST_PAUSE"),
            std::env::var_os("ATOMWRITE_TEST_PAUSE_FILE"),
        ) else {
            return;
        };
        let here = if index == 0 {
            name.to_string()
        } else {
            format!("{name}:{index}")
        };
        if want.to_string_lossy() != here {
            return;
        }
        let file = std::path::PathBuf::from(file);
        // "POINT PID": the pid lets a test signal this process even when it runs under strace.
        let _ = std::fs::write(&file, format!("{here} {}", std::process::id()));
        while file.exists() && !super::sleep_unless_cancelled(Duration::from_millis(10)) {}
    }

    /// See [`test_pause`](super::test_pause).
    pub(crate) fn pause(step: &str) {
        static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let at = AT.get_or_init(|| std::env::var("ATOMWRITE_TEST_PAUSE_AT").ok());
        if at.as_deref() == Some(step) {
            eprintln!("atomwrite: test pause at {step}");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

/// A pause point (see `test_hooks`); compiled to nothing without `--features test-hooks`.
#[inline(always)]
pub(crate) fn test_point(_name: &str, _index: usize) {
    #[cfg(feature = "test-hooks")]
    test_hooks::point(_name, _index);
}

/// Crash-test pause points (`--features test-hooks`, never in a release build): when the
/// environment variable `ATOMWRITE_TEST_PAUSE_AT` equals `step`, print
/// `atomwrite: test pause at STEP` on stderr and sleep forever, so a crash test can `SIGKILL`
/// the process at exactly that step. Compiled to nothing without the feature.
///
/// Steps: `data-committed` (a write with a sidecar manifest: data visible, manifest not yet
/// written), `version-written` (version and manifest durable, pointer not swapped),
/// `symlink-created` (right before the pending marker is renamed over `DST`), `swapped`
/// (pointer swapped, retention not yet run), `dir-staged` (directory version copied and synced,
/// not yet renamed to `vN`).
#[inline(always)]
pub(crate) fn test_pause(_step: &str) {
    #[cfg(feature = "test-hooks")]
    test_hooks::pause(_step);
}
