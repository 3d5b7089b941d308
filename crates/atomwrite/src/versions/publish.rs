//! [`Publisher`] and [`PendingVersion`]: the publish sequence (see the module docs).

use std::cell::Cell;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode};

use super::lock::{self, Lock, LockWait, WaitPolicy};
use super::name::VersionName;
use super::store::{Current, Store, manifest_name};
use super::{Published, retain};
use crate::dest::Existing;
use crate::error::errno;
use crate::interrupt::test_pause;
use crate::manifest::{self, Manifest};
use crate::{AtomicFile, Durability, Error, Op, Options, Receipt, Result, SymlinkPolicy};

/// Publishes versions of a destination behind an atomic `latest` symlink. See the
/// [module docs](mod@crate::versions) for the layout, the steps and the guarantees.
#[derive(Debug, Clone, Default)]
pub struct Publisher {
    opts: Options,
    keep: Option<usize>,
    expect: Option<u64>,
    wait: WaitPolicy,
}

impl Publisher {
    /// Default [`Options`] (durability `Full`), no retention, no compare-and-swap, waiting for
    /// other publishers without a time limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Write options for the version files (durability, mode, run id, parent creation). The
    /// create-only and symlink settings are ignored: versions are always created, never replaced.
    /// Without an explicit [`Options::mode`], a new version keeps the mode, owner and group of
    /// the current version (or of the regular file it migrates), as a write keeps those of the
    /// file it replaces.
    pub fn options(mut self, opts: Options) -> Self {
        self.opts = opts;
        self
    }

    /// After the swap, keep only the `n` newest versions of the history (versions older than the
    /// new current one); the new one and the one it replaced are always kept, so `n < 2` behaves
    /// as 2. Versions newer than the current one (after a rollback by hand) are never removed.
    /// Also removes the leftovers of crashed publishes (see [`clean_versions`](super::clean_versions)).
    pub fn keep(mut self, n: usize) -> Self {
        self.keep = Some(n);
        self
    }

    /// Compare-and-swap: publish only if the current version is `v` (0 = nothing published yet,
    /// including a `DST` that is still a regular file). Otherwise fail with an error whose
    /// [`is_conflict`](Error::is_conflict) is true, and publish nothing.
    pub fn expect(mut self, v: u64) -> Self {
        self.expect = Some(v);
        self
    }

    /// The mode of the source a version is copied from: a first version (nothing to inherit)
    /// gets `mode & 0o777 & !umask`, never set-id bits, like `cp` without `-p`. Later versions
    /// keep the current version's mode; an explicit [`Options::mode`] wins over both.
    pub fn source_mode(mut self, mode: u32) -> Self {
        self.opts = self.opts.source_mode(mode);
        self
    }

    /// Waits at most `d` for another publisher of the same destination; then fails with an error
    /// whose [`is_conflict`](Error::is_conflict) is true (kind `WouldBlock`), nothing published.
    /// Without it the wait has no limit. Either way it ends early, with kind `Interrupted`, once
    /// [`crate::interrupt::request_cancel`] is called.
    pub fn wait_timeout(mut self, d: Duration) -> Self {
        self.wait.timeout = Some(d);
        self
    }

    /// Called once when this publisher has to wait for another one, with what the system tells
    /// about the holder (Linux: its pid and command line).
    pub fn on_wait(mut self, f: impl Fn(&LockWait) + Send + Sync + 'static) -> Self {
        self.wait.notice = Some(std::sync::Arc::new(f));
        self
    }

    /// The version [`expect`](Publisher::expect) requires to be current, if any.
    pub fn expected(&self) -> Option<u64> {
        self.expect
    }

    /// The retention count set by [`keep`](Publisher::keep), if any.
    pub fn kept(&self) -> Option<usize> {
        self.keep
    }

    /// The write options set by [`options`](Publisher::options).
    pub fn write_options(&self) -> &Options {
        &self.opts
    }

    /// Takes the lock, checks [`expect`](Publisher::expect), claims the next version number and
    /// opens it for writing. Nothing is visible until [`PendingVersion::commit`]; dropping the
    /// pending version discards it. Other publishers of `dst` wait until this one is committed or
    /// dropped.
    pub fn begin(&self, dst: impl AsRef<Path>) -> Result<PendingVersion> {
        let s = Session::open(self, dst.as_ref(), false, |_| Ok(()))?;
        let mut o = self.opts.clone();
        o.symlinks = SymlinkPolicy::Replace;
        o.no_create_dirs = true;
        if let (None, Some(ex)) = (self.opts.mode, s.inherit) {
            o = o.inherit(ex);
        }
        let file = s.store.create_file(&s.vname.to_os_string(), &o)?;
        Ok(PendingVersion { file, s })
    }

    /// Publishes `bytes` as the next version of `dst`.
    pub fn publish(&self, dst: impl AsRef<Path>, bytes: &[u8]) -> Result<Published> {
        let mut p = self.begin(dst)?;
        p.file.write_all_bytes(bytes)?;
        p.commit()
    }

    /// Publishes what `fill` writes as the next version of `dst`; nothing is published if `fill`
    /// fails.
    pub fn publish_with<F>(&self, dst: impl AsRef<Path>, fill: F) -> Result<Published>
    where
        F: FnOnce(&mut AtomicFile) -> io::Result<()>,
    {
        let mut p = self.begin(dst)?;
        if let Err(e) = fill(&mut p.file) {
            // An `AtomicFile` write error already names the step, the path and errno.
            return Err(Error::wrap_io(Op::Write, p.s.version_path(), e));
        }
        p.commit()
    }

    /// Publishes the tree `src` as one directory version of `dst`: copied into a staging
    /// directory (regular files, directories and symlinks, never following a link inside `src`;
    /// permission bits without set-id, filtered by the umask), made durable (one `syncfs` of the
    /// filesystem where it reports every error, Linux 5.17 and later; elsewhere every file
    /// `fsync`ed and directories `fsync`ed bottom-up), renamed to `vN`, then the pointer swap. A `dst` that is a real
    /// directory is migrated with `renameat2(RENAME_EXCHANGE)` (see the module docs). A `dst`
    /// inside `src` is refused (the copy would contain itself). On failure the staging copy is
    /// removed and `dst` is untouched.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let build = dir.path().join("build");
    /// # std::fs::create_dir_all(build.join("css"))?;
    /// # std::fs::write(build.join("index.html"), "<h1>v1</h1>")?;
    /// # std::fs::write(build.join("css/site.css"), "h1{}")?;
    /// let site = dir.path().join("site");
    /// let p = atomwrite::Publisher::new().keep(3).publish_dir(&site, &build)?;
    /// assert_eq!(std::fs::read_to_string(site.join("index.html"))?, "<h1>v1</h1>");
    /// assert_eq!(atomwrite::verify(&site).status, atomwrite::VerifyStatus::Ok);
    /// assert_eq!(p.manifest.kind, Some(atomwrite::ManifestKind::Directory));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish_dir(&self, dst: impl AsRef<Path>, src: impl AsRef<Path>) -> Result<Published> {
        let src = src.as_ref();
        // Opened as `cp -r` would under fs.protected_symlinks (another user's link in a sticky
        // directory is not followed), once: the copy walks from this fd.
        let src_fd = crate::dest::open_source(src, crate::dest::Want::Dir)?;
        let s = Session::open(self, dst.as_ref(), true, |parent| {
            if is_within(parent, &src_fd)? {
                return Err(Error::other(
                    Op::Publish,
                    dst.as_ref(),
                    io::ErrorKind::InvalidInput,
                    format!(
                        "is inside the directory being published (`{}`): the copy would contain \
                         itself",
                        src.display()
                    ),
                ));
            }
            Ok(())
        })?;
        let vname = s.vname.to_os_string();
        let stage = crate::tempname::temp_name(&vname, 255);
        let stage_path = s.store.path_of(&stage);
        let durable = self.opts.durability != Durability::None;
        let vfd = s.store.vfd().clone();
        let staged = (|| -> Result<(u64, String, Vec<manifest::DirEntry>)> {
            rfs::mkdirat(&*vfd, &stage, Mode::from_raw_mode(0o700))
                .map_err(|e| Error::new(Op::CreateDir, &stage_path, errno(e)))?;
            let stage_fd = rfs::openat(&*vfd, &stage, super::store::dir_flags(), Mode::empty())
                .map_err(|e| Error::new(Op::OpenDir, &stage_path, errno(e)))?;
            let barrier = crate::tree::TreeDurability::for_backend(
                durable,
                crate::sys::backend(self.opts.portable || crate::file::portable_env()),
            );
            crate::tree::copy_tree(&src_fd, src, &stage_fd, &stage_path, barrier)?;
            // Hashed through the staging fd: what the manifest describes is what was copied.
            let hashed = crate::tree::hash_tree(&stage_fd, &stage_path)?;
            test_pause("dir-staged");
            rfs::renameat(&*vfd, &stage, &*vfd, &vname)
                .map_err(|e| Error::new2(Op::Rename, &stage_path, s.version_path(), errno(e)))?;
            Ok(hashed)
        })();
        let (size, sha, files) = match staged {
            Ok(h) => h,
            Err(e) => {
                if let Ok(Some(st)) = s.store.stat_in_vdir(&stage) {
                    let _ = super::store::remove_entry(&vfd, &stage, &stage_path, &st);
                }
                return Err(e);
            }
        };
        let r = (|| {
            let mut m = s.manifest_base(size, sha);
            m.kind = Some(crate::manifest::ManifestKind::Directory);
            m.files = Some(files);
            s.store.write_manifest(&vname, &m, &s.opts)?;
            s.finish(m)
        })();
        s.cleanup_on_error(r)
    }
}

/// Whether the directory `inner` is `outer` or lies below it (walking up with `..` from the fd).
fn is_within(inner: &OwnedFd, outer: &OwnedFd) -> Result<bool> {
    let o = rfs::fstat(outer).map_err(|e| Error::new(Op::Inspect, ".", errno(e)))?;
    let mut cur = rustix::io::fcntl_dupfd_cloexec(inner, 0)
        .map_err(|e| Error::new(Op::Inspect, ".", errno(e)))?;
    for _ in 0..4096 {
        let st = rfs::fstat(&cur).map_err(|e| Error::new(Op::Inspect, ".", errno(e)))?;
        if (st.st_dev, st.st_ino) == (o.st_dev, o.st_ino) {
            return Ok(true);
        }
        let up = rfs::openat(&cur, "..", super::store::dir_flags(), Mode::empty())
            .map_err(|e| Error::new(Op::OpenDir, "..", errno(e)))?;
        let ust = rfs::fstat(&up).map_err(|e| Error::new(Op::Inspect, "..", errno(e)))?;
        if (ust.st_dev, ust.st_ino) == (st.st_dev, st.st_ino) {
            return Ok(false);
        }
        cur = up;
    }
    Ok(false)
}

/// A version being written, with the publisher lock held. Write into it (it implements
/// [`Write`]), then [`commit`](PendingVersion::commit). Dropping it discards the version and its
/// pending marker and releases the lock; `DST` is untouched.
#[derive(Debug)]
pub struct PendingVersion {
    file: AtomicFile,
    s: Session,
}

impl PendingVersion {
    /// The number this version will have.
    pub fn version(&self) -> u64 {
        self.s.vname.number()
    }

    /// The current version when the lock was taken (0 if none).
    pub fn current(&self) -> u64 {
        self.s.current.number()
    }

    /// The underlying [`AtomicFile`] (for [`AtomicFile::copy_from`] and friends).
    pub fn file(&mut self) -> &mut AtomicFile {
        &mut self.file
    }

    /// The path of the named temporary file in use, if any (see [`AtomicFile::temp_path`]).
    pub fn temp_path(&self) -> Option<PathBuf> {
        self.file.temp_path()
    }

    /// Commits the version and its manifest durably, migrates a regular-file `DST` into the
    /// version before it, swaps the pointer, applies retention, and releases the lock.
    ///
    /// On an error before the swap `DST` still points where it did and the new version is
    /// removed; an error from the final directory `fsync` ([`Op::SyncDir`]) means the swap
    /// happened but may not survive a power loss. [`Published::version`] and the error's
    /// operation say which.
    pub fn commit(self) -> Result<Published> {
        let PendingVersion { file, s } = self;
        let r = (|| {
            let receipt: Receipt = file.commit()?;
            let vname = s.vname.to_os_string();
            let sha = match &receipt.sha256 {
                Some(x) => x.clone(),
                None => s.store.hash_in_vdir(&vname)?.1,
            };
            let mut m = s.manifest_base(receipt.size, sha);
            m.written_at = receipt.written_at_rfc3339();
            s.store.write_manifest(&vname, &m, &s.opts)?;
            s.finish(m)
        })();
        s.cleanup_on_error(r)
    }
}

impl Write for PendingVersion {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// What [`Session::decide`] found.
struct Decided {
    current: Current,
    vname: VersionName,
    migrate: Option<VersionName>,
    opts: Options,
    inherit: Option<Existing>,
}

/// The compare-and-swap failure: the caller expected version `want`, `DST` is at `cur_n`.
fn cas_lost(store: &Store, current: &Current, want: u64, cur_n: u64) -> Error {
    let what = match current {
        Current::Version(_) => format!("the current version is {cur_n}"),
        Current::Regular(_) => "it is a regular file not yet published (version 0)".into(),
        Current::Directory => "it is a directory not yet published (version 0)".into(),
        _ => "nothing has been published yet (version 0)".to_string(),
    };
    let lost = crate::error::CasLost {
        expected: want,
        actual: cur_n,
        message: format!(
            "expected version {want}, but {what}; nothing was published \
             (compare-and-swap lost)"
        ),
    };
    Error::new(
        Op::Publish,
        &store.dst,
        io::Error::new(io::ErrorKind::AlreadyExists, lost),
    )
}

/// One publish, lock held: what `DST` was, the claimed number(s), what happened so far.
#[derive(Debug)]
struct Session {
    store: Store,
    current: Current,
    vname: VersionName,
    /// The number a regular file or real directory at `DST` is migrated into.
    migrate: Option<VersionName>,
    durability: Durability,
    keep: Option<usize>,
    opts: Options,
    run_id: String,
    inherit: Option<Existing>,
    swapped: Cell<bool>,
    /// The pending markers, registered with [`interrupt`](crate::interrupt): a signal that ends
    /// the process (the CLI's) removes them with the temps, as `Drop` does on an error.
    _markers: Vec<crate::interrupt::TempToken>,
    // Last: released after `Drop` removed the pending markers.
    _lock: Lock,
}

impl Session {
    fn open(
        p: &Publisher,
        dst: &Path,
        dir_version: bool,
        check: impl FnOnce(&OwnedFd) -> Result<()>,
    ) -> Result<Session> {
        let durability = p.opts.durability;
        let mut check = Some(check);
        let (store, lock) = loop {
            let store = Store::open_checked(dst, !p.opts.no_create_dirs, true, durability, |fd| {
                check.take().map_or(Ok(()), |c| c(fd))
            })?;
            match lock::acquire(store.vfd(), &store.vdir, &p.wait) {
                // A first publish that failed while we waited removed the directory it had
                // created (and our lock with it): start again from the path.
                Ok(l) if l.is_stale() => continue,
                Ok(l) => break (store, l),
                Err(e) => {
                    store.remove_created_vdir();
                    return Err(e);
                }
            }
        };
        Session::with_lock(p, store, lock, dir_version).map_err(|(store, e)| {
            store.remove_created_vdir();
            e
        })
    }

    /// The rest of [`Session::open`], lock held; on error the store comes back for cleanup.
    #[allow(clippy::result_large_err)]
    fn with_lock(
        p: &Publisher,
        store: Store,
        lock: Lock,
        dir_version: bool,
    ) -> std::result::Result<Session, (Store, Error)> {
        match Session::decide(p, &store, &lock, dir_version) {
            Ok(d) => Ok(Session {
                _markers: d
                    .migrate
                    .iter()
                    .chain([&d.vname])
                    .map(|v| {
                        let m = store.marker(v.number());
                        let shown = store.parent.join(&m);
                        crate::interrupt::register_temp(store.parent_fd.clone(), m, shown)
                    })
                    .collect(),
                store,
                current: d.current,
                vname: d.vname,
                migrate: d.migrate,
                durability: p.opts.durability,
                keep: p.keep,
                run_id: d
                    .opts
                    .run_id
                    .clone()
                    .unwrap_or_else(|| crate::process_run_id().to_string()),
                opts: d.opts,
                inherit: d.inherit,
                swapped: Cell::new(false),
                _lock: lock,
            }),
            Err(e) => {
                drop(lock);
                Err((store, e))
            }
        }
    }

    /// What `DST` is, what the expectation says, which numbers to claim (lock held).
    fn decide(p: &Publisher, store: &Store, lock: &Lock, dir_version: bool) -> Result<Decided> {
        let current = store.current()?;
        let cur_n = current.number();
        if let Some(want) = p.expect
            && want != cur_n
        {
            return Err(cas_lost(store, &current, want, cur_n));
        }
        let inherit = Session::inherited(store, &current, dir_version)?;
        // The next number: from the hint the last publisher left (no listing: the cost of a
        // publish does not grow with the history), else one listing.
        let hint = match lock.next_hint() {
            Some(h) => h,
            None => store.max_number()? + 1,
        };
        let (migrate, vname) = Session::claim(store, &current, hint.max(cur_n + 1), dir_version)?;
        lock.set_next_hint(vname.number() + 1);
        let mut opts = p.opts.clone();
        opts.no_create_dirs = true;
        Ok(Decided {
            current,
            vname,
            migrate,
            opts,
            inherit,
        })
    }

    /// Refuses what `current` cannot be published over; returns the mode and owner a new file
    /// version inherits (from the regular file `DST` is, or the file version it points to).
    fn inherited(store: &Store, current: &Current, dir_version: bool) -> Result<Option<Existing>> {
        Ok(match current {
            Current::Foreign(t) => {
                return Err(Error::other(
                    Op::Publish,
                    &store.dst,
                    io::ErrorKind::InvalidInput,
                    format!(
                        "is a symlink to `{}`, not a pointer made by publishing (expected `{}/v…`)",
                        String::from_utf8_lossy(t),
                        store.vdir_name.to_string_lossy()
                    ),
                ));
            }
            Current::Special => {
                return Err(Error::other(
                    Op::Publish,
                    &store.dst,
                    io::ErrorKind::InvalidInput,
                    "is not a regular file, directory or symlink",
                ));
            }
            Current::Directory if !dir_version => {
                return Err(Error::other(
                    Op::Publish,
                    &store.dst,
                    io::ErrorKind::IsADirectory,
                    "is a directory; publish a directory as a directory version",
                ));
            }
            Current::Regular(st) => Some(existing(st)),
            Current::Version(v) if !dir_version => store
                .stat_in_vdir(&v.to_os_string())?
                .filter(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
                .map(|st| existing(&st)),
            _ => None,
        })
    }

    /// Claims, from `start` on, the number of the version migrating an unpublished `DST` (if
    /// any) and then the new version's; on failure no claim is left behind.
    fn claim(
        store: &Store,
        current: &Current,
        mut start: u64,
        dir_version: bool,
    ) -> Result<(Option<VersionName>, VersionName)> {
        let migrate = match current {
            Current::Regular(_) | Current::Directory => {
                let m = store.claim(start, matches!(current, Current::Directory))?;
                start = m.number() + 1;
                Some(m)
            }
            _ => None,
        };
        let vname = match store.claim(start, dir_version) {
            Ok(v) => v,
            Err(e) => {
                if let Some(m) = &migrate {
                    let _ = store.unlink_marker(m.number());
                }
                return Err(e);
            }
        };
        Ok((migrate, vname))
    }

    fn version_path(&self) -> PathBuf {
        self.store.path_of(&self.vname.to_os_string())
    }

    fn manifest_base(&self, size: u64, sha256: String) -> Manifest {
        let mut m = Manifest::new(
            self.vname.to_string(),
            size,
            sha256,
            std::time::SystemTime::now(),
            &self.run_id,
        );
        m.version = Some(self.vname.number());
        m.parent = Some(self.current.number());
        m
    }

    /// On an error before the swap: the new version, its manifest and its marker are removed.
    fn cleanup_on_error(&self, r: Result<Published>) -> Result<Published> {
        if r.is_err() && !self.swapped.get() {
            let _ = self.store.remove_version(&self.vname.to_os_string());
        }
        r
    }

    /// Migration, durable versions directory, pointer swap, retention.
    fn finish(&self, m: Manifest) -> Result<Published> {
        let mut previous = self.current.number();
        let mut migrated = self.migrate_regular()?;
        if let Some(n) = migrated {
            previous = n;
        }
        if self.durability != Durability::None {
            // The version, its manifest and a migrated version must be durable before the
            // pointer names them.
            self.store.sync_vdir()?;
        }
        test_pause("version-written");
        self.swap_durably()?;
        if let (Current::Directory, Some(mv)) = (&self.current, &self.migrate) {
            self.manifest_migrated_dir(mv);
            previous = mv.number();
            migrated = Some(mv.number());
        }
        test_pause("swapped");
        if migrated.is_some() {
            // DST.manifest.json described the regular file; it now lives beside that version.
            let stale = manifest_name(&self.store.name);
            let _ = rfs::unlinkat(&*self.store.parent_fd, &stale, AtFlags::empty());
        }
        let (removed, removed_bytes, warnings) = match self.keep {
            Some(k) => retain::retain(&self.store, &self.vname, previous, k)?,
            None => (Vec::new(), 0, Vec::new()),
        };
        Ok(Published {
            dst: self.store.dst.clone(),
            version: self.vname.number(),
            previous,
            path: self.version_path(),
            manifest: m,
            migrated,
            removed,
            removed_bytes,
            warnings,
            object: None,
        })
    }

    /// When `DST` is a regular file not yet published: hard-links it into the versions
    /// directory as its own version, with a manifest, and returns that version's number.
    fn migrate_regular(&self) -> Result<Option<u64>> {
        let (Current::Regular(_), Some(mv)) = (&self.current, &self.migrate) else {
            return Ok(None);
        };
        let mname = mv.to_os_string();
        let mpath = self.store.path_of(&mname);
        rfs::linkat(
            &*self.store.parent_fd,
            &self.store.name,
            &**self.store.vfd(),
            &mname,
            AtFlags::empty(),
        )
        .map_err(|e| Error::new2(Op::Link, &self.store.dst, &mpath, errno(e)))?;
        let mm = self.migrated_manifest(mv)?;
        self.store.write_manifest(&mname, &mm, &self.opts)?;
        // The migrated version holds what `DST` holds now: it is history, not pending.
        self.store.unlink_marker(mv.number())?;
        Ok(Some(mv.number()))
    }

    /// Swaps the pointer (or exchanges an unpublished directory) and makes the swap durable.
    fn swap_durably(&self) -> Result<()> {
        // The swap and the fsync that makes it durable run as one critical section: a signal
        // report waits for both, so "published" is only ever said of a durable swap.
        crate::interrupt::critical(|| -> Result<()> {
            if let (Current::Directory, Some(mv)) = (&self.current, &self.migrate) {
                self.exchange_directory(mv)?;
            } else {
                self.swap_pointer()?;
            }
            if self.durability == Durability::Full {
                // The swap is a rename in DST's directory: durable only once that directory is.
                self.store.sync_parent().map_err(|e| {
                    e.with_hint("the pointer was swapped but the swap may not survive a power loss")
                })?;
            }
            Ok(())
        })
    }

    fn migrated_manifest(&self, mv: &VersionName) -> Result<Manifest> {
        let (size, sha, st) = self.store.hash_in_vdir(&mv.to_os_string())?;
        let mtime = std::time::UNIX_EPOCH
            + Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32);
        let mut m = self.manifest_base(size, sha);
        m.name = mv.to_string();
        m.version = Some(mv.number());
        m.parent = Some(0);
        m.written_at = crate::rfc3339(mtime);
        m.run_id = "migrated".into();
        // Keep what an earlier `write --manifest` recorded, if it still matches the bytes.
        let old_name = manifest_name(&self.store.name);
        if let Ok(old) = super::store::read_manifest_at(
            &self.store.parent_fd,
            &old_name,
            &self.store.parent.join(&old_name),
        ) && old.sha256 == m.sha256
            && old.size == m.size
        {
            m.written_at = old.written_at;
            m.run_id = old.run_id;
        }
        Ok(m)
    }

    /// The pointer swap: the pending marker (a symlink to the new version, beside `DST`) is
    /// renamed over `DST`. The marker vanishes in the same atomic rename that makes the version
    /// current, which is what lets `clean` and retention tell leftovers from history.
    fn swap_pointer(&self) -> Result<()> {
        let marker = self.store.marker(self.vname.number());
        test_pause("symlink-created");
        {
            rfs::renameat(
                &*self.store.parent_fd,
                &marker,
                &*self.store.parent_fd,
                &self.store.name,
            )
            .map_err(|e| {
                Error::new2(
                    Op::Rename,
                    self.store.parent.join(&marker),
                    &self.store.dst,
                    errno(e),
                )
            })?;
            self.swapped.set(true);
            crate::interrupt::note_replaced(&self.store.dst);
            Ok(())
        }
    }

    /// `DST` is a real directory: put a symlink to the new version at `vOLD`, exchange it with
    /// `DST` in one `renameat2(RENAME_EXCHANGE)`. The new version's marker is removed first (a
    /// crash then leaves an extra, kept version rather than a current one marked pending).
    fn exchange_directory(&self, mv: &VersionName) -> Result<()> {
        let mname = mv.to_os_string();
        let mpath = self.store.path_of(&mname);
        self.store.unlink_marker(mv.number())?;
        self.store.unlink_marker(self.vname.number())?;
        let vfd = self.store.vfd();
        rfs::symlinkat(self.store.target_of(&self.vname), &**vfd, &mname)
            .map_err(|e| Error::new(Op::Symlink, &mpath, errno(e)))?;
        let ok = crate::sys::rename_exchange(
            vfd.as_fd(),
            &mname,
            self.store.parent_fd.as_fd(),
            &self.store.name,
        );
        match ok {
            Ok(true) => {
                self.swapped.set(true);
                crate::interrupt::note_replaced(&self.store.dst);
            }
            Ok(false) => {
                let _ = rfs::unlinkat(&**vfd, &mname, AtFlags::empty());
                return Err(Error::other(
                    Op::Publish,
                    &self.store.dst,
                    io::ErrorKind::Unsupported,
                    "is a directory and this system or filesystem cannot exchange it atomically \
                     (renameat2 RENAME_EXCHANGE); move it into place by hand",
                ));
            }
            Err(e) => {
                let _ = rfs::unlinkat(&**vfd, &mname, AtFlags::empty());
                return Err(Error::new2(Op::Rename, &mpath, &self.store.dst, e));
            }
        }
        if self.durability != Durability::None {
            // The old tree's new name (vOLD) must survive as well as the swap.
            self.store.sync_vdir()?;
        }
        Ok(())
    }

    /// The manifest of a directory migrated by [`Session::exchange_directory`] (best effort: the
    /// tree is already safe at its version name).
    fn manifest_migrated_dir(&self, mv: &VersionName) {
        let mname = mv.to_os_string();
        let mpath = self.store.path_of(&mname);
        let hashed = rfs::openat(
            &**self.store.vfd(),
            &mname,
            super::store::dir_flags(),
            Mode::empty(),
        )
        .map_err(|e| Error::new(Op::OpenDir, &mpath, errno(e)))
        .and_then(|fd| crate::tree::hash_tree(&fd, &mpath));
        if let Ok((size, sha, files)) = hashed {
            let mut mm = self.manifest_base(size, sha);
            mm.name = mv.to_string();
            mm.version = Some(mv.number());
            mm.parent = Some(0);
            mm.run_id = "migrated".into();
            mm.kind = Some(crate::manifest::ManifestKind::Directory);
            mm.files = Some(files);
            let _ = self.store.write_manifest(&mname, &mm, &self.opts);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.swapped.get() {
            // Not published: the claimed numbers' markers go (the version itself was removed by
            // `cleanup_on_error` or never committed).
            let _ = self.store.unlink_marker(self.vname.number());
            if let Some(m) = &self.migrate {
                let _ = self.store.unlink_marker(m.number());
            }
            // The claimed numbers are free again.
            let first = self.migrate.as_ref().unwrap_or(&self.vname).number();
            self._lock.set_next_hint(first);
            // A refused first publish leaves no versions directory behind.
            self.store.remove_created_vdir();
        }
    }
}

fn existing(st: &rfs::Stat) -> Existing {
    Existing {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
    }
}
