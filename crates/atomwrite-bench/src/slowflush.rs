//! Emulating a disk whose cache flush is slow, honestly and without
//! device-mapper (this kernel has no `dm-delay`):
//!
//! a FUSE filesystem (served by this process) exposes one file, `disk.img`,
//! backed by a sparse file on the real disk. Its `fsync` handler sleeps for
//! the configured delay and then `fdatasync`s the backing file. A loop device
//! is attached to `disk.img`, formatted ext4 and mounted; the loop driver
//! turns every flush request it receives (journal commits, `fsync`, `syncfs`)
//! into an `fsync` of `disk.img`. So every device flush of that ext4 costs
//! `delay` more, while reads and writes stay cheap (they are forwarded as
//! plain `pread`/`pwrite`).

use crate::bench::{self, Scenario};
use crate::util::is_root;
use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyData, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyWrite, Request,
};
use serde::Serialize;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

const ROOT: u64 = 1;
const IMG: u64 = 2;
const TTL: Duration = Duration::from_secs(3600);

struct SlowDisk {
    backing: File,
    delay: Duration,
    fsyncs: Arc<AtomicU64>,
}

impl SlowDisk {
    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, perm, size, nlink) = if ino == ROOT {
            (FileType::Directory, 0o755, 0, 2)
        } else {
            let size = self.backing.metadata().map(|m| m.len()).unwrap_or(0);
            (FileType::RegularFile, 0o600, size, 1)
        };
        FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

impl Filesystem for SlowDisk {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        if parent == ROOT && name == "disk.img" {
            reply.entry(&TTL, &self.attr(IMG), 0);
        } else {
            reply.error(libc::ENOENT);
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match ino {
            ROOT | IMG => reply.attr(&TTL, &self.attr(ino)),
            _ => reply.error(libc::ENOENT),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        if ino == IMG {
            reply.opened(0, 0);
        } else {
            reply.error(libc::EISDIR);
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let mut buf = vec![0u8; size as usize];
        match self.backing.read_at(&mut buf, offset as u64) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        match self.backing.write_all_at(data, offset as u64) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }

    fn fsync(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(self.delay);
        match self.backing.sync_data() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lo: u64, reply: ReplyEmpty) {
        reply.ok();
    }
}

fn sh(cmd: &mut Command) -> Result<String, String> {
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The stack: FUSE mount → loop device → ext4 mount. Torn down in reverse on drop.
struct Stack {
    fuse_mnt: PathBuf,
    ext4_mnt: PathBuf,
    backing: PathBuf,
    loopdev: Option<String>,
    mounted: bool,
    session: Option<fuser::BackgroundSession>,
    fsyncs: Arc<AtomicU64>,
}

impl Stack {
    fn new(base: &Path, delay: Duration, size: u64) -> Result<Stack, String> {
        let fuse_mnt = base.join("slowflush-fuse");
        let ext4_mnt = base.join("slowflush-ext4");
        let backing = base.join("slowflush-backing.img");
        for m in [&ext4_mnt, &fuse_mnt] {
            let _ = sh(Command::new("umount").arg(m));
            std::fs::create_dir_all(m).map_err(|e| e.to_string())?;
        }
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&backing)
            .map_err(|e| e.to_string())?;
        f.set_len(size).map_err(|e| e.to_string())?;
        let fsyncs = Arc::new(AtomicU64::new(0));
        let fs = SlowDisk {
            backing: f,
            delay,
            fsyncs: fsyncs.clone(),
        };
        let mut st = Stack {
            fuse_mnt: fuse_mnt.clone(),
            ext4_mnt: ext4_mnt.clone(),
            backing,
            loopdev: None,
            mounted: false,
            session: None,
            fsyncs,
        };
        let opts = [
            MountOption::FSName("awbench-slowflush".into()),
            MountOption::AllowOther,
        ];
        st.session = Some(
            fuser::spawn_mount2(fs, &fuse_mnt, &opts).map_err(|e| format!("FUSE mount: {e}"))?,
        );
        let img = fuse_mnt.join("disk.img");
        let dev = sh(Command::new("losetup").args(["--find", "--show"]).arg(&img))?;
        st.loopdev = Some(dev.clone());
        sh(Command::new("mkfs.ext4").args(["-q", "-F", &dev]))?;
        sh(Command::new("mount").arg(&dev).arg(&ext4_mnt))?;
        st.mounted = true;
        Ok(st)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.mounted {
            let _ = sh(Command::new("umount").arg(&self.ext4_mnt));
        }
        if let Some(d) = &self.loopdev {
            let _ = sh(Command::new("losetup").args(["-d", d]));
        }
        // Detaching a loop device completes asynchronously; wait until the
        // FUSE mount is no longer busy before unmounting it.
        drop(self.session.take());
        let _ = sh(Command::new("umount").arg(&self.fuse_mnt));
        let _ = std::fs::remove_file(&self.backing);
        let _ = std::fs::remove_dir(&self.fuse_mnt);
        let _ = std::fs::remove_dir(&self.ext4_mnt);
    }
}

/// Results at one emulated flush delay.
#[derive(Debug, Clone, Serialize)]
pub struct SlowResult {
    /// Added latency per device flush, ms.
    pub delay_ms: f64,
    /// Why this could not run, if so.
    pub unavailable: Option<String>,
    /// Emulated device flushes (FUSE fsyncs) during the whole measurement.
    pub device_flushes: u64,
    /// Scenarios (a) and (b) on the slow-flush ext4.
    pub scenarios: Vec<Scenario>,
}

/// Run (a) and (b) on ext4 over a slow-flush device, once per delay.
pub fn run(
    base: &Path,
    delays_ms: &[f64],
    single_n: usize,
    batch_files: usize,
    batch_rounds: usize,
    threads: usize,
) -> Vec<SlowResult> {
    let mut out = Vec::new();
    for &d in delays_ms {
        let mut r = SlowResult {
            delay_ms: d,
            unavailable: None,
            device_flushes: 0,
            scenarios: vec![],
        };
        if !is_root() {
            r.unavailable = Some("needs root (FUSE, loop device, mount)".into());
            out.push(r);
            continue;
        }
        if !Path::new("/dev/fuse").exists() {
            r.unavailable = Some("/dev/fuse missing".into());
            out.push(r);
            continue;
        }
        let stack = match Stack::new(base, Duration::from_secs_f64(d / 1000.0), 2 << 30) {
            Ok(s) => s,
            Err(e) => {
                r.unavailable = Some(e);
                out.push(r);
                continue;
            }
        };
        let dir = stack.ext4_mnt.join("bench");
        let res = std::fs::create_dir_all(&dir).and_then(|()| {
            let a = bench::single(&dir, single_n, 4096)?;
            let b = bench::batch(&dir, batch_files, 4096, batch_rounds, threads)?;
            Ok(vec![a, b])
        });
        match res {
            Ok(mut s) => {
                for sc in &mut s {
                    sc.id = format!("{}@+{d}ms", sc.id);
                    sc.title = format!("{} — ext4 on a device whose flush costs +{d} ms", sc.title);
                }
                r.scenarios = s;
            }
            Err(e) => r.unavailable = Some(format!("benchmark failed: {e}")),
        }
        r.device_flushes = stack.fsyncs.load(Ordering::Relaxed);
        drop(stack);
        out.push(r);
    }
    out
}
