//! Whole-object and multipart writes, receipts and sidecar manifests.

use std::time::SystemTime;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, ObjectStoreExt, PutMode, PutOptions, PutPayload, PutResult,
    WriteMultipart,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::object::error::{Error, ErrorKind, Result};
use crate::object::target::Target;

/// Manifests are the core crate's (`atomwrite-manifest/1`, sidecar `KEY.manifest.json`).
pub use crate::manifest::{MANIFEST_FORMAT, MANIFEST_SUFFIX, Manifest};

/// Default size up to which an input is buffered and sent as one PUT (8 MiB).
pub const DEFAULT_MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;
/// Default multipart part size (8 MiB; S3 needs at least 5 MiB except the last part).
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// Options of a URL write.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Fail with [`ErrorKind::AlreadyExists`] if the key exists (`PutMode::Create`,
    /// `If-None-Match: *`). Never overwrites.
    pub create_only: bool,
    /// Also write the sidecar `KEY.manifest.json` after the data.
    pub manifest: bool,
    /// The run id recorded in the receipt and manifest; default:
    /// `$ATOMWRITE_RUN_ID` or a fresh random id.
    pub run_id: Option<String>,
    /// Inputs up to this many bytes are sent as one PUT; longer ones go multipart.
    pub multipart_threshold: usize,
    /// Size of each multipart part.
    pub part_size: usize,
    /// Parts uploaded concurrently.
    pub max_concurrency: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            create_only: false,
            manifest: false,
            run_id: None,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            max_concurrency: 4,
        }
    }
}

impl WriteOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }
    /// See [`WriteOptions::create_only`].
    pub fn create_only(mut self, yes: bool) -> Self {
        self.create_only = yes;
        self
    }
    /// See [`WriteOptions::manifest`].
    pub fn manifest(mut self, yes: bool) -> Self {
        self.manifest = yes;
        self
    }
    /// See [`WriteOptions::run_id`].
    pub fn run_id(mut self, id: impl Into<String>) -> Self {
        self.run_id = Some(id.into());
        self
    }
    /// See [`WriteOptions::multipart_threshold`].
    pub fn multipart_threshold(mut self, bytes: usize) -> Self {
        self.multipart_threshold = bytes;
        self
    }
    /// See [`WriteOptions::part_size`].
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }
}

/// What a successful write or publish returns. Serializes to the same JSON
/// shape as the core crate's receipt (plus `url`, `key`, `version`, `e_tag`).
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    /// The URL of the object written (for `publish`: the version object).
    pub url: String,
    /// Its key inside the store.
    pub key: String,
    /// Bytes written.
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// When the write became visible.
    #[serde(serialize_with = "ser_time")]
    pub written_at: SystemTime,
    /// The run id recorded with it.
    pub run_id: String,
    /// For `publish`: the version number now current.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The store's ETag of the object, when it reports one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    /// True when the bytes went up as a multipart upload.
    pub multipart: bool,
}

impl Receipt {
    /// `written_at` as RFC 3339 UTC (`2026-01-02T03:04:05.678Z`).
    pub fn written_at_rfc3339(&self) -> String {
        rfc3339(self.written_at)
    }
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    crate::rfc3339(t)
}

/// A sidecar manifest for `name`, built by the one constructor ([`Manifest::new`]): one
/// format for local files and object stores, so `verify` reads both.
pub(crate) fn new_manifest(
    name: String,
    size: u64,
    sha256: String,
    t: SystemTime,
    run_id: &str,
) -> Manifest {
    Manifest::new(name, size, sha256, t, run_id)
}

/// The bytes stored for a manifest (the same pretty JSON as a local sidecar).
pub(crate) fn manifest_bytes(m: &Manifest) -> Bytes {
    Bytes::from(m.to_json())
}

/// The run id of this process ([`crate::process_run_id`]): `$ATOMWRITE_RUN_ID` if set, else
/// a random 128-bit id drawn once per process — the same id local writes record.
pub fn default_run_id() -> String {
    crate::process_run_id().to_string()
}

/// A fresh random token (128 bits from the crate's one random source), for staging keys.
pub(crate) fn nonce() -> String {
    let mut b = [0u8; 16];
    crate::tempname::fill_random(&mut b);
    hex::encode(b)
}

/// Reads up to `limit` bytes; `true` when the input ended within them.
pub(crate) async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
    url: &str,
) -> Result<(Vec<u8>, bool)> {
    let mut buf = Vec::with_capacity(limit.min(1 << 20) + 1);
    // Read one byte more than `limit` so "exactly limit bytes" is still small.
    let mut take = reader.take(limit as u64 + 1);
    take.read_to_end(&mut buf)
        .await
        .map_err(|e| Error::new("read input for", url, ErrorKind::Input, e))?;
    let eof = buf.len() <= limit;
    Ok((buf, eof))
}

/// Outcome of an upload: size, hash, store result.
pub(crate) struct Uploaded {
    pub size: u64,
    pub sha256: String,
    pub put: PutResult,
    pub multipart: bool,
}

/// One PUT of bytes already in memory.
pub(crate) async fn put_bytes(
    target: &Target,
    key: &Path,
    data: Bytes,
    mode: PutMode,
    op: &'static str,
) -> Result<Uploaded> {
    let size = data.len() as u64;
    let sha256 = hex::encode(Sha256::digest(&data));
    let put = target
        .store
        .put_opts(key, PutPayload::from(data), PutOptions::from(mode))
        .await
        .map_err(|e| Error::store(op, target.url_of(key), e))?;
    Ok(Uploaded {
        size,
        sha256,
        put,
        multipart: false,
    })
}

/// Aborts a multipart upload that is dropped before completing (error or
/// cancellation of the future). Best effort: the abort runs as a task on the
/// current runtime; a bucket lifecycle rule (`AbortIncompleteMultipartUpload`)
/// is the backstop for a crashed process.
struct AbortOnDrop(Option<WriteMultipart>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(w) = self.0.take()
            && let Ok(h) = tokio::runtime::Handle::try_current()
        {
            h.spawn(async move {
                let _ = w.abort().await;
            });
        }
    }
}

/// Streams `head` then the rest of `reader` to `key` as a multipart upload.
/// Visible only when the upload completes; aborted on any error.
pub(crate) async fn put_multipart<R: AsyncRead + Unpin>(
    target: &Target,
    key: &Path,
    head: Vec<u8>,
    reader: &mut R,
    opts: &WriteOptions,
) -> Result<Uploaded> {
    let url = target.url_of(key);
    let upload = target
        .store
        .put_multipart(key)
        .await
        .map_err(|e| Error::store("start multipart upload of", &url, e))?;
    let mut guard = AbortOnDrop(Some(WriteMultipart::new_with_chunk_size(
        upload,
        opts.part_size.max(1),
    )));
    let mut hasher = Sha256::new();
    let mut size = head.len() as u64;
    hasher.update(&head);
    {
        let w = guard.0.as_mut().expect("present");
        w.put(Bytes::from(head));
    }
    let mut chunk = vec![0u8; opts.part_size.clamp(64 * 1024, 8 << 20)];
    let streamed: Result<()> = async {
        loop {
            let w = guard.0.as_mut().expect("present");
            w.wait_for_capacity(opts.max_concurrency.max(1))
                .await
                .map_err(|e| Error::store("upload part of", &url, e))?;
            let n = reader
                .read(&mut chunk)
                .await
                .map_err(|e| Error::new("read input for", &url, ErrorKind::Input, e))?;
            if n == 0 {
                return Ok(());
            }
            hasher.update(&chunk[..n]);
            size += n as u64;
            w.write(&chunk[..n]);
        }
    }
    .await;
    if let Err(e) = streamed {
        // Aborted here, awaited: a task spawned from `Drop` would never run once the caller's
        // `block_on` returns, and the parts would stay on the server.
        if let Some(w) = guard.0.take() {
            let _ = w.abort().await;
        }
        return Err(e);
    }
    let w = guard.0.take().expect("present");
    // On failure `finish` aborts the upload itself: nothing becomes visible.
    let put = w
        .finish()
        .await
        .map_err(|e| Error::store("complete multipart upload of", &url, e))?;
    Ok(Uploaded {
        size,
        sha256: hex::encode(hasher.finalize()),
        put,
        multipart: true,
    })
}

/// Writes `reader` to `target` atomically. See the crate docs.
pub async fn write_target<R: AsyncRead + Unpin>(
    target: &Target,
    reader: &mut R,
    opts: &WriteOptions,
) -> Result<Receipt> {
    if opts.create_only {
        crate::object::capability::require_conditional_writes(target, "create").await?;
    }
    let run_id = opts.run_id.clone().unwrap_or_else(default_run_id);
    let (head, eof) = read_head(reader, opts.multipart_threshold, &target.url).await?;
    let mode = if opts.create_only {
        PutMode::Create
    } else {
        PutMode::Overwrite
    };
    let up = if eof {
        put_bytes(target, &target.key, Bytes::from(head), mode, "put").await?
    } else if !opts.create_only {
        put_multipart(target, &target.key, head, reader, opts).await?
    } else {
        create_only_multipart(target, head, reader, opts).await?
    };
    let written_at = SystemTime::now();
    if opts.manifest {
        let m = new_manifest(
            target.name(),
            up.size,
            up.sha256.clone(),
            written_at,
            &run_id,
        );
        let mkey = target.with_suffix(MANIFEST_SUFFIX);
        put_bytes(
            target,
            &mkey,
            manifest_bytes(&m),
            PutMode::Overwrite,
            "write manifest",
        )
        .await?;
    }
    Ok(Receipt {
        url: target.url.clone(),
        key: target.key.to_string(),
        size: up.size,
        sha256: up.sha256,
        written_at,
        run_id,
        version: None,
        e_tag: up.put.e_tag,
        multipart: up.multipart,
    })
}

/// A multipart upload cannot carry `If-None-Match`, so a large create-only
/// write uploads to a unique staging key and then copies it into place with
/// a create-only copy. Stores without conditional copy (plain S3 unless
/// `AWS_COPY_IF_NOT_EXISTS` is configured) get a clear `Unsupported` error
/// pointing at `publish`, whose pointer CAS needs no conditional multipart.
async fn create_only_multipart<R: AsyncRead + Unpin>(
    target: &Target,
    head: Vec<u8>,
    reader: &mut R,
    opts: &WriteOptions,
) -> Result<Uploaded> {
    match target.store.head(&target.key).await {
        Ok(_) => {
            return Err(Error::new(
                "put",
                &target.url,
                ErrorKind::AlreadyExists,
                "an object already exists at this key",
            ));
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(Error::store("check existence of", &target.url, e)),
    }
    let staging = target.with_suffix(&format!(".atomwrite-upload-{}", nonce()));
    let up = put_multipart(target, &staging, head, reader, opts).await?;
    let res = target
        .store
        .copy_opts(
            &staging,
            &target.key,
            CopyOptions::new().with_mode(CopyMode::Create),
        )
        .await;
    let _ = target.store.delete(&staging).await;
    match res {
        Ok(()) => Ok(up),
        Err(
            e @ (object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }),
        ) => Err(Error::new(
            "put",
            &target.url,
            ErrorKind::Unsupported,
            format!(
                "create-only for inputs over {} bytes needs a conditional copy, which this store \
                 does not offer ({e}); use `publish` (versions + CAS pointer) instead",
                opts.multipart_threshold
            ),
        )),
        Err(e) => Err(Error::store("put", &target.url, e)),
    }
}
