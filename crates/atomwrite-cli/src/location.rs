//! Every DST/SRC/PATH argument is classified by [`atomwrite::Location`] before any command
//! runs: a URL with a typo (`s3:/b/k`, `s4://b/k`, `http://host/x`) is a usage error (exit 2)
//! instead of a local file named `s3:` created in the current directory.
//!
//! [`check_args`] is called once by `cmd::dispatch`, so no command can forget it; afterwards
//! [`atomwrite::destination::open`] only has to tell a valid URL from a path.

use std::path::Path;

use atomwrite::Location;

use crate::cli::Command;
use crate::common::Failure;

/// Classifies `p`: a local path or a supported URL; a URL-like typo is a usage error (exit 2)
/// whose one-line message names the argument, the URL probably meant and `./ARG` for a local
/// file of that name.
pub fn locate(p: &Path) -> Result<Location, Failure> {
    Location::parse(p.as_os_str()).map_err(|e| Failure::usage(e.to_string()))
}

/// Like [`locate`], for an argument that only a local file or directory can be (`--from FILE`,
/// `--dir DIR`, `clean DIR`, `doctor DIR`): a valid URL there is a usage error too.
fn local(p: &Path, what: &str) -> Result<(), Failure> {
    match locate(p)? {
        Location::Path(_) => Ok(()),
        l => Err(Failure::usage(format!(
            "{what} must be local, but `{l}` is a URL; to mean a local file of that name, \
             write `./{l}`"
        ))),
    }
}

/// Checks every path argument of `cmd` (see the module docs).
pub fn check_args(cmd: &Command) -> Result<(), Failure> {
    match cmd {
        Command::Write(a) => {
            if let Some(f) = &a.from {
                local(f, "--from FILE")?;
            }
            locate(&a.dst).map(drop)
        }
        Command::Cp(a) => a.paths.iter().try_for_each(|p| locate(p).map(drop)),
        Command::Clean(a) => local(&a.dir, "the directory to clean"),
        Command::Publish(a) => {
            if let Some(f) = &a.from {
                local(f, "--from FILE")?;
            }
            if let Some(d) = &a.dir {
                local(d, "--dir DIR")?;
            }
            locate(&a.dst).map(drop)
        }
        Command::Latest(a) => locate(&a.dst).map(drop),
        Command::Versions(a) => locate(&a.dst).map(drop),
        Command::Verify(a) => a.paths.iter().try_for_each(|p| locate(p).map(drop)),
        Command::Run(a) => locate(&a.dst).map(drop),
        Command::Doctor(a) => local(&a.dir, "the directory to probe"),
        Command::Completions(_) | Command::Man(_) => Ok(()),
    }
}

/// Whether `cmd` asked for `--json` (its usage errors are then JSON on stdout too).
pub fn wants_json(cmd: &Command) -> bool {
    match cmd {
        Command::Write(a) => a.opts.json,
        Command::Cp(a) => a.opts.json,
        Command::Clean(a) => a.json,
        Command::Publish(a) => a.opts.json,
        Command::Latest(a) => a.json,
        Command::Versions(a) => a.json,
        Command::Verify(a) => a.json,
        Command::Run(a) => a.opts.json,
        Command::Doctor(a) => a.json,
        Command::Completions(_) | Command::Man(_) => false,
    }
}
