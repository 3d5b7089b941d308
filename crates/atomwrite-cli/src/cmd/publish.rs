//! `atomwrite publish [OPTS] [--keep N] [--expect V] [--from FILE | --dir DIR] DST`: a new
//! version under `DST.versions/`, then an atomic swap of the `DST` symlink.

use std::path::{Path, PathBuf};

use atomwrite::destination::PublishInput;
use atomwrite::{Destination, Published, Publisher};
use clap::Args;

use crate::cli::CommonOpts;
use crate::common::{CmdResult, EXIT_OK, Failure};
use crate::{render, signals};

pub const PUBLISH_EXAMPLES: &str = "\
DST becomes a symlink to DST.versions/vNNNNNNNNNN[.ext] (relative target); readers just open DST.
A DST that is still a regular file (or directory) is migrated into the first version.
Publishers of one DST are serialized by an flock on DST.versions/.lock.

Examples:
  make_report | atomwrite publish --keep 7 reports/daily.csv
  V=$(atomwrite latest reports/daily.csv | cut -d' ' -f1)
  make_report | atomwrite publish --expect \"$V\" reports/daily.csv   # exit 3 if someone published first
  atomwrite publish --dir build/site --keep 3 /srv/www/site          # a whole tree, one version";

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub opts: CommonOpts,
    /// After the swap keep only the N newest versions of the history (the new one and the one it
    /// replaced are always kept; versions above the current one, e.g. after a rollback by hand,
    /// are never removed); also removes the leftovers of interrupted publishes.
    #[arg(long, value_name = "N", value_parser = parse_keep)]
    pub keep: Option<usize>,
    /// Wait at most DUR (e.g. 30s, 5m) for another publisher of DST; then publish nothing and exit
    /// 3. Default: wait as long as it takes (Ctrl-C stops the wait at once).
    #[arg(long, value_name = "DUR", value_parser = crate::cli::parse_duration)]
    pub wait: Option<std::time::Duration>,
    /// Compare-and-swap: publish only if the current version is V (as `atomwrite latest` prints
    /// it; 0 = nothing published yet). Otherwise publish nothing and exit 3.
    #[arg(long, value_name = "V")]
    pub expect: Option<u64>,
    /// Read the contents from FILE instead of stdin.
    #[arg(long, value_name = "FILE", conflicts_with = "dir")]
    pub from: Option<PathBuf>,
    /// Publish the directory tree DIR as one version (files and directories made durable
    /// bottom-up before the pointer swap).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Refuse to publish an empty input (stdin or --from): exit 1, nothing published.
    #[arg(long, conflicts_with = "dir")]
    pub no_empty: bool,
    /// The pointer: a symlink to the current version.
    pub dst: PathBuf,
}

/// `--keep N`: at least 1 (keeping nothing would remove the version just published).
pub fn parse_keep(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (the current version is always kept)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("`{s}`: {e}")),
    }
}

/// The publisher these flags describe (also used by `run --publish`).
pub fn publisher(
    opts: &CommonOpts,
    keep: Option<usize>,
    expect: Option<u64>,
    wait: Option<std::time::Duration>,
    dst: &Path,
) -> Publisher {
    let mut p = Publisher::new().options(opts.to_options());
    if let Some(k) = keep {
        p = p.keep(k);
    }
    if let Some(v) = expect {
        p = p.expect(v);
    }
    if let Some(d) = wait {
        p = p.wait_timeout(d);
    }
    if !opts.quiet && !opts.json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let dst = dst.to_path_buf();
        p = p.on_wait(move |w| {
            let who = match (w.holder_pid, &w.holder_command) {
                (Some(pid), Some(cmd)) => format!(" (pid {pid}: {cmd})"),
                (Some(pid), None) => format!(" (pid {pid})"),
                _ => String::new(),
            };
            eprintln!(
                "atomwrite: waiting for another publisher of `{}`{who}; Ctrl-C to give up",
                dst.display()
            );
        });
    }
    p
}

pub fn run(a: PublishArgs) -> CmdResult {
    let dst = super::open_dest(&a.dst)?;
    super::refuse_unsupported(&a.opts, false, &dst)?;
    let caps = dst.capabilities();
    if a.dir.is_some() && !caps.dirs {
        return Err(Failure::usage(format!(
            "--dir does not apply to `{dst}` ({} store): it cannot make many files visible at \
             once; publish one archive (e.g. a tar file) instead",
            dst.store().as_str()
        )));
    }
    if a.wait.is_some() && !caps.lock_wait {
        return Err(Failure::usage(format!(
            "--wait does not apply to `{dst}` ({} store): its publishers are ordered by \
             compare-and-swap, without waiting (use --expect)",
            dst.store().as_str()
        )));
    }
    let p = publisher(&a.opts, a.keep, a.expect, a.wait, &a.dst);
    signals::target(dst.path());
    let published = match &a.dir {
        Some(dir) => dst.publish(PublishInput::Dir(dir), &p)?,
        None => publish_input(&a, &dst, p)?,
    };
    signals::COMMITTED.store(true, std::sync::atomic::Ordering::SeqCst);
    render::published(&a.opts, &published);
    Ok(EXIT_OK)
}

/// Publishes stdin or `--from FILE` (a first version gets the file's mode, like `cp`).
fn publish_input(a: &PublishArgs, dst: &Destination, p: Publisher) -> Result<Published, Failure> {
    let input = super::open_input(a.from.as_deref(), " (use --dir to publish a tree)")?;
    if a.from.is_none() {
        crate::progress::stdin_notice(dst.display(), a.opts.quiet);
    }
    let p = match input.mode {
        Some(m) => p.source_mode(m),
        None => p,
    };
    let flags = crate::progress::Flags {
        force: a.opts.progress,
        quiet: a.opts.quiet,
    };
    let mut bar = crate::progress::Progress::bytes(input.size, flags, &dst.file_name());
    let mut guard = super::NoEmpty::new(bar.wrap(input.reader), a.no_empty);
    let r = dst.publish(PublishInput::Reader(&mut guard), &p);
    let refused = guard.refused;
    drop(guard);
    bar.finish();
    match r {
        Ok(p) => Ok(p),
        Err(_) if refused => Err(super::write::empty_refused(dst.display(), &input.name)),
        Err(e) => Err(e.into()),
    }
}
