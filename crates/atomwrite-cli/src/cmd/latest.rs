//! `atomwrite latest DST`: the current version number and its path.

use std::path::PathBuf;

use clap::Args;

use crate::common::{CmdResult, EXIT_FAILURE, EXIT_OK};
use crate::render;

#[derive(Debug, Args)]
pub struct LatestArgs {
    /// The published pointer.
    pub dst: PathBuf,
    /// Print {"dst", "version", "path"} as JSON (version 0 and path null when nothing is published).
    #[arg(long)]
    pub json: bool,
}

pub const LATEST_EXAMPLES: &str = "\
Prints `VERSION PATH`, e.g. `3 reports/daily.csv.versions/v0000000003.csv`. When nothing has
been published yet (DST missing, or still a regular file) it prints `0` on stdout, says so on
stderr and exits 1 (so a typo in DST is not mistaken for an empty history); --json then prints
version 0 and path null.

Examples:
  atomwrite latest reports/daily.csv
  V=$(atomwrite latest reports/daily.csv | cut -d' ' -f1)
  atomwrite latest --json reports/daily.csv | jq .version";

pub fn run(a: LatestArgs) -> CmdResult {
    let dst = super::open_dest(&a.dst)?;
    let l = dst.latest()?;
    render::latest(a.json, dst.display(), l.as_ref());
    if l.is_none() {
        eprintln!("atomwrite: nothing has been published at `{dst}`");
        return Ok(EXIT_FAILURE);
    }
    Ok(EXIT_OK)
}
