//! PUB and the four exchange types: what each routes where.

use crate::common::{Peer, TestServer};

/// Declares the queues on `p`.
async fn queues(p: &mut Peer, names: &[&str]) {
    for q in names {
        p.ok(
            &format!("DECLARE QUEUE {q}"),
            &format!("OK {q} messages=0 consumers=0"),
        )
        .await;
    }
}

/// Asserts each queue's ready count.
async fn depths(p: &mut Peer, expect: &[(&str, u32)]) {
    for (q, n) in expect {
        p.ok(
            &format!("DECLARE QUEUE {q}"),
            &format!("OK {q} messages={n} consumers=0"),
        )
        .await;
    }
}

/// Drains a queue with an auto-ack GET and returns the bodies.
async fn drain(p: &mut Peer, q: &str) -> Vec<String> {
    let (msgs, r) = p.get(&format!("GET {q} count=100 ack=auto")).await;
    assert_eq!(r, format!("OK {}", msgs.len()));
    msgs.iter().map(|m| m.text()).collect()
}

#[tokio::test]
async fn default_exchange_routes_by_queue_name() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    queues(&mut p, &["a", "b"]).await;
    p.publish("", "a", "to-a", 1).await;
    p.publish("", "b", "to-b", 1).await;
    p.publish("", "A", "nobody", 0).await;
    assert_eq!(drain(&mut p, "a").await, ["to-a"]);
    assert_eq!(drain(&mut p, "b").await, ["to-b"]);
}

#[tokio::test]
async fn pub_echoes_a_given_id_and_generates_distinct_ids_otherwise() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    queues(&mut p, &["q"]).await;
    p.ok(r#"PUB "" q id=inv-42 x"#, "OK inv-42 routed=1").await;
    let a = p.publish("", "q", "y", 1).await;
    let b = p.publish("", "q", "z", 1).await;
    assert_ne!(a, b);
    assert!(!a.is_empty() && a != "inv-42");
    let (msgs, _) = p.get("GET q count=3 ack=auto").await;
    let ids: Vec<_> = msgs.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, ["inv-42".to_string(), a, b]);
}

#[tokio::test]
async fn unroutable_publish_is_no_route_only_when_mandatory() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.err(r#"PUB "" nosuch mandatory x"#, "NO_ROUTE").await;
    let r = p.cmd(r#"PUB "" nosuch id=lost x"#).await;
    assert_eq!(r, "OK lost routed=0");
}

#[tokio::test]
async fn publishing_to_an_unknown_exchange_is_not_found() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.err("PUB nowhere k x", "NOT_FOUND").await;
    p.err("PUB nowhere k mandatory x", "NOT_FOUND").await;
}

#[tokio::test]
async fn direct_exchange_routes_on_exact_case_sensitive_keys() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    queues(&mut p, &["inv", "all"]).await;
    p.ok("DECLARE EXCHANGE orders direct", "OK").await;
    p.ok("BIND inv orders invoice.created", "OK").await;
    p.ok("BIND all orders invoice.created", "OK").await;
    p.ok("BIND all orders order.paid", "OK").await;
    p.publish("orders", "invoice.created", "1", 2).await;
    p.publish("orders", "order.paid", "2", 1).await;
    p.publish("orders", "Invoice.created", "3", 0).await;
    p.publish("orders", "invoice", "4", 0).await;
    p.publish("orders", "invoice.created.x", "5", 0).await;
    assert_eq!(drain(&mut p, "inv").await, ["1"]);
    assert_eq!(drain(&mut p, "all").await, ["1", "2"]);
}

#[tokio::test]
async fn fanout_exchange_gives_each_bound_queue_its_own_copy() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    queues(&mut p, &["a", "b", "c"]).await;
    p.ok("DECLARE EXCHANGE events fanout", "OK").await;
    p.ok("BIND a events", "OK").await;
    p.ok("BIND b events ignored-key", "OK").await;
    p.ok("BIND c events", "OK").await;
    p.publish("events", "", "e1", 3).await;
    p.publish("events", "whatever", "e2", 3).await;
    // Each queue's copy is consumed independently.
    assert_eq!(drain(&mut p, "a").await, ["e1", "e2"]);
    depths(&mut p, &[("b", 2), ("c", 2)]).await;
    assert_eq!(drain(&mut p, "b").await, ["e1", "e2"]);
    assert_eq!(drain(&mut p, "c").await, ["e1", "e2"]);
}

#[tokio::test]
async fn topic_star_matches_exactly_one_word() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    queues(&mut p, &["q"]).await;
    p.ok("DECLARE EXCHANGE logs topic", "OK").await;
    p.ok("BIND q logs eu.*.error", "OK").await;
    p.publish("logs", "eu.api.error", "yes", 1).await;
    p.publish("logs", "eu.error", "no-zero-words", 0).await;
    p.publish("logs", "eu.api.db.error", "no-two-words", 0)
        .await;
    p.publish("logs", "us.api.error", "no-prefix", 0).await;
    p.publish("logs", "eu.api.errors", "no-suffix", 0).await;
    assert_eq!(drain(&mut p, "q").await, ["yes"]);
}

#[tokio::test]
async fn topic_hash_matches_zero_or_more_words() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    queues(&mut p, &["mid", "tail", "all"]).await;
    p.ok("DECLARE EXCHANGE logs topic", "OK").await;
    p.ok("BIND mid logs a.#.z", "OK").await;
    p.ok("BIND tail logs eu.#", "OK").await;
    p.ok("BIND all logs #", "OK").await;
    p.publish("logs", "a.z", "az", 2).await;
    p.publish("logs", "a.b.c.z", "abcz", 2).await;
    p.publish("logs", "a.b.c", "abc", 1).await;
    p.publish("logs", "eu", "eu", 2).await;
    p.publish("logs", "eu.x.y", "euxy", 2).await;
    p.publish("logs", "europe", "europe", 1).await;
    assert_eq!(drain(&mut p, "mid").await, ["az", "abcz"]);
    assert_eq!(drain(&mut p, "tail").await, ["eu", "euxy"]);
    assert_eq!(
        drain(&mut p, "all").await,
        ["az", "abcz", "abc", "eu", "euxy", "europe"]
    );
}

#[tokio::test]
async fn a_queue_matched_by_two_bindings_gets_one_copy() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    queues(&mut p, &["q"]).await;
    p.ok("DECLARE EXCHANGE logs topic", "OK").await;
    p.ok("BIND q logs a.*", "OK").await;
    p.ok("BIND q logs *.b", "OK").await;
    p.publish("logs", "a.b", "once", 1).await;
    assert_eq!(drain(&mut p, "q").await, ["once"]);
}

#[tokio::test]
async fn headers_exchange_match_all_needs_every_header() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    queues(&mut p, &["gold"]).await;
    p.ok("DECLARE EXCHANGE attrs headers", "OK").await;
    p.ok("BIND gold attrs h.region=eu h.tier=gold match=all", "OK")
        .await;
    p.ok(
        r#"PUB attrs "" h.region=eu h.tier=gold h.extra=1 id=m1 both"#,
        "OK m1 routed=1",
    )
    .await;
    p.ok(r#"PUB attrs "" h.region=eu id=m2 one"#, "OK m2 routed=0")
        .await;
    p.ok(
        r#"PUB attrs "" h.region=eu h.tier=Gold id=m3 case"#,
        "OK m3 routed=0",
    )
    .await;
    p.ok(r#"PUB attrs "" id=m4 none"#, "OK m4 routed=0").await;
    assert_eq!(drain(&mut p, "gold").await, ["both"]);
}

#[tokio::test]
async fn headers_exchange_match_any_needs_one_header() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    queues(&mut p, &["any"]).await;
    p.ok("DECLARE EXCHANGE attrs headers", "OK").await;
    p.ok("BIND any attrs h.region=eu h.tier=gold MATCH=ANY", "OK")
        .await;
    p.publish("attrs", "", "none", 0).await;
    p.ok(r#"PUB attrs "" h.region=eu id=a one"#, "OK a routed=1")
        .await;
    p.ok(r#"PUB attrs "" h.tier=gold id=b other"#, "OK b routed=1")
        .await;
    p.ok(
        r#"PUB attrs "" h.region=us h.tier=silver id=c neither"#,
        "OK c routed=0",
    )
    .await;
    assert_eq!(drain(&mut p, "any").await, ["one", "other"]);
}

#[tokio::test]
async fn alternate_exchange_receives_unroutable_messages() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    queues(&mut p, &["main", "lost"]).await;
    p.ok("DECLARE EXCHANGE unrouted fanout", "OK").await;
    p.ok("BIND lost unrouted", "OK").await;
    p.ok("DECLARE EXCHANGE orders direct alternate=unrouted", "OK")
        .await;
    p.ok("BIND main orders k", "OK").await;
    p.publish("orders", "k", "routed", 1).await;
    p.publish("orders", "other", "stray", 1).await;
    // Routed through the alternate, so a mandatory publish succeeds.
    p.publish_line(r#"PUB orders other2 mandatory stray2"#)
        .await;
    assert_eq!(drain(&mut p, "main").await, ["routed"]);
    assert_eq!(drain(&mut p, "lost").await, ["stray", "stray2"]);
}

#[tokio::test]
async fn unbind_stops_routing_to_the_queue() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    queues(&mut p, &["q"]).await;
    p.ok("DECLARE EXCHANGE ex direct", "OK").await;
    p.ok("BIND q ex k", "OK").await;
    p.publish("ex", "k", "before", 1).await;
    p.ok("UNBIND q ex k", "OK").await;
    p.publish("ex", "k", "after", 0).await;
    assert_eq!(drain(&mut p, "q").await, ["before"]);
}

#[tokio::test]
async fn publish_keywords_are_case_insensitive_but_keys_and_bodies_are_not() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    queues(&mut p, &["Q"]).await;
    p.ok(
        r#"pub "" Q PERSISTENT Mandatory ID=Id-1 Body"#,
        "OK Id-1 routed=1",
    )
    .await;
    p.ok(r#"PUB "" Q transient id=id-2 BODY"#, "OK id-2 routed=1")
        .await;
    assert_eq!(drain(&mut p, "Q").await, ["Body", "BODY"]);
}

#[tokio::test]
async fn publish_headers_are_delivered_with_the_message() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    queues(&mut p, &["q"]).await;
    p.ok(
        r#"PUB "" q h.content-type=application/json h.Trace-Id="a b" id=h1 {}"#,
        "OK h1 routed=1",
    )
    .await;
    let (msgs, _) = p.get("GET q ack=auto").await;
    assert_eq!(
        msgs[0].headers,
        [
            ("content-type".to_string(), "application/json".to_string()),
            ("Trace-Id".to_string(), "a b".to_string()),
        ]
    );
    assert_eq!(msgs[0].text(), "{}");
}
