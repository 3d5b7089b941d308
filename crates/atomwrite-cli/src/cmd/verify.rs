//! `atomwrite verify PATH...`: recompute size and sha256 and compare with each manifest.

use std::path::PathBuf;

use clap::Args;

use crate::common::{self, CmdResult, EXIT_FAILURE, EXIT_OK};
use crate::render;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Files (or published pointers) to check against PATH.manifest.json.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Print one JSON object on stdout: {"ok": bool, "results": [one object per path]}.
    #[arg(long)]
    pub json: bool,
    /// Print only problems.
    #[arg(short, long)]
    pub quiet: bool,
}

pub const VERIFY_EXAMPLES: &str = "\
One line per path: `ok`, `MISMATCH` (data and manifest differ: corrupted, or new data beside an
old manifest after a crash), `MISSING-MANIFEST`, `BAD-MANIFEST` or `MISSING-DATA`.
Exit code 0 when every path is ok, 1 otherwise. Reads in 1 MiB chunks (constant memory).

Examples:
  atomwrite verify out/daily.csv
  atomwrite verify reports/*.csv --json | jq -c '.results[] | select(.status != \"ok\")'
  atomwrite verify reports/daily.csv.versions/v0000000003.csv";

pub fn run(a: VerifyArgs) -> CmdResult {
    let mut all_ok = true;
    let mut results = Vec::new();
    for p in &a.paths {
        // A store that cannot be reached is not a verdict on the data: a failure (exit 1).
        let v = super::open_dest(p)?.verify()?;
        all_ok &= v.is_ok();
        if a.json {
            results.push(render::verification_json(&v));
        } else if !(a.quiet && v.is_ok()) {
            println!("{}", render::verification_text(&v));
        }
    }
    if a.json {
        common::print_json(&serde_json::json!({ "ok": all_ok, "results": results }));
    }
    Ok(if all_ok { EXIT_OK } else { EXIT_FAILURE })
}
