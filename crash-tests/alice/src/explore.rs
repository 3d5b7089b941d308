//! Crash-state enumeration under the conservative persistence model (see `MODEL.md`)
//! and the atomic-replace invariant checker.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;

use crate::oplog::{Ino, Op, OpLog};

/// Page size used to split writes into independently persisted units.
pub const PAGE: u64 = 4096;

/// Bounds that keep the exploration to seconds.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Up to this many volatile namespace operations: every subset is explored;
    /// above it: prefixes, single omissions and single inclusions only.
    pub max_ns_exhaustive: usize,
    /// Same for the volatile data units (page chunks, truncates, fallocates) of one inode.
    pub max_data_exhaustive: usize,
    /// Hard cap on distinct states per crash point; above it the point is marked truncated.
    pub max_states_per_point: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_ns_exhaustive: 10,
            max_data_exhaustive: 10,
            max_states_per_point: 200_000,
        }
    }
}

/// What must hold in every crash state.
#[derive(Clone, Debug)]
pub struct Invariant {
    /// Destination path.
    pub dst: PathBuf,
    /// Complete old contents, or `None` if the destination did not exist before.
    pub old: Option<Vec<u8>>,
    /// Complete new contents.
    pub new: Vec<u8>,
    /// From this crash point on (number of operations executed), the destination must
    /// be the new contents in every state (`Full` durability after success). `None`:
    /// no durability requirement.
    pub durable_from: Option<usize>,
}

/// The destination as found in one crash state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Found {
    /// No entry.
    Absent,
    /// An entry with these contents.
    Data(Vec<u8>),
    /// An entry that is not a regular file.
    NotAFile,
}

/// Which clause of the invariant a state breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// Not absent-when-never-existed, old or new.
    Atomicity,
    /// After the success point, not the new contents.
    Durability,
}

/// One violating crash state (kept as an example).
#[derive(Clone, Debug)]
pub struct Violation {
    /// Which clause.
    pub kind: ViolationKind,
    /// Crash after this many operations.
    pub point: usize,
    /// Description of the state.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} violation, crash after {} ops: {}",
            self.kind, self.point, self.detail
        )
    }
}

/// Result of exploring one op log against one invariant.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Operations in the log.
    pub ops: usize,
    /// Crash points explored (ops + 1: before the first op .. after the last).
    pub points: usize,
    /// Distinct crash states explored (summed over points).
    pub states: usize,
    /// States breaking atomicity.
    pub atomicity_violations: usize,
    /// States breaking post-success durability.
    pub durability_violations: usize,
    /// States (any point) where some name other than the destination points at a file
    /// the program created: leftover temporaries after a crash (informational).
    pub states_with_leftovers: usize,
    /// True if some point hit a bound and was explored partially (never silently).
    pub bounded: bool,
    /// The no-crash final image has the new contents at the destination.
    pub final_ok: bool,
    /// First few violations.
    pub examples: Vec<Violation>,
}

impl Report {
    /// Total violations.
    pub fn violations(&self) -> usize {
        self.atomicity_violations + self.durability_violations
    }

    /// One-line summary.
    pub fn summary(&self) -> String {
        format!(
            "ops={} points={} states={} violations={} (atomicity={} durability={}) leftover-states={}{}{}",
            self.ops,
            self.points,
            self.states,
            self.violations(),
            self.atomicity_violations,
            self.durability_violations,
            self.states_with_leftovers,
            if self.bounded { " [bounded]" } else { "" },
            if self.final_ok {
                ""
            } else {
                " [FINAL STATE WRONG]"
            }
        )
    }
}

/// Subsets of `0..n` to explore: all if `n <= exhaustive`, otherwise prefixes, single
/// omissions and single inclusions. Each subset is a sorted index list.
fn subsets(n: usize, exhaustive: usize) -> (Vec<Vec<usize>>, bool) {
    if n <= exhaustive {
        let all = (0u64..(1u64 << n))
            .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect())
            .collect();
        return (all, false);
    }
    let mut out: Vec<Vec<usize>> = Vec::new();
    for k in 0..=n {
        out.push((0..k).collect());
    }
    for skip in 0..n {
        out.push((0..n).filter(|&i| i != skip).collect());
        out.push(vec![skip]);
    }
    out.sort();
    out.dedup();
    (out, true)
}

/// Split a data operation into independently persisted units (writes at page boundaries).
fn units(op: &Op) -> Vec<Op> {
    match op {
        Op::Write { ino, off, data } => {
            let mut out = Vec::new();
            let mut pos = *off;
            let end = off + data.len() as u64;
            while pos < end {
                let next = ((pos / PAGE) + 1) * PAGE;
                let stop = next.min(end);
                out.push(Op::Write {
                    ino: *ino,
                    off: pos,
                    data: data[(pos - off) as usize..(stop - off) as usize].to_vec(),
                });
                pos = stop;
            }
            out
        }
        other => vec![other.clone()],
    }
}

fn is_barrier_for(op: &Op, ino: Ino) -> bool {
    match op {
        Op::Fsync { ino: i, .. } => *i == ino,
        Op::SyncAll => true,
        _ => false,
    }
}

/// All contents inode `ino` may have on disk after a crash following `ops[..point]`.
fn data_variants(log: &OpLog, ino: Ino, point: usize, limits: &Limits) -> (Vec<Vec<u8>>, bool) {
    let ops: Vec<&Op> = log.events[..point].iter().map(|e| &e.op).collect();
    let barrier = ops.iter().rposition(|op| is_barrier_for(op, ino));
    let split = barrier.map_or(0, |b| b + 1);
    let mut base = log.initial.inodes[ino].data.clone();
    for op in &ops[..split] {
        if op.is_data_of(ino) {
            op.apply_data(&mut base);
        }
    }
    let volatile: Vec<Op> = ops[split..]
        .iter()
        .filter(|op| op.is_data_of(ino))
        .flat_map(|op| units(op))
        .collect();
    let (sets, bounded) = subsets(volatile.len(), limits.max_data_exhaustive);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for set in sets {
        let mut d = base.clone();
        for &i in &set {
            volatile[i].apply_data(&mut d);
        }
        if seen.insert(d.clone()) {
            out.push(d);
        }
    }
    // Size persisted without the data (delayed allocation / writeback): the final
    // volatile size, zero-filled beyond the durable contents.
    let mut full = base.clone();
    for u in &volatile {
        u.apply_data(&mut full);
    }
    let mut size_only = base.clone();
    size_only.resize(full.len(), 0);
    if seen.insert(size_only.clone()) {
        out.push(size_only);
    }
    (out, bounded)
}

/// Describe contents relative to the old and new versions.
pub fn describe(found: &Found, inv: &Invariant) -> String {
    match found {
        Found::Absent => "destination absent".into(),
        Found::NotAFile => "destination is not a regular file".into(),
        Found::Data(d) => {
            if *d == inv.new {
                "new contents".into()
            } else if Some(d) == inv.old.as_ref() {
                "old contents".into()
            } else if d.is_empty() {
                "EMPTY file".into()
            } else if inv.new.starts_with(d) {
                format!("PREFIX of new ({} of {} bytes)", d.len(), inv.new.len())
            } else if d.iter().all(|&b| b == 0) {
                format!("{} ZERO bytes", d.len())
            } else {
                format!("{} bytes, neither old nor new (torn/mixed)", d.len())
            }
        }
    }
}

/// Enumerate every crash state of `log` (crash after 0..=len ops) and check `inv`.
pub fn explore(log: &OpLog, inv: &Invariant, limits: &Limits) -> Report {
    let n = log.events.len();
    let mut rep = Report {
        ops: n,
        points: n + 1,
        ..Report::default()
    };
    let initial_inodes = log
        .initial
        .entries
        .values()
        .copied()
        .collect::<HashSet<Ino>>();

    // Sanity: the no-crash final image.
    let mut final_entries = log.initial.entries.clone();
    for e in &log.events {
        e.op.apply_namespace(&mut final_entries);
    }
    rep.final_ok = match final_entries.get(&inv.dst) {
        Some(&ino) => {
            let (v, _) = data_variants(log, ino, 0, limits);
            let mut d = v[0].clone();
            for e in &log.events {
                if e.op.is_data_of(ino) {
                    e.op.apply_data(&mut d);
                }
            }
            d == inv.new
        }
        None => false,
    };

    for point in 0..=n {
        let ops = &log.events[..point];
        // Which namespace ops are durable at this point.
        let ns: Vec<usize> = (0..point).filter(|&j| ops[j].op.is_namespace()).collect();
        let mut durable = Vec::new();
        let mut volatile = Vec::new();
        for &j in &ns {
            let parents = ops[j].op.parents();
            let is_durable = parents.iter().all(|&p| {
                ops[j + 1..point]
                    .iter()
                    .any(|later| is_barrier_for(&later.op, p))
            });
            if is_durable {
                durable.push(j);
            } else {
                volatile.push(j);
            }
        }
        let (sets, ns_bounded) = subsets(volatile.len(), limits.max_ns_exhaustive);
        rep.bounded |= ns_bounded;
        let mut cache: BTreeMap<Ino, Vec<Vec<u8>>> = BTreeMap::new();
        let mut seen: HashSet<(Vec<(PathBuf, Ino)>, Found)> = HashSet::new();
        let mut truncated = false;
        'sets: for set in sets {
            let mut chosen: Vec<usize> = durable.clone();
            chosen.extend(set.iter().map(|&k| volatile[k]));
            chosen.sort_unstable();
            let mut entries = log.initial.entries.clone();
            for &j in &chosen {
                ops[j].op.apply_namespace(&mut entries);
            }
            let leftovers = entries
                .iter()
                .any(|(p, i)| *p != inv.dst && !initial_inodes.contains(i));
            let founds: Vec<Found> = match entries.get(&inv.dst) {
                None => vec![Found::Absent],
                Some(&ino) if log.initial.inodes[ino].kind != crate::oplog::Kind::File => {
                    vec![Found::NotAFile]
                }
                Some(&ino) => {
                    let v = cache.entry(ino).or_insert_with(|| {
                        let (v, b) = data_variants(log, ino, point, limits);
                        rep.bounded |= b;
                        v
                    });
                    v.iter().cloned().map(Found::Data).collect()
                }
            };
            let key_entries: Vec<(PathBuf, Ino)> = entries.into_iter().collect();
            for found in founds {
                if seen.len() >= limits.max_states_per_point {
                    truncated = true;
                    break 'sets;
                }
                if !seen.insert((key_entries.clone(), found.clone())) {
                    continue;
                }
                rep.states += 1;
                if leftovers {
                    rep.states_with_leftovers += 1;
                }
                let atomic_ok = match &found {
                    Found::Absent => inv.old.is_none(),
                    Found::NotAFile => false,
                    Found::Data(d) => *d == inv.new || Some(d) == inv.old.as_ref(),
                };
                let durable_ok = match inv.durable_from {
                    Some(from) if point >= from => found == Found::Data(inv.new.clone()),
                    _ => true,
                };
                let mk = |kind| {
                    let persisted: Vec<String> = set
                        .iter()
                        .map(|&k| format!("#{} {}", volatile[k] + 1, ops[volatile[k]].op))
                        .collect();
                    let lost: Vec<String> = (0..volatile.len())
                        .filter(|k| !set.contains(k))
                        .map(|k| format!("#{} {}", volatile[k] + 1, ops[volatile[k]].op))
                        .collect();
                    Violation {
                        kind,
                        point,
                        detail: format!(
                            "{}; last op: {}; volatile namespace ops persisted: [{}], lost: [{}]",
                            describe(&found, inv),
                            if point == 0 {
                                "(none)".to_string()
                            } else {
                                format!(
                                    "#{} {} <{}>",
                                    point,
                                    ops[point - 1].op,
                                    ops[point - 1].source
                                )
                            },
                            persisted.join(", "),
                            lost.join(", ")
                        ),
                    }
                };
                if !atomic_ok {
                    rep.atomicity_violations += 1;
                    if rep.examples.len() < 8 {
                        rep.examples.push(mk(ViolationKind::Atomicity));
                    }
                } else if !durable_ok {
                    rep.durability_violations += 1;
                    if rep.examples.len() < 8 {
                        rep.examples.push(mk(ViolationKind::Durability));
                    }
                }
            }
        }
        rep.bounded |= truncated;
    }
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_exhaustive_and_bounded() {
        let (s, b) = subsets(3, 10);
        assert_eq!(s.len(), 8);
        assert!(!b);
        let (s, b) = subsets(12, 10);
        assert!(b);
        assert!(s.contains(&vec![]));
        assert!(s.contains(&(0..12).collect::<Vec<_>>()));
        assert!(s.contains(&vec![5]));
    }

    #[test]
    fn writes_split_at_page_boundaries() {
        let op = Op::Write {
            ino: 1,
            off: 4000,
            data: vec![7; 5000],
        };
        let u = units(&op);
        let lens: Vec<usize> = u
            .iter()
            .map(|o| match o {
                Op::Write { data, .. } => data.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(lens, vec![96, 4096, 808]);
    }
}
