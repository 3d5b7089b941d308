//! `Location::parse` (every command-line destination): never panics; a path is the argument
//! unchanged; a URL is the argument unchanged with a supported, lower-case scheme followed by
//! `://`; an error's message is one line naming the `./ARG` escape; `./ARG` and `/ARG` are
//! always local paths (the documented escape hatch never fails).
#![no_main]

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use atomwrite::{Location, SUPPORTED_SCHEMES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let arg = OsStr::from_bytes(data);
    match Location::parse(arg) {
        Ok(Location::Path(p)) => assert_eq!(p.as_os_str(), arg),
        Ok(Location::Url { scheme, url }) => {
            assert_eq!(url.as_bytes(), data);
            assert!(SUPPORTED_SCHEMES.contains(&scheme.as_str()), "{scheme}");
            let head = format!("{scheme}://");
            assert!(
                data.len() >= head.len()
                    && data[..head.len()].eq_ignore_ascii_case(head.as_bytes()),
                "{url:?}"
            );
        }
        Ok(other) => panic!("unexpected variant {other:?}"),
        Err(e) => {
            assert_eq!(e.input(), arg);
            let msg = e.to_string();
            assert!(!msg.contains('\n') || data.contains(&b'\n'), "{msg:?}");
            assert!(msg.contains("to mean a local file"), "{msg:?}");
            if let Some(s) = e.suggestion() {
                // A suggestion is itself accepted as a URL.
                let l = Location::parse(OsStr::new(&s));
                assert!(matches!(l, Ok(Location::Url { .. })), "{s:?}: {l:?}");
            }
        }
    }
    for prefix in [&b"./"[..], b"/"] {
        let mut v = prefix.to_vec();
        v.extend_from_slice(data);
        let escaped = OsString::from_vec(v);
        assert_eq!(
            Location::parse(&escaped),
            Ok(Location::Path(escaped.clone().into())),
            "{escaped:?}"
        );
    }
});
