//! Pending markers (`.{DST}.v{N}.pending`) and pointer targets (`{DST}.versions/vN`): names and
//! link targets read from a directory others may write. `parse_pointer` accepts exactly
//! `{vdir}/{version name}` (never `..`, never absolute); `parse_marker` accepts exactly what
//! `marker_name` makes for that destination; every marker made fits NAME_MAX and parses back;
//! a marker of one destination is never taken for another's (when neither name was cut).
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use atomwrite::__fuzz::{marker_name, parse_marker, parse_pointer};
use atomwrite::versions::MAX_VERSION;
use libfuzzer_sys::fuzz_target;

/// `.` + `.v` + 10 digits + `.pending`.
const MARKER_OVERHEAD: usize = 21;

fuzz_target!(|data: &[u8]| {
    // Layout: NAME_MAX selector, destination name, 0, candidate name or link target.
    let Some((&b, rest)) = data.split_first() else {
        return;
    };
    let name_max = MARKER_OVERHEAD + usize::from(b) % (256 - MARKER_OVERHEAD);
    let (dst, cand) = match rest.iter().position(|&c| c == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let dst_os = OsStr::from_bytes(dst);
    let mut vdir = dst.to_vec();
    vdir.extend_from_slice(b".versions");
    let vdir_os = OsStr::from_bytes(&vdir);

    if let Some(v) = parse_pointer(cand, vdir_os) {
        let mut want = vdir.clone();
        want.push(b'/');
        want.extend_from_slice(v.to_string().as_bytes());
        assert_eq!(cand, &want[..]);
        assert!(!cand.starts_with(b"/") || dst.starts_with(b"/"));
    }
    if let Some(n) = parse_marker(cand, dst_os, name_max) {
        assert!(n >= 1);
        assert_eq!(marker_name(dst_os, name_max, n).as_bytes(), cand);
    }

    let n = cand.get(..8).map_or(1, |x| {
        u64::from_le_bytes(x.try_into().unwrap()) % MAX_VERSION + 1
    });
    let m = marker_name(dst_os, name_max, n);
    assert!(m.len() <= name_max, "{} > {name_max}", m.len());
    assert_eq!(parse_marker(m.as_bytes(), dst_os, name_max), Some(n));
    let uncut = |d: &[u8]| d.len() <= name_max - MARKER_OVERHEAD;
    if dst != cand && uncut(dst) && uncut(cand) {
        assert_eq!(
            parse_marker(m.as_bytes(), OsStr::from_bytes(cand), name_max),
            None
        );
    }
    if let Some(v) = atomwrite::versions::VersionName::new(n, "") {
        let mut t = vdir.clone();
        t.push(b'/');
        t.extend_from_slice(v.to_string().as_bytes());
        assert_eq!(parse_pointer(&t, vdir_os), Some(v));
    }
});
