//! `atomwrite-bench scale`: cost as the work grows, each figure beside its floor in one run.
//!
//! - **cp**: `atomwrite cp SRC... DIR/` of N fresh 4 KiB files vs a hand-written floor that
//!   opens, reads and closes each source and creates, writes and closes a temp for it, then one
//!   `syncfs`, every rename, one directory `fsync` (the same durability). Time per file at each
//!   N, peak RSS of the CLI, and (with strace) syscalls per file.
//! - **publish --dir**: a tree of N 4 KiB files (100 per directory) published as a first
//!   version, vs `cp -r SRC STAGE && sync -f STAGE` (GNU cp, one `syncfs`).
//! - **history**: `publish`, `latest`, `verify` of a destination that already has V versions
//!   (made by hand as earlier publishers would have left them: version files, manifests, the
//!   pointer, the lock file's `next=` hint). Cost per operation must not depend on V.
//! - **hash**: SHA-256 throughput of the `sha2` crate on this CPU (SHA-NI is detected at run
//!   time), the floor for the CPU a hashed stream needs beyond a plain copy.

use crate::cli::run_child;
use crate::contenders::{open_dir_fd, syncfs_dir};
use crate::stats::{Summary, fmt_us};
use crate::util::payload;
use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// What to run.
pub struct Plan {
    /// Files per `cp` (growth curve).
    pub files: Vec<usize>,
    /// Files per published tree.
    pub trees: Vec<usize>,
    /// Versions already published.
    pub versions: Vec<usize>,
    /// Repetitions per point.
    pub reps: usize,
}

fn median(v: &[Duration]) -> f64 {
    Summary::of(v).map_or(f64::NAN, |s| s.median_us)
}

fn rmrf(p: &Path) {
    let _ = fs::remove_dir_all(p);
}

/// Lets a child take hundreds of thousands of arguments: `ARG_MAX` is a quarter of the stack
/// limit, inherited across `exec`.
fn raise_stack_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Stack);
    let want = 1u64 << 30;
    if l.maximum.is_none_or(|m| m >= want) && l.current.is_some_and(|c| c < want) {
        l.current = Some(want);
        let _ = setrlimit(Resource::Stack, l);
    }
}

/// The `cp` floor: per file `openat`, `read`, `close` of the source and `openat(O_EXCL)`,
/// `write`, `close` of a temp; then one `syncfs`, a `renameat` per file, one `fsync` of the
/// directory.
pub fn floor_cp(src: &Path, dst: &Path, n: usize) -> io::Result<()> {
    let sd = open_dir_fd(src)?;
    let dd = open_dir_fd(dst)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let name = i.to_string();
        let fd = rustix::fs::openat(&sd, &name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        let mut len = 0;
        loop {
            let k = rustix::io::read(&fd, &mut buf[len..])?;
            len += k;
            if k == 0 || len < buf.len() {
                break;
            }
            buf.resize(buf.len() * 2, 0);
        }
        drop(fd);
        let tmp = format!(".{name}.floor.tmp");
        let t = rustix::fs::openat(
            &dd,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        let mut data = &buf[..len];
        while !data.is_empty() {
            let w = rustix::io::write(&t, data)?;
            data = &data[w..];
        }
        drop(t);
        names.push((tmp, name));
    }
    rustix::fs::syncfs(&dd)?;
    for (tmp, name) in &names {
        rustix::fs::renameat(&dd, tmp.as_str(), &dd, name.as_str())?;
    }
    rustix::fs::fsync(&dd)?;
    Ok(())
}

fn verify_copies(src: &Path, dst: &Path, n: usize) -> Result<(), String> {
    for i in 0..n {
        let a = fs::read(src.join(i.to_string())).map_err(|e| e.to_string())?;
        let b =
            fs::read(dst.join(i.to_string())).map_err(|e| format!("{}/{i}: {e}", dst.display()))?;
        if a != b {
            return Err(format!("{}/{i} differs", dst.display()));
        }
    }
    Ok(())
}

/// Syscalls per file of `atomwrite cp --json` of `n` files (strace -f -c, whole process /
/// files), into a fresh directory `out` (left in place: see [`cp_part`] on deletions), and the
/// barriers its JSON reports ("dir_syncs (data_syncs)").
fn cp_syscalls(cli: &Path, root: &Path, n: usize, out: &str) -> Option<(f64, String)> {
    fs::create_dir(root.join(out)).ok()?;
    let log = root.join("strace.log");
    let mut c = Command::new("strace");
    c.args(["-f", "-c", "-o"])
        .arg(&log)
        .arg(cli)
        .args(["cp", "--json"]);
    c.current_dir(root);
    for i in 0..n {
        c.arg(format!("s/{i}"));
    }
    c.arg(format!("{out}/"));
    let o = c.output().ok()?;
    let ok = o.status.success();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    let syncs = format!("{} ({})", v["dir_syncs"], v["data_syncs"]);
    let text = fs::read_to_string(&log).ok()?;
    let total: u64 = text
        .lines()
        .find(|l| l.trim_end().ends_with("total"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    ok.then_some((total as f64 / n as f64, syncs))
}

/// The `cp` growth curve. Nothing is deleted between the timed runs of the part (every run
/// writes into a directory of its own; all are removed at the end): on ext4 without a journal
/// (this project's shared VM) the kernel skips inodes freed in the last 60 s (300 s while their
/// inode table block is dirty) when it allocates one (`recently_deleted` in ext4's ialloc.c),
/// scanning past every such free inode of the group, so a run that follows the deletion of
/// 100,000 files pays up to ~1 ms per file created, whoever it is.
fn cp_part(base: &Path, cli: &Path, plan: &Plan, o: &mut String) -> io::Result<()> {
    removing_roots(|roots| cp_sizes(base, cli, plan, o, roots))
}

/// Runs a part that leaves every run's directory in `roots`, then removes them all (whether
/// the part succeeded or not): no deletion falls between two timed runs.
fn removing_roots(
    part: impl FnOnce(&mut Vec<std::path::PathBuf>) -> io::Result<()>,
) -> io::Result<()> {
    let mut roots = Vec::new();
    let r = part(&mut roots);
    for root in roots {
        rmrf(&root);
    }
    r
}

fn cp_sizes(
    base: &Path,
    cli: &Path,
    plan: &Plan,
    o: &mut String,
    roots: &mut Vec<std::path::PathBuf>,
) -> io::Result<()> {
    *o += "### cp of N fresh 4 KiB files into an empty directory\n\n";
    *o += "| files | atomwrite cp | per file | floor (reads its sources) | per file | × floor | peak RSS (cp) | windows (data flushes) |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for &n in &plan.files {
        let root = base.join(format!("cp-{n}"));
        rmrf(&root);
        roots.push(root.clone());
        fs::create_dir_all(root.join("s"))?;
        for i in 0..n {
            fs::write(root.join("s").join(i.to_string()), payload(i as u64, 4096))?;
        }
        let (mut aw, mut fl) = (Vec::new(), Vec::new());
        let mut rss = 0u64;
        let mut syncs = String::from("–");
        for r in 0..plan.reps {
            for k in [r % 2, 1 - r % 2] {
                let d = root.join(format!("d-{r}-{k}"));
                fs::create_dir(&d)?;
                syncfs_dir(&root)?;
                if k == 0 {
                    // Timed as a user runs it: `cp` prints nothing by default (as GNU cp); the
                    // floor prints nothing either. The JSON report is made by the strace run.
                    let mut c = Command::new(cli);
                    c.current_dir(&root).arg("cp");
                    for i in 0..n {
                        c.arg(format!("s/{i}"));
                    }
                    c.arg(format!("d-{r}-{k}/"));
                    let t = Instant::now();
                    let out = c.output()?;
                    let el = t.elapsed();
                    if !out.status.success() {
                        return Err(io::Error::other(
                            String::from_utf8_lossy(&out.stderr).to_string(),
                        ));
                    }
                    aw.push(el);
                    // Peak RSS in a separate quiet run.
                    if r == 0 {
                        let d2 = root.join("d2");
                        fs::create_dir(&d2)?;
                        let mut c = Command::new(cli);
                        c.current_dir(&root).args(["cp", "-q"]);
                        for i in 0..n {
                            c.arg(format!("s/{i}"));
                        }
                        c.arg("d2/");
                        let run = run_child(c, None, true).map_err(io::Error::other)?;
                        rss = run.maxrss_kib.unwrap_or(0);
                    }
                } else {
                    let t = Instant::now();
                    floor_cp(&root.join("s"), &d, n)?;
                    fl.push(t.elapsed());
                }
                verify_copies(&root.join("s"), &d, n).map_err(io::Error::other)?;
            }
        }
        let (a, f) = (median(&aw), median(&fl));
        let counted = cp_syscalls(cli, &root, n, "strace-d");
        if let Some((_, s)) = &counted {
            syncs = s.clone();
        }
        *o += &format!(
            "| {n} | {} | {} | {} | {} | {:.2}× | {:.1} MiB | {syncs} |\n",
            fmt_us(a),
            fmt_us(a / n as f64),
            fmt_us(f),
            fmt_us(f / n as f64),
            a / f,
            rss as f64 / 1024.0
        );
        if let Some((per, _)) = counted {
            *o += &format!(
                "| ↳ syscalls per file (strace -f -c, whole process / {n}) | {per:.2} | | | | | | |\n"
            );
        }
        print!("{o}");
        o.clear();
    }
    *o += "\n";
    Ok(())
}

/// The `publish --dir` growth curve. As in [`cp_part`], nothing is deleted between timed runs
/// (each run publishes into a directory of its own; the trees are removed at the end).
fn tree_part(base: &Path, cli: &Path, plan: &Plan, o: &mut String) -> io::Result<()> {
    removing_roots(|roots| tree_sizes(base, cli, plan, o, roots))
}

fn tree_sizes(
    base: &Path,
    cli: &Path,
    plan: &Plan,
    o: &mut String,
    roots: &mut Vec<std::path::PathBuf>,
) -> io::Result<()> {
    *o += "### publish --dir of a tree of N 4 KiB files (100 per directory), first version\n\n";
    *o += "| files | atomwrite publish --dir | per file | floor: cp -r + sync -f | per file | × floor | peak RSS (publish) |\n|---:|---:|---:|---:|---:|---:|---:|\n";
    for &n in &plan.trees {
        let root = base.join(format!("tree-{n}"));
        rmrf(&root);
        roots.push(root.clone());
        make_tree(&root, n)?;
        let (mut aw, mut fl) = (Vec::new(), Vec::new());
        let mut rss = 0u64;
        for r in 0..plan.reps {
            for k in [r % 2, 1 - r % 2] {
                let pubd = root.join(format!("pub-{r}-{k}"));
                fs::create_dir(&pubd)?;
                syncfs_dir(&root)?;
                let mut c = if k == 0 {
                    let mut c = Command::new(cli);
                    c.args(["publish", "-q", "--dir"])
                        .arg(root.join("src"))
                        .arg(pubd.join("site"));
                    c
                } else {
                    let mut c = Command::new("sh");
                    c.arg("-c")
                        .arg("cp -r \"$0\" \"$1\" && sync -f \"$1\"")
                        .arg(root.join("src"))
                        .arg(pubd.join("stage"));
                    c
                };
                c.current_dir(&root);
                let run = run_child(c, None, k == 0).map_err(io::Error::other)?;
                if k == 0 {
                    aw.push(run.wall);
                    rss = rss.max(run.maxrss_kib.unwrap_or(0));
                    let probe = pubd.join("site/d000/f0");
                    if fs::read(&probe)? != payload(0, 4096) {
                        return Err(io::Error::other("published tree differs"));
                    }
                } else {
                    fl.push(run.wall);
                }
            }
        }
        *o += &tree_row(n, &aw, &fl, rss);
    }
    *o += "\n";
    Ok(())
}

/// One row of the tree tables: N, atomwrite's and the floor's median (total and per file),
/// their ratio, atomwrite's peak RSS.
fn tree_row(n: usize, aw: &[Duration], fl: &[Duration], rss_kib: u64) -> String {
    let (a, f) = (median(aw), median(fl));
    format!(
        "| {n} | {} | {} | {} | {} | {:.2}× | {:.1} MiB |\n",
        fmt_us(a),
        fmt_us(a / n as f64),
        fmt_us(f),
        fmt_us(f / n as f64),
        a / f,
        rss_kib as f64 / 1024.0
    )
}

/// Builds a tree of `n` 4 KiB files, 100 per directory, under `root/src`.
fn make_tree(root: &Path, n: usize) -> io::Result<()> {
    for i in 0..n {
        let d = root.join("src").join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(&d)?;
        }
        fs::write(d.join(format!("f{i}")), payload(i as u64, 4096))?;
    }
    Ok(())
}

/// `verify` of a published tree of N files (parallel hashing) beside a serial floor that
/// hashes the same files (`find | xargs sha256sum`), warm cache, interleaved.
fn verify_part(base: &Path, cli: &Path, plan: &Plan, o: &mut String) -> io::Result<()> {
    *o += "### verify of a published tree of N 4 KiB files (warm cache)\n\n";
    *o += "| files | atomwrite verify | per file | floor: find + xargs sha256sum (serial) | per file | × floor | peak RSS (verify) |\n|---:|---:|---:|---:|---:|---:|---:|\n";
    for &n in &plan.trees {
        let root = base.join(format!("verify-{n}"));
        rmrf(&root);
        make_tree(&root, n)?;
        let mut c = Command::new(cli);
        c.args(["publish", "-q", "--dir", "src", "site"])
            .current_dir(&root);
        run_child(c, None, false).map_err(io::Error::other)?;
        let (mut aw, mut fl, mut rss) = (Vec::new(), Vec::new(), 0u64);
        for r in 0..plan.reps.max(3) {
            for k in [r % 2, 1 - r % 2] {
                let mut c = if k == 0 {
                    let mut c = Command::new(cli);
                    c.args(["verify", "-q", "site"]);
                    c
                } else {
                    let mut c = Command::new("sh");
                    c.arg("-c")
                        .arg("find \"$0/\" -type f -print0 | xargs -0 sha256sum >/dev/null")
                        .arg("site");
                    c
                };
                c.current_dir(&root);
                let run = run_child(c, None, k == 0).map_err(io::Error::other)?;
                if k == 0 {
                    aw.push(run.wall);
                    rss = rss.max(run.maxrss_kib.unwrap_or(0));
                } else {
                    fl.push(run.wall);
                }
            }
        }
        *o += &tree_row(n, &aw, &fl, rss);
        rmrf(&root);
    }
    *o += "\n";
    Ok(())
}

/// A destination with `v` versions, laid out as earlier publishers leave it.
fn make_history(dir: &Path, v: usize) -> io::Result<()> {
    let vd = dir.join("site.txt.versions");
    fs::create_dir_all(&vd)?;
    for i in 1..=v {
        let name = format!("v{i:010}.txt");
        fs::write(vd.join(&name), b"x\n")?;
        let m = serde_json::json!({
            "format": "atomwrite-manifest/1",
            "name": name,
            "size": 2,
            "sha256": "73cb3858a687a8494ca3323053016282f3dad39d42cf62ca4e79dda2aac7d9ac",
            "written_at": "2026-01-01T00:00:00Z",
            "run_id": "scale",
            "atomwrite_version": "0.1.0",
            "version": i,
            "parent": i - 1,
        });
        fs::write(vd.join(format!("{name}.manifest.json")), m.to_string())?;
    }
    fs::write(vd.join(".lock"), format!("next={:010}\n", v + 1))?;
    std::os::unix::fs::symlink(
        format!("site.txt.versions/v{v:010}.txt"),
        dir.join("site.txt"),
    )?;
    Ok(())
}

fn history_part(base: &Path, cli: &Path, plan: &Plan, o: &mut String) -> io::Result<()> {
    *o += "### publish / latest / verify with V versions already published\n\n";
    *o += "| versions | publish (full) | latest | verify | getdents64 in one publish |\n|---:|---:|---:|---:|---:|\n";
    let payload_file = base.join("payload");
    fs::write(&payload_file, b"new version\n")?;
    for &v in &plan.versions {
        let root = base.join(format!("hist-{v}"));
        rmrf(&root);
        fs::create_dir_all(&root)?;
        make_history(&root, v)?;
        // The first publish over the hand-made history writes the real newest version, so
        // `verify` checks a genuine manifest.
        let dst = root.join("site.txt");
        let publish = |c: &mut Command| {
            c.args(["publish", "-q", "--from"])
                .arg(&payload_file)
                .arg(&dst);
        };
        let mut c = Command::new(cli);
        publish(&mut c);
        run_child(c, None, false).map_err(io::Error::other)?;
        syncfs_dir(&root)?;
        let (mut p, mut l, mut ver) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..plan.reps.max(5) {
            let mut c = Command::new(cli);
            publish(&mut c);
            p.push(run_child(c, None, false).map_err(io::Error::other)?.wall);
            let mut c = Command::new(cli);
            c.arg("latest").arg(&dst);
            l.push(run_child(c, None, false).map_err(io::Error::other)?.wall);
            let mut c = Command::new(cli);
            c.arg("verify").arg(&dst);
            ver.push(run_child(c, None, false).map_err(io::Error::other)?.wall);
        }
        // Directory reads during one publish (0: nothing on the hot path lists the history).
        let log = root.join("strace.log");
        let getdents = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=getdents64", "-o"])
            .arg(&log)
            .arg(cli)
            .args(["publish", "-q", "--from"])
            .arg(&payload_file)
            .arg(&dst)
            .status()
            .ok()
            .filter(|s| s.success())
            .and_then(|_| fs::read_to_string(&log).ok())
            .map(|t| {
                t.lines()
                    .filter(|l| l.contains("getdents64("))
                    .count()
                    .to_string()
            })
            .unwrap_or_else(|| "–".into());
        *o += &format!(
            "| {v} | {} | {} | {} | {getdents} |\n",
            fmt_us(median(&p)),
            fmt_us(median(&l)),
            fmt_us(median(&ver))
        );
        rmrf(&root);
    }
    *o += "\n";
    Ok(())
}

/// SHA-256 throughput of the `sha2` crate (what `atomwrite write` hashes with) on this CPU.
fn hash_part(o: &mut String) {
    use sha2::Digest;
    let buf = payload(7, 1 << 20);
    let mut h = sha2::Sha256::new();
    let t = Instant::now();
    for _ in 0..256 {
        h.update(&buf);
    }
    let _ = h.finalize();
    let s = t.elapsed().as_secs_f64();
    let sha_ni = fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| c.contains(" sha_ni"));
    *o += &format!(
        "### SHA-256 alone\n\n`sha2` 0.10 over 256 MiB in memory: {:.0} MiB/s, {:.2} s of CPU per GiB (CPU {} SHA extensions).\n\n",
        256.0 / s,
        s * 4.0,
        if sha_ni { "has" } else { "lacks" }
    );
}

/// Runs the plan, printing each table (markdown) as soon as it is measured.
pub fn run(base: &Path, cli: &Path, plan: &Plan) -> io::Result<()> {
    use std::io::Write;
    raise_stack_limit();
    let base = base.join("scale");
    fs::create_dir_all(&base)?;
    let _ = rustix::fs::statat(CWD, &base, AtFlags::empty())?;
    let emit = |o: &mut String| {
        print!("{o}");
        let _ = io::stdout().flush();
        o.clear();
    };
    let mut o = String::from("## atomwrite-bench scale\n\n");
    emit(&mut o);
    if !plan.files.is_empty() {
        cp_part(&base, cli, plan, &mut o)?;
        emit(&mut o);
    }
    if !plan.trees.is_empty() {
        tree_part(&base, cli, plan, &mut o)?;
        emit(&mut o);
        verify_part(&base, cli, plan, &mut o)?;
        emit(&mut o);
    }
    if !plan.versions.is_empty() {
        history_part(&base, cli, plan, &mut o)?;
        emit(&mut o);
    }
    hash_part(&mut o);
    emit(&mut o);
    rmrf(&base);
    Ok(())
}
