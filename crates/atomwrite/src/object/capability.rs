//! What a store can promise: create-only writes, compare-and-swap, multipart —
//! known from the store's type or observed by a probe, never guessed.
//!
//! atomwrite's guarantees on an object store rest on two conditional writes:
//! a **create-only** PUT (`PutMode::Create`: S3 `If-None-Match: *`, Azure
//! `If-None-Match: *`, GCS `x-goog-if-generation-match: 0`) claims a version key
//! and implements `--no-clobber`; a **compare-and-swap** PUT (`PutMode::Update`:
//! `If-Match: ETAG`, GCS generation match) moves the `latest` pointer. A store
//! that ignores either header silently turns a lost race into an overwrite.
//!
//! # How a store's capabilities are known
//!
//! * **From its type** ([`Evidence::Assumed`]) for the clouds themselves: Amazon S3
//!   honours `If-None-Match` (since August 2024) and `If-Match` (since November 2024)
//!   on PUT; Azure Blob Storage and GCS document their preconditions; `memory://`
//!   is object_store's in-process store; `file://` creates with a no-replace
//!   link/rename and moves the pointer under atomwrite's lock file.
//! * **By a probe** ([`Evidence::Probed`]) for every S3/Azure/GCS-*compatible*
//!   endpoint ([`Target::endpoint`]: `AWS_ENDPOINT_URL`, Azurite, `GOOGLE_BASE_URL`):
//!   under the destination's prefix it PUTs a probe key create-only, PUTs it
//!   create-only again (must be refused), updates it with its current ETag (must
//!   succeed), updates it again with the now-stale ETag (must be refused), uploads a
//!   one-part multipart object, and deletes the probe keys
//!   (`PREFIX/.atomwrite-probe-PID-NANOS`, `…-mp`). [`probe`] (what `atomwrite doctor URL`
//!   runs) also races 8 simultaneous create-only PUTs of a fresh key (`…-race`) and 8
//!   simultaneous updates carrying one ETag: exactly one of each may succeed, more proves a
//!   check-then-write server ([`StoreCapabilities::concurrent`]). That race is not part of
//!   [`detect`]: every CLI process would send ~20 more requests, and an emulator that is
//!   atomic except under heavy load (moto) would be refused at random. The result is cached per store
//!   (kind, endpoint, bucket) for the life of the process; a probe that fails on the
//!   network is not cached.
//!
//! [`require_conditional_writes`] is called before a create-only write and before a
//! publish: a store whose probe showed no conditional writes is refused with
//! [`ErrorKind::Unsupported`] instead of racing unsafely.
//!
//! What a probe cannot prove: that the server checks and writes *atomically*. A race
//! with two winners proves it does not; a race with one winner may just not have
//! interleaved. The project's conformance suite runs 8-writer races on each server it
//! tests; the README's backend table records the result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::Serialize;

use crate::object::error::{Error, ErrorKind, Result};
use crate::object::target::{Backend, Target};

/// How a capability is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Evidence {
    /// Observed by a probe against this store in this process.
    Probed,
    /// Taken from the store's type (its documented API); not observed.
    Assumed,
}

/// One capability of a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capability {
    /// `Some(true)`: works; `Some(false)`: the store does not honour it;
    /// `None`: unknown (the probe could not run, e.g. no credentials or network).
    pub supported: Option<bool>,
    /// Observed or assumed.
    pub evidence: Evidence,
    /// One line: what was observed, or why it is assumed.
    pub detail: String,
}

impl Capability {
    fn assumed(supported: bool, detail: impl Into<String>) -> Capability {
        Capability {
            supported: Some(supported),
            evidence: Evidence::Assumed,
            detail: detail.into(),
        }
    }
    fn probed(supported: Option<bool>, detail: impl Into<String>) -> Capability {
        Capability {
            supported,
            evidence: Evidence::Probed,
            detail: detail.into(),
        }
    }
}

/// What a store can do for atomwrite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreCapabilities {
    /// `s3`, `gcs`, `azure`, `file`, `memory`.
    pub store: &'static str,
    /// The compatible endpoint, when not the cloud's own (see [`Target::endpoint`]).
    pub endpoint: Option<String>,
    /// Create-only PUT: a second create of the same key is refused.
    pub conditional_create: Capability,
    /// Compare-and-swap PUT: an update carrying a stale ETag/generation is refused.
    pub compare_and_swap: Capability,
    /// Multipart upload (inputs above the multipart threshold).
    pub multipart: Capability,
    /// Conditional writes hold under concurrency: of 8 simultaneous create-only PUTs (and of
    /// 8 updates carrying one ETag) exactly one succeeds. Raced only by [`probe`] (`doctor`);
    /// [`detect`] leaves it as assumed.
    pub concurrent: Capability,
    /// What atomwrite's own CI has (not) exercised for this kind of store, when
    /// there is something to say (GCS: no emulator implements its preconditions).
    pub note: Option<String>,
    /// Why [`probe`] could not run (no credentials, network, permission), when it could not;
    /// every capability is then unknown and its detail is the store type's assumption.
    pub probe_error: Option<String>,
}

impl StoreCapabilities {
    /// True when both conditional writes are known to work (observed or from the type).
    pub fn conditional_writes(&self) -> bool {
        self.conditional_create.supported == Some(true)
            && self.compare_and_swap.supported == Some(true)
    }
}

/// Why atomwrite's CI does not run gs:// (the README's backend table says the same).
pub const GCS_UNTESTED: &str = "gs:// is not exercised by atomwrite's CI: no GCS emulator on the \
package registries implements the XML API's x-goog-if-generation-match preconditions \
(fake-gcs-server answers object_store's XML PUTs with 400 \"invalid uploadType\"; \
gcp-storage-emulator accepts them but ignores the preconditions), so create-only and the \
compare-and-swap pointer on GCS are assumed from Google's API, not observed";

fn store_name(b: Backend) -> &'static str {
    match b {
        Backend::Memory => "memory",
        Backend::Local => "file",
        Backend::S3 => "s3",
        Backend::Gcs => "gcs",
        Backend::Azure => "azure",
    }
}

/// The capabilities a store has by its type, without any request.
pub fn assumed(t: &Target) -> StoreCapabilities {
    let (create, cas, mp, note) = match t.backend {
        Backend::Memory => (
            "object_store's in-memory store checks existence under its lock",
            "object_store's in-memory store compares the e-tag under its lock",
            "in-memory multipart",
            None,
        ),
        Backend::Local => (
            "staged file linked/renamed without replacing",
            "the latest pointer moves under atomwrite's lock file",
            "staged file, renamed on completion",
            None,
        ),
        Backend::S3 => (
            "Amazon S3 honours If-None-Match: * on PUT (since August 2024)",
            "Amazon S3 honours If-Match on PUT (since November 2024)",
            "S3 multipart upload",
            None,
        ),
        Backend::Azure => (
            "Azure Blob Storage honours If-None-Match: * on Put Blob",
            "Azure Blob Storage honours If-Match on Put Blob",
            "Azure block blobs (Put Block / Put Block List)",
            None,
        ),
        Backend::Gcs => (
            "GCS documents x-goog-if-generation-match: 0 (not observed)",
            "GCS documents x-goog-if-generation-match (not observed)",
            "GCS XML multipart upload (not observed)",
            Some(GCS_UNTESTED.to_string()),
        ),
    };
    StoreCapabilities {
        store: store_name(t.backend),
        endpoint: t.endpoint.clone(),
        conditional_create: Capability::assumed(true, create),
        compare_and_swap: Capability::assumed(true, cas),
        multipart: Capability::assumed(true, mp),
        concurrent: Capability::assumed(true, "not raced here (a full probe races 8 writers)"),
        note,
        probe_error: None,
    }
}

/// True when this store's capabilities must be observed rather than assumed:
/// an S3/Azure/GCS-compatible endpoint that is not the cloud itself.
pub fn needs_probe(t: &Target) -> bool {
    matches!(t.backend, Backend::S3 | Backend::Azure | Backend::Gcs) && t.endpoint.is_some()
}

fn cache() -> &'static Mutex<HashMap<String, Arc<StoreCapabilities>>> {
    static C: OnceLock<Mutex<HashMap<String, Arc<StoreCapabilities>>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

fn cache_key(t: &Target) -> String {
    let bucket = url::Url::parse(&t.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    format!(
        "{}|{}|{}",
        store_name(t.backend),
        t.endpoint.as_deref().unwrap_or(""),
        bucket
    )
}

/// The store's capabilities, known once per store and process: from its type for
/// the clouds themselves, `file://` and `memory://`; by [`probe`] (cached) for a
/// compatible endpoint. Errors only when the probe could not reach the store.
pub async fn detect(t: &Target) -> Result<Arc<StoreCapabilities>> {
    if !needs_probe(t) {
        return Ok(Arc::new(assumed(t)));
    }
    let key = cache_key(t);
    if let Some(c) = cache().lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let c = Arc::new(probe_inner(t, false).await?);
    cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, c.clone());
    Ok(c)
}

/// Refuses `op` (e.g. `publish to`) on a store whose conditional writes are known not
/// to work, with [`ErrorKind::Unsupported`] naming what the probe saw.
pub async fn require_conditional_writes(t: &Target, op: &'static str) -> Result<()> {
    let c = detect(t).await?;
    if c.conditional_writes() {
        return Ok(());
    }
    let what = [
        ("create-only PUT", &c.conditional_create),
        ("compare-and-swap PUT", &c.compare_and_swap),
    ]
    .iter()
    .filter(|(_, cap)| cap.supported != Some(true))
    .map(|(n, cap)| format!("{n}: {}", cap.detail))
    .collect::<Vec<_>>()
    .join("; ");
    Err(Error::new(
        op,
        &t.url,
        ErrorKind::Unsupported,
        format!(
            "the store at {} does not honour conditional writes ({what}), so concurrent \
             writers could overwrite each other unnoticed; refusing",
            t.endpoint.as_deref().unwrap_or(store_name(t.backend))
        ),
    ))
}

/// Probes the store now (uncached; `atomwrite doctor URL`), whatever its type. When
/// the probe cannot run (no credentials, no network, no write permission), every
/// capability is unknown (`supported: None`) with the type's assumption and the
/// reason in its detail.
pub async fn probe(t: &Target) -> StoreCapabilities {
    match probe_inner(t, true).await {
        Ok(c) => c,
        Err(e) => {
            let mut c = assumed(t);
            for cap in [
                &mut c.conditional_create,
                &mut c.compare_and_swap,
                &mut c.multipart,
                &mut c.concurrent,
            ] {
                cap.supported = None;
            }
            c.probe_error = Some(e.to_string());
            c
        }
    }
}

fn probe_key(t: &Target) -> Path {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!(".atomwrite-probe-{}-{nanos}", std::process::id());
    match t.key.as_ref().rsplit_once('/') {
        Some((dir, _)) => Path::from(format!("{dir}/{name}")),
        None => Path::from(name),
    }
}

fn refused(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}

fn unsupported(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }
    )
}

async fn probe_inner(t: &Target, race_writers: bool) -> Result<StoreCapabilities> {
    let store: &dyn ObjectStore = t.store.as_ref();
    let key = probe_key(t);
    let mp_key = Path::from(format!("{}-mp", key.as_ref()));
    let url = t.url_of(&key);
    let fail = |op: &'static str, e: object_store::Error| Error::store(op, url.clone(), e);
    let put = |body: &'static [u8], mode: PutMode| {
        store.put_opts(&key, PutPayload::from_static(body), PutOptions::from(mode))
    };
    let mut out = assumed(t);

    let create = probe_create(store, &key, &mp_key, &fail, &put).await?;

    // Compare-and-swap: the current ETag updates, the same (now stale) ETag is refused.
    // `file://` has no conditional update in object_store: its pointer moves under
    // atomwrite's lock file instead, which is not a property of the store to probe.
    let cas = if t.backend == Backend::Local {
        assumed(t).compare_and_swap
    } else {
        probe_cas(store, &key, &mp_key, &fail, &put).await?
    };

    // Atomicity (only when asked: `probe`, i.e. doctor): a server that checks the
    // precondition and then writes, without a lock, passes the sequential checks above and
    // still lets racing writers both win.
    let concurrent = if !race_writers {
        assumed(t).concurrent
    } else if create.supported != Some(true) {
        Capability::probed(Some(false), "no conditional create to race")
    } else {
        probe_race(store, &key, &mp_key, &fail, cas.supported == Some(true)).await?
    };

    let multipart = probe_multipart(store, &mp_key).await;

    if let Some(e) = delete_probe(store, &key, &mp_key).await {
        return Err(fail("delete probe object", e));
    }
    out.conditional_create = create;
    out.compare_and_swap = cas;
    out.multipart = multipart;
    out.concurrent = concurrent;
    Ok(out)
}

/// Create-only: the first create must succeed, the second must be refused.
async fn probe_create<F, Fut>(
    store: &dyn ObjectStore,
    key: &Path,
    mp_key: &Path,
    fail: &(dyn Fn(&'static str, object_store::Error) -> Error + Sync),
    put: &F,
) -> Result<Capability>
where
    F: Fn(&'static [u8], PutMode) -> Fut,
    Fut: std::future::Future<Output = object_store::Result<object_store::PutResult>>,
{
    Ok(match put(b"1", PutMode::Create).await {
        Ok(_) => match put(b"2", PutMode::Create).await {
            Err(e) if refused(&e) => {
                Capability::probed(Some(true), "a second If-None-Match: * PUT was refused")
            }
            Ok(_) => Capability::probed(
                Some(false),
                "a second create-only PUT of the same key overwrote it (If-None-Match ignored)",
            ),
            Err(e) if unsupported(&e) => {
                Capability::probed(Some(false), format!("create-only PUT not supported: {e}"))
            }
            Err(e) => return Err(cleanup(store, key, mp_key, fail("probe create on", e)).await),
        },
        Err(e) if unsupported(&e) || refused(&e) => {
            Capability::probed(Some(false), format!("create-only PUT refused: {e}"))
        }
        Err(e) => return Err(fail("probe create on", e)),
    })
}

/// Atomicity: one of [`RACERS`] simultaneous create-only PUTs (and, when `cas_works`, one of
/// as many updates carrying one ETag) must win.
async fn probe_race(
    store: &dyn ObjectStore,
    key: &Path,
    mp_key: &Path,
    fail: &(dyn Fn(&'static str, object_store::Error) -> Error + Sync),
    cas_works: bool,
) -> Result<Capability> {
    Ok(match race(store, &race_key(key)).await {
        Ok((c_wins, u_wins)) => {
            let u_bad = cas_works && u_wins.is_some_and(|u| u != 1);
            if c_wins != 1 || u_bad {
                Capability::probed(
                    Some(false),
                    format!(
                        "not atomic: {c_wins} of {RACERS} simultaneous create-only PUTs of one \
                         key succeeded, {} of {RACERS} simultaneous updates carrying one ETag",
                        u_wins.map_or("no".to_string(), |u| u.to_string())
                    ),
                )
            } else {
                Capability::probed(
                    Some(true),
                    format!(
                        "one of {RACERS} simultaneous create-only PUTs and one of {RACERS} \
                         updates won (a race that did not interleave proves nothing)"
                    ),
                )
            }
        }
        Err(e) => return Err(cleanup(store, key, mp_key, fail("probe race on", e)).await),
    })
}

/// Multipart: one small part, completed, must read back whole.
async fn probe_multipart(store: &dyn ObjectStore, mp_key: &Path) -> Capability {
    match async {
        let mut up = store.put_multipart(mp_key).await?;
        up.put_part(PutPayload::from_static(b"multipart")).await?;
        up.complete().await?;
        store.head(mp_key).await
    }
    .await
    {
        Ok(m) if m.size == 9 => Capability::probed(Some(true), "a one-part upload completed"),
        Ok(m) => Capability::probed(
            Some(false),
            format!("a completed 9-byte upload reads back {} bytes", m.size),
        ),
        Err(e) if unsupported(&e) => Capability::probed(Some(false), format!("not supported: {e}")),
        Err(e) => Capability::probed(None, format!("probe failed: {}", one_line(&e))),
    }
}

async fn probe_cas<F, Fut>(
    store: &dyn ObjectStore,
    key: &Path,
    mp_key: &Path,
    fail: &(dyn Fn(&'static str, object_store::Error) -> Error + Sync),
    put: &F,
) -> Result<Capability>
where
    F: Fn(&'static [u8], PutMode) -> Fut,
    Fut: std::future::Future<Output = object_store::Result<object_store::PutResult>>,
{
    Ok(match store.head(key).await {
        Err(e) => return Err(cleanup(store, key, mp_key, fail("probe head of", e)).await),
        Ok(meta) => {
            let v = UpdateVersion {
                e_tag: meta.e_tag.clone(),
                version: meta.version.clone(),
            };
            if v.e_tag.is_none() && v.version.is_none() {
                Capability::probed(Some(false), "the store returns no ETag or version")
            } else {
                match put(b"3", PutMode::Update(v.clone())).await {
                    Err(e) if unsupported(&e) => Capability::probed(
                        Some(false),
                        format!("conditional update not supported: {e}"),
                    ),
                    Err(e) if refused(&e) => Capability::probed(
                        Some(false),
                        "an update carrying the current ETag was refused",
                    ),
                    Err(e) => {
                        return Err(cleanup(store, key, mp_key, fail("probe update of", e)).await);
                    }
                    Ok(_) => match put(b"4", PutMode::Update(v)).await {
                        Err(e) if refused(&e) => Capability::probed(
                            Some(true),
                            "an update carrying a stale If-Match ETag was refused",
                        ),
                        Ok(_) => Capability::probed(
                            Some(false),
                            "an update carrying a stale ETag overwrote the object (If-Match ignored)",
                        ),
                        Err(e) => {
                            return Err(cleanup(
                                store,
                                key,
                                mp_key,
                                fail("probe stale update of", e),
                            )
                            .await);
                        }
                    },
                }
            }
        }
    })
}

/// How many writers [`race`] starts at once.
const RACERS: u8 = 8;

fn race_key(key: &Path) -> Path {
    Path::from(format!("{}-race", key.as_ref()))
}

/// [`RACERS`] simultaneous create-only PUTs of a fresh key `k`, then as many simultaneous
/// updates carrying the ETag it then has: how many of each succeeded (the updates: `None`
/// when the store has no conditional update). Exactly one each is atomic; more is proof of
/// a check-then-write server (fewer than RACERS interleavings prove nothing either way).
async fn race(store: &dyn ObjectStore, k: &Path) -> object_store::Result<(usize, Option<usize>)> {
    let count = |rs: Vec<object_store::Result<object_store::PutResult>>| {
        let mut wins = 0;
        for r in rs {
            match r {
                Ok(_) => wins += 1,
                Err(e) if refused(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(wins)
    };
    let creates = futures::future::join_all((0..RACERS).map(|i| {
        store.put_opts(
            k,
            PutPayload::from(vec![i]),
            PutOptions::from(PutMode::Create),
        )
    }))
    .await;
    let c_wins = count(creates)?;
    let meta = store.head(k).await?;
    let v = UpdateVersion {
        e_tag: meta.e_tag,
        version: meta.version,
    };
    if v.e_tag.is_none() && v.version.is_none() {
        return Ok((c_wins, None));
    }
    let updates = futures::future::join_all((0..RACERS).map(|i| {
        store.put_opts(
            k,
            PutPayload::from(vec![RACERS + i]),
            PutOptions::from(PutMode::Update(v.clone())),
        )
    }))
    .await;
    if updates
        .iter()
        .any(|r| matches!(r, Err(e) if unsupported(e)))
    {
        return Ok((c_wins, None));
    }
    Ok((c_wins, Some(count(updates)?)))
}

fn one_line(e: &object_store::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Deletes both probe keys (absent is fine); the first real failure, if any.
async fn delete_probe(
    store: &dyn ObjectStore,
    key: &Path,
    mp_key: &Path,
) -> Option<object_store::Error> {
    let mut err = None;
    for k in [key, mp_key, &race_key(key)] {
        match store.delete(k).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => err = err.or(Some(e)),
        }
    }
    err
}

async fn cleanup(store: &dyn ObjectStore, key: &Path, mp_key: &Path, e: Error) -> Error {
    let _ = delete_probe(store, key, mp_key).await;
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
        PutMultipartOptions, PutResult,
    };

    /// An S3-compatible server that accepts conditional PUTs and ignores the condition.
    #[derive(Debug, Default)]
    struct IgnoresConditions(InMemory);

    impl std::fmt::Display for IgnoresConditions {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "IgnoresConditions")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for IgnoresConditions {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            mut opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            opts.mode = PutMode::Overwrite;
            self.0.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.0.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.0.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.0.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.0.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.0.copy_opts(from, to, options).await
        }
    }

    /// A server that checks the precondition, then writes, without a lock (s3s-fs 0.14.1).
    #[derive(Debug, Default)]
    struct CheckThenWrite(InMemory);

    impl std::fmt::Display for CheckThenWrite {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "CheckThenWrite")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for CheckThenWrite {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            let current = self.0.head(location).await;
            let ok = match (&opts.mode, &current) {
                (PutMode::Overwrite, _) => true,
                (PutMode::Create, cur) => cur.is_err(),
                (PutMode::Update(v), Ok(m)) => v.e_tag == m.e_tag,
                (PutMode::Update(_), Err(_)) => false,
            };
            if !ok {
                return Err(object_store::Error::Precondition {
                    path: location.to_string(),
                    source: "precondition failed".into(),
                });
            }
            // The window between the check and the write that a lock would close.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            self.0
                .put_opts(location, payload, PutOptions::from(PutMode::Overwrite))
                .await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.0.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.0.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.0.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.0.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.0.copy_opts(from, to, options).await
        }
    }

    #[tokio::test]
    async fn the_race_probe_catches_a_check_then_write_server() {
        let store = Arc::new(CheckThenWrite::default());
        let t = compatible(store.clone(), "dir/obj", "http://check-then-write.invalid");
        // One request at a time, it looks fine: detect() lets it through...
        let c = detect(&t).await.unwrap();
        assert!(c.conditional_writes(), "{c:?}");
        assert_eq!(c.concurrent.evidence, Evidence::Assumed);
        // ...and the race (doctor's probe) proves it is not atomic.
        let c = probe(&t).await;
        assert_eq!(c.concurrent.supported, Some(false), "{c:?}");
        assert!(c.concurrent.detail.contains("not atomic"), "{c:?}");
        assert!(keys(store.as_ref()).await.is_empty(), "probe keys deleted");
        // An atomic store: one winner each.
        let mem = Arc::new(InMemory::new());
        let c = probe(&compatible(mem.clone(), "dir/obj", "http://atomic.invalid")).await;
        assert_eq!(c.concurrent.supported, Some(true), "{c:?}");
        assert!(keys(mem.as_ref()).await.is_empty(), "probe keys deleted");
    }

    /// A target over `store` that looks like an S3-compatible endpoint (so it is probed).
    fn compatible(store: Arc<dyn ObjectStore>, key: &str, endpoint: &str) -> Target {
        let mut t = Target::from_store(store, key, Backend::S3, None).unwrap();
        t.endpoint = Some(endpoint.to_string());
        t.url = format!("s3://bucket/{key}");
        t
    }

    async fn keys(store: &dyn ObjectStore) -> Vec<String> {
        use futures::TryStreamExt;
        let mut v: Vec<String> = store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        v.sort();
        v
    }

    #[tokio::test]
    async fn probe_observes_an_honouring_store_and_leaves_nothing() {
        let store = Arc::new(InMemory::new());
        let t = compatible(store.clone(), "dir/obj", "http://honours.invalid");
        assert!(needs_probe(&t));
        let c = probe(&t).await;
        assert_eq!(c.conditional_create.supported, Some(true), "{c:?}");
        assert_eq!(c.compare_and_swap.supported, Some(true), "{c:?}");
        assert_eq!(c.multipart.supported, Some(true), "{c:?}");
        assert_eq!(c.conditional_create.evidence, Evidence::Probed);
        assert!(keys(store.as_ref()).await.is_empty(), "probe keys deleted");
        require_conditional_writes(&t, "publish to").await.unwrap();
    }

    #[tokio::test]
    async fn a_store_ignoring_conditions_is_detected_and_refused() {
        let store = Arc::new(IgnoresConditions::default());
        let t = compatible(store.clone(), "dir/obj", "http://ignores.invalid");
        let c = detect(&t).await.unwrap();
        assert_eq!(c.conditional_create.supported, Some(false), "{c:?}");
        assert_eq!(c.compare_and_swap.supported, Some(false), "{c:?}");
        assert!(!c.conditional_writes());
        assert!(keys(store.as_ref()).await.is_empty(), "probe keys deleted");

        // Publishing and create-only writes are refused before anything is written.
        let mut input: &[u8] = b"payload";
        let e =
            crate::object::publish_target(&t, &mut input, &crate::object::PublishOptions::new())
                .await
                .unwrap_err();
        assert_eq!(e.error_kind(), ErrorKind::Unsupported, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("http://ignores.invalid") && msg.contains("conditional writes"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "one line: {msg}");
        let mut input: &[u8] = b"payload";
        let e = crate::object::write_target(
            &t,
            &mut input,
            &crate::object::WriteOptions::new().create_only(true),
        )
        .await
        .unwrap_err();
        assert_eq!(e.error_kind(), ErrorKind::Unsupported, "{e}");
        assert!(keys(store.as_ref()).await.is_empty(), "nothing written");

        // A plain (overwriting) write needs no condition and still works.
        let mut input: &[u8] = b"payload";
        crate::object::write_target(&t, &mut input, &crate::object::WriteOptions::new())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn clouds_are_assumed_and_compatible_endpoints_are_not() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let aws = Target::from_store(store.clone(), "k", Backend::S3, None).unwrap();
        assert!(!needs_probe(&aws));
        let c = detect(&aws).await.unwrap();
        assert_eq!(c.conditional_create.evidence, Evidence::Assumed);
        assert!(c.conditional_writes());
        let gcs = Target::from_store(store, "k", Backend::Gcs, None).unwrap();
        let c = assumed(&gcs);
        assert!(
            c.note
                .as_deref()
                .is_some_and(|n| n.contains("not exercised")),
            "{c:?}"
        );
        assert!(c.conditional_create.detail.contains("not observed"));
    }
}
