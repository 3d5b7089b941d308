//! `atomwrite clean DIR [--older-than DUR] [--dry-run] [--recursive]`.

use atomwrite::CleanOptions;

use crate::cli::CleanArgs;
use crate::common::{CmdResult, EXIT_OK};
use crate::render;

pub fn run(a: CleanArgs) -> CmdResult {
    let opts = CleanOptions {
        older_than: a.older_than,
        dry_run: a.dry_run,
        recursive: a.recursive,
    };
    let report = super::open_dest(&a.dir)?.clean_temps(&opts)?;
    // A dry run's list is the point of it: printed like -v.
    let say = crate::common::summary_wanted(a.quiet, a.verbose || a.dry_run);
    render::clean(a.json, !say, a.dry_run, a.older_than, &report);
    Ok(EXIT_OK)
}
