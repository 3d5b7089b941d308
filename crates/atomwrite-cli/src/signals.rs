//! SIGINT/SIGTERM/SIGHUP: remove every named temp, never leave a half-done state unreported,
//! exit 128+N saying exactly what was replaced.
//!
//! A dedicated thread receives the signals (no work in async-signal context). It first
//! forwards the signal to `run`'s child, if any. Then:
//!
//! - In a **cooperative** phase ([`cooperative`]: a batch commit, a wait for the publish lock)
//!   it only calls [`interrupt::request_cancel`] and returns to waiting: the main thread
//!   stops at its next check, finishes what must be finished (the directory fsync of what it
//!   already renamed), and [`cooperative`] then reports and exits. The signal thread never
//!   waits for the main thread here, so a main thread blocked indefinitely (on a lock held by
//!   another process) cannot make it deaf.
//! - Otherwise it exits at once through [`exit_interrupted`]: inside
//!   [`interrupt::quiesce`] (which waits for a rename + directory fsync in progress, bounded,
//!   and keeps new ones from starting), it removes every registered temp
//!   ([`interrupt::remove_temps`]), prints what [`interrupt::replaced`] says this process made
//!   visible and which announced destinations ([`target`]) it did not, and exits 128+N.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};

use atomwrite::interrupt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Set once a commit whose visibility the library does not record (none today) has returned
/// successfully: the report then says the commit completed.
pub static COMMITTED: AtomicBool = AtomicBool::new(false);

/// The pid of the child run by `atomwrite run` (0: none). Signals are forwarded to it before
/// this process exits, and nothing is committed.
pub static CHILD: AtomicI32 = AtomicI32::new(0);

/// Set while `run` is starting its CMD: a signal that arrives then waits (briefly) for the
/// child's pid, so it is forwarded even if it beat the parent's bookkeeping.
pub static SPAWNING: AtomicBool = AtomicBool::new(false);

/// Set as soon as the signal thread starts its report and exit: the main thread must then
/// neither print its own outcome nor exit (see [`wait_if_exiting`]).
static EXITING: AtomicBool = AtomicBool::new(false);

/// Manifests written so far by a command that writes one per file (`cp --manifest`), or -1:
/// a signal report then says how many of the replaced files have theirs.
static MANIFESTS: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(-1);

/// The command writes a manifest beside each file it replaces (see [`manifest_written`]).
pub fn manifests_expected() {
    MANIFESTS.store(0, SeqCst);
}

/// One more manifest was written.
pub fn manifest_written() {
    MANIFESTS.fetch_add(1, SeqCst);
}

/// Set once the command has started printing its own JSON outcome on stdout: a signal after
/// that adds no second JSON object (stdout must stay one JSON value); its line on stderr and
/// its exit code 128+N still say it came.
static STDOUT_OUTCOME: AtomicBool = AtomicBool::new(false);

/// Set once that outcome is written out whole.
static STDOUT_OUTCOME_DONE: AtomicBool = AtomicBool::new(false);

/// Called just before the command prints its JSON outcome on stdout (see [`STDOUT_OUTCOME`]).
pub fn printing_outcome() {
    STDOUT_OUTCOME.store(true, SeqCst);
}

/// Called once the JSON outcome is written out whole: a signal's exit waits for this (bounded),
/// so stdout never ends in half a JSON value.
pub fn printed_outcome() {
    STDOUT_OUTCOME_DONE.store(true, SeqCst);
}

/// Whether the report is also printed as JSON on stdout (`--json`).
static JSON: AtomicBool = AtomicBool::new(false);

struct Phase {
    /// Inside [`cooperative`].
    cooperative: bool,
    /// A signal received during the cooperative phase, acted on when it ends.
    pending: Option<i32>,
}

/// Held only for a few instructions by either thread (never across a wait).
static PHASE: Mutex<Phase> = Mutex::new(Phase {
    cooperative: false,
    pending: None,
});

/// Destinations this command set out to replace, for "`x` was not replaced".
static TARGETS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Lists the destinations of a command with many (`cp` of 100,000 files): called only when a
/// signal report is made, so the command holds no second list of its targets meanwhile.
type TargetList = Box<dyn Fn(&mut dyn FnMut(PathBuf)) + Send>;

/// Set by [`targets_with`].
static TARGET_LIST: Mutex<Option<TargetList>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the signal thread. `json`: the command was given `--json`.
pub fn install(json: bool) {
    JSON.store(json, SeqCst);
    interrupt::record_replaced(true);
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    std::thread::spawn(move || {
        for sig in signals.forever() {
            forward_to_child(sig);
            {
                let mut p = lock(&PHASE);
                if p.cooperative {
                    p.pending.get_or_insert(sig);
                    drop(p);
                    interrupt::request_cancel();
                    continue;
                }
            }
            exit_interrupted(sig);
        }
    });
}

/// Announces a destination this command is about to replace (the signal report names it as
/// not replaced unless the library recorded it as replaced).
pub fn target(path: &Path) {
    lock(&TARGETS).push(path.to_path_buf());
}

/// Announces many destinations at once: `list` hands each to its argument, in order, when a
/// signal report is made (and only then). Same meaning as calling [`target`] for each.
pub fn targets_with(list: impl Fn(&mut dyn FnMut(PathBuf)) + Send + 'static) {
    *lock(&TARGET_LIST) = Some(Box::new(list));
}

/// Runs `f` as a cooperative phase: a signal meanwhile only requests a cancel
/// ([`interrupt::request_cancel`]), which `f` is expected to notice (a batch commit checks it
/// before each rename; a lock wait polls it with [`interrupt::sleep_unless_cancelled`]).
/// When `f` returns after a signal, whatever it returned, this reports and exits 128+N
/// ([`exit_interrupted`]); otherwise it returns `f`'s result.
pub fn cooperative<T>(f: impl FnOnce() -> T) -> T {
    lock(&PHASE).cooperative = true;
    let t = f();
    let pending = {
        let mut p = lock(&PHASE);
        p.cooperative = false;
        p.pending.take()
    };
    if let Some(sig) = pending {
        exit_interrupted(sig);
    }
    t
}

/// Removes every registered temp, prints the truth about what was replaced (text on stderr;
/// with `--json` also the error object on stdout), and exits 128+`sig`. Waits for a commit's
/// rename + directory fsync in progress (bounded), never for anything else.
pub fn exit_interrupted(sig: i32) -> ! {
    EXITING.store(true, SeqCst);
    if STDOUT_OUTCOME.load(SeqCst) {
        // The command is printing its outcome: let it finish (a reader that stopped reading
        // cannot hold the exit for more than ~2 s).
        for _ in 0..200 {
            if STDOUT_OUTCOME_DONE.load(SeqCst) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    interrupt::quiesce(|| {
        interrupt::remove_temps();
        let replaced = interrupt::replaced();
        // Sets, not list scans: a report on 100,000 targets must not take 10^10 comparisons.
        let mut seen: HashSet<PathBuf> = replaced.iter().cloned().collect();
        let mut not_replaced: Vec<PathBuf> = Vec::new();
        let mut note = |t: PathBuf| {
            if seen.insert(t.clone()) {
                not_replaced.push(t);
            }
        };
        for t in lock(&TARGETS).iter() {
            note(t.clone());
        }
        if let Some(list) = lock(&TARGET_LIST).as_ref() {
            list(&mut note);
        }
        let message = report(sig, &replaced, &not_replaced);
        let mut text = String::new();
        // A progress bar may be half drawn on this terminal line: start a clean one.
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            text.push_str("\r\x1b[2K");
        }
        text.push_str(&format!("atomwrite: {message}\n"));
        // Straight to fd 2: the main thread may hold the `Stderr` lock (a progress bar).
        write_fd(
            std::os::fd::AsFd::as_fd(&std::io::stderr()),
            text.as_bytes(),
        );
        if JSON.load(SeqCst) && !STDOUT_OUTCOME.load(SeqCst) {
            let v = serde_json::json!({ "error": {
                "message": message,
                "exit_code": 128 + sig,
                "kind": "interrupted",
                "signal": sig,
                "replaced": replaced,
                "not_replaced": not_replaced,
            }});
            write_fd(
                std::os::fd::AsFd::as_fd(&std::io::stdout()),
                format!("{v}\n").as_bytes(),
            );
        }
        // `exit` inside `quiesce`: no commit can start between the report and the exit.
        std::process::exit(128 + sig)
    })
}

/// Called by the main thread before it prints its outcome or exits: if a signal's report and
/// exit (128+N) are under way, waits for them instead, so the process says one thing (one
/// line, one JSON object) and exits with the signal's code, not with the error the signal
/// caused in the main thread ("the process is stopping").
pub fn wait_if_exiting() {
    if EXITING.load(SeqCst) {
        loop {
            std::thread::park();
        }
    }
}

fn write_fd(fd: std::os::fd::BorrowedFd<'_>, mut buf: &[u8]) {
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(0) => return,
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

/// The one-line report: what was replaced, what was not.
fn report(sig: i32, replaced: &[PathBuf], not_replaced: &[PathBuf]) -> String {
    let list = |ps: &[PathBuf]| {
        ps.iter()
            .map(|p| format!("`{}`", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let verb = |ps: &[PathBuf]| if ps.len() == 1 { "was" } else { "were" };
    let mut s = format!("interrupted by signal {sig}");
    if replaced.is_empty() {
        if COMMITTED.load(SeqCst) {
            s.push_str(" after the commit completed");
        } else {
            s.push_str("; nothing was replaced");
        }
    } else {
        s.push_str(&format!(
            " after {} {} replaced",
            list(replaced),
            verb(replaced)
        ));
    }
    if !not_replaced.is_empty() {
        s.push_str(&format!(
            "; {} {} not replaced",
            list(not_replaced),
            verb(not_replaced)
        ));
    }
    let manifests = MANIFESTS.load(SeqCst);
    if manifests >= 0 && !replaced.is_empty() {
        s.push_str(&format!(
            "; manifests were written for {manifests} of the replaced files"
        ));
    }
    s
}

fn forward_to_child(sig: i32) {
    for _ in 0..2000 {
        if !SPAWNING.load(SeqCst) || CHILD.load(SeqCst) != 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let pid = CHILD.load(SeqCst);
    if let (Some(pid), Some(sig)) = (
        rustix::process::Pid::from_raw(pid),
        rustix::process::Signal::from_named_raw(sig),
    ) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}
