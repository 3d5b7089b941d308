//! Host-side tests of the guest program: the writer and the checker run on a
//! temporary directory without a VM or a crash, so the checker's verdicts can
//! be tested against hand-made damage.

use std::path::Path;
use std::process::{Command, Output};

fn guest(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_atomwrite-vm-guest"))
        .args(args)
        .output()
        .expect("run atomwrite-vm-guest")
}

fn write_versions(dir: &Path, n: u64) {
    let out = guest(&[
        "mode=write".into(),
        format!("dir={}", dir.display()),
        "seed=7".into(),
        format!("crash=none:{n}"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "writer failed: {stdout}");
    assert!(stdout.contains(&format!("COMMITTED v={n} ")), "{stdout}");
    assert!(stdout.contains(&format!("DONE versions={n}")), "{stdout}");
}

fn check(dir: &Path, min: u64, max: u64) -> (bool, String) {
    let out = guest(&[
        "mode=check".into(),
        format!("dir={}", dir.display()),
        "seed=7".into(),
        format!("min={min}"),
        format!("max={max}"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let ok = stdout.contains("VERDICT OK");
    assert_eq!(ok, out.status.success(), "exit status disagrees: {stdout}");
    assert!(
        ok || stdout.contains("VERDICT FAIL"),
        "no verdict: {stdout}"
    );
    (ok, stdout)
}

#[test]
fn committed_version_passes_the_check() {
    let t = tempfile::tempdir().unwrap();
    write_versions(t.path(), 12);
    let (ok, out) = check(t.path(), 12, 12);
    assert!(ok, "{out}");
    assert!(out.contains("dest=v12 "), "{out}");
}

#[test]
fn portable_path_passes_the_check() {
    let t = tempfile::tempdir().unwrap();
    let out = guest(&[
        "mode=write".into(),
        format!("dir={}", t.path().display()),
        "seed=7".into(),
        "crash=none:6".into(),
        "path=portable".into(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "writer failed: {stdout}");
    assert!(stdout.contains("portable=true"), "{stdout}");
    let (ok, out) = check(t.path(), 6, 6);
    assert!(ok, "{out}");
}

#[test]
fn stale_version_is_a_violation() {
    let t = tempfile::tempdir().unwrap();
    write_versions(t.path(), 5);
    let (ok, out) = check(t.path(), 6, 7);
    assert!(!ok, "{out}");
    assert!(out.contains("stale: found v5"), "{out}");
}

#[test]
fn version_never_begun_is_a_violation() {
    let t = tempfile::tempdir().unwrap();
    write_versions(t.path(), 5);
    let (ok, out) = check(t.path(), 0, 4);
    assert!(!ok, "{out}");
}

#[test]
fn truncated_destination_is_a_violation() {
    let t = tempfile::tempdir().unwrap();
    write_versions(t.path(), 3);
    let p = t.path().join("data.bin");
    let len = std::fs::metadata(&p).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(len - 1).unwrap();
    let (ok, out) = check(t.path(), 3, 3);
    assert!(!ok, "{out}");
    assert!(out.contains("not one complete version"), "{out}");
}

#[test]
fn empty_destination_is_a_violation() {
    let t = tempfile::tempdir().unwrap();
    write_versions(t.path(), 2);
    std::fs::write(t.path().join("data.bin"), b"").unwrap();
    let (ok, out) = check(t.path(), 0, 2);
    assert!(!ok, "{out}");
    assert!(out.contains("empty file"), "{out}");
}

#[test]
fn missing_destination_is_fine_only_if_nothing_was_committed() {
    let t = tempfile::tempdir().unwrap();
    assert!(check(t.path(), 0, 1).0);
    let (ok, out) = check(t.path(), 1, 1);
    assert!(!ok, "{out}");
    assert!(out.contains("destination missing"), "{out}");
}

#[test]
fn hidden_temp_leftover_is_allowed_and_cleaned() {
    let t = tempfile::tempdir().unwrap();
    write_versions(t.path(), 4);
    let tmp = t.path().join(".data.bin.k3j2h7qrstuvwxyz.tmp");
    std::fs::write(&tmp, b"AWVMv001 partial").unwrap();
    let (ok, out) = check(t.path(), 4, 5);
    assert!(ok, "{out}");
    assert!(
        out.contains("LEFTOVER .data.bin.k3j2h7qrstuvwxyz.tmp"),
        "{out}"
    );
    assert!(!tmp.exists(), "clean should have removed the temp: {out}");
}

#[test]
fn visible_leftover_is_a_violation() {
    let t = tempfile::tempdir().unwrap();
    write_versions(t.path(), 2);
    std::fs::write(t.path().join("data.bin.partial"), b"x").unwrap();
    let (ok, out) = check(t.path(), 2, 2);
    assert!(!ok, "{out}");
    assert!(
        out.contains("unexpected visible entry `data.bin.partial`"),
        "{out}"
    );
}
