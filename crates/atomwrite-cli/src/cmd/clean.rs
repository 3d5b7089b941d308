//! `atomwrite clean DIR [--older-than DUR] [--dry-run] [--recursive]`.

use atomwrite::CleanOptions;

use crate::cli::CleanArgs;
use crate::common::{self, CmdResult, EXIT_OK};

pub fn run(a: CleanArgs) -> CmdResult {
    let opts = CleanOptions {
        older_than: a.older_than,
        dry_run: a.dry_run,
        recursive: a.recursive,
    };
    let report = atomwrite::clean_with(&a.dir, &opts)?;
    if a.json {
        common::print_json(&serde_json::json!({
            "dry_run": a.dry_run,
            "removed": report.removed,
            "locked": report.locked,
            "young": report.young,
            "bytes": report.bytes,
        }));
    } else if !a.quiet {
        let verb = if a.dry_run { "would remove" } else { "removed" };
        for p in &report.removed {
            println!("{verb} {}", p.display());
        }
        eprintln!(
            "atomwrite: {verb} {} temp file(s), {} bytes; {} held by live writers, {} younger than {}",
            report.removed.len(),
            report.bytes,
            report.locked.len(),
            report.young.len(),
            humantime::format_duration(a.older_than)
        );
    }
    Ok(EXIT_OK)
}
