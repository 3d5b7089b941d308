//! Regressions found by an adversarial review of the one-destination re-plumbing (#12): each
//! test reproduces a problem the CLI had after `destination::open` replaced the per-command
//! code, and would fail again if it came back.
//!
//! Root-only tests (a small tmpfs in a private mount namespace) print why they skip when not
//! root, and fail instead when `CI=true`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;

fn bin() -> Command {
    Command::cargo_bin("atomwrite").unwrap()
}

fn bin_path() -> PathBuf {
    PathBuf::from(bin().get_program())
}

fn tmp() -> tempfile::TempDir {
    match std::env::var_os("TEST_DIR") {
        Some(d) => tempfile::tempdir_in(d).expect("TEST_DIR must be a writable directory"),
        None => tempfile::tempdir().unwrap(),
    }
}

/// `true` when the test may run; otherwise prints why it skips (and fails under CI=true).
fn require(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {what} is not available"
        );
        eprintln!("SKIP: {what} is not available");
    }
    ok
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn can_mount() -> bool {
    require(
        rustix::process::geteuid().is_root() && have("unshare"),
        "root with unshare (to mount a small tmpfs)",
    )
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `script` with `sh -c` in a private mount namespace where `$D` is a fresh 64 KiB tmpfs
/// and `$A` the atomwrite binary.
fn in_small_tmpfs(dir: &Path, script: &str) -> Out {
    let script =
        format!("D=\"$1\"; A=\"$2\"; mount -t tmpfs -o size=64k review \"$D\" && {script}");
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .arg(dir)
        .arg(bin_path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// `run` whose write fails (ENOSPC) while CMD is still producing: the report is the write's
/// error (operation, path, OS reason, errno in JSON), exit 125 — not "CMD was killed by signal
/// 15" with exit 143 (the SIGTERM that atomwrite itself sent to stop CMD). DST unchanged, no
/// temp left. Both for a plain write and for --publish.
#[test]
fn run_reports_the_write_failure_not_the_sigterm_it_sent() {
    if !can_mount() {
        return;
    }
    let d = tmp();
    for (args, path_in_error) in [("", "f"), ("--publish", "f.versions/v0000000002")] {
        for json in ["", "--json"] {
            let out = in_small_tmpfs(
                d.path(),
                &format!(
                    "echo orig > \"$D/f\"; \"$A\" run {json} {args} \"$D/f\" -- head -c 1000000 /dev/zero; \
                     echo \"rc=$?\"; cat \"$D/f\"; ls -A \"$D\"; ls -A \"$D/f.versions\" 2>/dev/null; true"
                ),
            );
            assert_eq!(out.code, 0, "{}", out.stderr);
            let what = format!(
                "run {json} {args}: stdout {} stderr {}",
                out.stdout, out.stderr
            );
            assert!(out.stdout.contains("rc=125\n"), "{what}");
            let err_text = if json.is_empty() {
                out.stderr.clone()
            } else {
                let line = out.stdout.lines().next().unwrap();
                let v: serde_json::Value = serde_json::from_str(line).expect(&what);
                assert_eq!(v["error"]["errno"], 28, "{what}");
                assert_eq!(v["error"]["exit_code"], 125, "{what}");
                v["error"]["message"].as_str().unwrap().to_string()
            };
            assert!(err_text.contains("No space left on device"), "{what}");
            assert!(err_text.contains(path_in_error), "{what}");
            assert!(!err_text.contains("signal"), "{what}");
            assert_eq!(err_text.trim().lines().count(), 1, "{what}");
            // DST unchanged, nothing else left (a publish may have migrated the file into
            // version 1, which then is what `f` points at).
            assert!(out.stdout.contains("orig\n"), "{what}");
            assert!(!out.stdout.lines().any(|l| l.ends_with(".tmp")), "{what}");
            assert!(!out.stdout.lines().any(|l| l == "v0000000002"), "{what}");
        }
    }
}

/// Starts `atomwrite ARGS` (with `env` added) paused at the test-hooks pause point `point`
/// (`--features test-hooks`); returns the child and atomwrite's pid once it is there.
#[cfg(feature = "test-hooks")]
fn start_paused(
    args: &[String],
    env: &[(&str, &str)],
    point: &str,
    marker: &Path,
) -> (std::process::Child, i32) {
    let mut child = bin()
        .args(args)
        .envs(env.iter().copied())
        .env("ATOMWRITE_TEST_PAUSE", point)
        .env("ATOMWRITE_TEST_PAUSE_FILE", marker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..6000 {
        if let Ok(s) = fs::read_to_string(marker)
            && let Some((at, pid)) = s.split_once(' ')
            && let Ok(pid) = pid.parse()
        {
            assert_eq!(at, point);
            return (child, pid);
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("atomwrite exited ({st}) before reaching {point}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    panic!("atomwrite never reached {point}");
}

/// `cp F1 F2 F3 file:///DIR/` (no batch: one upload after another) interrupted by SIGINT after
/// the first copy: the report says F1 was replaced and F2, F3 were not (text and JSON). It
/// used to list F1 among "not replaced" although its new contents were visible: an object
/// store's completed upload was never recorded as a replacement.
#[cfg(feature = "test-hooks")]
#[test]
fn interrupted_copies_to_an_object_store_name_what_was_replaced() {
    let d = tmp();
    let (src, out) = (d.path().join("src"), d.path().join("out"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&out).unwrap();
    let mut args = vec!["cp".to_string(), "--json".to_string()];
    for i in 1..=3 {
        fs::write(src.join(format!("f{i}")), format!("new{i}\n")).unwrap();
        fs::write(out.join(format!("f{i}")), format!("old{i}\n")).unwrap();
        args.push(src.join(format!("f{i}")).display().to_string());
    }
    let url = |i: usize| format!("file://{}/f{i}", out.display());
    args.push(format!("file://{}/", out.display()));
    let marker = d.path().join("pause");
    let (child, pid) = start_paused(&args, &[], "copy-next:1", &marker);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert_eq!(fs::read_to_string(out.join("f1")).unwrap(), "new1\n");
    assert_eq!(fs::read_to_string(out.join("f2")).unwrap(), "old2\n");
    assert_eq!(fs::read_to_string(out.join("f3")).unwrap(), "old3\n");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect(&stdout);
    assert_eq!(
        v["error"]["replaced"],
        serde_json::json!([url(1)]),
        "{stdout}"
    );
    assert_eq!(
        v["error"]["not_replaced"],
        serde_json::json!([url(2), url(3)]),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("`{}` were replaced", url(1)))
            || stderr.contains(&format!("`{}` was replaced", url(1))),
        "{stderr}"
    );
}

/// `cp` into a directory keeps each source's name byte for byte. A non-UTF-8 name used to
/// become U+FFFD (`x\xff` -> `x\u{fffd}`), so two sources `x\xff` and `x\xfe` were both copied
/// to one file, the second replacing the first.
#[test]
fn cp_into_a_directory_keeps_non_utf8_names() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let d = tmp();
    let (a, b) = (OsStr::from_bytes(b"x\xff"), OsStr::from_bytes(b"x\xfe"));
    fs::write(d.path().join(a), "a\n").unwrap();
    fs::write(d.path().join(b), "b\n").unwrap();
    for (i, sources) in [vec![a], vec![a, b]].into_iter().enumerate() {
        let out = d.path().join(format!("out{i}"));
        fs::create_dir(&out).unwrap();
        let o = bin()
            .current_dir(d.path())
            .arg("cp")
            .args(&sources)
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut names: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        let mut want: Vec<_> = sources.iter().map(|s| s.to_os_string()).collect();
        want.sort();
        assert_eq!(names, want);
        assert_eq!(fs::read(out.join(a)).unwrap(), b"a\n");
    }
}

/// `cp -p` to an object store cannot keep a mode, owner or group: a usage error naming the
/// flag (exit 2), nothing written — not a silent success without them.
#[test]
fn cp_preserve_to_an_object_store_is_a_usage_error() {
    let d = tmp();
    let src = d.path().join("a");
    fs::write(&src, "a\n").unwrap();
    let out_dir = d.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    for dst in [
        format!("file://{}/a", out_dir.display()),
        format!("file://{}/", out_dir.display()),
    ] {
        let o = bin()
            .args(["cp", "-p"])
            .arg(&src)
            .arg(&dst)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{dst}: {stderr}");
        assert!(stderr.contains("--preserve"), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert_eq!(fs::read_dir(&out_dir).unwrap().count(), 0, "{dst}");
    }
}

/// A `file://` source is read with the rules of a local source: a symlink that uid 65534
/// planted in a sticky world-writable directory is not followed for root (as `cat` would be
/// refused under fs.protected_symlinks). The object store itself followed it, so
/// `cp file:///shared/report out` copied a root-only 0600 file into a world-readable one.
#[test]
fn a_file_url_source_follows_no_planted_symlink() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !require(
        rustix::process::geteuid().is_root(),
        "root (to plant a link as uid 65534)",
    ) {
        return;
    }
    let d = tmp();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let shared = d.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let secret = d.path().join("secret");
    fs::write(&secret, "root only\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let link = shared.join("report");
    let st = Command::new("ln")
        .arg("-s")
        .arg(&secret)
        .arg(&link)
        .uid(65534)
        .gid(65534)
        .status()
        .unwrap();
    assert!(st.success());
    let out = d.path().join("out");
    let o = bin()
        .arg("cp")
        .arg(format!("file://{}", link.display()))
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("protected_symlinks"), "{stderr}");
    assert!(!out.exists(), "the secret was copied");
    // A link of the caller's own is followed, as before.
    let mine = shared.join("mine");
    std::os::unix::fs::symlink(&secret, &mine).unwrap();
    let o = bin()
        .arg("cp")
        .arg(format!("file://{}", mine.display()))
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read(&out).unwrap(), b"root only\n");
}

/// Runs `cmd` and waits at most `secs` (generous) for it; `None` when it had to be killed.
fn output_within(mut cmd: Command, secs: u64) -> Option<std::process::Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Some(child.wait_with_output().unwrap())
}

/// A FIFO planted as a `cp` source (a local path, a `file://` URL, to a local or a `file://`
/// destination) is refused at once as "not a regular file": `cp` used to reopen it blocking
/// and wait forever for a writer that never comes. `write --from FIFO` still reads it.
#[test]
fn a_fifo_cp_source_is_refused_without_blocking() {
    let d = tmp();
    let fifo = d.path().join("fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let out = d.path().join("out");
    let out_url = format!("file://{}", d.path().join("out_url").display());
    let fifo_url = format!("file://{}", fifo.display());
    // The caller's own link to the FIFO (the opener's slow path: the full rules).
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    for (src, dst) in [
        (link.display().to_string(), out.display().to_string()),
        (fifo.display().to_string(), out.display().to_string()),
        (fifo_url.clone(), out.display().to_string()),
        (fifo.display().to_string(), out_url.clone()),
        (fifo_url, out_url),
    ] {
        let mut c = bin();
        c.arg("cp").arg(&src).arg(&dst);
        let o =
            output_within(c, 60).unwrap_or_else(|| panic!("cp {src} {dst} blocked on the FIFO"));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{stderr}");
        assert!(stderr.contains("not a regular file"), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    assert!(!out.exists());
    assert_eq!(
        fs::read_dir(d.path()).unwrap().count(),
        2,
        "a temp was left"
    );
    // --from FIFO reads it, once a writer comes. The writer holds the FIFO open a moment
    // before writing: a writer that opens, writes and closes between atomwrite's non-blocking
    // open and its blocking reopen would leave the reopen waiting for another writer.
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut w = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            std::thread::sleep(std::time::Duration::from_secs(1));
            w.write_all(b"through the fifo\n").unwrap();
        })
    };
    let mut c = bin();
    c.arg("write").arg("--from").arg(&fifo).arg(&out);
    let o = output_within(c, 60).expect("write --from FIFO blocked");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    writer.join().unwrap();
    assert_eq!(fs::read(&out).unwrap(), b"through the fifo\n");
}

/// `run --publish --expect N` losing the compare-and-swap is a conflict (exit 3) like
/// `publish --expect`, not a failure of atomwrite's own (125); CMD is not run.
#[test]
fn run_publish_lost_expect_exits_3() {
    let d = tmp();
    let dst = d.path().join("p.csv");
    let src = d.path().join("v1");
    fs::write(&src, "v1\n").unwrap();
    let o = bin()
        .arg("publish")
        .arg("--from")
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let marker = d.path().join("ran");
    let o = bin()
        .args(["run", "--publish", "--expect", "7"])
        .arg(&dst)
        .arg("--")
        .arg("touch")
        .arg(&marker)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("compare-and-swap"), "{stderr}");
    assert!(!marker.exists(), "CMD ran");
    assert_eq!(fs::read(&dst).unwrap(), b"v1\n");
}

/// `write --json DIR` carries `errno` (EISDIR) like any other refusal the OS would make.
#[test]
fn json_error_for_a_directory_destination_carries_errno() {
    let d = tmp();
    let o = bin()
        .args(["write", "--json"])
        .arg(d.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["error"]["errno"],
        rustix::io::Errno::ISDIR.raw_os_error(),
        "{v}"
    );
    assert_eq!(v["error"]["kind"], "IsADirectory", "{v}");
    assert_eq!(v["error"]["path"], d.path().display().to_string(), "{v}");
}

/// Refusals name what the caller did: a planted symlink as a `cp` / `--from` source is a
/// failure to *read* it (not "to write to"); a refused publish is a failure to *publish*; the
/// message says "an entry" and names no Rust API (`SymlinkPolicy::Replace`).
#[test]
fn refusals_name_the_operation_asked_for() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !require(
        rustix::process::geteuid().is_root(),
        "root (to plant entries as uid 65534)",
    ) {
        return;
    }
    let d = tmp();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let shared = d.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let secret = d.path().join("secret");
    fs::write(&secret, "root only\n").unwrap();
    let link = shared.join("link");
    let planted = shared.join("planted");
    for args in [
        vec![
            "ln".to_string(),
            "-s".into(),
            secret.display().to_string(),
            link.display().to_string(),
        ],
        vec!["touch".to_string(), planted.display().to_string()],
    ] {
        let st = Command::new(&args[0])
            .args(&args[1..])
            .uid(65534)
            .gid(65534)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let out = d.path().join("out");
    let check = |o: std::process::Output, verb: &str| {
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with(&format!("atomwrite: failed to {verb} `")),
            "{stderr}"
        );
        assert!(!stderr.contains("SymlinkPolicy"), "{stderr}");
        assert!(!stderr.contains(" a entry"), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        stderr
    };
    check(
        bin().arg("cp").arg(&link).arg(&out).output().unwrap(),
        "read",
    );
    check(
        bin()
            .arg("cp")
            .arg(format!("file://{}", link.display()))
            .arg(&out)
            .output()
            .unwrap(),
        "read",
    );
    check(
        bin()
            .arg("write")
            .arg("--from")
            .arg(&link)
            .arg(&out)
            .stdin(Stdio::null())
            .output()
            .unwrap(),
        "read",
    );
    assert!(!out.exists());
    let e = check(
        bin()
            .arg("publish")
            .arg("--from")
            .arg(&secret)
            .arg(&planted)
            .output()
            .unwrap(),
        "publish",
    );
    assert!(e.contains("an entry"), "{e}");
    assert_eq!(fs::read(&planted).unwrap(), b"");
    // A refused symlink destination names no Rust API either.
    let e = check(
        bin()
            .arg("write")
            .arg(&link)
            .stdin(Stdio::null())
            .output()
            .unwrap(),
        "write to",
    );
    assert!(e.contains("protected_symlinks"), "{e}");
    assert_eq!(fs::read(&secret).unwrap(), b"root only\n");
}

/// A batch that failed before replacing anything says so once: "none of the 2 files of the
/// batch was replaced", not also "; no destination was replaced".
#[test]
fn a_failed_batch_says_nothing_was_replaced_once() {
    let d = tmp();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    fs::write(&a, "a\n").unwrap();
    fs::write(&b, "b\n").unwrap();
    let out = d.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::create_dir(out.join("b")).unwrap();
    let o = bin()
        .arg("cp")
        .arg(&a)
        .arg(&b)
        .arg(format!("{}/", out.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("replaced").count(), 1, "{stderr}");
    assert!(
        stderr.contains("none of the 2 files of the batch was replaced"),
        "{stderr}"
    );
    assert!(!out.join("a").exists());
}

/// The mode and owner of every `.manifest.json` in `vdir` against its version's.
fn manifests_follow_versions(vdir: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let mut n = 0;
    for e in fs::read_dir(vdir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let Some(data) = name.strip_suffix(".manifest.json") else {
            continue;
        };
        let (m, v) = (
            fs::symlink_metadata(&p).unwrap(),
            fs::symlink_metadata(vdir.join(data)).unwrap(),
        );
        assert_eq!(m.mode() & 0o7777, v.mode() & 0o666, "{name}");
        assert_eq!((m.uid(), m.gid()), (v.uid(), v.gid()), "{name}");
        n += 1;
    }
    n
}

/// A version's manifest takes neither the data file's exec bits nor more readers than the
/// version has: mode = version mode & 0666, owner and group the version's.
#[test]
fn a_version_manifest_is_as_private_as_its_version() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let d = tmp();
    let src = d.path().join("tool.sh");
    fs::write(&src, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o750)).unwrap();
    let dst = d.path().join("tool");
    let o = bin()
        .arg("publish")
        .arg("--from")
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let vdir = d.path().join("tool.versions");
    assert_eq!(manifests_follow_versions(&vdir), 1);
    let v1 = vdir.join("v0000000001");
    assert!(
        fs::metadata(&v1).unwrap().mode() & 0o111 != 0,
        "the version is executable"
    );

    if !require(
        rustix::process::geteuid().is_root(),
        "root (a version inherited as uid 65534)",
    ) {
        return;
    }
    // DST belongs to uid 65534, 0600: the versions inherit it, and so do their manifests.
    let dst = d.path().join("private.csv");
    fs::write(&dst, "old\n").unwrap();
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&dst, Some(65534), Some(65534)).unwrap();
    let o = bin()
        .arg("publish")
        .arg("--from")
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let vdir = d.path().join("private.csv.versions");
    assert_eq!(
        manifests_follow_versions(&vdir),
        2,
        "the new and the migrated version"
    );
    for e in fs::read_dir(&vdir).unwrap() {
        let e = e.unwrap();
        let md = fs::symlink_metadata(e.path()).unwrap();
        // Versions and manifests (not the publisher's `.lock`).
        if md.is_file() && e.file_name().to_string_lossy().starts_with('v') {
            assert_eq!(
                (md.mode() & 0o7777, md.uid(), md.gid()),
                (0o600, 65534, 65534)
            );
        }
    }
}

/// `write --manifest`'s `DST.manifest.json` is as private as DST, like a version's manifest:
/// mode = DST's mode & 0666 (a 0600 secret's hash is not world-readable, a 0755 tool's
/// manifest is not executable), owner and group DST's.
#[test]
fn a_write_manifest_is_as_private_as_its_file() {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let d = tmp();
    let write = |args: &[&str], dst: &Path| {
        let mut c = bin();
        c.arg("write").args(args).arg("--manifest").arg(dst);
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"data\n").unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let m = fs::symlink_metadata(d.path().join(format!(
            "{}.manifest.json",
            dst.file_name().unwrap().to_string_lossy()
        )))
        .unwrap();
        (m.mode() & 0o7777, m.uid(), m.gid())
    };
    let secret = d.path().join("secret.key");
    fs::write(&secret, "old\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let me = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    assert_eq!(write(&[], &secret), (0o600, me.0, me.1));
    let tool = d.path().join("tool");
    assert_eq!(write(&["--mode", "0750"], &tool).0, 0o640);

    if !require(
        rustix::process::geteuid().is_root(),
        "root (a file owned by uid 65534)",
    ) {
        return;
    }
    let theirs = d.path().join("theirs.csv");
    fs::write(&theirs, "old\n").unwrap();
    fs::set_permissions(&theirs, fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    assert_eq!(write(&[], &theirs), (0o640, 65534, 65534));
}

/// A `file://` destination goes through object_store, which opens by path and follows links:
/// it is refused where another user could redirect it (a link they planted on the way, a
/// directory they may write), with one line naming why and the plain path to use instead, and
/// nothing is written anywhere; in a directory only the caller or root can write (a link of
/// the caller's own on the way included) it works as before.
#[test]
fn a_file_url_destination_where_others_can_redirect_it_is_refused() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::os::unix::process::CommandExt;
    let d = tmp();
    let src = d.path().join("src");
    fs::write(&src, "payload\n").unwrap();
    let private = d.path().join("private");
    fs::create_dir(&private).unwrap();
    symlink(&private, d.path().join("mylink")).unwrap();
    for url in [
        format!("file://{}/a", private.display()),
        format!("file://{}/mylink/b", d.path().display()),
    ] {
        let o = bin().arg("cp").arg(&src).arg(&url).output().unwrap();
        assert!(
            o.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_eq!(fs::read(private.join("b")).unwrap(), b"payload\n");

    if !require(
        rustix::process::geteuid().is_root(),
        "root (a link planted by uid 65534)",
    ) {
        return;
    }
    let shared = d.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let st = Command::new("ln")
        .arg("-s")
        .arg(&private)
        .arg(shared.join("report"))
        .uid(65534)
        .gid(65534)
        .status()
        .unwrap();
    assert!(st.success());
    let before = fs::read_dir(&private).unwrap().count();
    for (args, url) in [
        (
            vec!["cp", src.to_str().unwrap()],
            format!("file://{}/report/x", shared.display()),
        ),
        (
            vec!["cp", src.to_str().unwrap()],
            format!("file://{}/new", shared.display()),
        ),
        (
            vec!["publish", "--from", src.to_str().unwrap()],
            format!("file://{}/q", shared.display()),
        ),
    ] {
        let o = bin().args(&args).arg(&url).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{url}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("writable by") || stderr.contains("replaced by another user"),
            "{stderr}"
        );
        assert!(stderr.contains("name the path itself"), "{stderr}");
    }
    assert_eq!(
        fs::read_dir(&private).unwrap().count(),
        before,
        "something was written through the link"
    );
    let left: Vec<_> = fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("report")],
        "something was created in the shared dir"
    );
}

/// `--manifest` never leaves a replaced destination behind an error that reads as if nothing
/// happened: a manifest name that cannot exist (NAME_MAX) is refused before any byte is
/// written; a manifest refused after the data's commit (another user's file planted under the
/// manifest's name in a sticky directory) says the data was replaced.
#[test]
fn a_manifest_failure_never_hides_that_the_data_was_replaced() {
    use std::io::Write;
    let d = tmp();
    let write = |dst: &Path| {
        let mut child = bin()
            .arg("write")
            .arg("--manifest")
            .arg(dst)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"NEW\n").unwrap();
        let o = child.wait_with_output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let long = d.path().join("a".repeat(255));
    fs::write(&long, "old\n").unwrap();
    let (code, err) = write(&long);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(fs::read(&long).unwrap(), b"old\n");
    assert_eq!(
        fs::read_dir(d.path()).unwrap().count(),
        1,
        "a temp was left"
    );
    // The same refusal for cp, before the first copy.
    let src = d.path().join("src");
    fs::write(&src, "NEW\n").unwrap();
    let o = bin()
        .arg("cp")
        .arg("--manifest")
        .arg(&src)
        .arg(&long)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(fs::read(&long).unwrap(), b"old\n");

    if !require(
        rustix::process::geteuid().is_root(),
        "root (a manifest name taken by uid 65534 in a sticky directory)",
    ) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let shared = d.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo theirs > {}/e.manifest.json",
            shared.display()
        ))
        .uid(65534)
        .gid(65534)
        .status()
        .unwrap();
    assert!(st.success());
    let (code, err) = write(&shared.join("e"));
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("was replaced") && err.contains("no manifest"),
        "{err}"
    );
    assert_eq!(fs::read(shared.join("e")).unwrap(), b"NEW\n");
    assert_eq!(
        fs::read(shared.join("e.manifest.json")).unwrap(),
        b"theirs\n"
    );
}

/// A planted manifest cannot hang `verify` or make it read without bound: a FIFO is refused
/// without blocking, a 3 GiB (sparse) file after at most 64 MiB; both are BAD-MANIFEST, exit 1.
#[test]
fn verify_refuses_a_fifo_or_huge_manifest_without_hanging() {
    let d = tmp();
    fs::write(d.path().join("m"), "d\n").unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        d.path().join("m.manifest.json"),
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    fs::write(d.path().join("big"), "q\n").unwrap();
    fs::File::create(d.path().join("big.manifest.json"))
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    for name in ["m", "big"] {
        let mut c = bin();
        c.arg("verify").arg(d.path().join(name));
        let o = output_within(c, 120).expect("verify hung on a planted manifest");
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{name}: {out}");
        assert!(out.contains("BAD-MANIFEST"), "{name}: {out}");
    }
}

/// `cp a/x b/x DIR/`: both would land on `DIR/x`, the second silently replacing the first in
/// the same run. Refused before anything is written, naming both sources; exit 1.
#[test]
fn cp_of_two_sources_onto_one_target_is_refused_before_writing() {
    let d = tmp();
    for (dir, body) in [("a", "A\n"), ("b", "B\n")] {
        fs::create_dir(d.path().join(dir)).unwrap();
        fs::write(d.path().join(dir).join("x"), body).unwrap();
    }
    let out = d.path().join("d");
    fs::create_dir(&out).unwrap();
    let o = bin()
        .current_dir(d.path())
        .args(["cp", "a/x", "b/x", "d/"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("a/x") && err.contains("b/x") && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
}

/// A planted `v0000000002.old` beside the current `v0000000002` is listed, but only the entry
/// the pointer names is current.
#[test]
fn versions_marks_only_the_pointed_entry_current() {
    let d = tmp();
    for body in ["1\n", "2\n"] {
        let mut child = bin()
            .current_dir(d.path())
            .args(["publish", "-q", "r"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), body.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
    }
    fs::write(d.path().join("r.versions/v0000000002.old"), "j\n").unwrap();
    let o = bin()
        .current_dir(d.path())
        .args(["versions", "--json", "r"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let current: Vec<&str> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["current"] == true)
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(current, ["r.versions/v0000000002"], "{v}");
}

/// SIGINT or SIGTERM during a publish (reading its input) removes the pending marker with the
/// temps: nothing of the interrupted publish is left beside `DST`, which is unchanged.
#[test]
fn an_interrupted_publish_leaves_no_pending_marker() {
    use std::io::Write;
    for (sig, code) in [
        (rustix::process::Signal::INT, 130),
        (rustix::process::Signal::TERM, 143),
    ] {
        let d = tmp();
        let publish = |input: &[u8]| {
            let mut c = bin()
                .current_dir(d.path())
                .args(["publish", "p"])
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = c.stdin.take().unwrap();
            stdin.write_all(input).unwrap();
            (c, stdin)
        };
        let (c, stdin) = publish(b"one\n");
        drop(stdin);
        assert!(c.wait_with_output().unwrap().status.success());
        let (c, _stdin) = publish(&[7u8; 1 << 16]);
        let marker = d.path().join(".p.v0000000002.pending");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        // (A symlink to the version-to-be, which does not exist yet: lstat, not exists().)
        while fs::symlink_metadata(&marker).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "no pending marker appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let pid = rustix::process::Pid::from_raw(c.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
        let o = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{err}");
        assert!(err.contains("not replaced"), "{err}");
        let mut names: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["p", "p.versions"], "{sig:?}");
        assert_eq!(fs::read(d.path().join("p")).unwrap(), b"one\n");
    }
}

/// `cp` of a source others may not read to a `file://` URL is refused before anything is
/// written (object_store would create the copy with the default mode, readable by others);
/// a source as readable as the default is copied.
#[test]
fn a_private_source_is_not_copied_readable_through_file_urls() {
    use std::os::unix::fs::PermissionsExt;
    let d = tmp();
    let src = d.path().join("p");
    fs::write(&src, "secret\n").unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o600)).unwrap();
    let url = format!("file://{}/copy", d.path().display());
    let o = bin().arg("cp").arg(&src).arg(&url).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("mode 600"), "{err}");
    assert!(!d.path().join("copy").exists());
    fs::set_permissions(&src, fs::Permissions::from_mode(0o644)).unwrap();
    let o = bin().arg("cp").arg(&src).arg(&url).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read(d.path().join("copy")).unwrap(), b"secret\n");
}

/// `PARENT/shared`, owned by root and group `group`, with `mode` (a sticky 1777 or 1775).
fn shared_sticky_dir(parent: &Path, mode: u32, group: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let shared = parent.join("shared");
    fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(0), Some(group)).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(mode)).unwrap();
    shared
}

/// `clean` in a sticky directory others may write removes only the caller's own temps: a file
/// of uid 65534 shaped like a temp, old and unlocked, is kept with a warning (its name, age
/// and missing lock can all be forged), while the caller's own stale temp is removed.
#[test]
fn clean_in_a_shared_sticky_directory_removes_only_the_callers_temps() {
    use std::os::unix::process::CommandExt;
    if !require(
        rustix::process::geteuid().is_root(),
        "root (a temp-shaped file of uid 65534)",
    ) {
        return;
    }
    // World-writable (/tmp) and group-writable (a team's 1775, second review): the one test of
    // "shared sticky" that the writers use too.
    for (mode, group) in [(0o1777, 0), (0o1775, 65534)] {
        let d = tmp();
        let shared = shared_sticky_dir(d.path(), mode, group);
        let theirs = shared.join(".z.abcdefghijklmnop.tmp");
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo x > {0} && touch -d '2 days ago' {0}",
                theirs.display()
            ))
            .uid(65534)
            .gid(65534)
            .status()
            .unwrap();
        assert!(st.success());
        let mine = shared.join(".m.abcdefghijklmnop.tmp");
        fs::write(&mine, "stale\n").unwrap();
        let o = bin()
            .args(["clean", "--older-than", "0s"])
            .arg(&shared)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(theirs.exists(), "{mode:o}: another user's file was removed");
        assert!(err.contains("uid 65534"), "{mode:o}: {err}");
        assert!(
            !mine.exists(),
            "{mode:o}: the caller's own stale temp was kept"
        );
    }
}

// ---- F6: `clean --older-than 0` against a live writer's just-created named temp -----------

fn temps_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| atomwrite::is_temp_name(&e.file_name()))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// `atomwrite clean --older-than 0s --json DIR`: its JSON report.
#[cfg(feature = "test-hooks")]
fn clean_now(dir: &Path) -> serde_json::Value {
    let o = bin()
        .args(["clean", "--older-than", "0s", "--json"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The file names in a JSON array of paths.
#[cfg(feature = "test-hooks")]
fn names_in(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            Path::new(p.as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[cfg(feature = "test-hooks")]
fn file_names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Review F6: a portable writer stopped between creating its named temp and `flock`ing it (the
/// `named-created` pause point). A concurrent `clean --older-than 0s` used to take the unlocked
/// temp for a dead writer's and remove it: the write then failed. Now the writer holds its
/// directory's shared lock across that window, so `clean` reports the temp locked and keeps
/// it, and the write succeeds. A writer SIGKILLed at the same point loses its locks with its
/// life: the next `clean --older-than 0s` removes its temp, and the destination is unchanged.
#[cfg(feature = "test-hooks")]
#[test]
fn clean_older_than_0_keeps_a_live_writers_temp_between_create_and_flock() {
    let d = tmp();
    let out = d.path().join("out");
    fs::create_dir(&out).unwrap();
    let (src, dst) = (d.path().join("src"), out.join("f"));
    fs::write(&src, "new\n").unwrap();
    fs::write(&dst, "old\n").unwrap();
    let args: Vec<String> = vec![
        "write".into(),
        "--from".into(),
        src.display().to_string(),
        dst.display().to_string(),
    ];
    let portable = [("ATOMWRITE_PORTABLE", "1")];

    // Live: paused in the window, then resumed.
    let marker = d.path().join("pause-live");
    let (child, _pid) = start_paused(&args, &portable, "named-created", &marker);
    let temps = temps_in(&out);
    assert_eq!(temps.len(), 1, "{temps:?}");
    let v = clean_now(&out);
    assert_eq!(v["removed"], serde_json::json!([]), "{v}");
    assert_eq!(names_in(&v["locked"]), file_names(&temps), "{v}");
    assert_eq!(
        temps_in(&out),
        temps,
        "clean removed the live writer's temp"
    );
    fs::remove_file(&marker).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read_to_string(&dst).unwrap(), "new\n");
    assert_eq!(temps_in(&out), Vec::<PathBuf>::new());

    // Killed in the window: its temp is a dead writer's, and `clean` removes it.
    fs::write(&dst, "old\n").unwrap();
    let marker = d.path().join("pause-kill");
    let (mut child, pid) = start_paused(&args, &portable, "named-created", &marker);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    child.wait().unwrap();
    let temps = temps_in(&out);
    assert_eq!(temps.len(), 1, "{temps:?}");
    let v = clean_now(&out);
    assert_eq!(names_in(&v["removed"]), file_names(&temps), "{v}");
    assert_eq!(v["locked"], serde_json::json!([]), "{v}");
    assert_eq!(temps_in(&out), Vec::<PathBuf>::new());
    assert_eq!(fs::read_to_string(&dst).unwrap(), "old\n");
}

/// Review F6, as it was found: 300 portable writes (`ATOMWRITE_PORTABLE=1 atomwrite write`),
/// two at a time, racing a loop of `clean --older-than 0s` on their directory. About 1 write in
/// 150 used to fail (its just-created temp removed or locked by `clean` before its own
/// `flock`); now every one succeeds, and nothing is left once both are done.
#[test]
fn portable_writes_racing_clean_older_than_0_all_succeed() {
    let d = tmp();
    let out = d.path().join("out");
    fs::create_dir(&out).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cleaners: Vec<_> = (0..4)
        .map(|_| {
            let (stop, out) = (stop.clone(), out.clone());
            std::thread::spawn(move || {
                let mut sweeps = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let o = bin()
                        .args(["clean", "-q", "--older-than", "0s"])
                        .arg(&out)
                        .output()
                        .unwrap();
                    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                    sweeps += 1;
                }
                sweeps
            })
        })
        .collect();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut failed = Vec::new();
                for i in 0..150 {
                    let dst = out.join(format!("w{w}-{}", i % 10));
                    let mut c = bin();
                    c.env("ATOMWRITE_PORTABLE", "1")
                        .args(["write", "--durability", "none"])
                        .arg(&dst)
                        .stdin(Stdio::piped())
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped());
                    let mut child = c.spawn().unwrap();
                    {
                        use std::io::Write;
                        let mut stdin = child.stdin.take().unwrap();
                        writeln!(stdin, "{w} {i}").unwrap();
                    }
                    let o = child.wait_with_output().unwrap();
                    if !o.status.success() {
                        failed.push(String::from_utf8_lossy(&o.stderr).into_owned());
                    } else {
                        assert_eq!(fs::read_to_string(&dst).unwrap(), format!("{w} {i}\n"));
                    }
                }
                failed
            })
        })
        .collect();
    let failed: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in cleaners {
        assert!(c.join().unwrap() > 0);
    }
    assert_eq!(
        failed,
        Vec::<String>::new(),
        "{} of 300 writes failed",
        failed.len()
    );
    assert_eq!(temps_in(&out), Vec::<PathBuf>::new());
}

/// A 1777 directory `shared` under a fresh 0755 temp dir, and a process of uid 65534 holding
/// `LOCK_EX` on it (kill it to end the lock: no orphan keeps it). Root only.
fn squatted_shared_dir() -> (tempfile::TempDir, PathBuf, std::process::Child) {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let d = tmp();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let shared = d.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    // The shell opens the directory, flock(1) locks that open file description, and the shell
    // becomes `sleep`: killing that one process ends the lock (no orphan keeps it).
    let holder = Command::new("sh")
        .args(["-c", "exec 3<\"$1\" && flock -x 3 && exec sleep 600", "sh"])
        .arg(&shared)
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Held once our own non-blocking attempt is refused.
    let probe = fs::File::open(&shared).unwrap();
    let mut held = false;
    for _ in 0..1000 {
        match rustix::fs::flock(&probe, rustix::fs::FlockOperation::NonBlockingLockShared) {
            Err(rustix::io::Errno::WOULDBLOCK) => {
                held = true;
                break;
            }
            Ok(()) => {
                rustix::fs::flock(&probe, rustix::fs::FlockOperation::Unlock).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(probe);
    assert!(held, "flock(1) never took the lock");
    (d, shared, holder)
}

/// Runs `body(dir, shared)` while uid 65534 holds `LOCK_EX` on `shared`, a 1777 directory
/// under the fresh temp dir `dir` (see [`squatted_shared_dir`]); the lock ends afterwards, also
/// when `body` panics. Root only.
fn while_squatted(body: impl FnOnce(&Path, &Path)) {
    let (d, shared, mut holder) = squatted_shared_dir();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(d.path(), &shared)));
    let _ = holder.kill();
    let _ = holder.wait();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// Review F6: the directory lock is one anyone who may open the directory can take. Another
/// user (uid 65534) holds it exclusively on a shared sticky directory, forever: a portable
/// write there waits a bounded moment (~2 s) and then succeeds without it, and so does a
/// portable `cp` of 40 files (a batch waits once, not once per file: 40 waits would be 80 s,
/// past the generous 60 s allowed here).
#[test]
fn a_hostile_exclusive_directory_lock_delays_portable_writes_but_never_stops_them() {
    if !require(
        rustix::process::geteuid().is_root() && have("flock"),
        "root with flock(1) (a lock held by uid 65534)",
    ) {
        return;
    }
    while_squatted(|d, shared| {
        let dst = shared.join("f");
        fs::write(&dst, "old\n").unwrap();
        let src = d.join("src");
        fs::write(&src, "new\n").unwrap();
        let mut c = bin();
        c.env("ATOMWRITE_PORTABLE", "1")
            .args(["write", "--from"])
            .arg(&src)
            .arg(&dst);
        let o = output_within(c, 60).expect("a write hung on the directory lock");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(fs::read_to_string(&dst).unwrap(), "new\n");

        let srcs = d.join("many");
        fs::create_dir(&srcs).unwrap();
        let mut c = bin();
        c.env("ATOMWRITE_PORTABLE", "1").arg("cp");
        for i in 0..40 {
            let p = srcs.join(format!("s{i:02}"));
            fs::write(&p, format!("{i}\n")).unwrap();
            c.arg(p);
        }
        c.arg(shared);
        let o = output_within(c, 60).expect("a batch hung on the directory lock");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for i in 0..40 {
            assert_eq!(
                fs::read_to_string(shared.join(format!("s{i:02}"))).unwrap(),
                format!("{i}\n")
            );
        }
        assert_eq!(temps_in(shared), Vec::<PathBuf>::new());
    });
}

/// Second review, F1 (critical): with a directory's lock held by another user, a batch used to
/// park its temps (closed, so unprotected) anyway; a root `clean --older-than 0` then removed
/// them as dead writers' temps, the other user made files of theirs under the freed names, and
/// the batch renamed those over root's destinations. Now a batch never parks without the lock:
/// past the temps it may keep open it fails whole, saying why, nothing replaced, no temp left.
/// And `--manifest` writes (single writes, one per file) wait for the refused lock once per
/// process, not once per file (counted in `flock` calls, not in seconds).
#[test]
fn without_the_directory_lock_a_batch_never_parks_temps_and_waits_once() {
    if !require(
        rustix::process::geteuid().is_root() && have("flock") && have("strace"),
        "root with flock(1) and strace (a lock held by uid 65534)",
    ) {
        return;
    }
    while_squatted(|d, shared| {
        let srcs = d.join("many");
        fs::create_dir(&srcs).unwrap();
        let mut names = String::new();
        for i in 0..60 {
            let p = srcs.join(format!("s{i:02}"));
            fs::write(&p, format!("{i}\n")).unwrap();
            fs::write(shared.join(format!("s{i:02}")), "old\n").unwrap();
            names.push_str(&format!(" '{}'", p.display()));
        }
        // `ulimit -n 80` (soft and hard): the batch may keep 16 temps open, so 60 files park.
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!(
            "ulimit -n 80 && exec '{}' cp --json {names} '{}/'",
            assert_cmd::cargo::cargo_bin("atomwrite").display(),
            shared.display()
        ));
        let o = output_within(c, 60).expect("a batch hung on the directory lock");
        let err = String::from_utf8_lossy(&o.stderr);
        // Exit 3: a conflict with another process (as a publisher's lock held past `--wait`).
        assert_eq!(o.status.code(), Some(3), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("holds this directory's lock"), "{err}");
        assert!(err.contains("none of the 60 files"), "{err}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["error"]["replaced"], serde_json::json!([]), "{v}");
        assert_eq!(v["error"]["not_replaced"].as_array().unwrap().len(), 60);
        for i in 0..60 {
            assert_eq!(
                fs::read_to_string(shared.join(format!("s{i:02}"))).unwrap(),
                "old\n"
            );
        }
        assert_eq!(temps_in(shared), Vec::<PathBuf>::new());

        // Eight copies with manifests, portable: the data is one batch (one wait), each
        // manifest a single write that must not wait again.
        let log = d.join("strace.log");
        let mut c = Command::new("strace");
        c.args(["-f", "-qq", "-e", "trace=flock", "-o"])
            .arg(&log)
            .arg(assert_cmd::cargo::cargo_bin("atomwrite"))
            .env("ATOMWRITE_PORTABLE", "1")
            .args(["cp", "--manifest"]);
        for i in 0..8 {
            c.arg(srcs.join(format!("s{i:02}")));
        }
        c.arg(shared);
        let o = output_within(c, 60).expect("cp --manifest hung on the directory lock");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let shared_tries = fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter(|l| l.contains("LOCK_SH|LOCK_NB"))
            .count();
        // One bounded wait is ~50 attempts; one per file more would be 8 x 50.
        assert!(shared_tries < 120, "{shared_tries} shared lock attempts");
        for i in 0..8 {
            let m = shared.join(format!("s{i:02}.manifest.json"));
            assert!(m.exists(), "{}", m.display());
        }
        assert_eq!(temps_in(shared), Vec::<PathBuf>::new());
    });
}

/// Second review, F1, the single write: a portable writer that could not get the directory's
/// lock creates its temp unprotected for an instant. If in that instant the temp is removed (a
/// root `clean --older-than 0`) and another user makes a file of theirs under its name, the
/// writer must not rename that file over the destination: it checks, after its own `flock`,
/// that the name is still its file, and fails otherwise, leaving both files alone.
#[cfg(feature = "test-hooks")]
#[test]
fn a_named_temp_replaced_before_its_lock_is_never_published() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    if !require(
        rustix::process::geteuid().is_root() && have("flock"),
        "root with flock(1) (a lock held by uid 65534)",
    ) {
        return;
    }
    while_squatted(|d, shared| {
        let (src, dst) = (d.join("src"), shared.join("f"));
        fs::write(&src, "new\n").unwrap();
        fs::write(&dst, "old\n").unwrap();
        let args: Vec<String> = vec![
            "write".into(),
            "--from".into(),
            src.display().to_string(),
            dst.display().to_string(),
        ];
        let marker = d.join("pause");
        let (child, _pid) = start_paused(
            &args,
            &[("ATOMWRITE_PORTABLE", "1")],
            "named-created",
            &marker,
        );
        let temps = temps_in(shared);
        assert_eq!(temps.len(), 1, "{temps:?}");
        // What a root `clean` and the other user would do in that instant.
        fs::remove_file(&temps[0]).unwrap();
        let o = Command::new("sh")
            .args(["-c", "printf EVIL > \"$1\"", "sh"])
            .arg(&temps[0])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        fs::remove_file(&marker).unwrap();
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains("removed or replaced by another process"),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&dst).unwrap(), "old\n");
        assert_eq!(fs::metadata(&dst).unwrap().uid(), 0);
        // Not ours: left for its owner.
        assert_eq!(fs::read_to_string(&temps[0]).unwrap(), "EVIL");
    });
}

/// Second review, F3: a signal while a batch was still creating its temps made two reports: the
/// main thread's "failed to create temporary file: interrupted" (exit 1, a JSON error object)
/// raced the signal's report (exit 130, another JSON object), and either could win. Now the
/// main thread defers to the signal's report: exit 130, one line on stderr, one JSON object.
#[test]
fn a_signal_during_a_batch_makes_one_report_with_the_signals_exit_code() {
    let d = tmp();
    let (srcs, out) = (d.path().join("s"), d.path().join("o"));
    fs::create_dir(&srcs).unwrap();
    let mut names = String::new();
    for i in 0..400 {
        let p = srcs.join(format!("f{i:03}"));
        fs::write(&p, format!("{i}\n")).unwrap();
        names.push_str(&format!(" '{}'", p.display()));
    }
    let mut interrupted = 0;
    for run in 0..12u64 {
        let _ = fs::remove_dir_all(&out);
        fs::create_dir(&out).unwrap();
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!(
            "ulimit -n 100 && exec '{}' cp --json {names} '{}/'",
            assert_cmd::cargo::cargo_bin("atomwrite").display(),
            out.display()
        ));
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(25 + 8 * run));
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
            rustix::process::Signal::INT,
        );
        let o = child.wait_with_output().unwrap();
        let (err, stdout) = (
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout),
        );
        use std::os::unix::process::ExitStatusExt;
        match o.status.code() {
            // Done before the signal, or killed before its handler was installed.
            Some(0) => continue,
            None if o.status.signal() == Some(2) => continue,
            Some(130) => interrupted += 1,
            other => panic!("run {run}: exit {other:?}: {err}"),
        }
        assert_eq!(err.lines().count(), 1, "run {run}: {err}");
        // One JSON value: the signal's error object, or, when the signal came once the copy
        // had finished and its outcome was being printed, that outcome alone (the stderr line
        // and the exit code still say a signal came).
        assert_eq!(stdout.lines().count(), 1, "run {run}: {stdout}");
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        if v.get("files").is_some() {
            assert!(
                err.contains("interrupted by signal 2 after") && !err.contains("not replaced"),
                "run {run}: {err}"
            );
            continue;
        }
        assert_eq!(v["error"]["exit_code"], 130, "{v}");
        assert!(temps_in(&out).is_empty(), "run {run}");
    }
    eprintln!("{interrupted} of 12 runs interrupted");
}

/// Second review, F4: one manifest name blocked (a directory planted at `f7.manifest.json`)
/// used to stop every later manifest and say neither which files lack one nor what was
/// replaced. Now the others are written, and the one line and the JSON error say which.
#[test]
fn a_blocked_manifest_names_the_files_without_one_and_the_others_get_theirs() {
    let d = tmp();
    let (s, out) = (d.path().join("s"), d.path().join("o"));
    fs::create_dir(&s).unwrap();
    fs::create_dir(&out).unwrap();
    fs::create_dir(out.join("f7.manifest.json")).unwrap();
    let mut c = bin();
    c.args(["cp", "--json", "--manifest"]);
    for i in 1..=9 {
        let p = s.join(format!("f{i}"));
        fs::write(&p, format!("{i}\n")).unwrap();
        c.arg(p);
    }
    c.arg(&out);
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("manifests were written for 8 of them")
            && err.contains(&format!("`{}`", out.join("f7").display())),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["replaced"].as_array().unwrap().len(), 9, "{v}");
    for i in 1..=9 {
        assert_eq!(
            fs::read_to_string(out.join(format!("f{i}"))).unwrap(),
            format!("{i}\n")
        );
        assert_eq!(out.join(format!("f{i}.manifest.json")).is_file(), i != 7);
    }
    assert!(temps_in(&out).is_empty());
}

/// Second review, F5: a source that turns into a FIFO in the middle of a batch is a usage error
/// (exit 2) as before, and now also says that the batch replaced nothing (text and JSON lists).
#[cfg(feature = "test-hooks")]
#[test]
fn a_source_turning_into_a_fifo_mid_batch_says_nothing_was_replaced() {
    let (d, srcs, out) = sources_and_out(40, |i| format!("f{i:02}"));
    let mut args: Vec<String> = vec!["cp".into(), "--json".into()];
    args.extend(srcs.iter().map(|p| p.display().to_string()));
    args.push(out.display().to_string());
    let marker = d.path().join("pause");
    // The batch keeps 16 temps open (test hook): the 17th file parks the first and pauses,
    // before the 30th source is opened.
    let (child, _pid) = start_paused(
        &args,
        &[("ATOMWRITE_TEST_HELD_OPEN", "16")],
        "batch-parked:1",
        &marker,
    );
    let f30 = srcs[30].clone();
    fs::remove_file(&f30).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &f30,
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    fs::remove_file(&marker).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("not a regular file") && err.contains("none of the 40 files"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["replaced"], serde_json::json!([]), "{v}");
    assert_eq!(
        v["error"]["not_replaced"].as_array().unwrap().len(),
        40,
        "{v}"
    );
    assert!(
        fs::read_dir(&out).unwrap().next().is_none(),
        "nothing left in the destination"
    );
}

/// Second review, F4 (signals): a `cp --manifest` interrupted during its renames replaced some
/// files whose manifests (written once every rename is done) were never written; the report
/// now says so instead of leaving the missing manifests unmentioned.
#[cfg(feature = "test-hooks")]
#[test]
fn an_interrupted_cp_with_manifests_says_how_many_manifests_were_written() {
    let (d, srcs, out) = sources_and_out(10, |i| format!("f{i}"));
    let mut args: Vec<String> = vec!["cp".into(), "--manifest".into()];
    args.extend(srcs.iter().map(|p| p.display().to_string()));
    args.push(out.display().to_string());
    let marker = d.path().join("pause");
    let (child, pid) = start_paused(&args, &[], "batch-renamed:3", &marker);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(143), "{err}");
    assert!(
        err.contains("manifests were written for 0 of the replaced files"),
        "{err}"
    );
    let manifests = fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".manifest.json")
        })
        .count();
    assert_eq!(manifests, 0);
    assert!(temps_in(&out).is_empty());
}

/// Second review: a temp-shaped name that is a second link to a file (a portable create-only
/// publish whose temp name could not be dropped, or a link someone made) frees nothing when it
/// is removed: `clean` removes the name and counts no bytes for it; the file keeps its data.
#[test]
fn clean_counts_no_bytes_for_a_temp_name_that_is_a_second_link() {
    let d = tmp();
    let log = d.path().join("app.log");
    fs::write(&log, "a log line\n").unwrap();
    let link = d.path().join(".app.log.abcdefghijklmnop.tmp");
    fs::hard_link(&log, &link).unwrap();
    let o = bin()
        .args(["clean", "--older-than", "0s", "--json"])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["removed"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["bytes"], 0, "{v}");
    assert!(!link.exists());
    assert_eq!(fs::read_to_string(&log).unwrap(), "a log line\n");
}

/// A fresh temp dir with `s/` holding `n` sources (`name(i)`, contents `"{i}\n"`) and an empty
/// `o/`: the dir, the sources and `o`.
#[cfg(feature = "test-hooks")]
fn sources_and_out(
    n: usize,
    name: impl Fn(usize) -> String,
) -> (tempfile::TempDir, Vec<PathBuf>, PathBuf) {
    let d = tmp();
    let (s, out) = (d.path().join("s"), d.path().join("o"));
    fs::create_dir(&s).unwrap();
    fs::create_dir(&out).unwrap();
    let srcs = (0..n)
        .map(|i| {
            let p = s.join(name(i));
            fs::write(&p, format!("{i}\n")).unwrap();
            p
        })
        .collect();
    (d, srcs, out)
}

// ---- Third review of #15: a name another user plants after the check ----------------------

/// Root copies into a shared sticky directory (1777, and a team's 1775) where the destination
/// names were free when looked up; while the batch is paused before its renames, uid 65534
/// plants a file at one name and a symlink at another. Root's rename ignores the sticky bit,
/// so without a check at the publish it replaced both. Now the publish is create-only for a
/// name found free (`renameat2(RENAME_NOREPLACE)` for a renamed temp, `linkat` for an
/// anonymous one) and a newcomer that belongs to another user is refused by the sticky rule:
/// the renames stop there, the report says what was and was not replaced, the planted entries
/// are untouched, no temp is left. Parked temps (renamed) and open ones (linked) alike, fast
/// and portable paths alike.
#[cfg(feature = "test-hooks")]
#[test]
fn a_file_planted_by_another_user_after_the_check_in_a_sticky_dir_is_not_replaced() {
    use std::os::unix::process::CommandExt;
    if !require(
        rustix::process::geteuid().is_root(),
        "root (to plant as uid 65534)",
    ) {
        return;
    }
    // f03 is parked (named, renamed at the commit), f58 is open until the commit (linked in
    // place; on the portable path every temp is named).
    for (mode, group) in [(0o1777, 0), (0o1775, 65534)] {
        for (planted, link) in [("f03", false), ("f58", false), ("f03", true), ("f58", true)] {
            for portable in ["0", "1"] {
                let d = tmp();
                let src = d.path().join("s");
                fs::create_dir(&src).unwrap();
                let mut args = vec!["cp".to_string(), "--json".into()];
                for i in 0..60 {
                    let p = src.join(format!("f{i:02}"));
                    fs::write(&p, format!("root's {i}\n")).unwrap();
                    args.push(p.display().to_string());
                }
                let shared = shared_sticky_dir(d.path(), mode, group);
                args.push(format!("{}/", shared.display()));
                let marker = d.path().join("pause");
                let (child, _) = start_paused(
                    &args,
                    &[
                        ("ATOMWRITE_TEST_HELD_OPEN", "16"),
                        ("ATOMWRITE_PORTABLE", portable),
                    ],
                    "batch-synced",
                    &marker,
                );
                let target = shared.join(planted);
                let victim = d.path().join("victim");
                fs::write(&victim, "victim\n").unwrap();
                let plant = if link {
                    format!("ln -s {} {}", victim.display(), target.display())
                } else {
                    format!("echo planted > {}", target.display())
                };
                let st = Command::new("sh")
                    .arg("-c")
                    .arg(&plant)
                    .uid(65534)
                    .gid(65534)
                    .status()
                    .unwrap();
                assert!(st.success());
                fs::remove_file(&marker).unwrap();
                let out = child.wait_with_output().unwrap();
                let err = String::from_utf8_lossy(&out.stderr);
                let ctx = format!("{mode:o} {planted} link={link} portable={portable}: {err}");
                assert_eq!(out.status.code(), Some(1), "{ctx}");
                assert!(err.contains("uid 65534"), "{ctx}");
                assert_eq!(err.lines().count(), 1, "{ctx}");
                let md = fs::symlink_metadata(&target).unwrap();
                assert_eq!(md.file_type().is_symlink(), link, "{ctx}");
                assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), 65534, "{ctx}");
                let want = if link { "victim\n" } else { "planted\n" };
                assert_eq!(fs::read_to_string(&target).unwrap(), want, "{ctx}");
                assert_eq!(fs::read_to_string(&victim).unwrap(), "victim\n", "{ctx}");
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                let n: usize = planted[1..].parse().unwrap();
                let replaced = v["error"]["replaced"].as_array().unwrap();
                assert_eq!(replaced.len(), n, "{ctx} {v}");
                assert_eq!(
                    v["error"]["not_replaced"].as_array().unwrap().len(),
                    60 - n,
                    "{ctx} {v}"
                );
                for i in 0..60 {
                    let p = shared.join(format!("f{i:02}"));
                    if i < n {
                        assert_eq!(fs::read_to_string(&p).unwrap(), format!("root's {i}\n"));
                    } else if i != n {
                        assert!(!p.exists(), "{ctx}: {} was replaced", p.display());
                    }
                }
                assert_eq!(temps_in(&shared), Vec::<PathBuf>::new(), "{ctx}");
            }
        }
    }
}

/// A FIFO (or any entry but a regular file or a symlink) that appears at a destination name
/// after the name was found free is refused, as it would have been at the lookup: the renames
/// stop there, the report is exact, the FIFO is untouched and no temp is left. It used to be
/// replaced silently. Parked (renamed) and open (linked) files, fast and portable paths.
#[cfg(feature = "test-hooks")]
#[test]
fn a_fifo_that_appears_at_a_free_destination_name_is_not_replaced() {
    use std::os::unix::fs::FileTypeExt;
    for planted in ["f03", "f58"] {
        for portable in ["0", "1"] {
            let d = tmp();
            let src = d.path().join("s");
            fs::create_dir(&src).unwrap();
            let mut args = vec!["cp".to_string(), "--json".into()];
            for i in 0..60 {
                let p = src.join(format!("f{i:02}"));
                fs::write(&p, format!("new {i}\n")).unwrap();
                args.push(p.display().to_string());
            }
            let out_dir = d.path().join("out");
            fs::create_dir(&out_dir).unwrap();
            args.push(format!("{}/", out_dir.display()));
            let marker = d.path().join("pause");
            let (child, _) = start_paused(
                &args,
                &[
                    ("ATOMWRITE_TEST_HELD_OPEN", "16"),
                    ("ATOMWRITE_PORTABLE", portable),
                ],
                "batch-synced",
                &marker,
            );
            let target = out_dir.join(planted);
            let st = Command::new("mkfifo").arg(&target).status().unwrap();
            assert!(st.success());
            fs::remove_file(&marker).unwrap();
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            let ctx = format!("{planted} portable={portable}: {err}");
            assert_eq!(out.status.code(), Some(1), "{ctx}");
            assert!(err.contains("FIFO"), "{ctx}");
            assert!(
                fs::symlink_metadata(&target).unwrap().file_type().is_fifo(),
                "{ctx}"
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let n: usize = planted[1..].parse().unwrap();
            assert_eq!(
                v["error"]["replaced"].as_array().unwrap().len(),
                n,
                "{ctx} {v}"
            );
            assert_eq!(temps_in(&out_dir), Vec::<PathBuf>::new(), "{ctx}");
        }
    }
}
