//! The real `atomwrite` CLI, traced: `atomwrite write --durability D DST < INPUT` on the
//! Linux fast path (O_TMPFILE + linkat + renameat) and the portable path
//! (`ATOMWRITE_PORTABLE=1`: named temp + renameat).
//!
//! Expected: `full` passes every crash state, including post-success durability;
//! `integrity` is atomic but not durable after success; `none` is not durable (and, with
//! no data fsync at all, not even atomic after a power cut — as documented).

mod common;

use std::path::PathBuf;

use atomwrite_alice::{Invariant, Op, Report, Run};
use common::{ci, explore_and_print, payload, record_ok, setup, strace_or_skip};

/// Locate the CLI: `ATOMWRITE_BIN`, else `target/{debug,release}/atomwrite` of the workspace.
fn atomwrite_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ATOMWRITE_BIN") {
        return Some(PathBuf::from(p));
    }
    let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut targets = vec![ws.join("target")];
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        targets.insert(0, PathBuf::from(t));
    }
    targets
        .iter()
        .flat_map(|t| [t.join("debug/atomwrite"), t.join("release/atomwrite")])
        .find(|p| p.is_file())
}

fn bin_or_skip(test: &str) -> Option<PathBuf> {
    match atomwrite_bin() {
        Some(b) => Some(b),
        None if ci() => panic!(
            "{test}: CI=true and the atomwrite binary is missing (set ATOMWRITE_BIN or `cargo build -p atomwrite-cli`)"
        ),
        None => {
            println!(
                "SKIP {test}: atomwrite binary not found (ATOMWRITE_BIN, target/debug/atomwrite, target/release/atomwrite); run `cargo build -p atomwrite-cli`"
            );
            None
        }
    }
}

/// Trace one CLI write and explore it against the Full invariant (durable after exit 0).
fn cli(name: &str, portable: bool, durability: &str, old: Option<&[u8]>) -> Option<Report> {
    if !strace_or_skip(name) {
        return None;
    }
    let bin = bin_or_skip(name)?;
    let new = payload(10_000, 11);
    let (_td, scope, dst, input) = setup(old, &new);
    let mut envs = Vec::new();
    if portable {
        envs.push(("ATOMWRITE_PORTABLE".into(), "1".into()));
    }
    let run = Run {
        program: bin,
        args: vec![
            "write".into(),
            "--durability".into(),
            durability.into(),
            dst.clone().into_os_string(),
        ],
        envs,
        stdin: Some(input),
        cwd: scope.clone(),
    };
    let rec = record_ok(name, &scope, &run);
    assert_eq!(rec.status, 0, "{name}: atomwrite failed: {}", rec.stderr);
    assert_eq!(std::fs::read(&dst).unwrap(), new, "{name}: real result");
    let ops: Vec<&Op> = rec.log.events.iter().map(|e| &e.op).collect();
    let has_tmpfile = ops.iter().any(|o| matches!(o, Op::Tmpfile { .. }));
    assert_eq!(
        has_tmpfile,
        !portable,
        "{name}: expected the {} path; ops: {}",
        if portable { "portable" } else { "O_TMPFILE" },
        ops.iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!(
        "    {name}: recorded ops: {}",
        ops.iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    );
    let inv = Invariant {
        dst,
        old: old.map(<[u8]>::to_vec),
        new,
        durable_from: Some(rec.log.len()),
    };
    let rep = explore_and_print(&format!("cli/{name}"), &rec.log, &inv);
    assert!(
        rep.final_ok,
        "{name}: the no-crash state must hold the new contents"
    );
    assert!(!rep.bounded, "{name}: exploration must be exhaustive");
    Some(rep)
}

const OLD: &[u8] = b"version 1 of the destination\n";

fn expect_full(r: Report) {
    assert_eq!(
        r.violations(),
        0,
        "Full must survive every crash state: {:#?}",
        r.examples
    );
}

fn expect_integrity(name: &str, r: Report) {
    assert_eq!(
        r.atomicity_violations, 0,
        "Integrity must stay atomic: {:#?}",
        r.examples
    );
    assert!(
        r.durability_violations > 0,
        "Integrity skips the directory fsync, so the model must find a post-success state without the new version"
    );
    println!(
        "    {name}: as expected, atomic in every state but not durable after success ({} states)",
        r.durability_violations
    );
}

fn expect_none(name: &str, r: Report) {
    assert!(
        r.durability_violations + r.atomicity_violations > 0,
        "None must be reported as not durable"
    );
    println!(
        "    {name}: as expected, not durable (atomicity-violating states {}, post-success states without the new version {})",
        r.atomicity_violations, r.durability_violations
    );
}

#[test]
fn cli_fast_full() {
    if let Some(r) = cli("fast-full", false, "full", Some(OLD)) {
        expect_full(r);
    }
}

#[test]
fn cli_fast_full_new_file() {
    if let Some(r) = cli("fast-full-new-file", false, "full", None) {
        expect_full(r);
    }
}

#[test]
fn cli_fast_integrity() {
    if let Some(r) = cli("fast-integrity", false, "integrity", Some(OLD)) {
        expect_integrity("fast-integrity", r);
    }
}

#[test]
fn cli_fast_none() {
    if let Some(r) = cli("fast-none", false, "none", Some(OLD)) {
        expect_none("fast-none", r);
    }
}

#[test]
fn cli_portable_full() {
    if let Some(r) = cli("portable-full", true, "full", Some(OLD)) {
        expect_full(r);
    }
}

#[test]
fn cli_portable_full_new_file() {
    if let Some(r) = cli("portable-full-new-file", true, "full", None) {
        expect_full(r);
    }
}

#[test]
fn cli_portable_integrity() {
    if let Some(r) = cli("portable-integrity", true, "integrity", Some(OLD)) {
        expect_integrity("portable-integrity", r);
    }
}

#[test]
fn cli_portable_none() {
    if let Some(r) = cli("portable-none", true, "none", Some(OLD)) {
        expect_none("portable-none", r);
    }
}

/// The real Full trace, mutated: removing or moving one barrier must be caught. This
/// shows the checker is not vacuous on the CLI's own operation sequence.
#[test]
fn cli_full_trace_mutations_are_caught() {
    for portable in [false, true] {
        let name = if portable {
            "portable-full-mutated"
        } else {
            "fast-full-mutated"
        };
        if !strace_or_skip(name) {
            return;
        }
        let Some(bin) = bin_or_skip(name) else { return };
        let new = payload(10_000, 5);
        let (_td, scope, dst, input) = setup(Some(OLD), &new);
        let run = Run {
            program: bin,
            args: vec![
                "write".into(),
                "--durability".into(),
                "full".into(),
                dst.clone().into_os_string(),
            ],
            envs: if portable {
                vec![("ATOMWRITE_PORTABLE".into(), "1".into())]
            } else {
                Vec::new()
            },
            stdin: Some(input),
            cwd: scope.clone(),
        };
        let rec = record_ok(name, &scope, &run);
        let (rename_at, file_ino, dir_ino) = rec
            .log
            .events
            .iter()
            .enumerate()
            .find_map(|(i, e)| match e.op {
                Op::Rename { ino, to_parent, .. } => Some((i, ino, to_parent)),
                _ => None,
            })
            .expect("the CLI renames");
        let is_fsync_of = |op: &Op, x| matches!(op, Op::Fsync { ino, .. } if *ino == x);
        let file_fsync = rec
            .log
            .events
            .iter()
            .position(|e| is_fsync_of(&e.op, file_ino))
            .expect("file fsync");
        let dir_fsync = rec
            .log
            .events
            .iter()
            .position(|e| is_fsync_of(&e.op, dir_ino))
            .expect("dir fsync");
        let explore = |label: &str, log: &atomwrite_alice::OpLog| {
            let inv = Invariant {
                dst: dst.clone(),
                old: Some(OLD.to_vec()),
                new: new.clone(),
                durable_from: Some(log.len()),
            };
            explore_and_print(&format!("cli/{name}/{label}"), log, &inv)
        };
        let mut no_data_fsync = rec.log.clone();
        no_data_fsync.events.remove(file_fsync);
        assert!(explore("no-data-fsync", &no_data_fsync).atomicity_violations > 0);

        let mut fsync_after_rename = rec.log.clone();
        let ev = fsync_after_rename.events.remove(file_fsync);
        fsync_after_rename.events.insert(rename_at, ev); // rename shifted left by one
        assert!(explore("fsync-after-rename", &fsync_after_rename).atomicity_violations > 0);

        let mut no_dir_fsync = rec.log.clone();
        no_dir_fsync.events.remove(dir_fsync);
        let r = explore("no-dir-fsync", &no_dir_fsync);
        assert_eq!(r.atomicity_violations, 0);
        assert!(r.durability_violations > 0);
    }
}
