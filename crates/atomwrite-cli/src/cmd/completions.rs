//! `atomwrite completions SHELL` and `atomwrite man [COMMAND] [--out-dir DIR]`: both generated
//! from the clap definitions in `cli.rs`, so they cannot drift from the parser.
//!
//! The man pages come from a subcommand of the binary itself (like `rg --generate man`) rather
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
    if let Some(dir) = a.out_dir {
        crate::man::write_all(&dir)?;
        return Ok(EXIT_OK);
    }
    match crate::man::page(a.command.as_deref()) {
        Some(page) => write_stdout(&page),
        None => Err(Failure::usage(format!(
            "COMMAND `{}` has no page; the pages are atomwrite(1) and atomwrite-COMMAND(1) for \
             {}",
            a.command.unwrap_or_default(),
            crate::man::page_commands().join(", ")
        ))),
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
