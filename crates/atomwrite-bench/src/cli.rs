//! Scenarios that drive the `atomwrite` CLI: (c) streaming from a pipe vs
//! `dd conv=fsync`, (d) peak RSS while streaming, (e) `cp` on btrfs/xfs/ext4.

use crate::bench::{Row, Scenario};
use crate::contenders::{open_dir_fd, syncfs_dir};
use crate::stats::Summary;
use crate::util::{BLOCK, Stream, fs_type, is_root};
use serde::Serialize;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Locate a usable `atomwrite` binary: `explicit`, else next to this binary.
pub fn find_cli(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let p = match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("atomwrite"),
    };
    let ok = Command::new(&p)
        .args(["write", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(p)
    } else {
        Err(format!(
            "`{} write --help` failed: CLI not built (cargo build --release -p atomwrite-cli)",
            p.display()
        ))
    }
}

/// Whether the CLI has the `cp` subcommand.
pub fn cli_has_cp(cli: &Path) -> bool {
    Command::new(cli)
        .args(["cp", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Outcome of one child process.
pub struct ChildRun {
    /// Wall time from spawn to exit (stdin fully fed).
    pub wall: Duration,
    /// Peak resident set of the measured program, KiB (when asked for).
    pub maxrss_kib: Option<u64>,
    /// User + system CPU time of the child (and its waited-for children).
    pub cpu: Duration,
}

const GNU_TIME: &str = "/usr/bin/time";

/// Spawn `cmd`, feed `stream` into its stdin (if given), reap it with wait4.
///
/// With `measure_rss`, the peak RSS of the program itself is measured. Not
/// with this process's `wait4` rusage: Linux keeps `ru_maxrss` across
/// `execve`, so a child spawned from this (large) process reports at least
/// our own high-water mark. Instead, like `/usr/bin/time -f %M`, the program
/// is forked from a small process; without GNU time, `VmHWM` of the child
/// is polled from /proc every 2 ms (the high-water mark only grows).
pub fn run_child(
    cmd: Command,
    stream: Option<&Stream>,
    measure_rss: bool,
) -> Result<ChildRun, String> {
    let use_time = measure_rss && Path::new(GNU_TIME).exists();
    let rssf = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let mut cmd = if use_time {
        let mut c = Command::new(GNU_TIME);
        c.args(["-f", "%M", "-o"])
            .arg(rssf.path())
            .arg(cmd.get_program())
            .args(cmd.get_args());
        if let Some(d) = cmd.get_current_dir() {
            c.current_dir(d);
        }
        c
    } else {
        cmd
    };
    let errf = tempfile::tempfile().map_err(|e| e.to_string())?;
    cmd.stdout(Stdio::null())
        .stderr(errf.try_clone().map_err(|e| e.to_string())?);
    cmd.stdin(if stream.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let t = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let stdin = child.stdin.take();
    let (status, ru, feed) = std::thread::scope(|s| {
        let feeder = s.spawn(move || -> io::Result<()> {
            if let (Some(mut w), Some(st)) = (stdin, stream) {
                st.write_to(&mut w)?;
            }
            Ok(())
        });
        let mut status: libc::c_int = 0;
        let mut hwm = 0u64;
        // SAFETY: rusage is plain old data.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let poll = measure_rss && !use_time;
        let r = loop {
            if poll && let Some(k) = vm_hwm_kib(pid) {
                hwm = hwm.max(k);
            }
            let flags = if poll { libc::WNOHANG } else { 0 };
            // SAFETY: waiting for our own child; status is a plain int and
            // rusage plain old data.
            let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
            if r != 0 {
                break r;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let feed = feeder.join().expect("feeder panicked");
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        let cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
        (if r < 0 { None } else { Some(status) }, (hwm, cpu), feed)
    });
    let wall = t.elapsed();
    drop(child); // already reaped by wait4
    let status = status.ok_or_else(|| "wait4 failed".to_string())?;
    let mut err = String::new();
    let mut errf = errf;
    let _ = io::Seek::seek(&mut errf, io::SeekFrom::Start(0));
    let _ = errf.read_to_string(&mut err);
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!(
            "{:?} exited with status {status:#x}: {}",
            cmd.get_program(),
            err.trim()
        ));
    }
    feed.map_err(|e| format!("feeding stdin: {e}"))?;
    let maxrss_kib = if use_time {
        std::fs::read_to_string(rssf.path())
            .ok()
            .and_then(|s| s.lines().last()?.trim().parse().ok())
    } else if measure_rss {
        Some(ru.0)
    } else {
        None
    };
    Ok(ChildRun {
        wall,
        maxrss_kib,
        cpu: ru.1,
    })
}

fn vm_hwm_kib(pid: libc::pid_t) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

/// The floor for (c): stdin → named temp in DST's directory (1 MiB pipe and
/// read buffer), fsync, rename, fsync(dir).
pub fn stream_floor(dst: &Path) -> io::Result<()> {
    let dir = dst.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".stream-floor.{}.tmp", std::process::id()));
    let stdin = io::stdin();
    let _ = rustix::pipe::fcntl_setpipe_size(&stdin, BLOCK);
    let mut r = stdin.lock();
    let mut w = File::options().write(true).create_new(true).open(&tmp)?;
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
    }
    w.sync_all()?;
    std::fs::rename(&tmp, dst)?;
    rustix::fs::fsync(open_dir_fd(dir)?)?;
    Ok(())
}

/// Contenders of (c)/(d).
pub const PIPE_NAMES: [&str; 3] = ["atomwrite write", "dd conv=fsync", "floor stream"];

fn pipe_cmd(which: &str, cli: &Path, dst: &Path) -> Command {
    match which {
        "atomwrite write" => {
            let mut c = Command::new(cli);
            c.args(["write", "--durability", "full", "-q"]).arg(dst);
            c
        }
        "floor stream" => {
            let exe = std::env::current_exe().unwrap_or_else(|_| "atomwrite-bench".into());
            let mut c = Command::new(exe);
            c.arg("stream-floor").arg(dst);
            c
        }
        _ => {
            let mut c = Command::new("dd");
            c.arg(format!("of={}", dst.display()))
                .args(["bs=1M", "conv=fsync", "status=none"]);
            c
        }
    }
}

/// RSS row for (d).
#[derive(Debug, Clone, Serialize)]
pub struct RssRow {
    /// Contender.
    pub name: String,
    /// Bytes streamed.
    pub size: u64,
    /// Peak RSS, KiB.
    pub maxrss_kib: Option<u64>,
    /// Output verified.
    pub ok: bool,
    /// Error if any.
    pub error: Option<String>,
}

/// (c) `size` bytes through a pipe: atomwrite CLI vs dd conv=fsync vs the
/// floor stream, `reps` interleaved repetitions. Returns the scenario and,
/// with `measure_rss`, the peak RSS of each.
pub fn pipe(
    base: &Path,
    cli: &Path,
    size: u64,
    reps: usize,
    measure_rss: bool,
) -> io::Result<(Scenario, Vec<RssRow>)> {
    let root = base.join("c");
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(&root)?;
    let stream = Stream::new(size);
    let names = PIPE_NAMES;
    let nc = names.len();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); nc];
    let mut rss = vec![0u64; nc];
    let mut cpu: Vec<Vec<Duration>> = vec![Vec::new(); nc];
    let mut errors: Vec<Option<String>> = vec![None; nc];
    for r in 0..reps {
        for j in 0..nc {
            let k = (r + j) % nc;
            if errors[k].is_some() {
                continue;
            }
            let dst = root.join(format!("out{k}.bin"));
            let _ = std::fs::remove_file(&dst);
            syncfs_dir(&root)?;
            match run_child(pipe_cmd(names[k], cli, &dst), Some(&stream), measure_rss) {
                Ok(run) => {
                    samples[k].push(run.wall);
                    rss[k] = rss[k].max(run.maxrss_kib.unwrap_or(0));
                    cpu[k].push(run.cpu);
                    if let Err(e) = stream.verify(&dst) {
                        errors[k] = Some(e);
                    }
                }
                Err(e) => errors[k] = Some(e),
            }
            let _ = std::fs::remove_file(&dst);
        }
    }
    let rows = (0..nc)
        .map(|k| Row {
            name: names[k].into(),
            role: if k == 0 { "atomwrite" } else { "floor" },
            time: Summary::of(&samples[k]),
            flushes_per_op: None,
            cpu: Summary::of(&cpu[k]),
            ok: errors[k].is_none() && !samples[k].is_empty(),
            error: errors[k].clone(),
        })
        .collect();
    let rss_rows = (0..nc)
        .map(|k| RssRow {
            name: names[k].into(),
            size,
            maxrss_kib: (measure_rss && !samples[k].is_empty()).then_some(rss[k]),
            ok: errors[k].is_none() && !samples[k].is_empty(),
            error: errors[k].clone(),
        })
        .collect();
    Ok((
        Scenario {
            id: "c".into(),
            title: format!(
                "{} MiB from a pipe, {reps} interleaved repetition(s)",
                size >> 20
            ),
            rows,
        },
        rss_rows,
    ))
}

/// (d) Peak RSS of the CLI streaming each size (dd alongside for reference).
pub fn rss(base: &Path, cli: &Path, sizes: &[u64]) -> io::Result<Vec<RssRow>> {
    let mut out = Vec::new();
    for &size in sizes {
        let (_, rows) = pipe(base, cli, size, 1, true)?;
        out.extend(rows);
    }
    Ok(out)
}

/// A filesystem image, loop-mounted; unmounted and removed on drop.
pub struct LoopMount {
    /// Mount point.
    pub mnt: PathBuf,
    dev: String,
    img: PathBuf,
}

fn sh(cmd: &mut Command) -> Result<String, String> {
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

impl LoopMount {
    /// Create a sparse `size`-byte image in `base`, mkfs it as `fs`, mount it.
    pub fn new(base: &Path, fs: &str, size: u64) -> Result<LoopMount, String> {
        if !is_root() {
            return Err("needs root (loop devices, mkfs, mount)".into());
        }
        let mkfs = format!("mkfs.{fs}");
        if sh(Command::new("sh").args(["-c", &format!("command -v {mkfs}")])).is_err() {
            return Err(format!("{mkfs} not installed"));
        }
        let img = base.join(format!("{fs}.img"));
        let mnt = base.join(format!("mnt-{fs}"));
        let _ = sh(Command::new("umount").arg(&mnt));
        let f = File::create(&img).map_err(|e| e.to_string())?;
        f.set_len(size).map_err(|e| e.to_string())?;
        drop(f);
        let dev = sh(Command::new("losetup").args(["--find", "--show"]).arg(&img))?;
        let lm = LoopMount {
            mnt: mnt.clone(),
            dev: dev.clone(),
            img,
        };
        let force = if fs == "ext4" { "-F" } else { "-f" };
        sh(Command::new(&mkfs).args(["-q", force, &dev]))?;
        std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
        sh(Command::new("mount").arg(&dev).arg(&mnt))?;
        Ok(lm)
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = sh(Command::new("umount").arg(&self.mnt));
        let _ = sh(Command::new("losetup").args(["-d", &self.dev]));
        let _ = std::fs::remove_file(&self.img);
        let _ = std::fs::remove_dir(&self.mnt);
    }
}

/// Plain byte copy at equal durability: read/write 1 MiB buffers into a
/// temp, fsync, rename, fsync the directory.
pub fn byte_copy(src: &Path, dst: &Path) -> io::Result<()> {
    let dir = dst.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(".bytecopy.tmp");
    let mut r = File::open(src)?;
    let mut w = File::create(&tmp)?;
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n])?;
    }
    w.sync_all()?;
    drop(w);
    std::fs::rename(&tmp, dst)?;
    rustix::fs::fsync(open_dir_fd(dir)?)?;
    Ok(())
}

fn drop_caches() {
    rustix::fs::sync();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

/// Result of (e) on one filesystem.
#[derive(Debug, Clone, Serialize)]
pub struct CpResult {
    /// Filesystem type.
    pub fs: String,
    /// Why the filesystem could not be tested, if so.
    pub unavailable: Option<String>,
    /// Rows: "atomwrite cp" and "byte copy".
    pub rows: Vec<Row>,
}

/// (e) `atomwrite cp SRC DST` vs a byte copy of a `size`-byte file on each
/// filesystem in `fss`, page cache dropped before every sample.
pub fn cp(
    base: &Path,
    cli: Option<&Path>,
    fss: &[String],
    size: u64,
    reps: usize,
) -> Vec<CpResult> {
    let has_cp = cli.map(cli_has_cp).unwrap_or(false);
    let stream = Stream::new(size);
    let mut out = Vec::new();
    for fs in fss {
        let img_size = (3 * size).max(3 << 30);
        let lm = match LoopMount::new(base, fs, img_size) {
            Ok(m) => m,
            Err(e) => {
                out.push(CpResult {
                    fs: fs.clone(),
                    unavailable: Some(e),
                    rows: vec![],
                });
                continue;
            }
        };
        let actual = fs_type(&lm.mnt);
        let src = lm.mnt.join("src.bin");
        let prep = (|| -> io::Result<()> {
            let mut f = File::create(&src)?;
            stream.write_to(&mut f)?;
            f.sync_all()
        })();
        if let Err(e) = prep {
            out.push(CpResult {
                fs: fs.clone(),
                unavailable: Some(format!("writing source: {e}")),
                rows: vec![],
            });
            continue;
        }
        let names = ["atomwrite cp", "byte copy"];
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); 2];
        let mut errors: Vec<Option<String>> = vec![None; 2];
        if !has_cp {
            errors[0] = Some(match cli {
                Some(_) => "not available: CLI has no `cp` subcommand yet".into(),
                None => "not available: CLI not built".into(),
            });
        }
        for r in 0..reps {
            for j in 0..2 {
                let k = (r + j) % 2;
                if errors[k].is_some() {
                    continue;
                }
                let dst = lm.mnt.join(format!("dst{k}.bin"));
                let _ = std::fs::remove_file(&dst);
                drop_caches();
                let res = if k == 0 {
                    let mut c = Command::new(cli.expect("has_cp implies cli"));
                    c.args(["cp", "--durability", "full", "-q"])
                        .arg(&src)
                        .arg(&dst);
                    run_child(c, None, false).map(|r| r.wall)
                } else {
                    let t = Instant::now();
                    byte_copy(&src, &dst)
                        .map(|()| t.elapsed())
                        .map_err(|e| e.to_string())
                };
                match res {
                    Ok(d) => {
                        samples[k].push(d);
                        if let Err(e) = stream.verify(&dst) {
                            errors[k] = Some(e);
                        }
                    }
                    Err(e) => errors[k] = Some(e),
                }
                let _ = std::fs::remove_file(&dst);
            }
        }
        out.push(CpResult {
            fs: actual,
            unavailable: None,
            rows: (0..2)
                .map(|k| Row {
                    name: names[k].into(),
                    role: if k == 0 { "atomwrite" } else { "floor" },
                    time: Summary::of(&samples[k]),
                    flushes_per_op: None,
                    cpu: None,
                    ok: errors[k].is_none() && !samples[k].is_empty(),
                    error: errors[k].clone(),
                })
                .collect(),
        });
        drop(lm);
    }
    out
}
