//! One renderer per report, for every backend: a [`Receipt`], a [`Published`], a
//! [`VersionRef`], a [`VersionList`], a [`Verification`] and a [`CleanReport`] each have exactly
//! one text form and one JSON form (keys documented in docs/cli.md). Facts only an object store
//! has (`url`, `key`, `etag`, `multipart`) are added where the value carries them
//! ([`Receipt::object`], [`Published::object`]), never by asking which backend produced it.

use std::io::Write;

use atomwrite::destination::{Copied, CopyReport};
use atomwrite::versions::VersionName;
use atomwrite::{
    CleanReport, ObjectFacts, Published, Receipt, Verification, VerifyStatus, VersionList,
    VersionRef,
};
use serde_json::{Value, json};

use crate::cli::CommonOpts;
use crate::common::print_json;

fn object_keys(v: &mut Value, path: &std::path::Path, o: Option<&ObjectFacts>) {
    if let Some(o) = o {
        v["url"] = json!(path);
        v["key"] = json!(o.key);
        v["etag"] = json!(o.e_tag);
        v["multipart"] = json!(o.multipart);
    }
}

/// The JSON receipt: `path size sha256 written_at run_id durability owner_changed`, plus
/// `url key etag multipart` for an object.
pub fn receipt_json(r: &Receipt) -> Value {
    let mut v = json!({
        "path": r.path,
        "size": r.size,
        "sha256": r.sha256,
        "written_at": r.written_at_rfc3339(),
        "run_id": r.run_id,
        "durability": r.durability,
        "owner_changed": r.owner_changed,
    });
    object_keys(&mut v, &r.path, r.object.as_ref());
    v
}

/// `; owner changed from uid A gid B to uid C gid D (set-id bits dropped)`, or nothing.
fn owner_change_text(r: &Receipt) -> String {
    match &r.owner_changed {
        None => String::new(),
        Some(c) => format!(
            "; owner changed from uid {} gid {} to uid {} gid {}{}",
            c.from_uid,
            c.from_gid,
            c.to_uid,
            c.to_gid,
            if c.setid_dropped {
                ", set-id bits dropped"
            } else {
                ""
            }
        ),
    }
}

/// `atomwrite: wrote PATH (N bytes, sha256 H, durability D[, multipart upload][; owner...])`.
pub fn receipt_text(r: &Receipt) -> String {
    let multipart = match &r.object {
        Some(o) if o.multipart => ", multipart upload",
        _ => "",
    };
    format!(
        "wrote {} ({} bytes, sha256 {}, durability {}{multipart}{})",
        r.path.display(),
        r.size,
        r.sha256.as_deref().unwrap_or("-"),
        r.durability,
        owner_change_text(r)
    )
}

/// Prints a receipt: JSON on stdout, a line on stderr, or nothing (`-q`).
pub fn receipt(opts: &CommonOpts, r: &Receipt) {
    if opts.json {
        print_json(&receipt_json(r));
    } else if opts.summary_wanted() {
        eprintln!("atomwrite: {}", receipt_text(r));
    }
}

/// How a copy's bytes travelled: `reflink`, `copy_file_range`, `buffered` (local), `put` or
/// `multipart` (to an object store), `download` (from an object store to a local file).
fn method(c: &Copied) -> Value {
    match (&c.method, &c.receipt.object) {
        (Some(m), _) => json!(m),
        (None, Some(o)) => json!(if o.multipart { "multipart" } else { "put" }),
        (None, None) => json!("download"),
    }
}

/// One copy: the receipt plus `method` and `source`.
pub fn copied_json(c: &Copied) -> Value {
    let mut v = receipt_json(&c.receipt);
    v["method"] = method(c);
    v["source"] = json!(c.source);
    v
}

/// Prints the copies of `cp` as JSON: one receipt object for one source; for several
/// `{"files": [...], "dir_syncs", "data_syncs"}` (the syncs `null` where no batch ran).
/// `files` is the file objects already rendered, comma-separated, as the copies were handed
/// over (text of a few hundred bytes per file, not a `Value` of them all).
pub fn copies_json(many: bool, files: &[u8], report: &CopyReport) {
    crate::signals::printing_outcome();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if !many {
        let _ = out.write_all(files);
        let _ = writeln!(out);
        let _ = out.flush();
        crate::signals::printed_outcome();
        return;
    }
    let frame = json!({
        "files": [],
        "dir_syncs": report.dir_syncs,
        "data_syncs": report.data_syncs,
    })
    .to_string();
    let (head, tail) = frame
        .split_once("\"files\":[]")
        .expect("the frame has an empty files array");
    let _ = write!(out, "{head}\"files\":[");
    let _ = out.write_all(files);
    let _ = writeln!(out, "]{tail}");
    let _ = out.flush();
    crate::signals::printed_outcome();
}

/// The JSON of a publish: `dst version previous path size sha256 written_at run_id migrated
/// removed removed_bytes warnings`, plus `url key etag multipart` for an object.
pub fn published_json(p: &Published) -> Value {
    let mut v = json!({
        "dst": p.dst,
        "version": p.version,
        "previous": p.previous,
        "path": p.path,
        "size": p.manifest.size,
        "sha256": p.manifest.sha256,
        "written_at": p.manifest.written_at,
        "run_id": p.manifest.run_id,
        "migrated": p.migrated,
        "removed": p.removed,
        "removed_bytes": p.removed_bytes,
        "warnings": p.warnings,
    });
    object_keys(&mut v, &p.path, p.object.as_ref());
    v
}

/// `published DST version N (PATH, S bytes, sha256 H)[; what DST held before became version
/// M][; removed K old version(s), B bytes]`.
pub fn published_text(p: &Published) -> String {
    let migrated = match p.migrated {
        Some(m) => format!(
            "; what `{}` held before became version {m}",
            p.dst.display()
        ),
        None => String::new(),
    };
    let removed = match removed_versions(p) {
        0 => String::new(),
        n => format!("; removed {n} old version(s), {} bytes", p.removed_bytes),
    };
    format!(
        "published {} version {} ({}, {} bytes, sha256 {}){migrated}{removed}",
        p.dst.display(),
        p.version,
        p.path.display(),
        p.manifest.size,
        p.manifest.sha256,
    )
}

/// How many of the removed paths are versions (by the one version-name grammar; the others
/// are their manifests and leftovers of interrupted publishes).
fn removed_versions(p: &Published) -> usize {
    p.removed
        .iter()
        .filter(|r| {
            let s = r.to_string_lossy();
            let name = s.rsplit('/').next().unwrap_or_default();
            VersionName::parse(name.as_bytes()).is_some()
        })
        .count()
}

/// Prints a publish: JSON on stdout, a line on stderr, or nothing (`-q`); warnings always.
pub fn published(opts: &CommonOpts, p: &Published) {
    for w in &p.warnings {
        if !opts.json {
            eprintln!("atomwrite: warning: {w}");
        }
    }
    if opts.json {
        print_json(&published_json(p));
    } else if opts.summary_wanted() {
        eprintln!("atomwrite: {}", published_text(p));
    }
}

/// `latest`: `VERSION PATH` (or `0`); JSON `{"dst", "version", "path"}` (0 and null when
/// nothing is published).
pub fn latest(json: bool, dst: &str, l: Option<&VersionRef>) {
    if json {
        print_json(&json!({
            "dst": dst,
            "version": l.map_or(0, |v| v.version),
            "path": l.map(|v| &v.path),
        }));
    } else {
        match l {
            Some(v) => println!("{} {}", v.version, v.path.display()),
            None => println!("0"),
        }
    }
}

fn short(s: Option<&str>, n: usize, long: bool) -> String {
    match s {
        Some(s) if !long && s.chars().count() > n => s.chars().take(n).collect(),
        Some(s) => s.to_string(),
        None => "-".to_string(),
    }
}

/// `versions`: JSON `{"dst", "current", "versions": [...], "ignored": [...]}`; text: a table
/// that fits 80 columns (`--long`: whole hashes, timestamps and run ids).
pub fn versions(json: bool, long: bool, dst: &str, list: &VersionList) {
    if json {
        print_json(&json!({
            "dst": dst,
            "current": list.current,
            "versions": list.versions,
            "ignored": list.ignored,
        }));
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:>11} {:>12}  {:<12}  {:<20}  RUN_ID",
        "VERSION", "SIZE", "SHA256", "WRITTEN_AT"
    );
    for v in &list.versions {
        // 2026-11-30T10:00:00.123456Z -> 2026-11-30T10:00:00Z unless --long.
        let when = v.written_at.as_deref().map(|w| match w.find('.') {
            Some(i) if !long => format!("{}Z", &w[..i]),
            _ => w.to_string(),
        });
        let mark = if v.current {
            "*"
        } else if v.pending {
            "p"
        } else {
            " "
        };
        let _ = writeln!(
            out,
            "{:>10}{mark} {:>12}  {:<12}  {:<20}  {}",
            v.version,
            v.size.map_or("-".to_string(), |s| s.to_string()),
            short(v.sha256.as_deref(), 12, long),
            when.as_deref().unwrap_or("-"),
            short(v.run_id.as_deref(), 12, long),
        );
    }
}

/// The tag of a verification in text: `ok`, `MISMATCH`, `MISSING-MANIFEST`, ...
fn verify_tag(s: VerifyStatus) -> &'static str {
    match s {
        VerifyStatus::Ok => "ok",
        VerifyStatus::Mismatch => "MISMATCH",
        VerifyStatus::MissingManifest => "MISSING-MANIFEST",
        VerifyStatus::BadManifest => "BAD-MANIFEST",
        VerifyStatus::MissingData => "MISSING-DATA",
    }
}

/// One verification: `{"path", "status", "detail", "data_path", "manifest_path", "size",
/// "sha256", "manifest"}`.
pub fn verification_json(v: &Verification) -> Value {
    json!({
        "path": v.path,
        "status": v.status.as_str(),
        "detail": v.detail,
        "data_path": v.data_path,
        "manifest_path": v.manifest_path,
        "size": v.size,
        "sha256": v.sha256,
        "manifest": v.manifest,
    })
}

/// `TAG PATH: DETAIL`.
pub fn verification_text(v: &Verification) -> String {
    format!(
        "{} {}: {}",
        verify_tag(v.status),
        v.path.display(),
        v.detail
    )
}

/// `clean DIR`: JSON with every list; text (unless `quiet`, see
/// [`summary_wanted`](crate::common::summary_wanted)): one `removed PATH` line per removal on
/// stdout and a summary on stderr.
pub fn clean(
    json: bool,
    quiet: bool,
    dry_run: bool,
    older_than: std::time::Duration,
    r: &CleanReport,
) {
    for w in &r.warnings {
        eprintln!("atomwrite: warning: {w}");
    }
    if json {
        print_json(&json!({
            "dry_run": dry_run,
            "removed": r.removed,
            "bytes": r.bytes,
            "leftovers": r.leftovers,
            "leftover_bytes": r.leftover_bytes,
            "locked": r.locked,
            "busy": r.busy,
            "young": r.young,
            "warnings": r.warnings,
        }));
        return;
    }
    if quiet {
        return;
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for p in r.removed.iter().chain(&r.leftovers) {
        println!("{verb} {}", p.display());
    }
    let busy = if r.busy.is_empty() {
        String::new()
    } else {
        format!(
            "; {} versions dir(s) skipped (a publisher is running)",
            r.busy.len()
        )
    };
    eprintln!(
        "atomwrite: {verb} {} temp file(s) ({} bytes) and {} leftover(s) of interrupted \
         publishes ({} bytes); {} temp(s) held by live writers, {} younger than {}{busy}",
        r.removed.len(),
        r.bytes,
        r.leftovers.len(),
        r.leftover_bytes,
        r.locked.len(),
        r.young.len(),
        humantime::format_duration(older_than)
    );
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::SystemTime;

    use atomwrite::{Manifest, ObjectFacts, Published, Receipt};

    use super::*;

    fn published(dst: &str, removed: &[&str], object: bool) -> Published {
        Published {
            dst: PathBuf::from(dst),
            version: 3,
            previous: 2,
            path: PathBuf::from(format!("{dst}.versions/v0000000003.csv")),
            manifest: Manifest::new(
                "v0000000003.csv".into(),
                5,
                "ab".into(),
                SystemTime::now(),
                "r",
            ),
            migrated: None,
            removed: removed.iter().map(PathBuf::from).collect(),
            removed_bytes: 10,
            warnings: Vec::new(),
            object: object.then(|| ObjectFacts {
                key: "k".into(),
                e_tag: None,
                multipart: false,
            }),
        }
    }

    #[test]
    fn retention_is_reported_in_versions_on_every_backend() {
        let local = published(
            "out/a.csv",
            &[
                "out/a.csv.versions/v0000000001.csv",
                "out/a.csv.versions/v0000000001.csv.manifest.json",
                "out/.a.csv.v0000000002.pending",
            ],
            false,
        );
        let remote = published(
            "s3://b/a.csv",
            &[
                "s3://b/a.csv.versions/v0000000001.csv",
                "s3://b/a.csv.versions/v0000000001.csv.manifest.json",
            ],
            true,
        );
        for p in [&local, &remote] {
            let t = published_text(p);
            assert!(t.ends_with("; removed 1 old version(s), 10 bytes"), "{t}");
            assert!(!t.contains("path(s)"), "{t}");
        }
    }

    #[test]
    fn a_migration_names_what_dst_held_whatever_it_was() {
        let mut p = published("site", &[], false);
        p.migrated = Some(1);
        let t = published_text(&p);
        assert!(
            t.contains("what `site` held before became version 1"),
            "{t}"
        );
        assert!(!t.contains("regular file"), "{t}");
    }

    #[test]
    fn one_json_shape_with_object_facts_added() {
        let local = json_keys(&published_json(&published("a.csv", &[], false)));
        let remote = json_keys(&published_json(&published("s3://b/a.csv", &[], true)));
        let extra: Vec<_> = remote.iter().filter(|k| !local.contains(k)).collect();
        assert_eq!(extra, ["etag", "key", "multipart", "url"]);
        assert!(local.iter().all(|k| remote.contains(k)));
        let r = Receipt {
            path: "s3://b/k".into(),
            size: 1,
            sha256: Some("ab".into()),
            written_at: SystemTime::now(),
            run_id: "r".into(),
            durability: atomwrite::DurabilityHonoured::Store,
            owner_changed: None,
            object: Some(ObjectFacts {
                key: "k".into(),
                e_tag: Some("\"e\"".into()),
                multipart: true,
            }),
        };
        let v = receipt_json(&r);
        assert_eq!(v["url"], "s3://b/k");
        assert_eq!(v["multipart"], true);
        assert!(v.get("owner_changed").is_some());
        assert!(receipt_text(&r).contains("multipart upload"));
    }

    fn json_keys(v: &Value) -> Vec<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }
}
