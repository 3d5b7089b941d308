//! `atomwrite-bench`: atomwrite vs `atomic-write-file`, `atomicwrites`,
//! `tempfile` and the minimal syscall sequence, at equal durability, on one
//! filesystem, in one run. See `BENCHMARKS.md` at the repository root.

mod bench;
mod cli;
mod contenders;
mod scale;
mod slowflush;
mod stats;
mod syscalls;
mod util;

use bench::{Row, Scenario};
use clap::{Parser, Subcommand};
use serde::Serialize;
use stats::fmt_us;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(name = "atomwrite-bench", about = "Durable atomic write benchmarks")]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Directory on the filesystem to test (default: $TEST_DIR, else target/bench-tmp).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// Small iteration counts (CI smoke; every contender still verified).
    #[arg(long, global = true)]
    quick: bool,
    /// Print results as JSON on stdout (the smoke summary goes to stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Scenarios to run: a,b,c,d,e (see BENCHMARKS.md), s (strace lists),
    /// f (a and b again on ext4 over an emulated slow-flush device).
    #[arg(long, default_value = "a,b,c,d,e,s,f")]
    only: String,
    /// (a) writes per contender [300; quick 20].
    #[arg(long)]
    single_n: Option<usize>,
    /// (b) files per batch [1000; quick 50].
    #[arg(long)]
    batch_files: Option<usize>,
    /// (b) rounds [5; quick 1].
    #[arg(long)]
    batch_rounds: Option<usize>,
    /// Threads for the parallel-fsync floor batch.
    #[arg(long, global = true, default_value_t = 16)]
    par_threads: usize,
    /// (c) MiB streamed [1024; quick 16].
    #[arg(long)]
    pipe_mib: Option<u64>,
    /// (c) repetitions [3; quick 1].
    #[arg(long)]
    pipe_reps: Option<usize>,
    /// (d) sizes in MiB [16,256,1024; quick 16,64].
    #[arg(long, value_delimiter = ',')]
    rss_mib: Option<Vec<u64>>,
    /// (e) file size in MiB [1024; quick 32].
    #[arg(long)]
    cp_mib: Option<u64>,
    /// (e) repetitions [3; quick 1].
    #[arg(long)]
    cp_reps: Option<usize>,
    /// (e) filesystems to loop-mount.
    #[arg(long, value_delimiter = ',', default_value = "btrfs,xfs,ext4")]
    cp_fs: Vec<String>,
    /// (f) added latency per device flush, ms [0,1,4; quick 2].
    #[arg(long, value_delimiter = ',')]
    flush_delays_ms: Option<Vec<f64>>,
    /// (f) single writes per contender [60; quick 10].
    #[arg(long)]
    slow_single_n: Option<usize>,
    /// (f) files per batch [300; quick 20].
    #[arg(long)]
    slow_batch_files: Option<usize>,
    /// (f) batch rounds [3; quick 1].
    #[arg(long)]
    slow_batch_rounds: Option<usize>,
    /// The atomwrite CLI binary (default: next to this binary).
    #[arg(long)]
    cli: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the benchmark (the default).
    Run,
    /// Do one warmed-up write with IMPL between markers (for `strace -f`).
    Syscalls {
        /// Contender name (see `list`).
        name: String,
        /// Files, for batch contenders.
        #[arg(long, default_value_t = 3)]
        files: usize,
    },
    /// List contender names.
    List,
    /// Cost as the work grows (see BENCHMARKS.md, "Scale"): cp of many files, publish --dir
    /// of a tree, publish/latest/verify with a long history, SHA-256 alone; each beside its
    /// floor.
    Scale {
        /// Files per cp [1000,10000,100000; quick 100,1000]; 0 skips the part.
        #[arg(long, value_delimiter = ',')]
        files: Option<Vec<usize>>,
        /// Files per published tree [1000,10000; quick 200]; 0 skips the part.
        #[arg(long, value_delimiter = ',')]
        trees: Option<Vec<usize>>,
        /// Versions already published [10,1000,100000; quick 10,100]; 0 skips the part.
        #[arg(long, value_delimiter = ',')]
        versions: Option<Vec<usize>>,
        /// Repetitions per point [3; quick 1].
        #[arg(long)]
        reps: Option<usize>,
    },
    /// (internal) The floor streaming writer of scenario (c): stdin → DST.
    StreamFloor {
        /// Destination.
        dst: PathBuf,
    },
    /// (internal) The `cp` floor of `scale` as a process of its own: copies SRC/0 … SRC/N-1
    /// into the directory DST (see BENCHMARKS.md, "Scale").
    CpFloor {
        /// Source directory (files named 0 … N-1).
        src: PathBuf,
        /// Destination directory.
        dst: PathBuf,
        /// Number of files.
        n: usize,
    },
}

#[derive(Serialize)]
struct Report {
    machine: util::Machine,
    /// Device flushes completed during the run and their mean latency (ms).
    flushes_during_run: Option<(u64, f64)>,
    features: Vec<&'static str>,
    scenarios: Vec<Scenario>,
    rss: Vec<cli::RssRow>,
    cp: Vec<cli::CpResult>,
    slowflush: Vec<slowflush::SlowResult>,
    syscalls: Vec<syscalls::Trace>,
    skipped: Vec<String>,
    passed: usize,
    failed: usize,
}

fn default_dir() -> PathBuf {
    if let Ok(d) = std::env::var("TEST_DIR") {
        return PathBuf::from(d).join("atomwrite-bench");
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent().map(|t| t.join("bench-tmp")))
        .unwrap_or_else(|| PathBuf::from("target/bench-tmp"))
}

fn features() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "atomwrite") {
        v.push("atomwrite");
    }
    if cfg!(feature = "batch") {
        v.push("batch");
    }
    v
}

/// Batches keep one descriptor per file open: lift the soft NOFILE limit.
fn raise_nofile() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}

fn main() {
    raise_nofile();
    let args = Args::parse();
    let dir = args.dir.clone().unwrap_or_else(default_dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("atomwrite-bench: cannot create {}: {e}", dir.display());
        std::process::exit(2);
    }
    match &args.cmd {
        Some(Cmd::StreamFloor { dst }) => {
            if let Err(e) = cli::stream_floor(dst) {
                eprintln!("atomwrite-bench stream-floor: {e}");
                std::process::exit(1);
            }
        }
        Some(Cmd::CpFloor { src, dst, n }) => {
            if let Err(e) = scale::floor_cp(src, dst, *n) {
                eprintln!("atomwrite-bench cp-floor: {e}");
                std::process::exit(1);
            }
        }
        Some(Cmd::List) => {
            for n in syscalls::names(args.par_threads) {
                println!("{n}");
            }
        }
        Some(Cmd::Syscalls { name, files }) => {
            if let Err(e) = syscalls::run_one(&dir, name, *files, args.par_threads) {
                eprintln!("atomwrite-bench syscalls: {e}");
                std::process::exit(1);
            }
        }
        Some(Cmd::Scale {
            files,
            trees,
            versions,
            reps,
        }) => {
            let q = args.quick;
            let plan = scale::Plan {
                files: files.clone().unwrap_or(if q {
                    vec![100, 1000]
                } else {
                    vec![1000, 10_000, 100_000]
                }),
                trees: trees
                    .clone()
                    .unwrap_or(if q { vec![200] } else { vec![1000, 10_000] }),
                versions: versions.clone().unwrap_or(if q {
                    vec![10, 100]
                } else {
                    vec![10, 1000, 100_000]
                }),
                reps: reps.unwrap_or(if q { 1 } else { 3 }),
            };
            let mut plan = plan;
            for v in [&mut plan.files, &mut plan.trees, &mut plan.versions] {
                v.retain(|n| *n > 0);
            }
            let cli = match cli::find_cli(args.cli.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("atomwrite-bench scale: {e}");
                    std::process::exit(2);
                }
            };
            let m = util::machine(&dir);
            println!(
                "- date: {}\n- machine: {} × {} ({}), kernel {}\n- directory: `{}` — {} ({})\n- load average at the start: {}\n",
                m.date, m.nproc, m.cpu, m.mem, m.kernel, m.dir, m.fs, m.device, m.loadavg
            );
            match scale::run(&dir, &cli, &plan) {
                Ok(()) => {}
                Err(e) => {
                    eprintln!("atomwrite-bench scale: {e}");
                    std::process::exit(1);
                }
            }
        }
        Some(Cmd::Run) | None => std::process::exit(run(&args, &dir)),
    }
}

fn run(args: &Args, dir: &Path) -> i32 {
    let q = args.quick;
    let only: Vec<&str> = args.only.split(',').map(str::trim).collect();
    let want = |s: &str| only.contains(&s);
    let mut scenarios = Vec::new();
    let mut rss = Vec::new();
    let mut cp = Vec::new();
    let mut traces = Vec::new();
    let mut skipped = Vec::new();
    let mut hard_errors = 0usize;
    let log = |m: &str| eprintln!("[atomwrite-bench] {m}");
    let flush_counter = util::FlushCounter::for_path(dir);
    let flush_start = flush_counter.read_with_ms();
    if !cfg!(feature = "atomwrite") {
        skipped.push("atomwrite library: built without the `atomwrite` feature".into());
    }
    if !cfg!(feature = "batch") {
        skipped.push("atomwrite Batch: built without the `batch` feature".into());
    }
    if want("a") {
        let n = args.single_n.unwrap_or(if q { 20 } else { 300 });
        log(&format!("(a) {n} single 4 KiB writes per contender"));
        match bench::single(dir, n, 4096) {
            Ok(s) => scenarios.push(s),
            Err(e) => {
                log(&format!("(a) aborted: {e}"));
                hard_errors += 1;
            }
        }
    }
    if want("b") {
        let files = args.batch_files.unwrap_or(if q { 50 } else { 1000 });
        let rounds = args.batch_rounds.unwrap_or(if q { 1 } else { 5 });
        log(&format!("(b) batches of {files} files × {rounds} rounds"));
        match bench::batch(dir, files, 4096, rounds, args.par_threads) {
            Ok(s) => scenarios.push(s),
            Err(e) => {
                log(&format!("(b) aborted: {e}"));
                hard_errors += 1;
            }
        }
    }
    let cli_path = if want("c") || want("d") || want("e") {
        match cli::find_cli(args.cli.as_deref()) {
            Ok(p) => Some(p),
            Err(e) => {
                skipped.push(format!("(c)/(d)/(e) atomwrite CLI: not available: {e}"));
                None
            }
        }
    } else {
        None
    };
    if let Some(cli_path) = &cli_path {
        if want("c") {
            let mib = args.pipe_mib.unwrap_or(if q { 16 } else { 1024 });
            let reps = args.pipe_reps.unwrap_or(if q { 1 } else { 3 });
            log(&format!("(c) {mib} MiB through a pipe × {reps}"));
            match cli::pipe(dir, cli_path, mib << 20, reps, false) {
                Ok((s, _)) => scenarios.push(s),
                Err(e) => {
                    log(&format!("(c) aborted: {e}"));
                    hard_errors += 1;
                }
            }
        }
        if want("d") {
            let sizes =
                args.rss_mib
                    .clone()
                    .unwrap_or(if q { vec![16, 64] } else { vec![16, 256, 1024] });
            log(&format!("(d) peak RSS at {sizes:?} MiB"));
            let sizes: Vec<u64> = sizes.iter().map(|m| m << 20).collect();
            match cli::rss(dir, cli_path, &sizes) {
                Ok(r) => rss = r,
                Err(e) => {
                    log(&format!("(d) aborted: {e}"));
                    hard_errors += 1;
                }
            }
        }
    }
    if want("e") {
        let mib = args.cp_mib.unwrap_or(if q { 32 } else { 1024 });
        let reps = args.cp_reps.unwrap_or(if q { 1 } else { 3 });
        log(&format!("(e) cp of {mib} MiB on {:?} × {reps}", args.cp_fs));
        cp = cli::cp(dir, cli_path.as_deref(), &args.cp_fs, mib << 20, reps);
    }
    let mut slow = Vec::new();
    if want("f") {
        let delays =
            args.flush_delays_ms
                .clone()
                .unwrap_or(if q { vec![2.0] } else { vec![0.0, 1.0, 4.0] });
        log(&format!(
            "(f) slow-flush emulation at +{delays:?} ms per flush"
        ));
        slow = slowflush::run(
            dir,
            &delays,
            args.slow_single_n.unwrap_or(if q { 10 } else { 60 }),
            args.slow_batch_files.unwrap_or(if q { 20 } else { 300 }),
            args.slow_batch_rounds.unwrap_or(if q { 1 } else { 3 }),
            args.par_threads,
        );
    }
    if want("s") {
        log("(s) strace syscall lists");
        traces = syscalls::table(dir, args.par_threads, 3);
        if traces.iter().all(|t| t.error.is_some()) {
            skipped.push(format!(
                "syscall lists: {}",
                traces
                    .first()
                    .and_then(|t| t.error.clone())
                    .unwrap_or_default()
            ));
            traces.clear();
        }
    }

    // Tally: a row passes when its outputs were verified; "not available" rows are skipped.
    let mut passed = 0;
    let mut failed = hard_errors;
    let mut tally = |scope: &str, r: &Row| {
        if r.ok {
            passed += 1;
        } else if r
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("not available"))
        {
            skipped.push(format!(
                "{scope}/{}: {}",
                r.name,
                r.error.as_deref().unwrap_or("")
            ));
        } else {
            failed += 1;
            eprintln!(
                "[atomwrite-bench] FAILED {scope}/{}: {}",
                r.name,
                r.error.as_deref().unwrap_or("no samples")
            );
        }
    };
    for s in &scenarios {
        for r in &s.rows {
            tally(&s.id, r);
        }
    }
    for sr in &slow {
        for s in &sr.scenarios {
            for r in &s.rows {
                tally(&s.id, r);
            }
        }
    }
    for c in &cp {
        for r in &c.rows {
            tally(&format!("e-{}", c.fs), r);
        }
    }
    for r in &rss {
        if r.ok {
            passed += 1;
        } else {
            failed += 1;
            eprintln!("[atomwrite-bench] FAILED d/{}: {:?}", r.name, r.error);
        }
    }
    for sr in &slow {
        if let Some(u) = &sr.unavailable {
            skipped.push(format!("(f) +{} ms: not available: {u}", sr.delay_ms));
        }
    }
    for c in &cp {
        if let Some(u) = &c.unavailable {
            skipped.push(format!("(e) {}: not available: {u}", c.fs));
        }
    }
    for t in &traces {
        if let Some(e) = &t.error {
            failed += 1;
            eprintln!("[atomwrite-bench] FAILED strace {}: {e}", t.name);
        }
    }

    let flushes_during_run = match (flush_start, flush_counter.read_with_ms()) {
        (Some((n0, t0)), Some((n1, t1))) if n1 > n0 => {
            Some((n1 - n0, (t1 - t0) as f64 / (n1 - n0) as f64))
        }
        _ => None,
    };
    let report = Report {
        machine: util::machine(dir),
        flushes_during_run,
        features: features(),
        scenarios,
        rss,
        cp,
        slowflush: slow,
        syscalls: traces,
        skipped,
        passed,
        failed,
    };
    let json = serde_json::to_string_pretty(&report).expect("serialisable");
    if let Some(p) = &args.json_out
        && let Err(e) = std::fs::write(p, &json)
    {
        eprintln!("[atomwrite-bench] cannot write {}: {e}", p.display());
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", markdown(&report));
    }
    let label = if q { "bench-smoke" } else { "bench" };
    let line = format!(
        "{label}: {passed} passed, {failed} failed, {} skipped",
        report.skipped.len()
    );
    if args.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    i32::from(failed > 0)
}

fn ratio(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

fn median(r: &Row) -> f64 {
    r.time.as_ref().map(|t| t.median_us).unwrap_or(0.0)
}

fn scenario_md(s: &Scenario, per: Option<usize>) -> String {
    let mut o = format!("### ({}) {}\n\n", s.id, s.title);
    let peer_best = s
        .rows
        .iter()
        .filter(|r| r.role == "peer" && r.ok)
        .map(median)
        .fold(f64::INFINITY, f64::min);
    let floor = s
        .rows
        .iter()
        .filter(|r| r.role == "floor" && r.ok)
        .map(median)
        .fold(f64::INFINITY, f64::min);
    o += "| contender | role | median | p90 | min | n |";
    if per.is_some() {
        o += " median per file |";
    }
    o += " device flushes/op | × fastest-floor time | speed vs fastest peer | output |\n";
    o += "|---|---|---:|---:|---:|---:|";
    if per.is_some() {
        o += "---:|";
    }
    o += "---:|---:|---:|---|\n";
    for r in &s.rows {
        let (m, p, mn, n) = match &r.time {
            Some(t) => (
                fmt_us(t.median_us),
                fmt_us(t.p90_us),
                fmt_us(t.min_us),
                t.n.to_string(),
            ),
            None => ("–".into(), "–".into(), "–".into(), "0".into()),
        };
        o += &format!("| {} | {} | {m} | {p} | {mn} | {n} |", r.name, r.role);
        if let Some(k) = per {
            o += &format!(
                " {} |",
                r.time
                    .as_ref()
                    .map(|t| fmt_us(t.median_us / k as f64))
                    .unwrap_or("–".into())
            );
        }
        let fl = r
            .flushes_per_op
            .map(|f| format!("{f:.1}"))
            .unwrap_or("–".into());
        let status = if r.ok {
            "ok".to_string()
        } else {
            format!("**{}**", r.error.as_deref().unwrap_or("failed"))
        };
        o += &format!(
            " {fl} | {} | {} | {status} |\n",
            ratio(median(r), floor),
            ratio(peer_best, median(r))
        );
    }
    o += "\n";
    if s.rows.iter().any(|r| r.cpu.is_some()) {
        o += "CPU time of the process (user + system, median; less sensitive to other load than wall time): ";
        let parts: Vec<String> = s
            .rows
            .iter()
            .filter_map(|r| Some(format!("{} {}", r.name, fmt_us(r.cpu.as_ref()?.median_us))))
            .collect();
        o += &parts.join(", ");
        o += "\n\n";
    }
    o
}

/// Modeled time when each device flush costs `extra_ms` more than here:
/// t + flushes × extra. Valid for serial flushes (loops); a lower bound on
/// the benefit for batches, whose flushes are few.
fn model_md(s: &Scenario) -> String {
    if s.rows.iter().all(|r| r.flushes_per_op.is_none()) {
        return String::new();
    }
    let extras = [0.0, 1.0, 5.0, 10.0];
    let mut o = format!(
        "Flush-latency model for ({}): measured median + measured flushes/op × added latency per flush.\n\n| contender | flushes/op |",
        s.id
    );
    for e in extras {
        o += &format!(" +{e} ms/flush |");
    }
    o += "\n|---|---:|";
    for _ in extras {
        o += "---:|";
    }
    o += "\n";
    for r in s.rows.iter().filter(|r| r.ok) {
        let f = r.flushes_per_op.unwrap_or(0.0);
        o += &format!("| {} | {f:.1} |", r.name);
        for e in extras {
            o += &format!(" {} |", fmt_us(median(r) + f * e * 1000.0));
        }
        o += "\n";
    }
    o + "\n"
}

fn markdown(r: &Report) -> String {
    let m = &r.machine;
    let mut o = String::from("## atomwrite-bench results\n\n");
    o += &format!(
        "- date: {}\n- machine: {} × {} ({}), kernel {}\n- directory: `{}` — {} ({})\n- disk: {}\n- command: `{}`\n- features: {:?}\n- load average at the end (1/5/15 min; other work on the machine): {}\n",
        m.date,
        m.nproc,
        m.cpu,
        m.mem,
        m.kernel,
        m.dir,
        m.fs,
        m.device,
        m.disk,
        m.command,
        r.features,
        m.loadavg
    );
    if let Some((n, ms)) = r.flushes_during_run {
        o += &format!(
            "- device flushes during this run: {n}, mean flush latency {ms:.3} ms (from /sys/dev/block/*/stat)\n"
        );
    }
    o += "\n";
    for s in &r.scenarios {
        let per = (s.id == "b").then(|| {
            s.title
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1)
        });
        o += &scenario_md(s, per);
        if s.id == "a" || s.id == "b" {
            o += &model_md(s);
        }
    }
    if !r.rss.is_empty() {
        o += "### (d) peak RSS while streaming from a pipe\n\n| contender | MiB streamed | peak RSS | output |\n|---|---:|---:|---|\n";
        for x in &r.rss {
            o += &format!(
                "| {} | {} | {} | {} |\n",
                x.name,
                x.size >> 20,
                x.maxrss_kib
                    .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                    .unwrap_or("–".into()),
                if x.ok {
                    "ok".into()
                } else {
                    x.error.clone().unwrap_or_default()
                }
            );
        }
        o += "\n";
    }
    for c in &r.cp {
        match &c.unavailable {
            Some(u) => o += &format!("### (e) cp on {}: not available ({u})\n\n", c.fs),
            None => {
                let s = Scenario {
                    id: format!("e-{}", c.fs),
                    title: format!(
                        "cp on {} (loop image), page cache dropped before each sample",
                        c.fs
                    ),
                    rows: c.rows.clone(),
                };
                o += &scenario_md(&s, None);
            }
        }
    }
    for sr in &r.slowflush {
        if let Some(u) = &sr.unavailable {
            o += &format!(
                "### (f) +{} ms per flush: not available ({u})\n\n",
                sr.delay_ms
            );
            continue;
        }
        for s in &sr.scenarios {
            let per = s.id.starts_with('b').then(|| {
                s.title
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1)
            });
            o += &scenario_md(s, per);
        }
        o += &format!(
            "Emulated device flushes (FUSE fsyncs) during the +{} ms measurements: {}\n\n",
            sr.delay_ms, sr.device_flushes
        );
    }
    if !r.syscalls.is_empty() {
        o += "### Syscalls per write (strace -f, one warmed-up replacement of a 4 KiB file; batches: 3 files)\n\n";
        let singles: Vec<&syscalls::Trace> = r.syscalls.iter().filter(|t| t.files == 1).collect();
        let batches: Vec<&syscalls::Trace> = r.syscalls.iter().filter(|t| t.files != 1).collect();
        for group in [singles, batches] {
            if group.is_empty() {
                continue;
            }
            let names: Vec<Vec<String>> = group.iter().map(|t| t.names()).collect();
            let rows = names.iter().map(Vec::len).max().unwrap_or(0);
            o += "| # |";
            for t in &group {
                o += &format!(" {} |", t.name);
            }
            o += "\n|---:|";
            for _ in &group {
                o += "---|";
            }
            o += "\n";
            for i in 0..rows {
                o += &format!("| {} |", i + 1);
                for n in &names {
                    o += &format!(" {} |", n.get(i).map(String::as_str).unwrap_or(""));
                }
                o += "\n";
            }
            o += "| **total** |";
            for n in &names {
                o += &format!(" **{}** |", n.len());
            }
            o += "\n\n";
        }
        for t in &r.syscalls {
            o += &format!(
                "<details><summary>{} (full strace)</summary>\n\n```\n",
                t.name
            );
            for c in &t.calls {
                o += c;
                o += "\n";
            }
            o += "```\n</details>\n\n";
        }
    }
    if !r.skipped.is_empty() {
        o += "Not run:\n\n";
        for s in &r.skipped {
            o += &format!("- {s}\n");
        }
        o += "\n";
    }
    o
}
