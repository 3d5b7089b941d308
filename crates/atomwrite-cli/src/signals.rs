//! SIGINT/SIGTERM/SIGHUP during a write: remove the named temp (an anonymous `O_TMPFILE` inode
//! disappears by itself when the process exits), never touch the destination, exit non-zero.
//!
//! A dedicated thread receives the signals (no work in async-signal context). It takes the
//! commit lock first, so a signal that arrives during `commit()` waits for the commit to finish
//! or fail: the destination is then the old or the new file, never anything else.

use std::path::PathBuf;
use std::sync::Mutex;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Set once a commit has returned successfully.
pub static COMMITTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Held by the main thread while it commits; holds the named temp to remove, if any.
pub static ACTIVE: Mutex<Option<PathBuf>> = Mutex::new(None);

pub fn install() {
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            forward_to_child(sig);
            let guard = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = guard.as_ref() {
                let _ = std::fs::remove_file(p);
            }
            // A progress bar may be half drawn on this terminal line: start a clean one.
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprint!("\r\x1b[2K");
            }
            // Waits for a swap in progress (and its fsync) to finish, then tells the truth.
            let replaced = atomwrite::interrupt::critical(atomwrite::interrupt::replaced);
            if !replaced.is_empty() {
                let list: Vec<String> = replaced
                    .iter()
                    .map(|p| format!("`{}`", p.display()))
                    .collect();
                eprintln!(
                    "atomwrite: interrupted by signal {sig} after {} was replaced",
                    list.join(", ")
                );
            } else if COMMITTED.load(std::sync::atomic::Ordering::SeqCst) {
                eprintln!("atomwrite: interrupted by signal {sig} after the commit completed");
            } else {
                eprintln!("atomwrite: interrupted by signal {sig}; nothing was replaced");
            }
            std::process::exit(128 + sig);
        }
    });
}

/// Creates a temp and registers it with the signal thread atomically: the lock is held while
/// `open` runs, so a signal arriving just after the named temp was created (and before it
/// would otherwise have been registered) still finds it and removes it.
pub fn open_tracked<T, E>(
    open: impl FnOnce() -> Result<T, E>,
    temp_of: impl FnOnce(&T) -> Option<PathBuf>,
) -> Result<T, E> {
    let mut guard = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    let t = open()?;
    *guard = temp_of(&t);
    Ok(t)
}

/// Registers the named temp of the write in progress (None when the temp is anonymous).
pub fn set_active(p: Option<PathBuf>) {
    *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = p;
}

/// The pid of the child run by `atomwrite run` (0: none). Signals are forwarded to it before
/// this process exits, and nothing is committed.
pub static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Set while `run` is starting its CMD: a signal that arrives then waits (briefly) for the
/// child's pid, so it is forwarded even if it beat the parent's bookkeeping.
pub static SPAWNING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn forward_to_child(sig: i32) {
    use std::sync::atomic::Ordering::SeqCst;
    for _ in 0..2000 {
        if !SPAWNING.load(SeqCst) || CHILD.load(SeqCst) != 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let pid = CHILD.load(std::sync::atomic::Ordering::SeqCst);
    if let (Some(pid), Some(sig)) = (
        rustix::process::Pid::from_raw(pid),
        rustix::process::Signal::from_named_raw(sig),
    ) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}
