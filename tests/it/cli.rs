//! The command-line client: the real `sluice` binary run as a child process
//! (`sluice pub|sub|get|declare|bind|...`) against an in-process server.
//! Each test checks what a script would: stdout, stderr and the exit code.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::cli_run::{cli, cli_env, cli_in, command};
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
async fn sub_prints_the_closing_notice_when_the_server_stops() {
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
    // As SIGTERM does: NOTICE closing reason=shutdown, then the close.
    s.stop().await;
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("sub did not end with the server")
        .expect("wait");
    assert_eq!(status.code(), Some(4), "the connection's end");
    let mut err = String::new();
    let mut stderr = child.stderr.take().expect("stderr");
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err)
        .await
        .expect("stderr");
    assert!(
        err.contains(
            "sluice: the server is closing the connection: NOTICE closing reason=shutdown"
        ),
        "{err}"
    );
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

/// `--json` types what the broker writes as text: `jq 'select(.durable)'`
/// must select the durable queues only.
#[tokio::test]
async fn json_output_types_booleans_nulls_and_numbers() {
    let s = TestServer::start().await;
    cli(s.addr, &["declare", "queue", "kept", "--durable"])
        .await
        .ok();
    cli(s.addr, &["declare", "queue", "true"]).await.ok();
    cli(s.addr, &["declare", "exchange", "ex", "topic"])
        .await
        .ok();
    cli(s.addr, &["pub", "", "kept", "x"]).await.ok();

    let r = cli(s.addr, &["ls", "queues", "--json"]).await.ok();
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("one JSON value");
    let rows = v.as_array().expect("an array of queues");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {v}"))
    };
    assert_eq!(row("kept")["durable"], serde_json::json!(true), "{v}");
    assert_eq!(row("true")["durable"], serde_json::json!(false), "{v}");
    assert!(
        row("true")["name"].is_string(),
        "a name stays a string: {v}"
    );
    assert_eq!(row("kept")["messages"], serde_json::json!(1), "{v}");
    assert!(row("kept")["publish_per_sec"].is_f64(), "{v}");
    assert!(
        row("kept")["leader"].is_null(),
        "no leader off a cluster: {v}"
    );
    let durable: Vec<&str> = rows
        .iter()
        .filter(|r| r["durable"].as_bool() == Some(true))
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(durable, ["kept"], "{v}");

    let r = cli(s.addr, &["ls", "exchanges", "--json"]).await.ok();
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("one JSON value");
    let ex = &v[0];
    assert_eq!(ex["name"], "ex", "{v}");
    assert_eq!(ex["durable"], serde_json::json!(false), "{v}");
    assert_eq!(ex["auto_delete"], serde_json::json!(false), "{v}");
    assert!(ex["alternate"].is_null(), "{v}");
    assert_eq!(ex["bindings"], serde_json::json!(0), "{v}");

    let r = cli(s.addr, &["ls", "connections", "--json"]).await.ok();
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("one JSON value");
    assert!(v[0]["user"].is_null(), "no user on an open broker: {v}");
    assert_eq!(v[0]["tls"], serde_json::json!(false), "{v}");
    assert!(v[0]["id"].is_u64(), "{v}");

    let r = cli(s.addr, &["stats", "kept", "--json"]).await.ok();
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("one JSON value");
    assert_eq!(v["name"], "kept", "{v}");
    assert_eq!(v["durable"], serde_json::json!(true), "{v}");
    assert_eq!(v["exclusive"], serde_json::json!(false), "{v}");
    assert_eq!(v["messages_ready"], serde_json::json!(1), "{v}");
    let r = cli(s.addr, &["stats", "true", "--json"]).await.ok();
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("one JSON value");
    assert_eq!(v["name"], "true", "a name stays a string: {v}");
    assert_eq!(v["durable"], serde_json::json!(false), "{v}");
}

/// The connection options work before the command as after it, at any
/// depth of subcommand; `serve` still refuses them.
#[tokio::test]
async fn connection_flags_work_before_the_subcommand() {
    let s = TestServer::start().await;
    let addr = s.addr.to_string();
    let r = cli_env(&["-s", &addr, "declare", "queue", "jobs"], &[]).await;
    assert_eq!(
        (r.code, r.text().as_str()),
        (0, "jobs messages=0 consumers=0\n"),
        "{r:?}"
    );
    let r = cli_env(&["--server", &addr, "pub", "", "jobs", "hello"], &[]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = cli_env(
        &["-s", &addr, "--json", "--timeout", "5s", "get", "jobs"],
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json_lines()[0]["body"], "hello", "{r:?}");
    // The flag before the command beats the environment, as after it.
    let r = cli_env(
        &[&format!("--server={addr}"), "stats", "jobs"],
        &[("SLUICE_SERVER", "127.0.0.1:1")],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    // Pointed nowhere, before the command: it is used (exit 4, no connection).
    let r = cli_env(
        &["-s", "127.0.0.1:1", "ls", "queues"],
        &[("SLUICE_SERVER", &addr)],
    )
    .await;
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("127.0.0.1:1"), "{r:?}");
    // Not a client command: clap refuses the flag, as before (exit 2).
    let r = cli_env(&["-s", &addr, "serve", "--in-memory"], &[]).await;
    assert_eq!(r.code, 2, "{r:?}");
}

/// What failed, from the shell: `peek` looks without taking, `nack`
/// retries later or dead-letters, `redrive` sends dead letters back,
/// `purge` and `delete` clear up.
#[tokio::test]
async fn peek_nack_redrive_purge_and_delete_from_the_command_line() {
    let s = TestServer::start().await;
    cli(s.addr, &["declare", "queue", "dlq"]).await.ok();
    let r = cli(
        s.addr,
        &[
            "declare",
            "queue",
            "work",
            "--dead-letter",
            "",
            "--dead-letter-key",
            "dlq",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = cli(s.addr, &["peek", "work"]).await;
    assert_eq!(
        (r.code, r.text().as_str()),
        (3, ""),
        "nothing there yet: {r:?}"
    );
    for body in ["one", "two", "three"] {
        cli(s.addr, &["pub", "", "work", body]).await.ok();
    }

    // peek: everything waiting, twice over (nothing is taken).
    let r = cli(s.addr, &["peek", "work", "--count", "10", "--json"])
        .await
        .ok();
    let seen = r.json_lines();
    let bodies: Vec<&str> = seen.iter().filter_map(|m| m["body"].as_str()).collect();
    assert_eq!(bodies, ["one", "two", "three"], "{r:?}");
    assert!(seen.iter().all(|m| m["position"].is_u64()), "{r:?}");
    assert!(seen[0].get("delivery_tag").is_none(), "{r:?}");
    let second = seen[1]["position"].to_string();
    let r = cli(s.addr, &["peek", "work", "--from", &second, "-v"])
        .await
        .ok();
    let text = r.text();
    assert!(
        text.starts_with(&format!("queue=work position={second} ")) && text.ends_with("\ntwo\n"),
        "{text}"
    );

    // nack --no-requeue dead-letters the head; nack --delay holds the next back.
    let r = cli(s.addr, &["nack", "work", "--no-requeue"]).await.ok();
    assert_eq!(r.text(), "one\n");
    let r = cli(s.addr, &["nack", "work", "--delay", "60s"]).await.ok();
    assert_eq!(r.text(), "two\n");
    let r = cli(s.addr, &["get", "work"]).await.ok();
    assert_eq!(r.text(), "three\n", "two is held back a minute");
    let r = cli(s.addr, &["get", "work"]).await;
    assert_eq!(r.code, 3, "{r:?}");
    let r = cli(s.addr, &["peek", "dlq", "--json"]).await.ok();
    let dead = r.json_lines();
    assert_eq!(dead[0]["body"], "one", "{r:?}");
    assert_eq!(dead[0]["headers"]["x-death-reason"], "rejected", "{r:?}");
    let r = cli(s.addr, &["nack", "work", "--delay", "1s", "--no-requeue"]).await;
    assert_eq!(r.code, 2, "the two contradict each other: {r:?}");

    // redrive: back where it was first published.
    let r = cli(s.addr, &["redrive", "dlq", "--json"]).await.ok();
    assert_eq!(
        r.json_lines(),
        vec![serde_json::json!({"moved": 1, "kept": 0})]
    );
    let r = cli(s.addr, &["get", "work", "-v"]).await.ok();
    assert!(r.text().ends_with("\none\n"), "{r:?}");
    let r = cli(s.addr, &["peek", "dlq"]).await;
    assert_eq!(r.code, 3, "{r:?}");

    // purge and delete.
    let r = cli(s.addr, &["purge", "work"]).await.ok();
    assert_eq!(r.text(), "messages=1\n", "the delayed one: {r:?}");
    cli(s.addr, &["delete", "queue", "dlq"]).await.ok();
    let r = cli(s.addr, &["peek", "dlq"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("NOT_FOUND"), "{r:?}");
    let r = cli(s.addr, &["redrive", "nowhere"]).await;
    assert_eq!(r.code, 1, "{r:?}");
}

/// A publish no queue took is dropped: `pub` says so on stderr (still exit
/// 0: it was published), once per run, unless `--quiet`.
#[tokio::test]
async fn pub_warns_when_no_queue_took_the_message_unless_quiet() {
    let s = TestServer::start().await;
    cli(s.addr, &["declare", "queue", "jobs"]).await.ok();
    cli(s.addr, &["declare", "exchange", "logs", "topic"])
        .await
        .ok();
    let r = cli(s.addr, &["pub", "", "jobs", "x"]).await.ok();
    assert_eq!(r.stderr, "", "routed=1: no warning");

    let r = cli(s.addr, &["pub", "", "jobz", "x"]).await.ok();
    assert!(
        r.stderr.starts_with(
            "sluice: warning: routed=0: no queue is bound for \"jobz\" on the default exchange"
        ),
        "{r:?}"
    );
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert_eq!(r.text(), "", "stdout stays clean");
    let r = cli(s.addr, &["pub", "logs", "db.info", "x", "-v"])
        .await
        .ok();
    assert!(
        r.stderr
            .contains("routed=0: no queue is bound for \"db.info\" on exchange \"logs\""),
        "{r:?}"
    );
    assert!(r.text().ends_with(" routed=0\n"), "{r:?}");
    let r = cli_in(s.addr, &["pub", "logs", "db.info", "--lines"], b"a\nb\nc\n")
        .await
        .ok();
    assert_eq!(r.stderr.lines().count(), 1, "one warning per run: {r:?}");
    assert!(r.stderr.contains("routed=0 for 3 of 3 messages"), "{r:?}");

    for quiet in ["--quiet", "-q"] {
        let r = cli(s.addr, &["pub", "logs", "db.info", "x", quiet])
            .await
            .ok();
        assert_eq!(r.stderr, "", "{quiet}: {r:?}");
    }
    // --mandatory makes it the error it always was.
    let r = cli(s.addr, &["pub", "logs", "db.info", "x", "--mandatory"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("NO_ROUTE"), "{r:?}");
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

/// `(offset, body)` of each `--json` delivery.
fn offsets_and_bodies(r: &crate::common::cli_run::Run) -> Vec<(u64, String)> {
    r.json_lines()
        .iter()
        .map(|v| {
            let offset = v["offset"]
                .as_u64()
                .unwrap_or_else(|| panic!("no offset: {v}"));
            (offset, v["body"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

#[tokio::test]
async fn a_stream_is_read_by_offset_and_a_group_resumes_and_replays_after_seek() {
    let s = TestServer::start().await;
    let r = cli(
        s.addr,
        &["declare", "queue", "clicks", "--stream", "--max-age", "7d"],
    )
    .await
    .ok();
    assert_eq!(r.text(), "clicks messages=0 consumers=0\n");
    let mut c = s.conn().await;
    // The CLI sent type=stream max-age=<7 days in ms>: the same declaration
    // from the protocol is a no-op, another max-age a PRECONDITION.
    c.ok(
        "DECLARE QUEUE clicks type=stream max-age=604800000",
        "OK clicks messages=0 consumers=0",
    )
    .await;
    c.err("DECLARE QUEUE clicks type=stream", "PRECONDITION")
        .await;
    cli_in(
        s.addr,
        &["pub", "", "clicks", "--lines"],
        b"home\npricing\nsignup\n",
    )
    .await
    .ok();

    // Plain readers: each reads everything, from where it asks.
    let r = cli(
        s.addr,
        &[
            "sub", "clicks", "--offset", "first", "--count", "3", "--json",
        ],
    )
    .await
    .ok();
    let want = |v: &[(u64, &str)]| -> Vec<(u64, String)> {
        v.iter().map(|(o, b)| (*o, b.to_string())).collect()
    };
    assert_eq!(
        offsets_and_bodies(&r),
        want(&[(1, "home"), (2, "pricing"), (3, "signup")])
    );
    assert!(r.json_lines()[0].get("partition").is_none(), "{r:?}");
    let r = cli(
        s.addr,
        &["sub", "clicks", "--offset", "2", "--count", "1", "--json"],
    )
    .await
    .ok();
    assert_eq!(offsets_and_bodies(&r), want(&[(2, "pricing")]));
    let r = cli(s.addr, &["sub", "clicks", "--time", "0", "--count", "1"])
        .await
        .ok();
    assert_eq!(r.text(), "home\n");
    // The default is offset=next: nothing new comes.
    let r = cli(
        s.addr,
        &["sub", "clicks", "--count", "1", "--timeout-idle", "300ms"],
    )
    .await;
    assert_eq!((r.code, r.text().as_str()), (3, ""), "{r:?}");

    // A group commits what it acked and resumes there (NOTICE active does
    // not disturb `sub`).
    let r = cli(
        s.addr,
        &[
            "sub", "clicks", "--group", "g", "--offset", "first", "--count", "2",
        ],
    )
    .await
    .ok();
    assert_eq!(r.text(), "home\npricing\n");
    let r = cli(
        s.addr,
        &["sub", "clicks", "--group", "g", "--count", "1", "-v"],
    )
    .await
    .ok();
    let text = r.text();
    let mut lines = text.lines();
    let head = lines.next().unwrap_or_default();
    assert!(
        head.starts_with("queue=clicks ") && head.contains(" offset=3 "),
        "{text}"
    );
    assert_eq!(lines.next(), Some("signup"));
    let r = cli(
        s.addr,
        &["sub", "clicks", "--group", "g", "--timeout-idle", "300ms"],
    )
    .await;
    assert_eq!(r.code, 3, "the group has read everything: {r:?}");

    // SEEK back to the start: the group reads it all again.
    let r = cli(s.addr, &["seek", "clicks", "g", "--offset", "first"])
        .await
        .ok();
    assert_eq!(r.text(), "1\n");
    let r = cli(
        s.addr,
        &["sub", "clicks", "--group", "g", "--count", "3", "--json"],
    )
    .await
    .ok();
    assert_eq!(
        offsets_and_bodies(&r),
        want(&[(1, "home"), (2, "pricing"), (3, "signup")])
    );
    let r = cli(s.addr, &["seek", "clicks", "g", "--offset", "2", "--json"])
        .await
        .ok();
    assert_eq!(r.json_lines(), vec![serde_json::json!({"offsets": [2]})]);
    let r = cli(s.addr, &["sub", "clicks", "--group", "g", "--count", "1"])
        .await
        .ok();
    assert_eq!(r.text(), "pricing\n");
    let r = cli(s.addr, &["seek", "clicks", "g", "--offset", "next"])
        .await
        .ok();
    assert_eq!(r.text(), "4\n");
    // A group placed by SEEK before any member comes.
    let r = cli(s.addr, &["seek", "clicks", "late", "--time", "0"])
        .await
        .ok();
    assert_eq!(r.text(), "1\n");
    let r = cli(
        s.addr,
        &["sub", "clicks", "--group", "late", "--count", "1"],
    )
    .await
    .ok();
    assert_eq!(r.text(), "home\n");

    // The server's refusals, with their exit codes.
    let r = cli(s.addr, &["seek", "nowhere", "g", "--offset", "first"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.starts_with("sluice: NOT_FOUND "), "{r:?}");
    cli(s.addr, &["declare", "queue", "jobs"]).await.ok();
    let r = cli(s.addr, &["seek", "jobs", "g", "--offset", "first"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.starts_with("sluice: PRECONDITION "), "{r:?}");
    let r = cli(s.addr, &["sub", "jobs", "--offset", "first"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.starts_with("sluice: PRECONDITION "), "{r:?}");
    let r = cli(s.addr, &["get", "clicks"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.starts_with("sluice: PRECONDITION "), "{r:?}");
    let r = cli(
        s.addr,
        &["declare", "queue", "s2", "--stream", "--ttl", "5s"],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.starts_with("sluice: SYNTAX "), "{r:?}");
    // What clap checks itself: exit 2.
    for args in [
        &["seek", "clicks", "g"][..],
        &["seek", "clicks", "g", "--offset", "1", "--time", "1"],
        &["seek", "clicks", "g", "--offset", "soon"],
        &["sub", "clicks", "--offset", "first", "--time", "1"],
        &["declare", "queue", "q", "--partitions", "2"],
        &["declare", "queue", "q", "--max-age", "1h"],
        &["declare", "queue", "q", "--single-active", "--groups"],
    ] {
        let r = cli(s.addr, args).await;
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
    }
}

#[tokio::test]
async fn a_partitioned_stream_reports_partitions_and_seeks_each() {
    let s = TestServer::start().await;
    let r = cli(
        s.addr,
        &[
            "declare",
            "queue",
            "payments",
            "--stream",
            "--partitions",
            "2",
        ],
    )
    .await
    .ok();
    assert_eq!(r.text(), "payments messages=0 consumers=0 partitions=2\n");
    let r = cli(
        s.addr,
        &[
            "declare",
            "queue",
            "payments",
            "--stream",
            "--partitions",
            "2",
            "--json",
        ],
    )
    .await
    .ok();
    assert_eq!(
        r.json_lines(),
        vec![serde_json::json!({
            "queue": "payments", "messages": 0, "consumers": 0, "partitions": 2
        })]
    );
    // Publish to the hash exchange: each key goes to one partition.
    for i in 0..8 {
        let key = format!("user-{i}");
        cli(s.addr, &["pub", "payments", &key, &format!("event {i}")])
            .await
            .ok();
    }
    let r = cli(
        s.addr,
        &[
            "sub", "payments", "--group", "ledger", "--offset", "first", "--count", "8", "--json",
        ],
    )
    .await
    .ok();
    let got = r.json_lines();
    assert_eq!(got.len(), 8, "{got:?}");
    let mut next = [1u64, 1];
    for v in &got {
        let p = v["partition"].as_u64().unwrap_or_else(|| panic!("{v}")) as usize;
        assert!(p < 2, "{v}");
        assert_eq!(
            v["offset"].as_u64(),
            Some(next[p]),
            "in order per partition: {got:?}"
        );
        next[p] += 1;
    }
    // The group read all of both partitions; SEEK moves each.
    let r = cli(s.addr, &["seek", "payments", "ledger", "--offset", "next"])
        .await
        .ok();
    assert_eq!(r.text(), format!("{} {}\n", next[0], next[1]));
    let r = cli(
        s.addr,
        &["seek", "payments", "ledger", "--offset", "first", "--json"],
    )
    .await
    .ok();
    assert_eq!(r.json_lines(), vec![serde_json::json!({"offsets": [1, 1]})]);
}

#[tokio::test]
async fn pub_group_reaches_a_groups_queue_and_single_active_sub_works() {
    let s = TestServer::start().await;
    let r = cli(s.addr, &["declare", "queue", "orders", "--groups"])
        .await
        .ok();
    assert_eq!(r.text(), "orders messages=0 consumers=0\n");
    let mut c = s.conn().await;
    c.ok(
        "DECLARE QUEUE orders groups",
        "OK orders messages=0 consumers=0",
    )
    .await;
    c.err("DECLARE QUEUE orders", "PRECONDITION").await;
    cli(
        s.addr,
        &["pub", "", "orders", "--group", "cust-a", "a created"],
    )
    .await
    .ok();
    cli(s.addr, &["pub", "", "orders", "no group"]).await.ok();
    let r = cli(s.addr, &["sub", "orders", "--count", "2", "--json"])
        .await
        .ok();
    let got = r.json_lines();
    assert_eq!(got[0]["group"], "cust-a", "{got:?}");
    assert_eq!(got[0]["body"], "a created");
    assert!(got[1].get("group").is_none(), "{got:?}");
    assert!(got[0].get("offset").is_none(), "{got:?}");
    cli(
        s.addr,
        &["pub", "", "orders", "--group", "cust b", "b paid"],
    )
    .await
    .ok();
    let r = cli(s.addr, &["get", "orders", "-v"]).await.ok();
    assert!(r.text().contains(" group=\"cust b\" "), "{r:?}");
    let r = cli(s.addr, &["pub", "", "orders", "--group", "", "x"]).await;
    assert_eq!(r.code, 1, "an empty group is refused: {r:?}");

    // A single-active queue: `sub` gets NOTICE active first, then its messages.
    let r = cli(s.addr, &["declare", "queue", "ledger", "--single-active"])
        .await
        .ok();
    assert_eq!(r.text(), "ledger messages=0 consumers=0\n");
    c.ok(
        "DECLARE QUEUE ledger single-active",
        "OK ledger messages=0 consumers=0",
    )
    .await;
    cli(s.addr, &["pub", "", "ledger", "entry 1"]).await.ok();
    let r = cli(s.addr, &["sub", "ledger", "--count", "1"]).await.ok();
    assert_eq!(r.text(), "entry 1\n");
}
