//! What every command shares: options → library `Options`, receipts and errors → output and
//! exit codes.

use std::io::Write;

use atomwrite::{AtomicFile, Durability, Options, Receipt, SymlinkPolicy};

use crate::cli::{DurabilityArg, WriteOpts};
use crate::signals;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_CONFLICT: i32 = 3;

/// A failed command: what to print and which exit code to use.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
    pub error: Option<atomwrite::Error>,
}

impl Failure {
    pub fn usage(msg: impl Into<String>) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: msg.into(),
            error: None,
        }
    }

    pub fn failed(msg: impl Into<String>) -> Self {
        Failure {
            code: EXIT_FAILURE,
            message: msg.into(),
            error: None,
        }
    }
}

impl From<atomwrite::Error> for Failure {
    fn from(e: atomwrite::Error) -> Self {
        let code = if e.is_conflict() {
            EXIT_CONFLICT
        } else {
            EXIT_FAILURE
        };
        Failure {
            code,
            message: e.to_string(),
            error: Some(e),
        }
    }
}

pub type CmdResult = Result<i32, Failure>;

impl WriteOpts {
    /// The library options these flags mean.
    pub fn to_options(&self) -> Options {
        let mut o = Options::new()
            .durability(match self.durability {
                DurabilityArg::Full => Durability::Full,
                DurabilityArg::Integrity => Durability::Integrity,
                DurabilityArg::None => Durability::None,
            })
            .no_clobber(self.no_clobber)
            .symlinks(if self.no_follow {
                SymlinkPolicy::Replace
            } else {
                SymlinkPolicy::Follow
            })
            .create_dirs(!self.no_create_dirs);
        if let Some(m) = self.mode {
            o = o.mode(m);
        }
        if let Some(id) = &self.run_id {
            o = o.run_id(id.clone());
        }
        o
    }
}

/// Opens an [`AtomicFile`] for `dst` and announces `dst` to the signal report. The library
/// registers its named temp (if any) for removal on a signal from the instant it exists.
pub fn open_tracked(
    opts: &atomwrite::Options,
    dst: &std::path::Path,
) -> atomwrite::Result<AtomicFile> {
    let f = opts.open(dst)?;
    signals::target(f.destination());
    Ok(f)
}

/// Commits. The library runs the rename and directory fsync inside
/// `atomwrite::interrupt::critical`, so a signal report waits for the outcome and states it.
pub fn commit_guarded(file: AtomicFile) -> atomwrite::Result<Receipt> {
    file.commit()
}

/// What follows a successful commit: the sidecar manifest when `--manifest` was given.
pub fn after_commit(opts: &WriteOpts, r: &Receipt) -> Result<(), Failure> {
    if opts.manifest {
        atomwrite::write_manifest(&r.path, r, &opts.to_options())?;
    }
    Ok(())
}

/// The JSON shape of a receipt (stable: documented in README).
pub fn receipt_json(r: &Receipt) -> serde_json::Value {
    serde_json::json!({
        "path": r.path,
        "size": r.size,
        "sha256": r.sha256,
        "written_at": r.written_at_rfc3339(),
        "run_id": r.run_id,
        "durability": r.durability,
        "owner_changed": r.owner_changed,
    })
}

/// `; owner changed from uid A gid B to uid C gid D (set-id bits dropped)`, or nothing.
fn owner_change_text(r: &Receipt) -> String {
    match &r.owner_changed {
        None => String::new(),
        Some(c) => format!(
            "; owner changed from uid {} gid {} to uid {} gid {}{}",
            c.from_uid,
            c.from_gid,
            c.to_uid,
            c.to_gid,
            if c.setid_dropped {
                ", set-id bits dropped"
            } else {
                ""
            }
        ),
    }
}

/// Prints one JSON value on stdout; a closed pipe is not an error.
pub fn print_json(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
}

/// Prints the outcome of a write: JSON receipt, a short line, or nothing (`-q`).
pub fn report_receipt(opts: &WriteOpts, r: &Receipt) {
    if opts.json {
        print_json(&receipt_json(r));
    } else if !opts.quiet {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "atomwrite: wrote {} ({} bytes, sha256 {}, durability {}{})",
            r.path.display(),
            r.size,
            r.sha256.as_deref().unwrap_or("-"),
            r.durability,
            owner_change_text(r)
        );
    }
}

/// The JSON shape of an error.
pub fn error_json(f: &Failure) -> serde_json::Value {
    let mut v = serde_json::json!({ "error": { "message": f.message, "exit_code": f.code } });
    if let Some(e) = &f.error {
        v["error"]["operation"] = serde_json::json!(e.op().as_str());
        v["error"]["path"] = serde_json::json!(e.path());
        if let Some(p2) = e.path2() {
            v["error"]["path2"] = serde_json::json!(p2);
        }
        v["error"]["kind"] = serde_json::json!(format!("{:?}", e.kind()));
        if let Some(n) = e.raw_os_error() {
            v["error"]["errno"] = serde_json::json!(n);
        }
        if let Some(o) = e.batch_outcome() {
            v["error"]["replaced"] = serde_json::json!(o.replaced());
            v["error"]["not_replaced"] = serde_json::json!(o.not_replaced());
        }
    }
    v
}

/// Prints a failure: one line on stderr (always), and the JSON object on stdout in JSON mode.
pub fn report_failure(f: &Failure, json: bool) {
    eprintln!("atomwrite: {}", f.message);
    if json {
        print_json(&error_json(f));
    }
}
