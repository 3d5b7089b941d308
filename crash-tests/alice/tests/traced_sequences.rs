//! Real syscall sequences (the `alice-seq` helper) recorded with strace, then explored.

mod common;

use std::path::PathBuf;

use atomwrite_alice::{Invariant, Report, Run};
use common::{explore_and_print, payload, record_ok, setup, strace_or_skip};

const OLD: &[u8] = b"old complete contents\n";

/// Trace `alice-seq DST INPUT steps...` and explore it.
fn traced(name: &str, old: Option<&[u8]>, steps: &[&str], full: bool) -> Option<Report> {
    if !strace_or_skip(name) {
        return None;
    }
    let new = payload(10_000, 3);
    let (_td, scope, dst, input) = setup(old, &new);
    let mut args = vec![dst.clone().into_os_string(), input.clone().into_os_string()];
    args.extend(steps.iter().map(Into::into));
    let run = Run {
        program: PathBuf::from(env!("CARGO_BIN_EXE_alice-seq")),
        args,
        envs: Vec::new(),
        stdin: None,
        cwd: scope.clone(),
    };
    let rec = record_ok(name, &scope, &run);
    assert_eq!(rec.status, 0, "{name}: alice-seq failed: {}", rec.stderr);
    assert_eq!(std::fs::read(&dst).unwrap(), new, "{name}: real run result");
    let inv = Invariant {
        dst,
        old: old.map(<[u8]>::to_vec),
        new,
        durable_from: full.then_some(rec.log.len()),
    };
    let rep = explore_and_print(&format!("traced/{name}"), &rec.log, &inv);
    assert!(
        rep.final_ok,
        "{name}: model's final state must hold the new contents"
    );
    assert!(!rep.bounded, "{name}: exploration must be exhaustive");
    Some(rep)
}

#[test]
fn traced_correct_named() {
    if let Some(r) = traced(
        "correct-named",
        Some(OLD),
        &[
            "tmp-named",
            "write",
            "fsync",
            "fchmod",
            "rename",
            "dirsync",
            "close",
        ],
        true,
    ) {
        assert_eq!(r.violations(), 0, "{:#?}", r.examples);
    }
}

#[test]
fn traced_correct_tmpfile_proc_link() {
    if let Some(r) = traced(
        "correct-tmpfile-procfd",
        Some(OLD),
        &[
            "tmp-unnamed",
            "write",
            "fsync",
            "link-tmp",
            "rename",
            "dirsync",
            "close",
        ],
        true,
    ) {
        assert_eq!(r.violations(), 0, "{:#?}", r.examples);
    }
}

#[test]
fn traced_correct_create_only_noreplace() {
    if let Some(r) = traced(
        "correct-create-only",
        None,
        &[
            "tmp-named",
            "write",
            "fdatasync",
            "rename-noreplace",
            "dirsync",
            "close",
        ],
        true,
    ) {
        assert_eq!(r.violations(), 0, "{:#?}", r.examples);
    }
}

#[test]
fn traced_broken_no_data_fsync() {
    if let Some(r) = traced(
        "broken-no-fsync",
        Some(OLD),
        &["tmp-named", "write", "rename", "dirsync", "close"],
        true,
    ) {
        assert!(r.atomicity_violations > 0);
    }
}

#[test]
fn traced_broken_fsync_after_rename() {
    if let Some(r) = traced(
        "broken-fsync-after-rename",
        Some(OLD),
        &[
            "tmp-unnamed",
            "write",
            "link-tmp",
            "rename",
            "fsync",
            "dirsync",
            "close",
        ],
        true,
    ) {
        assert!(r.atomicity_violations > 0);
    }
}

#[test]
fn traced_broken_no_dir_fsync_full() {
    if let Some(r) = traced(
        "broken-no-dirsync",
        Some(OLD),
        &["tmp-named", "write", "fsync", "rename", "close"],
        true,
    ) {
        assert_eq!(r.atomicity_violations, 0, "{:#?}", r.examples);
        assert!(r.durability_violations > 0);
    }
}

#[test]
fn traced_broken_in_place() {
    if let Some(r) = traced(
        "broken-inplace",
        Some(OLD),
        &["inplace", "write", "fsync", "close"],
        true,
    ) {
        assert!(r.atomicity_violations > 0);
    }
}

#[test]
fn traced_link_empty_path() {
    // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH: only meaningful as root.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if common::ci() {
            panic!("CI=true but not root: linkat(AT_EMPTY_PATH) cannot be exercised");
        }
        println!("SKIP traced_link_empty_path: needs root for linkat(AT_EMPTY_PATH)");
        return;
    }
    if let Some(r) = traced(
        "correct-tmpfile-empty-path",
        Some(OLD),
        &[
            "tmp-unnamed",
            "write",
            "fsync",
            "link-empty",
            "rename",
            "dirsync",
            "close",
        ],
        true,
    ) {
        assert_eq!(r.violations(), 0, "{:#?}", r.examples);
    }
}
