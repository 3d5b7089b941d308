//! `atomwrite cp [OPTS] SRC DST` and `atomwrite cp [OPTS] SRC... DIR`.
//!
//! One source: an atomic, durable copy (reflink, `copy_file_range`, or a buffered copy).
//! Several sources into a directory: one [`atomwrite::Batch`], so the flush barriers are paid
//! once for all files. With `--no-clobber` every destination is checked before anything is
//! written (the kernel's create-only rename stays the final word). A failed or interrupted
//! batch says exactly which destinations were replaced and which were not (text and JSON:
//! `error.replaced`, `error.not_replaced`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use atomwrite::destination::{Copied, CopyAttrs, CopyObserver, CopyReport};
use atomwrite::{BatchOutcome, Destination, Op};
use clap::Args;

use crate::cli::WriteOpts;
use crate::common::{CmdResult, EXIT_CONFLICT, EXIT_OK, Failure};
use crate::progress::{self, Progress};
use crate::{render, signals};

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

/// The progress bar of the copy in flight (one per destination, labelled with it), fed by the
/// library's progress callback.
struct Bars {
    bar: Mutex<(Progress, u64)>,
    flags: progress::Flags,
    /// [`progress::Flags::allowed`], asked once (it checks the terminal: a syscall), not per file.
    allowed: bool,
}

impl Bars {
    fn next(&self, dst: &Destination) {
        if !self.allowed {
            return;
        }
        let mut b = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        b.0.finish();
        *b = (Progress::bytes(None, self.flags, &dst.file_name()), 0);
    }

    fn seen(&self, total: u64) {
        let mut b = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        let delta = total.saturating_sub(b.1);
        b.0.inc(delta);
        b.1 = total;
    }

    fn finish(&self) {
        self.bar
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .finish();
    }
}

/// Moves the progress bar to each destination and lets a signal cancel a batch between two
/// renames.
struct Observer<'a>(&'a Bars);

impl CopyObserver for Observer<'_> {
    fn copying(&mut self, dst: &Destination) {
        self.0.next(dst);
    }

    fn commit(&mut self, commit: &mut dyn FnMut()) {
        // Cooperative: a signal now stops the batch before its next rename; what was renamed
        // is made durable and the report names replaced and not replaced destinations.
        signals::cooperative(commit)
    }
}

/// What a copy sets out to do: the destination and the sources, shared with the signal thread
/// so a signal report can name every target without a second list of them.
struct Plan {
    dst: Destination,
    dst_arg: PathBuf,
    sources: Vec<Destination>,
    /// The destination is a directory or a URL prefix (asked once: a `stat`).
    container: bool,
}

impl Plan {
    /// The destination of source `i`: under `dst` by its last segment when `dst` is a container,
    /// else `dst_arg` itself. Made when needed, never held for all sources.
    fn target(&self, i: usize) -> Result<Destination, atomwrite::Error> {
        match self.container {
            true => self.dst.join(self.sources[i].file_name_os()),
            false => atomwrite::destination::open(&self.dst_arg),
        }
    }

    fn targets(&self) -> impl Iterator<Item = Result<Destination, atomwrite::Error>> + '_ {
        (0..self.sources.len()).map(|i| self.target(i))
    }

    /// Every target's path, in order (for an error's "not replaced" list).
    fn target_paths(&self) -> Vec<PathBuf> {
        self.targets()
            .filter_map(|t| t.ok())
            .map(|t| t.path().to_path_buf())
            .collect()
    }
}

/// Where each finished copy goes as the library hands it over (`CopyAttrs::copied`): its
/// summary line or JSON text, and its manifest. Nothing else is kept per file.
struct Sink<'a> {
    plan: &'a Plan,
    opts: &'a atomwrite::Options,
    common: &'a crate::cli::CommonOpts,
    manifest: bool,
    state: Mutex<SinkState>,
}

#[derive(Default)]
struct SinkState {
    /// Copies handed over so far.
    n: usize,
    /// `--json`: the rendered file objects, comma-separated (printed inside the frame once the
    /// syncs are known; a copy that fails prints its error instead).
    json: Vec<u8>,
    /// The manifests that failed: the target and the first error (the others are still
    /// written: one blocked name does not cost every later file its manifest).
    manifest_failed: Vec<PathBuf>,
    first_manifest_error: Option<atomwrite::Error>,
}

impl Sink<'_> {
    fn take(&self, c: Copied) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let i = st.n;
        st.n += 1;
        if self.manifest {
            let written = self
                .plan
                .target(i)
                .and_then(|t| t.write_manifest(&c.receipt, self.opts));
            match written {
                Ok(_) => signals::manifest_written(),
                Err(e) => {
                    st.manifest_failed.push(c.receipt.path.clone());
                    st.first_manifest_error.get_or_insert(e);
                }
            }
        }
        if self.common.json {
            if i > 0 {
                st.json.push(b',');
            }
            st.json
                .extend_from_slice(render::copied_json(&c).to_string().as_bytes());
        } else if self.common.summary_wanted() {
            eprintln!("atomwrite: {}", render::receipt_text(&c.receipt));
        }
    }
}

pub fn run(a: CpArgs) -> CmdResult {
    let mut src_args = a.paths;
    let dst_arg = src_args.pop().expect("clap requires two paths");
    let dst = super::open_dest(&dst_arg)?;
    super::refuse_unsupported(&a.opts, a.opts.no_follow, &dst)?;
    if a.preserve && !dst.capabilities().modes {
        return Err(Failure::usage(format!(
            "-p/--preserve does not apply to `{dst}` ({} store): it has no mode, owner or group",
            dst.store().as_str()
        )));
    }
    // Each argument is dropped as its source is made: one copy of every path, not two.
    let sources = src_args
        .into_iter()
        .map(|p| super::open_dest(&p))
        .collect::<Result<Vec<_>, _>>()?;
    let many = sources.len() > 1;
    let container = dst.is_container();
    if many && !container {
        return Err(Failure::usage(format!(
            "copying {} files: the destination `{dst}` must be an existing directory (or a URL \
             prefix ending in `/`)",
            sources.len(),
        )));
    }
    if many {
        raise_nofile_limit();
    }
    let plan = std::sync::Arc::new(Plan {
        dst,
        dst_arg,
        sources,
        container,
    });
    let opts = a.opts.to_options().checksum(a.checksum || a.opts.manifest);
    let flags = progress::Flags {
        force: a.opts.progress,
        quiet: a.opts.quiet,
    };
    let bars = Bars {
        bar: Mutex::new((Progress::hidden(), 0)),
        flags,
        allowed: flags.allowed(),
    };
    // Each target is made, checked and dropped: nothing is held per file before the copy.
    one_source_per_target(&plan)?;
    for t in plan.targets() {
        let t = t?;
        if a.opts.manifest {
            super::manifest_name_fits(&t)?;
        }
    }
    if a.opts.no_clobber && many {
        no_clobber_precheck(&plan)?;
    }
    // Every destination is announced before the first copy: a signal report names those not
    // reached yet as not replaced (copies that are no batch run one after another).
    let shared = std::sync::Arc::clone(&plan);
    signals::targets_with(move |each| {
        for t in shared.targets().flatten() {
            each(t.path().to_path_buf());
        }
    });
    if a.opts.manifest {
        signals::manifests_expected();
    }
    let sink = Sink {
        plan: &plan,
        opts: &opts,
        common: &a.opts.common,
        manifest: a.opts.manifest,
        state: Mutex::new(SinkState::default()),
    };
    let seen = |n: u64| bars.seen(n);
    let take = |c: Copied| sink.take(c);
    let attrs = CopyAttrs {
        preserve: a.preserve,
        progress: Some(&seen),
        copied: Some(&take),
    };
    let report = copy_all(&plan, &opts, attrs, &bars)?;
    let st = sink.state.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = st.first_manifest_error {
        let (n, missing) = (st.n, &st.manifest_failed);
        let e = e.with_batch_outcome(BatchOutcome::new(plan.target_paths(), Vec::new()));
        return Err(super::manifest_failed(
            e,
            &format!(
                "all {n} file(s) were replaced; manifests were written for {} of them (none \
                 for {})",
                n - missing.len(),
                quoted(missing.iter().map(|p| p.as_path()))
            ),
        ));
    }
    if a.opts.json {
        render::copies_json(many, &st.json, &report);
    }
    Ok(EXIT_OK)
}

/// Copies the sources of `plan` to their targets: several as one [`Destination::copy_many`]
/// into `dst`, one by [`Destination::copy_from`] (handed to `attrs.copied` like the others); a
/// failure names the source, or what the batch replaced.
fn copy_all(
    plan: &Plan,
    opts: &atomwrite::Options,
    attrs: CopyAttrs<'_>,
    bars: &Bars,
) -> Result<CopyReport, Failure> {
    Ok(if plan.sources.len() > 1 {
        let r = plan
            .dst
            .copy_many(&plan.sources, opts, attrs, &mut Observer(bars));
        bars.finish();
        r.map_err(|e| match bad_source(e) {
            // A source that became a directory or a FIFO mid-batch: still a usage error (exit
            // 2), and the batch replaced nothing.
            Ok(mut f) => {
                let n = plan.sources.len();
                f.message.push_str(&format!(
                    "; none of the {n} files of the batch was replaced"
                ));
                f.error = f.error.take().map(|e| {
                    e.with_batch_outcome(BatchOutcome::new(Vec::new(), plan.target_paths()))
                });
                f
            }
            Err(e) => batch_failure(e, plan),
        })?
    } else {
        let target = plan.target(0)?;
        Observer(bars).copying(&target);
        let c = target.copy_from(&plan.sources[0], opts, attrs);
        bars.finish();
        let c = c.map_err(|e| bad_source(e).unwrap_or_else(Failure::from))?;
        if let Some(take) = attrs.copied {
            take(c);
        }
        CopyReport::default()
    })
}

/// A batch holds its files open until its rename, up to the soft `RLIMIT_NOFILE`; beyond that it
/// parks the oldest (named and closed early: two more syscalls each, and a temp protected from
/// `clean` by its age instead of its lock). Raise the soft limit to the hard one, as many servers
/// do at startup, so a large copy parks fewer files.
fn raise_nofile_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if let Some(max) = l.maximum
        && l.current.is_some_and(|c| c < max)
    {
        l.current = Some(max);
        let _ = setrlimit(Resource::Nofile, l);
    }
}

/// Two sources with the same last name would land on one target, the second silently
/// replacing the first in the same run (GNU cp: "will not overwrite just-created"): refuse
/// before anything is written, naming both.
fn one_source_per_target(plan: &Plan) -> Result<(), Failure> {
    if plan.sources.len() < 2 {
        return Ok(());
    }
    // Several sources go into a container, each under its last segment: one name, one target.
    let mut seen = std::collections::HashMap::new();
    for (i, s) in plan.sources.iter().enumerate() {
        if let Some(first) = seen.insert(s.file_name_os(), i) {
            return Err(Failure::failed(format!(
                "failed to copy `{}`: `{}` is copied to `{}` too; nothing was written \
                 (copy them to different directories)",
                s.display(),
                plan.sources[first].display(),
                plan.target(i)?.display()
            )));
        }
    }
    Ok(())
}

/// `--no-clobber` with several sources: refuse before writing anything if any destination
/// exists (exit 3, naming them all). Only a head start: between this check and the renames
/// another process may create one, and the kernel's create-only rename then refuses it.
fn no_clobber_precheck(plan: &Plan) -> Result<(), Failure> {
    let mut existing = Vec::new();
    for t in plan.targets() {
        let t = t?;
        if t.exists()? {
            existing.push(t.path().to_path_buf());
        }
    }
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
        first,
        std::io::ErrorKind::AlreadyExists,
        "already exists (--no-clobber)",
    )
    .with_batch_outcome(BatchOutcome::new(Vec::new(), plan.target_paths()));
    Err(Failure {
        code: EXIT_CONFLICT,
        message: format!(
            "{} {verb} (--no-clobber); nothing was written",
            quoted(existing.iter().map(|p| p.as_path()))
        ),
        error: Some(e),
    })
}

/// A source that is not a regular file (a directory, a FIFO, a device) is a usage error (exit
/// 2), as `cp` without `-r` says.
fn bad_source(e: atomwrite::Error) -> Result<Failure, atomwrite::Error> {
    if e.op() == Op::Read && e.kind() == std::io::ErrorKind::InvalidInput {
        let mut f = Failure::usage(e.to_string());
        f.error = Some(e);
        return Ok(f);
    }
    Err(e)
}

/// A failed copy of many files: the error plus exactly which destinations were replaced and
/// which not (a failure before a batch's commit replaced none of them).
fn batch_failure(e: atomwrite::Error, plan: &Plan) -> Failure {
    if e.batch_outcome().is_none() {
        // The message says it: "none of the N files of the batch was replaced".
        let e = e.with_batch_outcome(BatchOutcome::new(Vec::new(), plan.target_paths()));
        return Failure::from(e);
    }
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
