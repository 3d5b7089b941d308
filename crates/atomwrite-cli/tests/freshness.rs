//! CLI freshness tests: `write --manifest`, `verify`, `publish`, `latest`, `versions`, `run`,
//! concurrent publisher processes, and SIGKILL at each step of a publish (through the test-only
//! `ATOMWRITE_TEST_PAUSE_AT` hook). Temp dirs are created inside `$TEST_DIR` when it is set.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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

/// Runs atomwrite in `dir` with `stdin` as input.
fn aw(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut c = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("ATOMWRITE_TEST_PAUSE_AT")
        .env_remove("ATOMWRITE_RUN_ID")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut si = c.stdin.take().unwrap();
    let _ = si.write_all(stdin);
    drop(si);
    c.wait_with_output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The error is exactly one line on stderr, starting with `atomwrite: `.
fn one_line_error(o: &Output) -> String {
    let e = stderr(o);
    assert_eq!(e.lines().count(), 1, "stderr: {e:?}");
    assert!(e.starts_with("atomwrite: "), "{e:?}");
    e
}

fn no_temps(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let n = e.unwrap().file_name();
        assert!(!atomwrite::is_temp_name(&n), "temp {n:?} left in {dir:?}");
    }
}

fn latest(dst: &Path) -> u64 {
    atomwrite::latest(dst).unwrap().map_or(0, |v| v.version)
}

fn numbers(dst: &Path) -> Vec<u64> {
    atomwrite::versions(dst)
        .map(|l| l.versions)
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect()
}

/// Starts atomwrite with `ATOMWRITE_TEST_PAUSE_AT=step`, waits until it reports the pause, then
/// SIGKILLs it (a crash at exactly that step).
fn kill_at(dir: &Path, step: &str, args: &[&str], input: &[u8]) {
    let (mut c, _stderr) = paused_at(dir, step, args, input);
    c.kill().unwrap(); // SIGKILL
    c.wait().unwrap();
}

// ---------------------------------------------------------------- manifest + verify

#[test]
fn write_manifest_then_verify_ok_mismatch_missing() {
    let d = tmp();
    let o = aw(
        d.path(),
        &["write", "--manifest", "--run-id", "R7", "out.csv"],
        b"a\n1\n",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(d.path().join("out.csv.manifest.json")).unwrap()).unwrap();
    assert_eq!(m["format"], "atomwrite-manifest/1");
    assert_eq!(m["run_id"], "R7");
    assert_eq!(m["size"], 4);

    let o = aw(d.path(), &["verify", "out.csv"], b"");
    assert_eq!(code(&o), 0);
    assert!(
        stdout(&o).starts_with("ok out.csv: 4 bytes"),
        "{}",
        stdout(&o)
    );

    // New data, no new manifest: a torn pair.
    assert_eq!(
        code(&aw(d.path(), &["write", "-q", "out.csv"], b"a\n2\n")),
        0
    );
    fs::write(d.path().join("plain.txt"), b"x").unwrap();
    let o = aw(d.path(), &["verify", "out.csv", "plain.txt", "absent"], b"");
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("MISMATCH out.csv: sha256 is "),
        "{out}"
    );
    assert!(lines[1].starts_with("MISSING-MANIFEST plain.txt"), "{out}");
    assert!(lines[2].starts_with("MISSING-MANIFEST absent"), "{out}");

    let o = aw(d.path(), &["verify", "--json", "out.csv"], b"");
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["ok"], false);
    let v = &v["results"][0];
    assert_eq!(v["status"], "mismatch");
    assert_eq!(v["manifest"]["run_id"], "R7");

    fs::write(d.path().join("out.csv.manifest.json"), b"garbage").unwrap();
    let o = aw(d.path(), &["verify", "out.csv"], b"");
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).starts_with("BAD-MANIFEST out.csv"),
        "{}",
        stdout(&o)
    );
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (pause points)"
)]
fn kill_between_data_and_manifest_is_detected_as_mismatch() {
    let d = tmp();
    assert_eq!(
        code(&aw(d.path(), &["write", "--manifest", "f.txt"], b"old\n")),
        0
    );
    kill_at(
        d.path(),
        "data-committed",
        &["write", "--manifest", "f.txt"],
        b"new\n",
    );
    assert_eq!(fs::read(d.path().join("f.txt")).unwrap(), b"new\n");
    let o = aw(d.path(), &["verify", "f.txt"], b"");
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).starts_with("MISMATCH f.txt"), "{}", stdout(&o));
    no_temps(d.path());
}

// ---------------------------------------------------------------- publish / latest / versions

#[test]
fn publish_latest_versions_and_json() {
    let d = tmp();
    fs::write(d.path().join("r.csv"), b"legacy\n").unwrap();
    let o = aw(
        d.path(),
        &["publish", "-v", "--run-id", "A", "r.csv"],
        b"v2\n",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("version 2"), "{}", stderr(&o));
    assert_eq!(
        fs::read_link(d.path().join("r.csv")).unwrap(),
        PathBuf::from("r.csv.versions/v0000000002.csv")
    );
    fs::write(d.path().join("in.csv"), b"v3\n").unwrap();
    let o = aw(
        d.path(),
        &[
            "publish", "--json", "--from", "in.csv", "--expect", "2", "r.csv",
        ],
        b"",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        (j["version"].as_u64(), j["previous"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(j["path"], "r.csv.versions/v0000000003.csv");

    let o = aw(d.path(), &["latest", "r.csv"], b"");
    assert_eq!(stdout(&o), "3 r.csv.versions/v0000000003.csv\n");
    let o = aw(d.path(), &["latest", "--json", "r.csv"], b"");
    let j: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(j["version"], 3);
    // Never published (a typo, say): 0 on stdout, a message, exit 1.
    let o = aw(d.path(), &["latest", "nothing.csv"], b"");
    assert_eq!((code(&o), stdout(&o).as_str()), (1, "0\n"));
    assert!(
        stderr(&o).contains("nothing has been published"),
        "{}",
        stderr(&o)
    );

    let o = aw(d.path(), &["versions", "r.csv"], b"");
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(
        out.lines().nth(3).unwrap().trim_start().starts_with("3*"),
        "{out}"
    );
    let o = aw(d.path(), &["versions", "--json", "r.csv"], b"");
    let j: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(j["current"], 3);
    let j = &j["versions"];
    assert_eq!(j.as_array().unwrap().len(), 3);
    assert_eq!(j[0]["run_id"], "migrated");
    assert_eq!(j[1]["run_id"], "A");
    assert_eq!(j[2]["current"], true);
    assert_eq!(fs::read(d.path().join("r.csv")).unwrap(), b"v3\n");
    let o = aw(d.path(), &["verify", "r.csv"], b"");
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

#[test]
fn publish_failures_are_one_line_with_the_right_exit_code() {
    let d = tmp();
    assert_eq!(code(&aw(d.path(), &["publish", "-q", "x.txt"], b"1")), 0);
    // Lost compare-and-swap: 3, both versions named, nothing published.
    let o = aw(d.path(), &["publish", "--expect", "5", "x.txt"], b"2");
    assert_eq!(code(&o), 3);
    let e = one_line_error(&o);
    assert!(
        e.contains("expected version 5") && e.contains("current version is 1"),
        "{e}"
    );
    assert_eq!(numbers(&d.path().join("x.txt")), vec![1]);
    // Missing --from file: 1.
    let o = aw(d.path(), &["publish", "--from", "nope", "x.txt"], b"");
    assert_eq!(code(&o), 1);
    assert!(one_line_error(&o).contains("nope"));
    // --no-clobber makes no sense for publish: not one of its options, usage, 2.
    let o = aw(d.path(), &["publish", "--no-clobber", "x.txt"], b"");
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--no-clobber"), "{}", stderr(&o));
    // A pointer that is not ours.
    std::os::unix::fs::symlink("x.txt.versions", d.path().join("odd")).unwrap();
    let o = aw(d.path(), &["publish", "odd"], b"z");
    assert_eq!(code(&o), 1);
    assert!(one_line_error(&o).contains("not a pointer made by"));
    assert_eq!(fs::read(d.path().join("x.txt")).unwrap(), b"1");
    no_temps(d.path());
    no_temps(&d.path().join("x.txt.versions"));
}

#[test]
fn eight_publisher_processes_expecting_the_same_version_one_wins_per_round() {
    let d = tmp();
    let dst = d.path().join("race.txt");
    const ROUNDS: u64 = 4;
    for round in 0..ROUNDS {
        let v = latest(&dst).to_string();
        let kids: Vec<Child> = (0..8)
            .map(|w| {
                let mut c = Command::new(bin())
                    .args(["publish", "-q", "--expect", &v, "race.txt"])
                    .current_dir(d.path())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut si = c.stdin.take().unwrap();
                // A loser may refuse (lost --expect) and exit before reading its input.
                match si.write_all(format!("round {round} writer {w}\n").as_bytes()) {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    r => r.unwrap(),
                }
                c
            })
            .collect();
        let outs: Vec<Output> = kids
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let codes: Vec<i32> = outs.iter().map(code).collect();
        assert_eq!(
            codes.iter().filter(|c| **c == 0).count(),
            1,
            "round {round}: {codes:?}"
        );
        assert_eq!(
            codes.iter().filter(|c| **c == 3).count(),
            7,
            "round {round}: {codes:?}"
        );
        for o in outs.iter().filter(|o| code(o) == 3) {
            assert!(one_line_error(o).contains("compare-and-swap lost"));
        }
        assert_eq!(latest(&dst), round + 1);
    }
    assert_eq!(numbers(&dst), (1..=ROUNDS).collect::<Vec<_>>());
    no_temps(d.path());
}

#[test]
fn publish_dir_swaps_a_whole_tree() {
    let d = tmp();
    let src = d.path().join("build");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("index.html"), b"1").unwrap();
    fs::write(src.join("sub/page.html"), b"1").unwrap();
    let o = aw(d.path(), &["publish", "--dir", "build", "site"], b"");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    fs::write(src.join("sub/page.html"), b"2").unwrap();
    let o = aw(
        d.path(),
        &[
            "publish", "--dir", "build", "--expect", "1", "--keep", "2", "site",
        ],
        b"",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(fs::read(d.path().join("site/sub/page.html")).unwrap(), b"2");
    assert_eq!(
        fs::read(d.path().join("site.versions/v0000000001/sub/page.html")).unwrap(),
        b"1"
    );
    assert_eq!(code(&aw(d.path(), &["verify", "site"], b"")), 0);
    let o = aw(d.path(), &["publish", "--dir", "missing", "site"], b"");
    assert_eq!(code(&o), 1);
    one_line_error(&o);
    assert_eq!(latest(&d.path().join("site")), 2);
}

// ---------------------------------------------------------------- crash at each step

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (pause points)"
)]
fn kill_at_each_publish_step_leaves_a_complete_pointer_and_cleanable_leftovers() {
    for (step, expect_after) in [
        ("version-written", 1),
        ("symlink-created", 1),
        ("swapped", 2),
    ] {
        let d = tmp();
        let dst = d.path().join("p.txt");
        assert_eq!(
            code(&aw(d.path(), &["publish", "-q", "p.txt"], b"one\n")),
            0
        );
        kill_at(d.path(), step, &["publish", "p.txt"], b"two\n");
        assert_eq!(latest(&dst), expect_after, "step {step}");
        let content = fs::read(&dst).unwrap();
        assert!(
            content == b"one\n" || content == b"two\n",
            "step {step}: {content:?}"
        );
        assert_eq!(
            code(&aw(d.path(), &["verify", "p.txt"], b"")),
            0,
            "step {step}"
        );
        if expect_after == 1 {
            // The unreferenced version 2 is complete and verifiable, just not current.
            assert_eq!(numbers(&dst), vec![1, 2], "step {step}");
        }
        // Retention on the next publish removes what the crash left (the lock proves no
        // publisher is running), never the current version.
        let o = aw(
            d.path(),
            &["publish", "--keep", "2", "--json", "p.txt"],
            b"three\n",
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(fs::read(&dst).unwrap(), b"three\n");
        assert_eq!(
            numbers(&dst),
            if expect_after == 1 {
                vec![1, 3]
            } else {
                vec![2, 3]
            }
        );
        no_temps(d.path());
        no_temps(&d.path().join("p.txt.versions"));
    }
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (pause points)"
)]
fn kill_at_version_written_then_clean_versions_removes_the_orphan() {
    let d = tmp();
    let dst = d.path().join("q.txt");
    assert_eq!(
        code(&aw(d.path(), &["publish", "-q", "q.txt"], b"one\n")),
        0
    );
    kill_at(d.path(), "symlink-created", &["publish", "q.txt"], b"two\n");
    assert!(
        d.path().join(".q.txt.v0000000002.pending").is_symlink(),
        "the pending marker is what this crash leaves"
    );
    // A hand rollback or a later publish does not change the verdict: the marker proves v2 was
    // never made current.
    let rep = atomwrite::clean_versions(&dst, false).unwrap();
    assert_eq!(rep.removed.len(), 3, "{rep:?}"); // v2, its manifest, the marker
    assert_eq!(numbers(&dst), vec![1]);
    assert_eq!(fs::read(&dst).unwrap(), b"one\n");
    no_temps(d.path());
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (pause points)"
)]
fn kill_while_staging_a_directory_leaves_the_old_tree() {
    let d = tmp();
    let src = d.path().join("build");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"1").unwrap();
    assert_eq!(
        code(&aw(
            d.path(),
            &["publish", "-q", "--dir", "build", "t"],
            b""
        )),
        0
    );
    fs::write(src.join("a"), b"2").unwrap();
    kill_at(
        d.path(),
        "dir-staged",
        &["publish", "--dir", "build", "t"],
        b"",
    );
    assert_eq!(fs::read(d.path().join("t/a")).unwrap(), b"1");
    let o = aw(
        d.path(),
        &["publish", "-q", "--keep", "2", "--dir", "build", "t"],
        b"",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(fs::read(d.path().join("t/a")).unwrap(), b"2");
    no_temps(&d.path().join("t.versions"));
}

// ---------------------------------------------------------------- run

#[test]
fn run_commits_only_on_success_and_passes_run_id() {
    let d = tmp();
    let o = aw(
        d.path(),
        &[
            "run",
            "--manifest",
            "out.txt",
            "--",
            "sh",
            "-c",
            "echo \"$ATOMWRITE_RUN_ID\"; echo \"$ATOMWRITE_STARTED_AT\"",
        ],
        b"",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = fs::read_to_string(d.path().join("out.txt")).unwrap();
    let mut l = text.lines();
    let (id, started) = (l.next().unwrap(), l.next().unwrap());
    assert_eq!(id.len(), 32);
    assert!(started.ends_with('Z') && started.contains('T'), "{started}");
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(d.path().join("out.txt.manifest.json")).unwrap()).unwrap();
    assert_eq!(m["run_id"], id);

    // CMD fails: its status, nothing committed, no temp.
    let o = aw(
        d.path(),
        &["run", "out.txt", "--", "sh", "-c", "echo partial; exit 7"],
        b"",
    );
    assert_eq!(code(&o), 7);
    let e = one_line_error(&o);
    assert!(
        e.contains("exited with status 7") && e.contains("nothing was committed"),
        "{e}"
    );
    assert_eq!(fs::read_to_string(d.path().join("out.txt")).unwrap(), text);
    // Killed by a signal: 128 + N.
    let o = aw(
        d.path(),
        &[
            "run",
            "out.txt",
            "--",
            "sh",
            "-c",
            "echo partial; kill -9 $$",
        ],
        b"",
    );
    assert_eq!(code(&o), 137);
    assert_eq!(fs::read_to_string(d.path().join("out.txt")).unwrap(), text);
    // Not found: 127, as env(1) does.
    let o = aw(d.path(), &["run", "new.txt", "--", "/no/such/cmd"], b"");
    assert_eq!(code(&o), 127);
    one_line_error(&o);
    assert!(!d.path().join("new.txt").exists());
    // atomwrite itself fails (parent missing with --no-create-dirs): 125, CMD never runs.
    let o = aw(
        d.path(),
        &["run", "--no-create-dirs", "no/dir/x", "--", "touch", "ran"],
        b"",
    );
    assert_eq!(code(&o), 125);
    one_line_error(&o);
    assert!(!d.path().join("ran").exists());
    // --run-id is what CMD sees.
    let o = aw(
        d.path(),
        &[
            "run",
            "--run-id",
            "N1",
            "id.txt",
            "--",
            "sh",
            "-c",
            "echo $ATOMWRITE_RUN_ID",
        ],
        b"",
    );
    assert_eq!(code(&o), 0);
    assert_eq!(fs::read(d.path().join("id.txt")).unwrap(), b"N1\n");
    no_temps(d.path());
}

#[test]
fn run_publish_and_its_compare_and_swap() {
    let d = tmp();
    let o = aw(
        d.path(),
        &[
            "run",
            "--publish",
            "--run-id",
            "P1",
            "rep.json",
            "--",
            "echo",
            "{}",
        ],
        b"",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(latest(&d.path().join("rep.json")), 1);
    let v = atomwrite::versions(d.path().join("rep.json"))
        .unwrap()
        .versions;
    assert_eq!(v[0].run_id.as_deref(), Some("P1"));
    // Lost CAS: a conflict (exit 3), checked before CMD runs.
    let o = aw(
        d.path(),
        &[
            "run",
            "--publish",
            "--expect",
            "0",
            "rep.json",
            "--",
            "touch",
            "ran",
        ],
        b"",
    );
    // A lost compare-and-swap is a conflict (exit 3), as for `publish --expect`.
    assert_eq!(code(&o), 3);
    assert!(one_line_error(&o).contains("compare-and-swap lost"));
    assert!(!d.path().join("ran").exists());
    // CMD fails under --publish: nothing published.
    let o = aw(
        d.path(),
        &["run", "--publish", "rep.json", "--", "false"],
        b"",
    );
    assert_eq!(code(&o), 1);
    assert_eq!(numbers(&d.path().join("rep.json")), vec![1]);
    no_temps(d.path());
    no_temps(&d.path().join("rep.json.versions"));
}

#[test]
fn sigterm_is_forwarded_to_cmd_and_nothing_is_committed() {
    let d = tmp();
    fs::write(d.path().join("out.txt"), b"before\n").unwrap();
    let pidfile = d.path().join("child.pid");
    let mut c = Command::new(bin())
        .args([
            "run",
            "out.txt",
            "--",
            "sh",
            "-c",
            &format!(
                "echo partial; echo $$ > {}; exec sleep 1000",
                pidfile.display()
            ),
        ])
        .current_dir(d.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (event-driven, bounded generously) for the child to have started.
    let mut pid = String::new();
    for _ in 0..3000 {
        if let Ok(s) = fs::read_to_string(&pidfile)
            && s.ends_with('\n')
        {
            pid = s.trim().to_string();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!pid.is_empty(), "child never started");
    let r = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status()
        .unwrap();
    assert!(r.success());
    let status = c.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    assert_eq!(fs::read(d.path().join("out.txt")).unwrap(), b"before\n");
    // The child got the signal: it goes away (reaped by init once orphaned).
    let proc_path = format!("/proc/{pid}/stat");
    let mut gone = false;
    for _ in 0..3000 {
        match fs::read_to_string(&proc_path) {
            Err(_) => {
                gone = true;
                break;
            }
            Ok(s) if s.contains(") Z ") => {
                gone = true;
                break;
            }
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    if !gone {
        // Do not leave it (it holds our stderr pipe open) before failing.
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    }
    assert!(
        gone,
        "CMD (pid {pid}) still running after SIGTERM was forwarded"
    );
    // Read stderr only now: an orphaned CMD would hold the pipe open.
    let mut err = String::new();
    std::io::Read::read_to_string(&mut c.stderr.take().unwrap(), &mut err).unwrap();
    // Either the signal thread reports first or the main thread sees CMD killed: both say
    // nothing changed.
    assert!(
        err.contains("nothing was replaced") || err.contains("nothing was committed"),
        "{err}"
    );
    no_temps(d.path());
}

/// Starts atomwrite paused at `step` (holding the publishers' lock) and returns it running,
/// with the rest of its stderr.
fn paused_at(
    dir: &Path,
    step: &str,
    args: &[&str],
    input: &[u8],
) -> (Child, std::io::Lines<BufReader<std::process::ChildStderr>>) {
    let mut c: Child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("ATOMWRITE_TEST_PAUSE_AT", step)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut si = c.stdin.take().unwrap();
    si.write_all(input).unwrap();
    drop(si);
    let mut lines = BufReader::new(c.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains(&format!("test pause at {step}")) => break,
            Some(Ok(l)) => seen.push(l),
            _ => panic!(
                "atomwrite never reached step {step}: {seen:?} {:?}",
                c.wait()
            ),
        }
    }
    (c, lines)
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (pause points)"
)]
fn a_publisher_waiting_for_the_lock_obeys_wait_and_signals() {
    let d = tmp();
    let dst = d.path().join("w.txt");
    assert_eq!(code(&aw(d.path(), &["publish", "-q", "w.txt"], b"1\n")), 0);
    let (mut holder, _holder_err) =
        paused_at(d.path(), "version-written", &["publish", "w.txt"], b"2\n");
    // --wait bounds the wait: exit 3, one line, nothing published.
    let o = aw(d.path(), &["publish", "--wait", "300ms", "w.txt"], b"3\n");
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let msg = one_line_error(&o);
    assert!(msg.contains("another publisher"), "{msg}");
    // Without --wait, SIGINT ends the wait at once: exit 130, nothing published, no temp.
    let mut waiter = Command::new(bin())
        .args(["publish", "w.txt"])
        .current_dir(d.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    waiter.stdin.take().unwrap().write_all(b"4\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let t = std::time::Instant::now();
    Command::new("kill")
        .args(["-INT", &waiter.id().to_string()])
        .status()
        .unwrap();
    let st = waiter.wait().unwrap();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(st.code(), Some(130));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut waiter.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("nothing was replaced"), "{err}");
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(fs::read(&dst).unwrap(), b"1\n");
    assert_eq!(latest(&dst), 1);
    no_temps(d.path());
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "needs --features test-hooks (pause points)"
)]
fn a_directory_publish_interrupted_after_the_swap_says_it_was_published() {
    let d = tmp();
    let src = d.path().join("build");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"1").unwrap();
    let (mut c, err) = paused_at(
        d.path(),
        "swapped",
        &["publish", "--dir", "build", "site"],
        b"",
    );
    Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status()
        .unwrap();
    let st = c.wait().unwrap();
    assert_eq!(st.code(), Some(143));
    let rest: Vec<String> = err.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("`site` was replaced")),
        "{rest:?}"
    );
    assert_eq!(latest(&d.path().join("site")), 1);
    assert_eq!(fs::read(d.path().join("site/a")).unwrap(), b"1");
}

#[test]
fn publish_refuses_a_destination_inside_the_tree_it_publishes() {
    let d = tmp();
    let src = d.path().join("tree");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"1").unwrap();
    let o = aw(&src, &["publish", "--dir", ".", "site"], b"");
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        one_line_error(&o).contains("inside the directory"),
        "{}",
        stderr(&o)
    );
    assert!(!src.join("site").exists());
    assert!(!src.join("site.versions").exists() || numbers(&src.join("site")).is_empty());
    let o = aw(
        d.path(),
        &["publish", "--dir", "tree", "tree/sub/site"],
        b"",
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    no_temps(&src);
}

#[test]
fn keep_zero_is_a_usage_error() {
    let d = tmp();
    let o = aw(d.path(), &["publish", "--keep", "0", "k.txt"], b"x");
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(!d.path().join("k.txt").exists());
}
