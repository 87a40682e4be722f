//! Starts that always succeed when the data is intact (issue 15).
//!
//! - A torn or empty `snap.<lsn>.generating`, which sled leaves when it is
//!   stopped while writing a snapshot (and which sled 0.34.7 then prefers
//!   to the real one and refuses to open), is removed before sled opens:
//!   the start succeeds, says so in the log, and serves everything.
//! - SIGKILL at random moments while a directory with a large backlog
//!   recovers (sled's log replay and snapshot, sluice's scan), over and
//!   over: every start that is let finish succeeds, and at the end every
//!   confirmed message is there, intact. `SLUICE_RECOVERY_KILLS=200` runs
//!   the issue's count on a larger backlog (default: 15 kills).

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::faults::{holds_open, Rng};
use crate::common::ledger::{collect, pub_frame, Conn, Ledger, Verdict};
use crate::common::spawned::Spawned;
use crate::common::{sluice_bin, DEADLINE};

/// Bodies of the backlog: small, so that the backlog is many messages.
const SIZES: std::ops::RangeInclusive<usize> = 200..=1200;

fn kills() -> usize {
    std::env::var("SLUICE_RECOVERY_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
}

/// Publishes `n` messages `<prefix>-<i>` to `queue`, 500 in flight;
/// returns what was confirmed.
async fn publish(addr: SocketAddr, queue: &str, prefix: &str, n: usize, ledger: &mut Ledger) {
    let mut c = Conn::connect(addr).await;
    let mut i = 0;
    while i < n {
        let batch = (n - i).min(500);
        let mut frames = Vec::new();
        for k in i..i + batch {
            let id = format!("{prefix}-{k}");
            frames.extend_from_slice(&pub_frame(queue, &id, SIZES));
            ledger.sent.insert(id);
        }
        assert!(c.send_raw(&frames).await, "connection closed");
        for k in i..i + batch {
            let id = format!("{prefix}-{k}");
            let reply = c.line().await.expect("reply");
            assert_eq!(reply, format!("OK {id} routed=1"));
            ledger.confirmed.insert(id);
        }
        i += batch;
    }
}

async fn declare(addr: SocketAddr, queue: &str) -> String {
    let mut c = Conn::connect(addr).await;
    assert!(c.send(&format!("DECLARE QUEUE {queue} durable")).await);
    c.line().await.expect("reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_sled_snapshot_is_removed_and_the_start_serves_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ledger = Ledger::default();
    // Two runs: sled writes its snapshot when it opens a store that has
    // a log to replay.
    for run in 0..2 {
        let mut b = Spawned::start_in(dir.path(), &[]).await;
        declare(b.addr, "s.q").await;
        publish(b.addr, "s.q", &format!("s{run}"), 150, &mut ledger).await;
        b.terminate();
        let status = b.exited().await;
        assert_eq!(status.code(), Some(0));
    }
    // What a stop while sled wrote its snapshot leaves: the file it was
    // writing, under a name that sorts after the real one. Empty, and torn
    // (the real snapshot's first half).
    let snap = std::fs::read_dir(dir.path())
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("snap."))
        })
        .expect("sled wrote a snapshot");
    let real = std::fs::read(&snap).expect("snapshot");
    std::fs::write(dir.path().join("snap.FFFFFFFFFFFFFFF0.generating"), b"").expect("empty");
    std::fs::write(
        dir.path().join("snap.FFFFFFFFFFFFFFFF.generating"),
        &real[..real.len() / 2],
    )
    .expect("torn");
    let b = match Spawned::try_start_in(dir.path(), &[]).await {
        Ok(b) => b,
        Err((status, log)) => panic!("the start failed ({status:?}): {log:?}"),
    };
    let line = b.wait_log("removed an incomplete sled snapshot").await;
    assert!(line.contains(".generating"), "{line}");
    let found = collect(b.addr, "s.q", SIZES).await;
    let v = Verdict::of(&ledger, &found);
    assert!(v.clean(), "{v:?}");
    assert_eq!(found.len(), 300);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".generating"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Where a kill landed.
#[derive(Debug, Default)]
struct Landed {
    /// Before sled had its files open.
    before_open: usize,
    /// With sled's `db` open, before sluice's own scan (`commit.mark`).
    in_sled: usize,
    /// In sluice's scan of the store.
    in_scan: usize,
    /// After the start was over (`listening on`).
    after: usize,
}

/// Starts sluice on `dir` and SIGKILLs it `after` the spawn (or as soon
/// as it holds its `db` file, for a zero pause); says where it landed.
async fn kill_after(dir: &Path, after: Duration, landed: &mut Landed) {
    let dir = std::fs::canonicalize(dir).expect("data dir");
    let mut child = Command::new(sluice_bin())
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sluice");
    let pid = child.id().expect("pid");
    let stdout = child.stdout.take().expect("stdout");
    tokio::time::sleep(after).await;
    let db = holds_open(pid, &dir.join("db")) == Some(true);
    let mark = holds_open(pid, &dir.join("commit.mark")) == Some(true);
    child.start_kill().expect("SIGKILL");
    let status = child.wait().await.expect("wait");
    let mut first = String::new();
    let _ = BufReader::new(stdout).read_line(&mut first).await;
    assert_eq!(
        status.signal(),
        Some(9),
        "sluice exited by itself during its start ({status:?})"
    );
    if first.starts_with("listening on") {
        landed.after += 1;
    } else if mark {
        landed.in_scan += 1;
    } else if db {
        landed.in_sled += 1;
    } else {
        landed.before_open += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_during_recovery_of_a_large_backlog_never_stop_a_later_start_or_lose_a_message() {
    let kills = kills();
    let long = std::env::var_os("SLUICE_RECOVERY_KILLS").is_some();
    let backlog = if long { 200_000 } else { 20_000 };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::from_env();
    let seed = rng.0;
    let mut ledger = Ledger::default();
    let mut b = Spawned::start_in(dir.path(), &[]).await;
    declare(b.addr, "r.q").await;
    publish(b.addr, "r.q", "r", backlog, &mut ledger).await;
    b.kill().await;
    let mut landed = Landed::default();
    let mut typical = Duration::ZERO;
    let mut checks = 0;
    for k in 0..kills {
        // Every fifth cycle, and first: a start let finish must succeed
        // and hold the whole backlog; it also times a whole start, and
        // publishes a little more, so that the next start has a log to
        // replay and a new snapshot to write.
        if k % 5 == 0 {
            let started = Instant::now();
            let b = match Spawned::try_start_in(dir.path(), &[]).await {
                Ok(b) => b,
                Err((status, log)) => panic!("start after {k} kills failed ({status:?}): {log:?}"),
            };
            typical = started.elapsed();
            let stored = ledger.confirmed.len();
            let reply = declare(b.addr, "r.q").await;
            assert_eq!(
                reply,
                format!("OK r.q messages={stored} consumers=0"),
                "after {k} kills"
            );
            publish(b.addr, "r.q", &format!("k{k}"), 200, &mut ledger).await;
            let mut b = b;
            b.kill().await;
            checks += 1;
        }
        // Half the kills in the first third of a start, where sled
        // replays its log and writes its snapshot; half anywhere in it.
        let span = if k % 2 == 0 { 0.3 } else { 1.1 };
        let pause = typical.mul_f64(rng.unit() * span);
        kill_after(dir.path(), pause, &mut landed).await;
    }
    let b = match Spawned::try_start_in(dir.path(), &[]).await {
        Ok(b) => b,
        Err((status, log)) => panic!("the last start failed ({status:?}): {log:?}"),
    };
    let found = tokio::time::timeout(DEADLINE * 6, collect(b.addr, "r.q", SIZES))
        .await
        .expect("collecting took too long");
    let v = Verdict::of(&ledger, &found);
    assert!(
        v.clean(),
        "seed {seed}: lost {} unexpected {}",
        v.lost.len(),
        v.unexpected.len()
    );
    assert_eq!(found.len(), ledger.confirmed.len());
    let inside = landed.in_sled + landed.in_scan;
    println!(
        "recovery kills (seed {seed}): {kills} SIGKILLs of a {backlog}-message backlog's start \
         (typical start {typical:?}): {} before sled opened, {} in sled's open, {} in sluice's \
         scan, {} after it; {checks} starts let finish all succeeded; lost 0 of {}",
        landed.before_open,
        landed.in_sled,
        landed.in_scan,
        landed.after,
        ledger.confirmed.len()
    );
    assert!(inside > 0, "no kill landed inside recovery: {landed:?}");
}
