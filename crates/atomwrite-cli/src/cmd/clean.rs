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
    for w in &report.warnings {
        eprintln!("atomwrite: warning: {w}");
    }
    if a.json {
        common::print_json(&serde_json::json!({
            "dry_run": a.dry_run,
            "removed": report.removed,
            "bytes": report.bytes,
            "leftovers": report.leftovers,
            "leftover_bytes": report.leftover_bytes,
            "locked": report.locked,
            "busy": report.busy,
            "young": report.young,
            "warnings": report.warnings,
        }));
    } else if !a.quiet {
        let verb = if a.dry_run { "would remove" } else { "removed" };
        for p in report.removed.iter().chain(&report.leftovers) {
            println!("{verb} {}", p.display());
        }
        let busy = if report.busy.is_empty() {
            String::new()
        } else {
            format!(
                "; {} versions dir(s) skipped (a publisher is running)",
                report.busy.len()
            )
        };
        eprintln!(
            "atomwrite: {verb} {} temp file(s) ({} bytes) and {} leftover(s) of interrupted \
             publishes ({} bytes); {} temp(s) held by live writers, {} younger than {}{busy}",
            report.removed.len(),
            report.bytes,
            report.leftovers.len(),
            report.leftover_bytes,
            report.locked.len(),
            report.young.len(),
            humantime::format_duration(a.older_than)
        );
    }
    Ok(EXIT_OK)
}
