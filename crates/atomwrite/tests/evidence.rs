//! Deletion needs evidence: retention and `clean` never remove a version that was ever current,
//! a file atomwrite did not make, or another destination's leftovers; crash leftovers (real
//! crashes: child processes SIGKILLed at each publish step) are recognised by their pending
//! marker and removed. Temp dirs are created inside `$TEST_DIR` when it is set.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atomwrite::{CleanOptions, Publisher};
use proptest::prelude::*;

const ROLE_ENV: &str = "ATOMWRITE_EVIDENCE_ROLE";

fn tmp() -> tempfile::TempDir {
    match std::env::var_os("TEST_DIR") {
        Some(d) => {
            fs::create_dir_all(&d).unwrap();
            tempfile::tempdir_in(d).unwrap()
        }
        None => tempfile::tempdir().unwrap(),
    }
}

fn numbers(dst: &Path) -> Vec<u64> {
    atomwrite::versions(dst)
        .unwrap()
        .versions
        .iter()
        .map(|v| v.version)
        .collect()
}

fn vpath(dst: &Path, n: u64) -> PathBuf {
    let name = dst.file_name().unwrap().to_string_lossy().into_owned();
    dst.with_file_name(format!("{name}.versions/v{n:010}.txt"))
}

/// `ln -sfn NAME.versions/v… NAME`, as an operator rolls back by hand.
fn rollback(dst: &Path, n: u64) {
    let name = dst.file_name().unwrap().to_string_lossy().into_owned();
    let tmp = dst.with_file_name(".rollback");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("{name}.versions/v{n:010}.txt"), &tmp).unwrap();
    fs::rename(&tmp, dst).unwrap();
}

fn clean_all(dir: &Path) -> atomwrite::CleanReport {
    atomwrite::clean_with(
        dir,
        &CleanOptions {
            older_than: Duration::ZERO,
            dry_run: false,
            recursive: false,
        },
    )
    .unwrap()
}

#[test]
fn hand_rollback_then_publish_keep_never_removes_versions_that_were_current() {
    let d = tmp();
    let dst = d.path().join("r.txt");
    for i in 1..=4u8 {
        Publisher::new().publish(&dst, &[b'0' + i]).unwrap();
    }
    rollback(&dst, 2);
    assert!(clean_all(d.path()).leftovers.is_empty());
    let p = Publisher::new().keep(10).publish(&dst, b"5").unwrap();
    assert_eq!(p.version, 5);
    assert!(p.removed.is_empty(), "{:?}", p.removed);
    assert_eq!(numbers(&dst), vec![1, 2, 3, 4, 5]);
    // Rolled back again: clean and a plain publish remove nothing; retention then counts the
    // history below the new version and always keeps the one it replaced (v1).
    rollback(&dst, 1);
    assert!(clean_all(d.path()).leftovers.is_empty());
    let p = Publisher::new().keep(2).publish(&dst, b"6").unwrap();
    assert_eq!((p.version, p.previous), (6, 1));
    assert_eq!(numbers(&dst), vec![1, 5, 6]);
    assert_eq!(fs::read(vpath(&dst, 1)).unwrap(), b"1");
}

#[test]
fn removed_pointer_then_clean_keeps_the_whole_history() {
    let d = tmp();
    let dst = d.path().join("h.txt");
    for i in 1..=3u8 {
        Publisher::new().publish(&dst, &[b'0' + i]).unwrap();
    }
    fs::remove_file(&dst).unwrap();
    let r = clean_all(d.path());
    assert!(r.leftovers.is_empty(), "{r:?}");
    assert_eq!(numbers(&dst), vec![1, 2, 3]);
    // The next publish starts after the history, never reusing a number.
    assert_eq!(Publisher::new().publish(&dst, b"4").unwrap().version, 4);
}

#[test]
fn a_versions_directory_atomwrite_did_not_fill_is_never_touched() {
    let d = tmp();
    let vdir = d.path().join("notes.txt.versions");
    fs::create_dir(&vdir).unwrap();
    fs::write(vdir.join("v0000000001.txt"), b"hand-made").unwrap();
    fs::write(vdir.join("v0000000002.txt"), b"hand-made too").unwrap();
    let r = clean_all(d.path());
    assert!(r.leftovers.is_empty() && r.warnings.is_empty(), "{r:?}");
    assert!(!vdir.join(".lock").exists(), "clean created the lock file");
    let dst = d.path().join("notes.txt");
    let p = Publisher::new().keep(1).publish(&dst, b"mine").unwrap();
    assert_eq!(p.version, 3);
    assert!(p.removed.is_empty(), "{:?}", p.removed);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert_eq!(
        fs::read(vdir.join("v0000000001.txt")).unwrap(),
        b"hand-made"
    );
}

#[test]
fn out_of_range_version_names_are_ignored_never_wrapped() {
    let d = tmp();
    let dst = d.path().join("o.txt");
    Publisher::new().publish(&dst, b"1").unwrap();
    let big = d.path().join("o.txt.versions/v18446744073709551615");
    fs::write(&big, b"x").unwrap();
    fs::remove_file(d.path().join("o.txt.versions/.lock")).unwrap(); // no hint: a listing
    let p = Publisher::new().publish(&dst, b"2").unwrap();
    assert_eq!(p.version, 2);
    let l = atomwrite::versions(&dst).unwrap();
    assert_eq!(l.ignored, vec![big.clone()]);
    assert_eq!(l.current, 2);
    assert!(big.exists());
    assert_eq!(Publisher::new().publish(&dst, b"3").unwrap().version, 3);
}

#[test]
fn one_destinations_cleanup_never_touches_a_prefix_sharing_destination() {
    let d = tmp();
    let a = d.path().join("a");
    let ab = d.path().join("a.b");
    Publisher::new().publish(&a, b"a1").unwrap();
    Publisher::new().publish(&ab, b"ab1").unwrap();
    // a.b's publish is in flight (lock held, marker and temp present) while a is retained.
    let mut pv = Publisher::new().begin(&ab).unwrap();
    std::io::Write::write_all(&mut pv, b"ab2").unwrap();
    assert!(d.path().join(".a.b.v0000000002.pending").is_symlink());
    Publisher::new().publish(&a, b"a2").unwrap();
    let p = Publisher::new().keep(1).publish(&a, b"a3").unwrap();
    assert!(
        p.removed
            .iter()
            .all(|r| !r.to_string_lossy().contains("a.b")),
        "{:?}",
        p.removed
    );
    let r = atomwrite::clean_versions(&a, false).unwrap();
    assert!(r.removed.is_empty(), "{r:?}");
    assert!(d.path().join(".a.b.v0000000002.pending").is_symlink());
    assert_eq!(pv.commit().unwrap().version, 2);
    assert_eq!(fs::read(&ab).unwrap(), b"ab2");
}

#[test]
fn clean_skips_a_foreign_symlink_beside_a_versions_dir_with_a_warning() {
    let d = tmp();
    let dst = d.path().join("foo");
    Publisher::new().publish(&dst, b"1").unwrap();
    fs::remove_file(&dst).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &dst).unwrap();
    let r = clean_all(d.path());
    assert_eq!(r.warnings.len(), 1, "{r:?}");
    assert!(r.warnings[0].contains("not a pointer"), "{r:?}");
    assert!(d.path().join("foo.versions/v0000000001").exists());
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (pause points)"
)]
fn clean_reports_leftovers_by_kind_with_their_bytes() {
    let d = tmp();
    let dst = d.path().join("k.txt");
    Publisher::new().publish(&dst, b"1").unwrap();
    crash_at(&dst, "version-written", b"twelve bytes");
    fs::write(d.path().join(".x.abcdefghijklmnop.tmp"), b"tmp").unwrap();
    let r = clean_all(d.path());
    assert_eq!(r.removed.len(), 1, "{r:?}");
    assert_eq!(r.bytes, 3);
    assert_eq!(r.leftovers.len(), 3, "{r:?}"); // v2, its manifest, its marker
    assert!(r.leftover_bytes > 12, "{r:?}");
    assert_eq!(numbers(&dst), vec![1]);
}

#[test]
fn lock_file_is_open_only_to_those_who_may_publish() {
    let d = tmp();
    let dst = d.path().join("l.txt");
    Publisher::new().publish(&dst, b"1").unwrap();
    let lock = d.path().join("l.txt.versions/.lock");
    assert_eq!(fs::metadata(&lock).unwrap().mode() & 0o777, 0o600);
    // An older release left it world-readable: the next publisher narrows it.
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).unwrap();
    Publisher::new().publish(&dst, b"2").unwrap();
    assert_eq!(fs::metadata(&lock).unwrap().mode() & 0o777, 0o600);
    // A group-writable versions directory: the group may publish, so may lock.
    fs::set_permissions(
        d.path().join("l.txt.versions"),
        fs::Permissions::from_mode(0o2775),
    )
    .unwrap();
    Publisher::new().publish(&dst, b"3").unwrap();
    assert_eq!(fs::metadata(&lock).unwrap().mode() & 0o777, 0o660);
    if !rustix::process::geteuid().is_root() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "needs root in CI"
        );
        eprintln!("SKIP second-uid part: needs root to act as uid 65534");
        return;
    }
    fs::set_permissions(
        d.path().join("l.txt.versions"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    Publisher::new().publish(&dst, b"4").unwrap();
    // uid 65534 can neither open the lock (so cannot hold publishers off) nor publish.
    let out = Command::new("sh")
        .args(["-c", "exec 3<\"$1\" && flock -n 3 && echo LOCKED", "sh"])
        .arg(&lock)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("LOCKED"));
    let t = Instant::now();
    Publisher::new()
        .wait_timeout(Duration::from_secs(20))
        .publish(&dst, b"5")
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(20));
}

use std::os::unix::process::CommandExt;

#[test]
fn waiting_for_another_publisher_is_bounded_by_wait_timeout() {
    let d = tmp();
    let dst = d.path().join("w.txt");
    let holder = Publisher::new().begin(&dst).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let s2 = seen.clone();
    let e = Publisher::new()
        .wait_timeout(Duration::from_millis(200))
        .on_wait(move |w| *s2.lock().unwrap() = Some(w.clone()))
        .publish(&dst, b"late")
        .unwrap_err();
    assert!(e.is_conflict(), "{e}");
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    let w = seen
        .lock()
        .unwrap()
        .clone()
        .expect("the wait was announced");
    // Who holds it is best effort (/proc/locks); when told, it must be right.
    assert!(
        w.holder_pid.is_none_or(|p| p == std::process::id()),
        "{w:?}"
    );
    drop(holder);
    assert!(!dst.exists());
    assert_eq!(Publisher::new().publish(&dst, b"now").unwrap().version, 1);
}

#[test]
fn a_cancel_request_ends_a_blocked_wait_promptly() {
    if std::env::var_os(ROLE_ENV).is_some() {
        return;
    }
    // request_cancel is process-global: run the waiter in a child process.
    let d = tmp();
    let dst = d.path().join("c.txt");
    let holder = Publisher::new().begin(&dst).unwrap();
    let t = Instant::now();
    let out = role("cancel-wait", &dst, "").output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("INTERRUPTED"),
        "{s} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.elapsed() < Duration::from_secs(30));
    drop(holder);
    assert!(!dst.exists());
}

fn role(name: &str, dst: &Path, step: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "zz_helper_process_role",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE_ENV, name)
    .env("ATOMWRITE_EVIDENCE_DST", dst)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if !step.is_empty() {
        c.env("ATOMWRITE_TEST_PAUSE_AT", step);
    }
    c
}

/// A publisher of `data` to `dst` SIGKILLed at `step` (a real crash at exactly that point).
fn crash_at(dst: &Path, step: &str, data: &[u8]) {
    let mut c = role("publish", dst, step)
        .env(
            "ATOMWRITE_EVIDENCE_DATA",
            String::from_utf8_lossy(data).as_ref(),
        )
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(c.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains(&format!("test pause at {step}")) => break,
            Some(Ok(l)) => seen.push(l),
            _ => panic!(
                "the publisher never reached {step}: {seen:?} {:?}",
                c.wait()
            ),
        }
    }
    c.kill().unwrap();
    c.wait().unwrap();
}

/// Not a test by itself: the body of the child processes above (selected by an environment
/// variable; a no-op otherwise).
#[test]
fn zz_helper_process_role() {
    let Some(role) = std::env::var_os(ROLE_ENV) else {
        return;
    };
    let dst = PathBuf::from(std::env::var_os("ATOMWRITE_EVIDENCE_DST").unwrap());
    match role.to_str().unwrap() {
        "publish" => {
            let data = std::env::var("ATOMWRITE_EVIDENCE_DATA").unwrap();
            Publisher::new().publish(&dst, data.as_bytes()).unwrap();
        }
        "cancel-wait" => {
            std::thread::spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                atomwrite::interrupt::request_cancel();
            });
            let e = Publisher::new().publish(&dst, b"x").unwrap_err();
            if e.kind() == std::io::ErrorKind::Interrupted {
                println!("INTERRUPTED");
            } else {
                println!("OTHER {e}");
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[derive(Debug, Clone)]
enum Step {
    Publish,
    Crash(&'static str),
    Rollback(usize),
    RemovePointer,
    CleanVersions,
    CleanDir,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Publish),
        1 => Just(Step::Crash("version-written")),
        1 => Just(Step::Crash("symlink-created")),
        1 => Just(Step::Crash("swapped")),
        1 => (0usize..8).prop_map(Step::Rollback),
        1 => Just(Step::RemovePointer),
        1 => Just(Step::CleanVersions),
        1 => Just(Step::CleanDir),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random sequences of publish, hand rollback, pointer removal, crash at each publish step
    /// and clean never remove a version that was ever current; and after a clean with the pointer
    /// as the crashes left it, no leftover is pending any more.
    #[test]
    #[cfg_attr(not(feature = "test-hooks"), ignore = "needs --features test-hooks (pause points)")]
    fn random_histories_never_lose_a_version_that_was_ever_current(
        steps in proptest::collection::vec(step(), 1..10)
    ) {
        if std::env::var_os(ROLE_ENV).is_some() {
            return Ok(());
        }
        let d = tmp();
        let dst = d.path().join("p.txt");
        let mut ever: BTreeSet<u64> = BTreeSet::new();
        let mut n = 0u8;
        for s in &steps {
            n += 1;
            match s {
                Step::Publish => {
                    Publisher::new().publish(&dst, &[b'a' + n % 26]).unwrap();
                }
                Step::Crash(at) => crash_at(&dst, at, &[b'a' + n % 26]),
                Step::Rollback(i) => {
                    let done: Vec<u64> = atomwrite::versions(&dst)
                        .map(|l| l.versions.iter().filter(|v| !v.pending).map(|v| v.version).collect())
                        .unwrap_or_default();
                    if !done.is_empty() {
                        rollback(&dst, done[i % done.len()]);
                    }
                }
                Step::RemovePointer => {
                    let _ = fs::remove_file(&dst);
                }
                Step::CleanVersions => {
                    atomwrite::clean_versions(&dst, false).unwrap();
                    let l = atomwrite::versions(&dst).unwrap();
                    prop_assert!(l.versions.iter().all(|v| !v.pending), "{:?}", l.versions);
                }
                Step::CleanDir => {
                    clean_all(d.path());
                }
            }
            if let Some(v) = atomwrite::latest(&dst).unwrap() {
                ever.insert(v.version);
            }
            for v in &ever {
                prop_assert!(
                    vpath(&dst, *v).exists(),
                    "version {v} was current and is gone after {s:?} in {steps:?}"
                );
            }
        }
    }
}

fn root_or_skip(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{test} needs root and CI=true forbids skipping"
    );
    eprintln!("SKIP {test}: needs root (chown, mount)");
    false
}

#[test]
fn publish_keeps_the_mode_owner_and_group_of_the_current_version() {
    if !root_or_skip("publish_keeps_the_mode_owner_and_group_of_the_current_version") {
        return;
    }
    let d = tmp();
    // A regular file being migrated: its mode and owner carry over to the new version.
    let dst = d.path().join("secret.conf");
    fs::write(&dst, b"old").unwrap();
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&dst, Some(65534), Some(65534)).unwrap();
    let p = Publisher::new().publish(&dst, b"new").unwrap();
    let md = fs::metadata(&p.path).unwrap();
    assert_eq!(
        (md.mode() & 0o7777, md.uid(), md.gid()),
        (0o600, 65534, 65534)
    );
    // The current version's attributes carry over to the next one.
    let cur = atomwrite::latest(&dst).unwrap().unwrap().path;
    fs::set_permissions(&cur, fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&cur, Some(0), Some(65534)).unwrap();
    let p = Publisher::new().publish(&dst, b"newer").unwrap();
    let md = fs::metadata(&p.path).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o640, 0, 65534));
    // An explicit mode wins.
    let p = Publisher::new()
        .options(atomwrite::Options::new().mode(0o644))
        .publish(&dst, b"public")
        .unwrap();
    assert_eq!(fs::metadata(&p.path).unwrap().mode() & 0o7777, 0o644);
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (pause points)"
)]
fn clean_creates_nothing_and_works_on_a_read_only_filesystem() {
    if !root_or_skip("clean_creates_nothing_and_works_on_a_read_only_filesystem") {
        return;
    }
    let d = tmp();
    let mnt = d.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _u = Unmount(mnt.clone());
    let dst = mnt.join("r.txt");
    Publisher::new().publish(&dst, b"1").unwrap();
    crash_at(&dst, "version-written", b"2");
    // A hand-made versions directory without a lock file, and a temp.
    fs::create_dir(mnt.join("h.txt.versions")).unwrap();
    fs::write(mnt.join("h.txt.versions/v0000000001.txt"), b"h").unwrap();
    fs::write(mnt.join(".x.abcdefghijklmnop.tmp"), b"t").unwrap();
    let listing = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = walk(p);
        v.sort();
        v
    };
    fn walk(p: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            out.push(e.path().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
        out
    }
    let before = listing(&mnt);
    let dry = atomwrite::clean_with(
        &mnt,
        &CleanOptions {
            older_than: Duration::ZERO,
            dry_run: true,
            recursive: true,
        },
    )
    .unwrap();
    assert_eq!(listing(&mnt), before, "a dry run changed the tree");
    assert_eq!((dry.removed.len(), dry.leftovers.len()), (1, 3), "{dry:?}");
    assert!(!mnt.join("h.txt.versions/.lock").exists());
    // Read-only: the dry run still reports everything, creates nothing, fails on nothing.
    let ok = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success();
    assert!(ok, "remount ro");
    let ro = atomwrite::clean_with(
        &mnt,
        &CleanOptions {
            older_than: Duration::ZERO,
            dry_run: true,
            recursive: true,
        },
    )
    .unwrap();
    assert_eq!((ro.removed.len(), ro.leftovers.len()), (1, 3), "{ro:?}");
    assert_eq!(listing(&mnt), before);
    // A real clean there cannot remove anything: it says so, and reports nothing as removed.
    let real = clean_all(&mnt);
    assert!(real.removed.is_empty(), "{real:?}");
    assert!(!real.warnings.is_empty(), "{real:?}");
    assert_eq!(listing(&mnt), before);
}

/// A 0755 temp dir holding a 1777 directory `shared` (like /tmp), for a second uid.
fn sticky_shared() -> (tempfile::TempDir, PathBuf) {
    let d = tmp();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let s = d.path().join("shared");
    fs::create_dir(&s).unwrap();
    fs::set_permissions(&s, fs::Permissions::from_mode(0o1777)).unwrap();
    (d, s)
}

/// Runs `sh -c SCRIPT` as uid/gid 65534 in `dir`.
fn as_nobody(dir: &Path, script: &str) {
    let st = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .uid(65534)
        .gid(65534)
        .status()
        .unwrap();
    assert!(st.success(), "as nobody: {script}");
}

#[test]
fn markers_planted_by_another_user_never_get_a_version_removed() {
    if !root_or_skip("markers_planted_by_another_user_never_get_a_version_removed") {
        return;
    }
    let (_d, s) = sticky_shared();
    let dst = s.join("db");
    for i in 1..=4u8 {
        Publisher::new().publish(&dst, &[b'0' + i]).unwrap();
    }
    rollback_noext(&dst, 2);
    as_nobody(
        &s,
        "for n in 1 3 4; do ln -s db.versions/v000000000$n .db.v000000000$n.pending; done",
    );
    let r = clean_all(&s);
    assert!(r.leftovers.is_empty(), "{r:?}");
    assert_eq!(r.warnings.len(), 3, "{r:?}");
    let p = Publisher::new().keep(10).publish(&dst, b"5").unwrap();
    assert!(p.removed.is_empty(), "{:?}", p.removed);
    assert_eq!(numbers(&dst), vec![1, 2, 3, 4, 5]);
    // Even the owner's own marker proves nothing when it is newer than the version it names.
    fs::remove_file(s.join(".db.v0000000003.pending")).unwrap();
    std::os::unix::fs::symlink("db.versions/v0000000003", s.join(".db.v0000000003.pending"))
        .unwrap();
    let r = atomwrite::clean_versions(&dst, false).unwrap();
    assert!(r.removed.is_empty(), "{r:?}");
    assert!(s.join("db.versions/v0000000003").exists());
}

fn rollback_noext(dst: &Path, n: u64) {
    let name = dst.file_name().unwrap().to_string_lossy().into_owned();
    let tmp = dst.with_file_name(".rollback");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("{name}.versions/v{n:010}"), &tmp).unwrap();
    fs::rename(&tmp, dst).unwrap();
}

#[test]
fn publish_refuses_what_another_user_owns_in_a_sticky_directory() {
    if !root_or_skip("publish_refuses_what_another_user_owns_in_a_sticky_directory") {
        return;
    }
    let (_d, s) = sticky_shared();
    // (a) another user's regular file at DST: not migrated, not replaced.
    as_nobody(&s, "echo theirs > nf; chmod 666 nf");
    let e = Publisher::new()
        .publish(s.join("nf"), b"secret")
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("protected_regular"), "{e}");
    assert_eq!(fs::read(s.join("nf")).unwrap(), b"theirs\n");
    assert!(!s.join("nf.versions").exists());
    // (b) another user's pointer and versions directory.
    as_nobody(
        &s,
        "mkdir q.versions && echo x > q.versions/v0000000001 && ln -s q.versions/v0000000001 q",
    );
    let e = Publisher::new()
        .publish(s.join("q"), b"secret")
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    // (c) a versions directory made in advance by another user.
    as_nobody(&s, "mkdir -m 777 report.versions");
    let e = Publisher::new()
        .publish(s.join("report"), b"secret")
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    assert!(!s.join("report").exists());
    assert_eq!(fs::read_dir(s.join("report.versions")).unwrap().count(), 0);
}

#[test]
fn sources_behind_another_users_link_in_a_sticky_directory_are_not_read() {
    if !root_or_skip("sources_behind_another_users_link_in_a_sticky_directory_are_not_read") {
        return;
    }
    let (d, s) = sticky_shared();
    let secret = d.path().join("secret");
    fs::create_dir(&secret).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(secret.join("s"), b"TOPSECRET").unwrap();
    as_nobody(
        &s,
        &format!(
            "ln -s {} tl && ln -s {}/s fl",
            secret.display(),
            secret.display()
        ),
    );
    for p in [s.join("tl/s"), s.join("fl")] {
        let e = atomwrite::open_source(&p).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    }
    let e = Publisher::new()
        .publish_dir(d.path().join("site"), s.join("tl"))
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    assert!(!d.path().join("site").exists());
    assert!(!d.path().join("site.versions").exists());
    // The caller's own link is followed.
    std::os::unix::fs::symlink(secret.join("s"), s.join("mine")).unwrap();
    let f = atomwrite::open_source(s.join("mine")).unwrap();
    assert_eq!(std::io::read_to_string(f).unwrap(), "TOPSECRET");
}

#[test]
fn refused_publishes_leave_nothing_behind() {
    let d = tmp();
    // A destination written as a directory.
    fs::write(d.path().join("reg"), b"r").unwrap();
    let e = Publisher::new()
        .publish(d.path().join("reg/"), b"x")
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(20), "{e}"); // ENOTDIR
    assert_eq!(fs::read(d.path().join("reg")).unwrap(), b"r");
    // A destination inside the tree being published: no `.versions` left in the source.
    let t = d.path().join("t");
    fs::create_dir_all(t.join("inner")).unwrap();
    fs::write(t.join("a"), b"a").unwrap();
    Publisher::new()
        .publish_dir(t.join("inner/site"), &t)
        .unwrap_err();
    assert!(!t.join("inner/site.versions").exists());
    // A failed first publish (the fill fails): no versions directory left.
    let e = Publisher::new()
        .publish_with(d.path().join("pp"), |_| {
            Err(std::io::Error::other("no input"))
        })
        .unwrap_err();
    assert!(e.to_string().contains("no input"), "{e}");
    assert!(!d.path().join("pp.versions").exists());
    assert!(!d.path().join("pp").exists());
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (pause points)"
)]
fn a_dry_run_counts_each_leftover_once() {
    let d = tmp();
    let dst = d.path().join("noext");
    Publisher::new().publish(&dst, b"1").unwrap();
    crash_at(&dst, "version-written", b"22");
    let dry = atomwrite::clean_versions(&dst, true).unwrap();
    let real = atomwrite::clean_versions(&dst, false).unwrap();
    assert_eq!(dry.removed, real.removed);
    assert_eq!(dry.bytes, real.bytes);
    assert_eq!(real.removed.len(), 3, "{real:?}"); // v2, its manifest, its marker
}

#[test]
fn publish_from_a_source_gives_the_first_version_its_mode() {
    let d = tmp();
    let dst = d.path().join("tool");
    let p = Publisher::new()
        .source_mode(0o4755)
        .publish(&dst, b"#!/bin/sh\n")
        .unwrap();
    let um = {
        let m = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        rustix::process::umask(m);
        m.as_raw_mode()
    };
    assert_eq!(
        fs::metadata(&p.path).unwrap().mode() & 0o7777,
        0o755 & !um,
        "never set-id, umask applied"
    );
}
