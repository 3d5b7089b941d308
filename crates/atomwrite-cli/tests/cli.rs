//! The `atomwrite` binary as users run it: stdin streaming, exit codes, one-line errors,
//! signals, and the syscall order (checked with strace). Honours `TEST_DIR`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;

fn tmp() -> tempfile::TempDir {
    match std::env::var_os("TEST_DIR") {
        Some(d) => tempfile::tempdir_in(d).expect("TEST_DIR must be a writable directory"),
        None => tempfile::tempdir().unwrap(),
    }
}

fn bin() -> Command {
    Command::cargo_bin("atomwrite").unwrap()
}

fn temps_in(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| atomwrite::is_temp_name(&e.file_name()))
        .map(|e| e.path())
        .collect()
}

/// Runs `atomwrite ARGS` with `input` on stdin; returns (exit code, stdout, stderr).
fn run(args: &[&str], input: &[u8], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = bin();
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const MODES: [&[(&str, &str)]; 2] = [&[], &[("ATOMWRITE_PORTABLE", "1")]];

#[test]
fn write_streams_stdin_to_the_destination() {
    for env in MODES {
        let d = tmp();
        let p = d.path().join("out.txt");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (code, _, err) = run(&["write", p.to_str().unwrap()], &data, env);
        assert_eq!(code, 0, "{err}");
        assert_eq!(fs::read(&p).unwrap(), data);
        assert!(temps_in(d.path()).is_empty());
    }
}

#[test]
fn write_from_a_file() {
    let d = tmp();
    let src = d.path().join("src");
    fs::write(&src, b"from file\n").unwrap();
    let p = d.path().join("dst");
    let (code, _, err) = run(
        &[
            "write",
            "--from",
            src.to_str().unwrap(),
            p.to_str().unwrap(),
        ],
        b"",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::read(&p).unwrap(), b"from file\n");
}

#[test]
fn json_prints_the_receipt() {
    let d = tmp();
    let p = d.path().join("r");
    let (code, out, _) = run(
        &[
            "write",
            "--json",
            "--run-id",
            "nightly-42",
            p.to_str().unwrap(),
        ],
        b"abc",
        &[],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["size"], 3);
    assert_eq!(
        v["sha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(v["run_id"], "nightly-42");
    assert_eq!(v["durability"], full_honoured_in(p.parent().unwrap()));
    assert_eq!(v["path"], p.to_str().unwrap());
    assert!(v["written_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        v.as_object().unwrap().contains_key("owner_changed") && v["owner_changed"].is_null(),
        "{v}"
    );
}

#[test]
fn quiet_prints_nothing_on_success() {
    let d = tmp();
    let (code, out, err) = run(
        &["write", "-q", d.path().join("q").to_str().unwrap()],
        b"x",
        &[],
    );
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
}

#[test]
fn no_clobber_on_an_existing_file_exits_3_and_changes_nothing() {
    for env in MODES {
        let d = tmp();
        let p = d.path().join("once");
        fs::write(&p, b"first").unwrap();
        let (code, _, err) = run(
            &["write", "--no-clobber", p.to_str().unwrap()],
            b"second",
            env,
        );
        assert_eq!(code, 3, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("already exists"), "{err}");
        assert!(err.contains(p.to_str().unwrap()), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert!(temps_in(d.path()).is_empty());
    }
}

#[test]
fn usage_errors_exit_2() {
    let d = tmp();
    let p = d.path().join("x");
    for args in [
        vec!["write"],
        vec!["write", "--mode", "999", p.to_str().unwrap()],
        vec!["write", "--durability", "maybe", p.to_str().unwrap()],
        vec!["frobnicate"],
        vec!["clean", d.path().to_str().unwrap(), "--older-than", "soon"],
    ] {
        let (code, _, err) = run(&args, b"", &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!p.exists());
    }
}

#[test]
fn a_directory_destination_fails_with_one_line_naming_the_path() {
    let d = tmp();
    let sub = d.path().join("sub");
    fs::create_dir(&sub).unwrap();
    let (code, _, err) = run(&["write", sub.to_str().unwrap()], b"x", &[]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("is a directory") && err.contains(sub.to_str().unwrap()),
        "{err}"
    );
    assert!(fs::read_dir(&sub).unwrap().next().is_none());
    assert!(temps_in(d.path()).is_empty());
}

#[test]
fn a_fifo_destination_is_refused_without_blocking() {
    let d = tmp();
    let p = d.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&p).status().unwrap().success());
    let mut child = bin()
        .args(["write", p.to_str().unwrap()])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("atomwrite blocked on a FIFO destination");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
}

#[test]
fn no_create_dirs_fails_when_the_parent_is_missing() {
    let d = tmp();
    let p = d.path().join("missing/out");
    let (code, _, err) = run(
        &["write", "--no-create-dirs", p.to_str().unwrap()],
        b"x",
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("open directory") && err.contains("missing"),
        "{err}"
    );
    assert!(!d.path().join("missing").exists());
    let (code, _, _) = run(&["write", p.to_str().unwrap()], b"x", &[]);
    assert_eq!(code, 0);
    assert_eq!(fs::read(&p).unwrap(), b"x");
}

#[test]
fn umask_is_honoured_for_new_files_and_mode_is_exact() {
    let d = tmp();
    let bin = assert_cmd::cargo::cargo_bin("atomwrite");
    for (umask, want) in [("022", 0o644), ("077", 0o600), ("002", 0o664)] {
        let p = d.path().join(format!("u{umask}"));
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask {umask}; echo hi | '{}' write '{}'",
                bin.display(),
                p.display()
            ))
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            want,
            "umask {umask}"
        );
    }
    let p = d.path().join("exact");
    let (code, _, _) = run(&["write", "--mode", "0751", p.to_str().unwrap()], b"x", &[]);
    assert_eq!(code, 0);
    assert_eq!(
        fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
        0o751
    );
}

/// `--mode` takes symbolic modes as `install -m` does: evaluated on no bits, umask ignored, for
/// new and replaced files alike; a malformed one is a usage error that writes nothing.
#[test]
fn symbolic_modes_as_install_m() {
    let d = tmp();
    let p = d.path().join("sym");
    for (mode, want) in [
        ("u=rw,go=r", 0o644),
        ("a+x", 0o111),
        ("u=rwx,g=rx,o=", 0o750),
    ] {
        let (code, _, err) = run(&["write", "--mode", mode, p.to_str().unwrap()], b"x", &[]);
        assert_eq!(code, 0, "{mode}: {err}");
        let got = fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(got, want, "{mode}: {got:o}");
    }
    let (code, _, err) = run(
        &["write", "--mode", "u=rwz", p.to_str().unwrap()],
        b"new",
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("u=rwz"), "{err}");
    assert_eq!(fs::read(&p).unwrap(), b"x");
}

#[test]
fn no_follow_replaces_the_link() {
    let d = tmp();
    let target = d.path().join("target");
    fs::write(&target, b"keep").unwrap();
    let link = d.path().join("link");
    std::os::unix::fs::symlink("target", &link).unwrap();
    assert_eq!(
        run(&["write", link.to_str().unwrap()], b"via link", &[]).0,
        0
    );
    assert_eq!(fs::read(&target).unwrap(), b"via link");
    assert_eq!(
        run(
            &["write", "--no-follow", link.to_str().unwrap()],
            b"own file",
            &[]
        )
        .0,
        0
    );
    assert!(fs::symlink_metadata(&link).unwrap().is_file());
    assert_eq!(fs::read(&target).unwrap(), b"via link");
}

/// Starts a writer, feeds part of the stream, sends `sig` mid-stream.
fn interrupt_mid_stream(
    sig: i32,
    env: &[(&str, &str)],
) -> (tempfile::TempDir, PathBuf, Option<i32>) {
    let d = tmp();
    let p = d.path().join("dst");
    fs::write(&p, b"old complete version").unwrap();
    let mut c = bin();
    c.args(["write", p.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&vec![b'n'; 1 << 20]).unwrap();
    stdin.flush().unwrap();
    // Wait (event-driven) until the writer holds its temp open — a file inside the directory
    // (`/dir/#ino (deleted)` for O_TMPFILE, `/dir/.dst.*.tmp` for a named temp) — then signal.
    let inside = format!("{}/", d.path().display());
    let fd_dir = format!("/proc/{}/fd", child.id());
    let mut holding = false;
    for _ in 0..3000 {
        holding = fs::read_dir(&fd_dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with(&inside))
            });
        if holding {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(holding, "the writer never opened its temp");
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::from_named_raw(sig).unwrap(),
    )
    .unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    (d, p, status.code())
}

#[test]
fn sigterm_and_sigint_mid_stream_leave_the_destination_and_no_temp() {
    for env in MODES {
        for (sig, code) in [(15, 143), (2, 130)] {
            let (d, p, got) = interrupt_mid_stream(sig, env);
            assert_eq!(got, Some(code), "signal {sig} {env:?}");
            assert_eq!(fs::read(&p).unwrap(), b"old complete version");
            assert!(
                temps_in(d.path()).is_empty(),
                "signal {sig} {env:?}: temp left"
            );
        }
    }
}

#[test]
fn sigkill_mid_stream_leaves_the_destination_and_clean_removes_any_temp() {
    for env in MODES {
        let (d, p, got) = interrupt_mid_stream(9, env);
        assert_eq!(got, None, "killed by a signal");
        assert_eq!(fs::read(&p).unwrap(), b"old complete version");
        if env.is_empty() {
            assert!(
                temps_in(d.path()).is_empty(),
                "O_TMPFILE leaves nothing on SIGKILL"
            );
        }
        let (code, _, err) = run(
            &["clean", "--older-than", "0s", d.path().to_str().unwrap()],
            b"",
            &[],
        );
        assert_eq!(code, 0, "{err}");
        assert!(temps_in(d.path()).is_empty());
        assert_eq!(fs::read(&p).unwrap(), b"old complete version");
    }
}

#[test]
fn clean_json_reports_and_dry_run_keeps() {
    let d = tmp();
    let stale = d.path().join(".x.abcdefghijklmnop.tmp");
    fs::write(&stale, b"12345").unwrap();
    let dir = d.path().to_str().unwrap();
    let (code, out, _) = run(
        &["clean", "--dry-run", "--json", "--older-than", "0", dir],
        b"",
        &[],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["removed"][0], stale.to_str().unwrap());
    assert_eq!(v["bytes"], 5);
    assert!(stale.exists());
    assert_eq!(
        run(&["clean", "-q", "--older-than", "0", dir], b"", &[]).0,
        0
    );
    assert!(!stale.exists());
}

// ---- syscall order, observed with strace ---------------------------------------------------

fn strace_available() -> bool {
    let ok = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must have strace installed"
        );
        eprintln!("SKIP: strace not installed");
    }
    ok
}

/// The file/dir syscalls of one `atomwrite write`, as (name, first-arg) lines.
fn trace(durability: &str, env: &[(&str, &str)], dst: &Path) -> Vec<String> {
    let log = dst.with_extension("strace");
    let bin = assert_cmd::cargo::cargo_bin("atomwrite");
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-o"]).arg(&log);
    c.args([
        "-e",
        "trace=openat,write,fsync,fdatasync,syncfs,rename,renameat,renameat2,linkat,fchmod",
    ]);
    c.arg(&bin)
        .args(["write", "--durability", durability])
        .arg(dst);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"payload").unwrap();
    assert!(child.wait().unwrap().success());
    let text = fs::read_to_string(&log).unwrap();
    fs::remove_file(&log).unwrap();
    text.lines()
        .filter_map(|l| {
            let l = l.split_once(' ').map(|(_, r)| r).unwrap_or(l).trim_start();
            let name = l.split('(').next()?;
            match name {
                "write" if l.contains("\"payload\"") => Some("write-data".to_string()),
                "fsync" | "fdatasync" | "syncfs" | "renameat" | "renameat2" | "rename"
                | "fchmod" => Some(name.to_string()),
                "linkat" => Some("linkat".to_string()),
                "openat" if l.contains("O_TMPFILE") || l.contains("O_EXCL") => {
                    Some("create-temp".to_string())
                }
                _ => None,
            }
        })
        .collect()
}

/// Where the new contents became visible: the `renameat` over the name, or — for a new file on
/// the fast path — the one `linkat` that gives the anonymous temp its final name.
fn visible(t: &[String]) -> usize {
    t.iter()
        .position(|s| s.starts_with("rename"))
        .or_else(|| t.iter().position(|s| s == "linkat"))
        .unwrap_or_else(|| panic!("neither a rename nor a linkat in {t:?}"))
}

fn pos(t: &[String], what: &str) -> usize {
    t.iter()
        .position(|s| s == what)
        .unwrap_or_else(|| panic!("{what} missing from {t:?}"))
}

#[test]
fn syscall_order_data_fsync_before_rename_dir_fsync_after() {
    if !strace_available() {
        return;
    }
    for env in MODES {
        let d = tmp();
        let p = d.path().join("f");
        fs::write(&p, b"old").unwrap();
        let t = trace("full", env, &p);
        let (create, write, rename) = (
            pos(&t, "create-temp"),
            pos(&t, "write-data"),
            pos(&t, "renameat"),
        );
        let fsyncs: Vec<usize> = t
            .iter()
            .enumerate()
            .filter(|(_, s)| *s == "fsync")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(fsyncs.len(), 2, "{env:?}: {t:?}");
        assert!(
            create < write && write < fsyncs[0] && fsyncs[0] < rename && rename < fsyncs[1],
            "{env:?}: {t:?}"
        );
        assert!(
            pos(&t, "fchmod") < rename,
            "mode must be set before the file is visible: {t:?}"
        );
        if env.is_empty() {
            assert!(pos(&t, "linkat") < rename, "{t:?}");
        }
    }
}

#[test]
fn syscall_order_integrity_has_no_directory_fsync() {
    if !strace_available() {
        return;
    }
    for env in MODES {
        let d = tmp();
        let p = d.path().join("f");
        let t = trace("integrity", env, &p);
        let fsyncs = t.iter().filter(|s| *s == "fsync").count();
        assert_eq!(fsyncs, 1, "{env:?}: {t:?}");
        assert!(pos(&t, "fsync") < visible(&t), "{t:?}");
    }
}

#[test]
fn syscall_order_none_has_no_fsync_at_all() {
    if !strace_available() {
        return;
    }
    for env in MODES {
        let d = tmp();
        let t = trace("none", env, &d.path().join("f"));
        assert!(
            !t.iter()
                .any(|s| s == "fsync" || s == "fdatasync" || s == "syncfs"),
            "{env:?}: {t:?}"
        );
        visible(&t);
    }
}

// ---- cp ----------------------------------------------------------------------------------

#[test]
fn cp_copies_bytes_and_gives_a_new_file_the_source_mode() {
    for env in MODES {
        let d = tmp();
        let src = d.path().join("src");
        let data: Vec<u8> = (0..2_500_000u32).map(|i| (i * 13 % 256) as u8).collect();
        fs::write(&src, &data).unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o750)).unwrap();
        let dst = d.path().join("dst");
        let (code, out, err) = run(
            &["cp", "--json", src.to_str().unwrap(), dst.to_str().unwrap()],
            b"",
            env,
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(fs::read(&dst).unwrap(), data);
        assert_eq!(
            fs::metadata(&dst).unwrap().permissions().mode() & 0o7777,
            0o750
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert!(
            ["reflink", "copy_file_range", "buffered"].contains(&v["method"].as_str().unwrap())
        );
        // An existing destination keeps its own mode.
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            run(
                &["cp", "-q", src.to_str().unwrap(), dst.to_str().unwrap()],
                b"",
                env
            )
            .0,
            0
        );
        assert_eq!(
            fs::metadata(&dst).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert!(temps_in(d.path()).is_empty());
    }
}

#[test]
fn cp_checksum_matches_the_source() {
    let d = tmp();
    let src = d.path().join("src");
    fs::write(&src, b"abc").unwrap();
    let (code, out, _) = run(
        &[
            "cp",
            "--json",
            "--checksum",
            src.to_str().unwrap(),
            d.path().join("x").to_str().unwrap(),
        ],
        b"",
        &[],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v["sha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(v["method"], "buffered");
}

#[test]
fn cp_many_sources_into_a_directory_is_one_batch() {
    let d = tmp();
    let out_dir = d.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let mut args = vec!["cp".to_string(), "--json".to_string()];
    for i in 0..20 {
        let p = d.path().join(format!("part-{i:02}.csv"));
        fs::write(&p, format!("row {i}\n")).unwrap();
        args.push(p.to_str().unwrap().to_string());
    }
    args.push(out_dir.to_str().unwrap().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run(&argv, b"", &[]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["files"].as_array().unwrap().len(), 20);
    assert_eq!(v["dir_syncs"], 1);
    for i in 0..20 {
        assert_eq!(
            fs::read_to_string(out_dir.join(format!("part-{i:02}.csv"))).unwrap(),
            format!("row {i}\n")
        );
    }
}

/// `strace -f -c` totals of `atomwrite cp` of `n` fresh 4 KiB files into an empty directory:
/// (name → calls, name → errors).
fn cp_syscall_counts(
    n: usize,
) -> (
    std::collections::HashMap<String, u64>,
    std::collections::HashMap<String, u64>,
) {
    cp_syscall_counts_limited(n, None)
}

/// [`cp_syscall_counts`] under `ulimit -n NOFILE` (soft and hard: `cp` cannot raise it).
fn cp_syscall_counts_limited(
    n: usize,
    nofile: Option<u32>,
) -> (
    std::collections::HashMap<String, u64>,
    std::collections::HashMap<String, u64>,
) {
    let d = tmp();
    let src = d.path().join("s");
    let out = d.path().join("o");
    fs::create_dir(&src).unwrap();
    fs::create_dir(&out).unwrap();
    let mut c = match nofile {
        None => Command::new("strace"),
        Some(k) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -n {k} && exec \"$0\" \"$@\""))
                .arg("strace");
            c
        }
    };
    let log = d.path().join("log");
    c.args(["-f", "-c", "-o"]).arg(&log);
    c.arg(assert_cmd::cargo::cargo_bin("atomwrite"))
        .args(["cp", "-q"]);
    for i in 0..n {
        let p = src.join(format!("f{i:04}"));
        fs::write(&p, vec![i as u8; 4096]).unwrap();
        c.arg(p);
    }
    c.arg(&out);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for i in 0..n {
        assert_eq!(
            fs::read(out.join(format!("f{i:04}"))).unwrap(),
            vec![i as u8; 4096]
        );
    }
    let (mut calls, mut errors) = (
        std::collections::HashMap::new(),
        std::collections::HashMap::new(),
    );
    for line in fs::read_to_string(&log).unwrap().lines() {
        // `% time  seconds  usecs/call  calls  [errors]  syscall`
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[0].parse::<f64>().is_err() || f.last() == Some(&"total") {
            continue;
        }
        let name = f.last().unwrap().to_string();
        if name == "fcntl" {
            // A debug build of std checks every fd with fcntl(F_GETFD) before closing it; the
            // product makes no fcntl per file (release builds show none).
            continue;
        }
        calls.insert(name.clone(), f[3].parse().unwrap());
        if f.len() == 6 {
            errors.insert(name, f[4].parse().unwrap());
        }
    }
    (calls, errors)
}

#[test]
fn cp_of_many_new_small_files_costs_at_most_9_syscalls_per_file() {
    if !strace_available() {
        return;
    }
    let (small, small_err) = cp_syscall_counts(20);
    let (big, big_err) = cp_syscall_counts(220);
    // Scheduling noise (a futex lost to another thread on a loaded machine) is not a cost of
    // the per-file path: counted apart.
    let total = |m: &std::collections::HashMap<String, u64>| {
        m.iter()
            .filter(|(k, _)| !matches!(k.as_str(), "futex" | "restart_syscall"))
            .map(|(_, v)| *v)
            .sum::<u64>() as f64
    };
    let marginal = (total(&big) - total(&small)) / 200.0;
    // The limit is the issue's 9 where a new file takes the anonymous-temp path with one
    // kernel copy (ext4, tmpfs: the CI default). crash-tests/fsmatrix runs this test on other
    // filesystems too: on xfs a reflink that succeeds costs FICLONE + lseek instead of one
    // copy_file_range (+1); btrfs keeps the named-temp path (flock, getpid, rename: +3).
    let magic = cp_test_fs_magic();
    let limit = match magic {
        0x5846_5342 => 10.5, // xfs
        0x9123_683e => 12.5, // btrfs
        _ => 9.0,
    };
    assert!(
        marginal <= limit,
        "{marginal} syscalls per file (limit {limit}): {big:?}"
    );
    // Nothing that fails per file: a refused FICLONE or copy_file_range is tried once per
    // filesystem pair, a new destination is published by one linkat.
    // Counted over the file syscalls only: a futex that lost a race on a loaded machine, or a
    // `recvfrom` of a name lookup, says nothing about the per-file path (up to 2 one-offs).
    const FILE_CALLS: [&str; 12] = [
        "openat",
        "newfstatat",
        "statx",
        "fstat",
        "linkat",
        "renameat",
        "renameat2",
        "ioctl",
        "copy_file_range",
        "flock",
        "unlinkat",
        "fchmod",
    ];
    let failed = |m: &std::collections::HashMap<String, u64>| {
        m.iter()
            .filter(|(k, _)| FILE_CALLS.contains(&k.as_str()))
            .map(|(_, v)| *v)
            .sum::<u64>() as f64
    };
    let failing = (failed(&big_err) - failed(&small_err) - 2.0) / 200.0;
    assert!(
        failing <= 1.0,
        "{failing} failing syscalls per file: {big_err:?} (20 files: {small_err:?})"
    );
    assert!(
        big_err.get("ioctl").copied().unwrap_or(0) <= 1,
        "{big_err:?}"
    );
    assert!(
        big_err.get("copy_file_range").copied().unwrap_or(0) <= 1,
        "{big_err:?}"
    );
    // No per-file getpid, umask read, fchmod or second stat of the source (btrfs's named-temp
    // path takes a lock whose owner record names the pid: getpid stays there).
    let checked: &[&str] = if magic == 0x9123_683e {
        &["fchmod", "read", "statx"]
    } else {
        &["getpid", "fchmod", "read", "statx"]
    };
    for &k in checked {
        let n = big.get(k).copied().unwrap_or(0) as i64 - small.get(k).copied().unwrap_or(0) as i64;
        assert!(n <= 2, "{k}: {n} more calls for 200 more files: {big:?}");
    }
}

#[test]
fn cp_of_files_parked_under_a_small_descriptor_limit_costs_at_most_9_syscalls_per_file() {
    if !strace_available() || cp_test_fs_magic() == 0x9123_683e {
        // btrfs keeps the named-temp path (flock, getpid: see the test above).
        return;
    }
    // Limit 200: 136 temps open, so 2,864 of the 3,000 files are parked (linked to a temp
    // name and closed) and renamed at the commit: one linkat more per file than an open one,
    // and nothing else (no getpid per temp name, no flock of a closed temp).
    let (small, small_err) = cp_syscall_counts(20);
    let (big, big_err) = cp_syscall_counts_limited(3000, Some(200));
    let total = |m: &std::collections::HashMap<String, u64>| {
        m.iter()
            .filter(|(k, _)| !matches!(k.as_str(), "futex" | "restart_syscall"))
            .map(|(_, v)| *v)
            .sum::<u64>() as f64
    };
    let marginal = (total(&big) - total(&small)) / 2980.0;
    let limit = if cp_test_fs_magic() == 0x5846_5342 {
        10.5 // xfs: a reflink costs FICLONE + lseek (see above)
    } else {
        9.0
    };
    assert!(
        marginal <= limit,
        "{marginal} syscalls per file (limit {limit}): {big:?}"
    );
    // A parked temp of a new file is renamed with RENAME_NOREPLACE where the kernel has it
    // (so a newcomer at the name is seen), else with renameat.
    let renames =
        big.get("renameat").copied().unwrap_or(0) + big.get("renameat2").copied().unwrap_or(0);
    assert!(renames >= 2864, "the files were not parked: {big:?}");
    let more = |k: &str| {
        big.get(k).copied().unwrap_or(0) as i64 - small.get(k).copied().unwrap_or(0) as i64
    };
    for k in ["getpid", "flock", "fsync"] {
        let n = more(k);
        assert!(n <= 2, "{k}: {n} more calls for 2,980 more files: {big:?}");
    }
    // A file it will park is created as a 0600 named temp (as every named temp) and gets its
    // final mode when finished: one `fchmod` per parked file, none for the open ones (an
    // `O_TMPFILE` is created with its final mode), and the umask read once, not per file.
    assert!(more("fchmod") <= 2864 + 2, "{big:?}");
    assert!(more("read") <= 2, "the umask was read per file: {big:?}");
    // No failing call per file but the destination's lookup (a new file: ENOENT).
    let failing = |m: &std::collections::HashMap<String, u64>| {
        m.iter()
            .filter(|(k, _)| k.as_str() != "newfstatat")
            .map(|(_, v)| *v as i64)
            .sum::<i64>()
    };
    assert!(
        failing(&big_err) - failing(&small_err) <= 4,
        "{big_err:?} (20 files: {small_err:?})"
    );
    eprintln!("{marginal:.2} syscalls per file: {big:?}");
}

#[cfg(feature = "test-hooks")]
#[test]
fn cp_of_more_files_than_a_batch_holds_open_parks_the_rest_and_pays_one_barrier() {
    if !strace_available() {
        return;
    }
    // A limit far above the batch's cap of open temps (16,384; 1,024 here through the test
    // hook `ATOMWRITE_TEST_HELD_OPEN`, so 1,300 files reach it): 1,300 new files, the first
    // 276 parked (created as named temps, since `cp` tells its batch how many files come;
    // closed; renamed at the commit), the last 1,024 open until the commit and linked in
    // place.
    let Some(nofile) = above_the_open_cap() else {
        return;
    };
    let c = LimitedCp::new(1300, 0);
    let log = c.d.path().join("strace.log");
    let o = c
        .command(nofile, Some(&log), &["--json"])
        .env("ATOMWRITE_TEST_HELD_OPEN", "1024")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["files"].as_array().unwrap().len(), 1300, "{v}");
    assert_eq!(
        v["files"][1299]["path"],
        format!("{}/f1299", c.dst.display())
    );
    assert_eq!(v["dir_syncs"], 1, "{v}");
    c.assert_contents(0, None);
    assert_eq!(c.strays(), Vec::<String>::new());
    let renames = strace_calls(&log, "renameat") + strace_calls(&log, "renameat2");
    let links = strace_calls(&log, "linkat");
    if cp_test_fs_magic() != 0x9123_683e {
        assert_eq!(
            (renames, links),
            (276, 1024),
            "parked 276, linked 1,024 in place"
        );
    }
    // On ext4, where a listing is exact, one listing of the (empty) destination directory
    // stands in for a `stat` of each destination; elsewhere (tmpfs, xfs, btrfs) each is
    // looked up.
    if cp_test_fs_magic() == 0xef53 {
        let stats = strace_calls(&log, "newfstatat") + strace_calls(&log, "statx");
        assert!(stats < 100, "{stats} stats for 1,300 new files");
    }
    if syncfs_barrier(c.d.path()) {
        assert_eq!(strace_calls(&log, "syncfs"), 1);
        assert_eq!(v["data_syncs"], 1, "{v}");
    }
}

/// A descriptor limit far enough above a batch's cap of open temps as the tests set it (1,024,
/// through `ATOMWRITE_TEST_HELD_OPEN`) and `cp`'s margin of 64 that the cap, not the limit, is
/// what parks files: the hard limit, at most 8,192. `None` (after saying why; a panic under
/// `CI=true`) where the hard limit is lower.
#[cfg(feature = "test-hooks")]
fn above_the_open_cap() -> Option<u32> {
    let o = Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let hard = if s == "unlimited" {
        u32::MAX
    } else {
        s.parse().unwrap()
    };
    if hard < 2048 {
        let why = format!("skipped: the hard RLIMIT_NOFILE ({hard}) is below 2,048");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("{why}");
        return None;
    }
    Some(hard.min(8192))
}

/// A `cp` of many files under a descriptor limit (soft and hard `RLIMIT_NOFILE`, so `cp` cannot
/// raise it): `s/f000 …` into `d/`, the first `old` of them already there with `old`.
struct LimitedCp {
    d: tempfile::TempDir,
    srcs: Vec<PathBuf>,
    dst: PathBuf,
}

impl LimitedCp {
    fn new(n: usize, old: usize) -> LimitedCp {
        let d = tmp();
        let (s, dst) = (d.path().join("s"), d.path().join("d"));
        fs::create_dir(&s).unwrap();
        fs::create_dir(&dst).unwrap();
        let mut srcs = Vec::new();
        for i in 0..n {
            let p = s.join(format!("f{i:03}"));
            fs::write(&p, Self::new_bytes(i)).unwrap();
            srcs.push(p);
            if i < old {
                fs::write(dst.join(format!("f{i:03}")), b"old\n").unwrap();
            }
        }
        LimitedCp { d, srcs, dst }
    }

    fn new_bytes(i: usize) -> Vec<u8> {
        format!("new {i}\n").repeat(i % 7 + 1).into_bytes()
    }

    /// `sh -c 'ulimit -n NOFILE && exec [strace -o LOG] atomwrite cp ARGS... SRCS... d/'`.
    fn command(&self, nofile: u32, strace_log: Option<&Path>, args: &[&str]) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c");
        match strace_log {
            Some(log) => c.arg(format!(
                "ulimit -n {nofile} && exec strace -f -qq -e \
                 trace=fsync,fdatasync,syncfs,renameat,renameat2,linkat,newfstatat,statx -o '{}' \"$0\" \"$@\"",
                log.display()
            )),
            None => c.arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\"")),
        };
        c.arg(assert_cmd::cargo::cargo_bin("atomwrite")).arg("cp");
        c.args(args)
            .args(&self.srcs)
            .arg(format!("{}/", self.dst.display()));
        c.stdin(Stdio::null()).env_remove("ATOMWRITE_PORTABLE");
        c
    }

    /// Every destination holds its source's bytes (`Some(n)`: only the first `n` were copied,
    /// the others hold what they held before: `old` or nothing).
    fn assert_contents(&self, old: usize, copied: Option<usize>) {
        for i in 0..self.srcs.len() {
            let got = fs::read(self.dst.join(format!("f{i:03}"))).ok();
            let want = match copied {
                Some(n) if i >= n => (i < old).then(|| b"old\n".to_vec()),
                _ => Some(Self::new_bytes(i)),
            };
            assert_eq!(got, want, "f{i:03}");
        }
    }

    /// The names in the destination directory (`ls -a`) that are not destinations.
    fn strays(&self) -> Vec<String> {
        fs::read_dir(&self.dst)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                !(n.len() >= 4 && n.starts_with('f') && n[1..].bytes().all(|b| b.is_ascii_digit()))
            })
            .collect()
    }
}

/// Calls of each traced syscall in an `strace -f -qq -o` log.
fn strace_calls(log: &Path, call: &str) -> usize {
    fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| {
            let c = l.split_once(' ').map_or(*l, |(_, r)| r).trim_start();
            c.starts_with(&format!("{call}("))
        })
        .count()
}

/// Whether this machine's batch barrier is one `syncfs` (Linux ≥ 5.17), per `atomwrite doctor`.
fn syncfs_barrier(dir: &Path) -> bool {
    let (code, out) = doctor_out(dir, true, None);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v["batch_barrier"]["barrier"] == "syncfs"
}

#[test]
fn cp_of_more_files_than_may_be_open_at_once_pays_one_flush_barrier() {
    if !strace_available() {
        return;
    }
    // RLIMIT_NOFILE 80: at most 16 temps open, so 284 of the 300 files are parked (named,
    // closed) before the commit. Half replace an existing file, half are new.
    let c = LimitedCp::new(300, 150);
    let log = c.d.path().join("strace.log");
    let o = c.command(80, Some(&log), &["--json"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["files"].as_array().unwrap().len(), 300, "{v}");
    assert_eq!(v["files"][299]["path"], format!("{}/f299", c.dst.display()));
    assert_eq!(v["dir_syncs"], 1, "{v}");
    c.assert_contents(150, None);
    assert_eq!(c.strays(), Vec::<String>::new());
    let (syncfs, fsyncs) = (
        strace_calls(&log, "syncfs"),
        strace_calls(&log, "fsync") + strace_calls(&log, "fdatasync"),
    );
    // A parked new file is renamed from its temp name (an open one is linked in place): the
    // renames prove that parking happened.
    let renames = strace_calls(&log, "renameat") + strace_calls(&log, "renameat2");
    assert!(renames >= 284, "{renames} renames");
    if syncfs_barrier(c.d.path()) {
        // One barrier for all 300 files (parked ones included), one directory fsync.
        assert_eq!(
            (syncfs, fsyncs),
            (1, 1),
            "{}",
            fs::read_to_string(&log).unwrap()
        );
        assert_eq!(v["data_syncs"], 1, "{v}");
    } else {
        // No trustworthy syncfs: every file is fsynced (a parked one before it is closed).
        assert_eq!((syncfs, fsyncs), (0, 301));
        assert_eq!(v["data_syncs"], 300, "{v}");
    }
}

/// Peak RSS (KiB) of `atomwrite cp -q` of `c`'s sources under `ulimit -n nofile`, from GNU
/// time (`None`, with a SKIP line, where it is missing outside CI).
fn cp_peak_rss_kib(c: &LimitedCp, nofile: u32) -> Option<u64> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must have GNU time installed (.ci/run installs `time`)"
        );
        eprintln!("SKIP: /usr/bin/time not installed");
        return None;
    }
    let log = c.d.path().join("rss.log");
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "ulimit -n {nofile} && exec /usr/bin/time -f %M -o '{}' \"$0\" \"$@\"",
        log.display()
    ));
    cmd.arg(assert_cmd::cargo::cargo_bin("atomwrite"))
        .args(["cp", "-q"])
        .args(&c.srcs)
        .arg(format!("{}/", c.dst.display()))
        .stdin(Stdio::null());
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(fs::read_to_string(&log).unwrap().trim().parse().unwrap())
}

#[test]
fn cp_memory_per_file_stays_small_as_the_file_count_grows() {
    // What a copy of many files holds per file until its commit (its source, its compact
    // record), measured as the growth of peak RSS from 2,000 to 12,000 files: it was 1.4 KiB
    // per file when every target was held three times and every receipt kept.
    let (small, large) = (LimitedCp::new(2_000, 0), LimitedCp::new(12_000, 0));
    let Some(a) = cp_peak_rss_kib(&small, 1024) else {
        return;
    };
    let b = cp_peak_rss_kib(&large, 1024).unwrap();
    large.assert_contents(0, None);
    let temps = fs::read_dir(&large.dst)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().as_encoded_bytes()[0] == b'.')
        .count();
    assert_eq!(temps, 0, "temps left");
    let per_file = (b.saturating_sub(a) * 1024) / 10_000;
    // A path is held a few times per file (the kernel's argv, the source, the parked target,
    // the replaced record), so the bound grows with the paths' length (`TEST_DIR` can be long).
    let path_len = large
        .srcs
        .iter()
        .map(|p| p.as_os_str().len())
        .sum::<usize>()
        / 12_000;
    let bound = FIXED_BYTES_PER_FILE + BYTES_PER_PATH_BYTE * path_len as u64;
    eprintln!(
        "peak RSS {a} KiB at 2,000 files, {b} KiB at 12,000: {per_file} bytes per file \
         (paths of {path_len} bytes; bound {bound})"
    );
    assert!(
        per_file <= bound,
        "{per_file} bytes per file, bound {bound} (peak RSS {a} KiB at 2,000 files, {b} KiB at \
         12,000; paths of {path_len} bytes)"
    );
}

/// The bound of `cp_memory_per_file_stays_small_as_the_file_count_grows`: a fixed part (the
/// compact records) and a part per byte of the source paths. Measured: 568 bytes per file with
/// 25-byte paths, 777 with 55-byte ones; the CLI and library before the compaction held ~1,400
/// with 25-byte paths.
const FIXED_BYTES_PER_FILE: u64 = 450;
const BYTES_PER_PATH_BYTE: u64 = 8;

#[test]
fn cp_portable_under_a_small_descriptor_limit_fsyncs_each_parked_file() {
    if !strace_available() {
        return;
    }
    let c = LimitedCp::new(100, 30);
    let log = c.d.path().join("strace.log");
    let o = c
        .command(80, Some(&log), &["--json"])
        .env("ATOMWRITE_PORTABLE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["files"].as_array().unwrap().len(), 100, "{v}");
    c.assert_contents(30, None);
    assert_eq!(c.strays(), Vec::<String>::new());
    // The portable path has no barrier that reports errors: each file's own fsync (84 of
    // them when parked, 16 at the commit), then the directory's.
    assert_eq!(strace_calls(&log, "syncfs"), 0);
    assert_eq!(strace_calls(&log, "fsync"), 101);
    assert_eq!(v["data_syncs"], 100, "{v}");
    assert_eq!(v["dir_syncs"], 1, "{v}");
}

#[test]
fn cp_failing_after_files_were_parked_replaces_nothing_and_leaves_no_temp() {
    // The 200th source vanishes: 180-odd temps are parked by then (limit 80).
    for portable in [false, true] {
        let c = LimitedCp::new(300, 300);
        fs::remove_file(&c.srcs[200]).unwrap();
        let mut cmd = c.command(80, None, &["--json"]);
        if portable {
            cmd.env("ATOMWRITE_PORTABLE", "1");
        }
        let o = cmd.output().unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert_eq!(o.status.code(), Some(1), "{err}");
        let first = err.lines().next().unwrap();
        assert!(
            first.contains(&c.srcs[200].display().to_string())
                && first.contains("No such file or directory")
                && first.contains("none of the 300 files of the batch was replaced"),
            "{first}"
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["error"]["replaced"], serde_json::json!([]), "{v}");
        assert_eq!(v["error"]["not_replaced"].as_array().unwrap().len(), 300);
        // Every destination still `old`, nothing else in the directory.
        c.assert_contents(300, Some(0));
        assert_eq!(c.strays(), Vec::<String>::new(), "portable: {portable}");
    }
}

#[test]
fn cp_failures_are_clean() {
    let d = tmp();
    let dst = d.path().join("dst");
    fs::write(&dst, b"old").unwrap();
    // Missing source: exit 1, destination unchanged.
    let (code, _, err) = run(
        &[
            "cp",
            d.path().join("nope").to_str().unwrap(),
            dst.to_str().unwrap(),
        ],
        b"",
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nope") && err.lines().count() == 1, "{err}");
    // A directory as source: usage error.
    let (code, _, _) = run(
        &["cp", d.path().to_str().unwrap(), dst.to_str().unwrap()],
        b"",
        &[],
    );
    assert_eq!(code, 2);
    // Several sources into a non-directory: usage error.
    let (code, _, _) = run(
        &[
            "cp",
            dst.to_str().unwrap(),
            dst.to_str().unwrap(),
            d.path().join("f").to_str().unwrap(),
        ],
        b"",
        &[],
    );
    assert_eq!(code, 2);
    // Create-only conflict: exit 3.
    let src = d.path().join("src");
    fs::write(&src, b"new").unwrap();
    let (code, _, _) = run(
        &[
            "cp",
            "--no-clobber",
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
        ],
        b"",
        &[],
    );
    assert_eq!(code, 3);
    assert_eq!(fs::read(&dst).unwrap(), b"old");
    assert!(temps_in(d.path()).is_empty());
}

// ---------------------------------------------------------------- right place or clear error

/// Runs `atomwrite ARGS` in `dir` with `input` on stdin; returns (exit code, stdout, stderr).
fn run_in(dir: &Path, args: &[&str], input: &[u8]) -> (i32, String, String) {
    run_in_env(dir, args, input, &[])
}

fn run_in_env(
    dir: &Path,
    args: &[&str],
    input: &[u8],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut c = bin();
    for (k, v) in env {
        c.env(k, v);
    }
    c.current_dir(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Every entry below `dir`, recursively (relative paths).
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            out.push(e.path().strip_prefix(dir).unwrap().to_path_buf());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

const URL_TYPOS: &[&str] = &[
    "s3:/bucket/key",
    "s3:bucket/key",
    "S3:/bucket/key",
    "s4://b/k",
    "gs:/b/k",
    "http://host/x",
    "https://host/x",
    "file:x",
    "memory:x",
    "s3:///key",
];

#[test]
fn a_mistyped_url_is_a_usage_error_and_creates_nothing() {
    for typo in URL_TYPOS {
        let d = tmp();
        let (code, out, err) = run_in(d.path(), &["write", typo], b"x\n");
        assert_eq!(code, 2, "{typo}: {err}");
        assert!(out.is_empty(), "{typo}: {out}");
        assert_eq!(err.lines().count(), 1, "{typo}: {err}");
        assert!(err.contains(&format!("`{typo}`")), "{typo}: {err}");
        assert!(
            err.contains(&format!("to mean a local file, write `./{typo}`")),
            "{typo}: {err}"
        );
        assert!(tree(d.path()).is_empty(), "{typo}: {:?}", tree(d.path()));
    }
    // The likely URL is suggested.
    let d = tmp();
    let (_, _, err) = run_in(d.path(), &["write", "s3:/bucket/key"], b"x\n");
    assert!(err.contains("did you mean `s3://bucket/key`?"), "{err}");
    let (_, _, err) = run_in(d.path(), &["write", "s4://b/k"], b"x\n");
    assert!(err.contains("did you mean `s3://b/k`?"), "{err}");
    // --json: the error object on stdout, exit code 2.
    let (code, out, _) = run_in(d.path(), &["write", "--json", "gs:/b/k"], b"x\n");
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["error"]["exit_code"], 2, "{v}");
    assert!(tree(d.path()).is_empty(), "{:?}", tree(d.path()));
}

#[test]
fn every_command_refuses_a_mistyped_url() {
    let d = tmp();
    fs::write(d.path().join("src"), b"data").unwrap();
    let typo = "s3:/bucket/key";
    for args in [
        vec!["write", "--from", "src", typo],
        vec!["write", "--from", typo, "out"],
        vec!["cp", "src", typo],
        vec!["cp", typo, "out"],
        vec!["cp", "src", "src", typo],
        vec!["run", typo, "--", "sh", "-c", "echo ran > marker"],
        vec![
            "run",
            "--publish",
            typo,
            "--",
            "sh",
            "-c",
            "echo ran > marker",
        ],
        vec!["publish", "--from", "src", typo],
        vec!["publish", "--from", typo, "out"],
        vec!["publish", "--dir", typo, "out"],
        vec!["latest", typo],
        vec!["versions", typo],
        vec!["verify", "src", typo],
        vec!["clean", typo],
        vec!["doctor", typo],
        // Only a local directory makes sense here: a valid URL is refused too. (`doctor URL`
        // probes a store: see tests/cloud.rs.)
        vec!["clean", "s3://bucket/"],
        vec!["write", "--from", "s3://bucket/key", "out"],
    ] {
        let (code, _, err) = run_in(d.path(), &args, b"x\n");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("to mean a local file"), "{args:?}: {err}");
        assert_eq!(
            tree(d.path()),
            vec![PathBuf::from("src")],
            "{args:?} created something"
        );
    }
}

#[test]
fn dot_slash_names_a_local_file_that_looks_like_a_url() {
    for env in MODES {
        let d = tmp();
        for (arg, rel) in [
            ("./s3:/bucket/key", "s3:/bucket/key"),
            ("./s4://b/k", "s4:/b/k"),
        ] {
            let (code, _, err) = run_in_env(d.path(), &["write", arg], b"x\n", env);
            assert_eq!(code, 0, "{arg}: {err}");
            assert_eq!(fs::read(d.path().join(rel)).unwrap(), b"x\n", "{arg}");
        }
        // An absolute path is a path, whatever it contains.
        let abs = d.path().join("gs:/b/k");
        let (code, _, err) = run(&["write", abs.to_str().unwrap()], b"y\n", env);
        assert_eq!(code, 0, "{err}");
        assert_eq!(fs::read(&abs).unwrap(), b"y\n");
    }
}

// ---------------------------------------------------------------- --no-empty

#[test]
fn no_empty_refuses_an_empty_stdin_and_keeps_the_destination() {
    for env in MODES {
        let d = tmp();
        let p = d.path().join("names.txt");
        fs::write(&p, b"old\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let before = fs::metadata(&p).unwrap();
        let (code, out, err) = run(&["write", "--no-empty", p.to_str().unwrap()], b"", env);
        assert_eq!(code, 1, "{err}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("--no-empty") && err.contains("names.txt"),
            "{err}"
        );
        assert_eq!(fs::read(&p).unwrap(), b"old\n");
        let after = fs::metadata(&p).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&after),
            std::os::unix::fs::MetadataExt::ino(&before)
        );
        assert!(temps_in(d.path()).is_empty());
        // A new destination is not created.
        let q = d.path().join("sub/new.txt");
        let (code, _, err) = run(&["write", "--no-empty", q.to_str().unwrap()], b"", env);
        assert_eq!(code, 1, "{err}");
        assert!(!q.exists());
        // --from an empty file: refused the same way; --json gives the error object.
        let empty = d.path().join("empty");
        fs::write(&empty, b"").unwrap();
        let (code, out, _) = run(
            &[
                "write",
                "--json",
                "--no-empty",
                "--from",
                empty.to_str().unwrap(),
                p.to_str().unwrap(),
            ],
            b"",
            env,
        );
        assert_eq!(code, 1);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["error"]["exit_code"], 1, "{v}");
        assert_eq!(fs::read(&p).unwrap(), b"old\n");
        // One byte is enough; without the flag an empty input is committed as before.
        let (code, _, err) = run(&["write", "--no-empty", p.to_str().unwrap()], b"\n", env);
        assert_eq!(code, 0, "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"\n");
        let (code, _, _) = run(&["write", p.to_str().unwrap()], b"", env);
        assert_eq!(code, 0);
        assert_eq!(fs::read(&p).unwrap(), b"");
        assert!(temps_in(d.path()).is_empty());
    }
}

#[test]
fn run_no_empty_refuses_a_silent_success_and_passes_a_failure_through() {
    let d = tmp();
    let p = d.path().join("out.txt");
    fs::write(&p, b"old\n").unwrap();
    let dst = p.to_str().unwrap();
    let (code, _, err) = run(&["run", "--no-empty", dst, "--", "true"], b"", &[]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--no-empty") && err.contains("`true`"),
        "{err}"
    );
    assert_eq!(fs::read(&p).unwrap(), b"old\n");
    // CMD's own failure wins over the empty output.
    let (code, _, err) = run(
        &["run", "--no-empty", dst, "--", "sh", "-c", "exit 7"],
        b"",
        &[],
    );
    assert_eq!(code, 7, "{err}");
    assert!(!err.contains("--no-empty"), "{err}");
    assert_eq!(fs::read(&p).unwrap(), b"old\n");
    // With --publish: no version is published.
    let v = d.path().join("pub.txt");
    let (code, _, err) = run(
        &[
            "run",
            "--publish",
            "--no-empty",
            v.to_str().unwrap(),
            "--",
            "true",
        ],
        b"",
        &[],
    );
    assert_eq!(code, 1, "{err}");
    let (code, out, _) = run(&["latest", v.to_str().unwrap()], b"", &[]);
    assert_eq!(code, 1, "never published");
    assert_eq!(out.trim(), "0");
    // Some output: committed.
    let (code, _, err) = run(&["run", "--no-empty", dst, "--", "echo", "new"], b"", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::read(&p).unwrap(), b"new\n");
    assert!(temps_in(d.path()).is_empty());
}

// ---------------------------------------------------------------- --no-clobber prechecks

/// Starts `atomwrite ARGS` with a stdin that never ends (the write end stays open, nothing is
/// written) and waits for it to exit. Returns (exit code, stderr); panics if it is still
/// reading after a generous bound (only a hang fails; no duration is asserted).
fn run_with_endless_stdin(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = bin();
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let _held_open = child.stdin.take().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (st.code().unwrap_or(-1), err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`atomwrite {args:?}` is still reading stdin");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn write_no_clobber_fails_before_reading_stdin() {
    for env in MODES {
        let d = tmp();
        let p = d.path().join("exists");
        fs::write(&p, b"first").unwrap();
        let (code, err) =
            run_with_endless_stdin(&["write", "--no-clobber", p.to_str().unwrap()], env);
        assert_eq!(code, 3, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("already exists"), "{err}");
        assert!(err.contains(p.to_str().unwrap()), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert!(temps_in(d.path()).is_empty());
        // A symlink at the name counts as existing with --no-follow (the commit would find
        // the name taken); followed, it is its target that must be vacant.
        let l = d.path().join("link");
        std::os::unix::fs::symlink("exists", &l).unwrap();
        let (code, err) = run_with_endless_stdin(
            &["write", "--no-clobber", "--no-follow", l.to_str().unwrap()],
            env,
        );
        assert_eq!(code, 3, "{err}");
        let (code, err) =
            run_with_endless_stdin(&["write", "--no-clobber", l.to_str().unwrap()], env);
        assert_eq!(code, 3, "{err}");
        assert_eq!(fs::read_link(&l).unwrap(), Path::new("exists"));
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert!(temps_in(d.path()).is_empty());
    }
}

#[test]
fn run_no_clobber_never_starts_the_command() {
    let d = tmp();
    let p = d.path().join("exists");
    fs::write(&p, b"first").unwrap();
    let marker = d.path().join("marker");
    let (code, _, err) = run(
        &[
            "run",
            "--no-clobber",
            p.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &format!("touch {}; echo new", marker.display()),
        ],
        b"",
        &[],
    );
    assert_eq!(code, 3, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains("CMD was not run"), "{err}");
    assert!(!marker.exists(), "CMD was started");
    assert_eq!(fs::read(&p).unwrap(), b"first");
    assert!(temps_in(d.path()).is_empty());
    // A vacant destination: CMD runs and its output is committed.
    let q = d.path().join("fresh");
    let (code, _, err) = run(
        &[
            "run",
            "--no-clobber",
            q.to_str().unwrap(),
            "--",
            "echo",
            "ok",
        ],
        b"",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::read(&q).unwrap(), b"ok\n");
}

#[cfg(feature = "object-store")]
#[test]
fn url_no_clobber_and_no_empty_fail_before_reading_or_running() {
    let d = tmp();
    let p = d.path().join("exists");
    fs::write(&p, b"first").unwrap();
    let url = format!("file://{}", p.display());
    let (code, err) = run_with_endless_stdin(&["write", "--no-clobber", &url], &[]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(fs::read(&p).unwrap(), b"first");
    let marker = d.path().join("marker");
    let (code, _, err) = run(
        &[
            "run",
            "--no-clobber",
            &url,
            "--",
            "sh",
            "-c",
            &format!("touch {}; echo new", marker.display()),
        ],
        b"",
        &[],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("CMD was not run"), "{err}");
    assert!(!marker.exists(), "CMD was started");
    assert_eq!(fs::read(&p).unwrap(), b"first");
    // --no-empty: nothing is uploaded, the object is unchanged (or not created).
    let (code, _, err) = run(&["write", "--no-empty", &url], b"", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--no-empty"), "{err}");
    assert_eq!(fs::read(&p).unwrap(), b"first");
    let q = d.path().join("new");
    let qurl = format!("file://{}", q.display());
    let (code, _, err) = run(&["run", "--no-empty", &qurl, "--", "true"], b"", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--no-empty"), "{err}");
    assert!(!q.exists());
    assert_eq!(tree(d.path()), vec![PathBuf::from("exists")]);
}

// ---- never more than a redirect (root: a second uid, sticky directories) ------------------

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Returns false (after saying why) when a root-only test must skip; panics under `CI=true`.
fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs root and CI=true forbids skipping");
    }
    eprintln!("SKIP {test}: needs root (to act as another uid)");
    false
}

/// A temp dir other users can reach.
fn reachable_tmp() -> tempfile::TempDir {
    let d = tmp();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn owner_of(p: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(p).unwrap();
    (md.uid(), md.gid())
}

/// Runs `umask 022; atomwrite ARGS` (a known umask), optionally as uid/gid 65534.
fn run_umask_022(args: &[&str], as_nobody: bool) -> (i32, String, String) {
    run_umask_022_env(args, as_nobody, &[])
}

/// [`run_umask_022`] with extra environment variables.
fn run_umask_022_env(
    args: &[&str],
    as_nobody: bool,
    env: &[(&str, &str)],
) -> (i32, String, String) {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("umask 022; exec \"$@\"")
        .arg("sh")
        .arg(assert_cmd::cargo::cargo_bin("atomwrite"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    if as_nobody {
        c.uid(NOBODY).gid(NOBODY);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn cp_never_copies_set_id_bits_and_honours_the_umask() {
    let d = reachable_tmp();
    for (src_mode, want) in [
        (0o6755, 0o755),
        (0o4711, 0o711),
        (0o666, 0o644),
        (0o777, 0o755),
    ] {
        let src = d.path().join(format!("src-{src_mode:o}"));
        fs::write(&src, b"#!/bin/sh\n").unwrap();
        if is_root() {
            std::os::unix::fs::chown(&src, Some(1000), Some(1000)).unwrap();
        }
        fs::set_permissions(&src, fs::Permissions::from_mode(src_mode)).unwrap();
        let dst = d.path().join(format!("dst-{src_mode:o}"));
        let (code, _, err) = run_umask_022(
            &["cp", "-q", src.to_str().unwrap(), dst.to_str().unwrap()],
            false,
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(mode_of(&dst), want, "cp of a {src_mode:o} source");
        let me = rustix::process::geteuid().as_raw();
        assert_eq!(owner_of(&dst).0, me, "a copy belongs to the copier");
    }
}

#[test]
fn cp_preserve_keeps_set_id_bits_only_with_the_owner() {
    if !require_root("cp_preserve_keeps_set_id_bits_only_with_the_owner") {
        return;
    }
    let d = reachable_tmp();
    let src = d.path().join("tool");
    fs::write(&src, b"#!/bin/sh\n").unwrap();
    std::os::unix::fs::chown(&src, Some(1000), Some(1000)).unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o6755)).unwrap();
    // Root can keep the owner: mode kept exactly, umask ignored (like GNU cp -p).
    let dst = d.path().join("as-root");
    let (code, _, err) = run_umask_022(
        &["cp", "-p", src.to_str().unwrap(), dst.to_str().unwrap()],
        false,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!((mode_of(&dst), owner_of(&dst)), (0o6755, (1000, 1000)));
    // uid 65534 cannot: its copy is its own, without set-id bits.
    let out = d.path().join("nobody");
    fs::create_dir(&out).unwrap();
    std::os::unix::fs::chown(&out, Some(NOBODY), Some(NOBODY)).unwrap();
    let dst = out.join("copy");
    let (code, _, err) = run_umask_022(
        &[
            "cp",
            "--preserve",
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
        ],
        true,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!((mode_of(&dst), owner_of(&dst)), (0o755, (NOBODY, NOBODY)));
}

/// A 1777 dir with `report.txt -> victim` planted by uid 65534 (and a file it pre-created).
fn planted_sticky_dir(d: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let victim = d.join("victim");
    fs::write(&victim, b"root's data\n").unwrap();
    let shared = d.join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let link = shared.join("report.txt");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(NOBODY), Some(NOBODY)).unwrap();
    let planted = shared.join("planted.txt");
    fs::write(&planted, b"planted\n").unwrap();
    std::os::unix::fs::chown(&planted, Some(NOBODY), Some(NOBODY)).unwrap();
    fs::set_permissions(&planted, fs::Permissions::from_mode(0o666)).unwrap();
    (victim, link, planted)
}

#[test]
fn write_and_cp_refuse_what_a_hardened_redirect_would() {
    if !require_root("write_and_cp_refuse_what_a_hardened_redirect_would") {
        return;
    }
    for env in MODES {
        let d = reachable_tmp();
        let (victim, link, planted) = planted_sticky_dir(d.path());
        let src = d.path().join("src");
        fs::write(&src, b"new").unwrap();
        let cases: [(Vec<&str>, &Path, &str); 4] = [
            (
                vec!["write", link.to_str().unwrap()],
                &link,
                "fs.protected_symlinks",
            ),
            (
                vec!["cp", src.to_str().unwrap(), link.to_str().unwrap()],
                &link,
                "fs.protected_symlinks",
            ),
            (
                vec!["write", planted.to_str().unwrap()],
                &planted,
                "fs.protected_regular",
            ),
            (
                vec!["write", "--no-follow", planted.to_str().unwrap()],
                &planted,
                "fs.protected_regular",
            ),
        ];
        for (args, entry, rule) in cases {
            let (code, out, err) = run(&args, b"attacker's choice\n", env);
            assert_eq!(code, 1, "{args:?}: {err}");
            assert_eq!(out, "");
            assert_eq!(err.lines().count(), 1, "not one line: {err}");
            assert!(err.contains(rule), "{err}");
            assert!(err.contains(entry.to_str().unwrap()), "{err}");
            assert!(err.contains("uid 65534"), "{err}");
        }
        // --json: the error object says what and where.
        let (code, out, _) = run(&["write", "--json", link.to_str().unwrap()], b"x", env);
        assert_eq!(code, 1);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["error"]["operation"], "check_destination");
        assert_eq!(v["error"]["kind"], "PermissionDenied");
        // Nothing changed, no temp anywhere.
        assert_eq!(fs::read(&victim).unwrap(), b"root's data\n");
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(fs::read(&planted).unwrap(), b"planted\n");
        assert_eq!(owner_of(&planted), (NOBODY, NOBODY));
        assert_eq!(fs::read_dir(link.parent().unwrap()).unwrap().count(), 2);
        assert!(temps_in(d.path()).is_empty());
    }
}

#[test]
fn replacing_a_file_of_another_owner_drops_set_id_bits_and_says_so() {
    if !require_root("replacing_a_file_of_another_owner_drops_set_id_bits_and_says_so") {
        return;
    }
    for env in MODES {
        let d = reachable_tmp();
        // uid 65534's own directory holds root's set-id tool: 65534 may replace the entry.
        let dir = d.path().join("nobody");
        fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
        let tool = dir.join("tool");
        let src = d.path().join("src");
        fs::write(&src, b"#!/bin/sh\necho replaced\n").unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o644)).unwrap();
        for json in [false, true] {
            fs::write(&tool, b"#!/bin/sh\necho root\n").unwrap();
            std::os::unix::fs::chown(&tool, Some(0), Some(0)).unwrap();
            fs::set_permissions(&tool, fs::Permissions::from_mode(0o4755)).unwrap();
            let mut args = vec!["write", "--from", src.to_str().unwrap()];
            // The text summary (silent on success otherwise, like install) says so with -v.
            args.push(if json { "--json" } else { "-v" });
            args.push(tool.to_str().unwrap());
            let (code, out, err) = run_umask_022_env(&args, true, env);
            assert_eq!(code, 0, "{err}");
            assert_eq!(fs::read(&tool).unwrap(), b"#!/bin/sh\necho replaced\n");
            assert_eq!(
                (mode_of(&tool), owner_of(&tool)),
                (0o755, (NOBODY, NOBODY)),
                "set-id bits kept across an owner change"
            );
            if json {
                let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
                assert_eq!(
                    v["owner_changed"],
                    serde_json::json!({
                        "from_uid": 0, "from_gid": 0, "to_uid": NOBODY, "to_gid": NOBODY,
                        "setid_dropped": true
                    })
                );
            } else {
                assert_eq!(err.lines().count(), 1, "{err}");
                assert!(
                    err.contains(
                        "owner changed from uid 0 gid 0 to uid 65534 gid 65534, set-id bits dropped"
                    ),
                    "{err}"
                );
            }
            assert!(temps_in(&dir).is_empty());
        }
    }
}

#[test]
fn a_trailing_slash_fails_like_the_shell_and_writes_nothing() {
    for env in MODES {
        let d = tmp();
        let reg = d.path().join("reg");
        fs::write(&reg, b"keep").unwrap();
        let reg_slash = format!("{}/", reg.display());
        let nodir_slash = format!("{}/", d.path().join("nodir").display());
        for (arg, reason) in [
            (reg_slash.as_str(), "Not a directory"),
            (nodir_slash.as_str(), "Is a directory"),
        ] {
            let (code, _, err) = run(&["write", arg], b"x", env);
            assert_eq!(code, 1, "{err}");
            assert!(err.contains(reason) && err.contains(arg), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        assert_eq!(fs::read(&reg).unwrap(), b"keep");
        assert!(!d.path().join("nodir").exists(), "nodir/ was created");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}

// ---- doctor: the batch barrier -------------------------------------------------------------

/// `doctor` with ATOMWRITE_PORTABLE set to `portable` (or removed), as (exit code, stdout).
fn doctor_out(dir: &Path, json: bool, portable: Option<&str>) -> (i32, String) {
    let mut c = bin();
    c.arg("doctor");
    if json {
        c.arg("--json");
    }
    c.arg(dir);
    match portable {
        Some(v) => c.env("ATOMWRITE_PORTABLE", v),
        None => c.env_remove("ATOMWRITE_PORTABLE"),
    };
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
    )
}

#[test]
fn doctor_says_which_batch_barrier_it_chose_and_why() {
    let d = tmp();
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string();
    let mut nums = release.split(|c: char| !c.is_ascii_digit());
    let version: (u32, u32) = (
        nums.next().unwrap().parse().unwrap(),
        nums.next().unwrap().parse().unwrap(),
    );
    // syncfs reports writeback errors since 5.8 and ->sync_fs errors since 5.17.
    let want = if version >= (5, 17) {
        "syncfs"
    } else {
        "fsync"
    };

    let (code, out) = doctor_out(d.path(), true, None);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let b = &v["batch_barrier"];
    assert_eq!(b["barrier"], want, "{b}");
    assert_eq!(b["backend"], "linux", "{b}");
    assert_eq!(b["kernel"], release.as_str(), "{b}");
    let reason = b["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("Linux {}.{}", version.0, version.1)),
        "{reason}"
    );

    let (code, text) = doctor_out(d.path(), false, None);
    assert_eq!(code, 0);
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("batch barrier"))
        .unwrap_or_else(|| panic!("no batch barrier row:\n{text}"));
    assert!(row.contains(want), "{row}");
    assert!(row.contains(reason), "{row}");
    assert!(row.contains(&format!("kernel {release}")), "{row}");

    // The portable path never trusts a filesystem-wide barrier: every file is fsynced.
    let (code, out) = doctor_out(d.path(), true, Some("1"));
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let b = &v["batch_barrier"];
    assert_eq!(b["barrier"], "fsync", "{b}");
    assert_eq!(b["backend"], "portable", "{b}");
    assert!(b["reason"].as_str().unwrap().contains("portable"), "{b}");
    let (_, text) = doctor_out(d.path(), false, Some("1"));
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("batch barrier") && l.contains("fsync")),
        "{text}"
    );
    assert!(temps_in(d.path()).is_empty());

    // An old kernel (`setarch --uname-2.6`: uname reports 2.6.x): per-file fsync, and why.
    let arch = std::env::consts::ARCH;
    let setarch = Command::new("setarch")
        .args([arch, "--uname-2.6", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !setarch {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must have setarch"
        );
        eprintln!("SKIP old-kernel half: setarch --uname-2.6 not available");
        return;
    }
    let out = Command::new("setarch")
        .args([arch, "--uname-2.6"])
        .arg(assert_cmd::cargo::cargo_bin("atomwrite"))
        .args(["doctor", "--json"])
        .arg(d.path())
        .env_remove("ATOMWRITE_PORTABLE")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = &v["batch_barrier"];
    assert_eq!(b["barrier"], "fsync", "{b}");
    assert_eq!(b["backend"], "linux", "{b}");
    assert!(b["kernel"].as_str().unwrap().starts_with("2.6."), "{b}");
    let reason = b["reason"].as_str().unwrap();
    assert!(
        reason.contains("Linux 2.6 < 5.8") && reason.contains("writeback"),
        "{reason}"
    );
}
// ---- batches (`cp SRC... DIR/`): no-clobber precheck, signals, clean ----------------------

/// Five sources `s/f1..f5` ("new N") and a destination directory `d/` holding `f1..f5`
/// ("old") unless `empty_dst`.
fn batch_fixture(empty_dst: bool) -> (tempfile::TempDir, Vec<PathBuf>, PathBuf) {
    let d = tmp();
    let s = d.path().join("s");
    let dst = d.path().join("d");
    fs::create_dir(&s).unwrap();
    fs::create_dir(&dst).unwrap();
    let mut srcs = Vec::new();
    for i in 1..=5 {
        let p = s.join(format!("f{i}"));
        fs::write(&p, format!("new {i}\n")).unwrap();
        srcs.push(p);
        if !empty_dst {
            fs::write(dst.join(format!("f{i}")), b"old\n").unwrap();
        }
    }
    (d, srcs, dst)
}

fn cp_args(srcs: &[PathBuf], dst: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["cp".to_string()];
    a.extend(extra.iter().map(|s| s.to_string()));
    a.extend(srcs.iter().map(|p| p.display().to_string()));
    a.push(format!("{}/", dst.display()));
    a
}

fn contents(dst: &Path) -> Vec<String> {
    (1..=5)
        .map(|i| fs::read_to_string(dst.join(format!("f{i}"))).unwrap_or_else(|_| "-".into()))
        .collect()
}

#[test]
fn cp_no_clobber_checks_every_destination_before_writing_any() {
    let (d, srcs, dst) = batch_fixture(true);
    fs::write(dst.join("f3"), b"theirs").unwrap();
    fs::write(dst.join("f5"), b"theirs").unwrap();
    let args = cp_args(&srcs, &dst, &["--no-clobber", "--json"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run(&args, b"", &[]);
    assert_eq!(code, 3, "{err}");
    let f3 = format!("`{}/f3`", dst.display());
    let f5 = format!("`{}/f5`", dst.display());
    assert!(
        err.contains(&f3) && err.contains(&f5) && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // Nothing written: f1, f2, f4 were not created, f3 and f5 untouched.
    assert_eq!(contents(&dst), ["-", "-", "theirs", "-", "theirs"]);
    assert!(temps_in(&dst).is_empty());
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["error"]["exit_code"], 3, "{v}");
    assert_eq!(v["error"]["replaced"], serde_json::json!([]), "{v}");
    assert_eq!(
        v["error"]["not_replaced"].as_array().unwrap().len(),
        5,
        "{v}"
    );
    drop(d);
}

#[cfg(feature = "test-hooks")]
mod paused {
    //! `cp` batches stopped at a pause point (`ATOMWRITE_TEST_PAUSE`, `--features test-hooks`).

    use super::*;
    use std::process::Child;

    pub struct Paused {
        pub child: Child,
        /// The atomwrite process (under strace: not the direct child).
        pub pid: i32,
        pub marker: PathBuf,
    }

    /// Starts `atomwrite ARGS` (optionally under `strace_log`) paused at `point`; returns
    /// once it is there.
    pub fn start(args: &[String], point: &str, marker: &Path, strace_log: Option<&Path>) -> Paused {
        start_env(args, &[], point, marker, strace_log)
    }

    pub fn start_env(
        args: &[String],
        env: &[(&str, &str)],
        point: &str,
        marker: &Path,
        strace_log: Option<&Path>,
    ) -> Paused {
        let bin = assert_cmd::cargo::cargo_bin("atomwrite");
        let mut c = match strace_log {
            Some(log) => {
                let mut c = Command::new("strace");
                c.args(["-f", "-qq", "-y", "-o"]).arg(log);
                c.args(["-e", "trace=fsync,rename,renameat,renameat2,linkat"]);
                c.arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        start_command(c, point, marker)
    }

    /// Starts `c` (an atomwrite process, perhaps behind wrappers that `exec` it) paused at
    /// `point`; returns once it is there.
    pub fn start_command(mut c: Command, point: &str, marker: &Path) -> Paused {
        c.env("ATOMWRITE_TEST_PAUSE", point)
            .env("ATOMWRITE_TEST_PAUSE_FILE", marker)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        for _ in 0..6000 {
            if let Ok(s) = fs::read_to_string(marker)
                && let Some((at, pid)) = s.split_once(' ')
                && let Ok(pid) = pid.parse()
            {
                assert_eq!(at, point);
                return Paused {
                    child,
                    pid,
                    marker: marker.to_path_buf(),
                };
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("atomwrite exited ({st}) before reaching {point}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        panic!("atomwrite never reached {point}");
    }

    impl Paused {
        pub fn signal(&self, sig: i32) {
            rustix::process::kill_process(
                rustix::process::Pid::from_raw(self.pid).unwrap(),
                rustix::process::Signal::from_named_raw(sig).unwrap(),
            )
            .unwrap();
        }

        pub fn resume(&self) {
            fs::remove_file(&self.marker).unwrap();
        }

        /// (exit code, stdout, stderr)
        pub fn finish(self) -> (i32, String, String) {
            let out = self.child.wait_with_output().unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into(),
                String::from_utf8_lossy(&out.stderr).into(),
            )
        }
    }

    fn quoted(dst: &Path, is: &[usize]) -> String {
        is.iter()
            .map(|i| format!("`{}/f{i}`", dst.display()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn json_paths(dst: &Path, is: &[usize]) -> serde_json::Value {
        serde_json::json!(
            is.iter()
                .map(|i| format!("{}/f{i}", dst.display()))
                .collect::<Vec<_>>()
        )
    }

    #[test]
    fn cp_batch_sigterm_during_the_flush_replaces_nothing_and_says_so() {
        let (d, srcs, dst) = batch_fixture(false);
        let marker = d.path().join("pause");
        let p = start(
            &cp_args(&srcs, &dst, &["--json"]),
            "batch-linked",
            &marker,
            None,
        );
        // Every temp is named (linked early) and on disk now.
        assert_eq!(temps_in(&dst).len(), 5);
        p.signal(15);
        let (code, out, err) = p.finish();
        assert_eq!(code, 143, "{err}");
        assert!(
            err.contains("interrupted by signal 15; nothing was replaced")
                && err.contains(&format!(
                    "{} were not replaced",
                    quoted(&dst, &[1, 2, 3, 4, 5])
                )),
            "{err}"
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["error"]["replaced"], serde_json::json!([]), "{v}");
        assert_eq!(
            v["error"]["not_replaced"],
            json_paths(&dst, &[1, 2, 3, 4, 5]),
            "{v}"
        );
        assert_eq!(v["error"]["exit_code"], 143);
        assert_eq!(contents(&dst), ["old\n"; 5]);
        assert!(temps_in(&dst).is_empty(), "{:?}", temps_in(&dst));
    }

    #[test]
    fn cp_batch_sigint_in_the_rename_phase_reports_exactly_what_was_replaced() {
        let (d, srcs, dst) = batch_fixture(false);
        let dst = dst.canonicalize().unwrap();
        let marker = d.path().join("pause");
        let log = d.path().join("strace.log");
        let traced = strace_available();
        let p = start(
            &cp_args(&srcs, &dst, &["--json"]),
            "batch-renamed:2",
            &marker,
            traced.then_some(log.as_path()),
        );
        p.signal(2);
        let (code, out, err) = p.finish();
        assert_eq!(code, 130, "{err}");
        assert!(
            err.contains(&format!(
                "interrupted by signal 2 after {} were replaced; {} were not replaced",
                quoted(&dst, &[1, 2]),
                quoted(&dst, &[3, 4, 5])
            )),
            "{err}"
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["error"]["replaced"], json_paths(&dst, &[1, 2]), "{v}");
        assert_eq!(
            v["error"]["not_replaced"],
            json_paths(&dst, &[3, 4, 5]),
            "{v}"
        );
        assert_eq!(
            contents(&dst),
            ["new 1\n", "new 2\n", "old\n", "old\n", "old\n"]
        );
        assert!(temps_in(&dst).is_empty(), "{:?}", temps_in(&dst));
        if traced {
            // The directory of the replaced files was fsynced after their renames.
            let lines: Vec<String> = fs::read_to_string(&log)
                .unwrap()
                .lines()
                .map(String::from)
                .collect();
            let dir = format!("<{}>", dst.display());
            let last = lines
                .iter()
                .rposition(|l| l.contains("rename") && l.contains(&dir) && l.ends_with("= 0"))
                .expect("renames traced");
            assert!(
                lines[last..]
                    .iter()
                    .any(|l| l.contains("fsync(") && l.contains(&dir) && l.ends_with("= 0")),
                "no directory fsync after the last rename:\n{}",
                lines.join("\n")
            );
        }
    }

    #[test]
    fn clean_concurrent_with_a_live_cp_batch_removes_none_of_its_temps() {
        for env in MODES {
            let (d, srcs, dst) = batch_fixture(false);
            let marker = d.path().join("pause");
            let p = start_env(
                &cp_args(&srcs, &dst, &[]),
                env,
                "batch-linked",
                &marker,
                None,
            );
            let live = temps_in(&dst);
            assert_eq!(live.len(), 5, "{env:?}");
            // A real, concurrent `clean --older-than 0s`.
            let (code, out, err) = run(
                &[
                    "clean",
                    "--older-than",
                    "0s",
                    "--json",
                    dst.to_str().unwrap(),
                ],
                b"",
                &[],
            );
            assert_eq!(code, 0, "{err}");
            let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            assert_eq!(v["removed"], serde_json::json!([]), "{env:?} {v}");
            assert_eq!(v["locked"].as_array().unwrap().len(), 5, "{env:?} {v}");
            let mut still = temps_in(&dst);
            still.sort();
            let mut live = live;
            live.sort();
            assert_eq!(still, live, "{env:?}");
            p.resume();
            let (code, _, err) = p.finish();
            assert_eq!(code, 0, "{env:?} {err}");
            assert_eq!(
                contents(&dst),
                ["new 1\n", "new 2\n", "new 3\n", "new 4\n", "new 5\n"]
            );
            assert!(temps_in(&dst).is_empty());
        }
    }

    #[test]
    fn cp_sigterm_while_temps_are_parked_removes_them_and_replaces_nothing() {
        for (signal, code) in [(15, 143), (2, 130)] {
            // Limit 80: 16 temps open; paused right after the 40th was parked (closed), when 55
            // files are open or parked. `cp` tells its batch how many files come, so the 104
            // it will park are created as named temps: all 55 have a name on disk.
            let c = super::LimitedCp::new(120, 60);
            let marker = c.d.path().join("pause");
            let p = start_command(c.command(80, None, &["--json"]), "batch-parked:40", &marker);
            assert_eq!(temps_in(&c.dst).len(), 55);
            p.signal(signal);
            let (got, out, err) = p.finish();
            assert_eq!(got, code, "{err}");
            assert!(
                err.contains(&format!(
                    "interrupted by signal {signal}; nothing was replaced"
                )),
                "{err}"
            );
            let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            assert_eq!(v["error"]["replaced"], serde_json::json!([]), "{v}");
            assert_eq!(v["error"]["not_replaced"].as_array().unwrap().len(), 120);
            c.assert_contents(60, Some(0));
            assert_eq!(c.strays(), Vec::<String>::new());
        }
    }

    #[test]
    fn cp_sigterm_with_files_parked_past_the_open_cap_removes_every_temp() {
        // No small descriptor limit: the batch parks because it holds at most 1,024 temps
        // open (the test hook's cap; 16,384 without it). Paused after the 200th park: the 276
        // files it will park were created as named temps (200 closed, 76 open), 947 others
        // are open anonymous ones.
        let Some(nofile) = super::above_the_open_cap() else {
            return;
        };
        let c = super::LimitedCp::new(1300, 100);
        let marker = c.d.path().join("pause");
        let mut cmd = c.command(nofile, None, &["--json"]);
        cmd.env("ATOMWRITE_TEST_HELD_OPEN", "1024");
        let p = start_command(cmd, "batch-parked:200", &marker);
        assert_eq!(temps_in(&c.dst).len(), 276);
        p.signal(15);
        let (got, out, err) = p.finish();
        assert_eq!(got, 143, "{err}");
        assert!(
            err.contains("interrupted by signal 15; nothing was replaced"),
            "{err}"
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["error"]["replaced"], serde_json::json!([]), "{v}");
        assert_eq!(v["error"]["not_replaced"].as_array().unwrap().len(), 1300);
        c.assert_contents(100, Some(0));
        assert_eq!(c.strays(), Vec::<String>::new());
    }

    #[test]
    fn clean_concurrent_with_a_batch_parked_past_the_open_cap_removes_none_of_its_temps() {
        let Some(nofile) = super::above_the_open_cap() else {
            return;
        };
        let c = super::LimitedCp::new(1300, 100);
        let marker = c.d.path().join("pause");
        let mut cmd = c.command(nofile, None, &[]);
        cmd.env("ATOMWRITE_TEST_HELD_OPEN", "1024");
        let p = start_command(cmd, "batch-parked:150", &marker);
        // 150 parked (closed) and the other 126 it will park (open, named at their creation,
        // no flock of their own): the directory's lock keeps `clean` from every one.
        let mut parked = temps_in(&c.dst);
        parked.sort();
        assert_eq!(parked.len(), 276);
        let dst = c.dst.to_str().unwrap();
        let (code, out, err) = run(&["clean", "--older-than", "0s", "--json", dst], b"", &[]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["removed"], serde_json::json!([]), "{v}");
        let mut still = temps_in(&c.dst);
        still.sort();
        assert_eq!(still, parked);
        p.resume();
        let (code, _, err) = p.finish();
        assert_eq!(code, 0, "{err}");
        c.assert_contents(100, None);
        assert_eq!(c.strays(), Vec::<String>::new());
    }

    #[test]
    fn clean_concurrent_with_a_cp_batch_that_parked_temps_removes_none_of_them() {
        for env in MODES {
            let c = super::LimitedCp::new(120, 60);
            let marker = c.d.path().join("pause");
            let mut cmd = c.command(80, None, &[]);
            for (k, v) in env {
                cmd.env(k, v);
            }
            // Every parked temp is closed (no lock of its own): the batch's shared lock on
            // the directory is what keeps a concurrent `clean --older-than 0s` away.
            let p = start_command(cmd, "batch-parked:50", &marker);
            let parked = temps_in(&c.dst).len();
            assert!(parked >= 50, "{env:?}: {parked}");
            let dst = c.dst.to_str().unwrap();
            let (code, out, err) = run(&["clean", "--older-than", "0s", "--json", dst], b"", &[]);
            assert_eq!(code, 0, "{err}");
            let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            assert_eq!(v["removed"], serde_json::json!([]), "{env:?} {v}");
            assert_eq!(v["locked"].as_array().unwrap().len(), parked, "{env:?} {v}");
            assert_eq!(temps_in(&c.dst).len(), parked, "{env:?}");
            p.resume();
            let (code, _, err) = p.finish();
            assert_eq!(code, 0, "{env:?} {err}");
            c.assert_contents(60, None);
            assert_eq!(c.strays(), Vec::<String>::new());
        }
        // Once the batch is over, a leftover temp of a crashed writer is removed again.
        let d = tmp();
        fs::write(d.path().join(".f000.aaaaaaaaaaaaaaaa.tmp"), b"x").unwrap();
        let dst = d.path().to_str().unwrap();
        let (code, out, _) = run(&["clean", "--older-than", "0s", "--json", dst], b"", &[]);
        assert_eq!(code, 0);
        assert!(out.contains(".f000.aaaaaaaaaaaaaaaa.tmp"), "{out}");
    }

    #[test]
    fn cp_parked_temp_removed_behind_its_back_is_reported_not_replaced() {
        // Something (not `clean`) removes a parked temp: its rename fails, the files before it
        // stay replaced (and durable), the others old, and no temp is left.
        let c = super::LimitedCp::new(60, 60);
        let marker = c.d.path().join("pause");
        let p = start_command(c.command(80, None, &["--json"]), "batch-linked", &marker);
        let mut temps = temps_in(&c.dst);
        temps.sort();
        let victim = temps
            .iter()
            .find(|t| {
                t.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".f010.")
            })
            .expect("f010 is parked")
            .clone();
        fs::remove_file(&victim).unwrap();
        p.resume();
        let (code, out, err) = p.finish();
        assert_eq!(code, 1, "{err}");
        let f010 = format!("{}/f010", c.dst.display());
        assert!(
            err.contains("rename") && err.contains("No such file or directory"),
            "{err}"
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["error"]["replaced"].as_array().unwrap().len(), 10, "{v}");
        assert_eq!(v["error"]["not_replaced"][0], f010.as_str(), "{v}");
        assert_eq!(
            v["error"]["not_replaced"].as_array().unwrap().len(),
            50,
            "{v}"
        );
        c.assert_contents(60, Some(10));
        assert_eq!(c.strays(), Vec::<String>::new());
    }

    #[test]
    fn cp_no_clobber_conflict_at_rename_time_reports_replaced_and_not_replaced() {
        let (d, srcs, dst) = batch_fixture(true);
        let marker = d.path().join("pause");
        let p = start(
            &cp_args(&srcs, &dst, &["--no-clobber", "--json"]),
            "batch-synced",
            &marker,
            None,
        );
        // Created after the precheck passed: the kernel's create-only check refuses it.
        fs::write(dst.join("f3"), b"theirs").unwrap();
        p.resume();
        let (code, out, err) = p.finish();
        assert_eq!(code, 3, "{err}");
        assert!(
            err.contains(&format!("replaced: {}", quoted(&dst, &[1, 2])))
                && err.contains(&format!("not replaced: {}", quoted(&dst, &[3, 4, 5]))),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["error"]["replaced"], json_paths(&dst, &[1, 2]), "{v}");
        assert_eq!(
            v["error"]["not_replaced"],
            json_paths(&dst, &[3, 4, 5]),
            "{v}"
        );
        assert_eq!(contents(&dst), ["new 1\n", "new 2\n", "theirs", "-", "-"]);
        assert!(temps_in(&dst).is_empty());
    }
}

#[path = "../../atomwrite/tests/support/honoured.rs"]
mod honoured;
use honoured::full_honoured_in;

/// The filesystem type (statfs magic) of the directory the cp syscall test runs in.
fn cp_test_fs_magic() -> u64 {
    let d = tmp();
    rustix::fs::statfs(d.path())
        .map(|s| s.f_type as u64)
        .unwrap_or(0)
}

/// `atomwrite write --durability D` of `mib` MiB from a pipe under strace: the lines of the
/// `fadvise64`, `fsync`, `linkat` and `renameat` calls, and the bytes that arrived.
fn trace_stream(durability: &str, env: &[(&str, &str)], mib: usize) -> (Vec<String>, bool) {
    let d = tmp();
    let dst = d.path().join("stream");
    let log = d.path().join("strace.log");
    let data: Vec<u8> = (0..mib << 20).map(|i| (i % 251) as u8).collect();
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-o"]).arg(&log);
    c.args([
        "-e",
        "trace=fadvise64,fsync,fdatasync,linkat,renameat,renameat2",
    ]);
    c.arg(assert_cmd::cargo::cargo_bin("atomwrite"))
        .args(["write", "--durability", durability])
        .arg(&dst);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = {
        let data = data.clone();
        std::thread::spawn(move || stdin.write_all(&data).unwrap())
    };
    assert!(child.wait().unwrap().success());
    feeder.join().unwrap();
    let lines = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            l.split_once(' ')
                .map_or(l, |(_, r)| r)
                .trim_start()
                .to_string()
        })
        .filter(|l| !l.starts_with("+++") && !l.starts_with("---"))
        .collect();
    (lines, fs::read(&dst).unwrap() == data)
}

/// A long stream asks the kernel to start writing back every 8 MiB as it goes, so the device
/// works while the pipe is read; that hint never replaces the flush: the file's `fsync` still
/// comes after the last of them and before the name appears. Nothing is asked where nothing
/// will be flushed (`--durability none`) or where no such hint exists (the portable path).
#[test]
fn a_long_stream_starts_writeback_as_it_goes_and_still_fsyncs_before_publishing() {
    if !strace_available() {
        return;
    }
    let (t, same) = trace_stream("full", &[], 40);
    assert!(same, "the stream arrived changed");
    let kicks: Vec<usize> = t
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("fadvise64(") && l.contains("POSIX_FADV_DONTNEED"))
        .map(|(i, _)| i)
        .collect();
    assert!(
        kicks.len() >= 4,
        "40 MiB should start writeback at least 4 times: {t:?}"
    );
    let fsync = t
        .iter()
        .position(|l| l.starts_with("fsync("))
        .expect("an fsync");
    let publish = t
        .iter()
        .position(|l| l.starts_with("linkat(") || l.starts_with("rename"))
        .expect("a publish");
    assert!(kicks.iter().all(|&k| k < fsync) && fsync < publish, "{t:?}");
    for (durability, env) in [
        ("none", &[][..]),
        ("full", &[("ATOMWRITE_PORTABLE", "1")][..]),
    ] {
        let (t, same) = trace_stream(durability, env, 20);
        assert!(same, "the stream arrived changed ({durability} {env:?})");
        assert!(
            !t.iter().any(|l| l.starts_with("fadvise64(")),
            "{durability} {env:?}: {t:?}"
        );
    }
}

/// `verify` of a published tree hashes its files on a pool of threads: under `strace -f`, no
/// file's contents are read by the main thread (the walker only opens them), and the reads come
/// from at least two threads. Which worker takes which file is up to the scheduler, and on a
/// loaded machine one worker may take them all in one run: the second fact is asked of any of
/// five runs, the first of every run.
#[test]
fn verify_of_a_published_tree_hashes_files_on_several_threads() {
    if !strace_available() {
        return;
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("SKIP: one CPU: the tree is hashed inline");
        return;
    }
    let d = tmp();
    for i in 0..300 {
        let sub = d.path().join("build").join(format!("d{}", i / 50));
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join(format!("f{i}")), format!("tree-file-{i}\n")).unwrap();
    }
    let st = bin()
        .current_dir(d.path())
        .args(["publish", "-q", "--dir", "build", "site"])
        .status()
        .unwrap();
    assert!(st.success());
    let mut most = 0;
    for _ in 0..5 {
        let log = d.path().join("verify.strace");
        let mut child = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=read", "-o"])
            .arg(&log)
            .arg(assert_cmd::cargo::cargo_bin("atomwrite"))
            .args(["verify", "-q", "site"])
            .current_dir(d.path())
            .spawn()
            .unwrap();
        let main_pid = child.id().to_string();
        assert!(child.wait().unwrap().success(), "verify failed");
        let text = fs::read_to_string(&log).unwrap();
        let reads: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("\"tree-file-"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(reads.len(), 300, "every file read once:\n{text}");
        // strace -f runs the program as its child: the main thread's id is that child's pid,
        // which is not ours to know; it is the first pid in the log.
        let first = text.split_whitespace().next().unwrap_or(&main_pid);
        assert!(
            !reads.contains(&first),
            "the walker thread hashed files:\n{text}"
        );
        let readers: std::collections::HashSet<&str> = reads.into_iter().collect();
        most = most.max(readers.len());
        if most >= 2 {
            break;
        }
    }
    assert!(most >= 2, "one thread read every file in five runs");
}

/// `cp` of many files grows its descriptor table once, to the batch's size, before its signal
/// thread exists: Linux doubles a table as it fills, and each doubling of a table that another
/// thread shares waits for an RCU grace period (5–10 ms measured; four of them for 1,000 files).
#[test]
fn cp_of_many_files_grows_the_descriptor_table_once_before_its_signal_thread() {
    if !strace_available() {
        return;
    }
    let d = tmp();
    let (src, dst) = (d.path().join("s"), d.path().join("d"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&dst).unwrap();
    let mut args = vec!["cp".to_string()];
    for i in 0..300 {
        let p = src.join(i.to_string());
        fs::write(&p, b"x").unwrap();
        args.push(p.display().to_string());
    }
    args.push(format!("{}/", dst.display()));
    let log = d.path().join("strace.log");
    let o = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=fcntl,clone,clone3", "-o"])
        .arg(&log)
        .arg(assert_cmd::cargo::cargo_bin("atomwrite"))
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = fs::read_to_string(&log).unwrap();
    let grow = text
        .lines()
        .position(|l| l.contains("F_DUPFD_CLOEXEC, 316)"))
        .unwrap_or_else(|| panic!("no growth to 300 + 16 descriptors:\n{text}"));
    let thread = text
        .lines()
        .position(|l| l.contains("clone"))
        .unwrap_or_else(|| panic!("no signal thread:\n{text}"));
    assert!(
        grow < thread,
        "the table grew after the thread started:\n{text}"
    );
    assert_eq!(fs::read_dir(&dst).unwrap().count(), 300);
}
