//! Directory trees are walked through directory fds (`publish_dir`, `verify`/`hash_dir` of a
//! directory), tested as an attacker would try them:
//!
//! * (root) another uid swapping a file, a directory and a FIFO of the source tree with
//!   symlinks to root-only secrets (`renameat2(RENAME_EXCHANGE)` in a loop) while root publishes
//!   never gets a secret byte published, and never blocks a publish;
//! * set-uid/set-gid/sticky bits are never copied; modes are `mode & 0o777 & !umask`;
//! * symlinks inside a tree are copied as symlinks (absolute, relative, dangling), never followed;
//! * a FIFO in the tree is a clear error, never a blocked open; nothing is published, no staging
//!   directory is left;
//! * the listing and sha256 of a directory are byte-for-byte those of the former path-based
//!   implementation, so existing manifests still verify.
//!
//! Directories are created under `$TEST_DIR` when set. Root-only tests print why they skip when
//! not root; with `CI=true` they fail instead of skipping.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use atomwrite::{Durability, Options, Publisher, VerifyStatus, is_temp_name};

const ROLE_ENV: &str = "ATOMWRITE_TREE_ROLE";
const DIR_ENV: &str = "ATOMWRITE_TREE_DIR";
const NOBODY: u32 = 65534;
/// Generous bound for "never blocks": a blocked open would wait forever.
const NEVER: Duration = Duration::from_secs(120);

fn tempdir() -> tempfile::TempDir {
    let d = match std::env::var_os("TEST_DIR") {
        Some(base) => tempfile::Builder::new()
            .prefix("atomwrite-tree")
            .tempdir_in(base)
            .unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    // Other users (the attacker below) must be able to reach the tree inside.
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
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

fn fast() -> Publisher {
    Publisher::new().options(Options::new().durability(Durability::None))
}

fn mkfifo(path: &Path) {
    let dir = fs::File::open(path.parent().unwrap()).unwrap();
    rustix::fs::mknodat(
        &dir,
        path.file_name().unwrap(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
        0,
    )
    .unwrap();
}

/// Names in `vdir` that are neither a version, a manifest nor the lock: staging leftovers.
fn leftovers(vdir: &Path) -> Vec<PathBuf> {
    // A refused first publish removes the versions directory it created.
    let Ok(rd) = fs::read_dir(vdir) else {
        return Vec::new();
    };
    rd.map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap();
            is_temp_name(n) || !(n.as_bytes().starts_with(b"v") || n == ".lock")
        })
        .collect()
}

/// Every entry below `root` (symlinks not followed): (relative path, metadata).
fn entries(root: &Path) -> Vec<(PathBuf, fs::Metadata)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                todo.push(p.clone());
            }
            out.push((p.strip_prefix(root).unwrap().to_path_buf(), md));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A tree exercising every case of the listing format: nested dirs, an empty dir, an empty file,
/// names whose byte order differs from path order (`a`, `a-c`, `a/b`), relative, absolute and
/// dangling symlinks, non-UTF-8 names and link targets.
fn fixture(root: &Path) {
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::create_dir(root.join("a-c")).unwrap();
    fs::create_dir(root.join("empty")).unwrap();
    fs::write(root.join("a/b/deep.txt"), b"deep\n").unwrap();
    fs::write(root.join("a/one.txt"), b"one\n").unwrap();
    fs::write(root.join("a-c/two.txt"), vec![7u8; 100_000]).unwrap();
    fs::write(root.join("zero"), b"").unwrap();
    fs::write(
        root.join(OsStr::from_bytes(b"caf\xe9.txt")),
        b"latin-1 name\n",
    )
    .unwrap();
    symlink("a/one.txt", root.join("rel-link")).unwrap();
    symlink("/etc/hostname", root.join("abs-link")).unwrap();
    symlink("does/not/exist", root.join("dangling")).unwrap();
    symlink(OsStr::from_bytes(b"\xff\xfe"), root.join("odd-target")).unwrap();
    fs::set_permissions(root.join("a/one.txt"), fs::Permissions::from_mode(0o600)).unwrap();
}

/// The listing sha256 and total size the path-based `hash_dir` (atomwrite before the fd walk)
/// computed for [`fixture`]: manifests written by it must still verify.
const OLD_SHA256: &str = "798532d65343378abc6ae13dd08919fdd5de54b41b8ca1d7d0e9afbc06a9135c";
const OLD_SIZE: u64 = 100_022;

#[test]
fn hash_dir_is_byte_for_byte_the_former_listing() {
    let d = tempdir();
    let root = d.path().join("tree");
    fs::create_dir(&root).unwrap();
    fixture(&root);
    let (size, sha, files) = atomwrite::manifest::hash_dir(&root).unwrap();
    assert_eq!((size, sha.as_str()), (OLD_SIZE, OLD_SHA256));
    let paths: Vec<&str> = files.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "a",
            "a/b",
            "a/b/deep.txt",
            "a/one.txt",
            "a-c",
            "a-c/two.txt",
            "abs-link",
            "caf\u{fffd}.txt",
            "dangling",
            "empty",
            "odd-target",
            "rel-link",
            "zero"
        ]
    );
    let kinds: Vec<&str> = files.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "dir", "dir", "file", "file", "dir", "file", "symlink", "file", "symlink", "dir",
            "symlink", "symlink", "file"
        ]
    );
    // The root is reached through a symlink the user names (a published pointer): followed once.
    let via = d.path().join("via");
    symlink(&root, &via).unwrap();
    assert_eq!(atomwrite::manifest::hash_dir(&via).unwrap().1, OLD_SHA256);

    // Publishing the fixture copies it exactly: same listing, and verify agrees.
    let site = d.path().join("site");
    let p = fast().publish_dir(&site, &root).unwrap();
    assert_eq!(
        (p.manifest.size, p.manifest.sha256.as_str()),
        (OLD_SIZE, OLD_SHA256)
    );
    let v = atomwrite::verify(&site);
    assert_eq!(v.status, VerifyStatus::Ok, "{}", v.detail);
    // The 0600 file stays 0600 (umask only removes bits).
    let md = fs::metadata(site.join("a/one.txt")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);
}

#[test]
fn symlinks_in_the_tree_are_copied_as_links_and_never_followed() {
    let d = tempdir();
    let outside = d.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret.txt"), b"OUTSIDE-SECRET\n").unwrap();
    let src = d.path().join("build");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("index.html"), b"<h1>hi</h1>").unwrap();
    symlink("index.html", src.join("rel")).unwrap();
    symlink("../index.html", src.join("sub/up")).unwrap();
    symlink(outside.join("secret.txt"), src.join("abs-file")).unwrap();
    symlink(&outside, src.join("abs-dir")).unwrap();
    symlink("../outside", src.join("rel-dir")).unwrap();
    symlink("nowhere/at/all", src.join("dangling")).unwrap();
    symlink("loop", src.join("loop")).unwrap();
    let site = d.path().join("site");
    let p = fast().publish_dir(&site, &src).unwrap();
    let version = d
        .path()
        .join("site.versions")
        .join(format!("v{:010}", p.version));
    let links: Vec<(&str, PathBuf)> = vec![
        ("rel", "index.html".into()),
        ("sub/up", "../index.html".into()),
        ("abs-file", outside.join("secret.txt")),
        ("abs-dir", outside.clone()),
        ("rel-dir", "../outside".into()),
        ("dangling", "nowhere/at/all".into()),
        ("loop", "loop".into()),
    ];
    for (name, target) in &links {
        let md = fs::symlink_metadata(version.join(name)).unwrap();
        assert!(md.file_type().is_symlink(), "{name} is not a symlink");
        assert_eq!(
            &fs::read_link(version.join(name)).unwrap(),
            target,
            "{name}"
        );
    }
    // Nothing but the tree's own entries, and no byte of what the links point at.
    let all = entries(&version);
    assert_eq!(all.len(), links.len() + 2, "{all:?}");
    for (rel, md) in &all {
        if md.is_file() {
            let bytes = fs::read(version.join(rel)).unwrap();
            assert!(
                !bytes.windows(14).any(|w| w == b"OUTSIDE-SECRET"),
                "{rel:?}"
            );
        }
    }
    let files = p.manifest.files.unwrap();
    let kinds: Vec<(&str, &str)> = files
        .iter()
        .map(|e| (e.path.as_str(), e.kind.as_str()))
        .collect();
    assert!(kinds.contains(&("abs-dir", "symlink")), "{kinds:?}");
    assert!(kinds.contains(&("dangling", "symlink")), "{kinds:?}");
    assert_eq!(atomwrite::verify(&site).status, VerifyStatus::Ok);
}

/// Child role: sets umask 027, then publishes `$DIR/build` to `$DIR/site`.
fn role_umask027(dir: &Path) {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o027));
    fast()
        .publish_dir(dir.join("site"), dir.join("build"))
        .unwrap();
}

#[test]
fn set_id_and_sticky_bits_are_never_copied_and_the_umask_applies() {
    if std::env::var_os(ROLE_ENV).is_some() {
        return;
    }
    let d = tempdir();
    let src = d.path().join("build");
    fs::create_dir(&src).unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o755)).unwrap();
    let cases: [(&str, bool, u32); 6] = [
        ("setid-file", false, 0o6755),
        ("setuid-file", false, 0o4711),
        ("open-file", false, 0o666),
        ("setgid-dir", true, 0o2775),
        ("sticky-dir", true, 0o1777),
        ("private-dir", true, 0o700),
    ];
    for (name, dir, mode) in cases {
        let p = src.join(name);
        if dir {
            fs::create_dir(&p).unwrap();
            fs::write(p.join("inner"), b"x").unwrap();
        } else {
            fs::write(&p, b"#!/bin/sh\n").unwrap();
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, mode, "{name}");
    }
    // The umask applies as in a new process: run the publish in a child with umask 027.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "zz_helper_process_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_ENV, "umask027")
        .env(DIR_ENV, d.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let site = d.path().join("site");
    for (name, _, mode) in cases {
        let got = fs::metadata(site.join(name)).unwrap().mode() & 0o7777;
        assert_eq!(got, mode & 0o777 & !0o027, "{name}: {got:o}");
    }
    // The version directory itself is the copy of the root: 0755 & !027.
    let root = fs::metadata(site.join(".")).unwrap().mode() & 0o7777;
    assert_eq!(root, 0o750);
    assert_eq!(atomwrite::verify(&site).status, VerifyStatus::Ok);

    // And with the umask of this process (whatever it is), in-process.
    let umask = umask();
    let site2 = d.path().join("site2");
    fast().publish_dir(&site2, &src).unwrap();
    for (name, _, mode) in cases {
        let got = fs::metadata(site2.join(name)).unwrap().mode() & 0o7777;
        assert_eq!(got, mode & 0o777 & !umask, "{name}: {got:o}");
    }
}

/// Publishes in a thread and waits (bounded) for it: a blocked open fails the test, not hangs it.
fn publish_bounded(site: &Path, src: &Path) -> atomwrite::Result<atomwrite::Published> {
    let (tx, rx) = mpsc::channel();
    let (site, src) = (site.to_path_buf(), src.to_path_buf());
    std::thread::spawn(move || {
        let _ = tx.send(fast().publish_dir(&site, &src));
    });
    rx.recv_timeout(NEVER)
        .expect("publish_dir blocked (a FIFO opened without O_NONBLOCK?)")
}

#[test]
fn a_fifo_in_the_tree_is_refused_without_blocking_and_nothing_is_published() {
    let d = tempdir();
    let src = d.path().join("build");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("index.html"), b"v1").unwrap();
    let site = d.path().join("site");
    let vdir = d.path().join("site.versions");
    fast().publish_dir(&site, &src).unwrap();
    let before = entries(&vdir);
    let before_bytes = fs::read(site.join("index.html")).unwrap();

    fs::write(src.join("index.html"), b"v2").unwrap();
    mkfifo(&src.join("sub/pipe"));
    let e = publish_bounded(&site, &src).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("sub/pipe"), "{msg}");
    assert!(msg.contains("is a FIFO"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    // Nothing published, nothing left behind.
    assert_eq!(atomwrite::latest(&site).unwrap().unwrap().version, 1);
    assert_eq!(fs::read(site.join("index.html")).unwrap(), before_bytes);
    assert_eq!(leftovers(&vdir), Vec::<PathBuf>::new());
    let after = entries(&vdir);
    let names = |v: &[(PathBuf, fs::Metadata)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&after), names(&before));
    // verify of a tree holding a FIFO is an error too, not a hang.
    let (tx, rx) = mpsc::channel();
    let s2 = src.clone();
    std::thread::spawn(move || {
        let _ = tx.send(atomwrite::manifest::hash_dir(&s2).map(|_| ()));
    });
    let e = rx
        .recv_timeout(NEVER)
        .expect("hash_dir blocked")
        .unwrap_err();
    assert!(e.to_string().contains("is a FIFO"), "{e}");
}

#[test]
fn a_tree_containing_the_destination_is_refused() {
    let d = tempdir();
    let src = d.path().join("build");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();
    // The versions directory (and its staging directory) live inside the source tree.
    let e = fast().publish_dir(src.join("site"), &src).unwrap_err();
    // Refused by the publisher up front, or by the copy when it meets the staging directory.
    let m = e.to_string();
    assert!(
        m.contains("contain itself") || m.contains("into itself"),
        "{m}"
    );
    assert!(!m.contains('\n'), "one line: {m}");
    assert_eq!(atomwrite::latest(src.join("site")).unwrap(), None);
    assert_eq!(leftovers(&src.join("site.versions")), Vec::<PathBuf>::new());
}

#[test]
fn a_tree_deeper_than_the_limit_is_refused_not_overflowing_the_stack() {
    // 8,000 nested mkdirs cost tens of seconds on ext4 (inode allocation), a fraction on tmpfs.
    let shm = Path::new("/dev/shm");
    let d = if std::env::var_os("TEST_DIR").is_none() && shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempdir()
    };
    let src = d.path().join("build");
    // 4100 levels of one-letter names, made relative to an fd so no path is too long.
    let mut dir = rustix::fs::open(
        d.path(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    fs::create_dir(&src).unwrap();
    dir = rustix::fs::openat(
        &dir,
        "build",
        rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    for _ in 0..4100 {
        rustix::fs::mkdirat(&dir, "d", rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        dir = rustix::fs::openat(
            &dir,
            "d",
            rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
    }
    drop(dir);
    // The walk holds up to two fds per level: make room for 4096 levels where allowed.
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    let want = 10_000u64.min(lim.maximum.unwrap_or(u64::MAX));
    if lim.current.is_some_and(|c| c < want) {
        lim.current = Some(want);
        let _ = setrlimit(Resource::Nofile, lim);
    }
    let roomy = getrlimit(Resource::Nofile)
        .current
        .is_none_or(|c| c >= 9_000);
    let check = |e: atomwrite::Error| {
        let m = e.to_string();
        if roomy {
            assert!(m.contains("nested deeper than 4096 directories"), "{m}");
        } else {
            // Without room for 4096 levels of fds the walk stops earlier, with EMFILE.
            eprintln!("RLIMIT_NOFILE below 9000: accepting {m}");
            assert!(
                m.contains("deeper than 4096") || e.raw_os_error() == Some(24),
                "{m}"
            );
        }
        assert!(!m.contains('\n'), "one line: {m}");
    };
    check(atomwrite::manifest::hash_dir(&src).unwrap_err());
    let site = d.path().join("site");
    // On the 8 MiB stack of a program's main thread (the CLI's): the copy itself uses no
    // recursion, but removing the partial staging copy (versions::store::remove_entry) recurses
    // once per level and overflows a 2 MiB test thread at this depth in a debug build.
    let (site2, src2) = (site.clone(), src.clone());
    let e = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || fast().publish_dir(&site2, &src2).unwrap_err())
        .unwrap()
        .join()
        .unwrap();
    check(e);
    assert_eq!(atomwrite::latest(&site).unwrap(), None);
    assert_eq!(
        leftovers(&d.path().join("site.versions")),
        Vec::<PathBuf>::new()
    );
}

const PAIRS_ENV: &str = "ATOMWRITE_TREE_PAIRS";

/// Child role (uid 65534): swaps each `a:b` pair of names in `$DIR/build` with
/// `renameat2(RENAME_EXCHANGE)` in bursts of random length separated by short random pauses (so
/// some publishes run during a burst and some between), until `$DIR/signals/stop` exists.
fn role_swapper(dir: &Path) {
    use rustix::fs::{Mode, OFlags, RenameFlags};
    let build = rustix::fs::open(
        dir.join("build"),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    let pairs: Vec<(String, String)> = std::env::var(PAIRS_ENV)
        .unwrap()
        .split(',')
        .map(|p| {
            let (a, b) = p.split_once(':').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect();
    let signals = dir.join("signals");
    let mut seed = u64::from(std::process::id()) | 1;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut swaps = 0u64;
    fs::write(signals.join("ready"), b"").unwrap();
    // Also stop if the test process is gone (killed or panicked without its Drop).
    let parent = rustix::process::getppid();
    while !signals.join("stop").exists() && rustix::process::getppid() == parent {
        for _ in 0..=rnd(2000) {
            for (a, b) in &pairs {
                rustix::fs::renameat_with(
                    &build,
                    a.as_str(),
                    &build,
                    b.as_str(),
                    RenameFlags::EXCHANGE,
                )
                .unwrap_or_else(|e| panic!("RENAME_EXCHANGE {a} {b}: {e}"));
                swaps += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(rnd(500)));
    }
    println!("REPORT {swaps}");
}

#[test]
fn zz_helper_process_role() {
    let Some(role) = std::env::var_os(ROLE_ENV) else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).unwrap());
    match role.to_str().unwrap() {
        "umask027" => role_umask027(&dir),
        "swapper" => role_swapper(&dir),
        r => panic!("unknown role {r}"),
    }
}

/// A source tree owned by uid 65534 next to root-only secrets, a signals dir both may write,
/// and the swapper running as uid 65534 on `pairs`.
struct Race {
    base: tempfile::TempDir,
    attacker: Option<std::process::Child>,
}

impl Race {
    fn build(&self) -> PathBuf {
        self.base.path().join("build")
    }

    fn secret(&self) -> PathBuf {
        self.base.path().join("secret")
    }

    fn start(base: tempfile::TempDir, pairs: &str) -> Race {
        let signals = base.path().join("signals");
        fs::create_dir(&signals).unwrap();
        fs::set_permissions(&signals, fs::Permissions::from_mode(0o777)).unwrap();
        let attacker = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "zz_helper_process_role",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE_ENV, "swapper")
            .env(DIR_ENV, base.path())
            .env(PAIRS_ENV, pairs)
            .uid(NOBODY)
            .gid(NOBODY)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut r = Race {
            base,
            attacker: Some(attacker),
        };
        // Wait (without a deadline: never assert times) until the swapping has started.
        while !signals.join("ready").exists() {
            if let Some(st) = r.attacker.as_mut().unwrap().try_wait().unwrap() {
                panic!("attacker exited early: {st}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        r
    }

    /// Stops the swapper; returns how many swaps it made.
    fn stop(&mut self) -> u64 {
        fs::write(self.base.path().join("signals/stop"), b"").unwrap();
        let out = self.attacker.take().unwrap().wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "attacker failed: {text}");
        let line = text
            .lines()
            .find_map(|l| l.find("REPORT ").map(|i| &l[i + 7..]));
        line.expect("attacker report").trim().parse().unwrap()
    }
}

impl Drop for Race {
    fn drop(&mut self) {
        if let Some(mut a) = self.attacker.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
    }
}

/// Root-only secrets: `secret/secret.txt` (0600) and `secret/dir/` (0700) holding `inner.txt`,
/// all containing `TOPSECRET`. Returns an inotify fd that has seen every open of them.
fn plant_secrets(secret: &Path) -> std::os::fd::OwnedFd {
    use rustix::fs::inotify;
    fs::create_dir(secret).unwrap();
    fs::set_permissions(secret, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(secret.join("secret.txt"), b"TOPSECRET file\n".repeat(50)).unwrap();
    fs::set_permissions(secret.join("secret.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(secret.join("dir")).unwrap();
    fs::set_permissions(secret.join("dir"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(secret.join("dir/inner.txt"), b"TOPSECRET dir\n").unwrap();
    fs::set_permissions(
        secret.join("dir/inner.txt"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let ino =
        inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
    for p in ["secret.txt", "dir", "dir/inner.txt"] {
        inotify::add_watch(
            &ino,
            secret.join(p),
            inotify::WatchFlags::OPEN | inotify::WatchFlags::ACCESS,
        )
        .unwrap();
    }
    ino
}

/// Panics if anything opened or read a watched secret since the watch was set.
fn assert_secrets_untouched(ino: &std::os::fd::OwnedFd) {
    let mut buf = [0u8; 4096];
    match rustix::io::read(ino, &mut buf) {
        Err(rustix::io::Errno::AGAIN) => {}
        Ok(n) => panic!(
            "a root-only secret outside the tree was opened or read ({n} bytes of inotify events)"
        ),
        Err(e) => panic!("reading inotify events: {e}"),
    }
}

fn chown_nobody(p: &Path) {
    std::os::unix::fs::lchown(p, Some(NOBODY), Some(NOBODY)).unwrap();
}

#[test]
fn another_user_swapping_tree_entries_for_links_to_secrets_never_gets_them_published() {
    if std::env::var_os(ROLE_ENV).is_some()
        || !require_root(
            "another_user_swapping_tree_entries_for_links_to_secrets_never_gets_them_published",
        )
    {
        return;
    }
    let base = tempdir();
    let secret = base.path().join("secret");
    let ino = plant_secrets(&secret);
    let build = base.path().join("build");
    fs::create_dir_all(build.join("sub")).unwrap();
    fs::write(build.join("f"), b"public f\n").unwrap();
    fs::set_permissions(build.join("f"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(build.join("sub/inner.txt"), b"public inner\n").unwrap();
    fs::write(build.join("keep.txt"), b"public keep\n").unwrap();
    symlink(secret.join("secret.txt"), build.join(".l1")).unwrap();
    symlink(secret.join("dir"), build.join(".l2")).unwrap();
    for p in ["", "f", "sub", "sub/inner.txt", "keep.txt", ".l1", ".l2"] {
        chown_nobody(&build.join(p));
    }
    let mut race = Race::start(base, "f:.l1,sub:.l2");
    assert_eq!(race.build(), build);
    let site = race.base.path().join("site");
    let vdir = race.base.path().join("site.versions");
    let (mut ok, mut refused) = (0u32, 0u32);
    for i in 0..200u32 {
        let publisher = fast().keep(3);
        match publisher.publish_dir(&site, &build) {
            Ok(p) => {
                ok += 1;
                let version = vdir.join(format!("v{:010}", p.version));
                for (rel, md) in entries(&version) {
                    let ft = md.file_type();
                    if ft.is_file() {
                        let bytes = fs::read(version.join(&rel)).unwrap();
                        assert!(
                            !bytes.windows(9).any(|w| w == b"TOPSECRET"),
                            "publish {i}: secret bytes published in {rel:?}"
                        );
                        assert!(bytes.starts_with(b"public"), "{rel:?}");
                    } else if ft.is_symlink() {
                        let t = fs::read_link(version.join(&rel)).unwrap();
                        assert!(t.starts_with(race.secret()), "{rel:?} -> {t:?}");
                    } else {
                        assert!(ft.is_dir(), "{rel:?} is {ft:?}");
                    }
                }
                let v = atomwrite::verify(&site);
                assert_eq!(v.status, VerifyStatus::Ok, "{}", v.detail);
            }
            Err(e) => {
                refused += 1;
                let m = e.to_string();
                assert!(
                    m.contains("changed while the tree was being read"),
                    "publish {i}: {m}"
                );
            }
        }
        assert_eq!(leftovers(&vdir), Vec::<PathBuf>::new(), "publish {i}");
    }
    let swaps = race.stop();
    eprintln!("{ok} publishes succeeded, {refused} refused a changed entry, {swaps} swaps");
    assert!(swaps >= 100, "the attacker barely ran ({swaps} swaps)");
    assert!(ok >= 1, "no publish succeeded: nothing was checked");
    assert_secrets_untouched(&ino);
}

#[test]
fn a_fifo_swapped_in_for_a_file_never_blocks_a_publish_or_a_hash() {
    if std::env::var_os(ROLE_ENV).is_some()
        || !require_root("a_fifo_swapped_in_for_a_file_never_blocks_a_publish_or_a_hash")
    {
        return;
    }
    let base = tempdir();
    let build = base.path().join("build");
    fs::create_dir(&build).unwrap();
    fs::write(build.join("g"), b"public g\n").unwrap();
    mkfifo(&build.join(".p"));
    for p in ["", "g", ".p"] {
        chown_nobody(&build.join(p));
    }
    let mut race = Race::start(base, "g:.p");
    let site = race.base.path().join("site");
    for i in 0..100u32 {
        // The walk reads each name at its own moment, so it can meet the regular file under
        // both names (before and after a swap) and publish: then only public bytes, never a
        // FIFO, made it in.
        let e = match publish_bounded(&site, &build) {
            Err(e) => e,
            Ok(p) => {
                // (readdir during renames may also skip or repeat a name.)
                for f in ["g", ".p"] {
                    if let Ok(b) = fs::read(p.path.join(f)) {
                        assert_eq!(b, b"public g\n", "publish {i}");
                    }
                }
                continue;
            }
        };
        let m = e.to_string();
        assert!(
            m.contains("is a FIFO") || m.contains("changed while the tree was being read"),
            "publish {i}: {m}"
        );
        let (tx, rx) = mpsc::channel();
        let b = build.clone();
        std::thread::spawn(move || {
            let _ = tx.send(atomwrite::manifest::hash_dir(&b).map(|_| ()));
        });
        let Err(e) = rx.recv_timeout(NEVER).expect("hash_dir blocked") else {
            continue; // the same race as above: it met the regular file under both names
        };
        let m = e.to_string();
        assert!(
            m.contains("is a FIFO") || m.contains("changed while the tree was being read"),
            "hash {i}: {m}"
        );
    }
    let swaps = race.stop();
    eprintln!("{swaps} swaps");
    // Whatever was published (see above) holds only public bytes; nothing half-staged is left.
    assert_eq!(
        leftovers(&race.base.path().join("site.versions")),
        Vec::<PathBuf>::new()
    );
}

/// This process's umask, read from `/proc/self/status` (without changing it).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}
