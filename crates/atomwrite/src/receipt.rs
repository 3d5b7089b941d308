//! [`Receipt`]: what a commit produced, and the run id.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::SystemTime;

use serde::Serialize;

/// What a successful [`commit`](crate::AtomicFile::commit) produced.
///
/// The receipt describes the bytes that were made visible (and, under
/// [`Durability::Full`](crate::Durability::Full), durable) at [`path`](Receipt::path). It does not
/// promise that the file still holds them later: another writer may have replaced it since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The final path written: the destination, or the target of a followed symlink.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex sha256 of the contents, computed while they were written (re-read once at
    /// commit only if the writer seeked backwards). `None` when checksums were turned off.
    pub sha256: Option<String>,
    /// When the commit completed.
    #[serde(serialize_with = "ser_time")]
    pub written_at: SystemTime,
    /// The run id (see [`Options::run_id`](crate::Options::run_id)).
    pub run_id: String,
    /// The durability the commit honoured: what was asked for, lowered to
    /// [`None`](crate::DurabilityHonoured::None) on a filesystem that keeps nothing across power
    /// loss (tmpfs, network, FUSE; the classification `doctor` reports). Serialized as
    /// `"full"`, `"integrity"`, `"none"` (or `"store"`).
    pub durability: crate::DurabilityHonoured,
    /// `Some` when the new file's owner or group differs from the file it replaced (typically an
    /// unprivileged writer, who cannot give a file away: `fchown` fails with `EPERM`). `None`
    /// for a new file and when owner and group were kept.
    pub owner_changed: Option<OwnerChange>,
    /// Facts only an object store has (its key, ETag, multipart); `None` for a local write.
    pub object: Option<ObjectFacts>,
}

/// What an object store reports about an object it stored (see [`Receipt::object`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectFacts {
    /// The object's key inside its bucket or container.
    pub key: String,
    /// The store's ETag of the object, when it reports one.
    pub e_tag: Option<String>,
    /// True when the bytes went up as a multipart upload (visible only when it completed).
    pub multipart: bool,
}

/// The owner and group of a replaced file, and those its replacement got instead (see
/// [`Receipt::owner_changed`]).
///
/// When the owner or group was not kept, set-uid and set-gid bits are dropped, as the kernel
/// drops them on `chown` (unless the mode was set explicitly with
/// [`Options::mode`](crate::Options::mode)): a writer never gets a set-id file running as
/// itself from someone else's set-id file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OwnerChange {
    /// Owner uid of the replaced file.
    pub from_uid: u32,
    /// Group gid of the replaced file.
    pub from_gid: u32,
    /// Owner uid of the new file.
    pub to_uid: u32,
    /// Group gid of the new file.
    pub to_gid: u32,
    /// Whether the replaced file's set-uid/set-gid bits were dropped because of the change.
    pub setid_dropped: bool,
}

impl Receipt {
    /// `written_at` as RFC 3339 in UTC with microseconds, e.g. `2026-11-26T06:30:00.123456Z`.
    pub fn written_at_rfc3339(&self) -> String {
        rfc3339(self.written_at)
    }
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// Formats a time as RFC 3339 in UTC with microseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// The run id of this process: `ATOMWRITE_RUN_ID` when set, else a random 128-bit hex id
/// generated once.
pub fn process_run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| match std::env::var("ATOMWRITE_RUN_ID") {
        Ok(v) if !v.is_empty() => v,
        _ => new_run_id(),
    })
}

/// A fresh random run id (32 lower-case hex digits).
pub fn new_run_id() -> String {
    let mut b = [0u8; 16];
    crate::tempname::fill_random(&mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_with_z() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123456Z");
    }

    #[test]
    fn run_ids_are_random_hex() {
        let a = new_run_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_run_id());
    }
}
