//! Retention and leftover removal: what may be deleted, on what evidence.
//!
//! - **A crash leftover** is a version whose pending marker still exists (see
//!   [`name`](super::name)): its publish never made it current. Removed (with its manifest and
//!   marker) only while holding the lock, so never under a live publisher.
//! - **History** is a version without a marker, numbered below the current one, whose manifest
//!   was written by atomwrite and names it. Retention removes history beyond `keep`; never the
//!   current version, never the one it replaced, never a version numbered above the current one
//!   (a hand rollback), never a file without such a manifest (atomwrite did not make it).
//! - Staging directories (`.vN.<random>.tmp` in the versions directory) and the pointer temps of
//!   older atomwrite versions (`.DST.<random>.tmp` symlinks into `DST.versions/`) are leftovers by
//!   their exact grammar, removed under the lock.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{self as rfs, AtFlags, FileType};

use super::name::{self, VersionName};
use super::store::{Current, Entry, Store, list_dir, remove_entry};
use crate::{Error, Op, Result};

/// Pending markers and legacy pointer temps found beside `DST`.
#[derive(Debug, Default)]
pub(crate) struct Sweep {
    /// Pending markers beside `DST` (names), by version number.
    pub markers: BTreeMap<u64, OsString>,
    /// Legacy pointer temps beside `DST`.
    pub pointer_temps: Vec<OsString>,
    pub warnings: Vec<String>,
}

/// Lists `DST`'s parent once for pending markers and legacy pointer temps of exactly this `DST`;
/// each must be a symlink whose target is a pointer into this `DST.versions/` (evidence).
pub(crate) fn markers(store: &Store) -> Result<Sweep> {
    let mut sw = Sweep::default();
    for ent in list_dir(&store.parent_fd, &store.parent)? {
        let is_marker = name::parse_marker(ent.name.as_bytes(), &store.name, store.name_max);
        let is_temp = crate::tempname::is_temp_of(&ent.name, &store.name, store.name_max);
        if is_marker.is_none() && !is_temp {
            continue;
        }
        if ent.kind != FileType::Symlink && ent.kind != FileType::Unknown {
            continue;
        }
        // Only the caller or the owner of the versions directory can have made a marker that
        // counts: another user who may write DST's directory cannot plant one to have a version
        // removed.
        let Ok(mst) = rfs::statat(&*store.parent_fd, &ent.name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        if !trusted_owner(store, mst.st_uid) {
            if is_marker.is_some() {
                sw.warnings.push(format!(
                    "ignored `{}`: a pending marker made by uid {}, neither the caller nor the \
                     owner of `{}`",
                    store.parent.join(&ent.name).display(),
                    mst.st_uid,
                    store.vdir.display()
                ));
            }
            continue;
        }
        let Ok(t) = rfs::readlinkat(&*store.parent_fd, &ent.name, Vec::new()) else {
            continue;
        };
        let Some(v) = name::parse_pointer(t.as_bytes(), &store.vdir_name) else {
            continue;
        };
        match is_marker {
            Some(n) if n == v.number() => {
                // A marker is made before its version: one newer than the version it names was
                // planted afterwards and proves nothing.
                let vst = store.stat_in_vdir(&v.to_os_string()).ok().flatten();
                let planted_later = vst.is_some_and(|vst| {
                    (mst.st_ctime, mst.st_ctime_nsec) > (vst.st_ctime, vst.st_ctime_nsec)
                });
                if planted_later {
                    sw.warnings.push(format!(
                        "ignored `{}`: it is newer than the version it names",
                        store.parent.join(&ent.name).display()
                    ));
                } else {
                    sw.markers.insert(n, ent.name);
                }
            }
            Some(_) => {}
            None => sw.pointer_temps.push(ent.name),
        }
    }
    Ok(sw)
}

/// Finds (and unless `dry_run` removes) the leftovers of crashed publishes. Lock held.
/// Returns removed paths and bytes.
pub(crate) fn sweep_leftovers(
    store: &Store,
    current: &Current,
    dry_run: bool,
) -> Result<(Vec<PathBuf>, u64, Vec<String>)> {
    sweep_listed(store, current, dry_run, &store.list()?)
}

/// [`sweep_leftovers`] with the versions directory already listed (`listing`), so retention
/// reads the history once.
fn sweep_listed(
    store: &Store,
    current: &Current,
    dry_run: bool,
    listing: &[Entry],
) -> Result<(Vec<PathBuf>, u64, Vec<String>)> {
    let sw = markers(store)?;
    let mut removed = Vec::new();
    let mut bytes = 0u64;
    let cur = current.number();
    for (&n, marker) in &sw.markers {
        if n == cur {
            // Cannot happen through atomwrite (the marker is renamed over DST); never touch the
            // current version whatever the evidence says.
            continue;
        }
        for x in version_names(store, n)? {
            if let Some(st) = store.stat_in_vdir(&x)? {
                bytes += remove_or_measure(store, &x, &st, dry_run)?;
                removed.push(store.path_of(&x));
            }
        }
        if !dry_run {
            remove_beside_dst(store, marker)?;
        }
        removed.push(store.parent.join(marker));
    }
    for t in &sw.pointer_temps {
        if !dry_run {
            remove_beside_dst(store, t)?;
        }
        removed.push(store.parent.join(t));
    }
    for ent in listing {
        if name::parse_staging(&ent.name).is_some()
            && ent.kind == FileType::Directory
            && let Some(st) = store.stat_in_vdir(&ent.name)?
        {
            bytes += remove_or_measure(store, &ent.name, &st, dry_run)?;
            removed.push(store.path_of(&ent.name));
        }
    }
    if !removed.is_empty() && !dry_run {
        // The removals are durable, so a power loss cannot bring a leftover back.
        store.sync_vdir()?;
        store.sync_parent()?;
    }
    Ok((removed, bytes, sw.warnings))
}

/// The names version `n` may have in the versions directory: its file and directory versions
/// and their manifests, each once.
fn version_names(store: &Store, n: u64) -> Result<Vec<OsString>> {
    let mut names: Vec<OsString> = Vec::new();
    for dir in [false, true] {
        let v = store.version_name(n, dir)?.to_os_string();
        for x in [v.clone(), super::store::manifest_name(&v)] {
            // A destination without an extension names its file and directory versions alike.
            if !names.contains(&x) {
                names.push(x);
            }
        }
    }
    Ok(names)
}

/// Removes the entry `name` (stat `st`) of the versions directory, or under `dry_run` only
/// measures it; returns its bytes.
fn remove_or_measure(store: &Store, name: &OsStr, st: &rfs::Stat, dry_run: bool) -> Result<u64> {
    Ok(if dry_run {
        entry_bytes(store, name, st)
    } else {
        remove_entry(store.vfd(), name, &store.path_of(name), st)?
    })
}

/// The caller, or the owner of the versions directory.
fn trusted_owner(store: &Store, uid: u32) -> bool {
    let me = rustix::process::geteuid().as_raw();
    uid == me
        || store
            .vdir_fd
            .as_ref()
            .and_then(|fd| rfs::fstat(&**fd).ok())
            .is_some_and(|st| st.st_uid == uid)
}

fn remove_beside_dst(store: &Store, name: &OsStr) -> Result<()> {
    match rfs::unlinkat(&*store.parent_fd, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(Error::new(
            Op::RemoveTemp,
            store.parent.join(name),
            crate::error::errno(e),
        )),
    }
}

/// Bytes of regular files under `name` (a dry run's estimate; a tree is walked fd-relative).
fn entry_bytes(store: &Store, name: &OsStr, st: &rfs::Stat) -> u64 {
    fn walk(dir: &std::os::fd::OwnedFd, depth: usize) -> u64 {
        let Ok(entries) = list_dir(dir, std::path::Path::new(".")) else {
            return 0;
        };
        entries
            .iter()
            .map(
                |e| match rfs::statat(dir, &e.name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                        st.st_size as u64
                    }
                    Ok(st)
                        if FileType::from_raw_mode(st.st_mode) == FileType::Directory
                            && depth < 4096 =>
                    {
                        rfs::openat(dir, &e.name, super::store::dir_flags(), rfs::Mode::empty())
                            .map(|fd| walk(&fd, depth + 1))
                            .unwrap_or(0)
                    }
                    _ => 0,
                },
            )
            .sum()
    }
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => st.st_size as u64,
        FileType::Directory => rfs::openat(
            &**store.vfd(),
            name,
            super::store::dir_flags(),
            rfs::Mode::empty(),
        )
        .map(|fd| walk(&fd, 0))
        .unwrap_or(0),
        _ => 0,
    }
}

/// Retention after a publish of `new` over `previous` (lock held): leftovers first, then history
/// beyond the newest `keep` (never `new`, never `previous`, never above `new`, never without an
/// atomwrite manifest naming it). One listing of the versions directory (shared with the
/// leftover sweep).
pub(crate) fn retain(
    store: &Store,
    new: &VersionName,
    previous: u64,
    keep: usize,
) -> Result<(Vec<PathBuf>, u64, Vec<String>)> {
    let current = Current::Version(new.clone());
    // One listing of the versions directory for the leftovers and the history.
    let listing = store.list()?;
    let (mut removed, mut bytes, mut warnings) = sweep_listed(store, &current, false, &listing)?;
    let swept: std::collections::HashSet<PathBuf> = removed.iter().cloned().collect();
    let keep = keep.max(2);
    let mut history: Vec<(VersionName, OsString)> = listing
        .into_iter()
        .filter(|e| !swept.contains(&store.path_of(&e.name)))
        .filter_map(|e| {
            let v = VersionName::parse(e.name.as_bytes())?;
            (v.number() < new.number()).then_some((v, e.name))
        })
        .collect();
    history.sort_by(|a, b| b.0.cmp(&a.0));
    let mut kept = 1; // the new version
    let mut removed_any = false;
    for (v, fname) in history {
        if v.number() == previous || kept < keep {
            kept += 1;
            continue;
        }
        match store.read_manifest(&fname) {
            Ok(m) if m.name == v.to_string() => {
                let (r, b) = store.remove_version(&fname)?;
                removed.extend(r);
                bytes += b;
                removed_any = true;
            }
            _ => warnings.push(format!(
                "kept `{}`: no manifest written by atomwrite names it",
                store.path_of(&fname).display()
            )),
        }
    }
    if removed_any {
        // Makes the removals durable.
        store.sync_vdir()?;
    }
    Ok((removed, bytes, warnings))
}
