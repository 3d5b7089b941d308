//! Hand-written op logs: the correct sequences pass, the broken ones are caught.

mod common;

use std::path::Path;

use atomwrite_alice::oplog::RenameFlags;
use atomwrite_alice::{Invariant, Kind, LogBuilder, OpLog};
use common::{explore_and_print, payload};

const ROOT: &str = "/model";

fn dst() -> &'static Path {
    Path::new("/model/dst")
}

fn tmp() -> &'static Path {
    Path::new("/model/.dst.1.tmp")
}

/// Build a log from step names (same vocabulary as `alice-seq`).
fn build(old: Option<&[u8]>, new: &[u8], steps: &[&str]) -> OpLog {
    let files: Vec<(&str, &[u8])> = old.map(|o| vec![("dst", o)]).unwrap_or_default();
    let mut b = LogBuilder::with_files(ROOT, &files);
    let dir = b.lookup(Path::new(ROOT)).unwrap();
    let mut ino = None;
    for s in steps {
        match *s {
            "tmp-named" => ino = Some(b.create(tmp(), Kind::File, s).unwrap()),
            "tmp-unnamed" => ino = Some(b.tmpfile(Path::new(ROOT), s).unwrap()),
            "inplace" => {
                let i = match b.lookup(dst()) {
                    Some(i) => {
                        b.truncate(i, 0, s);
                        i
                    }
                    None => b.create(dst(), Kind::File, s).unwrap(),
                };
                ino = Some(i);
            }
            "write" => {
                let i = ino.unwrap();
                for (k, chunk) in new.chunks(4096).enumerate() {
                    b.write(i, (k * 4096) as u64, chunk, s);
                }
            }
            "fsync" => b.fsync(ino.unwrap(), false, s),
            "fdatasync" => b.fsync(ino.unwrap(), true, s),
            "link-tmp" => b.link(ino.unwrap(), tmp(), s).unwrap(),
            "rename" => b.rename(tmp(), dst(), RenameFlags::default(), s).unwrap(),
            "rename-noreplace" => b
                .rename(
                    tmp(),
                    dst(),
                    RenameFlags {
                        noreplace: true,
                        exchange: false,
                    },
                    s,
                )
                .unwrap(),
            "dirsync" => b.fsync(dir, false, s),
            "close" => b.close(ino.unwrap(), s),
            other => panic!("unknown step {other}"),
        }
    }
    b.exit(0, "exit");
    b.finish().0
}

fn inv(old: Option<&[u8]>, new: &[u8], log: &OpLog, full: bool) -> Invariant {
    Invariant {
        dst: dst().to_path_buf(),
        old: old.map(<[u8]>::to_vec),
        new: new.to_vec(),
        durable_from: full.then_some(log.len()),
    }
}

fn run(name: &str, old: Option<&[u8]>, steps: &[&str], full: bool) -> atomwrite_alice::Report {
    let new = payload(10_000, 7);
    let log = build(old, &new, steps);
    let rep = explore_and_print(&format!("hand/{name}"), &log, &inv(old, &new, &log, full));
    assert!(
        rep.final_ok,
        "{name}: the no-crash run must end with the new contents"
    );
    assert!(
        !rep.bounded,
        "{name}: exploration must be exhaustive for these small logs"
    );
    rep
}

const OLD: &[u8] = b"old complete contents\n";

#[test]
fn correct_named_temp_passes() {
    let r = run(
        "correct-named",
        Some(OLD),
        &["tmp-named", "write", "fsync", "close", "rename", "dirsync"],
        true,
    );
    assert_eq!(r.violations(), 0, "{:#?}", r.examples);
    assert!(r.states > r.ops, "explored more states than ops");
}

#[test]
fn correct_tmpfile_passes() {
    let r = run(
        "correct-tmpfile",
        Some(OLD),
        &[
            "tmp-unnamed",
            "write",
            "fdatasync",
            "link-tmp",
            "rename",
            "dirsync",
            "close",
        ],
        true,
    );
    assert_eq!(r.violations(), 0, "{:#?}", r.examples);
}

#[test]
fn correct_create_only_passes_when_dst_absent() {
    let r = run(
        "correct-create-only",
        None,
        &[
            "tmp-named",
            "write",
            "fsync",
            "rename-noreplace",
            "dirsync",
            "close",
        ],
        true,
    );
    assert_eq!(r.violations(), 0, "{:#?}", r.examples);
}

#[test]
fn broken_no_data_fsync_is_caught() {
    let r = run(
        "broken-no-fsync",
        Some(OLD),
        &["tmp-named", "write", "close", "rename", "dirsync"],
        true,
    );
    assert!(
        r.atomicity_violations > 0,
        "missing data fsync must break atomicity"
    );
}

#[test]
fn broken_fsync_after_rename_is_caught() {
    let steps = ["tmp-named", "write", "rename", "fsync", "dirsync", "close"];
    let r = run("broken-fsync-after-rename", Some(OLD), &steps, true);
    assert!(
        r.atomicity_violations > 0,
        "fsync after rename must break atomicity"
    );
    // Every violation is at the crash point right after the rename (before the fsync).
    let log = build(Some(OLD), &payload(10_000, 7), &steps);
    let after_rename = 1 + log
        .events
        .iter()
        .position(|e| matches!(e.op, atomwrite_alice::Op::Rename { .. }))
        .unwrap();
    assert!(
        r.examples.iter().all(|v| v.point == after_rename),
        "{:#?}",
        r.examples
    );
}

#[test]
fn broken_no_dir_fsync_is_caught_under_full() {
    let steps = ["tmp-named", "write", "fsync", "close", "rename"];
    let r = run("broken-no-dirsync(full)", Some(OLD), &steps, true);
    assert_eq!(r.atomicity_violations, 0, "still atomic: {:#?}", r.examples);
    assert!(
        r.durability_violations > 0,
        "rename not durable after success"
    );
    // The same sequence is fine when only Integrity is required.
    let r = run("broken-no-dirsync(integrity)", Some(OLD), &steps, false);
    assert_eq!(r.violations(), 0);
}

#[test]
fn broken_in_place_write_is_caught() {
    let r = run(
        "broken-inplace",
        Some(OLD),
        &["inplace", "write", "fsync", "close"],
        true,
    );
    assert!(
        r.atomicity_violations > 0,
        "in-place truncate+write must break atomicity"
    );
}

#[test]
fn broken_sequence_reports_torn_states_precisely() {
    // No fsync at all: after the rename the destination can be empty, a prefix, or zeros.
    let new = payload(10_000, 7);
    let log = build(
        Some(OLD),
        &new,
        &["tmp-named", "write", "rename", "dirsync"],
    );
    let rep = atomwrite_alice::explore(
        &log,
        &inv(Some(OLD), &new, &log, false),
        &Default::default(),
    );
    let texts: Vec<String> = rep.examples.iter().map(|v| v.detail.clone()).collect();
    assert!(texts.iter().any(|t| t.contains("EMPTY")), "{texts:#?}");
}

#[test]
fn large_writes_hit_the_bound_but_still_catch_violations() {
    // 64 KiB written as 16 page units: more than the exhaustive limit (10), so the data
    // variants of one inode are prefixes, single omissions and single inclusions.
    let new = payload(64 * 1024, 9);
    let log = build(Some(OLD), &new, &["inplace", "write", "fsync", "close"]);
    let rep = explore_and_print(
        "hand/broken-inplace-64KiB",
        &log,
        &inv(Some(OLD), &new, &log, true),
    );
    assert!(rep.bounded, "16 volatile units exceed the exhaustive bound");
    assert!(rep.atomicity_violations > 0);
    // The correct sequence never exposes the volatile units at the destination, so it is
    // explored exhaustively and passes.
    let log = build(
        Some(OLD),
        &new,
        &["tmp-named", "write", "fsync", "rename", "dirsync", "close"],
    );
    let rep = explore_and_print(
        "hand/correct-named-64KiB",
        &log,
        &inv(Some(OLD), &new, &log, true),
    );
    assert_eq!(rep.violations(), 0, "{:#?}", rep.examples);
}
