//! Per-write syscall lists: `atomwrite-bench syscalls IMPL` performs exactly
//! one (warmed-up) write between two markers; `table()` runs that under
//! `strace -f` for every contender and extracts the calls between markers.

use crate::contenders::{Multi, Single};
use crate::util::payload;
use serde::Serialize;
use std::path::Path;
use std::process::Command;

const BEGIN: &[u8] = b"@@BEGIN@@\n";
const END: &[u8] = b"@@END@@\n";

fn marker(m: &[u8]) {
    use std::io::Write;
    // One write(2) syscall per marker: stderr is unbuffered.
    let _ = std::io::stderr().write_all(m);
}

/// Names accepted by `syscalls`: single contenders, then batch contenders.
pub fn names(threads: usize) -> Vec<String> {
    let mut v: Vec<String> = Single::all().iter().map(|s| s.name().to_string()).collect();
    v.extend(
        Multi::all(threads)
            .into_iter()
            .filter(|m| !matches!(m, Multi::Loop(_)))
            .map(|m| m.name()),
    );
    v
}

/// Perform one write (or one batch of `files`) of contender `name` in `dir`,
/// bracketed by marker writes to stderr.
pub fn run_one(dir: &Path, name: &str, files: usize, threads: usize) -> Result<(), String> {
    let d = dir.join("syscalls").join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d).map_err(|e| e.to_string())?;
    }
    std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
    if let Some(s) = Single::all().into_iter().find(|s| s.name() == name) {
        // Warm-up: create the file, so the measured write is a replacement.
        s.write(&d, "state.bin", &payload(1, 4096))
            .map_err(|e| e.to_string())?;
        let data = payload(2, 4096);
        marker(BEGIN);
        let r = s.write(&d, "state.bin", &data);
        marker(END);
        r.map_err(|e| e.to_string())?;
        return Ok(());
    }
    let m = Multi::all(threads)
        .into_iter()
        .find(|m| m.name() == name)
        .ok_or_else(|| {
            format!(
                "unknown contender {name}; known: {}",
                names(threads).join(", ")
            )
        })?;
    let entries: Vec<(String, Vec<u8>)> = (0..files)
        .map(|i| (format!("f{i}"), payload(i as u64, 4096)))
        .collect();
    let warm = d.join("warm");
    let real = d.join("real");
    std::fs::create_dir_all(&warm).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&real).map_err(|e| e.to_string())?;
    m.write(&warm, &entries).map_err(|e| e.to_string())?;
    marker(BEGIN);
    let r = m.write(&real, &entries);
    marker(END);
    r.map_err(|e| e.to_string())
}

/// One contender's syscall list.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// Contender.
    pub name: String,
    /// Files written in the traced operation.
    pub files: usize,
    /// Syscalls, strace-formatted, pid stripped (empty on error).
    pub calls: Vec<String>,
    /// Why tracing failed, if it did.
    pub error: Option<String>,
}

impl Trace {
    /// Syscall names only.
    pub fn names(&self) -> Vec<String> {
        self.calls
            .iter()
            .map(|c| c.split('(').next().unwrap_or(c).trim().to_string())
            .collect()
    }
}

/// Extract calls between the markers from `strace -f` output.
pub fn parse(out: &str) -> Option<Vec<String>> {
    let lines: Vec<&str> = out.lines().collect();
    let b = lines.iter().position(|l| l.contains("@@BEGIN@@"))?;
    let e = lines.iter().position(|l| l.contains("@@END@@"))?;
    Some(
        lines[b + 1..e]
            .iter()
            .map(|l| {
                // Strip the leading pid that `strace -f` prints.
                let l = l.trim_start();
                match l.split_once(' ') {
                    Some((pid, rest)) if pid.chars().all(|c| c.is_ascii_digit()) => {
                        rest.trim_start().to_string()
                    }
                    _ => l.to_string(),
                }
            })
            // With threads, strace splits a call into "<unfinished ...>" and
            // "<... resumed>" lines: keep the first half, once.
            .filter(|l| !l.starts_with("+++") && !l.starts_with("---") && !l.starts_with("<..."))
            .map(|l| {
                l.trim_end_matches("<unfinished ...>")
                    .trim_end()
                    .to_string()
            })
            .collect(),
    )
}

/// Trace every contender (batch ones with `batch_files` files).
pub fn table(dir: &Path, threads: usize, batch_files: usize) -> Vec<Trace> {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            return vec![Trace {
                name: "*".into(),
                files: 0,
                calls: vec![],
                error: Some(e.to_string()),
            }];
        }
    };
    let singles: Vec<String> = Single::all().iter().map(|s| s.name().to_string()).collect();
    names(threads)
        .into_iter()
        .map(|name| {
            let files = if singles.contains(&name) {
                1
            } else {
                batch_files
            };
            let out = dir.join(format!("strace-{name}.txt"));
            let res = Command::new("strace")
                .args(["-f", "-qq", "-s", "48", "-o"])
                .arg(&out)
                .arg(&exe)
                .args([
                    "syscalls",
                    &name,
                    "--files",
                    &files.to_string(),
                    "--par-threads",
                    &threads.to_string(),
                    "--dir",
                ])
                .arg(dir)
                .output();
            let (calls, error) = match res {
                Err(e) => (vec![], Some(format!("strace: {e}"))),
                Ok(o) if !o.status.success() => (
                    vec![],
                    Some(format!(
                        "strace run failed: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    )),
                ),
                Ok(_) => match std::fs::read_to_string(&out)
                    .ok()
                    .as_deref()
                    .and_then(parse)
                {
                    Some(c) => (c, None),
                    None => (vec![], Some("markers not found in strace output".into())),
                },
            };
            let _ = std::fs::remove_file(&out);
            Trace {
                name,
                files,
                calls,
                error,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_strips_pids_and_markers() {
        let out = "100 write(2, \"@@BEGIN@@\\n\", 10) = 10\n\
                   100 openat(AT_FDCWD, \"d\", O_RDONLY) = 3\n\
                   101 fsync(3 <unfinished ...>\n\
                   100 close(4) = 0\n\
                   101 <... fsync resumed>) = 0\n\
                   100 write(2, \"@@END@@\\n\", 8) = 8\n";
        let c = parse(out).unwrap();
        assert_eq!(
            c,
            vec![
                "openat(AT_FDCWD, \"d\", O_RDONLY) = 3",
                "fsync(3",
                "close(4) = 0"
            ]
        );
        let t = Trace {
            name: "x".into(),
            files: 1,
            calls: c,
            error: None,
        };
        assert_eq!(t.names(), vec!["openat", "fsync", "close"]);
        assert!(parse("no markers").is_none());
    }
}
