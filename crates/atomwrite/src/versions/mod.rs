//! Versions and an atomic `latest` pointer: [`Publisher`], [`latest`], [`versions`],
//! [`clean_versions`].
//!
//! # Layout
//!
//! ```text
//! out/report.csv              -> report.csv.versions/v0000000003.csv   (a relative symlink)
//! out/.report.csv.v0000000004.pending -> report.csv.versions/v0000000004.csv  (only while v4 is
//!                                being published: its pending marker, see below)
//! out/report.csv.versions/
//!     .lock                      flock()ed by every publisher of report.csv; holds a `next=` hint
//!     v0000000001.csv            the migrated regular file that report.csv used to be
//!     v0000000001.csv.manifest.json
//!     v0000000002.csv            ... each version is an ordinary, complete, immutable file
//!     v0000000002.csv.manifest.json
//!     v0000000003.csv
//!     v0000000003.csv.manifest.json
//! ```
//!
//! Readers need nothing from atomwrite: they open `report.csv` and the kernel follows the link.
//! Version names are `v` + exactly 10 digits (1 to 9,999,999,999; a longer number in a name is
//! ignored, never wrapped) + the extension of `DST` (`.csv`; `.tar.gz` and other `.tar.*` keep
//! both parts; none for directory versions). See [`VersionName`].
//!
//! # Publishing, step by step (every step relative to directory fds opened once)
//!
//! 1. Open `DST`'s parent and `DST.versions/` (created durably), open `.lock` (created with the
//!    permissions of the directory's writers, so only those who may publish can lock) and take an
//!    exclusive `flock`, polling so that a cancellation or [`Publisher::wait_timeout`] ends the
//!    wait. Publishers of one `DST` on one machine run one after another.
//! 2. Read the pointer once (`readlinkat`): the current version, `0` if none. With
//!    [`Publisher::expect`], a different current version ends here with a conflict
//!    ([`Error::is_conflict`](crate::Error::is_conflict)) before a byte is written.
//! 3. Claim the next number N: from the lock file's `next=` hint (no directory listing, so a
//!    publish costs the same with 10 or 100,000 versions), by creating the **pending marker**
//!    `.DST.vN.pending` beside `DST` — a symlink to `DST.versions/vN` — with `symlinkat`, which
//!    fails if N is taken.
//! 4. Write `vN` through an [`AtomicFile`](crate::AtomicFile) (create-only, relative to the versions directory's fd;
//!    it gets the mode, owner and group of the current version unless a mode is given) and commit
//!    it; write its manifest (`version` N, `parent` the current version); if `DST` was a regular
//!    file, hard-link it as a version too (the migration); `fsync` `DST.versions/`.
//! 5. The pointer swap: `renameat` the pending marker over `DST`, then `fsync` the parent (under
//!    `Durability::Full`). The marker disappears in the same atomic rename that makes vN current.
//! 6. Retention ([`Publisher::keep`]), then the lock is released.
//!
//! **Guarantees.** A reader that opens `DST` gets a complete version, old or new, never a mix;
//! after a crash or power loss at any point `DST` still points at a complete version whose
//! manifest is durable (the pointer is only swapped after the version and its manifest are
//! durable). Compare-and-swap is exact among publishers on one machine: with [`Publisher::expect`]
//! exactly one of many concurrent publishers expecting the same version wins.
//!
//! **Deletion needs evidence.** A version is removed only (a) as a crash leftover: its pending
//! marker still exists, so its publish never made it current (a power loss that undoes the swap
//! also brings the marker back, so the evidence always matches the durable pointer), and the lock
//! is held, so no publisher is writing it; or (b) by retention: it is older than the current
//! version, its publish completed (no marker), and a manifest written by atomwrite names it. A
//! hand rollback (`ln -sfn DST.versions/v…2 DST`), a removed pointer, or a versions directory
//! atomwrite did not fill never loses a file: versions above the current one, and files without
//! an atomwrite manifest, are never removed. Versions left by crashed publishes of atomwrite
//! releases before pending markers existed carry no evidence and are kept.
//!
//! **Not guaranteed.** Ordering against writers that bypass the lock (`atomwrite write DST`
//! follows the link and rewrites the current version file — use `publish` on a published
//! `DST`); the lock is an `flock`, which does not order writers on different machines sharing a
//! network filesystem; a reader that opens several files of a directory version by path may
//! cross a swap between two opens (resolve `DST` once — `cd DST`, `realpath DST`, or `openat` on
//! a directory fd — to read one version throughout).
//!
//! # Directories: symlink swap, and where `renameat2(RENAME_EXCHANGE)` is the better tool
//!
//! [`Publisher::publish_dir`] copies a tree into a staging directory inside `DST.versions/`
//! (fd-relative, never following a link inside the tree), makes it durable with one `syncfs`
//! of the filesystem where that reports every error (Linux 5.17+; elsewhere it `fsync`s every
//! file, then every directory bottom-up), renames the staging directory to `vN`, and swaps the
//! pointer exactly as
//! for a file. `renameat2(RENAME_EXCHANGE)` is used in exactly one place: when `DST` is still a
//! **real directory** (the first publish of an existing output), a symlink to the new version is
//! created *as* `DST.versions/vOLD` and exchanged with `DST` in one system call, so `DST` is never
//! missing. Where the exchange is unavailable that migration is refused with an error.
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # let dst = dir.path().join("report.csv");
//! use atomwrite::Publisher;
//! let p1 = Publisher::new().publish(&dst, b"id\n1\n")?;
//! assert_eq!(p1.version, 1);
//! let p2 = Publisher::new().expect(1).publish(&dst, b"id\n1\n2\n")?;
//! assert_eq!(p2.version, 2);
//! assert_eq!(std::fs::read(&dst)?, b"id\n1\n2\n");
//! assert_eq!(atomwrite::latest(&dst)?.unwrap().version, 2);
//!
//! // Someone expecting version 1 has lost the race: a conflict, nothing published.
//! let err = Publisher::new().expect(1).publish(&dst, b"stale\n").unwrap_err();
//! assert!(err.is_conflict());
//! assert_eq!(err.cas_versions(), Some((1, 2))); // expected 1, found 2
//! assert_eq!(atomwrite::versions(&dst)?.versions.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod lock;
pub(crate) mod name;
mod publish;
mod retain;
mod store;

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use lock::{LockWait, WaitNotice, shell_quoted};
pub use name::{MAX_VERSION, VersionName};
pub use publish::{PendingVersion, Publisher};

use crate::manifest::Manifest;
use crate::{Durability, Error, Op, Result};
use store::{Current, Store};

/// A published (or found) version: its number and path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionRef {
    /// The version number (1, 2, ...).
    pub version: u64,
    /// The version's path: `DST.versions/vNNNNNNNNNN[.ext]`, joined to `DST`'s parent.
    pub path: PathBuf,
}

/// Whether a version is a file or a directory tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionKind {
    /// A regular file.
    File,
    /// A directory tree (published with [`Publisher::publish_dir`]).
    Directory,
}

/// One entry of [`versions`].
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    /// The version number.
    pub version: u64,
    /// Its path.
    pub path: PathBuf,
    /// Whether `DST` points at it now.
    pub current: bool,
    /// Whether its publish is in progress or was interrupted (its pending marker exists): it
    /// was never made current by atomwrite.
    pub pending: bool,
    /// File or directory.
    pub kind: VersionKind,
    /// From the manifest (None when the manifest is missing or unreadable).
    pub size: Option<u64>,
    /// From the manifest.
    pub sha256: Option<String>,
    /// From the manifest.
    pub written_at: Option<String>,
    /// From the manifest.
    pub run_id: Option<String>,
    /// Why the manifest could not be read, if it could not.
    pub manifest_error: Option<String>,
}

/// What [`versions`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VersionList {
    /// Every version, oldest first.
    pub versions: Vec<VersionInfo>,
    /// The current version (0: none).
    pub current: u64,
    /// Names in the versions directory that look like versions but are out of range (more than
    /// 10 digits): ignored, never wrapped.
    pub ignored: Vec<PathBuf>,
}

/// What a publish did.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    /// The pointer that was swapped.
    pub dst: PathBuf,
    /// The new current version.
    pub version: u64,
    /// The version `DST` pointed at before (0: none; the migrated file's version after a
    /// migration).
    pub previous: u64,
    /// The new version's path.
    pub path: PathBuf,
    /// The new version's manifest (also on disk beside it).
    pub manifest: Manifest,
    /// The version number a regular file (or directory) at `DST` was migrated into, if any.
    pub migrated: Option<u64>,
    /// Versions, manifests and leftovers removed by retention.
    pub removed: Vec<PathBuf>,
    /// Bytes of the regular files removed.
    pub removed_bytes: u64,
    /// What retention kept against its count, and why (e.g. a version without an atomwrite
    /// manifest).
    pub warnings: Vec<String>,
    /// Facts only an object store has about the new version object (key, ETag, multipart);
    /// `None` for a local publish.
    pub object: Option<crate::receipt::ObjectFacts>,
}

/// What [`clean_versions`] found or removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VersionsCleanReport {
    /// Leftovers of crashed publishes removed (or, in a dry run, that would be removed): versions
    /// and their manifests, pending markers, staging directories, old pointer temps.
    pub removed: Vec<PathBuf>,
    /// Bytes of the regular files among them.
    pub bytes: u64,
    /// True when a publisher held the lock, so nothing was examined.
    pub locked: bool,
    /// What was skipped and why (a foreign symlink at `DST`, ...).
    pub warnings: Vec<String>,
}

fn inspect_current(store: &Store) -> Result<Current> {
    match store.current()? {
        Current::Foreign(t) => Err(Error::other(
            Op::Inspect,
            &store.dst,
            io::ErrorKind::InvalidInput,
            format!(
                "is a symlink to `{}`, not a pointer made by publishing (expected `{}/v…`)",
                String::from_utf8_lossy(&t),
                store.vdir_name.to_string_lossy()
            ),
        )),
        c => Ok(c),
    }
}

/// The version `dst` points at now, read with one `readlink` (atomic), without the lock.
/// `Ok(None)` when nothing has been published (`dst` missing, a regular file or a directory);
/// an error when `dst` is a symlink that is not a publish pointer.
///
/// Guarantees: the number and the path come from the same single `readlink`, so they name the
/// same version, which was current at that moment. Does not guarantee it still is when you use
/// it; use [`Publisher::expect`] to act on it safely.
pub fn latest(dst: impl AsRef<Path>) -> Result<Option<VersionRef>> {
    let store = Store::open(dst.as_ref(), false, false, Durability::None)?;
    Ok(match inspect_current(&store)? {
        Current::Version(v) => Some(VersionRef {
            version: v.number(),
            path: store.path_of(&v.to_os_string()),
        }),
        _ => None,
    })
}

/// Every version of `dst`, oldest first, with what its manifest records. Reads the versions
/// directory once, without the lock: a publish running at the same time may or may not be
/// listed (and is listed as `pending`).
///
/// Guarantees: each listed version existed at the time of the directory read, and `current`
/// marks the one `dst` pointed at when the listing started. A missing `DST.versions/` gives an
/// empty list.
pub fn versions(dst: impl AsRef<Path>) -> Result<VersionList> {
    let store = Store::open(dst.as_ref(), false, false, Durability::None)?;
    let current = inspect_current(&store)?;
    let cur = current.number();
    // The one entry the pointer names, by its whole name: a planted `v0000000002.old` has the
    // current number but is not the current version.
    let cur_name = match &current {
        Current::Version(v) => Some(v.clone()),
        _ => None,
    };
    let mut out = VersionList {
        current: cur,
        ..VersionList::default()
    };
    if store.vdir_fd.is_none() {
        return Ok(out);
    }
    let pending = retain::markers(&store)?.markers;
    for ent in store.list()? {
        let b = std::os::unix::ffi::OsStrExt::as_bytes(ent.name.as_os_str());
        let Some(v) = VersionName::parse(b) else {
            if VersionName::is_out_of_range(b) {
                out.ignored.push(store.path_of(&ent.name));
            }
            continue;
        };
        let (m, err) = match store.read_manifest(&ent.name) {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e.to_string())),
        };
        out.versions.push(VersionInfo {
            version: v.number(),
            path: store.path_of(&ent.name),
            current: cur_name.as_ref() == Some(&v),
            pending: pending.contains_key(&v.number()),
            kind: if ent.kind == rustix::fs::FileType::Directory {
                VersionKind::Directory
            } else {
                VersionKind::File
            },
            size: m.as_ref().map(|m| m.size),
            sha256: m.as_ref().map(|m| m.sha256.clone()),
            written_at: m.as_ref().map(|m| m.written_at.clone()),
            run_id: m.as_ref().map(|m| m.run_id.clone()),
            manifest_error: err,
        });
    }
    out.versions.sort_by_key(|v| v.version);
    Ok(out)
}

/// Removes what crashed publishers of `dst` left behind: versions whose pending marker still
/// exists (never made current), their manifests and markers, staging directories, and the pointer
/// temps of older releases. Takes the publisher lock without waiting; if a publisher holds it,
/// nothing is examined and the report says `locked`. Creates nothing, even the lock file (a
/// destination without one was never published by this atomwrite, so there is nothing to prove),
/// so it works on read-only filesystems and in dry runs.
///
/// Guarantees: never removes a version that was ever made current by a publish, the current
/// version, or anything without the evidence described in the [module docs](self); never runs
/// while a publisher of `dst` is active. Does not apply retention to old versions (that is
/// [`Publisher::keep`]). A `dst` that is a foreign symlink is skipped with a warning.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let dst = dir.path().join("out.txt");
/// atomwrite::Publisher::new().publish(&dst, b"1")?;
/// // A hand-made file in the versions directory is not atomwrite's leftover: it stays.
/// # std::fs::write(dir.path().join("out.txt.versions/v0000000002.txt"), b"2")?;
/// let report = atomwrite::clean_versions(&dst, false)?;
/// assert!(report.removed.is_empty());
/// assert_eq!(atomwrite::latest(&dst)?.unwrap().version, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn clean_versions(dst: impl AsRef<Path>, dry_run: bool) -> Result<VersionsCleanReport> {
    clean_store(
        Store::open(dst.as_ref(), false, false, Durability::None)?,
        dry_run,
    )
}

/// [`clean_versions`] for `name` inside an open directory (no path resolved again).
pub(crate) fn clean_versions_at(
    dir: std::sync::Arc<std::os::fd::OwnedFd>,
    dir_path: &Path,
    name: &std::ffi::OsStr,
    dry_run: bool,
) -> Result<VersionsCleanReport> {
    let store = Store::open_in(
        dir,
        dir_path.to_path_buf(),
        dir_path.to_path_buf(),
        name.to_os_string(),
        false,
        Durability::None,
    )?;
    clean_store(store, dry_run)
}

fn clean_store(store: Store, dry_run: bool) -> Result<VersionsCleanReport> {
    let mut report = VersionsCleanReport::default();
    if store.vdir_fd.is_none() {
        return Ok(report);
    }
    let _lock = match lock::try_acquire(store.vfd(), &store.vdir)? {
        lock::Try::Acquired(l) => l,
        lock::Try::Held => {
            report.locked = true;
            return Ok(report);
        }
        lock::Try::Missing => return Ok(report),
    };
    let current = match store.current()? {
        Current::Foreign(t) => {
            report.warnings.push(format!(
                "skipped `{}`: `{}` is a symlink to `{}`, not a pointer made by publishing",
                store.vdir.display(),
                store.dst.display(),
                String::from_utf8_lossy(&t)
            ));
            return Ok(report);
        }
        c => c,
    };
    let (removed, bytes, warnings) = retain::sweep_leftovers(&store, &current, dry_run)?;
    report.removed = removed;
    report.bytes = bytes;
    report.warnings = warnings;
    Ok(report)
}
