//! Scenarios (a) one-at-a-time 4 KiB writes and (b) 1,000-file batches.

use crate::contenders::{Multi, Single, syncfs_dir};
use crate::stats::Summary;
use crate::util::{FlushCounter, payload};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// One contender's outcome in one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Contender name.
    pub name: String,
    /// "peer", "atomwrite", or "floor".
    pub role: &'static str,
    /// Timing summary (absent if the contender failed before any sample).
    pub time: Option<Summary>,
    /// Device flushes per timed operation (from the block device's counters).
    pub flushes_per_op: Option<f64>,
    /// CPU time (user + system) of the child process, when the contender is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Summary>,
    /// Whether every output was verified correct.
    pub ok: bool,
    /// First error or verification failure.
    pub error: Option<String>,
}

/// A whole scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// Scenario id ("a", "b", ...).
    pub id: String,
    /// Human description.
    pub title: String,
    /// Rows in a stable order.
    pub rows: Vec<Row>,
}

fn role_single(s: Single) -> &'static str {
    if s.is_peer() {
        "peer"
    } else if s == Single::Floor {
        "floor"
    } else {
        "atomwrite"
    }
}

fn role_multi(m: Multi) -> &'static str {
    if m.is_peer() {
        "peer"
    } else if m == Multi::Loop(Single::Floor) {
        "reference"
    } else if m.is_floor() {
        "floor"
    } else {
        "atomwrite"
    }
}

fn fresh_dir(p: &Path) -> std::io::Result<()> {
    if p.exists() {
        std::fs::remove_dir_all(p)?;
    }
    std::fs::create_dir_all(p)
}

fn listing(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// (a) `n` one-at-a-time 4 KiB replacements of one file per contender,
/// interleaved round-robin (the order rotates every round).
pub fn single(base: &Path, n: usize, size: usize) -> std::io::Result<Scenario> {
    let cs = Single::all();
    let root = base.join("a");
    fresh_dir(&root)?;
    let flush = FlushCounter::for_path(&root);
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); cs.len()];
    let mut errors: Vec<Option<String>> = vec![None; cs.len()];
    let mut flushes = vec![0u64; cs.len()];
    let mut flush_ok = true;
    let mut last: Vec<Option<Vec<u8>>> = vec![None; cs.len()];
    for (k, c) in cs.iter().enumerate() {
        std::fs::create_dir(root.join(c.name()))?;
        // Warm-up (untimed): first-touch costs, creating the file.
        for w in 0..3u64 {
            let data = payload(w, size);
            if let Err(e) = c.write(&root.join(c.name()), "state.bin", &data) {
                errors[k] = Some(format!("warm-up: {e}"));
            }
            last[k] = Some(data);
        }
    }
    for i in 0..n {
        for j in 0..cs.len() {
            let k = (i + j) % cs.len();
            if errors[k].is_some() {
                continue;
            }
            let c = cs[k];
            let dir = root.join(c.name());
            let data = payload(((i as u64) << 8) | k as u64 | 0x1000_0000, size);
            syncfs_dir(&root)?;
            let f0 = flush.read();
            let t = Instant::now();
            let r = c.write(&dir, "state.bin", &data);
            let el = t.elapsed();
            match (f0, flush.read()) {
                (Some(a), Some(b)) => flushes[k] += b - a,
                _ => flush_ok = false,
            }
            match r {
                Ok(()) => {
                    samples[k].push(el);
                    last[k] = Some(data);
                }
                Err(e) => errors[k] = Some(format!("write {i}: {e}")),
            }
        }
    }
    let mut rows = Vec::new();
    for (k, c) in cs.iter().enumerate() {
        let dir = root.join(c.name());
        let mut error = errors[k].clone();
        if error.is_none() {
            let got = std::fs::read(dir.join("state.bin")).ok();
            if got.as_ref() != last[k].as_ref() {
                error = Some("final contents differ from the last write".into());
            } else if listing(&dir) != ["state.bin"] {
                error = Some(format!("leftover entries: {:?}", listing(&dir)));
            }
        }
        rows.push(Row {
            name: c.name().into(),
            role: role_single(*c),
            time: Summary::of(&samples[k]),
            flushes_per_op: (flush_ok && !samples[k].is_empty())
                .then(|| flushes[k] as f64 / samples[k].len() as f64),
            cpu: None,
            ok: error.is_none(),
            error,
        });
    }
    Ok(Scenario {
        id: "a".into(),
        title: format!("{n} × {size}-byte replacements of one file, one at a time"),
        rows,
    })
}

/// (b) `rounds` rounds; each round every contender writes `files` new
/// `size`-byte files into a fresh directory (order rotates every round).
pub fn batch(
    base: &Path,
    files: usize,
    size: usize,
    rounds: usize,
    threads: usize,
) -> std::io::Result<Scenario> {
    let cs = Multi::all(threads);
    let root = base.join("b");
    fresh_dir(&root)?;
    let flush = FlushCounter::for_path(&root);
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); cs.len()];
    let mut errors: Vec<Option<String>> = vec![None; cs.len()];
    let mut flushes = vec![0u64; cs.len()];
    let mut flush_ok = true;
    for r in 0..rounds {
        for j in 0..cs.len() {
            let k = (r + j) % cs.len();
            if errors[k].is_some() {
                continue;
            }
            let c = cs[k];
            let dir = root.join(c.name());
            fresh_dir(&dir)?;
            let entries: Vec<(String, Vec<u8>)> = (0..files)
                .map(|f| {
                    (
                        format!("f{f:05}.bin"),
                        payload(((r as u64) << 32) | ((k as u64) << 20) | f as u64, size),
                    )
                })
                .collect();
            syncfs_dir(&root)?;
            let f0 = flush.read();
            let t = Instant::now();
            let res = c.write(&dir, &entries);
            let el = t.elapsed();
            match (f0, flush.read()) {
                (Some(a), Some(b)) => flushes[k] += b - a,
                _ => flush_ok = false,
            }
            if let Err(e) = res {
                errors[k] = Some(format!("round {r}: {e}"));
                continue;
            }
            samples[k].push(el);
            // Verify every file, and that nothing else is left behind.
            let names = listing(&dir);
            if names.len() != files {
                errors[k] = Some(format!(
                    "round {r}: {} entries, expected {files}",
                    names.len()
                ));
            } else if let Some((n, _)) = entries
                .iter()
                .find(|(n, d)| std::fs::read(dir.join(n)).ok().as_ref() != Some(d))
            {
                errors[k] = Some(format!("round {r}: {n} has wrong contents"));
            }
            std::fs::remove_dir_all(&dir)?;
        }
    }
    let rows = cs
        .iter()
        .enumerate()
        .map(|(k, c)| Row {
            name: c.name(),
            role: role_multi(*c),
            time: Summary::of(&samples[k]),
            flushes_per_op: (flush_ok && !samples[k].is_empty())
                .then(|| flushes[k] as f64 / samples[k].len() as f64),
            cpu: None,
            ok: errors[k].is_none() && !samples[k].is_empty(),
            error: errors[k].clone(),
        })
        .collect();
    Ok(Scenario {
        id: "b".into(),
        title: format!("{files} × {size}-byte new files in one directory, {rounds} round(s)"),
        rows,
    })
}
