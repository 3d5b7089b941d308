//! `atomwrite`: atomic, durable file writes from the shell.
//!
//! The binary holds no file logic: it parses, validates, calls the `atomwrite` library and maps
//! the outcome to an exit code (0 ok, 1 failure, 2 usage, 3 conflict).

mod cli;
mod cmd;
mod common;
mod location;
mod parse;
mod progress;
mod render;
mod signals;

use clap::Parser;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            if e.use_stderr() && json_requested() {
                common::print_json(&serde_json::json!({ "error": {
                    "message": usage_message(&e),
                    "exit_code": common::EXIT_USAGE,
                    "kind": "usage",
                }}));
            }
            std::process::exit(if e.use_stderr() {
                common::EXIT_USAGE
            } else {
                0
            });
        }
    };
    signals::install(json_requested());
    let code = cmd::dispatch(cli);
    std::process::exit(code);
}

/// `--json` among the arguments (before any `--`): usage errors are then JSON on stdout too.
fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// The first line of a clap error, without its `error: ` prefix.
fn usage_message(e: &clap::Error) -> String {
    let s = e.to_string();
    let first = s.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}
