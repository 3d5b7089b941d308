//! Directory trees walked through directory fds (`publish_dir`, `verify` of a directory).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

/// A tree exercising every case of the listing format: nested dirs, an empty dir, an empty file,
/// names whose byte order differs from path order (`a`, `a-c`, `a/b`), relative, absolute and
/// dangling symlinks, non-UTF-8 names and link targets.
fn fixture(root: &Path) {
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::create_dir(root.join("a-c")).unwrap();
    fs::create_dir(root.join("empty")).unwrap();
    fs::write(root.join("a/b/deep.txt"), b"deep\n").unwrap();
    fs::write(root.join("a/one.txt"), b"one\n").unwrap();
    fs::write(root.join("a-c/two.txt"), vec![7u8; 100_000]).unwrap();
    fs::write(root.join("zero"), b"").unwrap();
    fs::write(
        root.join(OsStr::from_bytes(b"caf\xe9.txt")),
        b"latin-1 name\n",
    )
    .unwrap();
    symlink("a/one.txt", root.join("rel-link")).unwrap();
    symlink("/etc/hostname", root.join("abs-link")).unwrap();
    symlink("does/not/exist", root.join("dangling")).unwrap();
    symlink(OsStr::from_bytes(b"\xff\xfe"), root.join("odd-target")).unwrap();
    fs::set_permissions(root.join("a/one.txt"), fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn print_hash() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path());
    let (size, sha, entries) = atomwrite::manifest::hash_dir(d.path()).unwrap();
    eprintln!("SIZE {size} SHA {sha}");
    for e in entries {
        eprintln!("{e:?}");
    }
}
