//! The README's walkthroughs with the real binary. "Operating it", step by
//! step: create an admin user on a fresh data directory, start the broker
//! with TLS, then declare, publish and consume with the CLI over TLS as
//! that user; without the password the CLI is refused. "Watching it": its
//! traffic commands, run as the README prints them; and the tour's piped
//! `nc -N` line.

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

/// The `$` commands of README.md's "Watching it" block up to its `nc`
/// session, each with the output lines the README shows after it.
fn watching_it_commands() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let section = readme
        .split_once("\n## Watching it:")
        .map(|(_, rest)| rest)
        .expect("README.md has the Watching it section");
    let block = section
        .split("```")
        .find(|b| b.contains("$ nc 127.0.0.1 5680"))
        .expect("a block with the nc session");
    let mut commands: Vec<(String, Vec<String>)> = Vec::new();
    for line in block.lines().skip(1) {
        if line.starts_with("$ nc ") {
            break;
        }
        match (line.strip_prefix("$ "), commands.last_mut()) {
            (Some(command), _) => commands.push((command.to_string(), Vec::new())),
            (None, Some((_, output))) => output.push(line.to_string()),
            (None, None) => panic!("output before any command: {line:?}"),
        }
    }
    commands
}

#[tokio::test]
async fn the_readme_watching_it_traffic_runs_as_shown() {
    let b = Spawned::start(&[]).await;
    let commands = watching_it_commands();
    assert!(commands.len() >= 2, "{commands:?}");
    let bin_dir = sluice_bin()
        .parent()
        .expect("the binary's folder")
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    for (command, shown) in &commands {
        let out = tokio::process::Command::new("sh")
            .args(["-c", command])
            .env("PATH", &path)
            .env("SLUICE_SERVER", b.addr.to_string())
            .env_remove("SLUICE_USER")
            .env_remove("SLUICE_PASSWORD")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(DEADLINE, out)
            .await
            .unwrap_or_else(|_| panic!("{command:?} did not finish"))
            .expect("run sh");
        assert!(out.status.success(), "{command:?}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines, *shown, "{command:?} printed other lines");
    }
    // What the nc session then shows: 500 jobs, job-1 first.
    let mut c = crate::common::TestConn::connect(b.addr).await;
    let (head, table) = c.data("LIST QUEUES jobs").await;
    assert_eq!(head, "1", "one queue listed");
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.get(..2), Some(&["jobs", "500"][..]), "{table}");
    c.send("GET jobs ack=auto").await;
    let (msg, body) = c.msg().await;
    assert!(msg.starts_with("MSG - 1 "), "{msg}");
    assert_eq!(body, b"job-1");
}

/// Debian's netcat-openbsd waits after the end of its input unless given
/// `-N`: the README's piped `nc` line ends. Skipped (saying so) where no
/// `nc` is installed.
#[tokio::test]
async fn the_readme_piped_nc_line_ends() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let documented = "printf 'PING\\r\\n' | nc -N 127.0.0.1 5680";
    assert!(
        readme.contains(documented),
        "README.md no longer says {documented:?}"
    );
    let have_nc = std::process::Command::new("sh")
        .args(["-c", "command -v nc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_nc {
        eprintln!("skipped: no nc on this machine (apt install netcat-openbsd)");
        return;
    }
    let b = Spawned::start(&[]).await;
    let command = documented.replace("5680", &b.addr.port().to_string());
    let out = tokio::process::Command::new("sh")
        .args(["-c", &command])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(DEADLINE, out)
        .await
        .unwrap_or_else(|_| panic!("{command:?} did not end"))
        .expect("run sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            format!("HELLO sluice {} proto=1", env!("CARGO_PKG_VERSION")).as_str(),
            "OK pong"
        ],
        "{out:?}"
    );
}
