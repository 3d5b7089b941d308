//! Atomic, durable file writes: **if the final filename exists, its contents are complete** —
//! through process crashes, power loss and repeated overwrites.
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("out.json");
//! let receipt = atomwrite::write(&path, b"{\"rows\": 3}\n")?;
//! assert_eq!(std::fs::read(&path)?, b"{\"rows\": 3}\n");
//! println!("{} bytes, sha256 {}", receipt.size, receipt.sha256.unwrap());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//!
//! | [`Durability`] | after `commit()` returns | after a process crash | after power loss |
//! |---|---|---|---|
//! | `Full` (default) | new version durable | old or new, complete | old or new, complete; new if commit returned |
//! | `Integrity` | new version visible | old or new, complete | old or new, complete (may be old) |
//! | `None` | new version visible | old or new, complete | undefined: may be empty or old |
//!
//! In every case a reader that opens the destination sees the old complete contents or the new
//! complete contents, never a prefix or a mix; a failed write leaves the destination
//! byte-for-byte as it was and removes its temporary file.
//!
//! **Not guaranteed**: ordering between writers that do not coordinate (the last rename wins;
//! use create-only or, for versions, compare-and-swap); protection against wrong bytes (the
//! receipt's sha256 records what was written, it cannot judge it); atomicity across several
//! files (publish them as one directory instead); hard links to the destination keep the old
//! contents (a rename replaces the name, not the inode).
//!
//! **Never more than a redirect.** A write never does what the caller's own `>` redirect or
//! `cp` would be refused on a hardened system, whatever `fs.protected_symlinks` and
//! `fs.protected_regular` are set to (the kernel enforces them only when set, and never for a
//! `rename`):
//!
//! - in a sticky directory others may write (`+t` with `g+w` or `o+w`, like `/tmp`), a symlink
//!   is followed only if it belongs to the caller or to the directory's owner, on every hop of
//!   a chain and for every directory on the way; a file belonging to neither is not replaced.
//!   The refusal is a `PermissionDenied` error naming the rule, the entry and its owner's uid,
//!   raised before a temporary file exists (see [`SymlinkPolicy`]);
//! - a followed symlink never makes atomwrite create directories (missing parents are created
//!   only for the path given), and a destination ending in `/` fails like the shell
//!   (`ENOTDIR`/`EISDIR`);
//! - a copy's new file ([`Options::source_mode`]) never carries set-uid/set-gid bits and is
//!   `mode & 0o777 & !umask`; set-id bits are kept only with the owner they came with
//!   ([`Options::preserve_source`]), and a replaced file whose owner cannot be kept loses them,
//!   which [`Receipt::owner_changed`] reports. Only an explicit [`Options::mode`] is exact.
//!
//! # How it works
//!
//! On Linux, for `write(dst, bytes)` with the defaults:
//!
//! 1. `open(parent, O_DIRECTORY)` once; every later step is relative to this fd, so a concurrent
//!    rename of the directory cannot misplace the file. Missing parents are created with
//!    `mkdirat`, each made durable by an `fsync` of its own parent.
//! 2. `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`: refuse directories, FIFOs (never opened, so
//!    never blocked on), sockets and devices; follow a symlink to its target (or replace it,
//!    per [`SymlinkPolicy`]); remember an existing file's mode and owner. `fstatfs` gives the
//!    filesystem type and `NAME_MAX`.
//! 3. `openat(dirfd, ".", O_TMPFILE|O_RDWR)`: an anonymous inode that vanishes if the process
//!    dies. Where the filesystem refuses it (the errno is recognised and remembered per
//!    filesystem type), a named temp `.{name}.{random}.tmp` is created with
//!    `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`, mode 0600, and `flock`ed; its name is shortened to
//!    fit `NAME_MAX` even for a 255-byte destination name.
//! 4. `write` the bytes (streamed; sha256 computed on the way); `fallocate` first when the size
//!    is known.
//! 5. `fchown` to the replaced file's owner/group where permitted, `fchmod` to its mode (new
//!    files: `0666 & !umask`), before the file has a name.
//! 6. `fsync(fd)` (`F_FULLFSYNC` on macOS) unless `Durability::None`.
//! 7. Publish: `linkat("/proc/self/fd/N", dirfd, tmpname)` then `renameat(tmpname, name)`; for
//!    create-only, `linkat` straight to `name` (fails with `EEXIST`). Named temps use `renameat`,
//!    or `renameat2(RENAME_NOREPLACE)` for create-only with a `linkat`+`unlinkat` fallback where
//!    the flag is refused (ZFS, FUSE). On btrfs the linked inode's data is synced once more.
//! 8. `fsync(dirfd)` under `Durability::Full`: the rename itself survives power loss.
//!
//! Other Unix systems take the portable path (named temp, `renameat`, `linkat` for
//! create-only); Linux runs it too with [`Options::portable`] or `ATOMWRITE_PORTABLE=1`.
//!
//! # Knowing which version you have
//!
//! An atomic write guarantees integrity, not freshness. Three tools say *which* contents are there:
//! every commit returns a [`Receipt`] (size, sha256, `written_at`, run id); [`write_manifest`]
//! adds a sidecar `DST.manifest.json` that [`verify`] checks (a torn data/manifest pair is reported
//! as a mismatch); and [`Publisher`] keeps numbered versions behind an atomic `latest` symlink, with
//! compare-and-swap between publishers and whole-directory versions (see [`versions`](mod@versions)).
//!
//! # Limitations
//!
//! - A failed `fsync` is final: the commit fails, the temp is removed, and the `fsync` is never
//!   retried (after a failed `fsync` Linux may have dropped the dirty pages: "fsyncgate").
//!   Write the data again from its source.
//! - A failed directory `fsync` after the rename cannot be undone: the new contents are visible
//!   and the error says they may not survive a power loss.
//! - A destination that is a bind-mounted file (Docker, Podman) cannot be replaced atomically:
//!   the rename fails with `EBUSY` and atomwrite reports it; it never writes in place.
//! - Extended attributes, ACLs and SELinux labels of a replaced file are not carried over.
//! - The sticky-directory rule is checked when the destination is opened, against the
//!   effective uid (the kernel uses the fsuid, which equals it unless a program changed it).
//!   An entry swapped in afterwards is never followed nor written through: the commit
//!   `rename`s over the name, so at worst it replaces another user's entry there (which the
//!   sticky bit allows only to root or the directory's owner anyway).
//! - Network filesystems (NFS, SMB, FUSE) are used through the same syscalls, but their
//!   rename and `fsync` semantics are theirs: no durability promise is made there.
//! - Unix only; Windows support would be one more file under `src/sys/`.

#![warn(missing_docs)]

mod batch;
mod clean;
mod dest;
pub mod doctor;
mod error;
mod file;
pub mod interrupt;
mod options;
mod receipt;
mod sys;
mod tempname;
mod tree;

#[cfg(feature = "tokio")]
pub mod asynch;
pub mod destination;
pub mod location;
pub mod manifest;
// The object-store engine under the URL backend of `destination`: not API (see its docs).
#[cfg(feature = "object-store")]
#[doc(hidden)]
pub mod object;
pub mod versions;

pub use batch::{Batch, BatchOutcome, BatchReceipt, BatchSync};
pub use clean::{CleanOptions, CleanReport, clean, clean_with};
pub use destination::{Destination, StoreKind};
pub use doctor::{DoctorReport, doctor};
pub use error::{Error, Op, Result};
pub use file::{AtomicFile, CopyMethod, SourceFile, SourceOpener};
pub use location::{Location, LocationError, SUPPORTED_SCHEMES};
pub use manifest::{
    Manifest, ManifestKind, Verification, VerifyStatus, manifest_path, verify, write_manifest,
};
pub use options::{Durability, DurabilityHonoured, Options, SymlinkPolicy};
pub use receipt::{ObjectFacts, OwnerChange, Receipt, new_run_id, process_run_id, rfc3339};
pub use tempname::is_temp_name;
pub use versions::{
    PendingVersion, Published, Publisher, VersionInfo, VersionKind, VersionList, VersionName,
    VersionRef, VersionsCleanReport, clean_versions, latest, shell_quoted, versions,
};

/// Crate-private functions exposed to the fuzz targets in `crash-tests/fuzz`. Only with the
/// non-default `fuzzing` feature, which no crate of the workspace enables: never part of the
/// API, never in a release build of the CLI.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod __fuzz {
    use std::ffi::{OsStr, OsString};

    /// Bytes a temp name adds to the destination name (so the smallest usable NAME_MAX).
    pub const TEMP_NAME_OVERHEAD: usize = crate::tempname::OVERHEAD;

    /// `crate::tempname::temp_name`: the temp name for `dest_name` under `name_max`.
    pub fn temp_name(dest_name: &OsStr, name_max: usize) -> OsString {
        crate::tempname::temp_name(dest_name, name_max)
    }

    /// `versions::name::marker_name`: the pending marker of version `n` of `dst_name`.
    pub fn marker_name(dst_name: &OsStr, name_max: usize, n: u64) -> OsString {
        crate::versions::name::marker_name(dst_name, name_max, n)
    }

    /// `versions::name::parse_marker`: the version of a pending marker of exactly `dst_name`.
    pub fn parse_marker(name: &[u8], dst_name: &OsStr, name_max: usize) -> Option<u64> {
        crate::versions::name::parse_marker(name, dst_name, name_max)
    }

    /// `versions::name::parse_pointer`: the version a pointer symlink's target names.
    pub fn parse_pointer(target: &[u8], vdir_name: &OsStr) -> Option<crate::versions::VersionName> {
        crate::versions::name::parse_pointer(target, vdir_name)
    }
}

mod platform;

/// Opens a file to read as a careful `cp` would, whatever `fs.protected_symlinks` says: in a
/// sticky directory that others may write, a symlink (on any hop, or as any directory on the
/// way) is followed only if it belongs to the caller or to the directory's owner; the final
/// open is `O_NOFOLLOW|O_NONBLOCK` from its directory's fd, so a name swapped for a link or a
/// FIFO in between is refused rather than followed or blocked on. `cp`, `write --from` and
/// `publish --from` read their sources through it.
///
/// Does not check that the result is a regular file (callers decide what they accept), and
/// cannot protect a read from a writer who changes the file's contents while it is read.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let p = dir.path().join("in.txt");
/// # std::fs::write(&p, b"hello")?;
/// let f = atomwrite::open_source(&p)?;
/// assert_eq!(std::io::read_to_string(f)?, "hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn open_source(path: impl AsRef<std::path::Path>) -> Result<std::fs::File> {
    dest::open_source(path.as_ref(), dest::Want::Any).map(std::fs::File::from)
}

/// Writes `bytes` to `path` atomically and durably ([`Durability::Full`]), with the default
/// [`Options`]. See the crate docs for the guarantee and the syscall sequence.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("a/b/config.toml");
/// atomwrite::write(&path, b"x = 1\n")?; // parents created
/// atomwrite::write(&path, b"x = 2\n")?; // replaced atomically
/// assert_eq!(std::fs::read(&path)?, b"x = 2\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write(path: impl AsRef<std::path::Path>, bytes: &[u8]) -> Result<Receipt> {
    Options::new().write(path, bytes)
}

/// Opens `path` with the default [`Options`], lets `fill` stream into it, and commits if `fill`
/// returns `Ok`. If `fill` fails nothing is published and the error is returned.
///
/// ```
/// use std::io::Write;
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("numbers.txt");
/// atomwrite::write_with(&path, |f| {
///     for i in 0..3 {
///         writeln!(f, "{i}")?;
///     }
///     Ok(())
/// })?;
/// assert_eq!(std::fs::read_to_string(&path)?, "0\n1\n2\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_with<F>(path: impl AsRef<std::path::Path>, fill: F) -> Result<Receipt>
where
    F: FnOnce(&mut AtomicFile) -> std::io::Result<()>,
{
    Options::new().write_with(path, fill)
}
