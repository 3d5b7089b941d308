//! [`Options`]: how an atomic write behaves. [`Durability`] and [`SymlinkPolicy`].

use std::path::Path;

use crate::dest::Existing;
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

/// The durability a commit actually honoured ([`Receipt::durability`](crate::Receipt)): the level
/// asked for, lowered to [`None`](DurabilityHonoured::None) where the filesystem cannot keep a
/// power-loss promise whatever is fsynced, by the classification
/// [`doctor`](crate::doctor::doctor) reports (tmpfs and ramfs, network and FUSE filesystems, and
/// types it does not know: `durability.level` `"crash"` there). Where the platform names no
/// filesystem type (`statfs.f_type`, non-Linux), the level asked for is reported. Serialized
/// as `"full"`, `"integrity"`, `"none"` or `"store"`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityHonoured {
    /// File and directory fsynced on a filesystem that keeps them across power loss.
    Full,
    /// File fsynced (not the directory) on such a filesystem.
    Integrity,
    /// Atomic against process crashes only: no fsync was asked for, or the filesystem does not
    /// persist (tmpfs) or does not promise to (network, FUSE, unknown).
    None,
    /// An object store: as durable as the store makes a completed PUT.
    Store,
}

impl DurabilityHonoured {
    /// The stable name: `"full"`, `"integrity"`, `"none"` or `"store"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DurabilityHonoured::Full => "full",
            DurabilityHonoured::Integrity => "integrity",
            DurabilityHonoured::None => "none",
            DurabilityHonoured::Store => "store",
        }
    }
}

impl std::fmt::Display for DurabilityHonoured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the stable name (`r.durability == "full"`).
impl PartialEq<&str> for DurabilityHonoured {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Compares with the stable name.
impl PartialEq<String> for DurabilityHonoured {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

/// What to do when the destination is a symbolic link.
///
/// # Never more than a redirect
///
/// Whatever the policy, atomwrite never lets its caller do what the same caller's `>` redirect
/// would be refused on a hardened system, **whatever the sysctls say**. In a *sticky*
/// directory that others may write (mode `o+w` or `g+w` with `+t`, like `/tmp`):
///
/// - a symlink is followed only if its owner is the caller (effective uid) or the directory's
///   owner: the kernel's `fs.protected_symlinks = 1` rule, checked on every hop of a chain and
///   on every symlink in the directories leading to the destination;
/// - an existing file owned by neither is not replaced: the `fs.protected_regular = 2` rule.
///
/// Both refusals are [`PermissionDenied`](std::io::ErrorKind::PermissionDenied) errors of
/// [`Op::CheckDestination`](crate::Op::CheckDestination) naming the rule, the link or file and
/// its owner's uid, raised before any temporary file exists: nothing is changed. Why: another
/// user can plant `report.txt -> /etc/shadow` (or pre-create `report.txt` to receive the data)
/// in `/tmp`; a root writer following the link would overwrite a file that user cannot, and a
/// replaced file owned by that user would hand them root's data. The kernel refuses these only
/// when the sysctls are set, and never for a `rename`, so atomwrite checks them itself (with
/// `fstat` on the directory fd it holds, never by resolving a path again).
///
/// A followed symlink never makes atomwrite create directories: missing parents are created
/// only for the path the caller gave ([`Options::create_dirs`]), never for a link's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SymlinkPolicy {
    /// Write to the link's (final) target and keep the link, like editors and
    /// `write-file-atomic`. A dangling link creates its target file, if the target's directory
    /// exists. The temporary file is created beside the target, so the rename never crosses a
    /// filesystem. Links in shared sticky directories are followed only under the rule above.
    #[default]
    Follow,
    /// Replace the link itself with a regular file (no redirect happens, so a link owned by
    /// another user may be replaced; a regular file owned by another user in a shared sticky
    /// directory is still not replaced).
    Replace,
}

/// How a newly created file gets its mode (and owner), when [`Options::mode`] is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NewMode {
    /// `mode & 0o777 & !umask`: the source's permission bits, never set-id (`cp`).
    Source(u32),
    /// `cp -p`: the source's owner and group, and its mode including set-id bits if (and only
    /// if) both could be set.
    Preserve { mode: u32, uid: u32, gid: u32 },
}

/// Builder for an atomic write. Cheap to clone; reuse it for many writes.
///
/// Whatever the options, a write never does more than the caller's own `>` redirect could on a
/// hardened system: symlinks and files of other users in shared sticky directories are neither
/// followed nor replaced (see [`SymlinkPolicy`] for the rule and why), new files never get
/// set-id bits unless asked for exactly ([`mode`](Options::mode)) or with their owner kept
/// ([`preserve_source`](Options::preserve_source)), and a replaced file whose owner cannot be
/// kept loses its set-id bits ([`Receipt::owner_changed`]).
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
    pub(crate) new_mode: Option<NewMode>,
    pub(crate) inherited: Option<Existing>,
    /// A file the library writes on its own behalf (a version and its manifest): not reported
    /// as "replaced" after an interrupt (the publish reports its pointer swap instead).
    pub(crate) internal: bool,
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
    /// files alike, set-id bits included: an explicit request, like `install -m`. Bits outside
    /// `0o7777` are ignored. Overrides [`source_mode`](Options::source_mode) and
    /// [`preserve_source`](Options::preserve_source) for the mode (not for the owner).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode & 0o7777);
        self
    }

    /// A copy's mode, like `cp` without `-p`: a **new** file gets `mode & 0o777 & !umask`, so it
    /// never carries set-uid, set-gid or sticky bits and is never more open than the umask
    /// allows. An existing destination keeps its own mode, owner and group, as with `cp`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("tool");
    /// use std::os::unix::fs::PermissionsExt;
    /// atomwrite::Options::new().source_mode(0o6755).write(&path, b"#!/bin/sh\n")?;
    /// let mode = std::fs::metadata(&path)?.permissions().mode() & 0o7777;
    /// assert_eq!(mode & 0o7000, 0, "never set-id");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn source_mode(mut self, mode: u32) -> Self {
        self.new_mode = Some(NewMode::Source(mode & 0o7777));
        self
    }

    /// `cp -p`: the file (new or replaced) gets the source's owner `uid` and group `gid` where
    /// permitted, and the source's `mode` **including set-id bits only if both owner and group
    /// were set**; otherwise set-uid and set-gid bits are dropped (GNU `cp -p` does the
    /// same). The umask does not apply. An unprivileged writer cannot give a file away: the file
    /// is then the writer's, without set-id bits (an error with
    /// [`preserve_owner_strict`](Options::preserve_owner_strict)).
    pub fn preserve_source(mut self, mode: u32, uid: u32, gid: u32) -> Self {
        self.new_mode = Some(NewMode::Preserve {
            mode: mode & 0o7777,
            uid,
            gid,
        });
        self
    }

    /// Treats a new file as if it replaced a regular file with `ex`'s mode, owner and group
    /// (an existing destination still keeps its own): `publish` gives a new version the
    /// attributes of the current one, as `write` does for the file it replaces.
    pub(crate) fn inherit(mut self, ex: Existing) -> Self {
        self.inherited = Some(ex);
        self
    }

    /// Whether a new file with no existing destination gets the plain default mode
    /// `0666 & !umask` (which `O_TMPFILE` creation already applies).
    pub(crate) fn new_file_gets_default_mode(&self) -> bool {
        self.mode.is_none() && self.new_mode.is_none() && self.inherited.is_none()
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
    /// tolerated: the new file belongs to the writer, loses any set-uid/set-gid bits, as the
    /// kernel would clear them on `chown`, and [`Receipt::owner_changed`] says so).
    pub fn preserve_owner_strict(mut self, yes: bool) -> Self {
        self.preserve_owner_strict = yes;
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
            // An `AtomicFile` write error already names the step, the path and errno.
            let err = crate::Error::wrap_io(crate::Op::Write, f.destination().to_path_buf(), e);
            drop(f);
            return Err(err);
        }
        f.commit()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    /// Progress advances on every copy path, in steps of at most 8 MiB on the
    /// `copy_file_range` path (a 20 MiB copy reports at least 3 times), and adds up to the size.
    #[test]
    fn copy_progress_advances_on_every_path() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        let data: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src_path, &data).unwrap();
        for checksum in [false, true] {
            let src = std::fs::File::open(&src_path).unwrap();
            let dst = dir.path().join(format!("dst-{checksum}"));
            let mut f = Options::new().checksum(checksum).open(&dst).unwrap();
            let mut steps = Vec::new();
            let (n, method) = f
                .copy_from_file_progress(&src, &src_path, &mut |n| steps.push(n))
                .unwrap();
            f.commit().unwrap();
            assert_eq!(n, data.len() as u64);
            assert_eq!(steps.iter().sum::<u64>(), n, "{method:?}");
            match method {
                crate::CopyMethod::Reflink => assert_eq!(steps, vec![n]),
                _ => {
                    assert!(steps.len() >= 3, "{method:?}: {steps:?}");
                    let max = AtomicFile::PROGRESS_CHUNK as u64;
                    assert!(steps.iter().all(|s| *s <= max), "{method:?}: {steps:?}");
                }
            }
            if checksum {
                assert_eq!(method, crate::CopyMethod::Buffered);
            }
            assert_eq!(std::fs::read(&dst).unwrap(), data);
        }
    }

    #[test]
    fn write_with_wraps_a_write_error_once_and_keeps_errno() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"old").unwrap();
        // What `AtomicFile`'s `io::Write` gives for ENOSPC: an atomwrite error inside io::Error.
        let err = Options::new()
            .write_with(&path, |f| {
                let inner = crate::Error::new(
                    crate::Op::Write,
                    f.destination().to_path_buf(),
                    std::io::Error::from_raw_os_error(28),
                );
                Err(std::io::Error::new(inner.kind(), inner))
            })
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28));
        let msg = err.to_string();
        assert_eq!(msg.matches("failed to").count(), 1, "{msg}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn inherit_gives_a_new_file_the_mode_and_owner_of_the_file_it_logically_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let root = rustix::process::geteuid().is_root();
        // Root can give the file away (set-id kept with the owner); others inherit their own ids.
        let (uid, gid, mode) = if root {
            (65534, 65534, 0o4750)
        } else {
            (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
                0o640,
            )
        };
        let ex = Existing { mode, uid, gid };
        for portable in [false, true] {
            let path = dir.path().join(format!("v-{portable}"));
            let r = Options::new()
                .portable(portable)
                .inherit(ex)
                .write(&path, b"new version")
                .unwrap();
            let md = std::fs::metadata(&path).unwrap();
            assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (mode, uid, gid));
            assert_eq!(r.owner_changed, None);
            // An existing destination keeps its own attributes.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            Options::new()
                .portable(portable)
                .inherit(Existing { mode: 0o666, ..ex })
                .write(&path, b"again")
                .unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        }
    }
}
