//! What a queue does, on a replicated queue, across a failover: each test
//! has the leader behave as a single node's queue would, kills it, and
//! has the next leader behave the same (priorities, TTLs and delays, dead
//! letters, length and delivery limits, message groups, single-active,
//! `PURGE`, `REDRIVE`).

use std::collections::HashMap;

use super::{drain, publish_some, queue_leader, three_nodes, Cluster};
use crate::common::spawned::Spawned;
use crate::common::{TestConn, DEADLINE};

/// Three nodes, with a connection to node 1 that ran `setup` (each line
/// answered `OK...`).
struct Three {
    nodes: HashMap<u64, Spawned>,
    c: TestConn,
    _dirs: Vec<tempfile::TempDir>,
}

impl Three {
    async fn with(setup: &[&str]) -> Three {
        let cluster = Cluster::new();
        let dirs = super::three_dirs();
        let nodes = three_nodes(&cluster, &dirs).await;
        let mut c = TestConn::connect(nodes[&1].addr).await;
        for line in setup {
            let got = c.cmd(line).await;
            assert!(got.starts_with("OK"), "{line}: {got}");
        }
        Three {
            nodes,
            c,
            _dirs: dirs,
        }
    }

    /// Publishes each `(body, options)` to `queue`, confirmed.
    async fn publish(&mut self, queue: &str, messages: &[(&str, &str)]) {
        for (body, opts) in messages {
            let got = self.c.cmd(&format!("PUB \"\" {queue} {opts} {body}")).await;
            assert!(got.ends_with("routed=1"), "{got}");
        }
    }

    /// A connection to `queue`'s leader.
    async fn on_leader(&self, queue: &str) -> TestConn {
        let leader = queue_leader(&self.nodes, queue).await;
        TestConn::connect(self.nodes[&leader].addr).await
    }

    /// Kills `queue`'s leader; a connection to the next one.
    async fn fail_over(&mut self, queue: &str) -> TestConn {
        let leader = queue_leader(&self.nodes, queue).await;
        self.nodes.get_mut(&leader).expect("leader").kill().await;
        self.nodes.remove(&leader);
        self.on_leader(queue).await
    }

    /// What `queue` holds (drained on its leader), waiting up to the
    /// deadline for it to hold something.
    async fn eventually_holds(&self, queue: &str) -> Vec<String> {
        let until = tokio::time::Instant::now() + 3 * DEADLINE;
        loop {
            let got = drain(&mut self.on_leader(queue).await, queue).await;
            if !got.is_empty() {
                return got;
            }
            assert!(tokio::time::Instant::now() < until, "{queue} stays empty");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The bodies a `GET <queue> count=<n>` on `c` returns (not acked).
async fn got(c: &mut TestConn, queue: &str, n: usize) -> Vec<String> {
    c.send(&format!("GET {queue} count={n}")).await;
    let mut out = Vec::new();
    loop {
        let line = c.line().await;
        if line.starts_with("OK") {
            return out;
        }
        let (_, len) = crate::common::split_literal(&line).expect("a MSG");
        out.push(String::from_utf8(c.literal(len).await).expect("utf-8"));
    }
}

#[tokio::test]
async fn priorities_keep_their_order_through_a_failover() {
    let mut t = Three::with(&["DECLARE QUEUE urgent replicas=3 max-priority=5"]).await;
    t.publish(
        "urgent",
        &[
            ("low-1", "priority=1"),
            ("top", "priority=9"),
            ("low-2", "priority=1"),
            ("mid", "priority=3"),
        ],
    )
    .await;
    // Delivered in priority order (and not acked)...
    let want = ["top", "mid", "low-1", "low-2"];
    assert_eq!(
        got(&mut t.on_leader("urgent").await, "urgent", 4).await,
        want
    );
    // ...and again by the next leader, which takes them over (a priority
    // above max-priority=5 counts as 5).
    assert_eq!(
        drain(&mut t.fail_over("urgent").await, "urgent").await,
        want
    );
}

#[tokio::test]
async fn ttls_expire_copies_on_every_leader_and_delays_hold() {
    let mut t = Three::with(&["DECLARE QUEUE brief replicas=3 ttl=60000"]).await;
    // Two that expire soon (their own ttl=), one that lasts (the queue's),
    // one not due for a minute.
    t.publish(
        "brief",
        &[
            ("gone-1", "ttl=300"),
            ("stays", ""),
            ("gone-2", "ttl=300"),
            ("later", "delay=60000"),
        ],
    )
    .await;
    // Time passes (what is tested is expiry itself).
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        got(&mut t.on_leader("brief").await, "brief", 10).await,
        ["stays"]
    );
    // The next leader does not bring the expired back (their expiry was
    // settled in the log, and their TTL runs from the publish), nor the
    // delayed one before it is due.
    assert_eq!(
        drain(&mut t.fail_over("brief").await, "brief").await,
        ["stays"]
    );
}

#[tokio::test]
async fn dead_letters_go_through_the_leader_into_another_replicated_queue() {
    let mut t = Three::with(&[
        "DECLARE EXCHANGE dlx fanout",
        "DECLARE QUEUE parked replicas=3",
        "BIND parked dlx",
        "DECLARE QUEUE work replicas=3 dead-letter=dlx",
    ])
    .await;
    t.publish("work", &[("bad", ""), ("good", "")]).await;
    let mut l = t.on_leader("work").await;
    assert_eq!(got(&mut l, "work", 2).await, ["bad", "good"]);
    // Rejected: settled in work's log, dead-lettered into parked's.
    l.ok("REJECT 1", "OK").await;
    assert_eq!(t.eventually_holds("parked").await, ["bad"]);
    drop(l);
    // Work's next leader has the unsettled one only.
    assert_eq!(
        drain(&mut t.fail_over("work").await, "work").await,
        ["good"]
    );
}

#[tokio::test]
async fn a_length_limit_drops_the_same_heads_on_every_leader() {
    let mut t = Three::with(&["DECLARE QUEUE latest replicas=3 max-length=2"]).await;
    t.publish("latest", &[("a", ""), ("b", ""), ("c", ""), ("d", "")])
        .await;
    assert_eq!(
        got(&mut t.on_leader("latest").await, "latest", 10).await,
        ["c", "d"]
    );
    // The heads dropped were settled in the log: the next leader has the
    // same two.
    assert_eq!(
        drain(&mut t.fail_over("latest").await, "latest").await,
        ["c", "d"]
    );
}

#[tokio::test]
async fn deliveries_count_across_a_failover_for_a_delivery_limit() {
    let mut t = Three::with(&[
        "DECLARE EXCHANGE dlx fanout",
        "DECLARE QUEUE poison replicas=3",
        "BIND poison dlx",
        "DECLARE QUEUE tasks replicas=3 delivery-limit=2 dead-letter=dlx",
    ])
    .await;
    t.publish("tasks", &[("crash-me", "")]).await;
    // Delivered once and put back, on the first leader: the log counts it.
    let mut l = t.on_leader("tasks").await;
    assert_eq!(got(&mut l, "tasks", 1).await, ["crash-me"]);
    l.ok("NACK 1", "OK").await;
    drop(l);
    // The second delivery, on the next leader, is the last: put back, it
    // dies of its limit instead.
    let mut n = t.fail_over("tasks").await;
    assert_eq!(got(&mut n, "tasks", 1).await, ["crash-me"]);
    n.ok("NACK 1", "OK").await;
    assert!(drain(&mut n, "tasks").await.is_empty());
    assert_eq!(t.eventually_holds("poison").await, ["crash-me"]);
}

#[tokio::test]
async fn message_groups_keep_their_owner_rule_through_a_failover() {
    let mut t = Three::with(&["DECLARE QUEUE orders replicas=3 groups"]).await;
    t.publish(
        "orders",
        &[("a1", "group=a"), ("a2", "group=a"), ("b1", "group=b")],
    )
    .await;
    // A group belongs to the connection holding its deliveries: while one
    // has a1, another gets b1 but not a2.
    let (mut one, mut two) = (t.on_leader("orders").await, t.on_leader("orders").await);
    assert_eq!(got(&mut one, "orders", 1).await, ["a1"]);
    assert_eq!(got(&mut two, "orders", 10).await, ["b1"]);
    drop((one, two));
    // The next leader knows each copy's group: the same again.
    let mut one = t.fail_over("orders").await;
    let mut two = t.on_leader("orders").await;
    assert_eq!(got(&mut one, "orders", 1).await, ["a1"]);
    assert_eq!(got(&mut two, "orders", 10).await, ["b1"]);
}

#[tokio::test]
async fn single_active_has_one_active_consumer_on_the_leader() {
    let mut t = Three::with(&["DECLARE QUEUE sole replicas=3 single-active"]).await;
    let mut a = t.on_leader("sole").await;
    a.ok("SUB sole tag=a", "OK a").await;
    a.expect("NOTICE active a").await;
    let mut b = t.on_leader("sole").await;
    b.ok("SUB sole tag=b", "OK b").await;
    t.publish("sole", &[("m1", ""), ("m2", "")]).await;
    for want in ["m1", "m2"] {
        let (_, body) = a.msg().await;
        assert_eq!(body, want.as_bytes());
    }
    // The other one got nothing: its next line is the reply to a PING.
    assert_eq!(b.cmd("PING").await, "OK pong");
}

#[tokio::test]
async fn purge_is_the_leader_s_for_every_next_leader() {
    let mut t = Three::with(&["DECLARE QUEUE jobs replicas=3"]).await;
    let mut confirmed = std::collections::BTreeSet::new();
    publish_some(&t.nodes, &[1, 2, 3], 5, &mut confirmed).await;
    let leader = queue_leader(&t.nodes, "jobs").await;
    let other = (1..=3).find(|i| *i != leader).expect("a follower");
    let mut o = TestConn::connect(t.nodes[&other].addr).await;
    let refused = o.err("PURGE jobs", "PRECONDITION").await;
    assert!(refused.contains("led by node"), "{refused}");
    t.on_leader("jobs")
        .await
        .ok("PURGE jobs", "OK messages=5")
        .await;
    t.publish("jobs", &[("after", "")]).await;
    // Its log has the purge: the next leader has only what came after.
    assert_eq!(
        drain(&mut t.fail_over("jobs").await, "jobs").await,
        ["after"]
    );
}

#[tokio::test]
async fn redrive_keeps_a_message_whose_route_reaches_a_replicated_queue() {
    let mut t = Three::with(&[
        "DECLARE EXCHANGE dlx fanout",
        // Each node's own dead-letter queue.
        "DECLARE QUEUE dlq",
        "BIND dlq dlx",
        "DECLARE QUEUE rq replicas=3 dead-letter=dlx",
    ])
    .await;
    t.publish("rq", &[("once", "")]).await;
    let mut l = t.on_leader("rq").await;
    assert_eq!(got(&mut l, "rq", 1).await, ["once"]);
    l.ok("REJECT 1", "OK").await;
    // Dead-lettered into the leader's own dlq; sent back, its route
    // reaches the replicated queue, which takes it through its log: the
    // node's own queue could not drop it in the same step, so it stays
    // (and is not lost).
    l.ok("REDRIVE dlq", "OK moved=0 kept=1").await;
    assert_eq!(drain(&mut l, "dlq").await, ["once"]);
}

#[tokio::test]
async fn redrive_of_a_replicated_queue_moves_through_the_logs_on_its_leader() {
    let mut t = Three::with(&[
        "DECLARE EXCHANGE dlx fanout",
        "DECLARE QUEUE dlq replicas=3",
        "BIND dlq dlx",
        "DECLARE QUEUE rq replicas=3 dead-letter=dlx",
    ])
    .await;
    t.publish("rq", &[("m1", ""), ("m2", "")]).await;
    let mut l = t.on_leader("rq").await;
    assert_eq!(got(&mut l, "rq", 2).await, ["m1", "m2"]);
    l.ok("NACK 2 multiple requeue=false", "OK").await;
    // Dead letters reach a replicated queue through its log, in the
    // background: wait until its leader has both.
    let mut d = t.on_leader("dlq").await;
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (_, stats) = d.data("STATS QUEUE dlq").await;
        let ready = stats
            .lines()
            .find_map(|l| l.strip_prefix("messages_ready"))
            .map(str::trim);
        if ready == Some("2") {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "{stats}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The leader's; elsewhere refused, naming it.
    let leader = queue_leader(&t.nodes, "dlq").await;
    let other = (1..=3).find(|i| *i != leader).expect("a follower");
    let refused = TestConn::connect(t.nodes[&other].addr)
        .await
        .err("REDRIVE dlq", "PRECONDITION")
        .await;
    assert!(refused.contains("led by node"), "{refused}");
    d.ok("REDRIVE dlq", "OK moved=2 kept=0").await;
    // Settled in the dead-letter queue's log: its next leader has none;
    // appended to rq's: its leader has both again.
    let mut n = t.fail_over("dlq").await;
    assert!(drain(&mut n, "dlq").await.is_empty());
    let mut r = t.on_leader("rq").await;
    assert_eq!(drain(&mut r, "rq").await, ["m1", "m2"]);
}

#[tokio::test]
async fn a_dedup_window_takes_an_id_once_on_every_leader() {
    let mut t = Three::with(&["DECLARE QUEUE pay replicas=3 dedup-window=600000"]).await;
    // Through every node: the first is taken, the others are duplicates
    // (the log decides, not the node that routes).
    for node in 1..=3u64 {
        let mut c = TestConn::connect(t.nodes[&node].addr).await;
        let got = c.cmd("PUB \"\" pay id=pay-1 \"charge 10\"").await;
        let want = match node {
            1 => "OK pay-1 routed=1",
            _ => "OK pay-1 routed=1 duplicate",
        };
        assert_eq!(got, want, "through node {node}");
    }
    // Consumed, and still a duplicate within the window; no id=, never.
    assert_eq!(
        drain(&mut t.on_leader("pay").await, "pay").await,
        ["charge 10"]
    );
    t.publish("pay", &[("plain", ""), ("plain", "")]).await;
    // The next leader has the window: its log did.
    let mut n = t.fail_over("pay").await;
    n.ok(
        "PUB \"\" pay id=pay-1 \"charge 10\"",
        "OK pay-1 routed=1 duplicate",
    )
    .await;
    n.ok("PUB \"\" pay id=pay-2 \"charge 20\"", "OK pay-2 routed=1")
        .await;
    assert_eq!(drain(&mut n, "pay").await, ["plain", "plain", "charge 20"]);
}

#[tokio::test]
async fn reject_publish_refuses_alike_on_every_leader_counting_every_unsettled_copy() {
    let mut t = Three::with(&[
        "DECLARE QUEUE inbox replicas=3 max-length=2 overflow=reject-publish",
        "DECLARE EXCHANGE fan fanout",
        "DECLARE QUEUE other",
        "BIND inbox fan",
        "BIND other fan",
    ])
    .await;
    t.publish("inbox", &[("m1", ""), ("m2", "")]).await;
    let refused = t.c.err("PUB \"\" inbox m3", "QUEUE_FULL").await;
    assert!(refused.contains("inbox is full"), "{refused}");
    // Routed to a queue of the node's own too: taken there, refused here.
    let got = t.c.cmd("PUB fan \"\" m4").await;
    assert!(got.ends_with("routed=1 rejected=1"), "{got}");
    // A copy delivered and not yet acked still counts (the log does not
    // know which are delivered); acked, it makes room.
    let mut l = t.on_leader("inbox").await;
    l.send("GET inbox").await;
    let (_, body) = l.msg().await;
    assert_eq!(body, b"m1");
    l.expect("OK 1").await;
    t.c.err("PUB \"\" inbox m5", "QUEUE_FULL").await;
    l.ok("ACK 1", "OK").await;
    t.publish("inbox", &[("m5", "")]).await;
    // The next leader counts alike.
    let mut n = t.fail_over("inbox").await;
    n.err("PUB \"\" inbox m6", "QUEUE_FULL").await;
    assert_eq!(drain(&mut n, "inbox").await, ["m2", "m5"]);
}
