//! One conformance suite, run against every backend: `memory://`, a local
//! `file://` directory, and real servers selected by environment variables:
//!
//! | module | variable | server (started by) |
//! |--------|----------|---------------------|
//! | `s3`   | `ATOMWRITE_S3_TEST_URL=s3://bucket/prefix` | moto (`ci/s3/start.sh`) |
//! | `s3b`  | `ATOMWRITE_S3B_TEST_URL=s3://bucket/prefix` | s3s-fs, a second S3 implementation (`ci/s3s/start.sh`) |
//! | `az`   | `ATOMWRITE_AZ_TEST_URL=az://container/prefix` | Azurite (`ci/azurite/start.sh`) |
//! | `gs`   | `ATOMWRITE_GCS_TEST_URL=gs://bucket/prefix` | none exists (see below) |
//!
//! Each server's `env.sh` also exports what object_store needs to reach it
//! (`AWS_ENDPOINT_URL` ..., `AZURE_STORAGE_USE_EMULATOR` + `AZURITE_BLOB_STORAGE_URL`).
//!
//! Skip rules: a server's tests print `SKIP …` when its variable is unset, except under
//! `CI=true`, where `s3` and `az` fail. `s3b` cannot share a process with `s3` (object_store
//! reads one `AWS_ENDPOINT_URL` per process), so it runs in its own suite (`ci/s3s/test.sh`,
//! which fails when anything skips); both set at once is an error. `gs` skips with its reason
//! even in CI: no emulator on the package registries implements the GCS XML API's
//! generation preconditions, and the project never claims what it did not observe; the
//! rows run the day `ATOMWRITE_GCS_TEST_URL` names a store.
//!
//! Before any row touches a compatible endpoint, the store's conditional writes are probed
//! (`atomwrite::object::capability::probe`) and must be observed; a server regression that
//! starts ignoring `If-None-Match`/`If-Match` fails every row instead of passing vacuously.

use std::collections::BTreeSet;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use atomwrite::object::object_store::path::Path;
use atomwrite::object::object_store::{ObjectStoreExt, PutPayload};
use atomwrite::object::{
    ErrorKind, Manifest, Pointer, PublishOptions, Target, WriteOptions, latest_url, publish_url,
    retain_url, verify_url, version_key, versions_url, write_bytes, write_url,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

const MIB: usize = 1024 * 1024;

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}-{}-{}",
        std::process::id(),
        t,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A base URL under which a test may create objects, or None to skip.
enum Base {
    Url(String, Option<tempfile::TempDir>),
    /// A row that needs conditional writes, on a store without them: check the refusal.
    Refused(String, String),
    /// A racing row, on a server whose conditional writes were observed not to be atomic.
    NotAtomic(String),
    Skip,
}

fn base(backend: &str, test: &str) -> Base {
    match backend {
        "memory" => Base::Url(format!("memory:///conformance/{test}/{}", unique()), None),
        "file" => {
            let d = tempfile::tempdir().unwrap();
            let url = format!("file://{}/{test}", d.path().display());
            Base::Url(url, Some(d))
        }
        "s3" => server_base("s3", "ATOMWRITE_S3_TEST_URL", test, Ci::Required),
        "s3b" => server_base("s3b", "ATOMWRITE_S3B_TEST_URL", test, Ci::OwnSuite),
        "az" => server_base("az", "ATOMWRITE_AZ_TEST_URL", test, Ci::Required),
        "gs" => server_base("gs", "ATOMWRITE_GCS_TEST_URL", test, Ci::NoEmulator),
        _ => unreachable!(),
    }
}

/// What an unset server variable means under `CI=true`.
#[derive(Clone, Copy, PartialEq)]
enum Ci {
    /// The server is started by `.ci/run` before the workspace tests: unset is a failure.
    Required,
    /// The server's rows run in their own suite (`ci/s3s/test.sh`), which fails on a SKIP.
    OwnSuite,
    /// No emulator exists: skip with the reason, even in CI.
    NoEmulator,
}

fn server_base(backend: &str, var: &str, test: &str, ci: Ci) -> Base {
    let set = |v: &str| std::env::var(v).is_ok_and(|u| !u.is_empty());
    if backend.starts_with("s3") && set("ATOMWRITE_S3_TEST_URL") && set("ATOMWRITE_S3B_TEST_URL") {
        panic!(
            "ATOMWRITE_S3_TEST_URL and ATOMWRITE_S3B_TEST_URL are both set, but a process has one \
             AWS_ENDPOINT_URL: run the second S3 server's rows alone (ci/s3s/test.sh)"
        );
    }
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => {
            if let Some(why) = conditional_writes_missing(backend, &u)
                && NEEDS_CONDITIONAL_WRITES.contains(&test)
            {
                return Base::Refused(
                    format!("{}/{test}/{}", u.trim_end_matches('/'), unique()),
                    why,
                );
            }
            if RACES.contains(&test)
                && !matches!(backend, "s3" | "az")
                && let Some(why) = known_not_atomic(backend).or_else(|| not_atomic(&u))
            {
                return Base::NotAtomic(why);
            }
            Base::Url(
                format!("{}/{test}/{}", u.trim_end_matches('/'), unique()),
                None,
            )
        }
        _ => {
            let how = match backend {
                "s3" => "ci/s3/test.sh starts moto and sets it",
                "s3b" => "ci/s3s/test.sh starts s3s-fs and runs these rows in their own process",
                "az" => "bash ci/azurite/start.sh && source target/azurite/env.sh",
                _ => {
                    "no GCS emulator implements the XML API's x-goog-if-generation-match \
                      preconditions, so gs:// is not tested (README: backend table)"
                }
            };
            let ci_run = std::env::var("CI").as_deref() == Ok("true");
            if ci_run && ci == Ci::Required {
                panic!(
                    "{var} is not set but CI=true: the {backend} conformance tests must run in CI ({how})"
                );
            }
            eprintln!("SKIP {test} on {backend}: {var} unset ({how})");
            Base::Skip
        }
    }
}

/// The rows that rely on conditional writes (create-only PUT, compare-and-swap pointer).
const NEEDS_CONDITIONAL_WRITES: &[&str] = &[
    "create_only",
    "create_only_race",
    "create_only_large",
    "publish_versions_latest",
    "publish_expect_cas",
    "publish_large_multipart",
    "retention",
    "crashed_publisher_leftover",
    "concurrent_publishers_tasks",
    "concurrent_publishers_no_expect",
    "concurrent_publishers_processes",
];

/// The store's conditional-write capability as atomwrite itself detects it (the same
/// per-process cache the library consults before a publish): `None` when observed to work,
/// else why not. moto and Azurite must support them (`s3`, `az`: a regression that starts
/// ignoring `If-None-Match`/`If-Match` fails the suite here instead of letting the rows pass
/// vacuously); another server's rows then check that atomwrite refuses instead of racing.
fn conditional_writes_missing(backend: &str, url: &str) -> Option<String> {
    let t = Target::parse(&format!("{}/probe", url.trim_end_matches('/'))).unwrap();
    // A fresh runtime on its own thread: the caller is already inside one.
    let c = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(atomwrite::object::capability::detect(&t))
    })
    .join()
    .unwrap()
    .unwrap_or_else(|e| panic!("{backend}: the capability probe could not run: {e}"));
    if c.conditional_writes() {
        return None;
    }
    let why = format!(
        "create-only: {}; compare-and-swap: {}",
        c.conditional_create.detail, c.compare_and_swap.detail
    );
    if matches!(backend, "s3" | "az") {
        panic!("{backend} ({url}): conditional writes not observed: {why}");
    }
    Some(why)
}

/// The rows that race several writers on one key.
const RACES: &[&str] = &[
    "create_only_race",
    "concurrent_publishers_tasks",
    "concurrent_publishers_no_expect",
    "concurrent_publishers_processes",
];

/// A server whose conditional writes are known not to be atomic (its start script says so and
/// why: `ATOMWRITE_S3B_NOT_ATOMIC` for s3s-fs). A race probe sees such a server only when the
/// timing cooperates, so a known fact must not depend on a sample.
fn known_not_atomic(backend: &str) -> Option<String> {
    let var = match backend {
        "s3b" => "ATOMWRITE_S3B_NOT_ATOMIC",
        _ => return None,
    };
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// Races 8 writers through atomwrite's own probe (`capability::probe`, what `doctor` runs),
/// once per process and URL: `Some(what was seen)` when more than one won. moto and Azurite
/// (`s3`, `az`) run their racing rows for real instead.
fn not_atomic(url: &str) -> Option<String> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static SEEN: Mutex<Option<HashMap<String, Option<String>>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    seen.get_or_insert_with(HashMap::new)
        .entry(url.to_string())
        .or_insert_with(|| {
            let t = Target::parse(&format!("{}/race-probe", url.trim_end_matches('/'))).unwrap();
            let c = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(atomwrite::object::capability::probe(&t))
            })
            .join()
            .unwrap();
            assert!(c.probe_error.is_none(), "{url}: probe failed: {c:?}");
            (c.concurrent.supported == Some(false)).then(|| c.concurrent.detail.clone())
        })
        .clone()
}

/// In place of a row that needs conditional writes, on a store shown not to honour them:
/// atomwrite must refuse publish and create-only writes with `Unsupported`, writing nothing.
async fn refused_row(b: &str, backend: &str, test: &str, why: &str) {
    eprintln!("NOT SUPPORTED {test} on {backend} (atomwrite refuses; checked): {why}");
    let url = format!("{b}/refused");
    let mut input: &[u8] = b"payload";
    let e = publish_url(&url, &mut input, &PublishOptions::new())
        .await
        .unwrap_err();
    assert_eq!(e.error_kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("conditional writes"), "{e}");
    let e = write_bytes(&url, b"payload", &WriteOptions::new().create_only(true))
        .await
        .unwrap_err();
    assert_eq!(e.error_kind(), ErrorKind::Unsupported, "{e}");
    let t = Target::parse(&url).unwrap();
    let prefix = Path::from(t.key().trim_end_matches("/refused"));
    assert_eq!(
        list(&t, &prefix).await,
        Vec::<String>::new(),
        "nothing written"
    );
}

async fn get(url: &str) -> Option<Vec<u8>> {
    let t = Target::parse(url).unwrap();
    match t.store().get(&Path::from(t.key())).await {
        Ok(r) => Some(r.bytes().await.unwrap().to_vec()),
        Err(atomwrite::object::object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("get {url}: {e}"),
    }
}

async fn get_key(t: &Target, key: &Path) -> Option<Vec<u8>> {
    match t.store().get(key).await {
        Ok(r) => Some(r.bytes().await.unwrap().to_vec()),
        Err(atomwrite::object::object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("get {key}: {e}"),
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// A reader that yields `data` and then fails (a producer that dies mid-stream).
struct FailingReader {
    data: Vec<u8>,
    pos: usize,
}

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos >= self.data.len() {
            return Poll::Ready(Err(io::Error::other("producer died")));
        }
        let n = buf
            .remaining()
            .min(self.data.len() - self.pos)
            .min(256 * 1024);
        let pos = self.pos;
        buf.put_slice(&self.data[pos..pos + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

fn large_opts() -> WriteOptions {
    // S3 (and moto) require parts of at least 5 MiB except the last.
    WriteOptions::new()
        .multipart_threshold(MIB)
        .part_size(5 * MIB)
}

// ---------------------------------------------------------------- the suite

async fn write_roundtrip_and_receipt(b: &str) {
    let url = format!("{b}/small.bin");
    let data = pattern(1000, 1);
    let r = write_bytes(&url, &data, &WriteOptions::new().run_id("run-1"))
        .await
        .unwrap();
    assert_eq!(r.size, 1000);
    assert_eq!(r.sha256, sha(&data));
    assert_eq!(r.run_id, "run-1");
    assert!(!r.multipart);
    assert!(
        r.written_at_rfc3339().ends_with('Z'),
        "{}",
        r.written_at_rfc3339()
    );
    assert_eq!(get(&url).await.unwrap(), data);
    // no manifest unless asked
    assert!(get(&format!("{url}.manifest.json")).await.is_none());
    // overwrite replaces the whole object
    let data2 = pattern(10, 2);
    write_bytes(&url, &data2, &WriteOptions::new())
        .await
        .unwrap();
    assert_eq!(get(&url).await.unwrap(), data2);
    // empty input is a valid, empty object
    let r = write_bytes(&url, b"", &WriteOptions::new()).await.unwrap();
    assert_eq!(r.size, 0);
    assert_eq!(get(&url).await.unwrap(), b"");
    let j: serde_json::Value = serde_json::to_value(&r).unwrap();
    for f in ["size", "sha256", "written_at", "run_id", "url", "key"] {
        assert!(j.get(f).is_some(), "receipt JSON lacks {f}: {j}");
    }
}

async fn manifest_and_verify(b: &str) {
    let url = format!("{b}/data.csv");
    let data = b"a,b\n1,2\n".to_vec();
    let r = write_bytes(
        &url,
        &data,
        &WriteOptions::new().manifest(true).run_id("m-run"),
    )
    .await
    .unwrap();
    let m: Manifest =
        serde_json::from_slice(&get(&format!("{url}.manifest.json")).await.unwrap()).unwrap();
    assert_eq!(m.format, "atomwrite-manifest/1");
    assert_eq!(m.name, "data.csv");
    assert_eq!(m.size, data.len() as u64);
    assert_eq!(m.sha256, sha(&data));
    assert_eq!(m.run_id, "m-run");
    assert_eq!(m.written_at, r.written_at_rfc3339());
    assert!(!m.atomwrite_version.is_empty());
    let v = verify_url(&url).await.unwrap();
    assert!(v.ok, "{v:?}");
    // A torn data/manifest pair (data replaced without its manifest) is detected.
    write_bytes(&url, b"a,b\n1,3\n", &WriteOptions::new())
        .await
        .unwrap();
    let v = verify_url(&url).await.unwrap();
    assert!(!v.ok, "verify must report the mismatch: {v:?}");
    assert_eq!(v.expected_sha256, sha(&data));
    // No manifest at all: NotFound error.
    let other = format!("{b}/nomanifest");
    write_bytes(&other, b"x", &WriteOptions::new())
        .await
        .unwrap();
    let e = verify_url(&other).await.unwrap_err();
    assert_eq!(e.error_kind(), ErrorKind::NotFound, "{e}");
}

async fn create_only(b: &str) {
    let url = format!("{b}/once");
    let opts = WriteOptions::new().create_only(true);
    write_bytes(&url, b"first", &opts).await.unwrap();
    let e = write_bytes(&url, b"second", &opts).await.unwrap_err();
    assert_eq!(e.error_kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(e.is_conflict());
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    assert!(e.to_string().contains("once"), "error names the URL: {e}");
    assert_eq!(get(&url).await.unwrap(), b"first");
}

async fn create_only_race(b: &str) {
    let url = format!("{b}/race-once");
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let body = vec![i; 100];
            write_bytes(&url, &body, &WriteOptions::new().create_only(true))
                .await
                .map(|_| i)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(i) => winners.push(i),
            Err(e) => assert_eq!(e.error_kind(), ErrorKind::AlreadyExists, "{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create-only writer wins");
    assert_eq!(get(&url).await.unwrap(), vec![winners[0]; 100]);
}

async fn multipart_large(b: &str) {
    let url = format!("{b}/large.bin");
    let data = pattern(11 * MIB + 123, 3);
    let mut r: &[u8] = &data;
    let rc = write_url(&url, &mut r, &large_opts().manifest(true))
        .await
        .unwrap();
    assert!(rc.multipart);
    assert_eq!(rc.size, data.len() as u64);
    assert_eq!(rc.sha256, sha(&data));
    assert_eq!(get(&url).await.unwrap(), data);
    assert!(verify_url(&url).await.unwrap().ok);
}

async fn failed_upload_is_never_visible(b: &str) {
    // Small input failing: nothing written.
    let url = format!("{b}/failing-small");
    let mut fr = FailingReader {
        data: vec![1; 100],
        pos: 0,
    };
    let e = write_url(&url, &mut fr, &WriteOptions::new())
        .await
        .unwrap_err();
    assert_eq!(e.error_kind(), ErrorKind::Input, "{e}");
    assert!(get(&url).await.is_none());
    // Multipart failing after two parts went up: nothing visible, old object intact.
    let url = format!("{b}/failing-large");
    write_bytes(&url, b"old", &WriteOptions::new())
        .await
        .unwrap();
    let mut fr = FailingReader {
        data: pattern(12 * MIB, 4),
        pos: 0,
    };
    let e = write_url(&url, &mut fr, &large_opts()).await.unwrap_err();
    assert_eq!(e.error_kind(), ErrorKind::Input, "{e}");
    assert_eq!(get(&url).await.unwrap(), b"old");
    let url2 = format!("{b}/failing-large-new");
    let mut fr = FailingReader {
        data: pattern(12 * MIB, 4),
        pos: 0,
    };
    write_url(&url2, &mut fr, &large_opts()).await.unwrap_err();
    assert!(get(&url2).await.is_none());
    // nothing else appeared next to them (no staging leftovers visible)
    let t = Target::parse(&url).unwrap();
    let parent = Path::from(t.key().rsplit_once('/').unwrap().0);
    let keys: Vec<String> = list(&t, &parent).await;
    assert_eq!(
        keys.iter().filter(|k| k.contains("failing-large")).count(),
        1,
        "{keys:?}"
    );
}

async fn list(t: &Target, prefix: &Path) -> Vec<String> {
    use futures::TryStreamExt;
    let v: Vec<_> = t.store().list(Some(prefix)).try_collect().await.unwrap();
    v.into_iter().map(|m| m.location.to_string()).collect()
}

async fn create_only_large(b: &str) {
    let url = format!("{b}/large-once");
    let data = pattern(6 * MIB, 5);
    let mut r: &[u8] = &data;
    match write_url(&url, &mut r, &large_opts().create_only(true)).await {
        Ok(rc) => {
            assert_eq!(get(&url).await.unwrap(), data);
            assert_eq!(rc.sha256, sha(&data));
            let mut r: &[u8] = &data;
            let e = write_url(&url, &mut r, &large_opts().create_only(true))
                .await
                .unwrap_err();
            assert_eq!(e.error_kind(), ErrorKind::AlreadyExists, "{e}");
        }
        Err(e) => {
            // Allowed only as the documented, explicit refusal.
            eprintln!("create-only large write refused on this store (documented): {e}");
            assert_eq!(e.error_kind(), ErrorKind::Unsupported, "{e}");
            assert!(e.to_string().contains("publish"), "{e}");
            assert!(get(&url).await.is_none());
        }
    }
    // Never an overwrite of an existing object.
    write_bytes(&format!("{url}-2"), b"keep", &WriteOptions::new())
        .await
        .unwrap();
    let mut r: &[u8] = &data;
    let e = write_url(&format!("{url}-2"), &mut r, &large_opts().create_only(true))
        .await
        .unwrap_err();
    assert_eq!(e.error_kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(get(&format!("{url}-2")).await.unwrap(), b"keep");
}

async fn publish_versions_latest(b: &str) {
    let url = format!("{b}/model.bin");
    assert!(latest_url(&url).await.unwrap().is_none());
    assert!(versions_url(&url).await.unwrap().is_empty());
    let mut receipts = Vec::new();
    for i in 1..=3u8 {
        let body = pattern(100 * i as usize, i);
        let mut r: &[u8] = &body;
        let rc = publish_url(&url, &mut r, &PublishOptions::new().run_id(format!("p{i}")))
            .await
            .unwrap();
        assert_eq!(rc.version, Some(i as u64));
        assert!(
            // The one version-name grammar: `v` + 10 digits + the key's extension.
            rc.key
                .ends_with(&format!("model.bin.versions/v{:010}.bin", i)),
            "{}",
            rc.key
        );
        receipts.push((rc, body));
    }
    let l = latest_url(&url).await.unwrap().unwrap();
    assert_eq!(l.version, 3);
    assert_eq!(l.sha256, receipts[2].0.sha256);
    // pointer object is the documented JSON
    let p: Pointer =
        serde_json::from_slice(&get(&format!("{url}.latest.json")).await.unwrap()).unwrap();
    assert_eq!(p.format, "atomwrite-latest/1");
    assert_eq!(p.version, 3);
    assert_eq!(p.key, receipts[2].0.key);
    let vs = versions_url(&url).await.unwrap();
    assert_eq!(
        vs.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(vs.iter().all(|v| v.published));
    assert_eq!(vs.iter().filter(|v| v.current).count(), 1);
    assert!(vs[2].current);
    let t = Target::parse(&url).unwrap();
    for (i, (rc, body)) in receipts.iter().enumerate() {
        assert_eq!(vs[i].sha256, rc.sha256);
        assert_eq!(vs[i].run_id, format!("p{}", i + 1));
        assert_eq!(
            get_key(&t, &Path::from(rc.key.as_str())).await.unwrap(),
            *body
        );
        let m: Manifest = serde_json::from_slice(
            &get_key(&t, &Path::from(format!("{}.manifest.json", rc.key)))
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(m.version, Some(i as u64 + 1));
        assert_eq!(m.parent, Some(i as u64));
        // A version's manifest names the version (as a local publish does), so verify checks
        // the name on every backend.
        assert_eq!(m.name, format!("v{:010}.bin", i + 1));
    }
    let v = verify_url(&url).await.unwrap();
    assert!(v.ok && v.version == Some(3), "{v:?}");
    // Corrupting the current version's bytes is detected by verify.
    t.store()
        .put(
            &Path::from(receipts[2].0.key.as_str()),
            PutPayload::from_static(b"torn"),
        )
        .await
        .unwrap();
    assert!(!verify_url(&url).await.unwrap().ok);
}

async fn publish_expect_cas(b: &str) {
    let url = format!("{b}/state.json");
    let po = |e| PublishOptions::new().expect(Some(e));
    // 0 = nothing published yet
    let e = publish_url(&url, &mut &b"x"[..], &po(1)).await.unwrap_err();
    assert_eq!(e.error_kind(), ErrorKind::Conflict, "{e}");
    assert!(latest_url(&url).await.unwrap().is_none());
    assert_eq!(
        publish_url(&url, &mut &b"v1"[..], &po(0))
            .await
            .unwrap()
            .version,
        Some(1)
    );
    let e = publish_url(&url, &mut &b"stale"[..], &po(0))
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{e}");
    assert_eq!(e.error_kind(), ErrorKind::Conflict);
    assert_eq!(
        publish_url(&url, &mut &b"v2"[..], &po(1))
            .await
            .unwrap()
            .version,
        Some(2)
    );
    let e = publish_url(&url, &mut &b"stale"[..], &po(1))
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{e}");
    let vs = versions_url(&url).await.unwrap();
    assert_eq!(vs.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2]);
    let t = Target::parse(&url).unwrap();
    assert_eq!(get_key(&t, &version_key(&t, 1)).await.unwrap(), b"v1");
    assert_eq!(get_key(&t, &version_key(&t, 2)).await.unwrap(), b"v2");
    assert!(
        get_key(&t, &version_key(&t, 3)).await.is_none(),
        "a lost CAS leaves nothing"
    );
}

async fn publish_large_multipart(b: &str) {
    let url = format!("{b}/big");
    publish_url(&url, &mut &b"small first"[..], &PublishOptions::new())
        .await
        .unwrap();
    let data = pattern(7 * MIB, 6);
    let mut r: &[u8] = &data;
    let opts = PublishOptions::new()
        .expect(Some(1))
        .multipart_threshold(MIB)
        .part_size(5 * MIB);
    let rc = publish_url(&url, &mut r, &opts).await.unwrap();
    assert!(rc.multipart);
    assert_eq!(rc.version, Some(2));
    let t = Target::parse(&url).unwrap();
    assert_eq!(get_key(&t, &version_key(&t, 2)).await.unwrap(), data);
    assert!(verify_url(&url).await.unwrap().ok);
    // A failing large publish leaves the pointer and versions as they were.
    let mut fr = FailingReader {
        data: pattern(6 * MIB, 7),
        pos: 0,
    };
    let e = publish_url(&url, &mut fr, &opts.clone().expect(Some(2)))
        .await
        .unwrap_err();
    assert_eq!(e.error_kind(), ErrorKind::Input, "{e}");
    assert_eq!(latest_url(&url).await.unwrap().unwrap().version, 2);
    assert!(get_key(&t, &version_key(&t, 3)).await.is_none());
    assert_eq!(versions_url(&url).await.unwrap().len(), 2);
}

async fn retention(b: &str) {
    let url = format!("{b}/ret");
    for i in 1..=6u64 {
        publish_url(
            &url,
            &mut format!("v{i}").as_bytes(),
            &PublishOptions::new(),
        )
        .await
        .unwrap();
    }
    let rep = retain_url(&url, 3).await.unwrap();
    assert_eq!(rep.kept, vec![4, 5, 6]);
    assert_eq!(rep.deleted, vec![1, 2, 3]);
    let vs: Vec<u64> = versions_url(&url)
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(vs, vec![4, 5, 6]);
    // keep 1 never deletes the current version nor the one before it
    let rep = retain_url(&url, 1).await.unwrap();
    assert_eq!(rep.kept, vec![5, 6]);
    let vs: Vec<u64> = versions_url(&url)
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(vs, vec![5, 6]);
    // publish with keep
    let rc = publish_url(&url, &mut &b"v7"[..], &PublishOptions::new().keep(Some(2)))
        .await
        .unwrap();
    assert_eq!(rc.version, Some(7));
    let vs: Vec<u64> = versions_url(&url)
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(vs, vec![6, 7]);
    let t = Target::parse(&url).unwrap();
    assert!(get_key(&t, &version_key(&t, 5)).await.is_none());
    assert_eq!(get_key(&t, &version_key(&t, 7)).await.unwrap(), b"v7");
    assert!(verify_url(&url).await.unwrap().ok);
}

async fn crashed_publisher_leftover(b: &str) {
    let url = format!("{b}/crash");
    publish_url(&url, &mut &b"v1"[..], &PublishOptions::new())
        .await
        .unwrap();
    let t = Target::parse(&url).unwrap();
    // A publisher claimed v2 and died before its manifest and pointer move.
    t.store()
        .put(&version_key(&t, 2), PutPayload::from_static(b"half"))
        .await
        .unwrap();
    // Others still make progress (expect 1 is honoured), skipping the held number.
    let rc = publish_url(
        &url,
        &mut &b"v3"[..],
        &PublishOptions::new().expect(Some(1)),
    )
    .await
    .unwrap();
    assert_eq!(rc.version, Some(3));
    assert_eq!(
        get_key(&t, &version_key(&t, 2)).await.unwrap(),
        b"half",
        "never overwritten"
    );
    let vs = versions_url(&url).await.unwrap();
    assert_eq!(
        vs.iter()
            .map(|v| (v.version, v.published))
            .collect::<Vec<_>>(),
        vec![(1, true), (3, true)]
    );
    assert_eq!(vs[1].parent, Some(1));
    publish_url(&url, &mut &b"v4"[..], &PublishOptions::new())
        .await
        .unwrap();
    let rep = retain_url(&url, 2).await.unwrap();
    assert_eq!(rep.kept, vec![3, 4]);
    assert_eq!(
        rep.deleted,
        vec![1, 2],
        "the leftover below current is cleaned"
    );
}

/// 8 publisher tasks per round, all expecting the same version: exactly one
/// wins each round, every loser gets Conflict, no version key is overwritten.
async fn concurrent_publishers_tasks(b: &str) {
    let url = Arc::new(format!("{b}/contended"));
    let rounds = 4u64;
    let mut winners = Vec::new();
    let mut current = 0u64;
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for i in 0..8u64 {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let body = format!("round {round} publisher {i}");
                let opts = PublishOptions::new()
                    .expect(Some(current))
                    .run_id(format!("r{round}-p{i}"));
                publish_url(&url, &mut body.as_bytes(), &opts)
                    .await
                    .map(|r| (r, body))
            }));
        }
        let mut ok = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(x) => ok.push(x),
                Err(e) => assert!(e.is_conflict(), "loser must get a conflict, got: {e}"),
            }
        }
        assert_eq!(ok.len(), 1, "round {round}: exactly one publisher wins");
        let (rc, body) = ok.pop().unwrap();
        let v = rc.version.unwrap();
        assert!(
            v > current,
            "versions strictly increase: {v} after {current}"
        );
        assert_eq!(latest_url(&url).await.unwrap().unwrap().version, v);
        current = v;
        winners.push((rc, body));
    }
    check_history(&url, &winners).await;
}

async fn check_history(url: &str, winners: &[(atomwrite::object::Receipt, String)]) {
    let t = Target::parse(url).unwrap();
    let vs = versions_url(url).await.unwrap();
    let mut expected: Vec<u64> = winners.iter().map(|(r, _)| r.version.unwrap()).collect();
    expected.sort_unstable();
    assert_eq!(
        vs.iter().map(|v| v.version).collect::<Vec<_>>(),
        expected,
        "exactly the winners' versions exist (losers clean up after themselves)"
    );
    for (rc, body) in winners {
        let v = rc.version.unwrap();
        let got = get_key(&t, &version_key(&t, v)).await.unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), *body, "v{v} overwritten");
        let info = vs.iter().find(|i| i.version == v).unwrap();
        assert_eq!(info.sha256, rc.sha256);
        assert_eq!(info.run_id, rc.run_id);
        assert!(info.published);
    }
    // Only the winners' objects exist under the versions prefix.
    let keys: BTreeSet<String> = list(&t, &Path::from(format!("{}.versions", t.key())))
        .await
        .into_iter()
        .collect();
    assert_eq!(keys.len(), winners.len() * 2, "{keys:?}");
    assert!(verify_url(url).await.unwrap().ok);
}

/// Without `expect`, concurrent publishers all succeed, each with its own version.
async fn concurrent_publishers_no_expect(b: &str) {
    let url = Arc::new(format!("{b}/queue"));
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!("publisher {i}");
            publish_url(
                &url,
                &mut body.as_bytes(),
                &PublishOptions::new().run_id(format!("p{i}")),
            )
            .await
            .map(|r| (r, body))
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        winners.push(t.await.unwrap().unwrap());
    }
    winners.sort_by_key(|(r, _)| r.version);
    let vs: BTreeSet<u64> = winners.iter().map(|(r, _)| r.version.unwrap()).collect();
    assert_eq!(vs.len(), 8, "every publisher got its own version: {vs:?}");
    check_history(&url, &winners).await;
}

/// The child side of [`concurrent_publishers_processes`]: this test binary re-executed with
/// `ATOMWRITE_RACE_CHILD=URL EXPECT TAG` publishes once with `expect`, prints one JSON line
/// prefixed `RACE `, and exits 0 on success, 3 on a conflict, 1 on any other error. Without the
/// variable it does nothing (it is a normal test that passes).
#[test]
fn race_child() {
    let Ok(spec) = std::env::var("ATOMWRITE_RACE_CHILD") else {
        return;
    };
    let args: Vec<&str> = spec.splitn(3, ' ').collect();
    let expect: u64 = args[1].parse().expect("EXPECT is a number");
    let body = format!("published by {} expecting {}\n", args[2], expect);
    let opts = PublishOptions::new()
        .expect(Some(expect))
        .run_id(args[2].to_string());
    match atomwrite::object::blocking::publish_url(args[0], body.as_bytes(), &opts) {
        Ok(r) => {
            println!(
                "RACE {}",
                serde_json::to_string(&r).expect("receipt serializes")
            );
            std::process::exit(0);
        }
        Err(e) if e.is_conflict() => {
            eprintln!("{e}");
            std::process::exit(3);
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

/// 8 publisher *processes* per round (this test binary re-executed as [`race_child`]).
async fn concurrent_publishers_processes(b: &str) {
    if b.starts_with("memory:") {
        eprintln!("SKIP concurrent_publishers_processes on memory: a memory store is per-process");
        return;
    }
    let url = format!("{b}/procs");
    let exe = std::env::current_exe().unwrap();
    let mut winners = Vec::new();
    let mut current = 0u64;
    for round in 0..3u64 {
        let mut children = Vec::new();
        for i in 0..8 {
            let tag = format!("r{round}-proc{i}");
            children.push((
                tag.clone(),
                tokio::process::Command::new(&exe)
                    .args(["--exact", "race_child", "--nocapture", "--test-threads=1"])
                    .env("ATOMWRITE_RACE_CHILD", format!("{url} {current} {tag}"))
                    .output(),
            ));
        }
        let mut ok = Vec::new();
        for (tag, c) in children {
            let out = c.await.unwrap();
            match out.status.code() {
                Some(0) => {
                    let stdout = String::from_utf8_lossy(&out.stdout);
                    let line = stdout
                        .lines()
                        .find_map(|l| l.split_once("RACE ").map(|(_, r)| r))
                        .unwrap_or_else(|| panic!("no receipt from {tag}: {stdout}"));
                    let rc: serde_json::Value = serde_json::from_str(line).unwrap();
                    ok.push((rc, tag));
                }
                Some(3) => {}
                other => panic!(
                    "publisher process {tag} failed ({other:?}): {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
        assert_eq!(
            ok.len(),
            1,
            "round {round}: exactly one process wins: {ok:?}"
        );
        let (rc, tag) = ok.pop().unwrap();
        let v = rc["version"].as_u64().unwrap();
        assert!(
            v > current,
            "versions strictly increase: {v} after {current}"
        );
        assert_eq!(rc["run_id"], tag.as_str());
        winners.push((v, format!("published by {tag} expecting {current}\n")));
        current = v;
    }
    let t = Target::parse(&url).unwrap();
    for (v, body) in &winners {
        let got = get_key(&t, &version_key(&t, *v)).await.unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), *body, "v{v} overwritten");
    }
    let keys = list(&t, &Path::from(format!("{}.versions", t.key()))).await;
    assert_eq!(keys.len(), winners.len() * 2, "{keys:?}");
    assert_eq!(latest_url(&url).await.unwrap().unwrap().version, current);
    assert!(verify_url(&url).await.unwrap().ok);
}

async fn bad_urls(_b: &str) {
    let e = write_bytes("ftp://host/x", b"x", &WriteOptions::new())
        .await
        .unwrap_err();
    assert_eq!(e.error_kind(), ErrorKind::InvalidUrl, "{e}");
    let e = latest_url("memory:///").await.unwrap_err();
    assert_eq!(e.error_kind(), ErrorKind::InvalidUrl, "{e}");
}

macro_rules! suite {
    ($backend:ident: $($name:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    match super::base(stringify!($backend), stringify!($name)) {
                        super::Base::Url(u, _keep) => super::$name(&u).await,
                        super::Base::Refused(u, why) => {
                            super::refused_row(&u, stringify!($backend), stringify!($name), &why)
                                .await
                        }
                        super::Base::NotAtomic(why) => eprintln!(
                            "NOT SUPPORTED {} on {}: its conditional writes are not atomic: {why}",
                            stringify!($name),
                            stringify!($backend)
                        ),
                        super::Base::Skip => {}
                    }
                }
            )*
        }
    };
}

macro_rules! all_backends {
    ($($backend:ident),*) => {
        $(
            suite!($backend:
                write_roundtrip_and_receipt,
                manifest_and_verify,
                create_only,
                create_only_race,
                multipart_large,
                failed_upload_is_never_visible,
                create_only_large,
                publish_versions_latest,
                publish_expect_cas,
                publish_large_multipart,
                retention,
                crashed_publisher_leftover,
                concurrent_publishers_tasks,
                concurrent_publishers_no_expect,
                concurrent_publishers_processes,
                bad_urls,
            );
        )*
    };
}

all_backends!(memory, file, s3, s3b, az, gs);
