//! `atomwrite versions DST`: every version with size, sha256, written_at and run_id.

use std::path::PathBuf;

use clap::Args;

use crate::common::{self, CmdResult, EXIT_OK};

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

fn short(s: Option<&str>, n: usize, long: bool) -> String {
    match s {
        Some(s) if !long && s.chars().count() > n => s.chars().take(n).collect(),
        Some(s) => s.to_string(),
        None => "-".to_string(),
    }
}

pub fn run(a: VersionsArgs) -> CmdResult {
    if crate::remote::is_url(&a.dst) {
        return crate::remote::versions(a);
    }
    let list = atomwrite::versions(&a.dst)?;
    for p in &list.ignored {
        eprintln!(
            "atomwrite: ignored `{}`: its version number has more than 10 digits",
            p.display()
        );
    }
    if a.json {
        common::print_json(&serde_json::json!({
            "dst": a.dst,
            "current": list.current,
            "versions": list.versions,
            "ignored": list.ignored,
        }));
        return Ok(EXIT_OK);
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:>11} {:>12}  {:<12}  {:<20}  RUN_ID",
        "VERSION", "SIZE", "SHA256", "WRITTEN_AT"
    );
    for v in &list.versions {
        // 2026-11-30T10:00:00.123456Z -> 2026-11-30T10:00:00Z unless --long.
        let when = v.written_at.as_deref().map(|w| match w.find('.') {
            Some(i) if !a.long => format!("{}Z", &w[..i]),
            _ => w.to_string(),
        });
        let _ = writeln!(
            out,
            "{:>10}{} {:>12}  {:<12}  {:<20}  {}",
            v.version,
            if v.current {
                "*"
            } else if v.pending {
                "p"
            } else {
                " "
            },
            v.size.map_or("-".to_string(), |s| s.to_string()),
            short(v.sha256.as_deref(), 12, a.long),
            when.as_deref().unwrap_or("-"),
            short(v.run_id.as_deref(), 12, a.long),
        );
    }
    Ok(EXIT_OK)
}
