//! Queues past their RAM budget (`--queue-memory`): the backlog waits on
//! disk and is read back in order as consumers drain it, persistent and
//! transient alike; restarts, fan-outs sharing one stored body, purges,
//! deletes, limits and `PEEK` see the paged-out messages like any other.
//!
//! Every test runs with a budget of a few messages, so that a few thousand
//! messages go through several pages (a page is 512 messages).

use crate::common::{words, Peer, TestConn, TestServer};
use sluice::config::Config;

/// Room for about a dozen small messages in RAM.
const BUDGET: u64 = 4096;

fn small(c: &mut Config) {
    c.queue_memory_bytes = BUDGET;
}

async fn start() -> TestServer {
    TestServer::start_with(small).await
}

async fn restart(srv: TestServer) -> TestServer {
    let dir = srv.stop().await;
    TestServer::start_in(dir, small).await
}

/// Publishes `n` messages `<prefix>-<i>` (body = id) to `exchange`/`key`,
/// pipelined, and checks every confirm.
async fn publish_n(
    c: &mut TestConn,
    exchange: &str,
    key: &str,
    prefix: &str,
    n: usize,
    opts: &str,
) {
    for i in 0..n {
        c.send(&format!(
            "PUB {exchange} {key} id={prefix}-{i} {opts} {prefix}-{i}"
        ))
        .await;
    }
    for i in 0..n {
        let line = c.line().await;
        let w = words(&line);
        assert!(
            w.len() == 3 && w[0] == "OK" && w[1] == format!("{prefix}-{i}"),
            "confirm {i}: {line:?}"
        );
    }
}

/// Consumes `n` messages from `queue` with acks and returns their ids in
/// delivery order.
async fn consume_n(srv: &TestServer, queue: &str, n: usize) -> Vec<String> {
    let mut p = Peer::connect(srv).await;
    p.ok(&format!("SUB {queue} tag=c prefetch=20"), "OK c")
        .await;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let m = p.msg().await;
        assert_eq!(m.body, m.id.as_bytes(), "body of {}", m.id);
        p.ok(&format!("ACK {}", m.dtag), "OK").await;
        ids.push(m.id);
    }
    p.ok("UNSUB c", "OK").await;
    ids
}

fn expected(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

async fn count(c: &mut TestConn, queue: &str, durable: &str) -> String {
    c.cmd(&format!("DECLARE QUEUE {queue} {durable}")).await
}

#[tokio::test]
async fn a_backlog_past_the_budget_is_delivered_whole_and_in_order() {
    let srv = start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE q durable", "OK q messages=0 consumers=0")
        .await;
    publish_n(&mut c, "\"\"", "q", "p", 2000, "").await;
    publish_n(&mut c, "\"\"", "q", "t", 1000, "transient").await;
    assert_eq!(
        count(&mut c, "q", "durable").await,
        "OK q messages=3000 consumers=0"
    );
    let got = consume_n(&srv, "q", 3000).await;
    let mut want = expected("p", 0..2000);
    want.extend(expected("t", 0..1000));
    assert_eq!(got, want);
    assert_eq!(
        count(&mut c, "q", "durable").await,
        "OK q messages=0 consumers=0"
    );
}

#[tokio::test]
async fn publishing_while_a_consumer_drains_the_tail_keeps_order() {
    let srv = start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE q durable", "OK q messages=0 consumers=0")
        .await;
    publish_n(&mut c, "\"\"", "q", "a", 1500, "").await;
    let mut p = Peer::connect(&srv).await;
    p.ok("SUB q tag=c prefetch=7", "OK c").await;
    let mut got = Vec::new();
    // Interleave: take some, publish some more behind them.
    for round in 0..3 {
        for _ in 0..400 {
            let m = p.msg().await;
            p.ok(&format!("ACK {}", m.dtag), "OK").await;
            got.push(m.id);
        }
        publish_n(&mut c, "\"\"", "q", &format!("b{round}"), 300, "transient").await;
    }
    while got.len() < 1500 + 900 {
        let m = p.msg().await;
        p.ok(&format!("ACK {}", m.dtag), "OK").await;
        got.push(m.id);
    }
    let mut want = expected("a", 0..1500);
    for round in 0..3 {
        want.extend(expected(&format!("b{round}"), 0..300));
    }
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_paged_backlog_survives_a_restart_and_spilled_transients_do_not() {
    let srv = start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE q durable", "OK q messages=0 consumers=0")
        .await;
    c.ok("DECLARE QUEUE tmp", "OK tmp messages=0 consumers=0")
        .await;
    publish_n(&mut c, "\"\"", "q", "p", 1200, "").await;
    publish_n(&mut c, "\"\"", "q", "t", 800, "transient").await;
    publish_n(&mut c, "\"\"", "q", "r", 300, "").await;
    publish_n(&mut c, "\"\"", "tmp", "x", 900, "").await;
    drop(c);
    let srv = restart(srv).await;
    let mut c = srv.conn().await;
    assert_eq!(
        count(&mut c, "q", "durable").await,
        "OK q messages=1500 consumers=0"
    );
    // The non-durable queue is gone, with what it had spilled.
    assert_eq!(
        count(&mut c, "tmp", "").await,
        "OK tmp messages=0 consumers=0"
    );
    let got = consume_n(&srv, "q", 1500).await;
    let mut want = expected("p", 0..1200);
    want.extend(expected("r", 0..300));
    assert_eq!(got, want);
    drop(c);
    // Acked means gone, across another restart.
    let srv = restart(srv).await;
    let mut c = srv.conn().await;
    assert_eq!(
        count(&mut c, "q", "durable").await,
        "OK q messages=0 consumers=0"
    );
}

#[tokio::test]
async fn a_fanned_out_body_outlives_the_copies_drained_before_it() {
    // One stored body, three paged-out copies: draining the queues one
    // after the other must never remove the body while a copy needs it,
    // in one run and across a restart.
    let srv = start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE EXCHANGE fan fanout durable", "OK").await;
    for q in ["a", "b", "c"] {
        c.ok(
            &format!("DECLARE QUEUE {q} durable"),
            &format!("OK {q} messages=0 consumers=0"),
        )
        .await;
        c.ok(&format!("BIND {q} fan \"\""), "OK").await;
    }
    publish_n(&mut c, "fan", "k", "f", 1500, "").await;
    assert_eq!(consume_n(&srv, "a", 1500).await, expected("f", 0..1500));
    assert_eq!(consume_n(&srv, "b", 700).await, expected("f", 0..700));
    drop(c);
    let srv = restart(srv).await;
    assert_eq!(consume_n(&srv, "b", 800).await, expected("f", 700..1500));
    assert_eq!(consume_n(&srv, "c", 1500).await, expected("f", 0..1500));
    let mut c = srv.conn().await;
    for q in ["a", "b", "c"] {
        assert_eq!(
            count(&mut c, q, "durable").await,
            format!("OK {q} messages=0 consumers=0")
        );
    }
}

#[tokio::test]
async fn purge_and_delete_remove_the_paged_out_backlog() {
    let srv = start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE EXCHANGE fan fanout durable", "OK").await;
    for q in ["keep", "purged", "deleted"] {
        c.ok(
            &format!("DECLARE QUEUE {q} durable"),
            &format!("OK {q} messages=0 consumers=0"),
        )
        .await;
        c.ok(&format!("BIND {q} fan \"\""), "OK").await;
    }
    publish_n(&mut c, "fan", "k", "m", 1200, "").await;
    c.ok("PURGE purged", "OK messages=1200").await;
    c.ok("DELETE QUEUE deleted", "OK messages=1200").await;
    assert_eq!(
        count(&mut c, "purged", "durable").await,
        "OK purged messages=0 consumers=0"
    );
    // The survivor still reads every shared body.
    assert_eq!(consume_n(&srv, "keep", 600).await, expected("m", 0..600));
    drop(c);
    let srv = restart(srv).await;
    let mut c = srv.conn().await;
    assert_eq!(
        count(&mut c, "purged", "durable").await,
        "OK purged messages=0 consumers=0"
    );
    assert_eq!(
        count(&mut c, "keep", "durable").await,
        "OK keep messages=600 consumers=0"
    );
    assert_eq!(consume_n(&srv, "keep", 600).await, expected("m", 600..1200));
}

#[tokio::test]
async fn length_limits_count_the_paged_out_backlog() {
    let srv = start().await;
    let mut c = srv.conn().await;
    c.ok(
        "DECLARE QUEUE q durable max-length=1000 overflow=reject-publish",
        "OK q messages=0 consumers=0",
    )
    .await;
    publish_n(&mut c, "\"\"", "q", "m", 1000, "").await;
    c.err("PUB \"\" q one-too-many", "QUEUE_FULL").await;
    // drop-head pushes out the oldest, read back from the tail.
    c.ok(
        "DECLARE QUEUE d durable max-length=700",
        "OK d messages=0 consumers=0",
    )
    .await;
    publish_n(&mut c, "\"\"", "d", "m", 1000, "").await;
    assert_eq!(
        count(&mut c, "d", "durable max-length=700").await,
        "OK d messages=700 consumers=0"
    );
    assert_eq!(consume_n(&srv, "d", 700).await, expected("m", 300..1000));
}

#[tokio::test]
async fn peek_and_get_reach_into_the_tail() {
    let srv = start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE q durable", "OK q messages=0 consumers=0")
        .await;
    publish_n(&mut c, "\"\"", "q", "m", 1000, "").await;
    // Far past what RAM holds: read from disk, not taken.
    // Positions start at 1: position 900 holds m-899.
    c.send("PEEK q count=3 from=900").await;
    for i in 899..902 {
        let (head, body) = c.msg().await;
        assert!(head.starts_with(&format!("MSG * {} ", i + 1)), "{head}");
        assert_eq!(body, format!("m-{i}").as_bytes());
    }
    c.expect("OK 3").await;
    c.send("GET q count=600 ack=auto").await;
    for i in 0..600 {
        let (head, _) = c.msg().await;
        assert!(head.contains(&format!(" id=m-{i}")), "{head}");
    }
    c.expect("OK 600").await;
    assert_eq!(
        count(&mut c, "q", "durable").await,
        "OK q messages=400 consumers=0"
    );
}

#[tokio::test]
async fn ttl_expires_paged_out_messages_without_a_consumer() {
    let srv = start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE dlq durable", "OK dlq messages=0 consumers=0")
        .await;
    c.ok(
        "DECLARE QUEUE q durable ttl=300 dead-letter=\"\" dead-letter-key=dlq",
        "OK q messages=0 consumers=0",
    )
    .await;
    publish_n(&mut c, "\"\"", "q", "m", 1200, "").await;
    // Every message ends in the dead-letter queue, in order, though most
    // were on disk when they expired.
    assert_eq!(consume_n(&srv, "dlq", 1200).await, expected("m", 0..1200));
    assert_eq!(
        count(
            &mut c,
            "q",
            "durable ttl=300 dead-letter=\"\" dead-letter-key=dlq"
        )
        .await,
        "OK q messages=0 consumers=0"
    );
}
