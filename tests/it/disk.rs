//! A full disk (issue 15): the data directory on a small tmpfs.
//!
//! - **The watermark holds before `ENOSPC`.** Unpaced publishers against
//!   `--disk-free-limit` are held (`NOTICE blocked disk`) with free space
//!   left, never answered `ERR`, and resume when the disk grows.
//! - **Publishing into a full disk** (the watermark off) ends in one of two
//!   ways, never a hang: the reserve is released and publishes are held
//!   (the broker keeps serving), or the store runs into `ENOSPC` and the
//!   broker exits with status 1 within `--shutdown-timeout`.
//! - **Draining after space was freed** (acks need space in sled) ends the
//!   same ways: the queue drained, or a clean exit 1.
//! - **A start on a full disk** fails with status 1 and a clear message,
//!   twenty times over, and leaves nothing that stops the start after the
//!   disk grew.
//!
//! After each, the disk grows and a fresh start must serve every confirmed
//! message not acked, bodies intact, and none that an `ACK` removed
//! ([`Verdict`]). `SLUICE_DISK_ROUNDS=50` runs the rounds of the issue
//! (default 2: one with the reserve, one without).
//!
//! Mounting a tmpfs needs root (CI runs as root); elsewhere these tests say
//! so and pass without running.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::common::faults::Tmpfs;
use crate::common::ledger::{
    collect, pub_frame, publish_until_stopped, settle_all, Conn, End, Ledger, Settled, Verdict,
};
use crate::common::spawned::Spawned;
use crate::common::DEADLINE;

/// Bodies of the full-disk rounds: 1 KiB to 400 KiB, as in the issue.
const SIZES: RangeInclusive<usize> = 1024..=400 * 1024;
/// `--shutdown-timeout` of the rounds, in ms.
const GRACE_MS: u64 = 5_000;
/// How long a stop may take, seen from outside: the grace period, plus
/// the time a loaded machine needs to notice.
const STOP_BOUND: Duration = Duration::from_millis(GRACE_MS + 5_000);
/// A publisher that hears nothing for this long while blocked is held.
const HELD_QUIET: Duration = Duration::from_secs(1);

fn rounds() -> usize {
    std::env::var("SLUICE_DISK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

async fn declare(addr: SocketAddr, queue: &str) {
    let mut c = Conn::connect(addr).await;
    assert!(c.send(&format!("DECLARE QUEUE {queue} durable")).await);
    let reply = c.line().await.expect("reply");
    assert!(reply.starts_with(&format!("OK {queue} ")), "{reply}");
}

/// How a broker under test stopped.
#[derive(Debug)]
enum Stop {
    /// It exited by itself with status 1 (a failed store).
    Failed,
    /// It was serving; SIGTERM ended it with this status.
    Terminated(Option<i32>),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Failed => write!(f, "store failed, exit 1"),
            Stop::Terminated(code) => write!(f, "serving; SIGTERM: exit {code:?}"),
        }
    }
}

/// Ends `b`: if `gone` (it closed its connections), it must exit by itself
/// with status 1 within [`STOP_BOUND`]; otherwise it must be serving, and
/// SIGTERM must end it within [`STOP_BOUND`]. A hang fails the test.
async fn stop(b: &mut Spawned, gone: bool, what: &str) -> Stop {
    if gone {
        let status = b
            .exited_within(STOP_BOUND)
            .await
            .unwrap_or_else(|| panic!("{what}: the broker closed its connections but hangs"));
        assert_eq!(status.code(), Some(1), "{what}: {status:?}");
        b.wait_log("the store failed a write").await;
        return Stop::Failed;
    }
    b.assert_alive(what);
    let mut c = Conn::connect(b.addr).await;
    assert!(c.send("PING").await);
    assert_eq!(c.line().await.as_deref(), Some("OK pong"), "{what}");
    b.terminate();
    let status = b
        .exited_within(STOP_BOUND)
        .await
        .unwrap_or_else(|| panic!("{what}: SIGTERM did not end the broker (a hang)"));
    let code = status.code();
    assert!(matches!(code, Some(0 | 1)), "{what}: {status:?}");
    Stop::Terminated(code)
}

/// One round of items 1 and 2 of the issue: two publishers fill a 30 MiB
/// tmpfs holding an 8 MiB filler with the watermark off; then (`drain`)
/// the filler goes, the broker restarts and the queue is drained with
/// manual acks; then the disk grows and the count is made.
async fn full_disk_round(round: usize, drain: bool) -> Option<String> {
    let fs = Tmpfs::mount(30)?;
    let filler = fs.fill("filler", 8 << 20);
    let reserve = if round.is_multiple_of(2) {
        "4194304"
    } else {
        "0"
    };
    let grace = GRACE_MS.to_string();
    let args = [
        "--disk-free-limit",
        "0",
        "--disk-reserve",
        reserve,
        "--shutdown-timeout",
        &grace,
    ];
    let mut b = Spawned::start_in(&fs.data(), &args).await;
    declare(b.addr, "df.q").await;
    let q = || "df.q".to_string();
    let ((ea, mut ledger), (eb, lb)) = tokio::join!(
        publish_until_stopped(b.addr, q(), format!("a{round}"), 32, SIZES, HELD_QUIET),
        publish_until_stopped(b.addr, q(), format!("b{round}"), 32, SIZES, HELD_QUIET),
    );
    ledger.merge(lb);
    let filled = stop(&mut b, ea == End::Closed || eb == End::Closed, "filling").await;
    if let Stop::Failed = filled {
        assert!(
            ledger
                .errs
                .iter()
                .any(|(_, e)| e.starts_with("ERR INTERNAL")),
            "the store failed but no publish was answered ERR INTERNAL"
        );
    }
    let mut summary = format!(
        "reserve {reserve}: filled {} confirmed, {} ERR, {filled}",
        ledger.confirmed.len(),
        ledger.errs.len()
    );
    if drain {
        std::fs::remove_file(&filler).expect("remove filler");
        let mut b = match Spawned::try_start_in(&fs.data(), &args).await {
            Ok(b) => b,
            Err((status, log)) => panic!("restart with 8 MiB freed failed ({status:?}): {log:?}"),
        };
        // A publish: answered OK, or held while the reserve is out.
        let id = format!("p{round}");
        let mut c = Conn::connect(b.addr).await;
        ledger.sent.insert(id.clone());
        assert!(c.send_raw(&pub_frame("df.q", &id, SIZES)).await);
        let first = tokio::time::timeout(Duration::from_secs(2), c.line()).await;
        match first {
            Ok(Some(l)) if l.starts_with("OK ") => {
                ledger.confirmed.insert(id);
            }
            Ok(Some(l)) => assert_eq!(l, "NOTICE blocked disk"),
            Ok(None) => panic!("the broker closed the connection"),
            Err(_) => panic!("a PUB got neither OK nor NOTICE blocked disk"),
        }
        drop(c);
        let settled = settle_all(b.addr, "df.q", 100, SIZES, &mut ledger).await;
        let drained = stop(&mut b, settled != Settled::Drained, "draining").await;
        summary += &format!(
            "; drained {} acked, {settled:?}, {drained}",
            ledger.acked.len()
        );
    }
    fs.grow(256);
    let b = Spawned::start_in(&fs.data(), &[]).await;
    let found = collect(b.addr, "df.q", SIZES).await;
    let v = Verdict::of(&ledger, &found);
    assert!(v.clean(), "round {round}: {v:?} ({summary})");
    Some(format!(
        "{summary}; after growing: {} found, lost 0",
        found.len()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_into_a_full_disk_ends_in_a_hold_or_a_clean_exit_and_loses_nothing() {
    for round in 0..rounds() {
        let Some(summary) = full_disk_round(round, false).await else {
            return;
        };
        println!("full disk, publishing, round {round}: {summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_after_freeing_space_ends_drained_or_in_a_clean_exit_and_loses_nothing() {
    for round in 0..rounds() {
        let Some(summary) = full_disk_round(round, true).await else {
            return;
        };
        println!("full disk, draining, round {round}: {summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaced_publishers_are_held_at_the_watermark_before_the_disk_is_full() {
    let Some(fs) = Tmpfs::mount(64) else { return };
    let limit: u64 = 16 << 20;
    let limit_arg = limit.to_string();
    let args = ["--disk-free-limit", &limit_arg, "--disk-reserve", "0"];
    let mut b = Spawned::start_in(&fs.data(), &args).await;
    declare(b.addr, "w.q").await;
    let sizes = 64 * 1024..=400 * 1024;
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..4 {
        let (addr, sizes) = (b.addr, sizes.clone());
        runs.spawn(async move {
            publish_until_stopped(addr, "w.q".into(), format!("w{i}"), 64, sizes, HELD_QUIET).await
        });
    }
    let mut ends = Vec::new();
    let mut ledgers = Vec::new();
    while let Some(done) = runs.join_next().await {
        let (end, ledger) = done.expect("publisher");
        ends.push(end);
        ledgers.push(ledger);
    }
    let free_when_held = fs.free();
    assert!(ends.iter().all(|e| *e == End::Held), "{ends:?}");
    let errs: Vec<_> = ledgers.iter().flat_map(|l| l.errs.iter()).collect();
    assert!(
        errs.is_empty(),
        "publishes failed instead of being held: {errs:?}"
    );
    b.wait_log("disk space low").await;
    b.assert_alive("while held");
    // Held before the disk was full: most of the mark is still free (the
    // store's own buffers and cleaner may take a little of it).
    assert!(
        free_when_held >= limit / 2,
        "only {free_when_held} bytes free when held (mark {limit})"
    );
    let confirmed: usize = ledgers.iter().map(|l| l.confirmed.len()).sum();
    println!(
        "watermark: 4 unpaced publishers held with {} MiB free (mark {} MiB), {confirmed} \
         confirmed, 0 ERR",
        free_when_held >> 20,
        limit >> 20
    );
    // Space comes back: publishing goes on (after what the closed
    // publishers had in flight, which the broker still takes); then a kill
    // and a restart lose nothing.
    fs.grow(1024);
    let mut more = Ledger::default();
    let mut c = Conn::connect(b.addr).await;
    for n in 0..20 {
        let id = format!("after-{n}");
        assert!(c.send_raw(&pub_frame("w.q", &id, sizes.clone())).await);
        // Held (NOTICE blocked disk) until the next reading sees the room.
        let reply = loop {
            let line = c.line().await.expect("reply");
            if !line.starts_with("NOTICE ") {
                break line;
            }
        };
        assert_eq!(reply, format!("OK {id} routed=1"));
        more.sent.insert(id.clone());
        more.confirmed.insert(id);
    }
    let mut b = b;
    b.kill().await;
    let b = Spawned::start_in(&fs.data(), &[]).await;
    let found = collect(b.addr, "w.q", sizes).await;
    let mut all = Ledger::default();
    for l in ledgers.into_iter().chain([more]) {
        all.merge(l);
    }
    let v = Verdict::of(&all, &found);
    assert!(v.clean(), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_on_a_full_disk_exits_1_every_time_and_serves_everything_once_it_grows() {
    let Some(fs) = Tmpfs::mount(30) else { return };
    let args = ["--disk-free-limit", "0", "--disk-reserve", "0"];
    let mut b = Spawned::start_in(&fs.data(), &args).await;
    declare(b.addr, "df.q").await;
    let (end, ledger) =
        publish_until_stopped(b.addr, "df.q".into(), "s".into(), 32, SIZES, HELD_QUIET).await;
    stop(&mut b, end == End::Closed, "filling").await;
    // Whatever space the store's stop left, another program takes.
    let _filler = fs.fill_up("filler");
    let mut failures = 0;
    let mut starts = 0;
    for attempt in 0..20 {
        match Spawned::try_start_in(&fs.data(), &args).await {
            Err((status, log)) => {
                assert_eq!(status.code(), Some(1), "attempt {attempt}: {log:?}");
                let said = log.iter().any(|l| l.contains("disk is full"));
                assert!(said, "attempt {attempt}: no clear message: {log:?}");
                failures += 1;
            }
            Ok(mut b) => {
                // A start that could (the stop freed a little): it must
                // stop cleanly too.
                stop(&mut b, false, "a start on a full disk").await;
                starts += 1;
            }
        }
    }
    assert!(failures > 0, "no start failed although the disk is full");
    fs.grow(256);
    let b = Spawned::start_in(&fs.data(), &[]).await;
    let found = collect(b.addr, "df.q", SIZES).await;
    let v = Verdict::of(&ledger, &found);
    assert!(v.clean(), "{v:?}");
    println!(
        "full-disk restart loop: 20 starts ({failures} exited 1 with the message, {starts} \
         served), then after growing the disk {} of {} confirmed found, lost 0",
        found.len(),
        ledger.confirmed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_pipelined_input_reads_the_last_err_and_notice_when_the_store_fails() {
    let Some(fs) = Tmpfs::mount(24) else { return };
    let args = ["--disk-free-limit", "0", "--disk-reserve", "0"];
    let mut b = Spawned::start_in(&fs.data(), &args).await;
    declare(b.addr, "c.q").await;
    // A pipelining client as in the issue: 32 PUBs of 64 KiB in flight,
    // one more written after each reply, so that some of its input is
    // always unread by the broker. A reset would fail a write or a read
    // before the last lines are read.
    let stream = tokio::net::TcpStream::connect(b.addr)
        .await
        .expect("connect");
    let (r, mut w) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(r);
    let mut lines: Vec<String> = Vec::new();
    let body = vec![b'x'; 64 * 1024];
    let frame = |n: usize| {
        let mut f = format!("PUB \"\" c.q id=c-{n} {{{}}}\r\n", body.len()).into_bytes();
        f.extend_from_slice(&body);
        f.extend_from_slice(b"\r\n");
        f
    };
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut n = 0;
    while n < 32 {
        w.write_all(&frame(n)).await.expect("write");
        n += 1;
    }
    loop {
        let mut line = String::new();
        let got = tokio::time::timeout(DEADLINE * 3, reader.read_line(&mut line))
            .await
            .expect("the broker neither answered nor closed: a hang")
            .expect("the connection was reset: the last lines were lost");
        if got == 0 {
            break;
        }
        let line = line.trim_end().to_string();
        let reply = !line.starts_with("NOTICE ");
        lines.push(line);
        if reply {
            w.write_all(&frame(n))
                .await
                .expect("the broker reset the connection while the client wrote");
            n += 1;
        }
    }
    let err = lines.iter().position(|l| l.starts_with("ERR INTERNAL"));
    let notice = lines
        .iter()
        .position(|l| l == "NOTICE closing reason=store-failed");
    assert!(err.is_some(), "no ERR INTERNAL: {:?}", lines.last());
    assert!(notice.is_some(), "no NOTICE closing: {:?}", lines.last());
    assert_eq!(notice, Some(lines.len() - 1), "the notice is the last line");
    let status = b.exited_within(STOP_BOUND).await.expect("the broker hangs");
    assert_eq!(status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_on_a_full_disk_exits_1_and_leaves_nothing_that_stops_the_next() {
    let Some(fs) = Tmpfs::mount(4) else { return };
    let filler = fs.fill_up("filler");
    for attempt in 0..3 {
        let Err((status, log)) = Spawned::try_start_in(&fs.data(), &[]).await else {
            panic!("a first start on a full disk served");
        };
        assert_eq!(status.code(), Some(1), "attempt {attempt}: {log:?}");
        assert!(
            log.iter().any(|l| l.contains("disk is full")),
            "attempt {attempt}: {log:?}"
        );
    }
    std::fs::remove_file(filler).expect("remove filler");
    let b = Spawned::start_in(
        &fs.data(),
        &["--disk-free-limit", "0", "--disk-reserve", "0"],
    )
    .await;
    declare(b.addr, "first.q").await;
}
