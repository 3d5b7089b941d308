//! `atomwrite doctor [DIR|URL] [--json] [-q]`: what atomwrite can do, and promise, in DIR or
//! under an object-store URL prefix.
//!
//! The probing lives in the library ([`atomwrite::doctor`] for directories,
//! `atomwrite::object::capability::probe` for URLs); this prints it. Exit code 0 when an
//! atomic write works in DIR (for a URL: when create-only and compare-and-swap writes were
//! observed, or are known from the store's type), 1 otherwise (the report is still printed).

use std::io::Write;

use atomwrite::doctor::{DoctorReport, Probe, ProbeStatus, Probes};

use crate::cli::DoctorArgs;
use crate::common::{self, CmdResult, EXIT_FAILURE, EXIT_OK};

pub fn run(a: DoctorArgs) -> CmdResult {
    if let atomwrite::Location::Url { url, .. } = crate::location::locate(&a.dir)? {
        #[cfg(feature = "object-store")]
        return url::run(&url, &a);
        #[cfg(not(feature = "object-store"))]
        return Err(common::Failure::usage(format!(
            "`{url}` is a URL, but this atomwrite was built without object-store support"
        )));
    }
    let report = atomwrite::doctor(&a.dir)?;
    if a.json {
        // Serialized from the struct, so keys keep the documented order.
        let s = serde_json::to_string(&report)
            .map_err(|e| common::Failure::failed(format!("failed to serialize the report: {e}")))?;
        let _ = writeln!(std::io::stdout().lock(), "{s}");
    } else if !a.quiet {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(render(&report).as_bytes());
    }
    Ok(if report.ok { EXIT_OK } else { EXIT_FAILURE })
}

fn status(p: &Probe) -> &'static str {
    match p.status {
        ProbeStatus::Yes => "yes",
        ProbeStatus::No => "no",
        ProbeStatus::Error => "error",
        ProbeStatus::Skipped => "skipped",
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// One `name  value  note` row of a human report.
type Row<'a> = (&'a str, String, String);

/// Appends `rows` to `s`, one indented line each, names and values in aligned columns
/// (values wider than 24 bytes push their note right instead of widening the column).
fn push_rows(s: &mut String, rows: &[Row<'_>]) {
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).min(24);
    for (a, b, c) in rows {
        let line = format!("  {a:<w0$}  {b:<w1$}  {c}");
        s.push_str(line.trim_end());
        s.push('\n');
    }
}

/// The human report: one `name  value  note` row per fact, then the promise and the caveats.
pub fn render(r: &DoctorReport) -> String {
    let mut rows = fs_rows(r);
    rows.extend(probe_rows(&r.probes));
    let b = &r.batch_barrier;
    rows.push((
        "batch barrier",
        b.barrier.to_string(),
        match &b.kernel {
            Some(k) => format!("{} (kernel {k}, {} backend)", b.reason, b.backend),
            None => format!("{} ({} backend)", b.reason, b.backend),
        },
    ));
    let mut s = format!("atomwrite doctor: {}\n", r.canonical.display());
    push_rows(&mut s, &rows);
    s.push_str(&format!(
        "durability: {} — {}\n",
        r.durability.level, r.durability.summary
    ));
    if !r.caveats.is_empty() {
        s.push_str("caveats:\n");
        for c in &r.caveats {
            s.push_str(&format!("  - {c}\n"));
        }
    }
    s
}

/// The rows about the filesystem and its mount: type, mount point, read-only, NAME_MAX.
fn fs_rows(r: &DoctorReport) -> Vec<Row<'static>> {
    let mut rows: Vec<Row<'static>> = Vec::new();
    let class = serde_json::to_value(r.class)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    rows.push((
        "filesystem",
        r.fs_type.clone(),
        format!("{class}, statfs magic {}", r.fs_magic),
    ));
    match &r.mount {
        Some(m) => rows.push((
            "mounted at",
            m.mount_point.display().to_string(),
            format!("from {} ({})", m.source, m.options),
        )),
        None => rows.push(("mounted at", "?".into(), "mount table not readable".into())),
    }
    rows.push((
        "mount point",
        yes_no(r.mount_point).into(),
        if r.mount_point {
            "DIR itself is a mount point".into()
        } else {
            String::new()
        },
    ));
    rows.push(("read-only", yes_no(r.read_only).into(), String::new()));
    rows.push((
        "NAME_MAX",
        r.name_max.to_string(),
        "bytes per file name".into(),
    ));
    rows
}

/// One row per kernel-feature probe: its status, and its failure detail or what it buys.
fn probe_rows(p: &Probes) -> Vec<Row<'static>> {
    let mut rows: Vec<Row<'static>> = Vec::new();
    let probes: [(&str, &Probe, &str); 6] = [
        (
            "O_TMPFILE",
            &p.o_tmpfile,
            "anonymous temp: a crash leaves nothing behind",
        ),
        (
            "RENAME_NOREPLACE",
            &p.rename_noreplace,
            "create-only (--no-clobber) in one syscall",
        ),
        (
            "RENAME_EXCHANGE",
            &p.rename_exchange,
            "atomic swap for directory publish",
        ),
        ("FICLONE", &p.ficlone, "cp shares extents (reflink)"),
        (
            "directory fsync",
            &p.dir_fsync,
            "a rename can be made durable",
        ),
        (
            "atomic write",
            &p.atomic_write,
            "full write, fsync, rename, dir fsync",
        ),
    ];
    for (name, probe, what) in probes {
        let note = match &probe.detail {
            Some(d) if !probe.works() => d.clone(),
            _ => what.to_string(),
        };
        rows.push((name, status(probe).into(), note));
    }
    rows
}

/// `doctor URL`: the store's kind, endpoint, timeouts and its conditional-write capabilities,
/// observed by a probe under the URL's prefix (a probe key is written, overwritten and deleted).
#[cfg(feature = "object-store")]
mod url {
    use std::io::Write;

    use atomwrite::object::capability::{self, Capability, Evidence, StoreCapabilities};
    use atomwrite::object::{NetLimits, Target};

    use crate::cli::DoctorArgs;
    use crate::common::{self, CmdResult, EXIT_FAILURE, EXIT_OK};

    pub fn run(url: &str, a: &DoctorArgs) -> CmdResult {
        // The URL names a prefix (like DIR): the probe key goes under it.
        let probe_at = format!("{}/doctor", url.trim_end_matches('/'));
        let t = Target::parse(&probe_at)
            .map_err(|e| common::Failure::failed(e.to_string().replace(&probe_at, url)))?;
        let limits = NetLimits::from_env().map_err(common::Failure::usage)?;
        let c = atomwrite::object::blocking::block_on(capability::probe(&t));
        let ok = c.conditional_writes() && c.concurrent.supported != Some(false);
        if a.json {
            let v = serde_json::json!({
                "url": url,
                "store": c.store,
                "endpoint": c.endpoint,
                "conditional_create": c.conditional_create,
                "compare_and_swap": c.compare_and_swap,
                "multipart": c.multipart,
                "concurrent": c.concurrent,
                "timeouts": {
                    "connect_secs": limits.connect.as_secs_f64(),
                    "request_secs": limits.request.as_secs_f64(),
                    "retry_secs": limits.retry.as_secs_f64(),
                },
                "note": c.note,
                "probe_error": c.probe_error,
                "ok": ok,
            });
            let _ = writeln!(std::io::stdout().lock(), "{v}");
        } else if !a.quiet {
            let _ = std::io::stdout()
                .lock()
                .write_all(render(url, &c, &limits).as_bytes());
        }
        Ok(if ok { EXIT_OK } else { EXIT_FAILURE })
    }

    fn yes(c: &Capability) -> &'static str {
        match c.supported {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        }
    }

    fn how(c: &Capability) -> String {
        let e = match (c.evidence, c.supported) {
            (Evidence::Probed, _) => "observed",
            (_, None) => "not observed; the store type says",
            _ => "assumed from the store type",
        };
        format!("{e}: {}", c.detail)
    }

    pub fn render(url: &str, c: &StoreCapabilities, l: &NetLimits) -> String {
        let mut s = format!("atomwrite doctor: {url}\n");
        s.push_str("  (probe: a key under this prefix is created, overwritten and deleted)\n");
        super::push_rows(&mut s, &rows(c, l));
        if let Some(e) = &c.probe_error {
            s.push_str(&format!("probe: failed: {e}\n"));
        }
        s.push_str(&format!("promise: {}\n", promise(c)));
        if let Some(n) = &c.note {
            s.push_str(&format!("caveats:\n  - {n}\n"));
        }
        s
    }

    /// One row per fact: the store, its endpoint, each capability and the timeouts.
    fn rows(c: &StoreCapabilities, l: &NetLimits) -> Vec<super::Row<'static>> {
        let endpoint = match &c.endpoint {
            Some(e) => (
                e.clone(),
                "a compatible server, not the cloud itself: probed".into(),
            ),
            None => ("(the cloud's own)".to_string(), String::new()),
        };
        vec![
            ("store", c.store.to_string(), String::new()),
            ("endpoint", endpoint.0, endpoint.1),
            (
                "create-only",
                yes(&c.conditional_create).into(),
                how(&c.conditional_create),
            ),
            (
                "compare-and-swap",
                yes(&c.compare_and_swap).into(),
                how(&c.compare_and_swap),
            ),
            ("multipart", yes(&c.multipart).into(), how(&c.multipart)),
            (
                "8 racing writers",
                yes(&c.concurrent).into(),
                how(&c.concurrent),
            ),
            (
                "timeouts",
                format!(
                    "connect {}, request {}, retry {}",
                    humantime::format_duration(l.connect),
                    humantime::format_duration(l.request),
                    humantime::format_duration(l.retry)
                ),
                "ATOMWRITE_CONNECT_TIMEOUT, ATOMWRITE_REQUEST_TIMEOUT, ATOMWRITE_RETRY_TIMEOUT"
                    .into(),
            ),
        ]
    }

    /// What a writer can rely on here, from the probe's outcome.
    fn promise(c: &StoreCapabilities) -> &'static str {
        if c.probe_error.is_some() {
            "unknown: the probe could not run (see above)"
        } else if c.concurrent.supported == Some(false) {
            "this server's conditional writes are not atomic under concurrency: concurrent \
             publishers or create-only writers can both win and overwrite each other"
        } else if c.conditional_writes() {
            "create-only writes and the compare-and-swap `latest` pointer are safe with \
             concurrent writers"
        } else {
            "conditional writes are not known to work here: create-only writes and publish are \
             refused (plain writes still replace objects atomically)"
        }
    }
}
