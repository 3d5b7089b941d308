//! [`Batch`]: many files, each atomic, all durable after one commit, paying the flush barriers
//! once per batch instead of once per file.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::dest::DirCache;
use crate::error::errno;
use crate::file::{Parked, Sha256Digest};
use crate::interrupt;
use crate::options::{Durability, Options};
use crate::sys::Sys;
use crate::{AtomicFile, Error, Op, Receipt, Result};

/// How a [`Batch`] makes the data of all its files durable before renaming them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchSync {
    /// `Syncfs` when the batch has at least 8 files, otherwise `ParallelFsync`.
    #[default]
    Auto,
    /// One `syncfs(2)` per filesystem touched: one journal commit and one device flush, but
    /// it also flushes unrelated dirty data on that filesystem. Used only where `syncfs`
    /// reports every error that an `fsync` of each file would (Linux 5.17 and later; before
    /// 5.8 it missed writeback errors, before 5.17 errors from the filesystem's `->sync_fs`):
    /// elsewhere (older kernels, other Unix, [`Options::portable`]) each file is `fsync`ed as
    /// with `ParallelFsync`, because an `fsync` error must never be reported as success.
    /// `atomwrite doctor` says which one this machine gets.
    Syncfs,
    /// `fsync` of every file from a few threads at once, so the journal groups the commits.
    ParallelFsync,
}

/// What a [`Batch`] commit produced: one [`Receipt`] per file, in the order they were added.
#[derive(Debug, Clone, Serialize)]
pub struct BatchReceipt {
    /// The receipts, in insertion order.
    pub files: Vec<Receipt>,
    /// Directory `fsync`s performed (one per distinct directory under `Full`).
    pub dir_syncs: usize,
    /// Data flushes performed (`syncfs` calls, or `fsync` calls).
    pub data_syncs: usize,
}

/// Which destinations of a batch were replaced and which were not, attached to every error
/// from [`Batch::commit`] ([`Error::batch_outcome`]).
///
/// `replaced` lists, in the order they were added, the files whose new contents became
/// visible; under [`Durability::Full`] their directories were `fsync`ed before the error was
/// returned (unless that `fsync` failed, which the error then says). `not_replaced` lists the
/// others: their destinations are byte-for-byte as before and their temps are removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchOutcome {
    replaced: Vec<PathBuf>,
    not_replaced: Vec<PathBuf>,
}

impl BatchOutcome {
    /// An outcome (for callers that report their own batches through [`Error`]).
    pub fn new(replaced: Vec<PathBuf>, not_replaced: Vec<PathBuf>) -> BatchOutcome {
        BatchOutcome {
            replaced,
            not_replaced,
        }
    }

    /// Destinations whose new contents are visible.
    pub fn replaced(&self) -> &[PathBuf] {
        &self.replaced
    }

    /// Destinations left as they were.
    pub fn not_replaced(&self) -> &[PathBuf] {
        &self.not_replaced
    }
}

/// Many atomic writes made durable together.
///
/// `commit` (1) finishes every temp (hash, owner, mode), (2) makes all their data durable
/// together ([`BatchSync`]), (3) renames each into place, (4) `fsync`s each distinct parent
/// directory once (under [`Durability::Full`]). Four barriers for a thousand files instead of
/// two thousand, and for a hundred thousand.
///
/// Any number of files: a batch keeps at most 16,384 temps open, or fewer where the soft
/// `RLIMIT_NOFILE` less a margin of 64 descriptors (read when the batch is created) is lower.
/// When a new file would exceed that, the oldest open one is *parked*: finished (step 1), given
/// its temp name, and closed; it is renamed in step 3 like the others. So descriptors and the
/// memory of open files stay bounded however many files the batch has, and a parked file costs
/// a compact record (its destination, digest, size; its temp's name is kept once, in the
/// [`interrupt`] registry). An open anonymous temp is published by one `linkat`, a parked one
/// by the `linkat` to its temp name when parked and a `renameat`: one syscall more per file past
/// the first 16,384, no other cost (creating an `O_TMPFILE` costs the same with 18,000 others
/// open as with none, measured on ext4 with and without a journal and on tmpfs). With
/// [`expect_files`](Batch::expect_files), a file that will be parked is a 0600 named temp from
/// the start instead, and its park an `fchmod` to its final mode. A new file (nothing had its
/// name when it was looked up) is published create-only (`linkat`, `RENAME_NOREPLACE`), so a
/// newcomer is seen: replaced, except another user's entry in a shared sticky directory. Where the
/// barrier of step 2 is one `syncfs` that reports errors, that `syncfs` covers a parked file
/// too; elsewhere a parked file is `fsync`ed before it is closed (so more flushes, never fewer
/// guarantees). A parked temp has no descriptor, so no `flock` of its own: before its first
/// park in a directory (or its first named temp there, which has no `flock` for an instant
/// after its creation) the batch takes a shared `flock` on that directory, held until the
/// batch ends, and [`clean`](crate::clean) touches no temp of a directory so locked. A batch
/// never parks without that lock: if another process keeps it exclusively past a bounded wait
/// (~2 s; anyone who can open a shared `/tmp` can), the batch fails whole when it would have to
/// park (an [`Op::Lock`] error of kind `WouldBlock`, a conflict; nothing replaced, every temp
/// removed), because a closed temp a `clean` could take is a name another user could then fill
/// for the rename to publish. If a parked temp is removed anyway (by a process that ignores
/// the lock), its rename fails and that file is reported not replaced.
///
/// Guarantees: every file is atomic on its own (old or new, complete, whatever happens). If
/// anything fails before step 3, no file is published and every temp is removed. After
/// `commit` returns `Ok` under `Full`, all files are durable. An error (such as a create-only
/// conflict) or a cancel ([`interrupt::request_cancel`], checked before each rename) during
/// step 3 stops the renames: the files already renamed stay new and their directories are
/// `fsync`ed, the others stay old and their temps are removed, and the error says which is
/// which ([`Error::batch_outcome`]). A batch is **not** atomic as a whole (a crash in step 3
/// leaves some files new, some old); publish a directory for that.
///
/// Every named temp of a batch (including the names the `O_TMPFILE` inodes get before the
/// data flush or when they are parked) is `flock`ed while it is open, so [`clean`](crate::clean)
/// leaves it alone, and registered with [`interrupt`], so a signal handler's
/// [`interrupt::remove_temps`] removes it.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let mut batch = atomwrite::Batch::new(atomwrite::Options::new());
/// for i in 0..100 {
///     batch.add(dir.path().join(format!("part-{i:03}.csv")), b"id\n1\n")?;
/// }
/// let receipt = batch.commit()?;
/// assert_eq!(receipt.files.len(), 100);
/// assert_eq!(receipt.dir_syncs, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Batch {
    opts: Options,
    sync: BatchSync,
    files: Vec<Entry>,
    dirs: DirCache,
    /// Files `..parked` are parked (parking goes oldest first).
    parked: usize,
    /// Most temps held open at once.
    max_open: usize,
    /// Files the caller said are coming ([`Batch::expect_files`]; 0: not said).
    expected: usize,
    /// The run id of the files parked last, shared by every parked file that has the same.
    run_id: Option<Arc<str>>,
    /// `fsync`s paid when parking (no barrier covers those files).
    park_syncs: usize,
    /// Directories whose shared "temps here may carry no lock" lock this batch took, before its
    /// first named temp or its first park there ([`crate::clean::lock_dir_shared`]); held until
    /// their descriptors close with the batch. Keyed by the address of the directory fd, which
    /// each entry keeps open until the batch ends (so never reused).
    locked_dirs: crate::file::DirLocks,
}

/// A file of a batch: still open, or parked (finished and closed, see [`Batch`]). Boxed, so
/// the list costs a pointer per file and a parked file only its compact record.
#[derive(Debug)]
enum Entry {
    Open(Box<AtomicFile>),
    Parked(Box<Parked>),
}

impl Entry {
    fn destination(&self) -> &Path {
        match self {
            Entry::Open(f) => f.destination(),
            Entry::Parked(p) => p.destination(),
        }
    }

    fn dir_fd(&self) -> &Arc<OwnedFd> {
        match self {
            Entry::Open(f) => f.dir_fd(),
            Entry::Parked(p) => p.dir_fd(),
        }
    }

    fn sys(&self) -> Sys {
        match self {
            Entry::Open(f) => f.sys(),
            Entry::Parked(p) => p.sys(),
        }
    }

    fn is_visible(&self) -> bool {
        match self {
            Entry::Open(f) => f.is_visible(),
            Entry::Parked(p) => p.is_visible(),
        }
    }

    fn sync_dir(&self) -> Result<()> {
        match self {
            Entry::Open(f) => f.sync_dir(),
            Entry::Parked(p) => p.sync_dir(),
        }
    }

    fn publish(&mut self) -> Result<()> {
        match self {
            Entry::Open(f) => f.publish_now(),
            Entry::Parked(p) => interrupt::critical(|| p.publish()),
        }
    }

    fn receipt(&self, sha256: Option<Sha256Digest>) -> Receipt {
        match self {
            Entry::Open(f) => f.receipt(sha256),
            Entry::Parked(p) => p.receipt(),
        }
    }
}

/// Most temps a batch holds open, whatever the descriptor limit (see [`Batch`]). An open temp
/// is published by one `linkat`, a parked one costs a `linkat` to its temp name and a
/// `renameat` (two directory updates instead of one): 10,000 files were 1.12× the floor all
/// open against 1.28× with 1,024 open, for ~270 bytes more per open file (4.4 MiB at this cap).
pub(crate) const HELD_OPEN: usize = 16_384;

/// [`HELD_OPEN`]; with the `test-hooks` feature, `ATOMWRITE_TEST_HELD_OPEN` overrides it, so
/// tests reach the cap with a few thousand files.
fn held_open() -> usize {
    #[cfg(feature = "test-hooks")]
    if let Some(n) = std::env::var("ATOMWRITE_TEST_HELD_OPEN")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    HELD_OPEN
}

/// Temps a batch may hold open: [`HELD_OPEN`], or fewer where the soft `RLIMIT_NOFILE` less a
/// margin of 64 (for directories, sources and the process's own descriptors) is lower; at
/// least 16.
fn max_open() -> usize {
    let l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let soft = l.current.unwrap_or(1 << 20);
    (soft.saturating_sub(64) as usize).clamp(16, held_open().max(16))
}

impl Batch {
    /// An empty batch; every file is written with `opts`.
    pub fn new(opts: Options) -> Batch {
        Batch {
            opts,
            sync: BatchSync::Auto,
            files: Vec::new(),
            dirs: DirCache::default(),
            parked: 0,
            max_open: max_open(),
            expected: 0,
            run_id: None,
            park_syncs: 0,
            locked_dirs: crate::file::DirLocks::default(),
        }
    }

    /// Chooses how data is flushed (default [`BatchSync::Auto`]).
    pub fn sync_strategy(mut self, s: BatchSync) -> Batch {
        self.sync = s;
        self
    }

    /// Says how many files will be added (a hint; any number may still come), so that a batch
    /// of many files costs less per file, guaranteeing nothing less:
    ///
    /// - Each destination directory is listed once when its first file is added, and a name
    ///   the listing lacks is taken as absent without a `stat` of its own. Only where a
    ///   listing is exact: ext2/3/4 outside casefolded directories (names compare byte for
    ///   byte, and a file renamed over a name keeps its entry, so a name that exists
    ///   throughout is never missed; on btrfs and tmpfs a replaced name moves past the end of
    ///   a listing in progress). Never in a shared sticky directory such as `/tmp`, and not
    ///   past about twice `files` entries read in all (a `stat` per file is then cheaper). A
    ///   name created after the listing is met by the publish, as one created after a `stat`
    ///   would be: it is replaced (create-only: reported as a conflict; another user's entry
    ///   in a shared sticky directory: refused).
    /// - A file the batch will have to park (past the temps it keeps open) is created as a
    ///   named temp at once, mode 0600 until it is finished (as every named temp), under the
    ///   directory's lock (see the type docs), instead of as an `O_TMPFILE` linked to a name
    ///   when parked: the same number of syscalls, without the inode's trips on and off the
    ///   filesystem's orphan list. Like a parked temp, a crash leaves it for
    ///   [`clean`](crate::clean).
    /// - The descriptor table is grown once ([`Batch::reserve_descriptors`]).
    ///
    /// Measured with `atomwrite cp` of 100,000 new 4 KiB files into one directory on ext4:
    /// 7.84 syscalls per file instead of 8.84 (see BENCHMARKS.md, "Scale").
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let mut batch = atomwrite::Batch::new(atomwrite::Options::new()).expect_files(1000);
    /// for i in 0..1000 {
    ///     batch.add(dir.path().join(format!("{i}.txt")), b"x")?;
    /// }
    /// assert_eq!(batch.commit()?.files.len(), 1000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn expect_files(mut self, files: usize) -> Batch {
        self.expected = files;
        self.dirs.expect(files);
        Batch::reserve_descriptors(files);
        self
    }

    /// Grows the process's descriptor table now to hold the temps a batch of `files` files
    /// keeps open (at most 16,384, fewer under a lower `RLIMIT_NOFILE`) and a few more; a
    /// no-op for 64 files or fewer. [`expect_files`](Batch::expect_files) calls it; a program
    /// that starts threads may call it first, before they exist.
    ///
    /// Why: Linux grows a descriptor table by doubling, and while another thread shares the
    /// table each growth waits for an RCU grace period (milliseconds): a batch of 1,000 files
    /// paid four (128, 256, 512, 1,024 descriptors), ~15 ms in all; grown at once, one, or
    /// none before a second thread exists. Best effort: it changes nothing else and reports
    /// nothing (a descriptor is taken at or above the size wanted and closed at once).
    ///
    /// ```
    /// atomwrite::Batch::reserve_descriptors(500);
    /// ```
    pub fn reserve_descriptors(files: usize) {
        if files > 64 {
            // The temps held open, and a few more (directories, a source being read).
            crate::sys::reserve_descriptors(files.min(max_open()) + 16);
        }
    }

    /// Number of files in the batch.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Adds a file with these contents. Nothing is visible until [`commit`](Batch::commit).
    pub fn add(&mut self, path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
        let mut opts = self.opts.clone();
        opts.size_hint = Some(bytes.len() as u64);
        self.push(path.as_ref(), &opts)?.write_all_bytes(bytes)
    }

    /// Adds a file whose contents are read from `reader` until EOF.
    pub fn add_reader(
        &mut self,
        path: impl AsRef<Path>,
        reader: &mut dyn io::Read,
        source: &Path,
    ) -> Result<()> {
        let opts = self.opts.clone();
        self.push(path.as_ref(), &opts)?.copy_from(reader, source)?;
        Ok(())
    }

    /// Opens a file to stream into; it is committed with the batch. The file returned is open
    /// until the next file is added (which may park it, see the type docs).
    pub fn open(&mut self, path: impl AsRef<Path>) -> Result<&mut AtomicFile> {
        let opts = self.opts.clone();
        self.push(path.as_ref(), &opts)
    }

    /// Opens a file with its own options (its durability is the batch's: the batch decides the
    /// flushes). Used by `cp` to give each copy its source's mode.
    pub fn open_with(&mut self, path: impl AsRef<Path>, opts: Options) -> Result<&mut AtomicFile> {
        let opts = opts.durability(self.opts.durability);
        self.push(path.as_ref(), &opts)
    }

    /// Parks the oldest open files until one more may be opened, then opens it.
    fn push(&mut self, path: &Path, opts: &Options) -> Result<&mut AtomicFile> {
        while self.files.len() - self.parked >= self.max_open {
            self.park_oldest()?;
        }
        // Parking goes oldest first: this file is parked if `max_open` more files follow it.
        let park_soon = self.expected > self.files.len() + self.max_open;
        let f = AtomicFile::open_cached(
            path,
            opts,
            Some((&mut self.dirs, &mut self.locked_dirs, park_soon)),
        )?;
        self.files.push(Entry::Open(Box::new(f)));
        match self.files.last_mut() {
            Some(Entry::Open(f)) => Ok(f),
            _ => unreachable!("just pushed an open file"),
        }
    }

    /// Parks the oldest open file (see the type docs). On error it stays open and the batch
    /// fails as a whole when the caller drops it (every temp removed).
    fn park_oldest(&mut self) -> Result<()> {
        let i = self.parked;
        // The commit's barrier covers this file only if it is one syncfs that reports errors.
        let covered = self.wants_syncfs(self.files.len())
            && self.files[i].sys().sync_filesystem_support().available;
        let dir = Arc::clone(self.files[i].dir_fd());
        if !self.locked_dirs.held(&dir) {
            // A parked temp is closed: only the directory's lock keeps `clean` from taking it,
            // and once taken, another user could put a file of theirs under its name for the
            // rename to publish. Without that lock, never park: the batch fails whole.
            let parent = self.files[i]
                .destination()
                .parent()
                .unwrap_or(Path::new("."))
                .to_path_buf();
            return Err(Error::other(
                Op::Lock,
                parent,
                io::ErrorKind::WouldBlock,
                format!(
                    "another process holds this directory's lock (flock), so the temps this \
                     batch cannot keep open (past {}) would be unprotected (retry when the lock \
                     is released, or raise the descriptor limit)",
                    self.max_open
                ),
            ));
        }
        let Entry::Open(f) = &mut self.files[i] else {
            unreachable!("files from `parked` on are open")
        };
        let sync = !covered && self.opts.durability != Durability::None;
        let p = f.park(sync, &mut self.run_id)?;
        self.park_syncs += usize::from(sync);
        // Dropping the open file closes its descriptor; its temp now belongs to `p`.
        self.files[i] = Entry::Parked(Box::new(p));
        self.parked += 1;
        interrupt::test_point("batch-parked", self.parked);
        Ok(())
    }

    /// Whether the data flush is meant to be `syncfs` for a batch of (at least) `n` files.
    fn wants_syncfs(&self, n: usize) -> bool {
        match self.sync {
            BatchSync::Syncfs => true,
            BatchSync::ParallelFsync => false,
            BatchSync::Auto => n >= 8,
        }
    }

    /// Publishes every file (see the type docs for the sequence and what a crash or an error
    /// can leave). Every error carries a [`BatchOutcome`].
    pub fn commit(self) -> Result<BatchReceipt> {
        let mut files = Vec::with_capacity(self.files.len());
        let (dir_syncs, data_syncs) = self.commit_each(|r| files.push(r))?;
        Ok(BatchReceipt {
            files,
            dir_syncs,
            data_syncs,
        })
    }

    /// [`commit`](Batch::commit), handing each receipt to `each` in insertion order instead of
    /// collecting them; returns `(dir_syncs, data_syncs)`.
    pub(crate) fn commit_each(mut self, mut each: impl FnMut(Receipt)) -> Result<(usize, usize)> {
        let durability = self.opts.durability;
        let mut hashes = Vec::with_capacity(self.files.len() - self.parked);
        if let Err(e) = self.stage(&mut hashes) {
            return Err(self.nothing_replaced(e));
        }
        interrupt::test_point("batch-linked", 0);
        if interrupt::cancel_requested() {
            let e = self.cancelled(0);
            return Err(self.nothing_replaced(e));
        }
        let mut data_syncs = self.park_syncs;
        if durability != Durability::None && !self.files.is_empty() {
            match self.sync_data() {
                Ok(n) => data_syncs += n,
                Err(e) => return Err(self.nothing_replaced(e)),
            }
        }
        interrupt::test_point("batch-synced", 0);
        // The rename phase and the directory fsyncs as one critical section: a signal report
        // (`interrupt::quiesce`) sees either none of it or all of it, never a rename whose
        // directory was not yet flushed.
        let dir_syncs = interrupt::critical(|| self.rename_all())?;
        // Each file's record is freed as its receipt is made: the two never both grow whole.
        // The parked files come first and carry their own digests.
        let parked = std::iter::repeat_n(None, self.parked);
        for (f, h) in self.files.drain(..).zip(parked.chain(hashes)) {
            each(f.receipt(h));
        }
        Ok((dir_syncs, data_syncs))
    }

    /// Phase 1: hash, owner and mode of every open file (parked ones were finished when they
    /// were parked); anonymous temps get their (locked, registered) names, so the data flush
    /// covers linked inodes. `hashes` gets the digests of the open files, in order.
    fn stage(&mut self, hashes: &mut Vec<Option<Sha256Digest>>) -> Result<()> {
        for e in &mut self.files[self.parked..] {
            let Entry::Open(f) = e else {
                unreachable!("files from `parked` on are open")
            };
            hashes.push(f.prepare()?);
            f.link_early()?;
        }
        Ok(())
    }

    /// Phases 3 and 4. On a cancel or an error, stops renaming, makes the renames already done
    /// durable, and returns the error with the outcome (the remaining temps are removed when
    /// the batch drops, before the caller sees the error).
    fn rename_all(&mut self) -> Result<usize> {
        let mut stop = None;
        for i in 0..self.files.len() {
            if interrupt::cancel_requested() {
                stop = Some(self.cancelled(i));
                break;
            }
            if let Err(e) = self.files[i].publish() {
                stop = Some(e);
                break;
            }
            interrupt::test_point("batch-renamed", i + 1);
        }
        let durable = self.opts.durability == Durability::Full;
        let Some(mut e) = stop else {
            return if durable {
                self.sync_dirs(|_| true)
            } else {
                Ok(0)
            };
        };
        if durable && let Err(sync_err) = self.sync_dirs(Entry::is_visible) {
            let hint = match e.hint() {
                Some(h) => format!("{h}; "),
                None => String::new(),
            };
            e = e.with_hint(format!(
                "{hint}also {sync_err}: the files replaced before the error may not survive a \
                 power loss"
            ));
        }
        let outcome = self.outcome();
        // Remove the temps now (not when the batch drops): once the error is returned, nothing
        // of this batch is left on disk but the replaced files.
        self.files.clear();
        Err(e.with_batch_outcome(outcome))
    }

    /// One `fsync` per distinct directory among the files `pick` selects.
    fn sync_dirs(&self, pick: impl Fn(&Entry) -> bool) -> Result<usize> {
        let mut seen = HashSet::new();
        let mut n = 0;
        for f in self.one_per_directory_of(pick) {
            let st = rustix::fs::fstat(f.dir_fd())
                .map_err(|e| Error::new(Op::SyncDir, f.destination(), errno(e)))?;
            if seen.insert((st.st_dev, st.st_ino)) {
                // One fsync per directory makes all the renames in it durable.
                f.sync_dir()?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn outcome(&self) -> BatchOutcome {
        let (replaced, not_replaced) = self.files.iter().partition::<Vec<_>, _>(|f| f.is_visible());
        BatchOutcome {
            replaced: replaced
                .iter()
                .map(|f| f.destination().to_path_buf())
                .collect(),
            not_replaced: not_replaced
                .iter()
                .map(|f| f.destination().to_path_buf())
                .collect(),
        }
    }

    fn nothing_replaced(&self, e: Error) -> Error {
        let outcome = self.outcome();
        e.with_batch_outcome(outcome)
    }

    /// The error of a cancel seen before the rename of file `i`.
    fn cancelled(&self, i: usize) -> Error {
        let dest = self
            .files
            .get(i)
            .map(|f| f.destination().to_path_buf())
            .unwrap_or_default();
        Error::other(
            Op::Rename,
            dest,
            io::ErrorKind::Interrupted,
            "cancelled (interrupt::request_cancel) before this file was renamed",
        )
    }

    /// One file per distinct directory fd among those `pick` selects (files opened through the
    /// batch share them), so per-directory work costs one `fstat` per directory, not per file.
    fn one_per_directory_of(&self, pick: impl Fn(&Entry) -> bool) -> impl Iterator<Item = &Entry> {
        let mut seen = HashSet::new();
        self.files
            .iter()
            .filter(move |f| pick(f) && seen.insert(Arc::as_ptr(f.dir_fd())))
    }

    /// Step 2 of `commit`: makes the data of every file durable before any is renamed, and
    /// returns the number of flushes made. A file is covered either by its own `fsync` (now, or
    /// when it was parked) or by a `syncfs` of its filesystem that reports errors
    /// (`Backend::sync_filesystem` returns `Ok(true)` only then); a filesystem whose backend or
    /// kernel has no such barrier (the portable path, Linux before 5.17) gets an `fsync` of
    /// every file instead, even when [`BatchSync::Syncfs`] was asked for.
    fn sync_data(&self) -> Result<usize> {
        let mut n = 0;
        let mut each: Vec<&AtomicFile> = Vec::new();
        let groups = match self.wants_syncfs(self.files.len()) {
            true => self.by_filesystem()?,
            false => vec![((0, ""), self.files.iter().collect())],
        };
        for (_, group) in groups {
            if self.wants_syncfs(self.files.len()) && sync_filesystem(group[0])? {
                n += 1;
                continue;
            }
            for e in group {
                match e {
                    Entry::Open(f) => each.push(f),
                    // Closed: only its fsync when it was parked can have covered it.
                    Entry::Parked(p) if !p.synced() => return Err(unsynced(p.destination())),
                    Entry::Parked(_) => {}
                }
            }
        }
        if each.is_empty() {
            return Ok(n);
        }
        fsync_each(&each)?;
        Ok(n + each.len())
    }

    /// The files grouped by filesystem (the device of their directory) and backend, in order of
    /// first appearance; one fstat per distinct directory fd.
    fn by_filesystem(&self) -> Result<Vec<FsGroup<'_>>> {
        let mut dev_of_dir = std::collections::HashMap::new();
        let mut groups: Vec<FsGroup<'_>> = Vec::new();
        for f in &self.files {
            let dev = match dev_of_dir.get(&Arc::as_ptr(f.dir_fd())) {
                Some(d) => *d,
                None => {
                    let st = rustix::fs::fstat(f.dir_fd())
                        .map_err(|e| Error::new(Op::SyncFile, f.destination(), errno(e)))?;
                    dev_of_dir.insert(Arc::as_ptr(f.dir_fd()), st.st_dev);
                    st.st_dev
                }
            };
            let key = (dev, f.sys().name());
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, g)) => g.push(f),
                None => groups.push((key, vec![f])),
            }
        }
        Ok(groups)
    }
}

/// One `syncfs` of the filesystem of `first`, the earliest-added file of its group; whether it
/// covers the group (`false`: no barrier that reports errors here, fsync each file).
fn sync_filesystem(first: &Entry) -> Result<bool> {
    // Through the directory fd of the group's earliest file: syncfs reports the writeback errors
    // of the whole filesystem since the fd it is given was opened (per-superblock errseq), and
    // that directory was opened before the group's first temp was created, so before any write
    // of the group; parked (closed) files are covered too. One journal commit + device flush
    // covers every temp on this filesystem (the backend says no where it would not report).
    first
        .sys()
        .sync_filesystem(first.dir_fd().as_fd())
        .map_err(|e| Error::new(Op::SyncFile, first.destination(), e))
}

/// The error for a parked file no flush can cover (not reached: a file is parked unsynced only
/// where the commit's `syncfs` covers it).
fn unsynced(dest: &Path) -> Error {
    Error::other(
        Op::SyncFile,
        dest,
        io::ErrorKind::Other,
        "closed before the batch's flush and not covered by it; nothing was replaced",
    )
}

/// Files on one filesystem: `(device, backend name)` and the files, in order of opening.
type FsGroup<'a> = ((u64, &'static str), Vec<&'a Entry>);

/// `fsync`s every file of `each` (again with `fdatasync` where the backend needs it after a
/// link), on up to 16 threads.
fn fsync_each(each: &[&AtomicFile]) -> Result<()> {
    let threads = each.len().clamp(1, 16);
    let chunk = each.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = each
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    for f in part {
                        let sys = f.sys();
                        // Concurrent fsyncs let the journal group them into few commits.
                        sys.sync_file(f.file().as_fd())
                            .map_err(|e| Error::new(Op::SyncFile, f.destination(), e))?;
                        if sys.needs_sync_after_link(f.fs_type()) {
                            // btrfs: the linked inode's data is synced once more (see
                            // `AtomicFile::sync_after_link`).
                            sys.sync_data(f.file().as_fd())
                                .map_err(|e| Error::new(Op::SyncFile, f.destination(), e))?;
                        }
                    }
                    Ok::<(), Error>(())
                })
            })
            .collect();
        for h in handles {
            h.join().expect("fsync thread panicked")?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_file_costs_a_compact_record() {
        // Per parked file: its boxed record (plus its destination path and one registry entry,
        // which holds the temp's name). A batch of a million files keeps a million of these
        // until its commit: a field that grows this is a regression to justify.
        assert!(
            std::mem::size_of::<Parked>() <= 160,
            "{}",
            std::mem::size_of::<Parked>()
        );
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn a_batch_holds_at_most_held_open_temps_whatever_the_descriptor_limit() {
        assert!(max_open() <= held_open().max(16));
        assert!(max_open() >= 16);
    }
}
