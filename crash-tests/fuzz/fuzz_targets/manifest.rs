//! `Manifest::from_json` (sidecar manifests are read from disk: untrusted bytes): never panics;
//! whatever it accepts has the current format tag and survives parse -> to_json -> parse
//! unchanged, and to_json is a fixed point (the same text twice).
#![no_main]

use atomwrite::manifest::{MANIFEST_FORMAT, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Manifest::from_json(data) else {
        return;
    };
    assert_eq!(m.format, MANIFEST_FORMAT);
    let json = m.to_json();
    let again = Manifest::from_json(json.as_bytes()).expect("to_json output must parse");
    assert_eq!(again, m);
    assert_eq!(again.to_json(), json);
});
