//! `sluice schema add|get|list|delete` and `sluice ls schemas`: the real
//! binary against an in-process server, as a script would use them (a
//! schema from a file or stdin, the schema printed back as it was added,
//! `--json`, and the exit codes of a refused change).

use crate::common::cli_run::{cli, cli_in};
use crate::common::TestServer;

const V1: &str = r#"{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}"#;
const V2: &str = r#"{"type":"object","properties":{"id":{"type":"string"},"note":{"type":"string"}},"required":["id"]}"#;

#[tokio::test]
async fn schemas_are_added_from_a_file_or_stdin_then_got_listed_and_deleted() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("orders-v1.json");
    std::fs::write(&file, V1).expect("write");
    let path = file.to_str().expect("utf-8 path");

    let r = cli(s.addr, &["schema", "add", "orders", path]).await.ok();
    assert_eq!(r.text(), "orders version=1\n");
    let r = cli_in(
        s.addr,
        &["schema", "add", "orders", "-", "--json"],
        V2.as_bytes(),
    )
    .await
    .ok();
    assert_eq!(
        r.json_lines(),
        [serde_json::json!({"subject": "orders", "version": 2})]
    );
    let r = cli_in(
        s.addr,
        &[
            "schema",
            "add",
            "audit",
            "-",
            "--compat",
            "full",
            "--transitive",
        ],
        b"{}",
    )
    .await
    .ok();
    assert_eq!(r.text(), "audit version=1\n");

    // Printed back exactly as added: the latest, or --version N.
    let r = cli(s.addr, &["schema", "get", "orders"]).await.ok();
    assert_eq!(r.text(), format!("{V2}\n"));
    let r = cli(s.addr, &["schema", "get", "orders", "--version", "1"])
        .await
        .ok();
    assert_eq!(r.text(), format!("{V1}\n"));
    let r = cli(s.addr, &["schema", "get", "audit", "--json"])
        .await
        .ok();
    assert_eq!(
        r.json_lines(),
        [
            serde_json::json!({"subject": "audit", "version": 1, "compat": "full",
                            "transitive": true, "schema": {}})
        ]
    );

    // `schema list` and `ls schemas` are the same table.
    let list = cli(s.addr, &["schema", "list"]).await.ok().text();
    let ls = cli(s.addr, &["ls", "schemas"]).await.ok().text();
    assert_eq!(list, ls);
    let rows: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["subject", "latest", "versions", "compat", "used_by"],
            vec!["audit", "1", "1", "full,transitive", "-"],
            vec!["orders", "2", "1,2", "backward", "-"],
        ]
    );
    let r = cli(s.addr, &["ls", "schemas", "ord*", "--json"]).await.ok();
    assert_eq!(
        r.json_lines(),
        [
            serde_json::json!([{"subject": "orders", "latest": 2, "versions": "1,2",
                             "compat": "backward", "used_by": null}])
        ]
    );

    let r = cli(s.addr, &["schema", "delete", "orders", "--version", "1"])
        .await
        .ok();
    assert_eq!(r.text(), "");
    let r = cli(s.addr, &["schema", "get", "orders", "--version", "1"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.starts_with("sluice: NOT_FOUND version 1"), "{r:?}");
    cli(s.addr, &["schema", "delete", "orders"]).await.ok();
    let r = cli(s.addr, &["schema", "list", "--json"]).await.ok();
    assert_eq!(r.json_lines()[0].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn refused_schema_changes_and_bad_input_exit_with_their_codes() {
    let s = TestServer::start().await;
    cli_in(s.addr, &["schema", "add", "orders", "-"], V1.as_bytes())
        .await
        .ok();
    // A break of the subject's rule: the broker's PRECONDITION, exit 1.
    let r = cli_in(
        s.addr,
        &["schema", "add", "orders", "-"],
        br#"{"type":"object","required":["id","total"]}"#,
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .starts_with("sluice: PRECONDITION not backward compatible with version 1"),
        "{r:?}"
    );
    // Not a schema: SYNTAX from the broker.
    let r = cli_in(s.addr, &["schema", "add", "x", "-"], b"{nope").await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .starts_with("sluice: SYNTAX the schema is not valid JSON"),
        "{r:?}"
    );
    // A file that is not there: bad usage, nothing sent.
    let r = cli(s.addr, &["schema", "add", "x", "/nonexistent/schema.json"]).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("reading the schema file"), "{r:?}");
    // --transitive needs --compat (clap: usage).
    let r = cli_in(s.addr, &["schema", "add", "x", "-", "--transitive"], b"{}").await;
    assert_eq!(r.code, 2, "{r:?}");
    // A subject in use by a queue's schema= cannot go.
    cli(s.addr, &["declare", "queue", "q", "--schema", "orders"])
        .await
        .ok();
    let r = cli(s.addr, &["schema", "delete", "orders"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("in use by queue \"q\""), "{r:?}");
    let r = cli(s.addr, &["ls", "schemas", "--json"]).await.ok();
    assert_eq!(r.json_lines()[0][0]["used_by"], "queue:q");
    let r = cli(s.addr, &["schema", "get", "nope"]).await;
    assert_eq!(r.code, 1, "{r:?}");
}
