//! The README's "Operating sluice" walkthrough, step by step, with the real
//! binary: create an admin user on a fresh data directory, start the
//! broker with TLS, then declare, publish and consume with the CLI over
//! TLS as that user; without the password the CLI is refused.

use std::net::SocketAddr;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::common::cert::Cert;
use crate::common::cli_run::{cli_in, Run};
use crate::common::spawned::Spawned;
use crate::common::{sluice_bin, DEADLINE};

/// `sluice user <args> --data-dir <dir>`, the password on stdin.
async fn user(dir: &std::path::Path, args: &[&str], password: &str) -> std::process::Output {
    let mut child = tokio::process::Command::new(sluice_bin())
        .arg("user")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice user");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{password}\n").as_bytes())
        .await
        .expect("write password");
    drop(stdin);
    tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("sluice user in time")
        .expect("wait")
}

/// The CLI over TLS to `addr`, trusting `cert`, logged in as ops with
/// `password` when there is one.
async fn tls_cli(addr: SocketAddr, cert: &Cert, args: &[&str], password: Option<&str>) -> Run {
    let ca = cert.cert();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--tls-ca", ca.to_str().expect("utf-8 path")]);
    all.extend(["--tls-server-name", "localhost"]);
    if let Some(password) = password {
        all.extend(["--user", "ops", "--password", password]);
    }
    cli_in(addr, &all, b"").await
}

/// The admin's password in the walkthrough.
const LOGIN: Option<&str> = Some("correct horse");

#[tokio::test]
async fn create_a_user_serve_tls_and_use_the_cli_over_it() {
    let data = tempfile::tempdir().expect("tempdir");
    let cert = Cert::new();

    // 1. An admin user, on the data directory, before the broker runs.
    let out = user(
        data.path(),
        &["add", "ops", "--admin", "--password-stdin"],
        "correct horse",
    )
    .await;
    assert!(out.status.success(), "sluice user add: {out:?}");

    // 2. The broker, with TLS on a second port.
    let args = cert.serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = Spawned::start_in(data.path(), &args).await;
    let tls: SocketAddr = b.tls_addr().await;

    // 3. Declare, publish and consume with the CLI, over TLS, logged in.
    let r = tls_cli(
        tls,
        &cert,
        &["declare", "queue", "jobs", "--durable"],
        LOGIN,
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = tls_cli(tls, &cert, &["pub", "", "jobs", "resize photo 7"], LOGIN).await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = tls_cli(tls, &cert, &["get", "jobs", "--json"], LOGIN).await;
    assert_eq!(r.code, 0, "{r:?}");
    let got = r.json_lines();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["body"], "resize photo 7", "{got:?}");
    assert_eq!(got[0]["routing_key"], "jobs", "{got:?}");

    // The CLI's own connection, as `sluice ls connections` shows it: over
    // TLS, logged in as ops.
    let r = tls_cli(
        tls,
        &cert,
        &["ls", "connections", "sluice-cli", "--json"],
        LOGIN,
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let rows = r.json_lines();
    let rows = rows[0].as_array().expect("an array of connections");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["user"], "ops", "{rows:?}");
    assert_eq!(rows[0]["tls"], true, "{rows:?}");

    // With a wrong password, or none: refused (exit 5), and nothing is taken.
    let r = tls_cli(tls, &cert, &["get", "jobs"], Some("wrong")).await;
    assert_eq!(r.code, 5, "{r:?}");
    assert!(
        r.stderr.contains("NOAUTH invalid user or password"),
        "{r:?}"
    );
    let r = tls_cli(tls, &cert, &["pub", "", "jobs", "x"], None).await;
    assert_eq!(r.code, 5, "{r:?}");
    assert!(r.stderr.contains("NOAUTH"), "{r:?}");
    // Nor over plain TCP.
    let r = cli_in(b.addr, &["get", "jobs"], b"").await;
    assert_eq!(r.code, 5, "{r:?}");
    // The queue is empty: the one message was taken by the logged-in get.
    let r = tls_cli(tls, &cert, &["get", "jobs"], LOGIN).await;
    assert_eq!(r.code, 3, "{r:?}");
}
