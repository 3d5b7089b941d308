//! The core guarantees, one test per promise. Runs on whatever filesystem `TEST_DIR` points at
//! (default: the system temp dir), so the filesystem matrix reuses it unchanged.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use atomwrite::{Batch, CleanOptions, Durability, Op, Options, SymlinkPolicy};
use sha2::{Digest, Sha256};

fn tmp() -> tempfile::TempDir {
    match std::env::var_os("TEST_DIR") {
        Some(d) => tempfile::tempdir_in(d).expect("TEST_DIR must be a writable directory"),
        None => tempfile::tempdir().unwrap(),
    }
}

/// Both code paths: the Linux fast path (`O_TMPFILE`) and the portable named-temp path.
fn both() -> [Options; 2] {
    [Options::new(), Options::new().portable(true)]
}

fn temps_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if atomwrite::is_temp_name(&e.file_name()) {
            out.push(e.path());
        }
        if e.file_type().unwrap().is_dir() {
            out.extend(temps_in(&e.path()));
        }
    }
    out
}

fn assert_no_temps(dir: &Path) {
    let t = temps_in(dir);
    assert!(t.is_empty(), "temporary files left behind: {t:?}");
}

fn umask() -> u32 {
    let s = fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line[6..].trim(), 8).unwrap()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Root-only tests: skip with a reason elsewhere, but never under CI (which runs as root).
fn need_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: CI must run as root"
    );
    eprintln!("SKIP {test}: needs root (mount/chown)");
    false
}

#[test]
fn write_creates_the_file_with_exactly_the_bytes() {
    for o in both() {
        let d = tmp();
        let p = d.path().join("out.bin");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let r = o.write(&p, &data).unwrap();
        assert_eq!(fs::read(&p).unwrap(), data);
        assert_eq!(r.size, data.len() as u64);
        assert_eq!(
            r.sha256.as_deref(),
            Some(hex::encode(Sha256::digest(&data)).as_str())
        );
        assert_eq!(r.path, p);
        assert_no_temps(d.path());
    }
}

#[test]
fn repeated_overwrites_leave_the_last_complete_version() {
    for o in both() {
        let d = tmp();
        let p = d.path().join("state.json");
        for i in 0..50 {
            o.write(&p, format!("version {i}\n").repeat(i + 1).as_bytes())
                .unwrap();
        }
        assert_eq!(fs::read_to_string(&p).unwrap(), "version 49\n".repeat(50));
        assert_no_temps(d.path());
    }
}

#[test]
fn nothing_is_visible_before_commit_and_drop_discards() {
    for o in both() {
        let d = tmp();
        let p = d.path().join("f");
        fs::write(&p, b"old").unwrap();
        let mut f = o.open(&p).unwrap();
        f.write_all(b"new contents").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"old");
        drop(f);
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_no_temps(d.path());
        let mut f = o.open(&p).unwrap();
        f.write_all(b"x").unwrap();
        f.discard().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_no_temps(d.path());
    }
}

#[test]
fn write_with_error_publishes_nothing() {
    let d = tmp();
    let p = d.path().join("f");
    fs::write(&p, b"old").unwrap();
    let e = atomwrite::write_with(&p, |f| {
        f.write_all(b"partial")?;
        Err(std::io::Error::other("producer failed"))
    })
    .unwrap_err();
    assert_eq!(e.op(), Op::Write);
    assert!(e.to_string().contains("producer failed"), "{e}");
    assert_eq!(fs::read(&p).unwrap(), b"old");
    assert_no_temps(d.path());
}

#[test]
fn existing_modes_0600_and_0755_are_preserved() {
    for o in both() {
        for mode in [0o600, 0o755, 0o640, 0o4755] {
            let d = tmp();
            let p = d.path().join("f");
            fs::write(&p, b"old").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            o.write(&p, b"new").unwrap();
            assert_eq!(
                fs::metadata(&p).unwrap().mode() & 0o7777,
                mode,
                "mode {mode:o} not kept"
            );
        }
    }
}

#[test]
fn new_files_get_0666_filtered_by_the_umask() {
    for o in both() {
        let d = tmp();
        let p = d.path().join("new");
        o.write(&p, b"x").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o666 & !umask());
    }
}

#[test]
fn explicit_mode_is_exact() {
    for o in both() {
        let d = tmp();
        let p = d.path().join("f");
        o.clone().mode(0o640).write(&p, b"x").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        o.clone().mode(0o755).write(&p, b"y").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o755);
    }
}

#[test]
fn missing_parents_are_created() {
    for o in both() {
        let d = tmp();
        let p = d.path().join("a/b/c/out.txt");
        o.write(&p, b"deep").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"deep");
    }
}

#[test]
fn no_create_dirs_fails_cleanly_and_creates_nothing() {
    for o in both() {
        let d = tmp();
        let p = d.path().join("a/b/out.txt");
        let e = o.create_dirs(false).write(&p, b"x").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(e.op(), Op::OpenDir);
        assert!(e.to_string().contains("a/b"), "{e}");
        assert!(!d.path().join("a").exists());
    }
}

#[test]
fn a_directory_destination_is_refused() {
    for o in both() {
        let d = tmp();
        let p = d.path().join("sub");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("keep"), b"k").unwrap();
        let e = o.write(&p, b"x").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::IsADirectory);
        assert!(e.to_string().contains("is a directory"), "{e}");
        assert_eq!(fs::read(p.join("keep")).unwrap(), b"k");
        assert_no_temps(d.path());
    }
}

#[test]
fn a_fifo_destination_is_refused_without_blocking() {
    let d = tmp();
    let p = d.path().join("fifo");
    rustix::fs::mkfifoat(rustix::fs::CWD, &p, rustix::fs::Mode::from_raw_mode(0o644)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let p2 = p.clone();
    std::thread::spawn(move || {
        let _ = tx.send(atomwrite::write(&p2, b"x").map_err(|e| (e.kind(), e.to_string())));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("write blocked on a FIFO");
    let (kind, msg) = r.unwrap_err();
    assert_eq!(kind, std::io::ErrorKind::InvalidInput);
    assert!(msg.contains("FIFO"), "{msg}");
    assert!(fs::symlink_metadata(&p).unwrap().file_type().is_fifo_like());
    assert_no_temps(d.path());
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn a_255_byte_name_succeeds_and_a_256_byte_name_fails_cleanly() {
    for o in both() {
        let d = tmp();
        let p = d.path().join("n".repeat(255));
        o.write(&p, b"long").unwrap();
        o.write(&p, b"longer").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"longer");
        let bad = d.path().join("m".repeat(256));
        let e = o.write(&bad, b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(36), "{e}"); // ENAMETOOLONG
        assert!(e.to_string().contains("256 bytes"), "{e}");
        assert_no_temps(d.path());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}

#[test]
fn symlink_follow_writes_the_target_and_keeps_the_link() {
    for o in both() {
        let d = tmp();
        fs::create_dir(d.path().join("real")).unwrap();
        let target = d.path().join("real/config");
        fs::write(&target, b"old").unwrap();
        let link = d.path().join("config");
        std::os::unix::fs::symlink("real/config", &link).unwrap();
        let r = o.write(&link, b"new").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("real/config"));
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(r.path, d.path().join("real/config"));
        assert_no_temps(d.path());
    }
}

#[test]
fn symlink_chain_is_followed_to_the_end() {
    let d = tmp();
    let target = d.path().join("t");
    fs::write(&target, b"old").unwrap();
    std::os::unix::fs::symlink(&target, d.path().join("l1")).unwrap();
    std::os::unix::fs::symlink("l1", d.path().join("l2")).unwrap();
    atomwrite::write(d.path().join("l2"), b"new").unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"new");
    assert!(
        fs::symlink_metadata(d.path().join("l1"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn symlink_loop_is_an_error_not_a_hang() {
    let d = tmp();
    std::os::unix::fs::symlink("b", d.path().join("a")).unwrap();
    std::os::unix::fs::symlink("a", d.path().join("b")).unwrap();
    let e = atomwrite::write(d.path().join("a"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(40), "{e}"); // ELOOP
    assert_no_temps(d.path());
}

#[test]
fn dangling_symlink_creates_its_target_file_but_never_directories() {
    for o in both() {
        let d = tmp();
        fs::create_dir(d.path().join("sub")).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink("sub/target", &link).unwrap();
        o.write(&link, b"made").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(d.path().join("sub/target")).unwrap(), b"made");
        // create_dirs applies to the path given, not to the directories a link names.
        let far = d.path().join("far");
        std::os::unix::fs::symlink("missing/dir/target", &far).unwrap();
        let e = o.write(&far, b"x").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(
            !d.path().join("missing").exists(),
            "a link target's directory was created"
        );
        assert_no_temps(d.path());
    }
}

#[test]
fn symlink_replace_replaces_the_link_itself() {
    for o in both() {
        let d = tmp();
        let target = d.path().join("target");
        fs::write(&target, b"untouched").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink("target", &link).unwrap();
        o.symlinks(SymlinkPolicy::Replace)
            .write(&link, b"file now")
            .unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_file());
        assert_eq!(fs::read(&link).unwrap(), b"file now");
        assert_eq!(fs::read(&target).unwrap(), b"untouched");
    }
}

#[test]
fn create_only_fails_on_an_existing_file_and_creates_a_new_one() {
    for o in both() {
        let d = tmp();
        let p = d.path().join("once");
        let o = o.no_clobber(true);
        o.write(&p, b"first").unwrap();
        let e = o.write(&p, b"second").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(e.is_conflict());
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_no_temps(d.path());
    }
}

#[test]
fn create_only_race_has_exactly_one_winner() {
    for o in both() {
        let d = tmp();
        let p = d.path().join("race");
        let wins: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let (o, p) = (o.clone().no_clobber(true), p.clone());
                    s.spawn(move || o.write(&p, format!("writer {i}").as_bytes()).is_ok() as usize)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1);
        assert!(fs::read_to_string(&p).unwrap().starts_with("writer "));
        assert_no_temps(d.path());
    }
}

#[test]
fn seeking_back_still_gives_the_right_checksum() {
    for o in both() {
        let d = tmp();
        let p = d.path().join("f");
        let mut f = o.open(&p).unwrap();
        f.write_all(b"hello world").unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(b"J").unwrap();
        f.seek(SeekFrom::End(0)).unwrap();
        f.write_all(b"!").unwrap();
        let r = f.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"Jello world!");
        assert_eq!(
            r.sha256.unwrap(),
            hex::encode(Sha256::digest(b"Jello world!"))
        );
        assert_eq!(r.size, 12);
    }
}

#[test]
fn checksum_can_be_turned_off() {
    let d = tmp();
    let r = Options::new()
        .checksum(false)
        .write(d.path().join("f"), b"x")
        .unwrap();
    assert_eq!(r.sha256, None);
}

#[test]
fn durability_levels_all_publish() {
    for dur in [Durability::Full, Durability::Integrity, Durability::None] {
        for o in both() {
            let d = tmp();
            let p = d.path().join("f");
            let r = o.durability(dur).write(&p, b"x").unwrap();
            assert_eq!(fs::read(&p).unwrap(), b"x");
            // What was asked for, where the filesystem keeps it across power loss (doctor's
            // classification); "none" on tmpfs, network and FUSE filesystems.
            let persists = atomwrite::doctor(d.path()).unwrap().durability.level == "power-loss";
            let want = if persists {
                format!("{dur:?}").to_lowercase()
            } else {
                "none".to_string()
            };
            assert_eq!(r.durability, want);
        }
    }
}

#[test]
fn concurrent_writers_and_readers_never_see_a_torn_file() {
    for o in both() {
        let d = tmp();
        let p = d.path().join("shared");
        let payload = |w: usize, i: usize| -> Vec<u8> {
            let body: Vec<u8> = format!("{w}:{i};")
                .repeat(200 + (w * 31 + i * 17) % 900)
                .into_bytes();
            let mut v = format!("{:016x}", body.len()).into_bytes();
            v.extend_from_slice(&body);
            v
        };
        o.clone().write(&p, &payload(9, 0)).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let mut writers = Vec::new();
            for w in 0..4 {
                let (o, p) = (o.clone().durability(Durability::None), p.clone());
                writers.push(s.spawn(move || {
                    for i in 0..100 {
                        o.write(&p, &payload(w, i)).unwrap();
                    }
                }));
            }
            for _ in 0..4 {
                s.spawn(|| {
                    let mut reads = 0;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) || reads < 10 {
                        let b = fs::read(&p).unwrap();
                        let len = usize::from_str_radix(std::str::from_utf8(&b[..16]).unwrap(), 16)
                            .unwrap();
                        assert_eq!(b.len(), 16 + len, "torn read");
                        let first = b[16..].split(|c| *c == b';').next().unwrap().to_vec();
                        for rec in b[16..].split(|c| *c == b';').filter(|r| !r.is_empty()) {
                            assert_eq!(rec, &first[..], "mixed versions in one read");
                        }
                        reads += 1;
                    }
                });
            }
            for w in writers {
                w.join().unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        assert_no_temps(d.path());
    }
}

#[test]
fn clean_removes_only_old_unlocked_temps_of_our_shape() {
    let d = tmp();
    let dir = d.path();
    // A crashed writer's temp: our shape, unlocked.
    let stale = dir.join(".out.abcdefghijklmnop.tmp");
    fs::write(&stale, b"stale").unwrap();
    // Someone else's files that merely look similar.
    let foreign = [
        dir.join(".out.tmp"),
        dir.join("out.abcdefghijklmnop.tmp"),
        dir.join(".out.ABCDEFGHIJKLMNOP.tmp"),
    ];
    for f in &foreign {
        fs::write(f, b"not ours").unwrap();
    }
    // A live writer's temp (portable path: named + flocked), with bytes in it.
    let mut live = Options::new()
        .portable(true)
        .open(dir.join("live"))
        .unwrap();
    std::io::Write::write_all(&mut live, b"x").unwrap();
    let live_temp = live.temp_path().unwrap();
    // Dry run first: reports, removes nothing.
    let r = atomwrite::clean_with(
        dir,
        &CleanOptions {
            older_than: Duration::ZERO,
            dry_run: true,
            recursive: false,
        },
    )
    .unwrap();
    assert_eq!(r.removed, vec![stale.clone()]);
    assert!(stale.exists());
    // Young temps are kept.
    let r = atomwrite::clean(dir, Duration::from_secs(3600)).unwrap();
    assert!(r.removed.is_empty());
    assert!(r.young.contains(&stale));
    // Real run.
    let r = atomwrite::clean(dir, Duration::ZERO).unwrap();
    assert_eq!(r.removed, vec![stale.clone()]);
    assert_eq!(r.locked, vec![live_temp.clone()]);
    assert!(!stale.exists());
    assert!(live_temp.exists(), "a live writer's temp was removed");
    for f in &foreign {
        assert!(f.exists(), "{f:?} is not ours and must stay");
    }
    live.commit().unwrap();
    assert_eq!(fs::read(dir.join("live")).unwrap(), b"x");
}

#[test]
fn clean_recursive_descends_without_following_symlinks() {
    let d = tmp();
    let outside = tmp();
    fs::write(outside.path().join(".x.abcdefghijklmnop.tmp"), b"outside").unwrap();
    fs::create_dir(d.path().join("sub")).unwrap();
    fs::write(d.path().join("sub/.y.abcdefghijklmnop.tmp"), b"stale").unwrap();
    std::os::unix::fs::symlink(outside.path(), d.path().join("link")).unwrap();
    let r = atomwrite::clean_with(
        d.path(),
        &CleanOptions {
            older_than: Duration::ZERO,
            dry_run: false,
            recursive: true,
        },
    )
    .unwrap();
    assert_eq!(r.removed.len(), 1);
    assert!(outside.path().join(".x.abcdefghijklmnop.tmp").exists());
}

/// Review F6: portable writers create a named temp and only then `flock` it; a `clean` with
/// no age threshold used to find the temp in between, unlocked, and remove it (or lock it, so
/// the writer's own `flock` failed). Writers now hold their directory's shared lock across that
/// window. Threads of one process race exactly as processes do (every `flock` here is on its
/// own open file description): 2 writer threads (single writes, and batches of 5 whose
/// directory lock is the batch's), 2000 files, against 2 threads sweeping with `clean(ZERO)`
/// in a loop. Every write succeeds, and nothing is left.
#[test]
fn portable_writes_racing_clean_with_no_age_threshold_all_succeed() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let d = tmp();
    let dir = d.path().to_path_buf();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let cleaners: Vec<_> = (0..2)
        .map(|_| {
            let (stop, dir) = (stop.clone(), dir.clone());
            std::thread::spawn(move || {
                let mut sweeps = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    atomwrite::clean(&dir, Duration::ZERO).unwrap();
                    sweeps += 1;
                }
                sweeps
            })
        })
        .collect();
    let opts = Options::new().portable(true).durability(Durability::None);
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (dir, opts) = (dir.clone(), opts.clone());
            std::thread::spawn(move || {
                let mut failed = Vec::new();
                for i in 0..500 {
                    let p = dir.join(format!("w{w}-{}", i % 10));
                    let body = format!("{w} {i}");
                    match opts.write(&p, body.as_bytes()) {
                        Ok(_) => assert_eq!(fs::read_to_string(&p).unwrap(), body),
                        Err(e) => failed.push(e.to_string()),
                    }
                    let mut b = Batch::new(opts.clone());
                    let names: Vec<PathBuf> =
                        (0..5).map(|k| dir.join(format!("b{w}-{k}"))).collect();
                    if let Some(e) = names.iter().find_map(|n| b.add(n, body.as_bytes()).err()) {
                        failed.push(e.to_string());
                        continue;
                    }
                    match b.commit() {
                        Ok(_) => {
                            for n in &names {
                                assert_eq!(fs::read_to_string(n).unwrap(), body);
                            }
                        }
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                failed
            })
        })
        .collect();
    let failed: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    stop.store(true, Ordering::Relaxed);
    for c in cleaners {
        assert!(c.join().unwrap() > 0);
    }
    assert_eq!(
        failed,
        Vec::<String>::new(),
        "{} writes failed",
        failed.len()
    );
    assert_no_temps(&dir);
}

#[test]
fn batch_commits_every_file_with_one_directory_sync() {
    for o in both() {
        for strategy in [
            atomwrite::BatchSync::Syncfs,
            atomwrite::BatchSync::ParallelFsync,
        ] {
            let d = tmp();
            fs::write(d.path().join("f7"), b"old").unwrap();
            let mut b = Batch::new(o.clone()).sync_strategy(strategy);
            for i in 0..40 {
                b.add(
                    d.path().join(format!("f{i}")),
                    format!("file {i}").as_bytes(),
                )
                .unwrap();
            }
            let r = b.commit().unwrap();
            assert_eq!(r.files.len(), 40);
            assert_eq!(r.dir_syncs, 1);
            for i in 0..40 {
                assert_eq!(
                    fs::read_to_string(d.path().join(format!("f{i}"))).unwrap(),
                    format!("file {i}")
                );
            }
            assert_no_temps(d.path());
        }
    }
}

#[test]
fn batch_dropped_before_commit_publishes_nothing() {
    for o in both() {
        let d = tmp();
        let mut b = Batch::new(o);
        for i in 0..10 {
            b.add(d.path().join(format!("f{i}")), b"x").unwrap();
        }
        drop(b);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    }
}

#[test]
fn batch_syncs_each_distinct_directory_once() {
    let d = tmp();
    let mut b = Batch::new(Options::new());
    for i in 0..12 {
        b.add(d.path().join(format!("dir{}/f{i}", i % 3)), b"x")
            .unwrap();
    }
    assert_eq!(b.commit().unwrap().dir_syncs, 3);
}

#[test]
fn errors_name_operation_path_and_reason_on_one_line() {
    let d = tmp();
    let p = d.path().join("sub");
    fs::create_dir(&p).unwrap();
    let e = atomwrite::write(&p, b"x").unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("failed to "), "{s}");
    assert!(s.contains(&p.display().to_string()), "{s}");
    assert!(!s.contains('\n'));
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::IsADirectory);
}

// ---- root-only: real kernel faults -------------------------------------------------------

struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn mount_tmpfs(at: &Path, opts: &str) -> Mount {
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
        .arg(at)
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs failed");
    Mount(at.to_path_buf())
}

#[test]
fn enospc_on_a_tiny_tmpfs_leaves_the_old_file_and_gives_the_space_back() {
    if !need_root("enospc") {
        return;
    }
    for (fast, o) in [true, false].into_iter().zip(both()) {
        let d = tempfile::tempdir().unwrap();
        let _m = mount_tmpfs(d.path(), "size=1m");
        let p = d.path().join("f");
        fs::write(&p, b"old contents").unwrap();
        let free_before = rustix::fs::statvfs(d.path()).unwrap().f_bfree;
        let big = vec![7u8; 2 << 20];
        let mut f = o.open(&p).unwrap();
        let e = f.write_all(&big).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
        assert!(
            e.to_string().contains("failed to write temporary file for"),
            "{e}"
        );
        drop(f);
        assert_eq!(fs::read(&p).unwrap(), b"old contents");
        assert_no_temps(d.path());
        // Another test's fork may hold the temp's fd for an instant (between fork and exec, before
        // O_CLOEXEC closes it): wait for the space to come back rather than race it.
        let mut freed = false;
        for _ in 0..500 {
            if rustix::fs::statvfs(d.path()).unwrap().f_bfree == free_before {
                freed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(freed, "space not given back");
        // With a size hint the fast path fails before any byte is written (fallocate with
        // KEEP_SIZE). The portable path has no reservation that keeps the file's size, so it
        // fails at the write instead, just as safely.
        let opened = o.clone().size_hint(2 << 20).open(&p);
        let e = if fast {
            let e = opened.unwrap_err();
            assert_eq!(e.op(), Op::Preallocate);
            e
        } else {
            let mut f = opened.unwrap();
            let e = f.write_all_bytes(&big).unwrap_err();
            assert_eq!(e.op(), Op::Write);
            e
        };
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"old contents");
        assert_no_temps(d.path());
    }
}

#[test]
fn erofs_is_reported_and_nothing_changes() {
    if !need_root("erofs") {
        return;
    }
    for o in both() {
        let d = tempfile::tempdir().unwrap();
        let _m = mount_tmpfs(d.path(), "size=1m");
        let p = d.path().join("f");
        fs::write(&p, b"old").unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(d.path())
            .status()
            .unwrap();
        assert!(ok.success());
        let e = o.write(&p, b"new").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(30), "{e}"); // EROFS
        assert!(e.to_string().contains("read-only"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_no_temps(d.path());
    }
}

#[test]
fn ebusy_on_a_bind_mounted_file_is_reported_never_written_in_place() {
    if !need_root("ebusy") {
        return;
    }
    for o in both() {
        let d = tmp();
        let src = d.path().join("src");
        let dst = d.path().join("dst");
        fs::write(&src, b"mounted").unwrap();
        fs::write(&dst, b"old").unwrap();
        let ok = std::process::Command::new("mount")
            .arg("--bind")
            .arg(&src)
            .arg(&dst)
            .status()
            .unwrap();
        assert!(ok.success());
        let _m = Mount(dst.clone());
        let e = o.write(&dst, b"new").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(16), "{e}"); // EBUSY
        assert!(e.to_string().contains("mount point"), "{e}");
        assert_eq!(
            fs::read(&dst).unwrap(),
            b"mounted",
            "written in place through the mount"
        );
        assert_eq!(fs::read(&src).unwrap(), b"mounted");
        assert_no_temps(d.path());
    }
}

#[test]
fn owner_and_group_of_a_replaced_file_are_preserved() {
    if !need_root("chown") {
        return;
    }
    for o in both() {
        let d = tmp();
        let p = d.path().join("owned");
        fs::write(&p, b"old").unwrap();
        std::os::unix::fs::chown(&p, Some(4321), Some(8765)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o2750)).unwrap();
        o.write(&p, b"new").unwrap();
        let md = fs::metadata(&p).unwrap();
        assert_eq!((md.uid(), md.gid()), (4321, 8765));
        assert_eq!(md.mode() & 0o7777, 0o2750, "set-gid bit lost by chown");
    }
}

#[test]
fn clean_removes_versions_a_crashed_publisher_left_unreferenced() {
    let d = tmp();
    let dst = d.path().join("out.txt");
    atomwrite::Publisher::new().publish(&dst, b"v1").unwrap();
    // A publisher killed after writing version 2 but before the pointer swap leaves the version
    // and its pending marker (the evidence that it was never made current):
    std::os::unix::fs::symlink(
        "out.txt.versions/v0000000002.txt",
        d.path().join(".out.txt.v0000000002.pending"),
    )
    .unwrap();
    fs::write(d.path().join("out.txt.versions/v0000000002.txt"), b"v2").unwrap();
    // A file nobody can prove atomwrite left: kept.
    fs::write(d.path().join("out.txt.versions/v0000000003.txt"), b"v3").unwrap();
    let r = atomwrite::clean(d.path(), Duration::from_secs(3600)).unwrap();
    assert_eq!(r.leftovers.len(), 2, "{r:?}");
    assert_eq!(r.leftover_bytes, 2, "{r:?}");
    assert!(r.removed.is_empty(), "no temps: {r:?}");
    assert!(!d.path().join("out.txt.versions/v0000000002.txt").exists());
    assert!(d.path().join("out.txt.versions/v0000000003.txt").exists());
    assert_eq!(fs::read(&dst).unwrap(), b"v1");
    assert!(d.path().join("out.txt.versions/v0000000001.txt").exists());
}

#[test]
fn long_streams_hash_correctly_with_the_parallel_hasher() {
    // Past the 8 MiB threshold the hash moves to a helper thread; short reads from a
    // "pipe" exercise partial chunks.
    struct Trickle(Vec<u8>, usize);
    impl std::io::Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf
                .len()
                .min(self.0.len() - self.1)
                .min(300_000 + self.1 % 777_777);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }
    let data: Vec<u8> = (0..(20u32 << 20) + 12345)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for o in both() {
        let d = tmp();
        let p = d.path().join("big");
        let mut f = o.open(&p).unwrap();
        let n = f
            .copy_from(&mut Trickle(data.clone(), 0), Path::new("<trickle>"))
            .unwrap();
        assert_eq!(n, data.len() as u64);
        let r = f.commit().unwrap();
        assert_eq!(r.size, data.len() as u64);
        assert_eq!(r.sha256.unwrap(), hex::encode(Sha256::digest(&data)));
        assert_eq!(fs::read(&p).unwrap(), data);
    }
}

mod manifest_fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever bytes sit in a manifest (garbage, truncated JSON, wrong types), `verify`
        /// reports a status and never panics or says `ok`.
        #[test]
        fn verify_never_trusts_a_corrupt_manifest(junk in proptest::collection::vec(any::<u8>(), 0..400), cut in 0usize..200) {
            let d = tmp();
            let p = d.path().join("data.csv");
            atomwrite::write(&p, b"a,b\n1,2\n").unwrap();
            let r = atomwrite::Options::new().write(&p, b"a,b\n1,2\n").unwrap();
            atomwrite::write_manifest(&p, &r, &atomwrite::Options::new()).unwrap();
            let mpath = atomwrite::manifest_path(&p);
            let good = fs::read(&mpath).unwrap();
            // Either random junk, or the real manifest cut short.
            let bad = if junk.len() % 2 == 0 { junk } else { good[..cut.min(good.len().saturating_sub(1))].to_vec() };
            fs::write(&mpath, &bad).unwrap();
            let v = atomwrite::verify(&p);
            prop_assert!(!v.is_ok(), "corrupt manifest accepted: {:?}", String::from_utf8_lossy(&bad));
        }
    }
}

// ---- batch data barriers, observed with strace --------------------------------------------

const BARRIER_ROLE: &str = "ATOMWRITE_TEST_BARRIER_ROLE";
const BARRIER_DIR: &str = "ATOMWRITE_TEST_BARRIER_DIR";
const BARRIER_FILES: usize = 12;

/// Child half of the `batch_barrier_*` tests (does nothing when run directly): commits a
/// `BARRIER_FILES`-file batch in `BARRIER_DIR` with the backend and strategy the role names.
#[test]
fn zz_batch_barrier_child() {
    let Ok(role) = std::env::var(BARRIER_ROLE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os(BARRIER_DIR).unwrap());
    let (backend, strategy) = role.split_once('/').unwrap();
    let strategy = match strategy {
        "syncfs" => atomwrite::BatchSync::Syncfs,
        "parallel" => atomwrite::BatchSync::ParallelFsync,
        "auto" => atomwrite::BatchSync::Auto,
        other => panic!("unknown strategy {other}"),
    };
    let opts = Options::new().portable(backend == "portable");
    let mut b = Batch::new(opts).sync_strategy(strategy);
    for i in 0..BARRIER_FILES {
        b.add(dir.join(format!("f{i}")), format!("file {i}").as_bytes())
            .unwrap();
    }
    let r = b.commit().unwrap();
    println!("DATA_SYNCS {}", r.data_syncs);
}

/// What one traced batch did: `fsync`s of files (not of the directory), `fsync`s of the
/// directory, `fdatasync`s, `syncfs`s, and the receipt's `data_syncs`.
#[derive(Debug, Default)]
struct Barriers {
    file_fsyncs: usize,
    dir_fsyncs: usize,
    fdatasyncs: usize,
    syncfs: usize,
    data_syncs: usize,
}

/// Whether `tool ARGS` runs; when it does not, says so (and fails under CI, which has it).
fn have_tool(tool: &str, args: &[&str]) -> bool {
    let ok = std::process::Command::new(tool)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must have {tool} installed"
        );
        eprintln!("SKIP: {tool} not available");
    }
    ok
}

/// Runs `zz_batch_barrier_child` under `strace -f -y` in a fresh directory; with `old_kernel`,
/// under `setarch --uname-2.6` too, so `uname` reports a 2.6 kernel. `None` when strace or
/// setarch is missing (never under CI).
fn traced_batch(role: &str, old_kernel: bool) -> Option<Barriers> {
    if !have_tool("strace", &["-V"]) {
        return None;
    }
    let arch = std::env::consts::ARCH;
    if old_kernel && !have_tool("setarch", &[arch, "--uname-2.6", "true"]) {
        return None;
    }
    let d = tmp();
    let dir = d.path().join("out");
    fs::create_dir(&dir).unwrap();
    let log = d.path().join("strace.log");
    let mut cmd = if old_kernel {
        let mut c = std::process::Command::new("setarch");
        c.args([arch, "--uname-2.6", "strace"]);
        c
    } else {
        std::process::Command::new("strace")
    };
    let out = cmd
        .args([
            "-f",
            "-qq",
            "-y",
            "-e",
            "trace=fsync,fdatasync,syncfs",
            "-o",
        ])
        .arg(&log)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "zz_batch_barrier_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(BARRIER_ROLE, role)
        .env(BARRIER_DIR, &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{role}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..BARRIER_FILES {
        assert_eq!(
            fs::read_to_string(dir.join(format!("f{i}"))).unwrap(),
            format!("file {i}")
        );
    }
    let canon_dir = fs::canonicalize(&dir).unwrap();
    let dir_fd = format!("<{}>)", canon_dir.display());
    let mut b = Barriers::default();
    for line in fs::read_to_string(&log).unwrap().lines() {
        // `PID call(FD<path>) = ret`, or `PID call(FD<path> <unfinished ...>` from a thread;
        // the matching `<... call resumed>` line does not repeat `call(`.
        let call = line.split_once(' ').map_or(line, |(_, r)| r).trim_start();
        if call.starts_with("fsync(") {
            let on_dir = call.contains(&dir_fd)
                || call.contains(&format!("<{}> <unfinished", canon_dir.display()));
            if on_dir {
                b.dir_fsyncs += 1;
            } else {
                b.file_fsyncs += 1;
            }
        } else if call.starts_with("fdatasync(") {
            b.fdatasyncs += 1;
        } else if call.starts_with("syncfs(") {
            b.syncfs += 1;
        }
    }
    b.data_syncs = stdout
        .lines()
        .find_map(|l| {
            l.split_once("DATA_SYNCS ")
                .map(|(_, n)| n.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{role}: no DATA_SYNCS in {stdout}"));
    Some(b)
}

#[test]
fn batch_barrier_portable_syncfs_request_fsyncs_every_file() {
    // The portable path has no filesystem-wide barrier that reports errors: a Syncfs batch
    // there must fsync each file, or it would rename unsynced files.
    for role in ["portable/syncfs", "portable/auto", "portable/parallel"] {
        let Some(b) = traced_batch(role, false) else {
            return;
        };
        assert_eq!(b.syncfs, 0, "{role}: {b:?}");
        assert_eq!(b.file_fsyncs, BARRIER_FILES, "{role}: {b:?}");
        assert_eq!(b.fdatasyncs, 0, "{role}: {b:?}");
        assert_eq!(b.dir_fsyncs, 1, "{role}: {b:?}");
        assert_eq!(b.data_syncs, BARRIER_FILES, "{role}: {b:?}");
    }
}

#[test]
fn batch_barrier_fast_path_uses_syncfs_only_where_the_kernel_reports_its_errors() {
    let d = tmp();
    let barrier = atomwrite::doctor(d.path()).unwrap().batch_barrier;
    for role in ["fast/syncfs", "fast/auto"] {
        let Some(b) = traced_batch(role, false) else {
            return;
        };
        if barrier.barrier == "syncfs" {
            assert_eq!(b.syncfs, 1, "{role}: {b:?}");
            assert_eq!(b.file_fsyncs, 0, "{role}: {b:?}");
            assert_eq!(b.data_syncs, 1, "{role}: {b:?}");
        } else {
            // An old kernel: syncfs could drop an error, so each file is fsynced instead.
            assert_eq!(b.syncfs, 0, "{role} ({barrier:?}): {b:?}");
            assert_eq!(b.file_fsyncs, BARRIER_FILES, "{role}: {b:?}");
            assert_eq!(b.data_syncs, BARRIER_FILES, "{role}: {b:?}");
        }
        assert_eq!(b.dir_fsyncs, 1, "{role}: {b:?}");
    }
    let Some(b) = traced_batch("fast/parallel", false) else {
        return;
    };
    assert_eq!(b.syncfs, 0, "{b:?}");
    assert_eq!(b.file_fsyncs, BARRIER_FILES, "{b:?}");
    assert_eq!(b.dir_fsyncs, 1, "{b:?}");
}

#[test]
fn batch_barrier_fast_path_on_an_old_kernel_fsyncs_every_file() {
    // `setarch --uname-2.6` makes uname(2) report Linux 2.6.x, whose syncfs reports no
    // writeback errors: even an explicit Syncfs request must fsync each file.
    for role in ["fast/syncfs", "fast/auto"] {
        let Some(b) = traced_batch(role, true) else {
            return;
        };
        assert_eq!(b.syncfs, 0, "{role}: {b:?}");
        assert_eq!(b.file_fsyncs, BARRIER_FILES, "{role}: {b:?}");
        assert_eq!(b.dir_fsyncs, 1, "{role}: {b:?}");
        assert_eq!(b.data_syncs, BARRIER_FILES, "{role}: {b:?}");
    }
}

// ---- publish --dir: one barrier for the whole tree ----------------------------------------

const TREE_ROLE: &str = "ATOMWRITE_TEST_TREE_ROLE";
const TREE_FILES: usize = 30;

/// Child half of `publish_dir_flushes_the_tree_with_one_syncfs_where_it_reports_errors` (does
/// nothing when run directly): publishes `BARRIER_DIR/src` as `BARRIER_DIR/site`.
#[test]
fn zz_tree_barrier_child() {
    let Ok(role) = std::env::var(TREE_ROLE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os(BARRIER_DIR).unwrap());
    let opts = Options::new().portable(role == "portable");
    atomwrite::Publisher::new()
        .options(opts)
        .publish_dir(dir.join("site"), dir.join("src"))
        .unwrap();
}

#[test]
fn publish_dir_flushes_the_tree_with_one_syncfs_where_it_reports_errors() {
    if !have_tool("strace", &["-V"]) {
        return;
    }
    let barrier = atomwrite::doctor(tmp().path()).unwrap().batch_barrier;
    for role in ["fast", "portable"] {
        let d = tmp();
        for i in 0..TREE_FILES {
            let sub = d.path().join("src").join(format!("d{}", i % 3));
            fs::create_dir_all(&sub).unwrap();
            fs::write(sub.join(format!("f{i}")), format!("file {i}")).unwrap();
        }
        let log = d.path().join("strace.log");
        let out = std::process::Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=fsync,fdatasync,syncfs", "-o"])
            .arg(&log)
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "zz_tree_barrier_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(TREE_ROLE, role)
            .env(BARRIER_DIR, d.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for i in 0..TREE_FILES {
            let p = d.path().join(format!("site/d{}/f{i}", i % 3));
            assert_eq!(fs::read_to_string(p).unwrap(), format!("file {i}"));
        }
        let text = fs::read_to_string(&log).unwrap();
        let count = |call: &str| {
            text.lines()
                .filter(|l| {
                    let c = l.split_once(' ').map_or(*l, |(_, r)| r).trim_start();
                    c.starts_with(&format!("{call}("))
                })
                .count()
        };
        let (syncfs, fsyncs) = (count("syncfs"), count("fsync") + count("fdatasync"));
        if role == "fast" && barrier.barrier == "syncfs" {
            // One barrier for every file and directory of the tree; the few fsyncs left are
            // the versions directory, the manifest and the pointer's directory.
            assert_eq!(syncfs, 1, "{text}");
            assert!(
                fsyncs < 8,
                "{fsyncs} fsyncs for {TREE_FILES} files:\n{text}"
            );
        } else {
            // No barrier that reports every error: each file and directory is fsynced.
            assert_eq!(syncfs, 0, "{role}: {text}");
            assert!(fsyncs >= TREE_FILES + 3, "{role}: {fsyncs} fsyncs:\n{text}");
        }
    }
}
