//! docs/cli.md is the JSON contract: every ```json example there must parse, and the command
//! named in the `<!-- check: ARGS -->` comment above it must print an object with exactly the
//! same keys, recursively (arrays: the keys of their first element, when both have one). So a
//! shape that changes without its documentation fails here, and so does a documented key that
//! the command no longer prints.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

fn cli_md() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md");
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// One documented example: the line it starts on, its check comment, its text.
struct Example {
    line: usize,
    check: Option<String>,
    json: String,
}

/// Every ```json block of `md`, with the `<!-- check: ... -->` comment that precedes it (blank
/// lines between are allowed).
fn examples(md: &str) -> Vec<Example> {
    let lines: Vec<&str> = md.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start().starts_with("```json") {
            let start = i;
            let check = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .and_then(|l| l.trim().strip_prefix("<!-- check:"))
                .and_then(|l| l.strip_suffix("-->"))
                .map(|c| c.trim().to_string());
            i += 1;
            let mut json = String::new();
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                json.push_str(lines[i]);
                json.push('\n');
                i += 1;
            }
            out.push(Example {
                line: start + 1,
                check,
                json,
            });
        }
        i += 1;
    }
    out
}

/// The key paths of `v`: `a`, `a.b`, `a[].c` (arrays: their first element).
fn keys(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                keys(v, &p, out);
            }
        }
        Value::Array(a) => {
            if let Some(first) = a.first() {
                keys(first, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// Key paths of a documented example and of the real output, compared where both sides have
/// the value: a key path below an array or a null that only one side has filled is not
/// compared (an empty list in the example, a `null` mount in the output).
fn compare(doc: &Value, real: &Value, prefix: &str, diffs: &mut Vec<String>) {
    match (doc, real) {
        (Value::Object(d), Value::Object(r)) => {
            for k in d.keys().filter(|k| !r.contains_key(*k)) {
                diffs.push(format!("documented but not printed: {prefix}{k}"));
            }
            for k in r.keys().filter(|k| !d.contains_key(*k)) {
                diffs.push(format!("printed but not documented: {prefix}{k}"));
            }
            for (k, dv) in d {
                if let Some(rv) = r.get(k) {
                    compare(dv, rv, &format!("{prefix}{k}."), diffs);
                }
            }
        }
        (Value::Array(d), Value::Array(r)) => {
            if let (Some(d), Some(r)) = (d.first(), r.first()) {
                compare(d, r, &format!("{prefix}[]."), diffs);
            }
        }
        _ => {}
    }
}

/// The scratch directory the checks run in (see docs/cli.md, "JSON shapes").
fn fixture() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    fs::write(p.join("src.txt"), b"a\n").unwrap();
    fs::write(p.join("src2.txt"), b"b\n").unwrap();
    fs::create_dir(p.join("out")).unwrap();
    fs::write(p.join("out.csv"), b"old\n").unwrap();
    for (args, input) in [
        (vec!["write", "--manifest", "m.txt"], &b""[..]),
        (vec!["publish", "p.csv"], b"v1\n"),
        (vec!["publish", "p.csv"], b"v2\n"),
    ] {
        let o = run(
            p,
            &args.iter().map(PathBuf::from).collect::<Vec<_>>(),
            input,
        );
        assert!(o.status.success(), "fixture {args:?}: {o:?}");
    }
    d
}

fn run(dir: &Path, args: &[PathBuf], input: &[u8]) -> std::process::Output {
    let mut c = Command::cargo_bin("atomwrite").unwrap();
    c.args(args)
        .current_dir(dir)
        .env_remove("ATOMWRITE_RUN_ID")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

#[test]
fn every_documented_json_example_parses_and_matches_the_real_output() {
    let md = cli_md();
    let ex = examples(&md);
    assert!(ex.len() >= 15, "only {} json examples found", ex.len());
    let mut failures = Vec::new();
    let mut checked = BTreeSet::new();
    for e in &ex {
        let doc: Value = match serde_json::from_str(&e.json) {
            Ok(v) => v,
            Err(err) => {
                failures.push(format!("docs/cli.md:{}: not JSON: {err}", e.line));
                continue;
            }
        };
        let Some(check) = &e.check else {
            failures.push(format!(
                "docs/cli.md:{}: no `<!-- check: ARGS -->` above",
                e.line
            ));
            continue;
        };
        if check.starts_with("parse-only") {
            assert!(
                check.contains('('),
                "docs/cli.md:{}: parse-only needs a reason",
                e.line
            );
            continue;
        }
        // A fresh scratch directory per example: each runs against the documented fixture.
        let d = fixture();
        let args: Vec<PathBuf> = check.split_whitespace().map(PathBuf::from).collect();
        let out = run(d.path(), &args, b"data\n");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let real: Value = match serde_json::from_str(stdout.trim()) {
            Ok(v) => v,
            Err(err) => {
                failures.push(format!(
                    "docs/cli.md:{}: `atomwrite {check}` printed no JSON ({err}): {stdout:?} {}",
                    e.line,
                    String::from_utf8_lossy(&out.stderr)
                ));
                continue;
            }
        };
        let mut diffs = Vec::new();
        compare(&doc, &real, "", &mut diffs);
        if !diffs.is_empty() {
            failures.push(format!(
                "docs/cli.md:{}: `atomwrite {check}`: {}\n  real: {real}",
                e.line,
                diffs.join("; ")
            ));
        }
        checked.insert(args[0].to_string_lossy().into_owned());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every command with --json has at least one checked example.
    for cmd in [
        "write", "cp", "run", "publish", "latest", "versions", "verify", "clean", "doctor",
    ] {
        assert!(checked.contains(cmd), "no checked JSON example for `{cmd}`");
    }
}

/// The comparison itself catches a missing, an extra and a nested key.
#[test]
fn key_comparison_catches_drift() {
    let doc: Value = serde_json::from_str(r#"{"a":1,"b":{"c":[{"d":1}]}}"#).unwrap();
    let same: Value = serde_json::from_str(r#"{"b":{"c":[{"d":2}]},"a":null}"#).unwrap();
    let mut diffs = Vec::new();
    compare(&doc, &same, "", &mut diffs);
    assert!(diffs.is_empty(), "{diffs:?}");
    for bad in [
        r#"{"b":{"c":[{"d":2}]}}"#,
        r#"{"a":1,"b":{"c":[{"d":2,"e":3}]}}"#,
        r#"{"a":1,"b":{"c":[{"d":2}]},"z":0}"#,
    ] {
        let real: Value = serde_json::from_str(bad).unwrap();
        let mut diffs = Vec::new();
        compare(&doc, &real, "", &mut diffs);
        assert!(!diffs.is_empty(), "{bad}");
    }
    let mut k = BTreeSet::new();
    keys(&doc, "", &mut k);
    assert!(k.contains("b.c[].d"), "{k:?}");
}
