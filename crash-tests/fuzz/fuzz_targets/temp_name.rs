//! Temp names (`.{name}.{16 random}.tmp`): `is_temp_name` never panics on any bytes and
//! recognises only that shape; for any destination name and NAME_MAX in 22..=255, the temp
//! name fits, is recognised, embeds the longest prefix of the name that fits (cut on a UTF-8
//! boundary when the name is UTF-8) and adds only its fixed-alphabet random part.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use atomwrite::__fuzz::{TEMP_NAME_OVERHEAD, temp_name};
use atomwrite::is_temp_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Any bytes as a directory entry name.
    if is_temp_name(OsStr::from_bytes(data)) {
        assert!(data.len() >= TEMP_NAME_OVERHEAD && data[0] == b'.' && data.ends_with(b".tmp"));
    }

    let Some((&b, name)) = data.split_first() else {
        return;
    };
    let name_max = TEMP_NAME_OVERHEAD + usize::from(b) % (256 - TEMP_NAME_OVERHEAD);
    let t = temp_name(OsStr::from_bytes(name), name_max);
    let t = t.as_bytes();
    assert!(t.len() <= name_max, "{} > {name_max}", t.len());
    assert!(is_temp_name(OsStr::from_bytes(t)));
    let kept = t.len() - TEMP_NAME_OVERHEAD;
    assert_eq!(
        &t[1..1 + kept],
        &name[..kept],
        "embeds a prefix of the name"
    );
    let room = name_max - TEMP_NAME_OVERHEAD;
    match std::str::from_utf8(name) {
        Ok(s) => {
            assert!(
                std::str::from_utf8(t).is_ok(),
                "cut inside a UTF-8 sequence"
            );
            // The longest prefix that fits and ends on a char boundary.
            let best = (0..=room.min(name.len()))
                .rev()
                .find(|&k| s.is_char_boundary(k));
            assert_eq!(Some(kept), best);
        }
        Err(_) => assert_eq!(kept, room.min(name.len())),
    }
    let random = &t[t.len() - 20..t.len() - 4];
    assert!(
        random
            .iter()
            .all(|c| b"abcdefghijklmnopqrstuvwxyz234567".contains(c))
    );
});
