//! Security properties of temporary files:
//!
//! * a named temp is created `O_CREAT|O_EXCL|O_NOFOLLOW` with mode 0600 and stays 0600 until the
//!   final mode is set at commit;
//! * temp names are unpredictable (80 random bits from the kernel, different in every process);
//! * symlinks and files planted at plausible temp names in a sticky, world-writable directory
//!   are never followed nor clobbered, on the fast and the portable path;
//! * (root) another user watching the sticky directory with inotify can neither read nor
//!   remove nor replace the temps of a writer.
//!
//! Directories are created under `$TEST_DIR` when set. Root-only tests print why they skip when
//! not root; with `CI=true` they fail instead of skipping.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use atomwrite::{Options, is_temp_name};

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
const ROLE_ENV: &str = "ATOMWRITE_SECURITY_ROLE";
const DIR_ENV: &str = "ATOMWRITE_SECURITY_DIR";
const NOBODY: u32 = 65534;

fn tempdir() -> tempfile::TempDir {
    let d = match std::env::var_os("TEST_DIR") {
        Some(base) => tempfile::Builder::new()
            .prefix("atomwrite-security")
            .tempdir_in(base)
            .unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    // Other users (the attacker below) must be able to reach the sticky directory inside.
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

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

fn sticky_dir(parent: &Path) -> PathBuf {
    let d = parent.join("shared");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

fn random_token(seed: &mut u64) -> String {
    (0..16)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            ALPHABET[(*seed % 32) as usize] as char
        })
        .collect()
}

#[test]
fn named_temp_is_0600_nofollow_until_the_final_mode_is_set() {
    let dir = tempdir();
    for (existing_mode, opt_mode, final_mode) in [
        (None, Some(0o644), 0o644),
        (Some(0o666), None, 0o666),
        (Some(0o755), None, 0o755),
        (None, Some(0o600), 0o600),
    ] {
        let dst = dir.path().join(format!("f-{existing_mode:?}-{opt_mode:?}"));
        if let Some(m) = existing_mode {
            std::fs::write(&dst, b"old").unwrap();
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(m)).unwrap();
        }
        let mut o = Options::new().portable(true);
        if let Some(m) = opt_mode {
            o = o.mode(m);
        }
        let mut f = o.open(&dst).unwrap();
        let tmp = f.temp_path().expect("the portable path uses a named temp");
        assert!(is_temp_name(tmp.file_name().unwrap()), "{}", tmp.display());
        assert_eq!(
            tmp.parent(),
            dst.parent(),
            "temp outside the destination directory"
        );
        let md = std::fs::symlink_metadata(&tmp).unwrap();
        assert!(md.file_type().is_file());
        assert_eq!(md.mode() & 0o7777, 0o600, "temp mode before writing");
        assert_eq!(md.uid(), rustix::process::geteuid().as_raw());
        f.write_all(&vec![b's'; 100_000]).unwrap();
        let md = std::fs::symlink_metadata(&tmp).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o600, "temp mode after writing");
        if existing_mode.is_some() {
            assert_eq!(
                std::fs::read(&dst).unwrap(),
                b"old",
                "destination touched before commit"
            );
        } else {
            assert!(!dst.exists(), "destination visible before commit");
        }
        f.commit().unwrap();
        assert!(!tmp.exists(), "temp left after commit");
        let md = std::fs::symlink_metadata(&dst).unwrap();
        assert_eq!(md.mode() & 0o7777, final_mode);
        assert_eq!(md.len(), 100_000);
    }
}

#[test]
fn fast_path_temp_has_no_name_until_commit() {
    let dir = tempdir();
    let dst = dir.path().join("anon");
    let mut f = Options::new().open(&dst).unwrap();
    f.write_all(b"secret").unwrap();
    if f.temp_path().is_none() {
        // O_TMPFILE: nothing in the directory that anyone could open or replace.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    } else {
        eprintln!("note: this filesystem refused O_TMPFILE; the named path was used");
    }
    f.commit().unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), b"secret");
}

fn temp_names(dst: &Path, n: usize) -> Vec<OsString> {
    (0..n)
        .map(|_| {
            let f = Options::new().portable(true).open(dst).unwrap();
            let name = f.temp_path().unwrap().file_name().unwrap().to_os_string();
            f.discard().unwrap();
            name
        })
        .collect()
}

#[test]
fn temp_names_are_unpredictable() {
    let dir = tempdir();
    let dst = dir.path().join("data.csv");
    let names = temp_names(&dst, 2000);
    let distinct: HashSet<_> = names.iter().collect();
    assert_eq!(distinct.len(), names.len(), "a temp name repeated");
    let mut counts = BTreeMap::new();
    for n in &names {
        let s = n.to_str().unwrap();
        let token = s
            .strip_prefix(".data.csv.")
            .and_then(|t| t.strip_suffix(".tmp"))
            .unwrap_or_else(|| panic!("unexpected shape {s}"));
        assert_eq!(token.len(), 16, "{s}");
        for c in token.bytes() {
            assert!(ALPHABET.contains(&c), "{s}");
            *counts.entry(c).or_insert(0u64) += 1;
        }
    }
    // Uniform over 32 symbols: chi-square with 31 degrees of freedom. 120 is far beyond the
    // 1e-9 quantile (~95): a failure means the generator is biased, not bad luck.
    let total: u64 = counts.values().sum();
    let expected = total as f64 / 32.0;
    assert_eq!(counts.len(), 32, "some symbols never appear: {counts:?}");
    let chi2: f64 = counts
        .values()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    assert!(
        chi2 < 120.0,
        "temp-name symbols are not uniform: chi2 = {chi2:.1}"
    );
    // Consecutive names share no structure (a counter or a clock would).
    for w in names.windows(2) {
        let (a, b) = (w[0].to_str().unwrap(), w[1].to_str().unwrap());
        let common = a
            .bytes()
            .zip(b.bytes())
            .skip(".data.csv.".len())
            .take_while(|(x, y)| x == y)
            .count();
        assert!(common < 8, "{a} and {b} share a {common}-character prefix");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "discard left a temp"
    );
}

#[test]
fn temp_names_differ_between_processes() {
    if std::env::var_os(ROLE_ENV).is_some() {
        return;
    }
    let dir = tempdir();
    let run = || {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "zz_helper_process_role",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE_ENV, "names")
            .env(DIR_ENV, dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.find("NAME ").map(|i| l[i + 5..].trim().to_string()))
            .collect::<Vec<_>>()
    };
    let (a, b) = (run(), run());
    assert_eq!(a.len(), 20);
    assert_eq!(b.len(), 20);
    let a: HashSet<_> = a.into_iter().collect();
    assert!(
        b.iter().all(|n| !a.contains(n)),
        "two processes produced the same temp name"
    );
}

/// Entries planted by an adversary, and what they looked like.
struct Planted {
    symlinks: Vec<(PathBuf, PathBuf)>,
    files: Vec<PathBuf>,
}

fn plant(dir: &Path, name: &str, victim: &Path, missing: &Path, owner: Option<u32>) -> Planted {
    let mut names = vec![
        format!(".{name}.tmp"),
        format!("{name}.tmp"),
        format!(".{name}.swp"),
        format!("{name}~"),
        format!("{name}.new"),
        format!(".{name}.aaaaaaaaaaaaaaaa.tmp"),
        format!(".{name}.2222222222222222.tmp"),
    ];
    let mut seed = 0x1234_5678_9abc_def1u64;
    for _ in 0..400 {
        names.push(format!(".{name}.{}.tmp", random_token(&mut seed)));
    }
    let mut p = Planted {
        symlinks: Vec::new(),
        files: Vec::new(),
    };
    for (i, n) in names.iter().enumerate() {
        let path = dir.join(n);
        match i % 3 {
            0 => {
                std::os::unix::fs::symlink(victim, &path).unwrap();
                p.symlinks.push((path, victim.to_path_buf()));
            }
            1 => {
                // Dangling: following it would create a file the attacker chose.
                std::os::unix::fs::symlink(missing, &path).unwrap();
                p.symlinks.push((path, missing.to_path_buf()));
            }
            _ => {
                std::fs::write(&path, b"planted").unwrap();
                p.files.push(path);
            }
        }
        if let Some(uid) = owner {
            std::os::unix::fs::lchown(dir.join(n), Some(uid), Some(uid)).unwrap();
        }
    }
    p
}

#[test]
fn planted_symlinks_and_files_are_neither_followed_nor_clobbered() {
    let base = tempdir();
    let shared = sticky_dir(base.path());
    let victim = base.path().join("victim");
    std::fs::write(&victim, b"victim contents").unwrap();
    let missing = base.path().join("created-by-following");
    // As root, the planted entries belong to another user, as they would in /tmp.
    let owner = is_root().then_some(NOBODY);
    let planted = plant(&shared, "report.json", &victim, &missing, owner);
    let dst = shared.join("report.json");
    for i in 0..60u32 {
        let body = format!("version {i}\n").repeat(1 + i as usize * 50);
        let o = Options::new().portable(i % 2 == 1);
        match i % 3 {
            0 => {
                o.write(&dst, body.as_bytes()).unwrap();
            }
            1 => {
                let mut f = o.open(&dst).unwrap();
                f.write_all(body.as_bytes()).unwrap();
                f.commit().unwrap();
            }
            _ => {
                // Abandoned writes too: the cleanup must remove only our own temp.
                let mut f = o.open(&dst).unwrap();
                f.write_all(b"abandoned").unwrap();
                drop(f);
                o.write(&dst, body.as_bytes()).unwrap();
            }
        }
        assert_eq!(std::fs::read_to_string(&dst).unwrap(), body);
    }
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"victim contents",
        "victim written through a symlink"
    );
    assert!(!missing.exists(), "a dangling planted symlink was followed");
    for (link, target) in &planted.symlinks {
        let md = std::fs::symlink_metadata(link)
            .unwrap_or_else(|_| panic!("{} removed", link.display()));
        assert!(md.file_type().is_symlink(), "{} replaced", link.display());
        assert_eq!(&std::fs::read_link(link).unwrap(), target);
    }
    for f in &planted.files {
        assert_eq!(
            std::fs::read(f).unwrap(),
            b"planted",
            "{} clobbered",
            f.display()
        );
    }
    let md = std::fs::symlink_metadata(&dst).unwrap();
    assert!(md.file_type().is_file());
    assert_eq!(md.uid(), rustix::process::geteuid().as_raw());
    // Nothing of ours left beside the planted entries.
    let ours = std::fs::read_dir(&shared).unwrap().count();
    assert_eq!(ours, planted.symlinks.len() + planted.files.len() + 1);
}

#[test]
fn another_user_can_neither_read_nor_replace_temps_in_a_sticky_dir() {
    if std::env::var_os(ROLE_ENV).is_some()
        || !require_root("another_user_can_neither_read_nor_replace_temps_in_a_sticky_dir")
    {
        return;
    }
    let base = tempdir();
    let shared = sticky_dir(base.path());
    let dst = shared.join("secrets.env");
    // Markers live in a directory both users may write (not in the shared one under test).
    let signals = base.path().join("signals");
    std::fs::create_dir(&signals).unwrap();
    std::fs::set_permissions(&signals, std::fs::Permissions::from_mode(0o777)).unwrap();
    let stop = signals.join("stop");
    let ready = signals.join("ready");
    let mut attacker = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "zz_helper_process_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_ENV, "attacker")
        .env(DIR_ENV, base.path())
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (without a deadline: never assert times) until the watch is in place.
    while !ready.exists() {
        if let Some(st) = attacker.try_wait().unwrap() {
            panic!("attacker exited early: {st}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for i in 0..300u32 {
        // 0600 final mode: the attacker may read neither the temp nor the result.
        let o = Options::new().portable(i % 2 == 0).mode(0o600);
        o.write(&dst, format!("TOKEN={i}\n").repeat(100).as_bytes())
            .unwrap();
    }
    std::fs::write(&stop, b"").unwrap();
    let out = attacker.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "attacker failed: {text}");
    let report = text
        .lines()
        .find_map(|l| l.find("REPORT ").map(|i| &l[i + 7..]))
        .expect("attacker report");
    let nums: Vec<u64> = report
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let (seen, opened, removed, replaced) = (nums[0], nums[1], nums[2], nums[3]);
    eprintln!(
        "attacker saw {seen} temp names; opened {opened}, removed {removed}, replaced {replaced}"
    );
    assert!(
        seen >= 150,
        "the attacker should have seen the named temps ({seen})"
    );
    assert_eq!((opened, removed, replaced), (0, 0, 0));
    assert_eq!(
        std::fs::read_to_string(&dst).unwrap(),
        "TOKEN=299\n".repeat(100)
    );
    let names: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![OsString::from("secrets.env")],
        "leftovers: {names:?}"
    );
}

/// Not a test by itself: the body of child processes started by the tests above (selected by
/// an environment variable; a no-op otherwise).
#[test]
fn zz_helper_process_role() {
    let Some(role) = std::env::var_os(ROLE_ENV) else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).unwrap());
    match role.to_str().unwrap() {
        "names" => {
            for n in temp_names(&dir.join("x"), 20) {
                println!("NAME {}", n.to_string_lossy());
            }
        }
        "attacker" => attacker(&dir),
        other => panic!("unknown role {other}"),
    }
}

/// Runs as another uid: watches the sticky directory and attacks every temp name it sees.
fn attacker(base: &Path) {
    use rustix::fs::inotify;
    let shared = base.join("shared");
    let ino =
        inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
    inotify::add_watch(
        &ino,
        &shared,
        inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO,
    )
    .unwrap();
    std::fs::write(base.join("signals/ready"), b"").unwrap();
    let (mut seen, mut opened, mut removed, mut replaced) = (0u64, 0u64, 0u64, 0u64);
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
    loop {
        let stopping = base.join("signals/stop").exists();
        let mut names = Vec::new();
        {
            let mut reader = inotify::Reader::new(&ino, &mut buf);
            while let Ok(ev) = reader.next() {
                if let Some(n) = ev.file_name() {
                    names.push(OsString::from(n.to_str().unwrap()));
                }
            }
        }
        for n in names {
            if !is_temp_name(&n) {
                continue;
            }
            seen += 1;
            let p = shared.join(&n);
            let writers = |m: &std::fs::Metadata| m.uid() != NOBODY;
            // Read it (without following a link): must be refused for the writer's files.
            if let Ok(f) = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&p)
                && f.metadata().is_ok_and(|m| writers(&m))
            {
                opened += 1;
            }
            // Remove it: the sticky bit must refuse.
            if std::fs::symlink_metadata(&p).is_ok_and(|m| writers(&m))
                && std::fs::remove_file(&p).is_ok()
            {
                removed += 1;
            }
            // Swap a symlink of ours into its place: RENAME_EXCHANGE succeeds only if the temp
            // still exists, so a success is a real replacement.
            let decoy = shared.join(format!("decoy-{seen}"));
            if std::os::unix::fs::symlink("/etc/passwd", &decoy).is_ok() {
                if rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &decoy,
                    rustix::fs::CWD,
                    &p,
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .is_ok()
                {
                    replaced += 1;
                }
                let _ = std::fs::remove_file(&decoy);
            }
        }
        if stopping {
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    println!("REPORT {seen} {opened} {removed} {replaced}");
}
