//! Shared code of the fuzz targets: the CLI's parsers (the very file the CLI compiles) and an
//! independent reference evaluation of symbolic modes.

/// `crates/atomwrite-cli/src/parse.rs`, included as is: the code fuzzed is the code shipped.
#[allow(dead_code)]
#[path = "../../../crates/atomwrite-cli/src/parse.rs"]
pub mod parse;

pub mod gnu_mode;
