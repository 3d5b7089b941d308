//! `atomwrite publish [OPTS] [--keep N] [--expect V] [--from FILE | --dir DIR] DST`: a new
//! version under `DST.versions/`, then an atomic swap of the `DST` symlink.

use std::io;
use std::path::{Path, PathBuf};

use atomwrite::{Published, Publisher};
use clap::Args;

use crate::cli::WriteOpts;
use crate::common::{self, CmdResult, EXIT_OK, Failure};
use crate::signals;

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
    pub opts: WriteOpts,
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
    opts: &WriteOpts,
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

/// Commits a pending version while holding the signal lock (a signal waits for the outcome).
pub fn commit_guarded(pv: atomwrite::PendingVersion) -> atomwrite::Result<Published> {
    // The library runs the swap and its directory fsync inside `interrupt::critical` and
    // records the destination as replaced: a signal report waits for them and says so.
    let r = pv.commit();
    if r.is_ok() {
        signals::COMMITTED.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    r
}

/// The JSON shape of a publish (documented in docs/freshness.md).
pub fn published_json(p: &Published) -> serde_json::Value {
    serde_json::json!({
        "dst": p.dst,
        "version": p.version,
        "previous": p.previous,
        "path": p.path,
        "size": p.manifest.size,
        "sha256": p.manifest.sha256,
        "written_at": p.manifest.written_at,
        "run_id": p.manifest.run_id,
        "migrated": p.migrated,
        "removed": p.removed,
        "removed_bytes": p.removed_bytes,
        "warnings": p.warnings,
    })
}

pub fn report_published(opts: &WriteOpts, p: &Published) {
    if opts.json {
        common::print_json(&published_json(p));
    } else if !opts.quiet {
        eprintln!(
            "atomwrite: published {} version {} ({}, {} bytes, sha256 {}){}{}",
            p.dst.display(),
            p.version,
            p.path.display(),
            p.manifest.size,
            p.manifest.sha256,
            match p.migrated {
                Some(m) => format!(
                    "; what `{}` held before became version {m}",
                    p.dst.display()
                ),
                None => String::new(),
            },
            if p.removed.is_empty() {
                String::new()
            } else {
                format!(
                    "; removed {} old path(s), {} bytes",
                    p.removed.len(),
                    p.removed_bytes
                )
            }
        );
    }
}

pub fn run(a: PublishArgs) -> CmdResult {
    if crate::remote::is_url(&a.dst) {
        if a.no_empty || a.wait.is_some() {
            return Err(Failure::usage(
                "--no-empty and --wait apply to local destinations only (an object store \
                 orders publishers by compare-and-swap, without waiting)",
            ));
        }
        return crate::remote::publish(a);
    }
    if a.opts.no_clobber {
        return Err(Failure::usage(
            "--no-clobber does not apply to publish; use --expect 0 to publish only if nothing \
             was published yet",
        ));
    }
    let p = publisher(&a.opts, a.keep, a.expect, a.wait, &a.dst);
    let published = if let Some(dir) = &a.dir {
        p.publish_dir(&a.dst, dir)?
    } else {
        let mut source_mode = None;
        let (mut input, source_name): (Box<dyn io::Read>, &Path) = match &a.from {
            Some(f) => {
                let file = atomwrite::open_source(f)?;
                let md = file
                    .metadata()
                    .map_err(|e| atomwrite::Error::new(atomwrite::Op::Inspect, f, e))?;
                if md.is_dir() {
                    return Err(Failure::usage(format!(
                        "`{}` is a directory (use --dir to publish a tree)",
                        f.display()
                    )));
                }
                // A first version gets the source's mode (never set-id, umask applied), like
                // `cp`; later versions keep the current version's.
                use std::os::unix::fs::PermissionsExt;
                source_mode = Some(md.permissions().mode());
                (Box::new(file), f.as_path())
            }
            None => {
                crate::progress::stdin_notice(&a.dst.to_string_lossy(), a.opts.quiet);
                (Box::new(io::stdin().lock()), Path::new("<stdin>"))
            }
        };
        let p = match source_mode {
            Some(m) => p.source_mode(m),
            None => p,
        };
        let mut pv = p.begin(&a.dst)?;
        pv.file().copy_from(&mut input, source_name)?;
        if a.no_empty && pv.file().is_empty() {
            drop(pv);
            return Err(crate::cmd::write::empty_refused(
                &a.dst.display().to_string(),
                source_name,
            ));
        }
        commit_guarded(pv)?
    };
    report_published(&a.opts, &published);
    Ok(EXIT_OK)
}
