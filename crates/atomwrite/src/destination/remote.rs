//! The object-store backend: a URL, served by [`crate::object`] on its blocking runtime. Every
//! error leaves as the library's one [`Error`] (see [`crate::object::Error::into_error`]).

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use object_store::ObjectStoreExt;
use object_store::path::Path as Key;

use super::{
    Backend, Capabilities, Copied, CopyAttrs, CopyObserver, CopyReport, Destination, PublishInput,
    StoreKind,
};
use crate::object::blocking::{SyncReader, block_on};
use crate::object::{self as os, Target};
use crate::receipt::ObjectFacts;
use crate::{
    Error, Manifest, Op, Options, Published, Publisher, Receipt, Result, SymlinkPolicy,
    Verification, VersionInfo, VersionKind, VersionList, VersionRef, VersionsCleanReport,
};

#[derive(Debug)]
pub(crate) struct Remote {
    url: String,
    /// `None` for a prefix (a URL ending in `/`): a container for [`Backend::join`] only.
    target: Option<Target>,
}

impl Remote {
    pub(crate) fn open(url: &str) -> Result<Remote> {
        let target = if url.ends_with('/') {
            None
        } else {
            Some(Target::parse(url)?)
        };
        Ok(Remote {
            url: url.to_string(),
            target,
        })
    }

    /// The target of every operation but reading an object, which has its own rules
    /// ([`open_read`](Backend::open_read)): a `file://` target must be private
    /// ([`Target::check_private`]).
    fn t(&self) -> Result<&Target> {
        let t = self.t_any()?;
        t.check_private()?;
        Ok(t)
    }

    fn t_any(&self) -> Result<&Target> {
        self.target.as_ref().ok_or_else(|| {
            Error::other(
                Op::OpenStore,
                &self.url,
                io::ErrorKind::InvalidInput,
                "names a prefix (it ends in `/`), not an object",
            )
        })
    }

    /// A `file://` object is created with the process's default mode (object_store sets no
    /// permission bits): a source that others may not read would become readable by them.
    /// Refused before anything is written; a plain path keeps the source's mode.
    fn refuse_exposing(&self, src: &Path, md: &std::fs::Metadata) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if self.target.as_ref().is_none_or(|t| t.local_root.is_none()) {
            return Ok(());
        }
        let default = 0o666 & !crate::sys::host().umask();
        let exposed = default & !md.permissions().mode() & 0o066;
        if exposed == 0 {
            return Ok(());
        }
        Err(Error::other(
            Op::Read,
            src,
            io::ErrorKind::PermissionDenied,
            format!(
                "has mode {:o}, but a file:// copy would get {default:o} (object_store sets no \
                 permission bits): copy to the plain path instead, which keeps the source's mode",
                md.permissions().mode() & 0o7777
            ),
        ))
    }

    fn unsupported(&self, op: Op, what: &str) -> Error {
        Error::other(op, &self.url, io::ErrorKind::Unsupported, what.to_string())
    }

    /// Refuses what an object store cannot honour, before anything is read.
    fn check(&self, opts: &Options) -> Result<()> {
        if opts.mode.is_some() {
            return Err(self.unsupported(Op::Chmod, "objects have no permission bits"));
        }
        if opts.symlinks != SymlinkPolicy::Follow {
            return Err(self.unsupported(Op::Inspect, "object stores have no symlinks"));
        }
        if opts.no_create_dirs {
            return Err(self.unsupported(Op::CreateDir, "object stores have no directories"));
        }
        Ok(())
    }

    fn write_options(opts: &Options) -> os::WriteOptions {
        let mut w = os::WriteOptions::new().create_only(opts.no_clobber);
        w.run_id = Some(run_id(opts));
        w
    }

    /// The key a read starts from: the current version of a published target, else the key.
    fn read_key(&self) -> Result<(Target, Key)> {
        let t = self.t_any()?;
        let key = match block_on(os::latest_target(t))? {
            Some(v) => Key::from(v.key.as_str()),
            None => t.key.clone(),
        };
        Ok((t.clone(), key))
    }
}

fn run_id(opts: &Options) -> String {
    opts.run_id
        .clone()
        .unwrap_or_else(|| crate::process_run_id().to_string())
}

fn receipt_of(r: os::Receipt) -> Receipt {
    Receipt {
        path: PathBuf::from(&r.url),
        size: r.size,
        sha256: Some(r.sha256),
        written_at: r.written_at,
        run_id: r.run_id,
        durability: crate::DurabilityHonoured::Store,
        owner_changed: None,
        object: Some(ObjectFacts {
            key: r.key,
            e_tag: r.e_tag,
            multipart: r.multipart,
        }),
    }
}

/// A reader of one object, fed by a thread with its own runtime: the blocking runtime of this
/// process may be busy writing what is read here (a copy between two stores), and one runtime
/// cannot wait for itself.
struct ObjectReader {
    rx: mpsc::Receiver<io::Result<bytes::Bytes>>,
    buf: bytes::Bytes,
    done: bool,
}

impl ObjectReader {
    fn spawn(t: Target, key: Key) -> ObjectReader {
        let (tx, rx) = mpsc::sync_channel(4);
        std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return drop(tx.send(Err(e))),
            };
            // A client of its own, made inside this runtime: an HTTP connection pooled by the
            // caller's client belongs to the runtime that opened it (the blocking runtime), whose
            // connection task nobody drives while this thread streams, so a GET that reused it
            // stalled until the request timeout (seen on Azurite and s3s-fs).
            let t = match rt.block_on(async { Target::parse(t.url()) }) {
                Ok(fresh) => fresh,
                Err(e) => return drop(tx.send(Err(io::Error::new(e.kind(), e.to_string())))),
            };
            rt.block_on(stream_into(&t, &key, &tx));
        });
        ObjectReader {
            rx,
            buf: bytes::Bytes::new(),
            done: false,
        }
    }
}

async fn stream_into(t: &Target, key: &Key, tx: &mpsc::SyncSender<io::Result<bytes::Bytes>>) {
    use futures::StreamExt;
    let url = t.url_of(key);
    let get = match t.store.get(key).await {
        Ok(g) => g,
        Err(e) => return drop(tx.send(Err(io_error(&url, e)))),
    };
    let mut s = get.into_stream();
    while let Some(chunk) = s.next().await {
        let item = chunk.map_err(|e| io_error(&url, e));
        let stop = item.is_err();
        // A dropped reader ends the download.
        if tx.send(item).is_err() || stop {
            return;
        }
    }
}

/// A store's read error as an `io::Error` of the right kind (the reader's caller names the
/// operation and the URL).
fn io_error(url: &str, e: object_store::Error) -> io::Error {
    let oe = os::Error::store("read", url, e);
    let why = std::error::Error::source(&oe).map_or_else(String::new, |s| s.to_string());
    io::Error::new(oe.kind(), why)
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() && !self.done {
            match self.rx.recv() {
                Ok(chunk) => self.buf = chunk?,
                Err(_) => self.done = true,
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        bytes::Buf::advance(&mut self.buf, n);
        Ok(n)
    }
}

impl Backend for Remote {
    fn display(&self) -> &str {
        &self.url
    }

    fn path(&self) -> &Path {
        Path::new(&self.url)
    }

    fn store(&self) -> StoreKind {
        match self.target.as_ref().map(Target::backend) {
            Some(os::Backend::Memory) => StoreKind::Memory,
            Some(os::Backend::Local) => StoreKind::File,
            Some(os::Backend::Gcs) => StoreKind::Gcs,
            Some(os::Backend::Azure) => StoreKind::Azure,
            _ => scheme_kind(&self.url),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            modes: false,
            symlinks: false,
            dirs: false,
            create_only: true,
            cas: true,
            lock_wait: false,
            batch: false,
        }
    }

    fn local_path(&self) -> Option<&Path> {
        None
    }

    fn join(&self, name: &std::ffi::OsStr) -> Result<Destination> {
        let Some(name) = name.to_str() else {
            return Err(Error::other(
                Op::OpenStore,
                &self.url,
                io::ErrorKind::InvalidInput,
                format!(
                    "`{}` is not UTF-8, and an object key must be",
                    name.to_string_lossy()
                ),
            ));
        };
        let base = if self.url.ends_with('/') {
            self.url.clone()
        } else {
            format!("{}/", self.url)
        };
        Ok(Destination(Box::new(Remote::open(&format!(
            "{base}{name}"
        ))?)))
    }

    fn name(&self) -> std::ffi::OsString {
        super::last_segment(&self.url).into()
    }

    fn is_container(&self) -> bool {
        self.target.is_none()
    }

    fn exists(&self) -> Result<bool> {
        let t = self.t()?;
        match block_on(t.store.head(&t.key)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(os::Error::store("check existence of", &self.url, e).into_error()),
        }
    }

    fn write(&self, input: &mut dyn Read, _source: &Path, opts: &Options) -> Result<Receipt> {
        self.check(opts)?;
        let t = self.t()?;
        if opts.no_clobber && self.exists()? {
            // Before the first byte is read; the conditional PUT stays the final word.
            return Err(Error::other(
                Op::Upload,
                &self.url,
                io::ErrorKind::AlreadyExists,
                "an object already exists at this key and the write is create-only",
            ));
        }
        let w = Self::write_options(opts);
        let r = block_on(os::write_target(t, &mut SyncReader(input), &w))?;
        // The object is visible: a signal report from now on says it was replaced.
        crate::interrupt::note_replaced(self.path());
        Ok(receipt_of(r))
    }

    fn write_manifest(&self, r: &Receipt, _opts: &Options) -> Result<Manifest> {
        let t = self.t()?;
        let sha = r.sha256.clone().unwrap_or_default();
        let m = Manifest::new(t.name(), r.size, sha, r.written_at, &r.run_id);
        let key = t.with_suffix(crate::manifest::MANIFEST_SUFFIX);
        let bytes = os::write::manifest_bytes(&m);
        let mode = object_store::PutMode::Overwrite;
        block_on(os::write::put_bytes(t, &key, bytes, mode, "write manifest"))?;
        Ok(m)
    }

    fn open_read(&self) -> Result<(Box<dyn Read + Send>, String)> {
        let (t, key) = self.read_key()?;
        let shown = t.url_of(&key);
        if let Some(root) = &t.local_root {
            // `file://`: the object is a local file, read with the source rules of
            // `open_source` (a symlink planted in a shared sticky directory is not followed,
            // the final open is O_NOFOLLOW below a directory fd), as `cat` or `cp` would
            // under fs.protected_symlinks; the object store itself would follow any link.
            let path = root.join(key.as_ref());
            let file =
                std::fs::File::from(crate::dest::open_source(&path, crate::dest::Want::Regular)?);
            let md = file
                .metadata()
                .map_err(|e| Error::new(Op::Inspect, &path, e))?;
            if !md.is_file() {
                return Err(Error::other(
                    Op::Read,
                    &shown,
                    io::ErrorKind::InvalidInput,
                    "is not a regular file",
                ));
            }
            return Ok((Box::new(file), shown));
        }
        Ok((Box::new(ObjectReader::spawn(t, key)), shown))
    }

    fn publish(&self, input: PublishInput<'_>, p: &Publisher) -> Result<Published> {
        self.check(p.write_options())?;
        let t = self.t()?;
        let mut opts = os::PublishOptions::new()
            .expect(p.expected())
            .keep(p.kept());
        opts.write.run_id = Some(run_id(p.write_options()));
        let out = match input {
            PublishInput::Dir(_) => {
                return Err(self.unsupported(
                    Op::Publish,
                    "an object store cannot make many objects visible at once; publish one \
                     archive (e.g. a tar file) instead",
                ));
            }
            PublishInput::Reader(r) => {
                block_on(os::versions::publish_outcome(t, &mut SyncReader(r), &opts))?
            }
            PublishInput::File(f) => {
                let mut file = crate::open_source(f)?;
                block_on(os::versions::publish_outcome(
                    t,
                    &mut SyncReader(&mut file),
                    &opts,
                ))?
            }
        };
        // The pointer moved: a signal report from now on says the destination was replaced.
        crate::interrupt::note_replaced(self.path());
        Ok(published_of(t, out))
    }

    fn latest(&self) -> Result<Option<VersionRef>> {
        let v = block_on(os::latest_target(self.t()?))?;
        Ok(v.map(|v| VersionRef {
            version: v.version,
            path: PathBuf::from(v.url),
        }))
    }

    fn versions(&self) -> Result<VersionList> {
        let list = block_on(os::versions_target(self.t()?))?;
        Ok(VersionList {
            current: list.iter().find(|v| v.current).map_or(0, |v| v.version),
            versions: list.into_iter().map(version_info).collect(),
            ignored: Vec::new(),
        })
    }

    fn verify(&self) -> Result<Verification> {
        Ok(block_on(os::versions::verification(self.t()?))?)
    }

    fn clean(&self, dry_run: bool) -> Result<VersionsCleanReport> {
        let (removed, bytes) = block_on(os::versions::clean_target(self.t()?, dry_run))?;
        Ok(VersionsCleanReport {
            removed: removed.into_iter().map(PathBuf::from).collect(),
            bytes,
            locked: false,
            warnings: Vec::new(),
        })
    }

    fn clean_temps(&self, _opts: &crate::CleanOptions) -> Result<crate::CleanReport> {
        Err(self.unsupported(
            Op::RemoveTemp,
            "an object store has no temporary files to clean (an upload is invisible until it \
             completes; abort stale multipart uploads with a lifecycle rule)",
        ))
    }

    fn copy_local(&self, src: &Path, opts: &Options, attrs: CopyAttrs<'_>) -> Result<Copied> {
        let file = std::fs::File::from(crate::dest::open_source(src, crate::dest::Want::Regular)?);
        let md = file
            .metadata()
            .map_err(|e| Error::new(Op::Inspect, src, e))?;
        if !md.is_file() {
            return Err(Error::other(
                Op::Read,
                src,
                io::ErrorKind::InvalidInput,
                "is not a regular file",
            ));
        }
        self.refuse_exposing(src, &md)?;
        let mut r = super::Counting::new(file, attrs.progress);
        Ok(Copied {
            receipt: self.write(&mut r, src, opts)?,
            method: None,
            source: src.display().to_string(),
        })
    }

    fn copy_many_local(
        &self,
        sources: &[Destination],
        opts: &Options,
        attrs: CopyAttrs<'_>,
        observer: &mut dyn CopyObserver,
    ) -> Result<CopyReport> {
        let mut report = CopyReport::default();
        for s in sources {
            let src =
                s.0.local_path()
                    .expect("copy_many_local gets local sources");
            let dst = self.join(&s.0.name())?;
            observer.copying(&dst);
            let c = dst.0.copy_local(src, opts, attrs)?;
            attrs.deliver(c, &mut report);
        }
        Ok(report)
    }
}

fn scheme_kind(url: &str) -> StoreKind {
    let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
    match scheme.as_str() {
        "memory" => StoreKind::Memory,
        "file" => StoreKind::File,
        "gs" => StoreKind::Gcs,
        "az" | "azure" | "abfs" | "abfss" | "adl" => StoreKind::Azure,
        _ => StoreKind::S3,
    }
}

fn version_info(v: os::VersionInfo) -> VersionInfo {
    VersionInfo {
        version: v.version,
        path: PathBuf::from(v.url),
        current: v.current,
        // A version object off the published history was never made current: a crashed or
        // in-flight publish, as a local pending marker says.
        pending: !v.published,
        kind: VersionKind::File,
        size: Some(v.size),
        sha256: Some(v.sha256),
        written_at: Some(v.written_at),
        run_id: Some(v.run_id),
        manifest_error: None,
    }
}

fn published_of(t: &Target, o: os::versions::Outcome) -> Published {
    let (removed, removed_bytes) = match &o.retention {
        // Every key removed, as a local publish lists every path: versions and manifests.
        Some(r) => (
            r.deleted
                .iter()
                .flat_map(|n| {
                    let url = t.url_of(&os::version_key(t, *n));
                    let manifest = format!("{url}{}", crate::manifest::MANIFEST_SUFFIX);
                    [PathBuf::from(url), PathBuf::from(manifest)]
                })
                .collect(),
            r.deleted_bytes,
        ),
        None => (Vec::new(), 0),
    };
    let r = o.receipt;
    Published {
        dst: PathBuf::from(&t.url),
        version: r.version.unwrap_or(0),
        previous: o.previous,
        path: PathBuf::from(&r.url),
        manifest: o.manifest,
        migrated: None,
        removed,
        removed_bytes,
        warnings: o.retention_error.into_iter().collect(),
        object: Some(ObjectFacts {
            key: r.key,
            e_tag: r.e_tag,
            multipart: r.multipart,
        }),
    }
}
