//! Progress bars on stderr for long work (streams, copies, directory publishes).
//!
//! Policy (like cargo and pv, never like a log): a bar is drawn only when stderr is a terminal
//! and `-q` is not given. By default it appears once the work has run for [`DELAY`] (short
//! writes never flash a bar); `--progress` shows it from the start. It shows bytes, rate and,
//! when the total is known, a bar, the percentage and the ETA. It is cleared when the work ends,
//! so the one-line summary (or error) that follows stands alone.
//!
//! Use: `let p = Progress::bytes(total, flags, label); let r = p.wrap(reader); ...; p.finish();`
//! or call [`Progress::inc`] from a copy loop.

use std::io::{self, IsTerminal, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long work runs before an unrequested bar appears.
pub const DELAY: Duration = Duration::from_secs(1);

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// `--progress`: show from the start (still only on a terminal).
    pub force: bool,
    /// `-q`: never show.
    pub quiet: bool,
}

impl Flags {
    /// Whether a bar may be drawn at all: stderr is a terminal, not `-q`, and
    /// `ATOMWRITE_PROGRESS` is not `never`.
    pub fn allowed(self) -> bool {
        !self.quiet
            && std::env::var_os("ATOMWRITE_PROGRESS").is_none_or(|v| v != "never")
            && io::stderr().is_terminal()
    }
}

/// A byte-counting progress indicator that draws only where [`Flags::allowed`].
pub struct Progress {
    bar: Option<ProgressBar>,
    state: Arc<Mutex<State>>,
}

/// Shared with the timer that reveals the bar after [`DELAY`], so a reveal never races `finish`.
#[derive(Default)]
struct State {
    shown: bool,
    done: bool,
}

fn reveal(bar: &ProgressBar, st: &mut State) {
    if st.shown || st.done {
        return;
    }
    bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
    // Keeps the spinner, rate and elapsed time moving while the input is idle.
    bar.enable_steady_tick(Duration::from_millis(200));
    st.shown = true;
}

impl Progress {
    /// A bar for `total` bytes (`None`: unknown, shows a spinner, bytes and rate), labelled
    /// with `label` (usually the destination's file name).
    pub fn bytes(total: Option<u64>, flags: Flags, label: &str) -> Progress {
        if !flags.allowed() {
            return Progress::hidden();
        }
        let bar = match total {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::hidden())
                .with_style(style_known()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
                .with_style(style_unknown()),
        };
        bar.set_message(label.to_string());
        let state = Arc::new(Mutex::new(State::default()));
        if flags.force {
            reveal(&bar, &mut lock(&state));
        } else {
            // Long work only: reveal after DELAY, even if the input is idle (a slow producer).
            let (bar, state) = (bar.clone(), Arc::clone(&state));
            std::thread::spawn(move || {
                std::thread::sleep(DELAY);
                reveal(&bar, &mut lock(&state));
            });
        }
        Progress {
            bar: Some(bar),
            state,
        }
    }

    /// A progress that never draws.
    pub fn hidden() -> Progress {
        Progress {
            bar: None,
            state: Arc::default(),
        }
    }

    /// Whether the bar is drawing now.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn is_visible(&self) -> bool {
        lock(&self.state).shown
    }

    /// Counts `n` more bytes done.
    pub fn inc(&mut self, n: u64) {
        let Some(bar) = &self.bar else { return };
        bar.inc(n);
        // A wrong expected size must not make the bar overflow.
        if let Some(len) = bar.length()
            && bar.position() > len
        {
            bar.set_length(bar.position());
        }
    }

    /// Wraps a reader so every byte read counts.
    pub fn wrap<R: Read>(&mut self, inner: R) -> ProgressReader<'_, R> {
        ProgressReader {
            inner,
            progress: self,
        }
    }

    /// Ends the bar and clears it from the terminal.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            let mut st = lock(&self.state);
            st.done = true;
            bar.finish_and_clear();
        }
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Progress {
    fn drop(&mut self) {
        // An error path must not leave a half-drawn bar before the error line.
        self.finish();
    }
}

fn style_known() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} {msg} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .expect("valid template")
    .progress_chars("=> ")
}

fn style_unknown() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} {bytes} {binary_bytes_per_sec} {elapsed}")
        .expect("valid template")
}

/// A reader that reports the bytes it reads to a [`Progress`].
pub struct ProgressReader<'a, R> {
    inner: R,
    progress: &'a mut Progress,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// Before a command reads its data from stdin: when stdin is a terminal, says once on stderr
/// that it is waiting for typed input (unless `quiet`) and returns `true`. The caller must
/// then draw no progress bar: it would draw over what the user types. Returns `false` (and
/// prints nothing) when stdin is a pipe, a file or closed.
pub fn stdin_notice(dst: &str, quiet: bool) -> bool {
    if !io::stdin().is_terminal() {
        return false;
    }
    if !quiet {
        eprintln!(
            "atomwrite: reading stdin for `{dst}` (end with Ctrl-D on a new line; Ctrl-C \
             cancels and leaves `{dst}` unchanged)"
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_or_no_terminal_never_draws() {
        // Under `cargo test` stderr is captured or a pipe in CI; -q is honoured regardless.
        let mut p = Progress::bytes(
            Some(10),
            Flags {
                force: true,
                quiet: true,
            },
            "x",
        );
        p.inc(5);
        assert!(!p.is_visible());
        assert!(p.bar.is_none());
    }

    #[test]
    fn known_size_template_shows_percent_bytes_rate_and_eta() {
        let term = indicatif::InMemoryTerm::new(4, 120);
        let bar = ProgressBar::with_draw_target(
            Some(4 << 20),
            ProgressDrawTarget::term_like(Box::new(term.clone())),
        )
        .with_style(style_known());
        bar.set_message("out.bin");
        bar.inc(1 << 20);
        bar.tick();
        let screen = term.contents();
        assert!(screen.contains("out.bin"), "{screen}");
        assert!(screen.contains("25%"), "{screen}");
        assert!(screen.contains("1.00 MiB/4.00 MiB"), "{screen}");
        assert!(screen.contains("ETA"), "{screen}");
        assert!(screen.contains("/s"), "{screen}");
    }

    #[test]
    fn unknown_size_template_shows_bytes_and_rate() {
        let term = indicatif::InMemoryTerm::new(4, 120);
        let bar = ProgressBar::with_draw_target(
            None,
            ProgressDrawTarget::term_like(Box::new(term.clone())),
        )
        .with_style(style_unknown());
        bar.set_message("dump.sql");
        bar.inc(3 << 20);
        bar.tick();
        let screen = term.contents();
        assert!(screen.contains("dump.sql 3.00 MiB"), "{screen}");
        assert!(!screen.contains("ETA"), "{screen}");
    }
}
