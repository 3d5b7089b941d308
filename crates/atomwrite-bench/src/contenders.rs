//! The contenders: one function per implementation that durably and atomically
//! replaces one file, plus the batch variants.
//!
//! Every contender is held to the same durability: the file's data is flushed
//! (`fsync`/`fdatasync`/`syncfs`) before the rename and the directory is
//! fsynced after it.

use rustix::fs::{CWD, Mode, OFlags};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A single-file writer under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Single {
    /// `atomwrite::Options::new().durability(Full).write(path, bytes)`.
    #[cfg(feature = "atomwrite")]
    Atomwrite,
    /// `atomic-write-file` (O_TMPFILE + linkat when available).
    AtomicWriteFile,
    /// `atomicwrites` with `AllowOverwrite`.
    Atomicwrites,
    /// `tempfile::NamedTempFile` + `sync_all` + `persist` + directory fsync.
    Tempfile,
    /// Hand-written minimal syscall sequence.
    Floor,
}

impl Single {
    /// All single-file contenders compiled into this binary.
    pub fn all() -> Vec<Single> {
        vec![
            #[cfg(feature = "atomwrite")]
            Single::Atomwrite,
            Single::AtomicWriteFile,
            Single::Atomicwrites,
            Single::Tempfile,
            Single::Floor,
        ]
    }

    /// Stable short name used in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "atomwrite")]
            Single::Atomwrite => "atomwrite",
            Single::AtomicWriteFile => "atomic-write-file",
            Single::Atomicwrites => "atomicwrites",
            Single::Tempfile => "tempfile",
            Single::Floor => "floor",
        }
    }

    /// Whether this contender is one of the third-party peers.
    pub fn is_peer(self) -> bool {
        matches!(
            self,
            Single::AtomicWriteFile | Single::Atomicwrites | Single::Tempfile
        )
    }

    /// Durably and atomically replace `dir/name` with `data`.
    pub fn write(self, dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
        let path = dir.join(name);
        match self {
            #[cfg(feature = "atomwrite")]
            Single::Atomwrite => {
                atomwrite::Options::new()
                    .durability(atomwrite::Durability::Full)
                    .write(&path, data)
                    .map_err(io::Error::from)?;
                Ok(())
            }
            Single::AtomicWriteFile => {
                // commit() = sync_all (fsync) on the temp, link/rename, fsync(dir).
                let mut f = atomic_write_file::AtomicWriteFile::open(&path)?;
                f.write_all(data)?;
                f.commit()
            }
            Single::Atomicwrites => {
                // write() = temp dir + file, sync_all, rename, fsync(parent dirs).
                let af = atomicwrites::AtomicFile::new(&path, atomicwrites::AllowOverwrite);
                af.write(|f| f.write_all(data)).map_err(|e| match e {
                    atomicwrites::Error::Internal(e) | atomicwrites::Error::User(e) => e,
                })
            }
            Single::Tempfile => {
                let mut t = tempfile::NamedTempFile::new_in(dir)?;
                t.write_all(data)?;
                t.as_file().sync_all()?;
                t.persist(&path).map_err(|e| e.error)?;
                File::open(dir)?.sync_all()
            }
            Single::Floor => floor_write(dir, name, data),
        }
    }
}

fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// A unique temp name without a getrandom syscall (O_EXCL guards collisions).
fn temp_name(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".{name}.{:x}.{n:x}.tmp", pid())
}

fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn create_temp(dirfd: &OwnedFd, tmp: &str) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dirfd,
        tmp,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?)
}

fn write_all_fd<Fd: AsFd>(fd: Fd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = rustix::io::write(&fd, data)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
}

/// The floor: open(dir), openat(temp, O_CREAT|O_EXCL|O_WRONLY|O_CLOEXEC), write,
/// fsync, renameat, fsync(dir), close.
pub fn floor_write(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let dirfd = open_dir(dir)?;
    let tmp = temp_name(name);
    let fd = create_temp(&dirfd, &tmp)?;
    let res = (|| {
        write_all_fd(&fd, data)?;
        rustix::fs::fsync(&fd)?;
        rustix::fs::renameat(&dirfd, tmp.as_str(), &dirfd, name)?;
        Ok(())
    })();
    if res.is_err() {
        let _ = rustix::fs::unlinkat(&dirfd, tmp.as_str(), rustix::fs::AtFlags::empty());
        return res;
    }
    rustix::fs::fsync(&dirfd)?;
    drop(fd);
    Ok(())
}

/// A many-files writer under test (all files in one directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Multi {
    /// One single-file write per entry (each pays its own barriers).
    Loop(Single),
    /// `atomwrite::Batch`: add every entry, one `commit()`, with the given
    /// data-sync strategy (`auto`, `syncfs`, `parfsync`).
    #[cfg(feature = "batch")]
    AtomwriteBatch(&'static str),
    /// Floor batch: write all temps, one `syncfs`, all renames, one dir fsync.
    FloorSyncfs,
    /// Floor batch: write all temps, fsync them from `threads` threads
    /// concurrently (the journal groups the commits), renames, one dir fsync.
    FloorParFsync(usize),
}

impl Multi {
    /// Every batch contender compiled in, with `threads` for the parallel floor.
    pub fn all(threads: usize) -> Vec<Multi> {
        let mut v: Vec<Multi> = Single::all().into_iter().map(Multi::Loop).collect();
        #[cfg(feature = "batch")]
        v.extend(["auto", "syncfs", "parfsync"].map(Multi::AtomwriteBatch));
        v.push(Multi::FloorSyncfs);
        v.push(Multi::FloorParFsync(threads));
        v
    }

    /// Stable short name.
    pub fn name(self) -> String {
        match self {
            Multi::Loop(s) => format!("{}-loop", s.name()),
            #[cfg(feature = "batch")]
            Multi::AtomwriteBatch("auto") => "atomwrite-batch".into(),
            #[cfg(feature = "batch")]
            Multi::AtomwriteBatch(s) => format!("atomwrite-batch-{s}"),
            Multi::FloorSyncfs => "floor-batch-syncfs".into(),
            Multi::FloorParFsync(t) => format!("floor-batch-parfsync{t}"),
        }
    }

    /// Whether this is a third-party peer's loop.
    pub fn is_peer(self) -> bool {
        matches!(self, Multi::Loop(s) if s.is_peer())
    }

    /// Whether this is one of the floor batch sequences.
    pub fn is_floor(self) -> bool {
        matches!(self, Multi::FloorSyncfs | Multi::FloorParFsync(_))
    }

    /// Write every `(name, data)` entry into `dir`.
    pub fn write(self, dir: &Path, entries: &[(String, Vec<u8>)]) -> io::Result<()> {
        match self {
            Multi::Loop(s) => {
                for (name, data) in entries {
                    s.write(dir, name, data)?;
                }
                Ok(())
            }
            #[cfg(feature = "batch")]
            Multi::AtomwriteBatch(strategy) => {
                let sync = match strategy {
                    "syncfs" => atomwrite::BatchSync::Syncfs,
                    "parfsync" => atomwrite::BatchSync::ParallelFsync,
                    _ => atomwrite::BatchSync::Auto,
                };
                let opts = atomwrite::Options::new().durability(atomwrite::Durability::Full);
                let mut b = atomwrite::Batch::new(opts).sync_strategy(sync);
                for (name, data) in entries {
                    b.add(dir.join(name), data.as_slice())
                        .map_err(io::Error::from)?;
                }
                b.commit().map_err(io::Error::from)?;
                Ok(())
            }
            Multi::FloorSyncfs => floor_batch(dir, entries, None),
            Multi::FloorParFsync(t) => floor_batch(dir, entries, Some(t)),
        }
    }
}

/// The floor batch. `par = None`: one `syncfs`; `Some(t)`: fsync every temp
/// from `t` threads concurrently.
pub fn floor_batch(
    dir: &Path,
    entries: &[(String, Vec<u8>)],
    par: Option<usize>,
) -> io::Result<()> {
    let dirfd = open_dir(dir)?;
    let mut temps = Vec::with_capacity(entries.len());
    let mut fds = Vec::with_capacity(entries.len());
    for (name, data) in entries {
        let tmp = temp_name(name);
        let fd = create_temp(&dirfd, &tmp)?;
        write_all_fd(&fd, data)?;
        temps.push(tmp);
        match par {
            None => drop(fd),
            Some(_) => fds.push(fd),
        }
    }
    match par {
        None => rustix::fs::syncfs(&dirfd)?,
        Some(threads) => {
            let threads = threads.max(1);
            let chunk = fds.len().div_ceil(threads).max(1);
            std::thread::scope(|s| -> io::Result<()> {
                let handles: Vec<_> = fds
                    .chunks(chunk)
                    .map(|part| {
                        s.spawn(move || -> io::Result<()> {
                            for fd in part {
                                rustix::fs::fsync(fd)?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().expect("fsync thread panicked")?;
                }
                Ok(())
            })?;
            drop(fds);
        }
    }
    for ((name, _), tmp) in entries.iter().zip(&temps) {
        rustix::fs::renameat(&dirfd, tmp.as_str(), &dirfd, name.as_str())?;
    }
    rustix::fs::fsync(&dirfd)?;
    Ok(())
}

/// Open a directory read-only (for fsync/syncfs from other modules).
pub fn open_dir_fd(dir: &Path) -> io::Result<OwnedFd> {
    open_dir(dir)
}

/// `syncfs` on the filesystem holding `dir`; used to start every sample clean.
pub fn syncfs_dir(dir: &Path) -> io::Result<()> {
    let fd = rustix::fs::openat(CWD, dir, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    Ok(rustix::fs::syncfs(&fd)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(seed: u8) -> Vec<u8> {
        (0..4096u32).map(|i| (i as u8).wrapping_mul(seed)).collect()
    }

    #[test]
    fn every_single_contender_replaces_the_file_and_leaves_no_temp() {
        let td = tempfile::tempdir().unwrap();
        for s in Single::all() {
            let d = td.path().join(s.name());
            std::fs::create_dir(&d).unwrap();
            s.write(&d, "f", &payload(3)).unwrap();
            s.write(&d, "f", &payload(7)).unwrap();
            assert_eq!(
                std::fs::read(d.join("f")).unwrap(),
                payload(7),
                "{}",
                s.name()
            );
            let names: Vec<_> = std::fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, vec!["f"], "{} left extra entries", s.name());
        }
    }

    #[test]
    fn every_batch_contender_writes_all_files() {
        let td = tempfile::tempdir().unwrap();
        let entries: Vec<(String, Vec<u8>)> = (0..20u8)
            .map(|i| (format!("f{i}"), payload(i.wrapping_add(1))))
            .collect();
        for m in Multi::all(4) {
            let d = td.path().join(m.name());
            std::fs::create_dir(&d).unwrap();
            m.write(&d, &entries).unwrap();
            for (n, data) in &entries {
                assert_eq!(&std::fs::read(d.join(n)).unwrap(), data, "{}", m.name());
            }
            assert_eq!(std::fs::read_dir(&d).unwrap().count(), entries.len());
        }
    }

    #[test]
    fn floor_write_error_names_no_leftover() {
        let td = tempfile::tempdir().unwrap();
        // Destination is a non-empty directory: the rename must fail and the
        // temp must be cleaned up.
        std::fs::create_dir_all(td.path().join("x/y")).unwrap();
        assert!(floor_write(td.path(), "x", b"data").is_err());
        let names: Vec<_> = std::fs::read_dir(td.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["x"]);
    }
}
