//! `VersionName::parse` (names read from `DST.versions/` and object-store listings): never
//! panics; whatever it accepts prints back to exactly the same bytes, has a number in
//! 1..=MAX_VERSION and a valid suffix, and is not out of range; every valid (number, suffix)
//! pair built from the input round-trips through its name.
#![no_main]

use atomwrite::versions::{MAX_VERSION, VersionName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let out_of_range = VersionName::is_out_of_range(data);
    if let Some(v) = VersionName::parse(data) {
        assert_eq!(v.to_string().as_bytes(), data);
        assert!((1..=MAX_VERSION).contains(&v.number()));
        let s = v.suffix();
        assert!(s.is_empty() || (s.len() > 1 && s.starts_with('.') && !s.contains('/')));
        assert!(!s.ends_with(".manifest.json"));
        assert!(!out_of_range, "{v} also counted as out of range");
        assert_eq!(v.to_os_string().as_encoded_bytes(), data);
    }
    // Structured: 8 bytes choose a number, the rest (if UTF-8) a suffix.
    if data.len() >= 8 {
        let n = u64::from_le_bytes(data[..8].try_into().unwrap()) % (MAX_VERSION + 2);
        if let Ok(suffix) = std::str::from_utf8(&data[8..]) {
            match VersionName::new(n, suffix) {
                Some(v) => {
                    assert_eq!((v.number(), v.suffix()), (n, suffix));
                    assert_eq!(VersionName::parse(v.to_string().as_bytes()), Some(v));
                }
                None => assert!(
                    n == 0
                        || n > MAX_VERSION
                        || !(suffix.is_empty() || suffix.starts_with('.'))
                        || suffix == "."
                        || suffix.contains('/')
                        || suffix.ends_with(".manifest.json"),
                    "({n}, {suffix:?}) refused"
                ),
            }
        }
    }
});
