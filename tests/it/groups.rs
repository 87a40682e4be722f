//! Message groups (`DECLARE QUEUE ... groups`, `PUB group=`): parallel
//! consumers on one queue, each group in publish order and held by one
//! consumer at a time; failover, requeues and delays inside a group; `GET`
//! ownership; paging; persistence.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::{declare_q, next_on_any, restart_keeps_flag, Msg, Peer, TestServer};
use sluice::config::Config;

/// A connection with the groups queue `q` declared (with `opts`).
async fn with_queue(srv: &TestServer, opts: &str) -> Peer {
    declare_q(srv, &format!("groups {opts}")).await
}

/// The next delivery on `a` or `b`, acked by whichever got it.
async fn ack_next(a: &mut Peer, b: &mut Peer) -> Msg {
    let (who, m) = next_on_any(&mut [&mut *a, &mut *b]).await;
    let holder = if who == 0 { a } else { b };
    holder.ok(&format!("ACK {}", m.dtag), "OK").await;
    m
}

/// A subscriber to `q`.
async fn subscriber(srv: &TestServer, tag: &str, prefetch: u32) -> Peer {
    let mut p = Peer::connect(srv).await;
    p.ok(
        &format!("SUB q tag={tag} prefetch={prefetch}"),
        &format!("OK {tag}"),
    )
    .await;
    p
}

/// The groups queue `q` (with `opts`), subscriber `a` (of `prefetch`)
/// and `k1`..`k<n>` published in group `k`: returns the publisher and `a`.
async fn group_k(srv: &TestServer, opts: &str, prefetch: u32, n: usize) -> (Peer, Peer) {
    let mut p = with_queue(srv, opts).await;
    let a = subscriber(srv, "a", prefetch).await;
    for i in 1..=n {
        publish(&mut p, &format!("k{i}"), Some("k")).await;
    }
    (p, a)
}

/// Publishes `body` (also its id) to `q`, in `group` if given.
async fn publish(p: &mut Peer, body: &str, group: Option<&str>) {
    let group = group.map(|g| format!(" group={g}")).unwrap_or_default();
    p.ok(
        &format!(r#"PUB "" q id={body}{group} {body}"#),
        &format!("OK {body} routed=1"),
    )
    .await;
}

/// Asserts a delivery's body, group and redelivered flag.
fn assert_msg(m: &Msg, body: &str, group: Option<&str>, redelivered: bool) {
    assert_eq!(
        (m.text().as_str(), m.group.as_deref(), m.redelivered),
        (body, group, redelivered),
        "{}",
        m.head
    );
}

/// Who holds which group, as the test has seen it: a delivery takes the
/// group for its consumer, an `ACK` answered `OK` gives it back.
#[derive(Default)]
struct Holders {
    held: HashMap<String, (usize, u32)>,
    most_at_once: usize,
}

impl Holders {
    fn delivered(&mut self, group: &str, consumer: usize) {
        let h = self.held.entry(group.to_string()).or_insert((consumer, 0));
        assert_eq!(
            h.0, consumer,
            "group {group} delivered to consumer {consumer} while consumer {} holds {} unacked",
            h.0, h.1
        );
        h.1 += 1;
        let holders: std::collections::HashSet<usize> = self.held.values().map(|h| h.0).collect();
        self.most_at_once = self.most_at_once.max(holders.len());
    }

    fn acked(&mut self, group: &str) {
        let h = self.held.get_mut(group).expect("held");
        h.1 -= 1;
        if h.1 == 0 {
            self.held.remove(group);
        }
    }
}

/// Publishes `total` messages over `groups` groups (picked at random) in
/// batches while `consumers` subscriptions (of `prefetch`) consume them,
/// each acking a random part of what it holds in every round. Asserts
/// that every group arrives in publish order, first deliveries only, and
/// that no group is ever delivered to a consumer while another holds it;
/// returns the most consumers that held groups at once.
async fn consume_in_parallel(
    srv: &TestServer,
    opts: &str,
    consumers: usize,
    groups: u64,
    total: usize,
    prefetch: u32,
) -> usize {
    let mut publisher = with_queue(srv, opts).await;
    let mut subs = Vec::new();
    for i in 0..consumers {
        subs.push(subscriber(srv, &format!("c{i}"), prefetch).await);
    }
    // Reproducible interleavings: a linear congruential generator.
    let mut seed = 0x5eed_1234_abcd_0042u64;
    let mut below = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut published: HashMap<String, Vec<String>> = HashMap::new();
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    let mut unacked: Vec<Vec<(u64, String)>> = vec![Vec::new(); consumers];
    let mut holders = Holders::default();
    let (mut sent, mut acked) = (0usize, 0usize);
    let started = Instant::now();
    while acked < total {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "stalled: {acked} of {total} acked, held {:?}",
            holders.held
        );
        // A batch of publishes, pipelined.
        let batch = (total - sent).min(25);
        for _ in 0..batch {
            let g = format!("g{}", below(groups));
            let body = format!("m{sent}");
            publisher
                .conn
                .send(&format!(r#"PUB "" q id={body} group={g} {body}"#))
                .await;
            published.entry(g).or_default().push(body);
            sent += 1;
        }
        for _ in 0..batch {
            let r = publisher.reply().await;
            assert!(r.ends_with("routed=1"), "{r}");
        }
        for (i, sub) in subs.iter_mut().enumerate() {
            sub.sync().await;
            while let Some(m) = sub.take_buffered_msg() {
                assert!(!m.redelivered, "nothing was requeued: {}", m.head);
                let g = m.group.clone().expect("every message has a group");
                holders.delivered(&g, i);
                seen.entry(g.clone()).or_default().push(m.text());
                unacked[i].push((m.dtag, g));
            }
            // Ack a random part of what it holds, in random order.
            let mut keep = Vec::new();
            for (dtag, g) in std::mem::take(&mut unacked[i]) {
                if below(2) == 0 {
                    keep.push((dtag, g));
                    continue;
                }
                sub.ok(&format!("ACK {dtag}"), "OK").await;
                holders.acked(&g);
                acked += 1;
            }
            unacked[i] = keep;
        }
    }
    assert_eq!(seen, published, "per-group delivery order");
    holders.most_at_once
}

#[tokio::test]
async fn each_group_keeps_publish_order_and_one_holder_under_parallel_consumers() {
    let srv = TestServer::start().await;
    let most = consume_in_parallel(&srv, "", 3, 6, 300, 4).await;
    assert!(most >= 2, "groups were never held by two consumers at once");
}

#[tokio::test]
async fn a_paged_out_groups_queue_keeps_group_order() {
    // Room for about a dozen small messages in RAM: the backlog goes
    // through the tail, a page at a time.
    let srv = TestServer::start_with(|c: &mut Config| c.queue_memory_bytes = 4096).await;
    let most = consume_in_parallel(&srv, "durable", 2, 5, 1500, 10).await;
    assert!(most >= 2, "groups were never held by two consumers at once");
}

#[tokio::test]
async fn a_departed_consumers_group_goes_to_another_starting_with_the_redelivered_message() {
    let srv = TestServer::start().await;
    let (mut p, mut a) = group_k(&srv, "", 2, 4).await;
    assert_msg(&a.msg().await, "k1", Some("k"), false);
    assert_msg(&a.msg().await, "k2", Some("k"), false);
    let mut b = subscriber(&srv, "b", 10).await;
    // b has room, but k is a's: a message of another group goes to b.
    publish(&mut p, "h1", Some("h")).await;
    assert_msg(&b.msg().await, "h1", Some("h"), false);
    b.quiet().await;
    drop(a);
    for (body, redelivered) in [("k1", true), ("k2", true), ("k3", false), ("k4", false)] {
        assert_msg(&b.msg().await, body, Some("k"), redelivered);
    }
    b.quiet().await;
}

#[tokio::test]
async fn a_nacked_message_is_redelivered_before_the_rest_of_its_group() {
    let srv = TestServer::start().await;
    let (_p, mut a) = group_k(&srv, "", 1, 3).await;
    let k1 = a.msg().await;
    assert_msg(&k1, "k1", Some("k"), false);
    // On a plain queue b would get k2 now.
    let mut b = subscriber(&srv, "b", 1).await;
    b.quiet().await;
    a.ok(&format!("NACK {}", k1.dtag), "OK").await;
    // The group is free again: whoever gets it next starts with k1.
    for (body, redelivered) in [("k1", true), ("k2", false), ("k3", false)] {
        assert_msg(
            &ack_next(&mut a, &mut b).await,
            body,
            Some("k"),
            redelivered,
        );
    }
    a.quiet().await;
    b.quiet().await;
}

#[tokio::test]
async fn a_requeue_goes_back_to_the_owner_while_it_holds_the_group() {
    let srv = TestServer::start().await;
    let (_p, mut a) = group_k(&srv, "", 10, 3).await;
    let first = a.msg().await;
    assert_msg(&first, "k1", Some("k"), false);
    assert_msg(&a.msg().await, "k2", Some("k"), false);
    assert_msg(&a.msg().await, "k3", Some("k"), false);
    let mut b = subscriber(&srv, "b", 10).await;
    a.ok(&format!("NACK {}", first.dtag), "OK").await;
    // a still holds k2 and k3: k1 goes back to a, not to b.
    assert_msg(&a.msg().await, "k1", Some("k"), true);
    b.quiet().await;
}

#[tokio::test]
async fn nack_with_a_delay_holds_the_group_while_other_messages_go() {
    let srv = TestServer::start().await;
    let (mut p, mut a) = group_k(&srv, "", 1, 2).await;
    let k1 = a.msg().await;
    let mut b = subscriber(&srv, "b", 5).await;
    let nacked = Instant::now();
    a.ok(&format!("NACK {} delay=400", k1.dtag), "OK").await;
    // k1 waits for its delay, and k2 waits for k1; other messages go.
    publish(&mut p, "u1", None).await;
    publish(&mut p, "h1", Some("h")).await;
    for _ in 0..2 {
        let m = ack_next(&mut a, &mut b).await;
        assert!(
            m.text() == "u1" || m.text() == "h1",
            "only u1 and h1 may go while k1 waits: got {}",
            m.head
        );
    }
    assert_msg(&ack_next(&mut a, &mut b).await, "k1", Some("k"), true);
    assert!(
        nacked.elapsed() >= Duration::from_millis(400),
        "k1 came back before its delay"
    );
    assert_msg(&ack_next(&mut a, &mut b).await, "k2", Some("k"), false);
}

#[tokio::test]
async fn a_retry_delay_after_a_disconnect_holds_the_group() {
    let srv = TestServer::start().await;
    let (_p, mut a) = group_k(&srv, "retry-delays=400", 1, 2).await;
    assert_msg(&a.msg().await, "k1", Some("k"), false);
    let mut b = subscriber(&srv, "b", 5).await;
    b.quiet().await;
    let closed = Instant::now();
    drop(a);
    // k1 comes back after the queue's retry delay, and k2 after it.
    assert_msg(&b.msg().await, "k1", Some("k"), true);
    assert!(
        closed.elapsed() >= Duration::from_millis(400),
        "k1 came back before its retry delay"
    );
    assert_msg(&b.msg().await, "k2", Some("k"), false);
}

#[tokio::test]
async fn get_takes_only_groups_no_one_else_holds_and_holds_them_until_acked() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv, "").await;
    for (body, group) in [("k1", "k"), ("k2", "k"), ("h1", "h"), ("h2", "h")] {
        publish(&mut p, body, Some(group)).await;
    }
    let mut a = subscriber(&srv, "a", 1).await;
    let k1 = a.msg().await;
    assert_msg(&k1, "k1", Some("k"), false);
    let mut g = Peer::connect(&srv).await;
    let (got, r) = g.get("GET q count=10").await;
    assert_eq!(r, "OK 2", "k2 is a's, h1 and h2 are free");
    assert_msg(&got[0], "h1", Some("h"), false);
    assert_msg(&got[1], "h2", Some("h"), false);
    a.ok(&format!("ACK {}", k1.dtag), "OK").await;
    let k2 = a.msg().await;
    assert_msg(&k2, "k2", Some("k"), false);
    a.ok(&format!("ACK {}", k2.dtag), "OK").await;
    // a has room, but h is held by g's GETs.
    publish(&mut p, "h3", Some("h")).await;
    a.quiet().await;
    let (got3, r) = g.get("GET q count=10").await;
    assert_eq!(r, "OK 1");
    assert_msg(&got3[0], "h3", Some("h"), false);
    for m in got.iter().chain(&got3) {
        g.ok(&format!("ACK {}", m.dtag), "OK").await;
    }
    publish(&mut p, "h4", Some("h")).await;
    assert_msg(&a.msg().await, "h4", Some("h"), false);
}

#[tokio::test]
async fn an_auto_ack_consumer_that_stops_reading_gives_its_group_back() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv, "").await;
    // a never reads: after two heartbeats of a stuck write the server
    // closes it, with the deliveries it could not write.
    let mut a = srv.conn().await;
    let hello = a.cmd("HELLO heartbeat=100").await;
    assert!(hello.starts_with("OK "), "{hello}");
    a.ok("SUB q tag=a ack=auto", "OK a").await;
    let body = "x".repeat(256 * 1024);
    let n = 40;
    for i in 0..n {
        p.conn
            .send_literal(&format!(r#"PUB "" q id=k{i} group=k"#), body.as_bytes())
            .await;
        let r = p.reply().await;
        assert!(r.ends_with("routed=1"), "{r}");
    }
    let mut b = subscriber(&srv, "b", 100).await;
    // b gets what a did not: k in order, up to the last.
    let mut last = None;
    while last != Some(n - 1) {
        let m = b.msg().await;
        let i: usize = m.id[1..].parse().expect("k<i>");
        assert!(last.is_none_or(|l| i > l), "k{i} after k{last:?}");
        last = Some(i);
    }
    drop(a);
}

#[tokio::test]
async fn a_hot_groups_backlog_does_not_hold_back_other_groups() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv, "").await;
    let mut a = subscriber(&srv, "a", 1).await;
    publish(&mut p, "hot0", Some("hot")).await;
    assert_msg(&a.msg().await, "hot0", Some("hot"), false);
    // a holds the hot group and has no credit: its backlog cannot go.
    let n = 3000;
    for i in 1..n {
        p.conn
            .send(&format!(r#"PUB "" q id=hot{i} group=hot hot{i}"#))
            .await;
    }
    for _ in 1..n {
        let r = p.reply().await;
        assert!(r.ends_with("routed=1"), "{r}");
    }
    publish(&mut p, "cold", Some("cold")).await;
    publish(&mut p, "plain", None).await;
    let mut b = subscriber(&srv, "b", 2).await;
    assert_msg(&b.msg().await, "cold", Some("cold"), false);
    assert_msg(&b.msg().await, "plain", None, false);
    b.quiet().await;
}

#[tokio::test]
async fn the_groups_option_and_group_keys_survive_a_restart() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv, "durable").await;
    publish(&mut p, "k1", Some("k")).await;
    publish(&mut p, "u1", None).await;
    publish(&mut p, "k2", Some("k")).await;
    drop(p);
    let srv = restart_keeps_flag(srv, "groups", 3).await;
    let mut a = subscriber(&srv, "a", 1).await;
    let mut b = subscriber(&srv, "b", 5).await;
    let k1 = a.msg().await;
    assert_msg(&k1, "k1", Some("k"), false);
    assert!(k1.head.ends_with(" id=k1 group=k"), "{}", k1.head);
    // k is a's again after the restart: b gets u1, not k2.
    assert_msg(&b.msg().await, "u1", None, false);
    b.quiet().await;
    a.ok(&format!("ACK {}", k1.dtag), "OK").await;
    let (_, m) = next_on_any(&mut [&mut a, &mut b]).await;
    assert_msg(&m, "k2", Some("k"), false);
}
