//! The one error type of the object-store backend.

use std::fmt;
use std::io;

/// What went wrong, at the level a caller acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Create-only write: an object already exists at the destination.
    AlreadyExists,
    /// Compare-and-swap lost: someone else published first, or `expect` did not match.
    Conflict,
    /// The object, pointer or manifest does not exist.
    NotFound,
    /// The URL is not one this backend understands (or its feature is disabled).
    InvalidUrl,
    /// The store cannot do what was asked (e.g. conditional copy not configured).
    Unsupported,
    /// A manifest or pointer exists but is not valid JSON of the expected format.
    Corrupt,
    /// Reading the input failed.
    Input,
    /// Any other failure reported by the store (network, auth, server error...).
    Store,
}

/// An error naming the operation, the URL and the reason.
///
/// Display: `failed to OP `URL`: reason`.
#[derive(Debug)]
pub struct Error {
    op: &'static str,
    url: String,
    kind: ErrorKind,
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(
        op: &'static str,
        url: impl Into<String>,
        kind: ErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error {
            op,
            url: url.into(),
            kind,
            source: source.into(),
        }
    }

    /// Wraps an `object_store` error, classifying it.
    pub(crate) fn store(op: &'static str, url: impl Into<String>, e: object_store::Error) -> Self {
        let kind = match &e {
            object_store::Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            object_store::Error::Precondition { .. } => ErrorKind::Conflict,
            object_store::Error::NotFound { .. } => ErrorKind::NotFound,
            object_store::Error::NotImplemented { .. }
            | object_store::Error::NotSupported { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::Store,
        };
        Error::new(op, url, kind, e)
    }

    /// The classified kind.
    pub fn error_kind(&self) -> ErrorKind {
        self.kind
    }

    /// The closest `std::io::ErrorKind`, matching the core crate's convention.
    pub fn kind(&self) -> io::ErrorKind {
        match self.kind {
            ErrorKind::AlreadyExists | ErrorKind::Conflict => io::ErrorKind::AlreadyExists,
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::InvalidUrl => io::ErrorKind::InvalidInput,
            ErrorKind::Unsupported => io::ErrorKind::Unsupported,
            ErrorKind::Corrupt => io::ErrorKind::InvalidData,
            ErrorKind::Input | ErrorKind::Store => io::ErrorKind::Other,
        }
    }

    /// True for a create-only write that found the key taken, or a lost
    /// compare-and-swap (`expect` mismatch / concurrent publisher won).
    /// The CLI maps this to exit code 3.
    pub fn is_conflict(&self) -> bool {
        matches!(self.kind, ErrorKind::AlreadyExists | ErrorKind::Conflict)
    }

    /// The operation that failed (`put`, `publish`, `read pointer`, ...).
    pub fn op(&self) -> &str {
        self.op
    }

    /// The URL (or object key) the operation was about.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Error {
    /// The library's one error type for this failure: the operation as an
    /// [`Op`](crate::Op), the URL as the path, and an `io::Error` whose kind is
    /// [`Error::kind`] (the input's own io error, with its errno, when reading the input
    /// failed), so [`crate::Error::kind`] and [`crate::Error::is_conflict`] answer as they do
    /// for a local file.
    pub fn into_error(self) -> crate::Error {
        let op = op_of(self.op);
        let kind = self.kind();
        let source = match self.source.downcast::<io::Error>() {
            Ok(io) if self.kind == ErrorKind::Input => *io,
            Ok(io) => io::Error::new(kind, io.to_string()),
            Err(other) => io::Error::new(kind, other),
        };
        crate::Error::new(op, self.url, source)
    }
}

impl From<Error> for crate::Error {
    fn from(e: Error) -> crate::Error {
        e.into_error()
    }
}

/// The typed operation of an object-store step (the steps are named where they happen).
fn op_of(op: &str) -> crate::Op {
    use crate::Op;
    match op {
        "put"
        | "create version"
        | "upload part of"
        | "start multipart upload of"
        | "complete multipart upload of" => Op::Upload,
        "write manifest" => Op::Manifest,
        "read manifest" => Op::ReadManifest,
        "read pointer" | "check existence of" => Op::Inspect,
        "move pointer" | "publish" => Op::Publish,
        "lock pointer" => Op::Lock,
        "list versions of" => Op::ReadDir,
        "delete old versions of" | "delete leftovers of" => Op::Delete,
        "read" | "read input for" => Op::Read,
        "write output of" => Op::Copy,
        "verify" => Op::Verify,
        _ => Op::OpenStore,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to {} `{}`: {}", self.op, self.url, self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        io::Error::new(e.kind(), e)
    }
}
