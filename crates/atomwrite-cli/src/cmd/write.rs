//! `atomwrite write [OPTS] [--from FILE] DST`: stdin (or FILE) → DST, streamed, on any
//! destination ([`atomwrite::destination`]).

use std::path::Path;

use crate::cli::WriteArgs;
use crate::common::{CmdResult, EXIT_OK, Failure};
use crate::progress::{self, Progress};
use crate::{render, signals};

pub fn run(a: WriteArgs) -> CmdResult {
    let dst = super::open_dest(&a.dst)?;
    super::refuse_unsupported(&a.opts, a.opts.no_follow, &dst)?;
    let mut opts = a.opts.to_options();
    if a.opts.manifest {
        super::manifest_name_fits(&dst)?;
    }
    let input = super::open_input(a.from.as_deref(), "")?;
    if let Some(n) = input.size {
        opts = opts.size_hint(n);
    }
    // Typing into a terminal: say so, and draw no bar over what the user types.
    let typing = a.from.is_none() && progress::stdin_notice(dst.display(), a.opts.quiet);
    let flags = progress::Flags {
        force: a.opts.progress,
        quiet: a.opts.quiet || typing,
    };
    signals::target(dst.path());
    let mut bar = Progress::bytes(a.expected_size.or(input.size), flags, &dst.file_name());
    let mut guard = super::NoEmpty::new(bar.wrap(input.reader), a.no_empty);
    let written = dst.write_named(&mut guard, &input.name, &opts);
    let refused = guard.refused;
    drop(guard);
    bar.finish();
    let receipt = match written {
        Ok(r) => r,
        Err(_) if refused => return Err(empty_refused(dst.display(), &input.name)),
        Err(e) => return Err(e.into()),
    };
    if a.opts.manifest {
        dst.write_manifest(&receipt, &opts).map_err(|e| {
            super::manifest_failed(
                e,
                &format!(
                    "`{}` was replaced ({} bytes) but has no manifest",
                    dst.display(),
                    receipt.size
                ),
            )
        })?;
    }
    render::receipt(&a.opts, &receipt);
    Ok(EXIT_OK)
}

/// `--no-empty` found no input: exit 1, nothing committed. Shared with `run` and `publish`.
pub fn empty_refused(dst: &str, source: &Path) -> Failure {
    Failure::failed(format!(
        "refusing to commit an empty `{dst}` (--no-empty): {} was empty; nothing was committed to `{dst}`",
        source.display()
    ))
}
