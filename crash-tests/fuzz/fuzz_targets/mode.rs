//! `parse_mode` (`--mode`): never panics; every accepted mode is <= 0o7777; a symbolic mode
//! evaluates exactly as GNU `install -m` does (reference: `atomwrite_fuzz::gnu_mode`); an
//! octal mode is accepted exactly when it is `(0o)?[0-7]{1,5}` and at most 7777.
#![no_main]

use atomwrite_fuzz::{gnu_mode, parse::parse_mode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return; // clap hands the parser a &str; non-UTF-8 argv is refused before it
    };
    let ours = parse_mode(s);
    if let Ok(m) = ours {
        assert!(m <= 0o7777, "{s:?} gave {m:o}");
    }
    let expected = if s.starts_with(|c: char| c.is_ascii_digit()) {
        // atomwrite's octal rule: at most five digits, optional `0o`; GNU for the value.
        let digits = s.strip_prefix("0o").unwrap_or(s);
        if (1..=5).contains(&digits.len()) && digits.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
            gnu_mode::install_m(digits.as_bytes())
        } else {
            None
        }
    } else {
        gnu_mode::install_m(s.as_bytes())
    };
    assert_eq!(ours.ok(), expected, "{s:?}");
});
