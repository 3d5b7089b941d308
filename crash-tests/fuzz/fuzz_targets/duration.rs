//! `parse_duration` (`clean --older-than`): never panics; a bare number is exactly that many
//! seconds (and refused only when it exceeds u64); whatever is accepted, printed back with
//! humantime, parses to the same duration.
#![no_main]

use std::time::Duration;

use atomwrite_fuzz::parse::parse_duration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let r = parse_duration(s);
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) {
        assert_eq!(
            r.clone().ok(),
            t.parse::<u64>().ok().map(Duration::from_secs),
            "{s:?}"
        );
    }
    if let Ok(d) = r {
        let shown = humantime::format_duration(d).to_string();
        assert_eq!(parse_duration(&shown), Ok(d), "{s:?} -> {shown:?}");
    }
});
