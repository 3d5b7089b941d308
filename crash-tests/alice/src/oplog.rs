//! The abstract file-system operation log and the live (volatile) model used to build it.
//!
//! An [`OpLog`] is what the explorer consumes: an initial, fully durable file-system
//! image ([`Fs`]) restricted to one directory tree (the *scope*), plus the ordered list of
//! operations a program performed inside that scope. Namespace operations are stored by
//! their *effect* (which inode a name ends up pointing at), resolved while the log is
//! built, so that any subset of them can later be replayed in program order.
//!
//! Logs are built through [`LogBuilder`], either by hand (tests) or by the strace parser
//! ([`crate::strace`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Inode number inside the model (an index into [`Fs::inodes`]).
pub type Ino = usize;

/// Parent inode used for entries whose directory lies outside the modelled scope; it is
/// never fsynced, so such operations only become durable through `sync`/`syncfs`.
pub const OUTSIDE: Ino = usize::MAX;

/// What kind of object an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link (its data is the target).
    Symlink,
}

/// One inode of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    /// Object kind.
    pub kind: Kind,
    /// File contents (symlink target for symlinks, empty for directories).
    pub data: Vec<u8>,
}

/// A file-system image: a namespace (absolute path → inode) and the inode table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fs {
    /// Every name in scope, including the scope root itself.
    pub entries: BTreeMap<PathBuf, Ino>,
    /// All inodes: the initial ones with their contents, and (in an [`OpLog`]) the ones
    /// created by the program, with their contents at creation time.
    pub inodes: Vec<Inode>,
}

impl Fs {
    /// Snapshot the directory tree at `root` (which must exist) from the real file system.
    /// Symlinks are not followed.
    pub fn snapshot(root: &Path) -> std::io::Result<Fs> {
        let mut fs = Fs::default();
        fs.snapshot_into(root)?;
        Ok(fs)
    }

    fn snapshot_into(&mut self, path: &Path) -> std::io::Result<()> {
        let md = std::fs::symlink_metadata(path)?;
        let ft = md.file_type();
        let (kind, data) = if ft.is_dir() {
            (Kind::Dir, Vec::new())
        } else if ft.is_symlink() {
            use std::os::unix::ffi::OsStrExt;
            (
                Kind::Symlink,
                std::fs::read_link(path)?.as_os_str().as_bytes().to_vec(),
            )
        } else if ft.is_file() {
            (Kind::File, std::fs::read(path)?)
        } else {
            return Ok(()); // fifos, sockets, devices: not modelled
        };
        let ino = self.inodes.len();
        self.inodes.push(Inode { kind, data });
        self.entries.insert(path.to_path_buf(), ino);
        if kind == Kind::Dir {
            let mut children: Vec<_> = std::fs::read_dir(path)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            children.sort();
            for c in children {
                self.snapshot_into(&c)?;
            }
        }
        Ok(())
    }

    /// Compare the regular files and directory entries of this image with the real
    /// file system below `root`; returns a list of human-readable differences.
    pub fn diff_against_disk(&self, root: &Path) -> std::io::Result<Vec<String>> {
        let disk = Fs::snapshot(root)?;
        let mut diffs = Vec::new();
        for (p, &ino) in &self.entries {
            if !p.starts_with(root) {
                continue;
            }
            match disk.entries.get(p) {
                None => diffs.push(format!("{}: in model, absent on disk", p.display())),
                Some(&dino) => {
                    let (m, d) = (&self.inodes[ino], &disk.inodes[dino]);
                    if m.kind != d.kind {
                        diffs.push(format!(
                            "{}: kind {:?} vs {:?} on disk",
                            p.display(),
                            m.kind,
                            d.kind
                        ));
                    } else if m.kind != Kind::Dir && m.data != d.data {
                        diffs.push(format!(
                            "{}: model has {} bytes, disk has {} bytes (contents differ)",
                            p.display(),
                            m.data.len(),
                            d.data.len()
                        ));
                    }
                }
            }
        }
        for p in disk.entries.keys() {
            if !self.entries.contains_key(p) {
                diffs.push(format!("{}: on disk, absent in model", p.display()));
            }
        }
        Ok(diffs)
    }
}

/// Flags of a rename.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenameFlags {
    /// `RENAME_NOREPLACE`.
    pub noreplace: bool,
    /// `RENAME_EXCHANGE`.
    pub exchange: bool,
}

/// How a `fallocate` changes the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallocMode {
    /// Plain allocation: extends the size if the range goes past EOF.
    Allocate,
    /// `FALLOC_FL_KEEP_SIZE`: allocation without size change (no visible effect).
    KeepSize,
    /// `FALLOC_FL_PUNCH_HOLE` or `FALLOC_FL_ZERO_RANGE|KEEP_SIZE`: zero the range, size kept.
    ZeroKeepSize,
    /// `FALLOC_FL_ZERO_RANGE`: zero the range, extend the size if needed.
    Zero,
}

/// One abstract operation. Namespace operations carry their resolved effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A new name `path` (in directory `parent`) for a fresh inode `ino` (open O_CREAT that
    /// created, mkdir, symlink).
    Create {
        /// New name.
        path: PathBuf,
        /// Fresh inode.
        ino: Ino,
        /// Directory holding the name.
        parent: Ino,
    },
    /// A fresh unnamed inode (`O_TMPFILE`) in directory `parent`.
    Tmpfile {
        /// Fresh inode.
        ino: Ino,
        /// Directory it was created in.
        parent: Ino,
    },
    /// A new name for an existing inode (`link`, `linkat`, incl. `/proc/self/fd/N`).
    Link {
        /// Inode linked.
        ino: Ino,
        /// New name.
        path: PathBuf,
        /// Directory holding the new name.
        parent: Ino,
    },
    /// A name removed (`unlink`, `rmdir`).
    Unlink {
        /// Removed name.
        path: PathBuf,
        /// Directory that held it.
        parent: Ino,
    },
    /// Atomic rename: afterwards `to` names `ino` and `from` is gone (or, for
    /// `RENAME_EXCHANGE`, `from` names `exchanged`).
    Rename {
        /// Old name.
        from: PathBuf,
        /// New name.
        to: PathBuf,
        /// Inode moved.
        ino: Ino,
        /// For `RENAME_EXCHANGE`: the inode previously at `to`.
        exchanged: Option<Ino>,
        /// Directory of `from`.
        from_parent: Ino,
        /// Directory of `to`.
        to_parent: Ino,
        /// Flags used.
        flags: RenameFlags,
    },
    /// Data written at `off`.
    Write {
        /// Target inode.
        ino: Ino,
        /// File offset.
        off: u64,
        /// Bytes written (exactly those the call reported as written).
        data: Vec<u8>,
    },
    /// Size set (`ftruncate`, `truncate`, `O_TRUNC`).
    Truncate {
        /// Target inode.
        ino: Ino,
        /// New size.
        len: u64,
    },
    /// `fallocate`.
    Fallocate {
        /// Target inode.
        ino: Ino,
        /// Range start.
        off: u64,
        /// Range length.
        len: u64,
        /// Effect.
        mode: FallocMode,
    },
    /// `fsync`/`fdatasync` of a file or directory inode.
    Fsync {
        /// Target inode.
        ino: Ino,
        /// `fdatasync` rather than `fsync` (same effect in this model).
        data_only: bool,
    },
    /// `sync`/`syncfs`: everything before it is durable.
    SyncAll,
    /// `sync_file_range`: starts write-back, makes nothing durable.
    SyncFileRange {
        /// Target inode.
        ino: Ino,
    },
    /// Mode change (recorded, not checked).
    Chmod {
        /// Target inode.
        ino: Ino,
        /// New mode.
        mode: u32,
    },
    /// Owner change (recorded, not checked).
    Chown {
        /// Target inode.
        ino: Ino,
    },
    /// Last reference of an fd to the inode closed (no persistence effect).
    Close {
        /// Target inode.
        ino: Ino,
    },
    /// The traced program exited with this status (the success point when 0).
    Exit {
        /// Exit status.
        code: i32,
    },
}

impl Op {
    /// Is this a namespace (directory-entry) operation?
    pub fn is_namespace(&self) -> bool {
        matches!(
            self,
            Op::Create { .. } | Op::Link { .. } | Op::Unlink { .. } | Op::Rename { .. }
        )
    }

    /// Directories whose fsync is needed for this namespace operation to be durable.
    pub fn parents(&self) -> Vec<Ino> {
        match self {
            Op::Create { parent, .. } | Op::Link { parent, .. } | Op::Unlink { parent, .. } => {
                vec![*parent]
            }
            Op::Rename {
                from_parent,
                to_parent,
                ..
            } => {
                if from_parent == to_parent {
                    vec![*to_parent]
                } else {
                    vec![*from_parent, *to_parent]
                }
            }
            _ => Vec::new(),
        }
    }

    /// Is this a data/size operation on `ino`?
    pub fn is_data_of(&self, ino: Ino) -> bool {
        match self {
            Op::Write { ino: i, .. }
            | Op::Truncate { ino: i, .. }
            | Op::Fallocate { ino: i, .. } => *i == ino,
            _ => false,
        }
    }

    /// Apply this namespace operation's effect to a namespace.
    pub fn apply_namespace(&self, entries: &mut BTreeMap<PathBuf, Ino>) {
        match self {
            Op::Create { path, ino, .. } | Op::Link { path, ino, .. } => {
                entries.insert(path.clone(), *ino);
            }
            Op::Unlink { path, .. } => {
                entries.remove(path);
            }
            Op::Rename {
                from,
                to,
                ino,
                exchanged,
                ..
            } => {
                match exchanged {
                    Some(x) => {
                        entries.insert(from.clone(), *x);
                    }
                    None => {
                        entries.remove(from);
                    }
                }
                entries.insert(to.clone(), *ino);
            }
            _ => {}
        }
    }

    /// Apply this data operation to a file's contents.
    pub fn apply_data(&self, data: &mut Vec<u8>) {
        match self {
            Op::Write { off, data: d, .. } => {
                let off = *off as usize;
                if data.len() < off + d.len() {
                    data.resize(off + d.len(), 0);
                }
                data[off..off + d.len()].copy_from_slice(d);
            }
            Op::Truncate { len, .. } => data.resize(*len as usize, 0),
            Op::Fallocate { off, len, mode, .. } => {
                let end = (*off + *len) as usize;
                let off = *off as usize;
                match mode {
                    FallocMode::KeepSize => {}
                    FallocMode::Allocate => {
                        if data.len() < end {
                            data.resize(end, 0);
                        }
                    }
                    FallocMode::Zero | FallocMode::ZeroKeepSize => {
                        let old = data.len();
                        if data.len() < end {
                            data.resize(end, 0);
                        }
                        data[off..end].fill(0);
                        if *mode == FallocMode::ZeroKeepSize {
                            data.truncate(old);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn short(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Create { path, ino, .. } => write!(f, "create {} (ino {ino})", short(path)),
            Op::Tmpfile { ino, .. } => write!(f, "tmpfile (ino {ino})"),
            Op::Link { ino, path, .. } => write!(f, "link ino {ino} -> {}", short(path)),
            Op::Unlink { path, .. } => write!(f, "unlink {}", short(path)),
            Op::Rename {
                from, to, flags, ..
            } => write!(
                f,
                "rename {} -> {}{}{}",
                short(from),
                short(to),
                if flags.noreplace { " NOREPLACE" } else { "" },
                if flags.exchange { " EXCHANGE" } else { "" }
            ),
            Op::Write { ino, off, data } => write!(f, "write ino {ino} [{off}, +{})", data.len()),
            Op::Truncate { ino, len } => write!(f, "truncate ino {ino} to {len}"),
            Op::Fallocate {
                ino,
                off,
                len,
                mode,
            } => {
                write!(f, "fallocate ino {ino} [{off}, +{len}) {mode:?}")
            }
            Op::Fsync { ino, data_only } => {
                write!(
                    f,
                    "{} ino {ino}",
                    if *data_only { "fdatasync" } else { "fsync" }
                )
            }
            Op::SyncAll => write!(f, "sync"),
            Op::SyncFileRange { ino } => write!(f, "sync_file_range ino {ino}"),
            Op::Chmod { ino, mode } => write!(f, "chmod ino {ino} {mode:o}"),
            Op::Chown { ino } => write!(f, "chown ino {ino}"),
            Op::Close { ino } => write!(f, "close ino {ino}"),
            Op::Exit { code } => write!(f, "exit {code}"),
        }
    }
}

/// An operation plus where it came from (the strace line, or a note for hand-written logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The abstract operation.
    pub op: Op,
    /// Source description.
    pub source: String,
}

/// Initial durable image plus the ordered operations.
#[derive(Clone, Debug, Default)]
pub struct OpLog {
    /// Scope root: only paths below it are modelled.
    pub root: PathBuf,
    /// Initial image (fully durable). `inodes` also holds every inode the program created,
    /// with its contents at creation (empty, or the target for symlinks).
    pub initial: Fs,
    /// Operations in program order.
    pub events: Vec<Event>,
}

impl OpLog {
    /// Number of operations.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True if no operation was recorded.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Builds an [`OpLog`] from path-level operations while maintaining the live (volatile,
/// no-crash) file-system image.
#[derive(Debug)]
pub struct LogBuilder {
    log: OpLog,
    live: Fs,
}

/// Error building a log (an operation inconsistent with the live model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError(pub String);

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ModelError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ModelError> {
    Err(ModelError(msg.into()))
}

impl LogBuilder {
    /// Start from a durable initial image whose scope is `root` (root must be in `initial`).
    pub fn new(root: impl Into<PathBuf>, initial: Fs) -> LogBuilder {
        let root = root.into();
        LogBuilder {
            live: initial.clone(),
            log: OpLog {
                root,
                initial,
                events: Vec::new(),
            },
        }
    }

    /// Start from an empty directory `root` plus the given files (`name`, contents)
    /// directly inside it. Convenient for hand-written logs.
    pub fn with_files(root: impl Into<PathBuf>, files: &[(&str, &[u8])]) -> LogBuilder {
        let root = root.into();
        let mut fs = Fs::default();
        fs.inodes.push(Inode {
            kind: Kind::Dir,
            data: Vec::new(),
        });
        fs.entries.insert(root.clone(), 0);
        for (name, data) in files {
            fs.entries.insert(root.join(name), fs.inodes.len());
            fs.inodes.push(Inode {
                kind: Kind::File,
                data: data.to_vec(),
            });
        }
        LogBuilder::new(root, fs)
    }

    /// Scope root.
    pub fn root(&self) -> &Path {
        &self.log.root
    }

    /// Is `path` inside the modelled scope?
    pub fn in_scope(&self, path: &Path) -> bool {
        path.starts_with(&self.log.root)
    }

    /// The live (no-crash) image so far.
    pub fn live(&self) -> &Fs {
        &self.live
    }

    /// Inode currently named `path`, if any.
    pub fn lookup(&self, path: &Path) -> Option<Ino> {
        self.live.entries.get(path).copied()
    }

    /// Current size of `ino` in the live image.
    pub fn size(&self, ino: Ino) -> u64 {
        self.live.inodes[ino].data.len() as u64
    }

    /// Current contents of `ino` in the live image.
    pub fn data(&self, ino: Ino) -> &[u8] {
        &self.live.inodes[ino].data
    }

    fn parent_of(&self, path: &Path) -> Ino {
        path.parent()
            .and_then(|p| self.lookup(p))
            .unwrap_or(OUTSIDE)
    }

    fn push(&mut self, op: Op, source: impl Into<String>) {
        self.log.events.push(Event {
            op,
            source: source.into(),
        });
    }

    fn fresh(&mut self, kind: Kind, data: Vec<u8>) -> Ino {
        let ino = self.live.inodes.len();
        let inode = Inode { kind, data };
        self.live.inodes.push(inode.clone());
        self.log.initial.inodes.push(inode);
        ino
    }

    /// Create a new name with a fresh inode. Fails if the name exists.
    pub fn create(&mut self, path: &Path, kind: Kind, source: &str) -> Result<Ino, ModelError> {
        self.create_with(path, kind, Vec::new(), source)
    }

    /// Create a symlink `path` pointing at `target`.
    pub fn symlink(&mut self, path: &Path, target: &[u8], source: &str) -> Result<Ino, ModelError> {
        self.create_with(path, Kind::Symlink, target.to_vec(), source)
    }

    fn create_with(
        &mut self,
        path: &Path,
        kind: Kind,
        data: Vec<u8>,
        source: &str,
    ) -> Result<Ino, ModelError> {
        if self.lookup(path).is_some() {
            return err(format!("create {}: exists in model", path.display()));
        }
        let ino = self.fresh(kind, data);
        let parent = self.parent_of(path);
        let op = Op::Create {
            path: path.to_path_buf(),
            ino,
            parent,
        };
        op.apply_namespace(&mut self.live.entries);
        self.push(op, source);
        Ok(ino)
    }

    /// Create an unnamed file in directory `dir` (`O_TMPFILE`).
    pub fn tmpfile(&mut self, dir: &Path, source: &str) -> Result<Ino, ModelError> {
        let parent = self.lookup(dir).unwrap_or(OUTSIDE);
        let ino = self.fresh(Kind::File, Vec::new());
        self.push(Op::Tmpfile { ino, parent }, source);
        Ok(ino)
    }

    /// Give `ino` the new name `path`.
    pub fn link(&mut self, ino: Ino, path: &Path, source: &str) -> Result<(), ModelError> {
        if self.lookup(path).is_some() {
            return err(format!("link to {}: exists in model", path.display()));
        }
        let op = Op::Link {
            ino,
            path: path.to_path_buf(),
            parent: self.parent_of(path),
        };
        op.apply_namespace(&mut self.live.entries);
        self.push(op, source);
        Ok(())
    }

    /// Remove the name `path`.
    pub fn unlink(&mut self, path: &Path, source: &str) -> Result<(), ModelError> {
        if self.lookup(path).is_none() {
            return err(format!("unlink {}: absent in model", path.display()));
        }
        let op = Op::Unlink {
            path: path.to_path_buf(),
            parent: self.parent_of(path),
        };
        op.apply_namespace(&mut self.live.entries);
        self.push(op, source);
        Ok(())
    }

    /// Rename `from` to `to` (atomically replacing `to`).
    pub fn rename(
        &mut self,
        from: &Path,
        to: &Path,
        flags: RenameFlags,
        source: &str,
    ) -> Result<(), ModelError> {
        let Some(ino) = self.lookup(from) else {
            return err(format!("rename {}: source absent in model", from.display()));
        };
        if from == to {
            return Ok(()); // a no-op rename
        }
        let exchanged = if flags.exchange {
            match self.lookup(to) {
                Some(x) => Some(x),
                None => return err(format!("rename exchange {}: absent", to.display())),
            }
        } else {
            None
        };
        if flags.noreplace && self.lookup(to).is_some() {
            return err(format!("rename noreplace onto existing {}", to.display()));
        }
        if self.live.inodes[ino].kind == Kind::Dir {
            // Moving a directory would move its whole subtree; entries are keyed by full
            // path, so re-key the children too (the durable model keeps them per-entry).
            let children: Vec<(PathBuf, Ino)> = self
                .live
                .entries
                .iter()
                .filter(|(p, _)| p.starts_with(from) && p.as_path() != from)
                .map(|(p, i)| (p.clone(), *i))
                .collect();
            if !children.is_empty() {
                return err(format!(
                    "rename of non-empty directory {} is not modelled",
                    from.display()
                ));
            }
        }
        let op = Op::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            ino,
            exchanged,
            from_parent: self.parent_of(from),
            to_parent: self.parent_of(to),
            flags,
        };
        op.apply_namespace(&mut self.live.entries);
        self.push(op, source);
        Ok(())
    }

    fn data_op(&mut self, op: Op, source: &str) {
        let ino = match &op {
            Op::Write { ino, .. } | Op::Truncate { ino, .. } | Op::Fallocate { ino, .. } => *ino,
            _ => unreachable!("not a data op"),
        };
        op.apply_data(&mut self.live.inodes[ino].data);
        self.push(op, source);
    }

    /// Write `data` at `off`.
    pub fn write(&mut self, ino: Ino, off: u64, data: &[u8], source: &str) {
        if data.is_empty() {
            return;
        }
        self.data_op(
            Op::Write {
                ino,
                off,
                data: data.to_vec(),
            },
            source,
        );
    }

    /// Set the size of `ino`.
    pub fn truncate(&mut self, ino: Ino, len: u64, source: &str) {
        self.data_op(Op::Truncate { ino, len }, source);
    }

    /// `fallocate`.
    pub fn fallocate(&mut self, ino: Ino, off: u64, len: u64, mode: FallocMode, source: &str) {
        self.data_op(
            Op::Fallocate {
                ino,
                off,
                len,
                mode,
            },
            source,
        );
    }

    /// `fsync`/`fdatasync` of `ino` (file or directory).
    pub fn fsync(&mut self, ino: Ino, data_only: bool, source: &str) {
        self.push(Op::Fsync { ino, data_only }, source);
    }

    /// `sync`/`syncfs`.
    pub fn sync_all(&mut self, source: &str) {
        self.push(Op::SyncAll, source);
    }

    /// `sync_file_range`.
    pub fn sync_file_range(&mut self, ino: Ino, source: &str) {
        self.push(Op::SyncFileRange { ino }, source);
    }

    /// Mode change.
    pub fn chmod(&mut self, ino: Ino, mode: u32, source: &str) {
        self.push(Op::Chmod { ino, mode }, source);
    }

    /// Owner change.
    pub fn chown(&mut self, ino: Ino, source: &str) {
        self.push(Op::Chown { ino }, source);
    }

    /// Close.
    pub fn close(&mut self, ino: Ino, source: &str) {
        self.push(Op::Close { ino }, source);
    }

    /// Program exit.
    pub fn exit(&mut self, code: i32, source: &str) {
        self.push(Op::Exit { code }, source);
    }

    /// Finish: the log and the final live image.
    pub fn finish(self) -> (OpLog, Fs) {
        (self.log, self.live)
    }
}
