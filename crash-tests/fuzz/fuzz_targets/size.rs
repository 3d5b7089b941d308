//! `parse_size` (`--expected-size`): never panics; exact arithmetic: `N` is N bytes and
//! `N<unit>` is N x unit for every u64 N (an error exactly when that exceeds u64); a trailing
//! zero in the fraction changes nothing; a fraction lies between its integer neighbours.
#![no_main]

use atomwrite_fuzz::parse::parse_size;
use libfuzzer_sys::fuzz_target;

const UNITS: [(&str, u128); 17] = [
    ("", 1),
    ("B", 1),
    ("k", 1 << 10),
    ("K", 1 << 10),
    ("KiB", 1 << 10),
    ("M", 1 << 20),
    ("MiB", 1 << 20),
    ("G", 1 << 30),
    ("GiB", 1 << 30),
    ("T", 1 << 40),
    ("TiB", 1 << 40),
    ("kB", 1_000),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    (" M", 1 << 20),
];

fuzz_target!(|data: &[u8]| {
    // Structured part: the first 9 bytes choose N and a unit.
    if data.len() >= 9 {
        let n = u64::from_le_bytes(data[..8].try_into().unwrap());
        let (unit, mult) = UNITS[usize::from(data[8]) % UNITS.len()];
        let want = u64::try_from(u128::from(n) * mult).ok();
        assert_eq!(parse_size(&format!("{n}{unit}")).ok(), want, "{n}{unit}");
    }
    // Free-form part: the whole input as text.
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let r = parse_size(s);
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) {
        assert_eq!(r.clone().ok(), t.parse::<u64>().ok(), "{s:?}");
    }
    let Ok(v) = r else { return };
    let Some(dot) = t.find('.') else { return };
    let frac_end = t[dot + 1..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(t.len(), |i| dot + 1 + i);
    let (int, unit) = (&t[..dot], &t[frac_end..]);
    if frac_end - dot - 1 < 24 {
        let more = format!("{}0{}", &t[..frac_end], unit);
        assert_eq!(parse_size(&more), Ok(v), "{s:?} vs {more:?}");
    }
    let lo = parse_size(&format!("{}{unit}", if int.is_empty() { "0" } else { int })).unwrap();
    assert!(lo <= v, "{s:?}: {v} < {lo}");
    if let Some(next) = int.parse::<u64>().unwrap_or(0).checked_add(1)
        && let Ok(hi) = parse_size(&format!("{next}{unit}"))
    {
        assert!(v <= hi, "{s:?}: {v} > {hi}");
    }
});
