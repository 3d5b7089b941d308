//! Guest program of the atomwrite kernel-crash tests (see `README.md`).
//!
//! Inside the VM the init script runs it with no arguments; it then reads its
//! configuration from the kernel command line (`awvm.KEY=VALUE`) and reports
//! on `/dev/kmsg`, so every line reaches the serial console synchronously,
//! before any crash. On a host (tests), `KEY=VALUE` arguments replace the
//! kernel command line and reports go to stdout.
//!
//! Modes:
//! - `write`: write versions 1, 2, 3, … of `DIR/NAME` with atomwrite
//!   (`Durability::Full` unless told otherwise), print `BEGIN v` before each
//!   and `COMMITTED v` after each `commit()` returned, and crash the kernel
//!   through `/proc/sysrq-trigger` at the chosen point.
//! - `check`: after the reboot, verify that `DIR/NAME` is exactly one
//!   complete version `v` with `MIN <= v <= MAX`, inspect every leftover
//!   entry, run `atomwrite::clean` and verify again. Prints `VERDICT OK` or
//!   `VERDICT FAIL ...`.

mod format;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use atomwrite::{Durability, Options};
use format::Verdict;

/// Where a crash is injected during `write` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crash {
    /// Right after `commit()` of version N returned (and was reported).
    AfterCommit(u64),
    /// After every byte of version N was written, before `commit()`.
    BeforeCommit(u64),
    /// Version N is made 16 MiB; crash once half of it is written.
    MidWrite(u64),
    /// A second thread crashes the kernel after this many milliseconds,
    /// wherever the writer happens to be.
    Random(u64),
    /// No crash: write N versions and exit normally (host tests, controls).
    None(u64),
}

impl Crash {
    fn parse(s: &str) -> Result<Crash, String> {
        let (kind, n) = s
            .split_once(':')
            .ok_or_else(|| format!("crash spec `{s}`: expected KIND:N"))?;
        let n: u64 = n
            .parse()
            .map_err(|e| format!("crash spec `{s}`: bad number: {e}"))?;
        match kind {
            "after-commit" => Ok(Crash::AfterCommit(n)),
            "before-commit" => Ok(Crash::BeforeCommit(n)),
            "mid-write" => Ok(Crash::MidWrite(n)),
            "random" => Ok(Crash::Random(n)),
            "none" => Ok(Crash::None(n)),
            _ => Err(format!("crash spec `{s}`: unknown kind `{kind}`")),
        }
    }
}

/// Size of the version written for a `mid-write` crash point.
const MID_WRITE_SIZE: usize = 16 << 20;
/// Chunk size of each `write` call.
const CHUNK: usize = 64 << 10;

/// Where report lines go.
enum Sink {
    /// `/dev/kmsg` at level 2 (crit): printed on the console even with
    /// `quiet`, synchronously, and flushed by the kernel on panic.
    Kmsg(File),
    Stdout,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Print one report line `AWVM <line>`.
fn emit(line: &str) {
    let mut guard = SINK.lock().unwrap_or_else(|e| e.into_inner());
    match guard.as_mut() {
        Some(Sink::Kmsg(f)) => {
            // One write(2) = one record; the kernel prints it before returning.
            let _ = f.write_all(format!("<2>AWVM {line}\n").as_bytes());
        }
        _ => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "AWVM {line}");
            let _ = out.flush();
        }
    }
}

/// Crash the running kernel now: no sync, no unmount, page cache lost.
fn crash_kernel(reason: &str) -> ! {
    emit(&format!("CRASH {reason}"));
    let res = OpenOptions::new()
        .write(true)
        .open("/proc/sysrq-trigger")
        .and_then(|mut f| f.write_all(b"c"));
    // Only reached if the trigger is unavailable (not root, not in the VM).
    emit(&format!("ERROR sysrq crash did not happen: {res:?}"));
    std::process::exit(3);
}

struct Config {
    map: BTreeMap<String, String>,
}

impl Config {
    /// From `KEY=VALUE` arguments, or else from `awvm.KEY=VALUE` words of
    /// the kernel command line. Returns the config and whether it came from
    /// the kernel (i.e. we run inside the VM).
    fn load() -> Result<(Config, bool), String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut map = BTreeMap::new();
        let from_kernel = args.is_empty();
        if from_kernel {
            let cmdline = fs::read_to_string("/proc/cmdline")
                .map_err(|e| format!("no arguments and cannot read /proc/cmdline: {e}"))?;
            for word in cmdline.split_whitespace() {
                if let Some(kv) = word.strip_prefix("awvm.")
                    && let Some((k, v)) = kv.split_once('=')
                {
                    map.insert(k.to_string(), v.to_string());
                }
            }
        } else {
            for a in args {
                let (k, v) = a
                    .split_once('=')
                    .ok_or_else(|| format!("argument `{a}`: expected KEY=VALUE"))?;
                map.insert(k.to_string(), v.to_string());
            }
        }
        Ok((Config { map }, from_kernel))
    }

    fn get(&self, k: &str, default: &str) -> String {
        self.map
            .get(k)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    fn num(&self, k: &str, default: u64) -> Result<u64, String> {
        match self.map.get(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("{k}={v}: {e}")),
        }
    }
}

fn main() -> ExitCode {
    let (cfg, in_vm) = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("atomwrite-vm-guest: {e}");
            return ExitCode::from(2);
        }
    };
    let sink = if in_vm || cfg.get("out", "stdout") == "kmsg" {
        match OpenOptions::new().write(true).open("/dev/kmsg") {
            Ok(f) => Sink::Kmsg(f),
            Err(_) => Sink::Stdout,
        }
    } else {
        Sink::Stdout
    };
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    let res = match cfg.get("mode", "").as_str() {
        "write" => run_write(&cfg),
        "check" => run_check(&cfg),
        m => Err(format!("unknown mode `{m}` (expected write or check)")),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            emit(&format!("ERROR {e}"));
            ExitCode::from(1)
        }
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fsync_dir(p: &Path) -> Result<(), String> {
    File::open(p)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("fsync dir {}: {e}", p.display()))
}

fn run_write(cfg: &Config) -> Result<ExitCode, String> {
    let dir = PathBuf::from(cfg.get("dir", "/mnt/awvm"));
    let dest = dir.join(cfg.get("name", "data.bin"));
    let seed = cfg.num("seed", 1)?;
    let crash = Crash::parse(&cfg.get("crash", "none:10"))?;
    let durability = match cfg.get("durability", "full").as_str() {
        "full" => Durability::Full,
        "integrity" => Durability::Integrity,
        "none" => Durability::None,
        d => {
            return Err(format!(
                "durability `{d}`: expected full, integrity or none"
            ));
        }
    };
    // `linux`: O_TMPFILE + linkat fast path; `portable`: named temporary
    // file + renameat, the path non-Linux systems take (and which can leave
    // a temp behind on a crash, for the checker and `clean` to handle).
    let portable = match cfg.get("path", "linux").as_str() {
        "linux" => false,
        "portable" => true,
        p => return Err(format!("path `{p}`: expected linux or portable")),
    };
    // The test directory itself is made durable before the first version,
    // so the test is about the file, not about mkdir.
    if !dir.exists() {
        fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        if let Some(parent) = dir.parent() {
            fsync_dir(parent)?;
        }
    }
    fsync_dir(&dir)?;
    emit(&format!(
        "READY mode=write dest={} seed={seed} crash={crash:?} durability={durability:?} portable={portable}",
        dest.display()
    ));
    let start = Instant::now();
    if let Crash::Random(ms) = crash {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            crash_kernel(&format!("random after {ms} ms"));
        });
    }
    let opts = Options::new().durability(durability).portable(portable);
    for v in 1u64.. {
        let size = match crash {
            Crash::MidWrite(n) if n == v => MID_WRITE_SIZE,
            _ => format::size_for(seed, v),
        };
        let content = format::encode(seed, v, size);
        emit(&format!("BEGIN v={v} size={size}"));
        let mut f = opts.open(&dest).map_err(|e| format!("open v{v}: {e}"))?;
        let mut written = 0usize;
        for chunk in content.chunks(CHUNK) {
            f.write_all(chunk)
                .map_err(|e| format!("write v{v} at {written}: {e}"))?;
            written += chunk.len();
            if crash == Crash::MidWrite(v) && written >= size / 2 {
                crash_kernel(&format!("mid-write v={v} written={written} of {size}"));
            }
        }
        if crash == Crash::BeforeCommit(v) {
            crash_kernel(&format!("before-commit v={v}"));
        }
        let receipt = f.commit().map_err(|e| format!("commit v{v}: {e}"))?;
        if receipt.size != size as u64 {
            return Err(format!(
                "commit v{v}: receipt says {} bytes, wrote {size}",
                receipt.size
            ));
        }
        if let Some(sum) = &receipt.sha256 {
            let want = hex_sha256(&content);
            if *sum != want {
                return Err(format!("commit v{v}: receipt sha256 {sum}, content {want}"));
            }
        }
        emit(&format!(
            "COMMITTED v={v} size={size} t_ms={}",
            start.elapsed().as_millis()
        ));
        match crash {
            Crash::AfterCommit(n) if n == v => crash_kernel(&format!("after-commit v={v}")),
            Crash::None(n) if n == v => {
                emit(&format!("DONE versions={v}"));
                return Ok(ExitCode::SUCCESS);
            }
            _ => {}
        }
        if v > 1_000_000 {
            break;
        }
    }
    Err("wrote 1000000 versions without reaching the crash point".into())
}

/// Result of inspecting the test directory after a reboot.
struct Inspection {
    dest: Option<Verdict>,
    dest_bytes: Option<Vec<u8>>,
    leftovers: Vec<(String, String)>,
}

fn inspect(dir: &Path, name: &str, seed: u64) -> Result<Inspection, String> {
    let mut ins = Inspection {
        dest: None,
        dest_bytes: None,
        leftovers: Vec::new(),
    };
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ins),
        Err(e) => return Err(format!("read_dir {}: {e}", dir.display())),
    };
    let mut names: Vec<String> = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| format!("read_dir {}: {e}", dir.display()))?;
        names.push(ent.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    for n in names {
        let p = dir.join(&n);
        let md = fs::symlink_metadata(&p).map_err(|e| format!("lstat {}: {e}", p.display()))?;
        if n == name {
            if !md.file_type().is_file() {
                ins.dest = Some(Verdict::BadMagic);
                ins.leftovers.push((
                    n,
                    format!("destination is not a regular file: {:?}", md.file_type()),
                ));
                continue;
            }
            let bytes = fs::read(&p).map_err(|e| format!("read {}: {e}", p.display()))?;
            ins.dest = Some(format::verify(&bytes, seed));
            ins.dest_bytes = Some(bytes);
        } else {
            let what = if md.file_type().is_file() {
                let bytes = fs::read(&p).map_err(|e| format!("read {}: {e}", p.display()))?;
                format!("{} bytes, {}", bytes.len(), format::verify(&bytes, seed))
            } else {
                format!("{:?}", md.file_type())
            };
            ins.leftovers.push((n, what));
        }
    }
    Ok(ins)
}

fn run_check(cfg: &Config) -> Result<ExitCode, String> {
    let dir = PathBuf::from(cfg.get("dir", "/mnt/awvm"));
    let name = cfg.get("name", "data.bin");
    let seed = cfg.num("seed", 1)?;
    let min = cfg.num("min", 0)?;
    let max = cfg.num("max", u64::MAX)?;
    let mut violations: Vec<String> = Vec::new();

    let ins = inspect(&dir, &name, seed)?;
    let found = match &ins.dest {
        None => {
            if min > 0 {
                violations.push(format!("destination missing but v{min} was committed"));
            }
            "absent".to_string()
        }
        Some(Verdict::Intact { version, len }) => {
            if *version < min {
                violations.push(format!(
                    "stale: found v{version} but v{min} was reported committed"
                ));
            }
            if *version > max {
                violations.push(format!("found v{version} but only up to v{max} was begun"));
            }
            format!("v{version} ({len} bytes)")
        }
        Some(bad) => {
            violations.push(format!("destination not one complete version: {bad}"));
            bad.to_string()
        }
    };
    // Leftovers are allowed only as hidden temporaries: a crashed writer may
    // leave one, but it must never be (or look like) the destination.
    for (n, what) in &ins.leftovers {
        emit(&format!("LEFTOVER {n}: {what}"));
        if !n.starts_with('.') {
            violations.push(format!("unexpected visible entry `{n}` ({what})"));
        }
    }
    emit(&format!(
        "CHECK dest={found} min={min} max={} leftovers={}",
        if max == u64::MAX {
            "-".to_string()
        } else {
            max.to_string()
        },
        ins.leftovers.len()
    ));

    // atomwrite::clean must remove what the crashed writer left and must
    // not touch the destination.
    if dir.exists() {
        match atomwrite::clean(&dir, Duration::ZERO) {
            Err(e) => violations.push(format!("clean failed: {e}")),
            Ok(_) => {
                let after = inspect(&dir, &name, seed)?;
                if after.dest_bytes != ins.dest_bytes {
                    violations.push("clean changed the destination".to_string());
                }
                for (n, what) in &after.leftovers {
                    violations.push(format!("clean left `{n}` ({what})"));
                }
                emit(&format!(
                    "CLEAN removed={} remaining={}",
                    ins.leftovers.len() - after.leftovers.len().min(ins.leftovers.len()),
                    after.leftovers.len()
                ));
            }
        }
    }

    if violations.is_empty() {
        emit("VERDICT OK");
        Ok(ExitCode::SUCCESS)
    } else {
        emit(&format!("VERDICT FAIL {}", violations.join("; ")));
        Ok(ExitCode::from(1))
    }
}
