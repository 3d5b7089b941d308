//! `faults`: fault injection for the atomwrite CLI.
//!
//! Part 1 (needs `strace`): every step of a write fails in turn through `strace -e inject`,
//! with EIO, ENOSPC, EDQUOT, EROFS, EACCES, EINTR, EBUSY, EXDEV (plus EINVAL/EOPNOTSUPP where a
//! fallback must take over, EPERM for fchown/fchmod), on the fast and the portable path.
//! Part 2 (needs root): faults from the real kernel (tmpfs ENOSPC, read-only remount, a
//! bind-mounted destination, owner preservation, an unprivileged writer).
//!
//! Usage: `faults [--atomwrite PATH] [--dir BASE] [-v]`. Prints `faults: N passed, M failed`
//! last; exits 1 on any failure. Parts that cannot run print why; with `CI=true` that is a
//! failure.

mod inject;
mod kernel;
mod strace;

use std::path::PathBuf;

/// Results.
#[derive(Default)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub injected: u64,
}

impl Tally {
    pub fn pass(&mut self) {
        self.passed += 1;
    }
    pub fn fail(&mut self, msg: String) {
        self.failed += 1;
        println!("FAIL {msg}");
    }
}

fn skip(t: &mut Tally, what: &str, why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        t.fail(format!("{what} cannot run under CI=true: {why}"));
    } else {
        println!("faults: SKIP {what}: {why}");
    }
}

fn main() {
    let mut atomwrite = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .join("atomwrite");
    let mut base = std::env::var_os("TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let mut verbose = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--atomwrite" => atomwrite = PathBuf::from(it.next().expect("--atomwrite PATH")),
            "--dir" => base = PathBuf::from(it.next().expect("--dir PATH")),
            "-v" => verbose = true,
            _ => {
                eprintln!("usage: faults [--atomwrite PATH] [--dir BASE] [-v]");
                std::process::exit(2);
            }
        }
    }
    let base = base.join(format!("atomwrite-faults.{}", std::process::id()));
    let mut t = Tally::default();
    if !atomwrite.is_file() {
        t.fail(format!(
            "{} not found (build --release first)",
            atomwrite.display()
        ));
        println!("faults: {} passed, {} failed", t.passed, t.failed);
        std::process::exit(1);
    }
    let root = rustix::process::geteuid().is_root();
    let started = std::time::Instant::now();
    let have_strace = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if have_strace {
        let ctx = inject::Ctx {
            atomwrite: atomwrite.clone(),
            base: base.join("inject"),
            root,
            verbose,
        };
        inject::run_all(&ctx, &mut t);
        println!(
            "faults: injected {} faults via strace ({} checks failed so far)",
            t.injected, t.failed
        );
        if !root {
            skip(
                &mut t,
                "fchown injection",
                "not root: the destination cannot be owned by another uid",
            );
        }
    } else {
        skip(
            &mut t,
            "strace injection",
            "strace not installed (apt-get install strace)",
        );
    }
    if root {
        let before = t.passed + t.failed;
        kernel::run_all(&atomwrite, &base.join("kernel"), &mut t);
        println!(
            "faults: {} real-kernel checks",
            t.passed + t.failed - before
        );
    } else {
        skip(
            &mut t,
            "real-kernel faults (tmpfs ENOSPC, EROFS remount, bind-mount EBUSY, chown)",
            "not root",
        );
    }
    if t.failed == 0 {
        let _ = std::fs::remove_dir_all(&base);
    } else {
        println!("faults: evidence kept in {}", base.display());
    }
    println!(
        "faults: {} faults injected, {:.1}s",
        t.injected,
        started.elapsed().as_secs_f64()
    );
    println!("faults: {} passed, {} failed", t.passed, t.failed);
    std::process::exit(if t.failed == 0 { 0 } else { 1 });
}
