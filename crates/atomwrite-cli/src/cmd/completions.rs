//! `atomwrite completions SHELL` and the hidden `atomwrite man [--out-dir DIR]`: both generated
//! from the clap definitions in `cli.rs`, so they cannot drift from the parser.
//!
//! The man page is a hidden subcommand of the binary itself (like `rg --generate man`) rather
//! than an xtask: packagers and users get the page of exactly the binary they run, with no
//! extra build step.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::common::{CmdResult, EXIT_OK, Failure};

pub fn completions(a: CompletionsArgs) -> CmdResult {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "atomwrite", &mut out);
    write_stdout(&out)
}

pub fn man(a: ManArgs) -> CmdResult {
    let cmd = Cli::command();
    match a.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| {
                Failure::failed(format!(
                    "failed to create directory `{}`: {e}",
                    dir.display()
                ))
            })?;
            clap_mangen::generate_to(cmd, &dir).map_err(|e| {
                Failure::failed(format!(
                    "failed to write man pages into `{}`: {e}",
                    dir.display()
                ))
            })?;
            Ok(EXIT_OK)
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| Failure::failed(format!("failed to render the man page: {e}")))?;
            write_stdout(&out)
        }
    }
}

fn write_stdout(bytes: &[u8]) -> CmdResult {
    let mut so = std::io::stdout().lock();
    match so.write_all(bytes).and_then(|()| so.flush()) {
        Ok(()) => Ok(EXIT_OK),
        // `atomwrite man | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(EXIT_OK),
        Err(e) => Err(Failure::failed(format!("failed to write to stdout: {e}"))),
    }
}
