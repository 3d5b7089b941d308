//! The man pages as `man` shows them: `atomwrite man --out-dir DIR` writes `atomwrite.1` and one
//! `atomwrite-COMMAND.1` per command (like git); each renders with `man -l --warnings` without a
//! single warning, lists every option its command's `--help` lists, keeps the examples line for
//! line, and refers only to pages that were generated.
//!
//! Needs `man` (man-db) and groff: without them the test says why it skips (and fails when
//! `CI=true`).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;

fn aw(args: &[&str]) -> String {
    let out = Command::cargo_bin("atomwrite")
        .unwrap()
        .args(args)
        // Help unwrapped: examples compared line for line.
        .env("COLUMNS", "1000")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn have_man() -> bool {
    let ok = Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but man (man-db) is not installed"
        );
        eprintln!("SKIP: man (man-db) is not installed");
    }
    ok
}

/// `man -l --warnings PAGE` as plain text, 80 columns; returns (text, warnings).
fn render(page: &Path) -> (String, String) {
    let out = Command::new("man")
        .args(["--warnings=all", "-l"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "")
        .env("LC_ALL", "C.UTF-8")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("GROFF_NO_SGR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "man -l {}: {:?}", page.display(), out);
    // Strip overstrike bold/underline (`x\bx`, `_\bx`) that man may emit without a terminal.
    let raw = String::from_utf8_lossy(&out.stdout);
    let mut text = String::new();
    for c in raw.chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    (text, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The subcommands the top-level help lists (without `help`).
fn commands() -> Vec<String> {
    let help = aw(&["--help"]);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .filter(|c| c != "help")
        .collect()
}

/// Every `--long` option (and `-s` short one) that `atomwrite ARGS --help` lists.
fn options(args: &[&str]) -> BTreeSet<String> {
    let mut a = args.to_vec();
    a.push("--help");
    let help = aw(&a);
    let mut set = BTreeSet::new();
    for line in help.lines() {
        let t = line.trim_start();
        if !t.starts_with('-') || line.len() == t.len() {
            continue;
        }
        for word in t.split_whitespace().take(2) {
            let w = word.trim_end_matches(',');
            if w.starts_with('-') && w.len() > 1 {
                set.insert(w.to_string());
            }
        }
    }
    set
}

/// The example lines of `atomwrite ARGS --help` (after `Examples:`).
fn examples(args: &[&str]) -> Vec<String> {
    let mut a = args.to_vec();
    a.push("--help");
    aw(&a)
        .lines()
        .skip_while(|l| !l.starts_with("Examples:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn every_page_renders_cleanly_and_lists_every_option() {
    if !have_man() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("man1");
    aw(&["man", "--out-dir", dir.to_str().unwrap()]);
    let cmds = commands();
    assert!(cmds.len() >= 10, "{cmds:?}");
    let mut expected: BTreeSet<String> = cmds.iter().map(|c| format!("atomwrite-{c}.1")).collect();
    expected.insert("atomwrite.1".into());
    let written: BTreeSet<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, expected, "one page per command, no more");

    let pages: Vec<(Option<&str>, String)> = std::iter::once((None, "atomwrite.1".to_string()))
        .chain(
            cmds.iter()
                .map(|c| (Some(c.as_str()), format!("atomwrite-{c}.1"))),
        )
        .collect();
    for (cmd, file) in &pages {
        let (text, warnings) = render(&dir.join(file));
        assert!(warnings.trim().is_empty(), "{file}: warnings:\n{warnings}");
        let args: Vec<&str> = cmd.iter().copied().collect();
        // Every option of the command, whole (no hyphenation breaks one).
        for opt in options(&args) {
            assert!(
                text.split(|c: char| c.is_whitespace()
                    || c == ','
                    || c == '['
                    || c == ']'
                    || c == '|')
                    .any(|w| w == opt || w.starts_with(&format!("{opt}="))),
                "{file} lacks {opt}:\n{text}"
            );
        }
        // The examples line for line (not reflowed), with ASCII quotes and hyphens.
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let ex = examples(&args);
        assert!(!ex.is_empty(), "{file}: no examples in --help");
        for e in ex {
            assert!(
                lines.contains(&e.as_str()),
                "{file}: example reflowed or lost: {e}\n{text}"
            );
        }
        // Cross-references only to generated pages.
        let mut rest = text.as_str();
        while let Some(i) = rest.find("atomwrite-") {
            rest = &rest[i + "atomwrite-".len()..];
            if let Some(j) = rest.find("(1)") {
                let name = &rest[..j];
                if name.chars().all(|c| c.is_ascii_lowercase()) && !name.is_empty() {
                    assert!(
                        expected.contains(&format!("atomwrite-{name}.1")),
                        "{file} refers to atomwrite-{name}(1), which is not generated"
                    );
                }
            }
        }
        // The subcommand pages name themselves; the top page lists every command.
        if let Some(c) = cmd {
            assert!(text.contains(&format!("atomwrite-{c}(1)")), "{file}");
        } else {
            for c in &cmds {
                assert!(
                    text.contains(&format!("atomwrite-{c}(1)")),
                    "atomwrite.1 lacks {c}"
                );
            }
            assert!(!text.contains("atomwrite-help"), "{text}");
        }
    }
}

#[test]
fn one_page_to_stdout_and_unknown_commands_refused() {
    let top = aw(&["man"]);
    assert!(top.contains(".TH atomwrite 1 "), "{top}");
    let page = aw(&["man", "publish"]);
    assert!(page.contains(".TH atomwrite-publish 1 "), "{page}");
    assert!(page.contains(r"\-\-keep"), "{page}");
    let out = Command::cargo_bin("atomwrite")
        .unwrap()
        .args(["man", "help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
