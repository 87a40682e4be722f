//! Three Raft nodes in one process, talking over loopback TCP, each on a
//! data directory of its own: the log store and the network together.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::log_store::GroupLog;
use super::network::{serve, Peers, Router};
use super::state::StateMachine;

/// The tests' state machine: it keeps every command.
type Sm = StateMachine<Vec<Vec<u8>>>;
use super::{Payload, TypeConfig};
use crate::store::sled::DEFAULT_CACHE_BYTES;
use crate::store::{Committer, LogStore, MessageStore, Storage};

/// One node: its Raft, what it applied, and what keeps it running.
struct Node {
    raft: Raft<TypeConfig>,
    sm: Sm,
    server: JoinHandle<()>,
    committer: Arc<Committer>,
}

impl Node {
    /// Starts node `id` on the data directory `dir`, listening on
    /// `listener`, with openraft's `config` (timeouts set here) and the
    /// cluster secret `secret`.
    async fn start(
        id: u64,
        dir: &std::path::Path,
        listener: TcpListener,
        config: Config,
        secret: &str,
    ) -> Node {
        let store = Arc::new(LogStore::open(dir, DEFAULT_CACHE_BYTES).expect("open"));
        store.recover(&[]).expect("recover");
        let committer = Committer::start(&Storage::one(store.clone())).expect("committer");
        let log = GroupLog::new(store, committer.clone(), 1);
        let sm = Sm::default();
        let config = Config {
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            ..config
        };
        let config = Arc::new(config.validate().expect("config"));
        let secret: Arc<str> = Arc::from(secret);
        let peers = Peers::new(id, secret.clone(), None);
        let raft = Raft::new(id, config, peers, log, sm.clone())
            .await
            .expect("raft");
        let router: Router = Arc::default();
        router.insert(0, raft.clone());
        let server = tokio::spawn(serve(listener, router, secret, None, None, None));
        Node {
            raft,
            sm,
            server,
            committer,
        }
    }

    /// Stops it (as a crash of the process would, but for the files).
    async fn stop(self) {
        self.server.abort();
        let _ = self.raft.shutdown().await;
        self.committer.shutdown(Duration::from_secs(5));
    }

    fn applied(&self) -> Vec<Vec<u8>> {
        self.sm.applied()
    }

    /// Writes the commands `range` through it (the leader), each once
    /// committed.
    async fn write(&self, range: std::ops::Range<usize>) {
        for i in range {
            let c = Payload(String::from_utf8(cmd(i)).expect("text"));
            self.raft.client_write(c).await.expect("write");
        }
    }
}

/// Starts node `id` again on `dir`, at its address among `members`.
async fn restart(
    id: u64,
    dir: &std::path::Path,
    members: &BTreeMap<u64, BasicNode>,
    config: Config,
) -> Node {
    let addr: std::net::SocketAddr = members[&id].addr.parse().expect("addr");
    let l = TcpListener::bind(addr).await.expect("bind again");
    Node::start(id, dir, l, config, SECRET).await
}

/// Waits until `node` has applied `n` commands.
async fn applied(node: &Node, n: usize) {
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while node.applied().len() < n {
        assert!(
            tokio::time::Instant::now() < until,
            "applied {} of {n}",
            node.applied().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The leader among `nodes`, once one is elected and known to all.
async fn leader(nodes: &BTreeMap<u64, Node>) -> u64 {
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let views: Vec<Option<u64>> = nodes
            .values()
            .map(|n| n.raft.metrics().borrow().current_leader)
            .collect();
        if let Some(Some(l)) = views.first() {
            let is_leader = nodes
                .get(l)
                .is_some_and(|n| n.raft.metrics().borrow().state == ServerState::Leader);
            if is_leader && views.iter().all(|v| v == &Some(*l)) {
                return *l;
            }
        }
        assert!(tokio::time::Instant::now() < until, "no leader: {views:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The cluster secret of the tests' nodes.
const SECRET: &str = "the tests' cluster secret";

fn cmd(i: usize) -> Vec<u8> {
    format!("command {i}").into_bytes()
}

/// Three nodes on data directories and loopback ports of their own, node
/// `id` with openraft's `config()` and the cluster secret `secret(id)`,
/// the group started by node 1: their directories, members and nodes.
async fn three(
    config: impl Fn() -> Config,
    secret: impl Fn(u64) -> &'static str,
) -> (
    Vec<tempfile::TempDir>,
    BTreeMap<u64, BasicNode>,
    BTreeMap<u64, Node>,
) {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        members.insert(id, BasicNode { addr });
        listeners.push(l);
    }
    let mut nodes = BTreeMap::new();
    for (id, l) in (1..=3u64).zip(listeners) {
        let dir = dirs[id as usize - 1].path();
        nodes.insert(id, Node::start(id, dir, l, config(), secret(id)).await);
    }
    nodes[&1]
        .raft
        .initialize(members.clone())
        .await
        .expect("initialize");
    (dirs, members, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_elect_anew_when_the_leader_stops_and_a_restarted_node_catches_up() {
    let (dirs, members, mut nodes) = three(Config::default, |_| SECRET).await;
    let first = leader(&nodes).await;
    nodes[&first].write(0..50).await;
    let want: Vec<Vec<u8>> = (0..50).map(cmd).collect();
    for n in nodes.values() {
        applied(n, 50).await;
        assert_eq!(n.applied(), want);
    }

    // The leader stops: the other two elect one of them and go on.
    let old = nodes.remove(&first).expect("leader");
    old.stop().await;
    {
        // Its log and vote are on its disk: an initial blank entry, the
        // membership, a blank of its term and the 50 commands.
        let dir = dirs[first as usize - 1].path();
        let store = LogStore::open(dir, DEFAULT_CACHE_BYTES).expect("open");
        store.recover(&[]).expect("recover");
        let st = store.group_state(1);
        assert!(st.last.is_some_and(|(index, _)| index >= 52), "{st:?}");
        assert!(store.group_vote(1).is_some());
    }
    let second = leader(&nodes).await;
    assert_ne!(second, first);
    nodes[&second].write(50..60).await;
    let want: Vec<Vec<u8>> = (0..60).map(cmd).collect();
    for n in nodes.values() {
        applied(n, 60).await;
        assert_eq!(n.applied(), want);
    }

    // It starts again on its data directory: its log and vote are there,
    // and it catches up with what it missed (its state machine, in RAM,
    // is rebuilt from the log).
    let dir = dirs[first as usize - 1].path();
    nodes.insert(
        first,
        restart(first, dir, &members, Config::default()).await,
    );
    applied(&nodes[&first], 60).await;
    assert_eq!(nodes[&first].applied(), want);
    for (_, n) in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_disk_catches_up_by_a_snapshot() {
    // Snapshots every 20 entries, nothing of the log kept behind them. A
    // node that comes back with an empty data directory finds the
    // leader's log purged past its own end: it gets a snapshot over the
    // network, and its group log is purged past its last entry to go on
    // from there.
    let config = || Config {
        snapshot_policy: SnapshotPolicy::LogsSinceLast(20),
        max_in_snapshot_log_to_keep: 0,
        ..Config::default()
    };
    let (mut dirs, members, mut nodes) = three(config, |_| SECRET).await;
    let first = leader(&nodes).await;
    nodes[&first].write(0..110).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let purged = nodes[&first].raft.metrics().borrow().purged;
        if purged.is_some_and(|p| p.index > 20) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "never purged: {purged:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let away = (1..=3u64).find(|id| *id != first).expect("a follower");
    nodes.remove(&away).expect("node").stop().await;
    dirs[away as usize - 1] = tempfile::tempdir().expect("dir");
    let dir = dirs[away as usize - 1].path();
    nodes.insert(away, restart(away, dir, &members, config()).await);
    nodes[&first].write(110..115).await;
    let want: Vec<Vec<u8>> = (0..115).map(cmd).collect();
    applied(&nodes[&away], 115).await;
    assert_eq!(nodes[&away].applied(), want);
    let snapshot = nodes[&away].raft.metrics().borrow().snapshot;
    assert!(snapshot.is_some_and(|s| s.index > 20), "{snapshot:?}");
    for (_, n) in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_secret_is_never_let_in() {
    // Node 3 has the wrong secret: the others refuse its connections and
    // it refuses theirs, so it never gets a vote or an entry in, and the
    // other two, a majority, go on without it.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let secret = |id| if id == 3 { "guessed" } else { SECRET };
    let (_dirs, members, mut nodes) = three(Config::default, secret).await;
    let intruder = nodes.remove(&3).expect("node 3");
    let l = leader(&nodes).await;
    nodes[&l].write(0..20).await;
    for n in nodes.values() {
        applied(n, 20).await;
    }
    assert!(intruder.applied().is_empty());
    assert_eq!(intruder.raft.metrics().borrow().current_leader, None);
    // A connection without the hello is closed unanswered.
    let mut raw = tokio::net::TcpStream::connect(members[&1].addr.as_str())
        .await
        .expect("connect");
    raw.write_all(b"\x00\x00\x00\x02{}").await.expect("write");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "answered without a hello");
    intruder.stop().await;
    for (_, n) in nodes {
        n.stop().await;
    }
}
