//! Clouds from the user's side: credentials named by their standard variables, no request that
//! can hang, and `doctor URL` reporting what a store can promise and how that is known.
//!
//! Every test runs the real binary with a controlled environment (no `AWS_*`, `GOOGLE_*`,
//! `AZURE_*` from the caller) and waits for it with a generous bound; none asserts a duration.
//! The Azurite test needs `ATOMWRITE_AZ_TEST_URL` (ci/azurite/start.sh); it skips with a printed
//! reason when unset, and fails when unset under CI=true.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(180);

/// The atomwrite binary with every cloud variable of the caller removed.
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atomwrite"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if ["AWS_", "GOOGLE_", "AZURE_", "AZURITE_", "ATOMWRITE_"]
            .iter()
            .any(|p| k.starts_with(p))
        {
            c.env_remove(&k);
        }
    }
    c.env("HOME", std::env::temp_dir()); // no ~/.config/gcloud credentials
    c
}

/// Runs `c` with `stdin` as input and waits at most [`BOUND`] (killing it then, and failing).
fn run(mut c: Command, stdin: &[u8]) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > BOUND {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "atomwrite still running after {BOUND:?}: a network request hung; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn one_line_error(out: &Output) -> String {
    one_line_error_exit(out, 1)
}

fn one_line_error_exit(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit {code} expected; stderr: {err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

/// A loopback port where nothing listens (connection refused at once).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn missing_aws_credentials_fail_in_one_line_naming_the_variables() {
    let mut c = bin();
    // The instance-metadata service, the last resort of the credential chain, is pointed at a
    // closed port so the result does not depend on the machine (EC2 or not).
    c.env(
        "AWS_METADATA_ENDPOINT",
        format!("http://127.0.0.1:{}", closed_port()),
    )
    .env("AWS_REGION", "us-east-1")
    .args(["write", "s3://atomwrite-no-creds/k"]);
    let out = run(c, b"payload");
    let err = one_line_error(&out);
    for needle in [
        "s3://atomwrite-no-creds/k",
        "no AWS credentials",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
    ] {
        assert!(err.contains(needle), "`{needle}` missing from: {err}");
    }
}

#[test]
fn missing_azure_account_fails_in_one_line_naming_the_variables() {
    let mut c = bin();
    c.args(["write", "az://container/k"]);
    let out = run(c, b"payload");
    // A store that cannot even be configured is a usage error (exit 2), before any request.
    let err = one_line_error_exit(&out, 2);
    for needle in [
        "az://container/k",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_USE_EMULATOR",
    ] {
        assert!(err.contains(needle), "`{needle}` missing from: {err}");
    }
}

/// An S3 endpoint that accepts connections and never answers: the write must fail (bounded by
/// ATOMWRITE_REQUEST_TIMEOUT and ATOMWRITE_RETRY_TIMEOUT) with the URL in its one-line error.
#[test]
fn silent_endpoint_times_out_with_the_url_in_the_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold every connection, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let mut c = bin();
    c.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("ATOMWRITE_CONNECT_TIMEOUT", "2s")
        .env("ATOMWRITE_REQUEST_TIMEOUT", "2s")
        .env("ATOMWRITE_RETRY_TIMEOUT", "1s")
        .args(["write", "s3://silent-bucket/some/key"]);
    let out = run(c, b"payload");
    let err = one_line_error(&out);
    assert!(err.contains("s3://silent-bucket/some/key"), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}")),
        "the endpoint is named: {err}"
    );
}

/// An unroutable endpoint (connect never completes, or the network refuses it at once):
/// either way the write ends with the URL in its one-line error.
#[test]
fn unroutable_endpoint_fails_with_the_url_in_the_error() {
    let mut c = bin();
    c.env("AWS_ENDPOINT_URL", "http://10.255.255.1:9")
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("ATOMWRITE_CONNECT_TIMEOUT", "1s")
        .env("ATOMWRITE_RETRY_TIMEOUT", "1s")
        .args(["write", "s3://blackhole-bucket/k"]);
    let out = run(c, b"payload");
    let err = one_line_error(&out);
    assert!(err.contains("s3://blackhole-bucket/k"), "{err}");
}

#[test]
fn bad_timeout_value_is_refused_naming_the_variable() {
    let mut c = bin();
    c.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("ATOMWRITE_REQUEST_TIMEOUT", "soon")
        .args(["write", "s3://b/k"]);
    let out = run(c, b"payload");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("ATOMWRITE_REQUEST_TIMEOUT"), "{err}");
}

#[test]
fn doctor_memory_url_observes_conditional_writes() {
    let mut c = bin();
    c.args(["doctor", "--json", "memory:///doctor/prefix"]);
    let out = run(c, b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["store"], "memory");
    assert_eq!(v["ok"], true);
    for k in ["conditional_create", "compare_and_swap", "multipart"] {
        assert_eq!(v[k]["supported"], true, "{k}: {v}");
        assert_eq!(v[k]["evidence"], "probed", "{k}: {v}");
    }
}

#[test]
fn doctor_file_url_probes_and_leaves_nothing_behind() {
    let d = tempfile::tempdir().unwrap();
    let mut c = bin();
    c.args(["doctor", &format!("file://{}", d.path().display())]);
    let out = run(c, b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text} {out:?}");
    assert!(text.contains("create-only       yes"), "{text}");
    assert!(text.contains("observed"), "{text}");
    assert!(text.contains("atomwrite's lock file"), "{text}");
    let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
    assert!(left.is_empty(), "probe keys deleted: {left:?}");
}

#[test]
fn doctor_gcs_says_it_is_untested_and_never_claims_a_guarantee() {
    let mut c = bin();
    // No Google credentials: the probe cannot run (the metadata server, tried last, is
    // bounded by the connect timeout), and nothing is claimed beyond the documented API.
    c.env("ATOMWRITE_CONNECT_TIMEOUT", "2s")
        .args(["doctor", "gs://some-bucket/prefix"]);
    let out = run(c, b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text} {out:?}");
    assert!(text.contains("not exercised by atomwrite's CI"), "{text}");
    assert!(text.contains("x-goog-if-generation-match"), "{text}");
    assert!(!text.contains(" yes "), "no capability claimed: {text}");
}

#[test]
fn doctor_azurite_observes_conditional_writes() {
    let Some(url) = std::env::var("ATOMWRITE_AZ_TEST_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("ATOMWRITE_AZ_TEST_URL is not set but CI=true (ci/azurite/start.sh sets it)");
        }
        eprintln!("SKIP doctor_azurite_observes_conditional_writes: ATOMWRITE_AZ_TEST_URL unset");
        return;
    };
    let mut c = bin();
    for k in ["AZURE_STORAGE_USE_EMULATOR", "AZURITE_BLOB_STORAGE_URL"] {
        if let Ok(v) = std::env::var(k) {
            c.env(k, v);
        }
    }
    c.args(["doctor", "--json", &url]);
    let out = run(c, b"");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["store"], "azure");
    assert!(v["endpoint"].as_str().is_some(), "{v}");
    for k in ["conditional_create", "compare_and_swap", "multipart"] {
        assert_eq!(v[k]["supported"], true, "{k}: {v}");
        assert_eq!(v[k]["evidence"], "probed", "{k}: {v}");
    }
}
