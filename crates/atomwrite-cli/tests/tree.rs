//! `publish --dir` of trees that hold what must not be published as is: a FIFO (a one-line
//! error, exit 1, nothing published, nothing left, never a blocked open), set-id bits (dropped),
//! symlinks (copied as links, never followed). Temp dirs are created inside `$TEST_DIR` when set.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("atomwrite")
}

fn tmp() -> tempfile::TempDir {
    match std::env::var_os("TEST_DIR") {
        Some(d) => {
            fs::create_dir_all(&d).unwrap();
            tempfile::tempdir_in(d).unwrap()
        }
        None => tempfile::tempdir().unwrap(),
    }
}

/// Runs atomwrite in `dir`; a run that does not end within a generous bound is killed and the
/// test fails (a blocked open must fail the test, not hang it).
fn aw(dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("ATOMWRITE_TEST_PAUSE_AT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut waited = Duration::ZERO;
    while c.try_wait().unwrap().is_none() {
        if waited > Duration::from_secs(120) {
            let _ = c.kill();
            let o = c.wait_with_output().unwrap();
            panic!(
                "atomwrite {args:?} blocked; stderr: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
        waited += Duration::from_millis(10);
    }
    c.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn publish_dir_with_a_fifo_fails_in_one_line_and_changes_nothing() {
    let d = tmp();
    let src = d.path().join("build");
    fs::create_dir_all(src.join("assets")).unwrap();
    fs::write(src.join("index.html"), b"v1").unwrap();
    let o = aw(d.path(), &["publish", "--dir", "build", "site"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let vdir = d.path().join("site.versions");
    let before = listing(&vdir);
    let top = listing(d.path());

    fs::write(src.join("index.html"), b"v2").unwrap();
    let dir = fs::File::open(src.join("assets")).unwrap();
    rustix::fs::mknodat(
        &dir,
        "feed",
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let o = aw(d.path(), &["publish", "--dir", "build", "site"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "stderr: {e:?}");
    assert!(e.starts_with("atomwrite: "), "{e:?}");
    assert!(
        e.contains("build/assets/feed") && e.contains("is a FIFO"),
        "{e:?}"
    );
    // The destination is byte-for-byte unchanged, and nothing was left behind.
    assert_eq!(fs::read(d.path().join("site/index.html")).unwrap(), b"v1");
    assert_eq!(
        fs::read_link(d.path().join("site")).unwrap(),
        PathBuf::from("site.versions/v0000000001")
    );
    assert_eq!(listing(&vdir), before);
    assert_eq!(listing(d.path()), top);
    for p in listing(&vdir) {
        assert!(!atomwrite::is_temp_name(p.file_name().unwrap()), "{p:?}");
    }
}

#[test]
fn publish_dir_drops_set_id_bits_and_copies_links_as_links() {
    let d = tmp();
    let src = d.path().join("build");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(src.join("bin/tool"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("bin/tool"), fs::Permissions::from_mode(0o6755)).unwrap();
    fs::set_permissions(src.join("bin"), fs::Permissions::from_mode(0o2775)).unwrap();
    fs::write(d.path().join("outside.txt"), b"outside").unwrap();
    symlink(d.path().join("outside.txt"), src.join("out")).unwrap();
    let o = aw(d.path(), &["publish", "--dir", "build", "site"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let umask = umask();
    let site = d.path().join("site");
    let mode = |p: &str| fs::metadata(site.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("bin/tool"), 0o755 & !umask);
    assert_eq!(mode("bin"), 0o775 & !umask);
    let out = site.join("out");
    assert!(fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_link(&out).unwrap(), d.path().join("outside.txt"));
    let o = aw(d.path(), &["verify", "site"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// This process's umask, read from `/proc/self/status` (without changing it).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}
