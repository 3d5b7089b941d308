//! Telling a local path from a URL, and refusing what looks like a URL with a typo.
//!
//! A command-line destination such as `s3:/bucket/key` is almost certainly a mistyped
//! `s3://bucket/key`; treated as a path it silently creates the local file `./s3:/bucket/key`
//! and reports success. [`Location::parse`] classifies a command-line argument once, before
//! anything is read or written:
//!
//! - anything starting with `/`, `./` or `../` is **always** a local path (the escape hatch:
//!   `./s3:/x` is the local file `x` in the directory `s3:`);
//! - `SCHEME://...` for a [supported scheme](SUPPORTED_SCHEMES) is a [`Location::Url`]
//!   (bucket schemes need a bucket: `s3://BUCKET/...`; `file://` needs an absolute path);
//! - a supported scheme without `//` (`s3:/x`, `s3:x`, `file:x`), any other `WORD://...`
//!   (`s4://b/k`, `http://host/x`, `gcs://b/k`) and `http:`/`https:`/`ftp:` followed by a
//!   slash are a [`LocationError`] whose message says what is wrong, suggests the URL that
//!   was probably meant and how to name a local file instead;
//! - everything else (`out.csv`, `a:b`, `C:\x`, `notes.txt:v2`) is a local path.
//!
//! The classification is purely lexical: nothing is looked up on disk or on the network, and
//! it does not depend on which object-store backends a program was built with (a program
//! that cannot serve a URL says so itself).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The URL schemes the `atomwrite` command line accepts (in lower case; matching is
/// case-insensitive). `s3`/`s3a` (Amazon S3 and compatibles), `gs` (Google Cloud Storage),
/// `az`/`azure`/`abfs`/`abfss`/`adl` (Azure), `file` (the local filesystem through the object
/// store layer) and `memory` (a process-local store, for tests).
pub const SUPPORTED_SCHEMES: &[&str] = &[
    "s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl", "file", "memory",
];

/// Supported schemes whose URL names a bucket or container: `SCHEME://BUCKET/KEY`.
const BUCKET_SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl"];

/// Well-known schemes that are not supported: `http:/x` is refused even with one slash.
const KNOWN_UNSUPPORTED: &[&str] = &["http", "https", "ftp", "ftps", "sftp", "ssh", "hdfs"];

/// Where a command-line argument points: a local path or a supported URL.
///
/// ```
/// use atomwrite::Location;
/// use std::ffi::OsStr;
/// use std::path::Path;
///
/// let url = Location::parse(OsStr::new("s3://bucket/daily.csv"))?;
/// assert_eq!(url.url(), Some("s3://bucket/daily.csv"));
/// assert_eq!(url.scheme(), Some("s3"));
///
/// let local = Location::parse(OsStr::new("out/daily.csv"))?;
/// assert_eq!(local.path(), Some(Path::new("out/daily.csv")));
///
/// // A typo is an error, never a local file named `s3:`...
/// let e = Location::parse(OsStr::new("s3:/bucket/daily.csv")).unwrap_err();
/// assert!(e.to_string().contains("s3://bucket/daily.csv"));
/// assert!(e.to_string().contains("./s3:/bucket/daily.csv"));
/// // ...unless asked for explicitly.
/// assert!(!Location::parse(OsStr::new("./s3:/bucket/daily.csv"))?.is_url());
/// # Ok::<(), atomwrite::LocationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A local path, exactly as given.
    Path(PathBuf),
    /// A URL with a [supported scheme](SUPPORTED_SCHEMES).
    Url {
        /// The scheme, in lower case (`s3`, `gs`, `file`, ...).
        scheme: String,
        /// The URL exactly as given.
        url: String,
    },
}

impl Location {
    /// Classifies `arg` (see the [module docs](crate::location) for the rules). Never panics, never
    /// touches the filesystem or the network.
    ///
    /// # Errors
    ///
    /// A [`LocationError`] when `arg` looks like a URL but is not one this program accepts:
    /// a supported scheme without `//`, an unsupported `WORD://`, a bucket URL without a
    /// bucket, a `file://` URL with a host or without an absolute path, or a URL that is not
    /// valid UTF-8.
    pub fn parse(arg: &OsStr) -> Result<Location, LocationError> {
        let b = arg.as_bytes();
        let path = || Ok(Location::Path(PathBuf::from(arg)));
        if b.starts_with(b"/") || b.starts_with(b"./") || b.starts_with(b"../") {
            return path();
        }
        let Some(colon) = b.iter().position(|&c| c == b':') else {
            return path();
        };
        let (word, rest) = (&b[..colon], &b[colon + 1..]);
        if !is_scheme_word(word) {
            return path();
        }
        // `is_scheme_word` admits ASCII only.
        let scheme = String::from_utf8_lossy(word).to_ascii_lowercase();
        let err = |reason| {
            Err(LocationError {
                input: arg.to_os_string(),
                scheme: scheme.clone(),
                reason,
            })
        };
        let slashes = rest.starts_with(b"//");
        if SUPPORTED_SCHEMES.contains(&scheme.as_str()) {
            if !slashes {
                return err(Reason::MissingSlashes);
            }
            let Ok(url) = std::str::from_utf8(b) else {
                return err(Reason::NotUtf8);
            };
            let after = &url[colon + 3..];
            let authority = after.split(['/', '?', '#']).next().unwrap_or_default();
            if BUCKET_SCHEMES.contains(&scheme.as_str()) && authority.is_empty() {
                return err(Reason::NoBucket);
            }
            if scheme == "file" {
                if !(authority.is_empty() || authority.eq_ignore_ascii_case("localhost")) {
                    return err(Reason::FileHost);
                }
                if !after[authority.len()..].starts_with('/') {
                    return err(Reason::FileNotAbsolute);
                }
            }
            return Ok(Location::Url {
                scheme,
                url: url.to_string(),
            });
        }
        if slashes || (KNOWN_UNSUPPORTED.contains(&scheme.as_str()) && rest.starts_with(b"/")) {
            return err(Reason::Unsupported);
        }
        path()
    }

    /// True for [`Location::Url`].
    pub fn is_url(&self) -> bool {
        matches!(self, Location::Url { .. })
    }

    /// The local path, for [`Location::Path`].
    pub fn path(&self) -> Option<&Path> {
        match self {
            Location::Path(p) => Some(p),
            Location::Url { .. } => None,
        }
    }

    /// The URL as given, for [`Location::Url`].
    pub fn url(&self) -> Option<&str> {
        match self {
            Location::Url { url, .. } => Some(url),
            Location::Path(_) => None,
        }
    }

    /// The lower-case scheme, for [`Location::Url`].
    pub fn scheme(&self) -> Option<&str> {
        match self {
            Location::Url { scheme, .. } => Some(scheme),
            Location::Path(_) => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Path(p) => write!(f, "{}", p.display()),
            Location::Url { url, .. } => f.write_str(url),
        }
    }
}

/// URL scheme syntax (RFC 3986: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`), loosened to
/// catch typos: `_` is allowed and the first character may be a digit (`3s://b/k`).
fn is_scheme_word(w: &[u8]) -> bool {
    w.first().is_some_and(u8::is_ascii_alphanumeric)
        && w.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.' | b'_'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    MissingSlashes,
    Unsupported,
    NoBucket,
    FileHost,
    FileNotAbsolute,
    NotUtf8,
}

/// An argument that looks like a URL but is not one that is accepted (a typo, an unsupported
/// scheme, a malformed URL). Its message is one line: what is wrong, the URL probably meant
/// (when there is a likely one), and how to name a local file of that name (`./ARG`).
///
/// ```
/// use atomwrite::Location;
/// use std::ffi::OsStr;
///
/// let e = Location::parse(OsStr::new("s4://bucket/key")).unwrap_err();
/// assert_eq!(e.suggestion().as_deref(), Some("s3://bucket/key"));
/// assert_eq!(e.local_path(), std::path::Path::new("./s4://bucket/key"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationError {
    input: OsString,
    scheme: String,
    reason: Reason,
}

impl LocationError {
    /// The argument as given.
    pub fn input(&self) -> &OsStr {
        &self.input
    }

    /// The URL that was probably meant, when there is a likely one: `s3:/b/k` → `s3://b/k`,
    /// `s4://b/k` → `s3://b/k`, `file:/tmp/x` → `file:///tmp/x`. A suggestion is always a URL
    /// that [`Location::parse`] accepts (never `file://rel` for `ile://rel`).
    pub fn suggestion(&self) -> Option<String> {
        self.guess()
            .filter(|s| matches!(Location::parse(OsStr::new(s)), Ok(Location::Url { .. })))
    }

    fn guess(&self) -> Option<String> {
        let s = self.input.to_str()?;
        let colon = s.find(':')?;
        let rest = &s[colon + 1..];
        match self.reason {
            Reason::MissingSlashes => {
                let tail = rest.trim_start_matches('/');
                match self.scheme.as_str() {
                    "file" if rest.starts_with('/') => Some(format!("file:///{tail}")),
                    "file" => None,
                    "memory" => Some(format!("memory:///{tail}")),
                    _ if tail.is_empty() => None,
                    scheme => Some(format!("{scheme}://{tail}")),
                }
            }
            Reason::Unsupported => {
                let near = SUPPORTED_SCHEMES
                    .iter()
                    .find(|k| near_miss(&self.scheme, k))?;
                if !rest.starts_with("//") {
                    return None;
                }
                Some(format!("{near}:{rest}"))
            }
            _ => None,
        }
    }

    /// The path that names a local file of this name: `./ARG`.
    pub fn local_path(&self) -> PathBuf {
        Path::new(".").join(&self.input)
    }
}

impl fmt::Display for LocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.input.to_string_lossy();
        let scheme = &self.scheme;
        match self.reason {
            Reason::MissingSlashes => write!(
                f,
                "`{shown}` looks like a mistyped {scheme} URL (a URL is written `{scheme}://...`)"
            )?,
            Reason::Unsupported => write!(
                f,
                "`{shown}` looks like a URL, but `{scheme}:` is not a supported scheme \
                 (supported: {})",
                SUPPORTED_SCHEMES
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )?,
            Reason::NoBucket => write!(
                f,
                "`{shown}` names no bucket (a {scheme} URL is written `{scheme}://BUCKET/KEY`)"
            )?,
            Reason::FileHost => write!(
                f,
                "`{shown}` names a host; a file URL is written `file:///ABSOLUTE/PATH` (three \
                 slashes)"
            )?,
            Reason::FileNotAbsolute => write!(
                f,
                "`{shown}` has no absolute path; a file URL is written `file:///ABSOLUTE/PATH`"
            )?,
            Reason::NotUtf8 => write!(f, "the URL `{shown}` is not valid UTF-8")?,
        }
        if let Some(s) = self.suggestion() {
            write!(f, "; did you mean `{s}`?")?;
        }
        write!(
            f,
            "; to mean a local file, write `{}`",
            self.local_path().display()
        )
    }
}

impl std::error::Error for LocationError {}

/// True when `a` and `b` differ by one edit (insertion, deletion, substitution or a swap of
/// two neighbours): `s4`/`s3`, `gcs`/`gs`, `3s`/`s3`.
fn near_miss(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a == b || a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let p = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (ra, rb) = (&a[p..], &b[p..]);
    if ra.len() == rb.len() {
        // One substitution, or one transposition.
        ra[1..] == rb[1..]
            || (ra.len() >= 2 && ra[0] == rb[1] && ra[1] == rb[0] && ra[2..] == rb[2..])
    } else if ra.len() > rb.len() {
        ra[1..] == *rb
    } else {
        rb[1..] == *ra
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<Location, LocationError> {
        Location::parse(OsStr::new(s))
    }

    fn is_path(s: &str) -> bool {
        matches!(parse(s), Ok(Location::Path(p)) if p == Path::new(s))
    }

    #[test]
    fn location_supported_urls() {
        for (s, scheme) in [
            ("s3://bucket/key", "s3"),
            ("S3://bucket/key", "s3"),
            ("s3a://bucket/a/b", "s3a"),
            ("gs://bucket/key", "gs"),
            ("az://container/key", "az"),
            ("azure://container/key", "azure"),
            ("abfs://fs@account.dfs.core.windows.net/k", "abfs"),
            ("abfss://fs@account.dfs.core.windows.net/k", "abfss"),
            ("adl://account/k", "adl"),
            ("file:///tmp/x", "file"),
            ("file://localhost/tmp/x", "file"),
            ("memory:///x", "memory"),
            ("s3://bucket/", "s3"),
        ] {
            let l = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(l.url(), Some(s), "{s}");
            assert_eq!(l.scheme(), Some(scheme), "{s}");
            assert!(l.is_url() && l.path().is_none());
            assert_eq!(l.to_string(), s);
        }
    }

    #[test]
    fn location_local_paths() {
        for s in [
            "out.csv",
            "dir/out.csv",
            "/tmp/s3://x",
            "./s3:/x",
            "./s3://b/k",
            "../gs:/b/k",
            "./http://host/x",
            "a:b",
            "notes.txt:v2",
            "C:\\x",
            "my file:x",
            "a/b://c",
            "http:x",
            "-",
            "",
            ".",
            "..",
            ":x",
            "s3",
        ] {
            assert!(is_path(s), "{s}: {:?}", parse(s));
        }
    }

    #[test]
    fn location_typos_are_errors_with_a_hint() {
        for (s, suggestion) in [
            ("s3:/bucket/key", Some("s3://bucket/key")),
            ("s3:bucket/key", Some("s3://bucket/key")),
            ("S3:/bucket/key", Some("s3://bucket/key")),
            ("gs:/b/k", Some("gs://b/k")),
            ("az:c/k", Some("az://c/k")),
            ("s3:", None),
            ("s3:/", None),
            ("file:/tmp/x", Some("file:///tmp/x")),
            ("file:x", None),
            ("memory:x", Some("memory:///x")),
            ("s4://b/k", Some("s3://b/k")),
            ("gcs://b/k", Some("gs://b/k")),
            ("3s://b/k", Some("s3://b/k")),
            ("1s3://x", Some("s3://x")),
            ("http://host/x", None),
            ("https://host/x", None),
            ("http:/host/x", None),
            ("ftp://host/x", None),
            ("foo://bar", None),
            ("c://x", None),
            ("s3://", None),
            ("s3:///key", None),
            ("gs:///key", None),
            ("file://host/x", None),
            ("file://", None),
        ] {
            let e = parse(s).expect_err(s);
            assert_eq!(e.suggestion().as_deref(), suggestion, "{s}: {e}");
            assert_eq!(e.input(), OsStr::new(s));
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            assert!(msg.contains(&format!("`{s}`")), "{msg}");
            assert!(
                msg.ends_with(&format!("to mean a local file, write `./{s}`")),
                "{msg}"
            );
            if let Some(sug) = suggestion {
                assert!(msg.contains(&format!("did you mean `{sug}`?")), "{msg}");
            }
            // The escape hatch works for every rejected argument.
            assert!(is_path(&format!("./{s}")), "./{s}");
        }
    }

    #[test]
    fn location_unsupported_lists_the_supported_schemes() {
        let msg = parse("http://host/x").unwrap_err().to_string();
        assert!(msg.contains("`http:` is not a supported scheme"), "{msg}");
        for s in SUPPORTED_SCHEMES {
            assert!(msg.contains(&format!("{s}://")), "{msg}");
        }
    }

    #[test]
    fn location_non_utf8() {
        let p = OsStr::from_bytes(b"caf\xe9.txt");
        assert_eq!(
            Location::parse(p).unwrap(),
            Location::Path(PathBuf::from(p))
        );
        let u = OsStr::from_bytes(b"s3://b/\xff");
        assert!(
            Location::parse(u)
                .unwrap_err()
                .to_string()
                .contains("not valid UTF-8")
        );
        let w = OsStr::from_bytes(b"s4://b/\xff");
        assert!(Location::parse(w).is_err());
    }

    #[test]
    fn location_near_miss() {
        assert!(near_miss("s4", "s3"));
        assert!(near_miss("gcs", "gs"));
        assert!(near_miss("3s", "s3"));
        assert!(near_miss("azur", "azure"));
        assert!(!near_miss("s3", "s3"));
        assert!(!near_miss("http", "s3"));
        assert!(!near_miss("", "gs"));
        assert!(near_miss("g", "gs"));
    }

    /// Found by the `location` fuzz target (crash-tests/fuzz): `ile://rel` suggested
    /// `file://rel`, which is itself refused (a file URL with a host).
    #[test]
    fn location_suggestions_are_accepted_urls() {
        for bad in [
            "ile://rel",
            "fil://host/x",
            "s3:/?x",
            "s3:/#",
            "memor://",
            "3s://",
        ] {
            let e = parse(bad).unwrap_err();
            if let Some(s) = e.suggestion() {
                assert!(parse(&s).is_ok_and(|l| l.is_url()), "{bad} suggested {s}");
                assert!(e.to_string().contains(&s));
            }
        }
        assert_eq!(parse("ile://rel").unwrap_err().suggestion(), None);
        assert_eq!(
            parse("ile:///tmp/x").unwrap_err().suggestion().as_deref(),
            Some("file:///tmp/x")
        );
    }

    proptest! {
        #[test]
        fn location_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            match Location::parse(OsStr::from_bytes(&bytes)) {
                Ok(Location::Path(p)) => prop_assert_eq!(p.as_os_str().as_bytes(), &bytes[..]),
                Ok(Location::Url { url, scheme }) => {
                    prop_assert_eq!(url.as_bytes(), &bytes[..]);
                    prop_assert!(SUPPORTED_SCHEMES.contains(&scheme.as_str()));
                }
                Err(e) => {
                    let _ = e.to_string();
                    let _ = e.suggestion();
                    // `./ARG` is always accepted as the local file.
                    let local = e.local_path();
                    prop_assert!(!Location::parse(local.as_os_str()).unwrap().is_url());
                }
            }
        }

        #[test]
        fn location_dot_slash_is_always_a_path(s in "(\\./|\\.\\./|/)\\PC{0,30}") {
            prop_assert_eq!(parse(&s).unwrap(), Location::Path(PathBuf::from(&s)));
        }

        #[test]
        fn location_url_like_strings_never_become_paths(
            scheme in "[a-zA-Z0-9][a-zA-Z0-9+._-]{0,6}",
            rest in "[a-z0-9/._-]{0,20}",
        ) {
            // `WORD://...` is either an accepted URL or an error: never a local file.
            let s = format!("{scheme}://{rest}");
            prop_assert!(!matches!(parse(&s), Ok(Location::Path(_))), "{}", s);
        }

        #[test]
        fn location_supported_scheme_without_slashes_is_an_error(
            i in 0..SUPPORTED_SCHEMES.len(),
            rest in "/?[a-z0-9._-]{0,20}",
        ) {
            let s = format!("{}:{rest}", SUPPORTED_SCHEMES[i]);
            prop_assert!(parse(&s).is_err(), "{}", s);
        }
    }
}
