//! `atomwrite`: atomic, durable file writes from the shell.
//!
//! The binary holds no file logic: it parses, validates, calls the `atomwrite` library and maps
//! the outcome to an exit code (0 ok, 1 failure, 2 usage, 3 conflict).

mod cli;
mod cmd;
mod common;
mod signals;

use clap::Parser;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                common::EXIT_USAGE
            } else {
                0
            });
        }
    };
    signals::install();
    let code = cmd::dispatch(cli);
    std::process::exit(code);
}
