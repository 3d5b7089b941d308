//! The local backend: a path, served by the existing file functions (every guarantee of
//! [`Options::open`], [`Batch`], [`Publisher`], [`crate::versions()`] and [`crate::verify()`]
//! holds unchanged: this module only routes).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{
    Backend, Capabilities, Copied, CopyAttrs, CopyObserver, CopyReport, Counting, Destination,
    PublishInput, StoreKind,
};
use crate::{
    AtomicFile, Batch, CopyMethod, Error, Manifest, Op, Options, Published, Publisher, Receipt,
    Result, SourceFile, SourceOpener, Verification, VersionList, VersionRef, VersionsCleanReport,
};

/// A local destination. The path is held once: its display form is the path itself when it is
/// UTF-8 (almost always), and a lossy copy only otherwise (a `cp` of 100,000 files holds one
/// per source).
#[derive(Debug)]
pub(crate) struct Local {
    path: PathBuf,
    /// The lossy display form, for a path that is not UTF-8.
    lossy: Option<Box<str>>,
}

impl Local {
    pub(crate) fn new(path: PathBuf) -> Local {
        let lossy = match path.to_str() {
            Some(_) => None,
            None => Some(path.display().to_string().into_boxed_str()),
        };
        Local { path, lossy }
    }

    fn shown(&self) -> &str {
        match &self.lossy {
            Some(s) => s,
            None => self.path.to_str().unwrap_or_default(),
        }
    }
}

/// Opens a copy source with the `cp` rules ([`crate::open_source`]) and refuses anything but a
/// regular file (a directory, a FIFO, a device) with `InvalidInput`, without blocking on a FIFO.
fn open_regular(src: &Path) -> Result<(File, std::fs::Metadata)> {
    let f = File::from(crate::dest::open_source(src, crate::dest::Want::Regular)?);
    let md = f.metadata().map_err(|e| Error::new(Op::Inspect, src, e))?;
    if !md.is_file() {
        return Err(Error::other(
            Op::Read,
            src,
            io::ErrorKind::InvalidInput,
            "is not a regular file",
        ));
    }
    Ok((f, md))
}

/// Opens a copy source through `opener` (each parent directory walked once, the `cp` rules of
/// [`crate::open_source`]) and refuses anything but a regular file (a directory, a FIFO, a
/// device) with `InvalidInput`.
fn open_source_file(opener: &mut SourceOpener, src: &Path) -> Result<SourceFile> {
    let f = opener.open(src)?;
    if !f.is_file() {
        return Err(Error::other(
            Op::Read,
            src,
            io::ErrorKind::InvalidInput,
            "is not a regular file",
        ));
    }
    Ok(f)
}

/// The options of a copy of `src`: its size as a hint, and its mode (`cp`) or mode, owner and
/// group (`cp -p`).
fn copy_options(opts: &Options, src: &SourceFile, attrs: CopyAttrs<'_>) -> Options {
    let o = opts.clone().size_hint(src.len());
    if attrs.preserve {
        o.preserve_source(src.mode(), src.uid(), src.gid())
    } else {
        o.source_mode(src.mode())
    }
}

/// Copies `src` into `f`: with checksums the bytes pass through the hasher (and the progress
/// callback); otherwise the kernel copies them (reflink or `copy_file_range`, whose steps the
/// progress callback hears about).
fn copy_into(
    f: &mut AtomicFile,
    src: &SourceFile,
    checksum: bool,
    attrs: CopyAttrs<'_>,
) -> Result<CopyMethod> {
    if checksum {
        f.copy_from(&mut Counting::new(src.file(), attrs.progress), src.path())?;
        return Ok(CopyMethod::Buffered);
    }
    // The kernel copy reports its steps (at most 8 MiB each), so a bar advances during a
    // large copy_file_range instead of sitting at 0% until the end.
    let mut total = 0u64;
    let (_, m) = match attrs.progress {
        Some(p) => f.copy_from_source(
            src,
            Some(&mut |n| {
                total += n;
                p(total);
            }),
        )?,
        None => f.copy_from_source(src, None)?,
    };
    Ok(m)
}

impl Backend for Local {
    fn display(&self) -> &str {
        self.shown()
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn store(&self) -> StoreKind {
        StoreKind::Local
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            modes: true,
            symlinks: true,
            dirs: true,
            create_only: true,
            cas: true,
            lock_wait: true,
            batch: true,
        }
    }

    fn local_path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn join(&self, name: &std::ffi::OsStr) -> Result<Destination> {
        Ok(Destination(Box::new(Local::new(self.path.join(name)))))
    }

    fn name(&self) -> std::ffi::OsString {
        match self.path.file_name() {
            Some(n) => n.to_os_string(),
            None => super::last_segment(self.shown()).into(),
        }
    }

    fn is_container(&self) -> bool {
        self.path.as_os_str().as_encoded_bytes().ends_with(b"/") || self.path.is_dir()
    }

    fn exists(&self) -> Result<bool> {
        match std::fs::symlink_metadata(&self.path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::new(Op::Inspect, &self.path, e)),
        }
    }

    fn write(&self, input: &mut dyn Read, source: &Path, opts: &Options) -> Result<Receipt> {
        let mut f = opts.open(&self.path)?;
        if opts.no_clobber {
            // Before the first byte is read (the input may be long, or never end); the
            // create-only commit stays the final word.
            f.check_vacant()?;
        }
        f.copy_from(input, source)?;
        f.commit()
    }

    fn write_manifest(&self, r: &Receipt, opts: &Options) -> Result<Manifest> {
        crate::write_manifest(&r.path, r, opts)
    }

    fn open_read(&self) -> Result<(Box<dyn Read + Send>, String)> {
        let (f, _) = open_regular(&self.path)?;
        Ok((Box::new(f), self.shown().to_string()))
    }

    fn publish(&self, input: PublishInput<'_>, p: &Publisher) -> Result<Published> {
        match input {
            PublishInput::Dir(dir) => p.publish_dir(&self.path, dir),
            PublishInput::Reader(r) => {
                let mut pv = p.begin(&self.path)?;
                pv.file().copy_from(r, Path::new("<input>"))?;
                pv.commit()
            }
            PublishInput::File(f) => {
                let (mut file, md) = open_regular(f)?;
                // A first version gets the source's mode (never set-id, umask applied), like
                // `cp`; later versions keep the current version's.
                let p = p.clone().source_mode(md.mode() & 0o7777);
                let mut pv = p.begin(&self.path)?;
                pv.file().copy_from(&mut file, f)?;
                pv.commit()
            }
        }
    }

    fn latest(&self) -> Result<Option<VersionRef>> {
        crate::latest(&self.path)
    }

    fn versions(&self) -> Result<VersionList> {
        crate::versions(&self.path)
    }

    fn verify(&self) -> Result<Verification> {
        Ok(crate::verify(&self.path))
    }

    fn clean(&self, dry_run: bool) -> Result<VersionsCleanReport> {
        crate::clean_versions(&self.path, dry_run)
    }

    fn clean_temps(&self, opts: &crate::CleanOptions) -> Result<crate::CleanReport> {
        crate::clean_with(&self.path, opts)
    }

    fn copy_local(&self, src: &Path, opts: &Options, attrs: CopyAttrs<'_>) -> Result<Copied> {
        let file = open_source_file(&mut SourceOpener::default(), src)?;
        let mut f = copy_options(opts, &file, attrs).open(&self.path)?;
        if opts.no_clobber {
            f.check_vacant()?;
        }
        let method = copy_into(&mut f, &file, !opts.no_checksum, attrs)?;
        Ok(Copied {
            receipt: f.commit()?,
            method: Some(method),
            source: src.display().to_string(),
        })
    }

    /// One [`Batch`] for every file, whatever their number (the batch parks the oldest temps
    /// when it would exceed the descriptor limit): one data flush per filesystem, one `fsync`
    /// per directory, and an error names what was replaced and what not.
    fn copy_many_local(
        &self,
        sources: &[Destination],
        opts: &Options,
        attrs: CopyAttrs<'_>,
        observer: &mut dyn CopyObserver,
    ) -> Result<CopyReport> {
        let mut opener = SourceOpener::default();
        let mut batch = Batch::new(opts.clone()).expect_files(sources.len());
        let mut methods = Vec::with_capacity(sources.len());
        for s in sources {
            let src =
                s.0.local_path()
                    .expect("copy_many_local gets local sources");
            // Checked by `Destination::copy_many`: one non-empty segment.
            let dst = Destination(Box::new(Local::new(self.path.join(s.0.name()))));
            let file = open_source_file(&mut opener, src)?;
            let f = batch.open_with(dst.path(), copy_options(opts, &file, attrs))?;
            observer.copying(&dst);
            methods.push(copy_into(f, &file, !opts.no_checksum, attrs)?);
        }
        // Each receipt becomes its report entry (or goes to `attrs.copied`) as the batch hands
        // it over: the records and the receipts never both grow whole.
        let mut report = CopyReport::default();
        let mut out = None;
        let mut batch = Some(batch);
        observer.commit(&mut || {
            out = batch.take().map(|b| {
                let mut i = 0;
                b.commit_each(|receipt| {
                    let c = Copied {
                        receipt,
                        method: Some(methods[i]),
                        source: sources[i].display().to_string(),
                    };
                    i += 1;
                    attrs.deliver(c, &mut report);
                })
            });
        });
        let (dir_syncs, data_syncs) = out.expect("the observer ran the commit")?;
        report.dir_syncs = Some(dir_syncs);
        report.data_syncs = Some(data_syncs);
        Ok(report)
    }
}
