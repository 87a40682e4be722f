//! Replicated queues (`replicas=`): publish anywhere, consume on the
//! leader, and lose no confirmed message through a killed or paused leader,
//! a killed follower, or every node killed and restarted.

use super::{
    drain, publish_some, queue_leader, row, start_node, three_nodes, three_with_queue, Cluster,
};
use crate::common::spawned::Spawned;
use crate::common::{TestConn, DEADLINE};

#[tokio::test]
async fn a_replicated_queue_keeps_every_confirmed_message_when_its_leader_is_killed() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE orders replicas=3",
        "OK orders messages=0 consumers=0",
    )
    .await;
    // What a replicated queue does not take yet is refused, not ignored.
    for bad in [
        "replicas=3 max-length=10 overflow=reject-publish",
        "replicas=3 exclusive",
        "replicas=3 dedup-window=1000",
    ] {
        let refused = c
            .err(&format!("DECLARE QUEUE other {bad}"), "PRECONDITION")
            .await;
        assert!(refused.contains("replicated queue"), "{refused}");
    }
    c.err("DECLARE QUEUE other replicas=5", "PRECONDITION")
        .await;
    c.err("DECLARE QUEUE orders", "PRECONDITION").await;
    let leader = queue_leader(&nodes, "orders").await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    // Its group, as STATS QUEUE and LIST QUEUES show it.
    let (_, stats) = l.data("STATS QUEUE orders").await;
    let line = |k: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(k).map(str::trim))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(line("replicas "), "3", "{stats}");
    assert_eq!(line("replica_leader "), leader.to_string(), "{stats}");
    assert_eq!(line("replica_members ").split(',').count(), 3, "{stats}");
    let (_, table) = l.data("LIST QUEUES orders").await;
    let header = row(&table, 0);
    let first = row(&table, 1);
    assert_eq!(header.last(), Some(&"leader"), "{table}");
    assert_eq!(
        first.last().copied(),
        Some(leader.to_string().as_str()),
        "{table}"
    );
    let other = (1..=3).find(|i| *i != leader).expect("a follower");
    let mut o = TestConn::connect(nodes[&other].addr).await;
    let refused = o.err("GET orders", "PRECONDITION").await;
    assert!(
        refused.contains(&format!("led by node {leader}")),
        "{refused}"
    );

    // Published through every node: each confirmed message is recorded.
    let mut confirmed = std::collections::BTreeSet::new();
    for i in 0..90 {
        let node = 1 + (i % 3) as u64;
        let mut p = TestConn::connect(nodes[&node].addr).await;
        let got = p.cmd(&format!("PUB \"\" orders m{i}")).await;
        assert!(got.ends_with("routed=1"), "{got}");
        confirmed.insert(format!("m{i}"));
    }
    // A third consumed and acked on the leader.
    let mut delivered = std::collections::BTreeSet::new();
    l.send("GET orders count=30").await;
    for _ in 0..30 {
        let (_, body) = l.msg().await;
        delivered.insert(String::from_utf8(body).expect("utf-8"));
    }
    l.expect("OK 30").await;
    // The OK comes once the settlement is committed in the queue's log.
    l.ok("ACK 30 multiple", "OK").await;
    let acked = delivered.clone();
    drop(l);

    // The leader is killed: another member takes over with every copy
    // that was not settled, and takes publishes again.
    let mut dead = nodes.remove(&leader).expect("leader");
    dead.kill().await;
    let killed = std::time::Instant::now();
    let survivor = *nodes.keys().next().expect("a survivor");
    let mut p = TestConn::connect(nodes[&survivor].addr).await;
    // Generous: the failover's time is measured by examples/, this is
    // about what is kept (and the machine may be loaded).
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    loop {
        let got = p.cmd("PUB \"\" orders after").await;
        if got.ends_with("routed=1") {
            confirmed.insert("after".into());
            break;
        }
        assert!(got.starts_with("ERR UNAVAILABLE"), "{got}");
        assert!(
            tokio::time::Instant::now() < until,
            "no publish after the kill"
        );
    }
    eprintln!(
        "first confirmed publish {:?} after the kill",
        killed.elapsed()
    );
    let new = queue_leader(&nodes, "orders").await;
    assert_ne!(new, leader);
    let mut n = TestConn::connect(nodes[&new].addr).await;
    let after = drain(&mut n, "orders").await;
    // What was acked (OK) before the kill is not delivered again.
    let again: Vec<_> = after.iter().filter(|b| acked.contains(*b)).collect();
    assert!(again.is_empty(), "acked, then delivered again: {again:?}");
    delivered.extend(after);

    // Every confirmed message was delivered at least once, and nothing
    // was delivered that was not published.
    let lost: Vec<_> = confirmed.difference(&delivered).collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    let unknown: Vec<_> = delivered.difference(&confirmed).collect();
    assert!(unknown.is_empty(), "never published: {unknown:?}");
}

#[tokio::test]
async fn replicas_needs_a_cluster() {
    let single = Spawned::start(&[]).await;
    let mut c = TestConn::connect(single.addr).await;
    let refused = c.err("DECLARE QUEUE q replicas=3", "PRECONDITION").await;
    assert!(refused.contains("needs a cluster"), "{refused}");
    c.ok("DECLARE QUEUE q replicas=1", "OK q messages=0 consumers=0")
        .await;
}

#[tokio::test]
async fn a_replicated_queue_loses_nothing_through_a_paused_leader_a_killed_follower_and_a_restart_of_every_node(
) {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE jobs replicas=3",
        "OK jobs messages=0 consumers=0",
    )
    .await;
    let mut confirmed = std::collections::BTreeSet::new();
    publish_some(&nodes, &[1, 2, 3], 30, &mut confirmed).await;

    // The leader pauses (SIGSTOP): the others elect one and take
    // publishes; it comes back (SIGCONT) as a follower.
    let leader = queue_leader(&nodes, "jobs").await;
    let mut w = TestConn::connect(nodes[&leader].addr).await;
    w.ok("SUB jobs prefetch=1 tag=w", "OK w").await;
    w.msg().await;
    nodes[&leader].signal(libc::SIGSTOP);
    let other = (1..=3).find(|i| *i != leader).expect("another");
    publish_some(&nodes, &[other], 20, &mut confirmed).await;
    nodes[&leader].signal(libc::SIGCONT);
    publish_some(&nodes, &[1, 2, 3], 20, &mut confirmed).await;
    // Its subscriber is told that it no longer leads (the delivery it
    // holds, never acked, comes again from the new leader).
    w.expect("NOTICE cancelled w reason=leader-moved").await;
    drop(w);

    // A follower killed and started again.
    let now = queue_leader(&nodes, "jobs").await;
    let follower = (1..=3).find(|i| *i != now).expect("a follower");
    let mut f = nodes.remove(&follower).expect("node");
    f.kill().await;
    publish_some(&nodes, &[now], 10, &mut confirmed).await;
    nodes.insert(
        follower,
        start_node(&cluster, &dirs, follower as usize).await,
    );
    publish_some(&nodes, &[1, 2, 3], 10, &mut confirmed).await;

    // Every node killed, then started again: they read the queue's log
    // back from their disks.
    for (_, mut n) in nodes.drain() {
        n.kill().await;
    }
    for i in 1..=3u64 {
        nodes.insert(i, start_node(&cluster, &dirs, i as usize).await);
    }
    let leader = queue_leader(&nodes, "jobs").await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    let delivered: std::collections::BTreeSet<String> =
        drain(&mut l, "jobs").await.into_iter().collect();
    // Every confirmed message is there; a publish answered UNAVAILABLE
    // was tried again with the same body, so nothing else may be.
    let lost: Vec<_> = confirmed.difference(&delivered).collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    let unknown: Vec<_> = delivered.difference(&confirmed).collect();
    assert!(unknown.is_empty(), "never published: {unknown:?}");
}

/// Queue `queue`'s `replica_<key>` on `node` (`STATS QUEUE`), as a number
/// (0 for `none`).
async fn replica_stat(node: &Spawned, queue: &str, key: &str) -> u64 {
    let mut c = TestConn::connect(node.addr).await;
    let (_, stats) = c.data(&format!("STATS QUEUE {queue}")).await;
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("replica_{key} ")))
        .map(str::trim)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn snapshots_bound_a_replicated_queue_s_log_and_bring_a_member_far_behind_up_to_date() {
    let cluster = Cluster::new().with(&["--snapshot-every", "100"]);
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes = three_with_queue(&cluster, &dirs, "jobs").await;
    let leader = queue_leader(&nodes, "jobs").await;
    let behind = (1..=3).find(|i| *i != leader).expect("a follower");
    let mut confirmed = std::collections::BTreeSet::new();
    publish_some(&nodes, &[leader], 150, &mut confirmed).await;
    // A member far behind: down while the others snapshot and purge.
    nodes.get_mut(&behind).expect("behind").kill().await;
    publish_some(&nodes, &[leader], 300, &mut confirmed).await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    l.send("GET jobs count=100").await;
    let mut acked = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let (_, body) = l.msg().await;
        acked.insert(String::from_utf8(body).expect("utf-8"));
    }
    l.expect("OK 100").await;
    l.ok("ACK 100 multiple", "OK").await;
    drop(l);
    let purged = replica_stat(&nodes[&leader], "jobs", "purged_index").await;
    let snapshot = replica_stat(&nodes[&leader], "jobs", "snapshot_index").await;
    assert!(purged > 150, "the leader's log was not purged: {purged}");
    assert!(snapshot >= purged, "snapshot {snapshot}, purged {purged}");
    let files = std::fs::read_dir(dirs[leader as usize - 1].path().join("snapshots"))
        .expect("the snapshots' directory")
        .count();
    assert_eq!(files, 1, "one snapshot file per group");

    // Back, it gets the leader's snapshot (what it missed is purged).
    nodes.insert(behind, start_node(&cluster, &dirs, behind as usize).await);
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    while replica_stat(&nodes[&behind], "jobs", "last_applied").await < purged {
        assert!(tokio::time::Instant::now() < until, "it never caught up");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(replica_stat(&nodes[&behind], "jobs", "snapshot_index").await > 0);

    // The leader goes: the one that was behind and the other lead with
    // every message not acked, and none acked.
    nodes.get_mut(&leader).expect("leader").kill().await;
    nodes.remove(&leader);
    let now = queue_leader(&nodes, "jobs").await;
    let mut n = TestConn::connect(nodes[&now].addr).await;
    let delivered: std::collections::BTreeSet<String> =
        drain(&mut n, "jobs").await.into_iter().collect();
    let want: std::collections::BTreeSet<String> = confirmed.difference(&acked).cloned().collect();
    assert_eq!(delivered, want);
}

#[tokio::test]
async fn a_publish_held_by_a_full_queue_that_also_reaches_a_replicated_one_confirms_once_committed()
{
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE rep replicas=3",
        "OK rep messages=0 consumers=0",
    )
    .await;
    // A queue of node 1's own that holds publishes when full.
    c.ok(
        "DECLARE QUEUE full max-length=1 overflow=block",
        "OK full messages=0 consumers=0",
    )
    .await;
    c.ok("DECLARE EXCHANGE both fanout", "OK").await;
    c.ok("BIND rep both", "OK").await;
    c.ok("BIND full both", "OK").await;
    let got = c.cmd("PUB both \"\" one").await;
    assert!(got.ends_with("routed=2"), "{got}");
    // Held by the full queue; the connection's next command waits.
    c.send("PUB both \"\" two").await;
    c.send("PING").await;
    assert_eq!(c.line().await, "NOTICE blocked queue=full");
    let mut other = TestConn::connect(nodes[&1].addr).await;
    other.send("GET full").await;
    let (_, body) = other.msg().await;
    assert_eq!(body, b"one");
    other.expect("OK 1").await;
    other.ok("ACK 1", "OK").await;
    // Run again once there is room: its confirm waits for the replicated
    // queue's commit, and the replies keep their order.
    let got = c.line().await;
    assert!(got.starts_with("OK ") && got.ends_with("routed=2"), "{got}");
    // (The notice is a push: it may come before or after the PING's
    // reply, which waited behind the confirm.)
    let mut next = [c.line().await, c.line().await];
    next.sort();
    assert_eq!(next, ["NOTICE unblocked queue=full", "OK pong"]);
    let leader = queue_leader(&nodes, "rep").await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    let mut bodies = drain(&mut l, "rep").await;
    bodies.sort();
    assert_eq!(bodies, ["one", "two"]);
}

#[tokio::test]
async fn the_cli_given_every_node_consumes_a_replicated_queue_on_its_leader() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let nodes = three_with_queue(&cluster, &dirs, "jobs").await;
    let mut confirmed = std::collections::BTreeSet::new();
    publish_some(&nodes, &[1, 2, 3], 3, &mut confirmed).await;
    // The followers first: each refuses (led by another node), the leader
    // serves.
    let leader = queue_leader(&nodes, "jobs").await;
    let mut order: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    order.push(leader);
    let servers: Vec<String> = order.iter().map(|i| nodes[i].addr.to_string()).collect();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["sub", "jobs", "--count", "3", "-s", &servers.join(",")])
        .env_remove("SLUICE_SERVER")
        .output();
    let out = tokio::time::timeout(DEADLINE, out)
        .await
        .expect("in time")
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let got: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(got, confirmed);
}

#[tokio::test]
async fn a_replicated_queue_with_priorities_keeps_their_order_through_a_failover() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE urgent replicas=3 max-priority=5",
        "OK urgent messages=0 consumers=0",
    )
    .await;
    for (body, priority) in [("low-1", 1), ("top", 9), ("low-2", 1), ("mid", 3)] {
        let got = c
            .cmd(&format!("PUB \"\" urgent priority={priority} {body}"))
            .await;
        assert!(got.ends_with("routed=1"), "{got}");
    }
    let leader = queue_leader(&nodes, "urgent").await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    // Delivered in priority order (and not acked)...
    l.send("GET urgent count=4").await;
    let mut order = Vec::new();
    for _ in 0..4 {
        let (_, body) = l.msg().await;
        order.push(String::from_utf8(body).expect("utf-8"));
    }
    l.expect("OK 4").await;
    assert_eq!(order, ["top", "mid", "low-1", "low-2"]);
    drop(l);
    // ...and again by the next leader, which takes them over (a priority
    // above max-priority=5 counts as 5).
    nodes.get_mut(&leader).expect("leader").kill().await;
    nodes.remove(&leader);
    let now = queue_leader(&nodes, "urgent").await;
    let mut n = TestConn::connect(nodes[&now].addr).await;
    assert_eq!(
        drain(&mut n, "urgent").await,
        ["top", "mid", "low-1", "low-2"]
    );
}

#[tokio::test]
async fn a_replicated_queue_s_ttl_expires_copies_on_every_leader() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE brief replicas=3 ttl=60000",
        "OK brief messages=0 consumers=0",
    )
    .await;
    // Two that expire soon (their own ttl=), one that lasts (the queue's),
    // one not due for a minute.
    for (body, ttl) in [
        ("gone-1", " ttl=300"),
        ("stays", ""),
        ("gone-2", " ttl=300"),
        ("later", " delay=60000"),
    ] {
        let got = c.cmd(&format!("PUB \"\" brief{ttl} {body}")).await;
        assert!(got.ends_with("routed=1"), "{got}");
    }
    let leader = queue_leader(&nodes, "brief").await;
    // Time passes (what is tested is expiry itself).
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    l.send("GET brief count=10").await;
    let (_, body) = l.msg().await;
    assert_eq!(body, b"stays");
    l.expect("OK 1").await;
    drop(l);
    // The next leader does not bring the expired back (their expiry was
    // settled in the log, and their TTL runs from the publish), nor the
    // delayed one before it is due.
    nodes.get_mut(&leader).expect("leader").kill().await;
    nodes.remove(&leader);
    let now = queue_leader(&nodes, "brief").await;
    let mut n = TestConn::connect(nodes[&now].addr).await;
    assert_eq!(drain(&mut n, "brief").await, ["stays"]);
}

#[tokio::test]
async fn a_replicated_queue_dead_letters_through_its_leader_into_another_replicated_queue() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok("DECLARE EXCHANGE dlx fanout", "OK").await;
    c.ok(
        "DECLARE QUEUE parked replicas=3",
        "OK parked messages=0 consumers=0",
    )
    .await;
    c.ok("BIND parked dlx", "OK").await;
    c.ok(
        "DECLARE QUEUE work replicas=3 dead-letter=dlx",
        "OK work messages=0 consumers=0",
    )
    .await;
    for body in ["bad", "good"] {
        let got = c.cmd(&format!("PUB \"\" work {body}")).await;
        assert!(got.ends_with("routed=1"), "{got}");
    }
    let leader = queue_leader(&nodes, "work").await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    l.send("GET work count=2").await;
    let (_, first) = l.msg().await;
    let (_, second) = l.msg().await;
    l.expect("OK 2").await;
    assert_eq!(
        (first.as_slice(), second.as_slice()),
        (&b"bad"[..], &b"good"[..])
    );
    // Rejected: settled in work's log, dead-lettered into parked's.
    l.ok("REJECT 1", "OK").await;
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    let parked = loop {
        let on = queue_leader(&nodes, "parked").await;
        let mut p = TestConn::connect(nodes[&on].addr).await;
        let got = drain(&mut p, "parked").await;
        if !got.is_empty() {
            break got;
        }
        assert!(tokio::time::Instant::now() < until, "no dead letter");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(parked, ["bad"]);
    drop(l);
    // Work's next leader has the unsettled one only.
    nodes.get_mut(&leader).expect("leader").kill().await;
    nodes.remove(&leader);
    let now = queue_leader(&nodes, "work").await;
    let mut n = TestConn::connect(nodes[&now].addr).await;
    assert_eq!(drain(&mut n, "work").await, ["good"]);
}

#[tokio::test]
async fn a_replicated_queue_s_length_limit_drops_the_same_heads_on_every_leader() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE latest replicas=3 max-length=2",
        "OK latest messages=0 consumers=0",
    )
    .await;
    for body in ["a", "b", "c", "d"] {
        let got = c.cmd(&format!("PUB \"\" latest {body}")).await;
        assert!(got.ends_with("routed=1"), "{got}");
    }
    let leader = queue_leader(&nodes, "latest").await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    l.send("GET latest count=10").await;
    let (_, first) = l.msg().await;
    let (_, second) = l.msg().await;
    l.expect("OK 2").await;
    assert_eq!(
        (first.as_slice(), second.as_slice()),
        (&b"c"[..], &b"d"[..])
    );
    drop(l);
    // The heads dropped were settled in the log: the next leader has the
    // same two.
    nodes.get_mut(&leader).expect("leader").kill().await;
    nodes.remove(&leader);
    let now = queue_leader(&nodes, "latest").await;
    let mut n = TestConn::connect(nodes[&now].addr).await;
    assert_eq!(drain(&mut n, "latest").await, ["c", "d"]);
}

#[tokio::test]
async fn a_replicated_queue_counts_deliveries_across_a_failover_for_its_delivery_limit() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok("DECLARE EXCHANGE dlx fanout", "OK").await;
    c.ok(
        "DECLARE QUEUE poison replicas=3",
        "OK poison messages=0 consumers=0",
    )
    .await;
    c.ok("BIND poison dlx", "OK").await;
    c.ok(
        "DECLARE QUEUE tasks replicas=3 delivery-limit=2 dead-letter=dlx",
        "OK tasks messages=0 consumers=0",
    )
    .await;
    let got = c.cmd("PUB \"\" tasks crash-me").await;
    assert!(got.ends_with("routed=1"), "{got}");
    // Delivered once and put back, on the first leader: the log counts it.
    let leader = queue_leader(&nodes, "tasks").await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    l.send("GET tasks").await;
    let _ = l.msg().await;
    l.expect("OK 1").await;
    l.ok("NACK 1", "OK").await;
    drop(l);
    nodes.get_mut(&leader).expect("leader").kill().await;
    nodes.remove(&leader);
    // The second delivery, on the next leader, is the last: put back, it
    // dies of its limit instead.
    let now = queue_leader(&nodes, "tasks").await;
    let mut n = TestConn::connect(nodes[&now].addr).await;
    n.send("GET tasks").await;
    let _ = n.msg().await;
    n.expect("OK 1").await;
    n.ok("NACK 1", "OK").await;
    assert!(drain(&mut n, "tasks").await.is_empty());
    let until = tokio::time::Instant::now() + 3 * DEADLINE;
    loop {
        let on = queue_leader(&nodes, "poison").await;
        let mut p = TestConn::connect(nodes[&on].addr).await;
        let got = drain(&mut p, "poison").await;
        if !got.is_empty() {
            assert_eq!(got, ["crash-me"]);
            break;
        }
        assert!(tokio::time::Instant::now() < until, "not dead-lettered");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
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
async fn a_replicated_groups_queue_keeps_each_group_s_owner_rule_through_a_failover() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE orders replicas=3 groups",
        "OK orders messages=0 consumers=0",
    )
    .await;
    for (body, group) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
        let got = c
            .cmd(&format!("PUB \"\" orders group={group} {body}"))
            .await;
        assert!(got.ends_with("routed=1"), "{got}");
    }
    // A group belongs to the connection holding its deliveries: while one
    // has a1, another gets b1 but not a2.
    let leader = queue_leader(&nodes, "orders").await;
    let mut one = TestConn::connect(nodes[&leader].addr).await;
    let mut two = TestConn::connect(nodes[&leader].addr).await;
    assert_eq!(got(&mut one, "orders", 1).await, ["a1"]);
    assert_eq!(got(&mut two, "orders", 10).await, ["b1"]);
    drop((one, two));
    // The next leader knows each copy's group: the same again.
    nodes.get_mut(&leader).expect("leader").kill().await;
    nodes.remove(&leader);
    let now = queue_leader(&nodes, "orders").await;
    let mut one = TestConn::connect(nodes[&now].addr).await;
    let mut two = TestConn::connect(nodes[&now].addr).await;
    assert_eq!(got(&mut one, "orders", 1).await, ["a1"]);
    assert_eq!(got(&mut two, "orders", 10).await, ["b1"]);
}

#[tokio::test]
async fn a_replicated_single_active_queue_has_one_active_consumer_on_its_leader() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok(
        "DECLARE QUEUE sole replicas=3 single-active",
        "OK sole messages=0 consumers=0",
    )
    .await;
    let leader = queue_leader(&nodes, "sole").await;
    let mut a = TestConn::connect(nodes[&leader].addr).await;
    a.ok("SUB sole tag=a", "OK a").await;
    a.expect("NOTICE active a").await;
    let mut b = TestConn::connect(nodes[&leader].addr).await;
    b.ok("SUB sole tag=b", "OK b").await;
    for body in ["m1", "m2"] {
        let got = c.cmd(&format!("PUB \"\" sole {body}")).await;
        assert!(got.ends_with("routed=1"), "{got}");
    }
    for want in ["m1", "m2"] {
        let (_, body) = a.msg().await;
        assert_eq!(body, want.as_bytes());
    }
    // The other one got nothing: its next line is the reply to a PING.
    assert_eq!(b.cmd("PING").await, "OK pong");
}

#[tokio::test]
async fn a_replicated_queue_is_purged_by_its_leader_for_every_next_leader() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes = three_with_queue(&cluster, &dirs, "jobs").await;
    let mut confirmed = std::collections::BTreeSet::new();
    publish_some(&nodes, &[1, 2, 3], 5, &mut confirmed).await;
    let leader = queue_leader(&nodes, "jobs").await;
    let other = (1..=3).find(|i| *i != leader).expect("a follower");
    let mut o = TestConn::connect(nodes[&other].addr).await;
    let refused = o.err("PURGE jobs", "PRECONDITION").await;
    assert!(refused.contains("led by node"), "{refused}");
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    l.ok("PURGE jobs", "OK messages=5").await;
    let got = l.cmd("PUB \"\" jobs after").await;
    assert!(got.ends_with("routed=1"), "{got}");
    drop(l);
    // Its log has the purge: the next leader has only what came after.
    nodes.get_mut(&leader).expect("leader").kill().await;
    nodes.remove(&leader);
    let now = queue_leader(&nodes, "jobs").await;
    let mut n = TestConn::connect(nodes[&now].addr).await;
    assert_eq!(drain(&mut n, "jobs").await, ["after"]);
}

#[tokio::test]
async fn redrive_keeps_a_message_whose_route_reaches_a_replicated_queue() {
    let cluster = Cluster::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let nodes = three_nodes(&cluster, &dirs).await;
    let mut c = TestConn::connect(nodes[&1].addr).await;
    c.ok("DECLARE EXCHANGE dlx fanout", "OK").await;
    // Each node's own dead-letter queue.
    c.ok("DECLARE QUEUE dlq", "OK dlq messages=0 consumers=0")
        .await;
    c.ok("BIND dlq dlx", "OK").await;
    c.ok(
        "DECLARE QUEUE rq replicas=3 dead-letter=dlx",
        "OK rq messages=0 consumers=0",
    )
    .await;
    let published = c.cmd("PUB \"\" rq once").await;
    assert!(published.ends_with("routed=1"), "{published}");
    let leader = queue_leader(&nodes, "rq").await;
    let mut l = TestConn::connect(nodes[&leader].addr).await;
    assert_eq!(got(&mut l, "rq", 1).await, ["once"]);
    l.ok("REJECT 1", "OK").await;
    // Dead-lettered into the leader's own dlq; sent back, its route
    // reaches the replicated queue, which would take it through its log:
    // not yet, so it stays (and is not lost).
    l.ok("REDRIVE dlq", "OK moved=0 kept=1").await;
    assert_eq!(drain(&mut l, "dlq").await, ["once"]);
}
