//! A destination's versions store, opened once: `DST`'s parent and `DST.versions/` as directory
//! fds; everything below is relative to them (`O_NOFOLLOW`), nothing is resolved by path twice.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::name::{self, MAX_VERSION, VersionName};
use crate::error::errno;
use crate::manifest::{MANIFEST_FORMAT, MANIFEST_SUFFIX, Manifest, relabel_manifest};
use crate::{AtomicFile, Error, Op, Options, Result};

const VERSIONS_SUFFIX: &str = ".versions";

/// What `DST` is now.
#[derive(Debug, Clone)]
pub(crate) enum Current {
    Missing,
    /// A regular file not yet published (it becomes a version on the first publish).
    Regular(rfs::Stat),
    /// A real directory not yet published.
    Directory,
    /// A pointer made by `publish`.
    Version(VersionName),
    /// A symlink that is not a pointer into `DST.versions/` (its target, for messages).
    Foreign(Vec<u8>),
    /// A FIFO, socket or device.
    Special,
}

impl Current {
    /// The current version number; 0 when nothing is published.
    pub(crate) fn number(&self) -> u64 {
        match self {
            Current::Version(v) => v.number(),
            _ => 0,
        }
    }
}

/// The names and directory fds of one destination's versions.
#[derive(Debug)]
pub(crate) struct Store {
    /// `DST` as the caller wrote it.
    pub dst: PathBuf,
    /// `DST`'s parent, for messages (`.` for a bare name).
    pub parent: PathBuf,
    /// `DST`'s file name.
    pub name: OsString,
    pub parent_fd: Arc<OwnedFd>,
    /// `DST.versions` as shown in messages and receipts.
    pub vdir: PathBuf,
    pub vdir_name: OsString,
    /// `None` when the versions directory does not exist (queries and `clean` only).
    pub vdir_fd: Option<Arc<OwnedFd>>,
    /// Suffix of file versions (`.csv`).
    pub ext: String,
    /// `NAME_MAX` of the parent's filesystem (for marker and temp names beside `DST`).
    pub name_max: usize,
    /// This open created `DST.versions/` (a publish that then fails removes it again).
    pub created_vdir: bool,
}

pub(crate) fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl Store {
    /// Opens `dst`'s parent (created durably if `create_parent`) and, if `create_vdir`, creates
    /// `DST.versions/` (durably) and opens it; otherwise opens it if it exists.
    pub(crate) fn open(
        dst: &Path,
        create_parent: bool,
        create_vdir: bool,
        durability: crate::Durability,
    ) -> Result<Store> {
        Store::open_checked(dst, create_parent, create_vdir, durability, |_| Ok(()))
    }

    /// [`Store::open`] that runs `check` on the parent's fd before anything is created.
    ///
    /// For a publish (`create_vdir`) it also applies the sticky-directory rule to what a publish
    /// replaces or writes into: in a sticky directory that others may write, a `DST` (regular
    /// file or pointer) or a `DST.versions/` that belongs to neither the caller nor the
    /// directory's owner is refused, so another user can neither receive the caller's data nor
    /// control what `DST` serves. A `DST` written as a directory (`x/`) is refused like the shell.
    pub(crate) fn open_checked(
        dst: &Path,
        create_parent: bool,
        create_vdir: bool,
        durability: crate::Durability,
        check: impl FnOnce(&OwnedFd) -> Result<()>,
    ) -> Result<Store> {
        // A refusal of the shared destination checks is, for a publish, a failure to publish.
        Store::open_unmapped(dst, create_parent, create_vdir, durability, check).map_err(|e| {
            if create_vdir && e.op() == Op::CheckDestination {
                e.with_op(Op::Publish)
            } else {
                e
            }
        })
    }

    fn open_unmapped(
        dst: &Path,
        create_parent: bool,
        create_vdir: bool,
        durability: crate::Durability,
        check: impl FnOnce(&OwnedFd) -> Result<()>,
    ) -> Result<Store> {
        if create_vdir {
            crate::dest::refuse_directory_syntax(dst)?;
        }
        let (parent, name) = crate::dest::split(dst)?;
        let shown_parent = dst.parent().map(Path::to_path_buf).unwrap_or_default();
        let parent_fd = crate::dest::open_dir(&parent, create_parent, durability)?;
        check(&parent_fd)?;
        if create_vdir {
            let mut vdir_name = name.clone();
            vdir_name.push(VERSIONS_SUFFIX);
            for n in [&name, &vdir_name] {
                if let Ok(st) = rfs::statat(&parent_fd, n, AtFlags::SYMLINK_NOFOLLOW) {
                    crate::dest::check_sticky_rule(
                        crate::dest::Rule::Entry,
                        &parent_fd,
                        &parent,
                        &shown_parent.join(n),
                        st.st_uid,
                    )?;
                }
            }
        }
        Store::open_in(
            Arc::new(parent_fd),
            parent,
            shown_parent,
            name,
            create_vdir,
            durability,
        )
    }

    /// [`Store::open`] below an already-open parent directory (`clean`'s walk).
    pub(crate) fn open_in(
        parent_fd: Arc<OwnedFd>,
        parent: PathBuf,
        shown_parent: PathBuf,
        name: OsString,
        create_vdir: bool,
        durability: crate::Durability,
    ) -> Result<Store> {
        let mut vdir_name = name.clone();
        vdir_name.push(VERSIONS_SUFFIX);
        let vdir = shown_parent.join(&vdir_name);
        let mut created_vdir = false;
        if create_vdir {
            match rfs::mkdirat(&*parent_fd, &vdir_name, Mode::from_raw_mode(0o777)) {
                Ok(()) => {
                    created_vdir = true;
                    if durability == crate::Durability::Full {
                        // The new versions directory's entry must survive a power loss before
                        // anything inside it is promised durable.
                        crate::sys::sync_dir(std::os::fd::AsFd::as_fd(&*parent_fd))
                            .map_err(|e| Error::new(Op::SyncDir, &parent, e))?;
                    }
                }
                Err(Errno::EXIST) => {}
                Err(e) => return Err(Error::new(Op::CreateDir, &vdir, errno(e))),
            }
        }
        let vdir_fd = match rfs::openat(&*parent_fd, &vdir_name, dir_flags(), Mode::empty()) {
            Ok(fd) => Some(Arc::new(fd)),
            Err(Errno::NOENT) if !create_vdir => None,
            Err(e) => return Err(Error::new(Op::OpenDir, &vdir, errno(e))),
        };
        let name_max = crate::sys::fs_info(std::os::fd::AsFd::as_fd(&*parent_fd))
            .map_err(|e| Error::new(Op::OpenDir, &parent, e))?
            .name_max;
        Ok(Store {
            created_vdir,
            name_max,
            dst: shown_parent.join(&name),
            parent,
            ext: name::extension_of(&name),
            name,
            parent_fd,
            vdir,
            vdir_name,
            vdir_fd,
        })
    }

    pub(crate) fn vfd(&self) -> &Arc<OwnedFd> {
        self.vdir_fd
            .as_ref()
            .expect("the versions directory is open")
    }

    /// Reads `DST` once (`fstatat` + one `readlinkat`).
    pub(crate) fn current(&self) -> Result<Current> {
        let st = match rfs::statat(&*self.parent_fd, &self.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(Current::Missing),
            Err(e) => return Err(Error::new(Op::Inspect, &self.dst, errno(e))),
        };
        Ok(match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Current::Regular(st),
            FileType::Directory => Current::Directory,
            FileType::Symlink => {
                let t = match rfs::readlinkat(&*self.parent_fd, &self.name, Vec::new()) {
                    Ok(t) => t.into_bytes(),
                    // Replaced between the two calls: read it as it is now.
                    Err(Errno::NOENT | Errno::INVAL) => return self.current(),
                    Err(e) => return Err(Error::new(Op::Inspect, &self.dst, errno(e))),
                };
                match name::parse_pointer(&t, &self.vdir_name) {
                    Some(v) => Current::Version(v),
                    None => Current::Foreign(t),
                }
            }
            _ => Current::Special,
        })
    }

    /// The path of a version (or any name in the versions directory), for messages.
    pub(crate) fn path_of(&self, name: &OsStr) -> PathBuf {
        self.vdir.join(name)
    }

    /// `fstatat(vdir, name, AT_SYMLINK_NOFOLLOW)`; `None` when absent.
    pub(crate) fn stat_in_vdir(&self, name: &OsStr) -> Result<Option<rfs::Stat>> {
        match rfs::statat(&**self.vfd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::new(Op::Inspect, self.path_of(name), errno(e))),
        }
    }

    /// The name of version `n` for a file (`v….csv`) or a directory (`v…`).
    pub(crate) fn version_name(&self, n: u64, dir: bool) -> Result<VersionName> {
        VersionName::new(n, if dir { "" } else { &self.ext }).ok_or_else(|| {
            Error::other(
                Op::Publish,
                &self.dst,
                io::ErrorKind::StorageFull,
                format!("version numbers are exhausted (the largest is {MAX_VERSION})"),
            )
        })
    }

    /// The pointer target naming `v` (`DST.versions/v…`).
    pub(crate) fn target_of(&self, v: &VersionName) -> OsString {
        let mut t = self.vdir_name.clone();
        t.push("/");
        t.push(v.to_os_string());
        t
    }

    /// The pending marker of version `n` (a name beside `DST`).
    pub(crate) fn marker(&self, n: u64) -> OsString {
        name::marker_name(&self.name, self.name_max, n)
    }

    /// Claims the lowest free number from `start` for a file (or, `dir`, a directory) version:
    /// creates its pending marker (a symlink to the version-to-be, `symlinkat` fails with `EEXIST`
    /// if the number is being or was being published) and checks that no version or manifest of
    /// that number exists. Called with the lock held. Returns the number and its version name.
    pub(crate) fn claim(&self, start: u64, dir: bool) -> Result<VersionName> {
        let mut n = start.max(1);
        loop {
            let v = self.version_name(n, dir)?;
            let marker = self.marker(n);
            match rfs::symlinkat(self.target_of(&v), &*self.parent_fd, &marker) {
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    n += 1;
                    continue;
                }
                Err(e) => return Err(Error::new(Op::Symlink, self.parent.join(&marker), errno(e))),
            }
            let other = self.version_name(n, !dir)?;
            let mut taken = false;
            for x in [v.to_os_string(), other.to_os_string()] {
                taken = taken
                    || self.stat_in_vdir(&x)?.is_some()
                    || self.stat_in_vdir(&manifest_name(&x))?.is_some();
            }
            if !taken {
                return Ok(v);
            }
            self.unlink_marker(n)?;
            n += 1;
        }
    }

    /// Removes the pending marker of `n` (a missing one is fine).
    pub(crate) fn unlink_marker(&self, n: u64) -> Result<()> {
        let m = self.marker(n);
        match rfs::unlinkat(&*self.parent_fd, &m, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::new(Op::RemoveTemp, self.parent.join(&m), errno(e))),
        }
    }

    /// The highest number any version or manifest in the directory uses (one listing;
    /// only when no hint is available).
    pub(crate) fn max_number(&self) -> Result<u64> {
        let mut max = 0;
        for ent in self.list()? {
            let b = ent.name.as_bytes();
            let base = b.strip_suffix(MANIFEST_SUFFIX.as_bytes()).unwrap_or(b);
            if let Some(v) = VersionName::parse(base) {
                max = max.max(v.number());
            }
        }
        Ok(max)
    }

    /// One listing of the versions directory.
    pub(crate) fn list(&self) -> Result<Vec<Entry>> {
        list_dir(self.vfd(), &self.vdir)
    }

    /// Opens a new file `name` in the versions directory (create-only, relative to the held fd).
    pub(crate) fn create_file(&self, name: &OsStr, opts: &Options) -> Result<AtomicFile> {
        let mut o = opts.clone();
        o.no_clobber = true;
        o.internal = true;
        AtomicFile::open_in(
            self.vfd().clone(),
            self.vdir.clone(),
            name.to_os_string(),
            &o,
        )
    }

    /// Writes the manifest of `data_name` (replacing any), atomically, relative to the held fd.
    pub(crate) fn write_manifest(
        &self,
        data_name: &OsStr,
        m: &Manifest,
        opts: &Options,
    ) -> Result<()> {
        let mname = manifest_name(data_name);
        let path = self.path_of(&mname);
        // The manifest is exactly as private as its version (it names the version's size and
        // hash): the version's owner, group and mode, without exec or set-id bits.
        let vst = rfs::statat(self.vfd(), data_name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::new(Op::Inspect, self.path_of(data_name), errno(e)))?;
        let mut o = opts
            .clone()
            .preserve_source(vst.st_mode & 0o666, vst.st_uid, vst.st_gid);
        o.no_clobber = false;
        o.size_hint = None;
        o.mode = None;
        o.preserve_owner_strict = false;
        o.internal = true;
        let mut f = AtomicFile::open_in(self.vfd().clone(), self.vdir.clone(), mname, &o)
            .map_err(|e| relabel_manifest(e, &path))?;
        f.write_all_bytes(m.to_json().as_bytes())
            .map_err(|e| relabel_manifest(e, &path))?;
        f.commit()
            .map(|_| ())
            .map_err(|e| relabel_manifest(e, &path))
    }

    /// Reads and checks the manifest of `data_name`.
    pub(crate) fn read_manifest(&self, data_name: &OsStr) -> Result<Manifest> {
        let mname = manifest_name(data_name);
        read_manifest_at(self.vfd(), &mname, &self.path_of(&mname))
    }

    /// `(size, sha256)` of a file in the versions directory, read through an `O_NOFOLLOW` fd.
    pub(crate) fn hash_in_vdir(&self, name: &OsStr) -> Result<(u64, String, rfs::Stat)> {
        let path = self.path_of(name);
        let f = open_regular(self.vfd(), name, &path)?;
        let st = rfs::fstat(&f).map_err(|e| Error::new(Op::Inspect, &path, errno(e)))?;
        let (size, sha) = crate::manifest::hash_reader(std::fs::File::from(f), &path)?;
        Ok((size, sha, st))
    }

    /// Removes a version (file or tree), its manifest and nothing else; returns what was removed
    /// and the bytes freed.
    pub(crate) fn remove_version(&self, name: &OsStr) -> Result<(Vec<PathBuf>, u64)> {
        let mut out = Vec::new();
        let mut bytes = 0;
        if let Some(st) = self.stat_in_vdir(name)? {
            bytes += remove_entry(self.vfd(), name, &self.path_of(name), &st)?;
            out.push(self.path_of(name));
        }
        let m = manifest_name(name);
        if let Some(st) = self.stat_in_vdir(&m)? {
            bytes += remove_entry(self.vfd(), &m, &self.path_of(&m), &st)?;
            out.push(self.path_of(&m));
        }
        Ok((out, bytes))
    }

    /// After a failed first publish: removes the lock file and the versions directory this open
    /// created, if nothing else is in it (a refused publish leaves nothing behind).
    pub(crate) fn remove_created_vdir(&self) {
        if self.created_vdir && self.vdir_fd.is_some() {
            let _ = rfs::unlinkat(&**self.vfd(), super::lock::LOCK_NAME, AtFlags::empty());
            let _ = rfs::unlinkat(&*self.parent_fd, &self.vdir_name, AtFlags::REMOVEDIR);
        }
    }

    /// `fsync` of the versions directory.
    pub(crate) fn sync_vdir(&self) -> Result<()> {
        crate::sys::sync_dir(std::os::fd::AsFd::as_fd(&**self.vfd()))
            .map_err(|e| Error::new(Op::SyncDir, &self.vdir, e))
    }

    /// `fsync` of `DST`'s parent.
    pub(crate) fn sync_parent(&self) -> Result<()> {
        crate::sys::sync_dir(std::os::fd::AsFd::as_fd(&*self.parent_fd))
            .map_err(|e| Error::new(Op::SyncDir, &self.parent, e))
    }
}

/// `name` + `.manifest.json`.
pub(crate) fn manifest_name(name: &OsStr) -> OsString {
    let mut m = name.to_os_string();
    m.push(MANIFEST_SUFFIX);
    m
}

/// One directory entry.
pub(crate) struct Entry {
    pub name: OsString,
    pub kind: FileType,
}

pub(crate) fn list_dir(fd: &OwnedFd, path: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let entries = rfs::Dir::read_from(fd).map_err(|e| Error::new(Op::ReadDir, path, errno(e)))?;
    for ent in entries {
        let ent = ent.map_err(|e| Error::new(Op::ReadDir, path, errno(e)))?;
        let n = ent.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        out.push(Entry {
            name: OsString::from_vec(n.to_vec()),
            kind: ent.file_type(),
        });
    }
    Ok(out)
}

/// Opens a regular file relative to `dir` without following links or blocking on a FIFO, and
/// checks from the opened fd that it is a regular file.
pub(crate) fn open_regular(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<OwnedFd> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::new(Op::Read, path, errno(e)))?;
    let st = rfs::fstat(&fd).map_err(|e| Error::new(Op::Inspect, path, errno(e)))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(Error::other(
            Op::Read,
            path,
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(fd)
}

/// Reads a manifest relative to `dir` (`O_NOFOLLOW`, at most 64 MiB) and checks its format.
pub(crate) fn read_manifest_at(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<Manifest> {
    let fd = open_regular(dir, name, path).map_err(|e| {
        Error::new(
            Op::ReadManifest,
            path,
            io::Error::new(e.kind(), e.io_error().to_string()),
        )
    })?;
    let mut text = Vec::new();
    std::fs::File::from(fd)
        .take(64 << 20)
        .read_to_end(&mut text)
        .map_err(|e| Error::new(Op::ReadManifest, path, e))?;
    let bad = |msg: String| Error::other(Op::ReadManifest, path, io::ErrorKind::InvalidData, msg);
    let m: Manifest =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not a valid manifest: {e}")))?;
    if m.format != MANIFEST_FORMAT {
        return Err(bad(format!(
            "unknown manifest format `{}` (expected `{MANIFEST_FORMAT}`)",
            m.format
        )));
    }
    Ok(m)
}

/// `unlinkat(d, n, flags)`; a name already gone is not an error.
fn unlink_if_present(d: &OwnedFd, n: &OsStr, p: &Path, flags: AtFlags) -> Result<()> {
    match rfs::unlinkat(d, n, flags) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(Error::new(Op::RemoveTemp, p, errno(e))),
    }
}

/// Opens the directory `n` of `d` (never through a symlink); none when it is already gone.
fn open_if_present(d: &OwnedFd, n: &OsStr, p: &Path) -> Result<Option<OwnedFd>> {
    match rfs::openat(d, n, dir_flags(), Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(Error::new(Op::OpenDir, p, errno(e))),
    }
}

/// Removes `name` (a file, symlink or a whole tree) relative to `dir`, never following a link;
/// returns the bytes of regular files removed. Iterative (an explicit stack of directory fds),
/// so a deep tree cannot overflow the thread's stack; depth is bounded by the fds it may hold.
pub(crate) fn remove_entry(
    dir: &OwnedFd,
    name: &OsStr,
    path: &Path,
    st: &rfs::Stat,
) -> Result<u64> {
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        unlink_if_present(dir, name, path, AtFlags::empty())?;
        let regular = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile;
        return Ok(if regular { st.st_size as u64 } else { 0 });
    }
    let Some(root) = open_if_present(dir, name, path)? else {
        return Ok(0);
    };
    // Each frame: a directory fd, its path, and the name it has in the frame below.
    let mut stack: Vec<(OwnedFd, PathBuf, OsString)> =
        vec![(root, path.to_path_buf(), name.to_os_string())];
    let mut bytes = 0;
    while let Some((fd, p, _)) = stack.last() {
        let mut descend = None;
        for ent in list_dir(fd, p)? {
            let ep = p.join(&ent.name);
            let est = match rfs::statat(fd, &ent.name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(Error::new(Op::Inspect, &ep, errno(e))),
            };
            if FileType::from_raw_mode(est.st_mode) == FileType::Directory {
                if let Some(sub) = open_if_present(fd, &ent.name, &ep)? {
                    descend = Some((sub, ep, ent.name));
                    break;
                }
            } else {
                unlink_if_present(fd, &ent.name, &ep, AtFlags::empty())?;
                if FileType::from_raw_mode(est.st_mode) == FileType::RegularFile {
                    bytes += est.st_size as u64;
                }
            }
        }
        match descend {
            Some(frame) => stack.push(frame),
            None => {
                // Empty now: remove it from its parent (the frame below, or `dir`).
                let (_, p, n) = stack.pop().expect("non-empty");
                let parent = stack.last().map_or(dir, |(f, _, _)| f);
                unlink_if_present(parent, &n, &p, AtFlags::REMOVEDIR)?;
            }
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_deep_tree_needs_no_deep_stack() {
        let d = tempfile::tempdir().unwrap();
        let root = rfs::open(d.path(), dir_flags(), Mode::empty()).unwrap();
        rfs::mkdirat(&root, "t", Mode::from_raw_mode(0o700)).unwrap();
        let mut cur = rfs::openat(&root, "t", dir_flags(), Mode::empty()).unwrap();
        for _ in 0..900 {
            rfs::mkdirat(&cur, "d", Mode::from_raw_mode(0o700)).unwrap();
            let f = rfs::openat(
                &cur,
                "f",
                OFlags::CREATE | OFlags::WRONLY,
                Mode::from_raw_mode(0o600),
            )
            .unwrap();
            rustix::io::write(&f, b"xy").unwrap();
            cur = rfs::openat(&cur, "d", dir_flags(), Mode::empty()).unwrap();
        }
        drop(cur);
        let st = rfs::statat(&root, "t", AtFlags::SYMLINK_NOFOLLOW).unwrap();
        // A small stack: the old recursive removal overflowed here.
        let bytes = std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || remove_entry(&root, OsStr::new("t"), Path::new("t"), &st).unwrap())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(bytes, 1800);
        assert!(!d.path().join("t").exists());
    }
}
