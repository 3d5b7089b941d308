//! Payload generation, verification, device flush counters, machine facts.

use serde::Serialize;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Deterministic pseudo-random bytes (xorshift64*), distinct per `seed`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Block size of the streamed data sets.
pub const BLOCK: usize = 1 << 20;

/// A streamed data set of `size` bytes: block `i` is `base` with its first
/// 8 bytes replaced by `i` (little-endian), so every MiB differs.
pub struct Stream {
    base: Vec<u8>,
    /// Total size in bytes.
    pub size: u64,
}

impl Stream {
    /// A new stream of `size` bytes.
    pub fn new(size: u64) -> Stream {
        Stream {
            base: payload(0xB16, BLOCK),
            size,
        }
    }

    /// Write the whole stream to `w` (in at most two writes per block).
    pub fn write_to(&self, w: &mut impl io::Write) -> io::Result<()> {
        let mut pos = 0u64;
        let mut i = 0u64;
        while pos < self.size {
            let len = ((self.size - pos) as usize).min(BLOCK);
            let hdr = i.to_le_bytes();
            let h = len.min(8);
            w.write_all(&hdr[..h])?;
            if len > 8 {
                w.write_all(&self.base[8..len])?;
            }
            pos += len as u64;
            i += 1;
        }
        Ok(())
    }

    /// Check that `path` holds exactly this stream.
    pub fn verify(&self, path: &Path) -> Result<(), String> {
        let mut f = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
        let len = f.metadata().map_err(|e| e.to_string())?.len();
        if len != self.size {
            return Err(format!(
                "{}: size {len}, expected {}",
                path.display(),
                self.size
            ));
        }
        let mut buf = vec![0u8; BLOCK];
        let mut pos = 0u64;
        let mut i = 0u64;
        while pos < self.size {
            let len = ((self.size - pos) as usize).min(BLOCK);
            f.read_exact(&mut buf[..len]).map_err(|e| e.to_string())?;
            let hdr = i.to_le_bytes();
            let h = len.min(8);
            if buf[..h] != hdr[..h] || (len > 8 && buf[8..len] != self.base[8..len]) {
                return Err(format!("{}: block {i} differs", path.display()));
            }
            pos += len as u64;
            i += 1;
        }
        Ok(())
    }
}

/// Cumulative flush requests completed by the block device holding `path`
/// (field 16 of `/sys/dev/block/M:m/stat`), if the kernel reports it.
pub struct FlushCounter {
    stat_path: Option<String>,
}

impl FlushCounter {
    /// Locate the block device of `path`.
    pub fn for_path(path: &Path) -> FlushCounter {
        let stat_path = std::fs::metadata(path).ok().and_then(|m| {
            let dev = m.dev();
            let p = format!(
                "/sys/dev/block/{}:{}/stat",
                libc::major(dev),
                libc::minor(dev)
            );
            Path::new(&p).exists().then_some(p)
        });
        FlushCounter { stat_path }
    }

    /// Current count, or `None` when unavailable.
    pub fn read(&self) -> Option<u64> {
        self.read_with_ms().map(|(n, _)| n)
    }

    /// Current count and cumulative milliseconds spent flushing (field 17).
    pub fn read_with_ms(&self) -> Option<(u64, u64)> {
        let s = std::fs::read_to_string(self.stat_path.as_ref()?).ok()?;
        let mut it = s.split_whitespace().skip(15);
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    }
}

/// Facts about the machine and the filesystem under test.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub nproc: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// Kernel release.
    pub kernel: String,
    /// Memory (from /proc/meminfo).
    pub mem: String,
    /// Directory benchmarked.
    pub dir: String,
    /// Filesystem type of `dir`.
    pub fs: String,
    /// Mount source of `dir`.
    pub device: String,
    /// What sysfs says about the disk.
    pub disk: String,
    /// UTC date of the run.
    pub date: String,
    /// Command line.
    pub command: String,
    /// /proc/loadavg when the report was assembled (other load on the machine).
    pub loadavg: String,
}

fn first_line_with(path: &str, key: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// Filesystem type name of `path` (via statfs magic).
pub fn fs_type(path: &Path) -> String {
    match rustix::fs::statfs(path) {
        Ok(s) => match s.f_type as u64 {
            0xEF53 => "ext4".into(),
            0x5846_5342 => "xfs".into(),
            0x9123_683E => "btrfs".into(),
            0x0102_1994 => "tmpfs".into(),
            0x6573_5546 => "fuse".into(),
            t => format!("0x{t:x}"),
        },
        Err(e) => format!("? ({e})"),
    }
}

/// Mount source (device) for `path`, from /proc/self/mountinfo.
pub fn mount_source(path: &Path) -> String {
    let Ok(canon) = std::fs::canonicalize(path) else {
        return "?".into();
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return "?".into();
    };
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let mnt = f[4];
        let sep = f.iter().position(|x| *x == "-").unwrap_or(0);
        let src = f.get(sep + 2).copied().unwrap_or("?");
        if canon.starts_with(mnt) && best.as_ref().is_none_or(|(l, _)| mnt.len() >= *l) {
            best = Some((mnt.len(), format!("{src} on {mnt}")));
        }
    }
    best.map(|b| b.1).unwrap_or_else(|| "?".into())
}

fn disk_facts(path: &Path) -> String {
    let Ok(m) = std::fs::metadata(path) else {
        return "?".into();
    };
    let dev = m.dev();
    let base = format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev));
    let canon = std::fs::canonicalize(&base).unwrap_or_default();
    // For a partition, the queue/ directory lives on the parent device.
    let mut q = canon.join("queue");
    if !q.exists() {
        q = canon.parent().map(|p| p.join("queue")).unwrap_or_default();
    }
    let rd = |n: &str| {
        std::fs::read_to_string(q.join(n))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into())
    };
    let name = canon
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stat = std::fs::read_to_string(canon.join("stat")).unwrap_or_default();
    let f: Vec<u64> = stat
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let flush = if f.len() >= 17 && f[15] > 0 {
        format!(
            ", lifetime avg flush {:.3} ms over {} flushes",
            f[16] as f64 / f[15] as f64,
            f[15]
        )
    } else {
        String::new()
    };
    format!(
        "{name}: rotational={}, write_cache={}, scheduler={}{flush}",
        rd("rotational"),
        rd("write_cache"),
        rd("scheduler")
    )
}

/// Collect machine facts for the report.
pub fn machine(dir: &Path) -> Machine {
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into());
    Machine {
        nproc: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu: first_line_with("/proc/cpuinfo", "model name"),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into()),
        mem: first_line_with("/proc/meminfo", "MemTotal"),
        dir: dir.display().to_string(),
        fs: fs_type(dir),
        device: mount_source(dir),
        disk: disk_facts(dir),
        date,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        loadavg: std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "?".into()),
    }
}

/// True when running as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_differ_by_seed_and_have_len() {
        assert_eq!(payload(1, 4096).len(), 4096);
        assert_ne!(payload(1, 64), payload(2, 64));
        assert_eq!(payload(5, 100), payload(5, 100));
    }

    #[test]
    fn stream_roundtrip_and_detects_corruption() {
        let td = tempfile::tempdir().unwrap();
        let p = td.path().join("s");
        let s = Stream::new(3 * BLOCK as u64 + 5);
        let mut f = File::create(&p).unwrap();
        s.write_to(&mut f).unwrap();
        drop(f);
        s.verify(&p).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[BLOCK + 100] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(s.verify(&p).is_err());
        bytes.pop();
        std::fs::write(&p, &bytes).unwrap();
        assert!(s.verify(&p).unwrap_err().contains("size"));
    }
}
