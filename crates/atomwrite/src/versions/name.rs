//! The one grammar of version names, pending markers, staging directories and pointer targets.
//!
//! - a version: `v` + exactly 10 digits + an optional suffix (`.csv`, `.tar.gz`; empty for
//!   directories), numbers 1 to 9,999,999,999;
//! - a pending marker: `.{DST}.v{N}.pending` beside `DST`, a symlink to version N created before
//!   N's first byte is written and renamed over `DST` as the pointer swap itself, so it exists
//!   exactly while N has not been made current: a crash leftover is told from a version that was
//!   ever current by evidence written atomically with the swap, never by its number alone;
//! - a staging directory of a directory version: an atomwrite temp name embedding a version name;
//! - the pointer: a symlink whose target is exactly `{DST}.versions/{version}`.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::manifest::MANIFEST_SUFFIX;

/// Digits in a version number.
pub const DIGITS: usize = 10;
/// The largest version number (10 digits).
pub const MAX_VERSION: u64 = 9_999_999_999;

/// A version's file name: `v` + 10 digits + an optional suffix (`v0000000003.csv`).
///
/// The grammar is exact: fewer or more than 10 digits, a zero number, a suffix that does not start
/// with `.`, contains `/` or is not UTF-8, and manifest names (`….manifest.json`) are not versions.
///
/// ```
/// use atomwrite::versions::VersionName;
/// let v = VersionName::parse(b"v0000000003.csv").unwrap();
/// assert_eq!(v.number(), 3);
/// assert_eq!(v.suffix(), ".csv");
/// assert_eq!(v.to_string(), "v0000000003.csv");
/// assert!(VersionName::parse(b"v18446744073709551615").is_none()); // out of range: never wrapped
/// assert!(VersionName::parse(b"v0000000003.csv.manifest.json").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionName {
    number: u64,
    suffix: String,
}

impl VersionName {
    /// The name of version `number` with `suffix` (`""` or starting with `.`). `None` when the
    /// number is 0 or above [`MAX_VERSION`], or the suffix is not a valid one.
    pub fn new(number: u64, suffix: &str) -> Option<VersionName> {
        let ok_suffix = suffix.is_empty()
            || (suffix.starts_with('.') && suffix.len() > 1 && !suffix.contains('/'));
        if number == 0 || number > MAX_VERSION || !ok_suffix || suffix.ends_with(MANIFEST_SUFFIX) {
            return None;
        }
        Some(VersionName {
            number,
            suffix: suffix.to_string(),
        })
    }

    /// Parses a file name; `None` when it is not exactly a version name.
    pub fn parse(name: &[u8]) -> Option<VersionName> {
        let rest = name.strip_prefix(b"v")?;
        if rest.len() < DIGITS || !rest[..DIGITS].iter().all(u8::is_ascii_digit) {
            return None;
        }
        let suffix = std::str::from_utf8(&rest[DIGITS..]).ok()?;
        // Safe: 10 ASCII digits always parse into a u64.
        let number: u64 = std::str::from_utf8(&rest[..DIGITS]).ok()?.parse().ok()?;
        VersionName::new(number, suffix)
    }

    /// Whether `name` looks like a version name whose number has more than 10 digits: such a
    /// name is ignored (with a warning), never wrapped into a small number.
    pub fn is_out_of_range(name: &[u8]) -> bool {
        let Some(rest) = name.strip_prefix(b"v") else {
            return false;
        };
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        digits > DIGITS && (rest.len() == digits || rest[digits] == b'.')
    }

    /// The version number (1 to [`MAX_VERSION`]).
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The suffix carried over from the destination (`.csv`), empty for directories.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// The file name as an `OsString`.
    pub fn to_os_string(&self) -> OsString {
        OsString::from(self.to_string())
    }
}

impl fmt::Display for VersionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{:010}{}", self.number, self.suffix)
    }
}

/// `.csv` for `report.csv`, `.tar.gz` for `x.tar.gz`, empty for `data`, `.hidden` or a
/// non-UTF-8 extension.
pub(crate) fn extension_of(name: &OsStr) -> String {
    let p = std::path::Path::new(name);
    let Some(ext) = p.extension().and_then(|e| e.to_str()) else {
        return String::new();
    };
    let stem = std::path::Path::new(p.file_stem().unwrap_or_default());
    match stem.extension().and_then(|e| e.to_str()) {
        Some("tar") => format!(".tar.{ext}"),
        _ => format!(".{ext}"),
    }
}

/// Bytes a pending marker adds to the embedded destination name: `.` + `.v` + 10 + `.pending`.
const MARKER_OVERHEAD: usize = 1 + 2 + DIGITS + 8;

fn marker_embedded(dst_name: &OsStr, name_max: usize) -> &[u8] {
    let b = dst_name.as_bytes();
    let mut keep = b.len().min(name_max.saturating_sub(MARKER_OVERHEAD));
    if let Ok(s) = std::str::from_utf8(b) {
        while keep > 0 && !s.is_char_boundary(keep) {
            keep -= 1;
        }
    }
    &b[..keep]
}

/// The pending marker of version `n` of `dst_name`: `.{dst_name}.v{n}.pending`, a symlink beside
/// `DST` pointing at the version, created before the version's first byte and renamed over `DST`
/// as the pointer swap itself. It exists exactly as long as version `n` has not been made current
/// by its publish — evidence written atomically with the swap (and durable with it).
pub(crate) fn marker_name(dst_name: &OsStr, name_max: usize, n: u64) -> OsString {
    let mut out = vec![b'.'];
    out.extend_from_slice(marker_embedded(dst_name, name_max));
    out.extend_from_slice(format!(".v{n:010}.pending").as_bytes());
    OsString::from_vec(out)
}

/// The version number of a pending marker of exactly `dst_name` (not of `dst_name.b`).
pub(crate) fn parse_marker(name: &[u8], dst_name: &OsStr, name_max: usize) -> Option<u64> {
    let rest = name.strip_prefix(b".")?.strip_suffix(b".pending")?;
    let split = rest.len().checked_sub(DIGITS + 2)?;
    let (emb, tail) = rest.split_at(split);
    let digits = tail.strip_prefix(b".v")?;
    if emb != marker_embedded(dst_name, name_max) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (n > 0).then_some(n)
}

/// The version a staging directory (`.v0000000004.<random>.tmp`) was being built for.
pub(crate) fn parse_staging(name: &OsStr) -> Option<VersionName> {
    VersionName::parse(crate::tempname::embedded_name(name)?)
}

/// The version a pointer target names: exactly `{vdir_name}/{version}`; `None` for anything else
/// (a foreign symlink, `../x`, an absolute path).
pub(crate) fn parse_pointer(target: &[u8], vdir_name: &OsStr) -> Option<VersionName> {
    let rest = target
        .strip_prefix(vdir_name.as_bytes())?
        .strip_prefix(b"/")?;
    VersionName::parse(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn version_names_round_trip() {
        let v = VersionName::new(3, ".csv").unwrap();
        assert_eq!(v.to_string(), "v0000000003.csv");
        assert_eq!(VersionName::parse(b"v0000000003.csv"), Some(v));
        assert_eq!(VersionName::parse(b"v0000000003").unwrap().number(), 3);
        assert_eq!(
            VersionName::parse(b"v9999999999").unwrap().number(),
            MAX_VERSION
        );
        for bad in [
            &b"v12345678901"[..],
            b"v18446744073709551615",
            b"v0000000003.csv.manifest.json",
            b"v000003.csv",
            b"v0000000003x",
            b"v0000000000",
            b"v0000000003.",
            b"v0000000003.a/b",
            b".lock",
            b"",
            b"v",
        ] {
            assert_eq!(
                VersionName::parse(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn out_of_range_names_are_recognised_not_wrapped() {
        assert!(VersionName::is_out_of_range(b"v18446744073709551615"));
        assert!(VersionName::is_out_of_range(b"v12345678901.csv"));
        assert!(!VersionName::is_out_of_range(b"v0000000001.csv"));
        assert!(!VersionName::is_out_of_range(b"v123456789012x"));
    }

    #[test]
    fn extensions() {
        assert_eq!(extension_of(OsStr::new("a.csv")), ".csv");
        assert_eq!(extension_of(OsStr::new("a.tar.gz")), ".tar.gz");
        assert_eq!(extension_of(OsStr::new("my.data.json")), ".json");
        assert_eq!(extension_of(OsStr::new("data")), "");
        assert_eq!(extension_of(OsStr::new(".hidden")), "");
    }

    #[test]
    fn markers_round_trip_and_belong_to_one_destination() {
        let m = marker_name(OsStr::new("a"), 255, 12);
        assert_eq!(m, OsString::from(".a.v0000000012.pending"));
        assert_eq!(parse_marker(m.as_bytes(), OsStr::new("a"), 255), Some(12));
        assert_eq!(parse_marker(m.as_bytes(), OsStr::new("a.b"), 255), None);
        let mb = marker_name(OsStr::new("a.b"), 255, 3);
        assert_eq!(parse_marker(mb.as_bytes(), OsStr::new("a"), 255), None);
        assert_eq!(
            parse_marker(b".a.v000000012.pending", OsStr::new("a"), 255),
            None
        );
        assert_eq!(
            parse_marker(b".a.v0000000000.pending", OsStr::new("a"), 255),
            None
        );
        let long = "y".repeat(255);
        let ml = marker_name(OsStr::new(&long), 255, 7);
        assert!(ml.len() <= 255);
        assert_eq!(parse_marker(ml.as_bytes(), OsStr::new(&long), 255), Some(7));
        assert!(VersionName::parse(m.as_bytes()).is_none());
    }

    #[test]
    fn pointers_must_name_their_own_versions_dir() {
        let vd = OsStr::new("a.csv.versions");
        assert_eq!(
            parse_pointer(b"a.csv.versions/v0000000002.csv", vd).map(|v| v.number()),
            Some(2)
        );
        assert_eq!(parse_pointer(b"a.csv.versionsX/v0000000002.csv", vd), None);
        assert_eq!(parse_pointer(b"/etc/hostname", vd), None);
        assert_eq!(parse_pointer(b"a.csv.versions/../v0000000002", vd), None);
        assert_eq!(parse_pointer(b"a.csv.versions/v0000000002/x", vd), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(name in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Some(v) = VersionName::parse(&name) {
                let s = v.to_string();
                prop_assert_eq!(s.as_bytes(), &name[..]);
                prop_assert!(v.number() >= 1 && v.number() <= MAX_VERSION);
            }
            let _ = parse_marker(&name, OsStr::new("a"), 255);
            let _ = VersionName::is_out_of_range(&name);
        }

        #[test]
        fn every_number_formats_and_parses(n in 1u64..=MAX_VERSION) {
            let v = VersionName::new(n, ".txt").unwrap();
            prop_assert_eq!(VersionName::parse(v.to_string().as_bytes()), Some(v));
        }
    }
}
