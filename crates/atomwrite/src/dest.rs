//! Resolving a destination: walk to its parent directory one component at a time (creating
//! missing directories durably if asked), follow or keep a final symlink, refuse anything that is
//! not a regular file, and never do more than the caller's own `>` redirect would be allowed to
//! on a hardened system (the sticky-directory rule, see [`SymlinkPolicy`]).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Existing {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Existing {
    /// The mode (`& 0o7777`), owner and group of a `stat` result.
    pub(crate) fn from_stat(st: &fs::Stat) -> Existing {
        Existing {
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
        }
    }
}

/// A destination, resolved: its directory (held open for the whole write), its name in that
/// directory, and what is there now.
pub(crate) struct Dest {
    pub dir: Arc<OwnedFd>,
    pub dir_path: PathBuf,
    pub name: OsString,
    pub path: PathBuf,
    pub existing: Option<Existing>,
    /// Nothing had the name when it was looked up (not even a symlink to be replaced).
    pub absent: bool,
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

/// Whether the raw bytes of `path` name a directory: a trailing `/`, or a last component `.` or
/// `..`. (`Path::file_name` drops a trailing slash and a final `.`, so `reg/` and `reg/.` would
/// otherwise name the file `reg`.)
fn names_a_directory(path: &[u8]) -> bool {
    let last = path.rsplit(|b| *b == b'/').next().unwrap_or(b"");
    path.ends_with(b"/") || last == b"." || last == b".."
}

/// A destination written as a directory (`reg/`, `nodir/`, `x/.`) fails as the shell's
/// redirect does: `ENOTDIR` when it names an existing non-directory, else `EISDIR`. Nothing is
/// created. (The `stat` here only picks the error; the path is refused either way.)
pub(crate) fn refuse_directory_syntax(path: &Path) -> Result<()> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || !names_a_directory(bytes) {
        return Ok(());
    }
    let e = match fs::stat(path) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => Errno::NOTDIR,
        Err(Errno::NOTDIR) => Errno::NOTDIR,
        _ => Errno::ISDIR,
    };
    Err(Error::new(Op::CheckDestination, path, errno(e)).with_hint(
        "a destination ending in `/`, `/.` or `/..` names a directory; give the file's path",
    ))
}

/// The rule a refusal applies (the kernel's sysctl of the same name, level 1 or 2).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rule {
    /// `fs.protected_symlinks = 1`: do not follow.
    Symlinks,
    /// `fs.protected_regular = 2`: do not replace.
    Regular,
    /// The same rule for any other entry a publish would replace or write into (a pointer
    /// symlink, a versions directory).
    Entry,
}

/// The owner of `dir` when it is sticky and writable by group or others (a shared directory
/// such as `/tmp`), else `None`. `fstat` on the fd already held: no path is resolved again.
fn shared_sticky_owner(dir: &OwnedFd, shown: &Path) -> Result<Option<u32>> {
    let st = fs::fstat(dir).map_err(|e| Error::new(Op::Inspect, shown, errno(e)))?;
    Ok(is_shared_sticky(st.st_mode).then_some(st.st_uid))
}

/// Whether a directory of mode `mode` is sticky and writable by group or others: a shared
/// directory such as `/tmp` (1777) or a team's (1775, 1770), where other users may create files
/// and only their owners may remove them. The one test of "shared sticky" for writers and for
/// [`clean`](crate::clean).
pub(crate) fn is_shared_sticky(mode: u32) -> bool {
    mode & 0o1000 != 0 && mode & 0o022 != 0
}

/// Never more than a redirect: in a shared sticky directory, a symlink is followed and a file is
/// replaced only if it belongs to the caller or to the directory's owner.
pub(crate) fn check_sticky_rule(
    rule: Rule,
    dir: &OwnedFd,
    dir_shown: &Path,
    entry: &Path,
    entry_uid: u32,
) -> Result<()> {
    let caller = rustix::process::geteuid().as_raw();
    if entry_uid == caller {
        return Ok(());
    }
    let Some(dir_owner) = shared_sticky_owner(dir, dir_shown)? else {
        return Ok(());
    };
    if entry_uid == dir_owner {
        return Ok(());
    }
    let (sysctl, what, a_what, verb, hint) = match rule {
        Rule::Symlinks => (
            "fs.protected_symlinks",
            "symlink",
            "a symlink",
            "followed",
            "remove the link, or replace the link itself instead of following it",
        ),
        Rule::Regular => (
            "fs.protected_regular",
            "file",
            "a file",
            "replaced",
            "its owner or the directory's owner can remove or rename it first",
        ),
        Rule::Entry => (
            "fs.protected_regular",
            "entry",
            "an entry",
            "replaced or written into",
            "its owner or the directory's owner can remove or rename it first",
        ),
    };
    Err(Error::other(
        Op::CheckDestination,
        entry,
        io::ErrorKind::PermissionDenied,
        format!(
            "refused by the {sysctl} rule (applied whatever the sysctl says): the {what} belongs \
             to uid {entry_uid}, and in a sticky directory that others may write {a_what} is \
             {verb} only if it belongs to the caller (uid {caller}) or to the directory's owner \
             (uid {dir_owner})"
        ),
    )
    .with_hint(hint))
}

/// Where a component still to walk comes from: only components of the path the caller gave may
/// be created, never those named by a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The path the caller gave: created when missing (if asked).
    Given,
    /// Just created by us (or by someone else at the same moment): open it, do not create again.
    Made { by_us: bool },
    /// A symlink's target: never created.
    Link,
}

type Component = (OsString, Origin);

fn components(path: &[u8], from: Origin) -> impl DoubleEndedIterator<Item = Component> + '_ {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(move |c| (OsString::from_vec(c.to_vec()), from))
}

fn open_dir_at(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn open_root(absolute: bool) -> Result<OwnedFd> {
    let start = if absolute { "/" } else { "." };
    fs::open(
        start,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::new(Op::OpenDir, start, errno(e)))
}

/// A directory reached by walking components one at a time from `/` or `.`, like systemd's
/// `chase()`: `openat(O_DIRECTORY|O_NOFOLLOW)` per component, symlinks read with `readlinkat`,
/// checked under the sticky-directory rule and spliced into the walk by hand.
struct Walk {
    dir: Arc<OwnedFd>,
    /// The path walked so far, for messages (lexical: `..` drops the last component).
    shown: PathBuf,
    hops: usize,
    create: bool,
    durability: Durability,
    /// The directory path the caller gave, named when one of its own components is missing.
    given: Option<PathBuf>,
}

impl Walk {
    fn new(dir: Arc<OwnedFd>, shown: PathBuf, create: bool, durability: Durability) -> Walk {
        Walk {
            dir,
            shown,
            hops: 0,
            create,
            durability,
            given: None,
        }
    }

    /// Walks `todo` (a stack: the next component last) down from `self.dir`. `try_fast`: first
    /// try the whole rest in one `openat2(RESOLVE_NO_SYMLINKS)` (again after each symlink).
    fn descend(&mut self, mut todo: Vec<Component>, mut try_fast: bool) -> Result<()> {
        loop {
            if try_fast && todo.len() > 1 {
                try_fast = false;
                if self.open_rest_at_once(&mut todo) {
                    return Ok(());
                }
            }
            let Some((name, from)) = todo.pop() else {
                return Ok(());
            };
            if name == ".." {
                self.go_up(&name)?;
                continue;
            }
            let here = self.shown.join(&name);
            match open_dir_at(&self.dir, &name) {
                Ok(next) => self.enter(next, here, from)?,
                Err(e) => {
                    if self.on_open_error(e, name, from, &here, &mut todo)? {
                        try_fast = true;
                    }
                }
            }
        }
    }

    /// Tries the whole rest of `todo` in one `openat2(RESOLVE_NO_SYMLINKS)`; on success moves
    /// there, empties `todo` and returns true.
    fn open_rest_at_once(&mut self, todo: &mut Vec<Component>) -> bool {
        let rest: PathBuf = todo.iter().rev().map(|(n, _)| n).collect();
        let Some(fd) = sys::open_dir_no_symlinks(self.dir.as_fd(), &rest) else {
            return false;
        };
        self.dir = Arc::new(fd);
        for (name, _) in todo.drain(..).rev() {
            if name == ".." && self.shown.file_name().is_some() {
                self.shown.pop();
            } else {
                self.shown.push(name);
            }
        }
        true
    }

    /// Moves to the parent directory (`name` is `..`).
    fn go_up(&mut self, name: &OsStr) -> Result<()> {
        let up = open_dir_at(&self.dir, name)
            .map_err(|e| Error::new(Op::OpenDir, self.shown.join(".."), errno(e)))?;
        self.dir = Arc::new(up);
        if self.shown.file_name().is_some() {
            self.shown.pop();
        } else {
            self.shown.push("..");
        }
        Ok(())
    }

    /// Moves into `next`, just opened as `here`; first makes its entry durable if we created it.
    fn enter(&mut self, next: OwnedFd, here: PathBuf, from: Origin) -> Result<()> {
        if from == (Origin::Made { by_us: true }) && self.durability == Durability::Full {
            // Makes the new directory's entry in its parent durable: without it a
            // power loss could drop the directory, and the file in it, even after
            // the file's own commit returned.
            sys::sync_dir(self.dir.as_fd()).map_err(|e| Error::new(Op::SyncDir, &self.shown, e))?;
        }
        self.dir = Arc::new(next);
        self.shown = here;
        Ok(())
    }

    /// Handles a failed open of component `name` (shown as `here`): creates it (pushing it back
    /// on `todo`), splices a symlink's target into `todo` (returns true: try the fast path
    /// again), or fails.
    fn on_open_error(
        &mut self,
        e: Errno,
        name: OsString,
        from: Origin,
        here: &Path,
        todo: &mut Vec<Component>,
    ) -> Result<bool> {
        match e {
            Errno::NOENT if from == Origin::Given && self.create => {
                let by_us = match fs::mkdirat(&*self.dir, &name, Mode::from_raw_mode(0o777)) {
                    Ok(()) => true,
                    Err(Errno::EXIST) => false,
                    Err(e) => return Err(Error::new(Op::CreateDir, here, errno(e))),
                };
                todo.push((name, Origin::Made { by_us }));
                Ok(false)
            }
            Errno::NOENT if from == Origin::Given => {
                let shown = self.given.as_deref().unwrap_or(here);
                Err(Error::new(Op::OpenDir, shown, errno(Errno::NOENT)))
            }
            Errno::NOENT if from == Origin::Link => {
                Err(
                    Error::new(Op::OpenDir, here, errno(Errno::NOENT)).with_hint(
                        "the directory is named by a symlink's target; atomwrite creates \
                         directories only for the path it was given, never for a link target",
                    ),
                )
            }
            Errno::NOTDIR | Errno::LOOP => {
                let st = fs::statat(&*self.dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| Error::new(Op::Inspect, here, errno(e)))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                    return Err(Error::new(Op::OpenDir, here, errno(Errno::NOTDIR)));
                }
                let target = self.follow(&name, here, st.st_uid)?;
                todo.extend(components(target.as_bytes(), Origin::Link).rev());
                Ok(true)
            }
            e => Err(Error::new(Op::OpenDir, here, errno(e))),
        }
    }

    /// Reads the symlink `name` in the current directory after checking the sticky rule, and
    /// moves to `/` when its target is absolute. Returns the target.
    fn follow(&mut self, name: &OsStr, here: &Path, owner: u32) -> Result<OsString> {
        self.hops += 1;
        if self.hops > MAX_HOPS {
            return Err(Error::new(Op::Inspect, here, errno(Errno::LOOP)));
        }
        check_sticky_rule(Rule::Symlinks, &self.dir, &self.shown, here, owner)?;
        let target = fs::readlinkat(&*self.dir, name, Vec::new())
            .map_err(|e| Error::new(Op::Inspect, here, errno(e)))?;
        let target = OsString::from_vec(target.into_bytes());
        if target.as_bytes().starts_with(b"/") {
            self.dir = Arc::new(open_root(true)?);
            self.shown = PathBuf::from("/");
        }
        Ok(target)
    }

    fn into_fd(self) -> Result<OwnedFd> {
        match Arc::try_unwrap(self.dir) {
            Ok(fd) => Ok(fd),
            Err(shared) => rustix::io::fcntl_dupfd_cloexec(&*shared, 0)
                .map_err(|e| Error::new(Op::OpenDir, &self.shown, errno(e))),
        }
    }
}

/// Opens the directory `path` the caller gave: in one `openat2(RESOLVE_NO_SYMLINKS)` where the
/// kernel has it and no component is a symlink, else by walking it (see [`Walk`]).
fn walk_path(path: &Path, create: bool, durability: Durability) -> Result<OwnedFd> {
    if let Some(fd) = sys::open_dir_no_symlinks(fs::CWD, path) {
        return Ok(fd);
    }
    let bytes = path.as_os_str().as_bytes();
    let absolute = bytes.starts_with(b"/");
    let shown = PathBuf::from(if absolute { "/" } else { "" });
    let mut w = Walk::new(Arc::new(open_root(absolute)?), shown, create, durability);
    w.given = Some(path.to_path_buf());
    // The one-syscall open just failed for this very path: walk it component by component.
    w.descend(components(bytes, Origin::Given).rev().collect(), false)?;
    w.into_fd()
}

/// Directories already opened by a [`Batch`](crate::Batch), so a thousand files in one
/// directory cost one `open` + `fstatfs`, not a thousand.
///
/// With [`expect`](DirCache::expect) (a batch that knows it will hold many files), each
/// directory is also listed once when it is first opened, and a name the listing did not hold
/// is taken as absent without a `stat` of its own (see [`DirCache::get`]).
#[derive(Debug, Default)]
pub(crate) struct DirCache {
    map: HashMap<PathBuf, Cached>,
    /// Files the batch expects (0: unknown; no listing).
    expect: usize,
    /// Directory entries its listings may still read (a listing that would read more is
    /// abandoned: a `stat` per file is then cheaper).
    budget: usize,
    /// Keys the name hashes of the listings (per process, so names cannot be chosen to collide).
    hasher: std::hash::RandomState,
    /// The process umask, read once for the batch's files.
    umask: Option<u32>,
}

#[derive(Debug)]
struct Cached {
    dir: Arc<OwnedFd>,
    fs: FsInfo,
    /// Hashes of the names the directory held when it was opened, if it was listed.
    names: Option<std::collections::HashSet<u64>>,
}

/// Fewest expected files for which a directory is listed: below it, a `stat` per name costs
/// less than a listing (an `openat`, `getdents64` calls and a `close`).
const LIST_MIN_FILES: usize = 32;

impl DirCache {
    /// The umask, read once per batch (a `/proc` read each time would cost four syscalls per
    /// new file whose mode is set by `fchmod`); a batch is one operation.
    pub(crate) fn umask(&mut self, sys: sys::Sys) -> u32 {
        *self.umask.get_or_insert_with(|| sys.umask())
    }

    /// Tells the cache how many files are coming, so it may list each directory once.
    pub(crate) fn expect(&mut self, files: usize) {
        self.expect = files;
        self.budget = files.saturating_mul(2).saturating_add(64);
    }

    /// The directory `parent` (opened once), its filesystem, and whether `name` is known to be
    /// absent from it: the directory was listed when first opened and held no such name.
    ///
    /// "Absent" is as of that listing. A name created after it is met by the publish itself,
    /// as one created after a `stat` would be: an anonymous temp's `linkat` fails with
    /// `EEXIST` and it is renamed over the newcomer instead (create-only: the conflict is
    /// reported), a named temp's rename replaces it (create-only: `RENAME_NOREPLACE` refuses).
    /// Never used in a shared sticky directory (such as `/tmp`), where a name another user
    /// creates is looked up as it always was, with the sticky rule checked on what is found.
    fn get(
        &mut self,
        parent: &Path,
        name: &OsStr,
        opts: &Options,
    ) -> Result<(Arc<OwnedFd>, FsInfo, bool)> {
        use std::hash::BuildHasher;
        if !self.map.contains_key(parent) {
            let (dir, fs) = open_with_info(parent, opts)?;
            let listed = (self.expect >= LIST_MIN_FILES
                && self.budget > 0
                && sys::exact_names(dir.as_fd(), fs.fs_type))
            .then(|| list_names(&dir, self.budget, &self.hasher));
            // The listings of a batch read at most ~2 entries per file it expects, in all; one
            // that gave up (too long, or an error) ends the listing for the batch.
            self.budget = match &listed {
                Some(Some(n)) => self.budget - n.len(),
                Some(None) => 0,
                None => self.budget,
            };
            let names = listed.flatten();
            self.map
                .insert(parent.to_path_buf(), Cached { dir, fs, names });
        }
        let c = &self.map[parent];
        let absent = c
            .names
            .as_ref()
            .is_some_and(|n| !n.contains(&self.hasher.hash_one(name.as_bytes())));
        Ok((Arc::clone(&c.dir), c.fs, absent))
    }
}

/// Hashes of the names in `dir`, or `None` when listing does not pay or is not safe: more than
/// `max` entries (then a `stat` per file is cheaper than reading them all), a shared sticky
/// directory, or any error (every name is then looked up as usual). The caller lists only
/// directories where a listing is exact ([`sys::exact_names`]): in a case-insensitive one,
/// `Report.csv` in the listing would not say that `report.csv` is taken.
fn list_names(
    dir: &OwnedFd,
    max: usize,
    hasher: &std::hash::RandomState,
) -> Option<std::collections::HashSet<u64>> {
    use std::hash::BuildHasher;
    let st = fs::fstat(dir).ok()?;
    if is_shared_sticky(st.st_mode) {
        return None;
    }
    let mut names = std::collections::HashSet::new();
    let whole = sys::list_names(dir.as_fd(), max, &mut |n| {
        names.insert(hasher.hash_one(n));
    })
    .ok()?;
    whole.then_some(names)
}

fn open_with_info(parent: &Path, opts: &Options) -> Result<(Arc<OwnedFd>, FsInfo)> {
    let dir = walk_path(parent, !opts.no_create_dirs, opts.durability)?;
    let fs = sys::fs_info(dir.as_fd()).map_err(|e| Error::new(Op::OpenDir, parent, e))?;
    Ok((Arc::new(dir), fs))
}

/// Splits the raw bytes of a link target into its directory part and final name.
fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    match target.iter().rposition(|b| *b == b'/') {
        Some(i) => (&target[..i + 1], &target[i + 1..]),
        None => (b"", target),
    }
}

/// Resolves `path` for a write: its directory, opened by walking (creating missing directories
/// of `path` itself when `create_dirs`), the final name, and the file there now. A final
/// symlink is followed (under [`SymlinkPolicy::Follow`]) by walking its target from the
/// directory that holds it; every hop obeys the sticky-directory rule; nothing is created for a
/// link's target.
pub(crate) fn resolve(path: &Path, opts: &Options, cache: Option<&mut DirCache>) -> Result<Dest> {
    refuse_directory_syntax(path)?;
    let (dir_path, name) = split(path)?;
    let (dir, fs, mut known_absent) = match cache {
        Some(c) => c.get(&dir_path, &name, opts)?,
        None => {
            let (dir, fs) = open_with_info(&dir_path, opts)?;
            (dir, fs, false)
        }
    };
    let mut at = At {
        dir,
        fs,
        dir_path,
        name,
        hops: 0,
    };
    loop {
        let full = at.dir_path.join(&at.name);
        check_name_len(&at.name, at.fs.name_max, &full)?;
        // Only the name first asked for (not a symlink's target) may be known absent.
        let st = match std::mem::take(&mut known_absent) {
            true => None,
            false => match fs::statat(&*at.dir, &at.name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Some(st),
                Err(Errno::NOENT) => None,
                Err(e) => return Err(Error::new(Op::Inspect, &full, errno(e))),
            },
        };
        let absent = st.is_none();
        let existing = match st {
            None => None,
            Some(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => {
                    // Create-only never replaces: the commit fails with EEXIST, as O_EXCL does.
                    if !opts.no_clobber {
                        check_sticky_rule(Rule::Regular, &at.dir, &at.dir_path, &full, st.st_uid)?;
                    }
                    Some(Existing::from_stat(&st))
                }
                FileType::Symlink if opts.symlinks == SymlinkPolicy::Follow => {
                    at.follow_final(&full, st.st_uid, opts)?;
                    continue;
                }
                // Replacing the link itself redirects nothing: allowed wherever it lives.
                FileType::Symlink => None,
                other => return Err(not_replaceable(other, &full)),
            },
        };
        let At {
            dir,
            fs,
            dir_path,
            name,
            ..
        } = at;
        return Ok(Dest {
            dir,
            dir_path,
            name,
            path: full,
            existing,
            absent,
            fs,
        });
    }
}

/// Where [`resolve`] stands: the directory holding the name being resolved, and the symlink
/// hops taken so far.
struct At {
    dir: Arc<OwnedFd>,
    fs: FsInfo,
    dir_path: PathBuf,
    name: OsString,
    hops: usize,
}

impl At {
    /// Follows the final symlink `full` (owned by `owner`): walks its target's directory from
    /// the directory that holds it and moves there, to resolve the target's name next.
    fn follow_final(&mut self, full: &Path, owner: u32, opts: &Options) -> Result<()> {
        let mut w = Walk::new(
            self.dir.clone(),
            self.dir_path.clone(),
            false,
            opts.durability,
        );
        w.hops = self.hops;
        let target = w.follow(&self.name, full, owner)?;
        let bytes = target.as_bytes();
        if names_a_directory(bytes) {
            return Err(Error::other(
                Op::CheckDestination,
                full,
                io::ErrorKind::IsADirectory,
                format!(
                    "the destination is a symlink to `{}`, which names a directory",
                    target.to_string_lossy()
                ),
            ));
        }
        let (target_dir, target_name) = split_target(bytes);
        w.descend(components(target_dir, Origin::Link).rev().collect(), true)?;
        self.hops = w.hops;
        self.fs = sys::fs_info(w.dir.as_fd()).map_err(|e| Error::new(Op::OpenDir, &w.shown, e))?;
        self.dir = w.dir;
        self.dir_path = if w.shown.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            w.shown
        };
        self.name = OsString::from_vec(target_name.to_vec());
        Ok(())
    }
}

/// Refuses a final name longer than the filesystem allows (`ENAMETOOLONG`, with the limit).
fn check_name_len(name: &OsStr, name_max: usize, full: &Path) -> Result<()> {
    if name.len() > name_max {
        return Err(
            Error::new(Op::CheckDestination, full, errno(Errno::NAMETOOLONG)).with_hint(format!(
                "the file name is {} bytes; this filesystem allows at most {}",
                name.len(),
                name_max
            )),
        );
    }
    Ok(())
}

/// For a destination that was absent when it was looked up and has an entry now (its
/// create-only publish met `EEXIST`): whether that newcomer may be replaced. `Ok(true)`: it may
/// (a regular file or a symlink, replaced itself: not followed, its mode and owner not kept);
/// `Ok(false)`: it is gone again (the caller publishes create-only again, never a plain rename
/// over whatever comes next); an error: refused, as an entry found at the lookup would be: a
/// FIFO, socket, device or directory is never replaced, and in a shared sticky directory
/// neither is an entry that belongs to neither the caller nor the directory's owner (root's
/// rename would otherwise replace what another user planted after the check). Which entries a
/// plain rename may then replace is stable: in a sticky directory only their owner (the caller
/// or the directory's owner) or root can remove them.
pub(crate) fn check_newcomer(dir: &OwnedFd, dir_shown: &Path, full: &Path) -> Result<bool> {
    let name = full.file_name().unwrap_or_default();
    match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile | FileType::Symlink => {
                check_sticky_rule(Rule::Entry, dir, dir_shown, full, st.st_uid)?;
                Ok(true)
            }
            other => Err(not_replaceable(other, full)),
        },
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(Error::new(Op::Inspect, full, errno(e))),
    }
}

/// How many times a create-only publish is tried again when its name's newcomer is gone by
/// the time it is looked at, before the write gives up (a conflict).
pub(crate) const NEWCOMER_TRIES: usize = 4;

/// The conflict after [`NEWCOMER_TRIES`]: the name kept appearing and disappearing.
pub(crate) fn newcomer_churn(full: &Path) -> Error {
    Error::other(
        Op::Rename,
        full,
        io::ErrorKind::AlreadyExists,
        "another process keeps creating and removing this name; the destination was not replaced",
    )
}

/// The error for a destination `full` that is neither a regular file nor a symlink.
fn not_replaceable(kind: FileType, full: &Path) -> Error {
    if kind == FileType::Directory {
        return Error::other(
            Op::CheckDestination,
            full,
            io::ErrorKind::IsADirectory,
            "the destination is a directory",
        );
    }
    let what = match kind {
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "not a regular file",
    };
    Error::other(
        Op::CheckDestination,
        full,
        io::ErrorKind::InvalidInput,
        format!("the destination is {what}; only regular files can be replaced atomically"),
    )
}

/// A destination `name` inside an open directory: nothing resolved by path, a symlink at `name`
/// is replaced (never followed), a non-regular file refused, and a regular file of another user
/// in a shared sticky directory not replaced (the `fs.protected_regular` rule, as in [`resolve`]).
pub(crate) fn in_dir(dir: Arc<OwnedFd>, dir_path: PathBuf, name: OsString) -> Result<Dest> {
    let full = dir_path.join(&name);
    let fs = sys::fs_info(dir.as_fd()).map_err(|e| Error::new(Op::OpenDir, &dir_path, e))?;
    let found = fs::statat(&*dir, &name, AtFlags::SYMLINK_NOFOLLOW);
    let absent = matches!(found, Err(Errno::NOENT));
    let existing = match found {
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                check_sticky_rule(Rule::Regular, &dir, &dir_path, &full, st.st_uid)?;
                Some(Existing::from_stat(&st))
            }
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
        absent,
        fs,
    })
}

/// Opens the directory `dir` (`O_DIRECTORY | O_RDONLY | O_CLOEXEC`), creating it and its missing
/// ancestors when `create` is set. The path is walked one component at a time with `O_NOFOLLOW`
/// (or opened in one `openat2(RESOLVE_NO_SYMLINKS)` when it holds no symlink): a symlink on the
/// way is followed only under the sticky-directory rule (see
/// [`SymlinkPolicy`](crate::SymlinkPolicy)), and no directory is created for a symlink's target.
/// Under [`Durability::Full`] each created directory is made durable by an `fsync` of its
/// parent: without it a power loss could drop the new directory, and the file in it, even
/// after the file's own commit returned.
pub fn open_dir(dir: &Path, create: bool, durability: Durability) -> Result<OwnedFd> {
    walk_path(dir, create, durability)
}

/// `statfs.f_type` of procfs.
const PROC_SUPER_MAGIC: u64 = 0x9fa0;

/// What a caller of [`open_source`] accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Want {
    /// Anything readable; a FIFO is read with the ordinary (blocking) semantics.
    Any,
    /// A directory.
    Dir,
    /// A regular file only (`cp`): anything else is refused without blocking.
    Regular,
    /// Anything, as opened: a FIFO stays non-blocking (the caller refuses it, never reads it).
    NonBlocking,
}

/// The last step of [`open_source`] on the non-blocking descriptor: refuse what the caller
/// does not accept (before any blocking reopen), else make a FIFO blocking.
fn finish_source(fd: OwnedFd, full: &Path, asked: &Path, want: Want) -> Result<OwnedFd> {
    if want == Want::Regular {
        let st = fs::fstat(&fd).map_err(|e| Error::new(Op::Inspect, full, errno(e)))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(Error::other(
                Op::Read,
                asked,
                io::ErrorKind::InvalidInput,
                "is not a regular file",
            ));
        }
        return Ok(fd);
    }
    if want == Want::NonBlocking {
        return Ok(fd);
    }
    blocking_if_fifo(fd, full)
}

/// A FIFO was opened without blocking (so a planted one cannot hang us); a reader of a FIFO it
/// was asked to read wants the ordinary semantics. The descriptor already held is made
/// blocking and then waits, in `poll`, for a writer the way a blocking `open` would. No second
/// open: a writer that came, wrote and closed since the first open left its bytes in the pipe
/// (it had a reader: us), which `poll` sees at once, where a reopen would wait for another
/// writer forever. A writer that came and went without writing is a hangup, which the kernel
/// reports only once a writer was seen, so the first read then ends the input; reading before
/// any writer came would see an end of input that is not one.
fn blocking_if_fifo(fd: OwnedFd, shown: &Path) -> Result<OwnedFd> {
    use rustix::event::{PollFd, PollFlags, poll};
    let st = fs::fstat(&fd).map_err(|e| Error::new(Op::Inspect, shown, errno(e)))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Fifo {
        return Ok(fd);
    }
    let read_err = |e: Errno| Error::new(Op::Read, shown, errno(e));
    let flags = fs::fcntl_getfl(&fd).map_err(read_err)?;
    fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK).map_err(read_err)?;
    loop {
        match poll(&mut [PollFd::new(&fd, PollFlags::IN)], None) {
            Ok(_) => return Ok(fd),
            // A signal: the CLI's handler thread decides; keep waiting like `open` would.
            Err(Errno::INTR) => continue,
            Err(e) => return Err(read_err(e)),
        }
    }
}

/// Opens `path` for reading (a file, or with `want_dir` a directory) the way `cat` or `cp` would
/// under `fs.protected_symlinks=1`, whatever the sysctl says: every directory on the way is
/// walked from a held fd, a symlink in a sticky directory that others may write is followed only
/// if it belongs to the caller or to the directory's owner (every hop), and the final open is
/// `O_NOFOLLOW|O_NONBLOCK` relative to its directory's fd, so a name swapped for a link (or a
/// FIFO) between the checks is refused, never followed or blocked on. With
/// [`Want::Regular`] anything but a regular file (a FIFO, a device, a socket) is refused on that
/// non-blocking descriptor, so a planted FIFO nobody writes to cannot hang the caller; with
/// [`Want::Any`] a FIFO is reopened blocking and read like `cat` would.
pub(crate) fn open_source(path: &Path, want: Want) -> Result<OwnedFd> {
    // The sticky rule is shared with destinations: its refusal here is a failure to read.
    open_source_inner(path, want).map_err(|e| {
        if e.op() == Op::CheckDestination && e.kind() == io::ErrorKind::PermissionDenied {
            e.with_op(Op::Read)
                .with_hint("remove the link, or name its target directly if you trust it")
        } else {
            e
        }
    })
}

fn open_source_inner(path: &Path, want: Want) -> Result<OwnedFd> {
    let want_dir = want == Want::Dir;
    let mut cur = path.to_path_buf();
    for _ in 0..=MAX_HOPS {
        if cur.file_name().is_none() {
            // `.`, `..`, `/`, `x/..`: a directory reached by walking.
            return if want_dir {
                open_dir(&cur, false, Durability::None)
            } else {
                Err(Error::new(Op::Read, path, errno(Errno::ISDIR)))
            };
        }
        let (parent, name) = split(&cur)?;
        let dir = open_dir(&parent, false, Durability::None)?;
        let full = parent.join(&name);
        let st = fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::new(Op::Read, &full, errno(e)))?;
        let mut flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        if want_dir {
            flags |= OFlags::DIRECTORY;
        }
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            check_sticky_rule(Rule::Symlinks, &dir, &parent, &full, st.st_uid)?;
            if sys::fs_info(dir.as_fd()).is_ok_and(|f| f.fs_type == PROC_SUPER_MAGIC) {
                // /proc/PID/fd/N (`--from <(cmd)`, `/dev/stdin`): a "magic" link the kernel
                // resolves itself (its text, `pipe:[…]`, is not a path). procfs is no shared
                // sticky directory: nobody can plant one there.
                let fd = fs::openat(&dir, &name, flags - OFlags::NOFOLLOW, Mode::empty())
                    .map_err(|e| Error::new(Op::Read, &full, errno(e)))?;
                return finish_source(fd, &full, path, want);
            }
            let target = fs::readlinkat(&dir, &name, Vec::new())
                .map_err(|e| Error::new(Op::Inspect, &full, errno(e)))?;
            let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
            cur = if target.is_absolute() {
                target
            } else {
                parent.join(target)
            };
            continue;
        }
        return match fs::openat(&dir, &name, flags, Mode::empty()) {
            Ok(fd) => finish_source(fd, &full, path, want),
            // Swapped for a link since the fstatat: look again (the rule decides).
            Err(Errno::LOOP) => continue,
            Err(e) => Err(Error::new(Op::Read, &full, errno(e))),
        };
    }
    Err(Error::new(Op::Read, path, errno(Errno::LOOP)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::mpsc;
    use std::time::Duration;

    /// A FIFO in a fresh directory, and its read end opened the way `open_source` does.
    fn fifo() -> (tempfile::TempDir, PathBuf, OwnedFd) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fifo");
        fs::mkfifoat(fs::CWD, &p, Mode::from_raw_mode(0o600)).unwrap();
        let fd = fs::open(&p, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty()).unwrap();
        (d, p, fd)
    }

    /// `blocking_if_fifo` then reading to the end, on a thread; `None` if that did not finish
    /// within a minute (the hang this guards against).
    fn read_all_within(fd: OwnedFd, p: &Path) -> Option<Vec<u8>> {
        let (tx, rx) = mpsc::channel();
        let p = p.to_path_buf();
        std::thread::spawn(move || {
            let mut f = std::fs::File::from(blocking_if_fifo(fd, &p).unwrap());
            let mut v = Vec::new();
            f.read_to_end(&mut v).unwrap();
            let _ = tx.send(v);
        });
        rx.recv_timeout(Duration::from_secs(60)).ok()
    }

    #[test]
    fn a_fifo_writer_that_came_and_went_before_the_wait_is_read_not_waited_for() {
        let (_d, p, fd) = fifo();
        let mut w = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        w.write_all(b"written and gone").unwrap();
        drop(w);
        assert_eq!(
            read_all_within(fd, &p).as_deref(),
            Some(&b"written and gone"[..])
        );
    }

    #[test]
    fn a_fifo_writer_that_came_and_went_without_writing_is_an_empty_input() {
        let (_d, p, fd) = fifo();
        drop(std::fs::OpenOptions::new().write(true).open(&p).unwrap());
        assert_eq!(read_all_within(fd, &p).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn a_fifo_without_a_writer_yet_waits_for_one_instead_of_ending() {
        let (_d, p, fd) = fifo();
        let writer = {
            let p = p.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                let mut w = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                w.write_all(b"late").unwrap();
            })
        };
        assert_eq!(read_all_within(fd, &p).as_deref(), Some(&b"late"[..]));
        writer.join().unwrap();
    }
}
