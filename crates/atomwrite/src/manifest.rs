//! Sidecar manifests (`DST.manifest.json`) and [`verify`]: knowing *which* contents a file
//! holds, and detecting a data file and manifest that do not belong together.
//!
//! A manifest is written atomically (through atomwrite itself) **after** the data it describes.
//! A crash between the two leaves new data beside the old manifest (or no manifest): a "torn
//! pair", which [`verify`] reports as a mismatch. That is the point of the design: the pair is
//! never silently wrong, it is detectably wrong.
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("daily.csv");
//! use atomwrite::{Options, VerifyStatus};
//! let opts = Options::new().run_id("nightly-2026-01-01");
//! let receipt = opts.write(&path, b"id,total\n1,42\n")?;
//! atomwrite::write_manifest(&path, &receipt, &opts)?;
//! assert!(dir.path().join("daily.csv.manifest.json").exists());
//!
//! let v = atomwrite::verify(&path);
//! assert_eq!(v.status, VerifyStatus::Ok);
//! assert_eq!(v.manifest.unwrap().run_id, "nightly-2026-01-01");
//!
//! // New data without a new manifest: the torn pair is detected.
//! atomwrite::write(&path, b"id,total\n1,43\n")?;
//! assert_eq!(atomwrite::verify(&path).status, VerifyStatus::Mismatch);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Op, Options, Receipt, Result, SymlinkPolicy};

/// The `format` tag of every manifest this version writes.
pub const MANIFEST_FORMAT: &str = "atomwrite-manifest/1";

/// Suffix appended to a file name to name its manifest.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// The most bytes [`Manifest::read`] reads: far above any real manifest.
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// What a manifest describes (its `kind` field): serialized as `"file"` or `"directory"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManifestKind {
    /// A regular file (written as an absent `kind`).
    File,
    /// A directory tree: the manifest lists every entry in `files`.
    Directory,
}

/// The contents of a sidecar manifest (`DST.manifest.json`), in this field order on disk.
///
/// For a directory published with [`Publisher::publish_dir`](crate::Publisher::publish_dir),
/// `kind` is `"directory"`, `size` is the total of the regular files, `sha256` is the hash of
/// the canonical listing (see [`Manifest::files`]) and `files` lists every entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`] for manifests written by this version.
    pub format: String,
    /// The file name (last path component) of the data the manifest describes.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex sha256 of the contents.
    pub sha256: String,
    /// When the data was committed, RFC 3339 in UTC.
    pub written_at: String,
    /// The run id of the writer (`--run-id`, `ATOMWRITE_RUN_ID`, or a random per-process id).
    pub run_id: String,
    /// The atomwrite version that wrote the manifest.
    pub atomwrite_version: String,
    /// [`ManifestKind::Directory`] (`"directory"`) for a directory version; absent for a
    /// regular file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ManifestKind>,
    /// For a directory: every entry, sorted by path bytes. The directory's `sha256` is the
    /// sha256 of the lines `D path`, `F sha256 size path`, `L target path` in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<DirEntry>>,
    /// Versions only: the number of the version this manifest describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Versions only: the version that was current when this one was started (0 for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u64>,
}

/// One entry of a directory manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// Path relative to the directory, `/`-separated.
    pub path: String,
    /// `"file"`, `"dir"` or `"symlink"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Size of a regular file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// sha256 of a regular file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Target of a symlink (never followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Manifest {
    /// The manifest describing a committed file: `name` is the last component of `dst`.
    pub fn for_receipt(dst: &Path, receipt: &Receipt, sha256: String) -> Manifest {
        Manifest::new(
            file_name_string(dst),
            receipt.size,
            sha256,
            receipt.written_at,
            &receipt.run_id,
        )
    }

    /// The one constructor: a file manifest (`kind`, `files`, `version`, `parent` unset; a
    /// publisher sets `version` and `parent`, a directory version `kind` and `files`) in format
    /// [`MANIFEST_FORMAT`], stamped with this atomwrite's version. `name` is the data's file
    /// name (a version's own name, `v0000000003.csv`, for a published version).
    pub fn new(
        name: String,
        size: u64,
        sha256: String,
        written_at: std::time::SystemTime,
        run_id: &str,
    ) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            name,
            size,
            sha256,
            written_at: crate::rfc3339(written_at),
            run_id: run_id.into(),
            atomwrite_version: env!("CARGO_PKG_VERSION").into(),
            kind: None,
            files: None,
            version: None,
            parent: None,
        }
    }

    /// The JSON text written to disk (pretty-printed, with a final newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a manifest always serializes");
        s.push('\n');
        s
    }

    /// Parses manifest JSON (as written by [`Manifest::to_json`]), checking its `format` tag.
    ///
    /// Guarantees: never panics, whatever the bytes (fuzzed: `crash-tests/fuzz`, target
    /// `manifest`); a value it returns serializes with [`Manifest::to_json`] to text that parses
    /// back to the same value. Unknown fields are ignored (forward compatibility); duplicate
    /// fields, invalid UTF-8 and a `format` other than [`MANIFEST_FORMAT`] are errors. Says
    /// nothing about whether the manifest matches any data: that is [`verify`]'s job.
    pub fn from_json(bytes: &[u8]) -> std::result::Result<Manifest, InvalidManifest> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| InvalidManifest(format!("not a valid manifest: {e}")))?;
        if m.format != MANIFEST_FORMAT {
            return Err(InvalidManifest(format!(
                "unknown manifest format `{}` (expected `{MANIFEST_FORMAT}`)",
                m.format
            )));
        }
        Ok(m)
    }

    /// Reads and parses a manifest file with [`Manifest::from_json`].
    pub fn read(path: &Path) -> Result<Manifest> {
        // Opened like a source (a link planted in a shared sticky directory is not followed,
        // a FIFO or device is refused without blocking) and read up to 64 MiB: a manifest is
        // a few hundred bytes, and a planted one must not hang or exhaust the reader.
        let fd = crate::dest::open_source(path, crate::dest::Want::Regular).map_err(|e| {
            Error::new(
                Op::ReadManifest,
                path,
                io::Error::new(e.kind(), e.io_error().to_string()),
            )
        })?;
        let mut text = Vec::new();
        File::from(fd)
            .take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| Error::new(Op::ReadManifest, path, e))?;
        if text.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(Error::other(
                Op::ReadManifest,
                path,
                io::ErrorKind::InvalidData,
                "is larger than 64 MiB: not a manifest",
            ));
        }
        Manifest::from_json(&text)
            .map_err(|e| Error::other(Op::ReadManifest, path, io::ErrorKind::InvalidData, e.0))
    }
}

/// Why bytes are not a manifest ([`Manifest::from_json`]): one line, without the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidManifest(String);

impl std::fmt::Display for InvalidManifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidManifest {}

pub(crate) fn file_name_string(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `path` with [`MANIFEST_SUFFIX`] appended to its file name: `out.csv` → `out.csv.manifest.json`.
pub fn manifest_path(path: &Path) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_os_string();
    s.push(MANIFEST_SUFFIX);
    PathBuf::from(s)
}

/// Writes `DST.manifest.json` for a file that was just committed to `dst`, atomically and with
/// the durability of `opts` (the manifest is replaced if it exists, even when `opts` is
/// create-only). Call it **after** the data's commit returned.
///
/// Guarantees: the manifest file is complete or absent (it is an atomic write itself); under
/// [`Durability::Full`](crate::Durability::Full) it is durable when this returns, and it was
/// created after the data became durable, so after any crash the pair is either matching or
/// detectably torn (old or missing manifest beside new data), never silently wrong.
///
/// Does not guarantee that the data still matches when the manifest is written (a writer that
/// replaced `dst` in between goes unnoticed here; [`verify`] will notice). When the receipt
/// carries no sha256 (checksums turned off) the file at `receipt.path` is read once to hash it.
pub fn write_manifest(dst: &Path, receipt: &Receipt, opts: &Options) -> Result<Manifest> {
    crate::interrupt::test_pause("data-committed");
    let sha = match &receipt.sha256 {
        Some(s) => s.clone(),
        None => hash_file(&receipt.path)?.1,
    };
    let m = Manifest::for_receipt(dst, receipt, sha);
    // The manifest names the data's size and hash: it is exactly as private as the data file
    // (its owner, group and mode without exec or set-id bits), never the default mode.
    let mut o = opts.clone();
    if let Ok(st) = std::fs::metadata(&receipt.path) {
        use std::os::unix::fs::MetadataExt;
        o = o.preserve_source(st.mode() & 0o666, st.uid(), st.gid());
        o.preserve_owner_strict = false;
    }
    write_manifest_file(&manifest_path(dst), &m, &o)?;
    Ok(m)
}

/// Writes `m` to `manifest_file` atomically with `opts` (create-only and size hint dropped).
pub(crate) fn write_manifest_file(
    manifest_file: &Path,
    m: &Manifest,
    opts: &Options,
) -> Result<()> {
    let mut o = opts.clone();
    o.no_clobber = false;
    o.size_hint = None;
    o.mode = None;
    o.symlinks = SymlinkPolicy::Replace;
    o.write(manifest_file, m.to_json().as_bytes())
        .map_err(|e| relabel_manifest(e, manifest_file))?;
    Ok(())
}

/// A failure while writing a manifest, named as such (the lower-level steps that explain
/// themselves — fsync, rename, link — are kept as they are).
pub(crate) fn relabel_manifest(e: Error, path: &Path) -> Error {
    match e.op() {
        // Keep the step for the lower-level operations that explain themselves.
        Op::SyncFile | Op::SyncDir | Op::Rename | Op::Link => e,
        _ => Error::new(
            Op::Manifest,
            path,
            io::Error::new(e.kind(), e.io_error().to_string()),
        ),
    }
}

/// Streams `path` through sha256 in 1 MiB chunks: `(size, hex sha256)`. Constant memory.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let f = File::open(path).map_err(|e| Error::new(Op::Read, path, e))?;
    hash_reader(f, path)
}

pub(crate) fn hash_reader(mut r: impl Read, path: &Path) -> Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                n_total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::new(Op::Read, path, e)),
        }
    }
    Ok((n_total, hex::encode(h.finalize())))
}

/// Hashes a directory tree the way directory manifests record it: `(total size, listing sha256,
/// entries)`. Symlinks are recorded, never followed; other special files are refused.
///
/// `dir` itself is opened once by path (`O_DIRECTORY`; if it is a symlink, such as a published
/// pointer, it is followed: that is the only link ever followed). Everything below is reached
/// relative to directory file descriptors with `O_NOFOLLOW`, so nothing outside the tree is read
/// even if its entries are swapped for symlinks meanwhile; files are hashed on a few threads.
/// See [`Manifest::files`] for the listing format.
pub fn hash_dir(dir: &Path) -> Result<(u64, String, Vec<DirEntry>)> {
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::new(Op::ReadDir, dir, crate::error::errno(e)))?;
    crate::tree::hash_tree(&fd, dir)
}

/// The outcome of [`verify`] for one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyStatus {
    /// The data matches its manifest (name, size and sha256).
    Ok,
    /// The data differs from its manifest: new data beside an old manifest (a torn pair), a
    /// manifest copied from another file, or corrupted bytes.
    Mismatch,
    /// No manifest was found for the path.
    MissingManifest,
    /// A manifest exists but cannot be read or parsed, or has an unknown format.
    BadManifest,
    /// The data itself is missing or unreadable.
    MissingData,
}

impl VerifyStatus {
    /// `"ok"`, `"mismatch"`, `"missing_manifest"`, `"bad_manifest"`, `"missing_data"`.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyStatus::Ok => "ok",
            VerifyStatus::Mismatch => "mismatch",
            VerifyStatus::MissingManifest => "missing_manifest",
            VerifyStatus::BadManifest => "bad_manifest",
            VerifyStatus::MissingData => "missing_data",
        }
    }
}

/// What [`verify`] found for one path.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// The path asked about.
    pub path: PathBuf,
    /// The data actually hashed (the path itself, or a published version it points to).
    pub data_path: PathBuf,
    /// The manifest consulted (or looked for).
    pub manifest_path: PathBuf,
    /// The verdict.
    pub status: VerifyStatus,
    /// One line explaining the verdict.
    pub detail: String,
    /// The manifest, when it could be read.
    pub manifest: Option<Manifest>,
    /// Size measured now.
    pub size: Option<u64>,
    /// sha256 measured now.
    pub sha256: Option<String>,
}

impl Verification {
    /// True only for [`VerifyStatus::Ok`].
    pub fn is_ok(&self) -> bool {
        self.status == VerifyStatus::Ok
    }
}

/// Recomputes the size and sha256 of `path` and compares them (and the file name) with its
/// manifest. Reads the data in 1 MiB chunks: constant memory whatever the size.
///
/// The manifest looked for is `PATH.manifest.json`; when that does not exist and `PATH` is a
/// symlink (for instance a pointer made by [`Publisher`](crate::Publisher)), the manifest
/// beside the link's target is used, so `verify DST` works on published destinations.
///
/// Guarantees: a data file and a manifest that differ in name, size or sha256 are never
/// reported `Ok`; every problem is a [`Verification`] (this never panics or returns early on one
/// path). Does not guarantee that the data is still the same a moment later (a writer may replace
/// it after the check), and cannot judge whether matching bytes are *right*.
pub fn verify(path: impl AsRef<Path>) -> Verification {
    let path = path.as_ref();
    let (data_path, mpath) = locate(path);
    let mut v = Verification {
        path: path.to_path_buf(),
        data_path: data_path.clone(),
        manifest_path: mpath.clone(),
        status: VerifyStatus::Ok,
        detail: String::new(),
        manifest: None,
        size: None,
        sha256: None,
    };
    let m = match std::fs::symlink_metadata(&mpath) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            v.status = VerifyStatus::MissingManifest;
            v.detail = format!("no manifest at `{}`", mpath.display());
            return v;
        }
        _ => match Manifest::read(&mpath) {
            Ok(m) => m,
            Err(e) => {
                v.status = VerifyStatus::BadManifest;
                v.detail = e.to_string();
                return v;
            }
        },
    };
    v.manifest = Some(m.clone());
    let (size, sha) = match measure(&m, &data_path) {
        Ok(x) => x,
        Err(e) => {
            v.status = VerifyStatus::MissingData;
            v.detail = e.to_string();
            return v;
        }
    };
    v.size = Some(size);
    v.sha256 = Some(sha.clone());
    let name = file_name_string(&data_path);
    (v.status, v.detail) = judge(&m, &name, size, &sha, None);
    v
}

/// The data and manifest `verify` checks for `path`: `PATH` and `PATH.manifest.json`, or, for a
/// symlink without a manifest of its own (a published pointer), its target and the manifest
/// beside the target.
fn locate(path: &Path) -> (PathBuf, PathBuf) {
    let mpath = manifest_path(path);
    if !exists_nofollow(&mpath)
        && let Ok(target) = std::fs::read_link(path)
    {
        let target = match path.parent() {
            Some(p) if target.is_relative() => p.join(target),
            _ => target,
        };
        let alt = manifest_path(&target);
        if exists_nofollow(&alt) {
            return (target, alt);
        }
    }
    (path.to_path_buf(), mpath)
}

/// Size and sha256 of the data a manifest describes (a file, or a directory tree).
fn measure(m: &Manifest, data_path: &Path) -> Result<(u64, String)> {
    if m.kind == Some(ManifestKind::Directory) {
        return hash_dir(data_path).map(|(s, h, _)| (s, h));
    }
    match std::fs::metadata(data_path) {
        Ok(md) if md.is_dir() => Err(Error::other(
            Op::Verify,
            data_path,
            io::ErrorKind::IsADirectory,
            "is a directory but its manifest describes a file",
        )),
        _ => hash_file(data_path),
    }
}

/// The one judgement of `verify`, for every backend: data called `name` with `size` bytes and
/// hash `sha` against the manifest `m` (and, for an object store's versions, the pointer's own
/// record `pointer_sha`). Name, size and sha256 must all match for [`VerifyStatus::Ok`].
pub(crate) fn judge(
    m: &Manifest,
    name: &str,
    size: u64,
    sha: &str,
    pointer_sha: Option<&str>,
) -> (VerifyStatus, String) {
    let mut why = Vec::new();
    if m.name != name {
        why.push(format!("the manifest describes `{}`, not `{name}`", m.name));
    }
    if m.size != size {
        why.push(format!("size is {size}, manifest says {}", m.size));
    }
    if m.sha256 != sha {
        why.push(format!(
            "sha256 is {}, manifest says {}",
            short(sha),
            short(&m.sha256)
        ));
    }
    if let Some(p) = pointer_sha.filter(|p| *p != m.sha256) {
        why.push(format!(
            "the pointer records sha256 {}, the manifest {}",
            short(p),
            short(&m.sha256)
        ));
    }
    if why.is_empty() {
        let detail = format!(
            "{} bytes, sha256 {}, written_at {}, run_id {}",
            size,
            short(sha),
            m.written_at,
            m.run_id
        );
        return (VerifyStatus::Ok, detail);
    }
    let detail = format!(
        "{} (manifest written_at {}, run_id {})",
        why.join("; "),
        m.written_at,
        m.run_id
    );
    (VerifyStatus::Mismatch, detail)
}

fn short(h: &str) -> &str {
    &h[..h.len().min(16)]
}

fn exists_nofollow(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}
#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            name: "daily.csv".into(),
            size: 14,
            sha256: "ab".repeat(32),
            written_at: "2026-01-01T00:00:00.000000000Z".into(),
            run_id: "nightly".into(),
            atomwrite_version: "0.1.0".into(),
            kind: None,
            files: None,
            version: Some(3),
            parent: Some(2),
        }
    }

    #[test]
    fn from_json_round_trips_to_json() {
        let mut dir = sample();
        dir.kind = Some(ManifestKind::Directory);
        dir.files = Some(vec![DirEntry {
            path: "a/\u{e9}\n\"b".into(),
            kind: "symlink".into(),
            size: None,
            sha256: None,
            target: Some("../x".into()),
        }]);
        for m in [sample(), dir] {
            let json = m.to_json();
            assert_eq!(Manifest::from_json(json.as_bytes()), Ok(m.clone()));
        }
    }

    #[test]
    fn from_json_refuses_what_is_not_a_manifest() {
        let good = sample().to_json();
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"null".to_vec(),
            b"[]".to_vec(),
            good.replace(MANIFEST_FORMAT, "atomwrite-manifest/2")
                .into_bytes(),
            good.replace("\"size\": 14", "\"size\": -1").into_bytes(),
            good.replace("\"size\": 14", "\"size\": 14, \"size\": 15")
                .into_bytes(),
            good.replace("nightly", "\\ud800").into_bytes(),
            {
                // Invalid UTF-8 inside a string.
                let mut b = good.clone().into_bytes();
                b[good.find("nightly").unwrap()] = 0xff;
                b
            },
            good.as_bytes()[..good.len() / 2].to_vec(),
        ];
        for c in cases {
            let e = Manifest::from_json(&c).expect_err(&String::from_utf8_lossy(&c));
            assert!(!e.to_string().is_empty());
        }
        // Unknown fields are ignored (a newer writer may add some).
        let newer = good.replace("\"size\"", "\"extra\": [1, {}], \"size\"");
        assert_eq!(Manifest::from_json(newer.as_bytes()), Ok(sample()));
    }

    #[test]
    fn read_reports_the_path_and_the_reason() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.manifest.json");
        std::fs::write(&p, b"{\"format\": \"other\"}").unwrap();
        let e = Manifest::read(&p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let msg = e.to_string();
        assert!(
            msg.contains("x.manifest.json") && msg.contains("not a valid manifest"),
            "{msg}"
        );
    }
}
