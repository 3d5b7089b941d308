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

use crate::cli::{Cli, Command};
use crate::common;

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
            common::report_failure(&f, json);
            f.code
        }
    }
}
