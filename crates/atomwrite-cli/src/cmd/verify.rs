//! `atomwrite verify PATH...`: recompute size and sha256 and compare with each manifest.

use std::path::PathBuf;

use atomwrite::VerifyStatus;
use clap::Args;

use crate::common::{self, CmdResult, EXIT_FAILURE, EXIT_OK};

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
    if a.paths.iter().any(|p| crate::remote::is_url(p)) {
        return crate::remote::verify(a);
    }
    let mut all_ok = true;
    let mut results = Vec::new();
    for p in &a.paths {
        let v = atomwrite::verify(p);
        all_ok &= v.is_ok();
        if a.json {
            results.push(serde_json::json!({
                "path": v.path,
                "status": v.status.as_str(),
                "detail": v.detail,
                "data_path": v.data_path,
                "manifest_path": v.manifest_path,
                "size": v.size,
                "sha256": v.sha256,
                "manifest": v.manifest,
            }));
        } else if !(a.quiet && v.is_ok()) {
            let tag = match v.status {
                VerifyStatus::Ok => "ok",
                VerifyStatus::Mismatch => "MISMATCH",
                VerifyStatus::MissingManifest => "MISSING-MANIFEST",
                VerifyStatus::BadManifest => "BAD-MANIFEST",
                VerifyStatus::MissingData => "MISSING-DATA",
            };
            println!("{tag} {}: {}", v.path.display(), v.detail);
        }
    }
    if a.json {
        common::print_json(&serde_json::json!({ "ok": all_ok, "results": results }));
    }
    Ok(if all_ok { EXIT_OK } else { EXIT_FAILURE })
}
