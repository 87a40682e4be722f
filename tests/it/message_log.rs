//! The message log on disk (issue 17), from outside: damage to a segment
//! is refused and never served short, a torn tail above the commit mark is
//! cut and logged with nothing confirmed lost, and a data directory whose
//! messages an older release kept in sled is migrated crash-safely (killed
//! anywhere, nothing lost or doubled).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sluice::client::Client;
use sluice::protocol::command::QueueArgs;
use sluice::store::TopologyStore;
use sluice::store::{Durable, MessageBatch, MessageMeta, MessageStore, QueueDef, SledStore};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::faults::Rng;
use crate::common::TestConn;
use crate::crash::{copy_dir, refused, serve, start, stop_cleanly};

/// A body of about `len` bytes that names its id, so a wrong or damaged
/// one is told apart.
fn big_body(id: &str, len: usize) -> Vec<u8> {
    let crc = crc32fast::hash(id.as_bytes());
    let mut b = format!("{id}:{crc:08x}:").into_bytes();
    b.resize(len, b'a' + (crc % 26) as u8);
    b
}

/// Every message of queue `q`, `id -> (count, body ok)`, taken with GETs.
async fn drain(addr: &str, q: &str, body_len: usize) -> HashMap<String, (u32, bool)> {
    let mut c = Client::connect(addr).await.expect("connect");
    let mut seen: HashMap<String, (u32, bool)> = HashMap::new();
    loop {
        let r = c
            .request(&format!("GET {q} count=500 ack=auto"), None)
            .await
            .expect("GET");
        if r.deliveries.is_empty() {
            return seen;
        }
        for d in &r.deliveries {
            let ok = d.body[..] == big_body(&d.id, body_len)[..];
            let e = seen.entry(d.id.clone()).or_insert((0, true));
            e.0 += 1;
            e.1 &= ok;
        }
    }
}

/// The segment files of the one queue directory under `data/log`.
fn segments(data: &Path) -> Vec<PathBuf> {
    let log = data.join("log");
    let dir = std::fs::read_dir(&log)
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.file_name().is_some_and(|n| n != "wal"))
        .expect("a queue directory");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("queue dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs
}

/// Starts `sluice serve` on `dir` with its log in `log_file`; returns it
/// and its address.
async fn start_logging(dir: &Path, log_file: &Path) -> (tokio::process::Child, String) {
    let log = std::fs::File::create(log_file).expect("log file");
    let mut child = serve(dir, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .expect("listening in time")
    .expect("read")
    .expect("a listening line");
    let addr = line
        .strip_prefix("listening on ")
        .expect("line")
        .to_string();
    (child, addr)
}

#[tokio::test]
async fn damage_to_a_segment_is_refused_and_a_torn_tail_is_cut_with_nothing_lost() {
    const N: usize = 300;
    const LEN: usize = 32 * 1024; // 9.6 MB: more than one 8 MiB segment
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    c.request("DECLARE QUEUE q durable", None)
        .await
        .expect("declare");
    for i in 0..N {
        let id = format!("m{i}");
        c.publish("", "q", &format!("id={id}"), &big_body(&id, LEN))
            .await
            .expect("publish");
    }
    drop(c);
    stop_cleanly(broker).await;
    // A start checkpoints: the segments are synced and their commit marks
    // cover every entry; the write-ahead file that held them is gone.
    stop_cleanly(start(dir.path()).await).await;
    let segs = segments(dir.path());
    assert!(segs.len() >= 2, "{segs:?}");

    // One flipped bit in the middle of the sealed segment's messages: a
    // start reads its footer and index, not its messages, so it serves;
    // the damaged message is refused when it is read (logged), never
    // delivered altered, and the messages behind it wait.
    let flipped = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), flipped.path());
    let seg = segments(flipped.path())[0].clone();
    let mut bytes = std::fs::read(&seg).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&seg, bytes).expect("write");
    let log = flipped.path().join("sluice.log");
    let (mut child, addr) = start_logging(flipped.path(), &log).await;
    let seen = drain(&addr, "q", LEN).await;
    // The failed read is counted where monitoring sees it.
    let mut c = TestConn::connect(addr.parse().expect("addr")).await;
    let (_, stats) = c.data("STATS QUEUE q").await;
    let errors = stats.lines().find_map(|l| {
        l.strip_prefix("store_read_errors_total")
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    assert!(errors.is_some_and(|n| n >= 1), "{stats}");
    drop(c);
    child.kill().await.expect("kill");
    assert!(seen.len() < N, "a damaged message was served");
    assert!(
        seen.values().all(|(n, ok)| *n == 1 && *ok),
        "served altered"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("corrupt"), "{text}");

    // The sealed segment cut short: its footer is gone, refused at start.
    let short = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), short.path());
    let seg = segments(short.path())[0].clone();
    let len = std::fs::metadata(&seg).expect("meta").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open");
    f.set_len(len - 10).expect("truncate");
    drop(f);
    let err = refused(short.path()).await;
    assert!(err.contains("corrupt"), "{err}");

    // The active segment cut in half: confirmed entries missing.
    let cut = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), cut.path());
    let seg = segments(cut.path()).pop().expect("active segment");
    let len = std::fs::metadata(&seg).expect("meta").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open");
    f.set_len(len / 2).expect("truncate");
    drop(f);
    let err = refused(cut.path()).await;
    assert!(err.contains("corrupt"), "{err}");

    // Garbage after the last entry (a write never confirmed): cut, logged.
    let torn = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), torn.path());
    let seg = segments(torn.path()).pop().expect("active segment");
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes.extend_from_slice(&[0x5a; 100]);
    std::fs::write(&seg, bytes).expect("write");
    let log = torn.path().join("sluice.log");
    let (mut child, addr) = start_logging(torn.path(), &log).await;
    let seen = drain(&addr, "q", LEN).await;
    child.kill().await.expect("kill");
    assert_eq!(seen.len(), N);
    assert!(
        seen.values().all(|(n, ok)| *n == 1 && *ok),
        "lost, doubled or damaged"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("cut the torn tail"), "{text}");

    // The undamaged directory still serves everything.
    let broker = start(dir.path()).await;
    let seen = drain(&broker.addr, "q", LEN).await;
    assert_eq!(seen.len(), N);
}

/// Writes what an older release left: messages in sled's `messages` tree
/// (through the sled store's own message code, which wrote them), in two
/// queues, every third body shared by a copy in each.
fn old_release_directory(dir: &Path, n: u64, len: usize) {
    let old = SledStore::open(dir, 32 << 20).expect("open sled");
    let queue = |name: &str, id| QueueDef {
        name: name.into(),
        id,
        auto_delete: false,
        args: QueueArgs::default(),
    };
    let (a, b) = (queue("a", 1), queue("b", 2));
    MessageStore::recover(&old, &[]).expect("recover");
    old.put_queue(&a).expect("queue a");
    old.put_queue(&b).expect("queue b");
    for i in 0..n {
        let id = format!("m{i}");
        let body = big_body(&id, len);
        let meta = MessageMeta {
            body_id: i + 1,
            id: id.clone(),
            exchange: String::new(),
            routing_key: "a".into(),
            headers: vec![],
            deliveries: 0,
            expires_at: None,
            not_before: None,
            priority: 0,
            volatile: false,
            published_at: 1,
            group: None,
        };
        let mut copies = vec![(1, i + 1, &meta)];
        if i % 3 == 0 {
            copies.push((2, i + 1, &meta));
        }
        old.apply(&MessageBatch {
            put_bodies: vec![(i + 1, &body)],
            put_metas: copies,
            ..MessageBatch::default()
        })
        .expect("apply");
    }
    old.sync().expect("sync");
    MessageStore::set_clean(&old, true).expect("clean");
    old.sync().expect("sync");
}

#[tokio::test]
async fn a_migration_from_sled_killed_anywhere_loses_and_doubles_nothing() {
    const N: u64 = 6000;
    const LEN: usize = 2048;
    let dir = tempfile::tempdir().expect("tempdir");
    old_release_directory(dir.path(), N, LEN);
    // How long a start with the migration takes, on a copy.
    let probe = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), probe.path());
    let t = std::time::Instant::now();
    let broker = start(probe.path()).await;
    let typical = t.elapsed();
    stop_cleanly(broker).await;
    assert!(!probe.path().join("log.migrating").exists());

    let mut rng = Rng::from_env();
    let mut mid_migration = 0;
    const ROUNDS: usize = 6;
    for _ in 0..ROUNDS {
        // A fresh copy of the old directory, killed at a random point of
        // its first start (twice: a migration killed, then its restart).
        let run = tempfile::tempdir().expect("tempdir");
        copy_dir(dir.path(), run.path());
        for _ in 0..2 {
            let mut child = serve(run.path(), &[])
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn");
            tokio::time::sleep(typical.mul_f64(rng.unit())).await;
            child.kill().await.expect("kill");
            if run.path().join("log.migrating").exists() {
                mid_migration += 1;
            }
        }
        let broker = start(run.path()).await;
        let a = drain(&broker.addr, "a", LEN).await;
        let b = drain(&broker.addr, "b", LEN).await;
        assert_eq!(a.len() as u64, N, "queue a");
        assert_eq!(b.len() as u64, N.div_ceil(3), "queue b");
        for (q, seen) in [("a", &a), ("b", &b)] {
            let bad: Vec<_> = seen.iter().filter(|(_, (n, ok))| *n != 1 || !*ok).collect();
            assert!(bad.is_empty(), "{q}: lost, doubled or damaged: {bad:?}");
        }
    }
    // The checker must have seen kills inside the migration.
    assert!(mid_migration >= 1, "no kill landed inside the migration");
    println!(
        "migration: {mid_migration}/{} kills inside it; a start migrating {N} copies took {typical:?}",
        2 * ROUNDS
    );
}
