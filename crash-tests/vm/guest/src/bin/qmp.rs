//! Host-side helper of the VM crash tests: a minimal QMP client.
//!
//! `atomwrite-vm-qmp SOCKET TIMEOUT_SECS` connects to QEMU's QMP socket,
//! waits until the guest has stopped (QEMU runs the crash boot with
//! `-action reboot=shutdown,shutdown=pause`, so the panic's reboot pauses the
//! VM instead of ending QEMU), prints the virtual disk's block statistics as
//! `QMP flush_operations=N wr_operations=N wr_bytes=N`, and quits QEMU.
//!
//! The flush count is the evidence that the guest's `fsync`s reached QEMU as
//! FLUSH requests, which QEMU (with `cache=none` or `cache=writeback`)
//! turns into `fdatasync()` on the image file.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: atomwrite-vm-qmp SOCKET TIMEOUT_SECS");
        return ExitCode::from(2);
    }
    let secs: u64 = match args[2].parse() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("atomwrite-vm-qmp: timeout `{}`: {e}", args[2]);
            return ExitCode::from(2);
        }
    };
    match run(&args[1], Instant::now() + Duration::from_secs(secs)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("atomwrite-vm-qmp: {e}");
            ExitCode::from(1)
        }
    }
}

/// The first `"key": NUMBER` in `json`.
fn number_after(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\""))?;
    let rest = json[at + key.len() + 2..].trim_start().strip_prefix(':')?;
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// The part of a `query-blockstats` reply from the device's own `"stats"`
/// on (the `"parent"` entry holds the file node's, which are not counted).
fn device_stats(reply: &str) -> Option<&str> {
    let mut from = 0;
    while let Some(i) = reply[from..].find("\"stats\":") {
        let at = from + i;
        if !reply[..at].trim_end().ends_with("\"parent\": {") {
            return Some(&reply[at..]);
        }
        from = at + 1;
    }
    None
}

fn run(sock: &str, deadline: Instant) -> Result<String, String> {
    let stream = loop {
        match UnixStream::connect(sock) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => return Err(format!("connect {sock}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let mut writer = stream
        .try_clone()
        .map_err(|e| format!("clone socket: {e}"))?;
    let mut reader = BufReader::new(stream);
    let next_line = |reader: &mut BufReader<UnixStream>| -> Result<String, String> {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or("timed out waiting for QEMU")?;
        reader
            .get_ref()
            .set_read_timeout(Some(left))
            .map_err(|e| format!("set timeout: {e}"))?;
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => Err("QEMU closed the QMP socket".to_string()),
            Ok(_) => Ok(line),
            Err(e) => Err(format!("read QMP: {e}")),
        }
    };
    let mut send = |cmd: &str| -> Result<(), String> {
        writer
            .write_all(format!("{{\"execute\": \"{cmd}\"}}\n").as_bytes())
            .map_err(|e| format!("send {cmd}: {e}"))
    };

    next_line(&mut reader)?; // greeting
    send("qmp_capabilities")?;
    // Wait for the reply, then for the guest to stop (pause on shutdown).
    let mut stopped = false;
    let mut status_asked = false;
    while !stopped {
        let line = next_line(&mut reader)?;
        if line.contains("\"event\"")
            && (line.contains("\"STOP\"") || line.contains("\"SHUTDOWN\""))
        {
            stopped = true;
        } else if line.contains("\"return\"") && !status_asked {
            // The VM may have stopped before we subscribed: ask once.
            send("query-status")?;
            status_asked = true;
        } else if line.contains("\"status\"")
            && (line.contains("\"shutdown\"") || line.contains("\"paused\""))
        {
            stopped = true;
        }
    }
    send("query-blockstats")?;
    let stats = loop {
        let line = next_line(&mut reader)?;
        if line.contains("\"return\"") && line.contains("flush_operations") {
            break line;
        }
    };
    send("quit")?;
    // Let QEMU act on `quit` before the socket closes (it may drop a
    // command whose connection is already gone): read until it hangs up.
    while next_line(&mut reader).is_ok() {}
    let own = device_stats(&stats).ok_or(format!("no device stats in {stats}"))?;
    let get = |k: &str| number_after(own, k).ok_or(format!("no {k} in {stats}"));
    Ok(format!(
        "QMP flush_operations={} wr_operations={} wr_bytes={}",
        get("flush_operations")?,
        get("wr_operations")?,
        get("wr_bytes")?
    ))
}

#[cfg(test)]
mod tests {
    use super::{device_stats, number_after};

    #[test]
    fn finds_first_number() {
        let j = r#"{"stats": {"flush_operations": 12, "wr_bytes": 4096}}"#;
        assert_eq!(number_after(j, "flush_operations"), Some(12));
        assert_eq!(number_after(j, "wr_bytes"), Some(4096));
        assert_eq!(number_after(j, "rd_bytes"), None);
    }

    #[test]
    fn skips_the_parent_node_stats() {
        let j = r#"{"return": [{"device": "d0", "parent": {"stats": {"flush_operations": 0}}, "stats": {"flush_operations": 57, "wr_bytes": 9}, "qdev": "x"}]}"#;
        let own = device_stats(j).unwrap();
        assert_eq!(number_after(own, "flush_operations"), Some(57));
    }
}
