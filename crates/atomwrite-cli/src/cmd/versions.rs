//! `atomwrite versions DST`: every version with size, sha256, written_at and run_id.

use std::path::PathBuf;

use clap::Args;

use crate::common::{self, CmdResult, EXIT_OK};

#[derive(Debug, Args)]
pub struct VersionsArgs {
    /// The published pointer.
    pub dst: PathBuf,
    /// Print a JSON array of versions.
    #[arg(long)]
    pub json: bool,
}

pub const VERSIONS_EXAMPLES: &str = "\
One line per version, oldest first; `*` marks the one DST points at. Values come from each
version's manifest (`-` when it is missing: run `atomwrite verify` on the version's path).

Examples:
  atomwrite versions reports/daily.csv
  atomwrite versions --json reports/daily.csv | jq -r '.versions[] | select(.current) | .run_id'";

pub fn run(a: VersionsArgs) -> CmdResult {
    if crate::remote::is_url(&a.dst) {
        return crate::remote::versions(a);
    }
    let list = atomwrite::versions(&a.dst)?;
    if a.json {
        let current = list.iter().find(|v| v.current).map_or(0, |v| v.version);
        common::print_json(
            &serde_json::json!({ "dst": a.dst, "current": current, "versions": list }),
        );
        return Ok(EXIT_OK);
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:>11} {:>12}  {:<64}  {:<27}  RUN_ID",
        "VERSION", "SIZE", "SHA256", "WRITTEN_AT"
    );
    for v in &list {
        let _ = writeln!(
            out,
            "{:>10}{} {:>12}  {:<64}  {:<27}  {}",
            v.version,
            if v.current { "*" } else { " " },
            v.size.map_or("-".to_string(), |s| s.to_string()),
            v.sha256.as_deref().unwrap_or("-"),
            v.written_at.as_deref().unwrap_or("-"),
            v.run_id.as_deref().unwrap_or("-"),
        );
    }
    Ok(EXIT_OK)
}
