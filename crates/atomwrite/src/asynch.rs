//! Async facade over the blocking write path (feature `tokio`).
//!
//! Every operation that can block — creating the temporary file, writing, `fsync`, the
//! rename, the directory `fsync`, taking the publisher lock — runs on tokio's blocking thread
//! pool ([`tokio::task::spawn_blocking`]), one job per operation, so an `fsync` that takes a
//! second never stalls the other tasks of the runtime, even on a `current_thread` runtime.
//! The guarantees are exactly those of the blocking API (see the crate docs): the same
//! [`Options`], [`Receipt`], [`Error`] and [`Durability`](crate::Durability) levels.
//!
//! | blocking | async |
//! |---|---|
//! | [`crate::write()`] / [`Options::write`] | [`write()`] / [`write_opts`] |
//! | [`crate::write_with`] | [`write_with`] (the closure runs on the blocking pool) |
//! | [`AtomicFile`] (`Write`, `commit`, `discard`) | [`AsyncAtomicFile`] (`write_all(..).await`, `commit().await`, `discard().await`) |
//! | [`Publisher::publish`] | [`publish`] / [`publish_with`] |
//! | `cp` ([`AtomicFile::copy_from_file`]) | [`copy`] / [`copy_opts`] |
//!
//! For object stores (S3, GCS, Azure, `file://`, `memory://`) use [`crate::destination`] (the
//! one interface for paths and URLs) from `tokio::task::spawn_blocking`.
//!
//! **Cancellation.** Dropping a future of this module never leaves a partial destination: the
//! job already handed to the blocking pool runs to its end, and a file that was not committed
//! is discarded when that job drops it (like dropping an [`AtomicFile`]). Dropping the future
//! of a `commit` may still let the commit complete — exactly as a process killed right after
//! `rename` would. An [`AsyncAtomicFile`] whose `write_all` was cancelled is poisoned: later
//! calls fail with an error, and nothing is published.
//!
//! Requires a tokio runtime (any flavour); calling these outside one panics, as tokio does.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("out.csv");
//! // One call, like `atomwrite::write`:
//! let receipt = atomwrite::asynch::write(&path, b"a,b\n1,2\n".to_vec()).await?;
//! assert_eq!(receipt.size, 8);
//!
//! // Streaming, like `AtomicFile`: nothing is visible before `commit`.
//! let mut f = atomwrite::asynch::AsyncAtomicFile::open(&path).await?;
//! for i in 0..3 {
//!     f.write_all(format!("{i}\n").as_bytes()).await?;
//! }
//! let receipt = f.commit().await?;
//! assert_eq!(std::fs::read_to_string(&path)?, "0\n1\n2\n");
//! # let _ = receipt;
//! # Ok(())
//! # }
//! ```

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::{AtomicFile, Error, Op, Options, Published, Publisher, Receipt, Result};

/// Runs `f` on the blocking pool and waits for it without blocking the runtime. A panic in
/// `f` is resumed here, like a panic in the blocking API would propagate.
async fn blocking<T, F>(path: &Path, f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Error::other(
            Op::Write,
            path,
            io::ErrorKind::Interrupted,
            format!("the blocking task was cancelled (runtime shutting down): {e}"),
        )),
    }
}

/// Async [`crate::write`]: writes `bytes` to `path` atomically and durably with the default
/// [`Options`]. Takes the bytes by value (`Vec<u8>`, `String`, `&'static [u8]`, `bytes::Bytes`,
/// ...) because they are handed to the blocking pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), atomwrite::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("state.json");
/// atomwrite::asynch::write(&path, br#"{"step":1}"#).await?;
/// # assert_eq!(std::fs::read(&path).unwrap(), br#"{"step":1}"#);
/// # Ok(())
/// # }
/// ```
pub async fn write<B>(path: impl AsRef<Path>, bytes: B) -> Result<Receipt>
where
    B: AsRef<[u8]> + Send + 'static,
{
    write_opts(Options::new(), path, bytes).await
}

/// Async [`Options::write`]: like [`write()`] with explicit options.
pub async fn write_opts<B>(opts: Options, path: impl AsRef<Path>, bytes: B) -> Result<Receipt>
where
    B: AsRef<[u8]> + Send + 'static,
{
    let path = path.as_ref().to_path_buf();
    let p = path.clone();
    blocking(&path, move || opts.write(&p, bytes.as_ref())).await
}

/// Async [`crate::write_with`]: opens `path` with `opts`, runs `fill` on the blocking pool to
/// stream into the [`AtomicFile`], and commits if `fill` returns `Ok`. Blocking I/O inside
/// `fill` (reading a file, `std::io::copy`) is fine: it does not run on the runtime's threads.
///
/// ```
/// use std::io::Write;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), atomwrite::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("numbers.txt");
/// atomwrite::asynch::write_with(atomwrite::Options::new(), &path, |f| {
///     for i in 0..3 {
///         writeln!(f, "{i}")?;
///     }
///     Ok(())
/// })
/// .await?;
/// # assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n1\n2\n");
/// # Ok(())
/// # }
/// ```
pub async fn write_with<F>(opts: Options, path: impl AsRef<Path>, fill: F) -> Result<Receipt>
where
    F: FnOnce(&mut AtomicFile) -> io::Result<()> + Send + 'static,
{
    let path = path.as_ref().to_path_buf();
    let p = path.clone();
    blocking(&path, move || opts.write_with(&p, fill)).await
}

/// Async [`Publisher::publish`]: publishes `bytes` as a new version of `dst` (the
/// `DST.versions/vN` + symlink model of [`mod@crate::versions`]) with a default [`Publisher`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), atomwrite::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let dst = dir.path().join("model.bin");
/// let v1 = atomwrite::asynch::publish(&dst, b"weights 1".to_vec()).await?;
/// let p = atomwrite::Publisher::new().expect(v1.version).keep(5);
/// let v2 = atomwrite::asynch::publish_with(p, &dst, b"weights 2".to_vec()).await?;
/// assert_eq!(v2.version, v1.version + 1);
/// assert_eq!(std::fs::read(&dst).unwrap(), b"weights 2");
/// # Ok(())
/// # }
/// ```
pub async fn publish<B>(dst: impl AsRef<Path>, bytes: B) -> Result<Published>
where
    B: AsRef<[u8]> + Send + 'static,
{
    publish_with(Publisher::new(), dst, bytes).await
}

/// Async [`Publisher::publish`] with a configured [`Publisher`] (`expect`, `keep`, options).
/// A lost `expect` compare-and-swap is an error with [`Error::is_conflict`].
pub async fn publish_with<B>(
    publisher: Publisher,
    dst: impl AsRef<Path>,
    bytes: B,
) -> Result<Published>
where
    B: AsRef<[u8]> + Send + 'static,
{
    let dst = dst.as_ref().to_path_buf();
    let d = dst.clone();
    blocking(&dst, move || publisher.publish(&d, bytes.as_ref())).await
}

/// Async atomic copy of the regular file `src` to `dst` (reflink or `copy_file_range` when
/// possible, like `atomwrite cp`), with the default [`Options`]. A new destination gets the
/// source's permission bits filtered by the umask, never set-id bits
/// ([`Options::source_mode`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), atomwrite::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let src = dir.path().join("in.bin");
/// # std::fs::write(&src, b"payload").unwrap();
/// let dst = dir.path().join("backup/in.bin");
/// let receipt = atomwrite::asynch::copy(&src, &dst).await?;
/// assert_eq!(receipt.size, 7);
/// # Ok(())
/// # }
/// ```
pub async fn copy(src: impl AsRef<Path>, dst: impl AsRef<Path>) -> Result<Receipt> {
    copy_opts(Options::new(), src, dst).await
}

/// [`copy`] with explicit options.
pub async fn copy_opts(
    opts: Options,
    src: impl AsRef<Path>,
    dst: impl AsRef<Path>,
) -> Result<Receipt> {
    let src = src.as_ref().to_path_buf();
    let dst = dst.as_ref().to_path_buf();
    let d = dst.clone();
    blocking(&dst, move || {
        let file = File::open(&src).map_err(|e| Error::new(Op::Read, &src, e))?;
        let md = file
            .metadata()
            .map_err(|e| Error::new(Op::Inspect, &src, e))?;
        if !md.is_file() {
            return Err(Error::other(
                Op::Copy,
                &src,
                io::ErrorKind::InvalidInput,
                "the source is not a regular file",
            ));
        }
        use std::os::unix::fs::PermissionsExt;
        let mut out = opts
            .source_mode(md.permissions().mode() & 0o7777)
            .size_hint(md.len())
            .open(&d)?;
        out.copy_from_file(&file, &src)?;
        out.commit()
    })
    .await
}

/// Bytes gathered before one write job is handed to the blocking pool.
const CHUNK: usize = 256 * 1024;

/// An [`AtomicFile`] driven from async code: `write_all(..).await`, then `commit().await`
/// (or `discard().await`, or drop: the temporary file is removed and nothing is published).
///
/// Small writes are gathered in a buffer of 256 KiB; each full buffer, the open, the commit
/// and the discard are one job on the blocking pool, so the runtime's threads never wait for
/// the disk. Not `Sync`-shared: one task owns it, like a `tokio::fs::File`.
///
/// ```
/// use atomwrite::asynch::AsyncAtomicFile;
/// use atomwrite::{Durability, Options};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), atomwrite::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("checkpoint.bin");
/// let opts = Options::new().durability(Durability::Full).no_clobber(true);
/// let mut f = AsyncAtomicFile::open_with(opts, &path).await?;
/// f.write_all(&[0u8; 1 << 20]).await?;
/// let receipt = f.commit().await?;   // fsync + rename + directory fsync, off the runtime
/// assert_eq!(receipt.size, 1 << 20);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncAtomicFile {
    /// `None` while a job holds it, and for good after a cancelled job (poisoned).
    file: Option<AtomicFile>,
    buf: Vec<u8>,
    dst: PathBuf,
}

impl AsyncAtomicFile {
    /// Opens a temporary file for `path` with the default [`Options`] (on the blocking pool).
    pub async fn open(path: impl AsRef<Path>) -> Result<AsyncAtomicFile> {
        Self::open_with(Options::new(), path).await
    }

    /// Opens a temporary file for `path` with `opts` (on the blocking pool).
    pub async fn open_with(opts: Options, path: impl AsRef<Path>) -> Result<AsyncAtomicFile> {
        let dst = path.as_ref().to_path_buf();
        let p = dst.clone();
        let file = blocking(&dst, move || opts.open(&p)).await?;
        Ok(AsyncAtomicFile {
            file: Some(file),
            buf: Vec::new(),
            dst,
        })
    }

    /// The destination this file will replace on commit.
    pub fn destination(&self) -> &Path {
        &self.dst
    }

    fn poisoned(&self) -> Error {
        Error::other(
            Op::Write,
            &self.dst,
            io::ErrorKind::Other,
            "an earlier write to this file was cancelled or failed; nothing will be published",
        )
    }

    /// Appends `data`. Gathers small writes; a full buffer is written on the blocking pool.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<()> {
        if self.file.is_none() {
            return Err(self.poisoned());
        }
        if self.buf.len() + data.len() < CHUNK {
            self.buf.extend_from_slice(data);
            return Ok(());
        }
        let mut chunk = std::mem::take(&mut self.buf);
        chunk.extend_from_slice(data);
        self.write_chunk(chunk).await
    }

    async fn write_chunk(&mut self, chunk: Vec<u8>) -> Result<()> {
        let Some(mut file) = self.file.take() else {
            return Err(self.poisoned());
        };
        let dst = self.dst.clone();
        // The file comes back only if the job finishes; a cancelled or failed write poisons
        // this handle (the job drops the file: its temp is removed).
        let (file, chunk) = blocking(&self.dst, move || {
            file.write_all(&chunk)
                .map_err(|e| Error::new(Op::Write, &dst, e))?;
            Ok((file, chunk))
        })
        .await?;
        self.file = Some(file);
        // Reuse the allocation for the next gathering.
        let mut chunk = chunk;
        chunk.clear();
        self.buf = chunk;
        Ok(())
    }

    /// Writes what is buffered (on the blocking pool). `commit` does this by itself.
    pub async fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return if self.file.is_some() {
                Ok(())
            } else {
                Err(self.poisoned())
            };
        }
        let chunk = std::mem::take(&mut self.buf);
        self.write_chunk(chunk).await
    }

    /// Bytes written so far (including buffered ones).
    pub fn len(&self) -> u64 {
        self.file.as_ref().map_or(0, |f| f.len()) + self.buf.len() as u64
    }

    /// True when nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the rest and commits ([`AtomicFile::commit`]) on the blocking pool: `fsync`,
    /// rename, directory `fsync` as the options ask, without blocking the runtime.
    pub async fn commit(mut self) -> Result<Receipt> {
        let Some(mut file) = self.file.take() else {
            return Err(self.poisoned());
        };
        let rest = std::mem::take(&mut self.buf);
        let dst = self.dst.clone();
        blocking(&self.dst, move || {
            if !rest.is_empty() {
                file.write_all(&rest)
                    .map_err(|e| Error::new(Op::Write, &dst, e))?;
            }
            file.commit()
        })
        .await
    }

    /// Discards the file ([`AtomicFile::discard`]): nothing is published.
    pub async fn discard(mut self) -> Result<()> {
        match self.file.take() {
            Some(file) => blocking(&self.dst, move || file.discard()).await,
            None => Ok(()),
        }
    }
}

impl Drop for AsyncAtomicFile {
    /// Dropped without `commit`: the temporary file is removed (nothing is published), on the
    /// blocking pool when a runtime is available.
    fn drop(&mut self) {
        if let Some(file) = self.file.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn_blocking(move || drop(file));
        }
    }
}
