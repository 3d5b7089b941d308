//! The only place that chooses an operating system. Every platform file offers the same
//! items; the rest of the crate never sees a `cfg`.
//!
//! Linux gets the fast paths (`O_TMPFILE`, `renameat2`, `fallocate`, `FICLONE`,
//! `copy_file_range`, `syncfs`); other Unix gets the portable POSIX path, which Linux also runs
//! when asked (`Options::portable`, `ATOMWRITE_PORTABLE=1`) or when a filesystem refuses a fast
//! path. Windows is not supported yet: it would be one more file here.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(all(unix, not(target_os = "linux")))]
mod unix;
#[cfg(all(unix, not(target_os = "linux")))]
pub(crate) use unix::*;

#[cfg(not(unix))]
compile_error!(
    "atomwrite supports Unix only for now; Windows support would be a new file in src/sys/"
);

use std::collections::HashSet;
use std::sync::Mutex;

/// A fast path that a filesystem type may refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Feature {
    Tmpfile,
    RenameNoreplace,
}

static REFUSED: Mutex<Option<HashSet<(u64, Feature)>>> = Mutex::new(None);

/// Remembers that filesystems of type `fs_type` refused `feature` (recognised by errno), so the
/// next write there goes straight to the portable path.
pub(crate) fn remember_refused(fs_type: u64, feature: Feature) {
    let mut g = REFUSED.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(HashSet::new)
        .insert((fs_type, feature));
}

/// Whether filesystems of type `fs_type` are known to refuse `feature`.
pub(crate) fn known_refused(fs_type: u64, feature: Feature) -> bool {
    let g = REFUSED.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref().is_some_and(|s| s.contains(&(fs_type, feature)))
}

/// What the filesystem holding a directory can do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FsInfo {
    /// `statfs.f_type` (0 where the platform does not report one).
    pub fs_type: u64,
    /// The longest file name, in bytes (`f_namelen` / `f_namemax`).
    pub name_max: usize,
}
