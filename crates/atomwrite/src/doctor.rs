//! [`doctor`]: what atomwrite can do, and promise, in one directory.
//!
//! Every capability is *tried*, not guessed from the filesystem name: the probes create small
//! files inside the directory (named like atomwrite's own temporaries, `.atomwrite-doctor-*.tmp`,
//! so [`clean`](crate::clean()) sweeps them if the probing process is killed), exercise one
//! syscall each, and remove them. A successful run leaves the directory listing as it found it.
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! let report = atomwrite::doctor(dir.path())?;
//! assert!(report.ok);
//! println!("{} on {}: {}", report.fs_type, report.dir.display(), report.durability.summary);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use serde::Serialize;

use crate::error::errno;
use crate::{Durability, Error, Op, Options, Result, sys, tempname};

/// The outcome of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeStatus {
    /// The feature worked when tried.
    Yes,
    /// The filesystem (or kernel) refused the feature; atomwrite uses its fallback.
    No,
    /// The probe failed for another reason (see the detail).
    Error,
    /// The probe could not run (for example the directory is not writable).
    Skipped,
}

/// One probe: its status and, where useful, the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// Whether the feature works here.
    pub status: ProbeStatus,
    /// Why, when the status is not `yes` (an OS error, or what was observed).
    pub detail: Option<String>,
}

impl Probe {
    fn yes() -> Self {
        Probe {
            status: ProbeStatus::Yes,
            detail: None,
        }
    }
    fn no(detail: impl Into<String>) -> Self {
        Probe {
            status: ProbeStatus::No,
            detail: Some(detail.into()),
        }
    }
    fn error(detail: impl Into<String>) -> Self {
        Probe {
            status: ProbeStatus::Error,
            detail: Some(detail.into()),
        }
    }
    fn skipped(detail: impl Into<String>) -> Self {
        Probe {
            status: ProbeStatus::Skipped,
            detail: Some(detail.into()),
        }
    }
    /// True when the probe ran and the feature worked.
    pub fn works(&self) -> bool {
        self.status == ProbeStatus::Yes
    }
}

/// The probes [`doctor`] runs, each on its own files inside the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probes {
    /// `open(O_TMPFILE)` then `linkat` of the anonymous inode: atomwrite's fast path, which
    /// leaves nothing behind on a crash. Fallback: a named, locked `.NAME.RANDOM.tmp`.
    pub o_tmpfile: Probe,
    /// `renameat2(RENAME_NOREPLACE)`, checked to refuse an existing target: create-only
    /// (`--no-clobber`) publishing. Fallback: `linkat` + `unlinkat`.
    pub rename_noreplace: Probe,
    /// `renameat2(RENAME_EXCHANGE)`, checked to really swap two files: directory publishing.
    pub rename_exchange: Probe,
    /// `ioctl(FICLONE)`: `cp` shares extents instead of copying bytes (btrfs, xfs, bcachefs).
    pub ficlone: Probe,
    /// `fsync` of the directory: what makes a rename survive power loss.
    pub dir_fsync: Probe,
    /// One complete atomwrite write with `Durability::Full` (temp, write, fsync, rename,
    /// directory fsync) of a probe file, then its removal.
    pub atomic_write: Probe,
}

/// The mount that holds the directory, from `/proc/self/mountinfo` (Linux).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountInfo {
    /// Where the filesystem is mounted.
    pub mount_point: PathBuf,
    /// The filesystem type as the kernel names it (`ext4`, `nfs4`, `fuse.sshfs`, `overlay`).
    pub fs_type: String,
    /// What is mounted (`/dev/sda1`, `server:/export`, `tmpfs`).
    pub source: String,
    /// Per-mount and superblock options, comma-separated (`rw,relatime,...`).
    pub options: String,
}

/// Broad families of filesystems, which decide what atomwrite can promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsClass {
    /// A disk filesystem on this machine (ext4, xfs, btrfs, zfs, f2fs, ...).
    Local,
    /// Lives in RAM (tmpfs, ramfs): atomic, never persistent.
    Memory,
    /// A network or cluster filesystem (NFS, SMB/CIFS, 9p, Ceph, Lustre, ...).
    Network,
    /// A FUSE filesystem (sshfs, s3fs, virtiofs, ...): semantics are the daemon's.
    Fuse,
    /// overlayfs (containers): writes go to the upper layer.
    Overlay,
    /// A type atomwrite does not recognise.
    Unknown,
}

/// What atomwrite can promise in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DurabilityPromise {
    /// `"power-loss"`: with `Durability::Full` a write whose commit returned survives power
    /// loss (given storage that honours flushes). `"crash"`: readers see old-or-new complete
    /// contents across process crashes, nothing is promised across power loss. `"none"`:
    /// atomwrite cannot publish files here at all.
    pub level: &'static str,
    /// One sentence explaining the level.
    pub summary: String,
}

/// How a [`Batch`](crate::Batch) makes the data of its files durable on this machine, and why.
///
/// A batch may use one `syncfs(2)` per filesystem instead of an `fsync` per file only where
/// `syncfs` reports every error an `fsync` would: Linux 5.17 and later (before 5.8 it missed
/// writeback errors, before 5.17 errors from the filesystem's `->sync_fs`). The choice depends
/// on the running kernel (read once per process) and the backend, not on the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchBarrier {
    /// `"syncfs"`: one `syncfs(2)` per filesystem for [`BatchSync::Syncfs`](crate::BatchSync::Syncfs)
    /// and for [`BatchSync::Auto`](crate::BatchSync::Auto) batches of 8 files or more. `"fsync"`:
    /// every file of every batch is `fsync`ed (in parallel), whatever strategy is asked for.
    pub barrier: &'static str,
    /// The backend a batch with default options runs: `"linux"` (fast paths) or
    /// `"portable"` (other Unix, or `ATOMWRITE_PORTABLE=1`).
    pub backend: &'static str,
    /// The running kernel's release (`uname -r`).
    pub kernel: Option<String>,
    /// One sentence: why this barrier.
    pub reason: String,
}

/// What [`doctor`] found. Serializes to the stable JSON shape documented in `docs/cli.md`.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// The directory as given.
    pub dir: PathBuf,
    /// The directory with symlinks resolved (the directory as given if that fails).
    pub canonical: PathBuf,
    /// Filesystem type name: the kernel's name from the mount table when known, otherwise the
    /// name of the `statfs.f_type` magic number, or `"unknown"`.
    pub fs_type: String,
    /// `statfs.f_type`, in hex (`"0xef53"`).
    pub fs_magic: String,
    /// The filesystem family.
    pub class: FsClass,
    /// The longest file name, in bytes (`statfs.f_namelen`).
    pub name_max: usize,
    /// Whether the directory itself is a mount point.
    pub mount_point: bool,
    /// The mount holding the directory, when the mount table is readable.
    pub mount: Option<MountInfo>,
    /// Whether the filesystem is mounted read-only.
    pub read_only: bool,
    /// The probes.
    pub probes: Probes,
    /// What atomwrite can promise here.
    pub durability: DurabilityPromise,
    /// How batches flush their data here (`syncfs` or an `fsync` per file), and why.
    pub batch_barrier: BatchBarrier,
    /// Things an operator should know about this filesystem (may be empty).
    pub caveats: Vec<String>,
    /// True when a complete atomic write worked in the directory.
    pub ok: bool,
}

/// Probes the filesystem holding `dir`: type, `NAME_MAX`, mount point, and whether
/// `O_TMPFILE`, `RENAME_NOREPLACE`, `RENAME_EXCHANGE`, `FICLONE`, directory `fsync` and a full
/// atomic write really work there, by trying each on probe files inside `dir` and removing them.
///
/// Returns an error only when `dir` cannot be opened or inspected; a directory where writes
/// fail (read-only, no permission) still gets a report, with `ok == false` and the reason in
/// the probes. The probe files are named like atomwrite temporaries, so a probe interrupted by
/// a crash is removed by [`clean`](crate::clean()).
pub fn doctor(dir: impl AsRef<Path>) -> Result<DoctorReport> {
    let dir = dir.as_ref();
    let fd = rfs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::new(Op::OpenDir, dir, errno(e)))?;
    let info = sys::fs_info(fd.as_fd()).map_err(|e| Error::new(Op::Inspect, dir, e))?;
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let read_only = rfs::fstatvfs(&fd)
        .map(|s| s.f_flag.contains(rfs::StatVfsMountFlags::RDONLY))
        .unwrap_or(false);

    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| parse_mountinfo(&s))
        .unwrap_or_default();
    let mount = mount_for(&mounts, &canonical).cloned();
    let mount_point = match &mount {
        Some(m) => m.mount_point == canonical,
        None => is_mount_point_by_dev(&fd),
    };

    let magic_name = fs_magic_name(info.fs_type);
    let fs_type = match &mount {
        Some(m) if !m.fs_type.is_empty() => m.fs_type.clone(),
        _ => magic_name.unwrap_or("unknown").to_string(),
    };
    let class = classify(&fs_type, info.fs_type);

    let probes = run_probes(&fd, dir, info.name_max, read_only);
    let ok = probes.atomic_write.works();
    let (durability, caveats) = assess(class, &fs_type, mount.as_ref(), &probes, read_only);
    let batch_barrier = batch_barrier(sys::backend(crate::file::portable_env()));
    Ok(DoctorReport {
        dir: dir.to_path_buf(),
        canonical,
        fs_type,
        fs_magic: format!("{:#x}", info.fs_type),
        class,
        name_max: info.name_max,
        mount_point,
        mount,
        read_only,
        probes,
        durability,
        batch_barrier,
        caveats,
        ok,
    })
}

/// The barrier a batch run by `backend` uses, from the backend's own verdict (the same one
/// `Batch::commit` consults).
fn batch_barrier(backend: sys::Sys) -> BatchBarrier {
    let support = backend.sync_filesystem_support();
    let kernel = support.kernel.or_else(|| {
        Some(
            rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned(),
        )
    });
    BatchBarrier {
        barrier: if support.available { "syncfs" } else { "fsync" },
        backend: backend.name(),
        kernel,
        reason: support.reason,
    }
}

/// Probe file names, all removed at the end whatever happened.
struct Scratch<'a> {
    dir: &'a OwnedFd,
    names: Vec<OsString>,
    name_max: usize,
}

impl Scratch<'_> {
    fn name(&mut self, role: &str) -> OsString {
        let n = tempname::temp_name(
            OsStr::new(&format!("atomwrite-doctor-{role}")),
            self.name_max,
        );
        self.names.push(n.clone());
        n
    }

    fn create(&mut self, role: &str, contents: &[u8]) -> io::Result<(OsString, OwnedFd)> {
        let name = self.name(role);
        let fd = rfs::openat(
            self.dir,
            &name,
            OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDWR,
            Mode::from_raw_mode(0o600),
        )
        .map_err(errno)?;
        let mut off = 0;
        while off < contents.len() {
            off += rustix::io::write(&fd, &contents[off..]).map_err(errno)?;
        }
        Ok((name, fd))
    }

    fn read(&self, name: &OsStr) -> io::Result<Vec<u8>> {
        let fd = rfs::openat(
            self.dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let mut buf = vec![0u8; 64];
        let n = rustix::io::read(&fd, &mut buf).map_err(errno)?;
        buf.truncate(n);
        Ok(buf)
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = rfs::unlinkat(self.dir, n, AtFlags::empty());
        }
    }
}

fn describe(e: &io::Error) -> String {
    e.to_string()
}

fn run_probes(fd: &OwnedFd, dir: &Path, name_max: usize, read_only: bool) -> Probes {
    let mut s = Scratch {
        dir: fd,
        names: Vec::new(),
        name_max,
    };
    // The first probe file tells whether the directory is writable at all.
    if let Err(e) = s.create("w", b"w") {
        let why = if read_only {
            "the filesystem is mounted read-only".to_string()
        } else {
            format!(
                "cannot create a file in `{}`: {}",
                dir.display(),
                describe(&e)
            )
        };
        let p = Probe::skipped(why.clone());
        // Directory fsync needs no write permission: still worth knowing.
        return Probes {
            o_tmpfile: p.clone(),
            rename_noreplace: p.clone(),
            rename_exchange: p.clone(),
            ficlone: p.clone(),
            dir_fsync: probe_dir_fsync(fd),
            atomic_write: Probe::error(why),
        };
    }
    let probes = Probes {
        o_tmpfile: probe_tmpfile(&mut s),
        rename_noreplace: probe_noreplace(&mut s),
        rename_exchange: probe_exchange(&mut s),
        ficlone: probe_ficlone(&mut s),
        dir_fsync: probe_dir_fsync(fd),
        atomic_write: probe_atomic_write(&mut s, dir),
    };
    drop(s);
    if probes.dir_fsync.works() {
        // Make the removals durable too, so no probe name can reappear after a power loss.
        let _ = sys::sync_dir(fd.as_fd());
    }
    probes
}

fn probe_tmpfile(s: &mut Scratch<'_>) -> Probe {
    let anon = match sys::host().open_anonymous(s.dir.as_fd(), 0o600) {
        Ok(Some(f)) => f,
        Ok(None) => {
            return Probe::no("the filesystem refuses O_TMPFILE; named temporaries are used");
        }
        Err(e) => return Probe::error(describe(&e)),
    };
    let name = s.name("t");
    match sys::host().link_anonymous(anon.as_fd(), s.dir.as_fd(), &name) {
        Ok(()) => Probe::yes(),
        Err(e) => Probe::no(format!(
            "O_TMPFILE opens but linkat of the anonymous file fails ({}); named temporaries are used",
            describe(&e)
        )),
    }
}

fn probe_noreplace(s: &mut Scratch<'_>) -> Probe {
    let (a, _fa) = match s.create("na", b"a") {
        Ok(x) => x,
        Err(e) => return Probe::error(describe(&e)),
    };
    let b = s.name("nb");
    match sys::host().rename_noreplace(s.dir.as_fd(), &a, &b) {
        Ok(true) => {}
        Ok(false) => {
            return Probe::no(
                "renameat2(RENAME_NOREPLACE) is refused; create-only uses linkat + unlinkat",
            );
        }
        Err(e) => return Probe::error(describe(&e)),
    }
    // It must also refuse an existing target.
    let (c, _fc) = match s.create("nc", b"c") {
        Ok(x) => x,
        Err(e) => return Probe::error(describe(&e)),
    };
    match sys::host().rename_noreplace(s.dir.as_fd(), &b, &c) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Probe::yes(),
        Ok(true) => Probe::error("RENAME_NOREPLACE replaced an existing file (broken filesystem)"),
        Ok(false) => Probe::no("RENAME_NOREPLACE works only sometimes; treated as unsupported"),
        Err(e) => Probe::error(describe(&e)),
    }
}

fn probe_exchange(s: &mut Scratch<'_>) -> Probe {
    let (a, _fa) = match s.create("xa", b"A") {
        Ok(x) => x,
        Err(e) => return Probe::error(describe(&e)),
    };
    let (b, _fb) = match s.create("xb", b"B") {
        Ok(x) => x,
        Err(e) => return Probe::error(describe(&e)),
    };
    match sys::host().rename_exchange(s.dir.as_fd(), &a, s.dir.as_fd(), &b) {
        Ok(true) => match (s.read(&a), s.read(&b)) {
            (Ok(x), Ok(y)) if x == b"B" && y == b"A" => Probe::yes(),
            (Ok(_), Ok(_)) => Probe::error("RENAME_EXCHANGE returned success but did not swap"),
            (Err(e), _) | (_, Err(e)) => Probe::error(describe(&e)),
        },
        Ok(false) => Probe::no(
            "renameat2(RENAME_EXCHANGE) is refused; directory publish uses a symlink swap",
        ),
        Err(e) => Probe::error(describe(&e)),
    }
}

fn probe_ficlone(s: &mut Scratch<'_>) -> Probe {
    let (_a, fa) = match s.create("ca", &[7u8; 4096]) {
        Ok(x) => x,
        Err(e) => return Probe::error(describe(&e)),
    };
    let (_b, fb) = match s.create("cb", b"") {
        Ok(x) => x,
        Err(e) => return Probe::error(describe(&e)),
    };
    match sys::host().reflink(fa.as_fd(), fb.as_fd()) {
        Ok(true) => Probe::yes(),
        Ok(false) => {
            Probe::no("ioctl(FICLONE) is refused; cp uses copy_file_range or a buffered copy")
        }
        Err(e) => Probe::error(describe(&e)),
    }
}

fn probe_dir_fsync(fd: &OwnedFd) -> Probe {
    match sys::sync_dir(fd.as_fd()) {
        Ok(()) => Probe::yes(),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            Probe::no("fsync of a directory is refused (EINVAL); use durability `integrity` here")
        }
        Err(e) => Probe::error(describe(&e)),
    }
}

fn probe_atomic_write(s: &mut Scratch<'_>, dir: &Path) -> Probe {
    let name = s.name("aw");
    let path = dir.join(&name);
    let opts = Options::new()
        .durability(Durability::Full)
        .create_dirs(false)
        .no_clobber(true);
    match opts.write(&path, b"atomwrite doctor probe\n") {
        Ok(r) if r.size == 23 => Probe::yes(),
        Ok(r) => Probe::error(format!("wrote {} bytes instead of 23", r.size)),
        Err(e) => Probe::error(e.to_string()),
    }
}

fn is_mount_point_by_dev(fd: &OwnedFd) -> bool {
    let Ok(me) = rfs::fstat(fd) else {
        return false;
    };
    match rfs::statat(fd, "..", AtFlags::empty()) {
        // A different device, or the same inode (the root directory), means a mount point.
        Ok(up) => up.st_dev != me.st_dev || up.st_ino == me.st_ino,
        Err(_) => false,
    }
}

/// Undoes the octal escapes of `/proc/self/mountinfo` (`\040` for a space).
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

/// Parses `/proc/self/mountinfo` (proc(5)): `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] -
/// FSTYPE SOURCE SUPEROPTS`.
fn parse_mountinfo(s: &str) -> Vec<MountInfo> {
    let mut out = Vec::new();
    for line in s.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < 6 || fields.len() < sep + 3 {
            continue;
        }
        // Per-mount options, then the superblock's, without repeats (`rw` is in both).
        let mut opts: Vec<&str> = Vec::new();
        for o in fields[5]
            .split(',')
            .chain(fields.get(sep + 3).into_iter().flat_map(|s| s.split(',')))
        {
            if !o.is_empty() && !opts.contains(&o) {
                opts.push(o);
            }
        }
        let options = opts.join(",");
        out.push(MountInfo {
            mount_point: unescape(fields[4]),
            fs_type: fields[sep + 1].to_string(),
            source: unescape(fields[sep + 2]).to_string_lossy().into_owned(),
            options,
        });
    }
    out
}

/// The mount holding `path`: the longest mount point that is a prefix of it; among equal mount
/// points the last one listed (it is mounted on top of the others).
fn mount_for<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    let mut best: Option<&MountInfo> = None;
    for m in mounts {
        if path.starts_with(&m.mount_point)
            && best
                .is_none_or(|b| m.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len())
        {
            best = Some(m);
        }
    }
    best
}

/// The name of a `statfs.f_type` magic number (`linux/magic.h`), for the common filesystems.
pub fn fs_magic_name(magic: u64) -> Option<&'static str> {
    Some(match magic {
        0xef53 => "ext2/ext3/ext4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        0x2fc1_2fc1 => "zfs",
        0xf2f5_2010 => "f2fs",
        0xca45_1a4e => "bcachefs",
        0x0102_1994 => "tmpfs",
        0x8584_58f6 => "ramfs",
        0x6969 => "nfs",
        0x517b => "smb",
        0xff53_4d42 => "cifs",
        0xfe53_4d42 => "smb2",
        0x0102_1997 => "9p",
        0x00c3_6400 => "ceph",
        0x0bd0_0bd0 => "lustre",
        0x0116_1970 => "gfs2",
        0x7461_636f => "ocfs2",
        0x6b41_4653 | 0x5346_414f => "afs",
        0x6573_5546 => "fuse",
        0x794c_7630 => "overlay",
        0x4d44 => "vfat",
        0x2011_bab0 => "exfat",
        0x5346_544e | 0x7366_746e => "ntfs",
        0x3153_464a => "jfs",
        0x5265_4973 => "reiserfs",
        0x3434 => "nilfs",
        0x482b => "hfsplus",
        0x1501_3346 => "udf",
        0x9660 => "iso9660",
        0x7371_7368 => "squashfs",
        0xe0f5_e1e2 => "erofs",
        0xf15f => "ecryptfs",
        0x9fa0 => "proc",
        0x6265_6572 => "sysfs",
        _ => return None,
    })
}

/// The durability a commit with `requested` honours on the filesystem whose `statfs.f_type`
/// is `magic`, by the same classification as the report: only a local disk filesystem (or
/// overlayfs over one) keeps what was fsynced across power loss; elsewhere the write is atomic
/// against crashes only ([`DurabilityHonoured::None`]). `magic` 0 (the platform names no type)
/// reports what was requested.
pub(crate) fn honoured(requested: crate::Durability, magic: u64) -> crate::DurabilityHonoured {
    use crate::{Durability, DurabilityHonoured as H};
    let persists = magic == 0
        || matches!(
            classify(fs_magic_name(magic).unwrap_or("unknown"), magic),
            FsClass::Local | FsClass::Overlay
        );
    match requested {
        Durability::Full if persists => H::Full,
        Durability::Integrity if persists => H::Integrity,
        _ => H::None,
    }
}

/// Filesystem types (lowercase) whose rename and fsync are a server's: [`FsClass::Network`].
const NETWORK_FS_TYPES: &[&str] = &[
    "nfs",
    "nfs4",
    "smb",
    "smb2",
    "smb3",
    "cifs",
    "9p",
    "ceph",
    "lustre",
    "gfs2",
    "ocfs2",
    "afs",
    "glusterfs",
    "beegfs",
    "gpfs",
];

/// Filesystem types (lowercase) on a local disk: [`FsClass::Local`].
const LOCAL_FS_TYPES: &[&str] = &[
    "ext2",
    "ext3",
    "ext4",
    "ext2/ext3/ext4",
    "xfs",
    "btrfs",
    "zfs",
    "f2fs",
    "bcachefs",
    "vfat",
    "exfat",
    "ntfs",
    "ntfs3",
    "jfs",
    "reiserfs",
    "nilfs2",
    "nilfs",
    "hfsplus",
    "udf",
    "ecryptfs",
];

fn classify(fs_type: &str, magic: u64) -> FsClass {
    let t = fs_type.to_ascii_lowercase();
    if t == "tmpfs" || t == "ramfs" || t == "devtmpfs" {
        FsClass::Memory
    } else if t == "overlay" || t == "overlayfs" {
        FsClass::Overlay
    } else if t.starts_with("fuse") || t == "virtiofs" {
        FsClass::Fuse
    } else if NETWORK_FS_TYPES.contains(&t.as_str()) {
        FsClass::Network
    } else if LOCAL_FS_TYPES.contains(&t.as_str()) {
        FsClass::Local
    } else if t == "unknown" {
        match fs_magic_name(magic) {
            Some(n) if n != "unknown" => classify(n, 0),
            _ => FsClass::Unknown,
        }
    } else {
        FsClass::Unknown
    }
}

fn has_option(mount: Option<&MountInfo>, opt: &str) -> bool {
    mount.is_some_and(|m| m.options.split(',').any(|o| o == opt))
}

fn assess(
    class: FsClass,
    fs_type: &str,
    mount: Option<&MountInfo>,
    p: &Probes,
    read_only: bool,
) -> (DurabilityPromise, Vec<String>) {
    let caveats = caveats(class, fs_type, mount, p, read_only);
    let barriers_off = has_option(mount, "nobarrier") || has_option(mount, "barrier=0");
    (promise(class, p, barriers_off), caveats)
}

/// The one-sentence caveat of a filesystem class, `None` for a local disk.
fn class_caveat(class: FsClass, fs_type: &str) -> Option<String> {
    match class {
        FsClass::Memory => Some(format!(
            "{fs_type} lives in memory: every file is lost at reboot or power loss; fsync is a no-op"
        )),
        FsClass::Network => Some(format!(
            "{fs_type} is a network filesystem: rename atomicity and fsync durability are the \
             server's; other clients may see a new file late (NFS: close-to-open consistency) \
             and temp files of crashed clients may linger (sweep them with `clean`)"
        )),
        FsClass::Fuse => Some(format!(
            "{fs_type} is a FUSE filesystem: atomic rename and fsync are whatever the daemon \
             implements; many object-store mounts (s3fs, gcsfuse) copy on rename and are not atomic"
        )),
        FsClass::Overlay => Some(
            "overlayfs: writes go to the upper layer and are as durable as that filesystem; \
             a file from a lower (image) layer is copied up on first write, and renaming \
             directories may fail with EXDEV"
                .to_string(),
        ),
        FsClass::Unknown => Some(format!(
            "atomwrite does not know the filesystem type {fs_type:?}: the probes below are all it knows"
        )),
        FsClass::Local => None,
    }
}

/// What an operator should know about the filesystem (one sentence each).
fn caveats(
    class: FsClass,
    fs_type: &str,
    mount: Option<&MountInfo>,
    p: &Probes,
    read_only: bool,
) -> Vec<String> {
    let mut caveats: Vec<String> = class_caveat(class, fs_type).into_iter().collect();
    if has_option(mount, "nobarrier") || has_option(mount, "barrier=0") {
        caveats.push(
            "mounted with write barriers disabled (nobarrier): fsync may return before data \
             reaches stable storage, so no power-loss promise"
                .to_string(),
        );
    }
    if fs_type.starts_with("ext") && has_option(mount, "data=writeback") {
        caveats.push(
            "ext4 data=writeback: without fsync a renamed file may show stale blocks after a \
             crash; keep durability `full` or `integrity`"
                .to_string(),
        );
    }
    if read_only {
        caveats.push("the filesystem is mounted read-only: nothing can be written".to_string());
    }
    if p.o_tmpfile.status == ProbeStatus::No {
        caveats.push(
            "no O_TMPFILE: a writer killed mid-write leaves a `.NAME.RANDOM.tmp` file; \
             schedule a temp sweep (`clean`) of the directory"
                .to_string(),
        );
    }
    if p.dir_fsync.status == ProbeStatus::No {
        caveats.push(
            "directory fsync is refused: durability `full` fails here; use `integrity`".to_string(),
        );
    }
    caveats
}

/// The durability level atomwrite can promise, by class and probes.
fn promise(class: FsClass, p: &Probes, barriers_off: bool) -> DurabilityPromise {
    if !p.atomic_write.works() {
        DurabilityPromise {
            level: "none",
            summary: format!(
                "atomwrite cannot publish files here: {}",
                p.atomic_write
                    .detail
                    .as_deref()
                    .unwrap_or("the probe write failed")
            ),
        }
    } else {
        match class {
            FsClass::Local | FsClass::Overlay if p.dir_fsync.works() && !barriers_off => {
                DurabilityPromise {
                    level: "power-loss",
                    summary: "durability `full` holds: a write whose commit returned survives \
                              power loss (on storage that honours flushes); readers always see \
                              old or new, complete"
                        .to_string(),
                }
            }
            FsClass::Memory => DurabilityPromise {
                level: "crash",
                summary: "writes are atomic (readers see old or new, complete, across process \
                          crashes), but nothing survives a reboot"
                    .to_string(),
            },
            _ => DurabilityPromise {
                level: "crash",
                summary: "writes are atomic against process crashes as far as this filesystem \
                          implements rename; no promise is made across power loss"
                    .to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honoured_durability_follows_the_classification() {
        use crate::{Durability, DurabilityHonoured as H};
        let (ext4, tmpfs, nfs, fuse, overlay) =
            (0xef53, 0x0102_1994, 0x6969, 0x6573_5546, 0x794c_7630);
        assert_eq!(honoured(Durability::Full, ext4), H::Full);
        assert_eq!(honoured(Durability::Integrity, ext4), H::Integrity);
        assert_eq!(honoured(Durability::None, ext4), H::None);
        assert_eq!(honoured(Durability::Full, overlay), H::Full);
        for m in [tmpfs, nfs, fuse, 0x1234_5678] {
            assert_eq!(honoured(Durability::Full, m), H::None, "{m:#x}");
        }
        assert_eq!(honoured(Durability::Full, 0), H::Full);
    }

    /// A real write reports what the filesystem honoured: `doctor`'s level and the receipt
    /// agree (power-loss ⇔ "full" for a Full write).
    #[test]
    fn receipt_durability_agrees_with_the_doctor_report() {
        let d = tempfile::tempdir().unwrap();
        let r = crate::Options::new()
            .write(d.path().join("f"), b"x")
            .unwrap();
        let level = doctor(d.path()).unwrap().durability.level;
        assert_eq!(
            r.durability == "full",
            level == "power-loss",
            "{level} {}",
            r.durability
        );
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            let d = tempfile::tempdir_in(shm).unwrap();
            let r = crate::Options::new()
                .write(d.path().join("f"), b"x")
                .unwrap();
            assert_eq!(
                r.durability,
                crate::DurabilityHonoured::None,
                "tmpfs is not full"
            );
        }
    }

    #[test]
    fn report_on_a_temp_dir_leaves_nothing_behind() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("keep"), b"x").unwrap();
        let r = doctor(d.path()).unwrap();
        assert!(r.ok, "{r:?}");
        assert!(r.probes.dir_fsync.works());
        assert!(r.name_max >= 14);
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("keep")]);
    }

    #[test]
    fn mountinfo_parsing_and_lookup() {
        let s = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro\n\
                 30 22 0:25 / /mnt/my\\040data rw - tmpfs tmpfs rw,size=1024k\n\
                 31 22 0:26 / /mnt rw,nosuid - nfs4 srv:/export rw,vers=4.2\n";
        let m = parse_mountinfo(s);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].mount_point, PathBuf::from("/mnt/my data"));
        assert_eq!(
            mount_for(&m, Path::new("/mnt/my data/x")).unwrap().fs_type,
            "tmpfs"
        );
        assert_eq!(
            mount_for(&m, Path::new("/mnt/other")).unwrap().fs_type,
            "nfs4"
        );
        assert_eq!(mount_for(&m, Path::new("/home")).unwrap().fs_type, "ext4");
        assert!(m[0].options.contains("errors=remount-ro"));
    }

    #[test]
    fn classes() {
        assert_eq!(classify("ext4", 0xef53), FsClass::Local);
        assert_eq!(classify("tmpfs", 0), FsClass::Memory);
        assert_eq!(classify("fuse.sshfs", 0), FsClass::Fuse);
        assert_eq!(classify("nfs4", 0), FsClass::Network);
        assert_eq!(classify("overlay", 0), FsClass::Overlay);
        assert_eq!(classify("unknown", 0x9123_683e), FsClass::Local);
        assert_eq!(classify("weirdfs", 0), FsClass::Unknown);
        assert_eq!(fs_magic_name(0x0102_1994), Some("tmpfs"));
    }

    #[test]
    fn batch_barrier_follows_the_backend_and_the_running_kernel() {
        let release = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        let host = batch_barrier(sys::host());
        assert_eq!(host.kernel.as_deref(), Some(release.as_str()));
        assert_eq!(host.backend, sys::host().name());
        assert!(!host.reason.is_empty());
        if cfg!(target_os = "linux") {
            // The same verdict as the pure function on the same release string.
            let want = sys::syncfs_support(&release);
            assert_eq!(host.barrier == "syncfs", want.available, "{host:?}");
            assert_eq!(host.reason, want.reason);
        }
        // The portable path never trusts a filesystem-wide barrier.
        let portable = batch_barrier(sys::backend(true));
        assert_eq!(portable.barrier, "fsync");
        assert_eq!(portable.backend, "portable");
        assert_eq!(portable.kernel.as_deref(), Some(release.as_str()));
        let r = doctor(tempfile::tempdir().unwrap().path()).unwrap();
        assert_eq!(
            r.batch_barrier,
            batch_barrier(sys::backend(crate::file::portable_env()))
        );
    }

    #[test]
    fn missing_dir_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let e = doctor(d.path().join("nope")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("nope"));
    }
}
