//! The long random-fault mode, outside CI (one command, README "Clusters"):
//!
//! ```text
//! SLUICE_FAULT_MINUTES=30 cargo test --release --test it random_faults -- --ignored --nocapture
//! ```
//!
//! Three nodes keep a replicated queue while a publisher (through any
//! node), a consumer (`GET` on the leader) and a subscriber (`SUB` on any
//! node, through the leader elsewhere) run, and faults come every few
//! seconds, one node at a time: a SIGKILL and a restart, a SIGSTOP and a
//! SIGCONT, a partition (the node cut off from the others by the proxies
//! between them, `net.rs`, then healed), the queue's leader killed, now and
//! then every node killed and restarted. At the end the queue is drained and checked: every
//! confirmed message was delivered at least once, nothing was
//! delivered that was not published, and no node panicked.
//!
//! A replicated stream runs beside the queue: a publisher through any
//! node, and a consumer group read through the nodes in turn, acking
//! each delivery. Each time the group subscribes again, its first offset
//! (its committed one, the lowest not acked) must not be one acked with an
//! `OK` before: a group's offset never moves back past an ack; and no
//! offset may be skipped. At the end every member's copy of the stream
//! must be the same, offset by offset, and hold every confirmed publish.
//! CI runs it for 20 seconds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{drain, free_port, queue_leader, Cluster};
use crate::common::spawned::Spawned;
use crate::common::TestConn;

/// The nodes, by id, where the clients find them (fixed client ports, so
/// that a restarted node is where it was).
struct Nodes {
    cluster: Cluster,
    dirs: Vec<tempfile::TempDir>,
    ports: Vec<u16>,
    running: HashMap<u64, Spawned>,
    /// Panics the nodes gone so far reported (a node that panics in a
    /// task goes on, a part of it dead: the run fails).
    panics: Vec<String>,
}

impl Nodes {
    fn addr(&self, id: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[id as usize - 1]))
    }

    async fn start(&mut self, id: u64) {
        let mut args = vec![
            "--addr".to_string(),
            self.addr(id).to_string(),
            "--data-dir".to_string(),
            self.dirs[id as usize - 1]
                .path()
                .to_str()
                .expect("utf-8")
                .to_string(),
        ];
        args.extend(self.cluster.args(id as usize));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let node = Spawned::start_bare(&a, &[]).await;
        // Its log lines carry its process id.
        eprintln!("node {id} runs as process {}", node.pid());
        self.running.insert(id, node);
    }

    async fn kill(&mut self, id: u64) {
        if let Some(mut n) = self.running.remove(&id) {
            n.kill().await;
            self.panics.extend(panics(&n));
        }
    }
}

/// The panics node `n` reported on its log so far.
fn panics(n: &Spawned) -> Vec<String> {
    n.log_lines()
        .into_iter()
        .filter(|l| l.contains("panicked at"))
        .collect()
}

/// A tiny deterministic generator (xorshift), seeded from the clock and
/// printed, so that a failing run can be told apart.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the clients saw.
#[derive(Default)]
pub(super) struct Seen {
    /// Publishes answered `OK`.
    pub(super) confirmed: BTreeSet<String>,
    /// Every publish sent (an `ERR UNAVAILABLE` may yet be stored).
    pub(super) attempted: BTreeSet<String>,
    /// Bodies delivered (at least once).
    delivered: BTreeSet<String>,
    /// Deliveries counted again (redeliveries).
    deliveries: u64,
    /// Of those, the subscriber's (`SUB`, pushed).
    pushed: u64,
}

#[tokio::test]
async fn random_faults_short() {
    random_faults(Duration::from_secs(20)).await;
}

#[tokio::test]
#[ignore = "long: SLUICE_FAULT_MINUTES=30 cargo test --release --test it random_faults -- --ignored --nocapture"]
async fn random_faults_long() {
    let minutes: u64 = std::env::var("SLUICE_FAULT_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(30);
    random_faults(Duration::from_secs(60 * minutes)).await;
}

async fn random_faults(run: Duration) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 | 1)
        .unwrap_or(1);
    eprintln!("random faults for {run:?}, seed {seed}");
    let mut rng = Rng(seed);
    let (cluster, net) = Cluster::behind_proxies().await;
    let mut nodes = Nodes {
        cluster,
        dirs: super::three_dirs(),
        ports: (0..3).map(|_| free_port()).collect(),
        running: HashMap::new(),
        panics: Vec::new(),
    };
    for id in 1..=3 {
        nodes.start(id).await;
    }
    let addrs: Vec<SocketAddr> = (1..=3).map(|id| nodes.addr(id)).collect();
    // The declarations retry through the elections of a fresh cluster.
    for declare in [
        "DECLARE QUEUE jobs replicas=3",
        "DECLARE QUEUE log type=stream replicas=3",
    ] {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let mut c = TestConn::connect(addrs[0]).await;
            let got = c.cmd(declare).await;
            if got.starts_with("OK") {
                break;
            }
            assert!(Instant::now() < until, "{got}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = Arc::new(Mutex::new(StreamSeen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish(addrs.clone(), seen.clone(), stop.clone()));
    let consumer = tokio::spawn(consume(addrs.clone(), seen.clone(), stop.clone()));
    let subscriber = tokio::spawn(subscribe(addrs.clone(), seen.clone(), stop.clone()));
    let stream_publisher = tokio::spawn(publish_to(
        addrs.clone(),
        "log",
        "s",
        log.clone(),
        stop.clone(),
    ));
    let group = tokio::spawn(read_as_group(addrs.clone(), log.clone(), stop.clone()));

    let mut faults: HashMap<&str, u64> = HashMap::new();
    let started = Instant::now();
    let end = started + run;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(2000 + rng.below(4000))).await;
        let victim = 1 + rng.below(3);
        let kind = match rng.below(10) {
            0..=2 => "kill and restart a node",
            3..=4 => "pause a node (SIGSTOP, SIGCONT)",
            5..=6 => "cut a node off from the others (a partition), then heal",
            7..=8 => "kill and restart the queue's leader",
            _ => "kill and restart every node",
        };
        *faults.entry(kind).or_default() += 1;
        // The timeline, to read a failure against.
        eprintln!(
            "{:>8.1}s fault: {kind} (node {victim})",
            started.elapsed().as_secs_f64()
        );
        match kind {
            "kill and restart a node" => {
                nodes.kill(victim).await;
                tokio::time::sleep(Duration::from_millis(500 + rng.below(3000))).await;
                nodes.start(victim).await;
            }
            "cut a node off from the others (a partition), then heal" => {
                net.isolate(victim, 3);
                tokio::time::sleep(Duration::from_millis(500 + rng.below(5000))).await;
                net.heal();
            }
            "pause a node (SIGSTOP, SIGCONT)" => {
                nodes.running[&victim].signal(libc::SIGSTOP);
                tokio::time::sleep(Duration::from_millis(500 + rng.below(3000))).await;
                nodes.running[&victim].signal(libc::SIGCONT);
            }
            "kill and restart the queue's leader" => {
                let leader = queue_leader(&nodes.running, "jobs").await;
                nodes.kill(leader).await;
                tokio::time::sleep(Duration::from_millis(500 + rng.below(3000))).await;
                nodes.start(leader).await;
            }
            _ => {
                for id in 1..=3 {
                    nodes.kill(id).await;
                }
                for id in 1..=3 {
                    nodes.start(id).await;
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.await;
    let _ = consumer.await;
    let _ = subscriber.await;
    let _ = stream_publisher.await;
    let _ = group.await;
    let leader = queue_leader(&nodes.running, "jobs").await;
    let mut l = TestConn::connect(nodes.addr(leader)).await;
    let rest = drain(&mut l, "jobs").await;
    let log = std::mem::take(&mut *log.lock().expect("log"));
    let stream = check_stream(&addrs, &log).await;
    eprintln!("random faults, the stream: {stream}");
    let s = seen.lock().expect("seen");
    let delivered: BTreeSet<String> = s.delivered.iter().cloned().chain(rest).collect();
    let lost: Vec<_> = s.confirmed.difference(&delivered).collect();
    let unknown: Vec<_> = delivered.difference(&s.attempted).collect();
    eprintln!(
        "random faults: {run:?}, seed {seed}; faults {faults:?}; {} published ({} confirmed), \
         {} delivered ({} deliveries, {} of them to the subscriber); lost {}, never published {}",
        s.attempted.len(),
        s.confirmed.len(),
        delivered.len(),
        s.deliveries,
        s.pushed,
        lost.len(),
        unknown.len()
    );
    let mut panicked = nodes.panics.clone();
    for n in nodes.running.values() {
        panicked.extend(panics(n));
    }
    assert!(panicked.is_empty(), "nodes panicked: {panicked:?}");
    assert!(lost.is_empty(), "lost: {lost:?}");
    // Checked last, so that a failure here still reports the rest.
    assert!(
        log.backwards.is_empty(),
        "the group started again at offsets it had acked with an OK: {:?}",
        log.backwards
    );
    assert!(unknown.is_empty(), "never published: {unknown:?}");
    assert!(s.confirmed.len() > 10, "hardly anything was published");
}

/// What a publisher records of each publish.
pub(super) trait Record: Send + 'static {
    /// Sent (an `ERR UNAVAILABLE` may yet be stored).
    fn attempted(&mut self, body: &str);
    /// Answered `OK`.
    fn confirmed(&mut self, body: String);
}

impl Record for Seen {
    fn attempted(&mut self, body: &str) {
        self.attempted.insert(body.to_string());
    }
    fn confirmed(&mut self, body: String) {
        self.confirmed.insert(body);
    }
}

/// Publishes `m<k>` to the queue `jobs` through the nodes in turn until
/// told to stop; a connection that fails is opened again on the next
/// node.
pub(super) async fn publish(addrs: Vec<SocketAddr>, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    publish_to(addrs, "jobs", "m", seen, stop).await;
}

/// Publishes `<prefix><k>` to `queue` through the nodes in turn until
/// told to stop, recording each in `seen`.
async fn publish_to<R: Record>(
    addrs: Vec<SocketAddr>,
    queue: &str,
    prefix: &str,
    seen: Arc<Mutex<R>>,
    stop: Arc<AtomicBool>,
) {
    let mut k = 0u64;
    let mut node = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let Some(mut c) = next_node(&addrs, &mut node).await else {
            continue;
        };
        for _ in 0..50 {
            k += 1;
            let body = format!("{prefix}{k}");
            seen.lock().expect("seen").attempted(&body);
            let Some(got) = c.try_cmd(&format!("PUB \"\" {queue} {body}")).await else {
                break;
            };
            if got.ends_with("routed=1") {
                seen.lock().expect("seen").confirmed(body);
            }
        }
    }
}

/// Takes from the queue's leader (`GET`, then `ACK`) until told to stop.
async fn consume(addrs: Vec<SocketAddr>, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    let mut node = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let Some(mut c) = next_node(&addrs, &mut node).await else {
            continue;
        };
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Some((bodies, acked)) = c.try_get("jobs", 20).await else {
                break;
            };
            let empty = bodies.is_empty();
            {
                let mut s = seen.lock().expect("seen");
                s.deliveries += bodies.len() as u64;
                s.delivered.extend(bodies);
            }
            if !acked {
                break;
            }
            if empty {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Subscribes on the nodes in turn (any node takes a replicated queue's
/// `SUB`: through the queue's leader when it does not lead it) and acks
/// each delivery, until told to stop; a subscription cancelled (the lead
/// moved), a connection that fails or a node that sends nothing for a few
/// seconds, and it subscribes again on the next node.
async fn subscribe(addrs: Vec<SocketAddr>, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    let mut node = 1usize;
    while !stop.load(Ordering::Relaxed) {
        let Some(mut c) = next_node(&addrs, &mut node).await else {
            continue;
        };
        match c.try_cmd("SUB jobs prefetch=20 tag=s").await {
            Some(ok) if ok.starts_with("OK") => {}
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        while !stop.load(Ordering::Relaxed) {
            let Some(line) = c.try_line().await else {
                break;
            };
            if line.starts_with("NOTICE cancelled") {
                break;
            }
            // The ACKs' replies, and other notices, pass.
            let Some((head, len)) = line
                .starts_with("MSG ")
                .then(|| crate::common::split_literal(&line))
                .flatten()
            else {
                continue;
            };
            let Some(body) = c.try_literal(len).await else {
                break;
            };
            {
                let mut s = seen.lock().expect("seen");
                s.deliveries += 1;
                s.pushed += 1;
                s.delivered
                    .insert(String::from_utf8_lossy(&body).into_owned());
            }
            let dtag = head.split_whitespace().nth(2).unwrap_or_default();
            if c.try_send(&format!("ACK {dtag}")).await.is_none() {
                break;
            }
        }
    }
}

/// A connection to the node after `node` (which it moves on to); `None`,
/// after a short pause, when that node does not answer.
async fn next_node(addrs: &[SocketAddr], node: &mut usize) -> Option<TestConn> {
    *node = (*node + 1) % addrs.len();
    let c = connect(addrs[*node]).await;
    if c.is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c
}

/// A connection, or `None` when the node does not answer.
async fn connect(addr: SocketAddr) -> Option<TestConn> {
    let tcp = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    TestConn::from_stream(tcp).await
}

/// What the stream's clients saw.
#[derive(Default)]
struct StreamSeen {
    /// Publishes answered `OK`, and every one sent.
    confirmed: BTreeSet<String>,
    attempted: BTreeSet<String>,
    /// Offsets the group acked with an `OK`, each with when (seconds
    /// into the run), the subscription (counted from 1) and the node.
    acked: BTreeMap<u64, (f64, u64, usize)>,
    /// Each subscription's number and first offset, when and through
    /// which node.
    starts: Vec<(u64, u64, f64, usize)>,
    /// Offsets delivered to the group.
    delivered: BTreeSet<u64>,
    /// Deliveries to the group, and its subscriptions.
    deliveries: u64,
    subscriptions: u64,
    /// A subscription whose first offset was one acked with an `OK` before
    /// it (the group resumes at its committed offset, the lowest not
    /// acked: an acked one there went back past an ack).
    backwards: Vec<u64>,
}

impl Record for StreamSeen {
    fn attempted(&mut self, body: &str) {
        self.attempted.insert(body.to_string());
    }
    fn confirmed(&mut self, body: String) {
        self.confirmed.insert(body);
    }
}

impl StreamSeen {
    /// The highest offset such that it and every offset before it were
    /// acked with an `OK` (0: none), for the report.
    fn acked_through(&self) -> u64 {
        let mut through = 0;
        for o in self.acked.keys() {
            if *o != through + 1 {
                break;
            }
            through = *o;
        }
        through
    }

    /// The first offset below the highest delivered that the group never
    /// got (a message skipped), if any.
    fn skipped(&self) -> Option<u64> {
        let last = self.delivered.last().copied().unwrap_or(0);
        (1..=last).find(|o| !self.delivered.contains(o))
    }
}

/// Reads the stream as group `g` through the nodes in turn, acking each
/// delivery, until told to stop; records what the group check needs.
async fn read_as_group(
    addrs: Vec<SocketAddr>,
    seen: Arc<Mutex<StreamSeen>>,
    stop: Arc<AtomicBool>,
) {
    let mut node = 2usize;
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let Some(mut c) = next_node(&addrs, &mut node).await else {
            continue;
        };
        match c
            .try_cmd("SUB log group=g offset=first prefetch=20 tag=g")
            .await
        {
            Some(ok) if ok.starts_with("OK") => {}
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        seen.lock().expect("seen").subscriptions += 1;
        let mut first = true;
        // The offsets whose ACK has no answer yet, in the order sent.
        let mut acking = std::collections::VecDeque::new();
        while !stop.load(Ordering::Relaxed) {
            let Some(line) = c.try_line().await else {
                break;
            };
            if line.starts_with("NOTICE cancelled") {
                break;
            }
            if line.starts_with("OK") || line.starts_with("ERR") {
                if let Some(o) = acking.pop_front() {
                    if line == "OK" {
                        let mut s = seen.lock().expect("seen");
                        let at = (started.elapsed().as_secs_f64(), s.subscriptions, node + 1);
                        s.acked.insert(o, at);
                    }
                }
                continue;
            }
            let Some((head, len)) = line
                .starts_with("MSG ")
                .then(|| crate::common::split_literal(&line))
                .flatten()
            else {
                continue;
            };
            if c.try_literal(len).await.is_none() {
                break;
            }
            let msg = crate::common::Msg::parse(&head, Vec::new());
            let Some(offset) = msg.offset else {
                continue;
            };
            {
                let mut s = seen.lock().expect("seen");
                s.deliveries += 1;
                s.delivered.insert(offset);
                let now = started.elapsed().as_secs_f64();
                if std::mem::take(&mut first) {
                    let sub = s.subscriptions;
                    s.starts.push((sub, offset, now, node + 1));
                    if let Some((t, sub, n)) = s.acked.get(&offset).copied() {
                        s.backwards.push(offset);
                        // The subscriptions since that ack, to tell a
                        // group that went back from one that was taken
                        // back before it by an offset not acked.
                        let since: Vec<String> = s
                            .starts
                            .iter()
                            .filter(|(k, ..)| *k >= sub)
                            .map(|(k, o, t, n)| format!("#{k}: {o} at {t:.1}s via node {n}"))
                            .collect();
                        eprintln!(
                            "{now:>8.1}s the group (subscription {}), subscribed through node {}, began at offset {offset}, acked with an OK before (at {t:.1}s in subscription {sub} through node {n}; the highest acked: {:?}); the starts since: {since:?}",
                            s.subscriptions,
                            node + 1,
                            s.acked.keys().last()
                        );
                    }
                }
            }
            if c.try_send(&format!("ACK {}", msg.dtag)).await.is_none() {
                break;
            }
            acking.push_back(offset);
        }
    }
}

/// The stream checks: the group skipped no offset, and every node's copy
/// is the same, offset by offset, with every confirmed publish in it and
/// nothing never published. What was seen, in words (the check that the
/// group never went back past an ack is the caller's, last).
async fn check_stream(addrs: &[SocketAddr], seen: &StreamSeen) -> String {
    assert_eq!(seen.skipped(), None, "the group never got this offset");
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let mut copies = Vec::new();
        for a in addrs {
            copies.push(super::streams::copy_at(*a, "log").await);
        }
        let complete = copies.iter().all(|c| {
            let have: BTreeSet<&String> = c.iter().map(|(_, b)| b).collect();
            seen.confirmed.iter().all(|b| have.contains(b))
        });
        let same = copies.windows(2).all(|w| w[0] == w[1]);
        if complete && same {
            let c = &copies[0];
            let dense = c.iter().enumerate().all(|(i, (o, _))| *o == i as u64 + 1);
            assert!(dense, "a gap in the stream's offsets");
            let unknown: Vec<_> = c
                .iter()
                .filter(|(_, b)| !seen.attempted.contains(b))
                .collect();
            assert!(unknown.is_empty(), "never published: {unknown:?}");
            return format!(
                "{} published ({} confirmed), {} kept alike on 3 nodes; the group: {} subscriptions, {} deliveries of {} offsets (none skipped), {} acked with OK (through {} without a gap), {} times started again at an acked one",
                seen.attempted.len(),
                seen.confirmed.len(),
                c.len(),
                seen.subscriptions,
                seen.deliveries,
                seen.delivered.len(),
                seen.acked.len(),
                seen.acked_through(),
                seen.backwards.len()
            );
        }
        if Instant::now() > until {
            let lens: Vec<usize> = copies.iter().map(Vec::len).collect();
            let first_diff = (0..lens.iter().copied().min().unwrap_or(0))
                .find(|i| copies.iter().any(|c| c[*i] != copies[0][*i]));
            panic!(
                "the stream's copies: lengths {lens:?}, every confirmed publish in each: {complete}, first difference at {first_diff:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
