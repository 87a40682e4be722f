//! `TX BEGIN` / `COMMIT` / `ABORT`: acks and publishes as one atomic step
//! (protocol.md, "TX"). The kill test (`tx_pipeline_is_exactly_once_*`)
//! runs an `in → worker → out` pipeline against the real binary, SIGKILLed
//! at random moments and restarted on the same directory, with the
//! worker's connection dropped at random too; its checker reads `out` at
//! the end and asserts every input has exactly one result.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::common::faults::Rng;
use crate::common::{TestConn, TestServer};
use crate::crash::{start, Broker};

/// Publishes `n` inputs `i0..` to `queue`, each confirmed.
async fn inputs(c: &mut TestConn, queue: &str, n: usize) {
    for i in 0..n {
        c.ok(
            &format!("PUB \"\" {queue} id=i{i} in-{i}"),
            &format!("OK i{i} routed=1"),
        )
        .await;
    }
}

#[tokio::test]
async fn commit_acks_and_publishes_together_and_abort_does_neither() {
    let srv = TestServer::start().await;
    let mut w = srv.conn().await;
    let mut other = srv.conn().await;
    w.ok("DECLARE QUEUE in durable", "OK in messages=0 consumers=0")
        .await;
    w.ok("DECLARE QUEUE out durable", "OK out messages=0 consumers=0")
        .await;
    inputs(&mut w, "in", 2).await;
    w.ok("SUB in prefetch=2 tag=w", "OK w").await;
    let (t1, b1) = w.msg_tag().await;
    let (t2, _) = w.msg_tag().await;
    assert_eq!(b1, "in-0");

    w.ok("TX BEGIN", "OK").await;
    w.ok(&format!("ACK {t1}"), "OK queued").await;
    w.ok("PUB \"\" out id=r0 res-0", "OK queued r0").await;
    // Nothing is visible before the commit.
    other.ok("GET out", "OK 0").await;
    w.ok("TX COMMIT", "OK acked=1 published=1 routed=1").await;
    other.send("GET out ack=auto").await;
    let (head, body) = other.msg().await;
    assert!(head.contains("id=r0"), "{head}");
    assert_eq!(body, b"res-0");
    other.expect("OK 1").await;
    // t1 is settled: acking it again is unknown.
    w.err(&format!("ACK {t1}"), "UNKNOWN_TAG").await;

    // ABORT: nothing published, t2 still outstanding.
    w.ok("TX BEGIN", "OK").await;
    w.ok(&format!("ACK {t2}"), "OK queued").await;
    w.ok("PUB \"\" out id=r1 res-1", "OK queued r1").await;
    w.ok("TX ABORT", "OK").await;
    other.ok("GET out", "OK 0").await;
    w.ok(&format!("ACK {t2}"), "OK").await;
    let stats = other.cmd("DECLARE QUEUE in durable").await;
    assert_eq!(stats, "OK in messages=0 consumers=1");
}

#[tokio::test]
async fn tx_errors_leave_the_transaction_or_end_it_with_nothing_done() {
    let srv = TestServer::start().await;
    let mut w = srv.conn().await;
    let mut other = srv.conn().await;
    w.err("TX COMMIT", "PRECONDITION").await;
    w.err("TX ABORT", "PRECONDITION").await;
    w.err("TX", "SYNTAX").await;
    w.ok("DECLARE QUEUE in durable", "OK in messages=0 consumers=0")
        .await;
    w.ok(
        "DECLARE QUEUE out durable max-length=1 overflow=reject-publish",
        "OK out messages=0 consumers=0",
    )
    .await;
    inputs(&mut w, "in", 1).await;
    w.ok("SUB in prefetch=5 tag=w", "OK w").await;
    let (t1, _) = w.msg_tag().await;

    w.ok("TX BEGIN", "OK").await;
    w.err("TX BEGIN", "PRECONDITION").await;
    // A refused command is not buffered; the transaction goes on.
    w.err("ACK 99", "UNKNOWN_TAG").await;
    w.err("PUB nowhere k x", "NOT_FOUND").await;
    w.ok(&format!("ACK {t1}"), "OK queued").await;
    w.err(&format!("ACK {t1}"), "UNKNOWN_TAG").await;
    w.ok("PUB \"\" out id=a x", "OK queued a").await;
    // Two messages for a queue that takes one: the commit fails whole.
    w.ok("PUB \"\" out id=b y", "OK queued b").await;
    let e = w.err("TX COMMIT", "QUEUE_FULL").await;
    assert!(e.contains("out"), "{e}");
    // Nothing happened and the transaction is over.
    other.ok("GET out", "OK 0").await;
    w.err("TX COMMIT", "PRECONDITION").await;

    // A delivery settled after it was buffered fails the commit.
    w.ok("TX BEGIN", "OK").await;
    w.ok(&format!("ACK {t1}"), "OK queued").await;
    w.ok("PUB \"\" out id=c z", "OK queued c").await;
    w.ok(&format!("NACK {t1}"), "OK").await;
    let (t2, body) = w.msg_tag().await;
    assert_eq!(body, "in-0");
    w.err("TX COMMIT", "UNKNOWN_TAG").await;
    other.ok("GET out", "OK 0").await;

    // A connection that closes with a transaction open: nothing of it.
    w.ok("TX BEGIN", "OK").await;
    w.ok(&format!("ACK {t2}"), "OK queued").await;
    w.ok("PUB \"\" out id=d z", "OK queued d").await;
    drop(w);
    other.ok("SUB in tag=o", "OK o").await;
    let (_, body) = other.msg_tag().await;
    assert_eq!(body, "in-0");
    other.ok("GET out", "OK 0").await;
}

#[tokio::test]
async fn a_committed_transaction_survives_a_restart_whole() {
    let srv = TestServer::start().await;
    let mut w = srv.conn().await;
    w.ok("DECLARE QUEUE in durable", "OK in messages=0 consumers=0")
        .await;
    w.ok(
        "DECLARE QUEUE out durable dedup-window=600000",
        "OK out messages=0 consumers=0",
    )
    .await;
    w.ok("DECLARE QUEUE s type=stream", "OK s messages=0 consumers=0")
        .await;
    inputs(&mut w, "in", 2).await;
    inputs(&mut w, "s", 3).await;
    w.ok("SUB in prefetch=1 tag=w", "OK w").await;
    let (t1, _) = w.msg_tag().await;
    w.ok("SUB s group=g offset=first prefetch=1 tag=g", "OK g")
        .await;
    w.expect("NOTICE active g").await;
    let (t2, body) = w.msg_tag().await;
    assert_eq!(body, "in-0");
    w.ok("TX BEGIN", "OK").await;
    w.ok(&format!("ACK {t1}"), "OK queued").await;
    w.ok(&format!("ACK {t2}"), "OK queued").await;
    w.ok("PUB \"\" out id=r0 res-0", "OK queued r0").await;
    w.ok("PUB \"\" s id=s-r0 res-s0", "OK queued s-r0").await;
    // The acks make room: the next deliveries may come before the reply.
    w.send("TX COMMIT").await;
    let mut reply = w.line().await;
    while reply.starts_with("MSG ") {
        let (_, len) = crate::common::split_literal(&reply).expect("literal");
        w.literal(len).await;
        reply = w.line().await;
    }
    assert_eq!(reply, "OK acked=2 published=2 routed=2");
    // More deliveries may follow the reply: the subscriptions end (what
    // they push before their OK is skipped), so that none comes between
    // the next commands and their replies.
    for tag in ["w", "g"] {
        w.send(&format!("UNSUB {tag}")).await;
        let mut reply = w.line().await;
        while reply.starts_with("MSG ") {
            let (_, len) = crate::common::split_literal(&reply).expect("literal");
            w.literal(len).await;
            reply = w.line().await;
        }
        assert_eq!(reply, "OK", "UNSUB {tag}");
    }
    // The same id again, in a transaction: a duplicate on out.
    w.ok("TX BEGIN", "OK").await;
    w.ok("PUB \"\" out id=r0 res-0", "OK queued r0").await;
    w.ok("TX COMMIT", "OK acked=0 published=1 routed=1 duplicate=1")
        .await;
    drop(w);

    let srv = srv.restart().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE in durable", "OK in messages=1 consumers=0")
        .await;
    c.ok(
        "DECLARE QUEUE out durable dedup-window=600000",
        "OK out messages=1 consumers=0",
    )
    .await;
    // The group's commit moved past offset 1 with the transaction.
    c.ok("SUB s group=g prefetch=1 tag=g", "OK g").await;
    c.expect("NOTICE active g").await;
    let (_, body) = c.msg_tag().await;
    assert_eq!(body, "in-1");
}

#[tokio::test]
async fn tx_commit_waits_for_one_fsync() {
    let srv = TestServer::start().await;
    let mut w = srv.conn().await;
    w.ok("DECLARE QUEUE in durable", "OK in messages=0 consumers=0")
        .await;
    w.ok("DECLARE QUEUE out durable", "OK out messages=0 consumers=0")
        .await;
    inputs(&mut w, "in", 10).await;
    w.ok("SUB in prefetch=10 tag=w", "OK w").await;
    let mut tags = Vec::new();
    for _ in 0..10 {
        tags.push(w.msg_tag().await.0);
    }
    w.ok("TX BEGIN", "OK").await;
    for (i, t) in tags.iter().enumerate() {
        w.ok(&format!("ACK {t}"), "OK queued").await;
        w.ok(
            &format!("PUB \"\" out id=r{i} x"),
            &format!("OK queued r{i}"),
        )
        .await;
    }
    let before = srv.fsyncs();
    w.ok("TX COMMIT", "OK acked=10 published=10 routed=10")
        .await;
    let syncs = srv.fsyncs() - before;
    assert!((1..=2).contains(&syncs), "{syncs} syncs for one commit");
}

// ---- The kill test ----

/// Inputs in the CI version; `SLUICE_TX_INPUTS` for the long one.
const INPUTS: usize = 150;
/// Server kills in the CI version; `SLUICE_TX_KILLS` for the long one.
const KILLS: usize = 8;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How the worker settles one input.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `TX BEGIN`, `ACK`, `PUB`, `TX COMMIT`: the pipeline under test.
    Atomic,
    /// `PUB` then `ACK`, each on its own: what the checker must catch.
    Separate,
}

/// One worker session: consumes `in`, publishes `r-<id>` to `out`,
/// acks; drops its own connection at random. Returns when the
/// connection fails (a kill) or it saw `done` results land.
async fn work(addr: &str, rng: &mut Rng, step: Step) -> Option<()> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let mut c = TestConn::from_stream(stream).await?;
    // Deliveries that came while a reply was awaited (an ack makes room
    // for the next before its own OK, which waits for the fsync).
    let mut early: VecDeque<String> = VecDeque::new();
    c.try_send("SUB in prefetch=1 tag=w").await?;
    if reply(&mut c, &mut early).await? != "OK w" {
        return None;
    }
    loop {
        let line = match early.pop_front() {
            Some(l) => l,
            None => next_msg(&mut c).await?,
        };
        let dtag = line.split(' ').nth(2)?.to_string();
        let id = line
            .split(' ')
            .find_map(|w| w.strip_prefix("id="))?
            .to_string();
        let lines = match step {
            Step::Atomic => vec![
                "TX BEGIN".to_string(),
                format!("ACK {dtag}"),
                format!("PUB \"\" out id=r-{id} res-{id}"),
                "TX COMMIT".to_string(),
            ],
            Step::Separate => vec![
                format!("PUB \"\" out id=r-{id} res-{id}"),
                format!("ACK {dtag}"),
            ],
        };
        // A worker that goes away mid-step (5 %).
        let drop_at = rng
            .next()
            .is_multiple_of(20)
            .then(|| rng.next() % lines.len() as u64);
        for (i, l) in lines.iter().enumerate() {
            c.try_send(l).await?;
            if drop_at == Some(i as u64) {
                // Sent, its reply never read: the connection goes.
                return Some(());
            }
            if !reply(&mut c, &mut early).await?.starts_with("OK") {
                return None;
            }
        }
    }
}

/// The next `MSG` line, its body read; `None` on anything else.
async fn next_msg(c: &mut TestConn) -> Option<String> {
    let line = c.try_line().await?;
    if !line.starts_with("MSG ") {
        return None;
    }
    let (_, len) = crate::common::split_literal(&line)?;
    c.try_literal(len).await?;
    Some(line)
}

/// The next reply, keeping the deliveries that come before it in `early`.
async fn reply(c: &mut TestConn, early: &mut VecDeque<String>) -> Option<String> {
    loop {
        let line = c.try_line().await?;
        if !line.starts_with("MSG ") {
            return Some(line);
        }
        let (_, len) = crate::common::split_literal(&line)?;
        c.try_literal(len).await?;
        early.push_back(line);
    }
}

/// Runs the pipeline with `kills` server kills and returns, per input id,
/// how many results `out` holds at the end.
async fn pipeline(step: Step, n: usize, kills: usize, seed: u64) -> HashMap<String, usize> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(seed);
    let mut b: Broker = start(dir.path()).await;
    {
        let addr: std::net::SocketAddr = b.addr.parse().expect("addr");
        let mut c = TestConn::connect(addr).await;
        c.ok("DECLARE QUEUE in durable", "OK in messages=0 consumers=0")
            .await;
        c.ok("DECLARE QUEUE out durable", "OK out messages=0 consumers=0")
            .await;
        inputs(&mut c, "in", n).await;
    }
    for _ in 0..kills {
        let addr = b.addr.clone();
        let mut wrng = Rng(rng.next());
        let worker = tokio::spawn(async move {
            loop {
                if work(&addr, &mut wrng, step).await.is_none() {
                    // The server went away (or refused): try again until killed.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        // Kill after a random 20..120 ms of work.
        tokio::time::sleep(Duration::from_millis(20 + rng.next() % 100)).await;
        b.child.start_kill().expect("SIGKILL");
        b.child.wait().await.expect("wait");
        worker.abort();
        b = start(dir.path()).await;
    }
    // Drain: a worker on a live server until `in` is empty.
    let addr: std::net::SocketAddr = b.addr.parse().expect("addr");
    let mut wrng = Rng(rng.next());
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            // Nothing waiting, nothing out, no worker: a closing worker
            // requeues its delivery after its subscription has gone.
            let mut probe = TestConn::connect(addr).await;
            let (_, stats) = probe.data("STATS QUEUE in").await;
            let zero = |key: &str| {
                stats.lines().any(|l| {
                    let mut w = l.split_whitespace();
                    w.next() == Some(key) && w.next() == Some("0")
                })
            };
            if zero("messages_ready") && zero("messages_unacked") && zero("consumers") {
                return;
            }
            drop(probe);
            let _ =
                tokio::time::timeout(Duration::from_millis(500), work(&b.addr, &mut wrng, step))
                    .await;
        }
    })
    .await;
    assert!(drained.is_ok(), "in was not drained");
    // The checker: every result in out, by the input it answers.
    let mut c = TestConn::connect(addr).await;
    let mut found: HashMap<String, usize> = HashMap::new();
    loop {
        c.send("GET out count=1000 ack=auto").await;
        let mut got = 0;
        loop {
            let line = c.line().await;
            if line.starts_with("OK ") {
                break;
            }
            let (_, len) = crate::common::split_literal(&line).expect("MSG literal");
            let body = c.literal(len).await;
            let body = String::from_utf8(body).expect("utf-8");
            let input = body.strip_prefix("res-").expect("a result").to_string();
            *found.entry(input).or_default() += 1;
            got += 1;
        }
        if got == 0 {
            break;
        }
    }
    let _ = b.child.start_kill();
    found
}

/// Every input `i0..i<n>` has exactly one result: the faults that
/// broke the rule, named.
fn check(found: &HashMap<String, usize>, n: usize) -> Vec<String> {
    let mut wrong = Vec::new();
    for i in 0..n {
        match found.get(&format!("i{i}")).copied().unwrap_or(0) {
            1 => {}
            0 => wrong.push(format!("i{i} lost")),
            k => wrong.push(format!("i{i} {k} times")),
        }
    }
    wrong.extend(
        found
            .keys()
            .filter(|k| {
                k.strip_prefix('i')
                    .and_then(|d| d.parse::<usize>().ok())
                    .is_none_or(|d| d >= n)
            })
            .map(|k| format!("{k}: not an input")),
    );
    wrong
}

#[tokio::test]
async fn tx_pipeline_is_exactly_once_when_the_server_is_killed_anywhere() {
    kill_test().await;
}

async fn kill_test() {
    let n = env_or("SLUICE_TX_INPUTS", INPUTS);
    let kills = env_or("SLUICE_TX_KILLS", KILLS);
    let seed = Rng::from_env().0;
    let found = pipeline(Step::Atomic, n, kills, seed).await;
    let wrong = check(&found, n);
    eprintln!(
        "tx kill test: {n} inputs, {kills} kills, seed {seed}: {} results, {} wrong",
        found.values().sum::<usize>(),
        wrong.len()
    );
    assert!(wrong.is_empty(), "seed {seed}: {wrong:?}");
}

/// The long version: `SLUICE_TX_KILLS=40 SLUICE_TX_INPUTS=1000 cargo test
/// --test it tx::long -- --ignored`.
#[tokio::test]
#[ignore]
async fn long_tx_pipeline_is_exactly_once_when_the_server_is_killed_anywhere() {
    kill_test().await;
}

/// The checker's proof: the same pipeline with the ack a step of its own
/// after the publish must show duplicates. Ignored (it fails by design
/// as soon as a kill lands between the two); run it to see the checker
/// catch them: `cargo test --test it tx::separate -- --ignored`.
#[tokio::test]
#[ignore]
async fn separate_ack_after_publish_shows_duplicates() {
    let n = env_or("SLUICE_TX_INPUTS", INPUTS);
    let kills = env_or("SLUICE_TX_KILLS", 20);
    let seed = Rng::from_env().0;
    let found = pipeline(Step::Separate, n, kills, seed).await;
    let wrong = check(&found, n);
    eprintln!("separate steps: {} wrong: {wrong:?}", wrong.len());
    assert!(wrong.is_empty(), "seed {seed}: {wrong:?}");
}
