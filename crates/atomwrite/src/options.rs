//! [`Options`]: how an atomic write behaves. [`Durability`] and [`SymlinkPolicy`].

use std::path::Path;

use crate::{AtomicFile, Receipt, Result};

/// How much of a commit survives a power loss. Every level is atomic: a reader, or the system
/// after a crash, sees the old complete contents or the new complete contents, never a mix.
///
/// | level | after `commit()` returns | after a process crash | after power loss |
/// |---|---|---|---|
/// | [`Full`](Durability::Full) (default) | new version durable | old or new, complete | old or new, complete; new if commit returned |
/// | [`Integrity`](Durability::Integrity) | new version visible | old or new, complete | old or new, complete (may be old) |
/// | [`None`](Durability::None) | new version visible | old or new, complete | **undefined**: may be empty or old |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Durability {
    /// `fsync` the file before the rename and the directory after it (`F_FULLFSYNC` on macOS).
    /// Two flush barriers per commit.
    #[default]
    Full,
    /// `fsync` the file before the rename, not the directory: after a power loss the rename may
    /// be lost (old contents), but the name never points at unflushed data. One barrier.
    Integrity,
    /// No `fsync` at all. Atomic against process crashes only; after a power loss the file
    /// may be empty, old or new (depends on the filesystem). For scratch data.
    None,
}

/// What to do when the destination is a symbolic link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SymlinkPolicy {
    /// Write to the link's (final) target and keep the link, like editors and
    /// `write-file-atomic`. A dangling link creates its target. The temporary file is created
    /// beside the target, so the rename never crosses a filesystem.
    #[default]
    Follow,
    /// Replace the link itself with a regular file.
    Replace,
}

/// Builder for an atomic write. Cheap to clone; reuse it for many writes.
///
/// ```
/// use atomwrite::{Durability, Options};
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("state.json");
/// let receipt = Options::new()
///     .durability(Durability::Full)
///     .mode(0o640)
///     .write(&path, b"{\"ok\":true}\n")?;
/// assert_eq!(receipt.size, 12);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub(crate) durability: Durability,
    pub(crate) mode: Option<u32>,
    pub(crate) no_clobber: bool,
    pub(crate) symlinks: SymlinkPolicy,
    pub(crate) no_create_dirs: bool,
    pub(crate) no_checksum: bool,
    pub(crate) run_id: Option<String>,
    pub(crate) portable: bool,
    pub(crate) size_hint: Option<u64>,
    pub(crate) preserve_owner_strict: bool,
    pub(crate) default_mode: Option<u32>,
    /// Treat a new file as replacing one with this mode and owner (publish: the current version).
    pub(crate) inherited: Option<crate::dest::Existing>,
}

impl Options {
    /// Defaults: [`Durability::Full`], mode `0666 & !umask` for a new file (an existing file keeps
    /// its mode and, where permitted, its owner and group), overwrite allowed, symlinks followed,
    /// missing parent directories created, sha256 computed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the durability level (see [`Durability`]).
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Sets the final permission bits exactly (not filtered by the umask), for new and existing
    /// files alike. Bits outside `0o7777` are ignored.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode & 0o7777);
        self
    }

    /// The mode for a newly created file instead of `0666 & !umask` (an existing file still
    /// keeps its own; [`mode`](Options::mode) overrides both). `cp` uses it to give a new copy
    /// the source's mode, as `cp(1)` does.
    pub fn default_mode(mut self, mode: u32) -> Self {
        self.default_mode = Some(mode & 0o7777);
        self
    }

    /// Create-only: when `true`, the commit fails with [`std::io::ErrorKind::AlreadyExists`] if
    /// the destination exists at the moment of the rename (checked atomically by the kernel
    /// with `renameat2(RENAME_NOREPLACE)` or `linkat`, not by a racy `stat`).
    pub fn no_clobber(mut self, yes: bool) -> Self {
        self.no_clobber = yes;
        self
    }

    /// Sets the symlink policy (see [`SymlinkPolicy`]).
    pub fn symlinks(mut self, policy: SymlinkPolicy) -> Self {
        self.symlinks = policy;
        self
    }

    /// Create missing parent directories (default `true`). Under [`Durability::Full`] each created
    /// directory is made durable by fsyncing its parent.
    pub fn create_dirs(mut self, yes: bool) -> Self {
        self.no_create_dirs = !yes;
        self
    }

    /// Compute the sha256 of the contents while they are written (default `true`); the
    /// [`Receipt`] carries it. Turn off only when the hash is measurably in the way.
    pub fn checksum(mut self, yes: bool) -> Self {
        self.no_checksum = !yes;
        self
    }

    /// The run id recorded in the [`Receipt`] (and in manifests). Default: `ATOMWRITE_RUN_ID`
    /// from the environment, else one random id per process.
    pub fn run_id(mut self, id: impl Into<String>) -> Self {
        self.run_id = Some(id.into());
        self
    }

    /// Force the portable POSIX path (named temporary file, `renameat`, `linkat` + `unlinkat` for
    /// create-only, an `fsync` of every file of a batch): exactly the code non-Linux Unix runs,
    /// with none of Linux's fast paths (no `O_TMPFILE`, `renameat2`, `fallocate`, `FICLONE`,
    /// `copy_file_range` or `syncfs`). The environment variable `ATOMWRITE_PORTABLE=1` does the
    /// same for a whole process. Meant for tests and for filesystems whose fast paths misbehave
    /// without reporting an error.
    pub fn portable(mut self, yes: bool) -> Self {
        self.portable = yes;
        self
    }

    /// The expected size in bytes. From 1 MiB up, space is reserved up front (`fallocate` with
    /// `FALLOC_FL_KEEP_SIZE` on Linux; not on the portable path), so a full disk is reported
    /// before any byte is written.
    /// A wrong hint is harmless: the file's size is what was written.
    pub fn size_hint(mut self, bytes: u64) -> Self {
        self.size_hint = Some(bytes);
        self
    }

    /// When replacing a file owned by someone else, fail if its owner and group cannot be kept
    /// (default `false`: keeping them is attempted, and an `EPERM` for an unprivileged writer is
    /// ignored, so the new file belongs to the writer).
    pub fn preserve_owner_strict(mut self, yes: bool) -> Self {
        self.preserve_owner_strict = yes;
        self
    }

    /// A new file gets the mode, owner and group of `ex`, as if it replaced that file (publish
    /// gives a new version those of the current one).
    pub(crate) fn inherit(mut self, ex: crate::dest::Existing) -> Self {
        self.inherited = Some(ex);
        self
    }

    /// The configured durability.
    pub fn get_durability(&self) -> Durability {
        self.durability
    }

    /// Opens an [`AtomicFile`] that will replace (or create) `path` on
    /// [`commit`](AtomicFile::commit). Nothing is visible at `path` before then.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<AtomicFile> {
        AtomicFile::open_with(path.as_ref(), self)
    }

    /// Writes `bytes` to `path` atomically with these options.
    pub fn write(&self, path: impl AsRef<Path>, bytes: &[u8]) -> Result<Receipt> {
        let mut opts = self.clone();
        if opts.size_hint.is_none() {
            opts.size_hint = Some(bytes.len() as u64);
        }
        let mut f = opts.open(path)?;
        f.write_all_bytes(bytes)?;
        f.commit()
    }

    /// Opens `path`, lets `fill` write into it, and commits if `fill` returns `Ok`.
    /// If `fill` fails, nothing is published and its error is returned (as [`crate::Op::Write`]).
    pub fn write_with<F>(&self, path: impl AsRef<Path>, fill: F) -> Result<Receipt>
    where
        F: FnOnce(&mut AtomicFile) -> std::io::Result<()>,
    {
        let mut f = self.open(path)?;
        if let Err(e) = fill(&mut f) {
            let err = crate::Error::new(crate::Op::Write, f.destination().to_path_buf(), e);
            drop(f);
            return Err(err);
        }
        f.commit()
    }
}
