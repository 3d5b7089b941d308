//! Shared by the test suites of `atomwrite` and `atomwrite-cli` (included with `#[path]`).

/// The durability a receipt reports for a `full` write in `dir`: `full`, except on a filesystem
/// that promises crash safety only (tmpfs, ramfs), where the receipt says `none` (the
/// classification `doctor` uses; crash-tests/fsmatrix runs these tests on tmpfs too).
pub fn full_honoured_in(dir: &std::path::Path) -> &'static str {
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    const RAMFS_MAGIC: u64 = 0x8584_58f6;
    let magic = rustix::fs::statfs(dir)
        .map(|s| s.f_type as u64)
        .unwrap_or(0);
    if magic == TMPFS_MAGIC || magic == RAMFS_MAGIC {
        "none"
    } else {
        "full"
    }
}
