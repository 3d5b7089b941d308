//! Resolving a destination: open its parent directory once (creating it durably if asked),
//! follow or keep a final symlink, refuse anything that is not a regular file.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{self, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::errno;
use crate::options::{Durability, Options, SymlinkPolicy};
use crate::sys::{self, FsInfo};
use crate::{Error, Op, Result};

/// Symlink hops followed before giving up with `ELOOP` (Linux's own limit is 40).
const MAX_HOPS: usize = 40;

/// The metadata of a regular file being replaced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Existing {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A destination, resolved: its directory (held open for the whole write), its name in that
/// directory, and what is there now.
pub(crate) struct Dest {
    pub dir: Arc<OwnedFd>,
    pub dir_path: PathBuf,
    pub name: OsString,
    pub path: PathBuf,
    pub existing: Option<Existing>,
    pub fs: FsInfo,
}

/// Splits `path` into (parent, final name). "." is the parent of a bare name.
pub(crate) fn split(path: &Path) -> Result<(PathBuf, OsString)> {
    let name = path.file_name().ok_or_else(|| {
        Error::other(
            Op::CheckDestination,
            path,
            io::ErrorKind::InvalidInput,
            "the path has no file name",
        )
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name.to_os_string()))
}

/// Directories already opened by a [`Batch`](crate::Batch), so a thousand files in one
/// directory cost one `open` + `fstatfs`, not a thousand.
#[derive(Debug, Default)]
pub(crate) struct DirCache {
    map: HashMap<PathBuf, (Arc<OwnedFd>, FsInfo)>,
}

impl DirCache {
    fn get(&mut self, parent: &Path, opts: &Options) -> Result<(Arc<OwnedFd>, FsInfo)> {
        if let Some(hit) = self.map.get(parent) {
            return Ok(hit.clone());
        }
        let opened = open_with_info(parent, opts)?;
        self.map.insert(parent.to_path_buf(), opened.clone());
        Ok(opened)
    }
}

fn open_with_info(parent: &Path, opts: &Options) -> Result<(Arc<OwnedFd>, FsInfo)> {
    let dir = open_dir(parent, !opts.no_create_dirs, opts.durability)?;
    let fs = sys::fs_info(dir.as_fd()).map_err(|e| Error::new(Op::OpenDir, parent, e))?;
    Ok((Arc::new(dir), fs))
}

pub(crate) fn resolve(
    path: &Path,
    opts: &Options,
    mut cache: Option<&mut DirCache>,
) -> Result<Dest> {
    let mut cur = path.to_path_buf();
    for _ in 0..=MAX_HOPS {
        let (parent, name) = split(&cur)?;
        let (dir, fs) = match cache.as_deref_mut() {
            Some(c) => c.get(&parent, opts)?,
            None => open_with_info(&parent, opts)?,
        };
        let full = parent.join(&name);
        if name.len() > fs.name_max {
            return Err(
                Error::new(Op::CheckDestination, &full, errno(Errno::NAMETOOLONG)).with_hint(
                    format!(
                        "the file name is {} bytes; this filesystem allows at most {}",
                        name.len(),
                        fs.name_max
                    ),
                ),
            );
        }
        let st = match fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(Error::new(Op::Inspect, &full, errno(e))),
        };
        let existing = match st {
            None => None,
            Some(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => Some(Existing {
                    mode: st.st_mode & 0o7777,
                    uid: st.st_uid,
                    gid: st.st_gid,
                }),
                FileType::Symlink if opts.symlinks == SymlinkPolicy::Follow => {
                    let target = fs::readlinkat(&dir, &name, Vec::new())
                        .map_err(|e| Error::new(Op::Inspect, &full, errno(e)))?;
                    let target: OsString =
                        std::os::unix::ffi::OsStringExt::from_vec(target.into_bytes());
                    let target = PathBuf::from(target);
                    cur = if target.is_absolute() {
                        target
                    } else {
                        parent.join(target)
                    };
                    continue;
                }
                FileType::Symlink => None,
                FileType::Directory => {
                    return Err(Error::other(
                        Op::CheckDestination,
                        &full,
                        io::ErrorKind::IsADirectory,
                        "the destination is a directory",
                    ));
                }
                other => {
                    let what = match other {
                        FileType::Fifo => "a FIFO",
                        FileType::Socket => "a socket",
                        FileType::CharacterDevice => "a character device",
                        FileType::BlockDevice => "a block device",
                        _ => "not a regular file",
                    };
                    return Err(Error::other(
                        Op::CheckDestination,
                        &full,
                        io::ErrorKind::InvalidInput,
                        format!(
                            "the destination is {what}; only regular files can be replaced atomically"
                        ),
                    ));
                }
            },
        };
        return Ok(Dest {
            dir,
            dir_path: parent,
            name,
            path: full,
            existing,
            fs,
        });
    }
    Err(Error::new(Op::Inspect, path, errno(Errno::LOOP)))
}

/// A destination `name` inside an open directory: nothing resolved by path, a symlink at `name`
/// is replaced (never followed), a non-regular file refused.
pub(crate) fn in_dir(dir: Arc<OwnedFd>, dir_path: PathBuf, name: OsString) -> Result<Dest> {
    let full = dir_path.join(&name);
    let fs = sys::fs_info(dir.as_fd()).map_err(|e| Error::new(Op::OpenDir, &dir_path, e))?;
    let existing = match fs::statat(&*dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Some(Existing {
                mode: st.st_mode & 0o7777,
                uid: st.st_uid,
                gid: st.st_gid,
            }),
            FileType::Symlink => None,
            _ => {
                return Err(Error::other(
                    Op::CheckDestination,
                    &full,
                    io::ErrorKind::InvalidInput,
                    "the destination is not a regular file",
                ));
            }
        },
        Err(Errno::NOENT) => None,
        Err(e) => return Err(Error::new(Op::Inspect, &full, errno(e))),
    };
    Ok(Dest {
        dir,
        dir_path,
        name,
        path: full,
        existing,
        fs,
    })
}

fn open_dir_raw(path: &Path) -> rustix::io::Result<OwnedFd> {
    fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens `dir` (`O_DIRECTORY | O_RDONLY | O_CLOEXEC`), creating it and its missing ancestors when `create` is set.
/// Under [`Durability::Full`] each created directory is made durable by an `fsync` of its
/// parent: without it a power loss could drop the new directory, and the file in it, even
/// after the file's own commit returned.
pub fn open_dir(dir: &Path, create: bool, durability: Durability) -> Result<OwnedFd> {
    match open_dir_raw(dir) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) if create => {}
        Err(e) => return Err(Error::new(Op::OpenDir, dir, errno(e))),
    }
    // Walk up to the deepest ancestor that exists.
    let mut missing: Vec<OsString> = Vec::new();
    let mut cur = dir.to_path_buf();
    let mut base = loop {
        let Some(name) = cur.file_name() else {
            return Err(Error::new(Op::OpenDir, dir, errno(Errno::NOENT)));
        };
        missing.push(name.to_os_string());
        cur = match cur.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match open_dir_raw(&cur) {
            Ok(fd) => break fd,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(Error::new(Op::OpenDir, &cur, errno(e))),
        }
    };
    for name in missing.into_iter().rev() {
        let created = cur.join(&name);
        match fs::mkdirat(&base, &name, Mode::from_raw_mode(0o777)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(Error::new(Op::CreateDir, &created, errno(e))),
        }
        let next = fs::openat(
            &base,
            &name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::new(Op::OpenDir, &created, errno(e)))?;
        if durability == Durability::Full {
            // Makes the new directory's entry in its parent durable.
            sys::sync_dir(base.as_fd()).map_err(|e| Error::new(Op::SyncDir, &cur, e))?;
        }
        base = next;
        cur = created;
    }
    Ok(base)
}
