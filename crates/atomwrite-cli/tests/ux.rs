//! The command line as people use it: help texts, `--version`, exit codes, JSON shapes,
//! completions, the man page, `doctor`, error hints, and the progress bar (in a pipe and in a
//! real terminal under tmux).
//!
//! Root-only tests (bind mounts, tmpfs, dropping privileges) print why they skip when not
//! root, and fail instead when `CI=true`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

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

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `true` when the test may run; otherwise prints why it skips (and fails under CI=true).
fn require(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(!ci(), "CI=true but {what} is not available");
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

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` with `input` on stdin.
fn run_cmd(mut c: Command, input: &[u8]) -> Out {
    c.stdin(Stdio::piped())
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
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

fn run(args: &[&str], input: &[u8]) -> Out {
    let mut c = bin();
    c.args(args);
    run_cmd(c, input)
}

fn json(s: &str) -> Value {
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), 1, "expected exactly one JSON line, got: {s:?}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn listing(d: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<_> = fs::read_dir(d)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------- help and version

/// The visible subcommands, read from the top-level help.
fn subcommands() -> Vec<String> {
    let out = run(&["--help"], b"");
    assert_eq!(out.code, 0);
    let mut in_cmds = false;
    let mut names = Vec::new();
    for line in out.stdout.lines() {
        if line.starts_with("Commands:") {
            in_cmds = true;
            continue;
        }
        if in_cmds {
            if !line.starts_with(' ') {
                break;
            }
            // "  name   purpose" (continuation lines are indented further).
            if line.starts_with("  ") && !line.starts_with("   ") {
                let name = line.split_whitespace().next().unwrap();
                if name != "help" {
                    names.push(name.to_string());
                }
            }
        }
    }
    assert!(names.len() >= 4, "too few subcommands parsed: {names:?}");
    names
}

#[test]
fn every_subcommand_has_a_purpose_explained_options_and_examples() {
    let subs = subcommands();
    for want in ["write", "clean", "doctor", "completions"] {
        assert!(
            subs.iter().any(|s| s == want),
            "{want} missing from {subs:?}"
        );
    }
    for sub in &subs {
        let out = run(&[sub, "--help"], b"");
        assert_eq!(out.code, 0, "{sub} --help: {}", out.stderr);
        let help = out.stdout;
        let purpose = help.lines().next().unwrap_or_default();
        assert!(
            purpose.len() > 20 && !purpose.starts_with("Usage"),
            "{sub}: no one-line purpose: {help}"
        );
        let examples = help
            .split("Examples:")
            .nth(1)
            .unwrap_or_else(|| panic!("{sub} --help has no Examples section:\n{help}"));
        let n = examples
            .lines()
            .filter(|l| l.trim_start().starts_with("atomwrite ") || l.contains("| atomwrite "))
            .count();
        let n = n + examples
            .lines()
            .filter(|l| l.contains("* atomwrite "))
            .count();
        assert!(n >= 2, "{sub}: fewer than two examples:\n{help}");
        // Every option and argument row carries an explanation after the flag/value spec.
        let mut rows = 0;
        for line in help.lines() {
            let t = line.trim_start();
            let is_row = line.starts_with("  ")
                && (t.starts_with('-') || t.starts_with('<') || t.starts_with('['))
                && !t.starts_with("--) ");
            if !is_row || line.starts_with("      ") && !t.starts_with('-') {
                continue;
            }
            rows += 1;
            let spec_end = t.find("  ").unwrap_or(t.len());
            let desc = t[spec_end..].trim();
            assert!(
                !desc.is_empty(),
                "{sub}: option without explanation: {line:?}\n{help}"
            );
        }
        assert!(rows >= 1, "{sub}: no option rows found:\n{help}");
    }
}

#[test]
fn top_level_help_documents_exit_codes_and_examples() {
    let out = run(&["--help"], b"");
    assert_eq!(out.code, 0);
    for want in ["Exit codes:", "3 conflict", "Examples:", "atomwrite doctor"] {
        assert!(out.stdout.contains(want), "{want}: {}", out.stdout);
    }
}

#[test]
fn version_prints_name_and_crate_version() {
    for flag in ["--version", "-V"] {
        let out = run(&[flag], b"");
        assert_eq!(out.code, 0);
        assert_eq!(
            out.stdout.trim(),
            format!("atomwrite {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

// ---------------------------------------------------------------- exit codes and JSON

#[test]
fn usage_errors_exit_2_and_are_json_in_json_mode() {
    let out = run(&["write", "--bogus", "x"], b"");
    assert_eq!(out.code, 2);
    assert!(out.stdout.is_empty());
    assert!(out.stderr.contains("--bogus"), "{}", out.stderr);

    let out = run(&["write", "--json", "--bogus", "x"], b"");
    assert_eq!(out.code, 2);
    let v = json(&out.stdout);
    assert_eq!(v["error"]["exit_code"], 2);
    assert_eq!(v["error"]["kind"], "usage");
    assert!(v["error"]["message"].as_str().unwrap().contains("--bogus"));

    // A missing subcommand is a usage error too; `help` is not.
    assert_eq!(run(&[], b"").code, 2);
    assert_eq!(run(&["help"], b"").code, 0);
    assert_eq!(run(&["completions", "tcsh"], b"").code, 2);
}

#[test]
fn write_json_receipt_has_the_documented_shape() {
    let d = tmp();
    let p = d.path().join("r.json");
    let out = run(&["write", "--json", p.to_str().unwrap()], b"hello\n");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.is_empty(),
        "JSON mode prints no summary: {}",
        out.stderr
    );
    let v = json(&out.stdout);
    assert_eq!(v["path"], p.to_str().unwrap());
    assert_eq!(v["size"], 6);
    assert_eq!(
        v["sha256"],
        "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    );
    assert_eq!(v["durability"], full_honoured_in(p.parent().unwrap()));
    assert!(v["run_id"].is_string());
    let at = v["written_at"].as_str().unwrap();
    assert!(at.ends_with('Z') && at.contains('T'), "{at}");
}

#[test]
fn conflict_exits_3_with_a_json_error() {
    let d = tmp();
    let p = d.path().join("once");
    fs::write(&p, b"old").unwrap();
    let out = run(
        &["write", "--json", "--no-clobber", p.to_str().unwrap()],
        b"new",
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    let v = json(&out.stdout);
    assert_eq!(v["error"]["exit_code"], 3);
    assert_eq!(v["error"]["kind"], "AlreadyExists");
    assert!(v["error"]["message"].is_string());
    assert!(
        v["error"]["operation"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_')
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert_eq!(fs::read(&p).unwrap(), b"old");
}

#[test]
fn io_failure_exits_1_with_errno_in_json() {
    let d = tmp();
    let p = d.path().join("missing/dir/f");
    let out = run(
        &["write", "--json", "--no-create-dirs", p.to_str().unwrap()],
        b"x",
    );
    assert_eq!(out.code, 1);
    let v = json(&out.stdout);
    assert_eq!(v["error"]["exit_code"], 1);
    assert_eq!(v["error"]["kind"], "NotFound");
    assert_eq!(v["error"]["errno"], 2);
    assert!(v["error"]["path"].as_str().unwrap().contains("missing"));
}

#[test]
fn clean_json_report_has_the_documented_shape() {
    let d = tmp();
    let out = run(&["clean", "--json", d.path().to_str().unwrap()], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = json(&out.stdout);
    for k in ["removed", "locked", "young"] {
        assert!(v[k].is_array(), "{k}: {v}");
    }
    assert!(v["bytes"].is_u64());
    assert_eq!(v["dry_run"], false);
}

// ---------------------------------------------------------------- completions and man page

#[test]
fn completions_generate_for_bash_zsh_fish_and_parse() {
    for (shell, checker) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let out = run(&["completions", shell], b"");
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        // fish spells long options `-l durability`.
        for word in [
            "atomwrite",
            "doctor",
            "durability",
            "no-clobber",
            "integrity",
        ] {
            assert!(out.stdout.contains(word), "{shell} completion lacks {word}");
        }
        if !have(checker) {
            eprintln!("SKIP: syntax check of the {shell} script: `{checker}` not installed");
            continue;
        }
        let d = tmp();
        let f = d.path().join(format!("atomwrite.{shell}"));
        fs::write(&f, &out.stdout).unwrap();
        let st = Command::new(checker).arg("-n").arg(&f).output().unwrap();
        assert!(
            st.status.success(),
            "{shell} -n rejects the script: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
}

#[test]
fn man_page_renders_from_the_same_definitions() {
    let out = run(&["man"], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(".TH atomwrite 1"), "{}", out.stdout);
    for word in ["write", "doctor", "completions"] {
        assert!(out.stdout.contains(word), "man page lacks {word}");
    }
    if have("groff") {
        let mut c = Command::new("groff");
        c.args(["-man", "-Tutf8", "-Wall", "-P-cbou"]);
        let r = run_cmd(c, out.stdout.as_bytes());
        assert_eq!(r.code, 0, "groff failed: {}", r.stderr);
        assert!(r.stdout.contains("NAME"), "{}", r.stdout);
        assert!(r.stdout.contains("atomwrite"));
    } else {
        eprintln!("SKIP: rendering check: groff not installed");
    }

    let d = tmp();
    let out = run(
        &["man", "--out-dir", d.path().join("man").to_str().unwrap()],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    for page in [
        "atomwrite.1",
        "atomwrite-write.1",
        "atomwrite-doctor.1",
        "atomwrite-clean.1",
    ] {
        let p = d.path().join("man").join(page);
        let s = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(s.contains(".TH"), "{page}");
    }
    let write_page = fs::read_to_string(d.path().join("man/atomwrite-write.1")).unwrap();
    assert!(write_page.contains("durability"), "{write_page}");
    assert!(write_page.contains(".SH EXAMPLES"), "{write_page}");
}

// ---------------------------------------------------------------- doctor

#[test]
fn doctor_on_the_default_fs_reports_and_leaves_nothing_behind() {
    let d = tmp();
    fs::write(d.path().join("existing"), b"data").unwrap();
    fs::create_dir(d.path().join("sub")).unwrap();
    let before = listing(d.path());

    let out = run(&["doctor", "--json", d.path().to_str().unwrap()], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = json(&out.stdout);
    assert_eq!(listing(d.path()), before, "doctor left something behind");

    assert_eq!(v["ok"], true);
    assert!(v["fs_type"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v["fs_magic"].as_str().unwrap().starts_with("0x"));
    assert!(v["name_max"].as_u64().unwrap() >= 14);
    assert_eq!(v["mount_point"], false);
    assert_eq!(v["read_only"], false);
    assert!(v["caveats"].is_array());
    for p in [
        "o_tmpfile",
        "rename_noreplace",
        "rename_exchange",
        "ficlone",
        "dir_fsync",
        "atomic_write",
    ] {
        let s = v["probes"][p]["status"].as_str().unwrap_or_default();
        assert!(
            ["yes", "no", "error", "skipped"].contains(&s),
            "{p}: {}",
            v["probes"][p]
        );
    }
    assert_eq!(v["probes"]["atomic_write"]["status"], "yes");
    assert_eq!(v["probes"]["dir_fsync"]["status"], "yes");
    let level = v["durability"]["level"].as_str().unwrap();
    assert!(["power-loss", "crash"].contains(&level), "{level}");

    // The human table, and the same directory still untouched.
    let out = run(&["doctor", d.path().to_str().unwrap()], b"");
    assert_eq!(out.code, 0);
    for row in [
        "filesystem",
        "NAME_MAX",
        "O_TMPFILE",
        "RENAME_NOREPLACE",
        "RENAME_EXCHANGE",
        "FICLONE",
        "directory fsync",
        "mount point",
        "durability:",
    ] {
        assert!(out.stdout.contains(row), "{row}:\n{}", out.stdout);
    }
    assert_eq!(listing(d.path()), before);
}

#[test]
fn doctor_defaults_to_the_current_directory_and_quiet_prints_nothing() {
    let d = tmp();
    let mut c = bin();
    c.args(["doctor", "-q"]).current_dir(d.path());
    let out = run_cmd(c, b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let mut c = bin();
    c.args(["doctor", "--json"]).current_dir(d.path());
    let v = json(&run_cmd(c, b"").stdout);
    assert_eq!(v["dir"], ".");
    assert_eq!(listing(d.path()), vec![]);
}

#[test]
fn doctor_on_a_missing_dir_fails_naming_it() {
    let d = tmp();
    let p = d.path().join("nope");
    let out = run(&["doctor", "--json", p.to_str().unwrap()], b"");
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    assert_eq!(json(&out.stdout)["error"]["kind"], "NotFound");
}

/// Runs `atomwrite doctor --json DIR` in a private mount namespace where `mount_cmd` (with
/// `$D` = DIR) has been run first. The mount disappears with the namespace.
fn doctor_in_namespace(dir: &Path, mount_cmd: &str) -> Out {
    let script = format!("D=\"$1\"; {mount_cmd} && exec \"$2\" doctor --json \"$1\"");
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ])
    .arg(dir)
    .arg(bin_path());
    run_cmd(c, b"")
}

#[test]
fn doctor_on_tmpfs_reports_memory_and_a_crash_only_promise() {
    if !require(
        is_root() && have("unshare"),
        "root with unshare (to mount a tmpfs)",
    ) {
        return;
    }
    let d = tmp();
    let out = doctor_in_namespace(d.path(), "mount -t tmpfs -o size=8m atomwrite-test \"$D\"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = json(&out.stdout);
    assert_eq!(v["fs_type"], "tmpfs");
    assert_eq!(v["fs_magic"], "0x1021994");
    assert_eq!(v["class"], "memory");
    assert_eq!(v["mount_point"], true);
    assert_eq!(v["mount"]["source"], "atomwrite-test");
    assert_eq!(v["durability"]["level"], "crash");
    assert_eq!(v["ok"], true);
    assert_eq!(v["probes"]["o_tmpfile"]["status"], "yes");
    assert_eq!(v["probes"]["rename_exchange"]["status"], "yes");
    assert!(
        v["caveats"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().contains("memory")),
        "{v}"
    );
}

#[test]
fn doctor_on_a_read_only_mount_exits_1_and_says_why() {
    if !require(
        is_root() && have("unshare"),
        "root with unshare (to mount a tmpfs)",
    ) {
        return;
    }
    let d = tmp();
    let out = doctor_in_namespace(d.path(), "mount -t tmpfs -o ro,size=1m ro-test \"$D\"");
    assert_eq!(out.code, 1, "{}", out.stderr);
    let v = json(&out.stdout);
    assert_eq!(v["ok"], false);
    assert_eq!(v["read_only"], true);
    assert_eq!(v["durability"]["level"], "none");
    assert_eq!(v["probes"]["o_tmpfile"]["status"], "skipped");
}

// ---------------------------------------------------------------- error hints

#[test]
fn eacces_hint_names_the_directory() {
    let d = tmp();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let ro = d.path().join("ro");
    fs::create_dir(&ro).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    let dst = ro.join("f");
    let c = if is_root() {
        if !require(have("setpriv"), "setpriv (to drop root privileges)") {
            return;
        }
        // The binary must be reachable by `nobody`; it is not when the target dir is private.
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin_path())
            .args(["write", dst.to_str().unwrap()]);
        c
    } else {
        let mut c = bin();
        c.args(["write", dst.to_str().unwrap()]);
        c
    };
    let out = run_cmd(c, b"x");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("permission on the directory `{}`", ro.display())),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1);
    assert!(!dst.exists());
}

#[test]
fn enametoolong_hint_names_the_limit() {
    let d = tmp();
    let dst = d.path().join("n".repeat(256));
    let out = run(&["write", dst.to_str().unwrap()], b"x");
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("File name too long"), "{}", out.stderr);
    assert!(
        out.stderr.contains("256 bytes") && out.stderr.contains("255"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1);
}

#[test]
fn ebusy_hint_explains_bind_mounts() {
    if !require(
        is_root() && have("unshare"),
        "root with unshare (for a bind mount)",
    ) {
        return;
    }
    let d = tmp();
    let src = d.path().join("host.conf");
    let dst = d.path().join("container.conf");
    fs::write(&src, b"host\n").unwrap();
    fs::write(&dst, b"before\n").unwrap();
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount --bind \"$1\" \"$2\" && exec \"$3\" write \"$2\"",
        "sh",
    ])
    .arg(&src)
    .arg(&dst)
    .arg(bin_path());
    let out = run_cmd(c, b"new\n");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("Device or resource busy"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("bind-mounted"), "{}", out.stderr);
    assert!(out.stderr.contains("never falls back"), "{}", out.stderr);
    assert_eq!(fs::read(&src).unwrap(), b"host\n");
    assert_eq!(fs::read(&dst).unwrap(), b"before\n");
}

// EXDEV cannot come from `write` (the temp always sits beside the destination); its hint is
// tested in the library (`error::tests::hints_name_the_limit_and_the_directory`).

// ---------------------------------------------------------------- progress

#[test]
fn no_progress_escape_codes_when_stderr_is_a_pipe() {
    let d = tmp();
    let p = d.path().join("big.bin");
    let data = vec![7u8; 8 << 20];
    for args in [
        vec!["write", "--progress", p.to_str().unwrap()],
        vec![
            "write",
            "--progress",
            "--expected-size",
            "8M",
            p.to_str().unwrap(),
        ],
        vec!["write", p.to_str().unwrap()],
    ] {
        let out = run(&args, &data);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(
            !out.stderr.contains('\x1b'),
            "escape codes: {:?}",
            out.stderr
        );
        assert!(
            !out.stderr.contains('\r'),
            "carriage returns: {:?}",
            out.stderr
        );
        // stderr is a pipe: silent on success, like cp.
        assert!(out.stderr.is_empty(), "{:?}", out.stderr);
    }
    let out = run(&["write", "-q", "--progress", p.to_str().unwrap()], &data);
    assert_eq!(out.code, 0);
    assert!(out.stderr.is_empty(), "{:?}", out.stderr);
}

#[test]
fn expected_size_rejects_garbage() {
    let out = run(&["write", "--expected-size", "lots", "x"], b"");
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("not a size"), "{}", out.stderr);
}

/// A private tmux server (own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start() -> Tmux {
        // One server per test: tests of one binary run in parallel in the same process.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let socket = format!(
            "atomwrite-ux-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let st = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
            ])
            .args(["-x", "160", "-y", "30", "sh"])
            .env("TERM", "xterm-256color")
            .status()
            .unwrap();
        assert!(st.success());
        let t = Tmux { socket };
        // Type nothing before the shell has printed its prompt: input typed earlier is echoed
        // first and the prompt then lands in the middle of the program's output (a bar drawn
        // after "# " on a line of its own is left behind by its own clear).
        t.wait_for("the shell prompt", |p| {
            let p = p.trim_end();
            p.ends_with('#') || p.ends_with('$')
        });
        t
    }

    fn send(&self, line: &str) {
        let st = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "t", "-l", line])
            .status()
            .unwrap();
        assert!(st.success());
        let st = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "t", "Enter"])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Sends one key (tmux key name, e.g. `C-d`).
    fn key(&self, k: &str) {
        let st = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "t", k])
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn pane(&self) -> String {
        let out = Command::new("tmux")
            // -J: a line the terminal wrapped (a long TEST_DIR path) comes back as one line;
            // it also keeps trailing blanks, which are trimmed here.
            .args(["-L", &self.socket, "capture-pane", "-p", "-J", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| format!("{}\n", l.trim_end()))
            .collect()
    }

    /// Polls the pane until `pred` holds. The deadline only bounds a hung test; nothing is
    /// asserted about how long it takes.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let p = self.pane();
            if pred(&p) {
                return p;
            }
            assert!(Instant::now() < deadline, "never saw {what}; pane:\n{p}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

fn mkfifo(p: &Path) {
    rustix::fs::mkfifoat(rustix::fs::CWD, p, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
}

/// Opens the gate FIFO for writing and closes it: the `cat gate` in the pipeline sees EOF.
fn release(gate: &Path) {
    drop(fs::OpenOptions::new().write(true).open(gate).unwrap());
}

#[test]
fn progress_bar_in_a_real_terminal() {
    if !require(have("tmux"), "tmux") {
        return;
    }
    let d = tmp();
    let t = Tmux::start();
    let bin = bin_path();

    // 1. --progress with a known size: bar, percentage, bytes, rate, ETA while the producer
    //    holds the pipe open; cleared afterwards, leaving only the summary line.
    let gate = d.path().join("gate1");
    mkfifo(&gate);
    let out1 = d.path().join("known.bin");
    t.send(&format!(
        "(head -c 4194304 /dev/zero; cat {}) | {} write --progress --expected-size 8M {}; echo EXIT1=$?",
        gate.display(),
        bin.display(),
        out1.display()
    ));
    let pane = t.wait_for("a known-size bar", |p| p.contains("4.00 MiB/8.00 MiB"));
    let bar_line = pane
        .lines()
        .find(|l| l.contains("4.00 MiB/8.00 MiB"))
        .unwrap();
    assert!(bar_line.contains("known.bin"), "{bar_line}");
    assert!(bar_line.contains("50%"), "{bar_line}");
    assert!(bar_line.contains("ETA"), "{bar_line}");
    assert!(bar_line.contains("/s"), "{bar_line}");
    assert!(bar_line.contains("[==="), "{bar_line}");
    release(&gate);
    let pane = t.wait_for("the first write to end", |p| p.contains("EXIT1=0"));
    assert!(pane.contains("atomwrite: wrote "), "{pane}");
    assert!(!pane.contains("ETA"), "bar not cleared:\n{pane}");
    assert_eq!(fs::metadata(&out1).unwrap().len(), 4 << 20);

    // 2. No flag, unknown size: the bar appears by itself because the work is long (the
    //    producer is idle), showing bytes and rate without a percentage.
    t.send("clear");
    let gate = d.path().join("gate2");
    mkfifo(&gate);
    let out2 = d.path().join("stream.bin");
    t.send(&format!(
        "(head -c 3145728 /dev/zero; cat {}) | {} write {}; echo EXIT2=$?",
        gate.display(),
        bin.display(),
        out2.display()
    ));
    let pane = t.wait_for("an automatic bar", |p| p.contains("stream.bin 3.00 MiB"));
    let bar_line = pane
        .lines()
        .find(|l| l.contains("stream.bin 3.00 MiB"))
        .unwrap();
    assert!(bar_line.contains("/s"), "{bar_line}");
    assert!(!bar_line.contains('%'), "{bar_line}");
    release(&gate);
    t.wait_for("the second write to end", |p| p.contains("EXIT2=0"));
    assert_eq!(fs::metadata(&out2).unwrap().len(), 3 << 20);
}

#[test]
fn write_on_a_terminal_says_it_reads_stdin_and_draws_nothing_over_typing() {
    if !require(have("tmux"), "tmux") {
        return;
    }
    let d = tmp();
    let t = Tmux::start();
    let bin = bin_path();
    let out = d.path().join("typed.txt");
    // --progress would draw a bar from the start (redrawn 5 times a second) if one were allowed.
    t.send(&format!(
        "{} write --progress {}; echo EXIT=$?",
        bin.display(),
        out.display()
    ));
    let pane = t.wait_for("the stdin notice", |p| p.contains("reading stdin for"));
    let notice: Vec<&str> = pane
        .lines()
        .filter(|l| l.contains("reading stdin for"))
        .collect();
    assert_eq!(notice.len(), 1, "{pane}");
    assert!(
        notice[0].contains("typed.txt") && notice[0].contains("Ctrl-D"),
        "{pane}"
    );
    t.send("first typed line");
    t.send("second typed line");
    t.wait_for("the typed lines", |p| p.contains("second typed line"));
    // Several looks while the program waits for more input: only what was typed is there.
    for _ in 0..10 {
        let p = t.pane();
        assert!(
            !p.contains("B/s") && !p.contains(" 0 B"),
            "a bar was drawn:\n{p}"
        );
        // (A long TEST_DIR path wraps the notice onto more lines: start at the first typed one.)
        let after: Vec<&str> = p
            .lines()
            .skip_while(|l| !l.contains("reading stdin for"))
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .skip_while(|l| *l != "first typed line")
            .collect();
        assert_eq!(after, ["first typed line", "second typed line"], "{p}");
        std::thread::sleep(Duration::from_millis(100));
    }
    t.key("C-d");
    let pane = t.wait_for("the write to end", |p| {
        p.lines().any(|l| l.starts_with("EXIT="))
    });
    assert!(pane.lines().any(|l| l == "EXIT=0"), "{pane}");
    assert!(pane.contains("atomwrite: wrote "), "{pane}");
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        "first typed line\nsecond typed line\n"
    );

    // -q: no notice either; piped stdin on a terminal: no notice (the pipe is not typed into).
    t.send("clear");
    t.wait_for("a cleared screen", |p| !p.contains("EXIT=0"));
    t.send(&format!(
        "{} write -q {}; echo EXIT2=$?",
        bin.display(),
        out.display()
    ));
    t.send("quiet line");
    t.key("C-d");
    let pane = t.wait_for("the quiet write to end", |p| {
        p.lines().any(|l| l.starts_with("EXIT2="))
    });
    assert!(pane.lines().any(|l| l == "EXIT2=0"), "{pane}");
    assert!(!pane.contains("reading stdin"), "{pane}");
    assert_eq!(fs::read_to_string(&out).unwrap(), "quiet line\n");
    t.send(&format!(
        "echo piped | {} write {}; echo EXIT3=$?",
        bin.display(),
        out.display()
    ));
    let pane = t.wait_for("the piped write to end", |p| {
        p.lines().any(|l| l.starts_with("EXIT3="))
    });
    assert!(pane.lines().any(|l| l == "EXIT3=0"), "{pane}");
    assert!(!pane.contains("reading stdin"), "{pane}");
    assert_eq!(fs::read_to_string(&out).unwrap(), "piped\n");
}

// ---------------------------------------------------------------- the other commands' JSON

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

#[test]
fn publish_latest_versions_verify_run_json_shapes() {
    let d = tmp();
    let dst = d.path().join("daily.csv");
    let dst_s = dst.to_str().unwrap();
    for (i, body) in [b"a\n", b"b\n"].iter().enumerate() {
        let out = run(&["publish", "--json", dst_s], *body);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let v = json(&out.stdout);
        for k in [
            "dst",
            "version",
            "previous",
            "path",
            "size",
            "sha256",
            "written_at",
            "run_id",
            "migrated",
            "removed",
        ] {
            assert!(v.get(k).is_some(), "publish lacks {k}: {v}");
        }
        assert_eq!(v["version"], i as u64 + 1);
        assert_eq!(v["previous"], i as u64);
        assert!(v["removed"].is_array());
    }

    let v = json(&run(&["latest", "--json", dst_s], b"").stdout);
    assert_eq!(keys(&v), ["dst", "path", "version"]);
    assert_eq!(v["version"], 2);

    let out = run(&["versions", "--json", dst_s], b"");
    assert_eq!(out.code, 0);
    let v = json(&out.stdout);
    assert_eq!(keys(&v), ["current", "dst", "ignored", "versions"]);
    let list = v["versions"]
        .as_array()
        .expect("versions --json has a versions array");
    assert_eq!(list.len(), 2);
    for k in [
        "version",
        "path",
        "current",
        "size",
        "sha256",
        "written_at",
        "run_id",
    ] {
        assert!(list[1].get(k).is_some(), "versions entry lacks {k}: {v}");
    }
    assert_eq!(list[1]["current"], true);

    let out = run(&["verify", "--json", dst_s], b"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = json(&out.stdout);
    assert_eq!(keys(&v), ["ok", "results"]);
    assert_eq!(v["ok"], true);
    let v = v["results"][0].clone();
    assert_eq!(v["status"], "ok");
    for k in [
        "path",
        "detail",
        "data_path",
        "manifest_path",
        "size",
        "sha256",
        "manifest",
    ] {
        assert!(v.get(k).is_some(), "verify lacks {k}: {v}");
    }

    let r = d.path().join("r.txt");
    let out = run(
        &["run", "--json", r.to_str().unwrap(), "--", "echo", "hi"],
        b"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = json(&out.stdout);
    assert_eq!(
        keys(&v),
        [
            "durability",
            "owner_changed",
            "path",
            "run_id",
            "sha256",
            "size",
            "written_at"
        ]
    );
    assert_eq!(v["size"], 3);
}

// ---------------------------------------------------------------- conventions

/// Like `cp`, `install` and `sponge`: nothing on stderr after a success when stderr is not a
/// terminal; `-v` (or a terminal) prints the one-line summary; `--json` prints the receipt on
/// stdout; `-q` is still accepted; errors always print.
#[test]
fn success_is_silent_unless_verbose_json_or_a_terminal() {
    let d = tmp();
    let f = d.path().join("f.txt");
    let f = f.to_str().unwrap();
    let from = d.path().join("src.txt");
    fs::write(&from, b"src\n").unwrap();
    let from = from.to_str().unwrap();
    let quiet_cases: Vec<Vec<&str>> = vec![
        vec!["write", f],
        vec!["write", "-q", f],
        vec!["cp", from, f],
        vec!["run", f, "--", "echo", "x"],
        vec!["publish", f],
        vec!["clean", d.path().to_str().unwrap()],
    ];
    for args in &quiet_cases {
        let out = run(args, b"data\n");
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr, "", "{args:?} printed on success");
        assert_eq!(out.stdout, "", "{args:?} printed on success");
    }
    for args in [
        vec!["write", "-v", f],
        vec!["write", "--verbose", f],
        vec!["cp", "-v", from, f],
        vec!["publish", "-v", f],
    ] {
        let out = run(&args, b"data\n");
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {:?}", out.stderr);
        assert!(out.stderr.starts_with("atomwrite: "), "{:?}", out.stderr);
    }
    let out = run(&["clean", "-v", d.path().to_str().unwrap()], b"");
    assert!(
        out.stderr.contains("removed 0 temp file(s)"),
        "{:?}",
        out.stderr
    );
    // --json: the receipt on stdout, nothing on stderr.
    let out = run(&["write", "--json", f], b"data\n");
    assert_eq!(json(&out.stdout)["size"], 5);
    assert_eq!(out.stderr, "");
    // Errors always print, even without -v.
    let out = run(&["write", "--no-clobber", f], b"data\n");
    assert_eq!(out.code, 3);
    assert!(out.stderr.starts_with("atomwrite: "), "{:?}", out.stderr);
    // -q after -v wins (and the reverse), like most tools.
    let out = run(&["write", "-v", "-q", f], b"data\n");
    assert_eq!(out.stderr, "");
}

/// On a terminal the summary is printed (someone is watching): stderr is a pty from `script`.
#[test]
fn success_summary_on_a_terminal() {
    if !require(have("script"), "script(1) (util-linux)") {
        return;
    }
    let d = tmp();
    let f = d.path().join("t.txt");
    let cmd = format!(
        "echo hi | {} write {} 2>/dev/tty; echo EXIT=$?",
        bin_path().display(),
        f.display()
    );
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"]);
    let out = run_cmd(c, b"");
    assert!(out.stdout.contains("EXIT=0"), "{}", out.stdout);
    assert!(out.stdout.contains("atomwrite: wrote "), "{}", out.stdout);
    assert_eq!(fs::read(&f).unwrap(), b"hi\n");
}

/// `-` as coreutils reads it: `--from -` and `cp - DST` are stdin; `-` as a destination (or a
/// path to check, a directory to sweep) is a usage error naming the argument and `./-`.
#[test]
fn dash_is_stdin_where_read_and_refused_where_a_file_is_replaced() {
    let d = tmp();
    let dir = d.path().to_str().unwrap();
    let f = d.path().join("f");
    let f = f.to_str().unwrap();
    let out = run(&["write", "--from", "-", f], b"one");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fs::read(f).unwrap(), b"one");
    let out = run(&["cp", "-", f], b"two");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fs::read(f).unwrap(), b"two");
    let p = d.path().join("p");
    let out = run(&["publish", "--from", "-", p.to_str().unwrap()], b"three");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fs::read(&p).unwrap(), b"three");
    for args in [
        vec!["write", "-"],
        vec!["cp", f, "-"],
        vec!["publish", "-"],
        vec!["run", "-", "--", "true"],
        vec!["latest", "-"],
        vec!["versions", "-"],
        vec!["verify", "-"],
        vec!["clean", "-"],
        vec!["doctor", "-"],
        vec!["cp", "-p", "-", f],
    ] {
        let mut c = bin();
        c.args(&args).current_dir(dir);
        let out = run_cmd(c, b"x");
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains('-'), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
    }
    assert!(!d.path().join("-").exists(), "a file named - was created");
    assert_eq!(fs::read(f).unwrap(), b"two");
    // `./-` is a file named `-`.
    let mut c = bin();
    c.args(["write", "./-"]).current_dir(dir);
    assert_eq!(run_cmd(c, b"dash").code, 0);
    assert_eq!(fs::read(d.path().join("-")).unwrap(), b"dash");
}

/// `-m` is `--mode`; symbolic modes as `install -m` takes them (applied to no bits).
#[test]
fn short_m_takes_octal_and_symbolic_modes() {
    let d = tmp();
    for (m, want) in [
        ("0640", 0o640),
        ("u+x", 0o100),
        ("go-w", 0o000),
        ("a=r,u+w", 0o644),
        ("u=rwx,go=rx", 0o755),
    ] {
        let f = d.path().join(format!("m{want:o}-{}", m.len()));
        let out = run(&["write", "-m", m, f.to_str().unwrap()], b"x");
        assert_eq!(out.code, 0, "{m}: {}", out.stderr);
        let got = fs::metadata(&f).unwrap().permissions().mode() & 0o7777;
        assert_eq!(got, want, "-m {m}");
    }
    let out = run(
        &["write", "-m", "u+q", d.path().join("bad").to_str().unwrap()],
        b"x",
    );
    assert_eq!(out.code, 2);
    assert!(!d.path().join("bad").exists());
}

/// Each command's help lists only the options it honours.
#[test]
fn help_lists_only_options_that_apply() {
    let help = |c: &str| run(&[c, "--help"], b"").stdout;
    let publish = help("publish");
    for absent in ["--no-clobber", "--manifest", "--no-follow"] {
        assert!(!publish.contains(absent), "publish --help lists {absent}");
    }
    for present in [
        "--keep",
        "--expect",
        "--mode",
        "--durability",
        "--verbose",
        "--progress",
    ] {
        assert!(publish.contains(present), "publish --help lacks {present}");
    }
    let write = help("write");
    for present in [
        "--no-clobber",
        "--manifest",
        "--no-follow",
        "-m, --mode",
        "-v, --verbose",
    ] {
        assert!(write.contains(present), "write --help lacks {present}");
    }
    // And the refused option is now an unknown one (exit 2), not a run-time refusal.
    assert_eq!(run(&["publish", "--no-clobber", "x"], b"").code, 2);
    let versions = help("versions");
    assert!(versions.contains("object"), "{versions}");
    assert!(
        !versions.to_lowercase().contains("json array"),
        "{versions}"
    );
}

/// Every JSON usage error names the offending argument, in `message` and in `argument`.
#[test]
fn json_usage_errors_name_the_argument() {
    for (args, arg) in [
        (vec!["write", "--json"], "<DST>"),
        (vec!["publish", "--json", "--keep", "0", "x"], "--keep"),
        (vec!["write", "--json", "--bogus", "x"], "--bogus"),
        (
            vec!["write", "--json", "--durability", "max", "x"],
            "--durability",
        ),
        (vec!["latest", "--json"], "<DST>"),
    ] {
        let out = run(&args, b"");
        assert_eq!(out.code, 2, "{args:?}");
        let v = json(&out.stdout);
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(arg), "{args:?}: {msg}");
        assert!(
            v["error"]["argument"].as_str().unwrap().contains(arg),
            "{v}"
        );
        assert!(!msg.ends_with(':'), "{msg}");
    }
}

/// Nonsensical values are usage errors; `latest` of nothing exits 1 saying so.
#[test]
fn nonsense_is_a_usage_error_and_latest_of_nothing_exits_1() {
    let d = tmp();
    let p = d.path().join("p");
    let p = p.to_str().unwrap();
    for args in [
        vec!["publish", "--keep", "0", p],
        vec!["run", "--publish", "--keep", "0", p, "--", "true"],
        vec!["publish", "--keep", "-1", p],
        vec!["clean", "--older-than", "soon", d.path().to_str().unwrap()],
        vec!["write", "--expected-size", "lots", p],
    ] {
        assert_eq!(run(&args, b"x").code, 2, "{args:?}");
    }
    assert!(!Path::new(p).exists());
    let out = run(&["latest", p], b"");
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("nothing has been published"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(p), "{}", out.stderr);
}

/// The receipt says what the filesystem honoured, by doctor's classification: tmpfs keeps
/// nothing across power loss, so a `--durability full` write there reports "none".
#[test]
fn receipt_durability_on_tmpfs_is_none() {
    let shm = Path::new("/dev/shm");
    if !require(shm.is_dir(), "/dev/shm (tmpfs)") {
        return;
    }
    let d = tempfile::tempdir_in(shm).unwrap();
    let f = d.path().join("f");
    let out = run(
        &[
            "write",
            "--json",
            "--durability",
            "full",
            f.to_str().unwrap(),
        ],
        b"x",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out.stdout)["durability"], "none");
    let doc = run(&["doctor", "--json", d.path().to_str().unwrap()], b"");
    assert_eq!(json(&doc.stdout)["durability"]["level"], "crash");
}

/// The crash-test pause points (`ATOMWRITE_TEST_PAUSE_AT`, `ATOMWRITE_TEST_PAUSE`) are compiled
/// only with the non-default `test-hooks` feature: a binary built without it (every release
/// build) does not even contain their environment variables' names. Built with the feature
/// (`--all-features`), the same scan finds them, so the scan itself is shown to work.
#[test]
fn test_hooks_are_absent_from_binaries_built_without_the_feature() {
    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }
    let needles: [&[u8]; 2] = [b"ATOMWRITE_TEST_PAUSE_AT", b"ATOMWRITE_TEST_PAUSE_FILE"];
    let bytes = fs::read(bin_path()).unwrap();
    for n in needles {
        assert_eq!(
            contains(&bytes, n),
            cfg!(feature = "test-hooks"),
            "{} in {}",
            String::from_utf8_lossy(n),
            bin_path().display()
        );
    }
    // A release binary built by `cargo build --release -p atomwrite-cli` (CI's build-release
    // step), when there is one: never the hooks.
    let release = bin_path()
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("release/atomwrite"));
    // Only a release binary at least as new as this test's binary: a stale one from an older
    // tree proves nothing about this one.
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = |p: &PathBuf| p.is_file() && mtime(p) >= mtime(&bin_path());
    match release.filter(fresh) {
        Some(p) => {
            let bytes = fs::read(&p).unwrap();
            for n in needles {
                assert!(
                    !contains(&bytes, n),
                    "release binary {} has a test hook",
                    p.display()
                );
            }
        }
        None => eprintln!("note: no release binary built; checked the test binary only"),
    }
}

/// Usage errors found by atomwrite itself (not the parser) name the argument in JSON too.
#[test]
fn json_errors_of_the_cli_name_the_argument_or_path() {
    let d = tmp();
    let dir = d.path().to_str().unwrap();
    fs::create_dir(d.path().join("sub")).unwrap();
    let sub = d.path().join("sub");
    let sub = sub.to_str().unwrap();
    for (args, arg) in [
        (vec!["write", "--json", "-"], "-"),
        (
            vec!["publish", "--json", "--dir", sub, "memory:///x"],
            "--dir",
        ),
        (
            vec!["write", "--json", "--mode", "0600", "memory:///x"],
            "--mode",
        ),
        (vec!["cp", "--json", sub, "x", "y"], "y"),
        (vec!["write", "--json", "s3:/b/k"], "s3:/b/k"),
    ] {
        let mut c = bin();
        c.args(&args).current_dir(dir);
        let out = run_cmd(c, b"");
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        let v = json(&out.stdout);
        let named = v["error"]["argument"]
            .as_str()
            .or(v["error"]["path"].as_str());
        assert_eq!(named, Some(arg), "{args:?}: {v}");
    }
}

/// A command shown in a message keeps its quoting: `sh -c 'exit 3'` is not `sh -c exit 3`.
#[test]
fn a_failed_command_is_shown_with_its_quoting() {
    let d = tmp();
    let f = d.path().join("f");
    let out = run(
        &["run", f.to_str().unwrap(), "--", "sh", "-c", "exit 3"],
        b"",
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("`sh -c 'exit 3'`"), "{}", out.stderr);
    assert!(!f.exists());
}

#[path = "../../atomwrite/tests/support/honoured.rs"]
mod honoured;
use honoured::full_honoured_in;
