//! Replicated streams (`type=stream replicas=3`): one order on every
//! member, whichever node took each publish; consumer groups that go on
//! after a failover where their acks left them, never before; and a
//! member that comes back (or is sent a snapshot) with the same stream.
//!
//! The checkers: [`same_everywhere`] (every member's copy, read with
//! `PEEK` on that member, is the same sequence, offsets 1, 2, ... with no
//! gap, holding every confirmed publish once and nothing unpublished), and
//! the group check in the failover test (the first offset after a
//! failover is the one after the last acked, not lower and not higher).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use super::{three_declaring, three_dirs, Cluster};
use crate::common::spawned::Spawned;
use crate::common::{split_literal, Peer, TestConn, DEADLINE};

/// The node of `nodes` that serves stream `s`'s groups (a `SEEK` there is
/// not refused), waiting for one.
pub(super) async fn stream_leader(nodes: &HashMap<u64, Spawned>, s: &str) -> u64 {
    stream_leader_but(nodes, s, None).await
}

/// [`stream_leader`] among the nodes but `except` (one paused, say).
pub(super) async fn stream_leader_but(
    nodes: &HashMap<u64, Spawned>,
    s: &str,
    except: Option<u64>,
) -> u64 {
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    loop {
        for (id, n) in nodes.iter().filter(|(id, _)| Some(**id) != except) {
            let mut c = TestConn::connect(n.addr).await;
            let got = c.cmd(&format!("SEEK {s} probe offset=first")).await;
            if got.starts_with("OK") {
                return *id;
            }
        }
        assert!(tokio::time::Instant::now() < until, "no leader for {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `line` on `p` until it is answered `OK` (an election may answer
/// `ERR UNAVAILABLE` meanwhile).
pub(super) async fn until_ok(p: &mut Peer, line: &str) -> String {
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    loop {
        let got = p.cmd(line).await;
        if got.starts_with("OK") {
            return got;
        }
        assert!(got.starts_with("ERR UNAVAILABLE"), "{line}: {got}");
        assert!(tokio::time::Instant::now() < until, "{line}: never OK");
    }
}

/// The publishes of a test: those answered `OK`, and every one sent.
#[derive(Default)]
struct Sent {
    confirmed: BTreeSet<String>,
    attempted: BTreeSet<String>,
}

impl Sent {
    /// Publishes `bodies` to stream `s` through the node at `addr`, each
    /// until confirmed.
    async fn publish(
        &mut self,
        addr: std::net::SocketAddr,
        s: &str,
        bodies: impl Iterator<Item = String>,
    ) {
        let mut c = Peer::over(TestConn::connect(addr).await);
        for b in bodies {
            self.attempted.insert(b.clone());
            until_ok(&mut c, &format!("PUB \"\" {s} {b}")).await;
            self.confirmed.insert(b);
        }
    }
}

/// Node `n`'s copy of stream `s`, read there with `PEEK`: (offset, body)
/// in offset order.
async fn copy_on(n: &Spawned, s: &str) -> Vec<(u64, String)> {
    copy_at(n.addr, s).await
}

/// The copy of stream `s` on the node at `addr` (see [`copy_on`]).
pub(super) async fn copy_at(addr: std::net::SocketAddr, s: &str) -> Vec<(u64, String)> {
    let mut c = TestConn::connect(addr).await;
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        c.send(&format!("PEEK {s} count=500 from={from}")).await;
        let mut got = 0;
        loop {
            let line = c.line().await;
            if line.starts_with("OK") {
                break;
            }
            assert!(line.starts_with("MSG * "), "{line}");
            let (head, len) = split_literal(&line).expect("a literal");
            let offset: u64 = head
                .split_whitespace()
                .nth(2)
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("no offset in {head}"));
            let body = String::from_utf8(c.literal(len).await).expect("utf-8");
            out.push((offset, body));
            got += 1;
        }
        if got == 0 {
            return out;
        }
        from = out.last().map_or(from, |(o, _)| o + 1);
    }
}

/// The checker: once every member has applied what was confirmed, their
/// copies are the same sequence, with offsets 1, 2, ... without a gap,
/// holding each confirmed body and nothing never published; the sequence.
async fn same_everywhere(
    nodes: &HashMap<u64, Spawned>,
    s: &str,
    sent: &Sent,
) -> Vec<(u64, String)> {
    let (confirmed, attempted) = (&sent.confirmed, &sent.attempted);
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    let mut ids: Vec<u64> = nodes.keys().copied().collect();
    ids.sort_unstable();
    loop {
        let mut copies = Vec::new();
        for id in &ids {
            copies.push((*id, copy_on(&nodes[id], s).await));
        }
        let whole = copies.iter().all(|(_, c)| {
            let have: BTreeSet<&String> = c.iter().map(|(_, b)| b).collect();
            confirmed.iter().all(|b| have.contains(b))
        });
        if !whole {
            assert!(
                tokio::time::Instant::now() < until,
                "a member never got every confirmed publish: {:?}",
                copies
                    .iter()
                    .map(|(id, c)| (id, c.len()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let (first_id, first) = &copies[0];
        for (id, c) in &copies[1..] {
            let n = first.len().min(c.len());
            if let Some(i) = (0..n).find(|i| first[*i] != c[*i]) {
                panic!(
                    "node {first_id} and node {id} differ at their {i}th message: {:?} and {:?}",
                    first[i], c[i]
                );
            }
            assert_eq!(
                first.len(),
                c.len(),
                "node {first_id} and node {id} keep different lengths"
            );
        }
        for (i, (offset, _)) in first.iter().enumerate() {
            assert_eq!(*offset, i as u64 + 1, "a gap in the offsets: {first:?}");
        }
        let unknown: Vec<_> = first
            .iter()
            .filter(|(_, b)| !attempted.contains(b))
            .collect();
        assert!(unknown.is_empty(), "never published: {unknown:?}");
        return first.clone();
    }
}

#[tokio::test]
async fn a_replicated_stream_is_one_order_on_every_member_and_its_group_resumes_after_its_last_ack()
{
    let cluster = Cluster::new();
    let dirs = three_dirs();
    let mut nodes = three_declaring(&cluster, &dirs, "log", "type=stream replicas=3").await;

    // Publishers on the three nodes at once: the log decides one order.
    let mut sent = Sent::default();
    let mut tasks = Vec::new();
    for id in 1..=3u64 {
        let addr = nodes[&id].addr;
        tasks.push(tokio::spawn(async move {
            let (mut c, mut a) = (BTreeSet::new(), BTreeSet::new());
            // Pipelined, so that entries carry several messages each.
            let mut p = TestConn::connect(addr).await;
            for i in 0..100 {
                let b = format!("n{id}-{i}");
                p.send(&format!("PUB \"\" log {b}")).await;
                a.insert(b);
            }
            for i in 0..100 {
                let got = p.line().await;
                assert!(got.starts_with("OK"), "{got}");
                c.insert(format!("n{id}-{i}"));
            }
            (c, a)
        }));
    }
    for t in tasks {
        let (c, a) = t.await.expect("publisher");
        sent.confirmed.extend(c);
        sent.attempted.extend(a);
    }
    let order = same_everywhere(&nodes, "log", &sent).await;
    assert_eq!(order.len(), 300, "each publish once");

    // A group reads 150 through a node that does not lead the stream, and
    // acks them: each `OK` once the leader has committed the group's
    // offset.
    let leader = stream_leader(&nodes, "log").await;
    let via = *nodes.keys().find(|id| **id != leader).expect("a follower");
    let mut g = Peer::over(TestConn::connect(nodes[&via].addr).await);
    g.ok("SUB log group=g offset=first prefetch=50 tag=g", "OK g")
        .await;
    for want in 1..=150u64 {
        let m = g.msg().await;
        assert_eq!(m.offset, Some(want), "{}", m.head);
        assert!(!m.redelivered, "{}", m.head);
        g.ok(&format!("ACK {}", m.dtag), "OK").await;
    }
    // The leader dies at once; the group goes on, from the
    // offset after its last ack: not before it (an ack lost), not after it
    // (a message skipped). What the old leader may have sent past it comes
    // flagged redelivered.
    let mut dead = nodes.remove(&leader).expect("leader");
    dead.kill().await;
    // Through the node that does not lead it now (relayed by the leader).
    let next = stream_leader(&nodes, "log").await;
    let other = *nodes.keys().find(|id| **id != next).expect("a follower");
    let mut g2 = Peer::over(TestConn::connect(nodes[&other].addr).await);
    // `offset=first` counts only for a group new to the stream.
    until_ok(&mut g2, "SUB log group=g offset=first prefetch=50 tag=g2").await;
    let m = g2.msg().await;
    assert_eq!(
        m.offset,
        Some(151),
        "the group after a failover: {} (150 were acked)",
        m.head
    );
    assert!(m.redelivered, "{}", m.head);
    g2.ok(&format!("ACK {}", m.dtag), "OK").await;
    let mut seen = vec![m];
    while seen.len() < 150 {
        let m = g2.msg().await;
        g2.ok(&format!("ACK {}", m.dtag), "OK").await;
        seen.push(m);
    }
    let offsets: Vec<u64> = seen.iter().filter_map(|m| m.offset).collect();
    assert_eq!(offsets, (151..=300).collect::<Vec<_>>());
    let bodies: Vec<String> = seen.iter().map(|m| m.text()).collect();
    let want: Vec<String> = order[150..].iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(bodies, want, "the group reads the stream's one order");
    // `SEEK` is the leader's, through the log; the group's member goes on
    // from there.
    let mut f = TestConn::connect(nodes[&other].addr).await;
    let refused = f.err("SEEK log g offset=5", "PRECONDITION").await;
    assert!(refused.contains(&format!("node {next}")), "{refused}");
    let mut l = TestConn::connect(nodes[&next].addr).await;
    l.ok("SEEK log g offset=5", "OK offset=5").await;
    let m = g2.msg().await;
    assert_eq!(m.offset, Some(5), "{}", m.head);
    g2.ok(&format!("ACK {}", m.dtag), "OK").await;

    // More through the survivors, then the dead node comes back and
    // catches up: the same stream on all three.
    let survivors: Vec<u64> = nodes.keys().copied().collect();
    for (k, id) in survivors.iter().enumerate() {
        let bodies = (0..20).map(|i| format!("after{k}-{i}"));
        sent.publish(nodes[id].addr, "log", bodies).await;
    }
    nodes.insert(
        leader,
        super::start_node(&cluster, &dirs, leader as usize).await,
    );
    let order = same_everywhere(&nodes, "log", &sent).await;
    assert!(order.len() >= 340, "{}", order.len());
}

#[tokio::test]
async fn an_ack_that_reaches_a_node_after_the_lead_left_it_is_not_answered_ok() {
    let cluster = Cluster::new();
    let dirs = three_dirs();
    let nodes = three_declaring(&cluster, &dirs, "log", "type=stream replicas=3").await;
    let mut sent = Sent::default();
    sent.publish(nodes[&1].addr, "log", (1..=4).map(|i| format!("m{i}")))
        .await;
    // A group member on the leader acks the first delivery (the log has
    // the group at offset 2), and holds the next three, unacked.
    let leader = stream_leader(&nodes, "log").await;
    let mut g = Peer::over(TestConn::connect(nodes[&leader].addr).await);
    g.ok("SUB log group=g offset=first prefetch=10 tag=g", "OK g")
        .await;
    let m = g.msg().await;
    assert_eq!(m.offset, Some(1), "{}", m.head);
    g.ok(&format!("ACK {}", m.dtag), "OK").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(g.msg().await);
    }
    // The leader pauses while the others elect one; once it runs again it
    // learns that it leads no more, and cancels the subscription.
    nodes[&leader].signal(libc::SIGSTOP);
    let next = stream_leader_but(&nodes, "log", Some(leader)).await;
    nodes[&leader].signal(libc::SIGCONT);
    loop {
        let n = g.notice().await;
        if n == "NOTICE cancelled g reason=leader-moved" {
            break;
        }
        assert_eq!(n, "NOTICE active g");
    }
    // Acks of what the old leader delivered, reaching it now: it can commit
    // nothing for the group.
    let mut acked = BTreeSet::new();
    let mut replies = Vec::new();
    for m in &held {
        let got = g.cmd(&format!("ACK {}", m.dtag)).await;
        if got == "OK" {
            acked.extend(m.offset);
        }
        replies.push(got);
    }
    // The checker: the group goes on at its committed offset on the new
    // leader, which must not be one acked with an `OK`.
    let mut g2 = Peer::over(TestConn::connect(nodes[&next].addr).await);
    until_ok(&mut g2, "SUB log group=g prefetch=10 tag=g2").await;
    let m = g2.msg().await;
    let first = m.offset.expect("an offset");
    assert!(
        !acked.contains(&first),
        "the group started again at offset {first}, acked with an OK ({replies:?})"
    );
    assert_eq!(first, 2, "{}", m.head);
    assert!(m.redelivered, "{}", m.head);
    for r in &replies {
        assert!(r.starts_with("ERR UNAVAILABLE"), "{replies:?}");
    }
}

/// Stream `s`'s group's term and leader, as the node at `addr` sees them.
async fn term_and_leader(addr: std::net::SocketAddr, s: &str) -> (String, String) {
    let mut c = TestConn::connect(addr).await;
    let (_, stats) = c.data(&format!("STATS QUEUE {s}")).await;
    let field = |key: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    (field("replica_term "), field("replica_leader "))
}

/// A leader killed and started again before the others stand for
/// election leads again in its term: openraft restores it at once, with
/// no entry of its own, its state machine where its snapshot left it.
/// It must not serve a group before it has applied what its log held,
/// the group's commits of that very term among them. The checker: after
/// the restart the group goes on at the offset after its last `OK`.
#[tokio::test]
async fn a_leader_restarted_at_once_serves_its_groups_only_once_caught_up() {
    let cluster = Cluster::new().with(&["--snapshot-every", "20"]);
    let dirs = three_dirs();
    let mut nodes = three_declaring(&cluster, &dirs, "log", "type=stream replicas=3").await;
    let mut sent = Sent::default();
    sent.publish(nodes[&1].addr, "log", (1..=600).map(|i| format!("m{i}")))
        .await;
    let mut acked = 0u64;
    let mut resumed = 0;
    for round in 0..3 {
        // A group member on the leader acks 150, one at a time: each an
        // entry of the leader's term, many past its last snapshot.
        let leader = stream_leader(&nodes, "log").await;
        let mut g = Peer::over(TestConn::connect(nodes[&leader].addr).await);
        until_ok(&mut g, "SUB log group=g offset=first prefetch=1 tag=g").await;
        for _ in 0..150 {
            let m = g.msg().await;
            let offset = m.offset.expect("an offset");
            assert_eq!(offset, acked + 1, "round {round}: {}", m.head);
            g.ok(&format!("ACK {}", m.dtag), "OK").await;
            acked = offset;
        }
        let (term, _) = term_and_leader(nodes[&leader].addr, "log").await;
        // Killed, and started again at once.
        let mut dead = nodes.remove(&leader).expect("leader");
        dead.kill().await;
        let back = super::start_node(&cluster, &dirs, leader as usize).await;
        nodes.insert(leader, back);
        // The group goes on after its last `OK`, wherever it is served.
        let mut g2 = Peer::over(TestConn::connect(nodes[&leader].addr).await);
        until_ok(&mut g2, "SUB log group=g prefetch=1 tag=g2").await;
        let m = g2.msg().await;
        assert_eq!(
            m.offset,
            Some(acked + 1),
            "round {round}: the group after its leader's restart began at {} (acked through {acked})",
            m.head
        );
        if term_and_leader(nodes[&leader].addr, "log").await == (term, leader.to_string()) {
            resumed += 1;
        }
    }
    // Not asserted (a slow start lets the others elect a leader first),
    // but said: how many rounds made the case this test is for.
    eprintln!("the leader took its lead back in its term in {resumed} of 3 rounds");
}

#[tokio::test]
async fn a_member_behind_the_snapshots_is_sent_the_stream_and_keeps_the_same_order() {
    // A snapshot every 20 entries: the log behind it goes (but 10).
    let cluster = Cluster::new().with(&["--snapshot-every", "20"]);
    let dirs = three_dirs();
    let mut nodes = three_declaring(&cluster, &dirs, "log", "type=stream replicas=3").await;
    let leader = stream_leader(&nodes, "log").await;
    let behind = *nodes.keys().find(|id| **id != leader).expect("a follower");
    let mut sent = Sent::default();
    let bodies = (0..10).map(|i| format!("a{i}"));
    sent.publish(nodes[&leader].addr, "log", bodies).await;
    same_everywhere(&nodes, "log", &sent).await;

    // One member stops; 100 entries later its place in the log is gone.
    let mut down = nodes.remove(&behind).expect("a follower");
    down.kill().await;
    let bodies = (0..100).map(|i| format!("b{i}"));
    sent.publish(nodes[&leader].addr, "log", bodies).await;
    // Snapshots and their purges follow the log, in the background.
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    let until = tokio::time::Instant::now() + DEADLINE;
    let purged = loop {
        let (_, stats) = l.data("STATS QUEUE log").await;
        let purged: Option<u64> = stats
            .lines()
            .find_map(|l| l.strip_prefix("replica_purged_index")?.trim().parse().ok());
        match purged {
            Some(p) if p > 20 => break p,
            _ => assert!(
                tokio::time::Instant::now() < until,
                "the log was never purged: {stats}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Back: it is sent a snapshot with the stream, then the entries after.
    nodes.insert(
        behind,
        super::start_node(&cluster, &dirs, behind as usize).await,
    );
    let bodies = (0..10).map(|i| format!("c{i}"));
    sent.publish(nodes[&leader].addr, "log", bodies).await;
    let order = same_everywhere(&nodes, "log", &sent).await;
    assert_eq!(order.len(), 120, "each publish once");
    let mut b = TestConn::connect(nodes[&behind].addr).await;
    let (_, stats) = b.data("STATS QUEUE log").await;
    let snapshot: u64 = stats
        .lines()
        .find_map(|l| {
            l.strip_prefix("replica_snapshot_index")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no snapshot on the member that was behind: {stats}"));
    assert!(snapshot >= purged, "it was sent no snapshot: {stats}");
}
