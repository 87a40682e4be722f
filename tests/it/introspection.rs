//! `STATS`, `STATS QUEUE`, `LIST ...` over TCP, and the `--http` endpoint's
//! `/metrics` (checked against the exposition format's grammar),
//! `/api/overview`, 404 and 405.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use sluice::protocol::table::split_row;

use crate::common::{http_request, TestConn, TestServer, DEADLINE};

/// A `STATS` literal as key → value.
fn kv(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut w = l.split_whitespace();
            let k = w.next().expect("key").to_string();
            let v = w.next().unwrap_or_else(|| panic!("no value: {l:?}"));
            assert!(w.next().is_none(), "one value per line: {l:?}");
            (k, v.to_string())
        })
        .collect()
}

fn num(m: &HashMap<String, String>, k: &str) -> f64 {
    m.get(k)
        .unwrap_or_else(|| panic!("no {k} in {m:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{k} is not a number: {m:?}"))
}

/// A `LIST` literal: the header row and each row as a column → cell map.
fn table(text: &str) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut lines = text.lines();
    let header: Vec<String> = split_row(lines.next().expect("header").as_bytes())
        .expect("header row")
        .into_iter()
        .map(|c| String::from_utf8(c).expect("utf-8"))
        .collect();
    let rows = lines
        .map(|l| {
            let cells = split_row(l.as_bytes()).unwrap_or_else(|| panic!("row {l:?}"));
            assert_eq!(cells.len(), header.len(), "row {l:?} under {header:?}");
            header
                .iter()
                .cloned()
                .zip(
                    cells
                        .into_iter()
                        .map(|c| String::from_utf8_lossy(&c).into_owned()),
                )
                .collect()
        })
        .collect();
    (header, rows)
}

async fn list(c: &mut TestConn, line: &str) -> Vec<BTreeMap<String, String>> {
    let (words, text) = c.data(line).await;
    let (_, rows) = table(&text);
    assert_eq!(words, rows.len().to_string(), "row count of {line:?}");
    rows
}

/// Repeats `STATS ...` until `done` holds, within the deadline.
async fn stats_until(
    c: &mut TestConn,
    line: &str,
    done: impl Fn(&HashMap<String, String>) -> bool,
) -> HashMap<String, String> {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (words, text) = c.data(line).await;
        assert_eq!(words, "stats");
        let m = kv(&text);
        if done(&m) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out; last {line}: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn stats_count_known_traffic() {
    let srv = TestServer::start().await;
    let mut a = srv.conn().await;
    a.ok(
        "DECLARE QUEUE jobs durable",
        "OK jobs messages=0 consumers=0",
    )
    .await;
    a.publish_n("jobs", 10).await;
    a.ok("SUB jobs prefetch=1 tag=w", "OK w").await;
    a.msg().await;
    a.ok("UNSUB w", "OK").await;
    a.send("GET jobs count=3").await;
    for _ in 0..3 {
        a.msg().await;
    }
    a.expect("OK 3").await;
    a.ok("ACK 2 multiple", "OK").await;

    let mut b = srv.conn().await;
    let q = stats_until(&mut b, "STATS QUEUE jobs", |_| true).await;
    assert_eq!(num(&q, "messages_ready"), 6.0);
    assert_eq!(num(&q, "messages_unacked"), 2.0);
    assert_eq!(num(&q, "consumers"), 0.0);
    assert_eq!(num(&q, "published_total"), 10.0);
    assert_eq!(num(&q, "delivered_total"), 4.0);
    assert_eq!(num(&q, "acked_total"), 2.0);
    assert_eq!(num(&q, "dead_lettered_total"), 0.0);
    assert_eq!(q["name"], "jobs");
    assert_eq!(q["durable"], "true");
    assert!(num(&q, "oldest_message_age_ms") >= 0.0);

    let s = stats_until(&mut b, "STATS", |_| true).await;
    assert_eq!(num(&s, "published_total"), 10.0);
    assert_eq!(num(&s, "messages_ready"), 6.0);
    assert_eq!(num(&s, "messages_unacked"), 2.0);
    assert_eq!(num(&s, "delivered_total"), 4.0);
    assert_eq!(num(&s, "acked_total"), 2.0);
    assert_eq!(num(&s, "queues"), 1.0);
    assert_eq!(num(&s, "consumers"), 0.0);
    assert_eq!(num(&s, "connections"), 2.0);
    assert!(num(&s, "memory_rss_bytes") > 0.0);
    assert!(num(&s, "disk_free_bytes") > 0.0);
    assert!(num(&s, "store_size_bytes") > 0.0);
    assert!(num(&s, "fsyncs_total") >= 1.0);

    // Nacked without requeue: dead (dropped, no dead-letter exchange).
    a.ok("NACK 3 requeue=false", "OK").await;
    let q = stats_until(&mut b, "STATS QUEUE jobs", |m| {
        num(m, "dead_lettered_total") == 1.0
    })
    .await;
    assert_eq!(num(&q, "dead_lettered_rejected_total"), 1.0);
    assert_eq!(num(&q, "messages_unacked"), 1.0);
}

#[tokio::test]
async fn stats_queue_unknown_is_not_found_and_stats_takes_no_other_word() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.err("STATS QUEUE nope", "NOT_FOUND").await;
    c.err("STATS nope", "SYNTAX").await;
    c.err("LIST THINGS", "SYNTAX").await;
    // Second words in any case.
    let (words, _) = c.data("stats").await;
    assert_eq!(words, "stats");
    c.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    let (words, _) = c.data("stats queue q").await;
    assert_eq!(words, "stats");
    assert_eq!(list(&mut c, "list queues").await.len(), 1);
}

#[tokio::test]
async fn rates_become_nonzero_after_traffic_then_fall_back() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE r", "OK r messages=0 consumers=0").await;
    c.publish_n("r", 20).await;
    // The sampler ticks once a second: wait for the tick that saw them.
    let q = stats_until(&mut c, "STATS QUEUE r", |m| {
        num(m, "publish_per_sec_1s") > 0.0
    })
    .await;
    assert!(num(&q, "publish_per_sec_60s") > 0.0, "{q:?}");
    assert_eq!(num(&q, "deliver_per_sec_1s"), 0.0);
    let s = stats_until(&mut c, "STATS", |m| num(m, "publish_per_sec_60s") > 0.0).await;
    assert!(num(&s, "publish_per_sec_60s") <= 20.0, "{s:?}");
    // With no more traffic, the last second's rate goes back to zero
    // while the minute's stays.
    let q = stats_until(&mut c, "STATS QUEUE r", |m| {
        num(m, "publish_per_sec_1s") == 0.0
    })
    .await;
    assert!(num(&q, "publish_per_sec_60s") > 0.0, "{q:?}");
}

#[tokio::test]
async fn list_each_kind_with_and_without_a_pattern() {
    let srv = TestServer::start().await;
    let mut a = srv.conn().await;
    a.ok(
        "HELLO name=\"billing app\"",
        &format!("OK sluice {} proto=1", sluice::VERSION),
    )
    .await;
    for q in ["jobs", "jobs.dead", "other"] {
        a.ok(
            &format!("DECLARE QUEUE {q} durable"),
            &format!("OK {q} messages=0 consumers=0"),
        )
        .await;
    }
    a.ok("DECLARE EXCHANGE logs topic durable alternate=ae", "OK")
        .await;
    a.ok("DECLARE EXCHANGE hx headers", "OK").await;
    a.ok("BIND jobs logs \"a key\"", "OK").await;
    a.ok("BIND other logs *.error", "OK").await;
    a.ok("BIND jobs hx h.x=1 h.y=\"p q\" match=any", "OK").await;
    a.publish_n("jobs", 3).await;
    a.ok("SUB jobs prefetch=2 tag=worker-1", "OK worker-1")
        .await;
    a.msg().await;
    a.msg().await;
    let mut b = srv.conn().await;
    b.ok("SUB other ack=auto tag=tail", "OK tail").await;

    // Queues: every one, then by glob.
    let (header, _) = table(&b.data("LIST QUEUES").await.1);
    assert_eq!(
        header,
        [
            "name",
            "messages",
            "unacked",
            "consumers",
            "publish_per_sec",
            "deliver_per_sec",
            "ack_per_sec",
            "dead_lettered",
            "durable",
            "leader"
        ]
    );
    let rows = list(&mut b, "LIST QUEUES").await;
    assert_eq!(rows[0]["leader"], "-", "a queue of a single node's own");
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["jobs", "jobs.dead", "other"]);
    assert_eq!(rows[0]["messages"], "1");
    assert_eq!(rows[0]["unacked"], "2");
    assert_eq!(rows[0]["consumers"], "1");
    let rows = list(&mut b, "LIST QUEUES jobs*").await;
    assert_eq!(rows.len(), 2);
    let rows = list(&mut b, "LIST QUEUES ?ther").await;
    assert_eq!(rows[0]["name"], "other");
    assert!(list(&mut b, "LIST QUEUES nothing*").await.is_empty());

    // Exchanges.
    let rows = list(&mut b, "LIST EXCHANGES").await;
    let logs = rows.iter().find(|r| r["name"] == "logs").expect("logs");
    assert_eq!(logs["type"], "topic");
    assert_eq!(logs["durable"], "true");
    assert_eq!(logs["bindings"], "2");
    assert_eq!(logs["alternate"], "ae");
    let rows = list(&mut b, "LIST EXCHANGES h*").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["alternate"], "-");

    // Bindings: keys and header arguments come back as tokens.
    let rows = list(&mut b, "LIST BINDINGS").await;
    assert_eq!(rows.len(), 3);
    let key = rows
        .iter()
        .find(|r| r["exchange"] == "logs" && r["queue"] == "jobs")
        .expect("logs→jobs");
    assert_eq!(key["key"], "a key");
    let hx = rows.iter().find(|r| r["exchange"] == "hx").expect("hx");
    assert_eq!(hx["match"], "any");
    assert_eq!(hx["args"], "h.x=1 h.y=\"p q\"");
    // By queue name or exchange name.
    assert_eq!(list(&mut b, "LIST BINDINGS other").await.len(), 1);
    assert_eq!(list(&mut b, "LIST BINDINGS logs").await.len(), 2);

    // Consumers: by queue or tag.
    let rows = list(&mut b, "LIST CONSUMERS").await;
    assert_eq!(rows.len(), 2);
    let w = rows
        .iter()
        .find(|r| r["tag"] == "worker-1")
        .expect("worker-1");
    assert_eq!(w["queue"], "jobs");
    assert_eq!(w["prefetch"], "2");
    assert_eq!(w["in_flight"], "2");
    assert_eq!(w["ack"], "manual");
    let rows = list(&mut b, "LIST CONSUMERS tai?").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["ack"], "auto");
    assert_eq!(rows[0]["queue"], "other");
    assert_eq!(list(&mut b, "LIST CONSUMERS jobs").await.len(), 1);

    // Connections: by client name or peer address.
    let until = tokio::time::Instant::now() + DEADLINE;
    let rows = loop {
        let rows = list(&mut b, "LIST CONNECTIONS").await;
        let named = rows.iter().find(|r| r["name"] == "billing app");
        if named.is_some_and(|r| r["unacked"] == "2" && r["subscriptions"] == "1") {
            break rows;
        }
        assert!(tokio::time::Instant::now() < until, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(rows.len(), 2);
    let named = rows
        .iter()
        .find(|r| r["name"] == "billing app")
        .expect("named");
    assert_eq!(named["user"], "-");
    assert_eq!(named["tls"], "false");
    assert!(named["peer"].starts_with("127.0.0.1:"));
    let rows = list(&mut b, "LIST CONNECTIONS \"billing*\"").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(list(&mut b, "LIST CONNECTIONS 127.0.0.1:*").await.len(), 2);
    drop(a);
    let until = tokio::time::Instant::now() + DEADLINE;
    while list(&mut b, "LIST CONNECTIONS").await.len() != 1 {
        assert!(
            tokio::time::Instant::now() < until,
            "closed connection still listed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_list_literal_is_framed_exactly_and_pipelines() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.send("DECLARE QUEUE q\r\nLIST QUEUES\r\nSTATS\r\nPING")
        .await;
    c.expect("OK q messages=0 consumers=0").await;
    let head = c.line().await;
    let (words, n) = crate::common::split_literal(&head).expect("literal");
    assert_eq!(words, "OK 1");
    let body = c.literal(n).await;
    assert!(body.ends_with(b"\n"));
    assert_eq!(body.iter().filter(|b| **b == b'\n').count(), 2);
    let head = c.line().await;
    let (words, n) = crate::common::split_literal(&head).expect("literal");
    assert_eq!(words, "OK stats");
    c.literal(n).await;
    c.expect("OK pong").await;
}

/// Checks a Prometheus text exposition (format 0.0.4): every line is a
/// comment or a sample of the grammar, every sample's family has `# HELP`
/// and `# TYPE` before it, and every histogram's buckets are cumulative
/// and end in `le="+Inf"` equal to its `_count`. Returns the samples.
pub(crate) fn check_exposition(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut helped = std::collections::HashSet::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("help name");
            assert!(valid_name(name), "{line:?}");
            assert!(helped.insert(name.to_string()), "HELP twice: {line:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut w = rest.split(' ');
            let (name, kind) = (w.next().expect("name"), w.next().expect("type"));
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line:?}"
            );
            assert!(helped.contains(name), "TYPE before HELP: {line:?}");
            assert!(types.insert(name.into(), kind.into()).is_none(), "{line:?}");
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (name, labels, value) = parse_sample(line);
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(&name)
            .to_string();
        assert!(types.contains_key(&family), "sample without TYPE: {line:?}");
        if types[&family] == "counter" {
            assert!(
                name.ends_with("_total"),
                "counter {name} must end in _total"
            );
        }
        samples.push((name, labels, value));
    }
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let buckets: Vec<(String, f64)> = samples
            .iter()
            .filter(|(n, _, _)| *n == format!("{family}_bucket"))
            .map(|(_, l, v)| (l["le"].clone(), *v))
            .collect();
        assert!(!buckets.is_empty(), "{family} has no buckets");
        let mut last = (f64::NEG_INFINITY, 0.0);
        for (le, v) in &buckets {
            let bound: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le")
            };
            assert!(bound > last.0, "{family}: buckets not in order");
            assert!(*v >= last.1, "{family}: buckets not cumulative");
            last = (bound, *v);
        }
        assert_eq!(buckets.last().map(|b| b.0.as_str()), Some("+Inf"));
        let count = samples
            .iter()
            .find(|(n, _, _)| *n == format!("{family}_count"))
            .map(|s| s.2)
            .expect("_count");
        assert_eq!(last.1, count, "{family}: +Inf bucket != _count");
        assert!(samples
            .iter()
            .any(|(n, _, _)| *n == format!("{family}_sum")));
    }
    samples
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// `name{label="value",...} value`, with the label escapes `\\ \" \n`.
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{line:?}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "bad name in {line:?}");
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=').unwrap_or_else(|| panic!("{line:?}"));
            let lname = &rest[..eq];
            assert!(valid_name(lname) && !lname.contains(':'), "{line:?}");
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .unwrap_or_else(|| panic!("{line:?}"));
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label in {line:?}"),
                }
            };
            labels.insert(lname.to_string(), value);
            rest = &rest[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("{line:?}"));
    let v: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    (name.to_string(), labels, v)
}

#[test]
fn the_checker_rejects_what_it_should() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{q=\"a\\\"b\"} 1\n";
    assert_eq!(check_exposition(ok)[0].1["q"], "a\"b");
    for bad in [
        "a_total 1\n",
        "# HELP a_total x\n# TYPE a_total counter\na_total{q=\"a} 1\n",
        "# HELP a x\n# TYPE a counter\na 1\n",
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| check_exposition(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text() {
    let srv = TestServer::start_with(|c| c.http = Some(([127, 0, 0, 1], 0).into())).await;
    let http = srv.http.expect("http address");
    let mut c = srv.conn().await;
    c.ok(
        "DECLARE QUEUE jobs durable",
        "OK jobs messages=0 consumers=0",
    )
    .await;
    c.ok("DECLARE QUEUE idle", "OK idle messages=0 consumers=0")
        .await;
    c.publish_n("jobs", 5).await;
    c.send("GET jobs count=2").await;
    c.msg().await;
    c.msg().await;
    c.expect("OK 2").await;
    c.ok("ACK 1", "OK").await;
    c.ok("SUB idle tag=t", "OK t").await;

    let (status, head, body) = http_request(http, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let samples = check_exposition(&body);
    let get = |name: &str, queue: Option<&str>| -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name && queue.is_none_or(|q| l.get("queue").map(String::as_str) == Some(q))
            })
            .unwrap_or_else(|| panic!("no {name} {queue:?} in\n{body}"))
            .2
    };
    assert_eq!(get("sluice_queue_messages", Some("jobs")), 3.0);
    assert_eq!(get("sluice_queue_messages_unacked", Some("jobs")), 1.0);
    assert_eq!(get("sluice_queue_consumers", Some("jobs")), 0.0);
    assert_eq!(get("sluice_queue_consumers", Some("idle")), 1.0);
    assert_eq!(get("sluice_queue_published_total", Some("jobs")), 5.0);
    assert_eq!(get("sluice_queue_delivered_total", Some("jobs")), 2.0);
    assert_eq!(get("sluice_queue_acked_total", Some("jobs")), 1.0);
    assert_eq!(get("sluice_queue_messages", Some("idle")), 0.0);
    assert_eq!(get("sluice_queue_dead_lettered_total", Some("jobs")), 0.0);
    assert_eq!(get("sluice_connections", None), 1.0);
    assert_eq!(get("sluice_published_total", None), 5.0);
    assert!(get("sluice_memory_rss_bytes", None) > 0.0);
    assert!(get("sluice_disk_free_bytes", None) > 0.0);
    // Five persistent publishes: at least one fsync was measured.
    assert!(get("sluice_fsync_duration_seconds_count", None) >= 1.0);
    let reasons: Vec<&str> = samples
        .iter()
        .filter(|(n, l, _)| n == "sluice_queue_dead_lettered_total" && l["queue"] == "jobs")
        .map(|(_, l, _)| l["reason"].as_str())
        .collect();
    assert_eq!(reasons, ["rejected", "expired", "maxlen", "delivery-limit"]);
}

#[tokio::test]
async fn the_http_endpoint_serves_the_overview_the_page_and_refuses_the_rest() {
    let srv = TestServer::start_with(|c| c.http = Some(([127, 0, 0, 1], 0).into())).await;
    let http = srv.http.expect("http address");
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE jobs", "OK jobs messages=0 consumers=0")
        .await;
    c.publish_n("jobs", 4).await;

    let (status, head, body) = http_request(http, "GET", "/api/overview").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["broker"]["messages"], 4);
    assert_eq!(v["broker"]["published"], 4);
    assert_eq!(v["queues"][0]["name"], "jobs");
    assert_eq!(v["queues"][0]["messages"], 4);
    assert!(v["queues"][0]["rates"]["publish"]["last_second"].is_number());
    assert!(v["queues"][0]["depth_history"].is_array());

    let (status, head, body) = http_request(http, "GET", "/").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(body.contains("/api/overview"));

    let (status, _, _) = http_request(http, "GET", "/nope").await;
    assert_eq!(status, 404);
    let (status, head, _) = http_request(http, "POST", "/metrics").await;
    assert_eq!(status, 405);
    assert!(head.contains("allow: get"), "{head}");
    let (status, _, _) = http_request(http, "DELETE", "/").await;
    assert_eq!(status, 405);
    // Garbage is answered (400) or dropped; the broker goes on either way.
    let mut s = tokio::net::TcpStream::connect(http).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut s, b"\x00\x01 not http\r\n\r\n")
        .await
        .expect("write");
    drop(s);
    c.ok("PING", "OK pong").await;
    let (status, _, _) = http_request(http, "GET", "/metrics").await;
    assert_eq!(status, 200);
}
