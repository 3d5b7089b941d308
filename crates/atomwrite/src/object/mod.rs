//! **Not API**: the engine under [`crate::destination`]'s URL backend, public only for the
//! project's own tests; its types are converted into the crate's own at the
//! [`Destination`](crate::Destination) boundary. Use [`crate::destination::open`].
//!
//! Object-store backend of atomwrite: the same guarantees as the local write
//! path — complete-or-absent visibility, create-only, receipts and manifests,
//! versions with a `latest` pointer moved by compare-and-swap — on S3 and
//! S3-compatible servers, Google Cloud Storage, Azure Blob Storage, the local
//! filesystem (`file://`) and memory (`memory://`), over the Apache Arrow
//! [`object_store`] crate.
//!
//! # Guarantees
//!
//! * **Atomic visibility.** An input up to [`WriteOptions::multipart_threshold`]
//!   bytes is sent as one PUT; a larger one as a multipart upload, which the
//!   store makes visible only when it completes. A failed upload is aborted,
//!   a dropped one is aborted best-effort (configure the bucket's
//!   `AbortIncompleteMultipartUpload` lifecycle rule as the backstop for crashes).
//!   Readers see the old object or the new one, never a prefix.
//! * **Durability** means what the store means by a successful PUT (S3/GCS/Azure:
//!   stored redundantly before the 200; `file://`: staged file fsynced, renamed,
//!   directory fsynced; `memory://`: none, gone with the process).
//! * **Create-only** ([`WriteOptions::create_only`]) is a conditional PUT
//!   (`PutMode::Create`, `If-None-Match: *`) failing with
//!   [`ErrorKind::AlreadyExists`]. Multipart uploads cannot carry the condition:
//!   large create-only writes upload to a unique staging key and then use a
//!   create-only copy, or fail with [`ErrorKind::Unsupported`] on stores without
//!   one — `publish` is the way to get create-only semantics for large objects.
//! * **Versions** ([`publish_url`]): each version goes to a never-reused key
//!   `KEY.versions/vNNNNNNNNNN[.ext]` (the library's one version-name grammar,
//!   [`VersionName`](crate::versions::VersionName), with the extension of KEY's last segment;
//!   claimed with a create-only PUT) with its manifest, which names the version;
//!   then the pointer `KEY.latest.json` moves by compare-and-swap (`PutMode::Create`
//!   the first time, `PutMode::Update` with the ETag afterwards). That CAS is the
//!   commit point, so publishers on many machines are ordered without any lock
//!   service; `expect` makes it explicit and a lost race is
//!   [`ErrorKind::Conflict`] with nothing overwritten.
//!
//! # URLs and configuration
//!
//! `s3://bucket/key`, `gs://bucket/key`, `az://container/key`, `file:///abs/path`,
//! `memory:///key` — parsed by `object_store`'s own URL rules. Credentials and
//! endpoints come from the usual environment variables (`AWS_ENDPOINT_URL`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`,
//! `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...). All `memory://`
//! URLs of one process share one store.
//!
//! The API is async (tokio); [`blocking`] wraps it for synchronous callers.

#![warn(missing_docs)]

pub mod blocking;
pub mod capability;
mod error;
mod target;
pub(crate) mod versions;
pub(crate) mod write;

pub use error::{Error, ErrorKind, Result};
pub use target::{Backend, NetLimits, Target, is_url, memory_store};
pub use versions::{
    POINTER_FORMAT, POINTER_SUFFIX, Pointer, PublishOptions, RetentionReport, VERSIONS_SUFFIX,
    VerifyReport, VersionInfo, latest_target, publish_target, retain_target, verify_target,
    version_key, versions_target,
};
pub use write::{
    DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE, MANIFEST_FORMAT, MANIFEST_SUFFIX, Manifest,
    Receipt, WriteOptions, default_run_id, write_target,
};

/// Re-export of the `object_store` crate this backend is built on.
pub use object_store;

use tokio::io::{AsyncRead, AsyncWrite};

/// Writes everything `reader` yields to the object at `url`, atomically.
pub async fn write_url<R: AsyncRead + Unpin>(
    url: &str,
    reader: &mut R,
    opts: &WriteOptions,
) -> Result<Receipt> {
    write_target(&Target::parse(url)?, reader, opts).await
}

/// Writes `bytes` to the object at `url`, atomically.
pub async fn write_bytes(url: &str, bytes: &[u8], opts: &WriteOptions) -> Result<Receipt> {
    let mut r = bytes;
    write_url(url, &mut r, opts).await
}

/// Publishes `reader` as the next version of `url` (see [`publish_target`]).
pub async fn publish_url<R: AsyncRead + Unpin>(
    url: &str,
    reader: &mut R,
    opts: &PublishOptions,
) -> Result<Receipt> {
    publish_target(&Target::parse(url)?, reader, opts).await
}

/// The current version of `url`, or `None` when nothing was published.
pub async fn latest_url(url: &str) -> Result<Option<VersionInfo>> {
    latest_target(&Target::parse(url)?).await
}

/// The versions of `url`, oldest first.
pub async fn versions_url(url: &str) -> Result<Vec<VersionInfo>> {
    versions_target(&Target::parse(url)?).await
}

/// Recomputes the SHA-256 of `url` (or of its current version) against its manifest.
pub async fn verify_url(url: &str) -> Result<VerifyReport> {
    verify_target(&Target::parse(url)?).await
}

/// Retention: keep the newest `keep` published versions of `url` (at least
/// the current one and the one before it).
pub async fn retain_url(url: &str, keep: usize) -> Result<RetentionReport> {
    retain_target(&Target::parse(url)?, keep).await
}

/// Copies the object at `url` into `out` (for `cp` remote → local); returns its size.
pub async fn read_url<W: AsyncWrite + Unpin>(url: &str, out: &mut W) -> Result<u64> {
    let t = Target::parse(url)?;
    versions::read_into(&t, &t.key, out).await
}
