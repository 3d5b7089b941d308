//! `alice-seq DST DATAFILE STEP...`: perform a configurable sequence of raw syscalls that
//! publishes DATAFILE's bytes at DST, correctly or deliberately wrongly, so the explorer
//! can trace it. Steps:
//!
//! - `tmp-named`    openat(dir, ".NAME.PID.tmp", O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, 0600)
//! - `tmp-unnamed`  openat(dir, ".", O_TMPFILE|O_WRONLY|O_CLOEXEC, 0600)
//! - `inplace`      openat(dir, NAME, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0644)
//! - `write`        write() the data in 4096-byte chunks
//! - `fsync` / `fdatasync`   on the file
//! - `fchmod`       fchmod(file, 0644)
//! - `link-tmp`     linkat(AT_FDCWD, "/proc/self/fd/N", dir, ".NAME.PID.tmp", AT_SYMLINK_FOLLOW)
//! - `link-empty`   linkat(fd, "", dir, ".NAME.PID.tmp", AT_EMPTY_PATH)
//! - `rename`       renameat(dir, tmp, dir, NAME)
//! - `rename-noreplace`  renameat2(dir, tmp, dir, NAME, RENAME_NOREPLACE)
//! - `dirsync`      fsync(dir)
//! - `close`        close(file)

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn check(what: &str, r: libc::c_int) -> libc::c_int {
    if r < 0 {
        eprintln!("alice-seq: {what}: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    r
}

fn cstr(b: &[u8]) -> CString {
    CString::new(b).expect("no NUL in names")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: alice-seq DST DATAFILE STEP...");
        std::process::exit(2);
    }
    let dst = Path::new(&args[1]);
    let data = std::fs::read(&args[2]).unwrap_or_else(|e| {
        eprintln!("alice-seq: read {}: {e}", args[2]);
        std::process::exit(1)
    });
    let dir = dst
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = cstr(dst.file_name().expect("DST has a file name").as_bytes());
    let tmp = cstr(
        format!(
            ".{}.{}.tmp",
            dst.file_name().unwrap().to_string_lossy(),
            std::process::id()
        )
        .as_bytes(),
    );
    let dirc = cstr(dir.as_os_str().as_bytes());
    // SAFETY: plain syscalls on valid NUL-terminated strings and owned fds.
    unsafe {
        let dfd = check(
            "open dir",
            libc::open(
                dirc.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            ),
        );
        let mut fd = -1;
        for step in &args[3..] {
            match step.as_str() {
                "tmp-named" => {
                    fd = check(
                        "open temp",
                        libc::openat(
                            dfd,
                            tmp.as_ptr(),
                            libc::O_WRONLY
                                | libc::O_CREAT
                                | libc::O_EXCL
                                | libc::O_NOFOLLOW
                                | libc::O_CLOEXEC,
                            0o600,
                        ),
                    )
                }
                "tmp-unnamed" => {
                    fd = check(
                        "open O_TMPFILE",
                        libc::openat(
                            dfd,
                            c".".as_ptr(),
                            libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC,
                            0o600,
                        ),
                    )
                }
                "inplace" => {
                    fd = check(
                        "open in place",
                        libc::openat(
                            dfd,
                            name.as_ptr(),
                            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                            0o644,
                        ),
                    )
                }
                "write" => {
                    for chunk in data.chunks(4096) {
                        let n = libc::write(fd, chunk.as_ptr().cast(), chunk.len());
                        if n != chunk.len() as isize {
                            check("write", -1);
                        }
                    }
                }
                "fsync" => {
                    check("fsync", libc::fsync(fd));
                }
                "fdatasync" => {
                    check("fdatasync", libc::fdatasync(fd));
                }
                "fchmod" => {
                    check("fchmod", libc::fchmod(fd, 0o644));
                }
                "link-tmp" => {
                    let p = cstr(format!("/proc/self/fd/{fd}").as_bytes());
                    check(
                        "linkat",
                        libc::linkat(
                            libc::AT_FDCWD,
                            p.as_ptr(),
                            dfd,
                            tmp.as_ptr(),
                            libc::AT_SYMLINK_FOLLOW,
                        ),
                    );
                }
                "link-empty" => {
                    check(
                        "linkat AT_EMPTY_PATH",
                        libc::linkat(fd, c"".as_ptr(), dfd, tmp.as_ptr(), libc::AT_EMPTY_PATH),
                    );
                }
                "rename" => {
                    check(
                        "renameat",
                        libc::renameat(dfd, tmp.as_ptr(), dfd, name.as_ptr()),
                    );
                }
                "rename-noreplace" => {
                    let r = libc::syscall(
                        libc::SYS_renameat2,
                        dfd,
                        tmp.as_ptr(),
                        dfd,
                        name.as_ptr(),
                        libc::RENAME_NOREPLACE,
                    );
                    check("renameat2", r as libc::c_int);
                }
                "dirsync" => {
                    check("fsync dir", libc::fsync(dfd));
                }
                "close" => {
                    check("close", libc::close(fd));
                    fd = -1;
                }
                other => {
                    eprintln!("alice-seq: unknown step {other}");
                    std::process::exit(2);
                }
            }
        }
    }
}
