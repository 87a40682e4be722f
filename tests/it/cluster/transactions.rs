//! `TX` across replicated queues (protocol.md, "Transactions on
//! replicated queues"): a two-phase commit over the queues' groups,
//! decided in the metadata group. Each test moves a message from queue
//! `qa` to others in one transaction (ack it, publish its result), on
//! three `sluice serve` processes, and checks that after a fault either
//! all of it happened or none did.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::{publish_confirmed, queue_leader, start_node, take_all, three_nodes, Cluster};
use crate::common::spawned::Spawned;
use crate::common::{split_literal, TestConn};

/// How long a queue's leader leaves a transaction's part unresolved
/// before asking for its outcome (`cluster/transaction.rs`), plus room.
const RECOVERY: Duration = Duration::from_secs(30);

/// Three nodes with `SLUICE_TX_STALL` set to `stall` (`""`: none) and the
/// queues `queues` (name, replicas), declared through node 1 in order.
pub(super) async fn nodes_with(
    cluster: &Cluster,
    dirs: &[tempfile::TempDir],
    stall: &str,
    queues: &[(&str, u8)],
) -> HashMap<u64, Spawned> {
    let nodes = match stall {
        "" => three_nodes(cluster, dirs).await,
        _ => {
            let mut nodes = HashMap::new();
            for i in 1..=3usize {
                let a = cluster.args(i);
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                let env = [("SLUICE_TX_STALL", stall)];
                let n = Spawned::start_in_env(dirs[i - 1].path(), &a, &env).await;
                nodes.insert(i as u64, n);
            }
            let all: Vec<&Spawned> = (1..=3).map(|i| &nodes[&i]).collect();
            super::agreed(&all).await;
            nodes
        }
    };
    let mut c = TestConn::connect(nodes[&1].addr).await;
    for (q, r) in queues {
        c.ok(
            &format!("DECLARE QUEUE {q} replicas={r}"),
            &format!("OK {q} messages=0 consumers=0"),
        )
        .await;
    }
    nodes
}

/// `GET <queue>` of one message on `c`: its delivery tag and body (`None`:
/// the queue is empty). A `GET` answered `ERR UNAVAILABLE` (an election,
/// which a loaded machine can start without a fault) is sent again.
async fn get_one(c: &mut TestConn, queue: &str) -> Option<(u64, String)> {
    match try_get_one(c, queue).await {
        Ok(got) => got,
        Err(line) => panic!("GET {queue}: {line}"),
    }
}

/// As [`get_one`], giving back a reply other than `ERR UNAVAILABLE` that
/// is not a message (`ERR PRECONDITION`: the lead moved to another node).
async fn try_get_one(c: &mut TestConn, queue: &str) -> Result<Option<(u64, String)>, String> {
    let until = tokio::time::Instant::now() + RECOVERY;
    let line = loop {
        let line = c.cmd(&format!("GET {queue}")).await;
        if !line.starts_with("ERR UNAVAILABLE") || tokio::time::Instant::now() > until {
            break line;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if line.starts_with("OK") {
        return Ok(None);
    }
    let Some((head, len)) = split_literal(&line) else {
        return Err(line);
    };
    let body = String::from_utf8(c.literal(len).await).expect("utf-8");
    assert_eq!(c.line().await, "OK 1");
    let tag = head
        .split_whitespace()
        .nth(2)
        .and_then(|t| t.parse().ok())
        .expect("a delivery tag");
    Ok(Some((tag, body)))
}

/// On `c`: a transaction that acks `tag` and publishes each `(queue,
/// body)` of `pubs`: the `COMMIT`'s reply.
async fn move_in_tx(c: &mut TestConn, tag: u64, pubs: &[(&str, &str)]) -> String {
    c.ok("TX BEGIN", "OK").await;
    c.ok(&format!("ACK {tag}"), "OK queued").await;
    for (q, body) in pubs {
        let got = c.cmd(&format!("PUB \"\" {q} {body}")).await;
        assert!(got.starts_with("OK queued "), "{got}");
    }
    c.cmd("TX COMMIT").await
}

/// Waits until the leader of `queue` among `nodes` has `want` (taking
/// and acking what it has meanwhile): everything taken.
pub(super) async fn wait_for(
    nodes: &HashMap<u64, Spawned>,
    queue: &str,
    want: &[&str],
) -> Vec<String> {
    let until = tokio::time::Instant::now() + RECOVERY;
    let mut got = Vec::new();
    loop {
        let leader = queue_leader(nodes, queue).await;
        let mut c = TestConn::connect(nodes[&leader].addr).await;
        // An election meanwhile stops the draining; the next round goes
        // on where it stopped (what was not acked comes again).
        let (taken, err) = take_all(&mut c, queue).await;
        if let Some(err) = err {
            eprintln!("draining {queue} on node {leader}: {err}");
        }
        got.extend(taken);
        if want.iter().all(|w| got.iter().any(|g| g == w)) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{queue} never had {want:?}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until no member of `queues` among `nodes` holds a transaction's
/// part undecided (`replica_tx_pending` of `STATS QUEUE` is 0 on each;
/// `none`: not a member).
pub(super) async fn undecided_none(nodes: &HashMap<u64, Spawned>, queues: &[&str]) {
    let until = tokio::time::Instant::now() + RECOVERY;
    for q in queues {
        for (id, n) in nodes {
            loop {
                let mut c = TestConn::connect(n.addr).await;
                let (_, stats) = c.data(&format!("STATS QUEUE {q}")).await;
                let pending = stats
                    .lines()
                    .find_map(|l| l.strip_prefix("replica_tx_pending "))
                    .map(str::trim)
                    .unwrap_or_else(|| panic!("no replica_tx_pending: {stats}"))
                    .to_string();
                if pending == "0" || pending == "none" {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < until,
                    "node {id} holds {pending} parts of {q} undecided"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Two replicated queues of `queues` whose leaders differ, with them.
async fn two_leaders(nodes: &HashMap<u64, Spawned>, queues: &[&str]) -> [(String, u64); 2] {
    let mut led = Vec::new();
    for q in queues {
        led.push((q.to_string(), queue_leader(nodes, q).await));
    }
    for a in &led {
        for b in &led {
            if a.1 != b.1 {
                return [a.clone(), b.clone()];
            }
        }
    }
    panic!("every queue has the same leader: {led:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_across_queues_led_by_different_nodes_commits() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let nodes = nodes_with(&cluster, &dirs, "", &[("qa", 3), ("qb", 3), ("qc", 3)]).await;
    let [(qa, la), (qb, lb)] = two_leaders(&nodes, &["qa", "qb", "qc"]).await;
    publish_confirmed(nodes[&la].addr, &qa, "in1").await;
    let mut c = TestConn::connect(nodes[&la].addr).await;
    let (tag, body) = get_one(&mut c, &qa).await.expect("in1");
    assert_eq!(body, "in1");
    let got = move_in_tx(&mut c, tag, &[(&qb, "out1")]).await;
    assert_eq!(got, "OK acked=1 published=1 routed=1");
    // The ack is settled: in1 is not delivered again, here or after its
    // leader changes (it is out of the log).
    assert!(get_one(&mut c, &qa).await.is_none());
    c.err(&format!("ACK {tag}"), "UNKNOWN_TAG").await;
    let mut b = TestConn::connect(nodes[&lb].addr).await;
    assert_eq!(
        get_one(&mut b, &qb).await.map(|m| m.1).as_deref(),
        Some("out1")
    );
}

/// A replicated `dedup-window=` queue takes part: a transaction's copy
/// whose id the queue had within its window is dropped as the
/// transaction is applied (it commits all the same), as when a worker
/// does one input's work again and publishes its result again with the
/// same id: the output keeps one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedup_window_queue_keeps_one_copy_of_a_result_a_transaction_publishes_again() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let nodes = nodes_with(&cluster, &dirs, "", &[("qa", 3)]).await;
    let mut c1 = TestConn::connect(nodes[&1].addr).await;
    c1.ok(
        "DECLARE QUEUE out replicas=3 dedup-window=600000",
        "OK out messages=0 consumers=0",
    )
    .await;
    let la = queue_leader(&nodes, "qa").await;
    for body in ["in1", "in2"] {
        publish_confirmed(nodes[&la].addr, "qa", body).await;
    }
    let mut c = TestConn::connect(nodes[&la].addr).await;
    for want in ["in1", "in2"] {
        let (tag, body) = get_one(&mut c, "qa").await.expect(want);
        assert_eq!(body, want);
        c.ok("TX BEGIN", "OK").await;
        c.ok(&format!("ACK {tag}"), "OK queued").await;
        let got = c.cmd("PUB \"\" out id=result-1 r").await;
        assert!(got.starts_with("OK queued result-1"), "{got}");
        assert_eq!(c.cmd("TX COMMIT").await, "OK acked=1 published=1 routed=1");
    }
    assert!(get_one(&mut c, "qa").await.is_none(), "both inputs acked");
    // A plain publish after both: once it is there, so is whatever the
    // transactions left in `out`.
    publish_confirmed(nodes[&1].addr, "out", "marker").await;
    let got = wait_for(&nodes, "out", &["r", "marker"]).await;
    assert_eq!(
        got.iter().filter(|b| *b == "r").count(),
        1,
        "the result published twice with one id: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_prepare_fails_is_refused_and_its_delivery_comes_again() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    // qa on nodes 1 to 3; qp, placed third with replicas=2, on 3 and 1.
    let nodes = nodes_with(&cluster, &dirs, "", &[("qa", 3), ("qb", 3), ("qp", 2)]).await;
    let la = queue_leader(&nodes, "qa").await;
    // A member of qp's two that is not the coordinator: paused, qp's
    // group has no majority (qa's, qb's and the metadata group's do).
    let paused = if la == 3 { 1 } else { 3 };
    publish_confirmed(nodes[&la].addr, "qa", "in1").await;
    let mut c = TestConn::connect(nodes[&la].addr).await;
    let (tag, _) = get_one(&mut c, "qa").await.expect("in1");
    nodes[&paused].signal(libc::SIGSTOP);
    let got = move_in_tx(&mut c, tag, &[("qb", "out1"), ("qp", "side1")]).await;
    assert!(
        got.starts_with("ERR UNAVAILABLE the transaction aborted: ")
            && got.contains("qp")
            && got.contains("nothing was done"),
        "{got}"
    );
    // Its delivery comes again, flagged redelivered.
    let line = c.cmd("GET qa").await;
    assert!(
        line.starts_with("MSG - ") && line.contains("redelivered"),
        "{line}"
    );
    nodes[&paused].signal(libc::SIGCONT);
    // Nothing of it shows, even once qp's group is back and its parts
    // are resolved (by the coordinator, or by the leaders' recovery).
    let lb = queue_leader(&nodes, "qb").await;
    let mut b = TestConn::connect(nodes[&lb].addr).await;
    assert!(get_one(&mut b, "qb").await.is_none());
    publish_confirmed(nodes[&la].addr, "qp", "after").await;
    let seen = wait_for(&nodes, "qp", &["after"]).await;
    assert_eq!(seen, vec!["after".to_string()]);
}

/// Moves `in1` from `qa` to `qb` on three nodes that stall their
/// transactions at `stall`, kills the coordinator there, starts it again:
/// the nodes, and the `COMMIT`'s reply (`None`: killed before it).
async fn kill_coordinator_at(
    stall: &str,
    dirs: &[tempfile::TempDir],
) -> (HashMap<u64, Spawned>, Option<String>) {
    let cluster = Cluster::new();
    let mut nodes = nodes_with(&cluster, dirs, stall, &[("qa", 3), ("qb", 3)]).await;
    let la = queue_leader(&nodes, "qa").await;
    publish_confirmed(nodes[&la].addr, "qa", "in1").await;
    let mut c = TestConn::connect(nodes[&la].addr).await;
    let (tag, _) = get_one(&mut c, "qa").await.expect("in1");
    c.ok("TX BEGIN", "OK").await;
    c.ok(&format!("ACK {tag}"), "OK queued").await;
    let got = c.cmd("PUB \"\" qb out1").await;
    assert!(got.starts_with("OK queued"), "{got}");
    c.send("TX COMMIT").await;
    let reply = match stall {
        "resolve" => Some(c.line().await),
        _ => None,
    };
    nodes[&la]
        .wait_log(&format!("transaction stalled before {stall}"))
        .await;
    let coordinator = nodes.get_mut(&la).expect("the coordinator");
    coordinator.kill().await;
    nodes.insert(la, start_node(&cluster, dirs, la as usize).await);
    (nodes, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_before_the_decision_leaves_none_of_it() {
    let dirs = super::three_dirs();
    let (nodes, _) = kill_coordinator_at("decide", &dirs).await;
    // qa's leader aborts the part after the recovery bound: in1 comes
    // again; qb's drops out1.
    let seen = wait_for(&nodes, "qa", &["in1"]).await;
    assert_eq!(seen, vec!["in1".to_string()]);
    publish_confirmed(nodes[&1].addr, "qb", "after").await;
    let seen = wait_for(&nodes, "qb", &["after"]).await;
    assert_eq!(
        seen,
        vec!["after".to_string()],
        "out1 of an aborted transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_after_the_decision_leaves_all_of_it() {
    let dirs = super::three_dirs();
    // The coordinator leads qa: killed once its commit is recorded, before
    // it resolves a part.
    let (nodes, reply) = kill_coordinator_at("resolve", &dirs).await;
    assert_eq!(reply.as_deref(), Some("OK acked=1 published=1 routed=1"));
    let seen = wait_for(&nodes, "qb", &["out1"]).await;
    assert_eq!(seen, vec!["out1".to_string()]);
    // in1 is settled on every member: qa's new leader (and the restarted
    // node) never delivers it again once the part is resolved.
    publish_confirmed(nodes[&1].addr, "qa", "after").await;
    let seen = wait_for(&nodes, "qa", &["after"]).await;
    assert_eq!(seen, vec!["after".to_string()], "in1 came again");
}

/// One transaction of the checker: the body it acked, whether it
/// published to `qp` too, and its `COMMIT`'s reply.
#[derive(Debug)]
struct Cycle {
    acked: String,
    side: bool,
    reply: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transaction_is_all_or_nothing_over_many_cycles_with_faults() {
    const CYCLES: usize = 24;
    const FAULTY: [usize; 3] = [5, 12, 19];
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let nodes = nodes_with(&cluster, &dirs, "", &[("qa", 3), ("qb", 3), ("qp", 2)]).await;
    let la = queue_leader(&nodes, "qa").await;
    // Twice what the cycles take: a delivery an aborted cycle held comes
    // back only once its part is resolved.
    for i in 0..2 * CYCLES {
        publish_confirmed(nodes[&la].addr, "qa", &format!("in{i}")).await;
    }
    // The coordinator is qa's leader, `at`; an election (a loaded machine
    // may hold one without a fault) can move the lead, and the cycles
    // follow it to a connection there.
    let mut at = la;
    let mut c = TestConn::connect(nodes[&at].addr).await;
    let mut cycles = Vec::new();
    for i in 0..CYCLES {
        let (tag, acked) = loop {
            match try_get_one(&mut c, "qa").await {
                Ok(got) => break got.expect("a message to move"),
                Err(line) => {
                    assert!(line.starts_with("ERR PRECONDITION"), "GET qa: {line}");
                    at = queue_leader(&nodes, "qa").await;
                    c = TestConn::connect(nodes[&at].addr).await;
                }
            }
        };
        let side = i % 2 == 1 || FAULTY.contains(&i);
        let out = format!("out{i}");
        let side_body = format!("side{i}");
        let mut pubs = vec![("qb", out.as_str())];
        if side {
            pubs.push(("qp", side_body.as_str()));
        }
        // A member of qp's two (placed third with replicas=2: on nodes 3
        // and 1) that is not the coordinator: paused, qp's group has no
        // majority.
        let paused = if at == 3 { 1 } else { 3 };
        if FAULTY.contains(&i) {
            nodes[&paused].signal(libc::SIGSTOP);
        }
        let reply = move_in_tx(&mut c, tag, &pubs).await;
        if FAULTY.contains(&i) {
            nodes[&paused].signal(libc::SIGCONT);
            assert!(
                reply.starts_with("ERR"),
                "cycle {i} committed without qp: {reply}"
            );
        }
        cycles.push(Cycle { acked, side, reply });
    }
    // Every cycle answered OK shows whole (its parts resolve right after
    // the reply); the others are given the recovery bound.
    let committed: Vec<String> = (0..CYCLES)
        .filter(|i| cycles[*i].reply.starts_with("OK"))
        .map(|i| format!("out{i}"))
        .collect();
    assert!(
        committed.len() >= CYCLES - 2 * FAULTY.len(),
        "{committed:?}"
    );
    let want: Vec<&str> = committed.iter().map(String::as_str).collect();
    let mut qb: Vec<String> = wait_for(&nodes, "qb", &want).await;
    // Once no member holds a part undecided, every transaction is
    // resolved in every queue's log: marker messages published after that
    // come after it all.
    undecided_none(&nodes, &["qa", "qb", "qp"]).await;
    for q in ["qa", "qb", "qp"] {
        publish_confirmed(nodes[&la].addr, q, "end").await;
    }
    let qa = wait_for(&nodes, "qa", &["end"]).await;
    qb.extend(wait_for(&nodes, "qb", &["end"]).await);
    let qp = wait_for(&nodes, "qp", &["end"]).await;
    // What the checker judges, for a failure's output.
    eprintln!("cycles: {cycles:#?}\nqa: {qa:?}\nqb: {qb:?}\nqp: {qp:?}");
    check_all_or_nothing(&cycles, &qa, &qb, &qp);
}

/// The checker: every transaction of `cycles` happened whole or not at
/// all, given what was left in `qa` and what reached `qb` and `qp`.
fn check_all_or_nothing(cycles: &[Cycle], qa: &[String], qb: &[String], qp: &[String]) {
    let count = |v: &[String]| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for b in v {
            *m.entry(b.clone()).or_default() += 1;
        }
        m
    };
    let (qb, qp) = (count(qb), count(qp));
    let left: BTreeSet<&String> = qa.iter().collect();
    let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, cy) in cycles.iter().enumerate() {
        let out = qb.get(&format!("out{i}")).copied().unwrap_or(0);
        let side = qp.get(&format!("side{i}")).copied().unwrap_or(0);
        assert!(out <= 1 && side <= 1, "cycle {i} published twice");
        let done = out == 1;
        if cy.side {
            assert_eq!(
                side == 1,
                done,
                "cycle {i}: qb has out{i}: {done}, qp has side{i}: {}",
                side == 1
            );
        }
        if cy.reply.starts_with("OK") {
            assert!(done, "cycle {i} answered {} but did not happen", cy.reply);
        } else if !cy.reply.contains("not known") {
            assert!(!done, "cycle {i} answered {} but happened", cy.reply);
        }
        if done {
            *taken.entry(cy.acked.as_str()).or_default() += 1;
        }
    }
    for cy in cycles {
        let n = taken.get(cy.acked.as_str()).copied().unwrap_or(0);
        let still = left.contains(&cy.acked);
        assert!(
            (n == 1 && !still) || (n == 0 && still),
            "{} acked by {n} committed transactions, left in qa: {still}",
            cy.acked
        );
    }
}

/// `PUB "" <queue> <body>` on `c` inside a transaction.
async fn buffer_pub(c: &mut TestConn, queue: &str, body: &str) {
    let got = c.cmd(&format!("PUB \"\" {queue} {body}")).await;
    assert!(got.starts_with("OK queued "), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_reject_publish_queue_refuses_a_transaction_whose_copies_do_not_all_fit() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let nodes = nodes_with(&cluster, &dirs, "", &[]).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE qf replicas=3 overflow=reject-publish max-length=2",
        "OK qf messages=0 consumers=0",
    )
    .await;
    publish_confirmed(nodes[&1].addr, "qf", "a").await;
    // Two copies where one fits: all of it refused.
    c.ok("TX BEGIN", "OK").await;
    buffer_pub(&mut c, "qf", "x").await;
    buffer_pub(&mut c, "qf", "y").await;
    let got = c.cmd("TX COMMIT").await;
    assert!(
        got.starts_with("ERR QUEUE_FULL the transaction aborted: replicated queue qf has no room")
            && got.contains("nothing was done"),
        "{got}"
    );
    // One copy fits.
    c.ok("TX BEGIN", "OK").await;
    buffer_pub(&mut c, "qf", "b").await;
    assert_eq!(c.cmd("TX COMMIT").await, "OK acked=0 published=1 routed=1");
    let full = c.cmd("PUB \"\" qf c").await;
    assert!(full.starts_with("ERR QUEUE_FULL"), "{full}");
    assert_eq!(wait_for(&nodes, "qf", &["a", "b"]).await, ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecided_transaction_holds_its_room_in_a_reject_publish_queue() {
    let cluster = Cluster::new();
    let dirs = super::three_dirs();
    let mut nodes = nodes_with(&cluster, &dirs, "decide", &[]).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE qf replicas=3 overflow=reject-publish max-length=2",
        "OK qf messages=0 consumers=0",
    )
    .await;
    // A transaction publishing one copy, prepared and left undecided (its
    // coordinator, node 1, stalls before the decision).
    c.ok("TX BEGIN", "OK").await;
    buffer_pub(&mut c, "qf", "t").await;
    c.send("TX COMMIT").await;
    nodes[&1]
        .wait_log("transaction stalled before decide")
        .await;
    // Its copy holds one of the two places: one plain publish fits, the
    // next is refused.
    let mut p = TestConn::connect(nodes[&2].addr).await;
    let first = p.cmd("PUB \"\" qf p1").await;
    assert!(first.ends_with("routed=1"), "{first}");
    let second = p.cmd("PUB \"\" qf p2").await;
    assert!(second.starts_with("ERR QUEUE_FULL"), "{second}");
    // The coordinator killed: the recovery aborts the part (about 10 s),
    // and its room is free again.
    nodes.get_mut(&1).expect("node 1").kill().await;
    let until = tokio::time::Instant::now() + RECOVERY;
    loop {
        let got = p.cmd("PUB \"\" qf p3").await;
        if got.ends_with("routed=1") {
            break;
        }
        assert!(got.starts_with("ERR"), "{got}");
        assert!(tokio::time::Instant::now() < until, "never room: {got}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    nodes.insert(1, start_node(&cluster, &dirs, 1).await);
    assert_eq!(wait_for(&nodes, "qf", &["p1", "p3"]).await, ["p1", "p3"]);
}
