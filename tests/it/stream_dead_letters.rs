//! Dead letters for stream consumer groups: a stream's `delivery-limit=`
//! counts, per group and offset, the deliveries that ended without an ack
//! (`NACK`, ack timeout); the last one dead-letters a copy through the
//! stream's `dead-letter=` exchange with `x-death-*` headers naming the
//! stream, group and offset, and the offset is done for that group only.
//! `REJECT` dead-letters too (reason `rejected`).

use crate::common::{Msg, Peer, TestServer};

/// Declares exchange `dlx` (topic) and queue `dead` bound to it with `#`,
/// then stream `s` with `options`.
async fn setup(srv: &TestServer, stream: &str, options: &str) -> Peer {
    let mut p = Peer::connect(srv).await;
    p.ok("DECLARE EXCHANGE dlx topic", "OK").await;
    p.ok("DECLARE QUEUE dead", "OK dead messages=0 consumers=0")
        .await;
    p.ok("BIND dead dlx #", "OK").await;
    let reply = p
        .cmd(&format!("DECLARE QUEUE {stream} type=stream {options}"))
        .await;
    assert!(reply.starts_with(&format!("OK {stream} ")), "{reply}");
    p
}

/// A new connection that joins `group` of stream `stream` as member `tag`
/// (`options`: `offset=`, `prefetch=`) and is told it is active.
async fn member(srv: &TestServer, stream: &str, group: &str, tag: &str, options: &str) -> Peer {
    let mut m = Peer::connect(srv).await;
    let line = format!("SUB {stream} group={group} tag={tag} {options}");
    m.ok(line.trim_end(), &format!("OK {tag}")).await;
    assert_eq!(m.notice().await, format!("NOTICE active {tag}"));
    m
}

/// The next `n` deliveries: offset, deliveries and body of each.
async fn read(p: &mut Peer, n: usize) -> Vec<(Option<u64>, u32, String)> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        let m = p.msg().await;
        got.push((m.offset, m.deliveries, m.text()));
    }
    got
}

/// What a first reading of offsets 1.. with bodies `bodies` looks like.
fn firsts(bodies: &[&str]) -> Vec<(Option<u64>, u32, String)> {
    (1..)
        .zip(bodies)
        .map(|(o, b)| (Some(o), 1, b.to_string()))
        .collect()
}

/// The dead letters waiting in `dead` (taken and acked).
async fn dead_letters(p: &mut Peer) -> Vec<Msg> {
    let (got, reply) = p.get("GET dead count=100").await;
    assert_eq!(reply, format!("OK {}", got.len()));
    for m in &got {
        p.ok(&format!("ACK {}", m.dtag), "OK").await;
    }
    got
}

/// A header's value.
fn header<'a>(m: &'a Msg, name: &str) -> Option<&'a str> {
    m.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Asserts `m` is the dead letter of `body`, published to stream `stream`
/// through the default exchange, dead at `offset` for `group` because of
/// `reason`.
fn assert_dead(m: &Msg, body: &str, stream: &str, group: Option<&str>, offset: u64, reason: &str) {
    assert_eq!((m.exchange.as_str(), m.key.as_str()), ("dlx", stream));
    assert_eq!(m.text(), body, "{}", m.head);
    let offset = offset.to_string();
    for (name, value) in [
        ("x-death-reason", Some(reason)),
        ("x-death-queue", Some(stream)),
        ("x-death-count", Some("1")),
        ("x-death-exchange", Some("")),
        ("x-death-key", Some(stream)),
        ("x-death-group", group),
        ("x-death-offset", Some(offset.as_str())),
    ] {
        assert_eq!(header(m, name), value, "{name} in {}", m.head);
    }
}

#[tokio::test]
async fn nacks_to_the_delivery_limit_dead_letter_once_and_the_group_moves_past() {
    let srv = TestServer::start().await;
    let mut p = setup(&srv, "s", "dead-letter=dlx delivery-limit=2").await;
    for i in 0..3 {
        p.publish("", "s", &format!("m{i}"), 1).await;
    }
    let mut r = member(&srv, "s", "g", "g", "offset=first prefetch=1").await;
    let first = r.msg().await;
    assert_eq!((first.offset, first.deliveries), (Some(1), 1));
    r.ok(&format!("NACK {}", first.dtag), "OK").await;
    let second = r.msg().await;
    assert_eq!((second.offset, second.deliveries), (Some(1), 2));
    assert!(second.redelivered);
    // Nothing is dead yet: one delivery is left.
    assert!(dead_letters(&mut p).await.is_empty());
    // The second failed delivery of 2 allowed: dead-lettered, and the
    // group goes on with offset 2.
    r.ok(&format!("NACK {}", second.dtag), "OK").await;
    let next = r.msg().await;
    assert_eq!((next.offset, next.deliveries), (Some(2), 1));
    let dead = dead_letters(&mut p).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_dead(&dead[0], "m0", "s", Some("g"), 1, "delivery-limit");
    assert_eq!(dead[0].id, first.id);
    // The group's committed offset passed it: acking 2 commits up to 3, so
    // a new member resumes at 3 (and offset 1 is not delivered again).
    r.ok(&format!("ACK {}", next.dtag), "OK").await;
    let third = r.msg().await;
    assert_eq!(third.offset, Some(3));
    drop(r);
    let mut n = member(&srv, "s", "g", "n", "").await;
    let resumed = n.msg().await;
    assert_eq!(resumed.offset, Some(3));
    n.ok(&format!("ACK {}", resumed.dtag), "OK").await;
    n.quiet().await;
    // Another group still has every offset, offset 1 included.
    let mut o = member(&srv, "s", "other", "o", "offset=first prefetch=10").await;
    assert_eq!(read(&mut o, 3).await, firsts(&["m0", "m1", "m2"]));
    // The stream still holds all three, and nothing else died.
    p.ok(
        "DECLARE QUEUE s type=stream dead-letter=dlx delivery-limit=2",
        "OK s messages=3 consumers=2",
    )
    .await;
    assert!(dead_letters(&mut p).await.is_empty());
    // On disk too: after a restart a new group reads all three, and g
    // resumes at its committed offset, 4.
    drop((p, n, o));
    let srv = srv.restart().await;
    let mut late = member(&srv, "s", "late", "l", "offset=first prefetch=10").await;
    assert_eq!(read(&mut late, 3).await, firsts(&["m0", "m1", "m2"]));
    let mut g = member(&srv, "s", "g", "g", "").await;
    g.quiet().await;
    late.publish("", "s", "m3", 1).await;
    assert_eq!(g.msg().await.offset, Some(4));
}

#[tokio::test]
async fn ack_timeouts_and_a_lost_connection_count_toward_the_delivery_limit() {
    let srv = TestServer::start().await;
    let mut p = setup(
        &srv,
        "s",
        "dead-letter=dlx dead-letter-key=failed delivery-limit=3 ack-timeout=200",
    )
    .await;
    p.publish("", "s", "slow", 1).await;
    p.publish("", "s", "fine", 1).await;
    // Delivery 1 ends with the connection.
    let mut c = member(&srv, "s", "g", "g", "offset=first prefetch=1").await;
    assert_eq!(c.msg().await.offset, Some(1));
    drop(c);
    // Deliveries 2 and 3 time out.
    let mut r = member(&srv, "s", "g", "g", "prefetch=1").await;
    for n in 2..=3 {
        let m = r.msg().await;
        assert_eq!((m.offset, m.deliveries), (Some(1), n), "{}", m.head);
        assert_eq!(r.notice().await, format!("NOTICE ack-timeout g {}", m.dtag));
    }
    // The limit is reached: offset 2 comes next, and 1 is a dead letter
    // (with the stream's dead-letter-key).
    let next = r.msg().await;
    assert_eq!((next.offset, next.deliveries), (Some(2), 1));
    r.ok(&format!("ACK {}", next.dtag), "OK").await;
    let dead = dead_letters(&mut p).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let m = &dead[0];
    assert_eq!((m.exchange.as_str(), m.key.as_str()), ("dlx", "failed"));
    assert_eq!(
        (
            header(m, "x-death-reason"),
            header(m, "x-death-group"),
            header(m, "x-death-offset"),
            header(m, "x-death-key")
        ),
        (Some("delivery-limit"), Some("g"), Some("1"), Some("s"))
    );
    assert_eq!(m.text(), "slow");
}

#[tokio::test]
async fn reject_dead_letters_a_copy_for_a_group_and_a_private_reader() {
    let srv = TestServer::start().await;
    let mut p = setup(&srv, "s", "dead-letter=dlx").await;
    p.publish("", "s", "bad", 1).await;
    p.publish("", "s", "good", 1).await;
    let mut r = member(&srv, "s", "g", "g", "offset=first prefetch=1").await;
    let m = r.msg().await;
    r.ok(&format!("REJECT {}", m.dtag), "OK").await;
    let next = r.msg().await;
    assert_eq!(next.offset, Some(2));
    let dead = dead_letters(&mut p).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_dead(&dead[0], "bad", "s", Some("g"), 1, "rejected");
    // NACK requeue=false by a private reader (no group=): no group header.
    let mut q = Peer::connect(&srv).await;
    q.ok("SUB s offset=first prefetch=1 tag=q", "OK q").await;
    let m = q.msg().await;
    assert_eq!(m.offset, Some(1));
    q.ok(&format!("NACK {} requeue=false", m.dtag), "OK").await;
    assert_eq!(q.msg().await.offset, Some(2));
    let dead = dead_letters(&mut p).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_dead(&dead[0], "bad", "s", None, 1, "rejected");
    // Without dead-letter= a NACK only counts: no limit, no dead letter.
    let mut plain = setup_plain(&srv).await;
    let mut pr = member(&srv, "plain", "g", "g", "offset=first prefetch=1").await;
    for n in 1..=3 {
        let m = pr.msg().await;
        assert_eq!((m.offset, m.deliveries), (Some(1), n));
        pr.ok(&format!("NACK {}", m.dtag), "OK").await;
    }
    assert_eq!(pr.msg().await.offset, Some(1));
    assert!(dead_letters(&mut plain).await.is_empty());
}

/// Stream `plain` without dead letters, holding one message.
async fn setup_plain(srv: &TestServer) -> Peer {
    let mut p = Peer::connect(srv).await;
    p.ok(
        "DECLARE QUEUE plain type=stream",
        "OK plain messages=0 consumers=0",
    )
    .await;
    p.publish("", "plain", "x", 1).await;
    p
}

#[tokio::test]
async fn a_partition_dead_letters_its_own_offset() {
    let srv = TestServer::start().await;
    let mut p = setup(&srv, "pay", "partitions=2 dead-letter=dlx delivery-limit=1").await;
    p.publish("pay", "user-1", "u1", 1).await;
    let mut r = Peer::connect(&srv).await;
    r.ok("SUB pay group=ledger offset=first prefetch=5 tag=m", "OK m")
        .await;
    let m = r.msg().await;
    let part = m.partition.unwrap_or_else(|| panic!("{}", m.head));
    assert_eq!(m.offset, Some(1));
    r.ok(&format!("NACK {}", m.dtag), "OK").await;
    let dead = dead_letters(&mut p).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!((d.exchange.as_str(), d.key.as_str()), ("dlx", "user-1"));
    let queue = format!("pay-{part}");
    assert_eq!(
        (
            header(d, "x-death-reason"),
            header(d, "x-death-queue"),
            header(d, "x-death-group"),
            header(d, "x-death-offset"),
            header(d, "x-death-exchange"),
        ),
        (
            Some("delivery-limit"),
            Some(queue.as_str()),
            Some("ledger"),
            Some("1"),
            Some("pay")
        )
    );
    // Done for the group: a second publish to the same key is next.
    p.publish("pay", "user-1", "u1-b", 1).await;
    let m = r.msg().await;
    assert_eq!((m.partition, m.offset), (Some(part), Some(2)));
    r.quiet().await;
}

#[tokio::test]
async fn redeclaring_a_stream_compares_its_group_options() {
    let srv = TestServer::start().await;
    let mut p = setup(&srv, "s", "dead-letter=dlx delivery-limit=2").await;
    p.err("DECLARE QUEUE s type=stream", "PRECONDITION").await;
    p.err("DECLARE QUEUE s type=stream delivery-limit=0", "SYNTAX")
        .await;
    p.err("DECLARE QUEUE s type=stream ttl=5", "SYNTAX").await;
}
