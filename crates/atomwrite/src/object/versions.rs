//! Versions, the `latest` pointer and its compare-and-swap, retention, verify.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncRead;

use crate::object::error::{Error, ErrorKind, Result};
use crate::object::target::{Backend, Target};
use crate::object::write::{
    MANIFEST_SUFFIX, Manifest, Receipt, Uploaded, WriteOptions, default_run_id, manifest_bytes,
    new_manifest, put_bytes, put_multipart, read_head, rfc3339,
};
use crate::versions::VersionName;
use crate::versions::name::extension_of;

/// Suffix of the pointer object: `KEY.latest.json`.
pub const POINTER_SUFFIX: &str = ".latest.json";
/// Suffix of the versions "directory": `KEY.versions/vNNNNNNNNNN[.ext]` (see [`version_key`]).
pub const VERSIONS_SUFFIX: &str = ".versions";
/// `format` tag of the pointer object.
pub const POINTER_FORMAT: &str = "atomwrite-latest/1";
/// How many version numbers a publisher probes upward for a free one
/// (numbers held by concurrent or crashed publishers are skipped).
const MAX_PROBE: u64 = 1000;
/// How often a publisher without `expect` retries after losing the pointer CAS.
const MAX_RETRIES: u32 = 16;

/// The small pointer object `KEY.latest.json`, moved by compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// Always [`POINTER_FORMAT`].
    pub format: String,
    /// The current version number.
    pub version: u64,
    /// Key of the current version object (`KEY.versions/vNNNNNNNNNN[.ext]`).
    pub key: String,
    /// Its size.
    pub size: u64,
    /// Its SHA-256 (hex).
    pub sha256: String,
    /// When it was published (RFC 3339 UTC).
    pub written_at: String,
    /// Run id of its publisher.
    pub run_id: String,
}

/// The pointer as read, with what the store needs for the conditional update.
#[derive(Debug, Clone)]
pub(crate) struct PointerState {
    pub pointer: Pointer,
    e_tag: Option<String>,
    obj_version: Option<String>,
}

/// Options of a publish.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Compare-and-swap: publish only if the current version is exactly this
    /// (0 = nothing published yet); otherwise fail with [`ErrorKind::Conflict`].
    /// `None`: publish on top of whatever is current (retrying a lost race a
    /// few times when the input is small enough to be buffered).
    pub expect: Option<u64>,
    /// After publishing, delete all but the newest `keep` published versions
    /// (never the current one nor the one before it).
    pub keep: Option<usize>,
    /// Upload tuning and run id (`create_only` and `manifest` are ignored:
    /// version objects are always create-only and always get a manifest).
    pub write: WriteOptions,
}

impl PublishOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }
    /// See [`PublishOptions::expect`].
    pub fn expect(mut self, v: Option<u64>) -> Self {
        self.expect = v;
        self
    }
    /// See [`PublishOptions::keep`].
    pub fn keep(mut self, n: Option<usize>) -> Self {
        self.keep = n;
        self
    }
    /// See [`WriteOptions::run_id`].
    pub fn run_id(mut self, id: impl Into<String>) -> Self {
        self.write.run_id = Some(id.into());
        self
    }
    /// See [`WriteOptions::multipart_threshold`].
    pub fn multipart_threshold(mut self, bytes: usize) -> Self {
        self.write.multipart_threshold = bytes;
        self
    }
    /// See [`WriteOptions::part_size`].
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.write.part_size = bytes.max(1);
        self
    }
}

/// One version, as listed by [`versions_target`] or returned by [`latest_target`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    /// Version number.
    pub version: u64,
    /// URL of the version object.
    pub url: String,
    /// Key of the version object.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 (hex).
    pub sha256: String,
    /// RFC 3339 UTC.
    pub written_at: String,
    /// Run id of its publisher.
    pub run_id: String,
    /// The version that was current when it was published.
    pub parent: Option<u64>,
    /// True for the version the pointer names.
    pub current: bool,
    /// True when it is on the published history (pointer, its parent, ...);
    /// false for leftovers of crashed or in-flight publishers.
    pub published: bool,
}

/// What [`retain_target`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Versions kept.
    pub kept: Vec<u64>,
    /// Versions (published or leftover) deleted.
    pub deleted: Vec<u64>,
    /// Bytes of the deleted version objects, as their manifests record them.
    pub deleted_bytes: u64,
}

/// What [`verify_target`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// URL of the object checked.
    pub url: String,
    /// Version number, when verifying a versioned target.
    pub version: Option<u64>,
    /// Size and hash the manifest records.
    pub expected_size: u64,
    /// SHA-256 recorded in the manifest.
    pub expected_sha256: String,
    /// Size read back.
    pub actual_size: u64,
    /// SHA-256 recomputed from the bytes.
    pub actual_sha256: String,
    /// True when everything matches (including the pointer's own record).
    pub ok: bool,
}

pub(crate) fn pointer_key(t: &Target) -> Path {
    t.with_suffix(POINTER_SUFFIX)
}

pub(crate) fn versions_prefix(t: &Target) -> Path {
    t.with_suffix(VERSIONS_SUFFIX)
}

/// `KEY.versions/vNNNNNNNNNN[.ext]`: the one version-name grammar of the library
/// ([`VersionName`]), with the extension of the key's last segment (`.csv`, `.tar.gz`), as a
/// local publish names its version files.
pub fn version_key(t: &Target, n: u64) -> Path {
    let ext = extension_of(std::ffi::OsStr::new(&t.name()));
    let name = match VersionName::new(n, &ext) {
        Some(v) => v.to_string(),
        None => format!("v{n:010}"),
    };
    Path::from(format!("{}{}/{name}", t.key.as_ref(), VERSIONS_SUFFIX))
}

fn manifest_key_of(data: &Path) -> Path {
    Path::from(format!("{}{}", data.as_ref(), MANIFEST_SUFFIX))
}

fn conflict(t: &Target, msg: String) -> Error {
    Error::new("publish", &t.url, ErrorKind::Conflict, msg)
}

async fn get_json<T: serde::de::DeserializeOwned>(
    t: &Target,
    key: &Path,
    what: &'static str,
) -> Result<Option<(T, object_store::ObjectMeta)>> {
    let url = t.url_of(key);
    match t.store.get(key).await {
        Ok(r) => {
            let meta = r.meta.clone();
            let bytes = r.bytes().await.map_err(|e| Error::store(what, &url, e))?;
            let v = serde_json::from_slice(&bytes)
                .map_err(|e| Error::new(what, &url, ErrorKind::Corrupt, e))?;
            Ok(Some((v, meta)))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::store(what, url, e)),
    }
}

pub(crate) async fn read_pointer(t: &Target) -> Result<Option<PointerState>> {
    let key = pointer_key(t);
    let Some((pointer, meta)) = get_json::<Pointer>(t, &key, "read pointer").await? else {
        return Ok(None);
    };
    if pointer.format != POINTER_FORMAT {
        return Err(Error::new(
            "read pointer",
            t.url_of(&key),
            ErrorKind::Corrupt,
            format!("unknown pointer format {:?}", pointer.format),
        ));
    }
    Ok(Some(PointerState {
        pointer,
        e_tag: meta.e_tag,
        obj_version: meta.version,
    }))
}

/// Moves the pointer from `from` (None: no pointer yet) to `to`, atomically,
/// or fails with `Conflict` leaving it untouched.
async fn cas_pointer(t: &Target, from: Option<&PointerState>, to: &Pointer) -> Result<()> {
    let key = pointer_key(t);
    let url = t.url_of(&key);
    let mut body = serde_json::to_vec_pretty(to).expect("pointer serializes");
    body.push(b'\n');
    let payload = PutPayload::from(Bytes::from(body));
    if t.backend == Backend::Local {
        return cas_pointer_local(t, from, &key, payload).await;
    }
    let mode = match from {
        None => PutMode::Create,
        Some(s) => PutMode::Update(UpdateVersion {
            e_tag: s.e_tag.clone(),
            version: s.obj_version.clone(),
        }),
    };
    match t
        .store
        .put_opts(&key, payload, PutOptions::from(mode))
        .await
    {
        Ok(_) => Ok(()),
        Err(
            e @ (object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }),
        ) => Err(Error::new(
            "move pointer",
            url,
            ErrorKind::Conflict,
            format!("another publisher moved it first ({e})"),
        )),
        Err(e) => Err(Error::store("move pointer", url, e)),
    }
}

/// `LocalFileSystem` has no conditional update, so on `file://` the pointer
/// CAS is: take an exclusive `flock` on `KEY.latest.json.lock`, re-read the
/// pointer, compare, replace it (staged file + rename + fsync), unlock. Every
/// publisher on the same filesystem takes the same lock, so this is a real
/// compare-and-swap between processes of one machine (not across NFS clients).
async fn cas_pointer_local(
    t: &Target,
    from: Option<&PointerState>,
    key: &Path,
    payload: PutPayload,
) -> Result<()> {
    let url = t.url_of(key);
    let root = t.local_root.clone().unwrap_or_else(|| "/".into());
    let lock_path = root.join(format!("{}.lock", key.as_ref()));
    let lock_url = url.clone();
    let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        if let Some(p) = lock_path.parent() {
            std::fs::create_dir_all(p)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        f.lock()?;
        Ok(f)
    })
    .await
    .map_err(|e| Error::new("lock pointer", &lock_url, ErrorKind::Store, e))?
    .map_err(|e| Error::new("lock pointer", &lock_url, ErrorKind::Store, e))?;
    let now = read_pointer(t).await?;
    let same = match (from, &now) {
        (None, None) => true,
        (Some(a), Some(b)) => a.pointer == b.pointer,
        _ => false,
    };
    if !same {
        drop(lock);
        return Err(Error::new(
            "move pointer",
            url,
            ErrorKind::Conflict,
            "another publisher moved it first",
        ));
    }
    let r = t
        .store
        .put_opts(key, payload, PutOptions::from(PutMode::Overwrite))
        .await
        .map_err(|e| Error::store("move pointer", &url, e));
    drop(lock);
    r.map(|_| ())
}

/// Claims the first free version number above `cur` by creating its object
/// with `PutMode::Create`, and uploads the data there. Small inputs: the
/// create-only PUT of the data *is* the claim. Large inputs: a multipart upload
/// cannot be conditional, so an empty placeholder is created first
/// (create-only) and the multipart upload then replaces the claimant's own
/// placeholder; it is unpublished (no manifest, not named by the pointer)
/// until the pointer moves.
async fn claim_and_upload<R: AsyncRead + Unpin>(
    t: &Target,
    cur: u64,
    input: &mut Input<'_, R>,
    opts: &WriteOptions,
) -> Result<(u64, Path, Uploaded)> {
    for n in cur + 1..=cur + MAX_PROBE {
        let key = version_key(t, n);
        let payload = input.small.clone().unwrap_or_default();
        match put_bytes(t, &key, payload, PutMode::Create, "create version").await {
            Ok(up) => {
                if input.small.is_some() {
                    return Ok((n, key, up));
                }
                let h = input.head.take().unwrap_or_default();
                return match put_multipart(t, &key, h, input.reader, opts).await {
                    Ok(up) => Ok((n, key, up)),
                    Err(e) => {
                        let _ = t.store.delete(&key).await;
                        Err(e)
                    }
                };
            }
            Err(e) if e.error_kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(conflict(
        t,
        format!(
            "no free version number in {}..={}",
            cur + 1,
            cur + MAX_PROBE
        ),
    ))
}

/// What a publish did, beyond its receipt (for [`crate::destination`]).
pub(crate) struct Outcome {
    pub receipt: Receipt,
    pub manifest: Manifest,
    pub previous: u64,
    pub retention: Option<RetentionReport>,
    /// Retention failed after the pointer was swapped: the publish stands (the new version is
    /// current), so this is reported as a warning, never as the publish's failure.
    pub retention_error: Option<String>,
}

/// The bytes to publish: buffered whole when small, else a head and the rest of the reader.
struct Input<'a, R> {
    small: Option<Bytes>,
    head: Option<Vec<u8>>,
    reader: &'a mut R,
}

/// Publishes the bytes of `reader` as a new version of `t`.
///
/// Protocol (a data-lake commit, with the pointer as the commit point):
/// 1. read `KEY.latest.json` (version `cur`, ETag); `expect` ≠ `cur` → Conflict, nothing written;
/// 2. claim the first free `KEY.versions/vN`, N > cur, with a create-only PUT and upload the bytes;
/// 3. create-only PUT of `KEY.versions/vN.manifest.json`;
/// 4. move the pointer `cur → N` by compare-and-swap (`If-None-Match: *` the first
///    time, `If-Match: ETAG` afterwards). That is the instant the version becomes current.
///
/// Losing step 4 means another publisher went first: the loser deletes its
/// own, never-published vN and its manifest and reports Conflict (or, with
/// `expect: None` and a buffered input, starts again on top of the winner).
/// No object another publisher created is ever overwritten or deleted.
pub async fn publish_target<R: AsyncRead + Unpin>(
    t: &Target,
    reader: &mut R,
    opts: &PublishOptions,
) -> Result<Receipt> {
    publish_outcome(t, reader, opts).await.map(|o| o.receipt)
}

fn check_expect(t: &Target, opts: &PublishOptions, state: &Option<PointerState>) -> Result<u64> {
    let cur = state.as_ref().map(|s| s.pointer.version).unwrap_or(0);
    match opts.expect {
        Some(e) if e != cur => Err(conflict(
            t,
            format!("expected version {e} to be current, but version {cur} is"),
        )),
        _ => Ok(cur),
    }
}

/// [`publish_target`], with the manifest, the previous version and what retention did.
pub(crate) async fn publish_outcome<R: AsyncRead + Unpin>(
    t: &Target,
    reader: &mut R,
    opts: &PublishOptions,
) -> Result<Outcome> {
    crate::object::capability::require_conditional_writes(t, "publish to").await?;
    let run_id = opts.write.run_id.clone().unwrap_or_else(default_run_id);
    let mut state = read_pointer(t).await?;
    let mut cur = check_expect(t, opts, &state)?;
    let (h, eof) = read_head(reader, opts.write.multipart_threshold, &t.url).await?;
    let mut input = Input {
        small: eof.then(|| Bytes::from(h.clone())),
        head: if eof { None } else { Some(h) },
        reader,
    };
    let mut attempt = 0;
    loop {
        match publish_once(t, cur, state.as_ref(), &mut input, &opts.write, &run_id).await {
            Ok((receipt, manifest)) => {
                let (retention, retention_error) = match opts.keep {
                    Some(keep) => match retain_target(t, keep).await {
                        Ok(r) => (Some(r), None),
                        Err(e) => (
                            None,
                            Some(format!(
                                "published version {} (it is current), but retention \
                                 (keep {keep}) failed: {e}",
                                receipt.version.unwrap_or(0)
                            )),
                        ),
                    },
                    None => (None, None),
                };
                return Ok(Outcome {
                    receipt,
                    manifest,
                    previous: cur,
                    retention,
                    retention_error,
                });
            }
            Err(e)
                if e.error_kind() == ErrorKind::Conflict
                    && opts.expect.is_none()
                    && input.small.is_some()
                    && attempt < MAX_RETRIES =>
            {
                attempt += 1;
                // Jittered backoff, then start again on top of the winner.
                let mut j = [0u8; 1];
                crate::tempname::fill_random(&mut j);
                let ms = (5u64 << attempt.min(6)) + u64::from(j[0]) % 20;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                state = read_pointer(t).await?;
                cur = check_expect(t, opts, &state)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One attempt: claim and upload version N above `cur`, write its manifest, move the pointer.
/// On any failure the claimant's own version object and manifest are deleted.
async fn publish_once<R: AsyncRead + Unpin>(
    t: &Target,
    cur: u64,
    state: Option<&PointerState>,
    input: &mut Input<'_, R>,
    wopts: &WriteOptions,
    run_id: &str,
) -> Result<(Receipt, Manifest)> {
    let (n, key, up) = claim_and_upload(t, cur, input, wopts).await?;
    let written_at = SystemTime::now();
    let vname = key.filename().unwrap_or_default().to_string();
    let mut m = new_manifest(vname, up.size, up.sha256.clone(), written_at, run_id);
    m.version = Some(n);
    m.parent = Some(cur);
    let mkey = manifest_key_of(&key);
    let pointer = Pointer {
        format: POINTER_FORMAT.into(),
        version: n,
        key: key.to_string(),
        size: up.size,
        sha256: up.sha256.clone(),
        written_at: rfc3339(written_at),
        run_id: run_id.to_string(),
    };
    let committed = async {
        let mbytes = manifest_bytes(&m);
        put_bytes(t, &mkey, mbytes, PutMode::Create, "write manifest").await?;
        cas_pointer(t, state, &pointer).await
    }
    .await;
    if let Err(e) = committed {
        let _ = t.store.delete(&mkey).await;
        let _ = t.store.delete(&key).await;
        return Err(e);
    }
    let receipt = Receipt {
        url: t.url_of(&key),
        key: key.to_string(),
        size: up.size,
        sha256: up.sha256,
        written_at,
        run_id: run_id.to_string(),
        version: Some(n),
        e_tag: up.put.e_tag,
        multipart: up.multipart,
    };
    Ok((receipt, m))
}

/// The current version (what the pointer names), or `None` if nothing was published.
pub async fn latest_target(t: &Target) -> Result<Option<VersionInfo>> {
    Ok(read_pointer(t).await?.map(|s| {
        let key = Path::from(s.pointer.key.as_str());
        VersionInfo {
            version: s.pointer.version,
            url: t.url_of(&key),
            key: s.pointer.key,
            size: s.pointer.size,
            sha256: s.pointer.sha256,
            written_at: s.pointer.written_at,
            run_id: s.pointer.run_id,
            parent: None,
            current: true,
            published: true,
        }
    }))
}

struct Listing {
    /// Version numbers that have a data object.
    data: BTreeSet<u64>,
    /// Version numbers with their manifest.
    manifests: BTreeMap<u64, Manifest>,
    pointer: Option<PointerState>,
    published: Vec<u64>,
}

/// A version object's number (and whether the key is its manifest), by the one grammar
/// ([`VersionName::parse`]).
fn parse_version_name(name: &str) -> Option<(u64, bool)> {
    let (base, is_manifest) = match name.strip_suffix(MANIFEST_SUFFIX) {
        Some(b) => (b, true),
        None => (name, false),
    };
    VersionName::parse(base.as_bytes()).map(|v| (v.number(), is_manifest))
}

async fn list_versions(t: &Target) -> Result<Listing> {
    let prefix = versions_prefix(t);
    let url = t.url_of(&prefix);
    let metas: Vec<_> = t
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| Error::store("list versions of", &url, e))?;
    let mut data = BTreeSet::new();
    let mut manifest_keys = Vec::new();
    for m in metas {
        let Some(name) = m.location.filename() else {
            continue;
        };
        match parse_version_name(name) {
            Some((n, false)) => {
                data.insert(n);
            }
            Some((n, true)) => manifest_keys.push((n, m.location.clone())),
            None => {}
        }
    }
    let manifests: BTreeMap<u64, Manifest> = futures::stream::iter(manifest_keys)
        .map(|(n, key)| async move {
            get_json::<Manifest>(t, &key, "read manifest")
                .await
                .map(|o| o.map(|(m, _)| (n, m)))
        })
        .buffer_unordered(8)
        .try_filter_map(|x| async move { Ok(x) })
        .try_collect()
        .await?;
    let pointer = read_pointer(t).await?;
    let mut published = Vec::new();
    if let Some(p) = &pointer {
        let mut n = p.pointer.version;
        while n > 0 && published.len() <= manifests.len() {
            published.push(n);
            match manifests.get(&n).and_then(|m| m.parent) {
                Some(parent) if parent < n => n = parent,
                _ => break,
            }
        }
    }
    Ok(Listing {
        data,
        manifests,
        pointer,
        published,
    })
}

/// All versions that have a manifest, oldest first, each flagged `current`
/// and `published` (see [`VersionInfo`]).
pub async fn versions_target(t: &Target) -> Result<Vec<VersionInfo>> {
    let l = list_versions(t).await?;
    let cur = l.pointer.as_ref().map(|p| p.pointer.version);
    let published: BTreeSet<u64> = l.published.iter().copied().collect();
    Ok(l.manifests
        .iter()
        .filter(|(n, _)| l.data.contains(n))
        .map(|(&n, m)| {
            let key = version_key(t, n);
            VersionInfo {
                version: n,
                url: t.url_of(&key),
                key: key.to_string(),
                size: m.size,
                sha256: m.sha256.clone(),
                written_at: m.written_at.clone(),
                run_id: m.run_id.clone(),
                parent: m.parent,
                current: Some(n) == cur,
                published: published.contains(&n),
            }
        })
        .collect())
}

/// Keeps the newest `keep` published versions and deletes the rest with one
/// bulk delete, together with leftovers of crashed publishers below the
/// current version. Never deletes the current version nor the one before it,
/// nor anything above the current version (a publisher may be in flight there).
pub async fn retain_target(t: &Target, keep: usize) -> Result<RetentionReport> {
    let l = list_versions(t).await?;
    let Some(cur) = l.pointer.as_ref().map(|p| p.pointer.version) else {
        return Ok(RetentionReport::default());
    };
    let kept: Vec<u64> = l.published.iter().copied().take(keep.max(2)).collect();
    let keep_set: BTreeSet<u64> = kept.iter().copied().collect();
    let all: BTreeSet<u64> = l.data.iter().chain(l.manifests.keys()).copied().collect();
    let doomed: Vec<u64> = all
        .into_iter()
        .filter(|n| *n < cur && !keep_set.contains(n))
        .collect();
    delete_versions(t, &doomed, "delete old versions of").await?;
    let mut kept = kept;
    kept.sort_unstable();
    let deleted_bytes = doomed
        .iter()
        .filter(|n| l.data.contains(n))
        .filter_map(|n| l.manifests.get(n).map(|m| m.size))
        .sum();
    Ok(RetentionReport {
        kept,
        deleted: doomed,
        deleted_bytes,
    })
}

/// Starts reading the object at `key`: its URL (for errors) and its byte stream.
async fn get_stream(
    t: &Target,
    key: &Path,
) -> Result<(
    String,
    futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
)> {
    let url = t.url_of(key);
    let r = t
        .store
        .get(key)
        .await
        .map_err(|e| Error::store("read", &url, e))?;
    Ok((url, r.into_stream()))
}

async fn hash_object(t: &Target, key: &Path) -> Result<(u64, String)> {
    let (url, mut s) = get_stream(t, key).await?;
    let mut h = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| Error::store("read", &url, e))?;
        size += chunk.len() as u64;
        h.update(&chunk);
    }
    Ok((size, hex::encode(h.finalize())))
}

/// Recomputes the SHA-256 of an object and compares it with its manifest.
///
/// For a versioned target (a `KEY.latest.json` exists) the current version is
/// checked against its manifest *and* the pointer's record; otherwise the
/// object at the URL is checked against its sidecar `KEY.manifest.json`. The
/// manifest's `name` must be the object's own name (its last key segment), as
/// for a local file. A mismatch is reported with `ok: false` (not an error); a
/// missing manifest is a `NotFound` error.
pub async fn verify_target(t: &Target) -> Result<VerifyReport> {
    let (data_key, version, pointer_sha) = match read_pointer(t).await? {
        Some(s) => (
            Path::from(s.pointer.key.as_str()),
            Some(s.pointer.version),
            Some(s.pointer.sha256),
        ),
        None => (t.key.clone(), None, None),
    };
    let mkey = manifest_key_of(&data_key);
    let Some((m, _)) = get_json::<Manifest>(t, &mkey, "read manifest").await? else {
        return Err(Error::new(
            "verify",
            t.url_of(&data_key),
            ErrorKind::NotFound,
            format!("no manifest at {}", t.url_of(&mkey)),
        ));
    };
    let (size, sha) = hash_object(t, &data_key).await?;
    let name = data_key.filename().unwrap_or_default();
    let ok = m.name == name
        && size == m.size
        && sha == m.sha256
        && pointer_sha.as_deref().is_none_or(|p| p == m.sha256);
    Ok(VerifyReport {
        url: t.url_of(&data_key),
        version,
        expected_size: m.size,
        expected_sha256: m.sha256,
        actual_size: size,
        actual_sha256: sha,
        ok,
    })
}

/// [`verify_target`] as the library's one [`Verification`](crate::Verification): the same
/// statuses and the same judgement (name, size, sha256: [`crate::manifest::judge`]) as a local
/// file, plus the pointer's own record. `Err` only when no verdict could be reached (the store
/// failed).
pub(crate) async fn verification(t: &Target) -> Result<crate::Verification> {
    use crate::VerifyStatus;
    let pointer = match read_pointer(t).await {
        Ok(p) => p,
        Err(e) if e.error_kind() == ErrorKind::Corrupt => {
            let mut v = blank_verification(t, &t.key);
            v.status = VerifyStatus::BadManifest;
            v.detail = e.to_string();
            return Ok(v);
        }
        Err(e) => return Err(e),
    };
    let data_key = match &pointer {
        Some(s) => Path::from(s.pointer.key.as_str()),
        None => t.key.clone(),
    };
    let mut v = blank_verification(t, &data_key);
    let mkey = manifest_key_of(&data_key);
    let m = match get_json::<Manifest>(t, &mkey, "read manifest").await {
        Ok(Some((m, _))) => m,
        Ok(None) => {
            v.status = VerifyStatus::MissingManifest;
            v.detail = format!("no manifest at `{}`", t.url_of(&mkey));
            return Ok(v);
        }
        Err(e) if e.error_kind() == ErrorKind::Corrupt => {
            v.status = VerifyStatus::BadManifest;
            v.detail = e.to_string();
            return Ok(v);
        }
        Err(e) => return Err(e),
    };
    v.manifest = Some(m.clone());
    let (size, sha) = match hash_object(t, &data_key).await {
        Ok(x) => x,
        Err(e) if e.error_kind() == ErrorKind::NotFound => {
            v.status = VerifyStatus::MissingData;
            v.detail = e.to_string();
            return Ok(v);
        }
        Err(e) => return Err(e),
    };
    v.size = Some(size);
    v.sha256 = Some(sha.clone());
    let name = data_key.filename().unwrap_or_default();
    let pointer_sha = pointer.as_ref().map(|s| s.pointer.sha256.as_str());
    (v.status, v.detail) = crate::manifest::judge(&m, name, size, &sha, pointer_sha);
    Ok(v)
}

fn blank_verification(t: &Target, data_key: &Path) -> crate::Verification {
    crate::Verification {
        path: t.url.clone().into(),
        data_path: t.url_of(data_key).into(),
        manifest_path: t.url_of(&manifest_key_of(data_key)).into(),
        status: crate::VerifyStatus::Ok,
        detail: String::new(),
        manifest: None,
        size: None,
        sha256: None,
    }
}

/// Leftovers of crashed publishers: version objects (or manifests) below the current version
/// that are not on the published history (the pointer's chain of parents). An in-flight
/// publisher only ever claims numbers above the current version, and a loser deletes its own
/// objects, so these have positive evidence that no publish of them completed. Returns their
/// URLs and the bytes their manifests record; deletes them unless `dry_run`.
pub(crate) async fn clean_target(t: &Target, dry_run: bool) -> Result<(Vec<String>, u64)> {
    let l = list_versions(t).await?;
    let Some(cur) = l.pointer.as_ref().map(|p| p.pointer.version) else {
        return Ok((Vec::new(), 0));
    };
    let published: BTreeSet<u64> = l.published.iter().copied().collect();
    let doomed: Vec<u64> = l
        .data
        .iter()
        .chain(l.manifests.keys())
        .copied()
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .filter(|n| *n < cur && !published.contains(n))
        .collect();
    let bytes = doomed
        .iter()
        .filter_map(|n| l.manifests.get(n).map(|m| m.size))
        .sum();
    let urls = doomed
        .iter()
        .map(|n| t.url_of(&version_key(t, *n)))
        .collect();
    if !dry_run {
        delete_versions(t, &doomed, "delete leftovers of").await?;
    }
    Ok((urls, bytes))
}

/// Deletes versions `ns` and their manifests with one bulk delete (a missing one is fine).
async fn delete_versions(t: &Target, ns: &[u64], op: &'static str) -> Result<()> {
    let mut paths = Vec::new();
    for &n in ns {
        let k = version_key(t, n);
        paths.push(Ok(manifest_key_of(&k)));
        paths.push(Ok(k));
    }
    let url = t.url_of(&versions_prefix(t));
    let results: Vec<_> = t
        .store
        .delete_stream(futures::stream::iter(paths).boxed())
        .collect()
        .await;
    for r in results {
        match r {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::store(op, &url, e)),
        }
    }
    Ok(())
}

/// Streams the object at `key` (of `t`'s store) into `out`; returns its size.
pub(crate) async fn read_into<W: tokio::io::AsyncWrite + Unpin>(
    t: &Target,
    key: &Path,
    out: &mut W,
) -> Result<u64> {
    use tokio::io::AsyncWriteExt;
    let (url, mut s) = get_stream(t, key).await?;
    let mut size = 0u64;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| Error::store("read", &url, e))?;
        size += chunk.len() as u64;
        out.write_all(&chunk)
            .await
            .map_err(|e| Error::new("write output of", &url, ErrorKind::Input, e))?;
    }
    out.flush()
        .await
        .map_err(|e| Error::new("write output of", &url, ErrorKind::Input, e))?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::parse_version_name;

    #[test]
    fn version_names() {
        assert_eq!(parse_version_name("v0000000001"), Some((1, false)));
        assert_eq!(
            parse_version_name("v0000000042.manifest.json"),
            Some((42, true))
        );
        assert_eq!(parse_version_name("v1"), None);
        assert_eq!(parse_version_name("x0000000001"), None);
        assert_eq!(parse_version_name("v00000000a1"), None);
    }
}
