//! The async facade (feature `tokio`): same results as the blocking API, and blocking work
//! (writes, fsync, rename) never stalls the other tasks of a `current_thread` runtime.
//! Progress is counted in ticks of a neighbour task; nothing here measures time.
#![cfg(feature = "tokio")]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use atomwrite::asynch::{self, AsyncAtomicFile};
use atomwrite::{Durability, Options, Publisher};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn tmp() -> tempfile::TempDir {
    match std::env::var_os("TEST_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| atomwrite::is_temp_name(std::ffi::OsStr::new(n)))
        .collect()
}

/// A task that counts how often the runtime lets it run, until `stop`.
struct Ticker {
    ticks: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn spawn() -> Ticker {
        let ticks = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (ticks.clone(), stop.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                t.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        });
        Ticker { ticks, stop }
    }
    fn count(&self) -> u64 {
        self.ticks.load(Ordering::SeqCst)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The writer's closure blocks until the neighbour task has ticked 1000 times. On a
/// current_thread runtime that can only happen if the closure does not run on the runtime's
/// thread: run inline it would wait forever (bounded here by a generous guard that turns a
/// deadlock into a failure instead of a hang).
#[test]
fn a_blocked_writer_does_not_stall_other_tasks() {
    let dir = tmp();
    let path = dir.path().join("gated.txt");
    rt().block_on(async {
        let ticker = Ticker::spawn();
        let ticks = ticker.ticks.clone();
        let r = asynch::write_with(Options::new(), &path, move |f| {
            let mut waited = 0;
            while ticks.load(Ordering::SeqCst) < 1000 {
                if waited > 600_000 {
                    return Err(std::io::Error::other(
                        "the neighbour task never ran: the runtime thread is blocked",
                    ));
                }
                std::thread::sleep(Duration::from_micros(100));
                waited += 1;
            }
            f.write_all(b"written while the runtime kept running\n")
        })
        .await;
        let r = r.expect("the write must succeed once the neighbour has ticked");
        assert_eq!(r.size, 39);
        assert!(ticker.count() >= 1000);
    });
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "written while the runtime kept running\n"
    );
}

/// A 4 MiB commit with full durability (fsync, rename, directory fsync) through the async API.
/// It runs on the blocking pool like every step (the deterministic proof that such steps do not
/// block the runtime is `a_blocked_writer_does_not_stall_other_tasks`; counting a neighbour's ticks
/// *during* the commit would be a timing assertion, and on tmpfs the commit is instant).
#[test]
fn commit_with_full_durability_through_the_async_api() {
    let dir = tmp();
    let path = dir.path().join("big.bin");
    let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let expected = data.clone();
    let dst = path.clone();
    rt().block_on(async move {
        let ticker = Ticker::spawn();
        let opts = Options::new().durability(Durability::Full);
        let mut f = AsyncAtomicFile::open_with(opts, &dst).await.unwrap();
        for chunk in data.chunks(100_000) {
            f.write_all(chunk).await.unwrap();
        }
        assert_eq!(f.len(), 4 << 20);
        assert!(!dst.exists(), "nothing visible before commit");
        let r = f.commit().await.unwrap();
        assert_eq!(r.size, 4 << 20);
        assert_eq!(
            r.durability,
            full_honoured_in(dst.parent().unwrap()),
            "the receipt reports what the filesystem honoured"
        );
        // The runtime is still serving other tasks afterwards.
        let seen = ticker.count();
        while ticker.count() == seen {
            tokio::task::yield_now().await;
        }
    });
    assert_eq!(fs::read(&path).unwrap(), expected);
}

#[test]
fn concurrent_writes_on_one_thread_all_complete() {
    let dir = tmp();
    let d = dir.path().to_path_buf();
    rt().block_on(async move {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let p = d.join(format!("f{i}"));
                tokio::spawn(async move { asynch::write(p, format!("file {i}\n")).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    });
    for i in 0..8 {
        assert_eq!(
            fs::read_to_string(dir.path().join(format!("f{i}"))).unwrap(),
            format!("file {i}\n")
        );
    }
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn drop_and_discard_publish_nothing() {
    let dir = tmp();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fs::write(&b, b"old").unwrap();
    let runtime = rt();
    runtime.block_on(async {
        let mut f = AsyncAtomicFile::open(&a).await.unwrap();
        f.write_all(&vec![7u8; 1 << 20]).await.unwrap();
        drop(f);
        let mut g = AsyncAtomicFile::open(&b).await.unwrap();
        g.write_all(b"new").await.unwrap();
        g.discard().await.unwrap();
    });
    // Dropping the runtime waits for its blocking jobs (the dropped file's cleanup).
    drop(runtime);
    assert!(!a.exists());
    assert_eq!(fs::read(&b).unwrap(), b"old");
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

#[test]
fn no_clobber_publish_conflict_and_copy_keep_their_meaning() {
    let dir = tmp();
    let path = dir.path().join("once");
    let dst = dir.path().join("model.bin");
    let src = dir.path().join("src.bin");
    fs::write(&src, b"source bytes").unwrap();
    rt().block_on(async {
        let o = Options::new().no_clobber(true);
        asynch::write_opts(o.clone(), &path, b"first")
            .await
            .unwrap();
        let e = asynch::write_opts(o, &path, b"second").await.unwrap_err();
        assert!(e.is_conflict(), "{e}");

        let v1 = asynch::publish(&dst, b"v1".to_vec()).await.unwrap();
        assert_eq!(v1.version, 1);
        let v2 = asynch::publish_with(Publisher::new().expect(1), &dst, b"v2")
            .await
            .unwrap();
        assert_eq!((v2.version, v2.previous), (2, 1));
        let e = asynch::publish_with(Publisher::new().expect(1), &dst, b"late")
            .await
            .unwrap_err();
        assert!(e.is_conflict(), "{e}");

        let r = asynch::copy(&src, dir.path().join("sub/copy.bin"))
            .await
            .unwrap();
        assert_eq!(r.size, 12);
        let e = asynch::copy(dir.path().join("missing"), dir.path().join("x"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    });
    assert_eq!(fs::read(&path).unwrap(), b"first");
    assert_eq!(fs::read(&dst).unwrap(), b"v2");
    assert_eq!(
        fs::read(dir.path().join("sub/copy.bin")).unwrap(),
        b"source bytes"
    );
    assert!(!dir.path().join("x").exists());
}

#[path = "support/honoured.rs"]
mod honoured;
use honoured::full_honoured_in;
