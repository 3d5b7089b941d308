//! One module per subcommand; each returns an exit code or a [`Failure`].

mod clean;
mod completions;
pub mod cp;
mod doctor;
pub mod latest;
pub mod publish;
pub mod run;
pub mod verify;
pub mod versions;
pub mod write;

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use atomwrite::Destination;
use rustix::fs::FileType;

use crate::cli::{Cli, Command, CommonOpts};
use crate::common::{self, Failure};

pub fn dispatch(cli: Cli) -> i32 {
    // Every DST/SRC/PATH is classified first: a mistyped URL never becomes a local file.
    if let Err(f) = crate::location::check_args(&cli.command) {
        common::report_failure(&f, crate::location::wants_json(&cli.command));
        return f.code;
    }
    let (json, result) = match cli.command {
        Command::Write(a) => (a.opts.json, write::run(a)),
        Command::Cp(a) => (a.opts.json, cp::run(a)),
        Command::Clean(a) => (a.json, clean::run(a)),
        Command::Publish(a) => (a.opts.json, publish::run(a)),
        Command::Latest(a) => (a.json, latest::run(a)),
        Command::Versions(a) => (a.json, versions::run(a)),
        Command::Verify(a) => (a.json, verify::run(a)),
        Command::Run(a) => (a.opts.json, run::run(a)),
        Command::Doctor(a) => (a.json, doctor::run(a)),
        Command::Completions(a) => (false, completions::completions(a)),
        Command::Man(a) => (false, completions::man(a)),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            crate::signals::wait_if_exiting();
            common::report_failure(&f, json);
            f.code
        }
    }
}

/// Opens a DST/SRC/PATH argument as a [`Destination`]. An argument no destination can be made
/// of (a URL in a build without object-store support, a malformed URL) is a usage error (exit
/// 2); a store that cannot be configured is a failure (exit 1).
pub(crate) fn open_dest(p: &Path) -> Result<Destination, Failure> {
    atomwrite::destination::open(p).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported => {
            let mut f = Failure::usage(e.to_string());
            f.error = Some(e);
            f
        }
        _ => Failure::from(e),
    })
}

/// Refuses, as a usage error naming the flag, an option `d` cannot honour (from
/// [`Destination::capabilities`], never from which backend it is).
pub(crate) fn refuse_unsupported(
    o: &CommonOpts,
    no_follow: bool,
    d: &Destination,
) -> Result<(), Failure> {
    let caps = d.capabilities();
    let refused = [
        (
            o.mode.is_some() && !caps.modes,
            "--mode",
            "it has no permission bits",
        ),
        (
            no_follow && !caps.symlinks,
            "--no-follow",
            "it has no symlinks",
        ),
        (
            o.no_create_dirs && !caps.dirs,
            "--no-create-dirs",
            "it has no directories",
        ),
    ];
    match refused.iter().find(|r| r.0) {
        Some((_, flag, why)) => Err(Failure::usage(format!(
            "{flag} does not apply to `{d}` ({} store): {why}",
            d.store().as_str()
        ))),
        None => Ok(()),
    }
}

/// The input of `write` and `publish`: `--from FILE` (read with the source rules of
/// [`atomwrite::open_source`]) or stdin.
pub(crate) struct Input {
    pub reader: Box<dyn Read>,
    /// How read errors name it: the file, or `<stdin>`.
    pub name: PathBuf,
    /// Known for a regular file (also one redirected to stdin).
    pub size: Option<u64>,
    /// The permission bits of a `--from` file.
    pub mode: Option<u32>,
}

/// The pipe buffer requested for stdin.
const PIPE_BUFFER: usize = 1 << 20;

/// Opens `--from FILE` or stdin. A directory is a usage error (`dir_hint` says what to use).
pub(crate) fn open_input(from: Option<&Path>, dir_hint: &str) -> Result<Input, Failure> {
    let Some(p) = from else {
        let stdin = io::stdin();
        let mut size = None;
        match rustix::fs::fstat(&stdin) {
            // A regular file redirected to stdin has a known size: preallocate.
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                size = Some(st.st_size as u64);
            }
            // A pipe: ask for a 1 MiB pipe buffer, so a fast producer and this reader wake
            // each other up 16x less often than with the default 64 KiB. Best effort (capped
            // by /proc/sys/fs/pipe-max-size for unprivileged users).
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Fifo => {
                let _ = rustix::pipe::fcntl_setpipe_size(&stdin, PIPE_BUFFER);
            }
            _ => {}
        }
        return Ok(Input {
            reader: Box::new(stdin.lock()),
            name: PathBuf::from("<stdin>"),
            size,
            mode: None,
        });
    };
    let f = atomwrite::open_source(p)?;
    let md = f
        .metadata()
        .map_err(|e| atomwrite::Error::new(atomwrite::Op::Inspect, p, e))?;
    if md.is_dir() {
        return Err(Failure::usage(format!(
            "`{}` is a directory{dir_hint}",
            p.display()
        )));
    }
    use std::os::unix::fs::PermissionsExt;
    Ok(Input {
        reader: Box::new(f),
        name: p.to_path_buf(),
        size: md.is_file().then_some(md.len()),
        mode: Some(md.permissions().mode()),
    })
}

/// Counts what passes through; with `refuse_empty`, an input that ends before its first byte
/// fails the read instead of ending it, so nothing is committed (`--no-empty`) on any backend:
/// the write is abandoned before anything becomes visible.
pub(crate) struct NoEmpty<R> {
    inner: R,
    seen: u64,
    refuse_empty: bool,
    pub refused: bool,
}

impl<R> NoEmpty<R> {
    pub(crate) fn new(inner: R, refuse_empty: bool) -> Self {
        NoEmpty {
            inner,
            seen: 0,
            refuse_empty,
            refused: false,
        }
    }
}

impl<R: Read> Read for NoEmpty<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if n == 0 && !buf.is_empty() && self.seen == 0 && self.refuse_empty {
            self.refused = true;
            return Err(io::Error::other("the input is empty (--no-empty)"));
        }
        Ok(n)
    }
}

/// `--manifest` needs the name `NAME.manifest.json` beside each local destination: refuse before any
/// byte is written when that name cannot exist (longer than NAME_MAX, 255 bytes), rather than
/// replace the data and then fail on its manifest.
pub(crate) fn manifest_name_fits(d: &atomwrite::Destination) -> Result<(), Failure> {
    const NAME_MAX: usize = 255;
    let suffix = atomwrite::manifest::MANIFEST_SUFFIX.len();
    if d.store() == atomwrite::destination::StoreKind::Local
        && d.file_name_os().len() + suffix > NAME_MAX
    {
        return Err(Failure::failed(format!(
            "failed to write manifest for `{}`: its name `NAME{}` would be longer than {NAME_MAX} \
             bytes (ENAMETOOLONG); nothing was written (omit --manifest or use a shorter name)",
            d.display(),
            atomwrite::manifest::MANIFEST_SUFFIX
        )));
    }
    Ok(())
}

/// A manifest that failed after its data was committed: the message says the data was
/// replaced, so nobody believes the destination unchanged.
pub(crate) fn manifest_failed(e: atomwrite::Error, replaced: &str) -> Failure {
    let mut f = Failure::from(e);
    f.message = format!("{}; {replaced}", f.message);
    f
}
