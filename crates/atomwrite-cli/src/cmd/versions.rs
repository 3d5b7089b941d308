//! `atomwrite versions DST`: every version with size, sha256, written_at and run_id.

use std::path::PathBuf;

use clap::Args;

use crate::common::{CmdResult, EXIT_OK};
use crate::render;

#[derive(Debug, Args)]
pub struct VersionsArgs {
    /// The published pointer.
    pub dst: PathBuf,
    /// Print one JSON object: {"dst", "current", "versions": [...], "ignored": [...]}.
    #[arg(long)]
    pub json: bool,
    /// Show full sha256 hashes, timestamps and run ids (wider than 80 columns).
    #[arg(long)]
    pub long: bool,
}

pub const VERSIONS_EXAMPLES: &str = "\
One line per version, oldest first; `*` marks the one DST points at, `p` a version whose publish
is in progress or was interrupted (never made current). Values come from each version's manifest
(`-` when it is missing: run `atomwrite verify` on the version's path). Hashes and run ids are
shortened to fit 80 columns; --long prints them whole.

Examples:
  atomwrite versions reports/daily.csv
  atomwrite versions --json reports/daily.csv | jq -r '.versions[] | select(.current) | .run_id'";

pub fn run(a: VersionsArgs) -> CmdResult {
    let dst = super::open_dest(&a.dst)?;
    let list = dst.versions()?;
    for p in &list.ignored {
        eprintln!(
            "atomwrite: ignored `{}`: its version number has more than 10 digits",
            p.display()
        );
    }
    render::versions(a.json, a.long, dst.display(), &list);
    Ok(EXIT_OK)
}
