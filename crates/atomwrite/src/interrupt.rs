//! Interrupt support (minimal; extended by the batch work): cooperative cancellation and a record
//! of what this process made visible.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static CANCEL: AtomicBool = AtomicBool::new(false);
static REPLACED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Asks long operations (waiting for a lock, a batch's renames) to stop at their next check.
pub fn request_cancel() {
    CANCEL.store(true, Ordering::SeqCst);
}

/// Whether [`request_cancel`] was called.
pub fn cancel_requested() -> bool {
    CANCEL.load(Ordering::SeqCst)
}

/// Records that new contents became visible at `path`.
pub fn note_replaced(path: &Path) {
    REPLACED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(path.to_path_buf());
}

/// What this process made visible so far.
pub fn replaced() -> Vec<PathBuf> {
    REPLACED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

static CRITICAL: Mutex<()> = Mutex::new(());

/// Runs `f` (a rename and what must follow it) so that a signal report waits for it.
pub fn critical<T>(f: impl FnOnce() -> T) -> T {
    let _g = CRITICAL.lock().unwrap_or_else(|e| e.into_inner());
    f()
}
