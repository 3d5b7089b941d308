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
    /// The durability level the commit honoured: `"full"`, `"integrity"` or `"none"`.
    pub durability: &'static str,
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
