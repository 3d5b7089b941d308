//! The one error type: the operation that failed, the path(s) it touched, and the
//! operating system's reason, with the original [`io::ErrorKind`] kept.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The step of an atomic write (or of a helper such as [`clean`](crate::clean)) that failed.
///
/// The list grows with the library; match it with a wildcard arm.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Opening (or validating) the destination's parent directory.
    OpenDir,
    /// Creating a missing parent directory.
    CreateDir,
    /// Inspecting the destination (`fstatat`, `readlinkat`).
    Inspect,
    /// Refusing a destination that is not a regular file or a symlink to one.
    CheckDestination,
    /// Creating the temporary file.
    CreateTemp,
    /// Writing bytes into the temporary file.
    Write,
    /// Seeking in, or reading back, the temporary file.
    Seek,
    /// Preallocating space for the temporary file.
    Preallocate,
    /// Setting the final owner/group (`fchown`).
    Chown,
    /// Setting the final permission bits (`fchmod`).
    Chmod,
    /// Flushing the temporary file's data and metadata to stable storage (`fsync`).
    SyncFile,
    /// Giving the anonymous (`O_TMPFILE`) file a name (`linkat`).
    Link,
    /// Making the new contents visible under the destination name (`renameat`).
    Rename,
    /// Flushing the directory so the rename survives power loss (`fsync` on the directory).
    SyncDir,
    /// Removing a temporary file.
    RemoveTemp,
    /// Reading a directory listing.
    ReadDir,
    /// Taking or testing a lock.
    Lock,
    /// Reading a source file.
    Read,
    /// Copying data between files (`FICLONE`, `copy_file_range`, or a buffered copy).
    Copy,
    /// Writing a manifest (a sidecar `PATH.manifest.json` or a version's manifest).
    Manifest,
    /// Reading (and parsing) a manifest.
    ReadManifest,
    /// Verifying contents against a manifest.
    Verify,
    /// Creating or replacing a symbolic link.
    Symlink,
    /// Publishing a version (pointer swap, compare-and-swap).
    Publish,
    /// Opening a destination: classifying the argument, configuring an object-store client.
    OpenStore,
    /// Sending bytes to an object store (a PUT, a multipart upload, a conditional copy).
    Upload,
    /// Deleting objects (retention of old versions on an object store).
    Delete,
}

impl Op {
    /// A stable `snake_case` name for machine-readable output (`sync_file`, `rename`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Op::OpenDir => "open_dir",
            Op::CreateDir => "create_dir",
            Op::Inspect => "inspect",
            Op::CheckDestination => "check_destination",
            Op::CreateTemp => "create_temp",
            Op::Write => "write",
            Op::Seek => "seek",
            Op::Preallocate => "preallocate",
            Op::Chown => "chown",
            Op::Chmod => "chmod",
            Op::SyncFile => "sync_file",
            Op::Link => "link",
            Op::Rename => "rename",
            Op::SyncDir => "sync_dir",
            Op::RemoveTemp => "remove_temp",
            Op::ReadDir => "read_dir",
            Op::Lock => "lock",
            Op::Read => "read",
            Op::Copy => "copy",
            Op::Manifest => "manifest",
            Op::ReadManifest => "read_manifest",
            Op::Verify => "verify",
            Op::Symlink => "symlink",
            Op::Publish => "publish",
            Op::OpenStore => "open_store",
            Op::Upload => "upload",
            Op::Delete => "delete",
        }
    }

    /// The verb phrase used in messages: "failed to {verb} `path`".
    pub fn verb(self) -> &'static str {
        match self {
            Op::OpenDir => "open directory",
            Op::CreateDir => "create directory",
            Op::Inspect => "inspect",
            Op::CheckDestination => "write to",
            Op::CreateTemp => "create temporary file in",
            Op::Write => "write temporary file for",
            Op::Seek => "seek in temporary file for",
            Op::Preallocate => "preallocate temporary file for",
            Op::Chown => "set owner of temporary file for",
            Op::Chmod => "set mode of temporary file for",
            Op::SyncFile => "fsync temporary file for",
            Op::Link => "link temporary file for",
            Op::Rename => "rename",
            Op::SyncDir => "fsync directory",
            Op::RemoveTemp => "remove temporary file",
            Op::ReadDir => "read directory",
            Op::Lock => "lock",
            Op::Read => "read",
            Op::Copy => "copy",
            Op::Manifest => "write manifest for",
            Op::ReadManifest => "read manifest",
            Op::Verify => "verify",
            Op::Symlink => "create symlink",
            Op::Publish => "publish",
            Op::OpenStore => "open",
            Op::Upload => "upload",
            Op::Delete => "delete",
        }
    }
}

/// An atomwrite failure: which operation, on which path(s), and why.
///
/// `Display` is one line: ``failed to rename `a` to `b`: Device or resource busy (os error 16)``,
/// followed by a hint where one helps (a bind mount, a name that is too long).
/// [`kind`](Error::kind) is the original [`io::ErrorKind`]; converting into
/// [`io::Error`] keeps it, so `?` works in functions returning `io::Result`.
///
/// An error from [`commit`](crate::AtomicFile::commit) before the rename means the destination is
/// untouched and the temporary file was removed. The one exception is [`Op::SyncDir`]: the rename
/// has already happened, so the new contents are visible but are not promised to survive a power
/// loss; the error says so.
#[derive(Debug)]
pub struct Error {
    op: Op,
    path: PathBuf,
    /// Boxed: keeps `Error` (and every `Result` carrying it) small.
    path2: Option<Box<Path>>,
    source: io::Error,
    hint: Option<String>,
    batch: Option<Box<crate::BatchOutcome>>,
}

/// `Result<T, atomwrite::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error for `op` on `path` caused by `source`.
    pub fn new(op: Op, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let mut e = Error {
            op,
            path: path.into(),
            path2: None,
            source,
            hint: None,
            batch: None,
        };
        e.hint = default_hint(&e);
        e
    }

    /// An error for `op` from `path` to `path2` (a rename or link).
    pub fn new2(
        op: Op,
        path: impl Into<PathBuf>,
        path2: impl Into<PathBuf>,
        source: io::Error,
    ) -> Self {
        let mut e = Error {
            op,
            path: path.into(),
            path2: Some(path2.into().into_boxed_path()),
            source,
            hint: None,
            batch: None,
        };
        e.hint = default_hint(&e);
        e
    }

    /// An error with a message of our own (no OS error behind it) of the given kind.
    pub fn other(
        op: Op,
        path: impl Into<PathBuf>,
        kind: io::ErrorKind,
        msg: impl Into<String>,
    ) -> Self {
        Error::new(op, path, io::Error::new(kind, msg.into()))
    }

    /// An error for `op` on `path` caused by `source`, wrapped once: when `source` already
    /// carries an atomwrite [`Error`] (an [`AtomicFile`](crate::AtomicFile) write error that
    /// went through `io::Write`), that error is returned as it is, with its operation, path and
    /// OS error number ([`raw_os_error`](Error::raw_os_error)), instead of being wrapped again.
    pub fn wrap_io(op: Op, path: impl Into<PathBuf>, source: io::Error) -> Self {
        match source.downcast::<Error>() {
            Ok(e) => e,
            Err(source) => Error::new(op, path, source),
        }
    }

    /// The same error, reported as a failure of `op` (a check shared by several operations
    /// names the one the caller asked for: `read` for a source, `publish` for a publish).
    pub(crate) fn with_op(mut self, op: Op) -> Self {
        self.op = op;
        self
    }

    /// Replaces the hint appended to the message.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The operation that failed.
    pub fn op(&self) -> Op {
        self.op
    }

    /// The path the operation was applied to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The second path, for operations that have one (rename, link).
    pub fn path2(&self) -> Option<&Path> {
        self.path2.as_deref()
    }

    /// The original error kind (`NotFound`, `AlreadyExists`, `StorageFull`, ...).
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }

    /// The OS error number, when there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// The underlying I/O error.
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }

    /// True for conflicts: a create-only target that already exists, a compare-and-swap
    /// that lost the race, or a wait for another publisher that timed out. The CLI maps these to
    /// exit code 3.
    pub fn is_conflict(&self) -> bool {
        self.kind() == io::ErrorKind::AlreadyExists
            || (self.op == Op::Lock && self.kind() == io::ErrorKind::WouldBlock)
    }

    /// A hint for the operator, when one is known.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// For a lost compare-and-swap ([`Publisher::expect`](crate::Publisher::expect)): the
    /// version the caller expected and the one that was current, read under the publishers'
    /// lock. `None` for every other error (including other conflicts).
    pub fn cas_versions(&self) -> Option<(u64, u64)> {
        let lost = self.source.get_ref()?.downcast_ref::<CasLost>()?;
        Some((lost.expected, lost.actual))
    }

    /// For an error from [`Batch::commit`](crate::Batch::commit) (always set there): which
    /// destinations were replaced and which were not.
    pub fn batch_outcome(&self) -> Option<&crate::BatchOutcome> {
        self.batch.as_deref()
    }

    /// Attaches the outcome of a batch (see [`batch_outcome`](Error::batch_outcome)); for
    /// callers that run batches of their own and report through this error type.
    pub fn with_batch_outcome(mut self, outcome: crate::BatchOutcome) -> Self {
        self.batch = Some(Box::new(outcome));
        self
    }
}

fn default_hint(e: &Error) -> Option<String> {
    let errno = e.source.raw_os_error()?;
    let busy = rustix::io::Errno::BUSY.raw_os_error();
    let xdev = rustix::io::Errno::XDEV.raw_os_error();
    let toolong = rustix::io::Errno::NAMETOOLONG.raw_os_error();
    let acces = rustix::io::Errno::ACCESS.raw_os_error();
    let rofs = rustix::io::Errno::ROFS.raw_os_error();
    let exist = rustix::io::Errno::EXIST.raw_os_error();
    if errno == exist && matches!(e.op, Op::Rename | Op::Link) {
        Some("the destination already exists and the write is create-only".into())
    } else if errno == busy && matches!(e.op, Op::Rename | Op::Link) {
        Some(
            "the destination is a mount point (e.g. a single file bind-mounted by Docker/Podman); \
             a mounted file cannot be replaced atomically, and atomwrite never falls back to an \
             in-place write"
                .into(),
        )
    } else if errno == xdev {
        Some("source and destination are on different filesystems; rename cannot cross them".into())
    } else if errno == toolong {
        Some(name_too_long_hint(&e.path, e.path2.as_deref()))
    } else if errno == acces {
        Some(permission_hint(e.op, &e.path))
    } else if errno == rofs {
        Some("the filesystem is mounted read-only".into())
    } else {
        None
    }
}

/// Finds the directory that denies access and the permission it lacks: the first ancestor
/// without search (x) permission, else the directory itself without read (to open it) or write
/// (to create or rename in it) permission. Falls back to naming the parent directory.
fn permission_hint(op: Op, path: &Path) -> String {
    use rustix::fs::{Access, AtFlags, CWD, accessat};
    let nonempty = |p: &Path| -> PathBuf {
        if p.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            p.to_path_buf()
        }
    };
    let opens_itself = matches!(op, Op::OpenDir | Op::ReadDir);
    let dir = if opens_itself {
        nonempty(path)
    } else {
        nonempty(path.parent().unwrap_or(Path::new(".")))
    };
    let denied = |p: &Path, a: Access| accessat(CWD, p, a, AtFlags::EACCESS).is_err();
    let uid = rustix::process::geteuid().as_raw();
    let mut chain: Vec<&Path> = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .collect();
    chain.reverse();
    // Every directory above the one used must be searchable; so must the one used.
    for a in chain {
        if denied(a, Access::EXEC_OK) {
            return format!(
                "missing search (x) permission on the directory `{}` for uid {uid}",
                a.display()
            );
        }
    }
    let (need, what) = if opens_itself {
        (Access::READ_OK, "read (r)")
    } else {
        (Access::WRITE_OK, "write (w)")
    };
    if denied(&dir, need) {
        return format!(
            "missing {what} permission on the directory `{}` for uid {uid}",
            dir.display()
        );
    }
    format!(
        "check write and search permission on the directory `{}` (and any ACL or security \
         module policy)",
        dir.display()
    )
}

/// Names the component (or the path) that is too long and the limit it breaks.
fn name_too_long_hint(path: &Path, path2: Option<&Path>) -> String {
    use std::os::unix::ffi::OsStrExt;
    let longest = [Some(path), path2]
        .into_iter()
        .flatten()
        .flat_map(|p| p.components())
        .map(|c| c.as_os_str())
        .max_by_key(|c| c.len());
    let total = [Some(path), path2]
        .into_iter()
        .flatten()
        .map(|p| p.as_os_str().len())
        .max()
        .unwrap_or(0);
    match longest {
        Some(c) if c.len() > 255 => {
            let shown = String::from_utf8_lossy(&c.as_bytes()[..24]);
            format!(
                "the name `{shown}...` is {} bytes; the filesystem limits a file name to NAME_MAX \
                 = 255 bytes on most filesystems (a filesystem probe reports the limit there)",
                c.len()
            )
        }
        _ if total >= 4096 => {
            format!("the path is {total} bytes; Linux limits a path to PATH_MAX = 4096 bytes")
        }
        _ => "a file name exceeds the filesystem's NAME_MAX (255 bytes on most filesystems; a \
              filesystem probe reports the limit there)"
            .into(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to {} `{}`", self.op.verb(), self.path.display())?;
        if let Some(p2) = &self.path2 {
            write!(f, " to `{}`", p2.display())?;
        }
        write!(f, ": {}", self.source)?;
        if let Some(b) = &self.batch {
            let total = b.replaced().len() + b.not_replaced().len();
            match b.replaced().len() {
                0 => write!(f, "; none of the {total} files of the batch was replaced")?,
                n => write!(f, "; {n} of {total} files of the batch were replaced")?,
            }
        }
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

/// The reason of a lost compare-and-swap: the message, and the numbers for
/// [`Error::cas_versions`].
#[derive(Debug)]
pub(crate) struct CasLost {
    pub expected: u64,
    pub actual: u64,
    pub message: String,
}

impl fmt::Display for CasLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CasLost {}

pub(crate) fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_operation_paths_and_reason() {
        let e = Error::new2(Op::Rename, "a", "b", io::Error::from_raw_os_error(16));
        let s = e.to_string();
        assert!(s.starts_with("failed to rename `a` to `b`: "), "{s}");
        assert!(s.contains("busy"), "{s}");
        assert!(s.contains("mount point"), "{s}");
        assert!(!s.contains('\n'));
    }

    #[test]
    fn hints_name_the_limit_and_the_directory() {
        let long = format!("d/{}", "n".repeat(256));
        let e = Error::new(Op::Inspect, &long, io::Error::from_raw_os_error(36));
        let s = e.to_string();
        assert!(
            s.contains("is 256 bytes") && s.contains("NAME_MAX = 255"),
            "{s}"
        );
        let e = Error::new(Op::CreateTemp, "ro/x", io::Error::from_raw_os_error(13));
        assert!(e.to_string().contains("directory `ro`"), "{e}");
        let e = Error::new(Op::OpenDir, "/x/y", io::Error::from_raw_os_error(13));
        assert!(e.to_string().contains("directory `/"), "{e}");
        let e = Error::new2(Op::Rename, "a", "/mnt/b", io::Error::from_raw_os_error(18));
        assert!(e.to_string().contains("different filesystems"), "{e}");
    }

    #[test]
    fn wrap_io_wraps_once_and_keeps_errno() {
        let inner = Error::new(Op::Write, "d/x", io::Error::from_raw_os_error(28));
        let e = Error::wrap_io(Op::Write, "d/x", inner.into());
        assert_eq!(e.raw_os_error(), Some(28));
        let s = e.to_string();
        assert_eq!(s.matches("failed to").count(), 1, "{s}");
        // A plain OS error is wrapped (once).
        let e = Error::wrap_io(Op::Read, "s", io::Error::from_raw_os_error(5));
        assert_eq!(e.raw_os_error(), Some(5));
        assert!(e.to_string().starts_with("failed to read `s`: "), "{e}");
    }

    #[test]
    fn a_manifest_read_says_read() {
        let e = Error::new(Op::ReadManifest, "m.json", io::Error::other("bad"));
        assert!(
            e.to_string()
                .starts_with("failed to read manifest `m.json`"),
            "{e}"
        );
        assert_eq!(Op::ReadManifest.as_str(), "read_manifest");
    }

    /// The string literals of Rust source `text` with their line numbers (comments, char
    /// literals and lifetimes skipped; escapes kept as written).
    fn string_literals(text: &str) -> Vec<(usize, String)> {
        let c: Vec<char> = text.chars().collect();
        let (mut i, mut line, mut out) = (0, 1, Vec::new());
        while i < c.len() {
            match c[i] {
                '\n' => line += 1,
                '/' if c.get(i + 1) == Some(&'/') => {
                    while i < c.len() && c[i] != '\n' {
                        i += 1;
                    }
                    continue;
                }
                '\'' if c.get(i + 1) == Some(&'\\') => i += 3,
                '\'' if c.get(i + 2) == Some(&'\'') => i += 2,
                '"' => {
                    let (start, mut lit) = (line, String::new());
                    i += 1;
                    while i < c.len() && c[i] != '"' {
                        if c[i] == '\\' {
                            lit.push(c[i]);
                            i += 1;
                        }
                        if c[i] == '\n' {
                            line += 1;
                        }
                        lit.push(c[i]);
                        i += 1;
                    }
                    out.push((start, lit));
                }
                _ => {}
            }
            i += 1;
        }
        out
    }

    /// Library messages name operations and paths, never the CLI's flags or commands: scans
    /// every string literal under `src/` for `--flag` and `` `atomwrite COMMAND` ``.
    #[test]
    fn library_messages_never_name_cli_flags() {
        fn scan(dir: &Path, bad: &mut Vec<String>) {
            let command = ["`atomwrite", " "].concat();
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    scan(&p, bad);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    // Test modules are not messages.
                    let text = text.split("\n#[cfg(test)]\nmod tests").next().unwrap();
                    for (line, lit) in string_literals(text) {
                        let flag = lit
                            .split("--")
                            .skip(1)
                            .any(|rest| rest.starts_with(|c: char| c.is_ascii_lowercase()));
                        if flag || lit.contains(&command) {
                            bad.push(format!("{}:{line}: {lit}", p.display()));
                        }
                    }
                }
            }
        }
        let lits = string_literals("let a = '\"'; // \"--x\"\nf(\"a \\\" --flag\", 'b');");
        assert_eq!(lits, vec![(2, "a \\\" --flag".to_string())]);
        let mut bad = Vec::new();
        scan(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut bad);
        assert!(
            bad.is_empty(),
            "messages naming CLI flags or commands:\n{}",
            bad.join("\n")
        );
    }

    #[test]
    fn kind_survives_conversion_to_io_error() {
        let e = Error::new(Op::CreateTemp, "d/x", io::Error::from_raw_os_error(28));
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::StorageFull);
        assert!(
            io.to_string()
                .contains("failed to create temporary file in `d/x`")
        );
    }
}
