//! [`Batch`]: many files, each atomic, all durable after one commit, paying the flush barriers
//! once per batch instead of once per file.

use std::collections::HashSet;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::dest::DirCache;
use crate::error::errno;
use crate::interrupt;
use crate::options::{Durability, Options};
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
/// two thousand.
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
/// data flush) is `flock`ed, so [`clean`](crate::clean) leaves it alone, and registered with
/// [`interrupt`], so a signal handler's [`interrupt::remove_temps`] removes it.
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
    files: Vec<AtomicFile>,
    dirs: DirCache,
}

impl Batch {
    /// An empty batch; every file is written with `opts`.
    pub fn new(opts: Options) -> Batch {
        Batch {
            opts,
            sync: BatchSync::Auto,
            files: Vec::new(),
            dirs: DirCache::default(),
        }
    }

    /// Chooses how data is flushed (default [`BatchSync::Auto`]).
    pub fn sync_strategy(mut self, s: BatchSync) -> Batch {
        self.sync = s;
        self
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
        let mut f = AtomicFile::open_cached(path.as_ref(), &opts, Some(&mut self.dirs))?;
        f.write_all_bytes(bytes)?;
        self.files.push(f);
        Ok(())
    }

    /// Adds a file whose contents are read from `reader` until EOF.
    pub fn add_reader(
        &mut self,
        path: impl AsRef<Path>,
        reader: &mut dyn io::Read,
        source: &Path,
    ) -> Result<()> {
        let mut f = AtomicFile::open_cached(path.as_ref(), &self.opts, Some(&mut self.dirs))?;
        f.copy_from(reader, source)?;
        self.files.push(f);
        Ok(())
    }

    /// Opens a file to stream into; it is committed with the batch.
    pub fn open(&mut self, path: impl AsRef<Path>) -> Result<&mut AtomicFile> {
        let f = AtomicFile::open_cached(path.as_ref(), &self.opts, Some(&mut self.dirs))?;
        self.files.push(f);
        Ok(self.files.last_mut().expect("just pushed"))
    }

    /// Opens a file with its own options (its durability is the batch's: the batch decides the
    /// flushes). Used by `cp` to give each copy its source's mode.
    pub fn open_with(&mut self, path: impl AsRef<Path>, opts: Options) -> Result<&mut AtomicFile> {
        let opts = opts.durability(self.opts.durability);
        let f = AtomicFile::open_cached(path.as_ref(), &opts, Some(&mut self.dirs))?;
        self.files.push(f);
        Ok(self.files.last_mut().expect("just pushed"))
    }

    /// Publishes every file (see the type docs for the sequence and what a crash or an error
    /// can leave). Every error carries a [`BatchOutcome`].
    pub fn commit(mut self) -> Result<BatchReceipt> {
        let durability = self.opts.durability;
        let mut hashes = Vec::with_capacity(self.files.len());
        if let Err(e) = self.stage(&mut hashes) {
            return Err(self.nothing_replaced(e));
        }
        interrupt::test_point("batch-linked", 0);
        if interrupt::cancel_requested() {
            let e = self.cancelled(0);
            return Err(self.nothing_replaced(e));
        }
        let mut data_syncs = 0;
        if durability != Durability::None && !self.files.is_empty() {
            match self.sync_data() {
                Ok(n) => data_syncs = n,
                Err(e) => return Err(self.nothing_replaced(e)),
            }
        }
        interrupt::test_point("batch-synced", 0);
        // The rename phase and the directory fsyncs as one critical section: a signal report
        // (`interrupt::quiesce`) sees either none of it or all of it, never a rename whose
        // directory was not yet flushed.
        let dir_syncs = interrupt::critical(|| self.rename_all())?;
        let files = self
            .files
            .iter()
            .zip(hashes)
            .map(|(f, h)| f.receipt(h))
            .collect();
        Ok(BatchReceipt {
            files,
            dir_syncs,
            data_syncs,
        })
    }

    /// Phase 1: hash, owner and mode of every file; anonymous temps get their (locked,
    /// registered) names, so the data flush covers linked inodes.
    fn stage(&mut self, hashes: &mut Vec<Option<String>>) -> Result<()> {
        for f in &mut self.files {
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
            if let Err(e) = self.files[i].publish_now() {
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
        if durable && let Err(sync_err) = self.sync_dirs(AtomicFile::is_visible) {
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
    fn sync_dirs(&self, pick: impl Fn(&AtomicFile) -> bool) -> Result<usize> {
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
    fn one_per_directory_of(
        &self,
        pick: impl Fn(&AtomicFile) -> bool,
    ) -> impl Iterator<Item = &AtomicFile> {
        let mut seen = HashSet::new();
        self.files
            .iter()
            .filter(move |f| pick(f) && seen.insert(Arc::as_ptr(f.dir_fd())))
    }

    /// Step 2 of `commit`: makes the data of every file durable before any is renamed, and
    /// returns the number of flushes made. A file is covered either by its own `fsync` or by a
    /// `syncfs` of its filesystem that reports errors (`Backend::sync_filesystem`
    /// returns `Ok(true)` only then); a filesystem whose backend or kernel has no such barrier
    /// (the portable path, Linux before 5.17) gets an `fsync` of every file instead, even when
    /// [`BatchSync::Syncfs`] was asked for.
    fn sync_data(&self) -> Result<usize> {
        let want_syncfs = match self.sync {
            BatchSync::Syncfs => true,
            BatchSync::ParallelFsync => false,
            BatchSync::Auto => self.files.len() >= 8,
        };
        let mut n = 0;
        let mut each: Vec<&AtomicFile> = Vec::new();
        if want_syncfs {
            for (_, group) in self.by_filesystem()? {
                // The group's earliest-opened file: syncfs reports writeback errors of the whole
                // filesystem since the fd it is given was opened (per-superblock errseq), so
                // that fd covers the errors of every file in the group.
                let first = group[0];
                // One journal commit + device flush covers every temp on this filesystem, and
                // reports a write error of any of them (the backend says no where it would not).
                let covered = first
                    .sys()
                    .sync_filesystem(first.file().as_fd())
                    .map_err(|e| Error::new(Op::SyncFile, first.destination(), e))?;
                if covered {
                    n += 1;
                } else {
                    each.extend(group);
                }
            }
        } else {
            each.extend(&self.files);
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

/// Files on one filesystem: `(device, backend name)` and the files, in order of opening.
type FsGroup<'a> = ((u64, &'static str), Vec<&'a AtomicFile>);

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
