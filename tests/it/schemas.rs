//! Schemas checked on publish: the registry (`SCHEMA ADD|GET|LIST|DELETE`,
//! `LIST SCHEMAS`), each compatibility rule with a break and a change it
//! allows, `PUB` to an exchange with `schema=` (valid, not JSON, failing
//! the schema: nothing stored), the headers a checked message carries,
//! the rejection metric, and a restart that keeps the registry and the
//! exchange's `schema=`; a queue's `schema=` (the default exchange's
//! check: `PUB "" <queue>`), in and out of `TX`, kept across restarts.

use crate::common::{http_request, TestConn, TestServer};

const ORDER_V1: &str = r#"{"type":"object","properties":{"id":{"type":"string"},"total":{"type":"number","minimum":0}},"required":["id"]}"#;

/// `SCHEMA ADD <args> {N}<schema>` and its reply.
async fn add(c: &mut TestConn, args: &str, schema: &str) -> String {
    c.send_literal(&format!("SCHEMA ADD {args}"), schema.as_bytes())
        .await;
    c.line().await
}

/// A shop: subject `orders` (v1), exchange `shop` with `schema=orders`,
/// bound to queue `q`.
async fn shop(c: &mut TestConn, durable: &str) {
    assert_eq!(add(c, "orders", ORDER_V1).await, "OK orders version=1");
    c.ok(
        &format!("DECLARE EXCHANGE shop direct {durable} schema=orders"),
        "OK",
    )
    .await;
    c.ok(
        &format!("DECLARE QUEUE q {durable}"),
        "OK q messages=0 consumers=0",
    )
    .await;
    c.ok("BIND q shop k", "OK").await;
}

#[tokio::test]
async fn add_get_list_and_delete_a_subject() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    assert_eq!(add(&mut c, "orders", ORDER_V1).await, "OK orders version=1");
    // The same schema again (other spacing): its version, as Confluent.
    let spaced = ORDER_V1.replace(',', ", ");
    assert_eq!(add(&mut c, "orders", &spaced).await, "OK orders version=1");
    let v2 = ORDER_V1.replace(r#""required""#, r#""additionalProperties":true,"required""#);
    assert_eq!(add(&mut c, "orders", &v2).await, "OK orders version=2");

    let (words, body) = c.data("SCHEMA GET orders").await;
    assert_eq!(words, "orders version=2 compat=backward");
    assert_eq!(body, v2);
    let (words, body) = c.data("SCHEMA GET orders version=1").await;
    assert_eq!(words, "orders version=1 compat=backward");
    assert_eq!(body, ORDER_V1);
    c.err("SCHEMA GET orders version=9", "NOT_FOUND").await;
    c.err("SCHEMA GET nope", "NOT_FOUND").await;

    let (rows, table) = c.data("LIST SCHEMAS").await;
    assert_eq!(rows, "1");
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        vec![
            vec!["subject", "latest", "versions", "compat", "used_by"],
            vec!["orders", "2", "1,2", "backward", "-"]
        ]
    );
    assert_eq!(c.data("SCHEMA LIST ord*").await.1, table);

    c.ok("SCHEMA DELETE orders version=2", "OK").await;
    assert_eq!(
        c.data("SCHEMA GET orders").await.0,
        "orders version=1 compat=backward"
    );
    // Version numbers are not reused.
    assert_eq!(add(&mut c, "orders", &v2).await, "OK orders version=3");
    c.ok("SCHEMA DELETE orders", "OK").await;
    c.err("SCHEMA GET orders", "NOT_FOUND").await;
    assert_eq!(c.data("LIST SCHEMAS").await.0, "0");
}

#[tokio::test]
async fn bad_schemas_and_bad_commands_are_refused_with_their_codes() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    let e = add(&mut c, "s", "{not json").await;
    assert!(
        e.starts_with("ERR SYNTAX the schema is not valid JSON"),
        "{e}"
    );
    let e = add(&mut c, "s", r#"{"type": 12}"#).await;
    assert!(e.starts_with("ERR SYNTAX not a usable JSON Schema"), "{e}");
    let e = c.cmd("SCHEMA ADD s").await;
    assert!(
        e.starts_with("ERR SYNTAX missing the schema literal"),
        "{e}"
    );
    c.err("SCHEMA DELETE nope", "NOT_FOUND").await;
    // A schema= that names no subject.
    c.err("DECLARE EXCHANGE x direct schema=nope", "NOT_FOUND")
        .await;
    // The connection goes on.
    c.ok("PING", "OK pong").await;
}

/// Each rule: a change it refuses (with the break in words) and one it
/// allows.
#[tokio::test]
async fn each_compatibility_rule_refuses_its_break_and_allows_the_rest() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    let total_required = ORDER_V1.replace(r#"["id"]"#, r#"["id","total"]"#);
    let nothing_required = ORDER_V1.replace(r#","required":["id"]"#, "");
    let with_note = ORDER_V1.replace(r#""total":"#, r#""note":{"type":"string"},"total":"#);
    let id_integer = ORDER_V1.replace(r#""id":{"type":"string"}"#, r#""id":{"type":"integer"}"#);
    // backward (the default): a new required field breaks it.
    assert_eq!(add(&mut c, "b", ORDER_V1).await, "OK b version=1");
    let e = add(&mut c, "b", &total_required).await;
    assert_eq!(
        e,
        "ERR PRECONDITION not backward compatible with version 1: field `total` became required"
    );
    assert_eq!(add(&mut c, "b", &nothing_required).await, "OK b version=2");
    // forward: dropping a required field breaks it.
    assert_eq!(
        add(&mut c, "f compat=forward", ORDER_V1).await,
        "OK f version=1"
    );
    let e = add(&mut c, "f", &nothing_required).await;
    assert_eq!(
        e,
        "ERR PRECONDITION not forward compatible with version 1: field `id` is no longer required"
    );
    assert_eq!(add(&mut c, "f", &total_required).await, "OK f version=2");
    // full: a type change breaks it; an optional field does not.
    assert_eq!(
        add(&mut c, "u compat=full", ORDER_V1).await,
        "OK u version=1"
    );
    let e = add(&mut c, "u", &id_integer).await;
    assert!(
        e.starts_with("ERR PRECONDITION not backward compatible with version 1: field `id` changed type from string to integer"),
        "{e}"
    );
    assert_eq!(add(&mut c, "u", &with_note).await, "OK u version=2");
    // none: anything goes.
    assert_eq!(
        add(&mut c, "n compat=none", ORDER_V1).await,
        "OK n version=1"
    );
    assert_eq!(add(&mut c, "n", &id_integer).await, "OK n version=2");
    // transitive: checked against every earlier version, not only the
    // latest. v1 lets `total` be anything, v2 (compat=none) makes it a
    // number; a v3 equal to v2 but for a title reads v2's data, not v1's.
    let any_total = r#"{"type":"object","properties":{"total":{}}}"#;
    let number_total = r#"{"type":"object","properties":{"total":{"type":"number"}}}"#;
    assert_eq!(
        add(&mut c, "t compat=none", any_total).await,
        "OK t version=1"
    );
    assert_eq!(add(&mut c, "t", number_total).await, "OK t version=2");
    // Against v2 only (plain backward): the same type, allowed.
    let same_number = r#"{"type":"object","properties":{"total":{"type":"number"}},"title":"t"}"#;
    let e = add(&mut c, "t compat=backward transitive", same_number).await;
    assert!(
        e.starts_with("ERR PRECONDITION not backward compatible with version 1: field `total` changed type from any to number"),
        "{e}"
    );
    assert_eq!(
        add(&mut c, "t compat=backward", same_number).await,
        "OK t version=3"
    );
    let (words, _) = c.data("SCHEMA GET t").await;
    assert_eq!(words, "t version=3 compat=backward");
}

#[tokio::test]
async fn a_valid_body_is_stored_with_schema_headers() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    shop(&mut c, "").await;
    c.send_literal(
        "PUB shop k id=o1 h.schema=forged",
        br#"{"id":"o1","total":5}"#,
    )
    .await;
    c.expect("OK o1 routed=1").await;
    c.send("GET q").await;
    let (head, body) = c.msg().await;
    assert_eq!(body, br#"{"id":"o1","total":5}"#);
    assert!(
        head.contains(" id=o1 h.schema=orders h.schema-version=1"),
        "{head}"
    );
    assert!(!head.contains("forged"), "{head}");
    c.expect("OK 1").await;
}

#[tokio::test]
async fn an_invalid_body_is_refused_and_not_stored() {
    let srv = TestServer::start_with(|c| c.http = Some(([127, 0, 0, 1], 0).into())).await;
    let http = srv.http.expect("http address");
    let mut c = srv.conn().await;
    shop(&mut c, "").await;
    // Not JSON.
    let e = c.cmd("PUB shop k id=x1 \"{nope\"").await;
    assert!(
        e.starts_with("ERR SCHEMA \"\": the body is not valid JSON ("),
        "{e}"
    );
    // JSON, but not valid: the pointer of the first error.
    let e = c.cmd(r#"PUB shop k id=x2 "{\"id\":7}""#).await;
    assert_eq!(e, r#"ERR SCHEMA /id: 7 is not of type "string""#);
    let e = c.cmd(r#"PUB shop k id=x3 "{\"total\":1}""#).await;
    assert_eq!(e, r#"ERR SCHEMA "": "id" is a required property"#);
    // With mandatory too: the schema answers first.
    c.err("PUB shop nowhere mandatory \"{}\"", "SCHEMA").await;
    // Nothing was stored.
    c.ok("GET q", "OK 0").await;
    // An exchange without a schema takes anything.
    c.ok("PUB \"\" q id=p plain", "OK p routed=1").await;
    c.ok("PING", "OK pong").await;

    let (status, _, body) = http_request(http, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.lines()
            .any(|l| l == "sluice_schema_rejections_total{exchange=\"shop\"} 4"),
        "{body}"
    );
}

#[tokio::test]
async fn a_subject_in_use_cannot_be_deleted_and_schema_is_part_of_the_declaration() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    shop(&mut c, "").await;
    let e = c.err("SCHEMA DELETE orders", "PRECONDITION").await;
    assert!(e.contains("in use by exchange \"shop\""), "{e}");
    // Redeclaring with another (or no) schema is a precondition failure.
    c.err("DECLARE EXCHANGE shop direct", "PRECONDITION").await;
    c.ok("DECLARE EXCHANGE shop direct schema=orders", "OK")
        .await;
    let (_, table) = c.data("LIST SCHEMAS").await;
    assert!(table.contains("shop"), "{table}");
    c.ok("DELETE EXCHANGE shop", "OK").await;
    c.ok("SCHEMA DELETE orders", "OK").await;
}

#[tokio::test]
async fn the_registry_and_schema_bindings_survive_a_restart() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    shop(&mut c, "durable").await;
    let nothing_required = ORDER_V1.replace(r#","required":["id"]"#, "");
    assert_eq!(
        add(&mut c, "orders compat=full", &nothing_required).await,
        "ERR PRECONDITION not forward compatible with version 1: field `id` is no longer required"
    );
    assert_eq!(
        add(
            &mut c,
            "orders compat=backward transitive",
            &nothing_required
        )
        .await,
        "OK orders version=2"
    );
    assert_eq!(add(&mut c, "other", "{}").await, "OK other version=1");
    c.ok("SCHEMA DELETE other", "OK").await;
    drop(c);

    let srv = srv.restart().await;
    let mut c = srv.conn().await;
    let (words, body) = c.data("SCHEMA GET orders").await;
    assert_eq!(words, "orders version=2 compat=backward transitive");
    assert_eq!(body, nothing_required);
    assert_eq!(c.data("SCHEMA GET orders version=1").await.1, ORDER_V1);
    c.err("SCHEMA GET other", "NOT_FOUND").await;
    // The exchange still checks, against the latest version (v2: id is
    // optional, but must be a string).
    let e = c.cmd(r#"PUB shop k "{\"id\":1}""#).await;
    assert_eq!(e, r#"ERR SCHEMA /id: 1 is not of type "string""#);
    c.send_literal("PUB shop k id=a", br#"{"total":3}"#).await;
    c.expect("OK a routed=1").await;
    c.send("GET q").await;
    let (head, _) = c.msg().await;
    assert!(
        head.contains(" h.schema=orders h.schema-version=2"),
        "{head}"
    );
    c.expect("OK 1").await;
    // Still in use, so still not deletable; numbering goes on.
    c.err("SCHEMA DELETE orders", "PRECONDITION").await;
    let v3 = nothing_required.replace(r#""total":"#, r#""note":{},"total":"#);
    assert_eq!(add(&mut c, "orders", &v3).await, "OK orders version=3");
}

/// Subject `orders` (v1) and queue `q` with `schema=orders`.
async fn inbox(c: &mut TestConn) {
    assert_eq!(add(c, "orders", ORDER_V1).await, "OK orders version=1");
    c.ok(
        "DECLARE QUEUE q schema=orders",
        "OK q messages=0 consumers=0",
    )
    .await;
}

/// `metrics`' line for `series`, if any.
async fn metric(http: std::net::SocketAddr, series: &str) -> Option<String> {
    let (status, _, body) = http_request(http, "GET", "/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .find(|l| l.starts_with(series))
        .map(str::to_string)
}

#[tokio::test]
async fn a_queue_schema_checks_publishes_through_the_default_exchange() {
    let srv = TestServer::start_with(|c| c.http = Some(([127, 0, 0, 1], 0).into())).await;
    let http = srv.http.expect("http address");
    let mut c = srv.conn().await;
    inbox(&mut c).await;
    // Refused as on an exchange: the pointer and the reason, nothing stored.
    let e = c.cmd(r#"PUB "" q id=x1 "{\"id\":7}""#).await;
    assert_eq!(e, r#"ERR SCHEMA /id: 7 is not of type "string""#);
    let e = c.cmd("PUB \"\" q id=x2 \"{nope\"").await;
    assert!(
        e.starts_with("ERR SCHEMA \"\": the body is not valid JSON ("),
        "{e}"
    );
    c.ok("GET q", "OK 0").await;
    // A valid one carries the subject and version, not a forged header.
    c.send_literal("PUB \"\" q id=o1 h.schema-version=9", br#"{"id":"o1"}"#)
        .await;
    c.expect("OK o1 routed=1").await;
    c.send("GET q").await;
    let (head, body) = c.msg().await;
    assert_eq!(body, br#"{"id":"o1"}"#);
    assert!(
        head.contains(" id=o1 h.schema=orders h.schema-version=1"),
        "{head}"
    );
    assert!(!head.contains("=9"), "{head}");
    c.expect("OK 1").await;
    // Another exchange bound to the queue is not checked by the queue's
    // schema (only by its own, and this one has none).
    c.ok("DECLARE EXCHANGE plain direct", "OK").await;
    c.ok("BIND q plain k", "OK").await;
    c.ok("PUB plain k id=p1 \"{nope\"", "OK p1 routed=1").await;
    // A queue without schema= takes anything from the default exchange.
    c.ok("DECLARE QUEUE free", "OK free messages=0 consumers=0")
        .await;
    c.ok("PUB \"\" free id=f1 \"{nope\"", "OK f1 routed=1")
        .await;

    let (_, stats) = c.data("STATS QUEUE q").await;
    let lines: Vec<&str> = stats.lines().map(str::trim).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().eq(["schema", "orders"])),
        "{stats}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().eq(["schema_rejections_total", "2"])),
        "{stats}"
    );
    let (_, stats) = c.data("STATS QUEUE free").await;
    assert!(!stats.contains("schema"), "{stats}");
    let (_, table) = c.data("LIST SCHEMAS").await;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[1],
        ["orders", "1", "1", "backward", "queue:q"],
        "{table}"
    );
    assert_eq!(
        metric(
            http,
            "sluice_schema_rejections_total{exchange=\"\",queue=\"q\"}"
        )
        .await,
        Some("sluice_schema_rejections_total{exchange=\"\",queue=\"q\"} 2".into())
    );
    assert_eq!(
        metric(
            http,
            "sluice_schema_rejections_total{exchange=\"\",queue=\"free\"}"
        )
        .await,
        None
    );
}

#[tokio::test]
async fn a_queue_schema_is_part_of_its_declaration_and_keeps_its_subject() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.err("DECLARE QUEUE q schema=orders", "NOT_FOUND").await;
    assert_eq!(add(&mut c, "orders", ORDER_V1).await, "OK orders version=1");
    assert_eq!(add(&mut c, "audit", "{}").await, "OK audit version=1");
    c.ok(
        "DECLARE QUEUE q schema=orders",
        "OK q messages=0 consumers=0",
    )
    .await;
    c.ok(
        "DECLARE QUEUE q schema=orders",
        "OK q messages=0 consumers=0",
    )
    .await;
    let e = c.err("DECLARE QUEUE q", "PRECONDITION").await;
    assert_eq!(
        e,
        "ERR PRECONDITION queue q exists with other options (schema=\"orders\")"
    );
    c.err("DECLARE QUEUE q schema=audit", "PRECONDITION").await;
    // A stream takes it too; a partitioned one does not.
    c.ok(
        "DECLARE QUEUE s type=stream schema=audit",
        "OK s messages=0 consumers=0",
    )
    .await;
    c.err(
        "DECLARE QUEUE p type=stream partitions=2 schema=audit",
        "SYNTAX",
    )
    .await;
    c.ok("PUB \"\" s id=s1 \"[1]\"", "OK s1 routed=1").await;
    c.err("PUB \"\" s id=s2 \"[1\"", "SCHEMA").await;

    let e = c.err("SCHEMA DELETE orders", "PRECONDITION").await;
    assert_eq!(
        e,
        "ERR PRECONDITION schema subject \"orders\" is in use by queue \"q\" (1 in all): delete those first"
    );
    // Deleting a version is allowed: the queue checks against the latest.
    c.ok("DELETE QUEUE q", "OK messages=0").await;
    c.ok("SCHEMA DELETE orders", "OK").await;
    c.err("SCHEMA DELETE audit", "PRECONDITION").await;
}

#[tokio::test]
async fn a_transaction_checks_a_queue_schema_when_it_buffers_the_publish() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    inbox(&mut c).await;
    c.ok("TX BEGIN", "OK").await;
    let e = c.cmd(r#"PUB "" q id=t1 "{\"id\":1}""#).await;
    assert_eq!(e, r#"ERR SCHEMA /id: 1 is not of type "string""#);
    // The transaction goes on; the refused publish is not part of it.
    c.send_literal("PUB \"\" q id=t2", br#"{"id":"t2"}"#).await;
    c.expect("OK queued t2").await;
    c.ok("TX COMMIT", "OK acked=0 published=1 routed=1").await;
    c.send("GET q").await;
    let (head, _) = c.msg().await;
    assert!(
        head.contains(" id=t2 h.schema=orders h.schema-version=1"),
        "{head}"
    );
    c.expect("OK 1").await;
}

#[tokio::test]
async fn a_queue_schema_survives_a_restart_and_goes_with_the_queue() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    assert_eq!(add(&mut c, "orders", ORDER_V1).await, "OK orders version=1");
    c.ok(
        "DECLARE QUEUE dq durable schema=orders",
        "OK dq messages=0 consumers=0",
    )
    .await;
    c.ok(
        "DECLARE QUEUE gone durable schema=orders",
        "OK gone messages=0 consumers=0",
    )
    .await;
    c.ok("DELETE QUEUE gone", "OK messages=0").await;
    // The same name again, without a schema.
    c.ok(
        "DECLARE QUEUE gone durable",
        "OK gone messages=0 consumers=0",
    )
    .await;
    drop(c);

    let srv = srv.restart().await;
    let mut c = srv.conn().await;
    let e = c.cmd(r#"PUB "" dq "{\"id\":1}""#).await;
    assert_eq!(e, r#"ERR SCHEMA /id: 1 is not of type "string""#);
    c.send_literal("PUB \"\" dq id=a", br#"{"id":"a"}"#).await;
    c.expect("OK a routed=1").await;
    // Still the same declaration: the same options are equivalent, others not.
    c.ok(
        "DECLARE QUEUE dq durable schema=orders",
        "OK dq messages=1 consumers=0",
    )
    .await;
    c.err("DECLARE QUEUE dq durable", "PRECONDITION").await;
    c.err("SCHEMA DELETE orders", "PRECONDITION").await;
    // The deleted queue's schema went with it.
    c.ok("PUB \"\" gone id=g \"{nope\"", "OK g routed=1").await;
    c.ok(
        "DECLARE QUEUE gone durable",
        "OK gone messages=1 consumers=0",
    )
    .await;
}
