//! `atomwrite._native`: the Python bindings of the `atomwrite` library.
//!
//! This module is the thin native layer under the pure-Python package `atomwrite` (see
//! `python/atomwrite/__init__.py`, which users import): every write, copy, batch and publish is
//! the library's own code, called with the GIL released (`Python::detach`) for all I/O and
//! every `fsync`. Results cross the boundary as plain tuples, which the Python layer turns into
//! frozen dataclasses; errors become built-in `OSError` subclasses (chosen by errno, exactly as
//! `open()` does) carrying `errno`, `strerror`, `filename`, `filename2`, and the library's
//! operation name (`op`), with `atomwrite.ConflictError` for a lost compare-and-swap.
//!
//! Thread safety: every object here serialises its own use with a mutex, so sharing one between
//! threads is safe; the operations of one object run one at a time, different objects in
//! parallel.

use std::ffi::OsString;
use std::io::{Seek, SeekFrom};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use atomwrite::{
    AtomicFile, Batch, CleanOptions, Durability, Location, Options, PendingVersion, Publisher,
    Receipt, SymlinkPolicy,
};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// `atomwrite.ConflictError`, registered by the Python layer at import.
static CONFLICT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// A filesystem path from the Python layer, which passes `os.fsencode(path)`.
fn path_of(b: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(b))
}

fn os(p: &Path) -> OsString {
    p.as_os_str().to_os_string()
}

/// The errno of an error without an OS error behind it (the library's own refusals).
fn kind_errno(k: std::io::ErrorKind) -> i32 {
    use std::io::ErrorKind as K;
    match k {
        K::AlreadyExists => 17,                 // EEXIST
        K::PermissionDenied => 13,              // EACCES
        K::NotFound => 2,                       // ENOENT
        K::WouldBlock => 11,                    // EAGAIN
        K::Interrupted => 4,                    // EINTR
        K::IsADirectory => 21,                  // EISDIR
        K::NotADirectory => 20,                 // ENOTDIR
        K::StorageFull => 28,                   // ENOSPC
        K::ReadOnlyFilesystem => 30,            // EROFS
        K::InvalidInput | K::InvalidData => 22, // EINVAL
        K::Unsupported => 95,                   // EOPNOTSUPP
        K::TimedOut => 110,                     // ETIMEDOUT
        _ => 5,                                 // EIO
    }
}

/// The Python exception for a library error: `OSError(errno, message, filename, None,
/// filename2)`, which Python turns into the matching subclass (`FileExistsError`,
/// `PermissionError`, ...), with `op`, `hint` and, for a batch, `replaced`/`not_replaced`.
fn py_err(py: Python<'_>, e: atomwrite::Error) -> PyErr {
    let errno = e.raw_os_error().unwrap_or_else(|| kind_errno(e.kind()));
    let msg = e.to_string();
    let f1 = os(e.path());
    let f2 = e.path2().map(os);
    let args = (errno, msg, f1, None::<i32>, f2);
    let err = match (e.cas_versions(), CONFLICT_ERROR.get(py)) {
        (Some(_), Some(t)) => match t.bind(py).call1(args) {
            Ok(v) => PyErr::from_value(v),
            Err(e) => e,
        },
        _ => PyOSError::new_err(args),
    };
    let v = err.value(py);
    let _ = v.setattr("op", e.op().as_str());
    let _ = v.setattr("hint", e.hint());
    if let Some((expected, actual)) = e.cas_versions() {
        let _ = v.setattr("expected", expected);
        let _ = v.setattr("actual", actual);
    }
    if let Some(b) = e.batch_outcome() {
        let list = |ps: &[PathBuf]| ps.iter().map(|p| os(p)).collect::<Vec<_>>();
        let _ = v.setattr("replaced", list(b.replaced()));
        let _ = v.setattr("not_replaced", list(b.not_replaced()));
    }
    err
}

/// Runs `f` without the GIL and converts its error.
fn io<T: Send>(py: Python<'_>, f: impl FnOnce() -> atomwrite::Result<T> + Send) -> PyResult<T> {
    py.detach(f).map_err(|e| py_err(py, e))
}

fn durability(s: &str) -> PyResult<Durability> {
    match s {
        "full" => Ok(Durability::Full),
        "integrity" => Ok(Durability::Integrity),
        "none" => Ok(Durability::None),
        _ => Err(PyValueError::new_err(format!(
            "durability must be 'full', 'integrity' or 'none', not {s:?}"
        ))),
    }
}

fn options(dur: &str, mode: Option<u32>, no_clobber: bool, follow: bool) -> PyResult<Options> {
    let mut o = Options::new()
        .durability(durability(dur)?)
        .no_clobber(no_clobber)
        .symlinks(if follow {
            SymlinkPolicy::Follow
        } else {
            SymlinkPolicy::Replace
        });
    if let Some(m) = mode {
        if m > 0o7777 {
            return Err(PyValueError::new_err(format!(
                "mode must be between 0 and 0o7777, not {m:#o}"
            )));
        }
        o = o.mode(m);
    }
    Ok(o)
}

/// `(uid_from, gid_from, uid_to, gid_to, setid_dropped)`.
type OwnerTuple = (u32, u32, u32, u32, bool);

/// `(path, size, sha256, seconds, microseconds, run_id, durability, owner_changed, manifest)`.
type ReceiptTuple = (
    OsString,
    u64,
    Option<String>,
    u64,
    u32,
    String,
    &'static str,
    Option<OwnerTuple>,
    Option<OsString>,
);

fn receipt(r: &Receipt, manifest: Option<PathBuf>) -> ReceiptTuple {
    let t = r
        .written_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    (
        os(&r.path),
        r.size,
        r.sha256.clone(),
        t.as_secs(),
        t.subsec_micros(),
        r.run_id.clone(),
        r.durability.as_str(),
        r.owner_changed
            .map(|c| (c.from_uid, c.from_gid, c.to_uid, c.to_gid, c.setid_dropped)),
        manifest.as_deref().map(os),
    )
}

/// Writes the sidecar manifest after a commit (as the CLI's `--manifest`), returning its path.
fn after_commit(r: &Receipt, opts: &Options, manifest: bool) -> atomwrite::Result<Option<PathBuf>> {
    if !manifest {
        return Ok(None);
    }
    atomwrite::write_manifest(&r.path, r, opts)?;
    Ok(Some(atomwrite::manifest_path(&r.path)))
}

/// Registers `atomwrite.ConflictError` (called once by the Python layer).
#[pyfunction]
fn _set_conflict_error(py: Python<'_>, t: Bound<'_, PyType>) {
    let _ = CONFLICT_ERROR.set(py, t.unbind());
}

/// The one place a destination is classified: `None` for a local path, the scheme (`"s3"`,
/// `"gs"`, ...) for an object-store URL; a `ValueError` naming the URL probably meant for a
/// typo such as `s3:/bucket/key` (see `atomwrite::location`).
#[pyfunction]
fn classify(path: Vec<u8>) -> PyResult<Option<String>> {
    let p = OsString::from_vec(path);
    match Location::parse(&p) {
        Ok(l) => Ok(l.scheme().map(str::to_string)),
        Err(e) => Err(PyValueError::new_err(e.to_string())),
    }
}

/// One atomic write of `data` (see `atomwrite.write`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn write(
    py: Python<'_>,
    path: Vec<u8>,
    data: PyBackedBytes,
    durability: &str,
    mode: Option<u32>,
    no_clobber: bool,
    follow_symlinks: bool,
    manifest: bool,
    checksum: bool,
) -> PyResult<ReceiptTuple> {
    let opts =
        options(durability, mode, no_clobber, follow_symlinks)?.checksum(checksum || manifest);
    let path = path_of(path);
    io(py, || {
        let r = write_hashing_aside(&opts, checksum || manifest, &path, &data)?;
        let m = after_commit(&r, &opts, manifest)?;
        Ok(receipt(&r, m))
    })
}

/// From this size on, `write` hashes on a second thread while the library writes and syncs.
const HASH_ASIDE_FROM: usize = 8 << 20;

/// `opts.write(path, data)`; for large data the sha256 is computed on a helper thread over the
/// same immutable bytes while the library writes and `fsync`s them (the library's own streams
/// do the same past 8 MiB), so a large write costs max(I/O, hash) instead of their sum. The
/// receipt carries the hash exactly as if the library had computed it inline.
fn write_hashing_aside(
    opts: &Options,
    checksum: bool,
    path: &Path,
    data: &[u8],
) -> atomwrite::Result<Receipt> {
    use sha2::Digest;
    if data.len() < HASH_ASIDE_FROM || !checksum {
        return opts.write(path, data);
    }
    let unhashed = opts.clone().checksum(false);
    let (r, sha) = std::thread::scope(|s| {
        let hasher = s.spawn(|| hex::encode(sha2::Sha256::digest(data)));
        let r = unhashed.write(path, data);
        (r, hasher.join().expect("the sha256 thread does not panic"))
    });
    let mut r = r?;
    r.sha256 = Some(sha);
    Ok(r)
}

/// An atomic copy of `src` to `dst`, as `atomwrite cp` (see `atomwrite.copy`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn copy(
    py: Python<'_>,
    src: Vec<u8>,
    dst: Vec<u8>,
    durability: &str,
    mode: Option<u32>,
    no_clobber: bool,
    follow_symlinks: bool,
    manifest: bool,
    preserve: bool,
    checksum: bool,
) -> PyResult<ReceiptTuple> {
    let base = options(durability, mode, no_clobber, follow_symlinks)?;
    let (src, dst) = (path_of(src), path_of(dst));
    io(py, || {
        let file = atomwrite::open_source(&src)?;
        let md = file
            .metadata()
            .map_err(|e| atomwrite::Error::new(atomwrite::Op::Inspect, &src, e))?;
        if !md.is_file() {
            let kind = if md.is_dir() {
                std::io::ErrorKind::IsADirectory
            } else {
                std::io::ErrorKind::InvalidInput
            };
            return Err(atomwrite::Error::other(
                atomwrite::Op::Read,
                &src,
                kind,
                "is not a regular file",
            ));
        }
        use std::os::unix::fs::MetadataExt;
        let checksum = checksum || manifest;
        let o = base.clone().checksum(checksum).size_hint(md.len());
        let o = if preserve {
            o.preserve_source(md.mode() & 0o7777, md.uid(), md.gid())
        } else {
            o.source_mode(md.mode() & 0o7777)
        };
        let mut f = o.open(&dst)?;
        if checksum {
            let mut r = &file;
            f.copy_from(&mut r, &src)?;
        } else {
            f.copy_from_file(&file, &src)?;
        }
        let r = f.commit()?;
        let m = after_commit(&r, &base, manifest)?;
        Ok(receipt(&r, m))
    })
}

/// The raw file under `atomwrite.open()`: an `io.RawIOBase`-like object over an
/// [`AtomicFile`]. `close()` only closes; `commit()` publishes; dropping it (or `discard()`)
/// removes the temporary file and leaves the destination untouched.
#[pyclass(module = "atomwrite._native")]
struct RawFile {
    file: Mutex<Option<AtomicFile>>,
    dest: OsString,
    opts: Options,
    manifest: bool,
}

impl RawFile {
    fn lock(&self) -> MutexGuard<'_, Option<AtomicFile>> {
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn closed_err() -> PyErr {
        PyValueError::new_err("I/O operation on closed file.")
    }

    /// Runs `f` on the open file without the GIL. The mutex is taken and released inside the
    /// GIL-free section, never held while waiting for the GIL: a thread holding the GIL that
    /// waits for the mutex cannot deadlock with a holder that needs the GIL back.
    fn with_file<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut AtomicFile) -> atomwrite::Result<T> + Send,
    ) -> PyResult<T> {
        match py.detach(|| self.lock().as_mut().map(f)) {
            None => Err(Self::closed_err()),
            Some(r) => r.map_err(|e| py_err(py, e)),
        }
    }

    /// Takes the file out (closing this object), without the GIL.
    fn take(&self, py: Python<'_>) -> Option<AtomicFile> {
        py.detach(|| self.lock().take())
    }
}

#[pymethods]
impl RawFile {
    #[new]
    #[pyo3(signature = (path, durability, mode, no_clobber, follow_symlinks, manifest, size_hint=None, checksum=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: Vec<u8>,
        durability: &str,
        mode: Option<u32>,
        no_clobber: bool,
        follow_symlinks: bool,
        manifest: bool,
        size_hint: Option<u64>,
        checksum: bool,
    ) -> PyResult<RawFile> {
        let mut opts =
            options(durability, mode, no_clobber, follow_symlinks)?.checksum(checksum || manifest);
        if let Some(n) = size_hint {
            opts = opts.size_hint(n);
        }
        let path = path_of(path);
        let f = io(py, || opts.open(&path))?;
        Ok(RawFile {
            dest: os(f.destination()),
            file: Mutex::new(Some(f)),
            opts,
            manifest,
        })
    }

    /// The destination the commit will replace (after following a symlink, if any).
    #[getter]
    fn destination(&self) -> OsString {
        self.dest.clone()
    }

    /// Whether the file was committed, discarded or closed.
    #[getter]
    fn closed(&self) -> bool {
        self.lock().is_none()
    }

    fn readable(&self) -> bool {
        false
    }

    fn writable(&self) -> bool {
        true
    }

    fn seekable(&self) -> bool {
        true
    }

    fn isatty(&self) -> bool {
        false
    }

    /// Writes all of `data` to the temporary file (GIL released); returns its length.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let bytes: PyBackedBytes = match data.extract() {
            Ok(b) => b,
            // A memoryview (what io.BufferedWriter passes) or another buffer: one copy.
            Err(_) => py
                .import("builtins")?
                .getattr("bytes")?
                .call1((data,))?
                .extract()?,
        };
        self.with_file(py, |f| f.write_all_bytes(&bytes))?;
        Ok(bytes.len())
    }

    #[pyo3(signature = (offset, whence=0))]
    fn seek(&self, py: Python<'_>, offset: i64, whence: i32) -> PyResult<u64> {
        let pos =
            match whence {
                0 => SeekFrom::Start(u64::try_from(offset).map_err(|_| {
                    PyValueError::new_err(format!("negative seek position {offset}"))
                })?),
                1 => SeekFrom::Current(offset),
                2 => SeekFrom::End(offset),
                _ => return Err(PyValueError::new_err(format!("invalid whence ({whence})"))),
            };
        self.with_file(py, |f| {
            f.seek(pos)
                .map_err(|e| atomwrite::Error::new(atomwrite::Op::Seek, f.destination(), e))
        })
    }

    fn tell(&self, py: Python<'_>) -> PyResult<u64> {
        self.seek(py, 0, 1)
    }

    /// Truncates (or extends) the file to `size` bytes (default: the current position).
    #[pyo3(signature = (size=None))]
    fn truncate(&self, py: Python<'_>, size: Option<u64>) -> PyResult<u64> {
        let size = match size {
            Some(s) => s,
            None => self.tell(py)?,
        };
        self.with_file(py, |f| f.set_len(size))?;
        Ok(size)
    }

    /// Nothing to do: writes go straight to the temporary file (durability is the commit's).
    fn flush(&self) -> PyResult<()> {
        Ok(())
    }

    /// Refused: bytes written through the descriptor would bypass the size and sha256
    /// accounting, and the receipt would lie.
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        let unsupported = py.import("io")?.getattr("UnsupportedOperation")?;
        let msg = "fileno() is not available on an atomwrite file: write through the file object";
        Err(PyErr::from_value(unsupported.call1((msg,))?))
    }

    /// Bytes written so far.
    fn __len__(&self) -> usize {
        self.lock().as_ref().map_or(0, |f| f.len() as usize)
    }

    /// The path of the named temporary file, if one is in use (`None` for an anonymous
    /// `O_TMPFILE` inode, or once closed).
    #[getter]
    fn temp_path(&self) -> Option<OsString> {
        self.lock()
            .as_ref()?
            .temp_path()
            .map(|p| p.into_os_string())
    }

    /// Publishes the written bytes atomically with the configured durability (GIL released),
    /// then writes the manifest if asked. The file is closed afterwards, whether it succeeded
    /// or not; on failure the temporary file is removed and the destination is untouched.
    fn commit(&self, py: Python<'_>) -> PyResult<ReceiptTuple> {
        let f = self.take(py).ok_or_else(Self::closed_err)?;
        let (opts, manifest) = (&self.opts, self.manifest);
        io(py, move || {
            let r = f.commit()?;
            let m = after_commit(&r, opts, manifest)?;
            Ok(receipt(&r, m))
        })
    }

    /// Removes the temporary file; the destination is untouched. A no-op once closed.
    fn discard(&self, py: Python<'_>) -> PyResult<()> {
        match self.take(py) {
            Some(f) => io(py, move || f.discard()),
            None => Ok(()),
        }
    }

    /// Closes without publishing (the Python layer commits explicitly before closing).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.discard(py)
    }
}

/// A batch of atomic writes made durable together (see `atomwrite.Batch`).
#[pyclass(module = "atomwrite._native")]
struct NativeBatch {
    batch: Mutex<Option<Batch>>,
    opts: Options,
    manifest: bool,
}

impl NativeBatch {
    fn lock(&self) -> MutexGuard<'_, Option<Batch>> {
        self.batch.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl NativeBatch {
    #[new]
    fn new(
        durability: &str,
        mode: Option<u32>,
        no_clobber: bool,
        follow_symlinks: bool,
        manifest: bool,
        checksum: bool,
    ) -> PyResult<NativeBatch> {
        let opts =
            options(durability, mode, no_clobber, follow_symlinks)?.checksum(checksum || manifest);
        Ok(NativeBatch {
            batch: Mutex::new(Some(Batch::new(opts.clone()))),
            opts,
            manifest,
        })
    }

    /// Adds a file (written to its temporary now, published at commit).
    fn add(&self, py: Python<'_>, path: Vec<u8>, data: PyBackedBytes) -> PyResult<()> {
        let path = path_of(path);
        // The mutex is taken inside the GIL-free section (see `RawFile::with_file`).
        match py.detach(|| self.lock().as_mut().map(|b| b.add(&path, &data))) {
            None => Err(PyValueError::new_err(
                "the batch was already committed or discarded",
            )),
            Some(r) => r.map_err(|e| py_err(py, e)),
        }
    }

    fn __len__(&self) -> usize {
        self.lock().as_ref().map_or(0, |b| b.len())
    }

    /// Publishes every file: `(receipts, dir_syncs, data_syncs)`.
    fn commit(&self, py: Python<'_>) -> PyResult<(Vec<ReceiptTuple>, usize, usize)> {
        let b = py
            .detach(|| self.lock().take())
            .ok_or_else(|| PyValueError::new_err("the batch was already committed or discarded"))?;
        let (opts, manifest) = (&self.opts, self.manifest);
        io(py, move || {
            let r = b.commit()?;
            let mut out = Vec::with_capacity(r.files.len());
            for f in &r.files {
                let m = after_commit(f, opts, manifest)?;
                out.push(receipt(f, m));
            }
            Ok((out, r.dir_syncs, r.data_syncs))
        })
    }

    /// Removes every temporary file; no destination is touched.
    fn discard(&self, py: Python<'_>) {
        py.detach(|| drop(self.lock().take()));
    }
}

/// `(dst, version, previous, path, size, sha256, migrated, removed, warnings)`.
type PublishedTuple = (
    OsString,
    u64,
    u64,
    OsString,
    u64,
    String,
    Option<u64>,
    Vec<OsString>,
    Vec<String>,
);

fn published(p: &atomwrite::Published) -> PublishedTuple {
    (
        os(&p.dst),
        p.version,
        p.previous,
        os(&p.path),
        p.manifest.size,
        p.manifest.sha256.clone(),
        p.migrated,
        p.removed.iter().map(|x| os(x)).collect(),
        p.warnings.clone(),
    )
}

/// Publishes the next version of `dst` from `data`, the file `from_path`, or the tree `dir`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (dst, data, from_path, dir, keep, expect, durability, mode, wait_timeout))]
fn publish(
    py: Python<'_>,
    dst: Vec<u8>,
    data: Option<PyBackedBytes>,
    from_path: Option<Vec<u8>>,
    dir: Option<Vec<u8>>,
    keep: Option<usize>,
    expect: Option<u64>,
    durability: &str,
    mode: Option<u32>,
    wait_timeout: Option<f64>,
) -> PyResult<PublishedTuple> {
    let mut p = Publisher::new().options(options(durability, mode, false, true)?);
    if let Some(k) = keep {
        p = p.keep(k);
    }
    if let Some(v) = expect {
        p = p.expect(v);
    }
    if let Some(t) = wait_timeout {
        let d = Duration::try_from_secs_f64(t)
            .map_err(|e| PyValueError::new_err(format!("wait_timeout: {e}")))?;
        p = p.wait_timeout(d);
    }
    let dst = path_of(dst);
    let r = match (data, from_path, dir) {
        (Some(d), None, None) => io(py, || p.publish(&dst, &d)),
        (None, Some(src), None) => {
            let src = path_of(src);
            io(py, || {
                let file = atomwrite::open_source(&src)?;
                let md = file
                    .metadata()
                    .map_err(|e| atomwrite::Error::new(atomwrite::Op::Inspect, &src, e))?;
                if md.is_dir() {
                    return Err(atomwrite::Error::other(
                        atomwrite::Op::Read,
                        &src,
                        std::io::ErrorKind::IsADirectory,
                        "is a directory (use dir= to publish a tree)",
                    ));
                }
                use std::os::unix::fs::PermissionsExt;
                let p = p.source_mode(md.permissions().mode());
                let mut pv: PendingVersion = p.begin(&dst)?;
                let mut r = &file;
                pv.file().copy_from(&mut r, &src)?;
                pv.commit()
            })
        }
        (None, None, Some(tree)) => {
            let tree = path_of(tree);
            io(py, || p.publish_dir(&dst, &tree))
        }
        _ => Err(PyValueError::new_err(
            "give exactly one of data, from_path= or dir=",
        )),
    }?;
    Ok(published(&r))
}

/// `(version, path)` of the version `dst` points at, or `None`.
#[pyfunction]
fn latest(py: Python<'_>, dst: Vec<u8>) -> PyResult<Option<(u64, OsString)>> {
    let dst = path_of(dst);
    let v = io(py, || atomwrite::latest(&dst))?;
    Ok(v.map(|v| (v.version, os(&v.path))))
}

/// `(version, path, current, pending, kind, size, sha256, written_at, run_id, manifest_error)`.
type VersionTuple = (
    u64,
    OsString,
    bool,
    bool,
    &'static str,
    Option<u64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// `(versions, current, ignored)`.
type VersionsTuple = (Vec<VersionTuple>, u64, Vec<OsString>);

fn version_list(l: atomwrite::VersionList) -> VersionsTuple {
    let vs = l
        .versions
        .into_iter()
        .map(|v| {
            (
                v.version,
                os(&v.path),
                v.current,
                v.pending,
                match v.kind {
                    atomwrite::VersionKind::File => "file",
                    atomwrite::VersionKind::Directory => "directory",
                },
                v.size,
                v.sha256,
                v.written_at,
                v.run_id,
                v.manifest_error,
            )
        })
        .collect();
    (vs, l.current, l.ignored.iter().map(|p| os(p)).collect())
}

/// Every version of `dst`, oldest first: `(versions, current, ignored)`.
#[pyfunction]
fn versions(py: Python<'_>, dst: Vec<u8>) -> PyResult<VersionsTuple> {
    let dst = path_of(dst);
    Ok(version_list(io(py, || atomwrite::versions(&dst))?))
}

/// `(path, data_path, manifest_path, status, detail, size, sha256, expected_size,
/// expected_sha256)`.
type VerifyTuple = (
    OsString,
    OsString,
    OsString,
    &'static str,
    String,
    Option<u64>,
    Option<String>,
    Option<u64>,
    Option<String>,
);

/// Checks `path` against its manifest; never raises for what it finds.
#[pyfunction]
fn verify(py: Python<'_>, path: Vec<u8>) -> VerifyTuple {
    let path = path_of(path);
    verification(&py.detach(|| atomwrite::verify(&path)))
}

fn verification(v: &atomwrite::Verification) -> VerifyTuple {
    (
        os(&v.path),
        os(&v.data_path),
        os(&v.manifest_path),
        v.status.as_str(),
        v.detail.clone(),
        v.size,
        v.sha256.clone(),
        v.manifest.as_ref().map(|m| m.size),
        v.manifest.as_ref().map(|m| m.sha256.clone()),
    )
}

/// `(removed, bytes, leftovers, leftover_bytes, locked, busy, young, warnings)`.
type CleanTuple = (
    Vec<OsString>,
    u64,
    Vec<OsString>,
    u64,
    Vec<OsString>,
    Vec<OsString>,
    Vec<OsString>,
    Vec<String>,
);

/// Removes leftovers of crashed writers and publishers in `dir` (see `atomwrite.clean`).
#[pyfunction]
fn clean(
    py: Python<'_>,
    dir: Vec<u8>,
    older_than: f64,
    dry_run: bool,
    recursive: bool,
) -> PyResult<CleanTuple> {
    let older_than = Duration::try_from_secs_f64(older_than)
        .map_err(|e| PyValueError::new_err(format!("older_than: {e}")))?;
    let dir = path_of(dir);
    let o = CleanOptions {
        older_than,
        dry_run,
        recursive,
    };
    let r = io(py, || atomwrite::clean_with(&dir, &o))?;
    let l = |v: &[PathBuf]| v.iter().map(|p| os(p)).collect::<Vec<_>>();
    Ok((
        l(&r.removed),
        r.bytes,
        l(&r.leftovers),
        r.leftover_bytes,
        l(&r.locked),
        l(&r.busy),
        l(&r.young),
        r.warnings,
    ))
}

/// Removes the leftovers of crashed publishes of one destination (`atomwrite.clean(dst)`
/// when `dst` is not a directory): `(removed, bytes, locked, warnings)`.
#[pyfunction]
fn clean_versions(
    py: Python<'_>,
    dst: Vec<u8>,
    dry_run: bool,
) -> PyResult<(Vec<OsString>, u64, bool, Vec<String>)> {
    let dst = path_of(dst);
    let r = io(py, || atomwrite::clean_versions(&dst, dry_run))?;
    Ok((
        r.removed.iter().map(|p| os(p)).collect(),
        r.bytes,
        r.locked,
        r.warnings,
    ))
}

/// The run id receipts carry in this process.
#[pyfunction]
fn run_id() -> &'static str {
    atomwrite::process_run_id()
}

/// Object-store URLs, through the library's one destination interface
/// (`atomwrite::destination`, the CLI's too): the same `Options`, `Publisher`, receipts and
/// errors as local paths.
#[cfg(feature = "object-store")]
mod url {
    use super::*;
    use atomwrite::destination::{self, Destination, PublishInput};

    fn open(py: Python<'_>, url: &str) -> PyResult<Destination> {
        destination::open(url).map_err(|e| py_err(py, e))
    }

    /// A lost compare-and-swap on a store: `ConflictError` with `expected` and `actual` (the
    /// library's own numbers, else the pointer read once more right after the conflict).
    fn publish_err(
        py: Python<'_>,
        d: &Destination,
        e: atomwrite::Error,
        expect: Option<u64>,
    ) -> PyErr {
        let (Some(want), true, None) = (expect, e.is_conflict(), e.cas_versions()) else {
            return py_err(py, e);
        };
        let err = py_err(py, e);
        let v = err.value(py);
        let actual = py
            .detach(|| d.latest())
            .ok()
            .map(|l| l.map_or(0, |v| v.version));
        let attr = |a: &str| v.getattr(a).ok();
        let args = (
            attr("errno"),
            attr("strerror"),
            attr("filename"),
            None::<i32>,
            attr("filename2"),
        );
        if let Some(t) = CONFLICT_ERROR.get(py)
            && let Ok(c) = t.bind(py).call1(args)
        {
            for a in ["op", "hint"] {
                if let Ok(x) = v.getattr(a) {
                    let _ = c.setattr(a, x);
                }
            }
            let _ = c.setattr("expected", want);
            let _ = c.setattr("actual", actual);
            return PyErr::from_value(c);
        }
        err
    }

    /// `atomwrite.write(URL, data)`: one atomic PUT (or multipart upload), as the CLI's write.
    #[pyfunction]
    pub fn url_write(
        py: Python<'_>,
        url: String,
        data: PyBackedBytes,
        no_clobber: bool,
        manifest: bool,
    ) -> PyResult<ReceiptTuple> {
        let d = open(py, &url)?;
        let opts = Options::new().no_clobber(no_clobber);
        io(py, || {
            let r = d.write(&mut &data[..], &opts)?;
            let m = if manifest {
                d.write_manifest(&r, &opts)?;
                Some(PathBuf::from(format!("{url}.manifest.json")))
            } else {
                None
            };
            Ok(receipt(&r, m))
        })
    }

    /// `atomwrite.publish(URL, data)`: a new version behind the store's pointer.
    #[pyfunction]
    pub fn url_publish(
        py: Python<'_>,
        url: String,
        data: PyBackedBytes,
        keep: Option<usize>,
        expect: Option<u64>,
    ) -> PyResult<PublishedTuple> {
        let d = open(py, &url)?;
        let mut p = Publisher::new();
        if let Some(k) = keep {
            p = p.keep(k);
        }
        if let Some(v) = expect {
            p = p.expect(v);
        }
        let r = py
            .detach(|| d.publish(PublishInput::Reader(&mut &data[..]), &p))
            .map_err(|e| publish_err(py, &d, e, expect))?;
        Ok(published(&r))
    }

    /// `(version, url)` of the current version, or `None`.
    #[pyfunction]
    pub fn url_latest(py: Python<'_>, url: String) -> PyResult<Option<(u64, OsString)>> {
        let d = open(py, &url)?;
        let v = io(py, || d.latest())?;
        Ok(v.map(|v| (v.version, os(&v.path))))
    }

    /// Every version, oldest first: `(versions, current, ignored)`.
    #[pyfunction]
    pub fn url_versions(py: Python<'_>, url: String) -> PyResult<VersionsTuple> {
        let d = open(py, &url)?;
        Ok(version_list(io(py, || d.versions())?))
    }

    /// Checks the object (or the current version) against its manifest.
    #[pyfunction]
    pub fn url_verify(py: Python<'_>, url: String) -> PyResult<VerifyTuple> {
        let d = open(py, &url)?;
        Ok(verification(&io(py, || d.verify())?))
    }

    pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add_function(wrap_pyfunction!(url_write, m)?)?;
        m.add_function(wrap_pyfunction!(url_publish, m)?)?;
        m.add_function(wrap_pyfunction!(url_latest, m)?)?;
        m.add_function(wrap_pyfunction!(url_versions, m)?)?;
        m.add_function(wrap_pyfunction!(url_verify, m)?)?;
        m.add("OBJECT_STORE", true)?;
        Ok(())
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    #[cfg(feature = "object-store")]
    url::register(m)?;
    #[cfg(not(feature = "object-store"))]
    m.add("OBJECT_STORE", false)?;
    m.add_function(wrap_pyfunction!(_set_conflict_error, m)?)?;
    m.add_function(wrap_pyfunction!(classify, m)?)?;
    m.add_function(wrap_pyfunction!(write, m)?)?;
    m.add_function(wrap_pyfunction!(copy, m)?)?;
    m.add_function(wrap_pyfunction!(publish, m)?)?;
    m.add_function(wrap_pyfunction!(latest, m)?)?;
    m.add_function(wrap_pyfunction!(versions, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(clean, m)?)?;
    m.add_function(wrap_pyfunction!(clean_versions, m)?)?;
    m.add_function(wrap_pyfunction!(run_id, m)?)?;
    m.add_class::<RawFile>()?;
    m.add_class::<NativeBatch>()?;
    Ok(())
}
