//! Parse an strace log (recorded with [`STRACE_ARGS`]) into an [`OpLog`].
//!
//! The parser replays every successful call against a [`LogBuilder`], tracking file
//! descriptors (open file descriptions with their offsets, `dup`s, `O_APPEND`), dirfds
//! for the `*at` calls and `/proc/self/fd/N` links, so that every operation inside the
//! scope directory is resolved to a path and an inode. Calls that failed are ignored.
//! Operations outside the scope are ignored, except that reads and offsets of outside
//! files are tracked (they can be the source of `copy_file_range`/`sendfile`).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::oplog::{FallocMode, Fs, Ino, Kind, LogBuilder, OpLog, RenameFlags};

/// The syscalls traced (unknown names are ignored by strace thanks to the `?` prefix).
pub const TRACED: &[&str] = &[
    "open",
    "openat",
    "openat2",
    "creat",
    "close",
    "close_range",
    "dup",
    "dup2",
    "dup3",
    "fcntl",
    "lseek",
    "read",
    "readv",
    "write",
    "pwrite64",
    "writev",
    "pwritev",
    "pwritev2",
    "ftruncate",
    "truncate",
    "fallocate",
    "fsync",
    "fdatasync",
    "sync_file_range",
    "sync",
    "syncfs",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "unlink",
    "unlinkat",
    "rmdir",
    "mkdir",
    "mkdirat",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "lchown",
    "fchown",
    "fchownat",
    "copy_file_range",
    "sendfile",
    "splice",
    "mmap",
];

/// strace flags used: follow forks, decode fds to paths (`-y`), hex-escape every string
/// byte (`-xx`, which makes paths and data unambiguous to parse), print whole buffers
/// (`-s`), no attach/exit chatter (`-qq`), no signal lines.
pub fn strace_args(out: &Path) -> Vec<String> {
    let trace = TRACED
        .iter()
        .map(|s| format!("?{s}"))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "-f".into(),
        "-qq".into(),
        "-y".into(),
        "-xx".into(),
        "-s".into(),
        "67108864".into(),
        "-e".into(),
        "signal=none".into(),
        "-e".into(),
        format!("trace={trace}"),
        "-o".into(),
        out.display().to_string(),
    ]
}

/// Kept for documentation: the flags as one string.
pub const STRACE_ARGS: &str = "-f -qq -y -xx -s 67108864 -e signal=none -e trace=?open,?openat,...";

/// A parse or modelling failure, with the offending line.
#[derive(Debug, Clone)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// One complete syscall line.
#[derive(Debug, Clone)]
pub struct Call {
    /// Process id.
    pub pid: u32,
    /// Syscall name.
    pub name: String,
    /// Top-level argument texts.
    pub args: Vec<String>,
    /// Return value (None for `?`).
    pub ret: Option<i64>,
    /// Path annotation of the returned fd, if any.
    pub ret_path: Option<PathBuf>,
    /// The raw line.
    pub line: String,
}

/// Decode a C-style string literal body (`\xHH`, `\n`, octal, ...).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 4);
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let c = b[i + 1];
            match c {
                b'x' if i + 3 < b.len() + 1 => {
                    let h = std::str::from_utf8(&b[i + 2..(i + 4).min(b.len())]).unwrap_or("0");
                    out.push(u8::from_str_radix(h, 16).unwrap_or(0));
                    i += 4;
                }
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                }
                b't' => {
                    out.push(b'\t');
                    i += 2;
                }
                b'r' => {
                    out.push(b'\r');
                    i += 2;
                }
                b'v' => {
                    out.push(0x0b);
                    i += 2;
                }
                b'f' => {
                    out.push(0x0c);
                    i += 2;
                }
                b'0'..=b'7' => {
                    let mut j = i + 1;
                    let mut v: u32 = 0;
                    while j < b.len() && j < i + 4 && (b'0'..=b'7').contains(&b[j]) {
                        v = v * 8 + (b[j] - b'0') as u32;
                        j += 1;
                    }
                    out.push(v as u8);
                    i = j;
                }
                _ => {
                    out.push(c);
                    i += 2;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn bytes_to_path(b: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

/// Split the text after `name(` into top-level args; returns (args, rest after `)`).
fn split_args(s: &str) -> Option<(Vec<String>, &str)> {
    let b = s.as_bytes();
    let mut depth = 0i32;
    let mut args = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'<' if i > 0 && (b[i - 1].is_ascii_digit() || b[i - 1] == b'D') => {
                // fd path annotation: N<...> or AT_FDCWD<...>; contents are escaped
                while i < b.len() && b[i] != b'>' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                if depth == 0 && b[i] == b')' {
                    let last = s[start..i].trim();
                    if !last.is_empty() || !args.is_empty() {
                        args.push(last.to_string());
                    }
                    return Some((args, &s[i + 1..]));
                }
                depth -= 1;
            }
            b',' if depth == 0 => {
                args.push(s[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parse `N<path>` / `AT_FDCWD<path>` / `N` into (fd, annotation).
fn parse_fd(s: &str) -> Option<(i64, Option<PathBuf>)> {
    // `N<path>`, possibly followed by `(deleted)` for unlinked files.
    let (num, ann) = match (s.find('<'), s.rfind('>')) {
        (Some(p), Some(q)) if q > p => (&s[..p], Some(bytes_to_path(unescape(&s[p + 1..q])))),
        _ => (s, None),
    };
    let fd = if num == "AT_FDCWD" {
        libc::AT_FDCWD as i64
    } else {
        parse_int(num)?
    };
    Some((fd, ann))
}

fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    let s = s.split(" => ").next().unwrap_or(s);
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let v = if let Some(h) = s.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') && s.bytes().all(|c| c.is_ascii_digit()) {
        i64::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Parse a string argument: (bytes, truncated-by-strace).
fn parse_str(s: &str) -> Option<(Vec<u8>, bool)> {
    let s = s.trim();
    let body = s.strip_prefix('"')?;
    let end = body.rfind('"')?;
    let truncated = body[end + 1..].trim_start().starts_with("...");
    Some((unescape(&body[..end]), truncated))
}

fn flags(s: &str) -> Vec<&str> {
    s.split('|').map(str::trim).collect()
}

/// A readable version of an strace line: hex-escaped strings and fd paths decoded,
/// long or binary buffers replaced by their length.
pub fn pretty(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len().min(256));
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let close = match c {
            b'"' => Some(b'"'),
            b'<' if i > 0 && (b[i - 1].is_ascii_digit() || b[i - 1] == b'D') => Some(b'>'),
            _ => None,
        };
        if let Some(close) = close {
            let mut j = i + 1;
            while j < b.len() && b[j] != close {
                if b[j] == b'\\' {
                    j += 1;
                }
                j += 1;
            }
            let body = unescape(&line[i + 1..j.min(line.len())]);
            let text = String::from_utf8_lossy(&body);
            let printable = body.iter().all(|&x| (0x20..0x7f).contains(&x));
            let (o, cl) = (c as char, close as char);
            if printable && body.len() <= 80 {
                out.push_str(&format!("{o}{text}{cl}"));
            } else {
                out.push_str(&format!("{o}<{} bytes>{cl}", body.len()));
            }
            i = j + 1;
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    out
}

/// Parse a whole strace output into complete calls (joining unfinished/resumed halves).
pub fn parse_calls(text: &str) -> Result<Vec<Call>, ParseError> {
    let mut pending: HashMap<u32, String> = HashMap::new();
    let mut calls = Vec::new();
    for raw in text.lines() {
        let line = raw.trim_end();
        if line.is_empty() {
            continue;
        }
        let (pid, rest) = match line.split_once(' ') {
            Some((p, r)) if p.bytes().all(|c| c.is_ascii_digit()) => {
                (p.parse::<u32>().unwrap_or(0), r.trim_start())
            }
            _ => (0, line),
        };
        if rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        let full = if let Some(r) = rest.strip_prefix("<... ") {
            let Some(p) = r.find(" resumed>") else {
                return Err(ParseError(format!("bad resumed line: {line}")));
            };
            let head = pending.remove(&pid).unwrap_or_default();
            format!("{head}{}", &r[p + " resumed>".len()..])
        } else if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, head.to_string());
            continue;
        } else {
            rest.to_string()
        };
        let Some(open) = full.find('(') else { continue };
        let name = full[..open].to_string();
        let Some((args, after)) = split_args(&full[open + 1..]) else {
            return Err(ParseError(format!("unbalanced line: {line}")));
        };
        let after = after.trim_start();
        let Some(retpart) = after.strip_prefix('=') else {
            continue; // e.g. exit_group without return
        };
        let retpart = retpart.trim_start();
        let ret_tok = retpart.split_whitespace().next().unwrap_or("?");
        let (ret, ret_path) = if ret_tok == "?" {
            (None, None)
        } else {
            match parse_fd(ret_tok) {
                Some((v, p)) => (Some(v), p),
                None => (None, None),
            }
        };
        calls.push(Call {
            pid,
            name,
            args,
            ret,
            ret_path,
            line: full,
        });
    }
    Ok(calls)
}

#[derive(Debug, Clone)]
enum Target {
    Model(Ino),
    Outside(PathBuf),
}

#[derive(Debug, Clone)]
struct Ofd {
    target: Target,
    pos: u64,
    append: bool,
}

/// Statistics of a parse.
#[derive(Debug, Clone, Default)]
pub struct ParseStats {
    /// Syscall lines read.
    pub calls: usize,
    /// Successful calls that touched the scope.
    pub in_scope: usize,
    /// Non-fatal oddities.
    pub warnings: Vec<String>,
}

/// Lexically normalize an absolute path.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

struct Replayer {
    b: LogBuilder,
    cwd: PathBuf,
    fds: HashMap<i64, usize>,
    ofds: Vec<Ofd>,
    stats: ParseStats,
}

fn perr<T>(call: &Call, msg: &str) -> Result<T, ParseError> {
    Err(ParseError(format!("{msg}: {}", call.line)))
}

impl Replayer {
    fn arg<'a>(&self, c: &'a Call, i: usize) -> Result<&'a str, ParseError> {
        match c.args.get(i) {
            Some(a) => Ok(a.as_str()),
            None => perr(c, &format!("missing argument {i}")),
        }
    }

    fn int(&self, c: &Call, i: usize) -> Result<i64, ParseError> {
        let a = self.arg(c, i)?;
        match parse_int(a) {
            Some(v) => Ok(v),
            None => perr(c, &format!("argument {i} not an integer")),
        }
    }

    fn fd(&self, c: &Call, i: usize) -> Result<(i64, Option<PathBuf>), ParseError> {
        match parse_fd(self.arg(c, i)?) {
            Some(v) => Ok(v),
            None => perr(c, &format!("argument {i} not an fd")),
        }
    }

    fn string(&self, c: &Call, i: usize) -> Result<Vec<u8>, ParseError> {
        match parse_str(self.arg(c, i)?) {
            Some((b, false)) => Ok(b),
            Some((_, true)) => perr(c, "string truncated by strace (raise -s)"),
            None => perr(c, &format!("argument {i} not a string")),
        }
    }

    fn path_of_ino(&self, ino: Ino) -> Option<PathBuf> {
        self.b
            .live()
            .entries
            .iter()
            .find(|(_, i)| **i == ino)
            .map(|(p, _)| p.clone())
    }

    /// Directory path named by a dirfd argument.
    fn dir_path(&self, c: &Call, i: usize) -> Result<PathBuf, ParseError> {
        let (fd, ann) = self.fd(c, i)?;
        if fd == libc::AT_FDCWD as i64 {
            return Ok(ann.unwrap_or_else(|| self.cwd.clone()));
        }
        if let Some(&o) = self.fds.get(&fd) {
            match &self.ofds[o].target {
                Target::Outside(p) => return Ok(p.clone()),
                Target::Model(ino) => {
                    if let Some(p) = self.path_of_ino(*ino) {
                        return Ok(p);
                    }
                }
            }
        }
        match ann {
            Some(p) => Ok(p),
            None => perr(c, "unknown dirfd"),
        }
    }

    fn resolve(&self, base: &Path, rel: Vec<u8>) -> PathBuf {
        let p = bytes_to_path(rel);
        if p.is_absolute() {
            normalize(&p)
        } else {
            normalize(&base.join(p))
        }
    }

    /// Path argument `pi` relative to dirfd argument `di` (None: cwd).
    fn at_path(&self, c: &Call, di: Option<usize>, pi: usize) -> Result<PathBuf, ParseError> {
        let base = match di {
            Some(d) => self.dir_path(c, d)?,
            None => self.cwd.clone(),
        };
        let rel = self.string(c, pi)?;
        Ok(self.resolve(&base, rel))
    }

    /// Follow symlinks inside the model (the final component only, up to 8 times).
    fn follow(&self, mut p: PathBuf) -> PathBuf {
        for _ in 0..8 {
            match self.b.lookup(&p) {
                Some(ino) if self.b.live().inodes[ino].kind == Kind::Symlink => {
                    let target = self.b.data(ino).to_vec();
                    let parent = p.parent().map(Path::to_path_buf).unwrap_or_default();
                    p = self.resolve(&parent, target);
                }
                _ => break,
            }
        }
        p
    }

    fn ofd_of(&self, c: &Call, i: usize) -> Result<Option<usize>, ParseError> {
        let (fd, _) = self.fd(c, i)?;
        Ok(self.fds.get(&fd).copied())
    }

    fn model_ino(&self, c: &Call, i: usize) -> Result<Option<Ino>, ParseError> {
        Ok(match self.ofd_of(c, i)? {
            Some(o) => match self.ofds[o].target {
                Target::Model(ino) => Some(ino),
                Target::Outside(_) => None,
            },
            None => {
                // inherited fd: use the annotation
                let (_, ann) = self.fd(c, i)?;
                ann.and_then(|p| self.b.lookup(&p))
            }
        })
    }

    /// fds the program did not open itself (inherited stdin/stdout, or opened in another
    /// traced process): adopt them from strace's `-y` annotation, at offset 0.
    fn adopt_inherited_fds(&mut self, c: &Call) {
        for a in &c.args {
            let Some(lt) = a.find('<') else { continue };
            if lt == 0 || !a[..lt].bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Some((fd, Some(path))) = parse_fd(a) else {
                continue;
            };
            if self.fds.contains_key(&fd) {
                continue;
            }
            let target = match self.b.lookup(&path) {
                Some(ino) => Target::Model(ino),
                None => {
                    if self.b.in_scope(&path) {
                        self.stats.warnings.push(format!(
                            "fd {fd} names {} which the model does not know",
                            path.display()
                        ));
                    }
                    Target::Outside(path)
                }
            };
            self.install(fd, target, false);
        }
    }

    fn install(&mut self, fd: i64, target: Target, append: bool) {
        self.ofds.push(Ofd {
            target,
            pos: 0,
            append,
        });
        self.fds.insert(fd, self.ofds.len() - 1);
    }

    fn open(
        &mut self,
        c: &Call,
        di: Option<usize>,
        pi: usize,
        flags_s: &str,
    ) -> Result<(), ParseError> {
        let fd = c.ret.unwrap_or(-1);
        let path = self.at_path(c, di, pi)?;
        let fl = flags(flags_s);
        let has = |f: &str| fl.contains(&f);
        let append = has("O_APPEND");
        if !self.b.in_scope(&path) {
            self.install(fd, Target::Outside(path), append);
            return Ok(());
        }
        self.stats.in_scope += 1;
        let src = pretty(&c.line);
        if has("O_TMPFILE") {
            let ino = self
                .b
                .tmpfile(&path, &src)
                .map_err(|e| ParseError(format!("{e}: {src}")))?;
            self.install(fd, Target::Model(ino), append);
            return Ok(());
        }
        let path = if has("O_NOFOLLOW") {
            path
        } else {
            self.follow(path)
        };
        let writable = has("O_WRONLY") || has("O_RDWR");
        let ino = match self.b.lookup(&path) {
            Some(ino) => {
                if has("O_TRUNC") && writable && self.b.size(ino) > 0 {
                    self.b.truncate(ino, 0, &src);
                }
                ino
            }
            None if has("O_CREAT") => self
                .b
                .create(&path, Kind::File, &src)
                .map_err(|e| ParseError(format!("{e}: {src}")))?,
            None => {
                self.stats.warnings.push(format!(
                    "opened {} which the model does not know",
                    path.display()
                ));
                self.install(fd, Target::Outside(path), append);
                return Ok(());
            }
        };
        self.install(fd, Target::Model(ino), append);
        Ok(())
    }

    /// Record `data` written through ofd `o` at `off` (None: at the fd position).
    fn write_via(&mut self, c: &Call, o: Option<usize>, off: Option<u64>, data: &[u8]) {
        let Some(o) = o else { return };
        let target = self.ofds[o].target.clone();
        let at = match (&target, off) {
            (_, Some(off)) => off,
            (Target::Model(ino), None) if self.ofds[o].append => self.b.size(*ino),
            (_, None) => self.ofds[o].pos,
        };
        if let Target::Model(ino) = target {
            self.stats.in_scope += 1;
            self.b.write(ino, at, data, &pretty(&c.line));
        }
        if off.is_none() {
            self.ofds[o].pos = at + data.len() as u64;
        }
    }

    /// Bytes of `len` at `off` read from ofd `o` (model contents or the real outside file).
    fn read_source(
        &self,
        c: &Call,
        o: Option<usize>,
        off: u64,
        len: usize,
    ) -> Result<Vec<u8>, ParseError> {
        let Some(o) = o else {
            return perr(c, "copy from an unknown fd (pipe?): data not recorded");
        };
        match &self.ofds[o].target {
            Target::Model(ino) => {
                let d = self.b.data(*ino);
                let s = (off as usize).min(d.len());
                let e = (s + len).min(d.len());
                Ok(d[s..e].to_vec())
            }
            Target::Outside(p) => {
                let d = std::fs::read(p)
                    .map_err(|e| ParseError(format!("read copy source {}: {e}", p.display())))?;
                let s = (off as usize).min(d.len());
                let e = (s + len).min(d.len());
                Ok(d[s..e].to_vec())
            }
        }
    }

    fn iov_data(&self, c: &Call, i: usize) -> Result<Vec<u8>, ParseError> {
        let a = self.arg(c, i)?;
        let mut out = Vec::new();
        let mut rest = a;
        while let Some(p) = rest.find("iov_base=") {
            rest = &rest[p + "iov_base=".len()..];
            let Some(body) = rest.strip_prefix('"') else {
                return perr(c, "iov_base not a string");
            };
            let end = body.find('"').unwrap_or(body.len());
            if body[end + 1..].starts_with("...") {
                return perr(c, "iov data truncated by strace (raise -s)");
            }
            out.extend(unescape(&body[..end]));
            rest = &body[end..];
        }
        Ok(out)
    }

    fn step(&mut self, c: &Call) -> Result<(), ParseError> {
        let ret = match c.ret {
            Some(r) if r >= 0 => r,
            _ => return Ok(()), // failed or unknown: no effect
        };
        self.adopt_inherited_fds(c);
        let src = pretty(&c.line);
        let map = |e: crate::oplog::ModelError| ParseError(format!("{e}: {src}"));
        match c.name.as_str() {
            "open" => {
                let f = self.arg(c, 1)?.to_string();
                self.open(c, None, 0, &f)?
            }
            "creat" => self.open(c, None, 0, "O_WRONLY|O_CREAT|O_TRUNC")?,
            "openat" => {
                let f = self.arg(c, 2)?.to_string();
                self.open(c, Some(0), 1, &f)?
            }
            "openat2" => {
                let a = self.arg(c, 2)?;
                let f = a
                    .split("flags=")
                    .nth(1)
                    .and_then(|x| x.split([',', '}']).next())
                    .unwrap_or("O_RDONLY")
                    .to_string();
                self.open(c, Some(0), 1, &f)?
            }
            "close" => {
                let (fd, _) = self.fd(c, 0)?;
                if let Some(o) = self.fds.remove(&fd)
                    && let Target::Model(ino) = self.ofds[o].target
                {
                    self.b.close(ino, &src);
                }
            }
            "close_range" => {
                let (lo, hi) = (self.int(c, 0)?, self.int(c, 1)?);
                self.fds.retain(|fd, _| *fd < lo || *fd > hi);
            }
            "dup" | "dup2" | "dup3" => {
                if let Some(o) = self.ofd_of(c, 0)? {
                    self.fds.insert(ret, o);
                }
            }
            "fcntl" => {
                let cmd = self.arg(c, 1)?;
                if (cmd == "F_DUPFD" || cmd == "F_DUPFD_CLOEXEC")
                    && let Some(o) = self.ofd_of(c, 0)?
                {
                    self.fds.insert(ret, o);
                }
            }
            "lseek" => {
                if let Some(o) = self.ofd_of(c, 0)? {
                    self.ofds[o].pos = ret as u64;
                }
            }
            "read" | "readv" => {
                if let Some(o) = self.ofd_of(c, 0)? {
                    self.ofds[o].pos += ret as u64;
                }
            }
            "write" => {
                let data = self.string(c, 1)?;
                let o = self.ofd_of(c, 0)?;
                self.write_via(c, o, None, &data[..ret as usize]);
            }
            "pwrite64" => {
                let data = self.string(c, 1)?;
                let off = self.int(c, 3)? as u64;
                let o = self.ofd_of(c, 0)?;
                self.write_via(c, o, Some(off), &data[..ret as usize]);
            }
            "writev" | "pwritev" | "pwritev2" => {
                let data = self.iov_data(c, 1)?;
                let off = if c.name == "writev" {
                    None
                } else {
                    Some(self.int(c, 3)? as u64)
                };
                let o = self.ofd_of(c, 0)?;
                if (ret as usize) > data.len() {
                    return perr(c, "writev returned more than the decoded data");
                }
                self.write_via(c, o, off, &data[..ret as usize]);
            }
            "copy_file_range" | "sendfile" | "splice" => {
                let (fin, offin, fout, offout) = match c.name.as_str() {
                    "sendfile" => (1, 2, 0, usize::MAX),
                    _ => (0, 1, 2, 3),
                };
                let oin = self.ofd_of(c, fin)?;
                let oout = self.ofd_of(c, fout)?;
                let out_model =
                    matches!(oout.map(|o| &self.ofds[o].target), Some(Target::Model(_)));
                let explicit = |s: &str| {
                    if s == "NULL" {
                        None
                    } else {
                        parse_int(s).map(|v| v as u64)
                    }
                };
                let in_off = explicit(self.arg(c, offin)?);
                let start = in_off.unwrap_or_else(|| oin.map_or(0, |o| self.ofds[o].pos));
                if out_model {
                    let data = self.read_source(c, oin, start, ret as usize)?;
                    let out_off = if offout == usize::MAX {
                        None
                    } else {
                        explicit(self.arg(c, offout)?)
                    };
                    self.write_via(c, oout, out_off, &data);
                } else if let Some(o) = oout
                    && offout != usize::MAX
                    && explicit(self.arg(c, offout)?).is_none()
                {
                    self.ofds[o].pos += ret as u64;
                }
                if in_off.is_none()
                    && let Some(o) = oin
                {
                    self.ofds[o].pos += ret as u64;
                }
            }
            "ftruncate" => {
                if let Some(ino) = self.model_ino(c, 0)? {
                    let len = self.int(c, 1)? as u64;
                    self.b.truncate(ino, len, &src);
                }
            }
            "truncate" => {
                let p = self.at_path(c, None, 0)?;
                let p = self.follow(p);
                if let Some(ino) = self.b.lookup(&p) {
                    let len = self.int(c, 1)? as u64;
                    self.b.truncate(ino, len, &src);
                }
            }
            "fallocate" => {
                if let Some(ino) = self.model_ino(c, 0)? {
                    let m = self.arg(c, 1)?;
                    let keep = m.contains("KEEP_SIZE");
                    let mode = if m.contains("PUNCH_HOLE") || (m.contains("ZERO_RANGE") && keep) {
                        FallocMode::ZeroKeepSize
                    } else if m.contains("ZERO_RANGE") {
                        FallocMode::Zero
                    } else if keep {
                        FallocMode::KeepSize
                    } else if m == "0" {
                        FallocMode::Allocate
                    } else {
                        return perr(c, "unsupported fallocate mode");
                    };
                    let (off, len) = (self.int(c, 2)? as u64, self.int(c, 3)? as u64);
                    self.b.fallocate(ino, off, len, mode, &src);
                }
            }
            "fsync" | "fdatasync" => {
                if let Some(ino) = self.model_ino(c, 0)? {
                    self.b.fsync(ino, c.name == "fdatasync", &src);
                }
            }
            "sync_file_range" => {
                if let Some(ino) = self.model_ino(c, 0)? {
                    self.b.sync_file_range(ino, &src);
                }
            }
            "sync" | "syncfs" => self.b.sync_all(&src),
            "rename" | "renameat" | "renameat2" => {
                let (from, to, fl) = if c.name == "rename" {
                    (self.at_path(c, None, 0)?, self.at_path(c, None, 1)?, "0")
                } else {
                    let fl = if c.name == "renameat2" {
                        self.arg(c, 4)?
                    } else {
                        "0"
                    };
                    (
                        self.at_path(c, Some(0), 1)?,
                        self.at_path(c, Some(2), 3)?,
                        fl,
                    )
                };
                let flags = RenameFlags {
                    noreplace: fl.contains("RENAME_NOREPLACE"),
                    exchange: fl.contains("RENAME_EXCHANGE"),
                };
                match (self.b.in_scope(&from), self.b.in_scope(&to)) {
                    (true, true) => self.b.rename(&from, &to, flags, &src).map_err(map)?,
                    (false, false) => {}
                    _ => return perr(c, "rename across the scope boundary is not modelled"),
                }
            }
            "link" | "linkat" => {
                let (ino, to) = if c.name == "link" {
                    let from = self.follow(self.at_path(c, None, 0)?);
                    (self.b.lookup(&from), self.at_path(c, None, 1)?)
                } else {
                    let fl = self.arg(c, 4)?;
                    let old = self.string(c, 1)?;
                    let to = self.at_path(c, Some(2), 3)?;
                    let ino = if old.is_empty() && fl.contains("AT_EMPTY_PATH") {
                        self.model_ino(c, 0)?
                    } else {
                        let from = self.resolve(&self.dir_path(c, 0)?, old);
                        if let Some(fdn) = proc_fd(&from) {
                            match self.fds.get(&fdn).map(|&o| &self.ofds[o].target) {
                                Some(Target::Model(i)) => Some(*i),
                                _ => None,
                            }
                        } else if fl.contains("AT_SYMLINK_FOLLOW") {
                            self.b.lookup(&self.follow(from))
                        } else {
                            self.b.lookup(&from)
                        }
                    };
                    (ino, to)
                };
                if self.b.in_scope(&to) {
                    match ino {
                        Some(ino) => self.b.link(ino, &to, &src).map_err(map)?,
                        None => return perr(c, "link of an inode the model does not know"),
                    }
                }
            }
            "symlink" | "symlinkat" => {
                let target = self.string(c, 0)?;
                let to = if c.name == "symlink" {
                    self.at_path(c, None, 1)?
                } else {
                    self.at_path(c, Some(1), 2)?
                };
                if self.b.in_scope(&to) {
                    self.b.symlink(&to, &target, &src).map_err(map)?;
                }
            }
            "unlink" | "rmdir" | "unlinkat" => {
                let p = if c.name == "unlinkat" {
                    self.at_path(c, Some(0), 1)?
                } else {
                    self.at_path(c, None, 0)?
                };
                if self.b.in_scope(&p) {
                    self.b.unlink(&p, &src).map_err(map)?;
                }
            }
            "mkdir" | "mkdirat" => {
                let p = if c.name == "mkdir" {
                    self.at_path(c, None, 0)?
                } else {
                    self.at_path(c, Some(0), 1)?
                };
                if self.b.in_scope(&p) {
                    self.b.create(&p, Kind::Dir, &src).map_err(map)?;
                }
            }
            "fchmod" | "fchown" => {
                if let Some(ino) = self.model_ino(c, 0)? {
                    if c.name == "fchmod" {
                        let m = self.int(c, 1)? as u32;
                        self.b.chmod(ino, m, &src);
                    } else {
                        self.b.chown(ino, &src);
                    }
                }
            }
            "chmod" | "chown" | "lchown" | "fchmodat" | "fchmodat2" | "fchownat" => {
                let at = c.name.ends_with("at") || c.name == "fchmodat2";
                let p = if at {
                    self.at_path(c, Some(0), 1)?
                } else {
                    self.at_path(c, None, 0)?
                };
                if let Some(ino) = self.b.lookup(&self.follow(p)) {
                    if c.name.contains("chmod") {
                        let m = self.int(c, if at { 2 } else { 1 })? as u32;
                        self.b.chmod(ino, m, &src);
                    } else {
                        self.b.chown(ino, &src);
                    }
                }
            }
            "mmap" => {
                let prot = self.arg(c, 2)?;
                let fl = self.arg(c, 3)?;
                if prot.contains("PROT_WRITE")
                    && fl.contains("MAP_SHARED")
                    && self.model_ino(c, 4).ok().flatten().is_some()
                {
                    return perr(
                        c,
                        "shared writable mmap of a modelled file: writes not observable",
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn proc_fd(p: &Path) -> Option<i64> {
    let s = p.to_str()?;
    let rest = s.strip_prefix("/proc/")?;
    let (who, fd) = rest.split_once("/fd/")?;
    if who == "self" || who == "thread-self" || who.bytes().all(|b| b.is_ascii_digit()) {
        fd.parse().ok()
    } else {
        None
    }
}

/// Replay parsed calls on top of the durable `initial` image of `root`; `cwd` is the
/// traced program's working directory. Returns the log, the final live image and stats.
pub fn replay(
    calls: &[Call],
    root: &Path,
    initial: Fs,
    cwd: &Path,
) -> Result<(OpLog, Fs, ParseStats), ParseError> {
    let mut r = Replayer {
        b: LogBuilder::new(root, initial),
        cwd: cwd.to_path_buf(),
        fds: HashMap::new(),
        ofds: Vec::new(),
        stats: ParseStats::default(),
    };
    for c in calls {
        r.stats.calls += 1;
        r.step(c)?;
    }
    let stats = r.stats;
    let (log, live) = r.b.finish();
    Ok((log, live, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_calls_and_resumed_halves() {
        let text = "\
12 openat(AT_FDCWD<\\x2f\\x74>, \"\\x61\", O_WRONLY|O_CREAT|O_EXCL, 0600) = 3<\\x2f\\x74\\x2f\\x61>
12 write(3<\\x2f\\x74\\x2f\\x61>, \"\\x68\\x69\", 2 <unfinished ...>
13 close(5) = 0
12 <... write resumed>) = 2
12 renameat2(4<\\x2f\\x74>, \"\\x61\", 4<\\x2f\\x74>, \"\\x62\", RENAME_NOREPLACE) = -1 EEXIST (File exists)
12 +++ exited with 0 +++
";
        let calls = parse_calls(text).unwrap();
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[0].name, "openat");
        assert_eq!(calls[0].ret, Some(3));
        assert_eq!(calls[0].ret_path.as_deref(), Some(Path::new("/t/a")));
        assert_eq!(calls[2].name, "write");
        assert_eq!(parse_str(&calls[2].args[1]).unwrap().0, b"hi");
        assert_eq!(calls[3].ret, Some(-1));
    }

    #[test]
    fn pretty_decodes_paths_and_summarizes_data() {
        let l = "renameat(5<\\x2f\\x74>, \"\\x61\", 5<\\x2f\\x74>, \"\\x00\\x01\") = 0";
        assert_eq!(
            pretty(l),
            "renameat(5</t>, \"a\", 5</t>, \"<2 bytes>\") = 0"
        );
    }

    #[test]
    fn ints_flags_and_paths() {
        assert_eq!(parse_int("0600"), Some(0o600));
        assert_eq!(parse_int("0x10"), Some(16));
        assert_eq!(parse_int("[5 => 10]"), Some(5));
        assert_eq!(parse_fd("AT_FDCWD").unwrap().0, libc::AT_FDCWD as i64);
        let (fd, p) = parse_fd("4<\\x2f\\x23\\x31>(deleted)").unwrap();
        assert_eq!((fd, p.as_deref()), (4, Some(Path::new("/#1"))));
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(proc_fd(Path::new("/proc/self/fd/7")), Some(7));
        assert_eq!(proc_fd(Path::new("/proc/123/fd/7")), Some(7));
        assert_eq!(proc_fd(Path::new("/tmp/x")), None);
    }

    #[test]
    fn replays_tmpfile_link_rename() {
        let root = Path::new("/t");
        let b = LogBuilder::with_files(root, &[("dst", b"old")]);
        let (_, initial) = b.finish();
        let text = "\
1 openat(AT_FDCWD<\\x2f>, \"\\x2f\\x74\", O_RDONLY|O_DIRECTORY|O_CLOEXEC) = 3<\\x2f\\x74>
1 openat(3<\\x2f\\x74>, \"\\x2e\", O_WRONLY|O_CLOEXEC|O_TMPFILE, 0600) = 4<\\x2f\\x74\\x2f\\x23\\x31\\x20\\x28\\x64\\x65\\x6c\\x65\\x74\\x65\\x64\\x29>
1 write(4<\\x2f>, \"\\x6e\\x65\\x77\", 3) = 3
1 fsync(4<\\x2f>) = 0
1 linkat(AT_FDCWD<\\x2f>, \"\\x2f\\x70\\x72\\x6f\\x63\\x2f\\x73\\x65\\x6c\\x66\\x2f\\x66\\x64\\x2f\\x34\", 3<\\x2f\\x74>, \"\\x2e\\x74\\x6d\\x70\", AT_SYMLINK_FOLLOW) = 0
1 renameat(3<\\x2f\\x74>, \"\\x2e\\x74\\x6d\\x70\", 3<\\x2f\\x74>, \"\\x64\\x73\\x74\") = 0
1 fsync(3<\\x2f\\x74>) = 0
";
        let calls = parse_calls(text).unwrap();
        let (log, live, _) = replay(&calls, root, initial, Path::new("/")).unwrap();
        assert_eq!(log.len(), 6, "{:#?}", log.events);
        let ino = live.entries[Path::new("/t/dst")];
        assert_eq!(live.inodes[ino].data, b"new");
        assert!(!live.entries.contains_key(Path::new("/t/.tmp")));
    }
}
