//! Faults from the real kernel (root only): a full tmpfs (ENOSPC), a read-only remount (EROFS),
//! a bind-mounted destination (EBUSY), owner preservation, and an unprivileged writer.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::Tally;

const OLD: &[u8] = b"old contents\n";

/// Unmounts (lazily, as a last resort) when dropped, so a failed check never leaves a mount.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn sh(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Result<Mount, String> {
    std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
    sh(Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tmpfs",
        ])
        .arg(at))?;
    Ok(Mount(at.to_path_buf()))
}

struct K<'a> {
    atomwrite: &'a Path,
    t: &'a mut Tally,
}

impl K<'_> {
    fn write(
        &self,
        dst: &Path,
        portable: bool,
        input: &[u8],
        from: Option<&Path>,
        uid: Option<u32>,
    ) -> Output {
        let mut cmd = Command::new(self.atomwrite);
        cmd.args(["write", "-q"]);
        if let Some(f) = from {
            cmd.arg("--from").arg(f);
        }
        cmd.arg(dst);
        if portable {
            cmd.env("ATOMWRITE_PORTABLE", "1");
        } else {
            cmd.env_remove("ATOMWRITE_PORTABLE");
        }
        if let Some(u) = uid {
            cmd.uid(u).gid(u);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn atomwrite");
        if let Some(mut w) = child.stdin.take()
            && from.is_none()
        {
            let _ = w.write_all(input);
        }
        child.wait_with_output().expect("wait atomwrite")
    }

    fn check(&mut self, name: &str, problems: Vec<String>) {
        if problems.is_empty() {
            self.t.pass();
        } else {
            self.t.fail(format!("{name}: {}", problems.join("; ")));
        }
    }
}

fn stray(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !keep.contains(&n.as_str()) && n != "lost+found")
                .collect()
        })
        .unwrap_or_default()
}

fn expect_failure(out: &Output, reason: &str, path: &Path) -> Vec<String> {
    let mut p = Vec::new();
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(1) {
        p.push(format!(
            "exit {:?}, expected 1: {}",
            out.status.code(),
            err.trim()
        ));
    }
    if !err.contains(reason) {
        p.push(format!("stderr lacks `{reason}`: {}", err.trim()));
    }
    if !err.contains(&*path.to_string_lossy()) {
        p.push(format!(
            "stderr does not name {}: {}",
            path.display(),
            err.trim()
        ));
    }
    if err.trim().lines().count() != 1 {
        p.push(format!("stderr is not one line: {err:?}"));
    }
    p
}

fn free_blocks(p: &Path) -> u64 {
    rustix::fs::statvfs(p).map(|s| s.f_bfree).unwrap_or(0)
}

pub fn run_all(atomwrite: &Path, base: &Path, t: &mut Tally) {
    let mut k = K { atomwrite, t };
    std::fs::create_dir_all(base).unwrap();
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    enospc(&mut k, base);
    erofs(&mut k, base);
    ebusy(&mut k, base);
    owner(&mut k, base);
    unprivileged(&mut k, base);
}

fn big() -> Vec<u8> {
    (0..2 * 1024 * 1024u32)
        .map(|i| (i * 7 % 253) as u8)
        .collect()
}

fn enospc(k: &mut K, base: &Path) {
    let mnt = base.join("k-enospc");
    let m = match mount_tmpfs(&mnt, "1m") {
        Ok(m) => m,
        Err(e) => return k.t.fail(format!("enospc: {e}")),
    };
    let dst = mnt.join("dst");
    std::fs::write(&dst, OLD).unwrap();
    let src = base.join("k-big");
    std::fs::write(&src, big()).unwrap();
    let free = free_blocks(&mnt);
    for portable in [false, true] {
        for from in [None, Some(src.as_path())] {
            let name = format!(
                "enospc-{}-{}",
                if portable { "portable" } else { "fast" },
                if from.is_some() { "from-file" } else { "pipe" }
            );
            let out = k.write(&dst, portable, &big(), from, None);
            let mut p = expect_failure(&out, "No space left on device", &dst);
            if std::fs::read(&dst).ok().as_deref() != Some(OLD) {
                p.push("destination changed".into());
            }
            let s = stray(&mnt, &["dst"]);
            if !s.is_empty() {
                p.push(format!("left behind {s:?}"));
            }
            let after = free_blocks(&mnt);
            if after != free {
                p.push(format!(
                    "space not given back: {free} free blocks before, {after} after"
                ));
            }
            k.check(&name, p);
        }
    }
    // And the filesystem is usable afterwards: a write that fits succeeds.
    let small = vec![b'x'; 100 * 1024];
    let out = k.write(&dst, false, &small, None, None);
    let mut p = Vec::new();
    if !out.status.success() || std::fs::read(&dst).ok() != Some(small) {
        p.push(format!(
            "a fitting write failed after ENOSPC: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    k.check("enospc-then-fits", p);
    drop(m);
    let _ = std::fs::remove_file(&src);
}

fn erofs(k: &mut K, base: &Path) {
    let mnt = base.join("k-erofs");
    let m = match mount_tmpfs(&mnt, "4m") {
        Ok(m) => m,
        Err(e) => return k.t.fail(format!("erofs: {e}")),
    };
    let dst = mnt.join("dst");
    std::fs::write(&dst, OLD).unwrap();
    if let Err(e) = sh(Command::new("mount").args(["-o", "remount,ro"]).arg(&mnt)) {
        return k.t.fail(format!("erofs: {e}"));
    }
    for portable in [false, true] {
        let out = k.write(&dst, portable, b"new\n", None, None);
        let mut p = expect_failure(&out, "Read-only file system", &mnt);
        if std::fs::read(&dst).ok().as_deref() != Some(OLD) {
            p.push("destination changed".into());
        }
        k.check(
            &format!("erofs-{}", if portable { "portable" } else { "fast" }),
            p,
        );
    }
    let _ = sh(Command::new("mount").args(["-o", "remount,rw"]).arg(&mnt));
    let s = stray(&mnt, &["dst"]);
    k.check(
        "erofs-no-temp",
        if s.is_empty() {
            vec![]
        } else {
            vec![format!("left behind {s:?}")]
        },
    );
    drop(m);
}

fn ebusy(k: &mut K, base: &Path) {
    let dir = base.join("k-ebusy");
    std::fs::create_dir_all(&dir).unwrap();
    let dst = dir.join("dst");
    let src = base.join("k-ebusy-source");
    std::fs::write(&dst, b"under the mount\n").unwrap();
    std::fs::write(&src, OLD).unwrap();
    if let Err(e) = sh(Command::new("mount").arg("--bind").arg(&src).arg(&dst)) {
        return k.t.fail(format!("ebusy: {e}"));
    }
    let m = Mount(dst.clone());
    for portable in [false, true] {
        let out = k.write(&dst, portable, b"new\n", None, None);
        let mut p = expect_failure(&out, "mount point", &dst);
        let err = String::from_utf8_lossy(&out.stderr);
        if !err.contains("Device or resource busy") {
            p.push(format!("stderr lacks EBUSY: {}", err.trim()));
        }
        if std::fs::read(&dst).ok().as_deref() != Some(OLD)
            || std::fs::read(&src).ok().as_deref() != Some(OLD)
        {
            p.push("the bind-mounted file was written (in-place fallback?)".into());
        }
        let s = stray(&dir, &["dst"]);
        if !s.is_empty() {
            p.push(format!("left behind {s:?}"));
        }
        k.check(
            &format!("ebusy-{}", if portable { "portable" } else { "fast" }),
            p,
        );
    }
    drop(m);
    let _ = std::fs::remove_file(&src);
}

fn owner(k: &mut K, base: &Path) {
    let dir = base.join("k-owner");
    std::fs::create_dir_all(&dir).unwrap();
    for (mode, portable) in [
        (0o640, false),
        (0o640, true),
        (0o2750, false),
        (0o4755, true),
    ] {
        let dst = dir.join(format!("dst-{mode:o}-{portable}"));
        std::fs::write(&dst, OLD).unwrap();
        std::os::unix::fs::chown(&dst, Some(1234), Some(5678)).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = k.write(&dst, portable, b"new contents\n", None, None);
        let mut p = Vec::new();
        if !out.status.success() {
            p.push(format!(
                "failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let md = std::fs::metadata(&dst).unwrap();
        if (md.uid(), md.gid(), md.mode() & 0o7777) != (1234, 5678, mode) {
            p.push(format!(
                "expected 1234:5678 {mode:o}, got {}:{} {:o}",
                md.uid(),
                md.gid(),
                md.mode() & 0o7777
            ));
        }
        if std::fs::read(&dst).unwrap() != b"new contents\n" {
            p.push("contents not replaced".into());
        }
        k.check(
            &format!(
                "chown-preserved-{mode:o}-{}",
                if portable { "portable" } else { "fast" }
            ),
            p,
        );
    }
    let s = stray(&dir, &[]);
    let s: Vec<_> = s.into_iter().filter(|n| n.starts_with('.')).collect();
    k.check(
        "chown-no-temp",
        if s.is_empty() {
            vec![]
        } else {
            vec![format!("left behind {s:?}")]
        },
    );
}

fn unprivileged(k: &mut K, base: &Path) {
    // A writer (uid 2000) replacing a file owned by uid 1234 in a directory it may write:
    // keeping the owner is not permitted, so the new file is the writer's (documented); the
    // mode is kept.
    let dir = base.join("k-unpriv");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    for portable in [false, true] {
        let dst = dir.join(format!("dst-{portable}"));
        std::fs::write(&dst, OLD).unwrap();
        std::os::unix::fs::chown(&dst, Some(1234), Some(1234)).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = k.write(&dst, portable, b"mine\n", None, Some(2000));
        let mut p = Vec::new();
        if !out.status.success() {
            p.push(format!(
                "failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let md = std::fs::metadata(&dst).unwrap();
        if (md.uid(), md.mode() & 0o7777) != (2000, 0o644) {
            p.push(format!(
                "got {}:{} {:o}",
                md.uid(),
                md.gid(),
                md.mode() & 0o7777
            ));
        }
        k.check(
            &format!(
                "unprivileged-replace-{}",
                if portable { "portable" } else { "fast" }
            ),
            p,
        );
    }
    // The same writer in a directory it may not write: EACCES from the real kernel.
    let ro = base.join("k-eacces");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dst = ro.join("dst");
    std::fs::write(&dst, OLD).unwrap();
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o666)).unwrap();
    for portable in [false, true] {
        let out = k.write(&dst, portable, b"nope\n", None, Some(2000));
        let mut p = expect_failure(&out, "Permission denied", &ro);
        if std::fs::read(&dst).ok().as_deref() != Some(OLD) {
            p.push("destination changed".into());
        }
        let s = stray(&ro, &["dst"]);
        if !s.is_empty() {
            p.push(format!("left behind {s:?}"));
        }
        k.check(
            &format!("eacces-{}", if portable { "portable" } else { "fast" }),
            p,
        );
    }
}
