//! The synchronous wrappers the CLI uses, called from plain (non-async) code.

use atomwrite::object::{PublishOptions, WriteOptions, blocking};

fn check(base: &str) {
    let url = format!("{base}/blocking.txt");
    let r = blocking::write_url(&url, &b"hello"[..], &WriteOptions::new().manifest(true)).unwrap();
    assert_eq!(r.size, 5);
    let mut out = Vec::new();
    assert_eq!(blocking::read_url(&url, &mut out).unwrap(), 5);
    assert_eq!(out, b"hello");
    assert!(blocking::verify_url(&url).unwrap().ok);
    let e = blocking::write_url(&url, &b"again"[..], &WriteOptions::new().create_only(true))
        .unwrap_err();
    assert!(e.is_conflict(), "{e}");

    let v = format!("{base}/blocking-versioned");
    assert!(blocking::latest_url(&v).unwrap().is_none());
    for i in 0..3u64 {
        let body = format!("v{}", i + 1);
        let r = blocking::publish_url(&v, body.as_bytes(), &PublishOptions::new().expect(Some(i)))
            .unwrap();
        assert_eq!(r.version, Some(i + 1));
    }
    let e = blocking::publish_url(&v, &b"late"[..], &PublishOptions::new().expect(Some(2)))
        .unwrap_err();
    assert!(e.is_conflict(), "{e}");
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(blocking::latest_url(&v).unwrap().unwrap().version, 3);
    assert_eq!(blocking::versions_url(&v).unwrap().len(), 3);
    let rep = blocking::retain_url(&v, 1).unwrap();
    assert_eq!(rep.deleted, vec![1]);
    assert!(blocking::verify_url(&v).unwrap().ok);
}

#[test]
fn blocking_memory() {
    check("memory:///blocking-test");
    // a second call in the same process sees the same memory store
    let mut out = Vec::new();
    blocking::read_url("memory:///blocking-test/blocking.txt", &mut out).unwrap();
    assert_eq!(out, b"hello");
}

#[test]
fn blocking_file() {
    let d = tempfile::tempdir().unwrap();
    check(&format!("file://{}", d.path().display()));
    // the version objects are plain files under KEY.versions/
    let p = d.path().join("blocking-versioned.versions/v0000000003");
    assert_eq!(std::fs::read(p).unwrap(), b"v3");
}
