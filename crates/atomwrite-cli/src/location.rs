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
        // `doctor URL` probes an object store (cmd/doctor.rs).
        Command::Doctor(a) => locate(&a.dir).map(drop),
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

/// `-` as a path argument, like coreutils: `--from -` (write, publish) is stdin, and
/// `cp - DST` copies stdin (it becomes `write DST`). Everywhere else `-` would be stdin or
/// stdout where a file must be replaced, published, listed, checked or swept, which no stream
/// can be: a usage error naming the argument (a file named `-` is `./-`). Called once, before
/// any command runs.
pub fn resolve_dashes(cmd: &mut Command) -> Result<(), Failure> {
    let dash = |p: &Path| p.as_os_str() == "-";
    let refuse = |what: &str| {
        Err(Failure::usage(format!(
            "{what} `-` would be stdin or stdout, which cannot be {}; to mean a file named `-`, \
             write `./-`",
            if what == "DST" {
                "replaced atomically"
            } else {
                "used here"
            }
        )))
    };
    match cmd {
        Command::Write(a) => {
            if a.from.as_deref().is_some_and(dash) {
                a.from = None;
            }
            if dash(&a.dst) {
                return refuse("DST");
            }
        }
        Command::Publish(a) => {
            if a.from.as_deref().is_some_and(dash) {
                a.from = None;
            }
            if a.dir.as_deref().is_some_and(dash) {
                return refuse("--dir DIR");
            }
            if dash(&a.dst) {
                return refuse("DST");
            }
        }
        Command::Cp(a) => {
            if a.paths.last().is_some_and(|p| dash(p)) {
                return refuse("DST");
            }
            if a.paths.iter().any(|p| dash(p)) {
                return cp_from_stdin(cmd);
            }
        }
        Command::Run(a) if dash(&a.dst) => return refuse("DST"),
        Command::Latest(a) if dash(&a.dst) => return refuse("DST"),
        Command::Versions(a) if dash(&a.dst) => return refuse("DST"),
        Command::Verify(a) if a.paths.iter().any(|p| dash(p)) => return refuse("PATH"),
        Command::Clean(a) if dash(&a.dir) => return refuse("DIR"),
        Command::Doctor(a) if dash(&a.dir) => return refuse("DIR"),
        _ => {}
    }
    Ok(())
}

/// `cp - DST`: stdin to DST, which is what `write DST` does (one source only; `-p` has no
/// source attributes to keep).
fn cp_from_stdin(cmd: &mut Command) -> Result<(), Failure> {
    let Command::Cp(a) = cmd else { return Ok(()) };
    if a.paths.len() != 2 {
        return Err(Failure::usage(
            "SRC `-` (stdin) can only be copied alone, to one DST",
        ));
    }
    if a.preserve {
        return Err(Failure::usage(
            "--preserve does not apply to SRC `-` (stdin has no mode, owner or group)",
        ));
    }
    let write = crate::cli::WriteArgs {
        opts: a.opts.clone(),
        from: None,
        expected_size: None,
        no_empty: false,
        dst: a.paths[1].clone(),
    };
    *cmd = Command::Write(write);
    Ok(())
}
