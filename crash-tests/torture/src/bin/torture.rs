//! Process-crash torture for atomwrite: writers are SIGKILLed at random instants, then the
//! destinations are checked.
//!
//! Four writer kinds rotate in every slot: the real `atomwrite write` binary and the library
//! (`torture-writer`), each on the Linux fast path (`O_TMPFILE`) and the portable named-temp
//! path (`ATOMWRITE_PORTABLE=1`). After each kill:
//!
//! * every destination is absent (only if never written) or byte-equal to one complete
//!   self-describing version, and that version is the old one or the one being written (CLI),
//!   or the last one whose commit was reported or the next one (library) — never a prefix, a
//!   mix, an empty file or an older version;
//! * after `atomwrite clean DIR --older-than 0s` no temporary file and no stray name remains.
//!
//! Usage: `torture [--kills N] [--slots S] [--dir BASE] [--max-len BYTES] [--seed N]
//!                 [--atomwrite PATH] [--writer PATH]`
//! (`--dir` defaults to `$TEST_DIR`, else the system temp dir; binaries default to siblings of
//! this executable). Prints `torture: N passed, M failed` last and exits 1 on any violation.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use atomwrite_torture::{Rng, make_version, pick_len, temps_in, verify};

const KINDS: [&str; 4] = ["cli-fast", "cli-portable", "lib-fast", "lib-portable"];
const FILES: usize = 2;

struct Config {
    kills: u64,
    slots: usize,
    base: PathBuf,
    max_len: u64,
    seed: u64,
    atomwrite: PathBuf,
    writer: PathBuf,
}

#[derive(Default)]
struct Stats {
    cycles: AtomicU64,
    kills: AtomicU64,
    completed: AtomicU64,
    old_after_kill: AtomicU64,
    new_after_kill: AtomicU64,
    temps_cleaned: AtomicU64,
    checks_passed: AtomicU64,
    violations: AtomicU64,
}

struct Shared {
    cfg: Config,
    total_kills: AtomicU64,
    stats: [Stats; 4],
    messages: Mutex<Vec<String>>,
}

impl Shared {
    fn violation(&self, kind: usize, msg: String) {
        self.stats[kind].violations.fetch_add(1, Relaxed);
        let mut m = self.messages.lock().unwrap();
        if m.len() < 50 {
            eprintln!("VIOLATION [{}] {msg}", KINDS[kind]);
        }
        m.push(msg);
    }
}

fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().unwrap().join(name)
}

fn parse_args() -> Config {
    let mut cfg = Config {
        kills: 10_000,
        slots: 6,
        base: std::env::var_os("TEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir),
        max_len: 1 << 20,
        seed: Rng::from_entropy().next_u64(),
        atomwrite: sibling("atomwrite"),
        writer: sibling("torture-writer"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--kills" => cfg.kills = val().parse().unwrap_or_else(|_| usage("--kills N")),
            "--slots" => cfg.slots = val().parse().unwrap_or_else(|_| usage("--slots N")),
            "--dir" => cfg.base = PathBuf::from(val()),
            "--max-len" => cfg.max_len = val().parse().unwrap_or_else(|_| usage("--max-len N")),
            "--seed" => cfg.seed = val().parse().unwrap_or_else(|_| usage("--seed N")),
            "--atomwrite" => cfg.atomwrite = PathBuf::from(val()),
            "--writer" => cfg.writer = PathBuf::from(val()),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    cfg
}

fn usage(msg: &str) -> ! {
    eprintln!("torture: {msg}");
    eprintln!(
        "usage: torture [--kills N] [--slots S] [--dir BASE] [--max-len BYTES] [--seed N] \
         [--atomwrite PATH] [--writer PATH]"
    );
    std::process::exit(2);
}

/// Per (slot, kind): the directory and what each destination holds now.
struct Lane {
    dir: PathBuf,
    scratch: PathBuf,
    cur: [u64; FILES],
    /// Estimated run time of one uninterrupted write (CLI: per payload size class) used to
    /// spread the kill instants over the whole write.
    est: Duration,
    est_cli: [Duration; 3],
    nc_counter: u64,
}

fn main() {
    let cfg = parse_args();
    for p in [&cfg.atomwrite, &cfg.writer] {
        if !p.is_file() {
            eprintln!(
                "torture: {} not found (build with --release first)",
                p.display()
            );
            println!("torture: 0 passed, 1 failed");
            std::process::exit(1);
        }
    }
    let root = cfg
        .base
        .join(format!("atomwrite-torture.{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("create torture dir");
    println!(
        "torture: {} kills target, {} slots, max payload {} bytes, seed {}, dir {}",
        cfg.kills,
        cfg.slots,
        cfg.max_len,
        cfg.seed,
        root.display()
    );
    let shared = Shared {
        cfg,
        total_kills: AtomicU64::new(0),
        stats: Default::default(),
        messages: Mutex::new(Vec::new()),
    };
    let started = Instant::now();
    std::thread::scope(|s| {
        for slot in 0..shared.cfg.slots {
            let shared = &shared;
            let root = root.clone();
            s.spawn(move || run_slot(shared, slot, &root));
        }
    });
    let elapsed = started.elapsed();
    let (mut passed, mut failed, mut kills) = (0, 0, 0);
    for (k, st) in shared.stats.iter().enumerate() {
        println!(
            "torture: {:<13} cycles {:>6}  kills {:>6}  (dest old {:>5}, new {:>5})  completed {:>5}  temps cleaned {:>5}  violations {}",
            KINDS[k],
            st.cycles.load(Relaxed),
            st.kills.load(Relaxed),
            st.old_after_kill.load(Relaxed),
            st.new_after_kill.load(Relaxed),
            st.completed.load(Relaxed),
            st.temps_cleaned.load(Relaxed),
            st.violations.load(Relaxed),
        );
        passed += st.checks_passed.load(Relaxed);
        failed += st.violations.load(Relaxed);
        kills += st.kills.load(Relaxed);
    }
    if failed == 0 {
        let _ = std::fs::remove_dir_all(&root);
    } else {
        println!("torture: evidence kept in {}", root.display());
    }
    if kills < shared.cfg.kills {
        failed += 1;
        println!(
            "torture: only {kills} kills landed (target {})",
            shared.cfg.kills
        );
    }
    println!(
        "torture: {kills} kills, {failed} violations in {:.1}s",
        elapsed.as_secs_f64()
    );
    println!("torture: {passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

fn run_slot(sh: &Shared, slot: usize, root: &Path) {
    let mut rng = Rng(sh.cfg.seed ^ (slot as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut lanes: Vec<Lane> = KINDS
        .iter()
        .map(|k| {
            let dir = root.join(format!("s{slot}-{k}"));
            let scratch = root.join(format!("s{slot}-{k}-scratch"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::create_dir_all(&scratch).unwrap();
            Lane {
                dir,
                scratch,
                cur: [0; FILES],
                est: Duration::from_millis(3),
                est_cli: [Duration::from_millis(3); 3],
                nc_counter: 0,
            }
        })
        .collect();
    let mut cycle = slot;
    while sh.total_kills.load(Relaxed) < sh.cfg.kills {
        let kind = cycle % KINDS.len();
        cycle += 1;
        sh.stats[kind].cycles.fetch_add(1, Relaxed);
        let lane = &mut lanes[kind];
        let ok = if kind < 2 {
            cli_cycle(sh, kind, lane, &mut rng, kind == 1)
        } else {
            lib_cycle(sh, kind, lane, &mut rng, kind == 3)
        };
        let ok = ok && clean_and_check(sh, kind, lane);
        if ok {
            sh.stats[kind].checks_passed.fetch_add(1, Relaxed);
        }
    }
}

fn note_kill(sh: &Shared, kind: usize) {
    sh.stats[kind].kills.fetch_add(1, Relaxed);
    sh.total_kills.fetch_add(1, Relaxed);
}

fn read_opt(p: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// One `atomwrite write` run, killed at a random instant (or let finish).
fn cli_cycle(sh: &Shared, kind: usize, lane: &mut Lane, rng: &mut Rng, portable: bool) -> bool {
    let no_clobber = rng.below(8) == 0;
    let (i, name, old) = if no_clobber {
        lane.nc_counter += 1;
        (7u32, format!("n{}", lane.nc_counter), 0)
    } else {
        let i = rng.below(FILES as u64) as usize;
        (i as u32, format!("d{i}"), lane.cur[i])
    };
    let dst = lane.dir.join(&name);
    let new = old + 1;
    let len = pick_len(rng, sh.cfg.max_len);
    let bytes = make_version(i, new, len, rng.next_u64());
    let durability = ["full", "integrity", "none"][rng.below(3) as usize];
    let mut cmd = Command::new(&sh.cfg.atomwrite);
    cmd.args(["write", "-q", "--durability", durability]);
    if no_clobber {
        cmd.arg("--no-clobber");
    }
    if portable {
        cmd.env("ATOMWRITE_PORTABLE", "1");
    } else {
        cmd.env_remove("ATOMWRITE_PORTABLE");
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let input = rng.below(3);
    let src = lane.scratch.join("input");
    if input > 0 {
        std::fs::write(&src, &bytes).unwrap();
    }
    match input {
        0 => {
            cmd.stdin(Stdio::piped());
        }
        1 => {
            cmd.stdin(std::fs::File::open(&src).unwrap());
        }
        _ => {
            cmd.arg("--from").arg(&src).stdin(Stdio::null());
        }
    }
    cmd.arg(&dst);
    let class = match len {
        0..4096 => 0,
        4096..135_168 => 1,
        _ => 2,
    };
    let est = &mut lane.est_cli[class];
    let delay = Duration::from_nanos(rng.below(est.as_nanos() as u64 + 1));
    let t0 = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            sh.violation(kind, format!("spawn atomwrite: {e}"));
            return false;
        }
    };
    let feeder = child.stdin.take().map(|mut w| {
        let b = bytes.clone();
        std::thread::spawn(move || {
            let _ = w.write_all(&b);
        })
    });
    std::thread::sleep(delay);
    let _ = child.kill();
    let status = child.wait().expect("wait");
    let ran = t0.elapsed();
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let killed = status.signal() == Some(9);
    if killed {
        note_kill(sh, kind);
        // Converges on the real run time from below, so kill instants cover the whole write.
        *est = (*est).max(ran.mul_f64(1.05));
    } else {
        sh.stats[kind].completed.fetch_add(1, Relaxed);
        *est = est.mul_f64(0.95) + ran.mul_f64(0.05);
        if status.code() != Some(0) {
            sh.violation(
                kind,
                format!(
                    "{} exited with {status} without a kill: {}",
                    dst.display(),
                    err.trim()
                ),
            );
            return false;
        }
    }
    let got = match read_opt(&dst) {
        Ok(g) => g,
        Err(e) => {
            sh.violation(kind, format!("read {}: {e}", dst.display()));
            return false;
        }
    };
    let seen = match got {
        None if old == 0 && killed => 0,
        None => {
            sh.violation(
                kind,
                format!(
                    "{} vanished (had version {old}, killed={killed})",
                    dst.display()
                ),
            );
            return false;
        }
        Some(b) => match verify(&b) {
            Ok(h) if h.file_id == i && (h.version == new || (killed && h.version == old)) => {
                h.version
            }
            Ok(h) => {
                sh.violation(
                    kind,
                    format!(
                        "{} holds file {} version {}; expected file {i} version {old} or {new} (killed={killed})",
                        dst.display(),
                        h.file_id,
                        h.version
                    ),
                );
                return false;
            }
            Err(e) => {
                sh.violation(kind, format!("{}: {e} (killed={killed})", dst.display()));
                return false;
            }
        },
    };
    if killed {
        if seen == new {
            sh.stats[kind].new_after_kill.fetch_add(1, Relaxed);
        } else {
            sh.stats[kind].old_after_kill.fetch_add(1, Relaxed);
        }
    }
    if no_clobber {
        let _ = std::fs::remove_file(&dst);
    } else {
        lane.cur[i as usize] = seen;
    }
    true
}

/// One library writer process writing versions in a loop, killed at a random instant.
fn lib_cycle(sh: &Shared, kind: usize, lane: &mut Lane, rng: &mut Rng, portable: bool) -> bool {
    let mut cmd = Command::new(&sh.cfg.writer);
    cmd.arg(&lane.dir)
        .arg(FILES.to_string())
        .arg(rng.next_u64().to_string())
        .arg(sh.cfg.max_len.to_string());
    if portable {
        cmd.arg("portable");
    }
    cmd.env_remove("ATOMWRITE_PORTABLE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Half the kills early (around start-up and the first commit), half spread over several
    // versions.
    let span_ns = if rng.below(2) == 0 {
        lane.est.as_nanos() as u64 * 2
    } else {
        lane.est.as_nanos() as u64 * 8
    };
    let delay = Duration::from_nanos(rng.below(span_ns + 1));
    let t0 = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            sh.violation(kind, format!("spawn writer: {e}"));
            return false;
        }
    };
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    std::thread::sleep(delay);
    let _ = child.kill();
    let status = child.wait().expect("wait");
    let ran = t0.elapsed();
    let out = reader.join().unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if status.signal() != Some(9) {
        sh.violation(kind, format!("writer exited with {status}: {}", err.trim()));
        return false;
    }
    note_kill(sh, kind);
    let mut last = lane.cur;
    let mut commits = 0u64;
    for line in out.lines() {
        let mut w = line.split_whitespace();
        if let (Some("C"), Some(i), Some(v)) = (w.next(), w.next(), w.next()) {
            let (i, v): (usize, u64) = (i.parse().unwrap(), v.parse().unwrap());
            if v != last[i] + 1 {
                sh.violation(
                    kind,
                    format!("writer reported f{i} v{v} after v{}", last[i]),
                );
                return false;
            }
            last[i] = v;
            commits += 1;
        }
    }
    // The first version typically takes the start-up plus one write: learn the time of a cycle.
    let per = ran.checked_div(commits.max(1) as u32 + 1).unwrap_or(ran);
    lane.est = lane.est.mul_f64(0.9) + per.max(Duration::from_micros(500)).mul_f64(0.1);
    let mut ok = true;
    let mut any_new = false;
    for (i, &l) in last.iter().enumerate() {
        let p = lane.dir.join(format!("f{i}"));
        let got = match read_opt(&p) {
            Ok(g) => g,
            Err(e) => {
                sh.violation(kind, format!("read {}: {e}", p.display()));
                ok = false;
                continue;
            }
        };
        match got {
            None if l == 0 => {}
            None => {
                sh.violation(
                    kind,
                    format!("{} absent but version {l} was committed", p.display()),
                );
                ok = false;
            }
            Some(b) => match verify(&b) {
                Ok(h) if h.file_id == i as u32 && (h.version == l || h.version == l + 1) => {
                    if h.version == l + 1 {
                        any_new = true;
                    }
                    lane.cur[i] = h.version;
                }
                Ok(h) => {
                    sh.violation(
                        kind,
                        format!(
                            "{} holds file {} version {}; last committed {l}, so {l} or {} expected",
                            p.display(),
                            h.file_id,
                            h.version,
                            l + 1
                        ),
                    );
                    ok = false;
                }
                Err(e) => {
                    sh.violation(kind, format!("{}: {e}", p.display()));
                    ok = false;
                }
            },
        }
    }
    if any_new {
        sh.stats[kind].new_after_kill.fetch_add(1, Relaxed);
    } else {
        sh.stats[kind].old_after_kill.fetch_add(1, Relaxed);
    }
    ok
}

/// `atomwrite clean DIR --older-than 0s`, then: no temp, no stray name.
fn clean_and_check(sh: &Shared, kind: usize, lane: &Lane) -> bool {
    let before = temps_in(&lane.dir).map(|v| v.len()).unwrap_or(0);
    let out = Command::new(&sh.cfg.atomwrite)
        .args(["clean", "-q", "--older-than", "0s"])
        .arg(&lane.dir)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            sh.violation(
                kind,
                format!(
                    "atomwrite clean {} exited {}: {}",
                    lane.dir.display(),
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            );
            return false;
        }
        Err(e) => {
            sh.violation(kind, format!("spawn atomwrite clean: {e}"));
            return false;
        }
    }
    sh.stats[kind]
        .temps_cleaned
        .fetch_add(before as u64, Relaxed);
    let allowed: BTreeSet<OsString> = (0..FILES)
        .flat_map(|i| [format!("d{i}"), format!("f{i}")])
        .map(OsString::from)
        .collect();
    let mut stray = Vec::new();
    for e in std::fs::read_dir(&lane.dir).unwrap() {
        let n = e.unwrap().file_name();
        if !allowed.contains(&n) {
            stray.push(n);
        }
    }
    if stray.is_empty() {
        true
    } else {
        sh.violation(
            kind,
            format!(
                "after clean, {} still holds {:?}",
                lane.dir.display(),
                stray
            ),
        );
        false
    }
}
