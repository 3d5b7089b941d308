//! Directory trees walked through directory file descriptors: the copy behind
//! [`Publisher::publish_dir`](crate::Publisher::publish_dir) and the hash behind directory
//! manifests and [`verify`](crate::verify).
//!
//! # Why a tree walk cannot be redirected
//!
//! The caller opens the root once (that is the only place a symlink may be followed: a
//! published `DST` pointer, or a source directory the user named through a link). Below it,
//! every entry is reached with **one** `openat`/`readlinkat`/`fstatat` of a **single name**
//! returned by `readdir`, relative to the file descriptor of the directory that listed it, with
//! `O_NOFOLLOW`. `readdir` never yields a name with a `/`, and `.`/`..` are filtered out, so a
//! single-component lookup from a held directory fd can only reach a child of that directory:
//! no path is ever resolved twice, and no component can be a symlink that is followed. That is
//! why `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` is not needed here: it restricts
//! multi-component lookups, and there are none.
//!
//! The type of an entry is decided from the **opened** file descriptor (`fstat`), never from an
//! earlier `stat` or `d_type`, which only pick the syscall to try. A regular file that another
//! user swaps for a symlink (`renameat2(RENAME_EXCHANGE)` in a loop) makes the `O_NOFOLLOW` open
//! fail with `ELOOP`; a directory swapped for a symlink fails `O_DIRECTORY | O_NOFOLLOW`; either
//! way the walk stops with an error naming the entry ("changed while the tree was being
//! read"), and nothing outside the tree is ever opened. Files are opened with `O_NONBLOCK |
//! O_NOCTTY`, so a FIFO swapped in for a file cannot block the walk and a terminal cannot become
//! the controlling one; it is then refused because `fstat` says it is not a regular file.
//!
//! # Copies
//!
//! [`copy_tree`] recreates symlinks as symlinks (`readlinkat` + `symlinkat`, never followed,
//! dangling ones too) and refuses FIFOs, sockets and device nodes with an error naming the
//! entry (publishing a device node or a FIFO is never what a site or model tree means, and
//! skipping one silently would publish a tree that differs from its source). Like `cp -r`
//! without `-p`: regular files are created `O_CREAT | O_EXCL | O_NOFOLLOW` with mode 0600, filled,
//! then given `source mode & 0o777 & !umask` (set-uid, set-gid and sticky bits are never
//! copied); directories are created 0700 and given `source mode & 0o777 & !umask` after their
//! contents are written. Nobody else can read a file or list a directory before it is complete.
//! Owners are not copied (the copy belongs to the caller).
//!
//! # Limits
//!
//! The walk uses an explicit stack (no recursion) and refuses trees deeper than [`MAX_DEPTH`].
//! It holds one file descriptor per level being walked (two when copying), so very deep trees
//! may also hit `RLIMIT_NOFILE` (`EMFILE`, reported with the path). A tree that changes while it
//! is walked gives an error or a consistent copy of each entry as it was when opened; it does
//! not give a snapshot of the whole tree at one instant.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use crate::error::errno;
use crate::manifest::DirEntry;
use crate::{Error, Op, Result};

/// The deepest directory nesting walked; deeper trees are refused (`InvalidInput`).
pub(crate) const MAX_DEPTH: usize = 4096;

/// Files hashed at once by [`hash_tree`] (bounded: memory and open files stay small).
const HASH_THREADS: usize = 4;

/// Read buffer of a buffered copy or a hash (one per thread).
const BUF_SIZE: usize = 256 << 10;

/// What [`copy_tree`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TreeStats {
    /// Regular files copied.
    pub files: u64,
    /// Directories created (the root not counted).
    pub dirs: u64,
    /// Symlinks recreated.
    pub symlinks: u64,
    /// Bytes of regular files copied.
    pub bytes: u64,
}

/// A directory being walked: its fd, shown path, listing-relative path and the names left.
struct Frame {
    fd: OwnedFd,
    path: PathBuf,
    rel: String,
    names: std::vec::IntoIter<(OsString, FileType)>,
    /// Copy only: the directory being filled and the mode it gets once complete.
    dst: Option<(OwnedFd, PathBuf, u32)>,
}

impl Frame {
    /// The frame of the walk's root `dir`, without a destination: a duplicate of `dir` and its
    /// listing.
    fn root(dir: &OwnedFd, path: &Path) -> Result<Frame> {
        Ok(Frame {
            fd: dir
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::new(Op::OpenDir, path, e))?,
            path: path.to_path_buf(),
            rel: String::new(),
            names: list(dir, path)?,
            dst: None,
        })
    }
}

/// The names in `dir` (without `.` and `..`) sorted by bytes, with their `d_type` (a hint only).
fn list(dir: &OwnedFd, path: &Path) -> Result<std::vec::IntoIter<(OsString, FileType)>> {
    let mut d = rfs::Dir::read_from(dir).map_err(|e| Error::new(Op::ReadDir, path, errno(e)))?;
    let mut names = Vec::new();
    while let Some(ent) = d.read() {
        let ent = ent.map_err(|e| Error::new(Op::ReadDir, path, errno(e)))?;
        let name = ent.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        names.push((OsStr::from_bytes(name).to_os_string(), ent.file_type()));
    }
    names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(names.into_iter())
}

/// The entry's type: `d_type` when the filesystem gave one, else `fstatat(AT_SYMLINK_NOFOLLOW)`.
/// Only chooses what to try; the opened fd decides.
fn hint(dir: &OwnedFd, name: &OsStr, ty: FileType, path: &Path) -> Result<FileType> {
    if ty != FileType::Unknown {
        return Ok(ty);
    }
    let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::new(Op::Inspect, path, errno(e)))?;
    Ok(FileType::from_raw_mode(st.st_mode))
}

fn type_name(ty: FileType) -> &'static str {
    match ty {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown type",
    }
}

fn refused(op: Op, path: &Path, ty: FileType) -> Error {
    Error::other(
        op,
        path,
        io::ErrorKind::InvalidInput,
        format!(
            "is {}: not a regular file, directory or symlink; a tree holding one cannot be \
             published or hashed",
            type_name(ty)
        ),
    )
}

fn changed(path: &Path, was: FileType, now: &str) -> Error {
    Error::other(
        Op::Read,
        path,
        io::ErrorKind::Other,
        format!(
            "changed while the tree was being read (was {}, now {now}); symlinks inside a \
             tree are never followed",
            type_name(was)
        ),
    )
}

/// Opens a regular file of the tree: one `openat(O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)` relative
/// to its directory, then `fstat` of the opened fd, which must be a regular file.
/// Returns the fd and its mode.
fn open_regular(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<(OwnedFd, u32, u64)> {
    let fd = match rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Err(changed(path, FileType::RegularFile, "a symlink")),
        Err(e) => return Err(Error::new(Op::Read, path, errno(e))),
    };
    let st = rfs::fstat(&fd).map_err(|e| Error::new(Op::Read, path, errno(e)))?;
    let ty = FileType::from_raw_mode(st.st_mode);
    if ty != FileType::RegularFile {
        return Err(refused(Op::Read, path, ty));
    }
    Ok((fd, st.st_mode, st.st_size as u64))
}

/// Opens a subdirectory: one `openat(O_DIRECTORY | O_NOFOLLOW)` relative to its parent.
fn open_subdir(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<OwnedFd> {
    match rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(fd),
        Err(Errno::LOOP) => Err(changed(path, FileType::Directory, "a symlink")),
        Err(Errno::NOTDIR) => Err(changed(path, FileType::Directory, "not a directory")),
        Err(e) => Err(Error::new(Op::OpenDir, path, errno(e))),
    }
}

/// `readlinkat` of an entry that should be a symlink.
fn read_link(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<OsString> {
    match rfs::readlinkat(dir, name, Vec::new()) {
        Ok(t) => Ok(OsStr::from_bytes(t.as_bytes()).to_os_string()),
        Err(Errno::INVAL) => Err(changed(path, FileType::Symlink, "not a symlink")),
        Err(e) => Err(Error::new(Op::Inspect, path, errno(e))),
    }
}

fn too_deep(path: &Path) -> Error {
    Error::other(
        Op::ReadDir,
        path,
        io::ErrorKind::InvalidInput,
        format!("the tree is nested deeper than {MAX_DEPTH} directories"),
    )
}

fn join_rel(rel: &str, name: &OsStr) -> String {
    if rel.is_empty() {
        name.to_string_lossy().into_owned()
    } else {
        format!("{rel}/{}", name.to_string_lossy())
    }
}

/// The permission bits a copy gets: `cp` without `-p`.
fn copy_mode(src_mode: u32, umask: u32) -> u32 {
    src_mode & 0o777 & !umask
}

/// How [`copy_tree`] makes the copy durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TreeDurability {
    /// Nothing flushed.
    None,
    /// Every file `fsync`ed, every directory `fsync`ed after its children (bottom-up): the
    /// portable path, and kernels whose `syncfs` may drop an error.
    EachFile,
    /// One `syncfs(2)` of the destination's filesystem after the whole copy: one journal commit
    /// and one device flush for the tree, whatever its size. Only where the backend says `syncfs`
    /// reports every error an `fsync` of each file would ([`crate::sys::SyncfsSupport`]).
    Syncfs,
}

impl TreeDurability {
    /// The barrier `backend` allows when the copy must be durable.
    pub(crate) fn for_backend(durable: bool, backend: crate::sys::Sys) -> TreeDurability {
        if !durable {
            TreeDurability::None
        } else if backend.sync_filesystem_support().available {
            TreeDurability::Syncfs
        } else {
            TreeDurability::EachFile
        }
    }
}

/// Copies the tree below `src_dir` into the (empty) directory `dst_dir`, entirely through
/// directory fds (see the module docs). `src_path` and `dst_path` are only shown in errors.
///
/// Guarantees: nothing outside the source tree is opened or read, whatever another user swaps
/// in while the walk runs (an entry that changes type is an error); symlinks are recreated, never
/// followed; FIFOs, sockets and devices are refused (the open cannot block); no copy carries
/// set-id or sticky bits: files and directories get `source mode & 0o777 & !umask`, including
/// `dst_dir` itself once complete; under [`TreeDurability::EachFile`] every file is `fsync`ed
/// and every directory `fsync`ed after its children (bottom-up), under
/// [`TreeDurability::Syncfs`] one `syncfs` of `dst_dir`'s filesystem (opened before any file
/// was written, so it reports a write error of any of them) runs after the last file, so either
/// way, when this returns, the whole copy is durable except `dst_dir`'s own entry in its parent. A source directory that is `dst_dir` itself (the
/// destination inside the source) is refused.
///
/// Does not guarantee a snapshot of a tree that changes meanwhile, and does not clean up: on
/// error, `dst_dir` holds a partial copy for the caller to remove.
pub(crate) fn copy_tree(
    src_dir: &OwnedFd,
    src_path: &Path,
    dst_dir: &OwnedFd,
    dst_path: &Path,
    durability: TreeDurability,
) -> Result<TreeStats> {
    let umask = crate::platform::umask();
    let dst_st = rfs::fstat(dst_dir).map_err(|e| Error::new(Op::OpenDir, dst_path, errno(e)))?;
    let src_st = rfs::fstat(src_dir).map_err(|e| Error::new(Op::OpenDir, src_path, errno(e)))?;
    if (src_st.st_dev, src_st.st_ino) == (dst_st.st_dev, dst_st.st_ino) {
        return Err(inside(src_path, dst_path));
    }
    let mut tc = TreeCopy {
        durable: durability == TreeDurability::EachFile,
        umask,
        dst_st,
        copier: Copier::new(),
        stats: TreeStats::default(),
    };
    let mut root = Frame::root(src_dir, src_path)?;
    root.dst = Some((
        dst_dir
            .try_clone()
            .map_err(|e| Error::new(Op::OpenDir, dst_path, e))?,
        dst_path.to_path_buf(),
        copy_mode(src_st.st_mode, umask),
    ));
    let mut stack = vec![root];
    loop {
        let depth = stack.len();
        let Some(top) = stack.last_mut() else {
            break;
        };
        let Some((name, ty)) = top.names.next() else {
            let done = stack.pop().expect("the stack is not empty");
            tc.finish_dir(done)?;
            continue;
        };
        if let Some(sub) = tc.copy_entry(top, depth, name, ty)? {
            stack.push(sub);
        }
    }
    if durability == TreeDurability::Syncfs {
        syncfs_tree(dst_dir, dst_path)?;
    }
    Ok(tc.stats)
}

/// The state of one [`copy_tree`] walk.
struct TreeCopy {
    /// [`TreeDurability::EachFile`]: every file and directory `fsync`ed.
    durable: bool,
    umask: u32,
    /// The destination root, refused as a source directory (the destination inside the source).
    dst_st: rfs::Stat,
    copier: Copier,
    stats: TreeStats,
}

impl TreeCopy {
    /// Gives a completely copied directory its mode, then syncs it (bottom-up) when durable.
    fn finish_dir(&self, done: Frame) -> Result<()> {
        let (dfd, dpath, mode) = done.dst.expect("every copy frame has a destination");
        rfs::fchmod(&dfd, Mode::from_raw_mode(mode))
            .map_err(|e| Error::new(Op::Chmod, &dpath, errno(e)))?;
        if self.durable {
            // Bottom-up: the entries of this directory (its files, links and subdirectories,
            // all already durable) survive power loss; its parent is synced after it.
            crate::platform::sync_dir(&dfd).map_err(|e| Error::new(Op::SyncDir, &dpath, e))?;
        }
        Ok(())
    }

    /// Copies the entry `name` of the directory `top` (at `depth`); returns the frame of a
    /// subdirectory to walk next.
    fn copy_entry(
        &mut self,
        top: &Frame,
        depth: usize,
        name: OsString,
        ty: FileType,
    ) -> Result<Option<Frame>> {
        let from = top.path.join(&name);
        let (dfd, dpath, _) = top
            .dst
            .as_ref()
            .expect("every copy frame has a destination");
        let to = dpath.join(&name);
        match hint(&top.fd, &name, ty, &from)? {
            FileType::Directory => {
                if depth >= MAX_DEPTH {
                    return Err(too_deep(&from));
                }
                return self.copy_subdir(top, dfd, name, from, to).map(Some);
            }
            FileType::Symlink => {
                let target = read_link(&top.fd, &name, &from)?;
                rfs::symlinkat(&target, dfd, &name)
                    .map_err(|e| Error::new(Op::Symlink, &to, errno(e)))?;
                self.stats.symlinks += 1;
            }
            FileType::RegularFile => self.copy_file(&top.fd, dfd, &name, &from, &to)?,
            other => return Err(refused(Op::Copy, &from, other)),
        }
        Ok(None)
    }

    /// Creates the copy of the subdirectory `name` of `top` and returns its frame.
    fn copy_subdir(
        &mut self,
        top: &Frame,
        dfd: &OwnedFd,
        name: OsString,
        from: PathBuf,
        to: PathBuf,
    ) -> Result<Frame> {
        let sub = open_subdir(&top.fd, &name, &from)?;
        let st = rfs::fstat(&sub).map_err(|e| Error::new(Op::OpenDir, &from, errno(e)))?;
        if (st.st_dev, st.st_ino) == (self.dst_st.st_dev, self.dst_st.st_ino) {
            return Err(inside(&from, &to));
        }
        rfs::mkdirat(dfd, &name, Mode::from_raw_mode(0o700))
            .map_err(|e| Error::new(Op::CreateDir, &to, errno(e)))?;
        let sub_dst = open_subdir(dfd, &name, &to)?;
        let names = list(&sub, &from)?;
        let rel = join_rel(&top.rel, &name);
        self.stats.dirs += 1;
        Ok(Frame {
            fd: sub,
            path: from,
            rel,
            names,
            dst: Some((sub_dst, to, copy_mode(st.st_mode, self.umask))),
        })
    }

    /// Copies the regular file `name` of `src_dir` into `dfd`, giving it its mode.
    fn copy_file(
        &mut self,
        src_dir: &OwnedFd,
        dfd: &OwnedFd,
        name: &OsStr,
        from: &Path,
        to: &Path,
    ) -> Result<()> {
        let (src, mode, size) = open_regular(src_dir, name, from)?;
        let out = rfs::openat(
            dfd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| Error::new(Op::CreateTemp, to, errno(e)))?;
        let n = self.copier.copy(&src, &out, size, from, to)?;
        rfs::fchmod(&out, Mode::from_raw_mode(copy_mode(mode, self.umask)))
            .map_err(|e| Error::new(Op::Chmod, to, errno(e)))?;
        if self.durable {
            // The file's data and mode must be durable before the directories above it
            // (and then the version) are.
            crate::platform::sync_file(&out).map_err(|e| Error::new(Op::SyncFile, to, e))?;
        }
        self.stats.files += 1;
        self.stats.bytes += n;
        Ok(())
    }
}

/// The [`TreeDurability::Syncfs`] barrier after the whole copy into `dst_dir`.
fn syncfs_tree(dst_dir: &OwnedFd, dst_path: &Path) -> Result<()> {
    // One barrier for the whole tree: every file's data and every directory entry created
    // above are on stable storage, and a write error of any of them is reported here.
    let covered = crate::sys::host()
        .sync_filesystem(dst_dir.as_fd())
        .map_err(|e| Error::new(Op::SyncFile, dst_path, e))?;
    if !covered {
        return Err(Error::other(
            Op::SyncFile,
            dst_path,
            io::ErrorKind::Unsupported,
            "syncfs was expected to be available and is not; nothing was published",
        ));
    }
    Ok(())
}

fn inside(src: &Path, dst: &Path) -> Error {
    Error::other(
        Op::Copy,
        src,
        io::ErrorKind::InvalidInput,
        format!(
            "is the destination `{}` itself: cannot copy a directory into itself",
            dst.display()
        ),
    )
}

/// Copies file contents fd to fd: `FICLONE`, else `copy_file_range`, else a buffered copy. A
/// refused fast path is not tried again during the same walk.
struct Copier {
    reflink: bool,
    range: bool,
    buf: Vec<u8>,
}

impl Copier {
    fn new() -> Copier {
        Copier {
            reflink: true,
            range: true,
            buf: Vec::new(),
        }
    }

    fn copy(
        &mut self,
        src: &OwnedFd,
        dst: &OwnedFd,
        size: u64,
        from: &Path,
        to: &Path,
    ) -> Result<u64> {
        let fail = |e: io::Error| Error::new2(Op::Copy, from, to, e);
        if self.reflink && size > 0 {
            match crate::platform::reflink(src, dst) {
                Ok(true) => {
                    let st = rfs::fstat(dst).map_err(|e| fail(errno(e)))?;
                    return Ok(st.st_size as u64);
                }
                Ok(false) => self.reflink = false,
                Err(e) => return Err(fail(e)),
            }
        }
        let mut copied = 0u64;
        if self.range {
            loop {
                let chunk = (1usize << 30).min(size.saturating_sub(copied).max(1 << 20) as usize);
                match crate::platform::copy_range(src, dst, chunk) {
                    Ok(Some(0)) => return Ok(copied),
                    Ok(Some(n)) => copied += n as u64,
                    // Refused: the offsets of both fds are where the kernel stopped, so the
                    // buffered copy below continues from there.
                    Ok(None) => {
                        self.range = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(fail(e)),
                }
            }
        }
        if self.buf.is_empty() {
            self.buf = vec![0u8; BUF_SIZE];
        }
        loop {
            let n = match rustix::io::read(src, &mut self.buf) {
                Ok(0) => return Ok(copied),
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(Error::new(Op::Read, from, errno(e))),
            };
            let mut rest = &self.buf[..n];
            while !rest.is_empty() {
                match rustix::io::write(dst, rest) {
                    Ok(w) => rest = &rest[w..],
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(Error::new(Op::Write, to, errno(e))),
                }
            }
            copied += n as u64;
        }
    }
}

/// Streams an open file through sha256: `(size, hex sha256)`.
fn hash_fd(fd: &OwnedFd, buf: &mut [u8], path: &Path) -> Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut total = 0u64;
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                total += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(Error::new(Op::Read, path, errno(e))),
        }
    }
    Ok((total, hex::encode(h.finalize())))
}

/// One file to hash: its index in the listing, its open fd, its shown path.
type Job = (usize, OwnedFd, PathBuf);

/// A file's index in the listing and its `(size, sha256)`.
type Hashed = (usize, Result<(u64, String)>);

/// Hashes the tree below `dir` the way directory manifests record it: `(total size of the
/// regular files, listing sha256, entries)`, entirely through directory fds (see the module
/// docs). `path` is only shown in errors.
///
/// The entries are in walk order (each directory's names sorted by bytes, a directory followed
/// by its contents), paths `/`-joined with non-UTF-8 bytes replaced by U+FFFD; the listing hashed
/// is one line per entry: `D path`, `F sha256 size path`, `L target path`. This is exactly the
/// format of manifests written by earlier versions, which therefore still verify.
///
/// Guarantees: symlinks are recorded, never followed; FIFOs, sockets and devices are refused
/// (an error, never a blocking open); nothing outside the tree is opened. Files are hashed on up
/// to 4 threads, with a bounded number of open files; the result does not depend on the thread
/// count. Does not guarantee a snapshot of a tree that changes meanwhile.
pub(crate) fn hash_tree(dir: &OwnedFd, path: &Path) -> Result<(u64, String, Vec<DirEntry>)> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(HASH_THREADS);
    hash_tree_with(dir, path, threads)
}

/// [`hash_tree`] on `threads` hashing threads (1: inline, no thread started).
fn hash_tree_with(
    dir: &OwnedFd,
    path: &Path,
    threads: usize,
) -> Result<(u64, String, Vec<DirEntry>)> {
    let mut entries: Vec<DirEntry> = Vec::new();
    let mut results = if threads <= 1 {
        hash_inline(dir, path, &mut entries)?
    } else {
        hash_parallel(dir, path, threads, &mut entries)?
    };
    // The first failure in listing order, so the error does not depend on scheduling.
    results.sort_by_key(|(idx, _)| *idx);
    for (idx, r) in results {
        let (size, sha) = r?;
        entries[idx].size = Some(size);
        entries[idx].sha256 = Some(sha);
    }
    let (total, sha) = hash_listing(&entries);
    Ok((total, sha, entries))
}

/// Walks the tree hashing each file as it is found, on this thread.
fn hash_inline(dir: &OwnedFd, path: &Path, entries: &mut Vec<DirEntry>) -> Result<Vec<Hashed>> {
    let mut results: Vec<Hashed> = Vec::new();
    let mut buf = vec![0u8; BUF_SIZE];
    walk_for_hash(dir, path, entries, &mut |idx, fd, p| {
        let r = hash_fd(&fd, &mut buf, &p);
        let go_on = r.is_ok();
        results.push((idx, r));
        go_on
    })?;
    Ok(results)
}

/// Walks the tree on this thread, handing each open file to one of `threads` hashing threads
/// through a bounded queue.
fn hash_parallel(
    dir: &OwnedFd,
    path: &Path,
    threads: usize,
    entries: &mut Vec<DirEntry>,
) -> Result<Vec<Hashed>> {
    let failed = AtomicBool::new(false);
    let (tx, rx) = mpsc::sync_channel::<Job>(threads * 2);
    let rx = Mutex::new(rx);
    let hashed = Mutex::new(Vec::new());
    let walked = std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = vec![0u8; BUF_SIZE];
                loop {
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((idx, fd, p)) = job else { break };
                    if failed.load(Ordering::Relaxed) {
                        continue;
                    }
                    let r = hash_fd(&fd, &mut buf, &p);
                    drop(fd);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    let mut g = hashed.lock().unwrap_or_else(|e| e.into_inner());
                    g.push((idx, r));
                }
            });
        }
        let r = walk_for_hash(dir, path, entries, &mut |idx, fd, p| {
            // Blocks while every worker is busy and the queue is full: bounded open files.
            !failed.load(Ordering::Relaxed) && tx.send((idx, fd, p)).is_ok()
        });
        drop(tx);
        r
    });
    walked?;
    Ok(hashed.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// The total size of the regular files and the sha256 of the listing of `entries` (one line
/// per entry: `D path`, `F sha256 size path`, `L target path`).
fn hash_listing(entries: &[DirEntry]) -> (u64, String) {
    let mut h = Sha256::new();
    let mut total = 0u64;
    for e in entries {
        let line = match e.kind.as_str() {
            "dir" => format!("D {}\n", e.path),
            "symlink" => format!("L {} {}\n", e.target.as_deref().unwrap_or(""), e.path),
            _ => {
                total += e.size.unwrap_or(0);
                format!(
                    "F {} {} {}\n",
                    e.sha256.as_deref().unwrap_or(""),
                    e.size.unwrap_or(0),
                    e.path
                )
            }
        };
        h.update(line.as_bytes());
    }
    (total, hex::encode(h.finalize()))
}

/// A manifest entry without size or hash (filled in once the file is hashed).
fn listed(path: String, kind: &str, target: Option<String>) -> DirEntry {
    DirEntry {
        path,
        kind: kind.into(),
        size: None,
        sha256: None,
        target,
    }
}

/// Walks the tree appending entries; each regular file is opened (checked regular from its fd)
/// and handed to `file(index, fd, path)`, which hashes it now or later and returns false to stop
/// the walk (a hash failed).
fn walk_for_hash(
    dir: &OwnedFd,
    path: &Path,
    entries: &mut Vec<DirEntry>,
    file: &mut dyn FnMut(usize, OwnedFd, PathBuf) -> bool,
) -> Result<()> {
    let mut stack = vec![Frame::root(dir, path)?];
    loop {
        let depth = stack.len();
        let Some(top) = stack.last_mut() else {
            break;
        };
        let Some((name, ty)) = top.names.next() else {
            stack.pop();
            continue;
        };
        let p = top.path.join(&name);
        let rel = join_rel(&top.rel, &name);
        match hint(&top.fd, &name, ty, &p)? {
            FileType::Directory => {
                if depth >= MAX_DEPTH {
                    return Err(too_deep(&p));
                }
                let sub = open_subdir(&top.fd, &name, &p)?;
                let names = list(&sub, &p)?;
                entries.push(listed(rel.clone(), "dir", None));
                stack.push(Frame {
                    fd: sub,
                    path: p,
                    rel,
                    names,
                    dst: None,
                });
            }
            FileType::Symlink => {
                let t = read_link(&top.fd, &name, &p)?;
                let target = t.to_string_lossy().into_owned();
                entries.push(listed(rel, "symlink", Some(target)));
            }
            FileType::RegularFile => {
                let (fd, _, _) = open_regular(&top.fd, &name, &p)?;
                let idx = entries.len();
                entries.push(listed(rel, "file", None));
                if !file(idx, fd, p) {
                    return Ok(());
                }
            }
            other => return Err(refused(Op::Inspect, &p, other)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(p: &Path) -> OwnedFd {
        rfs::open(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn hash_is_the_same_on_any_number_of_threads() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..300u32 {
            let sub = d
                .path()
                .join(format!("d{}", i % 7))
                .join(format!("e{}", i % 3));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join(format!("f{i}")), i.to_string().repeat(i as usize)).unwrap();
        }
        std::os::unix::fs::symlink("d1", d.path().join("link")).unwrap();
        let fd = open(d.path());
        let one = hash_tree_with(&fd, d.path(), 1).unwrap();
        for threads in [2, 4, 16] {
            assert_eq!(hash_tree_with(&fd, d.path(), threads).unwrap(), one);
        }
        assert_eq!(one.2.len(), 300 + 7 + 21 + 1);
    }

    #[test]
    fn a_fifo_is_refused_without_blocking_on_any_number_of_threads() {
        let d = tempfile::tempdir().unwrap();
        for i in (0..50u32).filter(|i| *i != 25) {
            std::fs::write(d.path().join(format!("f{i:02}")), b"x").unwrap();
        }
        let fifo = FileType::Fifo;
        rfs::mknodat(open(d.path()), "f25", fifo, Mode::from_raw_mode(0o644), 0).unwrap();
        for threads in [1, 2, 4] {
            let e = hash_tree_with(&open(d.path()), d.path(), threads).unwrap_err();
            assert!(e.to_string().contains("f25"), "{e}");
            assert!(e.to_string().contains("is a FIFO"), "{e}");
        }
    }

    #[test]
    fn copy_modes_never_keep_set_id_or_sticky_bits() {
        assert_eq!(copy_mode(0o106755, 0o022), 0o755);
        assert_eq!(copy_mode(0o042775, 0o002), 0o775);
        assert_eq!(copy_mode(0o041777, 0o027), 0o750);
        assert_eq!(copy_mode(0o100666, 0o022), 0o644);
    }
}
