//! A damaged replica: one node's copy of a replicated queue's log, or its
//! snapshot, is damaged while it is down (a truncation, a flipped bit). It is detected
//! at its start, the node takes no part in the group (no vote) until it
//! is made a member again from the others, and nothing confirmed is lost.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{
    check_drained, publish_confirmed, queue_leader, start_node, three_with_queue, Cluster,
};
use crate::common::{TestConn, DEADLINE};

/// The replicated queues' group files in the data directory `dir` (the
/// metadata group's, group 0, left out).
fn queue_group_files(dir: &Path) -> Vec<PathBuf> {
    let groups = dir.join("log/groups");
    let Ok(listing) = std::fs::read_dir(&groups) else {
        return Vec::new();
    };
    listing
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".grp") && !name.starts_with(&"0".repeat(20))
        })
        .collect()
}

/// Whether a damaged copy is set aside in `dir` (not repaired yet).
fn damaged_here(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("log/groups")).is_ok_and(|l| {
        l.filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(".damaged"))
    })
}

/// Damages `file`: `truncate`, its second half cut off; else one bit
/// flipped in its middle.
fn damage(file: &Path, truncate: bool) {
    let mut bytes = std::fs::read(file).expect("read");
    assert!(
        bytes.len() > 64,
        "{} is too small to damage",
        file.display()
    );
    if truncate {
        bytes.truncate(bytes.len() / 2);
    } else {
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
    }
    std::fs::write(file, bytes).expect("write");
}

/// What is damaged, and how.
#[derive(Clone, Copy, PartialEq)]
enum Damage {
    /// The group's log file, its second half cut off.
    Truncated,
    /// The group's log file, one bit flipped.
    FlippedBit,
    /// The queue's snapshot, one bit flipped.
    Snapshot,
}

#[tokio::test]
async fn a_truncated_replica_takes_no_part_until_repaired_and_nothing_is_lost() {
    damaged_replica(Damage::Truncated).await;
}

#[tokio::test]
async fn a_replica_with_a_flipped_bit_takes_no_part_until_repaired_and_nothing_is_lost() {
    damaged_replica(Damage::FlippedBit).await;
}

#[tokio::test]
async fn a_replica_with_a_damaged_snapshot_takes_no_part_until_repaired_and_nothing_is_lost() {
    damaged_replica(Damage::Snapshot).await;
}

async fn damaged_replica(how: Damage) {
    // Snapshots often, so that there is one to damage.
    let cluster = Cluster::new().with(&["--snapshot-every", "20"]);
    let dirs = super::three_dirs();
    let mut nodes = three_with_queue(&cluster, &dirs, "jobs").await;
    let leader = queue_leader(&nodes, "jobs").await;
    let mut followers = (1..=3u64).filter(|i| *i != leader);
    let (x, y) = (followers.next().expect("x"), followers.next().expect("y"));
    let mut confirmed = BTreeSet::new();
    for i in 0..20 {
        let body = format!("a{i}");
        publish_confirmed(nodes[&leader].addr, "jobs", &body).await;
        confirmed.insert(body);
    }
    // Y is paused: what is confirmed now is on the leader and on X only.
    nodes[&y].signal(libc::SIGSTOP);
    for i in 0..30 {
        let body = format!("b{i}");
        publish_confirmed(nodes[&leader].addr, "jobs", &body).await;
        confirmed.insert(body);
    }
    // X restarts once (its start writes the group's file), is killed, and
    // its copy is damaged.
    let xdir = dirs[x as usize - 1].path();
    nodes.get_mut(&x).expect("x").kill().await;
    nodes.insert(x, start_node(&cluster, &dirs, x as usize).await);
    nodes.get_mut(&x).expect("x").kill().await;
    let files = match how {
        // (A kill while one was written may leave its temporary file.)
        Damage::Snapshot => std::fs::read_dir(xdir.join("snapshots"))
            .expect("snapshots")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "snap"))
            .collect(),
        _ => queue_group_files(xdir),
    };
    assert_eq!(files.len(), 1, "{files:?}");
    damage(&files[0], how == Damage::Truncated);

    // The leader goes; X comes back damaged and Y resumes. X must not
    // make a majority with Y: Y lacks the last 30, and so would lose them
    // as leader. Nothing is confirmed meanwhile.
    nodes.get_mut(&leader).expect("leader").kill().await;
    nodes.insert(x, start_node(&cluster, &dirs, x as usize).await);
    nodes[&y].signal(libc::SIGCONT);
    // Found at its start: a log's while the node recovers, a snapshot's
    // as the queue's group starts, just after.
    let until = tokio::time::Instant::now() + DEADLINE;
    while !damaged_here(xdir) {
        assert!(
            tokio::time::Instant::now() < until,
            "the damage was not detected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // STATS says so, once the node knows the queue's placement again (its
    // metadata group replays it as it starts: under load, a moment after
    // the damage is found).
    let mut on_x = TestConn::connect(nodes[&x].addr).await;
    loop {
        let (_, stats) = on_x.data("STATS QUEUE jobs").await;
        let says = stats
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["replica_damaged", "true"]);
        if says {
            break;
        }
        assert!(tokio::time::Instant::now() < until + DEADLINE, "{stats}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut on_y = TestConn::connect(nodes[&y].addr).await;
    for _ in 0..3 {
        let got = on_y.cmd("PUB \"\" jobs during").await;
        assert!(got.starts_with("ERR UNAVAILABLE"), "{got}");
    }
    let mut attempted = confirmed.clone();
    attempted.insert("during".to_string());

    // The old leader is back: the group has a majority that has every
    // entry; X leaves the voters, starts over, catches up and is a voter
    // again.
    nodes.insert(leader, start_node(&cluster, &dirs, leader as usize).await);
    let until = tokio::time::Instant::now() + 6 * DEADLINE;
    while damaged_here(xdir) {
        assert!(tokio::time::Instant::now() < until, "X was never repaired");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for i in 0..10 {
        let body = format!("c{i}");
        publish_confirmed(nodes[&x].addr, "jobs", &body).await;
        confirmed.insert(body);
    }
    attempted.extend(confirmed.iter().cloned());
    // X has it all: with the old leader gone again, X and Y lead on their
    // own, and every confirmed message is there.
    nodes.get_mut(&leader).expect("leader").kill().await;
    nodes.remove(&leader);
    check_drained(&nodes, "jobs", &confirmed, &attempted).await;
}
