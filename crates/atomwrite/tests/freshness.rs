//! Freshness: sidecar manifests and `verify`, versions behind an atomic `latest` symlink,
//! compare-and-swap between concurrent publishers, directory publish, retention and crash
//! leftovers. Temp dirs are created inside `$TEST_DIR` when it is set.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use atomwrite::{Manifest, Options, Publisher, VerifyStatus};

fn tmp() -> tempfile::TempDir {
    match std::env::var_os("TEST_DIR") {
        Some(d) => {
            fs::create_dir_all(&d).unwrap();
            tempfile::tempdir_in(d).unwrap()
        }
        None => tempfile::tempdir().unwrap(),
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn no_temps(dir: &Path) {
    for n in names(dir) {
        assert!(
            !atomwrite::is_temp_name(n.as_ref()),
            "temporary `{n}` left in {}",
            dir.display()
        );
    }
}

fn version_numbers(dst: &Path) -> Vec<u64> {
    atomwrite::versions(dst)
        .map(|l| l.versions)
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect()
}

// ---------------------------------------------------------------- manifests and verify

#[test]
fn manifest_records_receipt_and_verifies() {
    let d = tmp();
    let p = d.path().join("daily.csv");
    let opts = Options::new().run_id("run-42");
    let r = opts.write(&p, b"a,b\n1,2\n").unwrap();
    let m = atomwrite::write_manifest(&p, &r, &opts).unwrap();
    let on_disk: serde_json::Value =
        serde_json::from_slice(&fs::read(d.path().join("daily.csv.manifest.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk["format"], "atomwrite-manifest/1");
    assert_eq!(on_disk["name"], "daily.csv");
    assert_eq!(on_disk["size"], 8);
    assert_eq!(on_disk["sha256"], r.sha256.clone().unwrap());
    assert_eq!(on_disk["run_id"], "run-42");
    assert_eq!(on_disk["written_at"], r.written_at_rfc3339());
    assert!(on_disk["atomwrite_version"].is_string());
    assert_eq!(m.sha256, r.sha256.unwrap());
    let v = atomwrite::verify(&p);
    assert_eq!(v.status, VerifyStatus::Ok, "{}", v.detail);
    no_temps(d.path());
}

#[test]
fn torn_pair_new_data_old_manifest_is_a_mismatch() {
    let d = tmp();
    let p = d.path().join("x.json");
    let opts = Options::new();
    let r = opts.write(&p, b"{\"v\":1}").unwrap();
    atomwrite::write_manifest(&p, &r, &opts).unwrap();
    // New data committed, "crash" before the manifest.
    atomwrite::write(&p, b"{\"v\":2}").unwrap();
    let v = atomwrite::verify(&p);
    assert_eq!(v.status, VerifyStatus::Mismatch);
    assert!(v.detail.contains("sha256"), "{}", v.detail);
    assert!(!v.detail.contains('\n'));
    // Same size, different bytes: still caught by the hash.
    atomwrite::write(&p, b"{\"v\":3}").unwrap();
    assert_eq!(atomwrite::verify(&p).status, VerifyStatus::Mismatch);
}

#[test]
fn verify_reports_missing_bad_and_foreign_manifests() {
    let d = tmp();
    let a = d.path().join("a.txt");
    atomwrite::write(&a, b"hello").unwrap();
    assert_eq!(atomwrite::verify(&a).status, VerifyStatus::MissingManifest);

    fs::write(d.path().join("a.txt.manifest.json"), b"{not json").unwrap();
    let v = atomwrite::verify(&a);
    assert_eq!(v.status, VerifyStatus::BadManifest);
    assert!(v.detail.contains("not a valid manifest"), "{}", v.detail);

    let mut m: serde_json::Value = serde_json::from_str(
        r#"{"format":"other/9","name":"a.txt","size":5,"sha256":"x","written_at":"t","run_id":"r","atomwrite_version":"0"}"#,
    )
    .unwrap();
    fs::write(d.path().join("a.txt.manifest.json"), m.to_string()).unwrap();
    let v = atomwrite::verify(&a);
    assert_eq!(v.status, VerifyStatus::BadManifest);
    assert!(v.detail.contains("unknown manifest format"), "{}", v.detail);

    // A correct manifest for another file copied next to this one: name mismatch.
    let b = d.path().join("b.txt");
    let r = atomwrite::write(&b, b"hello").unwrap();
    atomwrite::write_manifest(&b, &r, &Options::new()).unwrap();
    fs::copy(
        d.path().join("b.txt.manifest.json"),
        d.path().join("a.txt.manifest.json"),
    )
    .unwrap();
    let v = atomwrite::verify(&a);
    assert_eq!(v.status, VerifyStatus::Mismatch);
    assert!(v.detail.contains("describes `b.txt`"), "{}", v.detail);

    // Data gone, manifest present.
    m["format"] = "atomwrite-manifest/1".into();
    fs::remove_file(&b).unwrap();
    assert_eq!(atomwrite::verify(&b).status, VerifyStatus::MissingData);
}

#[test]
fn verify_streams_a_large_file() {
    let d = tmp();
    let p = d.path().join("big.bin");
    let opts = Options::new().durability(atomwrite::Durability::None);
    let r = opts
        .write_with(&p, |f| {
            let chunk = vec![7u8; 1 << 20];
            for _ in 0..24 {
                f.write_all(&chunk)?;
            }
            Ok(())
        })
        .unwrap();
    atomwrite::write_manifest(&p, &r, &opts).unwrap();
    let v = atomwrite::verify(&p);
    assert_eq!(v.status, VerifyStatus::Ok);
    assert_eq!(v.size, Some(24 << 20));
}

// ---------------------------------------------------------------- versions

#[test]
fn first_publish_creates_relative_symlink_version_and_manifest() {
    let d = tmp();
    let dst = d.path().join("report.csv");
    let p = Publisher::new()
        .options(Options::new().run_id("r1"))
        .publish(&dst, b"id\n1\n")
        .unwrap();
    assert_eq!((p.version, p.previous, p.migrated), (1, 0, None));
    let target = fs::read_link(&dst).unwrap();
    assert_eq!(target, PathBuf::from("report.csv.versions/v0000000001.csv"));
    assert!(target.is_relative());
    assert_eq!(fs::read(&dst).unwrap(), b"id\n1\n");
    let m = Manifest::read(
        &d.path()
            .join("report.csv.versions/v0000000001.csv.manifest.json"),
    )
    .unwrap();
    assert_eq!(
        (m.name.as_str(), m.size, m.run_id.as_str()),
        ("v0000000001.csv", 5, "r1")
    );
    let l = atomwrite::latest(&dst).unwrap().unwrap();
    assert_eq!(l.version, 1);
    assert_eq!(l.path, d.path().join("report.csv.versions/v0000000001.csv"));
    assert_eq!(atomwrite::verify(&dst).status, VerifyStatus::Ok);
    // Moving the whole directory keeps the pointer valid (relative target).
    let moved = d.path().join("moved");
    fs::create_dir(&moved).unwrap();
    fs::rename(&dst, moved.join("report.csv")).unwrap();
    fs::rename(
        d.path().join("report.csv.versions"),
        moved.join("report.csv.versions"),
    )
    .unwrap();
    assert_eq!(fs::read(moved.join("report.csv")).unwrap(), b"id\n1\n");
    no_temps(d.path());
}

#[test]
fn regular_file_is_migrated_into_the_first_version() {
    let d = tmp();
    let dst = d.path().join("state.json");
    let opts = Options::new().run_id("old-run");
    let r = opts.write(&dst, b"{\"old\":true}").unwrap();
    atomwrite::write_manifest(&dst, &r, &opts).unwrap();
    assert_eq!(atomwrite::latest(&dst).unwrap(), None);

    let p = Publisher::new()
        .expect(0)
        .publish(&dst, b"{\"new\":true}")
        .unwrap();
    assert_eq!((p.version, p.previous, p.migrated), (2, 1, Some(1)));
    assert_eq!(fs::read(&dst).unwrap(), b"{\"new\":true}");
    let vs = atomwrite::versions(&dst).unwrap().versions;
    assert_eq!(vs.len(), 2);
    assert_eq!(fs::read(&vs[0].path).unwrap(), b"{\"old\":true}");
    // The earlier manifest's provenance is carried over to the migrated version.
    assert_eq!(vs[0].run_id.as_deref(), Some("old-run"));
    assert!(!vs[0].current && vs[1].current);
    // The stale DST.manifest.json is gone; verify uses the version's manifest.
    assert!(!d.path().join("state.json.manifest.json").exists());
    assert_eq!(atomwrite::verify(&dst).status, VerifyStatus::Ok);
    assert_eq!(atomwrite::verify(&vs[0].path).status, VerifyStatus::Ok);
}

#[test]
fn extensions_are_carried_over() {
    let d = tmp();
    for (name, want) in [
        ("a.tar.gz", "a.tar.gz.versions/v0000000001.tar.gz"),
        ("noext", "noext.versions/v0000000001"),
        ("x.y.json", "x.y.json.versions/v0000000001.json"),
    ] {
        let dst = d.path().join(name);
        Publisher::new().publish(&dst, b"x").unwrap();
        assert_eq!(fs::read_link(&dst).unwrap(), PathBuf::from(want));
    }
}

#[test]
fn expect_mismatch_is_a_conflict_and_publishes_nothing() {
    let d = tmp();
    let dst = d.path().join("c.txt");
    let e = Publisher::new().expect(3).publish(&dst, b"x").unwrap_err();
    assert!(e.is_conflict());
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    let msg = e.to_string();
    assert!(msg.contains("expected version 3"), "{msg}");
    assert!(msg.contains("version 0"), "{msg}");
    assert!(!dst.exists());

    Publisher::new().expect(0).publish(&dst, b"one").unwrap();
    Publisher::new().expect(1).publish(&dst, b"two").unwrap();
    let e = Publisher::new()
        .expect(1)
        .publish(&dst, b"late")
        .unwrap_err();
    assert!(e.is_conflict());
    let msg = e.to_string();
    assert!(
        msg.contains("expected version 1") && msg.contains("current version is 2"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    assert_eq!(fs::read(&dst).unwrap(), b"two");
    assert_eq!(version_numbers(&dst), vec![1, 2]);
    no_temps(d.path());
    no_temps(&d.path().join("c.txt.versions"));
}

#[test]
fn keep_retains_newest_and_never_current_or_previous() {
    let d = tmp();
    let dst = d.path().join("k.bin");
    for i in 0..6u8 {
        Publisher::new().keep(3).publish(&dst, &[i]).unwrap();
    }
    assert_eq!(version_numbers(&dst), vec![4, 5, 6]);
    let p = Publisher::new().keep(1).publish(&dst, b"7").unwrap();
    assert_eq!(version_numbers(&dst), vec![6, 7]);
    assert!(p.removed.iter().any(|r| r.ends_with("v0000000004.bin")));
    assert!(
        !d.path()
            .join("k.bin.versions/v0000000004.bin.manifest.json")
            .exists()
    );
    Publisher::new().keep(0).publish(&dst, b"8").unwrap();
    assert_eq!(version_numbers(&dst), vec![7, 8]);
}

#[test]
fn failed_fill_publishes_nothing_and_leaves_no_temp() {
    let d = tmp();
    let dst = d.path().join("f.txt");
    Publisher::new().publish(&dst, b"good").unwrap();
    let e = Publisher::new()
        .publish_with(&dst, |f| {
            f.write_all(b"half")?;
            Err(std::io::Error::other("source broke"))
        })
        .unwrap_err();
    assert!(e.to_string().contains("source broke"), "{e}");
    assert_eq!(fs::read(&dst).unwrap(), b"good");
    assert_eq!(version_numbers(&dst), vec![1]);
    no_temps(d.path());
    no_temps(&d.path().join("f.txt.versions"));
    // Dropping a pending version releases the lock and publishes nothing.
    let mut pv = Publisher::new().begin(&dst).unwrap();
    pv.write_all(b"never").unwrap();
    assert_eq!(pv.version(), 2);
    drop(pv);
    // Nothing was published, and the discarded number is free again.
    assert_eq!(version_numbers(&dst), vec![1]);
    assert_eq!(Publisher::new().publish(&dst, b"next").unwrap().version, 2);
    no_temps(d.path());
}

#[test]
fn foreign_symlink_and_directory_destinations_are_refused() {
    let d = tmp();
    let dst = d.path().join("link");
    fs::write(d.path().join("elsewhere"), b"e").unwrap();
    std::os::unix::fs::symlink("elsewhere", &dst).unwrap();
    let e = Publisher::new().publish(&dst, b"x").unwrap_err();
    assert!(!e.is_conflict());
    assert!(e.to_string().contains("not a pointer made by"), "{e}");
    assert_eq!(fs::read(&dst).unwrap(), b"e");

    let dir = d.path().join("adir");
    fs::create_dir(&dir).unwrap();
    let e = Publisher::new().publish(&dir, b"x").unwrap_err();
    assert!(e.to_string().contains("directory version"), "{e}");
    assert!(dir.is_dir() && !dir.is_symlink());
}

#[test]
fn concurrent_publishers_expecting_the_same_version_one_wins_per_round() {
    const WRITERS: usize = 8;
    const ROUNDS: u64 = 6;
    let d = tmp();
    let dst = Arc::new(d.path().join("race.txt"));
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(WRITERS));
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (dst, barrier) = (dst.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let seen = atomwrite::latest(&*dst).unwrap().map_or(0, |v| v.version);
                    barrier.wait();
                    Publisher::new()
                        .expect(seen)
                        .publish(&*dst, format!("round {round} writer {w}\n").as_bytes())
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert_eq!(winners[0].version, round + 1);
        for r in &results {
            if let Err(e) = r {
                assert!(e.is_conflict(), "{e}");
            }
        }
    }
    assert_eq!(version_numbers(&dst), (1..=ROUNDS).collect::<Vec<_>>());
    assert_eq!(atomwrite::latest(&*dst).unwrap().unwrap().version, ROUNDS);
}

#[test]
fn concurrent_publishers_without_expect_never_reuse_a_number() {
    let d = tmp();
    let dst = Arc::new(d.path().join("many.txt"));
    let handles: Vec<_> = (0..8)
        .map(|w| {
            let dst = dst.clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|i| {
                        Publisher::new()
                            .publish(&*dst, format!("{w}/{i}").as_bytes())
                            .unwrap()
                            .version
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    assert_eq!(all, (1..=40).collect::<Vec<_>>());
    for v in atomwrite::versions(&*dst).unwrap().versions {
        assert_eq!(atomwrite::verify(&v.path).status, VerifyStatus::Ok);
    }
}

// ---------------------------------------------------------------- directories

fn make_tree(root: &Path, generation: u32) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    for f in ["a.txt", "sub/b.txt", "sub/deeper/c.txt"] {
        fs::write(root.join(f), format!("gen {generation}\n")).unwrap();
    }
    let _ = std::os::unix::fs::symlink("a.txt", root.join("link"));
}

#[test]
fn directory_publish_is_one_version_and_verifies() {
    let d = tmp();
    let src = d.path().join("build");
    make_tree(&src, 1);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(src.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    let dst = d.path().join("site");
    let p = Publisher::new().publish_dir(&dst, &src).unwrap();
    assert_eq!(p.version, 1);
    assert_eq!(
        fs::read_link(&dst).unwrap(),
        PathBuf::from("site.versions/v0000000001")
    );
    assert_eq!(fs::read(dst.join("sub/deeper/c.txt")).unwrap(), b"gen 1\n");
    assert_eq!(
        fs::read_link(dst.join("link")).unwrap(),
        PathBuf::from("a.txt")
    );
    assert_eq!(
        fs::metadata(dst.join("a.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    let v = atomwrite::verify(&dst);
    assert_eq!(v.status, VerifyStatus::Ok, "{}", v.detail);
    assert_eq!(p.manifest.kind, Some(atomwrite::ManifestKind::Directory));
    assert_eq!(p.manifest.files.as_ref().unwrap().len(), 6);

    // Tamper with the published tree: verify notices.
    fs::write(dst.join("sub/b.txt"), b"tampered").unwrap();
    assert_eq!(atomwrite::verify(&dst).status, VerifyStatus::Mismatch);

    make_tree(&src, 2);
    let p2 = Publisher::new().expect(1).publish_dir(&dst, &src).unwrap();
    assert_eq!(p2.version, 2);
    assert_eq!(fs::read(dst.join("a.txt")).unwrap(), b"gen 2\n");
    no_temps(&d.path().join("site.versions"));
    no_temps(d.path());

    // A missing source: clear error, nothing changes.
    let e = Publisher::new()
        .publish_dir(&dst, d.path().join("nope"))
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    assert_eq!(atomwrite::latest(&dst).unwrap().unwrap().version, 2);
}

#[test]
fn real_directory_is_migrated_with_rename_exchange() {
    let d = tmp();
    let dst = d.path().join("out");
    make_tree(&dst, 1);
    let src = d.path().join("build");
    make_tree(&src, 2);
    let p = match Publisher::new().expect(0).publish_dir(&dst, &src) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            eprintln!("skipped: RENAME_EXCHANGE unsupported here: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!((p.version, p.migrated), (2, Some(1)));
    assert!(dst.is_symlink());
    assert_eq!(fs::read(dst.join("sub/b.txt")).unwrap(), b"gen 2\n");
    let old = d.path().join("out.versions/v0000000001");
    assert!(old.is_dir() && !old.is_symlink());
    assert_eq!(fs::read(old.join("sub/b.txt")).unwrap(), b"gen 1\n");
    assert_eq!(atomwrite::verify(&old).status, VerifyStatus::Ok);
    no_temps(d.path());
}

#[test]
fn readers_that_resolve_once_never_see_a_mix_of_two_trees() {
    let d = tmp();
    let dst = Arc::new(d.path().join("tree"));
    let src0 = d.path().join("src0");
    make_tree(&src0, 0);
    Publisher::new().publish_dir(&*dst, &src0).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (dst, stop) = (dst.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                let Ok(root) = fs::canonicalize(&*dst) else {
                    continue;
                };
                let read = |f: &str| fs::read_to_string(root.join(f));
                // The version stays until retention removes it two publishes later; a vanished
                // old version is acceptable, a mix is not.
                if let (Ok(a), Ok(b), Ok(c)) =
                    (read("a.txt"), read("sub/b.txt"), read("sub/deeper/c.txt"))
                {
                    assert!(a == b && b == c, "mixed view: {a:?} {b:?} {c:?}");
                    reads += 1;
                }
            }
            reads
        })
    };
    for g in 1..=20 {
        let src = d.path().join(format!("src{g}"));
        make_tree(&src, g);
        Publisher::new()
            .keep(3)
            .options(Options::new().durability(atomwrite::Durability::None))
            .publish_dir(&*dst, &src)
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(version_numbers(&dst), vec![19, 20, 21]);
}

// ---------------------------------------------------------------- crash leftovers

/// What a publisher killed between "version written" and "pointer swapped" leaves behind,
/// reproduced by hand: version 3 with its manifest and its pending marker (a symlink beside DST
/// to the version, which only a completed swap removes), and a staging directory. Plus a file
/// atomwrite did not make (`v0000000009.txt`, no marker, no manifest) that must survive.
fn fake_crash_leftovers(d: &Path) {
    let vdir = d.join("p.txt.versions");
    // In a publisher's order: the marker first, then the version (a marker newer than its
    // version is not evidence).
    let _ = std::os::unix::fs::symlink(
        "p.txt.versions/v0000000003.txt",
        d.join(".p.txt.v0000000003.pending"),
    );
    fs::write(vdir.join("v0000000003.txt"), b"orphan").unwrap();
    fs::write(vdir.join("v0000000003.txt.manifest.json"), b"{}").unwrap();
    fs::create_dir(vdir.join(".v0000000004.abcdefghijklmnop.tmp")).unwrap();
    fs::write(vdir.join(".v0000000004.abcdefghijklmnop.tmp/x"), b"x").unwrap();
    let _ = fs::write(vdir.join("v0000000009.txt"), b"hand-made");
}

#[test]
fn clean_versions_removes_only_unreferenced_leftovers() {
    let d = tmp();
    let dst = d.path().join("p.txt");
    Publisher::new().publish(&dst, b"1").unwrap();
    Publisher::new().publish(&dst, b"2").unwrap();
    fake_crash_leftovers(d.path());
    assert_eq!(version_numbers(&dst), vec![1, 2, 3, 9]);
    let dry = atomwrite::clean_versions(&dst, true).unwrap();
    // v3, its manifest, its marker, the staging directory.
    assert_eq!(dry.removed.len(), 4, "{dry:?}");
    assert_eq!(dry.bytes, 6 + 2 + 1, "{dry:?}");
    assert!(d.path().join("p.txt.versions/v0000000003.txt").exists());
    let rep = atomwrite::clean_versions(&dst, false).unwrap();
    assert!(!rep.locked);
    assert_eq!(
        version_numbers(&dst),
        vec![1, 2, 9],
        "the hand-made file stays"
    );
    assert_eq!(fs::read(&dst).unwrap(), b"2");
    no_temps(d.path());
    no_temps(&d.path().join("p.txt.versions"));
    assert!(!d.path().join(".p.txt.v0000000003.pending").is_symlink());
    assert!(
        !d.path()
            .join("p.txt.versions/v0000000003.txt.manifest.json")
            .exists()
    );

    // While a publisher holds the lock, clean examines nothing.
    let pv = Publisher::new().begin(&dst).unwrap();
    fake_crash_leftovers(d.path());
    assert!(atomwrite::clean_versions(&dst, false).unwrap().locked);
    drop(pv);
}

#[test]
fn retention_removes_crash_leftovers_and_skips_their_numbers() {
    let d = tmp();
    let dst = d.path().join("p.txt");
    Publisher::new().publish(&dst, b"1").unwrap();
    Publisher::new().publish(&dst, b"2").unwrap();
    fake_crash_leftovers(d.path());
    let p = Publisher::new().keep(5).publish(&dst, b"5").unwrap();
    assert!(
        p.version > 3,
        "the leftover's number is not reused: {}",
        p.version
    );
    let mut want = vec![1, 2, p.version, 9];
    want.sort();
    assert_eq!(version_numbers(&dst), want);
    no_temps(d.path());
    no_temps(&d.path().join("p.txt.versions"));
}
