//! The command-line client: the real `sluice` binary run as a child process
//! (`sluice pub|sub|get|declare|bind|...`) against an in-process server.
//! Each test checks what a script would: stdout, stderr and the exit code.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::cli_run::{cli, cli_in, command};
use crate::common::{TestServer, DEADLINE};

#[tokio::test]
async fn published_from_argument_and_stdin_lines_then_got_and_subscribed() {
    let s = TestServer::start().await;
    let r = cli(s.addr, &["declare", "queue", "jobs", "--durable"])
        .await
        .ok();
    assert_eq!(r.text(), "jobs messages=0 consumers=0\n");
    cli(s.addr, &["pub", "", "jobs", "hello world"]).await.ok();
    let r = cli_in(s.addr, &["pub", "", "jobs", "--lines"], b"1\n2\r\n3\n4")
        .await
        .ok();
    assert_eq!(r.text(), "", "pub prints nothing without -v");

    let r = cli(s.addr, &["get", "jobs"]).await.ok();
    assert_eq!(r.text(), "hello world\n");
    // --requeue shows and leaves them.
    let r = cli(s.addr, &["get", "jobs", "--count", "2", "--requeue"])
        .await
        .ok();
    assert_eq!(r.text(), "1\n2\n");
    let r = cli(s.addr, &["sub", "jobs", "--count", "3"]).await.ok();
    assert_eq!(r.text(), "1\n2\n3\n");
    let r = cli(s.addr, &["get", "jobs", "--count", "10", "--json"])
        .await
        .ok();
    let got = r.json_lines();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["body"], "4");
    // `sub --count` cancels before its last ack: "4" was not pushed to it
    // and requeued, so it is not flagged.
    assert_eq!(got[0]["redelivered"], false);

    let r = cli(s.addr, &["get", "jobs"]).await;
    assert_eq!((r.code, r.text().as_str()), (3, ""), "empty get: {r:?}");
    let r = cli(
        s.addr,
        &["sub", "jobs", "--count", "1", "--timeout-idle", "200ms"],
    )
    .await;
    assert_eq!(r.code, 3, "idle before --count: {r:?}");
}

#[tokio::test]
async fn json_output_parses_and_non_utf8_bytes_come_as_base64() {
    let s = TestServer::start().await;
    cli(s.addr, &["declare", "queue", "bin"]).await.ok();
    let body: &[u8] = b"\x00\xffraw\nbytes";
    let r = cli_in(
        s.addr,
        &["pub", "", "bin", "-H", "kind=raw", "--id", "m-1", "--json"],
        body,
    )
    .await
    .ok();
    assert_eq!(
        r.json_lines(),
        vec![serde_json::json!({"id": "m-1", "routed": 1})]
    );
    cli(s.addr, &["pub", "", "bin", "héllo"]).await.ok();

    let r = cli(s.addr, &["sub", "bin", "--count", "2", "--json"])
        .await
        .ok();
    let got = r.json_lines();
    assert_eq!(got.len(), 2, "{got:?}");
    let b64 = got[0]["body_base64"].as_str().expect("body_base64");
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    assert_eq!(decoded, body);
    assert!(got[0].get("body").is_none());
    assert_eq!(got[0]["queue"], "bin");
    assert_eq!(got[0]["routing_key"], "bin");
    assert_eq!(got[0]["exchange"], "");
    assert_eq!(got[0]["id"], "m-1");
    assert_eq!(got[0]["headers"]["kind"], "raw");
    assert_eq!(got[0]["deliveries"], 1);
    assert!(got[0]["consumer_tag"].is_string());
    assert_eq!(got[1]["body"], "héllo");
    assert!(got[1]["delivery_tag"].as_u64() > got[0]["delivery_tag"].as_u64());
}

#[tokio::test]
async fn declared_and_bound_topology_routes_a_publish() {
    let s = TestServer::start().await;
    cli(s.addr, &["declare", "exchange", "logs", "topic"])
        .await
        .ok();
    cli(s.addr, &["declare", "queue", "errors"]).await.ok();
    cli(s.addr, &["bind", "errors", "logs", "*.error"])
        .await
        .ok();
    let r = cli(s.addr, &["pub", "logs", "db.error", "disk full", "-v"])
        .await
        .ok();
    assert!(r.text().ends_with(" routed=1\n"), "{r:?}");
    let r = cli(s.addr, &["pub", "logs", "db.info", "fine", "-v"])
        .await
        .ok();
    assert!(r.text().ends_with(" routed=0\n"), "{r:?}");
    let r = cli(s.addr, &["get", "errors", "-v"]).await.ok();
    let text = r.text();
    let mut lines = text.lines();
    let head = lines.next().unwrap_or_default();
    assert!(head.contains("exchange=logs key=db.error"), "{text}");
    assert_eq!(lines.next(), Some("disk full"));

    cli(s.addr, &["unbind", "errors", "logs", "*.error"])
        .await
        .ok();
    let r = cli(s.addr, &["pub", "logs", "db.error", "again", "-v"])
        .await
        .ok();
    assert!(r.text().ends_with(" routed=0\n"), "{r:?}");
    // A generated queue name, as JSON; then purge and delete report counts.
    let r = cli(s.addr, &["declare", "queue", "", "--json"]).await.ok();
    let name = r.json_lines()[0]["queue"]
        .as_str()
        .expect("name")
        .to_string();
    assert!(!name.is_empty());
    cli(s.addr, &["pub", "", &name, "x"]).await.ok();
    let r = cli(s.addr, &["purge", &name, "--json"]).await.ok();
    assert_eq!(r.json_lines(), vec![serde_json::json!({"messages": 1})]);
    let r = cli(s.addr, &["delete", "queue", &name]).await.ok();
    assert_eq!(r.text(), "messages=0\n");
}

#[tokio::test]
async fn exit_codes_tell_errors_empty_refused_and_usage_apart() {
    let s = TestServer::start().await;
    let r = cli(s.addr, &["pub", "nowhere", "k", "x"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stderr.trim(), "sluice: NOT_FOUND exchange \"nowhere\"");
    assert!(r.stdout.is_empty());

    let r = cli(s.addr, &["pub", "", "nobody", "x", "--mandatory"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("sluice: NO_ROUTE "), "{r:?}");
    // The first failure in a pipelined batch names its message.
    cli(s.addr, &["declare", "queue", "q"]).await.ok();
    let r = cli_in(
        s.addr,
        &["pub", "", "q", "--lines", "--priority", "300"],
        b"a\n",
    )
    .await;
    assert_eq!(r.code, 2, "clap checks the range: {r:?}");
    let r = cli_in(
        s.addr,
        &["pub", "", "nobody", "--lines", "--mandatory"],
        b"a\nb\n",
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.trim_end().ends_with("(message 1)"), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");

    let r = cli(s.addr, &["get", "empty-and-missing"]).await;
    assert_eq!(r.code, 1, "missing queue: {r:?}");
    cli(s.addr, &["declare", "queue", "empty"]).await.ok();
    let r = cli(s.addr, &["get", "empty"]).await;
    assert_eq!(r.code, 3, "{r:?}");

    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let r = cli(gone, &["get", "q"]).await;
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr
            .starts_with(&format!("sluice: cannot connect to {gone}")),
        "{r:?}"
    );

    let r = cli(s.addr, &["get", "q", "--count", "0"]).await;
    assert_eq!(r.code, 2, "{r:?}");
    let r = cli(s.addr, &["get", "q", "--ack", "auto", "--requeue"]).await;
    assert_eq!(r.code, 2, "{r:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_with_the_connection_code() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        // Accept and say nothing (no greeting).
        let (sock, _) = listener.accept().await.expect("accept");
        std::future::pending::<()>().await;
        drop(sock);
    });
    let r = cli(addr, &["get", "q", "--timeout", "300ms"]).await;
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("timed out"), "{r:?}");
    held.abort();
}

#[tokio::test]
async fn credentials_are_sent_with_auth() {
    let s = TestServer::start().await;
    cli(s.addr, &["declare", "queue", "q"]).await.ok();
    // The open broker accepts any AUTH; a wrong one would be ERR NOAUTH (exit 5).
    let r = cli(s.addr, &["get", "q", "--user", "bob", "--password", "pw"]).await;
    assert_eq!(r.code, 3, "{r:?}");
    let r = cli(s.addr, &["get", "q", "--user", "bob"]).await;
    assert_eq!(r.code, 2, "--user needs --password: {r:?}");
}

#[tokio::test]
async fn a_closed_stdout_ends_an_idle_sub_quietly() {
    let s = TestServer::start().await;
    cli(s.addr, &["declare", "queue", "q"]).await.ok();
    cli(s.addr, &["pub", "", "q", "only"]).await.ok();
    let mut child = command(s.addr, &["sub", "q"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, out.read_line(&mut line))
        .await
        .expect("no delivery printed")
        .expect("read");
    assert_eq!(line, "only\n");
    // `| head -1`: the reader goes away while sub waits for more.
    drop(out);
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("sub did not notice its stdout closed")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    let mut stderr = child.stderr.take().expect("stderr");
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err)
        .await
        .expect("stderr");
    assert_eq!(err, "", "a closed pipe is not an error");
    // What it printed was acknowledged.
    let r = cli(s.addr, &["get", "q"]).await;
    assert_eq!(r.code, 3, "{r:?}");
}

#[tokio::test]
async fn a_closed_stdout_mid_batch_acknowledges_nothing_unwritten() {
    let s = TestServer::start().await;
    cli(s.addr, &["declare", "queue", "q"]).await.ok();
    let lines: String = (0..2000).map(|i| format!("message {i:05}\n")).collect();
    cli_in(s.addr, &["pub", "", "q", "--lines"], lines.as_bytes())
        .await
        .ok();
    // stdout closed before anything is read: every write fails.
    let mut child = command(s.addr, &["get", "q", "--count", "2000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("get did not finish")
        .expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = cli(s.addr, &["get", "q", "--count", "10000"]).await.ok();
    assert_eq!(r.text(), lines, "every message is still there, in order");
}

#[tokio::test]
async fn stats_prints_key_values_and_their_json() {
    let s = TestServer::start().await;
    cli(s.addr, &["declare", "queue", "jobs"]).await.ok();
    cli(s.addr, &["pub", "", "jobs", "x"]).await.ok();
    let r = cli(s.addr, &["stats"]).await.ok();
    assert!(!r.text().is_empty());
    let r = cli(s.addr, &["stats", "--json"]).await.ok();
    let v = r.json_lines();
    assert_eq!(v.len(), 1);
    assert!(v[0].is_object(), "{v:?}");
    let r = cli(s.addr, &["stats", "jobs", "--json"]).await.ok();
    let v = r.json_lines();
    assert!(v[0].is_object(), "{v:?}");
    assert!(
        v[0].as_object()
            .is_some_and(|m| m.values().any(|x| x.as_u64() == Some(1))),
        "the queue holds one message: {v:?}"
    );
    let r = cli(s.addr, &["stats", "missing"]).await;
    assert_eq!(r.code, 1, "{r:?}");
}

#[tokio::test]
async fn ls_lists_declared_queues_as_a_table_and_json() {
    let s = TestServer::start().await;
    cli(s.addr, &["declare", "queue", "orders.eu"]).await.ok();
    cli(s.addr, &["declare", "queue", "orders.us"]).await.ok();
    cli(s.addr, &["declare", "queue", "other"]).await.ok();
    cli(s.addr, &["pub", "", "orders.eu", "x"]).await.ok();
    let r = cli(s.addr, &["ls", "queues"]).await.ok();
    let text = r.text();
    assert!(
        text.contains("orders.eu") && text.contains("other"),
        "{text}"
    );
    let r = cli(s.addr, &["ls", "queues", "orders.*", "--json"])
        .await
        .ok();
    let v = r.json_lines();
    assert_eq!(v.len(), 1, "one JSON value: {v:?}");
    let rows = v[0].as_array().expect("an array");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["orders.eu", "orders.us"], "{v:?}");
    assert_eq!(rows[0]["messages"], 1, "{v:?}");
    let r = cli(s.addr, &["ls", "connections", "--json"]).await.ok();
    assert!(r.json_lines()[0].is_array());
}

#[tokio::test]
async fn declare_exchange_hash_takes_a_hash_header() {
    let s = TestServer::start().await;
    let r = cli(
        s.addr,
        &["declare", "exchange", "x", "hash", "--hash-header", "h"],
    )
    .await
    .ok();
    assert_eq!(r.text(), "", "{r:?}");
    let mut c = s.conn().await;
    c.ok("DECLARE EXCHANGE x hash hash-header=h", "OK").await;
    c.err("DECLARE EXCHANGE x hash", "PRECONDITION").await;
    cli(s.addr, &["declare", "queue", "q"]).await.ok();
    cli(s.addr, &["bind", "q", "x", "2"]).await.ok();
    c.ok("PUB x k h.h=v id=m1 body", "OK m1 routed=1").await;
    c.ok("PUB x k id=m2 body", "OK m2 routed=0").await;
    // The server checks the pairing, and the CLI says what it answered.
    let r = cli(s.addr, &["bind", "q", "x", "heavy"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.starts_with("sluice: PRECONDITION "), "{r:?}");
    let r = cli(
        s.addr,
        &["declare", "exchange", "y", "direct", "--hash-header", "h"],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(
        r.stderr.trim(),
        "sluice: SYNTAX hash-header= is for exchanges of type hash"
    );
}
