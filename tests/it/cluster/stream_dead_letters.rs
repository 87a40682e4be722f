//! Dead letters for a replicated stream's consumer groups
//! (`type=stream replicas=3 delivery-limit= dead-letter= ack-timeout=`):
//! the leader counts each failed delivery of a named group's offset in the
//! stream's log, so that the next leader counts on; the delivery that
//! reaches the limit dead-letters a copy (with its `x-death-*` headers)
//! into a replicated dead-letter queue, and the group goes on.
//!
//! The checker for a count lost in a failover is
//! [`a_count_survives_a_failover`]: two failed deliveries on the first
//! leader, and the third, on the next one, must be the last (`deliveries=3`
//! and a dead letter), not a first count of one.

use std::collections::HashMap;
use std::time::Duration;

use super::streams::stream_leader;
use super::{three_nodes, Cluster};
use crate::common::spawned::Spawned;
use crate::common::{Msg, Peer, TestConn, DEADLINE};

/// Three nodes with exchange `dlx` (topic), replicated queue `dead` bound
/// to it with `#`, and replicated stream `s` with `options`.
async fn setup(options: &str) -> (HashMap<u64, Spawned>, Vec<tempfile::TempDir>) {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    for line in [
        "DECLARE EXCHANGE dlx topic".to_string(),
        "DECLARE QUEUE dead replicas=3".to_string(),
        "BIND dead dlx #".to_string(),
        format!("DECLARE QUEUE s type=stream replicas=3 {options}"),
    ] {
        let got = c.cmd(&line).await;
        assert!(got.starts_with("OK"), "{line}: {got}");
    }
    (nodes, dirs)
}

/// Publishes `bodies` to stream `s` through the node at `addr`, confirmed.
async fn publish(addr: std::net::SocketAddr, bodies: &[&str]) {
    let mut c = TestConn::connect(addr).await;
    for b in bodies {
        let got = c.cmd(&format!("PUB \"\" s {b}")).await;
        assert!(got.ends_with("routed=1"), "{got}");
    }
}

/// A member `tag` of group `g` of stream `s` on the node at `addr`
/// (`prefetch=1`), told it is active.
async fn member(addr: std::net::SocketAddr, tag: &str) -> Peer {
    let mut m = Peer::over(TestConn::connect(addr).await);
    let line = format!("SUB s group=g tag={tag} offset=first prefetch=1");
    m.ok(&line, &format!("OK {tag}")).await;
    assert_eq!(m.notice().await, format!("NOTICE active {tag}"));
    m
}

/// The dead letters in replicated queue `dead` (taken on its leader and
/// acked), waiting up to the deadline for there to be some.
async fn dead_letters(nodes: &HashMap<u64, Spawned>) -> Vec<Msg> {
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    loop {
        let leader = super::queue_leader(nodes, "dead").await;
        let mut p = Peer::over(TestConn::connect(nodes[&leader].addr).await);
        let (got, reply) = p.get("GET dead count=100").await;
        assert_eq!(reply, format!("OK {}", got.len()));
        for m in &got {
            p.ok(&format!("ACK {}", m.dtag), "OK").await;
        }
        if !got.is_empty() {
            return got;
        }
        assert!(tokio::time::Instant::now() < until, "no dead letter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A header's value.
fn header<'a>(m: &'a Msg, name: &str) -> Option<&'a str> {
    m.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Asserts `m` is the dead letter of `body`, at offset `offset` of stream
/// `s` for group `g`, dead of its delivery limit, with routing key `key`.
fn assert_dead(m: &Msg, body: &str, offset: u64, key: &str) {
    assert_eq!((m.exchange.as_str(), m.key.as_str()), ("dlx", key));
    assert_eq!(m.text(), body, "{}", m.head);
    let offset = offset.to_string();
    for (name, value) in [
        ("x-death-reason", "delivery-limit"),
        ("x-death-queue", "s"),
        ("x-death-count", "1"),
        ("x-death-key", "s"),
        ("x-death-group", "g"),
        ("x-death-offset", offset.as_str()),
    ] {
        assert_eq!(header(m, name), Some(value), "{name} in {}", m.head);
    }
}

/// NACKs delivery `m` of offset `offset`, its `n`th.
async fn nack(r: &mut Peer, offset: u64, n: u32) {
    let m = r.msg().await;
    assert_eq!((m.offset, m.deliveries), (Some(offset), n), "{}", m.head);
    r.ok(&format!("NACK {}", m.dtag), "OK").await;
}

/// The group goes on: `r`'s next delivery is offset 2 (`second`, its
/// first delivery), acked; and the dead letter of offset 1 (`first`) is
/// the one in `dead`, routed with `key`.
async fn goes_on_past_its_dead_letter(
    r: &mut Peer,
    nodes: &HashMap<u64, Spawned>,
    [first, second]: [&str; 2],
    key: &str,
) {
    let next = r.msg().await;
    let got = (next.offset, next.deliveries, next.text());
    assert_eq!(got, (Some(2), 1, second.to_string()), "{}", next.head);
    r.ok(&format!("ACK {}", next.dtag), "OK").await;
    let dead = dead_letters(nodes).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_dead(&dead[0], first, 1, key);
}

#[tokio::test]
async fn nacks_to_the_delivery_limit_dead_letter_through_the_leader_and_the_group_goes_on() {
    let (nodes, _dirs) = setup("dead-letter=dlx delivery-limit=2").await;
    publish(nodes[&1].addr, &["poison", "fine"]).await;
    let leader = stream_leader(&nodes, "s").await;
    let mut r = member(nodes[&leader].addr, "m").await;
    nack(&mut r, 1, 1).await;
    // The second failed delivery of 2 allowed: offset 1 is given up.
    nack(&mut r, 1, 2).await;
    goes_on_past_its_dead_letter(&mut r, &nodes, ["poison", "fine"], "s").await;
    // The group's commit passed both: a member that joins on another
    // node, after a failover, gets what comes next, not offset 1 again.
    drop(r);
    let mut nodes = nodes;
    nodes.get_mut(&leader).expect("leader").kill().await;
    nodes.remove(&leader);
    let next_leader = stream_leader(&nodes, "s").await;
    let mut n = member(nodes[&next_leader].addr, "n").await;
    publish(nodes[&next_leader].addr, &["later"]).await;
    let m = n.msg().await;
    assert_eq!((m.offset, m.text()), (Some(3), "later".to_string()));
}

#[tokio::test]
async fn a_count_survives_a_failover() {
    let (mut nodes, _dirs) = setup("dead-letter=dlx delivery-limit=3").await;
    publish(nodes[&1].addr, &["poison", "fine"]).await;
    let leader = stream_leader(&nodes, "s").await;
    let mut r = member(nodes[&leader].addr, "m").await;
    // Two failed deliveries on the first leader: each NACK's OK comes
    // once its count is committed in the stream's log.
    nack(&mut r, 1, 1).await;
    nack(&mut r, 1, 2).await;
    // Killed with the third delivery in flight (`r` stays open: closed
    // first, it would be a third failed delivery, on the first leader).
    nodes.get_mut(&leader).expect("leader").kill().await;
    nodes.remove(&leader);
    drop(r);
    // The next leader counts on: its delivery is the third, and the last.
    let next_leader = stream_leader(&nodes, "s").await;
    let mut n = member(nodes[&next_leader].addr, "n").await;
    nack(&mut n, 1, 3).await;
    goes_on_past_its_dead_letter(&mut n, &nodes, ["poison", "fine"], "s").await;
}

#[tokio::test]
async fn ack_timeouts_dead_letter_at_the_limit() {
    let (nodes, _dirs) =
        setup("dead-letter=dlx dead-letter-key=failed delivery-limit=2 ack-timeout=200").await;
    publish(nodes[&1].addr, &["slow", "fine"]).await;
    // Subscribed through a node that does not lead: its session times the
    // deliveries out, and the leader counts them.
    let leader = stream_leader(&nodes, "s").await;
    let other = if leader == 1 { 2 } else { 1 };
    let mut r = member(nodes[&other].addr, "m").await;
    for n in 1..=2 {
        let m = r.msg().await;
        assert_eq!((m.offset, m.deliveries), (Some(1), n), "{}", m.head);
        assert_eq!(r.notice().await, format!("NOTICE ack-timeout m {}", m.dtag));
    }
    goes_on_past_its_dead_letter(&mut r, &nodes, ["slow", "fine"], "failed").await;
}
