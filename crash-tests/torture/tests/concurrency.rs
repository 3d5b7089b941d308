//! 8 writers and 8 readers on one destination: every read is one complete version, each
//! writer's versions are seen in order, and no temporary file is left. At least 10,000
//! operations per test, on the fast path and on the portable path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

use atomwrite::{Durability, Options};
use atomwrite_torture::{Rng, make_version, temps_in, verify};

const WRITERS: u32 = 8;
const READERS: usize = 8;
const WRITES_PER_WRITER: u64 = 400;
const MIN_OPS: u64 = 10_000;

fn base_dir() -> tempfile::TempDir {
    match std::env::var_os("TEST_DIR") {
        Some(d) => tempfile::Builder::new()
            .prefix("atomwrite-concurrency")
            .tempdir_in(d)
            .unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn hammer(portable: bool) {
    let dir = base_dir();
    let dst = dir.path().join("shared.bin");
    // A first complete version, so every read has something to see.
    Options::new()
        .portable(portable)
        .write(&dst, &make_version(WRITERS, 0, 100, 0))
        .unwrap();
    let writers_left = Arc::new(AtomicU64::new(WRITERS as u64));
    let reads = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (dst, writers_left, writes, failed) = (
                dst.clone(),
                writers_left.clone(),
                writes.clone(),
                failed.clone(),
            );
            s.spawn(move || {
                let mut rng = Rng(0x5eed ^ w as u64);
                for v in 1..=WRITES_PER_WRITER {
                    let len = rng.below(64 * 1024);
                    let bytes = make_version(w, v, len, rng.next_u64());
                    // Mostly no fsync (atomicity towards readers does not depend on it), some
                    // full commits so both paths interleave.
                    let d = if v % 50 == 0 {
                        Durability::Full
                    } else {
                        Durability::None
                    };
                    let r = Options::new()
                        .portable(portable)
                        .durability(d)
                        .write(&dst, &bytes);
                    if let Err(e) = r {
                        eprintln!("writer {w} v{v}: {e}");
                        failed.store(true, SeqCst);
                        break;
                    }
                    writes.fetch_add(1, SeqCst);
                }
                writers_left.fetch_sub(1, SeqCst);
            });
        }
        for r in 0..READERS {
            let (dst, writers_left, reads, writes, failed) = (
                dst.clone(),
                writers_left.clone(),
                reads.clone(),
                writes.clone(),
                failed.clone(),
            );
            s.spawn(move || {
                let mut last_seen = vec![0u64; WRITERS as usize + 1];
                loop {
                    let done = writers_left.load(SeqCst) == 0;
                    if done && reads.load(SeqCst) + writes.load(SeqCst) >= MIN_OPS {
                        break;
                    }
                    if done && failed.load(SeqCst) {
                        break;
                    }
                    let b = match std::fs::read(&dst) {
                        Ok(b) => b,
                        Err(e) => {
                            eprintln!("reader {r}: {e}");
                            failed.store(true, SeqCst);
                            break;
                        }
                    };
                    match verify(&b) {
                        Ok(h) => {
                            let i = h.file_id as usize;
                            if h.version < last_seen[i] {
                                eprintln!(
                                    "reader {r}: writer {i} went back from v{} to v{}",
                                    last_seen[i], h.version
                                );
                                failed.store(true, SeqCst);
                            }
                            last_seen[i] = h.version;
                        }
                        Err(e) => {
                            eprintln!("reader {r}: torn read: {e}");
                            failed.store(true, SeqCst);
                        }
                    }
                    reads.fetch_add(1, SeqCst);
                }
            });
        }
    });
    let (nr, nw) = (reads.load(SeqCst), writes.load(SeqCst));
    println!(
        "concurrency ({}): {nw} writes, {nr} reads",
        if portable { "portable" } else { "fast" }
    );
    assert!(
        !failed.load(SeqCst),
        "a read saw an incomplete version or a write failed"
    );
    assert_eq!(nw, WRITERS as u64 * WRITES_PER_WRITER);
    assert!(nr + nw >= MIN_OPS, "only {} operations", nr + nw);
    let last = verify(&std::fs::read(&dst).unwrap()).expect("final contents");
    assert_eq!(
        last.version, WRITES_PER_WRITER,
        "the last rename is some writer's last version"
    );
    let left = temps_in(dir.path()).unwrap();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
#[ignore = "heavy (10,000+ fsynced operations): run by crash-tests/torture/run.sh in release"]
fn eight_writers_eight_readers_fast_path() {
    hammer(false);
}

#[test]
#[ignore = "heavy (10,000+ fsynced operations): run by crash-tests/torture/run.sh in release"]
fn eight_writers_eight_readers_portable_path() {
    hammer(true);
}
