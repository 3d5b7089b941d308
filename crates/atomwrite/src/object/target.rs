//! Turning a URL into a store and a key.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreScheme};
use url::Url;

use crate::object::error::{Error, ErrorKind, Result};

/// Which kind of store a [`Target`] talks to. It decides how the `latest`
/// pointer's compare-and-swap is done (natively, or under a lock file for
/// `file://`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// `memory:///key`: one in-memory store shared by the whole process.
    Memory,
    /// `file:///abs/path`: the local filesystem (staged file + rename, fsynced).
    Local,
    /// `s3://bucket/key` (and `s3a://`): Amazon S3 or an S3-compatible server.
    S3,
    /// `gs://bucket/key`: Google Cloud Storage.
    Gcs,
    /// `az://container/key` (and `azure://`, `abfs[s]://`, `adl://`): Azure Blob Storage.
    Azure,
}

/// A destination: a store plus the key of the object inside it.
#[derive(Debug, Clone)]
pub struct Target {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) key: Path,
    pub(crate) backend: Backend,
    pub(crate) url: String,
    /// For `file://` only: the root the keys are relative to (`/`).
    pub(crate) local_root: Option<PathBuf>,
}

const URL_SCHEMES: &[&str] = &[
    "s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl", "file", "memory",
];

/// True when `s` looks like a URL destination this crate handles (`s3://`,
/// `gs://`, `az://`, `file:`, `memory:` ...), as opposed to a local path.
///
/// The CLI uses it to route a destination: `is_url("out.csv")` is false,
/// `is_url("s3://b/k")` is true. A Windows-like `C:\x` is not a URL.
pub fn is_url(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            URL_SCHEMES.contains(&scheme.as_str())
                && (rest.starts_with("//") || scheme == "file" || scheme == "memory")
        }
        None => false,
    }
}

/// The process-wide in-memory store behind every `memory://` URL, so that a
/// write and a later read in the same process see the same objects.
pub fn memory_store() -> Arc<InMemory> {
    static STORE: OnceLock<Arc<InMemory>> = OnceLock::new();
    STORE.get_or_init(|| Arc::new(InMemory::new())).clone()
}

impl Target {
    /// Parses a URL with `object_store`'s own URL rules and builds the store,
    /// configured from the environment (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`, `GOOGLE_*`,
    /// `AZURE_*` ...). No network request is made here.
    pub fn parse(url_str: &str) -> Result<Target> {
        let invalid =
            |reason: String| Error::new("parse URL", url_str, ErrorKind::InvalidUrl, reason);
        let url = Url::parse(url_str).map_err(|e| invalid(e.to_string()))?;
        let (scheme, key) = ObjectStoreScheme::parse(&url).map_err(|e| invalid(e.to_string()))?;
        if key.as_ref().is_empty() {
            return Err(invalid("the URL names no object key".into()));
        }
        let (store, backend, local_root): (Arc<dyn ObjectStore>, Backend, Option<PathBuf>) =
            match scheme {
                ObjectStoreScheme::Memory => (memory_store(), Backend::Memory, None),
                ObjectStoreScheme::Local => (
                    Arc::new(
                        object_store::local::LocalFileSystem::new()
                            .with_fsync(true)
                            .with_automatic_cleanup(false),
                    ),
                    Backend::Local,
                    Some(PathBuf::from("/")),
                ),
                #[cfg(feature = "aws")]
                ObjectStoreScheme::AmazonS3 => {
                    let s = object_store::aws::AmazonS3Builder::from_env()
                        .with_url(url_str)
                        .build()
                        .map_err(|e| Error::store("configure S3 for", url_str, e))?;
                    (Arc::new(s), Backend::S3, None)
                }
                #[cfg(feature = "gcp")]
                ObjectStoreScheme::GoogleCloudStorage => {
                    let s = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                        .with_url(url_str)
                        .build()
                        .map_err(|e| Error::store("configure GCS for", url_str, e))?;
                    (Arc::new(s), Backend::Gcs, None)
                }
                #[cfg(feature = "azure")]
                ObjectStoreScheme::MicrosoftAzure => {
                    let s = object_store::azure::MicrosoftAzureBuilder::from_env()
                        .with_url(url_str)
                        .build()
                        .map_err(|e| Error::store("configure Azure for", url_str, e))?;
                    (Arc::new(s), Backend::Azure, None)
                }
                other => {
                    return Err(invalid(format!(
                        "{other:?} URLs are not supported (or their feature is not compiled in)"
                    )));
                }
            };
        Ok(Target {
            store,
            key,
            backend,
            url: url_str.to_string(),
            local_root,
        })
    }

    /// A target over a store the caller built (custom credentials, a test
    /// double, a prefix store...). `backend` must say what the store is:
    /// [`Backend::Local`] stores need `local_root` for the pointer lock file.
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        key: &str,
        backend: Backend,
        local_root: Option<PathBuf>,
    ) -> Result<Target> {
        let key =
            Path::parse(key).map_err(|e| Error::new("parse key", key, ErrorKind::InvalidUrl, e))?;
        Ok(Target {
            url: key.to_string(),
            store,
            key,
            backend,
            local_root,
        })
    }

    /// The key of the object inside its store.
    pub fn key(&self) -> &str {
        self.key.as_ref()
    }

    /// The URL this target was parsed from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The kind of store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The underlying `object_store` handle.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The last segment of the key (the "file name"), used as the manifest `name`.
    pub fn name(&self) -> String {
        self.key.filename().unwrap_or_default().to_string()
    }

    /// A sibling key: this key with `suffix` appended (`KEY.manifest.json`).
    pub(crate) fn with_suffix(&self, suffix: &str) -> Path {
        Path::from(format!("{}{}", self.key.as_ref(), suffix))
    }

    /// A display URL for a key of the same store.
    pub(crate) fn url_of(&self, key: &Path) -> String {
        // The key is the URL's suffix (not its first occurrence: `s3://bkt/k` has a `k` in
        // the bucket name too).
        match self.url.strip_suffix(self.key.as_ref()) {
            Some(base) => format!("{base}{}", key.as_ref()),
            None => key.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_url_distinguishes_paths() {
        assert!(is_url("s3://bucket/key"));
        assert!(is_url("S3://bucket/key"));
        assert!(is_url("gs://bucket/key"));
        assert!(is_url("az://container/key"));
        assert!(is_url("file:///tmp/x"));
        assert!(is_url("memory:///x"));
        assert!(!is_url("out.csv"));
        assert!(!is_url("./s3:/x"));
        assert!(!is_url("/tmp/s3://x"));
        assert!(!is_url("C:\\x"));
        assert!(!is_url("http://example.com/x"));
    }

    #[test]
    fn parse_memory_and_file() {
        let t = Target::parse("memory:///a/b.csv").unwrap();
        assert_eq!(t.backend(), Backend::Memory);
        assert_eq!(t.key(), "a/b.csv");
        assert_eq!(t.name(), "b.csv");
        let t = Target::parse("file:///tmp/x/y.bin").unwrap();
        assert_eq!(t.backend(), Backend::Local);
        assert_eq!(t.key(), "tmp/x/y.bin");
        assert_eq!(
            t.url_of(&t.with_suffix(".manifest.json")),
            "file:///tmp/x/y.bin.manifest.json"
        );
    }

    #[test]
    fn url_of_replaces_the_key_suffix() {
        let t = Target::parse("memory:///e").unwrap();
        assert_eq!(
            t.url_of(&Path::from("e.versions/v0000000001")),
            "memory:///e.versions/v0000000001"
        );
        let t = Target::parse("file:///tmp/k").unwrap();
        assert_eq!(
            t.url_of(&Path::from("tmp/k.latest.json")),
            "file:///tmp/k.latest.json"
        );
    }

    #[cfg(feature = "aws")]
    #[test]
    fn url_of_keeps_a_bucket_that_contains_the_key() {
        let t = Target::parse("s3://bkt/k").unwrap();
        assert_eq!(
            t.url_of(&Path::from("k.manifest.json")),
            "s3://bkt/k.manifest.json"
        );
    }

    #[test]
    fn parse_rejects_unknown_and_empty() {
        let e = Target::parse("ftp://h/x").unwrap_err();
        assert_eq!(e.error_kind(), ErrorKind::InvalidUrl);
        let e = Target::parse("memory:///").unwrap_err();
        assert_eq!(e.error_kind(), ErrorKind::InvalidUrl);
    }

    #[cfg(feature = "aws")]
    #[test]
    fn parse_s3_builds_without_network() {
        let t = Target::parse("s3://bucket/dir/key.parquet").unwrap();
        assert_eq!(t.backend(), Backend::S3);
        assert_eq!(t.key(), "dir/key.parquet");
    }
}
