//! `atomwrite run [OPTS] [--publish] DST -- CMD ARGS`: CMD's stdout becomes DST (or a new
//! version of DST) only if CMD exits 0.

use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;

use atomwrite::Destination;
use atomwrite::destination::PublishInput;
use clap::Args;

use crate::cli::WriteOpts;
use crate::cmd::publish;
use crate::common::{CmdResult, EXIT_CONFLICT, EXIT_OK, Failure};
use crate::{render, signals};

/// Exit code when atomwrite itself fails (as `env`, `timeout`, `nice` do).
pub const EXIT_RUN_FAILED: i32 = 125;

pub const RUN_EXAMPLES: &str = "\
CMD gets ATOMWRITE_RUN_ID and ATOMWRITE_STARTED_AT (RFC 3339, UTC) in its environment; the
receipt and the manifest (--manifest) record the same run id. CMD's stdin and stderr are
inherited. Exit code: 0 when committed; CMD's own status when it fails (128+N if killed by
signal N), nothing committed; 126/127 when CMD cannot be executed / is not found; 125 when
atomwrite itself fails; 3 when --no-clobber finds DST already there, or with --publish when
--expect loses the compare-and-swap or --wait times out (all checked before CMD starts); 1 when --no-empty refuses an empty output of a successful CMD.
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

/// CMD's stdout as the input of a write or publish. CMD is started by the first read, so a
/// destination that fails before reading — a bad DST, a lost `--expect`, a `--wait` that timed
/// out, `--no-clobber` finding DST there — never runs it. At the end of its output CMD is
/// waited for, and a failed status fails the read: the write is abandoned before anything
/// becomes visible, on every backend.
struct Producer<'a> {
    cmd: &'a [OsString],
    run_id: &'a str,
    started: std::time::SystemTime,
    dst: &'a str,
    child: Option<Child>,
    out: Option<ChildStdout>,
    shown: String,
    status: Option<io::Result<ExitStatus>>,
    spawn_failure: Option<Failure>,
}

impl Producer<'_> {
    fn start(&mut self) -> io::Result<()> {
        match spawn_producer(self.cmd, self.run_id, self.started, self.dst) {
            Ok((mut c, shown)) => {
                self.out = c.stdout.take();
                self.child = Some(c);
                self.shown = shown;
                Ok(())
            }
            Err(f) => {
                let e = io::Error::other(f.message.clone());
                self.spawn_failure = Some(f);
                Err(e)
            }
        }
    }

    /// CMD's status: waited for at the end of its output, or now (stopping it first) when the
    /// write ended before its output did (our own failure). The flag says CMD was stopped here:
    /// its status (killed by SIGTERM) is then our doing, not CMD's failure.
    fn finish(&mut self) -> Option<(io::Result<ExitStatus>, bool)> {
        let mut child = self.child.take()?;
        let stopped = self.status.is_none();
        if stopped {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&child),
                rustix::process::Signal::TERM,
            );
            self.out = None;
            self.status = Some(child.wait());
            signals::CHILD.store(0, Ordering::SeqCst);
        }
        self.status.take().map(|st| (st, stopped))
    }
}

impl Read for Producer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.child.is_none() {
            if self.spawn_failure.is_some() || self.status.is_some() {
                return Ok(0);
            }
            self.start()?;
        }
        let n = match self.out.as_mut() {
            Some(out) => out.read(buf)?,
            None => 0,
        };
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        if self.status.is_none() {
            self.out = None;
            let st = self.child.as_mut().map(Child::wait).expect("started");
            signals::CHILD.store(0, Ordering::SeqCst);
            self.status = Some(st);
        }
        match &self.status {
            Some(Ok(st)) if st.success() => Ok(0),
            Some(Ok(st)) => Err(io::Error::other(format!("the command failed ({st})"))),
            Some(Err(e)) => Err(io::Error::new(e.kind(), e.to_string())),
            None => unreachable!("set above"),
        }
    }
}

enum Outcome {
    Wrote(atomwrite::Receipt),
    Published(Box<atomwrite::Published>),
}

pub fn run(a: RunArgs) -> CmdResult {
    if a.publish && a.opts.no_clobber {
        return Err(own_failure(Failure::usage(
            "--no-clobber does not apply with --publish; use --expect 0",
        )));
    }
    let dst = super::open_dest(&a.dst).map_err(own_failure)?;
    super::refuse_unsupported(&a.opts, a.opts.no_follow, &dst).map_err(own_failure)?;
    if a.publish && a.wait.is_some() && !dst.capabilities().lock_wait {
        return Err(own_failure(Failure::usage(format!(
            "--wait does not apply to `{dst}`: its publishers are ordered by compare-and-swap, \
             without waiting (use --expect)"
        ))));
    }
    let run_id = a
        .opts
        .run_id
        .clone()
        .unwrap_or_else(|| atomwrite::process_run_id().to_string());
    let mut wopts = a.opts.clone();
    wopts.run_id = Some(run_id.clone());
    let mut producer = Producer {
        cmd: &a.cmd,
        run_id: &run_id,
        started: std::time::SystemTime::now(),
        dst: dst.display(),
        child: None,
        out: None,
        shown: String::new(),
        status: None,
        spawn_failure: None,
    };
    signals::target(dst.path());
    let mut guard = super::NoEmpty::new(&mut producer, a.no_empty);
    let result = if a.publish {
        let p = publish::publisher(&wopts, a.keep, a.expect, a.wait, &a.dst);
        dst.publish(PublishInput::Reader(&mut guard), &p)
            .map(|p| Outcome::Published(Box::new(p)))
    } else {
        dst.write_named(
            &mut guard,
            Path::new("<stdout of CMD>"),
            &wopts.to_options(),
        )
        .map(Outcome::Wrote)
    };
    let refused = guard.refused;
    conclude(&a, &wopts, &dst, &mut producer, result, refused)
}

fn own_failure(f: Failure) -> Failure {
    Failure {
        code: EXIT_RUN_FAILED,
        ..f
    }
}

/// The destination failed before CMD's output was read, so CMD never ran.
fn not_run(a: &RunArgs, result: atomwrite::Result<Outcome>) -> Failure {
    let e = match result {
        Err(e) => e,
        Ok(_) => unreachable!("a write reads its input"),
    };
    let mut f = Failure::from(e);
    f.message.push_str("; CMD was not run");
    keep_conflict(a, f)
}

/// A conflict the flags asked to detect keeps exit 3, as for `write --no-clobber` and
/// `publish --expect/--wait`: --no-clobber finding DST there, a lost --expect, a --wait that
/// timed out. Any other failure of atomwrite's own is 125.
fn keep_conflict(a: &RunArgs, f: Failure) -> Failure {
    if (a.opts.no_clobber || a.publish) && f.code == EXIT_CONFLICT {
        f
    } else {
        own_failure(f)
    }
}

/// CMD failed: its own status (128+N for signal N), nothing committed.
fn check_status(
    status: io::Result<ExitStatus>,
    shown: &str,
    dst: &Destination,
) -> Result<(), Failure> {
    let status = status.map_err(|e| {
        own_failure(Failure::failed(format!(
            "failed to wait for `{shown}`: {e}"
        )))
    })?;
    if status.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    let (code, how) = match (status.code(), status.signal()) {
        (Some(c), _) => (c, format!("exited with status {c}")),
        (None, Some(s)) => (128 + s, format!("was killed by signal {s}")),
        _ => (EXIT_RUN_FAILED, "failed".to_string()),
    };
    Err(Failure {
        code,
        message: format!("`{shown}` {how}; nothing was committed to `{dst}`"),
        error: None,
    })
}

/// After the write: CMD's status decides first, then the write's own outcome.
fn conclude(
    a: &RunArgs,
    wopts: &WriteOpts,
    dst: &Destination,
    producer: &mut Producer<'_>,
    result: atomwrite::Result<Outcome>,
    refused: bool,
) -> CmdResult {
    if let Some(f) = producer.spawn_failure.take() {
        return Err(f);
    }
    let Some((status, stopped)) = producer.finish() else {
        // CMD never started: the destination failed first.
        return Err(not_run(a, result));
    };
    if stopped && let Err(e) = result {
        // The write failed before CMD's output ended (ENOSPC, EIO, ...) and CMD was stopped
        // because of it: that failure is the truth to report, not the SIGTERM we sent.
        return Err(write_failure(a, e));
    }
    check_status(status, &producer.shown, dst)?;
    let shown = &producer.shown;
    match result {
        Ok(Outcome::Wrote(r)) => {
            if wopts.manifest {
                dst.write_manifest(&r, &wopts.to_options())
                    .map_err(|e| own_failure(e.into()))?;
            }
            render::receipt(&a.opts, &r);
        }
        Ok(Outcome::Published(p)) => {
            signals::COMMITTED.store(true, Ordering::SeqCst);
            render::published(&a.opts, &p);
        }
        Err(_) if refused => {
            return Err(super::write::empty_refused(
                dst.display(),
                Path::new(&format!("the output of `{shown}`")),
            ));
        }
        Err(e) => return Err(write_failure(a, e)),
    }
    Ok(EXIT_OK)
}

/// The write (or publish) itself failed: exit 125, or 3 for a conflict (see [`keep_conflict`]).
fn write_failure(a: &RunArgs, e: atomwrite::Error) -> Failure {
    keep_conflict(a, Failure::from(e))
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
    // Shown as a shell would read it back: word boundaries and quotes kept.
    let shown = cmd
        .iter()
        .map(|s| atomwrite::shell_quoted(&s.to_string_lossy()))
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
