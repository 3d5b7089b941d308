//! Man pages, generated from the clap definitions in `cli.rs` (so they cannot drift from the
//! parser), one page per subcommand like `git`: `atomwrite(1)` and `atomwrite-COMMAND(1)`.
//!
//! clap_mangen renders the title, NAME, SYNOPSIS, DESCRIPTION and OPTIONS; the sections that
//! come from a command's `after_help` (notes and examples) are rendered here in no-fill mode, so
//! examples keep their lines and alignment instead of being reflowed into a paragraph. SEE ALSO
//! names only pages this module generates.

use std::io::{self, Write};

use clap::CommandFactory;

use crate::cli::Cli;

/// The top-level command as the pages see it: built (so subcommands know their display names,
/// `atomwrite-write`), without the `help` subcommand (it has no page).
fn top() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The names of the commands that get a page of their own (every visible subcommand).
pub fn page_commands() -> Vec<String> {
    top()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_string())
        .collect()
}

/// The page of `command` (`None`: `atomwrite(1)`), as roff. `None` when there is no such
/// command.
pub fn page(command: Option<&str>) -> Option<Vec<u8>> {
    let top = top();
    let siblings = page_commands();
    let cmd = match command {
        None => top.clone(),
        Some(name) => top
            .get_subcommands()
            .find(|s| s.get_name() == name && !s.is_hide_set())?
            .clone(),
    };
    let mut out = Vec::new();
    render(&cmd, command, &siblings, &mut out).expect("writing to a Vec cannot fail");
    Some(out)
}

/// The file name of `command`'s page: `atomwrite.1` or `atomwrite-COMMAND.1`.
pub fn file_name(command: Option<&str>) -> String {
    match command {
        None => "atomwrite.1".to_string(),
        Some(c) => format!("atomwrite-{c}.1"),
    }
}

fn render(
    cmd: &clap::Command,
    command: Option<&str>,
    siblings: &[String],
    w: &mut dyn Write,
) -> io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).manual("atomwrite manual");
    man.render_title(w)?;
    // No hyphenation: option and page names must stay whole (copyable, searchable).
    writeln!(w, ".nh")?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    if command.is_none() {
        man.render_subcommands_section(w)?;
    }
    if let Some(after) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
        render_after_help(&after.to_string(), w)?;
    }
    render_see_also(command, siblings, w)?;
    man.render_version_section(w)
}

/// A command's `after_help`: prose paragraphs filled, `Examples:` (and any indented block) kept
/// line for line in no-fill mode.
fn render_after_help(text: &str, w: &mut dyn Write) -> io::Result<()> {
    let (notes, examples) = match text.find("Examples:") {
        Some(i) => (&text[..i], Some(&text[i + "Examples:".len()..])),
        None => (text, None),
    };
    if !notes.trim().is_empty() {
        writeln!(w, ".SH NOTES")?;
        for para in notes.trim().split("\n\n") {
            writeln!(w, ".PP")?;
            for line in para.lines() {
                writeln!(w, "{}", escape(line.trim()))?;
            }
        }
    }
    if let Some(ex) = examples {
        writeln!(w, ".SH EXAMPLES")?;
        writeln!(w, ".nf")?;
        for line in ex.trim_matches('\n').lines() {
            writeln!(w, "{}", escape(line.strip_prefix("  ").unwrap_or(line)))?;
        }
        writeln!(w, ".fi")?;
    }
    Ok(())
}

/// SEE ALSO: the other generated pages only (never one that is not generated).
fn render_see_also(
    command: Option<&str>,
    siblings: &[String],
    w: &mut dyn Write,
) -> io::Result<()> {
    let mut refs = Vec::new();
    if command.is_some() {
        refs.push(r"\fBatomwrite\fR(1)".to_string());
    }
    for s in siblings.iter().filter(|s| Some(s.as_str()) != command) {
        refs.push(format!(r"\fBatomwrite\-{}\fR(1)", escape(s)));
    }
    writeln!(w, ".SH \"SEE ALSO\"")?;
    writeln!(w, "{}", refs.join(",\n"))
}

/// Escapes a line of text for roff: backslashes, a leading control character, `-` (a literal
/// hyphen-minus) and quotes (not typographic ones), so commands can be copied from the page.
fn escape(line: &str) -> String {
    let s = line
        .replace('\\', r"\e")
        .replace('-', r"\-")
        .replace('\'', r"\(aq")
        .replace('`', r"\(ga");
    if s.starts_with('.') {
        format!(r"\&{s}")
    } else {
        s
    }
}

/// Writes every page into `dir`, each atomically; returns the file names written.
pub fn write_all(dir: &std::path::Path) -> atomwrite::Result<Vec<String>> {
    let mut names = Vec::new();
    let commands = page_commands();
    for c in std::iter::once(None).chain(commands.iter().map(|c| Some(c.as_str()))) {
        let name = file_name(c);
        let text = page(c).expect("a listed command has a page");
        atomwrite::Options::new().write(dir.join(&name), &text)?;
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keeps_text_literal() {
        assert_eq!(escape(".x -v a\\b"), r"\&.x \-v a\eb");
        assert_eq!(escape("'q' `x`"), r"\(aqq\(aq \(gax\(ga");
    }

    #[test]
    fn every_visible_command_has_a_page_and_help_has_none() {
        let cmds = page_commands();
        assert!(cmds.iter().any(|c| c == "write"));
        assert!(!cmds.iter().any(|c| c == "help"));
        for c in &cmds {
            let p = String::from_utf8(page(Some(c)).unwrap()).unwrap();
            assert!(p.contains(&format!(".TH atomwrite-{c} 1 ")), "{c}: {p}");
        }
        assert!(page(Some("help")).is_none());
    }
}
