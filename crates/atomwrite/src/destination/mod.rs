//! One destination model for local paths and object-store URLs.
//!
//! [`open`] classifies the user's argument once (see [`Location`]) and returns a
//! [`Destination`]: the same operations — write, copy, read, publish, latest, versions, verify,
//! clean — with the same types ([`Receipt`], [`Published`], [`VersionList`], [`Verification`],
//! [`Error`]) whatever is behind it. Each backend implements the crate-private
//! `Backend` trait once: the local one calls the existing file functions
//! ([`Options::open`], [`Batch`](crate::Batch), [`Publisher`], [`versions`](crate::versions()),
//! [`verify`](crate::verify())) and keeps all their guarantees; the object-store one
//! (feature `object-store`) calls `crate::object`.
//!
//! What a backend cannot honour is refused, never ignored: an option an object store has no
//! notion of (a mode, a symlink policy, `create_dirs(false)`) fails with
//! [`io::ErrorKind::Unsupported`] before anything is read; [`Destination::capabilities`] says in
//! advance which options apply.
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("report.csv");
//! let dst = atomwrite::destination::open(&path)?;
//! let r = dst.write(&mut &b"id\n1\n"[..], &atomwrite::Options::new())?;
//! assert_eq!(r.size, 5);
//! let p = dst.publish(atomwrite::destination::PublishInput::Reader(&mut &b"id\n2\n"[..]),
//!                     &atomwrite::Publisher::new())?;
//! assert_eq!(p.version, 2); // the file that was there became version 1
//! assert_eq!(dst.latest()?.unwrap().version, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod local;
#[cfg(feature = "object-store")]
mod remote;

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

use serde::Serialize;

use crate::{
    CopyMethod, Error, Location, Op, Options, Published, Publisher, Receipt, Result, Verification,
    VersionList, VersionRef, VersionsCleanReport,
};

/// What kind of store a [`Destination`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StoreKind {
    /// A local path (the kernel's filesystem, through directory fds).
    Local,
    /// `memory:///key`: one process-wide in-memory store (tests).
    Memory,
    /// `file:///abs/path`: the local filesystem through the object-store layer.
    File,
    /// `s3://bucket/key`: Amazon S3 or an S3-compatible server.
    S3,
    /// `gs://bucket/key`: Google Cloud Storage.
    Gcs,
    /// `az://container/key` and the other Azure schemes.
    Azure,
}

impl StoreKind {
    /// A stable lower-case name (`local`, `memory`, `file`, `s3`, `gcs`, `azure`).
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Local => "local",
            StoreKind::Memory => "memory",
            StoreKind::File => "file",
            StoreKind::S3 => "s3",
            StoreKind::Gcs => "gcs",
            StoreKind::Azure => "azure",
        }
    }
}

/// Which options and operations a destination supports. An option that is not supported is
/// refused with [`io::ErrorKind::Unsupported`] by the operation itself; these flags let a caller
/// refuse it earlier (the CLI turns them into usage errors naming the flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Permission bits ([`Options::mode`]) can be set.
    pub modes: bool,
    /// Symlinks exist, so [`SymlinkPolicy`](crate::SymlinkPolicy) means something.
    pub symlinks: bool,
    /// Directories exist: `create_dirs(false)` means something and
    /// [`PublishInput::Dir`] is supported.
    pub dirs: bool,
    /// Create-only writes ([`Options::no_clobber`]) are enforced by the store.
    pub create_only: bool,
    /// Publishers are ordered by compare-and-swap ([`Publisher::expect`]).
    pub cas: bool,
    /// Publishers wait for each other on a lock ([`Publisher::wait_timeout`]).
    pub lock_wait: bool,
    /// Many copies into this directory share one flush barrier ([`Destination::copy_many`]).
    pub batch: bool,
}

/// What [`Destination::publish`] publishes.
pub enum PublishInput<'a> {
    /// Everything the reader yields, as one file/object version.
    Reader(&'a mut dyn Read),
    /// A local file (read with the source rules of [`open_source`](crate::open_source)).
    File(&'a Path),
    /// A local directory tree, as one version (local destinations only).
    Dir(&'a Path),
}

/// One copy of [`Destination::copy_from`] / [`Destination::copy_many`]: the receipt and how the
/// bytes travelled.
#[derive(Debug, Clone)]
pub struct Copied {
    /// The receipt of the new destination contents.
    pub receipt: Receipt,
    /// Local copies: reflink, `copy_file_range` or buffered. `None` for object stores (the
    /// receipt's `multipart` says how the bytes went up).
    pub method: Option<CopyMethod>,
    /// The source as displayed (path or URL, after following a published pointer).
    pub source: String,
}

/// How a copy treats the source's attributes (local destinations; object stores have none), and
/// who hears about its progress.
#[derive(Clone, Copy, Default)]
pub struct CopyAttrs<'a> {
    /// Keep the source's mode, owner and group (`cp -p`); otherwise a new copy gets the source's
    /// mode & 0777 & ~umask and a replaced file keeps its own.
    pub preserve: bool,
    /// Called with the number of bytes copied so far each time some are copied (once, with the
    /// total, when the kernel copies the whole file in one call).
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
    /// [`copy_many`](Destination::copy_many) only: when set, each finished copy is handed to
    /// it, in order, instead of being kept in [`CopyReport::files`] (which is then empty), so
    /// a copy of many files holds no receipt per file. A local batch hands them over only once
    /// every file is renamed and its directory flushed: a copy it receives is replaced.
    pub copied: Option<&'a (dyn Fn(Copied) + Sync)>,
}

impl fmt::Debug for CopyAttrs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyAttrs")
            .field("preserve", &self.preserve)
            .field("progress", &self.progress.is_some())
            .field("copied", &self.copied.is_some())
            .finish()
    }
}

impl CopyAttrs<'_> {
    /// Hands `c` to [`copied`](CopyAttrs::copied), or keeps it in `report`.
    pub(crate) fn deliver(&self, c: Copied, report: &mut CopyReport) {
        match self.copied {
            Some(f) => f(c),
            None => report.files.push(c),
        }
    }
}

/// What [`Destination::copy_many`] tells its caller while it runs.
pub trait CopyObserver {
    /// Called with each destination before its bytes are copied.
    fn copying(&mut self, _dst: &Destination) {}
    /// Runs the commit of a batch (`commit`). The default just runs it; an observer may wrap
    /// it (the CLI lets a signal cancel the batch between two renames there).
    fn commit(&mut self, commit: &mut dyn FnMut()) {
        commit()
    }
}

/// What [`Destination::copy_many`] did.
#[derive(Debug, Clone, Default)]
pub struct CopyReport {
    /// One entry per source, in order (empty when [`CopyAttrs::copied`] took them).
    pub files: Vec<Copied>,
    /// Directory fsyncs paid (a local batch: one per directory); `None` for object stores.
    pub dir_syncs: Option<usize>,
    /// Data flushes paid (a local batch); `None` for object stores.
    pub data_syncs: Option<usize>,
}

/// The operations of one backend. Crate-private: implemented once for local paths and once for
/// object-store URLs; callers use [`Destination`].
pub(crate) trait Backend: Send + Sync + fmt::Debug {
    fn display(&self) -> &str;
    fn path(&self) -> &Path;
    fn store(&self) -> StoreKind;
    fn capabilities(&self) -> Capabilities;
    /// The local path, for the fast paths between two local destinations.
    fn local_path(&self) -> Option<&Path>;
    /// The destination `name` inside this one (a directory or a prefix ending in `/`).
    fn join(&self, name: &OsStr) -> Result<Destination>;
    /// The last segment of the path (exact, not lossy) or URL.
    fn name(&self) -> std::ffi::OsString;
    /// Whether this names a container (a directory, or a URL prefix ending in `/`).
    fn is_container(&self) -> bool;
    /// Whether something exists at this destination now (a create-only pre-check).
    fn exists(&self) -> Result<bool>;
    fn write(&self, input: &mut dyn Read, source: &Path, opts: &Options) -> Result<Receipt>;
    fn write_manifest(&self, r: &Receipt, opts: &Options) -> Result<crate::Manifest>;
    fn open_read(&self) -> Result<(Box<dyn Read + Send>, String)>;
    fn publish(&self, input: PublishInput<'_>, p: &Publisher) -> Result<Published>;
    fn latest(&self) -> Result<Option<VersionRef>>;
    fn versions(&self) -> Result<VersionList>;
    fn verify(&self) -> Result<Verification>;
    fn clean(&self, dry_run: bool) -> Result<VersionsCleanReport>;
    fn clean_temps(&self, opts: &crate::CleanOptions) -> Result<crate::CleanReport>;
    fn copy_local(&self, src: &Path, opts: &Options, attrs: CopyAttrs<'_>) -> Result<Copied>;
    /// Copies every source (all local: [`Backend::local_path`] is `Some`) under its own name
    /// into this container.
    fn copy_many_local(
        &self,
        sources: &[Destination],
        opts: &Options,
        attrs: CopyAttrs<'_>,
        observer: &mut dyn CopyObserver,
    ) -> Result<CopyReport>;
}

/// Where a write goes: a local path or an object-store URL, opened once from the user's
/// argument by [`open`]. Cheap to hold; opening does no I/O beyond configuring a store client.
pub struct Destination(Box<dyn Backend>);

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.display())
    }
}

/// Opens the destination `arg` names: a local path, or a URL with a
/// [supported scheme](crate::SUPPORTED_SCHEMES). A URL-like typo (`s3:/b/k`) is an
/// `InvalidInput` error, never a local file; a URL in a build without the `object-store`
/// feature is an `Unsupported` error. No file is created and nothing is read here.
pub fn open(arg: impl AsRef<OsStr>) -> Result<Destination> {
    let arg = arg.as_ref();
    match Location::parse(arg) {
        Ok(Location::Path(p)) => Ok(Destination(Box::new(local::Local::new(p)))),
        Ok(Location::Url { url, .. }) => open_url(&url),
        Err(e) => Err(Error::other(
            Op::OpenStore,
            e.input(),
            io::ErrorKind::InvalidInput,
            e.to_string(),
        )),
    }
}

/// The one place the `object-store` feature is consulted.
fn open_url(url: &str) -> Result<Destination> {
    #[cfg(feature = "object-store")]
    return remote::Remote::open(url).map(|r| Destination(Box::new(r)));
    #[cfg(not(feature = "object-store"))]
    Err(Error::other(
        Op::OpenStore,
        url,
        io::ErrorKind::Unsupported,
        "this build has no object-store support (the `object-store` feature is off)",
    ))
}

impl Destination {
    /// The user's path, or the URL, as given.
    pub fn display(&self) -> &str {
        self.0.display()
    }

    /// The destination as a path: the local path exactly as given (not lossy for non-UTF-8
    /// names), or the URL. Errors, receipts and reports name it this way.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Which kind of store this is.
    pub fn store(&self) -> StoreKind {
        self.0.store()
    }

    /// Which options and operations apply here.
    pub fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    /// Whether this names a container: an existing local directory, or a path or URL ending in
    /// `/` (a prefix), into which [`join`](Destination::join) puts files.
    pub fn is_container(&self) -> bool {
        self.0.is_container()
    }

    /// The destination called `name` inside this container (`DIR/name`, `PREFIX/name`).
    /// `name` must be one non-empty path segment (and UTF-8 for a URL); a local name is used
    /// byte for byte.
    pub fn join(&self, name: impl AsRef<OsStr>) -> Result<Destination> {
        let name = name.as_ref();
        let b = name.as_encoded_bytes();
        if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
            return Err(Error::other(
                Op::OpenStore,
                self.display(),
                io::ErrorKind::InvalidInput,
                format!("`{}` is not a file name", name.to_string_lossy()),
            ));
        }
        self.0.join(name)
    }

    /// The last segment of the path or URL (`report.csv` for `out/report.csv` and
    /// `s3://b/out/report.csv`), for display (lossy for a non-UTF-8 local name; see
    /// [`file_name_os`](Destination::file_name_os)).
    pub fn file_name(&self) -> String {
        self.0.name().to_string_lossy().into_owned()
    }

    /// The last segment of the path (byte for byte) or URL: the name a copy into a container
    /// gets.
    pub fn file_name_os(&self) -> std::ffi::OsString {
        self.0.name()
    }

    /// Whether something exists at the destination right now (one `lstat` / `HEAD`). Only a
    /// head start for create-only writes: the commit's own create-only check decides.
    pub fn exists(&self) -> Result<bool> {
        self.0.exists()
    }

    /// Writes everything `input` yields, atomically: readers see the old contents or the new,
    /// never a prefix. If `input` fails, nothing is published and the error is returned (with
    /// [`Op::Read`] and the input's own io error). With [`Options::no_clobber`] an existing
    /// destination is refused before the first byte is read (a conflict,
    /// [`Error::is_conflict`]), and again atomically at the commit.
    pub fn write(&self, input: &mut dyn Read, opts: &Options) -> Result<Receipt> {
        self.0.write(input, Path::new("<input>"), opts)
    }

    /// [`write`](Destination::write), naming the input `source` in a read error (`<stdin>`, the
    /// `--from` file, ...).
    pub fn write_named(
        &self,
        input: &mut dyn Read,
        source: &Path,
        opts: &Options,
    ) -> Result<Receipt> {
        self.0.write(input, source, opts)
    }

    /// Writes the sidecar manifest `DST.manifest.json` describing the receipt `r` of a write to
    /// this destination (see [`write_manifest`](crate::write_manifest)); after the data, so a
    /// crash in between leaves a detectably torn pair, never a silently wrong one.
    pub fn write_manifest(&self, r: &Receipt, opts: &Options) -> Result<crate::Manifest> {
        self.0.write_manifest(r, opts)
    }

    /// Copies `src` (any destination, read through [`open_read`](Destination::open_read)) here.
    /// Between two local paths the kernel's fast paths are used (reflink, `copy_file_range`)
    /// and the source's mode is carried over as `cp` does (see [`CopyAttrs`]).
    pub fn copy_from(
        &self,
        src: &Destination,
        opts: &Options,
        attrs: CopyAttrs<'_>,
    ) -> Result<Copied> {
        if let Some(p) = src.0.local_path() {
            return self.0.copy_local(p, opts, attrs);
        }
        let (r, source) = src.0.open_read()?;
        let mut r = Counting::new(r, attrs.progress);
        // The bytes are streamed through this process anyway: hashing them costs no extra read.
        let opts = opts.clone().checksum(true);
        let receipt = self.0.write(&mut r, Path::new(&source), &opts)?;
        Ok(Copied {
            receipt,
            method: None,
            source,
        })
    }

    /// Copies every source into this container (see [`join`](Destination::join)) under its own
    /// last segment. Where [`Capabilities::batch`] holds and every source is local, all copies
    /// are one [`Batch`](crate::Batch): one data flush, one directory fsync, and on failure the
    /// error's [`batch_outcome`](Error::batch_outcome) names what was replaced. Otherwise the
    /// copies run one after another and stop at the first failure. `observer` hears of every
    /// destination before its bytes are copied; with [`CopyAttrs::copied`] each finished copy
    /// goes to that callback instead of the report, so nothing is held per file but what the
    /// copy itself needs until its rename.
    pub fn copy_many(
        &self,
        sources: &[Destination],
        opts: &Options,
        attrs: CopyAttrs<'_>,
        observer: &mut dyn CopyObserver,
    ) -> Result<CopyReport> {
        // Every name is checked before anything is copied; the targets are then made again one
        // at a time (a copy of 100,000 files holds no list of them).
        for s in sources {
            self.join(s.file_name_os())?;
        }
        if self.capabilities().batch && sources.iter().all(|s| s.0.local_path().is_some()) {
            return self.0.copy_many_local(sources, opts, attrs, observer);
        }
        let mut report = CopyReport::default();
        for (i, s) in sources.iter().enumerate() {
            crate::interrupt::test_point("copy-next", i);
            let t = self.join(s.file_name_os())?;
            observer.copying(&t);
            match t.copy_from(s, opts, attrs) {
                Ok(c) => attrs.deliver(c, &mut report),
                Err(e) => {
                    let shown = |ss: &[Destination]| -> Vec<std::path::PathBuf> {
                        ss.iter()
                            .filter_map(|s| self.join(s.file_name_os()).ok())
                            .map(|t| t.path().to_path_buf())
                            .collect()
                    };
                    let outcome =
                        crate::BatchOutcome::new(shown(&sources[..i]), shown(&sources[i..]));
                    return Err(e.with_batch_outcome(outcome));
                }
            }
        }
        Ok(report)
    }

    /// A reader of the current contents (following a published pointer to the current
    /// version), and the path or URL it reads.
    pub fn open_read(&self) -> Result<(Box<dyn Read + Send>, String)> {
        self.0.open_read()
    }

    /// Copies the current contents into `out`; returns the number of bytes.
    pub fn read_to(&self, out: &mut dyn Write) -> Result<u64> {
        let (mut r, shown) = self.0.open_read()?;
        io::copy(&mut r, out).map_err(|e| Error::new(Op::Copy, shown, e))
    }

    /// Publishes a new version and moves the `latest` pointer to it atomically (see
    /// [`versions`](crate::versions())). [`Publisher::expect`] is a compare-and-swap on both
    /// backends; [`Publisher::keep`] applies retention after the swap.
    pub fn publish(&self, input: PublishInput<'_>, p: &Publisher) -> Result<Published> {
        self.0.publish(input, p)
    }

    /// The current version, or `None` when nothing was published.
    pub fn latest(&self) -> Result<Option<VersionRef>> {
        self.0.latest()
    }

    /// Every version, oldest first.
    pub fn versions(&self) -> Result<VersionList> {
        self.0.versions()
    }

    /// Recomputes size and sha256 of the contents (the current version of a published
    /// destination) and compares them, and the name, with the manifest.
    ///
    /// A problem with the data or the manifest is a [`Verification`] with its
    /// [`VerifyStatus`](crate::VerifyStatus); an error means no verdict could be reached (a
    /// store that cannot be reached).
    pub fn verify(&self) -> Result<Verification> {
        self.0.verify()
    }

    /// Removes what crashed publishers left behind (see [`clean_versions`](crate::clean_versions)).
    pub fn clean(&self, dry_run: bool) -> Result<VersionsCleanReport> {
        self.0.clean(dry_run)
    }

    /// Removes the temporary files of crashed writers in this directory, and the leftovers of
    /// crashed publishes in its versions directories (see [`clean_with`](crate::clean_with)).
    /// Object stores have no temporary files (an upload is invisible until it completes):
    /// there this is an `Unsupported` error.
    pub fn clean_temps(&self, opts: &crate::CleanOptions) -> Result<crate::CleanReport> {
        self.0.clean_temps(opts)
    }
}

/// The last non-empty `/`-separated segment of a path or URL.
pub(crate) fn last_segment(s: &str) -> String {
    s.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(s)
        .to_string()
}

/// A reader that reports the bytes read so far to a progress callback.
pub(crate) struct Counting<'a, R> {
    inner: R,
    seen: u64,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl<'a, R> Counting<'a, R> {
    pub(crate) fn new(inner: R, progress: Option<&'a (dyn Fn(u64) + Sync)>) -> Self {
        Counting {
            inner,
            seen: 0,
            progress,
        }
    }
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if let (Some(p), true) = (self.progress, n > 0) {
            p(self.seen);
        }
        Ok(n)
    }
}
