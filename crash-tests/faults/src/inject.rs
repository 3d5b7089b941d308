//! Injected faults: every step of `atomwrite write` fails in turn under `strace -e inject`.
//!
//! For each scenario a probe run (traced, nothing injected) finds the step's system call and
//! its ordinal among the main thread's calls of that name (strace counts `when=` per syscall
//! and per tracee). Each (step, errno) is then run with exactly that call failing, and checked:
//! the injection landed on the intended call; the exit code; the destination (unchanged, or new
//! where a fallback must succeed or the rename already happened); no temporary file left; one
//! stderr line naming the operation, the path and the OS reason; after a failed `fsync` no
//! further `fsync`/`fdatasync`/`syncfs` at all.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Tally;
use crate::strace::{self, Call};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    OpenTmpfile,
    OpenNamed,
    FlockDir,
    Flock,
    Fallocate,
    Write,
    Fchown,
    Fchmod,
    FsyncFile,
    LinkTemp,
    LinkDest,
    Renameat2,
    Rename,
    Unlink,
    FsyncDir,
}

const ALL_STEPS: [Step; 15] = [
    Step::OpenTmpfile,
    Step::FlockDir,
    Step::OpenNamed,
    Step::Flock,
    Step::Fallocate,
    Step::Write,
    Step::Fchown,
    Step::Fchmod,
    Step::FsyncFile,
    Step::LinkTemp,
    Step::LinkDest,
    Step::Renameat2,
    Step::Rename,
    Step::Unlink,
    Step::FsyncDir,
];

impl Step {
    fn matches(self, c: &Call, dir: &str) -> bool {
        let dir_fd = |a: &str| {
            a.split(',')
                .next()
                .is_some_and(|f| f.trim().ends_with(&format!("<{dir}>")))
        };
        let temp_fd = |a: &str| {
            let f = a.split(',').next().unwrap_or("");
            f.contains("(deleted)") || f.contains(".tmp>")
        };
        match self {
            Step::OpenTmpfile => c.name == "openat" && c.args.contains("O_TMPFILE"),
            Step::OpenNamed => {
                c.name == "openat" && c.args.contains("O_EXCL") && c.args.contains(".tmp\"")
            }
            // The directory's shared lock held across a named temp's create and its own lock
            // (so `clean` keeps away); the unlock after it is not a step.
            Step::FlockDir => c.name == "flock" && dir_fd(&c.args) && c.args.contains("LOCK_SH"),
            Step::Flock => c.name == "flock" && temp_fd(&c.args),
            Step::Fallocate => c.name == "fallocate" && temp_fd(&c.args),
            Step::Write => c.name == "write" && temp_fd(&c.args),
            Step::Fchown => c.name == "fchown",
            Step::Fchmod => c.name == "fchmod",
            Step::FsyncFile => (c.name == "fsync" || c.name == "fdatasync") && !dir_fd(&c.args),
            Step::LinkTemp => c.name == "linkat" && link_target(&c.args).ends_with(".tmp\""),
            Step::LinkDest => c.name == "linkat" && link_target(&c.args) == "\"dst\"",
            Step::Renameat2 => c.name == "renameat2" && c.args.contains("RENAME_NOREPLACE"),
            Step::Rename => {
                (c.name == "renameat" || c.name == "rename" || c.name == "renameat2")
                    && !c.args.contains("RENAME_")
            }
            Step::Unlink => c.name == "unlinkat",
            Step::FsyncDir => c.name == "fsync" && dir_fd(&c.args),
        }
    }

    /// The operation words the error message must contain.
    fn verb(self) -> &'static str {
        match self {
            Step::OpenTmpfile | Step::OpenNamed => "failed to create temporary file in",
            Step::FlockDir | Step::Flock => "failed to lock",
            Step::Fallocate => "failed to preallocate temporary file for",
            Step::Write => "failed to write temporary file for",
            Step::Fchown => "failed to set owner of temporary file for",
            Step::Fchmod => "failed to set mode of temporary file for",
            Step::FsyncFile => "failed to fsync temporary file for",
            Step::LinkTemp | Step::LinkDest => "failed to link temporary file for",
            Step::Renameat2 | Step::Rename => "failed to rename",
            Step::Unlink => "failed to remove",
            Step::FsyncDir => "failed to fsync directory",
        }
    }
}

/// linkat(olddirfd, oldpath, newdirfd, newpath, flags): the new path.
fn link_target(args: &str) -> &str {
    args.split(", ").nth(3).unwrap_or("").trim()
}

pub const ERRNOS: [&str; 8] = [
    "EIO", "ENOSPC", "EDQUOT", "EROFS", "EACCES", "EINTR", "EBUSY", "EXDEV",
];

fn extra_errnos(step: Step) -> &'static [&'static str] {
    match step {
        Step::OpenTmpfile => &["EOPNOTSUPP", "EINVAL"],
        Step::Fallocate => &["EOPNOTSUPP"],
        Step::Renameat2 => &["EINVAL"],
        Step::Fchown | Step::Fchmod => &["EPERM"],
        _ => &[],
    }
}

fn strerror(errno: &str) -> &'static str {
    match errno {
        "EIO" => "Input/output error",
        "ENOSPC" => "No space left on device",
        "EDQUOT" => "Disk quota exceeded",
        "EROFS" => "Read-only file system",
        "EACCES" => "Permission denied",
        "EINTR" => "Interrupted system call",
        "EBUSY" => "Device or resource busy",
        "EXDEV" => "Invalid cross-device link",
        "EPERM" => "Operation not permitted",
        "EINVAL" => "Invalid argument",
        _ => "",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Exit 1, destination byte-for-byte (and mode/owner) unchanged, no temp.
    Fail,
    /// A retry or fallback must make it succeed: exit 0, new contents, no temp.
    Succeed,
    /// The rename happened before the failure (directory fsync): exit 1, new contents visible,
    /// the message says so, no temp.
    FailVisible,
}

fn expect(step: Step, errno: &str) -> Expect {
    match (step, errno) {
        (Step::Write, "EINTR") => Expect::Succeed,
        (Step::Renameat2, "EINVAL") => Expect::Succeed,
        (Step::OpenTmpfile, "EOPNOTSUPP" | "EINVAL") => Expect::Succeed,
        (Step::Fallocate, "EOPNOTSUPP") => Expect::Succeed,
        // The directory lock only keeps `clean --older-than 0` out of the instant before the
        // temp's own lock: without it (a filesystem without directory locks) the write goes on.
        (Step::FlockDir, _) => Expect::Succeed,
        (Step::FsyncDir, _) => Expect::FailVisible,
        // Portable create-only: published by linkat, then removing the temp name failed: exit 1
        // saying the destination holds the new contents; the temp is still removed (on drop).
        (Step::Unlink, _) => Expect::FailVisible,
        _ => Expect::Fail,
    }
}

pub struct Scenario {
    pub name: &'static str,
    pub portable: bool,
    /// The destination exists (owned by uid/gid 1234 when we are root, mode 0640).
    pub existing: bool,
    pub no_clobber: bool,
    /// Input from `--from FILE` (the CLI then preallocates); otherwise a pipe on stdin.
    pub stdin_file: bool,
    /// Faults injected in every run of this scenario (to reach a fallback path).
    pub pre: &'static [(Step, &'static str)],
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "fast-replace",
        portable: false,
        existing: true,
        no_clobber: false,
        stdin_file: true,
        pre: &[],
    },
    Scenario {
        name: "fast-create",
        portable: false,
        existing: false,
        no_clobber: false,
        stdin_file: false,
        pre: &[],
    },
    Scenario {
        name: "fast-no-clobber",
        portable: false,
        existing: false,
        no_clobber: true,
        stdin_file: false,
        pre: &[],
    },
    Scenario {
        name: "fast-no-clobber-named",
        portable: false,
        existing: false,
        no_clobber: true,
        stdin_file: true,
        pre: &[(Step::OpenTmpfile, "EOPNOTSUPP")],
    },
    Scenario {
        name: "fast-no-clobber-renameat2-einval",
        portable: false,
        existing: false,
        no_clobber: true,
        stdin_file: false,
        pre: &[
            (Step::OpenTmpfile, "EOPNOTSUPP"),
            (Step::Renameat2, "EINVAL"),
        ],
    },
    Scenario {
        name: "portable-replace",
        portable: true,
        existing: true,
        no_clobber: false,
        stdin_file: true,
        pre: &[],
    },
    Scenario {
        name: "portable-create",
        portable: true,
        existing: false,
        no_clobber: false,
        stdin_file: false,
        pre: &[],
    },
    Scenario {
        name: "portable-no-clobber",
        portable: true,
        existing: false,
        no_clobber: true,
        stdin_file: false,
        pre: &[],
    },
];

const OLD: &[u8] = b"old contents: must survive every failed write byte for byte\n";

fn new_bytes() -> Vec<u8> {
    // Above the 1 MiB preallocation threshold, so `--from` runs also exercise fallocate.
    (0..1_100_000u32).map(|i| (i % 251) as u8).collect()
}

struct Run {
    code: Option<i32>,
    stderr: String,
    calls: Vec<Call>,
}

pub struct Ctx {
    pub atomwrite: PathBuf,
    pub base: PathBuf,
    pub root: bool,
    pub verbose: bool,
}

impl Ctx {
    fn setup(&self, sc: &Scenario, case: &str) -> PathBuf {
        let dir = self.base.join(case);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if sc.existing {
            let dst = dir.join("dst");
            std::fs::write(&dst, OLD).unwrap();
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o640)).unwrap();
            if self.root {
                std::os::unix::fs::chown(&dst, Some(1234), Some(1234)).unwrap();
            }
        }
        dir
    }

    fn run(&self, sc: &Scenario, dir: &Path, injects: &[(String, String, usize)]) -> Run {
        let log = dir.with_extension("strace");
        let input = self.base.join("input");
        let mut cmd = Command::new("strace");
        cmd.arg("-f").arg("-y").arg("-o").arg(&log);
        for (sys, errno, when) in injects {
            cmd.arg("-e")
                .arg(format!("inject={sys}:error={errno}:when={when}"));
        }
        cmd.arg(&self.atomwrite).args(["write", "-q"]);
        if sc.no_clobber {
            cmd.arg("--no-clobber");
        }
        if sc.stdin_file {
            // A regular file of known size: the CLI preallocates (fallocate) before writing.
            cmd.arg("--from").arg(&input);
        }
        cmd.arg(dir.join("dst"));
        if sc.portable {
            cmd.env("ATOMWRITE_PORTABLE", "1");
        } else {
            cmd.env_remove("ATOMWRITE_PORTABLE");
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        if sc.stdin_file {
            cmd.stdin(Stdio::null());
        } else {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("spawn strace");
        if let Some(mut w) = child.stdin.take() {
            let _ = w.write_all(&new_bytes());
        }
        let out = child.wait_with_output().expect("wait strace");
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        Run {
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            calls: strace::main_thread(&strace::parse(&log_text)),
        }
    }
}

/// Ordinal (1-based) of call `idx` among the calls with the same name before it.
fn ordinal(calls: &[Call], idx: usize) -> usize {
    calls[..=idx]
        .iter()
        .filter(|c| c.name == calls[idx].name)
        .count()
}

fn find(calls: &[Call], step: Step, dir: &str) -> Option<(String, usize)> {
    let i = calls.iter().position(|c| step.matches(c, dir))?;
    Some((calls[i].name.clone(), ordinal(calls, i)))
}

pub fn run_all(ctx: &Ctx, t: &mut Tally) {
    std::fs::create_dir_all(&ctx.base).unwrap();
    std::fs::write(ctx.base.join("input"), new_bytes()).unwrap();
    let mut n = 0usize;
    for sc in SCENARIOS {
        // Probe with only the scenario's own faults, to find each step's call.
        let probe_dir = ctx.setup(sc, &format!("{}-probe", sc.name));
        let dir_s = probe_dir.to_string_lossy().into_owned();
        let mut pre: Vec<(String, String, usize)> = Vec::new();
        let mut probe = ctx.run(sc, &probe_dir, &[]);
        for (step, errno) in sc.pre {
            match find(&probe.calls, *step, &dir_s) {
                Some((sys, k)) => pre.push((sys, errno.to_string(), k)),
                None => {
                    t.fail(format!(
                        "{}: probe found no {step:?} call to pre-inject",
                        sc.name
                    ));
                    continue;
                }
            }
            let d = ctx.setup(sc, &format!("{}-probe", sc.name));
            probe = ctx.run(sc, &d, &pre);
        }
        if probe.code != Some(0) {
            t.fail(format!(
                "{}: probe run failed ({:?}): {}",
                sc.name,
                probe.code,
                probe.stderr.trim()
            ));
            continue;
        }
        let mut steps_found = Vec::new();
        for step in ALL_STEPS {
            if sc.pre.iter().any(|(s, _)| *s == step) {
                continue;
            }
            // The named openat cannot be targeted while openat already carries a pre-injection.
            if step == Step::OpenNamed && pre.iter().any(|(s, _, _)| s == "openat") {
                continue;
            }
            if let Some((sys, k)) = find(&probe.calls, step, &dir_s) {
                steps_found.push((step, sys, k));
            }
        }
        if ctx.verbose {
            println!("faults: {} steps {:?}", sc.name, steps_found);
        }
        for (step, sys, k) in &steps_found {
            let errnos = ERRNOS.iter().chain(extra_errnos(*step).iter());
            for errno in errnos {
                n += 1;
                let case = format!("{}-{:?}-{errno}", sc.name, step);
                let dir = ctx.setup(sc, &format!("c{n}"));
                let mut inj = pre.clone();
                inj.push((sys.clone(), errno.to_string(), *k));
                let run = ctx.run(sc, &dir, &inj);
                t.injected += 1;
                let problems = check(ctx, sc, *step, errno, &dir, &run);
                if problems.is_empty() {
                    t.pass();
                    let _ = std::fs::remove_dir_all(&dir);
                    let _ = std::fs::remove_file(dir.with_extension("strace"));
                } else {
                    t.fail(format!("{case}: {}", problems.join("; ")));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&probe_dir);
    }
}

fn check(ctx: &Ctx, sc: &Scenario, step: Step, errno: &str, dir: &Path, run: &Run) -> Vec<String> {
    let mut p = Vec::new();
    let dir_s = dir.to_string_lossy().into_owned();
    let dst = dir.join("dst");
    let exp = expect(step, errno);
    // 1. The fault landed on the intended call.
    let inj: Vec<&Call> = run.calls.iter().filter(|c| c.injected).collect();
    if !inj.iter().any(|c| step.matches(c, &dir_s)) {
        match inj.last() {
            Some(c) => p.push(format!(
                "injection landed on {}({}) = {}",
                c.name, c.args, c.ret
            )),
            None => p.push("no injected call in the trace".into()),
        }
    }
    // 2. Exit code.
    let want_code = match exp {
        Expect::Succeed => 0,
        Expect::Fail | Expect::FailVisible => 1,
    };
    if run.code != Some(want_code) {
        p.push(format!(
            "exit {:?}, expected {want_code}; stderr: {}",
            run.code,
            run.stderr.trim()
        ));
    }
    // 3. Destination.
    let got = std::fs::read(&dst).ok();
    let md = std::fs::symlink_metadata(&dst).ok();
    match exp {
        Expect::Fail => {
            if sc.existing {
                if got.as_deref() != Some(OLD) {
                    p.push("destination contents changed".into());
                }
                if let Some(md) = &md {
                    if md.mode() & 0o7777 != 0o640 {
                        p.push(format!(
                            "destination mode changed to {:o}",
                            md.mode() & 0o7777
                        ));
                    }
                    if ctx.root && (md.uid(), md.gid()) != (1234, 1234) {
                        p.push(format!(
                            "destination owner changed to {}:{}",
                            md.uid(),
                            md.gid()
                        ));
                    }
                }
            } else if got.is_some() {
                p.push("destination was created by a failed write".into());
            }
        }
        Expect::Succeed | Expect::FailVisible => {
            if got.as_deref() != Some(&new_bytes()[..]) {
                p.push("destination does not hold the new contents".into());
            }
            if let Some(md) = md.as_ref().filter(|_| sc.existing && ctx.root)
                && (md.uid(), md.gid(), md.mode() & 0o7777) != (1234, 1234, 0o640)
            {
                p.push(format!(
                    "owner/mode not preserved: {}:{} {:o}",
                    md.uid(),
                    md.gid(),
                    md.mode() & 0o7777
                ));
            }
        }
    }
    // 4. No temporary file (or any other stray name).
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "dst")
        .collect();
    if !names.is_empty() {
        p.push(format!("left behind: {names:?}"));
    }
    // 5. The message: one line, the operation, the path, the OS reason.
    if matches!(exp, Expect::Fail | Expect::FailVisible) {
        let err = run.stderr.trim();
        if err.lines().count() != 1 {
            p.push(format!("stderr is not one line: {err:?}"));
        }
        if !err.contains(step.verb()) {
            p.push(format!(
                "stderr does not name the operation `{}`: {err}",
                step.verb()
            ));
        }
        if !err.contains(&dir_s) {
            p.push(format!("stderr does not name the path: {err}"));
        }
        if !err.contains(strerror(errno)) {
            p.push(format!("stderr does not give the OS reason: {err}"));
        }
        if exp == Expect::FailVisible && !err.contains("visible") {
            p.push(format!(
                "directory-fsync failure does not say the new contents are visible: {err}"
            ));
        }
    }
    // 6. A failed fsync is never retried (nor "repaired" by any later sync).
    if let Some(i) = run
        .calls
        .iter()
        .position(|c| c.injected && matches!(c.name.as_str(), "fsync" | "fdatasync"))
    {
        let later: Vec<String> = run.calls[i + 1..]
            .iter()
            .filter(|c| {
                matches!(
                    c.name.as_str(),
                    "fsync" | "fdatasync" | "syncfs" | "sync_file_range"
                )
            })
            .map(|c| format!("{}({})", c.name, c.args))
            .collect();
        if !later.is_empty() {
            p.push(format!("sync retried after a failed fsync: {later:?}"));
        }
    }
    p
}
