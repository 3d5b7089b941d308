//! Security properties of temporary files:
//!
//! * a named temp is created `O_CREAT|O_EXCL|O_NOFOLLOW` with mode 0600 and stays 0600 until the
//!   final mode is set at commit;
//! * temp names are unpredictable (80 random bits from the kernel, different in every process);
//! * symlinks and files planted at plausible temp names in a sticky, world-writable directory
//!   are never followed nor clobbered, on the fast and the portable path;
//! * (root) another user watching the sticky directory with inotify can neither read nor
//!   remove nor replace the temps of a writer;
//! * never more than a redirect: in a sticky directory others may write, a symlink of another
//!   user is not followed and a file of another user is not replaced (the kernel's
//!   `fs.protected_symlinks` / `fs.protected_regular` rules, applied even with both sysctls at 0),
//!   on every hop of a chain and in every directory on the way; a followed link never makes
//!   atomwrite create directories; a destination ending in `/` writes nothing;
//! * modes: a copy's new file never gets set-id bits and honours the umask; set-id bits survive
//!   only with the owner they were granted with; an owner change is reported in the receipt.
//!
//! Directories are created under `$TEST_DIR` when set. Root-only tests print why they skip when
//! not root; with `CI=true` they fail instead of skipping.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use atomwrite::{Op, Options, SymlinkPolicy, is_temp_name};

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

// ---- never more than a redirect ------------------------------------------------------------

const PORTABLE_ENV: &str = "ATOMWRITE_SECURITY_PORTABLE";

/// A directory `name` under `parent` with `mode`, owned by `owner` (root-only callers).
fn dir_with(parent: &Path, name: &str, mode: u32, owner: Option<u32>) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir(&d).unwrap();
    if let Some(uid) = owner {
        std::os::unix::fs::chown(&d, Some(uid), Some(uid)).unwrap();
    }
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
    d
}

fn symlink_owned_by(target: &Path, link: &Path, uid: u32) {
    std::os::unix::fs::symlink(target, link).unwrap();
    std::os::unix::fs::lchown(link, Some(uid), Some(uid)).unwrap();
}

fn file_owned_by(path: &Path, contents: &[u8], uid: u32, mode: u32) {
    std::fs::write(path, contents).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every entry under `dir` (recursively, without following links), with type, owner, mode and
/// contents or link target: "nothing changed" is this snapshot being equal.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let what = if md.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if md.is_dir() {
                todo.push(p.clone());
                "dir".to_string()
            } else {
                String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()
            };
            let line = format!("{} {:o} {what}", md.uid(), md.mode() & 0o7777);
            out.insert(p, line);
        }
    }
    out
}

/// The refusal: PermissionDenied, CheckDestination, one line naming the rule, the entry and
/// its owner.
fn assert_refused(e: &atomwrite::Error, rule: &str, entry: &Path, owner: u32) {
    let msg = e.to_string();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{msg}");
    assert_eq!(e.op(), Op::CheckDestination, "{msg}");
    assert_eq!(e.path(), entry, "{msg}");
    assert!(!msg.contains('\n'), "not one line: {msg}");
    assert!(msg.contains(rule), "the rule is not named: {msg}");
    assert!(
        msg.contains(&entry.display().to_string()),
        "the entry is not named: {msg}"
    );
    assert!(
        msg.contains(&format!("uid {owner}")),
        "the owner is not named: {msg}"
    );
}

#[test]
fn a_symlink_planted_by_another_user_in_a_sticky_dir_is_not_followed() {
    if !require_root("a_symlink_planted_by_another_user_in_a_sticky_dir_is_not_followed") {
        return;
    }
    // 1777 like /tmp, and 1775: group-writable is shared too (protected_regular=2 semantics).
    for dir_mode in [0o1777, 0o1775] {
        for portable in [false, true] {
            let base = tempdir();
            let victim = base.path().join("victim");
            std::fs::write(&victim, b"root's data\n").unwrap();
            let shared = dir_with(base.path(), "shared", dir_mode, None);
            let link = shared.join("report.txt");
            symlink_owned_by(&victim, &link, NOBODY);
            let before = snapshot(base.path());
            let o = Options::new().portable(portable);
            let e = o.write(&link, b"attacker's choice\n").unwrap_err();
            assert_refused(&e, "fs.protected_symlinks", &link, NOBODY);
            // The streaming API refuses at open, before any temp exists.
            let e = o.open(&link).unwrap_err();
            assert_refused(&e, "fs.protected_symlinks", &link, NOBODY);
            assert_eq!(
                snapshot(base.path()),
                before,
                "something changed (mode {dir_mode:o}, portable {portable})"
            );
        }
    }
}

#[test]
fn a_file_of_another_user_in_a_sticky_dir_is_not_replaced() {
    if !require_root("a_file_of_another_user_in_a_sticky_dir_is_not_replaced") {
        return;
    }
    for dir_mode in [0o1777, 0o1775] {
        for portable in [false, true] {
            let base = tempdir();
            let shared = dir_with(base.path(), "shared", dir_mode, None);
            // Pre-created by the attacker to receive root's data (and keep it readable).
            let planted = shared.join("report.txt");
            file_owned_by(&planted, b"planted\n", NOBODY, 0o666);
            let before = snapshot(base.path());
            for policy in [SymlinkPolicy::Follow, SymlinkPolicy::Replace] {
                let o = Options::new().portable(portable).symlinks(policy);
                let e = o.write(&planted, b"root's secret\n").unwrap_err();
                assert_refused(&e, "fs.protected_regular", &planted, NOBODY);
            }
            // Create-only fails as O_EXCL does: the file exists (exit 3 in the CLI).
            let e = Options::new()
                .portable(portable)
                .no_clobber(true)
                .write(&planted, b"x")
                .unwrap_err();
            assert!(e.is_conflict(), "{e}");
            assert_eq!(snapshot(base.path()), before, "something changed");
        }
    }
}

/// A batch told how many files come lists an ordinary directory once instead of looking up
/// each name; never a shared sticky one. There a file another user plants after the batch
/// began (after its listing would have been made) is still looked up, and refused.
#[test]
fn a_batch_in_a_sticky_dir_refuses_a_file_another_user_planted_after_it_began() {
    if !require_root("a_batch_in_a_sticky_dir_refuses_a_file_another_user_planted_after_it_began") {
        return;
    }
    for dir_mode in [0o1777, 0o1775] {
        for portable in [false, true] {
            let base = tempdir();
            let shared = dir_with(base.path(), "shared", dir_mode, None);
            let mut b = atomwrite::Batch::new(Options::new().portable(portable)).expect_files(64);
            b.add(shared.join("b0"), b"root's\n").unwrap();
            let planted = shared.join("b5");
            file_owned_by(&planted, b"planted\n", NOBODY, 0o666);
            for i in 1..5 {
                b.add(shared.join(format!("b{i}")), b"root's\n").unwrap();
            }
            let e = b.add(&planted, b"root's secret\n").unwrap_err();
            assert_refused(&e, "fs.protected_regular", &planted, NOBODY);
            drop(b);
            assert_eq!(std::fs::read(&planted).unwrap(), b"planted\n");
            assert_eq!(std::fs::metadata(&planted).unwrap().uid(), NOBODY);
            let left: Vec<_> = std::fs::read_dir(&shared)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(left, vec![OsString::from("b5")], "{portable} {dir_mode:o}");
        }
    }
}

#[test]
fn links_and_files_of_the_caller_or_the_dir_owner_are_followed_and_replaced() {
    if !require_root("links_and_files_of_the_caller_or_the_dir_owner_are_followed_and_replaced") {
        return;
    }
    for portable in [false, true] {
        let o = Options::new().portable(portable);
        let base = tempdir();
        let victim = base.path().join("target");
        std::fs::write(&victim, b"old").unwrap();
        // The caller's own link in a shared sticky dir.
        let root_shared = dir_with(base.path(), "root-shared", 0o1777, None);
        let mine = root_shared.join("mine");
        symlink_owned_by(&victim, &mine, 0);
        o.write(&mine, b"via my link").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"via my link");
        // The directory owner's link and file in its own sticky dir (a user's shared dir).
        let nobody_shared = dir_with(base.path(), "nobody-shared", 0o1777, Some(NOBODY));
        let theirs = nobody_shared.join("theirs");
        symlink_owned_by(&victim, &theirs, NOBODY);
        o.write(&theirs, b"via the dir owner's link").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"via the dir owner's link");
        let owners_file = nobody_shared.join("owners-file");
        file_owned_by(&owners_file, b"old", NOBODY, 0o640);
        o.write(&owners_file, b"new").unwrap();
        assert_eq!(std::fs::read(&owners_file).unwrap(), b"new");
        let md = std::fs::metadata(&owners_file).unwrap();
        assert_eq!(
            (md.uid(), md.mode() & 0o7777),
            (NOBODY, 0o640),
            "owner/mode kept"
        );
        // Outside sticky directories the rule does not apply (nor does the kernel's).
        let open_dir = dir_with(base.path(), "world-writable", 0o777, None);
        let other = open_dir.join("other");
        symlink_owned_by(&victim, &other, NOBODY);
        o.write(&other, b"non-sticky").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"non-sticky");
        // A sticky dir only its owner may write is not shared.
        let private = dir_with(base.path(), "private-sticky", 0o1755, None);
        let link = private.join("link");
        symlink_owned_by(&victim, &link, NOBODY);
        o.write(&link, b"private sticky").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"private sticky");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    }
}

#[test]
fn every_hop_of_a_chain_and_every_directory_on_the_way_obey_the_sticky_rule() {
    if !require_root("every_hop_of_a_chain_and_every_directory_on_the_way_obey_the_sticky_rule") {
        return;
    }
    for portable in [false, true] {
        let o = Options::new().portable(portable);
        let base = tempdir();
        let victim_dir = base.path().join("root-only");
        std::fs::create_dir(&victim_dir).unwrap();
        let victim = victim_dir.join("secret");
        std::fs::write(&victim, b"root's").unwrap();
        let shared = dir_with(base.path(), "shared", 0o1777, None);
        // root's link -> attacker's link -> victim: the second hop is refused.
        let hop2 = shared.join("hop2");
        symlink_owned_by(&victim, &hop2, NOBODY);
        let hop1 = base.path().join("hop1");
        symlink_owned_by(&hop2, &hop1, 0);
        let before = snapshot(base.path());
        let e = o.write(&hop1, b"x").unwrap_err();
        assert_refused(&e, "fs.protected_symlinks", &hop2, NOBODY);
        // A directory link planted in the shared dir, used as a parent: `shared/d/secret`.
        let d = shared.join("d");
        symlink_owned_by(&victim_dir, &d, NOBODY);
        let e = o.write(d.join("secret"), b"x").unwrap_err();
        assert_refused(&e, "fs.protected_symlinks", &d, NOBODY);
        // ...also when reached through a link target, and with missing dirs to create below it.
        let via = base.path().join("via");
        symlink_owned_by(&d.join("secret"), &via, 0);
        let e = o.write(&via, b"x").unwrap_err();
        assert_refused(&e, "fs.protected_symlinks", &d, NOBODY);
        let e = o.write(d.join("new/sub/file"), b"x").unwrap_err();
        assert_refused(&e, "fs.protected_symlinks", &d, NOBODY);
        // ...and behind a legitimate directory link of the caller's: `hop/d/secret`.
        let hop = base.path().join("hop");
        symlink_owned_by(Path::new("shared"), &hop, 0);
        let e = o.write(hop.join("d/secret"), b"x").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("uid 65534"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"root's");
        assert!(
            !victim_dir.join("new").exists(),
            "directories created through the link"
        );
        let mut after = snapshot(base.path());
        after.remove(&d);
        after.remove(&via);
        after.remove(&hop);
        assert_eq!(after, before, "something changed");
    }
}

#[test]
fn no_follow_replaces_a_planted_link_without_touching_its_target() {
    if !require_root("no_follow_replaces_a_planted_link_without_touching_its_target") {
        return;
    }
    for portable in [false, true] {
        let base = tempdir();
        let victim = base.path().join("victim");
        std::fs::write(&victim, b"root's data").unwrap();
        let shared = dir_with(base.path(), "shared", 0o1777, None);
        let link = shared.join("report.txt");
        symlink_owned_by(&victim, &link, NOBODY);
        Options::new()
            .portable(portable)
            .symlinks(SymlinkPolicy::Replace)
            .write(&link, b"own file")
            .unwrap();
        let md = std::fs::symlink_metadata(&link).unwrap();
        assert!(md.is_file(), "the link was not replaced");
        assert_eq!(md.uid(), 0);
        assert_eq!(std::fs::read(&link).unwrap(), b"own file");
        assert_eq!(std::fs::read(&victim).unwrap(), b"root's data");
    }
}

#[test]
fn a_followed_link_never_creates_directories() {
    for portable in [false, true] {
        let o = Options::new().portable(portable);
        let base = tempdir();
        // The caller's own dangling links: relative and absolute targets in missing dirs.
        let rel = base.path().join("rel");
        std::os::unix::fs::symlink("made/by/link/file", &rel).unwrap();
        let abs_target = base.path().join("abs-made/x/file");
        let abs = base.path().join("abs");
        std::os::unix::fs::symlink(&abs_target, &abs).unwrap();
        let before = snapshot(base.path());
        for link in [&rel, &abs] {
            let e = o.write(link, b"x").unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
            assert!(!e.to_string().contains('\n'), "{e}");
            assert!(e.to_string().contains("symlink"), "{e}");
        }
        assert_eq!(snapshot(base.path()), before, "something was created");
        // Missing parents of the path given are still created, also below a followed dir link.
        let real = base.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, base.path().join("dirlink")).unwrap();
        o.write(base.path().join("dirlink/a/b/file"), b"deep")
            .unwrap();
        assert_eq!(std::fs::read(real.join("a/b/file")).unwrap(), b"deep");
    }
    if !require_root("a_followed_link_never_creates_directories (planted)") {
        return;
    }
    // A dangling link planted by another user in a sticky dir: refused, nothing created.
    let base = tempdir();
    let shared = dir_with(base.path(), "shared", 0o1777, None);
    let link = shared.join("out");
    symlink_owned_by(&base.path().join("etc-new/cron.d/job"), &link, NOBODY);
    let before = snapshot(base.path());
    let e = Options::new().write(&link, b"x").unwrap_err();
    assert_refused(&e, "fs.protected_symlinks", &link, NOBODY);
    assert_eq!(snapshot(base.path()), before);
}

#[test]
fn the_walk_resolves_dot_dot_after_a_directory_link_as_the_kernel_does() {
    for portable in [false, true] {
        let base = tempdir();
        let sub = base.path().join("real/sub");
        std::fs::create_dir_all(&sub).unwrap();
        std::os::unix::fs::symlink(&sub, base.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("real/sub", base.path().join("rel")).unwrap();
        for (i, link) in ["abs", "rel"].into_iter().enumerate() {
            // `link/../f` is `real/f` (the target's parent), not `f` beside the link.
            let p = base.path().join(format!("{link}/../f{i}"));
            Options::new().portable(portable).write(&p, b"x").unwrap();
            assert_eq!(
                std::fs::read(base.path().join(format!("real/f{i}"))).unwrap(),
                b"x"
            );
            assert!(!base.path().join(format!("f{i}")).exists());
        }
    }
}

#[test]
fn a_destination_written_as_a_directory_writes_nothing() {
    for portable in [false, true] {
        let o = Options::new().portable(portable);
        let base = tempdir();
        let reg = base.path().join("reg");
        std::fs::write(&reg, b"keep").unwrap();
        let before = snapshot(base.path());
        let s = |p: &Path, tail: &str| PathBuf::from(format!("{}{tail}", p.display()));
        // Like `echo x > reg/`: ENOTDIR; `echo x > nodir/`: EISDIR.
        for (path, errno) in [
            (s(&reg, "/"), 20),
            (s(&reg, "/."), 20),
            (s(&reg, "//"), 20),
            (s(&base.path().join("nodir"), "/"), 21),
            (s(&base.path().join("nodir/sub"), "/"), 21),
            (s(&base.path().join("nodir"), "/."), 21),
            (s(base.path(), "/"), 21),
        ] {
            let e = o.write(&path, b"x").unwrap_err();
            assert_eq!(e.raw_os_error(), Some(errno), "{}: {e}", path.display());
            assert_eq!(e.op(), Op::CheckDestination);
            assert!(!e.to_string().contains('\n'));
        }
        assert_eq!(snapshot(base.path()), before, "something changed");
    }
}

/// The process umask (from /proc; never changed by these tests).
fn current_umask() -> u32 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

#[test]
fn source_mode_never_gives_a_new_file_set_id_bits_and_honours_the_umask() {
    let umask = current_umask();
    for portable in [false, true] {
        let base = tempdir();
        for src_mode in [0o6755, 0o4755, 0o2750, 0o1777, 0o666, 0o600] {
            let dst = base.path().join(format!("copy-{src_mode:o}"));
            Options::new()
                .portable(portable)
                .source_mode(src_mode)
                .write(&dst, b"x")
                .unwrap();
            let mode = std::fs::metadata(&dst).unwrap().mode() & 0o7777;
            assert_eq!(mode, src_mode & 0o777 & !umask, "source {src_mode:o}");
        }
        // An existing destination keeps its own mode (like cp without -p).
        let dst = base.path().join("existing");
        std::fs::write(&dst, b"old").unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o640)).unwrap();
        Options::new()
            .portable(portable)
            .source_mode(0o6755)
            .write(&dst, b"new")
            .unwrap();
        assert_eq!(std::fs::metadata(&dst).unwrap().mode() & 0o7777, 0o640);
        // An explicit mode stays exact, set-id included (like install -m).
        let dst = base.path().join("explicit");
        Options::new()
            .portable(portable)
            .source_mode(0o644)
            .mode(0o4750)
            .write(&dst, b"x")
            .unwrap();
        assert_eq!(std::fs::metadata(&dst).unwrap().mode() & 0o7777, 0o4750);
    }
}

/// Runs this test binary's `zz_helper_process_role` as uid/gid 65534 with `role`.
fn run_as_nobody(role: &str, dir: &Path, portable: bool) -> String {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "zz_helper_process_role",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE_ENV, role)
    .env(DIR_ENV, dir)
    .uid(NOBODY)
    .gid(NOBODY);
    if portable {
        c.env(PORTABLE_ENV, "1");
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{role} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn preserve_source_keeps_set_id_bits_only_with_the_owner() {
    if std::env::var_os(ROLE_ENV).is_some()
        || !require_root("preserve_source_keeps_set_id_bits_only_with_the_owner")
    {
        return;
    }
    let base = tempdir();
    // Root can give the copy the source's owner: mode kept exactly, set-id included.
    let dst = base.path().join("as-root");
    Options::new()
        .preserve_source(0o6755, 1000, 1000)
        .write(&dst, b"copy\n")
        .unwrap();
    let md = std::fs::metadata(&dst).unwrap();
    assert_eq!(
        (md.mode() & 0o7777, md.uid(), md.gid()),
        (0o6755, 1000, 1000)
    );
    // uid 65534 cannot: its copy is its own, without set-id bits.
    let dir = dir_with(base.path(), "nobody", 0o755, Some(NOBODY));
    run_as_nobody("preserve", &dir, false);
    let md = std::fs::metadata(dir.join("preserved")).unwrap();
    assert_eq!(
        (md.mode() & 0o7777, md.uid(), md.gid()),
        (0o755, NOBODY, NOBODY)
    );
}

#[test]
fn an_owner_change_drops_set_id_bits_and_is_reported() {
    if std::env::var_os(ROLE_ENV).is_some()
        || !require_root("an_owner_change_drops_set_id_bits_and_is_reported")
    {
        return;
    }
    for portable in [false, true] {
        let base = tempdir();
        // uid 65534 may replace entries in its own directory, including root's set-id file.
        let dir = dir_with(base.path(), "nobody", 0o755, Some(NOBODY));
        let tool = dir.join("tool");
        file_owned_by(&tool, b"root's tool\n", 0, 0o6755);
        let out = run_as_nobody("replace_setid", &dir, portable);
        let line = out
            .lines()
            .find_map(|l| l.find("RECEIPT ").map(|i| &l[i + 8..]))
            .expect("receipt line");
        let change: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            change,
            serde_json::json!({
                "from_uid": 0, "from_gid": 0, "to_uid": NOBODY, "to_gid": NOBODY,
                "setid_dropped": true
            }),
            "portable {portable}"
        );
        let md = std::fs::metadata(&tool).unwrap();
        assert_eq!(std::fs::read(&tool).unwrap(), b"replaced by nobody\n");
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.gid()),
            (0o755, NOBODY, NOBODY),
            "set-id bits kept across an owner change (portable {portable})"
        );
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("tool")], "leftovers");
    }
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
        "replace_setid" => {
            // As uid 65534: replace a root-owned set-id file in a directory we may write.
            let portable = std::env::var_os(PORTABLE_ENV).is_some();
            let r = Options::new()
                .portable(portable)
                .write(dir.join("tool"), b"replaced by nobody\n")
                .unwrap();
            println!(
                "RECEIPT {}",
                serde_json::to_string(&r.owner_changed).unwrap()
            );
        }
        "preserve" => {
            // As uid 65534: `cp -p` of a 6755 file owned by uid 1000.
            Options::new()
                .preserve_source(0o6755, 1000, 1000)
                .write(dir.join("preserved"), b"copy\n")
                .unwrap();
        }
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
