//! What every command shares: options → library `Options`, receipts and errors → output and
//! exit codes.

use std::io::Write;

use atomwrite::{Durability, Options, SymlinkPolicy};

use crate::cli::{CommonOpts, DurabilityArg, WriteOpts};

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

impl CommonOpts {
    /// The library options these flags mean.
    pub fn to_options(&self) -> Options {
        let mut o = Options::new()
            .durability(match self.durability {
                DurabilityArg::Full => Durability::Full,
                DurabilityArg::Integrity => Durability::Integrity,
                DurabilityArg::None => Durability::None,
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

    /// Whether the one-line success summary goes to stderr (see [`summary_wanted`]).
    pub fn summary_wanted(&self) -> bool {
        !self.json && summary_wanted(self.quiet, self.verbose)
    }
}

impl WriteOpts {
    /// The library options these flags mean.
    pub fn to_options(&self) -> Options {
        self.common
            .to_options()
            .no_clobber(self.no_clobber)
            .symlinks(if self.no_follow {
                SymlinkPolicy::Replace
            } else {
                SymlinkPolicy::Follow
            })
    }
}

/// The one rule for success summaries on stderr, like `cp`, `install` and `sponge`: silent on
/// success unless stderr is a terminal (someone is watching) or `-v` asks for it; `-q` silences
/// it even on a terminal. Errors always print; `--json` prints its object on stdout instead.
/// So a cron job needs no `-q`.
pub fn summary_wanted(quiet: bool, verbose: bool) -> bool {
    !quiet && (verbose || std::io::IsTerminal::is_terminal(&std::io::stderr()))
}

/// Prints one JSON value on stdout; a closed pipe is not an error.
pub fn print_json(v: &serde_json::Value) {
    crate::signals::printing_outcome();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
    crate::signals::printed_outcome();
}

/// The argument a failure of the CLI's own (no library error) is about, as its message names
/// it: the first `--flag`, else the first `` `quoted` `` value or path.
pub fn named_argument(message: &str) -> Option<String> {
    let flag = message
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':' || c == '(' || c == ')')
        .find(|w| {
            w.len() > 2
                && w.starts_with("--")
                && w[2..].starts_with(|c: char| c.is_ascii_lowercase())
        });
    if let Some(f) = flag {
        return Some(f.to_string());
    }
    let mut parts = message.split('`');
    parts.next()?;
    parts.next().map(str::to_string)
}

/// The JSON shape of an error: `path` (and `operation`, `errno`, ...) for a library error,
/// `argument` for a failure of the CLI's own that names one.
pub fn error_json(f: &Failure) -> serde_json::Value {
    let mut v = serde_json::json!({ "error": { "message": f.message, "exit_code": f.code } });
    if f.error.is_none()
        && let Some(arg) = named_argument(&f.message)
    {
        v["error"]["argument"] = serde_json::json!(arg);
    }
    if let Some(e) = &f.error {
        v["error"]["operation"] = serde_json::json!(e.op().as_str());
        v["error"]["path"] = serde_json::json!(e.path());
        if let Some(p2) = e.path2() {
            v["error"]["path2"] = serde_json::json!(p2);
        }
        v["error"]["kind"] = serde_json::json!(format!("{:?}", e.kind()));
        // A refusal the library made itself (a directory where a file goes) has no OS errno,
        // but one names it exactly: give it, as the same failure from the kernel would.
        let implied = match e.kind() {
            std::io::ErrorKind::IsADirectory => Some(rustix::io::Errno::ISDIR.raw_os_error()),
            std::io::ErrorKind::NotADirectory => Some(rustix::io::Errno::NOTDIR.raw_os_error()),
            _ => None,
        };
        if let Some(n) = e.raw_os_error().or(implied) {
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
