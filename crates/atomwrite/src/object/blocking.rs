//! Synchronous wrappers for callers that are not async (the CLI).
//!
//! Every function runs its async counterpart to completion on one internal,
//! process-wide current-thread tokio runtime. Do not call them from inside an
//! async runtime (tokio refuses nested `block_on`); use the async API there.

use std::io::{Read, Write};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::object::error::{Error, ErrorKind, Result};
use crate::object::{
    PublishOptions, Receipt, RetentionReport, Target, VerifyReport, VersionInfo, WriteOptions,
};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build the object-store runtime")
    })
}

/// Runs a future on the internal runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// Adapts a blocking `std::io::Read` to `AsyncRead`. Reading blocks the
/// internal runtime's only thread, which is fine: nothing else runs on it
/// while this call is in progress, and uploads of earlier parts resume as
/// soon as the read returns.
pub struct SyncReader<R>(pub R);

impl<R: Read + Unpin> AsyncRead for SyncReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = loop {
            match self.0.read(buf.initialize_unfilled()) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// Adapts a blocking `std::io::Write` to `AsyncWrite` (see [`SyncReader`]).
pub struct SyncWriter<W>(pub W);

impl<W: Write + Unpin> AsyncWrite for SyncWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.0.write(buf))
    }
    fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.0.flush())
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// Blocking [`crate::object::write_url`].
pub fn write_url<R: Read + Unpin>(url: &str, reader: R, opts: &WriteOptions) -> Result<Receipt> {
    block_on(crate::object::write_url(url, &mut SyncReader(reader), opts))
}

/// Blocking [`crate::object::publish_url`].
pub fn publish_url<R: Read + Unpin>(
    url: &str,
    reader: R,
    opts: &PublishOptions,
) -> Result<Receipt> {
    block_on(crate::object::publish_url(
        url,
        &mut SyncReader(reader),
        opts,
    ))
}

/// Blocking [`crate::object::latest_url`].
pub fn latest_url(url: &str) -> Result<Option<VersionInfo>> {
    block_on(crate::object::latest_url(url))
}

/// Blocking [`crate::object::versions_url`].
pub fn versions_url(url: &str) -> Result<Vec<VersionInfo>> {
    block_on(crate::object::versions_url(url))
}

/// Blocking [`crate::object::verify_url`].
pub fn verify_url(url: &str) -> Result<VerifyReport> {
    block_on(crate::object::verify_url(url))
}

/// Blocking [`crate::object::retain_url`].
pub fn retain_url(url: &str, keep: usize) -> Result<RetentionReport> {
    block_on(crate::object::retain_url(url, keep))
}

/// Blocking [`crate::object::read_url`]: copies the object at `url` into `out`.
pub fn read_url<W: Write + Unpin>(url: &str, out: W) -> Result<u64> {
    block_on(crate::object::read_url(url, &mut SyncWriter(out)))
}

/// Blocking parse (no I/O); here for symmetry.
pub fn target(url: &str) -> Result<Target> {
    Target::parse(url).map_err(|e| {
        if e.error_kind() == ErrorKind::InvalidUrl {
            e
        } else {
            Error::new("parse URL", url, e.error_kind(), e.to_string())
        }
    })
}
