//! [`AtomicFile`]: a temporary file that becomes the destination on [`commit`](AtomicFile::commit).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustix::fs::{self as rfs, AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use crate::dest::{self, DirCache, Existing};
use crate::error::errno;
use crate::interrupt::{self, TempToken};
use crate::options::{Durability, NewMode, Options};
use crate::receipt::{self, OwnerChange, Receipt};
use crate::sys::{self, Feature, FsInfo, Sys};
use crate::tempname;
use crate::{Error, Op, Result};

/// A SHA-256 digest, hex-encoded only when it goes into a [`Receipt`].
pub(crate) type Sha256Digest = [u8; 32];

/// How many random names to try before giving up on `EEXIST` (80 random bits each: a clash
/// means something is deliberately squatting on names).
const NAME_ATTEMPTS: usize = 64;

/// Read size for streams (a pipe buffer is raised to this by the CLI).
const COPY_CHUNK: usize = 1 << 20;

/// Streams longer than this hash on a helper thread.
const PARALLEL_HASH_AFTER: u64 = 8 << 20;

/// A stream that will be flushed asks for writeback of every this many bytes as it goes
/// (`Backend::start_writeback`), so device writes overlap the copy and the commit's `fsync`
/// waits only for the tail. Measured on a 1 GiB pipe (ext4, virtio disk): 8 MiB took the
/// median from 3.3 s to 2.95 s; 32 MiB was in between.
const WRITE_BEHIND: u64 = 8 << 20;

/// Buffers rotating between the reader and the hasher thread.
const HASH_BUFFERS: usize = 3;

/// Set-uid and set-gid: kept only with the owner and group they were granted with.
const SETID: u32 = 0o6000;

/// Size hints below this are not preallocated.
const PREALLOCATE_MIN: u64 = 1 << 20;

/// How [`AtomicFile::copy_from_file`] moved the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyMethod {
    /// `ioctl(FICLONE)`: extents shared, no data copied.
    Reflink,
    /// `copy_file_range(2)`: copied inside the kernel.
    CopyFileRange,
    /// `read` + `write` through a 1 MiB buffer (and the hasher).
    Buffered,
}

#[derive(Debug)]
enum Temp {
    /// An `O_TMPFILE` inode with no name (Linux): nothing to remove after a crash.
    Anonymous,
    /// A named temporary in the destination directory, `flock`ed while we hold it, and in the
    /// [`interrupt`] registry until the token is dropped.
    Named(OsString, TempToken),
    /// Published or removed: nothing to clean up.
    Gone,
}

/// A file being written that replaces (or creates) its destination atomically on
/// [`commit`](AtomicFile::commit).
///
/// Bytes go to a temporary file in the destination's directory: an anonymous `O_TMPFILE` inode on
/// Linux where the filesystem supports it, otherwise `.{name}.{random}.tmp` created with
/// `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC` and mode 0600, and held under an `flock` so
/// [`clean`](crate::clean) never removes it. Nothing is visible at the destination until
/// `commit`. Dropping an `AtomicFile` without committing removes the temporary file; so does
/// [`discard`](AtomicFile::discard), which reports errors.
///
/// Writes are not buffered: wrap it in a [`std::io::BufWriter`] for many small writes.
///
/// ```
/// use std::io::Write;
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("report.csv");
/// let mut f = atomwrite::Options::new().open(&path)?;
/// writeln!(f, "id,value")?;
/// writeln!(f, "1,42")?;
/// assert!(!path.exists()); // nothing visible yet
/// let receipt = f.commit()?;
/// assert_eq!(std::fs::read_to_string(&path)?, "id,value\n1,42\n");
/// assert_eq!(receipt.size, 14);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    dir: Arc<OwnedFd>,
    dir_path: PathBuf,
    name: OsString,
    dest: PathBuf,
    temp: Temp,
    existing: Option<Existing>,
    /// Nothing had the destination's name at the lookup: the publish replaces only a newcomer
    /// that [`dest::check_newcomer`] allows.
    absent: bool,
    fs: FsInfo,
    /// The platform backend: the host's fast paths, or the portable POSIX path.
    sys: Sys,
    opts: Options,
    /// The anonymous inode was created with mode 0666 filtered by the kernel through the umask,
    /// which is already the right final mode for a new file.
    mode_is_final: bool,
    /// The umask as its batch read it once for all its files (a single write reads it when it
    /// needs it: a named temp's new file, whose final mode is set by `fchmod`).
    umask: Option<u32>,
    /// Set by `prepare` when the new file's owner or group differs from the replaced file's.
    owner_changed: Option<OwnerChange>,
    /// The new contents are visible at the destination (the rename or link happened).
    visible: bool,
    hasher: Option<Sha256>,
    hashed: u64,
    hash_dirty: bool,
    pos: u64,
    len: u64,
}

pub(crate) fn portable_env() -> bool {
    static P: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *P.get_or_init(|| std::env::var_os("ATOMWRITE_PORTABLE").is_some_and(|v| v == "1"))
}

impl AtomicFile {
    /// Opens with default [`Options`]. See [`Options::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<AtomicFile> {
        Options::new().open(path)
    }

    pub(crate) fn open_with(path: &Path, opts: &Options) -> Result<AtomicFile> {
        Self::open_cached(path, opts, None)
    }

    /// Opens through a batch's [`DirCache`] (one directory fd per parent, shared by its files)
    /// and its set of directory fds it holds the shared lock on ([`DirLock::Batch`]); `None`: a
    /// single write, with a directory fd of its own.
    ///
    /// `park_soon` (a batch's file it will have to park, see [`Batch`](crate::Batch)): where the
    /// batch holds (or now takes) its directory's shared lock, the temp is created named at
    /// once (0600), without a `flock` of its own, as a parked temp is; its park is then only an
    /// `fchmod` and a close (no `O_TMPFILE` orphan to link, no `linkat`). A batch's files use
    /// the umask it read once.
    pub(crate) fn open_cached(
        path: &Path,
        opts: &Options,
        batch: Option<(&mut DirCache, &mut DirLocks, bool)>,
    ) -> Result<AtomicFile> {
        let Some((cache, locked, park_soon)) = batch else {
            let d = dest::resolve(path, opts, None)?;
            return Self::open_dest(d, opts, DirLock::OwnFd, false, None);
        };
        let d = dest::resolve(path, opts, Some(&mut *cache))?;
        let umask = cache.umask(sys::backend(opts.portable || portable_env()));
        Self::open_dest(d, opts, DirLock::Batch(locked), park_soon, Some(umask))
    }

    /// Opens a temp for `name` inside an already-open directory: no path is resolved, no symlink
    /// followed (one at `name` is replaced), no directory created. Used for versions and their
    /// manifests, relative to the versions directory's fd.
    pub(crate) fn open_in(
        dir: Arc<OwnedFd>,
        dir_path: PathBuf,
        name: OsString,
        opts: &Options,
    ) -> Result<AtomicFile> {
        let d = dest::in_dir(dir, dir_path, name)?;
        Self::open_dest(d, opts, DirLock::SharedFd, false, None)
    }

    /// Creates the anonymous temp (`O_TMPFILE`) where the filesystem is not known to refuse it;
    /// returns it (none: use a named temp) and whether its mode is already the final one.
    fn open_anonymous(
        sys: &Sys,
        d: &dest::Dest,
        opts: &Options,
    ) -> Result<(Option<OwnedFd>, bool)> {
        let mut anon = None;
        let mut mode_is_final = false;
        if !sys.known_refused(d.fs.fs_type, Feature::Tmpfile) {
            // A new file whose mode is "these bits, filtered by the umask" (the default 0666, or
            // a source's `mode & 0o777` as `cp` gives it) is created with them: the kernel applies
            // the umask (or the directory's default ACL, as for any `open(O_CREAT)`), so no
            // `fchmod` is needed and the umask need not be read.
            let final_mode = match (opts.mode, opts.new_mode, d.existing) {
                _ if opts.new_file_gets_default_mode() && d.existing.is_none() => Some(0o666),
                (None, Some(NewMode::Source(m)), None) if opts.inherited.is_none() => {
                    Some(m & 0o777)
                }
                _ => None,
            };
            match sys.open_anonymous(d.dir.as_fd(), final_mode.unwrap_or(0o600)) {
                Ok(Some(fd)) => {
                    anon = Some(fd);
                    mode_is_final = final_mode.is_some();
                }
                Ok(None) => sys.remember_refused(d.fs.fs_type, Feature::Tmpfile),
                Err(e) => return Err(Error::new(Op::CreateTemp, &d.path, e)),
            }
        }
        Ok((anon, mode_is_final))
    }

    fn open_dest(
        mut d: dest::Dest,
        opts: &Options,
        mut lock: DirLock<'_>,
        park_soon: bool,
        umask: Option<u32>,
    ) -> Result<AtomicFile> {
        if d.existing.is_none() {
            d.existing = opts.inherited;
        }
        let sys = sys::backend(opts.portable || portable_env());
        // A file its batch will park is created named under the batch's directory lock (which
        // keeps `clean` away from it, as from a parked temp): no flock, no link when parked.
        let parkable = park_soon
            && match &mut lock {
                DirLock::Batch(locked) => locked.held(&d.dir),
                _ => false,
            };
        let (fd, temp, mode_is_final) = if parkable {
            // 0600 until it is finished, as every named temp (its final mode is set then).
            let (fd, name, token) = create_temp(
                &d.dir,
                &d.dir_path,
                &d.name,
                d.fs.name_max,
                0o600,
                |fd, _| Ok(fd),
            )?;
            (fd, Temp::Named(name, token), false)
        } else {
            let (anon, mode_is_final) = Self::open_anonymous(&sys, &d, opts)?;
            match anon {
                Some(fd) => (fd, Temp::Anonymous, mode_is_final),
                None => {
                    let (fd, name, token) =
                        create_named(&d.dir, &d.dir_path, &d.name, d.fs.name_max, lock)?;
                    (fd, Temp::Named(name, token), false)
                }
            }
        };
        let f = AtomicFile {
            file: File::from(fd),
            dir: d.dir,
            dir_path: d.dir_path,
            name: d.name,
            dest: d.path,
            temp,
            existing: d.existing,
            absent: d.absent,
            fs: d.fs,
            sys,
            opts: opts.clone(),
            mode_is_final,
            umask,
            owner_changed: None,
            visible: false,
            hasher: if opts.no_checksum {
                None
            } else {
                Some(Sha256::new())
            },
            hashed: 0,
            hash_dirty: false,
            pos: 0,
            len: 0,
        };
        // Small files are not worth a syscall: preallocation pays off (early ENOSPC, less
        // fragmentation) only for large ones.
        if let Some(n) = opts.size_hint.filter(|n| *n >= PREALLOCATE_MIN) {
            f.sys
                .preallocate(f.file.as_fd(), n)
                .map_err(|e| Error::new(Op::Preallocate, &f.dest, e))?;
        }
        Ok(f)
    }

    /// The destination this file will replace (after following a symlink, if any).
    pub fn destination(&self) -> &Path {
        &self.dest
    }

    /// An early answer for a create-only write: fails with [`std::io::ErrorKind::AlreadyExists`]
    /// (a conflict, [`Error::is_conflict`]) when something already has the destination's name
    /// in its directory (a file, a symlink, anything). The name is looked up relative to the
    /// directory held open since [`Options::open`], without following a final symlink, so it
    /// is the very entry the commit would replace; nothing is resolved again.
    ///
    /// Use it to refuse before reading a long input (`--no-clobber`). It is only a
    /// precheck: with [`Options::no_clobber`] the commit's atomic create-only check stays the
    /// final word (an entry created after this call still makes the commit fail), and without
    /// it this call changes nothing about the commit.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("once.txt");
    /// let opts = atomwrite::Options::new().no_clobber(true);
    /// opts.open(&path)?.check_vacant()?; // nothing there yet
    /// std::fs::write(&path, "taken")?;
    /// let e = opts.open(&path)?.check_vacant().unwrap_err();
    /// assert!(e.is_conflict()); // before any data was written
    /// assert_eq!(std::fs::read(&path)?, b"taken");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_vacant(&self) -> Result<()> {
        match rfs::statat(&*self.dir, &self.name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Ok(_) => Err(
                Error::new(Op::CheckDestination, &self.dest, errno(Errno::EXIST))
                    .with_hint("the destination already exists and the write is create-only"),
            ),
            Err(e) => Err(Error::new(Op::Inspect, &self.dest, errno(e))),
        }
    }

    /// The path of the named temporary file, if one is in use (`None` for an anonymous
    /// `O_TMPFILE` inode). Useful to remove it from a signal handler; the path is only
    /// meaningful while the directory has not been renamed.
    pub fn temp_path(&self) -> Option<PathBuf> {
        match &self.temp {
            Temp::Named(n, _) => Some(self.dir_path.join(n)),
            _ => None,
        }
    }

    /// Bytes written so far (the size the file will have).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Truncates or extends the temporary file (like [`File::set_len`]).
    pub fn set_len(&mut self, size: u64) -> Result<()> {
        self.file
            .set_len(size)
            .map_err(|e| Error::new(Op::Write, &self.dest, e))?;
        if size != self.hashed {
            self.hash_dirty = true;
        }
        self.len = size;
        Ok(())
    }

    /// Writes all of `buf`, with errors naming the operation and path.
    pub fn write_all_bytes(&mut self, buf: &[u8]) -> Result<()> {
        self.write_all(buf)
            .map_err(|e| self.unwrap_io(Op::Write, e))
    }

    /// Sets the file's contents by copying from `reader` until EOF, in large chunks, hashing
    /// as it goes. Returns the number of bytes copied. Errors reading `reader` are reported as
    /// [`Op::Read`] on `source_name`.
    pub fn copy_from(&mut self, reader: &mut dyn io::Read, source_name: &Path) -> Result<u64> {
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut total = 0u64;
        let mut kicked = self.pos;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::new(Op::Read, source_name, e)),
            };
            self.write_all_bytes(&buf[..n])?;
            total += n as u64;
            self.write_behind(&mut kicked);
            // A long stream: hash on a second core while this one reads and writes.
            if total >= PARALLEL_HASH_AFTER
                && self.hasher.is_some()
                && !self.hash_dirty
                && self.pos == self.hashed
            {
                return self.copy_from_hashing_aside(reader, source_name, total, kicked);
            }
        }
    }

    /// The rest of [`copy_from`](Self::copy_from) with sha256 computed by a helper thread:
    /// the stream then costs max(read + write, hash) instead of their sum. Three 1 MiB buffers
    /// rotate between this thread and the hasher, so memory stays bounded.
    fn copy_from_hashing_aside(
        &mut self,
        reader: &mut dyn io::Read,
        source_name: &Path,
        mut total: u64,
        mut kicked: u64,
    ) -> Result<u64> {
        let mut hasher = self.hasher.take().expect("checked by the caller");
        let (to_hash, hash_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(2);
        let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        for _ in 0..HASH_BUFFERS {
            free_tx.send(vec![0u8; COPY_CHUNK]).expect("receiver alive");
        }
        let (result, hasher) = std::thread::scope(|s| {
            let give_back = free_tx.clone();
            let worker = s.spawn(move || {
                for (b, n) in hash_rx {
                    hasher.update(&b[..n]);
                    let _ = give_back.send(b);
                }
                hasher
            });
            let result = loop {
                let mut buf = free_rx.recv().expect("the hasher returns every buffer");
                let n = match reader.read(&mut buf) {
                    Ok(0) => break Ok(total),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                        let _ = free_tx.send(buf);
                        continue;
                    }
                    Err(e) => break Err(Error::new(Op::Read, source_name, e)),
                };
                if let Err(e) = (&self.file).write_all(&buf[..n]) {
                    break Err(Error::new(Op::Write, &self.dest, e));
                }
                self.pos += n as u64;
                self.len = self.len.max(self.pos);
                self.hashed += n as u64;
                total += n as u64;
                self.write_behind(&mut kicked);
                to_hash
                    .send((buf, n))
                    .expect("the hasher runs until the channel closes");
            };
            drop(to_hash);
            (result, worker.join().expect("hasher thread panicked"))
        });
        self.hasher = Some(hasher);
        result
    }

    /// Starts writeback of what was written since `kicked` once that is [`WRITE_BEHIND`] bytes,
    /// if this file will be flushed at all: the commit's `fsync` then waits for the tail only.
    fn write_behind(&self, kicked: &mut u64) {
        if self.pos.saturating_sub(*kicked) >= WRITE_BEHIND
            && self.opts.durability != Durability::None
        {
            self.sys
                .start_writeback(self.file.as_fd(), *kicked, self.pos - *kicked);
            *kicked = self.pos;
        }
    }

    /// Copies the whole of `src` (from its start) into this file, by the fastest means the
    /// filesystems allow: `FICLONE` (a reflink: O(1), shares extents, btrfs/xfs), else
    /// `copy_file_range` (in-kernel), else a buffered copy. When checksums are on, the bytes
    /// must pass through the hasher, so a single buffered pass is used instead (a reflink
    /// followed by a full read would cost the same and touch the data twice).
    /// Returns the number of bytes copied and how ([`CopyMethod`]).
    pub fn copy_from_file(&mut self, src: &File, src_name: &Path) -> Result<(u64, CopyMethod)> {
        let st = rfs::fstat(src).map_err(|e| Error::new(Op::Read, src_name, errno(e)))?;
        self.copy_range_from(src, st.st_dev, st.st_size as u64, src_name, false, None)
    }

    /// [`copy_from_file`](Self::copy_from_file), calling `progress(n)` as every `n` bytes
    /// are copied, on every path: once for a reflink, at least every
    /// [`PROGRESS_CHUNK`](Self::PROGRESS_CHUNK) bytes on the `copy_file_range` path (its calls
    /// are capped at that size instead of 1 GiB), per buffer on the buffered path.
    pub fn copy_from_file_progress(
        &mut self,
        src: &File,
        src_name: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(u64, CopyMethod)> {
        let st = rfs::fstat(src).map_err(|e| Error::new(Op::Read, src_name, errno(e)))?;
        self.copy_range_from(
            src,
            st.st_dev,
            st.st_size as u64,
            src_name,
            false,
            Some(progress),
        )
    }

    /// How many bytes one `copy_file_range` call copies at most when progress is reported.
    pub const PROGRESS_CHUNK: usize = 8 << 20;

    /// Copies a [`SourceFile`] (opened by a [`SourceOpener`]) into this file, like
    /// [`copy_from_file_progress`](Self::copy_from_file_progress) but without asking the kernel
    /// again what the opener already knows: its size and filesystem. Copies the bytes the source
    /// had when it was opened (its size then); a file that grows meanwhile is copied up to that
    /// size, one that shrinks up to its new end.
    ///
    /// A refused `FICLONE` or `copy_file_range` is remembered for the pair of filesystems (in
    /// this process), so copying many files tries a refused fast path once, not once per file.
    pub fn copy_from_source(
        &mut self,
        src: &SourceFile,
        progress: Option<&mut dyn FnMut(u64)>,
    ) -> Result<(u64, CopyMethod)> {
        self.copy_range_from(&src.file, src.dev, src.size, &src.path, true, progress)
    }

    fn copy_range_from(
        &mut self,
        src: &File,
        src_dev: u64,
        size: u64,
        src_name: &Path,
        stop_at_size: bool,
        mut progress: Option<&mut dyn FnMut(u64)>,
    ) -> Result<(u64, CopyMethod)> {
        let buffered = |f: &mut Self, progress: Option<&mut dyn FnMut(u64)>| {
            let mut r = Counting {
                inner: src,
                progress,
            };
            f.copy_from(&mut r, src_name)
        };
        if self.hasher.is_some() {
            let n = buffered(self, progress)?;
            return Ok((n, CopyMethod::Buffered));
        }
        // An empty source has no extents to share.
        if self.len == 0
            && self.pos == 0
            && size > 0
            && !sys::pair_refused(src_dev, self.fs.dev, Feature::Reflink)
            && self.try_reflink(src, src_dev, size, src_name, &mut progress)?
        {
            return Ok((size, CopyMethod::Reflink));
        }
        let (mut copied, method) =
            self.copy_ranges(src, src_dev, size, src_name, stop_at_size, &mut progress)?;
        if method == CopyMethod::Buffered {
            copied = buffered(self, progress)?;
        }
        Ok((copied, method))
    }

    /// Shares the source's `size` bytes with the (empty) temp by `FICLONE`; false when the pair
    /// of filesystems refuses it (remembered).
    fn try_reflink(
        &mut self,
        src: &File,
        src_dev: u64,
        size: u64,
        src_name: &Path,
        progress: &mut Option<&mut dyn FnMut(u64)>,
    ) -> Result<bool> {
        match self.sys.reflink(src.as_fd(), self.file.as_fd()) {
            Ok(true) => {
                self.len = size;
                self.pos = size;
                self.file
                    .seek(SeekFrom::Start(size))
                    .map_err(|e| Error::new(Op::Seek, &self.dest, e))?;
                if let Some(p) = progress.as_mut() {
                    p(size);
                }
                Ok(true)
            }
            Ok(false) => {
                sys::remember_pair_refused(src_dev, self.fs.dev, Feature::Reflink);
                Ok(false)
            }
            Err(e) => Err(Error::new2(Op::Copy, src_name, &self.dest, e)),
        }
    }

    /// Copies by `copy_file_range` unless the pair of filesystems refuses it: returns the bytes
    /// copied and [`CopyMethod::Buffered`] when the caller must copy them by reading instead.
    fn copy_ranges(
        &mut self,
        src: &File,
        src_dev: u64,
        size: u64,
        src_name: &Path,
        stop_at_size: bool,
        progress: &mut Option<&mut dyn FnMut(u64)>,
    ) -> Result<(u64, CopyMethod)> {
        let dst_dev = self.fs.dev;
        let mut copied = 0u64;
        let mut method = if sys::pair_refused(src_dev, dst_dev, Feature::CopyRange) {
            CopyMethod::Buffered
        } else {
            CopyMethod::CopyFileRange
        };
        while method == CopyMethod::CopyFileRange {
            if stop_at_size && copied >= size {
                break;
            }
            let cap = if progress.is_some() {
                Self::PROGRESS_CHUNK
            } else {
                1 << 30
            };
            let chunk = cap.min((size.saturating_sub(copied)).max(1 << 20) as usize);
            match self.sys.copy_range(src.as_fd(), self.file.as_fd(), chunk) {
                Ok(Some(0)) => break,
                Ok(Some(n)) => {
                    copied += n as u64;
                    self.pos += n as u64;
                    self.len = self.len.max(self.pos);
                    if let Some(p) = progress.as_mut() {
                        p(n as u64);
                    }
                }
                Ok(None) if copied == 0 => {
                    sys::remember_pair_refused(src_dev, dst_dev, Feature::CopyRange);
                    method = CopyMethod::Buffered;
                    break;
                }
                Ok(None) => {
                    return Err(Error::new2(
                        Op::Copy,
                        src_name,
                        &self.dest,
                        errno(Errno::XDEV),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::new2(Op::Copy, src_name, &self.dest, e)),
            }
        }
        Ok((copied, method))
    }

    fn unwrap_io(&self, op: Op, e: io::Error) -> Error {
        // Our own Write impl already wrapped the error; keep the inner one.
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            let kind = e.kind();
            match e.into_inner().map(|b| b.downcast::<Error>()) {
                Some(Ok(inner)) => return *inner,
                _ => return Error::other(op, &self.dest, kind, "write failed"),
            }
        }
        Error::new(op, &self.dest, e)
    }

    fn temp_display(&self) -> PathBuf {
        match &self.temp {
            Temp::Named(n, _) => self.dir_path.join(n),
            _ => self.dir_path.join(format!(
                "<anonymous temporary for {}>",
                self.name.to_string_lossy()
            )),
        }
    }

    fn recompute_hash(&self) -> Result<Sha256Digest> {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < self.len {
            let want = ((self.len - off) as usize).min(buf.len());
            let n = self
                .file
                .read_at(&mut buf[..want], off)
                .map_err(|e| Error::new(Op::Seek, &self.dest, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            off += n as u64;
        }
        Ok(h.finalize().into())
    }

    /// Makes the written bytes the destination's contents, atomically, with the configured
    /// [`Durability`].
    ///
    /// The sequence (every step relative to the directory opened once): set owner and mode;
    /// `fsync` the file (unless `Durability::None`); publish (`renameat`, or for create-only
    /// `renameat2(RENAME_NOREPLACE)` / `linkat`); `fsync` the directory (`Durability::Full`).
    ///
    /// On error the temporary file is removed and the destination is byte-for-byte as it was,
    /// except for a failed directory `fsync` ([`Op::SyncDir`]): the new contents are then
    /// visible but not promised durable. A failed `fsync` is never retried: after one, the
    /// kernel may have dropped the dirty pages, so a second "successful" `fsync` would prove
    /// nothing (PostgreSQL's "fsyncgate"); write the data again from its source instead.
    pub fn commit(mut self) -> Result<Receipt> {
        let sha256 = self.prepare()?;
        if self.opts.durability != Durability::None {
            // The data and inode must be on stable storage before a name points at them;
            // otherwise a power loss can leave the new name on an empty or partial file.
            self.sys
                .sync_file(self.file.as_fd())
                .map_err(|e| Error::new(Op::SyncFile, &self.dest, e))?;
        }
        self.stage()?;
        // The rename and the directory fsync together: a signal report (or `remove_temps`)
        // waits for both, so it never says "not replaced" about a file being renamed, nor
        // exits between the rename and the fsync that makes it durable.
        interrupt::critical(|| {
            self.make_visible()?;
            if self.opts.durability == Durability::Full {
                // The rename lives in the directory; until the directory is flushed a power
                // loss can undo it (ext4 data=ordered, xfs, btrfs alike).
                self.sync_dir()?;
            }
            Ok::<(), Error>(())
        })?;
        Ok(self.receipt(sha256))
    }

    /// Everything before the data sync: the final hash, owner and mode.
    pub(crate) fn prepare(&mut self) -> Result<Option<Sha256Digest>> {
        let sha256 = match self.hasher.take() {
            Some(_) if self.hash_dirty || self.hashed != self.len => Some(self.recompute_hash()?),
            Some(h) => Some(h.finalize().into()),
            None => None,
        };
        let fd = self.file.as_fd();
        // The file this one replaces (or, for a new file, logically replaces: `inherit`).
        let replaced = self.existing.or(self.opts.inherited);
        let want_owner = match self.opts.new_mode {
            Some(NewMode::Preserve { uid, gid, .. }) => Some((uid, gid)),
            _ => replaced.map(|ex| (ex.uid, ex.gid)),
        };
        // Owner and group first: chown clears set-id bits, which the chmod below restores.
        // Always attempted for a replaced file (a no-op when they are already ours): cheaper
        // than asking for our own ids, which only matter if it fails.
        let owner_kept = match want_owner {
            None => true,
            Some((uid, gid)) => self.chown_to(uid, gid)?,
        };
        // Set-id bits survive only with the owner and group they were granted with: the kernel
        // drops them on chown, and a writer must never get a set-id file that runs as itself.
        let keep = |m: u32| if owner_kept { m } else { m & !SETID };
        let (mode, intended) = match (self.opts.mode, self.opts.new_mode, replaced) {
            // An explicit request (like `install -m`): exact.
            (Some(m), _, _) => (Some(m), m),
            (None, Some(NewMode::Preserve { mode, .. }), _) => (Some(keep(mode)), mode),
            (None, _, Some(ex)) => (Some(keep(ex.mode)), ex.mode),
            // Like `cp` without `-p`: never set-id, never more open than the umask allows.
            (None, Some(NewMode::Source(_)), None) if self.mode_is_final => (None, 0),
            (None, Some(NewMode::Source(m)), None) => (Some(m & 0o777 & !self.umask()), 0),
            (None, None, None) if self.mode_is_final => (None, 0),
            (None, None, None) => (Some(0o666 & !self.umask()), 0),
        };
        if let Some(m) = mode {
            rfs::fchmod(fd, Mode::from_raw_mode(m))
                .map_err(|e| Error::new(Op::Chmod, &self.dest, errno(e)))?;
        }
        self.owner_changed = match (replaced, want_owner) {
            (Some(ex), Some(want)) => {
                let (to_uid, to_gid) = if owner_kept {
                    want
                } else {
                    let st =
                        rfs::fstat(fd).map_err(|e| Error::new(Op::Chown, &self.dest, errno(e)))?;
                    (st.st_uid, st.st_gid)
                };
                ((to_uid, to_gid) != (ex.uid, ex.gid)).then_some(OwnerChange {
                    from_uid: ex.uid,
                    from_gid: ex.gid,
                    to_uid,
                    to_gid,
                    setid_dropped: intended & SETID != 0
                        && mode.is_some_and(|m| m & SETID != intended & SETID),
                })
            }
            _ => None,
        };
        Ok(sha256)
    }

    /// The umask a new file's mode is filtered by: its batch's, else the process's now.
    fn umask(&self) -> u32 {
        self.umask.unwrap_or_else(|| self.sys.umask())
    }

    /// `fchown`s the temp to `uid`:`gid`. `Ok(false)` when an unprivileged writer may not (then
    /// the group alone is kept if the writer belongs to it); an error with
    /// `preserve_owner_strict`, or for root (a refusal there is not the ordinary `EPERM`).
    fn chown_to(&self, uid: u32, gid: u32) -> Result<bool> {
        let fd = self.file.as_fd();
        let uid = rfs::Uid::from_raw(uid);
        let gid = rfs::Gid::from_raw(gid);
        match rfs::fchown(fd, Some(uid), Some(gid)) {
            Ok(()) => Ok(true),
            // An unprivileged writer cannot give a file away: the new file is then the
            // writer's (documented; `preserve_owner_strict` makes it an error).
            Err(Errno::PERM | Errno::INVAL)
                if !self.opts.preserve_owner_strict && !rustix::process::geteuid().is_root() =>
            {
                let _ = rfs::fchown(fd, None, Some(gid));
                Ok(false)
            }
            Err(e) => Err(Error::new(Op::Chown, &self.dest, errno(e))),
        }
    }

    pub(crate) fn sync_dir(&self) -> Result<()> {
        self.sys.sync_dir(self.dir.as_fd()).map_err(|e| {
            Error::new(Op::SyncDir, &self.dir_path, e).with_hint(
                "the new contents are visible but are not promised to survive a power loss; \
                 write them again",
            )
        })
    }

    pub(crate) fn receipt(&self, sha256: Option<Sha256Digest>) -> Receipt {
        Receipt {
            path: self.dest.clone(),
            size: self.len,
            sha256: sha256.map(hex::encode),
            written_at: SystemTime::now(),
            run_id: self
                .opts
                .run_id
                .clone()
                .unwrap_or_else(|| receipt::process_run_id().to_string()),
            // What the filesystem honoured (doctor's classification), not only what was asked.
            durability: crate::doctor::honoured(self.opts.durability, self.fs.fs_type),
            owner_changed: self.owner_changed,
            object: None,
        }
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn dir_fd(&self) -> &Arc<OwnedFd> {
        &self.dir
    }

    pub(crate) fn fs_type(&self) -> u64 {
        self.fs.fs_type
    }

    pub(crate) fn sys(&self) -> Sys {
        self.sys
    }

    /// Batch phase A: give an anonymous temp a temporary name now, so that the data sync that
    /// follows covers a linked inode (and the later publish is a plain rename).
    pub(crate) fn link_early(&mut self) -> Result<()> {
        if matches!(self.temp, Temp::Anonymous) && self.needs_temp_name() {
            let (tmp, token) = self.link_anonymous_to_temp()?;
            self.temp = Temp::Named(tmp, token);
        }
        Ok(())
    }

    /// Publishes (stage + make visible); the batch runs it inside its own critical section.
    pub(crate) fn publish_now(&mut self) -> Result<()> {
        self.stage()?;
        interrupt::critical(|| self.make_visible())
    }

    /// Whether the new contents became visible at the destination (a batch reports it).
    pub(crate) fn is_visible(&self) -> bool {
        self.visible
    }

    /// Everything before the publish that may take time: an anonymous temp that is to replace
    /// its destination gets its temporary name (registered and `flock`ed), synced again where
    /// the filesystem needs it.
    fn stage(&mut self) -> Result<()> {
        if matches!(self.temp, Temp::Anonymous) && self.needs_temp_name() {
            let (tmp, token) = self.link_anonymous_to_temp()?;
            self.temp = Temp::Named(tmp, token);
            self.sync_after_link()?;
        }
        Ok(())
    }

    /// Whether an anonymous temp needs a temporary name before its publish: only to replace a
    /// file that was there when it was opened, or on btrfs (whose fsync of an unlinked inode
    /// does not carry its data once linked, so the name comes first and the data is synced
    /// after it). Otherwise the publish is one `linkat` to the destination's name, which fails
    /// with `EEXIST` if something took that name meanwhile (then the temp is named and renamed
    /// over it, as a replace would have done).
    fn needs_temp_name(&self) -> bool {
        !self.opts.no_clobber
            && (self.existing.is_some() || self.sys.needs_sync_after_link(self.fs.fs_type))
    }

    /// The publish itself: one `renameat`/`renameat2`/`linkat` that makes the new contents
    /// visible. Runs inside [`interrupt::critical`]; records the destination with
    /// [`interrupt::note_replaced`] the moment it is visible.
    fn make_visible(&mut self) -> Result<()> {
        if interrupt::closed() {
            return Err(Error::other(
                Op::Rename,
                &self.dest,
                io::ErrorKind::Interrupted,
                "interrupted: the process is stopping; the destination was not replaced",
            ));
        }
        match std::mem::replace(&mut self.temp, Temp::Gone) {
            Temp::Gone => unreachable!("publish called twice"),
            Temp::Anonymous => self.link_anonymous_visible(),
            Temp::Named(tmp, token) => {
                let r = if self.opts.no_clobber {
                    self.rename_noreplace(&tmp)
                } else {
                    self.rename_over(&tmp)
                };
                match r {
                    Ok(()) => {
                        self.now_visible();
                        token.forget();
                        Ok(())
                    }
                    Err(e) => {
                        // Still ours (or, after a portable create-only link whose unlink
                        // failed, a second name of the published file): Drop removes it.
                        self.temp = Temp::Named(tmp, token);
                        Err(e)
                    }
                }
            }
        }
    }

    /// [`make_visible`](Self::make_visible) for an anonymous temp (taken out of `self.temp`):
    /// links it at the destination's name.
    fn link_anonymous_visible(&mut self) -> Result<()> {
        // Create-only writes and new files get here (`stage` named the others). linkat
        // fails with EEXIST if the name exists: an atomic create-only publish.
        let mut gone = 0;
        loop {
            match self
                .sys
                .link_anonymous(self.file.as_fd(), self.dir.as_fd(), &self.name)
            {
                Ok(()) => break,
                Err(e)
                    if !self.opts.no_clobber
                        && e.raw_os_error() == Some(Errno::EXIST.raw_os_error()) =>
                {
                    // Something took the name since the open: replace it, as a write that
                    // had found it there would (named temp, then rename over it), unless
                    // `check_newcomer` refuses it; gone again: link create-only again.
                    self.temp = Temp::Anonymous;
                    if self.absent {
                        if !dest::check_newcomer(&self.dir, &self.dir_path, &self.dest)? {
                            gone += 1;
                            if gone < dest::NEWCOMER_TRIES {
                                continue;
                            }
                            return Err(dest::newcomer_churn(&self.dest));
                        }
                        self.absent = false;
                    }
                    let (tmp, token) = self.link_anonymous_to_temp()?;
                    self.temp = Temp::Named(tmp, token);
                    self.sync_after_link()?;
                    return self.make_visible();
                }
                Err(e) => {
                    self.temp = Temp::Anonymous;
                    return Err(Error::new(Op::Link, &self.dest, e));
                }
            }
        }
        self.now_visible();
        self.sync_after_link()
    }

    fn now_visible(&mut self) {
        if !self.visible {
            self.visible = true;
            if !self.opts.internal {
                interrupt::note_replaced(&self.dest);
            }
        }
    }

    fn sync_after_link(&self) -> Result<()> {
        if self.opts.durability != Durability::None
            && self.sys.needs_sync_after_link(self.fs.fs_type)
        {
            // btrfs: an fsync of the unlinked O_TMPFILE inode does not carry its data into the
            // log once the inode gets a name (atomic-write-file issue #6); sync it again.
            self.sys
                .sync_data(self.file.as_fd())
                .map_err(|e| Error::new(Op::SyncFile, &self.dest, e))?;
        }
        Ok(())
    }

    /// Gives the anonymous inode a temporary name, `flock`ed before it exists (so `clean` never
    /// sees it unlocked) and registered with [`interrupt`] as it is created.
    fn link_anonymous_to_temp(&self) -> Result<(OsString, TempToken)> {
        self.link_anonymous_named(true)
    }

    /// [`link_anonymous_to_temp`](Self::link_anonymous_to_temp); without `lock` for a temp
    /// about to be parked (closed at once: its directory's batch lock keeps `clean` away).
    fn link_anonymous_named(&self, lock: bool) -> Result<(OsString, TempToken)> {
        if lock {
            // Tells `clean` that a live writer owns the name about to appear. Cannot block: the
            // inode is ours alone.
            rfs::flock(self.file.as_fd(), FlockOperation::NonBlockingLockExclusive)
                .map_err(|e| Error::new(Op::Lock, self.temp_display(), errno(e)))?;
        }
        let ((), tmp, token) = interrupt::create_registered(&self.dir, &self.dir_path, || {
            for _ in 0..NAME_ATTEMPTS {
                let tmp = tempname::temp_name(&self.name, self.fs.name_max);
                match self
                    .sys
                    .link_anonymous(self.file.as_fd(), self.dir.as_fd(), &tmp)
                {
                    Ok(()) => return Ok(((), tmp)),
                    Err(e) if e.raw_os_error() == Some(Errno::EXIST.raw_os_error()) => {
                        tempname::collided();
                        continue;
                    }
                    Err(e) => {
                        return Err(Error::new2(
                            Op::Link,
                            &self.dest,
                            self.dir_path.join(&tmp),
                            e,
                        ));
                    }
                }
            }
            Err(Error::new(Op::Link, &self.dest, errno(Errno::EXIST)))
        })?;
        Ok((tmp, token))
    }

    fn rename_over(&self, tmp: &OsString) -> Result<()> {
        if self.absent {
            return rename_over_absent(
                self.sys,
                self.fs.fs_type,
                &self.dir,
                &self.dir_path,
                tmp,
                &self.dest,
            );
        }
        rfs::renameat(&self.dir, tmp, &self.dir, &self.name)
            .map_err(|e| Error::new2(Op::Rename, self.dir_path.join(tmp), &self.dest, errno(e)))
    }

    fn rename_noreplace(&self, tmp: &OsString) -> Result<()> {
        if !self
            .sys
            .known_refused(self.fs.fs_type, Feature::RenameNoreplace)
        {
            match self.sys.rename_noreplace(self.dir.as_fd(), tmp, &self.name) {
                Ok(true) => return Ok(()),
                Ok(false) => self
                    .sys
                    .remember_refused(self.fs.fs_type, Feature::RenameNoreplace),
                Err(e) => {
                    return Err(Error::new2(
                        Op::Rename,
                        self.dir_path.join(tmp),
                        &self.dest,
                        e,
                    ));
                }
            }
        }
        // Portable create-only: link fails with EEXIST if the name exists; then drop the temp
        // name. A crash between the two leaves a second name for the same complete file, which
        // `clean` removes.
        rfs::linkat(&self.dir, tmp, &self.dir, &self.name, AtFlags::empty())
            .map_err(|e| Error::new2(Op::Link, self.dir_path.join(tmp), &self.dest, errno(e)))?;
        interrupt::note_replaced(&self.dest);
        // The destination is published; the temp name is now a second link to it. If it cannot
        // be removed, say so (exit non-zero) rather than leave it silently; Drop tries once more
        // and `clean` removes it later.
        rfs::unlinkat(&self.dir, tmp, AtFlags::empty()).map_err(|e| {
            Error::new(Op::RemoveTemp, self.dir_path.join(tmp), errno(e)).with_hint(
                "the new contents are visible at the destination; the leftover name is a second \
                 link to it, removed on drop or by a temp sweep (`clean`)",
            )
        })?;
        Ok(())
    }

    /// Abandons the write: removes the temporary file and leaves the destination untouched.
    /// Dropping does the same but cannot report an error.
    pub fn discard(mut self) -> Result<()> {
        match std::mem::replace(&mut self.temp, Temp::Gone) {
            // Unlinked first, deregistered after (the token drops at the end of the arm): a
            // concurrent `remove_temps` at worst unlinks an already-gone name.
            Temp::Named(n, _token) => rfs::unlinkat(&self.dir, &n, AtFlags::empty())
                .map_err(|e| Error::new(Op::RemoveTemp, self.dir_path.join(&n), errno(e))),
            _ => Ok(()),
        }
    }
}

/// A finished batch file that holds no descriptor until its publish ([`AtomicFile::park`]):
/// its data sits in a named temp (registered with [`interrupt`] until it is published or
/// removed), its hash, owner and mode are final.
///
/// Without its descriptor the temp is not `flock`ed: [`clean`](crate::clean) leaves it alone
/// because the batch holds a shared lock on its directory (see `Batch`). A parked temp
/// removed anyway makes its publish fail (`ENOENT`): that destination is reported not
/// replaced, never half-written.
///
/// Compact, because a batch of a million files keeps one per file until its commit: the temp's
/// name lives only in its [`interrupt`] registration (which a signal's cleanup needs anyway)
/// and is looked up for the rename; the digest is raw bytes, hex-encoded for the receipt; the
/// run id is shared by the files of the batch that have the same one.
#[derive(Debug)]
pub(crate) struct Parked {
    dir: Arc<OwnedFd>,
    dest: PathBuf,
    /// The temp's registration (which holds its name); `None` once published or removed.
    tmp: Option<TempToken>,
    sys: Sys,
    fs_type: u64,
    size: u64,
    sha256: Option<Sha256Digest>,
    owner_changed: Option<OwnerChange>,
    run_id: Option<Arc<str>>,
    durability: Durability,
    no_clobber: bool,
    /// Nothing had the destination's name at the lookup (see [`rename_over_absent`]).
    absent: bool,
    internal: bool,
    /// `fsync`ed when parked (the batch's barrier does not cover it).
    synced: bool,
    visible: bool,
}

impl AtomicFile {
    /// Batch parking (frees the descriptor of a finished file before its batch commits): hash,
    /// owner and mode are finished now, an anonymous temp gets its registered temp name, and
    /// with `sync` the file is `fsync`ed. The caller then drops `self`, which closes the
    /// descriptor and leaves the temp to the returned [`Parked`]. `run_id` is the batch's
    /// shared copy of the last run id parked: reused when this file's is the same. On error
    /// `self` still owns its temp (removed when it drops).
    pub(crate) fn park(&mut self, sync: bool, run_id: &mut Option<Arc<str>>) -> Result<Parked> {
        let sha256 = self.prepare()?;
        if matches!(self.temp, Temp::Anonymous) {
            // No flock: it would last only until the close below (see `Parked`).
            let (tmp, token) = self.link_anonymous_named(false)?;
            self.temp = Temp::Named(tmp, token);
        }
        if sync && self.opts.durability != Durability::None {
            // The batch's barrier will not cover this file (no syncfs that reports errors
            // here) and after the close no fsync can: make its data durable, and see any write
            // error, while it is still open.
            self.sys
                .sync_file(self.file.as_fd())
                .map_err(|e| Error::new(Op::SyncFile, &self.dest, e))?;
            // btrfs: the data of an inode linked after its writes is synced once more.
            self.sync_after_link()?;
        }
        let Temp::Named(_, token) = std::mem::replace(&mut self.temp, Temp::Gone) else {
            unreachable!("an unpublished temp is anonymous or named")
        };
        let run_id = self.opts.run_id.take().map(|id| match run_id {
            Some(shared) if **shared == *id => Arc::clone(shared),
            _ => Arc::clone(run_id.insert(Arc::from(id))),
        });
        Ok(Parked {
            dir: Arc::clone(&self.dir),
            dest: std::mem::take(&mut self.dest),
            tmp: Some(token),
            sys: self.sys,
            fs_type: self.fs.fs_type,
            size: self.len,
            sha256,
            owner_changed: self.owner_changed,
            run_id,
            durability: self.opts.durability,
            no_clobber: self.opts.no_clobber,
            absent: self.absent,
            internal: self.opts.internal,
            synced: sync,
            visible: false,
        })
    }
}

impl Parked {
    pub(crate) fn destination(&self) -> &Path {
        &self.dest
    }

    pub(crate) fn dir_fd(&self) -> &Arc<OwnedFd> {
        &self.dir
    }

    pub(crate) fn sys(&self) -> Sys {
        self.sys
    }

    pub(crate) fn is_visible(&self) -> bool {
        self.visible
    }

    /// Whether its data was made durable when it was parked.
    pub(crate) fn synced(&self) -> bool {
        self.synced
    }

    fn name(&self) -> &std::ffi::OsStr {
        self.dest.file_name().unwrap_or_default()
    }

    fn interrupted(&self) -> Error {
        Error::other(
            Op::Rename,
            &self.dest,
            io::ErrorKind::Interrupted,
            "interrupted: the process is stopping; the destination was not replaced",
        )
    }

    /// Renames the temp over the destination (create-only: `renameat2(RENAME_NOREPLACE)`, or
    /// `linkat` + `unlinkat` where the filesystem refuses it), as [`AtomicFile`] publishes a
    /// named temp. Runs inside the batch's critical section.
    pub(crate) fn publish(&mut self) -> Result<()> {
        // Its name is gone from the registry only once `remove_temps` unlinked it.
        let tmp = match &self.tmp {
            Some(token) if !interrupt::closed() => token.name(),
            Some(_) => None,
            None => unreachable!("publish called twice"),
        };
        let Some(tmp) = tmp else {
            return Err(self.interrupted());
        };
        let shown = self.dest.with_file_name(&tmp);
        let r = if self.no_clobber {
            self.rename_noreplace(&tmp, &shown)
        } else if self.absent {
            let dir_path = self.dest.parent().unwrap_or(Path::new(""));
            rename_over_absent(
                self.sys,
                self.fs_type,
                &self.dir,
                dir_path,
                &tmp,
                &self.dest,
            )
            .map(|()| false)
        } else {
            rfs::renameat(&self.dir, &tmp, &self.dir, self.name())
                .map(|()| false)
                .map_err(|e| Error::new2(Op::Rename, &shown, &self.dest, errno(e)))
        };
        let linked = r?;
        self.now_visible();
        if linked {
            // Portable create-only: the temp name is a second link to the published file;
            // drop it (Drop retries once, `clean` later).
            self.remove_second_name(&shown)?;
        } else {
            // Renamed: the temp name is gone, deregister it.
            self.tmp = None;
        }
        Ok(())
    }

    /// Create-only publish; `Ok(true)` when it was a `linkat` (the temp name still exists).
    fn rename_noreplace(&self, tmp: &std::ffi::OsStr, shown: &Path) -> Result<bool> {
        if !self
            .sys
            .known_refused(self.fs_type, Feature::RenameNoreplace)
        {
            match self
                .sys
                .rename_noreplace(self.dir.as_fd(), tmp, self.name())
            {
                Ok(true) => return Ok(false),
                Ok(false) => self
                    .sys
                    .remember_refused(self.fs_type, Feature::RenameNoreplace),
                Err(e) => return Err(Error::new2(Op::Rename, shown, &self.dest, e)),
            }
        }
        rfs::linkat(&self.dir, tmp, &self.dir, self.name(), AtFlags::empty())
            .map_err(|e| Error::new2(Op::Link, shown, &self.dest, errno(e)))?;
        Ok(true)
    }

    fn remove_second_name(&mut self, shown: &Path) -> Result<()> {
        let Some(token) = &self.tmp else {
            return Ok(());
        };
        if let Some(Err(e)) = token.unlink() {
            return Err(Error::new(Op::RemoveTemp, shown, errno(e)).with_hint(
                "the new contents are visible at the destination; the leftover name is a second \
                 link to it, removed on drop or by a temp sweep (`clean`)",
            ));
        }
        self.tmp = None;
        Ok(())
    }

    fn now_visible(&mut self) {
        self.visible = true;
        if !self.internal {
            interrupt::note_replaced(&self.dest);
        }
    }

    /// `fsync` of the destination's directory (makes its publish durable).
    pub(crate) fn sync_dir(&self) -> Result<()> {
        let dir = self.dest.parent().unwrap_or(Path::new("."));
        self.sys.sync_dir(self.dir.as_fd()).map_err(|e| {
            Error::new(Op::SyncDir, dir, e).with_hint(
                "the new contents are visible but are not promised to survive a power loss; \
                 write them again",
            )
        })
    }

    pub(crate) fn receipt(&self) -> Receipt {
        Receipt {
            path: self.dest.clone(),
            size: self.size,
            sha256: self.sha256.map(hex::encode),
            written_at: SystemTime::now(),
            run_id: match &self.run_id {
                Some(id) => id.to_string(),
                None => receipt::process_run_id().to_string(),
            },
            durability: crate::doctor::honoured(self.durability, self.fs_type),
            owner_changed: self.owner_changed,
            object: None,
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        // Unlinked first, deregistered after (the token drops at the end of the block).
        if let Some(token) = self.tmp.take() {
            let _ = token.unlink();
        }
    }
}

/// Who may rely on the `flock` of a directory fd, which decides how [`create_named`] holds the
/// directory's shared lock ([`crate::clean::lock_dir_shared`]) across its window. `flock` locks
/// belong to the open file description, which every clone of an `Arc<OwnedFd>` shares: a
/// `LOCK_UN` on a shared one would drop a lock someone else holds on purpose (a batch's).
#[derive(Debug)]
pub(crate) enum DirLock<'a> {
    /// The fd is this write's own (a single write opens its directory itself): locked for the
    /// window and unlocked right after, on the fd itself (2 syscalls).
    OwnFd,
    /// The fd is shared with others (a versions store's): the window's lock is taken on a new
    /// open file description of the same directory (`openat(fd, ".")`), closed right after
    /// (3 syscalls), so no lock of theirs is touched, from any thread.
    SharedFd,
    /// A batch's fd (shared by its files through its [`DirCache`]): the batch takes the lock on
    /// it once, before its first named temp there, and keeps it until it ends, as it does
    /// before parking a temp; the set holds the fds already locked (by address, see
    /// `Batch::locked_dirs`; `true`: held, `false`: refused). Every later temp there costs no
    /// syscall, and no lock is ever
    /// released under a parked temp. A lock refused after the bounded wait is not asked for
    /// again by that batch (a hostile holder costs it one wait, not one per file).
    Batch(&'a mut DirLocks),
}

/// A batch's directory locks: directory fd (by address) → whether the batch holds its shared
/// `flock` (`false`: refused after the bounded wait; not asked for again). Each entry keeps its
/// fd open (an `Arc` clone) until the batch ends: an address recorded here is never reused by
/// another directory's fd, which would then pass for locked.
#[derive(Debug, Default)]
pub(crate) struct DirLocks(std::collections::HashMap<usize, (Arc<OwnedFd>, bool)>);

impl DirLocks {
    /// Whether the batch holds `dir`'s shared lock, taking it (bounded wait) the first time.
    pub(crate) fn held(&mut self, dir: &Arc<OwnedFd>) -> bool {
        self.0
            .entry(Arc::as_ptr(dir) as usize)
            .or_insert_with(|| (Arc::clone(dir), crate::clean::lock_dir_shared(&**dir)))
            .1
    }
}

/// The directory lock [`create_named`] holds across its window; released when dropped.
enum WindowLock<'a> {
    /// Held for the window by the batch (which keeps it until it ends).
    Batch,
    /// Not held: it could not be taken within the bounded wait (someone holds it
    /// exclusively), or the filesystem has no directory locks.
    Refused,
    /// Held on the write's own fd: unlocked on drop.
    Own(&'a OwnedFd),
    /// Held on a new open file description: released when it closes on drop.
    Fresh { _held: OwnedFd },
}

impl WindowLock<'_> {
    fn take<'a>(dir: &'a Arc<OwnedFd>, how: DirLock<'_>) -> WindowLock<'a> {
        match how {
            DirLock::OwnFd => {
                debug_assert_eq!(Arc::strong_count(dir), 1, "a single write owns its dir fd");
                if crate::clean::lock_dir_shared(&**dir) {
                    return WindowLock::Own(dir);
                }
            }
            DirLock::SharedFd => {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
                if let Ok(fresh) = rfs::openat(&**dir, ".", flags, Mode::empty())
                    && crate::clean::lock_dir_shared(&fresh)
                {
                    return WindowLock::Fresh { _held: fresh };
                }
            }
            DirLock::Batch(locked) => {
                if locked.held(dir) {
                    return WindowLock::Batch;
                }
            }
        }
        WindowLock::Refused
    }

    fn held(&self) -> bool {
        !matches!(self, WindowLock::Refused)
    }
}

impl Drop for WindowLock<'_> {
    fn drop(&mut self) {
        if let WindowLock::Own(fd) = self {
            let _ = rfs::flock(*fd, FlockOperation::Unlock);
        }
    }
}

/// Creates `.{name}.{random}.tmp` in `dir` with `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`, mode
/// 0600, `flock`s it (so `clean` leaves it alone) and registers it with [`interrupt`] in the
/// same locked step (so a signal cannot fall between creation and registration).
///
/// Between the create and the temp's `flock` the temp exists without a lock: a
/// `clean --older-than 0` could take it for a dead writer's. So the directory's shared lock
/// ([`crate::clean::lock_dir_shared`]) is held from before the create until after the temp's
/// `flock`, as `lock` says, and `clean` leaves every temp of a directory so locked alone. A
/// process killed in between loses both locks with its life: its temp is then an unlocked
/// leftover that `clean` removes. The lock is taken outside the registry's critical section,
/// so a wait for it (up to ~2 s, then the write goes on without it; see
/// [`clean`](crate::clean)) never holds up other threads' temps or a signal's cleanup.
pub(crate) fn create_named(
    dir: &Arc<OwnedFd>,
    dir_path: &Path,
    name: &std::ffi::OsStr,
    name_max: usize,
    lock: DirLock<'_>,
) -> Result<(OwnedFd, OsString, TempToken)> {
    let window = WindowLock::take(dir, lock);
    let created = create_temp(dir, dir_path, name, name_max, 0o600, |fd, tmp| {
        // Tells `clean` that a live writer owns this temp. Cannot block: the file is new.
        let locked = rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive);
        // Without the directory's lock, a `clean --older-than 0` may have taken the temp for a
        // dead writer's before its flock, and anyone who can write here may have made a file of
        // theirs under the freed name: the name is used (renamed over the destination, or
        // unlinked) only if it still names the file this writer created. Once flocked it stays
        // ours: `clean` keeps a locked temp, and in a sticky directory no other user can remove
        // it.
        let ours = window.held() || names_file(dir, tmp, &fd);
        if let Err(e) = locked {
            if ours {
                let _ = rfs::unlinkat(&**dir, tmp, AtFlags::empty());
            }
            return Err(Error::new(Op::Lock, dir_path.join(tmp), errno(e)));
        }
        if !ours {
            return Err(Error::other(
                Op::CreateTemp,
                dir_path.join(tmp),
                io::ErrorKind::Other,
                "was removed or replaced by another process before it could be locked (the \
                 directory's lock could not be taken to protect it); the destination was not \
                 replaced",
            ));
        }
        Ok(fd)
    });
    drop(window);
    created
}

/// Creates a new temp named after `name` in `dir` (`O_CREAT | O_EXCL | O_NOFOLLOW`, mode
/// `mode` filtered by the umask), registered with [`interrupt`] as it is created, and hands it
/// to `check` (which may refuse it: it then removes what it must and returns the error).
fn create_temp(
    dir: &Arc<OwnedFd>,
    dir_path: &Path,
    name: &std::ffi::OsStr,
    name_max: usize,
    mode: u32,
    check: impl Fn(OwnedFd, &std::ffi::OsStr) -> Result<OwnedFd>,
) -> Result<(OwnedFd, OsString, TempToken)> {
    interrupt::create_registered(dir, dir_path, || {
        for _ in 0..NAME_ATTEMPTS {
            let tmp = tempname::temp_name(name, name_max);
            let flags =
                OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDWR;
            match rfs::openat(&**dir, &tmp, flags, Mode::from_raw_mode(mode)) {
                Ok(fd) => {
                    interrupt::test_point("named-created", 0);
                    return Ok((check(fd, &tmp)?, tmp));
                }
                Err(Errno::EXIST) => tempname::collided(),
                Err(e) => return Err(Error::new(Op::CreateTemp, dir_path.join(&tmp), errno(e))),
            }
        }
        Err(Error::new(
            Op::CreateTemp,
            dir_path.join(name),
            errno(Errno::EXIST),
        ))
    })
}

/// Renames the temp `tmp` over `dest` (in `dir`) for a write whose destination was absent at
/// its lookup: `renameat2(RENAME_NOREPLACE)` where the filesystem has it, so that a newcomer is
/// seen, and replaced only if [`dest::check_newcomer`] allows (a regular file or a symlink, and
/// not another user's in a shared sticky directory); a newcomer gone again by the time it is
/// looked at is met by another create-only rename, a few times, then a conflict. Where the
/// filesystem has no `RENAME_NOREPLACE` (the portable path), the name is looked up just before
/// a plain `renameat` (one `stat` more; a newcomer planted between the two is replaced, as
/// any newcomer was before this check existed).
fn rename_over_absent(
    sys: Sys,
    fs_type: u64,
    dir: &OwnedFd,
    dir_path: &Path,
    tmp: &std::ffi::OsStr,
    dest: &Path,
) -> Result<()> {
    let name = dest.file_name().unwrap_or_default();
    let mut gone = 0;
    while !sys.known_refused(fs_type, Feature::RenameNoreplace) {
        match sys.rename_noreplace(dir.as_fd(), tmp, name) {
            Ok(true) => return Ok(()),
            // Not available (the portable backend remembers nothing: leave the loop here).
            Ok(false) => {
                sys.remember_refused(fs_type, Feature::RenameNoreplace);
                break;
            }
            // A newcomer that may be replaced: a plain rename now (see `check_newcomer`).
            Err(e) if e.raw_os_error() == Some(Errno::EXIST.raw_os_error()) => {
                if dest::check_newcomer(dir, dir_path, dest)? {
                    return rename_plain(dir, dir_path, tmp, dest);
                }
                gone += 1;
                if gone == dest::NEWCOMER_TRIES {
                    return Err(dest::newcomer_churn(dest));
                }
            }
            Err(e) => return Err(Error::new2(Op::Rename, dir_path.join(tmp), dest, e)),
        }
    }
    dest::check_newcomer(dir, dir_path, dest)?;
    rename_plain(dir, dir_path, tmp, dest)
}

fn rename_plain(dir: &OwnedFd, dir_path: &Path, tmp: &std::ffi::OsStr, dest: &Path) -> Result<()> {
    let name = dest.file_name().unwrap_or_default();
    rfs::renameat(dir, tmp, dir, name)
        .map_err(|e| Error::new2(Op::Rename, dir_path.join(tmp), dest, errno(e)))
}

/// Whether `name` in `dir` is the file open as `fd` (same device and inode; a symlink is not
/// followed). Two `stat`s, paid only by a named temp created without the directory's lock.
fn names_file(dir: &OwnedFd, name: &std::ffi::OsStr, fd: &OwnedFd) -> bool {
    match (
        rfs::fstat(fd),
        rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW),
    ) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// A source file opened for copying by a [`SourceOpener`]: the open file and what one `fstat`
/// of it said (a regular file, its size, mode, owner and filesystem).
#[derive(Debug)]
pub struct SourceFile {
    file: File,
    is_file: bool,
    path: PathBuf,
    dev: u64,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

impl SourceFile {
    /// Whether it is a regular file (anything else is open without blocking and should be
    /// refused: copying a FIFO or a device is never meant).
    pub fn is_file(&self) -> bool {
        self.is_file
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The path it was opened by (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its size when it was opened.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether it was empty when it was opened.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Its permission bits, set-id and sticky bits included (`st_mode & 0o7777`).
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// Its owner's uid.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Its group's gid.
    pub fn gid(&self) -> u32 {
        self.gid
    }
}

/// Opens many source files for copying, as [`open_source`](crate::open_source) does, but
/// holding each parent directory open once: a thousand sources in one directory cost one
/// directory walk, then one `openat(dirfd, name, O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)` and one
/// `fstat` each.
///
/// Guarantees: the same as [`open_source`](crate::open_source). Each parent directory is walked
/// once, by the same rules (a symlink on the way is followed only under the sticky-directory
/// rule), and never resolved again: later files in it are opened relative to the held fd. A
/// final component that is a symlink (the `O_NOFOLLOW` open fails with `ELOOP`) is handed to
/// [`open_source`](crate::open_source) itself, which applies the rule to the link. A FIFO or a
/// device is opened without blocking and returned with [`SourceFile::is_file`] false, for the
/// caller to refuse. Does not guarantee that a directory renamed after its first file was opened is
/// still at its path (the held fd follows the directory, as any open directory does).
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # std::fs::write(dir.path().join("a.txt"), "hello")?;
/// let mut sources = atomwrite::SourceOpener::default();
/// let src = sources.open(dir.path().join("a.txt"))?;
/// assert_eq!(src.len(), 5);
/// let mut f = atomwrite::Options::new().open(dir.path().join("b.txt"))?;
/// f.copy_from_source(&src, None)?;
/// f.commit()?;
/// assert_eq!(std::fs::read(dir.path().join("b.txt"))?, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct SourceOpener {
    dirs: std::collections::HashMap<PathBuf, OwnedFd>,
}

impl SourceOpener {
    /// Opens `path` for reading (see the type docs); check [`SourceFile::is_file`].
    pub fn open(&mut self, path: impl AsRef<Path>) -> Result<SourceFile> {
        let path = path.as_ref();
        let fast = match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                self.open_in(parent, name)?
            }
            _ => None,
        };
        let (file, st) = match fast {
            Some(hit) => hit,
            None => {
                // A symlink, `..`, a bare `/`: the full rules and their errors.
                let fd = crate::dest::open_source(path, crate::dest::Want::NonBlocking)?;
                let st = rfs::fstat(&fd).map_err(|e| Error::new(Op::Inspect, path, errno(e)))?;
                (fd, st)
            }
        };
        Ok(SourceFile {
            is_file: rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::RegularFile,
            file: File::from(file),
            path: path.to_path_buf(),
            dev: st.st_dev,
            size: st.st_size as u64,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
        })
    }

    /// The fast path: `name` opened relative to the held `parent`; `None` when the full rules
    /// must decide (a symlink).
    fn open_in(
        &mut self,
        parent: &Path,
        name: &std::ffi::OsStr,
    ) -> Result<Option<(OwnedFd, rfs::Stat)>> {
        if name == ".." || name == "." {
            return Ok(None);
        }
        let dir = match self.dirs.get(parent) {
            Some(d) => d,
            None => {
                let d = crate::dest::open_dir(parent, false, Durability::None)?;
                self.dirs.entry(parent.to_path_buf()).or_insert(d)
            }
        };
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match rfs::openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::LOOP) => return Ok(None),
            Err(e) => return Err(Error::new(Op::Read, parent.join(name), errno(e))),
        };
        let st =
            rfs::fstat(&fd).map_err(|e| Error::new(Op::Inspect, parent.join(name), errno(e)))?;
        Ok(Some((fd, st)))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Temp::Named(n, token) = std::mem::replace(&mut self.temp, Temp::Gone) {
            let _ = rfs::unlinkat(&self.dir, &n, AtFlags::empty());
            token.forget();
        }
    }
}

/// A reader that reports every read to a progress callback (the buffered copy path).
struct Counting<'a, R> {
    inner: R,
    progress: Option<&'a mut dyn FnMut(u64)>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(p) = self.progress.as_mut() {
            p(n as u64);
        }
        Ok(n)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self.file.write(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let kind = e.kind();
                return Err(io::Error::new(kind, Error::new(Op::Write, &self.dest, e)));
            }
        };
        if let Some(h) = &mut self.hasher {
            if self.pos == self.hashed && !self.hash_dirty {
                h.update(&buf[..n]);
                self.hashed += n as u64;
            } else {
                self.hash_dirty = true;
            }
        }
        self.pos += n as u64;
        self.len = self.len.max(self.pos);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let p = self.file.seek(pos)?;
        self.pos = p;
        Ok(p)
    }
}
