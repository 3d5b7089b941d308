//! `atomwrite write [OPTS] [--from FILE] DST`: stdin (or FILE) → DST, streamed.

use std::io;
use std::path::Path;

use rustix::fs::FileType;

use crate::cli::WriteArgs;
use crate::common::{self, CmdResult, EXIT_OK, Failure};
use crate::progress::{self, Progress};

/// The pipe buffer requested for stdin.
const PIPE_BUFFER: usize = 1 << 20;

pub fn run(a: WriteArgs) -> CmdResult {
    if crate::remote::is_url(&a.dst) {
        return crate::remote::write(a);
    }
    let mut opts = a.opts.to_options();
    let mut known_size = a.expected_size;
    let (mut input, source_name): (Box<dyn io::Read>, &Path) = match &a.from {
        Some(p) => {
            let f = atomwrite::open_source(p)?;
            let md = f.metadata().map_err(|e| {
                Failure::failed(format!("failed to inspect `{}`: {e}", p.display()))
            })?;
            if md.is_dir() {
                return Err(Failure::usage(format!("`{}` is a directory", p.display())));
            }
            if md.is_file() {
                opts = opts.size_hint(md.len());
                known_size = Some(md.len());
            }
            (Box::new(f), p.as_path())
        }
        None => {
            let stdin = io::stdin();
            match rustix::fs::fstat(&stdin) {
                // A regular file redirected to stdin has a known size: preallocate.
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                    opts = opts.size_hint(st.st_size as u64);
                    known_size = Some(st.st_size as u64);
                }
                // A pipe: ask for a 1 MiB pipe buffer, so a fast producer and this reader
                // wake each other up 16x less often than with the default 64 KiB. Best effort
                // (capped by /proc/sys/fs/pipe-max-size for unprivileged users).
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Fifo => {
                    let _ = rustix::pipe::fcntl_setpipe_size(&stdin, PIPE_BUFFER);
                }
                _ => {}
            }
            (Box::new(stdin.lock()), Path::new("<stdin>"))
        }
    };
    let mut file = common::open_tracked(&opts, &a.dst)?;
    if a.opts.no_clobber {
        // Refuse before reading any input (it may be long, or never end); the commit's
        // create-only check stays the final word.
        file.check_vacant()?;
    }
    let label = a
        .dst
        .file_name()
        .unwrap_or(a.dst.as_os_str())
        .to_string_lossy();
    // Typing into a terminal: say so, and draw no bar over what the user types.
    let typing = a.from.is_none() && progress::stdin_notice(&a.dst.to_string_lossy(), a.opts.quiet);
    let flags = progress::Flags {
        force: a.opts.progress,
        quiet: a.opts.quiet || typing,
    };
    let mut bar = Progress::bytes(known_size, flags, &label);
    let copied = file.copy_from(&mut bar.wrap(&mut input), source_name);
    bar.finish();
    copied?;
    if a.no_empty && file.is_empty() {
        drop(file);
        return Err(empty_refused(&a.dst.display().to_string(), source_name));
    }
    let receipt = common::commit_guarded(file)?;
    common::after_commit(&a.opts, &receipt)?;
    common::report_receipt(&a.opts, &receipt);
    Ok(EXIT_OK)
}

/// `--no-empty` found no input: exit 1, nothing committed. Shared with `run` and the URL paths.
pub fn empty_refused(dst: &str, source: &Path) -> Failure {
    Failure::failed(format!(
        "refusing to commit an empty `{dst}` (--no-empty): {} was empty; nothing was committed to `{dst}`",
        source.display()
    ))
}
