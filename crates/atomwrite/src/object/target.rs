//! Turning a URL into a store and a key.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    ClientConfigKey, CredentialProvider, ObjectStore, ObjectStoreScheme, RetryConfig,
};
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
    /// The endpoint when it is not the cloud's own (`AWS_ENDPOINT_URL`, Azurite,
    /// `GOOGLE_BASE_URL`): such a store is S3/Azure/GCS-*compatible* and its
    /// conditional writes are probed, never assumed (see [`crate::object::capability`]).
    pub(crate) endpoint: Option<String>,
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
        #[allow(unused_mut)] // assigned only when a cloud feature is compiled in
        let mut endpoint = None;
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
                    let (s, ep) = build_s3(url_str)?;
                    endpoint = ep;
                    (s, Backend::S3, None)
                }
                #[cfg(feature = "gcp")]
                ObjectStoreScheme::GoogleCloudStorage => {
                    let (s, ep) = build_gcs(url_str)?;
                    endpoint = ep;
                    (s, Backend::Gcs, None)
                }
                #[cfg(feature = "azure")]
                ObjectStoreScheme::MicrosoftAzure => {
                    let (s, ep) = build_azure(url_str)?;
                    endpoint = ep;
                    (s, Backend::Azure, None)
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
            endpoint,
        })
    }

    /// A target over a store the caller built (custom credentials, a test
    /// double, a prefix store...). `backend` must say what the store is:
    /// For a `file://` target, refuses a path where another user could redirect what the
    /// object store opens by path ([`local_path_is_private`]); other stores pass.
    pub(crate) fn check_private(&self) -> Result<()> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let path = root.join(self.key.as_ref());
        local_path_is_private(&path).map_err(|reason| {
            Error::new(
                "use as a file:// object",
                self.url_of(&self.key),
                ErrorKind::Unsupported,
                format!(
                    "{reason}; file:// goes through object_store, which opens by path and \
                     follows links, so its directory must be writable only by you or root (name \
                     the path itself, `{}`, to get the local rules for shared directories)",
                    path.display()
                ),
            )
        })
    }

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
            endpoint: None,
        })
    }

    /// The endpoint of an S3/Azure/GCS-compatible store that is not the cloud's own
    /// (`AWS_ENDPOINT_URL`, `AZURITE_BLOB_STORAGE_URL` with `AZURE_STORAGE_USE_EMULATOR`,
    /// `GOOGLE_BASE_URL`), or `None` for the cloud itself, `file://` and `memory://`.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
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

/// Network limits of every cloud store, read from the environment once per store:
/// `ATOMWRITE_CONNECT_TIMEOUT` (default 10 s: establishing a TCP/TLS connection),
/// `ATOMWRITE_REQUEST_TIMEOUT` (default 5 min: one HTTP request, body included — one
/// PUT or one multipart part), `ATOMWRITE_RETRY_TIMEOUT` (default 3 min: how long
/// failed requests are retried with backoff, at most 10 times). Values are a number of
/// seconds or a number with a unit: `500ms`, `10s`, `5m`, `1h`.
///
/// With them no request can hang: a silent endpoint fails after at most about
/// connect/request timeout × retries, bounded by the retry timeout, with the URL in the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetLimits {
    /// Timeout of establishing a connection.
    pub connect: Duration,
    /// Timeout of one whole request (headers and body).
    pub request: Duration,
    /// Total time spent retrying a failed request.
    pub retry: Duration,
}

impl Default for NetLimits {
    fn default() -> Self {
        NetLimits {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(300),
            retry: Duration::from_secs(180),
        }
    }
}

impl NetLimits {
    /// The limits from `ATOMWRITE_CONNECT_TIMEOUT`, `ATOMWRITE_REQUEST_TIMEOUT` and
    /// `ATOMWRITE_RETRY_TIMEOUT` (unset: the defaults); an unparsable value is an error
    /// naming the variable.
    pub fn from_env() -> std::result::Result<NetLimits, String> {
        let d = NetLimits::default();
        Ok(NetLimits {
            connect: duration_env("ATOMWRITE_CONNECT_TIMEOUT", d.connect)?,
            request: duration_env("ATOMWRITE_REQUEST_TIMEOUT", d.request)?,
            retry: duration_env("ATOMWRITE_RETRY_TIMEOUT", d.retry)?,
        })
    }

    /// The client settings as object_store config values (`ClientConfigKey`), applied on top
    /// of what `from_env` read (so `AWS_ALLOW_HTTP` & co. are kept).
    #[allow(dead_code)] // used only when a cloud feature is compiled in
    fn client_config(&self) -> [(ClientConfigKey, String); 2] {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        [
            (ClientConfigKey::ConnectTimeout, ms(self.connect)),
            (ClientConfigKey::Timeout, ms(self.request)),
        ]
    }

    #[allow(dead_code)] // used only when a cloud feature is compiled in
    fn retry_config(&self) -> RetryConfig {
        RetryConfig {
            retry_timeout: self.retry,
            ..RetryConfig::default()
        }
    }
}

fn duration_env(name: &str, default: Duration) -> std::result::Result<Duration, String> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(e) => Err(format!("{name}: {e}")),
        Ok(v) => parse_duration(&v).ok_or_else(|| {
            format!("{name}={v:?} is not a duration (examples: 30, 500ms, 10s, 5m, 1h)")
        }),
    }
}

/// `30` (seconds), `500ms`, `10s`, `5m`, `1h`; zero is refused (it would mean "no time").
pub(crate) fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

fn net_limits(url: &str) -> Result<NetLimits> {
    NetLimits::from_env().map_err(|e| Error::new("configure", url, ErrorKind::InvalidUrl, e))
}

/// What to tell a user whose environment names no credential for a cloud.
#[allow(dead_code)] // used only when a cloud feature is compiled in
const AWS_HINT: &str = "no AWS credentials in the environment (set AWS_ACCESS_KEY_ID and \
AWS_SECRET_ACCESS_KEY [+ AWS_SESSION_TOKEN], or AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, or \
AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/FULL_URI; AWS_SKIP_SIGNATURE=true for a public bucket; \
AWS_ENDPOINT_URL for an S3-compatible server); the EC2 instance metadata service, tried last, said";
#[allow(dead_code)]
const GCP_HINT: &str = "no Google credentials in the environment (set GOOGLE_SERVICE_ACCOUNT \
(a key file path), GOOGLE_SERVICE_ACCOUNT_KEY (the key JSON) or GOOGLE_APPLICATION_CREDENTIALS, \
or run `gcloud auth application-default login`); the GCE metadata server, tried last, said";
#[allow(dead_code)]
const AZURE_HINT: &str = "no Azure credentials in the environment (set AZURE_STORAGE_ACCOUNT_KEY, \
AZURE_STORAGE_SAS_KEY, AZURE_STORAGE_TOKEN, or AZURE_CLIENT_ID + AZURE_CLIENT_SECRET + \
AZURE_TENANT_ID; AZURE_STORAGE_USE_EMULATOR=true for Azurite); the managed-identity endpoint, \
tried last, said";
#[allow(dead_code)]
const AZURE_ACCOUNT_HINT: &str = "no Azure storage account: set AZURE_STORAGE_ACCOUNT_NAME (and \
a credential: AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_KEY, AZURE_STORAGE_TOKEN or \
AZURE_CLIENT_ID + AZURE_CLIENT_SECRET + AZURE_TENANT_ID), or AZURE_STORAGE_USE_EMULATOR=true \
(+ AZURITE_BLOB_STORAGE_URL) for Azurite";

/// Wraps the credential chain's last resort (a cloud metadata service) when the
/// environment named no credential: its failure becomes one line naming the variables
/// to set, and it is bounded by the connect timeout (a metadata service is link-local and
/// answers at once when it exists), so a machine without one fails fast instead of
/// retrying for minutes.
#[derive(Debug)]
struct Hinted<C> {
    inner: Arc<dyn CredentialProvider<Credential = C>>,
    hint: &'static str,
    wait: Duration,
    url: String,
}

impl<C: std::fmt::Debug + Send + Sync + 'static> CredentialProvider for Hinted<C> {
    type Credential = C;

    fn get_credential<'a, 'b>(
        &'a self,
    ) -> Pin<Box<dyn Future<Output = object_store::Result<Arc<C>>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let r = tokio::time::timeout(self.wait, self.inner.get_credential()).await;
            let reason = match r {
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(e)) => one_line(&e.to_string()),
                Err(_) => format!("no answer within {:?}", self.wait),
            };
            Err(object_store::Error::Unauthenticated {
                path: self.url.clone(),
                source: format!("{}: {reason}", self.hint).into(),
            })
        })
    }
}

/// Collapses whitespace runs (a server's multi-line XML body) into single spaces.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(feature = "aws")]
fn build_s3(url: &str) -> Result<(Arc<dyn ObjectStore>, Option<String>)> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey as K};
    let net = net_limits(url)?;
    let b = AmazonS3Builder::from_env()
        .with_url(url)
        .with_retry(net.retry_config());
    let b = net
        .client_config()
        .into_iter()
        .fold(b, |b, (k, v)| b.with_config(K::Client(k), v));
    let set = |k: K| b.get_config_value(&k).is_some_and(|v| !v.is_empty());
    let has_creds = set(K::AccessKeyId)
        || set(K::WebIdentityTokenFile)
        || set(K::ContainerCredentialsRelativeUri)
        || set(K::ContainerCredentialsFullUri)
        || b.get_config_value(&K::SkipSignature)
            .is_some_and(|v| v == "true");
    let endpoint = b.get_config_value(&K::Endpoint).filter(|e| !e.is_empty());
    let cfg = |e| Error::store("configure S3 for", url, e);
    let s = b.clone().build().map_err(cfg)?;
    if has_creds {
        return Ok((Arc::new(s), endpoint));
    }
    let hinted = Hinted {
        inner: s.credentials().clone(),
        hint: AWS_HINT,
        wait: net.connect,
        url: url.to_string(),
    };
    let s = b.with_credentials(Arc::new(hinted)).build().map_err(cfg)?;
    Ok((Arc::new(s), endpoint))
}

#[cfg(feature = "gcp")]
fn build_gcs(url: &str) -> Result<(Arc<dyn ObjectStore>, Option<String>)> {
    use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey as K};
    let net = net_limits(url)?;
    let b = GoogleCloudStorageBuilder::from_env()
        .with_url(url)
        .with_retry(net.retry_config());
    let b = net
        .client_config()
        .into_iter()
        .fold(b, |b, (k, v)| b.with_config(K::Client(k), v));
    let set = |k: K| b.get_config_value(&k).is_some_and(|v| !v.is_empty());
    let adc = std::env::var_os("HOME").is_some_and(|h| {
        std::path::Path::new(&h)
            .join(".config/gcloud/application_default_credentials.json")
            .exists()
    });
    let has_creds = set(K::ServiceAccount)
        || set(K::ServiceAccountKey)
        || set(K::ApplicationCredentials)
        || std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_some()
        || adc
        || b.get_config_value(&K::SkipSignature)
            .is_some_and(|v| v == "true");
    let endpoint = b.get_config_value(&K::BaseUrl).filter(|e| !e.is_empty());
    let cfg = |e| Error::store("configure GCS for", url, e);
    let s = b.clone().build().map_err(cfg)?;
    if has_creds {
        return Ok((Arc::new(s), endpoint));
    }
    let hinted = Hinted {
        inner: s.credentials().clone(),
        hint: GCP_HINT,
        wait: net.connect,
        url: url.to_string(),
    };
    let s = b.with_credentials(Arc::new(hinted)).build().map_err(cfg)?;
    Ok((Arc::new(s), endpoint))
}

#[cfg(feature = "azure")]
fn build_azure(url: &str) -> Result<(Arc<dyn ObjectStore>, Option<String>)> {
    use object_store::azure::{AzureConfigKey as K, MicrosoftAzureBuilder};
    let net = net_limits(url)?;
    let b = MicrosoftAzureBuilder::from_env()
        .with_url(url)
        .with_retry(net.retry_config());
    let b = net
        .client_config()
        .into_iter()
        .fold(b, |b, (k, v)| b.with_config(K::Client(k), v));
    let set = |k: K| b.get_config_value(&k).is_some_and(|v| !v.is_empty());
    let emulator = b
        .get_config_value(&K::UseEmulator)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
    if !emulator && !set(K::AccountName) {
        return Err(Error::new(
            "configure Azure for",
            url,
            ErrorKind::InvalidUrl,
            AZURE_ACCOUNT_HINT,
        ));
    }
    let endpoint = if emulator {
        Some(
            std::env::var("AZURITE_BLOB_STORAGE_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:10000".into()),
        )
    } else {
        b.get_config_value(&K::Endpoint).filter(|e| !e.is_empty())
    };
    let has_creds = emulator
        || set(K::AccessKey)
        || set(K::SasKey)
        || set(K::Token)
        || set(K::ClientSecret)
        || set(K::FederatedTokenFile)
        || set(K::UseAzureCli)
        || b.get_config_value(&K::SkipSignature)
            .is_some_and(|v| v == "true");
    let cfg = |e| Error::store("configure Azure for", url, e);
    let s = b.clone().build().map_err(cfg)?;
    if has_creds {
        return Ok((Arc::new(s), endpoint));
    }
    let hinted = Hinted {
        inner: s.credentials().clone(),
        hint: AZURE_HINT,
        wait: net.connect,
        url: url.to_string(),
    };
    let s = b.with_credentials(Arc::new(hinted)).build().map_err(cfg)?;
    Ok((Arc::new(s), endpoint))
}

/// Whether `path` (a `file://` object) lives where nobody but this user and root can change what
/// its name, its directory or its siblings (`.versions/`, `.latest.json`, staging files) point
/// at: `object_store`'s `LocalFileSystem` opens by path and follows links, so it cannot apply
/// the perimeter rules the local backend applies through held directory fds. Walking from `/`:
/// a directory that others may write is passed only if it is sticky and the next component
/// belongs to this user or root (others cannot replace it); a symlink is followed only if it
/// belongs to this user or root; the directory that holds the object (or its nearest existing
/// ancestor, under which the store creates the rest) must not be writable by group or others.
/// `Err` is the reason, one phrase.
fn local_path_is_private(path: &std::path::Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    use std::path::{Component, Path};
    let me = rustix::process::geteuid().as_raw();
    let trusted = |uid: u32| uid == 0 || uid == me;
    let shared = |m: &std::fs::Metadata| m.mode() & 0o022 != 0;
    let sticky = |m: &std::fs::Metadata| m.mode() & 0o1000 != 0;
    let lstat = |p: &Path| std::fs::symlink_metadata(p);
    let mut todo: Vec<std::ffi::OsString> = Vec::new();
    for c in path.parent().unwrap_or(Path::new("/")).components().rev() {
        match c {
            Component::Normal(n) => todo.push(n.to_os_string()),
            Component::ParentDir => return Err("`..` in the path".into()),
            _ => {}
        }
    }
    let (mut cur, mut hops) = (PathBuf::from("/"), 0);
    while let Some(name) = todo.pop() {
        let here = lstat(&cur).map_err(|e| format!("{}: {e}", cur.display()))?;
        let next = cur.join(&name);
        let md = match lstat(&next) {
            Ok(md) => md,
            // The store creates the rest inside `cur`: only its writers matter.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(format!("{}: {e}", next.display())),
        };
        if shared(&here) && !(sticky(&here) && trusted(md.uid())) {
            return Err(format!(
                "{} may be replaced by another user ({} is writable by others)",
                next.display(),
                cur.display()
            ));
        }
        if md.file_type().is_symlink() {
            hops += 1;
            if !trusted(md.uid()) || hops > 40 {
                return Err(format!("{} is a link of uid {}", next.display(), md.uid()));
            }
            let target = std::fs::read_link(&next).map_err(|e| e.to_string())?;
            let full = cur.join(target);
            for c in full.components().rev() {
                match c {
                    Component::Normal(n) => todo.push(n.to_os_string()),
                    Component::ParentDir => {
                        return Err(format!("{} leads through `..`", next.display()));
                    }
                    _ => {}
                }
            }
            cur = PathBuf::from("/");
        } else if md.is_dir() {
            cur = next;
        } else {
            return Err(format!("{} is not a directory", next.display()));
        }
    }
    let here = lstat(&cur).map_err(|e| format!("{}: {e}", cur.display()))?;
    if shared(&here) {
        return Err(format!("{} is writable by other users", cur.display()));
    }
    Ok(())
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

    #[test]
    fn durations_parse_with_units_and_refuse_zero() {
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), None);
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("10 parsecs"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[cfg(feature = "aws")]
    #[test]
    fn parse_s3_builds_without_network() {
        let t = Target::parse("s3://bucket/dir/key.parquet").unwrap();
        assert_eq!(t.backend(), Backend::S3);
        assert_eq!(t.key(), "dir/key.parquet");
    }
}
