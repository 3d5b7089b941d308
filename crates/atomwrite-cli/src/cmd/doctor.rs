//! `atomwrite doctor [DIR] [--json] [-q]`: what atomwrite can do, and promise, in DIR.
//!
//! The probing lives in the library ([`atomwrite::doctor`]); this prints it. Exit code 0 when
//! an atomic write works in DIR, 1 when it does not (the report is still printed).

use std::io::Write;

use atomwrite::doctor::{DoctorReport, Probe, ProbeStatus};

use crate::cli::DoctorArgs;
use crate::common::{self, CmdResult, EXIT_FAILURE, EXIT_OK};

pub fn run(a: DoctorArgs) -> CmdResult {
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

/// The human report: one `name  value  note` row per fact, then the promise and the caveats.
pub fn render(r: &DoctorReport) -> String {
    let mut rows: Vec<(&str, String, String)> = Vec::new();
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
    let p = &r.probes;
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
    let b = &r.batch_barrier;
    rows.push((
        "batch barrier",
        b.barrier.to_string(),
        match &b.kernel {
            Some(k) => format!("{} (kernel {k}, {} backend)", b.reason, b.backend),
            None => format!("{} ({} backend)", b.reason, b.backend),
        },
    ));
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).min(24);
    let mut s = format!("atomwrite doctor: {}\n", r.canonical.display());
    for (a, b, c) in &rows {
        let line = format!("  {a:<w0$}  {b:<w1$}  {c}");
        s.push_str(line.trim_end());
        s.push('\n');
    }
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
