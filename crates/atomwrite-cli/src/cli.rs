//! The command-line definitions (clap derive). Names are fixed by SPEC.md: add, don't rename.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Atomic, durable file writes: if the final filename exists, its contents are complete.
#[derive(Debug, Parser)]
#[command(name = "atomwrite", version, about, long_about = None, propagate_version = true)]
#[command(after_help = TOP_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write stdin (or --from FILE) to DST atomically and durably: a sponge that never leaves a partial file.
    #[command(after_help = WRITE_EXAMPLES)]
    Write(WriteArgs),
    /// Copy SRC to DST atomically and durably (reflink or copy_file_range when possible);
    /// several sources go into a directory as one batch.
    #[command(after_help = crate::cmd::cp::CP_EXAMPLES)]
    Cp(crate::cmd::cp::CpArgs),
    /// Remove temporary files left in DIR by writers that crashed (never one a live writer holds).
    #[command(after_help = CLEAN_EXAMPLES)]
    Clean(CleanArgs),
    /// Publish stdin (--from FILE, --dir DIR) as a new version DST.versions/vN and atomically repoint the DST symlink.
    #[command(after_help = crate::cmd::publish::PUBLISH_EXAMPLES)]
    Publish(crate::cmd::publish::PublishArgs),
    /// Print the version DST points at (0 if none) and its path.
    #[command(after_help = crate::cmd::latest::LATEST_EXAMPLES)]
    Latest(crate::cmd::latest::LatestArgs),
    /// List every version of DST with size, sha256, written_at and run_id.
    #[command(after_help = crate::cmd::versions::VERSIONS_EXAMPLES)]
    Versions(crate::cmd::versions::VersionsArgs),
    /// Check files against their manifests (PATH.manifest.json): ok, mismatch, missing.
    #[command(after_help = crate::cmd::verify::VERIFY_EXAMPLES)]
    Verify(crate::cmd::verify::VerifyArgs),
    /// Run CMD; its stdout becomes DST (or a new version with --publish) only if it exits 0.
    #[command(after_help = crate::cmd::run::RUN_EXAMPLES)]
    Run(crate::cmd::run::RunArgs),
    /// Probe DIR's filesystem: what atomwrite can do there and what durability it can promise.
    #[command(after_help = DOCTOR_EXAMPLES)]
    Doctor(DoctorArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
    /// Print a man page (roff) to stdout, or write every page (atomwrite.1 and one
    /// atomwrite-COMMAND.1 per command, like git) into a directory.
    #[command(after_help = MAN_EXAMPLES)]
    Man(ManArgs),
}

const WRITE_EXAMPLES: &str = "\
A pipe carries no exit status: `producer | atomwrite write DST` cannot know that the producer
failed, and commits whatever it printed (possibly nothing). To commit only a successful
producer's output use `atomwrite run DST -- producer`; --no-empty at least refuses an empty
input. --no-clobber fails (exit 3) before stdin is read when DST already exists. On a
terminal, write says it is reading stdin and draws no progress bar.
DST may be a URL (s3://, gs://, az://, file:///, memory:///); a URL-like typo (s3:/b/k,
s4://b/k, http://...) is a usage error (exit 2); write ./s3:/x to mean a local file.

Examples:
  curl -fsS https://example.org/data.json | atomwrite write --no-empty data/latest.json
  atomwrite run names.txt -- sort -u names.txt          # in-place filter: commits only on exit 0
  atomwrite write --from build/app.conf --mode 0640 /etc/app.conf
  pg_dump db | atomwrite write --no-clobber backups/$(date +%F).sql   # exit 3 if it exists";

const CLEAN_EXAMPLES: &str = "\
Examples:
  atomwrite clean /var/lib/etl --older-than 1h
  atomwrite clean --dry-run --recursive --older-than 2d /data
  17 * * * *  atomwrite clean --recursive /srv/exports   # crontab: silent unless it fails";

const TOP_HELP: &str = "\
Exit codes: 0 success, 1 failure (I/O error, verify mismatch), 2 usage error, 3 conflict
(--no-clobber target exists, --expect lost the race); run: the child's status, 125 if atomwrite
itself failed. Errors are one line on stderr; with --json also a JSON object on stdout.

Examples:
  make_report | atomwrite write reports/daily.csv
  atomwrite write --json --from model.bin ckpt/model.bin | jq -r .sha256
  atomwrite doctor /data

Run `atomwrite COMMAND --help` for each command's options and examples.";

const DOCTOR_EXAMPLES: &str = "\
Probe files are created inside DIR (named like atomwrite temporaries) and removed again.
Exit code 0 when an atomic write works in DIR, 1 when it does not (the report says why).

Examples:
  atomwrite doctor /var/lib/etl
  atomwrite doctor --json /mnt/nfs/exports | jq .durability.level
  atomwrite doctor -q /data || echo 'atomwrite cannot publish in /data' >&2   # CI precheck";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  atomwrite completions bash > ~/.local/share/bash-completion/completions/atomwrite
  atomwrite completions zsh > \"${fpath[1]}/_atomwrite\"
  atomwrite completions fish > ~/.config/fish/completions/atomwrite.fish";

const MAN_EXAMPLES: &str = "\
Examples:
  atomwrite man | man -l -             # atomwrite(1): the commands, exit codes
  atomwrite man publish | man -l -     # atomwrite-publish(1)
  atomwrite man --out-dir target/man   # atomwrite.1, atomwrite-write.1, ... for packaging";

/// `atomwrite doctor [DIR]`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The directory to probe (default: the current directory).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print nothing; only the exit code tells whether atomic writes work in DIR.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `atomwrite completions SHELL`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `atomwrite man [COMMAND] [--out-dir DIR]`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print (atomwrite-COMMAND(1)); default: atomwrite(1).
    #[arg(value_name = "COMMAND", conflicts_with = "out_dir")]
    pub command: Option<String>,
    /// Write atomwrite.1 and one atomwrite-COMMAND.1 per command into DIR (created if
    /// missing, each page replaced atomically) instead of printing one page to stdout.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Options of every command that writes data: `write`, `cp`, `run` and `publish` (SPEC.md
/// `OPTS`). Options only a plain file write honours are in [`WriteOpts`], so `publish --help`
/// lists only what `publish` does.
#[derive(Debug, Clone, Args)]
pub struct CommonOpts {
    /// Durability: full = file and directory fsynced (survives power loss); integrity = file
    /// fsynced (after power loss: old or new); none = no fsync (atomic against crashes only).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Full)]
    pub durability: DurabilityArg,
    /// Final permission bits, octal (0644) or symbolic as `install -m` takes them (u=rw,go=r,
    /// a+x; applied to no bits, umask ignored). Default: a new file gets 0666 & ~umask; a
    /// replaced file keeps its mode and, where permitted, its owner and group.
    #[arg(short, long, value_name = "MODE", value_parser = parse_mode)]
    pub mode: Option<u32>,
    /// Do not create missing parent directories (fail instead).
    #[arg(long)]
    pub no_create_dirs: bool,
    /// Run id recorded in the receipt and manifest (default: $ATOMWRITE_RUN_ID or a random id).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Show the progress bar (bytes, rate; percentage and ETA when the size is known) from the
    /// start. It is drawn only when stderr is a terminal and never with -q; without this flag it
    /// appears once the work has taken more than a second.
    #[arg(long)]
    pub progress: bool,
    /// Print the receipt (or the error) as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors (the default when stderr is not a terminal).
    #[arg(short, long, overrides_with = "verbose")]
    pub quiet: bool,
    /// Print the one-line summary on stderr even when stderr is not a terminal.
    #[arg(short, long, overrides_with = "quiet")]
    pub verbose: bool,
}

/// Options of the commands that write one plain file (`write`, `cp`, `run`): [`CommonOpts`]
/// plus what only they honour. Dereferences to the common options.
#[derive(Debug, Clone, Args)]
pub struct WriteOpts {
    #[command(flatten)]
    pub common: CommonOpts,
    /// Create only: fail with exit code 3 if DST already exists (checked atomically).
    #[arg(long)]
    pub no_clobber: bool,
    /// If DST is a symlink, replace the link itself instead of writing to its target.
    #[arg(long)]
    pub no_follow: bool,
    /// Also write DST.manifest.json (size, sha256, written_at, run_id) atomically after the data.
    #[arg(long)]
    pub manifest: bool,
}

impl std::ops::Deref for WriteOpts {
    type Target = CommonOpts;
    fn deref(&self) -> &CommonOpts {
        &self.common
    }
}

impl std::ops::DerefMut for WriteOpts {
    fn deref_mut(&mut self) -> &mut CommonOpts {
        &mut self.common
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    Full,
    Integrity,
    None,
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub opts: WriteOpts,
    /// Read the contents from FILE instead of stdin (`-` is stdin).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Expected size of the input (e.g. 512M, 2G), for the progress bar's percentage and ETA when
    /// reading a pipe (like `pv -s`). Only a display hint: more or fewer bytes are fine.
    #[arg(long, value_name = "SIZE", value_parser = crate::parse::parse_size)]
    pub expected_size: Option<u64>,
    /// Refuse to commit an empty input: exit 1, DST unchanged. In a pipeline an empty stdin
    /// often means the producer failed (a pipe carries no exit status; see `atomwrite run`).
    #[arg(long)]
    pub no_empty: bool,
    /// The destination file (or URL).
    pub dst: PathBuf,
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// The directory to sweep.
    pub dir: PathBuf,
    /// Only temps at least this old (e.g. 30s, 15m, 1h, 2d; a bare number is seconds).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "1h")]
    pub older_than: std::time::Duration,
    /// List what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Descend into subdirectories (symlinks are never followed).
    #[arg(short, long)]
    pub recursive: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors (the default when stderr is not a terminal, except for
    /// --dry-run, whose list is the point).
    #[arg(short, long, overrides_with = "verbose")]
    pub quiet: bool,
    /// List what was removed and the summary even when stderr is not a terminal.
    #[arg(short, long, overrides_with = "quiet")]
    pub verbose: bool,
}

pub use crate::parse::{parse_duration, parse_mode};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    proptest::proptest! {
        #[test]
        fn args_never_panic(args in proptest::collection::vec("[-a-z0-9=./]{0,12}", 0..6)) {
            let argv = std::iter::once("atomwrite".to_string()).chain(args);
            let _ = Cli::try_parse_from(argv);
        }
    }
}
