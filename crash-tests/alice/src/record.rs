//! Run a program under strace and turn the trace into an [`OpLog`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::oplog::{Fs, OpLog};
use crate::strace::{ParseStats, parse_calls, replay, strace_args};

/// What to run.
#[derive(Clone, Debug)]
pub struct Run {
    /// Program to trace.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Extra environment variables.
    pub envs: Vec<(OsString, OsString)>,
    /// File to connect to stdin (else /dev/null).
    pub stdin: Option<PathBuf>,
    /// Working directory.
    pub cwd: PathBuf,
}

/// A recorded run.
#[derive(Clone, Debug)]
pub struct Recording {
    /// The operation log (ends with an `Exit` op carrying the exit status).
    pub log: OpLog,
    /// Final no-crash image according to the model.
    pub live: Fs,
    /// Parser statistics.
    pub stats: ParseStats,
    /// Exit status of the traced program (-1 if killed by a signal).
    pub status: i32,
    /// Differences between the model's final image and the real directory afterwards
    /// (must be empty: otherwise the trace was not understood).
    pub fidelity: Vec<String>,
    /// stderr of the traced program.
    pub stderr: String,
}

/// Is a working `strace` on PATH (and allowed to ptrace)?
pub fn strace_available() -> Result<(), String> {
    let out = Command::new("strace")
        .args(["-qq", "-e", "trace=none", "true"])
        .output()
        .map_err(|e| format!("strace not runnable: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "strace cannot trace here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Snapshot `root`, run `run` under strace, parse and replay the trace.
pub fn record(root: &Path, run: &Run) -> Result<Recording, String> {
    let root =
        std::fs::canonicalize(root).map_err(|e| format!("canonicalize {}: {e}", root.display()))?;
    let initial = Fs::snapshot(&root).map_err(|e| format!("snapshot {}: {e}", root.display()))?;
    let trace_dir = tempdir_outside(&root)?;
    let trace_file = trace_dir.join("strace.out");
    let stdin = match &run.stdin {
        Some(p) => Stdio::from(
            std::fs::File::open(p).map_err(|e| format!("open stdin {}: {e}", p.display()))?,
        ),
        None => Stdio::null(),
    };
    let out = Command::new("strace")
        .args(strace_args(&trace_file))
        .arg("--")
        .arg(&run.program)
        .args(&run.args)
        .envs(run.envs.iter().map(|(k, v)| (k, v)))
        .current_dir(&run.cwd)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("spawn strace: {e}"))?;
    let status = out.status.code().unwrap_or(-1);
    let text = std::fs::read_to_string(&trace_file).map_err(|e| format!("read trace: {e}"))?;
    let _ = std::fs::remove_dir_all(&trace_dir);
    let calls = parse_calls(&text).map_err(|e| e.to_string())?;
    let cwd = std::fs::canonicalize(&run.cwd).unwrap_or_else(|_| run.cwd.clone());
    let (mut log, live, stats) = replay(&calls, &root, initial, &cwd).map_err(|e| e.to_string())?;
    log.events.push(crate::oplog::Event {
        op: crate::oplog::Op::Exit { code: status },
        source: format!("process exited with {status}"),
    });
    let fidelity = live
        .diff_against_disk(&root)
        .map_err(|e| format!("re-snapshot {}: {e}", root.display()))?;
    Ok(Recording {
        log,
        live,
        stats,
        status,
        fidelity,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn tempdir_outside(root: &Path) -> Result<PathBuf, String> {
    let base = std::env::temp_dir();
    for i in 0..1000u32 {
        let p = base.join(format!("alice-trace-{}-{}", std::process::id(), i));
        if p.starts_with(root) {
            continue;
        }
        if std::fs::create_dir(&p).is_ok() {
            return Ok(p);
        }
    }
    Err("cannot create a trace directory".into())
}
