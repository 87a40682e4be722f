//! `TX` on replicated streams (protocol.md, "Transactions on replicated
//! queues"): the `ACK` of a stream group's delivery is the group's commit,
//! made by the stream's log with the transaction's other parts, all or
//! nothing. Each test moves offset 1 of stream `log` (group `g`) to a
//! result in replicated queue `qb`, on three `sluice serve` processes.
//!
//! The checker of each: where the group goes on, read on the stream's
//! leader after the fault (offset 2 when the transaction happened, 1
//! again when it did not), against what `qb` holds (`r1`, or nothing).

use std::collections::HashMap;

use super::streams::{stream_leader, stream_leader_but, until_ok};
use super::transactions::{nodes_with, undecided_none, wait_for};
use super::{publish_confirmed, start_node, Cluster};
use crate::common::spawned::Spawned;
use crate::common::{Peer, TestConn};

/// Three nodes (stalling their transactions at `stall`, `""`: not) with
/// the replicated queues `queues` and stream `log` holding `m1`..`m3`.
async fn with_stream(
    cluster: &Cluster,
    dirs: &[tempfile::TempDir],
    stall: &str,
    queues: &[(&str, u8)],
) -> HashMap<u64, Spawned> {
    let nodes = nodes_with(cluster, dirs, stall, queues).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE log type=stream replicas=3",
        "OK log messages=0 consumers=0",
    )
    .await;
    for m in ["m1", "m2", "m3"] {
        publish_confirmed(nodes[&1].addr, "log", m).await;
    }
    nodes
}

/// A member of group `g` on the node at `addr`, one delivery at a time.
async fn member(addr: std::net::SocketAddr, tag: &str) -> Peer {
    let mut g = Peer::over(TestConn::connect(addr).await);
    until_ok(
        &mut g,
        &format!("SUB log group=g offset=first prefetch=1 tag={tag}"),
    )
    .await;
    g
}

/// On `g`: a transaction acking delivery `dtag` and publishing `r1` to
/// `qb` (and `s1` to `qp` when `side`), its `COMMIT` sent.
async fn send_move(g: &mut Peer, dtag: u64, side: bool) {
    g.ok("TX BEGIN", "OK").await;
    g.ok(&format!("ACK {dtag}"), "OK queued").await;
    let got = g.cmd("PUB \"\" qb r1").await;
    assert!(got.starts_with("OK queued "), "{got}");
    if side {
        let got = g.cmd("PUB \"\" qp s1").await;
        assert!(got.starts_with("OK queued "), "{got}");
    }
    g.conn.send("TX COMMIT").await;
}

/// The offset group `g` goes on at, on stream `log`'s leader among
/// `nodes`.
async fn goes_on_at(nodes: &HashMap<u64, Spawned>) -> u64 {
    let leader = stream_leader(nodes, "log").await;
    let mut g = member(nodes[&leader].addr, "g2").await;
    g.msg().await.offset.expect("an offset")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_stream_ack_is_the_groups_commit_on_the_next_leader_too() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let mut nodes = with_stream(&cluster, &dirs, "", &[("qb", 3)]).await;
    let ls = stream_leader(&nodes, "log").await;
    let mut g = member(nodes[&ls].addr, "g").await;
    let m = g.msg().await;
    assert_eq!(m.offset, Some(1), "{}", m.head);
    send_move(&mut g, m.dtag, false).await;
    assert_eq!(g.reply().await, "OK acked=1 published=1 routed=1");
    // The stream's leader is killed: the next one has the group's commit.
    drop(g);
    nodes.get_mut(&ls).expect("the leader").kill().await;
    let next = stream_leader_but(&nodes, "log", Some(ls)).await;
    let mut g2 = member(nodes[&next].addr, "g2").await;
    let m = g2.msg().await;
    assert_eq!(
        m.offset,
        Some(2),
        "the group after the failover: {}",
        m.head
    );
    nodes.insert(ls, start_node(&cluster, &dirs, ls as usize).await);
    assert_eq!(wait_for(&nodes, "qb", &["r1"]).await, ["r1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_stream_transaction_delivers_the_offset_again_and_publishes_nothing() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    // qp, placed third with replicas=2, on nodes 3 and 1 (as in
    // `transactions.rs`; the stream is declared after the queues).
    let nodes = with_stream(&cluster, &dirs, "", &[("qa", 3), ("qb", 3), ("qp", 2)]).await;
    let ls = stream_leader(&nodes, "log").await;
    let mut g = member(nodes[&ls].addr, "g").await;
    let m = g.msg().await;
    assert_eq!(m.offset, Some(1), "{}", m.head);
    // A member of qp that is not the coordinator, paused: qp's part fails.
    let paused = if ls == 3 { 1 } else { 3 };
    nodes[&paused].signal(libc::SIGSTOP);
    send_move(&mut g, m.dtag, true).await;
    let got = g.reply().await;
    nodes[&paused].signal(libc::SIGCONT);
    assert!(
        got.starts_with("ERR UNAVAILABLE the transaction aborted: ") && got.contains("qp"),
        "{got}"
    );
    // Offset 1 comes again, to the same member; acked outside a
    // transaction, the group moves on.
    let again = g.msg().await;
    assert_eq!(again.offset, Some(1), "{}", again.head);
    assert!(again.redelivered, "{}", again.head);
    g.ok(&format!("ACK {}", again.dtag), "OK").await;
    assert_eq!(g.msg().await.offset, Some(2));
    // r1 never shows.
    publish_confirmed(nodes[&1].addr, "qb", "after").await;
    assert_eq!(wait_for(&nodes, "qb", &["after"]).await, ["after"]);
}

/// Moves offset 1 to `r1` in a transaction coordinated by the stream's
/// leader on nodes that stall at `stall`, kills the coordinator there and
/// starts it again (the `COMMIT` never answered): the nodes.
async fn kill_stream_coordinator_at(
    stall: &str,
    dirs: &[tempfile::TempDir],
) -> HashMap<u64, Spawned> {
    let cluster = Cluster::new();
    let mut nodes = with_stream(&cluster, dirs, stall, &[("qb", 3)]).await;
    let ls = stream_leader(&nodes, "log").await;
    let mut g = member(nodes[&ls].addr, "g").await;
    let m = g.msg().await;
    assert_eq!(m.offset, Some(1), "{}", m.head);
    send_move(&mut g, m.dtag, false).await;
    nodes[&ls]
        .wait_log(&format!("transaction stalled before {stall}"))
        .await;
    nodes.get_mut(&ls).expect("the coordinator").kill().await;
    nodes.insert(ls, start_node(&cluster, dirs, ls as usize).await);
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_coordinator_killed_before_the_decision_leaves_the_group_where_it_was() {
    let dirs = super::three_dirs();
    let nodes = kill_stream_coordinator_at("decide", &dirs).await;
    // The stream's leader aborts the part after the recovery bound; its
    // groups wait for it, then go on at offset 1.
    assert_eq!(goes_on_at(&nodes).await, 1);
    publish_confirmed(nodes[&1].addr, "qb", "after").await;
    assert_eq!(wait_for(&nodes, "qb", &["after"]).await, ["after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_coordinator_killed_after_the_decision_leaves_the_group_past_the_offset() {
    let dirs = super::three_dirs();
    // Killed once its commit is recorded, before it answers, resolves the
    // parts or acks the delivery in its view: the stream's log has the
    // group's commit only in the transaction's part.
    let nodes = kill_stream_coordinator_at("answer", &dirs).await;
    // The next leader's groups wait for the part, which its recovery
    // commits: the group goes on at offset 2, never delivering 1 again.
    assert_eq!(goes_on_at(&nodes).await, 2);
    assert_eq!(wait_for(&nodes, "qb", &["r1"]).await, ["r1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_transaction_is_all_or_nothing_over_many_cycles_with_faults() {
    const OFFSETS: u64 = 12;
    const FAULTY: [usize; 3] = [2, 6, 10];
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    // qp, placed third with replicas=2: on nodes 3 and 1.
    let nodes = nodes_with(&cluster, &dirs, "", &[("qa", 3), ("qb", 3), ("qp", 2)]).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE log type=stream replicas=3",
        "OK log messages=0 consumers=0",
    )
    .await;
    for i in 1..=OFFSETS {
        publish_confirmed(nodes[&1].addr, "log", &format!("m{i}")).await;
    }
    // The coordinator is the stream's leader, `ls`. A paused node that
    // runs again may start an election (a loaded machine may too): the
    // member, cancelled, follows the lead to its new node.
    let mut ls = stream_leader(&nodes, "log").await;
    let mut g = member(nodes[&ls].addr, "g0").await;
    // Each cycle moves the offset delivered to `r<offset>` in qb (and
    // `s<offset>` in qp on odd cycles and faulty ones, whose qp part
    // fails): committed, the group goes on; aborted, the offset comes
    // again to the next cycle.
    let mut committed = Vec::new();
    let mut sided = Vec::new();
    let mut cycle = 0;
    let mut next = 1;
    while next <= OFFSETS {
        let m = match g.push().await {
            Ok(m) => m,
            Err(n) if n.contains("reason=leader-moved") => {
                ls = stream_leader(&nodes, "log").await;
                g = member(nodes[&ls].addr, &format!("g{cycle}")).await;
                continue;
            }
            Err(_) => continue,
        };
        // A member of qp's two that is not the coordinator.
        let paused = if ls == 3 { 1 } else { 3 };
        let offset = m.offset.expect("an offset");
        assert_eq!(offset, next, "cycle {cycle}: {}", m.head);
        let side = cycle % 2 == 1 || FAULTY.contains(&cycle);
        g.ok("TX BEGIN", "OK").await;
        g.ok(&format!("ACK {}", m.dtag), "OK queued").await;
        let got = g.cmd(&format!("PUB \"\" qb r{offset}")).await;
        assert!(got.starts_with("OK queued "), "{got}");
        if side {
            let got = g.cmd(&format!("PUB \"\" qp s{offset}")).await;
            assert!(got.starts_with("OK queued "), "{got}");
        }
        if FAULTY.contains(&cycle) {
            nodes[&paused].signal(libc::SIGSTOP);
        }
        let reply = g.cmd("TX COMMIT").await;
        if FAULTY.contains(&cycle) {
            nodes[&paused].signal(libc::SIGCONT);
            assert!(
                reply.starts_with("ERR"),
                "cycle {cycle} committed without qp: {reply}"
            );
        }
        eprintln!("cycle {cycle}: offset {offset}: {reply}");
        if reply.starts_with("OK") {
            committed.push(offset);
            if side {
                sided.push(offset);
            }
            next += 1;
        } else {
            assert!(!reply.contains("not known"), "cycle {cycle}: {reply}");
        }
        cycle += 1;
    }
    assert!(cycle >= OFFSETS as usize + FAULTY.len(), "{cycle} cycles");
    // The checker: every committed offset's result once in qb (and its
    // side once in qp), nothing of the aborted ones; the group goes on
    // after the last offset, on a new member.
    drop(g);
    undecided_none(&nodes, &["log", "qb", "qp"]).await;
    for q in ["qb", "qp"] {
        publish_confirmed(nodes[&1].addr, q, "end").await;
    }
    let qb = wait_for(&nodes, "qb", &["end"]).await;
    let qp = wait_for(&nodes, "qp", &["end"]).await;
    let mut want: Vec<String> = committed.iter().map(|o| format!("r{o}")).collect();
    want.push("end".into());
    assert_eq!(qb, want, "qb");
    let mut want: Vec<String> = sided.iter().map(|o| format!("s{o}")).collect();
    want.push("end".into());
    assert_eq!(qp, want, "qp");
    publish_confirmed(nodes[&1].addr, "log", "after").await;
    assert_eq!(goes_on_at(&nodes).await, OFFSETS + 1);
}
