//! Streams: an append-only log read by offset (`type=stream`), replay from
//! first / an offset / a time, consumer groups whose committed offset
//! survives a SIGKILL, `SEEK`, retention, and partitioned streams whose
//! partitions a group's members share and hand over without skipping a
//! message or giving one to two members.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::spawned::Spawned;
use crate::common::{words, Msg, Peer, TestConn, TestServer, DEADLINE};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Publishes `n` messages `<prefix><i>` to stream `s` (default exchange).
async fn publish(p: &mut Peer, s: &str, prefix: &str, range: std::ops::Range<usize>) {
    for i in range {
        p.publish("", s, &format!("{prefix}{i}"), 1).await;
    }
}

/// The next `n` deliveries' offsets.
async fn offsets(p: &mut Peer, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for _ in 0..n {
        let m = p.msg().await;
        out.push(
            m.offset
                .unwrap_or_else(|| panic!("no offset= in {}", m.head)),
        );
    }
    out
}

/// `messages=<n>` of a `DECLARE QUEUE` reply.
fn messages(reply: &str) -> u64 {
    words(reply)
        .iter()
        .find_map(|w| w.strip_prefix("messages=")?.parse().ok())
        .unwrap_or_else(|| panic!("no messages= in {reply:?}"))
}

#[tokio::test]
async fn a_stream_replays_from_first_an_offset_a_time_last_and_next() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok(
        "DECLARE QUEUE log type=stream",
        "OK log messages=0 consumers=0",
    )
    .await;
    publish(&mut p, "log", "a", 0..5).await;
    // Publish times are whole milliseconds: make the second batch's later.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let t = now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    publish(&mut p, "log", "b", 0..5).await;
    // Acking does not remove: the stream still holds all ten.
    p.ok(
        "DECLARE QUEUE log type=stream",
        "OK log messages=10 consumers=0",
    )
    .await;

    let mut r = Peer::connect(&srv).await;
    r.ok("SUB log tag=all offset=first", "OK all").await;
    let first: Vec<Msg> = {
        let mut v = Vec::new();
        for _ in 0..10 {
            v.push(r.msg().await);
        }
        v
    };
    let offs: Vec<u64> = first.iter().map(|m| m.offset.unwrap_or(0)).collect();
    assert_eq!(offs, (1..=10).collect::<Vec<_>>());
    assert_eq!(first[0].text(), "a0");
    assert_eq!(first[9].text(), "b4");
    for m in &first {
        r.ok(&format!("ACK {}", m.dtag), "OK").await;
    }
    r.quiet().await;
    r.ok("SUB log tag=again offset=first prefetch=3", "OK again")
        .await;
    assert_eq!(offsets(&mut r, 3).await, [1, 2, 3]);
    r.ok("UNSUB again", "OK").await;
    r.ok("SUB log tag=mid offset=7", "OK mid").await;
    assert_eq!(offsets(&mut r, 4).await, [7, 8, 9, 10]);
    r.ok(&format!("SUB log tag=t time={t}"), "OK t").await;
    let m = r.msg().await;
    assert_eq!((m.offset, m.text().as_str()), (Some(6), "b0"));
    assert_eq!(offsets(&mut r, 4).await, [7, 8, 9, 10]);
    r.ok("SUB log tag=last offset=last", "OK last").await;
    assert_eq!(offsets(&mut r, 1).await, [10]);
    r.ok("SUB log tag=next offset=next", "OK next").await;
    // An offset past the end starts at the end.
    r.ok("SUB log tag=far offset=1000", "OK far").await;
    r.quiet().await;
    p.publish("", "log", "c0", 1).await;
    // all, t, last, next and far each get offset 11 (mid's prefetch of
    // 100 has room too).
    let mut got = BTreeMap::new();
    for _ in 0..6 {
        let m = r.msg().await;
        assert_eq!(m.offset, Some(11), "{}", m.head);
        got.insert(m.ctag.clone(), m.text());
    }
    assert_eq!(
        got.keys().map(String::as_str).collect::<Vec<_>>(),
        ["all", "far", "last", "mid", "next", "t"]
    );
}

#[tokio::test]
async fn stream_errors_are_clear_and_change_nothing() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok(
        "DECLARE QUEUE s type=stream max-age=60000",
        "OK s messages=0 consumers=0",
    )
    .await;
    p.publish("", "s", "x", 1).await;
    // The refusal says what the stream has.
    let refused = p
        .err("DECLARE QUEUE s type=stream max-age=1000", "PRECONDITION")
        .await;
    assert!(
        refused.ends_with("(max-age=60000 type=stream)"),
        "{refused}"
    );
    p.err("DECLARE QUEUE s", "PRECONDITION").await;
    p.err("GET s", "PRECONDITION").await;
    p.err("PURGE s", "PRECONDITION").await;
    p.err("REDRIVE s", "PRECONDITION").await;
    p.err("SUB s exclusive", "PRECONDITION").await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    p.err("SUB q group=g", "PRECONDITION").await;
    p.err("SUB q offset=first", "PRECONDITION").await;
    p.err("SEEK q g offset=first", "PRECONDITION").await;
    p.err("SEEK nothing g offset=first", "NOT_FOUND").await;
    p.err("DECLARE QUEUE s2 type=stream ttl=5", "SYNTAX").await;
    // PEEK reads a stream by offset without changing it.
    p.conn.send("PEEK s").await;
    let (head, body) = p.conn.msg().await;
    assert!(head.starts_with("MSG * 1 "), "{head}");
    assert_eq!(body, b"x");
    p.conn.expect("OK 1").await;
    p.ok(
        "DECLARE QUEUE s type=stream max-age=60000",
        "OK s messages=1 consumers=0",
    )
    .await;
    // A stream needs a data directory.
    let mem = TestServer::start_with(|c| c.in_memory = true).await;
    let mut m = Peer::connect(&mem).await;
    m.err("DECLARE QUEUE s type=stream", "PRECONDITION").await;
}

#[tokio::test]
async fn group_offsets_survive_a_sigkill_and_two_groups_read_independently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Spawned::start_in(dir.path(), &[]).await;
    let mut c = TestConn::connect(srv.addr).await;
    c.ok(
        "DECLARE QUEUE events type=stream",
        "OK events messages=0 consumers=0",
    )
    .await;
    for i in 0..20 {
        c.ok(
            &format!("PUB \"\" events id=e{i} event-{i}"),
            &format!("OK e{i} routed=1"),
        )
        .await;
    }
    let mut g = Peer::over(TestConn::connect(srv.addr).await);
    g.ok(
        "SUB events group=billing offset=first prefetch=8 tag=b",
        "OK b",
    )
    .await;
    assert_eq!(g.notice().await, "NOTICE active b");
    let mut tags = Vec::new();
    for i in 1..=8u64 {
        let m = g.msg().await;
        assert_eq!(m.offset, Some(i), "{}", m.head);
        tags.push(m.dtag);
    }
    // Acks out of order commit in order: 1..5 acked (with 6 still out)
    // commits up to 5.
    for t in [tags[2], tags[0], tags[1], tags[4], tags[3], tags[6]] {
        g.ok(&format!("ACK {t}"), "OK").await;
    }
    srv.kill().await;
    let srv = Spawned::start_in(dir.path(), &[]).await;
    let mut g = TestConn::connect(srv.addr).await;
    // offset=first is ignored: the group exists and resumes where it stopped.
    g.ok(
        "SUB events group=billing offset=first prefetch=100 tag=b",
        "OK b",
    )
    .await;
    g.expect("NOTICE active b").await;
    let mut seen = Vec::new();
    for _ in 6..=20 {
        let (head, _) = g.msg().await;
        seen.push(Msg::parse(&head, Vec::new()).offset.unwrap_or(0));
    }
    assert_eq!(seen, (6..=20).collect::<Vec<_>>());
    // A second group reads the same stream from its own start.
    let mut h = TestConn::connect(srv.addr).await;
    h.ok(
        "SUB events group=audit offset=first prefetch=1 tag=a",
        "OK a",
    )
    .await;
    h.expect("NOTICE active a").await;
    let (head, body) = h.msg().await;
    assert_eq!(Msg::parse(&head, Vec::new()).offset, Some(1), "{head}");
    assert_eq!(body, b"event-0");
}

#[tokio::test]
async fn seek_replays_a_group_from_an_offset_or_a_time() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE s type=stream", "OK s messages=0 consumers=0")
        .await;
    publish(&mut p, "s", "m", 0..6).await;
    // A group can be placed before anyone reads it.
    p.ok("SEEK s g offset=3", "OK offset=3").await;
    let mut r = Peer::connect(&srv).await;
    r.ok("SUB s group=g tag=g", "OK g").await;
    assert_eq!(r.notice().await, "NOTICE active g");
    let mut dtags = Vec::new();
    for want in 3..=6 {
        let m = r.msg().await;
        assert_eq!(m.offset, Some(want));
        dtags.push(m.dtag);
    }
    for t in dtags {
        r.ok(&format!("ACK {t}"), "OK").await;
    }
    r.quiet().await;
    // Replay after a bug fix: back to the start, with the member attached.
    r.ok("SEEK s g offset=first", "OK offset=1").await;
    assert_eq!(offsets(&mut r, 6).await, [1, 2, 3, 4, 5, 6]);
    // ... or to a time: the first message published at or after it.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let t = now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    p.publish("", "s", "late", 1).await;
    assert_eq!(offsets(&mut r, 1).await, [7]);
    r.ok(&format!("SEEK s g time={t}"), "OK offset=7").await;
    let m = r.msg().await;
    assert_eq!((m.offset, m.text().as_str()), (Some(7), "late"));
    r.ok("SEEK s g offset=next", "OK offset=8").await;
    r.ok(&format!("ACK {}", m.dtag), "OK").await;
    r.quiet().await;
}

#[tokio::test]
async fn a_waiting_member_takes_over_where_the_group_stopped() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE s type=stream", "OK s messages=0 consumers=0")
        .await;
    publish(&mut p, "s", "m", 0..10).await;
    let mut a = Peer::connect(&srv).await;
    a.ok("SUB s group=g offset=first prefetch=4 tag=a", "OK a")
        .await;
    assert_eq!(a.notice().await, "NOTICE active a");
    let mut b = Peer::connect(&srv).await;
    b.ok("SUB s group=g prefetch=4 tag=b", "OK b").await;
    let got: Vec<Msg> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(a.msg().await);
        }
        v
    };
    assert_eq!(
        got.iter()
            .map(|m| m.offset.unwrap_or(0))
            .collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    // a acks 1 and 2, then its connection goes with 3 and 4 unacked.
    a.ok(&format!("ACK {}", got[0].dtag), "OK").await;
    a.ok(&format!("ACK {}", got[1].dtag), "OK").await;
    assert_eq!(offsets(&mut a, 2).await, [5, 6]);
    // LIST GROUPS: committed at 3 (1 and 2 acked), 8 to the end of the
    // stream (offset 11), 3 to 6 in flight, both members, a active.
    let mut c = srv.conn().await;
    let (rows, table) = c.data("LIST GROUPS s").await;
    assert_eq!(rows, "1", "{table}");
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // Then the last offset, the lag in time (a clock reading) and the
    // partition (none).
    assert_eq!(row.len(), 10, "{table}");
    assert_eq!(
        [&row[..7], &row[7..8], &row[9..]].concat(),
        ["s", "g", "3", "8", "4", "a,b", "a", "10", "-"],
        "{table}"
    );
    assert!(row[8].parse::<u64>().is_ok(), "{table}");
    assert_eq!(c.data("LIST GROUPS nothing*").await.0, "0");
    b.quiet().await;
    drop(a);
    assert_eq!(b.notice().await, "NOTICE active b");
    let m = b.msg().await;
    assert_eq!(m.offset, Some(3));
    assert!(m.redelivered, "{}", m.head);
    let rest = offsets(&mut b, 3).await;
    assert_eq!(rest, [4, 5, 6]);
}

#[tokio::test]
async fn retention_trims_whole_segments_by_size_and_by_age() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    // Segments of max-bytes / 8 = 1000 bytes: ten 100-byte messages each.
    p.ok(
        "DECLARE QUEUE sized type=stream max-bytes=8000",
        "OK sized messages=0 consumers=0",
    )
    .await;
    let body = "x".repeat(100);
    for _ in 0..200 {
        p.publish("", "sized", &body, 1).await;
    }
    let kept = messages(
        &p.cmd("DECLARE QUEUE sized type=stream max-bytes=8000")
            .await,
    );
    assert!((70..=90).contains(&kept), "kept {kept} of 200");
    let mut r = Peer::connect(&srv).await;
    r.ok("SUB sized offset=first prefetch=1000 tag=r", "OK r")
        .await;
    let offs = offsets(&mut r, kept as usize).await;
    // What is left is the newest, gap-free, ending at the last offset.
    assert_eq!(offs.last(), Some(&200));
    assert_eq!(offs, (201 - kept..=200).collect::<Vec<_>>());
    r.quiet().await;

    p.ok(
        "DECLARE QUEUE aged type=stream max-age=300",
        "OK aged messages=0 consumers=0",
    )
    .await;
    publish(&mut p, "aged", "old", 0..5).await;
    // The retention timer removes them once they are older than 300 ms.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let n = messages(&p.cmd("DECLARE QUEUE aged type=stream max-age=300").await);
        if n == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {n} kept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.publish("", "aged", "new", 1).await;
    r.ok("SUB aged offset=first tag=a", "OK a").await;
    let m = r.msg().await;
    assert_eq!((m.offset, m.text().as_str()), (Some(6), "new"));
}

/// The segment files of the one stream of data directory `dir`.
fn segment_files(dir: &std::path::Path) -> usize {
    let log = dir.join("log");
    let mut n = 0;
    for e in std::fs::read_dir(&log).expect("log directory") {
        let e = e.expect("entry");
        if e.file_name() == "wal" || !e.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(e.path()).expect("queue directory") {
            let f = f.expect("entry");
            n += usize::from(f.path().extension().is_some_and(|x| x == "seg"));
        }
    }
    n
}

#[tokio::test]
async fn retention_deletes_a_durable_streams_old_files_and_a_sigkill_brings_nothing_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Spawned::start_in(dir.path(), &[]).await;
    let mut c = TestConn::connect(srv.addr).await;
    let decl = "DECLARE QUEUE big type=stream max-bytes=16000000";
    c.ok(decl, "OK big messages=0 consumers=0").await;
    // 400 × 64 KiB = 25 MiB through a 16 MB stream: the log's files are
    // 8 MiB each, so retention leaves at least one of them with nothing.
    let body = vec![b'x'; 64 * 1024];
    for i in 0..400 {
        c.send_literal(&format!("PUB \"\" big id=b{i}"), &body)
            .await;
        c.expect(&format!("OK b{i} routed=1")).await;
    }
    let kept = messages(&c.cmd(decl).await);
    assert!((200..=245).contains(&kept), "kept {kept} of 400");
    // Files whose every entry was cut are gone once the cut is durable
    // (the confirm of a later publish waits for it).
    c.send_literal("PUB \"\" big id=last", b"last").await;
    c.expect("OK last routed=1").await;
    let files = segment_files(dir.path());
    assert!(files <= 3, "{files} segment files for 16 MB kept");
    srv.kill().await;
    let srv = Spawned::start_in(dir.path(), &[]).await;
    let mut c = TestConn::connect(srv.addr).await;
    let reply = c.cmd(decl).await;
    assert_eq!(messages(&reply), kept + 1, "{reply}");
    let mut r = Peer::over(TestConn::connect(srv.addr).await);
    r.ok("SUB big offset=first prefetch=1000 tag=r", "OK r")
        .await;
    let offs = offsets(&mut r, kept as usize + 1).await;
    assert_eq!(offs, (401 - kept..=401).collect::<Vec<_>>());
    assert!(segment_files(dir.path()) <= 3);
}

/// What one group member saw: (partition, offset) → body, in order.
#[derive(Default)]
struct Seen {
    order: Vec<(u32, u64, String)>,
}

/// Reads `n` deliveries on `p`, acking each at once.
async fn take_and_ack(p: &mut Peer, n: usize, seen: &mut Seen) {
    for _ in 0..n {
        let m = p.msg().await;
        let part = m
            .partition
            .unwrap_or_else(|| panic!("no partition= in {}", m.head));
        let off = m
            .offset
            .unwrap_or_else(|| panic!("no offset= in {}", m.head));
        seen.order.push((part, off, m.text()));
        p.ok(&format!("ACK {}", m.dtag), "OK").await;
    }
}

/// How many messages each partition of `orders` holds.
async fn partition_sizes(p: &mut Peer, n: u32) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..n {
        let reply = p.cmd(&format!("STATS QUEUE orders-{i}")).await;
        let (_, data) = split_data(&reply, p).await;
        let depth = data
            .lines()
            .find_map(|l| l.strip_prefix("messages_ready ")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no messages line in {data:?}"));
        out.push(depth);
    }
    out
}

async fn split_data(reply: &str, p: &mut Peer) -> (String, String) {
    let (head, n) =
        crate::common::split_literal(reply).unwrap_or_else(|| panic!("no literal: {reply:?}"));
    let body = p.conn.literal(n).await;
    (head, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn partitions_are_shared_and_handed_over_with_no_message_skipped_or_doubled() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok(
        "DECLARE QUEUE orders type=stream partitions=3",
        "OK orders messages=0 consumers=0 partitions=3",
    )
    .await;
    // 30 keys, 4 events each: a key always lands on one partition.
    for round in 0..4 {
        for k in 0..30 {
            p.publish("orders", &format!("k{k}"), &format!("k{k}-{round}"), 1)
                .await;
        }
    }
    let sizes = partition_sizes(&mut p, 3).await;
    assert_eq!(sizes.iter().sum::<u64>(), 120);
    assert!(sizes.iter().all(|s| *s >= 10), "{sizes:?}");

    // A alone: active on every partition.
    let mut a = Peer::connect(&srv).await;
    a.ok("SUB orders group=g offset=first prefetch=5 tag=a", "OK a")
        .await;
    let mut notices: BTreeSet<String> = BTreeSet::new();
    for _ in 0..3 {
        notices.insert(a.notice().await);
    }
    let want: BTreeSet<String> = (0..3)
        .map(|i| format!("NOTICE active a partition={i}"))
        .collect();
    assert_eq!(notices, want);
    // Five in flight per partition, none acked yet.
    let mut first: Vec<Msg> = Vec::new();
    for _ in 0..15 {
        first.push(a.msg().await);
    }
    // B joins: partition 1 moves to it (member index 1 of 2), but only once
    // A's five deliveries of it are settled.
    let mut b = Peer::connect(&srv).await;
    b.ok("SUB orders group=g prefetch=5 tag=b", "OK b").await;
    assert_eq!(a.notice().await, "NOTICE inactive a partition=1");
    b.quiet().await;
    let mut seen_a = Seen::default();
    let mut seen_b = Seen::default();
    for m in &first {
        seen_a
            .order
            .push((m.partition.unwrap_or(9), m.offset.unwrap_or(0), m.text()));
        a.ok(&format!("ACK {}", m.dtag), "OK").await;
    }
    assert_eq!(b.notice().await, "NOTICE active b partition=1");
    // Everything else: partitions 0 and 2 to A, partition 1 to B.
    let a_left = (sizes[0] + sizes[2] - 10) as usize;
    let b_left = (sizes[1] - 5) as usize;
    take_and_ack(&mut a, a_left, &mut seen_a).await;
    take_and_ack(&mut b, b_left, &mut seen_b).await;
    a.quiet().await;
    b.quiet().await;
    assert!(seen_b.order.iter().all(|(part, _, _)| *part == 1));

    // B leaves with nothing in flight; C joins. Members [A, C]: partition 1
    // goes to C at once. New messages are split the same way.
    drop(b);
    let mut c = Peer::connect(&srv).await;
    c.ok("SUB orders group=g prefetch=5 tag=c", "OK c").await;
    assert_eq!(c.notice().await, "NOTICE active c partition=1");
    for k in 0..30 {
        p.publish("orders", &format!("k{k}"), &format!("k{k}-4"), 1)
            .await;
    }
    let after = partition_sizes(&mut p, 3).await;
    let mut seen_c = Seen::default();
    take_and_ack(
        &mut a,
        (after[0] - sizes[0] + after[2] - sizes[2]) as usize,
        &mut seen_a,
    )
    .await;
    take_and_ack(&mut c, (after[1] - sizes[1]) as usize, &mut seen_c).await;
    a.quiet().await;
    c.quiet().await;

    // Every (partition, offset) exactly once across the members, and each
    // key's events in publish order.
    let mut all: Vec<(u32, u64, String)> = seen_a.order.clone();
    all.extend(seen_b.order.clone());
    all.extend(seen_c.order.clone());
    let distinct: BTreeSet<(u32, u64)> = all.iter().map(|(p, o, _)| (*p, *o)).collect();
    assert_eq!(distinct.len(), all.len(), "a message went to two members");
    assert_eq!(all.len(), 150, "a message was skipped");
    let mut by_key: BTreeMap<String, Vec<(u32, u64, u32)>> = BTreeMap::new();
    for (part, off, body) in &all {
        let (key, round) = body.split_once('-').unwrap_or_else(|| panic!("{body}"));
        by_key
            .entry(key.to_string())
            .or_default()
            .push((*part, *off, round.parse().unwrap_or(99)));
    }
    for (key, mut events) in by_key {
        assert_eq!(events.len(), 5, "{key}");
        assert!(
            events.iter().all(|e| e.0 == events[0].0),
            "{key} on two partitions"
        );
        events.sort_by_key(|e| e.1);
        let rounds: Vec<u32> = events.iter().map(|e| e.2).collect();
        assert_eq!(rounds, [0, 1, 2, 3, 4], "{key} out of order");
    }
}

#[tokio::test]
async fn a_partitioned_stream_is_declared_deleted_and_recovered_whole() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok(
        "DECLARE QUEUE orders type=stream partitions=2",
        "OK orders messages=0 consumers=0 partitions=2",
    )
    .await;
    p.ok(
        "DECLARE QUEUE orders type=stream partitions=2",
        "OK orders messages=0 consumers=0 partitions=2",
    )
    .await;
    p.err(
        "DECLARE QUEUE orders type=stream partitions=3",
        "PRECONDITION",
    )
    .await;
    p.err("DECLARE QUEUE orders type=stream", "PRECONDITION")
        .await;
    p.err("DELETE EXCHANGE orders", "PRECONDITION").await;
    p.ok("DECLARE EXCHANGE plain direct", "OK").await;
    p.err(
        "DECLARE QUEUE plain type=stream partitions=2",
        "PRECONDITION",
    )
    .await;
    for k in 0..10 {
        p.publish("orders", &format!("k{k}"), "x", 1).await;
    }
    let srv = {
        drop(p);
        srv.restart().await
    };
    let mut p = Peer::connect(&srv).await;
    p.ok(
        "DECLARE QUEUE orders type=stream partitions=2",
        "OK orders messages=10 consumers=0 partitions=2",
    )
    .await;
    // Partitions keep their index: deliveries say which.
    p.ok("SUB orders offset=first prefetch=100 tag=r", "OK r")
        .await;
    let mut parts = BTreeSet::new();
    for _ in 0..10 {
        parts.insert(p.msg().await.partition.unwrap_or(9));
    }
    assert!(parts.iter().all(|i| *i < 2), "{parts:?}");
    p.ok("UNSUB r", "OK").await;
    p.ok("DELETE QUEUE orders", "OK messages=10").await;
    p.err("SUB orders", "NOT_FOUND").await;
    p.err("SUB orders-0", "NOT_FOUND").await;
    p.err("DELETE EXCHANGE orders", "NOT_FOUND").await;
}

#[tokio::test]
async fn nack_redelivers_before_newer_messages_and_reject_skips() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE s type=stream", "OK s messages=0 consumers=0")
        .await;
    publish(&mut p, "s", "m", 0..4).await;
    let mut r = Peer::connect(&srv).await;
    r.ok("SUB s group=g offset=first prefetch=2 tag=g", "OK g")
        .await;
    assert_eq!(r.notice().await, "NOTICE active g");
    let one = r.msg().await;
    let two = r.msg().await;
    assert_eq!((one.offset, two.offset), (Some(1), Some(2)));
    // NACK 1: it comes again, flagged, before offset 3.
    r.ok(&format!("NACK {}", one.dtag), "OK").await;
    let again = r.msg().await;
    assert_eq!(again.offset, Some(1));
    assert!(again.redelivered && again.deliveries == 2, "{}", again.head);
    // REJECT 2: done with, like an ack (the stream has no dead-letter=).
    r.ok(&format!("REJECT {}", two.dtag), "OK").await;
    let three = r.msg().await;
    assert_eq!(three.offset, Some(3));
    r.ok(&format!("ACK {}", again.dtag), "OK").await;
    let four = r.msg().await;
    assert_eq!(four.offset, Some(4));
    // 3 and 4 are out: the group's position is 3, so a new member after
    // this one leaves starts there, and 2 is not delivered again.
    drop(r);
    let mut n = Peer::connect(&srv).await;
    n.ok("SUB s group=g tag=n", "OK n").await;
    assert_eq!(n.notice().await, "NOTICE active n");
    assert_eq!(offsets(&mut n, 2).await, [3, 4]);
    n.quiet().await;
}

/// Reads the reply lines of `n` pipelined commands, buffering pushes.
async fn replies(p: &mut Peer, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(p.reply().await);
    }
    out
}

#[tokio::test]
async fn a_stream_and_its_group_survive_sigkills_with_commands_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Bodies confirmed by an OK, and the offset the group must not go below
    // (its acks answered OK) — across every round.
    let mut confirmed: BTreeSet<String> = BTreeSet::new();
    let mut committed = 1u64;
    let mut delivered_max = 0u64;
    for round in 0..3u32 {
        let mut srv = Spawned::start_in(dir.path(), &[]).await;
        let mut p = Peer::over(TestConn::connect(srv.addr).await);
        let reply = p.cmd("DECLARE QUEUE s type=stream").await;
        assert!(reply.starts_with("OK s messages="), "{reply}");
        let mut g = Peer::over(TestConn::connect(srv.addr).await);
        g.ok("SUB s group=g offset=first prefetch=40 tag=g", "OK g")
            .await;
        assert_eq!(g.notice().await, "NOTICE active g");
        // The group resumes at or after what it committed, and skips nothing.
        if round > 0 {
            let m = g.msg().await;
            let f = m.offset.unwrap_or(0);
            assert!(
                f >= committed && f <= delivered_max + 1,
                "round {round}: resumed at {f}, committed {committed}, delivered up to {delivered_max}"
            );
            // Put it back for the ack loop below.
            g.ok(&format!("NACK {}", m.dtag), "OK").await;
        }
        // Publish 200 (confirmed), consume and ack some with their OKs.
        for i in 0..200 {
            p.conn.send(&format!("PUB \"\" s r{round}-{i}")).await;
        }
        for (i, r) in replies(&mut p, 200).await.into_iter().enumerate() {
            assert!(r.starts_with("OK ") && r.ends_with("routed=1"), "{r}");
            confirmed.insert(format!("r{round}-{i}"));
        }
        for _ in 0..60 {
            let m = g.msg().await;
            let off = m.offset.unwrap_or(0);
            delivered_max = delivered_max.max(off);
            g.ok(&format!("ACK {}", m.dtag), "OK").await;
            committed = committed.max(off + 1);
        }
        // Then in flight at the kill: publishes and acks not yet answered.
        for i in 200..260 {
            p.conn.send(&format!("PUB \"\" s r{round}-{i}")).await;
        }
        for _ in 0..30 {
            let m = g.msg().await;
            delivered_max = delivered_max.max(m.offset.unwrap_or(0));
            g.conn.send(&format!("ACK {}", m.dtag)).await;
        }
        srv.kill().await;
    }
    // Everything confirmed is there, each once, in offset order.
    let srv = Spawned::start_in(dir.path(), &[]).await;
    let mut r = Peer::over(TestConn::connect(srv.addr).await);
    let n = messages(&r.cmd("DECLARE QUEUE s type=stream").await) as usize;
    assert!(
        n >= confirmed.len(),
        "{n} kept, {} confirmed",
        confirmed.len()
    );
    r.ok("SUB s offset=first prefetch=1000 tag=all", "OK all")
        .await;
    let mut seen = BTreeSet::new();
    let mut last = 0;
    for _ in 0..n {
        let m = r.msg().await;
        let off = m.offset.unwrap_or(0);
        assert!(off > last, "offsets out of order: {off} after {last}");
        last = off;
        assert!(seen.insert(m.text()), "{} stored twice", m.text());
    }
    let missing: Vec<_> = confirmed.difference(&seen).collect();
    assert!(missing.is_empty(), "confirmed but lost: {missing:?}");
}
