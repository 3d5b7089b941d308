//! Batches are as safe as single writes, and interruption tells the truth: every named temp
//! is `flock`ed and registered, a cancel or an error in the rename phase stops the batch,
//! makes what it renamed durable, removes the rest and says which is which.
//!
//! Cancels and `remove_temps` are process-wide and sticky, so those scenarios run in a child
//! process (this test binary re-executed with one test selected and `BATCH_CHILD=1`); the
//! pause points need `--features test-hooks`. Honours `TEST_DIR`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use atomwrite::{Batch, Options, interrupt};

fn tmp() -> tempfile::TempDir {
    match std::env::var_os("TEST_DIR") {
        Some(d) => tempfile::tempdir_in(d).expect("TEST_DIR must be a writable directory"),
        None => tempfile::tempdir().unwrap(),
    }
}

fn both() -> [Options; 2] {
    [Options::new(), Options::new().portable(true)]
}

fn temps_in(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| atomwrite::is_temp_name(&e.file_name()))
        .map(|e| e.path())
        .collect()
}

fn names(dir: &Path, n: usize) -> Vec<PathBuf> {
    (1..=n).map(|i| dir.join(format!("f{i}"))).collect()
}

/// Whether this process is the re-executed child of [`in_child`].
fn is_child() -> bool {
    std::env::var_os("BATCH_CHILD").is_some()
}

/// Runs the test `name` of this binary in a child process (optionally under `wrap`, e.g.
/// strace) with `dir` in `BATCH_DIR`; returns its combined output after asserting success.
fn in_child(name: &str, dir: &Path, wrap: &[&str]) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut c = match wrap.split_first() {
        Some((prog, args)) => {
            let mut c = Command::new(prog);
            c.args(args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    c.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("BATCH_CHILD", "1")
        .env("BATCH_DIR", dir)
        .stdin(Stdio::null());
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child {name} failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "child {name} did not run:\n{text}"
    );
    text
}

fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("BATCH_DIR").expect("BATCH_DIR"))
}

#[test]
fn create_only_conflict_at_rename_time_reports_replaced_and_not_replaced() {
    for opts in both() {
        let d = tmp();
        let paths = names(d.path(), 5);
        let mut b = Batch::new(opts.no_clobber(true));
        for p in &paths {
            b.add(p, b"new").unwrap();
        }
        // Someone else creates f3 after the batch opened it: the kernel's create-only rename
        // (or link) is the final word.
        fs::write(&paths[2], b"theirs").unwrap();
        let e = b.commit().unwrap_err();
        assert!(e.is_conflict(), "{e}");
        let o = e
            .batch_outcome()
            .expect("every commit error carries the outcome");
        assert_eq!(o.replaced(), &paths[..2], "{e}");
        assert_eq!(o.not_replaced(), &paths[2..], "{e}");
        assert!(e.to_string().contains("2 of 5 files"), "{e}");
        assert_eq!(fs::read(&paths[0]).unwrap(), b"new");
        assert_eq!(fs::read(&paths[1]).unwrap(), b"new");
        assert_eq!(fs::read(&paths[2]).unwrap(), b"theirs");
        assert!(!paths[3].exists() && !paths[4].exists());
        assert!(temps_in(d.path()).is_empty(), "{:?}", temps_in(d.path()));
    }
}

#[test]
fn an_error_at_the_first_rename_reports_nothing_replaced() {
    let d = tmp();
    let paths = names(d.path(), 3);
    for p in &paths {
        fs::write(p, b"old").unwrap();
    }
    let mut b = Batch::new(Options::new().portable(true));
    for p in &paths {
        b.add(p, b"new").unwrap();
    }
    // The first destination becomes a directory: its rename fails (EISDIR), the batch stops
    // before anything is visible.
    fs::remove_file(&paths[0]).unwrap();
    fs::create_dir(&paths[0]).unwrap();
    let e = b.commit().unwrap_err();
    let o = e.batch_outcome().unwrap();
    assert!(o.replaced().is_empty(), "{e}");
    assert_eq!(o.not_replaced(), &paths[..], "{e}");
    assert_eq!(fs::read(&paths[1]).unwrap(), b"old");
    assert_eq!(fs::read(&paths[2]).unwrap(), b"old");
    assert!(temps_in(d.path()).is_empty());
}

#[test]
fn every_named_temp_is_registered_until_published() {
    for opts in both() {
        let d = tmp();
        let before = interrupt::registered_temps();
        let mut f = opts.open(d.path().join("x")).unwrap();
        f.write_all_bytes(b"1").unwrap();
        let mine: Vec<PathBuf> = interrupt::registered_temps()
            .into_iter()
            .filter(|p| p.starts_with(d.path()))
            .collect();
        // Portable: the named temp exists and is registered; O_TMPFILE: nothing named yet.
        assert_eq!(mine, temps_in(d.path()), "{before:?}");
        f.commit().unwrap();
        assert!(
            !interrupt::registered_temps()
                .iter()
                .any(|p| p.starts_with(d.path())),
            "still registered after commit"
        );
        let f = opts.open(d.path().join("y")).unwrap();
        drop(f);
        assert!(
            !interrupt::registered_temps()
                .iter()
                .any(|p| p.starts_with(d.path()))
        );
        assert!(temps_in(d.path()).is_empty());
    }
}

#[test]
fn quiesce_waits_for_a_commit_in_progress() {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (leave_tx, leave_rx) = mpsc::channel::<()>();
    let inside = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let in2 = inside.clone();
    let committer = std::thread::spawn(move || {
        interrupt::critical(|| {
            in2.store(true, std::sync::atomic::Ordering::SeqCst);
            entered_tx.send(()).unwrap();
            leave_rx.recv().unwrap();
            in2.store(false, std::sync::atomic::Ordering::SeqCst);
        })
    });
    entered_rx.recv().unwrap();
    let in3 = inside.clone();
    let (saw_tx, saw_rx) = mpsc::channel();
    let reporter = std::thread::spawn(move || {
        interrupt::quiesce(|| saw_tx.send(in3.load(std::sync::atomic::Ordering::SeqCst))).unwrap();
    });
    // The reporter must not get in while the commit is inside.
    assert!(saw_rx.recv_timeout(Duration::from_millis(200)).is_err());
    leave_tx.send(()).unwrap();
    let saw_commit_inside = saw_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(!saw_commit_inside);
    committer.join().unwrap();
    reporter.join().unwrap();
}

#[test]
fn request_cancel_wakes_a_blocked_waiter() {
    if !is_child() {
        in_child("request_cancel_wakes_a_blocked_waiter", Path::new("."), &[]);
        return;
    }
    let (tx, rx) = mpsc::channel();
    let (started_tx, started_rx) = mpsc::channel();
    std::thread::spawn(move || {
        started_tx.send(()).unwrap();
        // An hour: only the cancel can end this wait within the test's bound.
        tx.send(interrupt::sleep_unless_cancelled(Duration::from_secs(3600)))
            .unwrap();
    });
    started_rx.recv().unwrap();
    assert!(!interrupt::cancel_requested());
    interrupt::request_cancel();
    let woke = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the waiter did not wake on request_cancel");
    assert!(woke);
    // Once requested, a new wait returns at once.
    assert!(interrupt::sleep_unless_cancelled(Duration::from_secs(3600)));
}

#[test]
fn cancel_before_commit_replaces_nothing_and_removes_every_temp() {
    if !is_child() {
        let d = tmp();
        in_child(
            "cancel_before_commit_replaces_nothing_and_removes_every_temp",
            d.path(),
            &[],
        );
        return;
    }
    let dir = child_dir();
    for (k, opts) in both().into_iter().enumerate() {
        let paths: Vec<PathBuf> = (1..=4).map(|i| dir.join(format!("c{k}-{i}"))).collect();
        for p in &paths {
            fs::write(p, b"old").unwrap();
        }
        let mut b = Batch::new(opts);
        for p in &paths {
            b.add(p, b"new").unwrap();
        }
        interrupt::request_cancel();
        let e = b.commit().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "{e}");
        let o = e.batch_outcome().unwrap();
        assert!(o.replaced().is_empty());
        assert_eq!(o.not_replaced(), &paths[..]);
        for p in &paths {
            assert_eq!(fs::read(p).unwrap(), b"old");
        }
        assert!(temps_in(&dir).is_empty());
    }
}

#[test]
fn remove_temps_unlinks_registered_temps_and_stops_new_ones() {
    if !is_child() {
        let d = tmp();
        in_child(
            "remove_temps_unlinks_registered_temps_and_stops_new_ones",
            d.path(),
            &[],
        );
        return;
    }
    let dir = child_dir();
    fs::write(dir.join("dst"), b"old").unwrap();
    let mut f = Options::new().portable(true).open(dir.join("dst")).unwrap();
    f.write_all_bytes(b"new").unwrap();
    let temp = f.temp_path().unwrap();
    assert!(temp.exists());
    // A temp registered by another user of the registry (e.g. a pointer symlink temp).
    let dfd = std::sync::Arc::new(std::os::fd::OwnedFd::from(fs::File::open(&dir).unwrap()));
    fs::write(dir.join(".other.aaaaaaaaaaaaaaaa.tmp"), b"x").unwrap();
    let token = interrupt::register_temp(
        dfd,
        ".other.aaaaaaaaaaaaaaaa.tmp".into(),
        dir.join(".other.aaaaaaaaaaaaaaaa.tmp"),
    );
    interrupt::remove_temps();
    assert!(!temp.exists(), "the named temp survived remove_temps");
    assert!(!dir.join(".other.aaaaaaaaaaaaaaaa.tmp").exists());
    drop(token);
    // The process is stopping: nothing is published any more, nothing new is created.
    let e = f.commit().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "{e}");
    assert_eq!(fs::read(dir.join("dst")).unwrap(), b"old");
    let e = Options::new()
        .portable(true)
        .open(dir.join("dst2"))
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "{e}");
    assert!(temps_in(&dir).is_empty(), "{:?}", temps_in(&dir));
}

// ---- pause points (`--features test-hooks`) ----------------------------------------------

/// Runs `f` at the pause point `at` of batches committed on this thread only (other tests
/// of this binary run batches concurrently).
#[cfg(feature = "test-hooks")]
fn on_point(at: &'static str, index: usize, f: impl Fn() + Send + Sync + 'static) {
    let me = std::thread::current().id();
    interrupt::test_hooks::set(move |name, i| {
        if std::thread::current().id() == me && name == at && i == index {
            f();
        }
    });
}

#[cfg(feature = "test-hooks")]
#[test]
fn clean_leaves_a_live_batchs_temps_alone() {
    if !is_child() {
        let d = tmp();
        in_child("clean_leaves_a_live_batchs_temps_alone", d.path(), &[]);
        return;
    }
    let dir = child_dir();
    for (k, opts) in both().into_iter().enumerate() {
        let paths: Vec<PathBuf> = (1..=9).map(|i| dir.join(format!("b{k}-{i}"))).collect();
        // Replacements: a new file is published by one linkat of its anonymous inode and never
        // has a named temp; a file that replaces another gets one before the data flush.
        for p in &paths {
            fs::write(p, b"old").unwrap();
        }
        let mut b = Batch::new(opts).sync_strategy(atomwrite::BatchSync::ParallelFsync);
        for p in &paths {
            b.add(p, b"new contents").unwrap();
        }
        let d2 = dir.clone();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let s2 = seen.clone();
        on_point("batch-linked", 0, move || {
            // Between link_early and the renames: every file has a named temp on disk.
            let on_disk = temps_in(&d2);
            let registered = interrupt::registered_temps();
            // `clean --older-than 0s` (its own open file descriptions, so its `flock`s conflict
            // with ours exactly as another process's would) must remove none of them.
            let report = atomwrite::clean(&d2, Duration::ZERO).unwrap();
            *s2.lock().unwrap() = Some((on_disk, registered, report));
        });
        b.commit().unwrap();
        let (on_disk, registered, report) = seen.lock().unwrap().take().expect("hook ran");
        assert_eq!(on_disk.len(), 9, "{on_disk:?}");
        for t in &on_disk {
            assert!(registered.contains(t), "{t:?} not registered");
        }
        assert!(
            report.removed.is_empty(),
            "clean removed {:?}",
            report.removed
        );
        assert_eq!(report.locked.len(), 9, "{report:?}");
        for p in &paths {
            assert_eq!(fs::read(p).unwrap(), b"new contents");
        }
        assert!(temps_in(&dir).is_empty());
    }
}

/// Review F6: a named temp exists, unlocked, between its `O_EXCL` create and its `flock` (the
/// `named-created` pause point). A `clean` with no age threshold run right there used to remove
/// it (the write then failed). The directory's shared lock now covers that window, whichever
/// way the directory fd is held: a single write's own fd, a batch's fd shared by its files
/// (locked once, for the batch's life), a versions directory's fd shared with its store (a
/// publish: locked through a new open file description). At every such point a recursive
/// `clean(ZERO)` removes nothing and reports every temp on disk as locked; every write, batch
/// and publish then succeeds, and no temp is left.
#[cfg(feature = "test-hooks")]
#[test]
fn clean_keeps_a_named_temp_between_its_create_and_its_flock() {
    const NAME: &str = "clean_keeps_a_named_temp_between_its_create_and_its_flock";
    if !is_child() {
        let d = tmp();
        in_child(NAME, d.path(), &[]);
        return;
    }
    let dir = child_dir();
    let versions = dir.join("p.versions");
    type Seen = Vec<(Vec<PathBuf>, atomwrite::CleanReport)>;
    let seen: std::sync::Arc<std::sync::Mutex<Seen>> = Default::default();
    let (s2, d2, v2) = (seen.clone(), dir.clone(), versions.clone());
    on_point("named-created", 0, move || {
        let mut on_disk = temps_in(&d2);
        if v2.exists() {
            on_disk.extend(temps_in(&v2));
        }
        let report = atomwrite::clean_with(
            &d2,
            &atomwrite::CleanOptions {
                older_than: Duration::ZERO,
                dry_run: false,
                recursive: true,
            },
        )
        .unwrap();
        s2.lock().unwrap().push((on_disk, report));
    });
    let portable = Options::new().portable(true);
    portable.write(dir.join("single"), b"single").unwrap();
    let mut b = Batch::new(portable.clone());
    for i in 0..3 {
        b.add(dir.join(format!("b{i}")), b"batch").unwrap();
    }
    b.commit().unwrap();
    atomwrite::Publisher::new()
        .options(portable)
        .publish(dir.join("p"), b"published")
        .unwrap();
    interrupt::test_hooks::set(|_, _| {});

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    // The single write, the batch's 3 files, the publish's version (its manifest too).
    assert!(seen.len() >= 5, "{seen:?}");
    for (on_disk, report) in &seen {
        assert!(!on_disk.is_empty(), "{seen:?}");
        assert!(
            report.removed.is_empty(),
            "clean removed {:?}",
            report.removed
        );
        for t in on_disk {
            assert!(
                report.locked.contains(t),
                "{t:?} not reported locked: {report:?}"
            );
        }
    }
    assert_eq!(fs::read(dir.join("single")).unwrap(), b"single");
    for i in 0..3 {
        assert_eq!(fs::read(dir.join(format!("b{i}"))).unwrap(), b"batch");
    }
    assert_eq!(fs::read(dir.join("p")).unwrap(), b"published");
    assert!(temps_in(&dir).is_empty(), "{:?}", temps_in(&dir));
    assert!(temps_in(&versions).is_empty(), "{:?}", temps_in(&versions));
}

#[cfg(feature = "test-hooks")]
#[test]
fn cancel_in_the_rename_phase_stops_fsyncs_what_was_replaced_and_removes_the_rest() {
    const NAME: &str =
        "cancel_in_the_rename_phase_stops_fsyncs_what_was_replaced_and_removes_the_rest";
    if !is_child() {
        let d = tmp();
        let strace = Command::new("strace")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !strace {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI needs strace"
            );
            eprintln!("SKIP (fsync check): strace not installed");
            in_child(NAME, d.path(), &[]);
            return;
        }
        let log = d.path().join("strace.log");
        let log_s = log.to_str().unwrap();
        let sub = d.path().join("out");
        fs::create_dir(&sub).unwrap();
        let sub = sub.canonicalize().unwrap();
        in_child(
            NAME,
            &sub,
            &[
                "strace",
                "-f",
                "-qq",
                "-y",
                "-o",
                log_s,
                "-e",
                "trace=fsync,rename,renameat,renameat2,linkat,unlinkat",
            ],
        );
        // After the last rename into `out`, `out` itself was fsynced.
        let lines: Vec<String> = fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        let dir_s = format!("<{}>", sub.display());
        let last_rename = lines
            .iter()
            .rposition(|l| l.contains("rename") && l.contains(&dir_s) && l.contains("= 0"))
            .expect("renames traced");
        assert!(
            lines[last_rename..]
                .iter()
                .any(|l| l.contains("fsync(") && l.contains(&dir_s) && l.contains("= 0")),
            "no directory fsync after the last rename:\n{}",
            lines.join("\n")
        );
        return;
    }
    let dir = child_dir();
    let paths = names(&dir, 6);
    for p in &paths {
        fs::write(p, b"old").unwrap();
    }
    let mut b = Batch::new(Options::new().durability(atomwrite::Durability::Full));
    for p in &paths {
        b.add(p, b"new").unwrap();
    }
    // A signal arrives right after the second rename.
    on_point("batch-renamed", 2, interrupt::request_cancel);
    let e = b.commit().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "{e}");
    let o = e.batch_outcome().unwrap();
    assert_eq!(o.replaced(), &paths[..2], "{e}");
    assert_eq!(o.not_replaced(), &paths[2..], "{e}");
    for p in &paths[..2] {
        assert_eq!(fs::read(p).unwrap(), b"new");
    }
    for p in &paths[2..] {
        assert_eq!(fs::read(p).unwrap(), b"old");
    }
    assert!(temps_in(&dir).is_empty(), "{:?}", temps_in(&dir));
    assert!(interrupt::registered_temps().is_empty());
}

#[test]
fn a_new_file_whose_name_is_taken_before_the_commit_replaces_it_like_any_write() {
    // A new file is published by one linkat of its anonymous inode (create-only); when another
    // process takes the name between the open and the commit, the write falls back to a named
    // temp renamed over it, as it would have had the file been there at the open.
    for opts in both() {
        let d = tmp();
        let p = d.path().join("single");
        let mut f = opts.open(&p).unwrap();
        f.write_all_bytes(b"mine").unwrap();
        fs::write(&p, b"theirs").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"mine");
        let mut b = Batch::new(opts.clone());
        let names: Vec<PathBuf> = (0..10).map(|i| d.path().join(format!("b{i}"))).collect();
        for q in &names {
            b.add(q, b"mine").unwrap();
        }
        fs::write(&names[3], b"theirs").unwrap();
        let r = b.commit().unwrap();
        assert_eq!(r.files.len(), 10);
        for q in &names {
            assert_eq!(fs::read(q).unwrap(), b"mine", "{q:?}");
        }
        assert!(temps_in(d.path()).is_empty());
        // A create-only write still refuses the taken name.
        let mut f = opts
            .clone()
            .no_clobber(true)
            .open(d.path().join("once"))
            .unwrap();
        f.write_all_bytes(b"mine").unwrap();
        fs::write(d.path().join("once"), b"theirs").unwrap();
        assert!(f.commit().unwrap_err().is_conflict());
        assert_eq!(fs::read(d.path().join("once")).unwrap(), b"theirs");
        assert!(temps_in(d.path()).is_empty());
    }
}

/// A batch told how many files are coming lists each directory once and takes a name the
/// listing lacked as absent. A name taken after that listing is still met by the publish: it is
/// replaced like any write's destination, or, create-only, reported as a conflict and left as
/// it was; held-open (linked in place) and parked (renamed) files alike.
#[test]
fn a_name_taken_after_the_batch_listed_its_directory_is_still_seen_by_the_publish() {
    for opts in both() {
        for create_only in [false, true] {
            let d = tmp();
            let names: Vec<PathBuf> = (0..64).map(|i| d.path().join(format!("b{i}"))).collect();
            let mut b = Batch::new(opts.clone().no_clobber(create_only)).expect_files(64);
            b.add(&names[0], b"mine").unwrap();
            // The directory was listed at the first add; these names appear after.
            fs::write(&names[5], b"theirs").unwrap();
            fs::write(&names[40], b"theirs").unwrap();
            for q in &names[1..] {
                b.add(q, b"mine").unwrap();
            }
            match (b.commit(), create_only) {
                (Ok(r), false) => {
                    assert_eq!(r.files.len(), 64);
                    for q in &names {
                        assert_eq!(fs::read(q).unwrap(), b"mine", "{q:?}");
                    }
                }
                (Err(e), true) => {
                    assert!(e.is_conflict(), "{e}");
                    assert_eq!(fs::read(&names[5]).unwrap(), b"theirs");
                    let outcome = e
                        .batch_outcome()
                        .expect("a batch error says what was replaced");
                    assert_eq!(outcome.replaced(), &names[..5], "{e}");
                    for q in &names[6..] {
                        assert_ne!(fs::read(q).ok().as_deref(), Some(&b"mine"[..]), "{q:?}");
                    }
                }
                (r, _) => panic!("create-only {create_only}: {r:?}"),
            }
            assert_eq!(
                fs::read(&names[40]).unwrap(),
                if create_only { &b"theirs"[..] } else { b"mine" }
            );
            assert!(temps_in(d.path()).is_empty(), "{:?}", temps_in(d.path()));
        }
    }
}

/// A listing proves a name absent only where names compare byte for byte. In a casefolded
/// directory (tmpfs `casefold=utf8`, `chattr +F`), `report.csv` must be found to be the
/// existing `Report.csv`, whose mode the new contents keep, as a single write's would.
#[test]
fn a_batch_never_takes_a_name_as_absent_in_a_directory_that_folds_case() {
    if !rustix::process::geteuid().is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "needs root under CI=true"
        );
        eprintln!("SKIP: mounting a casefolding tmpfs needs root");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mnt = d.path().join("cf");
    fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "casefold=utf8", "atomwrite-cf"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success();
    if !mounted {
        // A kernel capability (tmpfs casefolding since Linux 6.13), not a missing install.
        eprintln!("SKIP: this kernel's tmpfs cannot casefold (mount -o casefold=utf8 failed)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(mnt.clone());
    let dir = mnt.join("folded");
    fs::create_dir(&dir).unwrap();
    assert!(
        Command::new("chattr")
            .arg("+F")
            .arg(&dir)
            .status()
            .unwrap()
            .success()
    );
    use std::os::unix::fs::PermissionsExt;
    fs::write(dir.join("Report.csv"), b"old").unwrap();
    fs::set_permissions(dir.join("Report.csv"), fs::Permissions::from_mode(0o600)).unwrap();
    for opts in both() {
        let mut b = Batch::new(opts).expect_files(64);
        for i in 0..63 {
            b.add(dir.join(format!("other{i}")), b"x").unwrap();
        }
        b.add(dir.join("report.csv"), b"new").unwrap();
        b.commit().unwrap();
        assert_eq!(fs::read(dir.join("REPORT.CSV")).unwrap(), b"new");
        let mode = fs::metadata(dir.join("report.csv"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the replaced file's mode is kept");
        let entries = fs::read_dir(&dir).unwrap().count();
        assert_eq!(entries, 64, "one entry for the report, no second name");
        assert!(temps_in(&dir).is_empty());
    }
}
