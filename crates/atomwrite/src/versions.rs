//! Versions and an atomic `latest` pointer: [`Publisher`], [`latest`], [`versions`],
//! [`clean_versions`].
//!
//! # Layout
//!
//! ```text
//! out/report.csv              -> report.csv.versions/v0000000003.csv   (a relative symlink)
//! out/report.csv.versions/
//!     .lock                      flock()ed by every publisher of report.csv
//!     v0000000001.csv            the migrated regular file that report.csv used to be
//!     v0000000001.csv.manifest.json
//!     v0000000002.csv            ... each version is an ordinary, complete, immutable file
//!     v0000000002.csv.manifest.json
//!     v0000000003.csv
//!     v0000000003.csv.manifest.json
//! ```
//!
//! Readers need nothing from atomwrite: they open `report.csv` and the kernel follows the link.
//! Version numbers are 10-digit zero-padded, allocated as one more than the highest number in
//! the directory (so a number is never used twice while its version exists), and the file
//! extension of `DST` is carried over (`.csv`; `.tar.gz` and other `.tar.*` keep both parts).
//!
//! # Publishing, step by step (every step relative to directory fds opened once)
//!
//! 1. Open `DST`'s parent and `DST.versions/` (created durably), open `.lock`, take an exclusive
//!    `flock` (waiting for any other publisher of `DST`). The lock is held until the end, so
//!    publishers of one `DST` on one machine run one after another.
//! 2. Read the pointer (`readlinkat`): the current version, `0` if none. With
//!    [`Publisher::expect`], a different current version ends here with a conflict
//!    ([`Error::is_conflict`]) before a byte is written.
//! 3. Write the new version `vN` through an [`AtomicFile`] (create-only) and commit it; write its
//!    manifest `vN.manifest.json` the same way; if `DST` was a regular file, hard-link it as
//!    `vN-1` (the migration) and give it a manifest; `fsync` `DST.versions/`.
//! 4. `symlinkat("DST.versions/vN", parent, ".DST.<random>.tmp")`, then `renameat` it over
//!    `DST` — the atomic pointer swap — and `fsync` the parent (under `Durability::Full`).
//! 5. Retention ([`Publisher::keep`]), then the lock is released.
//!
//! **Guarantees.** A reader that opens `DST` gets a complete version, old or new, never a mix;
//! after a crash or power loss at any point `DST` still points at a complete version whose
//! manifest is durable (the pointer is only swapped after the version and its manifest are
//! durable). Compare-and-swap is exact among publishers on one machine: with [`Publisher::expect`]
//! exactly one of many concurrent publishers expecting the same version wins.
//!
//! **Not guaranteed.** Ordering against writers that bypass the lock (`atomwrite write DST`
//! follows the link and rewrites the current version file in place of its name — use `publish`
//! on a published `DST`); the lock is an `flock`, which does not order writers on different
//! machines sharing a network filesystem; a reader that opens several files of a directory
//! version by path may cross a swap between two opens (resolve `DST` once — `cd DST`,
//! `realpath DST`, or `openat` on a directory fd — to read one version throughout).
//!
//! **Crash leftovers.** A crash between step 3 and step 4 leaves the old pointer and a complete
//! but unreferenced version numbered above the current one (and possibly a temporary symlink
//! `.DST.<random>.tmp` beside `DST`, or a staging directory `.vN.<random>.tmp` in
//! `DST.versions/`). No publisher can be in flight while the lock is free, so anything numbered
//! above the current version, and any staging name, found **while holding the lock** is such a
//! leftover: [`Publisher::keep`] retention and [`clean_versions`] remove them without any age
//! threshold. Their numbers may then be reused; they were never the current version.
//!
//! # Directories: symlink swap, and where `renameat2(RENAME_EXCHANGE)` is the better tool
//!
//! [`Publisher::publish_dir`] copies a tree into a staging directory inside `DST.versions/`,
//! `fsync`s every file, then every directory bottom-up, renames the staging directory to `vN`,
//! and swaps the pointer exactly as for a file. A symlink swap is the right tool for the
//! repeated publish: it works on every Unix and filesystem, the old version stays intact and
//! addressable under its own name (a reader that resolved `DST` keeps a consistent tree until
//! retention removes it, never before the next-but-one publish), and the pointer is one small
//! inode that `readlink` reads atomically.
//!
//! `renameat2(RENAME_EXCHANGE)` is the better tool in exactly one place: when `DST` is still a
//! **real directory** (the first publish of an existing output). A symlink cannot be renamed over
//! a directory, and moving the directory away first would leave a moment with no `DST` at all.
//! Instead a symlink to the new version is created *as* `DST.versions/vOLD` and exchanged with
//! `DST` in one system call: afterwards `DST` is the symlink and the old tree sits at `vOLD`,
//! with no instant in which `DST` is missing or partial and nothing left behind by a crash. Where
//! the exchange is unavailable (non-Linux, or a filesystem refusing the flag) that migration is
//! refused with an error; move the directory into place manually.
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
//! assert_eq!(atomwrite::versions(&dst)?.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::{self as rfs, AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use serde::Serialize;

use crate::error::errno;
use crate::manifest::{self, Manifest, file_name_string, manifest_path};
use crate::{AtomicFile, Durability, Error, Op, Options, Receipt, Result, SymlinkPolicy};

const LOCK_NAME: &str = ".lock";
const VERSIONS_SUFFIX: &str = ".versions";

/// Test-only hook: when the environment variable `ATOMWRITE_TEST_PAUSE_AT` equals `step`, print
/// `atomwrite: test pause at STEP` on stderr and sleep forever, so a crash test can `SIGKILL`
/// the process at exactly that step. Costs one cached environment lookup otherwise.
///
/// Steps: `data-committed` (`write --manifest`: data visible, manifest not yet written),
/// `version-written` (version and manifest durable, pointer not swapped), `symlink-created`
/// (temporary symlink exists, not yet renamed over `DST`), `swapped` (pointer swapped, retention
/// not yet run), `dir-staged` (directory version copied and synced, not yet renamed to `vN`).
#[doc(hidden)]
pub fn test_pause(step: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("ATOMWRITE_TEST_PAUSE_AT").ok());
    if at.as_deref() == Some(step) {
        eprintln!("atomwrite: test pause at {step}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// A published (or found) version: its number and path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionRef {
    /// The version number (1, 2, ...).
    pub version: u64,
    /// The version's path: `DST.versions/vNNNNNNNNNN[.ext]`, joined to `DST`'s parent.
    pub path: PathBuf,
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
    /// `"file"` or `"directory"`.
    pub kind: &'static str,
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
    /// Versions and leftovers removed by retention.
    pub removed: Vec<PathBuf>,
}

/// What [`clean_versions`] found or removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VersionsCleanReport {
    /// Unreferenced versions, manifests, staging directories and temporary symlinks removed (or,
    /// in a dry run, that would be removed).
    pub removed: Vec<PathBuf>,
    /// True when a publisher held the lock, so nothing was examined.
    pub locked: bool,
}

/// Publishes versions of a destination behind an atomic `latest` symlink. See the
/// [module docs](mod@crate::versions) for the layout, the steps and the guarantees.
#[derive(Debug, Clone, Default)]
pub struct Publisher {
    opts: Options,
    keep: Option<usize>,
    expect: Option<u64>,
}

impl Publisher {
    /// Default [`Options`] (durability `Full`), no retention, no compare-and-swap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Write options for the version files (durability, mode, run id, parent creation). The
    /// create-only and symlink settings are ignored: versions are always created, never replaced.
    pub fn options(mut self, opts: Options) -> Self {
        self.opts = opts;
        self
    }

    /// After the swap, keep only the `n` newest versions; the new one and the one it replaced are
    /// always kept, so `n < 2` behaves as 2. Unreferenced crash leftovers are removed too.
    pub fn keep(mut self, n: usize) -> Self {
        self.keep = Some(n);
        self
    }

    /// Compare-and-swap: publish only if the current version is `v` (0 = nothing published yet,
    /// including a `DST` that is still a regular file). Otherwise fail with an error whose
    /// [`is_conflict`](Error::is_conflict) is true, and publish nothing.
    pub fn expect(mut self, v: u64) -> Self {
        self.expect = Some(v);
        self
    }

    /// Takes the lock, checks [`expect`](Publisher::expect), allocates the next version number
    /// and opens it for writing. Nothing is visible until [`PendingVersion::commit`]; dropping the
    /// pending version discards it. Other publishers of `dst` wait until this one is committed or
    /// dropped.
    pub fn begin(&self, dst: impl AsRef<Path>) -> Result<PendingVersion> {
        let ctx = Ctx::open(self, dst.as_ref(), false)?;
        let mut o = self.opts.clone();
        o.no_clobber = true;
        o.symlinks = SymlinkPolicy::Replace;
        o.no_create_dirs = true;
        let file = o.open(ctx.version_path())?;
        Ok(PendingVersion { file, ctx })
    }

    /// Publishes `bytes` as the next version of `dst`.
    pub fn publish(&self, dst: impl AsRef<Path>, bytes: &[u8]) -> Result<Published> {
        let mut p = self.begin(dst)?;
        p.file.write_all_bytes(bytes)?;
        p.commit()
    }

    /// Publishes what `fill` writes as the next version of `dst`; nothing is published if `fill`
    /// fails.
    pub fn publish_with<F>(&self, dst: impl AsRef<Path>, fill: F) -> Result<Published>
    where
        F: FnOnce(&mut AtomicFile) -> io::Result<()>,
    {
        let mut p = self.begin(dst)?;
        if let Err(e) = fill(&mut p.file) {
            return Err(Error::new(Op::Write, p.ctx.version_path(), e));
        }
        p.commit()
    }

    /// Publishes the tree `src` as one directory version of `dst`: copied into a staging
    /// directory (regular files, directories and symlinks; permission bits kept), every file
    /// `fsync`ed, directories `fsync`ed bottom-up, renamed to `vN`, then the pointer swap. A
    /// `dst` that is a real directory is migrated with `renameat2(RENAME_EXCHANGE)` (see the
    /// module docs). On failure the staging copy is removed and `dst` is untouched.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let build = dir.path().join("build");
    /// # std::fs::create_dir_all(build.join("css"))?;
    /// # std::fs::write(build.join("index.html"), "<h1>v1</h1>")?;
    /// # std::fs::write(build.join("css/site.css"), "h1{}")?;
    /// let site = dir.path().join("site");
    /// let p = atomwrite::Publisher::new().keep(3).publish_dir(&site, &build)?;
    /// assert_eq!(std::fs::read_to_string(site.join("index.html"))?, "<h1>v1</h1>");
    /// assert_eq!(atomwrite::verify(&site).status, atomwrite::VerifyStatus::Ok);
    /// assert_eq!(p.manifest.kind.as_deref(), Some("directory"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish_dir(&self, dst: impl AsRef<Path>, src: impl AsRef<Path>) -> Result<Published> {
        let src = src.as_ref();
        let md = std::fs::metadata(src).map_err(|e| Error::new(Op::Read, src, e))?;
        if !md.is_dir() {
            return Err(Error::other(
                Op::Read,
                src,
                io::ErrorKind::NotADirectory,
                "--dir needs a directory",
            ));
        }
        let ctx = Ctx::open(self, dst.as_ref(), true)?;
        let vname = ctx.vname.clone();
        let (_, name_max) = crate::platform::fs_info(&ctx.vdir_fd)
            .map_err(|e| Error::new(Op::OpenDir, &ctx.vdir, e))?;
        let stage = crate::tempname::temp_name(&vname, name_max);
        let stage_path = ctx.vdir.join(&stage);
        let durable = self.opts.durability != Durability::None;
        let staged = (|| -> Result<()> {
            rfs::mkdirat(&ctx.vdir_fd, &stage, Mode::from_raw_mode(0o755))
                .map_err(|e| Error::new(Op::CreateDir, &stage_path, errno(e)))?;
            copy_tree(src, &stage_path, durable)?;
            test_pause("dir-staged");
            rfs::renameat(&ctx.vdir_fd, &stage, &ctx.vdir_fd, &vname)
                .map_err(|e| Error::new2(Op::Rename, &stage_path, ctx.version_path(), errno(e)))?;
            Ok(())
        })();
        if let Err(e) = staged {
            let _ = std::fs::remove_dir_all(&stage_path);
            return Err(e);
        }
        let (size, sha, files) = manifest::hash_dir(&ctx.version_path())?;
        let m = Manifest {
            format: manifest::MANIFEST_FORMAT.into(),
            name: vname.to_string_lossy().into_owned(),
            size,
            sha256: sha,
            written_at: crate::rfc3339(std::time::SystemTime::now()),
            run_id: self.run_id(),
            atomwrite_version: env!("CARGO_PKG_VERSION").into(),
            kind: Some("directory".into()),
            files: Some(files),
            version: None,
            parent: None,
        };
        let r = ctx
            .write_manifest(&ctx.version_path(), &m)
            .and_then(|()| ctx.finish(m));
        if r.is_err() && !ctx.swapped.get() {
            // Not referenced by the pointer: remove it now rather than leave it to retention.
            let _ = std::fs::remove_dir_all(ctx.version_path());
            let _ = std::fs::remove_file(manifest_path(&ctx.version_path()));
        }
        r
    }

    fn run_id(&self) -> String {
        self.opts
            .run_id
            .clone()
            .unwrap_or_else(|| crate::process_run_id().to_string())
    }
}

/// A version being written, with the publisher lock held. Write into it (it implements
/// [`Write`]), then [`commit`](PendingVersion::commit). Dropping it discards the version and
/// releases the lock; `DST` is untouched.
#[derive(Debug)]
pub struct PendingVersion {
    file: AtomicFile,
    ctx: Ctx,
}

impl PendingVersion {
    /// The number this version will have.
    pub fn version(&self) -> u64 {
        self.ctx.version
    }

    /// The current version when the lock was taken (0 if none).
    pub fn current(&self) -> u64 {
        self.ctx.current_version()
    }

    /// The underlying [`AtomicFile`] (for [`AtomicFile::copy_from`] and friends).
    pub fn file(&mut self) -> &mut AtomicFile {
        &mut self.file
    }

    /// The path of the named temporary file in use, if any (see [`AtomicFile::temp_path`]).
    pub fn temp_path(&self) -> Option<PathBuf> {
        self.file.temp_path()
    }

    /// Commits the version and its manifest durably, migrates a regular-file `DST` into the
    /// version before it, swaps the pointer, applies retention, and releases the lock.
    ///
    /// On an error before the swap `DST` still points where it did and the new version is
    /// removed; an error from the final directory `fsync` ([`Op::SyncDir`]) means the swap
    /// happened but may not survive a power loss.
    pub fn commit(self) -> Result<Published> {
        let PendingVersion { file, ctx } = self;
        let receipt: Receipt = file.commit()?;
        let vpath = ctx.version_path();
        let r = (|| {
            let sha = match &receipt.sha256 {
                Some(s) => s.clone(),
                None => manifest::hash_file(&vpath)?.1,
            };
            let m = Manifest::for_receipt(&vpath, &receipt, sha);
            ctx.write_manifest(&vpath, &m)?;
            ctx.finish(m)
        })();
        if r.is_err() && !ctx.swapped.get() {
            {
                let _ = std::fs::remove_file(&vpath);
                let _ = std::fs::remove_file(manifest_path(&vpath));
            }
        }
        r
    }
}

impl Write for PendingVersion {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[derive(Debug)]
enum Current {
    Missing,
    Regular,
    Directory,
    Version(u64),
}

#[derive(Debug)]
struct Ctx {
    durability: Durability,
    keep: Option<usize>,
    dst: PathBuf,
    parent: PathBuf,
    name: OsString,
    parent_fd: OwnedFd,
    vdir: PathBuf,
    vdir_name: OsString,
    vdir_fd: OwnedFd,
    _lock: OwnedFd,
    current: Current,
    version: u64,
    vname: OsString,
    migrate: Option<(u64, OsString)>,
    manifest_opts: Options,
    swapped: std::cell::Cell<bool>,
}

struct Layout {
    parent: PathBuf,
    /// The parent as the caller wrote it (empty for a bare name): used to build displayed paths.
    shown_parent: PathBuf,
    name: OsString,
    vdir_name: OsString,
    ext: String,
}

fn layout(dst: &Path) -> Result<Layout> {
    let (parent, name) = crate::dest::split(dst)?;
    let mut vdir_name = name.clone();
    vdir_name.push(VERSIONS_SUFFIX);
    let ext = extension_of(&name);
    let shown_parent = dst.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(Layout {
        parent,
        shown_parent,
        name,
        vdir_name,
        ext,
    })
}

/// `.csv` for `report.csv`, `.tar.gz` for `x.tar.gz`, empty for `data` or `.hidden`.
fn extension_of(name: &OsStr) -> String {
    let p = Path::new(name);
    let Some(ext) = p.extension().and_then(|e| e.to_str()) else {
        return String::new();
    };
    let stem = Path::new(p.file_stem().unwrap_or_default());
    match stem.extension().and_then(|e| e.to_str()) {
        Some("tar") => format!(".tar.{ext}"),
        _ => format!(".{ext}"),
    }
}

fn version_name(n: u64, ext: &str) -> OsString {
    OsString::from(format!("v{n:010}{ext}"))
}

/// Parses `vNNNNNNNNNN[.ext]` (at least 10 digits; manifests and dot-files excluded).
fn parse_version_name(name: &[u8]) -> Option<u64> {
    if name.first() != Some(&b'v') || name.ends_with(manifest::MANIFEST_SUFFIX.as_bytes()) {
        return None;
    }
    let digits = name[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits < 10 {
        return None;
    }
    let rest = &name[1 + digits..];
    if !rest.is_empty() && rest[0] != b'.' {
        return None;
    }
    std::str::from_utf8(&name[1..1 + digits]).ok()?.parse().ok()
}

fn open_dir_at(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<OwnedFd> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::new(Op::OpenDir, path, errno(e)))
}

fn read_current(parent_fd: &OwnedFd, l: &Layout, dst: &Path) -> Result<Current> {
    let st = match rfs::statat(parent_fd, &l.name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(Current::Missing),
        Err(e) => return Err(Error::new(Op::Inspect, dst, errno(e))),
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Ok(Current::Regular),
        FileType::Directory => Ok(Current::Directory),
        FileType::Symlink => {
            let t = rfs::readlinkat(parent_fd, &l.name, Vec::new())
                .map_err(|e| Error::new(Op::Inspect, dst, errno(e)))?;
            let t = t.into_bytes();
            let mut prefix = l.vdir_name.as_bytes().to_vec();
            prefix.push(b'/');
            match t
                .strip_prefix(prefix.as_slice())
                .and_then(parse_version_name)
            {
                Some(n) => Ok(Current::Version(n)),
                None => Err(Error::other(
                    Op::Publish,
                    dst,
                    io::ErrorKind::InvalidInput,
                    format!(
                        "is a symlink to `{}`, not a pointer made by `atomwrite publish` \
                         (expected `{}/vNNNNNNNNNN...`)",
                        String::from_utf8_lossy(&t),
                        l.vdir_name.to_string_lossy()
                    ),
                )),
            }
        }
        _ => Err(Error::other(
            Op::Publish,
            dst,
            io::ErrorKind::InvalidInput,
            "is not a regular file, directory or symlink",
        )),
    }
}

/// (number, name, is_dir) of every version in the directory, sorted by number.
fn scan(vdir_fd: &OwnedFd, vdir: &Path) -> Result<Vec<(u64, OsString, bool)>> {
    let mut out = Vec::new();
    let entries =
        rfs::Dir::read_from(vdir_fd).map_err(|e| Error::new(Op::ReadDir, vdir, errno(e)))?;
    for ent in entries {
        let ent = ent.map_err(|e| Error::new(Op::ReadDir, vdir, errno(e)))?;
        let name = ent.file_name().to_bytes();
        if let Some(n) = parse_version_name(name) {
            out.push((
                n,
                OsString::from_vec(name.to_vec()),
                ent.file_type() == FileType::Directory,
            ));
        }
    }
    out.sort();
    Ok(out)
}

fn max_number(vdir_fd: &OwnedFd, vdir: &Path) -> Result<u64> {
    // Orphan manifests count too, so a number is not reused while any trace of it exists.
    let mut max = 0;
    let entries =
        rfs::Dir::read_from(vdir_fd).map_err(|e| Error::new(Op::ReadDir, vdir, errno(e)))?;
    for ent in entries {
        let ent = ent.map_err(|e| Error::new(Op::ReadDir, vdir, errno(e)))?;
        let mut name = ent.file_name().to_bytes();
        if let Some(s) = name.strip_suffix(manifest::MANIFEST_SUFFIX.as_bytes()) {
            name = s;
        }
        if let Some(n) = parse_version_name(name) {
            max = max.max(n);
        }
    }
    Ok(max)
}

fn lock(vdir_fd: &OwnedFd, vdir: &Path, wait: bool) -> Result<Option<OwnedFd>> {
    let lock_path = vdir.join(LOCK_NAME);
    let fd = rfs::openat(
        vdir_fd,
        LOCK_NAME,
        OFlags::CREATE | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )
    .map_err(|e| Error::new(Op::Lock, &lock_path, errno(e)))?;
    let op = if wait {
        FlockOperation::LockExclusive
    } else {
        FlockOperation::NonBlockingLockExclusive
    };
    loop {
        match rfs::flock(&fd, op) {
            Ok(()) => return Ok(Some(fd)),
            Err(Errno::INTR) => continue,
            Err(Errno::WOULDBLOCK) if !wait => return Ok(None),
            Err(e) => return Err(Error::new(Op::Lock, &lock_path, errno(e))),
        }
    }
}

impl Ctx {
    fn open(p: &Publisher, dst: &Path, dir_version: bool) -> Result<Ctx> {
        let l = layout(dst)?;
        let durability = p.opts.durability;
        let parent_fd = crate::dest::open_dir(&l.parent, !p.opts.no_create_dirs, durability)?;
        let vdir = l.shown_parent.join(&l.vdir_name);
        match rfs::mkdirat(&parent_fd, &l.vdir_name, Mode::from_raw_mode(0o777)) {
            Ok(()) => {
                if durability == Durability::Full {
                    crate::platform::sync_dir(&parent_fd)
                        .map_err(|e| Error::new(Op::SyncDir, &l.parent, e))?;
                }
            }
            Err(Errno::EXIST) => {}
            Err(e) => return Err(Error::new(Op::CreateDir, &vdir, errno(e))),
        }
        let vdir_fd = open_dir_at(&parent_fd, &l.vdir_name, &vdir)?;
        let lock_fd = lock(&vdir_fd, &vdir, true)?.expect("a blocking lock returns a lock");
        let dst = l.shown_parent.join(&l.name);
        let current = read_current(&parent_fd, &l, &dst)?;
        let cur_n = match current {
            Current::Version(n) => n,
            _ => 0,
        };
        if let Some(want) = p.expect
            && want != cur_n
        {
            let what = match current {
                Current::Version(_) => format!("the current version is {cur_n}"),
                Current::Regular => {
                    "it is a regular file not yet published (version 0)".to_string()
                }
                Current::Directory => "it is a directory not yet published (version 0)".to_string(),
                Current::Missing => "nothing has been published yet (version 0)".to_string(),
            };
            return Err(Error::other(
                Op::Publish,
                &dst,
                io::ErrorKind::AlreadyExists,
                format!(
                    "expected version {want}, but {what}; nothing was published \
                         (compare-and-swap lost)"
                ),
            ));
        }
        if matches!(current, Current::Directory) && !dir_version {
            return Err(Error::other(
                Op::Publish,
                &dst,
                io::ErrorKind::IsADirectory,
                "is a directory; publish a directory with --dir (publish_dir)",
            ));
        }
        let max = max_number(&vdir_fd, &vdir)?.max(cur_n);
        let (migrate, version) = match current {
            Current::Regular | Current::Directory => {
                let m = max + 1;
                let ext = if matches!(current, Current::Directory) {
                    ""
                } else {
                    &l.ext
                };
                (Some((m, version_name(m, ext))), m + 1)
            }
            _ => (None, max + 1),
        };
        let vname = version_name(version, if dir_version { "" } else { &l.ext });
        let mut manifest_opts = p.opts.clone();
        manifest_opts.no_create_dirs = true;
        Ok(Ctx {
            durability,
            keep: p.keep,
            dst,
            parent: l.parent,
            name: l.name,
            parent_fd,
            vdir,
            vdir_name: l.vdir_name,
            vdir_fd,
            _lock: lock_fd,
            current,
            version,
            vname,
            migrate,
            manifest_opts,
            swapped: std::cell::Cell::new(false),
        })
    }

    fn current_version(&self) -> u64 {
        match self.current {
            Current::Version(n) => n,
            _ => 0,
        }
    }

    fn version_path(&self) -> PathBuf {
        self.vdir.join(&self.vname)
    }

    fn write_manifest(&self, data: &Path, m: &Manifest) -> Result<()> {
        manifest::write_manifest_file(&manifest_path(data), m, &self.manifest_opts)
    }

    fn sync_vdir(&self) -> Result<()> {
        if self.durability != Durability::None {
            crate::platform::sync_dir(&self.vdir_fd)
                .map_err(|e| Error::new(Op::SyncDir, &self.vdir, e))?;
        }
        Ok(())
    }

    fn target(&self) -> OsString {
        let mut t = self.vdir_name.clone();
        t.push("/");
        t.push(&self.vname);
        t
    }

    /// Migration (regular file), durable versions dir, pointer swap, retention.
    fn finish(&self, m: Manifest) -> Result<Published> {
        let mut previous = self.current_version();
        let mut migrated = None;
        if let (Current::Regular, Some((n, mname))) = (&self.current, &self.migrate) {
            let mpath = self.vdir.join(mname);
            rfs::linkat(
                &self.parent_fd,
                &self.name,
                &self.vdir_fd,
                mname,
                AtFlags::empty(),
            )
            .map_err(|e| Error::new2(Op::Link, &self.dst, &mpath, errno(e)))?;
            let mm = self.migrated_manifest(&mpath)?;
            self.write_manifest(&mpath, &mm)?;
            previous = *n;
            migrated = Some(*n);
        }
        self.sync_vdir()?;
        test_pause("version-written");
        if let (Current::Directory, Some((n, mname))) = (&self.current, &self.migrate) {
            self.exchange_directory(mname)?;
            let mpath = self.vdir.join(mname);
            if let Ok((size, sha, files)) = manifest::hash_dir(&mpath) {
                let mm = Manifest {
                    format: manifest::MANIFEST_FORMAT.into(),
                    name: mname.to_string_lossy().into_owned(),
                    size,
                    sha256: sha,
                    written_at: crate::rfc3339(std::time::SystemTime::now()),
                    run_id: "migrated".into(),
                    atomwrite_version: env!("CARGO_PKG_VERSION").into(),
                    kind: Some("directory".into()),
                    files: Some(files),
                    version: None,
                    parent: None,
                };
                let _ = self.write_manifest(&mpath, &mm);
            }
            previous = *n;
            migrated = Some(*n);
        } else {
            self.swap_pointer()?;
        }
        if self.durability == Durability::Full {
            crate::platform::sync_dir(&self.parent_fd).map_err(|e| {
                Error::new(Op::SyncDir, &self.parent, e)
                    .with_hint("the pointer was swapped but the swap may not survive a power loss")
            })?;
        }
        test_pause("swapped");
        if migrated.is_some() {
            // DST.manifest.json described the regular file; it now lives beside that version.
            let stale = manifest_path(&self.dst);
            if std::fs::symlink_metadata(&stale).is_ok() {
                let _ = std::fs::remove_file(&stale);
            }
        }
        let removed = match self.keep {
            Some(k) => self.retain(k, previous)?,
            None => Vec::new(),
        };
        Ok(Published {
            dst: self.dst.clone(),
            version: self.version,
            previous,
            path: self.version_path(),
            manifest: m,
            migrated,
            removed,
        })
    }

    fn migrated_manifest(&self, mpath: &Path) -> Result<Manifest> {
        let (size, sha) = manifest::hash_file(mpath)?;
        let md = std::fs::metadata(mpath).map_err(|e| Error::new(Op::Inspect, mpath, e))?;
        let mut written_at = manifest::time_str(md.modified().unwrap_or(std::time::UNIX_EPOCH));
        let mut run_id = "migrated".to_string();
        // Keep what an earlier `write --manifest` recorded, if it still matches the bytes.
        if let Ok(old) = Manifest::read(&manifest_path(&self.dst))
            && old.sha256 == sha
            && old.size == size
        {
            written_at = old.written_at;
            run_id = old.run_id;
        }
        Ok(Manifest {
            format: manifest::MANIFEST_FORMAT.into(),
            name: file_name_string(mpath),
            size,
            sha256: sha,
            written_at,
            run_id,
            atomwrite_version: env!("CARGO_PKG_VERSION").into(),
            kind: None,
            files: None,
            version: None,
            parent: None,
        })
    }

    fn swap_pointer(&self) -> Result<()> {
        let target = self.target();
        let (_, name_max) = crate::platform::fs_info(&self.parent_fd)
            .map_err(|e| Error::new(Op::OpenDir, &self.parent, e))?;
        let mut tmp = None;
        for _ in 0..64 {
            let t = crate::tempname::temp_name(&self.name, name_max);
            match rfs::symlinkat(&target, &self.parent_fd, &t) {
                Ok(()) => {
                    tmp = Some(t);
                    break;
                }
                Err(Errno::EXIST) => continue,
                Err(e) => {
                    return Err(Error::new(Op::Symlink, self.parent.join(&t), errno(e)));
                }
            }
        }
        let tmp = tmp.ok_or_else(|| Error::new(Op::Symlink, &self.dst, errno(Errno::EXIST)))?;
        test_pause("symlink-created");
        if let Err(e) = rfs::renameat(&self.parent_fd, &tmp, &self.parent_fd, &self.name) {
            let _ = rfs::unlinkat(&self.parent_fd, &tmp, AtFlags::empty());
            return Err(Error::new2(
                Op::Rename,
                self.parent.join(&tmp),
                &self.dst,
                errno(e),
            ));
        }
        self.swapped.set(true);
        Ok(())
    }

    /// `DST` is a real directory: put a symlink to the new version at `vOLD`, exchange it with
    /// `DST` in one `renameat2(RENAME_EXCHANGE)`.
    fn exchange_directory(&self, mname: &OsStr) -> Result<()> {
        let mpath = self.vdir.join(mname);
        rfs::symlinkat(self.target(), &self.vdir_fd, mname)
            .map_err(|e| Error::new(Op::Symlink, &mpath, errno(e)))?;
        let ok = crate::platform::rename_exchange(
            &self.vdir_fd,
            Path::new(mname),
            &self.parent_fd,
            Path::new(&self.name),
        );
        match ok {
            Ok(true) => self.swapped.set(true),
            Ok(false) => {
                let _ = rfs::unlinkat(&self.vdir_fd, mname, AtFlags::empty());
                return Err(Error::other(
                    Op::Publish,
                    &self.dst,
                    io::ErrorKind::Unsupported,
                    "is a directory and this system or filesystem cannot exchange it atomically \
                     (renameat2 RENAME_EXCHANGE); move it into place by hand",
                ));
            }
            Err(e) => {
                let _ = rfs::unlinkat(&self.vdir_fd, mname, AtFlags::empty());
                return Err(Error::new2(Op::Rename, &mpath, &self.dst, e));
            }
        }
        self.sync_vdir()
    }

    /// Removes versions beyond the newest `keep` (never `self.version` nor `previous`) and every
    /// crash leftover. Called with the lock held.
    fn retain(&self, keep: usize, previous: u64) -> Result<Vec<PathBuf>> {
        let all = scan(&self.vdir_fd, &self.vdir)?;
        let keep = keep.max(2);
        let mut kept = 0usize;
        let mut doomed = Vec::new();
        for (n, name, is_dir) in all.iter().rev() {
            let never_current = *n > previous && *n != self.version;
            if *n == self.version || *n == previous {
                kept += 1;
            } else if never_current || kept >= keep {
                doomed.push((name.clone(), *is_dir));
            } else {
                kept += 1;
            }
        }
        let mut removed = Vec::new();
        for (name, is_dir) in doomed {
            removed.extend(remove_version(&self.vdir, &name, is_dir)?);
        }
        removed.extend(remove_leftovers(
            &self.vdir_fd,
            &self.vdir,
            &self.parent_fd,
            &self.parent,
            &self.name,
            false,
        )?);
        if !removed.is_empty() {
            self.sync_vdir()?;
        }
        Ok(removed)
    }
}

fn remove_version(vdir: &Path, name: &OsStr, is_dir: bool) -> Result<Vec<PathBuf>> {
    let p = vdir.join(name);
    let r = if is_dir {
        std::fs::remove_dir_all(&p)
    } else {
        std::fs::remove_file(&p)
    };
    match r {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::new(Op::RemoveTemp, &p, e)),
    }
    let mut out = vec![p.clone()];
    let mp = manifest_path(&p);
    if std::fs::remove_file(&mp).is_ok() {
        out.push(mp);
    }
    Ok(out)
}

/// Staging directories in the versions dir, temporary pointer symlinks beside `DST`, and
/// manifests without data. Only called with the lock held.
fn remove_leftovers(
    vdir_fd: &OwnedFd,
    vdir: &Path,
    parent_fd: &OwnedFd,
    parent: &Path,
    name: &OsStr,
    dry_run: bool,
) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries =
        rfs::Dir::read_from(vdir_fd).map_err(|e| Error::new(Op::ReadDir, vdir, errno(e)))?;
    for ent in entries {
        let ent = ent.map_err(|e| Error::new(Op::ReadDir, vdir, errno(e)))?;
        let n = OsStr::from_bytes(ent.file_name().to_bytes());
        let stale_stage = crate::is_temp_name(n) && n.as_bytes().starts_with(b".v");
        let orphan_manifest = n
            .as_bytes()
            .strip_suffix(manifest::MANIFEST_SUFFIX.as_bytes())
            .filter(|d| parse_version_name(d).is_some())
            .is_some_and(|d| {
                rfs::statat(vdir_fd, OsStr::from_bytes(d), AtFlags::SYMLINK_NOFOLLOW).is_err()
            });
        if stale_stage || orphan_manifest {
            let p = vdir.join(n);
            if !dry_run {
                let r = if ent.file_type() == FileType::Directory {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                r.map_err(|e| Error::new(Op::RemoveTemp, &p, e))?;
            }
            out.push(p);
        }
    }
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(name.as_bytes());
    prefix.push(b'.');
    let entries =
        rfs::Dir::read_from(parent_fd).map_err(|e| Error::new(Op::ReadDir, parent, errno(e)))?;
    for ent in entries {
        let ent = ent.map_err(|e| Error::new(Op::ReadDir, parent, errno(e)))?;
        let n = OsStr::from_bytes(ent.file_name().to_bytes());
        if ent.file_type() == FileType::Symlink
            && crate::is_temp_name(n)
            && n.as_bytes().starts_with(&prefix)
        {
            let p = parent.join(n);
            if !dry_run {
                match rfs::unlinkat(parent_fd, n, AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => return Err(Error::new(Op::RemoveTemp, &p, errno(e))),
                }
            }
            out.push(p);
        }
    }
    Ok(out)
}

fn copy_tree(src: &Path, dst: &Path, durable: bool) -> Result<()> {
    let rd = std::fs::read_dir(src).map_err(|e| Error::new(Op::ReadDir, src, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::new(Op::ReadDir, src, e))?;
        let from = ent.path();
        let to = dst.join(ent.file_name());
        let md = std::fs::symlink_metadata(&from).map_err(|e| Error::new(Op::Inspect, &from, e))?;
        let ft = md.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to).map_err(|e| Error::new(Op::CreateDir, &to, e))?;
            copy_tree(&from, &to, durable)?;
            let _ = std::fs::set_permissions(
                &to,
                std::fs::Permissions::from_mode(md.permissions().mode() & 0o7777),
            );
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&from).map_err(|e| Error::new(Op::Inspect, &from, e))?;
            std::os::unix::fs::symlink(&t, &to).map_err(|e| Error::new(Op::Symlink, &to, e))?;
        } else if ft.is_file() {
            let mut r = std::fs::File::open(&from).map_err(|e| Error::new(Op::Read, &from, e))?;
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&to)
                .map_err(|e| Error::new(Op::CreateTemp, &to, e))?;
            io::copy(&mut r, &mut w).map_err(|e| Error::new2(Op::Copy, &from, &to, e))?;
            w.set_permissions(std::fs::Permissions::from_mode(
                md.permissions().mode() & 0o7777,
            ))
            .map_err(|e| Error::new(Op::Chmod, &to, e))?;
            if durable {
                crate::platform::sync_file(&w).map_err(|e| Error::new(Op::SyncFile, &to, e))?;
            }
        } else {
            return Err(Error::other(
                Op::Copy,
                &from,
                io::ErrorKind::InvalidInput,
                "not a regular file, directory or symlink; cannot be published",
            ));
        }
    }
    if durable {
        // Bottom-up: this directory's entries are durable after its children were synced.
        let d = std::fs::File::open(dst).map_err(|e| Error::new(Op::OpenDir, dst, e))?;
        crate::platform::sync_dir(&d).map_err(|e| Error::new(Op::SyncDir, dst, e))?;
    }
    Ok(())
}

/// The version `dst` points at now, read with one `readlink` (atomic), without the lock.
/// `Ok(None)` when nothing has been published (`dst` missing, a regular file or a directory).
///
/// Guarantees: the returned version was current at the moment of the `readlink`. Does not
/// guarantee it still is when you use it; use [`Publisher::expect`] to act on it safely.
pub fn latest(dst: impl AsRef<Path>) -> Result<Option<VersionRef>> {
    let dst = dst.as_ref();
    let l = layout(dst)?;
    let parent_fd = crate::dest::open_dir(&l.parent, false, Durability::None)?;
    match read_current(&parent_fd, &l, dst)? {
        Current::Version(n) => {
            let mut path = l.shown_parent.join(&l.vdir_name);
            let t = rfs::readlinkat(&parent_fd, &l.name, Vec::new())
                .map_err(|e| Error::new(Op::Inspect, dst, errno(e)))?;
            let t = PathBuf::from(OsString::from_vec(t.into_bytes()));
            path = match t.file_name() {
                Some(f) => path.join(f),
                None => path,
            };
            Ok(Some(VersionRef { version: n, path }))
        }
        _ => Ok(None),
    }
}

/// Every version of `dst`, oldest first, with what its manifest records. Reads without the
/// lock: a publish running at the same time may or may not be listed.
///
/// Guarantees: each listed version existed at the time of the directory read, and `current`
/// marks the one `dst` pointed at when the listing started. A missing `DST.versions/` gives an
/// empty list.
pub fn versions(dst: impl AsRef<Path>) -> Result<Vec<VersionInfo>> {
    let dst = dst.as_ref();
    let l = layout(dst)?;
    let parent_fd = crate::dest::open_dir(&l.parent, false, Durability::None)?;
    let cur = match read_current(&parent_fd, &l, dst)? {
        Current::Version(n) => n,
        _ => 0,
    };
    let vdir = l.shown_parent.join(&l.vdir_name);
    let vdir_fd = match rfs::openat(
        &parent_fd,
        &l.vdir_name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(Vec::new()),
        Err(e) => return Err(Error::new(Op::OpenDir, &vdir, errno(e))),
    };
    let mut out = Vec::new();
    for (n, name, is_dir) in scan(&vdir_fd, &vdir)? {
        let path = vdir.join(&name);
        let (m, err) = match Manifest::read(&manifest_path(&path)) {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e.to_string())),
        };
        out.push(VersionInfo {
            version: n,
            path,
            current: n == cur,
            kind: if is_dir { "directory" } else { "file" },
            size: m.as_ref().map(|m| m.size),
            sha256: m.as_ref().map(|m| m.sha256.clone()),
            written_at: m.as_ref().map(|m| m.written_at.clone()),
            run_id: m.as_ref().map(|m| m.run_id.clone()),
            manifest_error: err,
        });
    }
    Ok(out)
}

/// Removes what crashed publishers of `dst` left behind: versions numbered above the current
/// one (complete but never made current), staging directories, orphan manifests and temporary
/// pointer symlinks. Takes the publisher lock without waiting; if a publisher holds it, nothing is
/// examined and the report says `locked`.
///
/// Guarantees: never removes the current version or any version at or below it; never runs
/// while a publisher of `dst` is active (that is what makes an age threshold unnecessary).
/// Does not apply retention to old versions (that is [`Publisher::keep`]).
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let dst = dir.path().join("out.txt");
/// atomwrite::Publisher::new().publish(&dst, b"1")?;
/// // A publisher that crashed after writing version 2 but before the swap left it behind:
/// # std::fs::write(dir.path().join("out.txt.versions/v0000000002.txt"), b"2")?;
/// let report = atomwrite::clean_versions(&dst, false)?;
/// assert_eq!(report.removed.len(), 1);
/// assert_eq!(atomwrite::latest(&dst)?.unwrap().version, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn clean_versions(dst: impl AsRef<Path>, dry_run: bool) -> Result<VersionsCleanReport> {
    let dst = dst.as_ref();
    let l = layout(dst)?;
    let parent_fd = crate::dest::open_dir(&l.parent, false, Durability::None)?;
    let vdir = l.shown_parent.join(&l.vdir_name);
    let vdir_fd = match rfs::openat(
        &parent_fd,
        &l.vdir_name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(VersionsCleanReport::default()),
        Err(e) => return Err(Error::new(Op::OpenDir, &vdir, errno(e))),
    };
    let Some(_lock) = lock(&vdir_fd, &vdir, false)? else {
        return Ok(VersionsCleanReport {
            removed: Vec::new(),
            locked: true,
        });
    };
    let cur = match read_current(&parent_fd, &l, dst)? {
        Current::Version(n) => n,
        _ => 0,
    };
    let mut removed = Vec::new();
    for (n, name, is_dir) in scan(&vdir_fd, &vdir)? {
        if n > cur {
            if dry_run {
                removed.push(vdir.join(&name));
            } else {
                removed.extend(remove_version(&vdir, &name, is_dir)?);
            }
        }
    }
    removed.extend(remove_leftovers(
        &vdir_fd, &vdir, &parent_fd, &l.parent, &l.name, dry_run,
    )?);
    if !removed.is_empty() && !dry_run {
        crate::platform::sync_dir(&vdir_fd).map_err(|e| Error::new(Op::SyncDir, &vdir, e))?;
        crate::platform::sync_dir(&parent_fd).map_err(|e| Error::new(Op::SyncDir, &l.parent, e))?;
    }
    Ok(VersionsCleanReport {
        removed,
        locked: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_round_trip() {
        assert_eq!(version_name(3, ".csv"), OsString::from("v0000000003.csv"));
        assert_eq!(parse_version_name(b"v0000000003.csv"), Some(3));
        assert_eq!(parse_version_name(b"v0000000003"), Some(3));
        assert_eq!(parse_version_name(b"v12345678901"), Some(12345678901));
        assert_eq!(parse_version_name(b"v0000000003.csv.manifest.json"), None);
        assert_eq!(parse_version_name(b"v000003.csv"), None);
        assert_eq!(parse_version_name(b"v0000000003x"), None);
        assert_eq!(parse_version_name(b".lock"), None);
    }

    #[test]
    fn extensions() {
        assert_eq!(extension_of(OsStr::new("a.csv")), ".csv");
        assert_eq!(extension_of(OsStr::new("a.tar.gz")), ".tar.gz");
        assert_eq!(extension_of(OsStr::new("my.data.json")), ".json");
        assert_eq!(extension_of(OsStr::new("data")), "");
        assert_eq!(extension_of(OsStr::new(".hidden")), "");
    }
}
