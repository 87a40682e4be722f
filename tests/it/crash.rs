//! The crash test: the real `sluice` binary is SIGKILLed while a publisher
//! pipelines persistent messages (fanned out to two durable queues) and a
//! consumer acks; it is restarted on the same directory, and every message
//! whose `PUB` was answered `OK` must be there, exactly as published.
//!
//! Counting follows the Jepsen "total queue" idea: every message carries an
//! id and a checksum; `ok` ids must all be found (lost = 0), found ids must
//! have been sent (unexpected = 0), bodies must match their id (corrupted =
//! 0), and an id delivered twice must be flagged `redelivered` the second
//! time (unflagged duplicates = 0).

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use sluice::client::Client;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::sluice_bin;

/// Kill/restart cycles in the CI version of the test; the long version
/// sets `SLUICE_CRASH_CYCLES` (e.g. 20, see the README's "Development").
const CYCLES: usize = 3;

fn cycles() -> usize {
    std::env::var("SLUICE_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CYCLES)
}
/// Publishes in flight per publisher.
const WINDOW: usize = 128;

struct Broker {
    child: Child,
    addr: String,
}

async fn start(dir: &std::path::Path) -> Broker {
    start_with(dir, &[]).await
}

/// `sluice serve` on a free port and `dir`, logging warnings only.
fn serve(dir: &std::path::Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "warn");
    cmd
}

fn spawn(dir: &std::path::Path, extra: &[&str]) -> Child {
    serve(dir, extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sluice")
}

async fn start_with(dir: &std::path::Path, extra: &[&str]) -> Broker {
    let mut child = spawn(dir, extra);
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("no listening line in time")
        .expect("read stdout")
        .expect("sluice exited before listening");
    let addr = first
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_string();
    Broker { child, addr }
}

fn body_for(id: &str) -> Vec<u8> {
    let crc = crc32fast::hash(id.as_bytes());
    format!("{id}:{crc:08x}:{}", "p".repeat(64)).into_bytes()
}

fn check_body(id: &str, body: &[u8]) -> bool {
    body == body_for(id).as_slice()
}

/// Publishes with a window until killed; returns the ids confirmed.
async fn publish_until_dead(
    addr: &str,
    cycle: usize,
    confirmed: &mut HashSet<String>,
    sent: &mut HashSet<String>,
) {
    let Ok(mut c) = Client::connect(addr).await else {
        return;
    };
    let mut inflight = std::collections::VecDeque::new();
    let mut seq = 0usize;
    loop {
        while inflight.len() < WINDOW {
            seq += 1;
            let id = format!("c{cycle}-{seq}");
            let (ex, key) = if seq % 2 == 0 { ("fan", "") } else { ("", "q") };
            let h = c.send_publish(ex, key, &format!("persistent id={id}"), &body_for(&id));
            sent.insert(id.clone());
            inflight.push_back((id, h));
        }
        if c.flush().await.is_err() {
            return;
        }
        let Some((id, h)) = inflight.pop_front() else {
            return;
        };
        match h.wait().await {
            Ok(r) => {
                assert_eq!(r.words.first(), Some(&id), "confirm for the wrong message");
                confirmed.insert(id);
            }
            Err(e) if e.code().is_some() => panic!("publish {id} refused: {e}"),
            Err(_) => return, // connection died: outcome unknown ("info")
        }
    }
}

/// Consumes `queue` (GET, then ACK of the batch) until the connection
/// dies, recording what it saw: acks are in flight when the kill comes.
async fn consume_until_dead(addr: &str, queue: &str, seen: &mut HashMap<String, Vec<(bool, u32)>>) {
    let Ok(mut c) = Client::connect(addr).await else {
        return;
    };
    loop {
        // Waits up to 50 ms for a first message when the queue is empty.
        let Ok(r) = c
            .request(&format!("GET {queue} count=100 wait=50"), None)
            .await
        else {
            return;
        };
        let Some(last) = r.deliveries.last().map(|d| d.delivery_tag) else {
            continue;
        };
        for d in r.deliveries {
            assert!(check_body(&d.id, &d.body), "corrupted body for {}", d.id);
            seen.entry(format!("{queue}/{}", d.id))
                .or_default()
                .push((d.redelivered, d.deliveries));
        }
        if c.request(&format!("ACK {last} multiple"), None)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Drains a queue with GET, acking everything; returns id -> deliveries seen.
async fn drain(c: &mut Client, queue: &str, seen: &mut HashMap<String, Vec<(bool, u32)>>) {
    loop {
        let r = c
            .request(&format!("GET {queue} count=1000"), None)
            .await
            .expect("GET");
        if r.deliveries.is_empty() {
            break;
        }
        let last = r.deliveries.last().map(|d| d.delivery_tag).unwrap_or(0);
        for d in r.deliveries {
            assert!(check_body(&d.id, &d.body), "corrupted body for {}", d.id);
            seen.entry(format!("{queue}/{}", d.id))
                .or_default()
                .push((d.redelivered, d.deliveries));
        }
        c.request(&format!("ACK {last} multiple"), None)
            .await
            .expect("ACK");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_confirmed_publishing_loses_no_confirmed_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = start(dir.path()).await;
    {
        let mut c = Client::connect(&broker.addr).await.expect("connect");
        for line in [
            "DECLARE QUEUE q durable",
            "DECLARE EXCHANGE fan fanout durable",
            "DECLARE QUEUE f1 durable",
            "DECLARE QUEUE f2 durable",
            "BIND f1 fan",
            "BIND f2 fan",
        ] {
            c.request(line, None).await.expect(line);
        }
    }
    let mut confirmed = HashSet::new();
    let mut sent = HashSet::new();
    let mut seen = HashMap::new();
    let cycles = cycles();
    for cycle in 0..cycles {
        let before = confirmed.len();
        let addr = broker.addr.clone();
        let mut conf = HashSet::new();
        let mut snt = HashSet::new();
        let mut seen_q = HashMap::new();
        let mut seen_f1 = HashMap::new();
        // Kill at a point that varies by cycle, once publishing is well under way.
        let kill_after = Duration::from_millis(300 + 250 * (cycle % 8) as u64);
        let publisher = async {
            publish_until_dead(&addr, cycle, &mut conf, &mut snt).await;
        };
        let consumers = async {
            tokio::join!(
                consume_until_dead(&addr, "q", &mut seen_q),
                consume_until_dead(&addr, "f1", &mut seen_f1)
            );
        };
        let killer = async {
            tokio::time::sleep(kill_after).await;
            broker.child.start_kill().expect("SIGKILL");
            let _ = broker.child.wait().await;
        };
        tokio::join!(publisher, consumers, killer);
        confirmed.extend(conf);
        sent.extend(snt);
        for (k, v) in seen_q.into_iter().chain(seen_f1) {
            seen.entry(k).or_insert_with(Vec::new).extend(v);
        }
        assert!(
            confirmed.len() > before,
            "cycle {cycle}: nothing was confirmed before the kill"
        );
        if cycle % 3 == 2 {
            // A kill during recovery: the next start must still find it all.
            let mut child = spawn(dir.path(), &[]);
            tokio::time::sleep(Duration::from_millis(3 * cycle as u64)).await;
            child.start_kill().expect("SIGKILL during recovery");
            let _ = child.wait().await;
        }
        broker = start(dir.path()).await;
    }
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    for q in ["q", "f1", "f2"] {
        drain(&mut c, q, &mut seen).await;
    }
    let mut lost = Vec::new();
    for id in &confirmed {
        let n: usize = id
            .rsplit('-')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let queues: &[&str] = if n % 2 == 0 { &["f1", "f2"] } else { &["q"] };
        for q in queues {
            if !seen.contains_key(&format!("{q}/{id}")) {
                lost.push(format!("{q}/{id}"));
            }
        }
    }
    let unexpected: Vec<_> = seen
        .keys()
        .filter(|k| !sent.contains(k.split_once('/').map(|(_, id)| id).unwrap_or("")))
        .collect();
    let unflagged: Vec<_> = seen
        .iter()
        .filter(|(_, ds)| {
            ds.iter()
                .skip(1)
                .any(|(redelivered, n)| !*redelivered || *n < 2)
        })
        .collect();
    eprintln!(
        "crash test: cycles={cycles} sent={} confirmed={} found={} lost={} unexpected={} unflagged_dups={}",
        sent.len(),
        confirmed.len(),
        seen.len(),
        lost.len(),
        unexpected.len(),
        unflagged.len()
    );
    assert!(
        lost.is_empty(),
        "confirmed but lost: {:?}",
        &lost[..lost.len().min(20)]
    );
    assert!(unexpected.is_empty(), "never sent: {unexpected:?}");
    assert!(
        unflagged.is_empty(),
        "duplicates without redelivered: {unflagged:?}"
    );
    assert!(
        confirmed.len() >= 1000,
        "too few confirms to mean anything: {}",
        confirmed.len()
    );
}

/// Rejects (NACK requeue=false, 100 at a time) everything on `src` until
/// the connection dies; counts the rejections confirmed.
async fn reject_until_dead(addr: &str, rejected: &std::sync::atomic::AtomicUsize) {
    let Ok(mut c) = Client::connect(addr).await else {
        return;
    };
    loop {
        let Ok(r) = c.request("GET src count=100", None).await else {
            return;
        };
        let Some(last) = r.deliveries.last().map(|d| d.delivery_tag) else {
            return;
        };
        let n = r.deliveries.len();
        if c.request(&format!("NACK {last} multiple requeue=false"), None)
            .await
            .is_err()
        {
            return;
        }
        rejected.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_dead_lettering_leaves_each_message_in_exactly_one_queue() {
    const TOTAL: usize = 6000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = start(dir.path()).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    for line in [
        "DECLARE EXCHANGE dlx fanout durable",
        "DECLARE QUEUE dlq durable",
        "BIND dlq dlx",
        "DECLARE QUEUE src durable dead-letter=dlx",
    ] {
        c.request(line, None).await.expect(line);
    }
    let mut handles = std::collections::VecDeque::new();
    for i in 0..TOTAL {
        let id = format!("d{i}");
        handles.push_back(c.send_publish("", "src", &format!("id={id}"), &body_for(&id)));
        if handles.len() >= WINDOW || i + 1 == TOTAL {
            c.flush().await.expect("flush");
            while let Some(h) = handles.pop_front() {
                h.wait().await.expect("confirm");
            }
        }
    }
    drop(c);
    // Kill once a quarter has been dead-lettered, while rejections stream.
    let rejected = std::sync::atomic::AtomicUsize::new(0);
    let addr = broker.addr.clone();
    let killer = async {
        while rejected.load(std::sync::atomic::Ordering::SeqCst) < TOTAL / 4 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        broker.child.start_kill().expect("SIGKILL");
        let _ = broker.child.wait().await;
    };
    tokio::join!(reject_until_dead(&addr, &rejected), killer);
    let confirmed_rejections = rejected.load(std::sync::atomic::Ordering::SeqCst);
    let broker = start(dir.path()).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    let mut seen = HashMap::new();
    for q in ["src", "dlq"] {
        drain(&mut c, q, &mut seen).await;
    }
    let mut where_found: HashMap<String, Vec<String>> = HashMap::new();
    for key in seen.keys() {
        if let Some((q, id)) = key.split_once('/') {
            where_found
                .entry(id.to_string())
                .or_default()
                .push(q.to_string());
        }
    }
    let in_dlq = where_found.values().filter(|qs| qs == &&["dlq"]).count();
    let missing: Vec<String> = (0..TOTAL)
        .map(|i| format!("d{i}"))
        .filter(|id| !where_found.contains_key(id))
        .collect();
    let doubled: Vec<_> = where_found.iter().filter(|(_, qs)| qs.len() > 1).collect();
    eprintln!(
        "dead-letter crash test: total={TOTAL} rejections_confirmed={confirmed_rejections} in_dlq={in_dlq} missing={} in_both={}",
        missing.len(),
        doubled.len()
    );
    assert!(
        missing.is_empty(),
        "in neither queue: {:?}",
        &missing[..missing.len().min(20)]
    );
    assert!(doubled.is_empty(), "in both queues: {doubled:?}");
    assert!(
        in_dlq >= confirmed_rejections,
        "confirmed rejections lost: {in_dlq} in the DLQ, {confirmed_rejections} confirmed"
    );
    for (key, deliveries) in &seen {
        if key.starts_with("dlq/") {
            assert_eq!(deliveries.len(), 1, "{key} delivered twice from the DLQ");
        }
    }
}

#[tokio::test]
async fn a_crash_does_not_use_up_the_delivery_limit_of_an_undelivered_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = start(dir.path()).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    c.request("DECLARE QUEUE once durable delivery-limit=1", None)
        .await
        .expect("declare");
    c.publish("", "once", "id=never-delivered", b"job")
        .await
        .expect("publish");
    drop(c);
    broker.child.start_kill().expect("SIGKILL");
    let _ = broker.child.wait().await;
    let broker = start(dir.path()).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    let r = c.request("GET once", None).await.expect("GET");
    assert_eq!(r.deliveries.len(), 1, "dead-lettered by the crash alone");
    let d = &r.deliveries[0];
    assert_eq!(d.id, "never-delivered");
    assert!(d.redelivered, "after a crash it may have been delivered");
}

/// Pages a backlog out, crashes, then stops cleanly before the paged-out
/// part was read back: those messages must still come flagged as possibly
/// delivered after the next start (the flag is applied when a message is
/// read back, so the clean stop must not hide the crash).
#[tokio::test]
async fn a_paged_out_backlog_keeps_its_crash_flag_across_a_clean_stop() {
    const SMALL: [&str; 2] = ["--queue-memory", "4096"];
    const N: usize = 1500;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = start_with(dir.path(), &SMALL).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    c.request("DECLARE QUEUE backlog durable", None)
        .await
        .expect("declare");
    for i in 0..N {
        c.publish("", "backlog", &format!("id=m-{i}"), b"x")
            .await
            .expect("publish");
    }
    drop(c);
    broker.child.start_kill().expect("SIGKILL");
    let _ = broker.child.wait().await;

    let broker = start_with(dir.path(), &SMALL).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    let r = c
        .request("GET backlog count=100 ack=auto", None)
        .await
        .expect("GET");
    assert_eq!(r.deliveries.len(), 100);
    for (i, d) in r.deliveries.iter().enumerate() {
        assert_eq!(d.id, format!("m-{i}"));
        assert!(d.redelivered, "{} after a crash", d.id);
    }
    drop(c);
    stop_cleanly(broker).await;

    let broker = start_with(dir.path(), &SMALL).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    let mut next = 100;
    while next < N {
        let r = c
            .request("GET backlog count=1000 ack=auto", None)
            .await
            .expect("GET");
        assert!(!r.deliveries.is_empty(), "backlog ended at {next}");
        for d in &r.deliveries {
            assert_eq!(d.id, format!("m-{next}"));
            assert!(d.redelivered, "{} lost its crash flag", d.id);
            // Never delivered: one possible delivery for the crash, this one.
            assert_eq!(d.deliveries, 2, "{} counted the crash twice", d.id);
            next += 1;
        }
    }
}

/// SIGTERM: the clean shutdown.
async fn stop_cleanly(mut broker: Broker) {
    let pid = broker.child.id().expect("pid").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill -TERM");
    assert!(status.success());
    let exit = broker.child.wait().await.expect("wait");
    assert!(exit.success(), "clean stop: {exit:?}");
}

/// Runs `sluice serve` on `dir` expecting it to refuse: returns its stderr.
async fn refused(dir: &std::path::Path) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        serve(dir, &[]).env("RUST_LOG", "error").output(),
    )
    .await
    .expect("a damaged store must be refused, not served")
    .expect("run sluice");
    assert_eq!(out.status.code(), Some(1), "exit status of a refused start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// sled 0.34 takes a damaged log record for the torn end of its log and
/// would start without everything after it; the commit mark beside it
/// turns that into a refusal to start, with a clear error and exit 1.
#[tokio::test]
async fn a_damaged_or_truncated_store_is_refused_not_served_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    c.request("DECLARE QUEUE q durable", None)
        .await
        .expect("declare");
    for i in 0..300 {
        c.publish("", "q", &format!("id=m{i}"), &body_for(&format!("m{i}")))
            .await
            .expect("publish");
    }
    drop(c);
    stop_cleanly(broker).await;
    let db = |d: &std::path::Path| d.join("db");
    let len = std::fs::metadata(db(dir.path())).expect("db").len();

    // One flipped bit in the middle of the log.
    let flipped = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), flipped.path());
    let mut bytes = std::fs::read(db(flipped.path())).expect("read db");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(db(flipped.path()), bytes).expect("write db");
    let err = refused(flipped.path()).await;
    assert!(err.contains("confirmed are missing"), "{err}");

    // The log cut in half.
    let cut = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), cut.path());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(db(cut.path()))
        .expect("open db");
    f.set_len(len / 2).expect("truncate");
    drop(f);
    let err = refused(cut.path()).await;
    assert!(err.contains("confirmed are missing"), "{err}");

    // The undamaged directory still serves everything.
    let broker = start(dir.path()).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    let r = c
        .request("DECLARE QUEUE q durable", None)
        .await
        .expect("declare");
    assert_eq!(r.words, ["q", "messages=300", "consumers=0"]);
}
