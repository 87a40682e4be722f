//! Single active consumer (`DECLARE QUEUE ... single-active`): one
//! subscription receives, `NOTICE active` to it and to each successor,
//! handover on `UNSUB`, disconnect and ack timeout once the departed one's
//! deliveries are settled, `GET` refused while subscribed, persistence.

use std::time::{Duration, Instant};

use crate::common::{declare_q, restart_keeps_flag, Peer, TestConn, TestServer};

/// A connection with the single-active queue `q` declared (with `opts`).
async fn with_queue(srv: &TestServer, opts: &str) -> Peer {
    declare_q(srv, &format!("single-active {opts}")).await
}

/// Publishes messages whose body is also their id.
async fn publish(p: &mut Peer, bodies: &[&str]) {
    for b in bodies {
        p.ok(
            &format!(r#"PUB "" q id={b} {b}"#),
            &format!("OK {b} routed=1"),
        )
        .await;
    }
}

/// Subscribes `tag` on a raw connection, where the order of every line
/// can be checked.
async fn subscribe(srv: &TestServer, tag: &str, opts: &str) -> TestConn {
    let mut c = srv.conn().await;
    c.ok(&format!("SUB q tag={tag} {opts}"), &format!("OK {tag}"))
        .await;
    c
}

/// Subscribes `tag` and expects it to become active at once.
async fn active(srv: &TestServer, tag: &str, opts: &str) -> TestConn {
    let mut c = subscribe(srv, tag, opts).await;
    c.expect(&format!("NOTICE active {tag}")).await;
    c
}

/// Reads the next line as the delivery `id` (whose body is its id).
async fn expect_msg(c: &mut TestConn, tag: &str, dtag: u64, id: &str, deliveries: u32) {
    let flag = if deliveries > 1 { " redelivered" } else { "" };
    c.expect(&format!(
        r#"MSG {tag} {dtag} "" q{flag} deliveries={deliveries} id={id} {{{}}}"#,
        id.len()
    ))
    .await;
    assert_eq!(c.literal(id.len()).await, id.as_bytes());
}

#[tokio::test]
async fn only_the_first_subscription_receives_and_it_is_told_it_is_active() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv, "").await;
    let mut a = active(&srv, "a", "prefetch=1").await;
    let mut b = subscribe(&srv, "b", "").await;
    publish(&mut p, &["m1", "m2", "m3"]).await;
    expect_msg(&mut a, "a", 1, "m1", 1).await;
    // a has no credit left; b has room, and still gets nothing (no notice either).
    b.expect_quiet().await;
    a.ok("ACK 1", "OK").await;
    expect_msg(&mut a, "a", 2, "m2", 1).await;
    a.ok("ACK 2", "OK").await;
    expect_msg(&mut a, "a", 3, "m3", 1).await;
    b.expect_quiet().await;
}

#[tokio::test]
async fn unsub_hands_over_once_the_departed_subscriptions_deliveries_are_settled() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv, "").await;
    publish(&mut p, &["m1", "m2", "m3", "m4"]).await;
    let mut a = active(&srv, "a", "prefetch=2").await;
    expect_msg(&mut a, "a", 1, "m1", 1).await;
    expect_msg(&mut a, "a", 2, "m2", 1).await;
    let mut b = subscribe(&srv, "b", "").await;
    b.expect_quiet().await;
    a.ok("UNSUB a", "OK").await;
    // m1 and m2 are still a's: b waits.
    b.expect_quiet().await;
    a.ok("NACK 1", "OK").await;
    b.expect_quiet().await;
    a.ok("ACK 2", "OK").await;
    // Now b takes over, from the head: m1 (back at its position), m3, m4.
    b.expect("NOTICE active b").await;
    expect_msg(&mut b, "b", 1, "m1", 2).await;
    expect_msg(&mut b, "b", 2, "m3", 1).await;
    expect_msg(&mut b, "b", 3, "m4", 1).await;
    a.expect_quiet().await;
}

#[tokio::test]
async fn a_disconnect_hands_over_in_order_to_the_next_in_subscription_order() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv, "").await;
    publish(&mut p, &["m1", "m2", "m3"]).await;
    let mut a = active(&srv, "a", "prefetch=2").await;
    expect_msg(&mut a, "a", 1, "m1", 1).await;
    expect_msg(&mut a, "a", 2, "m2", 1).await;
    let mut b = subscribe(&srv, "b", "").await;
    let mut c = subscribe(&srv, "c", "").await;
    drop(a);
    b.expect("NOTICE active b").await;
    expect_msg(&mut b, "b", 1, "m1", 2).await;
    expect_msg(&mut b, "b", 2, "m2", 2).await;
    expect_msg(&mut b, "b", 3, "m3", 1).await;
    c.expect_quiet().await;
    b.ok("ACK 3 multiple", "OK").await;
    b.ok("UNSUB b", "OK").await;
    // b held nothing: c takes over at once.
    c.expect("NOTICE active c").await;
    publish(&mut p, &["m4"]).await;
    expect_msg(&mut c, "c", 1, "m4", 1).await;
    b.expect_quiet().await;
}

#[tokio::test]
async fn an_ack_timeout_of_the_departed_subscription_hands_over_too() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv, "ack-timeout=300").await;
    publish(&mut p, &["m1", "m2"]).await;
    let subscribed = Instant::now();
    let mut a = active(&srv, "a", "prefetch=1").await;
    expect_msg(&mut a, "a", 1, "m1", 1).await;
    let mut b = subscribe(&srv, "b", "").await;
    a.ok("UNSUB a", "OK").await;
    // a never settles m1: it comes back when its ack timeout passes.
    a.expect("NOTICE ack-timeout a 1").await;
    b.expect("NOTICE active b").await;
    expect_msg(&mut b, "b", 1, "m1", 2).await;
    expect_msg(&mut b, "b", 2, "m2", 1).await;
    assert!(subscribed.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn get_is_refused_while_the_queue_has_subscriptions() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv, "").await;
    publish(&mut p, &["m1"]).await;
    let mut a = active(&srv, "a", "").await;
    expect_msg(&mut a, "a", 1, "m1", 1).await;
    publish(&mut p, &["m2"]).await;
    expect_msg(&mut a, "a", 2, "m2", 1).await;
    a.ok("ACK 2 multiple", "OK").await;
    a.ok("UNSUB a", "OK").await;
    publish(&mut p, &["m3"]).await;
    let b = subscribe(&srv, "b", "prefetch=1").await;
    let e = p.err("GET q", "PRECONDITION").await;
    assert!(e.contains("single-active"), "{e}");
    drop(b);
    // Without subscriptions GET works (m3 is back from b's closed connection).
    let got = p
        .poll_until("GET q ack=auto", |r| r.starts_with("OK ") && r != "OK 0")
        .await;
    assert_eq!(got, "OK 1");
    let m = p.take_buffered_msg().expect("the GET's delivery");
    assert_eq!(m.text(), "m3");
}

#[tokio::test]
async fn a_waiting_get_is_refused_when_a_subscription_comes() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv, "").await;
    let asked = Instant::now();
    p.conn.send("GET q wait=8000").await;
    let _a = active(&srv, "a", "").await;
    let e = p.reply().await;
    assert!(e.starts_with("ERR PRECONDITION "), "{e}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the GET waited for its deadline"
    );
}

#[tokio::test]
async fn the_first_subscription_waits_for_get_deliveries_taken_before_it() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv, "").await;
    publish(&mut p, &["m1", "m2"]).await;
    let (got, r) = p.get("GET q").await;
    assert_eq!((r.as_str(), got[0].text()), ("OK 1", "m1".into()));
    let mut a = subscribe(&srv, "a", "").await;
    // m1 is out: a is not active yet, and m2 does not overtake it.
    a.expect_quiet().await;
    p.ok(&format!("NACK {}", got[0].dtag), "OK").await;
    a.expect("NOTICE active a").await;
    expect_msg(&mut a, "a", 1, "m1", 2).await;
    expect_msg(&mut a, "a", 2, "m2", 1).await;
}

#[tokio::test]
async fn an_exclusive_subscription_works_as_before() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv, "").await;
    let mut a = active(&srv, "a", "exclusive").await;
    p.err("SUB q tag=b", "LOCKED").await;
    publish(&mut p, &["m1"]).await;
    expect_msg(&mut a, "a", 1, "m1", 1).await;
    a.ok("UNSUB a", "OK").await;
    p.ok("SUB q tag=b exclusive", "OK b").await;
    // b is the only subscription, but a still holds m1.
    p.quiet().await;
    assert_eq!(p.take_buffered_notice(), None);
    a.ok("ACK 1", "OK").await;
    assert_eq!(p.notice().await, "NOTICE active b");
}

#[tokio::test]
async fn the_single_active_option_survives_a_restart() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv, "durable").await;
    publish(&mut p, &["m1", "m2"]).await;
    drop(p);
    let srv = restart_keeps_flag(srv, "single-active", 2).await;
    let mut a = active(&srv, "a", "prefetch=1").await;
    let mut b = subscribe(&srv, "b", "").await;
    expect_msg(&mut a, "a", 1, "m1", 1).await;
    b.expect_quiet().await;
}
