//! `atomwrite`: atomic, durable file writes from the shell.
//!
//! The binary holds no file logic: it parses, validates, calls the `atomwrite` library and maps
//! the outcome to an exit code (0 ok, 1 failure, 2 usage, 3 conflict).

mod cli;
mod cmd;
mod common;
mod location;
mod man;
mod parse;
mod progress;
mod render;
mod signals;

use clap::Parser;

fn main() {
    let mut cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            if e.use_stderr() && json_requested() {
                let mut v = serde_json::json!({ "error": {
                    "message": usage_message(&e),
                    "exit_code": common::EXIT_USAGE,
                    "kind": "usage",
                }});
                if let Some(arg) = offending_argument(&e) {
                    v["error"]["argument"] = serde_json::json!(arg);
                }
                common::print_json(&v);
            }
            std::process::exit(if e.use_stderr() {
                common::EXIT_USAGE
            } else {
                0
            });
        }
    };
    if let Err(f) = location::resolve_dashes(&mut cli.command) {
        common::report_failure(&f, json_requested());
        std::process::exit(f.code);
    }
    // A cp of many files holds their temps open: grow the descriptor table while this thread is
    // still the only one (the signal thread would make every growth wait for RCU).
    if let cli::Command::Cp(a) = &cli.command {
        atomwrite::Batch::reserve_descriptors(a.paths.len().saturating_sub(1));
    }
    signals::install(json_requested());
    let code = cmd::dispatch(cli);
    signals::wait_if_exiting();
    std::process::exit(code);
}

/// `--json` among the arguments (before any `--`): usage errors are then JSON on stdout too.
fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// The argument a clap error is about (`--keep <N>`, `<DST>`, `--bogus`), when it names one.
fn offending_argument(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    match e.get(ContextKind::InvalidArg)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) if !v.is_empty() => Some(v.join(" ")),
        _ => None,
    }
}

/// The first line of a clap error, without its `error: ` prefix, naming the argument it is
/// about (clap puts a missing argument's name on the next line: "...were not provided:").
fn usage_message(e: &clap::Error) -> String {
    let s = e.to_string();
    let first = s.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match offending_argument(e) {
        Some(arg) if !first.contains(&arg) => {
            format!("{} {arg}", first.trim_end())
        }
        _ => first.to_string(),
    }
}
