//! `atomwrite cp [OPTS] SRC DST` and `atomwrite cp [OPTS] SRC... DIR`.
//!
//! One source: an atomic, durable copy (reflink, `copy_file_range`, or a buffered copy).
//! Several sources into a directory: one [`atomwrite::Batch`], so the flush barriers are paid
//! once for all files. With `--no-clobber` every destination is checked before anything is
//! written (the kernel's create-only rename stays the final word). A failed or interrupted
//! batch says exactly which destinations were replaced and which were not (text and JSON:
//! `error.replaced`, `error.not_replaced`).

use std::fs::File;
use std::path::{Path, PathBuf};

use atomwrite::{AtomicFile, Batch, BatchOutcome, CopyMethod, Op, Options};
use clap::Args;

use crate::cli::WriteOpts;
use crate::common::{self, CmdResult, EXIT_CONFLICT, EXIT_OK, Failure};
use crate::progress::{self, Progress};
use crate::signals;

pub const CP_EXAMPLES: &str = "\
Examples:
  atomwrite cp build/model.bin /srv/models/model.bin      # reflink on btrfs/xfs: instant
  atomwrite cp --json --checksum data.parquet out/ | jq -r .sha256
  atomwrite cp part-*.csv /data/export/                   # many files, one flush for all";

#[derive(Debug, Args)]
pub struct CpArgs {
    #[command(flatten)]
    pub opts: WriteOpts,
    /// Compute the sha256 of every copy (reads every byte: disables reflink/copy_file_range).
    /// Implied by --manifest.
    #[arg(long)]
    pub checksum: bool,
    /// Keep the source's mode, owner and group (not its timestamps). Set-uid/set-gid bits are
    /// kept only when owner and group could be set (as root); otherwise they are dropped.
    /// Without -p a new copy gets the source's mode & 0777 & ~umask, never set-id bits, and a
    /// replaced file keeps its own mode, owner and group.
    #[arg(short = 'p', long)]
    pub preserve: bool,
    /// Source file(s), then the destination file or directory.
    #[arg(required = true, num_args = 2.., value_name = "SRC... DST")]
    pub paths: Vec<PathBuf>,
}

/// The source's permission bits (incl. set-id), owner and group.
#[derive(Debug, Clone, Copy)]
struct SourceAttrs {
    mode: u32,
    uid: u32,
    gid: u32,
}

fn open_source(p: &Path) -> Result<(File, SourceAttrs), Failure> {
    let f = atomwrite::open_source(p)?;
    let md = f
        .metadata()
        .map_err(|e| atomwrite::Error::new(Op::Inspect, p, e))?;
    if !md.is_file() {
        return Err(Failure::usage(format!(
            "`{}` is not a regular file",
            p.display()
        )));
    }
    use std::os::unix::fs::MetadataExt;
    let attrs = SourceAttrs {
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
    };
    Ok((f, attrs))
}

fn options_for(a: &CpArgs, src: SourceAttrs, size: u64) -> Options {
    let o = a
        .opts
        .to_options()
        .checksum(a.checksum || a.opts.manifest)
        .size_hint(size);
    if a.preserve {
        o.preserve_source(src.mode, src.uid, src.gid)
    } else {
        o.source_mode(src.mode)
    }
}

/// Copies `src` into `f`. With a checksum the bytes pass through the hasher anyway, so they
/// are streamed through the progress bar; otherwise the kernel copies them (reflink or
/// `copy_file_range`) and the bar just records the total.
fn copy_into(
    f: &mut AtomicFile,
    src: &File,
    name: &Path,
    a: &CpArgs,
) -> Result<CopyMethod, Failure> {
    let size = src.metadata().map(|m| m.len()).ok();
    let flags = progress::Flags {
        force: a.opts.progress,
        quiet: a.opts.quiet,
    };
    let label = name
        .file_name()
        .unwrap_or(name.as_os_str())
        .to_string_lossy()
        .into_owned();
    let mut bar = Progress::bytes(size, flags, &label);
    let method = if a.checksum || a.opts.manifest {
        let mut reader = src;
        f.copy_from(&mut bar.wrap(&mut reader), name)?;
        CopyMethod::Buffered
    } else {
        let (n, m) = f.copy_from_file(src, name)?;
        bar.inc(n);
        m
    };
    bar.finish();
    Ok(method)
}

pub fn run(a: CpArgs) -> CmdResult {
    if a.paths.iter().any(|p| crate::remote::is_url(p)) {
        return crate::remote::cp(a);
    }
    let (dst, sources) = a.paths.split_last().expect("clap requires two paths");
    let dst_is_dir = dst.is_dir() || dst.as_os_str().to_string_lossy().ends_with('/');
    if sources.len() > 1 && !dst_is_dir {
        return Err(Failure::usage(format!(
            "copying {} files: the destination `{}` must be an existing directory",
            sources.len(),
            dst.display()
        )));
    }
    let target = |src: &Path| -> Result<PathBuf, Failure> {
        if dst_is_dir {
            let name = src
                .file_name()
                .ok_or_else(|| Failure::usage(format!("`{}` has no file name", src.display())))?;
            Ok(dst.join(name))
        } else {
            Ok(dst.clone())
        }
    };
    if sources.len() == 1 {
        let src = &sources[0];
        let (file, mode) = open_source(src)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut out = common::open_tracked(&options_for(&a, mode, size), &target(src)?)?;
        let method = copy_into(&mut out, &file, src, &a)?;
        let receipt = common::commit_guarded(out)?;
        common::after_commit(&a.opts, &receipt)?;
        if a.opts.json {
            let mut v = common::receipt_json(&receipt);
            v["method"] = serde_json::json!(method);
            common::print_json(&v);
        } else {
            common::report_receipt(&a.opts, &receipt);
        }
        return Ok(EXIT_OK);
    }
    // Many sources: one batch, one data flush, one directory fsync.
    let targets = sources
        .iter()
        .map(|s| target(s))
        .collect::<Result<Vec<_>, _>>()?;
    if a.opts.no_clobber {
        no_clobber_precheck(&targets)?;
    }
    let before_commit = |f: Failure| nothing_replaced(f, &targets);
    let mut batch = Batch::new(a.opts.to_options().checksum(a.checksum || a.opts.manifest));
    let mut methods = Vec::new();
    for (src, dst) in sources.iter().zip(&targets) {
        let (file, mode) = open_source(src).map_err(before_commit)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let f = batch
            .open_with(dst, options_for(&a, mode, size))
            .map_err(|e| before_commit(e.into()))?;
        signals::target(f.destination());
        methods.push(copy_into(f, &file, src, &a).map_err(before_commit)?);
    }
    // Cooperative: a signal now stops the batch before its next rename; what was renamed is
    // made durable and the report names replaced and not replaced destinations.
    let receipts = signals::cooperative(|| batch.commit()).map_err(batch_failure)?;
    for r in &receipts.files {
        common::after_commit(&a.opts, r)?;
    }
    if a.opts.json {
        let files: Vec<_> = receipts
            .files
            .iter()
            .zip(&methods)
            .map(|(r, m)| {
                let mut v = common::receipt_json(r);
                v["method"] = serde_json::json!(m);
                v
            })
            .collect();
        common::print_json(
            &serde_json::json!({ "files": files, "dir_syncs": receipts.dir_syncs, "data_syncs": receipts.data_syncs }),
        );
    } else {
        for r in &receipts.files {
            common::report_receipt(&a.opts, r);
        }
    }
    Ok(EXIT_OK)
}

/// `--no-clobber` with several sources: refuse before writing anything if any destination
/// exists (exit 3, naming them all). Only a head start: between this check and the renames
/// another process may create one, and the kernel's create-only rename then refuses it.
fn no_clobber_precheck(targets: &[PathBuf]) -> Result<(), Failure> {
    let existing: Vec<&PathBuf> = targets
        .iter()
        .filter(|t| std::fs::symlink_metadata(t).is_ok())
        .collect();
    let Some(first) = existing.first() else {
        return Ok(());
    };
    let verb = if existing.len() == 1 {
        "already exists"
    } else {
        "already exist"
    };
    let e = atomwrite::Error::other(
        Op::CheckDestination,
        first.as_path(),
        std::io::ErrorKind::AlreadyExists,
        "already exists (--no-clobber)",
    )
    .with_batch_outcome(BatchOutcome::new(Vec::new(), targets.to_vec()));
    Err(Failure {
        code: EXIT_CONFLICT,
        message: format!(
            "{} {verb} (--no-clobber); nothing was written",
            quoted(existing.iter().map(|p| p.as_path()))
        ),
        error: Some(e),
    })
}

/// A failure before the commit: nothing was replaced (said in text, listed in JSON).
fn nothing_replaced(mut f: Failure, targets: &[PathBuf]) -> Failure {
    if let Some(e) = f.error.take() {
        let e = e.with_batch_outcome(BatchOutcome::new(Vec::new(), targets.to_vec()));
        f.message = format!("{e}; no destination was replaced");
        f.error = Some(e);
    }
    f
}

/// A failed commit: the error plus exactly which destinations were replaced and which not.
fn batch_failure(e: atomwrite::Error) -> Failure {
    let mut f = Failure::from(e);
    if let Some(o) = f.error.as_ref().and_then(|e| e.batch_outcome()) {
        let mut extra = String::new();
        if !o.replaced().is_empty() {
            extra.push_str(&format!(
                "; replaced: {}",
                quoted(o.replaced().iter().map(|p| p.as_path()))
            ));
        }
        if !o.not_replaced().is_empty() {
            extra.push_str(&format!(
                "; not replaced: {}",
                quoted(o.not_replaced().iter().map(|p| p.as_path()))
            ));
        }
        f.message.push_str(&extra);
    }
    f
}

fn quoted<'a>(ps: impl Iterator<Item = &'a Path>) -> String {
    ps.map(|p| format!("`{}`", p.display()))
        .collect::<Vec<_>>()
        .join(", ")
}
