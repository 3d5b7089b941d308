//! Shared helpers for the alice integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use atomwrite_alice::{Invariant, Limits, OpLog, Recording, Report, Run, explore, record};

/// Is this a CI run (where nothing may skip)?
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skip (return false, printing why) unless strace works; under CI=true, panic instead.
pub fn strace_or_skip(test: &str) -> bool {
    match atomwrite_alice::strace_available() {
        Ok(()) => true,
        Err(why) if ci() => panic!("{test}: CI=true and strace is unusable: {why}"),
        Err(why) => {
            println!("SKIP {test}: {why} (install with `apt-get install -y strace`)");
            false
        }
    }
}

/// Explore `log` against `inv`, print the per-scenario figures and examples.
pub fn explore_and_print(scenario: &str, log: &OpLog, inv: &Invariant) -> Report {
    let rep = explore(log, inv, &Limits::default());
    println!("alice scenario {scenario}: {}", rep.summary());
    for v in rep.examples.iter().take(3) {
        let mut s = v.to_string();
        if s.len() > 400 {
            s.truncate(400);
            s.push_str("...");
        }
        println!("    e.g. {s}");
    }
    rep
}

/// Deterministic test payload of `len` bytes (not all equal, page-spanning).
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .rotate_left(seed as u32 % 31) as u8
                ^ seed
        })
        .collect()
}

/// A fresh scope directory holding `dst` (with `old` contents if Some) and, outside
/// the scope, the input file with `new`. Returns (tempdir guard, scope dir, dst, input).
pub fn setup(old: Option<&[u8]>, new: &[u8]) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let td = tempfile::tempdir().expect("tempdir");
    let base = std::fs::canonicalize(td.path()).unwrap();
    let scope = base.join("scope");
    std::fs::create_dir(&scope).unwrap();
    let dst = scope.join("out.dat");
    if let Some(o) = old {
        std::fs::write(&dst, o).unwrap();
    }
    let input = base.join("input.bin");
    std::fs::write(&input, new).unwrap();
    (td, scope, dst, input)
}

/// Record `run` in `scope`, assert the trace was fully understood, and return it.
pub fn record_ok(scenario: &str, scope: &Path, run: &Run) -> Recording {
    let rec = record(scope, run).unwrap_or_else(|e| panic!("{scenario}: recording failed: {e}"));
    assert!(
        rec.fidelity.is_empty(),
        "{scenario}: the model's final image differs from the disk (trace misunderstood): {:#?}\nops: {:#?}",
        rec.fidelity,
        rec.log
            .events
            .iter()
            .map(|e| e.op.to_string())
            .collect::<Vec<_>>()
    );
    for w in &rec.stats.warnings {
        println!("    warning ({scenario}): {w}");
    }
    rec
}
