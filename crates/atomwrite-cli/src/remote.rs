//! URL destinations and sources (`s3://`, `gs://`, `az://`, `file:///`, `memory://`) for every
//! command that takes a path: `write`, `cp`, `run`, `publish`, `latest`, `versions`, `verify`.
//!
//! Every path argument has been classified by [`atomwrite::Location`] before a command runs (a
//! URL with a typo is a usage error, exit 2: see `crate::location`). Each command calls
//! [`is_url`] first and hands a URL over to the function of the same name
//! here, so the local code paths stay exactly as they are. The work is done by the
//! `atomwrite::object` module (feature `object-store`, on by default); built without it, a
//! URL is a usage error (exit code 2).
//!
//! Output is the local one with the same keys (docs/cli.md), plus what only a store has:
//! receipts carry `path` = the URL, `durability` = `"store"` (a completed PUT is as durable as
//! the store makes it; `--durability` is accepted and does not change it), and add `url`,
//! `key`, `etag`, `multipart`. Exit codes are the local ones: 3 for a create-only write that
//! found the key taken or a lost `--expect` compare-and-swap.
//!
//! Options that cannot be honoured on an object store are refused with a usage error (exit 2)
//! rather than silently ignored: `--mode` (objects have no permission bits), `--no-follow`
//! (no symlinks), `--no-create-dirs` (no directories), `publish --dir` (no atomic
//! multi-object publish). They still apply to the *local* side of a `cp` from a URL.

use std::path::Path;

use crate::cli::WriteArgs;
use crate::cmd::cp::CpArgs;
use crate::cmd::latest::LatestArgs;
use crate::cmd::publish::PublishArgs;
use crate::cmd::run::RunArgs;
use crate::cmd::verify::VerifyArgs;
use crate::cmd::versions::VersionsArgs;
use crate::common::CmdResult;
#[cfg(not(feature = "object-store"))]
use crate::common::Failure;

/// True when `p` is a URL with a supported scheme, as classified by [`atomwrite::Location`]
/// (also when the object-store backend is compiled out, so that such a destination is a clear
/// usage error instead of a local file named `s3:`).
///
/// A URL-like typo (`s3:/b/k`, `s4://b/k`) is `false` here: `cmd::dispatch` has already
/// refused it with a usage error ([`crate::location::check_args`]) before any command runs.
pub fn is_url(p: &Path) -> bool {
    atomwrite::Location::parse(p.as_os_str()).is_ok_and(|l| l.is_url())
}

#[cfg(not(feature = "object-store"))]
fn unsupported(p: &Path) -> CmdResult {
    Err(Failure::usage(format!(
        "`{}` is a URL, but this atomwrite was built without the `object-store` feature \
         (rebuild with default features to write to s3://, gs://, az://, file:// or memory://)",
        p.display()
    )))
}

#[cfg(not(feature = "object-store"))]
fn first_url(paths: &[std::path::PathBuf]) -> &Path {
    paths.iter().find(|p| is_url(p)).expect("called for a URL")
}

/// `write` to a URL.
pub fn write(a: WriteArgs) -> CmdResult {
    #[cfg(feature = "object-store")]
    return imp::write(a);
    #[cfg(not(feature = "object-store"))]
    unsupported(&a.dst)
}

/// `cp` with a URL as a source or the destination.
pub fn cp(a: CpArgs) -> CmdResult {
    #[cfg(feature = "object-store")]
    return imp::cp(a);
    #[cfg(not(feature = "object-store"))]
    unsupported(first_url(&a.paths))
}

/// `run` to a URL.
pub fn run(a: RunArgs) -> CmdResult {
    #[cfg(feature = "object-store")]
    return imp::run(a);
    #[cfg(not(feature = "object-store"))]
    unsupported(&a.dst)
}

/// `publish` to a URL.
pub fn publish(a: PublishArgs) -> CmdResult {
    #[cfg(feature = "object-store")]
    return imp::publish(a);
    #[cfg(not(feature = "object-store"))]
    unsupported(&a.dst)
}

/// `latest` of a URL.
pub fn latest(a: LatestArgs) -> CmdResult {
    #[cfg(feature = "object-store")]
    return imp::latest(a);
    #[cfg(not(feature = "object-store"))]
    unsupported(&a.dst)
}

/// `versions` of a URL.
pub fn versions(a: VersionsArgs) -> CmdResult {
    #[cfg(feature = "object-store")]
    return imp::versions(a);
    #[cfg(not(feature = "object-store"))]
    unsupported(&a.dst)
}

/// `verify` when at least one PATH is a URL (local paths among them are verified as usual).
pub fn verify(a: VerifyArgs) -> CmdResult {
    #[cfg(feature = "object-store")]
    return imp::verify(a);
    #[cfg(not(feature = "object-store"))]
    unsupported(first_url(&a.paths))
}

#[cfg(feature = "object-store")]
mod imp {
    use std::fs::File;
    use std::io::{self, Read, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Child, ExitStatus};
    use std::sync::atomic::Ordering;

    use atomwrite::object as os;
    use atomwrite::object::blocking;
    use serde_json::{Value, json};

    use super::is_url;
    use crate::cli::{WriteArgs, WriteOpts};
    use crate::cmd::cp::CpArgs;
    use crate::cmd::latest::LatestArgs;
    use crate::cmd::publish::PublishArgs;
    use crate::cmd::run::{EXIT_RUN_FAILED, RunArgs};
    use crate::cmd::verify::VerifyArgs;
    use crate::cmd::versions::VersionsArgs;
    use crate::common::{self, CmdResult, EXIT_CONFLICT, EXIT_FAILURE, EXIT_OK, Failure};
    use crate::progress::{self, Progress};
    use crate::signals;

    // ----- shared helpers -------------------------------------------------------------------

    fn url_of(p: &Path) -> Result<&str, Failure> {
        p.to_str()
            .ok_or_else(|| Failure::usage(format!("`{}` is not valid UTF-8", p.display())))
    }

    /// Refuses the options an object store cannot honour (see the module docs).
    fn check_remote_opts(o: &WriteOpts, url: &str) -> Result<(), Failure> {
        let refuse = |flag: &str, why: &str| {
            Err(Failure::usage(format!(
                "{flag} does not apply to the URL destination `{url}`: {why}"
            )))
        };
        if o.mode.is_some() {
            return refuse("--mode", "objects have no permission bits");
        }
        if o.no_follow {
            return refuse("--no-follow", "object stores have no symlinks");
        }
        if o.no_create_dirs {
            return refuse("--no-create-dirs", "object stores have no directories");
        }
        Ok(())
    }

    fn flags(o: &WriteOpts) -> progress::Flags {
        progress::Flags {
            force: o.progress,
            quiet: o.quiet,
        }
    }

    /// The last segment of a URL or path, for progress labels and `cp` into a directory.
    fn last_segment(s: &str) -> &str {
        s.trim_end_matches('/').rsplit('/').next().unwrap_or(s)
    }

    fn write_options(o: &WriteOpts) -> os::WriteOptions {
        let mut w = os::WriteOptions::new()
            .create_only(o.no_clobber)
            .manifest(o.manifest);
        if let Some(id) = &o.run_id {
            w = w.run_id(id.clone());
        }
        w
    }

    fn store_code(e: &os::Error) -> i32 {
        if e.is_conflict() {
            EXIT_CONFLICT
        } else {
            EXIT_FAILURE
        }
    }

    /// Reports an object-store error like `report_failure` does for a local one (one line on
    /// stderr; with `--json` also the error object on stdout) and returns `code`.
    fn store_failure(e: &os::Error, json: bool, code: i32) -> CmdResult {
        store_failure_msg(e, &e.to_string(), json, code)
    }

    fn store_failure_msg(e: &os::Error, message: &str, json: bool, code: i32) -> CmdResult {
        eprintln!("atomwrite: {message}");
        if json {
            common::print_json(&json!({ "error": {
                "message": message,
                "exit_code": code,
                "operation": e.op(),
                "path": e.url(),
                "url": e.url(),
                "kind": format!("{:?}", e.kind()),
                "store_kind": format!("{:?}", e.error_kind()),
            }}));
        }
        Ok(code)
    }

    /// The JSON receipt of a URL write: the local keys plus `url`, `key`, `etag`, `multipart`.
    fn receipt_json(r: &os::Receipt) -> Value {
        json!({
            "path": r.url,
            "size": r.size,
            "sha256": r.sha256,
            "written_at": r.written_at_rfc3339(),
            "run_id": r.run_id,
            "durability": "store",
            "url": r.url,
            "key": r.key,
            "etag": r.e_tag,
            "multipart": r.multipart,
        })
    }

    fn report_receipt(o: &WriteOpts, r: &os::Receipt) {
        if o.json {
            common::print_json(&receipt_json(r));
        } else if !o.quiet {
            eprintln!(
                "atomwrite: wrote {} ({} bytes, sha256 {}, {})",
                r.url,
                r.size,
                r.sha256,
                if r.multipart {
                    "multipart upload"
                } else {
                    "single PUT"
                }
            );
        }
    }

    /// Opens `--from FILE` (size known) or stdin.
    fn open_input(from: Option<&Path>) -> Result<(Box<dyn Read>, Option<u64>), Failure> {
        match from {
            Some(p) => {
                let f = File::open(p).map_err(|e| {
                    Failure::failed(format!("failed to open `{}`: {e}", p.display()))
                })?;
                let md = f.metadata().map_err(|e| {
                    Failure::failed(format!("failed to inspect `{}`: {e}", p.display()))
                })?;
                if md.is_dir() {
                    return Err(Failure::usage(format!("`{}` is a directory", p.display())));
                }
                let size = md.is_file().then_some(md.len());
                Ok((Box::new(f), size))
            }
            None => Ok((Box::new(io::stdin().lock()), None)),
        }
    }

    /// For reading: the current version's URL when `url` is a published (versioned) target,
    /// else `url` itself (like reading a local DST follows its symlink to the current version).
    fn resolve_source(url: &str) -> Result<String, os::Error> {
        Ok(match blocking::latest_url(url)? {
            Some(v) => v.url,
            None => url.to_string(),
        })
    }

    // ----- write ----------------------------------------------------------------------------

    /// Counts what passes through; with `refuse_empty`, an input that ends before its first
    /// byte fails the read instead of ending it, so the store aborts the write before any
    /// request that could make something visible (`--no-empty`).
    struct NoEmpty<R> {
        inner: R,
        seen: u64,
        refuse_empty: bool,
        refused: bool,
    }

    impl<R> NoEmpty<R> {
        fn new(inner: R, refuse_empty: bool) -> Self {
            NoEmpty {
                inner,
                seen: 0,
                refuse_empty,
                refused: false,
            }
        }
    }

    impl<R: Read> Read for NoEmpty<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.seen += n as u64;
            if n == 0 && !buf.is_empty() && self.seen == 0 && self.refuse_empty {
                self.refused = true;
                return Err(io::Error::other("the input is empty (--no-empty)"));
            }
            Ok(n)
        }
    }

    /// `--no-clobber`: refuses before any input is read when an object already exists at
    /// `url` (one HEAD request): reports the conflict like a store error (one line; with
    /// `--json` the error object, `kind` `AlreadyExists`) and returns exit code 3. The store's
    /// create-only write stays the final word; a store that cannot answer is not a verdict
    /// (`None`: the write goes on and the commit decides).
    fn taken(url: &str, json: bool, outcome: &str) -> Option<i32> {
        use os::object_store::ObjectStoreExt as _;
        let t = blocking::target(url).ok()?;
        let key = os::object_store::path::Path::parse(t.key()).ok()?;
        blocking::block_on(t.store().head(&key)).ok()?;
        let message = format!(
            "failed to write `{url}`: an object already exists at this key and the write is \
             create-only (--no-clobber); {outcome}"
        );
        eprintln!("atomwrite: {message}");
        if json {
            common::print_json(&json!({ "error": {
                "message": message,
                "exit_code": EXIT_CONFLICT,
                "operation": "head",
                "path": url,
                "url": url,
                "kind": "AlreadyExists",
                "store_kind": "AlreadyExists",
            }}));
        }
        Some(EXIT_CONFLICT)
    }

    pub fn write(a: WriteArgs) -> CmdResult {
        let url = url_of(&a.dst)?;
        check_remote_opts(&a.opts, url)?;
        if a.opts.no_clobber
            && let Some(code) = taken(url, a.opts.json, "nothing was read or written")
        {
            return Ok(code);
        }
        let (input, size) = open_input(a.from.as_deref())?;
        let typing = a.from.is_none() && progress::stdin_notice(url, a.opts.quiet);
        let mut flags = flags(&a.opts);
        flags.quiet |= typing;
        let mut bar = Progress::bytes(a.expected_size.or(size), flags, last_segment(url));
        let mut input = NoEmpty::new(input, a.no_empty);
        let r = blocking::write_url(url, bar.wrap(&mut input), &write_options(&a.opts));
        bar.finish();
        match r {
            Ok(r) => {
                report_receipt(&a.opts, &r);
                Ok(EXIT_OK)
            }
            Err(_) if input.refused => Err(crate::cmd::write::empty_refused(
                url,
                a.from.as_deref().unwrap_or(Path::new("<stdin>")),
            )),
            Err(e) => store_failure(&e, a.opts.json, store_code(&e)),
        }
    }

    // ----- cp -------------------------------------------------------------------------------

    /// Counts the bytes written through it (download progress).
    struct CountingWriter<'a, W> {
        inner: W,
        bar: &'a mut Progress,
    }

    impl<W: Write> Write for CountingWriter<'_, W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.bar.inc(n as u64);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    pub fn cp(a: CpArgs) -> CmdResult {
        let (dst, sources) = a.paths.split_last().expect("clap requires two paths");
        let dst_url = is_url(dst);
        let dst_s = dst.to_string_lossy();
        let dst_is_dir = if dst_url {
            dst_s.ends_with('/')
        } else {
            dst.is_dir() || dst_s.ends_with('/')
        };
        if sources.len() > 1 && !dst_is_dir {
            return Err(Failure::usage(format!(
                "copying {} files: the destination `{}` must be a directory (for a URL: a \
                 prefix ending in `/`)",
                sources.len(),
                dst.display()
            )));
        }
        if !dst_url && sources.iter().any(|s| !is_url(s)) {
            return Err(Failure::usage(
                "mixing local and URL sources into a local destination: copy the local files \
                 with a separate `atomwrite cp`",
            ));
        }
        if dst_url {
            check_remote_opts(&a.opts, url_of(dst)?)?;
        }
        let mut out = Vec::new();
        for src in sources {
            let name = last_segment(&src.to_string_lossy()).to_string();
            if name.is_empty() {
                return Err(Failure::usage(format!(
                    "`{}` has no file name",
                    src.display()
                )));
            }
            let target: PathBuf = if dst_is_dir {
                if dst_url {
                    PathBuf::from(format!("{dst_s}{name}"))
                } else {
                    dst.join(&name)
                }
            } else {
                dst.clone()
            };
            let r = match (is_url(src), dst_url) {
                (false, true) => upload(&a, src, url_of(&target)?),
                (true, false) => download(&a, url_of(src)?, &target),
                (true, true) => remote_to_remote(&a, url_of(src)?, url_of(&target)?),
                (false, false) => unreachable!("checked above"),
            };
            match r {
                Ok(v) => out.push(v),
                Err(Err(f)) => return Err(f),
                Err(Ok(code)) => return Ok(code),
            }
        }
        if a.opts.json {
            if out.len() == 1 {
                common::print_json(&out[0]);
            } else {
                common::print_json(&json!({ "files": out }));
            }
        }
        Ok(EXIT_OK)
    }

    /// `Err(Ok(code))`: already reported (store error); `Err(Err(f))`: to be reported.
    type CpResult = Result<Value, CmdResult>;

    fn store_err(e: os::Error, json: bool) -> CmdResult {
        store_failure(&e, json, store_code(&e))
    }

    fn remote_report(a: &CpArgs, r: &os::Receipt, source: &str) -> Value {
        let mut v = receipt_json(r);
        v["method"] = json!(if r.multipart { "multipart" } else { "put" });
        v["source"] = json!(source);
        if !a.opts.json {
            report_receipt(&a.opts, r);
        }
        v
    }

    fn upload(a: &CpArgs, src: &Path, url: &str) -> CpResult {
        let (input, size) = open_input(Some(src)).map_err(Err)?;
        let mut bar = Progress::bytes(size, flags(&a.opts), last_segment(url));
        let r = blocking::write_url(url, bar.wrap(input), &write_options(&a.opts));
        bar.finish();
        let r = r.map_err(|e| store_err(e, a.opts.json))?;
        Ok(remote_report(a, &r, &src.to_string_lossy()))
    }

    fn download(a: &CpArgs, url: &str, dst: &Path) -> CpResult {
        let src = resolve_source(url).map_err(|e| store_err(e, a.opts.json))?;
        // The destination is local: every local option applies (mode, no-clobber, ...).
        let mut file = common::open_tracked(&a.opts.to_options().checksum(true), dst)
            .map_err(|e| Err(e.into()))?;
        let mut bar = Progress::bytes(None, flags(&a.opts), last_segment(url));
        let r = blocking::read_url(
            &src,
            CountingWriter {
                inner: &mut file,
                bar: &mut bar,
            },
        );
        bar.finish();
        if let Err(e) = r {
            drop(file);
            return Err(store_err(e, a.opts.json));
        }
        let receipt = common::commit_guarded(file).map_err(|e| Err(e.into()))?;
        common::after_commit(&a.opts, &receipt).map_err(Err)?;
        let mut v = common::receipt_json(&receipt);
        v["method"] = json!("download");
        v["source"] = json!(src);
        if !a.opts.json {
            common::report_receipt(&a.opts, &receipt);
        }
        Ok(v)
    }

    /// Counts the bytes written through it (remote → remote progress).
    struct AsyncCounting<'a, W> {
        inner: W,
        bar: &'a mut Progress,
    }

    impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for AsyncCounting<'_, W> {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let this = self.get_mut();
            let r = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
            if let std::task::Poll::Ready(Ok(n)) = r {
                this.bar.inc(n as u64);
            }
            r
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
        }
    }

    /// Streams one object into another through an in-memory pipe (never the whole object in
    /// memory), both sides on the backend's runtime.
    fn remote_to_remote(a: &CpArgs, src: &str, dst: &str) -> CpResult {
        let src = resolve_source(src).map_err(|e| store_err(e, a.opts.json))?;
        let source = src.clone();
        let wopts = write_options(&a.opts);
        let (tx, mut rx) = tokio::io::duplex(1 << 20);
        let mut bar = Progress::bytes(None, flags(&a.opts), last_segment(dst));
        let mut tx = AsyncCounting {
            inner: tx,
            bar: &mut bar,
        };
        let (read, written) = blocking::block_on(async {
            tokio::join!(
                async move {
                    // Dropping `tx` at the end signals end-of-input to the writer.
                    let r = os::read_url(&src, &mut tx).await;
                    drop(tx);
                    r
                },
                async move {
                    // Dropping `rx` when the write ends (or fails) stops the reader.
                    let r = os::write_url(dst, &mut rx, &wopts).await;
                    drop(rx);
                    r
                }
            )
        });
        bar.finish();
        // A failed read makes the write fail (or abort) too: report the read's error first.
        let read_size = read.map_err(|e| store_err(e, a.opts.json))?;
        let r = written.map_err(|e| store_err(e, a.opts.json))?;
        debug_assert_eq!(read_size, r.size);
        Ok(remote_report(a, &r, &source))
    }

    // ----- run ------------------------------------------------------------------------------

    /// CMD's stdout; at its end, waits for CMD and turns a failed status into a read error, so
    /// the upload is aborted before it can become visible.
    struct ChildOutput<'a> {
        out: std::process::ChildStdout,
        child: &'a mut Child,
        status: Option<io::Result<ExitStatus>>,
    }

    impl Read for ChildOutput<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.out.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            if self.status.is_none() {
                let st = self.child.wait();
                signals::CHILD.store(0, Ordering::SeqCst);
                self.status = Some(st);
            }
            match &self.status {
                Some(Ok(st)) if st.success() => Ok(0),
                Some(Ok(st)) => Err(io::Error::other(format!(
                    "the command failed ({st}); the upload is aborted"
                ))),
                Some(Err(e)) => Err(io::Error::new(e.kind(), e.to_string())),
                None => unreachable!(),
            }
        }
    }

    fn own(f: Failure) -> Failure {
        Failure {
            code: EXIT_RUN_FAILED,
            ..f
        }
    }

    pub fn run(a: RunArgs) -> CmdResult {
        let url = url_of(&a.dst).map_err(own)?;
        check_remote_opts(&a.opts, url).map_err(own)?;
        if a.publish && a.opts.no_clobber {
            return Err(own(Failure::usage(
                "--no-clobber does not apply with --publish; use --expect 0",
            )));
        }
        let json = a.opts.json;
        let run_id = a
            .opts
            .run_id
            .clone()
            .unwrap_or_else(|| atomwrite::process_run_id().to_string());
        let started = std::time::SystemTime::now();
        // A lost --expect fails before CMD runs (the CAS at the end still decides).
        if a.publish
            && let Some(expect) = a.expect
        {
            match blocking::latest_url(url) {
                Ok(l) => {
                    let cur = l.map_or(0, |v| v.version);
                    if cur != expect {
                        let msg = format!(
                            "failed to publish `{url}`: expected version {expect} to be current, \
                             but version {cur} is; CMD was not run"
                        );
                        eprintln!("atomwrite: {msg}");
                        if json {
                            common::print_json(&json!({ "error": {
                                "message": msg, "exit_code": EXIT_RUN_FAILED,
                                "operation": "publish", "path": url, "url": url,
                                "kind": "AlreadyExists", "store_kind": "Conflict",
                            }}));
                        }
                        return Ok(EXIT_RUN_FAILED);
                    }
                }
                Err(e) => return store_failure(&e, json, EXIT_RUN_FAILED),
            }
        }
        if a.opts.no_clobber
            && let Some(code) = taken(url, json, "CMD was not run")
        {
            // Before CMD starts: its work would be lost anyway.
            return Ok(code);
        }
        let (mut child, shown) = crate::cmd::run::spawn_producer(&a.cmd, &run_id, started, url)?;
        signals::CHILD.store(child.id() as i32, Ordering::SeqCst);
        let out = child.stdout.take().expect("stdout is piped");
        let mut reader = ChildOutput {
            out,
            child: &mut child,
            status: None,
        };
        let mut wopts = write_options(&a.opts);
        wopts.run_id = Some(run_id.clone());
        let mut guarded = NoEmpty::new(&mut reader, a.no_empty);
        let result = if a.publish {
            let mut p = os::PublishOptions::new().expect(a.expect).run_id(run_id);
            p.write.multipart_threshold = wopts.multipart_threshold;
            blocking::publish_url(url, &mut guarded, &p).map(Ok)
        } else {
            blocking::write_url(url, &mut guarded, &wopts).map(Err)
        };
        let refused_empty = guarded.refused;
        let status = reader.status.take();
        drop(reader);
        let status = match status {
            Some(s) => s,
            None => {
                // The upload stopped before CMD's output ended (our own failure): stop CMD.
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_child(&child),
                    rustix::process::Signal::TERM,
                );
                let s = child.wait();
                signals::CHILD.store(0, Ordering::SeqCst);
                s
            }
        };
        let status = status.map_err(|e| {
            own(Failure::failed(format!(
                "failed to wait for `{shown}`: {e}"
            )))
        })?;
        if !status.success() {
            use std::os::unix::process::ExitStatusExt;
            let (code, how) = match (status.code(), status.signal()) {
                (Some(c), _) => (c, format!("exited with status {c}")),
                (None, Some(s)) => (128 + s, format!("was killed by signal {s}")),
                _ => (EXIT_RUN_FAILED, "failed".to_string()),
            };
            if result.is_ok() {
                // Cannot happen: a failed status fails the upload's last read. Say so loudly.
                return Err(own(Failure::failed(format!(
                    "`{shown}` {how} but `{url}` was committed"
                ))));
            }
            return Err(Failure {
                code,
                message: format!("`{shown}` {how}; nothing was committed to `{url}`"),
                error: None,
            });
        }
        match result {
            Ok(Ok(r)) => {
                report_published(&a.opts, url, &r, a.expect, None);
                Ok(EXIT_OK)
            }
            Ok(Err(r)) => {
                report_receipt(&a.opts, &r);
                Ok(EXIT_OK)
            }
            Err(_) if refused_empty => Err(crate::cmd::write::empty_refused(
                url,
                Path::new(&format!("the output of `{shown}`")),
            )),
            // --no-clobber lost to a writer that came after the precheck: a conflict, as for
            // `write`.
            Err(e) if a.opts.no_clobber && e.is_conflict() => {
                store_failure(&e, json, EXIT_CONFLICT)
            }
            Err(e) => store_failure(&e, json, EXIT_RUN_FAILED),
        }
    }

    // ----- publish --------------------------------------------------------------------------

    /// The version that was current when `r` was published (its manifest's `parent`).
    fn previous_of(r: &os::Receipt, expect: Option<u64>) -> u64 {
        if let Some(e) = expect {
            return e;
        }
        let mut buf = Vec::new();
        let murl = format!("{}{}", r.url, os::MANIFEST_SUFFIX);
        blocking::read_url(&murl, &mut buf)
            .ok()
            .and_then(|_| serde_json::from_slice::<os::Manifest>(&buf).ok())
            .and_then(|m| m.parent)
            .unwrap_or(0)
    }

    fn version_url(url: &str, n: u64) -> String {
        format!("{url}{}/v{n:010}", os::VERSIONS_SUFFIX)
    }

    fn report_published(
        o: &WriteOpts,
        url: &str,
        r: &os::Receipt,
        expect: Option<u64>,
        removed: Option<&[u64]>,
    ) {
        let version = r.version.unwrap_or(0);
        let removed: Vec<String> = removed
            .unwrap_or_default()
            .iter()
            .map(|n| version_url(url, *n))
            .collect();
        if o.json {
            common::print_json(&json!({
                "dst": url,
                "version": version,
                "previous": previous_of(r, expect),
                "path": r.url,
                "size": r.size,
                "sha256": r.sha256,
                "written_at": r.written_at_rfc3339(),
                "run_id": r.run_id,
                "migrated": null,
                "removed": removed,
                "url": r.url,
                "key": r.key,
                "etag": r.e_tag,
                "multipart": r.multipart,
            }));
        } else if !o.quiet {
            eprintln!(
                "atomwrite: published {url} version {version} ({}, {} bytes, sha256 {}){}",
                r.url,
                r.size,
                r.sha256,
                if removed.is_empty() {
                    String::new()
                } else {
                    format!("; removed {} old version(s)", removed.len())
                }
            );
        }
    }

    pub fn publish(a: PublishArgs) -> CmdResult {
        let url = url_of(&a.dst)?;
        if a.opts.no_clobber {
            return Err(Failure::usage(
                "--no-clobber does not apply to publish; use --expect 0 to publish only if \
                 nothing was published yet",
            ));
        }
        if a.dir.is_some() {
            return Err(Failure::usage(format!(
                "--dir does not apply to the URL destination `{url}`: an object store cannot \
                 make many objects visible at once; publish one archive (e.g. a tar file) instead"
            )));
        }
        check_remote_opts(&a.opts, url)?;
        let (input, size) = open_input(a.from.as_deref())?;
        let mut p = os::PublishOptions::new().expect(a.expect);
        if let Some(id) = &a.opts.run_id {
            p = p.run_id(id.clone());
        }
        let mut bar = Progress::bytes(size, flags(&a.opts), last_segment(url));
        let r = blocking::publish_url(url, bar.wrap(input), &p);
        bar.finish();
        let r = match r {
            Ok(r) => r,
            Err(e) => return store_failure(&e, a.opts.json, store_code(&e)),
        };
        let mut removed = Vec::new();
        if let Some(keep) = a.keep {
            match blocking::retain_url(url, keep) {
                Ok(rep) => removed = rep.deleted,
                Err(e) => {
                    let msg = format!(
                        "published `{url}` version {}, but --keep {keep} failed: {e}",
                        r.version.unwrap_or(0)
                    );
                    return store_failure_msg(&e, &msg, a.opts.json, EXIT_FAILURE);
                }
            }
        }
        report_published(&a.opts, url, &r, a.expect, Some(&removed));
        Ok(EXIT_OK)
    }

    // ----- latest / versions / verify -------------------------------------------------------

    pub fn latest(a: LatestArgs) -> CmdResult {
        let url = url_of(&a.dst)?;
        let l = match blocking::latest_url(url) {
            Ok(l) => l,
            Err(e) => return store_failure(&e, a.json, store_code(&e)),
        };
        if a.json {
            let mut v = json!({
                "dst": url,
                "version": l.as_ref().map_or(0, |v| v.version),
                "path": l.as_ref().map(|v| &v.url),
            });
            if let Some(l) = &l {
                v["url"] = json!(l.url);
                v["size"] = json!(l.size);
                v["sha256"] = json!(l.sha256);
                v["written_at"] = json!(l.written_at);
                v["run_id"] = json!(l.run_id);
            }
            common::print_json(&v);
        } else {
            match &l {
                Some(v) => println!("{} {}", v.version, v.url),
                None => println!("0"),
            }
        }
        Ok(EXIT_OK)
    }

    pub fn versions(a: VersionsArgs) -> CmdResult {
        let url = url_of(&a.dst)?;
        let list = match blocking::versions_url(url) {
            // Leftovers of crashed or in-flight publishers are not versions.
            Ok(l) => l.into_iter().filter(|v| v.published).collect::<Vec<_>>(),
            Err(e) => return store_failure(&e, a.json, store_code(&e)),
        };
        if a.json {
            let current = list.iter().find(|v| v.current).map_or(0, |v| v.version);
            let versions: Vec<Value> = list
                .iter()
                .map(|v| {
                    json!({
                        "version": v.version,
                        "path": v.url,
                        "current": v.current,
                        "kind": "file",
                        "size": v.size,
                        "sha256": v.sha256,
                        "written_at": v.written_at,
                        "run_id": v.run_id,
                        "manifest_error": null,
                        "url": v.url,
                        "key": v.key,
                        "parent": v.parent,
                    })
                })
                .collect();
            common::print_json(&json!({ "dst": url, "current": current, "versions": versions }));
            return Ok(EXIT_OK);
        }
        let mut out = io::stdout().lock();
        let _ = writeln!(
            out,
            "{:>11} {:>12}  {:<64}  {:<27}  RUN_ID",
            "VERSION", "SIZE", "SHA256", "WRITTEN_AT"
        );
        for v in &list {
            let _ = writeln!(
                out,
                "{:>10}{} {:>12}  {:<64}  {:<27}  {}",
                v.version,
                if v.current { "*" } else { " " },
                v.size,
                v.sha256,
                v.written_at,
                v.run_id,
            );
        }
        Ok(EXIT_OK)
    }

    struct Checked {
        path: String,
        status: &'static str,
        tag: &'static str,
        detail: String,
        json: Value,
    }

    fn verify_remote(url: &str) -> Result<Checked, os::Error> {
        let path = url.to_string();
        match blocking::verify_url(url) {
            Ok(r) => {
                let (status, tag, detail) = if r.ok {
                    (
                        "ok",
                        "ok",
                        format!("{} bytes, sha256 {}", r.actual_size, r.actual_sha256),
                    )
                } else {
                    (
                        "mismatch",
                        "MISMATCH",
                        format!(
                            "the manifest records {} bytes, sha256 {}; the object has {} bytes, \
                             sha256 {}",
                            r.expected_size, r.expected_sha256, r.actual_size, r.actual_sha256
                        ),
                    )
                };
                let json = json!({
                    "path": url,
                    "status": status,
                    "detail": detail,
                    "data_path": r.url,
                    "manifest_path": format!("{}{}", r.url, os::MANIFEST_SUFFIX),
                    "size": r.actual_size,
                    "sha256": r.actual_sha256,
                    "manifest": { "size": r.expected_size, "sha256": r.expected_sha256 },
                    "version": r.version,
                });
                Ok(Checked {
                    path,
                    status,
                    tag,
                    detail,
                    json,
                })
            }
            Err(e) => {
                let (status, tag) = match e.error_kind() {
                    os::ErrorKind::NotFound if e.op() == "verify" => {
                        ("missing_manifest", "MISSING-MANIFEST")
                    }
                    os::ErrorKind::NotFound => ("missing_data", "MISSING-DATA"),
                    os::ErrorKind::Corrupt => ("bad_manifest", "BAD-MANIFEST"),
                    _ => return Err(e),
                };
                let detail = e.to_string();
                let json = json!({
                    "path": url,
                    "status": status,
                    "detail": detail,
                    "data_path": null,
                    "manifest_path": null,
                    "size": null,
                    "sha256": null,
                    "manifest": null,
                });
                Ok(Checked {
                    path,
                    status,
                    tag,
                    detail,
                    json,
                })
            }
        }
    }

    fn verify_local(p: &Path) -> Checked {
        let v = atomwrite::verify(p);
        let tag = match v.status {
            atomwrite::VerifyStatus::Ok => "ok",
            atomwrite::VerifyStatus::Mismatch => "MISMATCH",
            atomwrite::VerifyStatus::MissingManifest => "MISSING-MANIFEST",
            atomwrite::VerifyStatus::BadManifest => "BAD-MANIFEST",
            atomwrite::VerifyStatus::MissingData => "MISSING-DATA",
        };
        Checked {
            path: v.path.display().to_string(),
            status: v.status.as_str(),
            tag,
            detail: v.detail.clone(),
            json: json!({
                "path": v.path,
                "status": v.status.as_str(),
                "detail": v.detail,
                "data_path": v.data_path,
                "manifest_path": v.manifest_path,
                "size": v.size,
                "sha256": v.sha256,
                "manifest": v.manifest,
            }),
        }
    }

    pub fn verify(a: VerifyArgs) -> CmdResult {
        let mut all_ok = true;
        let mut results = Vec::new();
        for p in &a.paths {
            let c = if is_url(p) {
                match verify_remote(url_of(p)?) {
                    Ok(c) => c,
                    // A store that cannot be reached is not a verdict on the data.
                    Err(e) => return store_failure(&e, a.json, EXIT_FAILURE),
                }
            } else {
                verify_local(p)
            };
            let ok = c.status == "ok";
            all_ok &= ok;
            if a.json {
                results.push(c.json);
            } else if !(a.quiet && ok) {
                println!("{} {}: {}", c.tag, c.path, c.detail);
            }
        }
        if a.json {
            common::print_json(&json!({ "ok": all_ok, "results": results }));
        }
        Ok(if all_ok { EXIT_OK } else { EXIT_FAILURE })
    }
}
