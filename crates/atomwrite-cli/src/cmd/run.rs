//! `atomwrite run [OPTS] [--publish] DST -- CMD ARGS`: CMD's stdout becomes DST (or a new
//! version of DST) only if CMD exits 0.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use atomwrite::{AtomicFile, PendingVersion};
use clap::Args;

use crate::cli::WriteOpts;
use crate::cmd::publish;
use crate::common::{self, CmdResult, EXIT_OK, Failure};
use crate::signals;

/// Exit code when atomwrite itself fails (as `env`, `timeout`, `nice` do).
pub const EXIT_RUN_FAILED: i32 = 125;

pub const RUN_EXAMPLES: &str = "\
CMD gets ATOMWRITE_RUN_ID and ATOMWRITE_STARTED_AT (RFC 3339, UTC) in its environment; the
receipt and the manifest (--manifest) record the same run id. CMD's stdin and stderr are
inherited. Exit code: 0 when committed; CMD's own status when it fails (128+N if killed by
signal N), nothing committed; 126/127 when CMD cannot be executed / is not found; 125 when
atomwrite itself fails; 3 when --no-clobber finds DST already there (checked before CMD
starts); 1 when --no-empty refuses an empty output of a successful CMD.
SIGINT/SIGTERM/SIGHUP are forwarded to CMD and nothing is committed.
With --publish the publisher lock is held (and --expect checked) before CMD starts.
Unlike `CMD | atomwrite write DST` (a pipe carries no exit status), run knows CMD's status.

Examples:
  atomwrite run names.txt -- sort -u names.txt   # in-place filter: a failed sort changes nothing
  atomwrite run --manifest --no-empty out/daily.csv -- psql -Atc 'select * from daily'
  atomwrite run --publish --keep 7 reports/daily.json -- ./make_report --date today
  atomwrite run out/stamp.txt -- sh -c 'echo \"built by $ATOMWRITE_RUN_ID at $ATOMWRITE_STARTED_AT\"'";

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub opts: WriteOpts,
    /// Publish CMD's output as a new version of DST (see `atomwrite publish`) instead of
    /// replacing DST.
    #[arg(long)]
    pub publish: bool,
    /// With --publish: keep only the N newest versions.
    #[arg(long, value_name = "N", requires = "publish", value_parser = publish::parse_keep)]
    pub keep: Option<usize>,
    /// With --publish: wait at most DUR for another publisher, then exit 3 (CMD never runs).
    #[arg(long, value_name = "DUR", requires = "publish", value_parser = crate::cli::parse_duration)]
    pub wait: Option<std::time::Duration>,
    /// With --publish: compare-and-swap against version V (checked before CMD starts).
    #[arg(long, value_name = "V", requires = "publish")]
    pub expect: Option<u64>,
    /// Refuse to commit when CMD exits 0 but prints nothing: exit 1, DST unchanged.
    #[arg(long)]
    pub no_empty: bool,
    /// The destination (or URL).
    pub dst: PathBuf,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<OsString>,
}

enum Sink {
    File(Box<AtomicFile>),
    Version(Box<PendingVersion>),
}

impl Sink {
    fn file(&mut self) -> &mut AtomicFile {
        match self {
            Sink::File(f) => f,
            Sink::Version(v) => v.file(),
        }
    }
}

pub fn run(a: RunArgs) -> CmdResult {
    if crate::remote::is_url(&a.dst) {
        return crate::remote::run(a);
    }
    inner(&a)
}

fn own_failure(f: Failure) -> Failure {
    Failure {
        code: EXIT_RUN_FAILED,
        ..f
    }
}

fn inner(a: &RunArgs) -> CmdResult {
    if a.publish && a.opts.no_clobber {
        return Err(own_failure(Failure::usage(
            "--no-clobber does not apply with --publish; use --expect 0",
        )));
    }
    let run_id = a
        .opts
        .run_id
        .clone()
        .unwrap_or_else(|| atomwrite::process_run_id().to_string());
    let mut wopts = a.opts.clone();
    wopts.run_id = Some(run_id.clone());
    let started = std::time::SystemTime::now();

    // Open the destination first: a bad DST (or a lost --expect) fails before CMD runs.
    // The library registers a named temp for removal on a signal as soon as it exists.
    let mut sink = if a.publish {
        let p = publish::publisher(&wopts, a.keep, a.expect, a.wait, &a.dst);
        Sink::Version(Box::new(
            p.begin(&a.dst).map_err(|e| own_failure(e.into()))?,
        ))
    } else {
        Sink::File(Box::new(
            common::open_tracked(&wopts.to_options(), &a.dst).map_err(|e| own_failure(e.into()))?,
        ))
    };

    if a.opts.no_clobber
        && let Sink::File(f) = &sink
    {
        // Before CMD starts: its work would be lost anyway. The commit's create-only check
        // stays the final word.
        f.check_vacant().map_err(|e| {
            let mut f = Failure::from(e);
            f.message.push_str("; CMD was not run");
            f
        })?;
    }

    let dst_shown = a.dst.display().to_string();
    let (mut child, shown) = spawn_producer(&a.cmd, &run_id, started, &dst_shown)?;
    signals::CHILD.store(child.id() as i32, Ordering::SeqCst);
    let mut out = child.stdout.take().expect("stdout is piped");
    let copied = sink
        .file()
        .copy_from(&mut out, Path::new("<stdout of CMD>"));
    drop(out);
    if copied.is_err() {
        // Our own failure (disk full, ...): CMD's work cannot be kept; stop it.
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&child),
            rustix::process::Signal::TERM,
        );
    }
    let status = child.wait();
    signals::CHILD.store(0, Ordering::SeqCst);
    if let Err(e) = copied {
        return Err(own_failure(e.into()));
    }
    let status = status.map_err(|e| {
        own_failure(Failure::failed(format!(
            "failed to wait for `{shown}`: {e}"
        )))
    })?;
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        let (code, how) = match (status.code(), status.signal()) {
            (Some(c), _) => (c, format!("exited with status {c}")),
            (None, Some(s)) => (128 + s, format!("was killed by signal {s}")),
            _ => (EXIT_RUN_FAILED, "failed".to_string()),
        };
        drop(sink);
        return Err(Failure {
            code,
            message: format!(
                "`{shown}` {how}; nothing was committed to `{}`",
                a.dst.display()
            ),
            error: None,
        });
    }
    if a.no_empty && sink.file().is_empty() {
        drop(sink);
        return Err(super::write::empty_refused(
            &dst_shown,
            Path::new(&format!("the output of `{shown}`")),
        ));
    }
    match sink {
        Sink::File(f) => {
            let receipt = common::commit_guarded(*f).map_err(|e| {
                let f = Failure::from(e);
                // --no-clobber lost to a writer that came after the precheck: a conflict
                // (exit 3), as for `write`.
                if a.opts.no_clobber && f.code == common::EXIT_CONFLICT {
                    f
                } else {
                    own_failure(f)
                }
            })?;
            common::after_commit(&wopts, &receipt).map_err(own_failure)?;
            common::report_receipt(&a.opts, &receipt);
        }
        Sink::Version(v) => {
            let p = publish::commit_guarded(*v).map_err(|e| own_failure(e.into()))?;
            publish::report_published(&a.opts, &p);
        }
    }
    Ok(EXIT_OK)
}

/// Starts CMD with its stdout piped and `ATOMWRITE_RUN_ID` / `ATOMWRITE_STARTED_AT` in its
/// environment; returns the child and the command line as shown in messages. Exit codes as
/// `env(1)`: 127 when CMD is not found, 126 when it cannot be executed, else 125. `dst` is
/// named in the error ("nothing was written to ..."). Shared by the local and URL paths.
pub fn spawn_producer(
    cmd: &[std::ffi::OsString],
    run_id: &str,
    started: std::time::SystemTime,
    dst: &str,
) -> Result<(std::process::Child, String), Failure> {
    let prog = &cmd[0];
    let shown = cmd
        .iter()
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    signals::SPAWNING.store(true, Ordering::SeqCst);
    let spawned = Command::new(prog)
        .args(&cmd[1..])
        .env("ATOMWRITE_RUN_ID", run_id)
        .env("ATOMWRITE_STARTED_AT", atomwrite::rfc3339(started))
        .stdout(Stdio::piped())
        .spawn();
    if let Ok(c) = &spawned {
        // Published before SPAWNING is cleared: a signal received meanwhile reaches CMD.
        signals::CHILD.store(c.id() as i32, Ordering::SeqCst);
    }
    signals::SPAWNING.store(false, Ordering::SeqCst);
    match spawned {
        Ok(c) => Ok((c, shown)),
        Err(e) => {
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                std::io::ErrorKind::PermissionDenied => 126,
                _ => EXIT_RUN_FAILED,
            };
            Err(Failure {
                code,
                message: format!(
                    "failed to run `{}`: {e}; nothing was written to `{dst}`",
                    prog.to_string_lossy()
                ),
                error: None,
            })
        }
    }
}
