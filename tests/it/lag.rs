//! Watching lag: a stream consumer group's position and lag (messages and
//! time) in `STATS QUEUE`, `LIST GROUPS`, `LIST CONSUMERS` and `/metrics`,
//! per partition; and `SUB prefetch-bytes=`, the byte budget of a
//! subscription, on a queue and on a stream.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::cli_run::cli;
use crate::common::{http_request, Msg, Peer, TestConn, TestServer};
use crate::introspection::check_exposition;

/// The value of `key` in a `STATS` literal.
fn stat<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(key)).then(|| w.next().unwrap_or(""))
        })
        .unwrap_or_else(|| panic!("no {key} in\n{text}"))
}

/// The rows of a `LIST` table as maps from column name to cell.
async fn table(c: &mut TestConn, line: &str) -> Vec<BTreeMap<String, String>> {
    let (_, text) = c.data(line).await;
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    lines
        .map(|l| {
            head.iter()
                .zip(l.split_whitespace())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The `/metrics` samples named `name`, by their labels.
async fn metric(srv: &TestServer, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let http = srv.http.expect("http address");
    let (status, _, body) = http_request(http, "GET", "/metrics").await;
    assert_eq!(status, 200);
    check_exposition(&body)
        .into_iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, l, v)| (l, v))
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn a_group_behind_by_n_shows_lag_n_everywhere_and_zero_once_acked() {
    let srv = TestServer::start_with(|c| c.http = Some(([127, 0, 0, 1], 0).into())).await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE s type=stream", "OK s messages=0 consumers=0")
        .await;
    let before = Instant::now();
    for i in 0..5 {
        p.publish("", "s", &format!("m{i}"), 1).await;
    }
    let mut m = Peer::connect(&srv).await;
    m.ok("SUB s group=g offset=first prefetch=10 tag=m1", "OK m1")
        .await;
    assert_eq!(m.notice().await, "NOTICE active m1");
    let mut got: Vec<Msg> = Vec::new();
    for _ in 0..5 {
        got.push(m.msg().await);
    }
    // Let the oldest message age measurably: its lag in time is at least
    // this, and at most the time since before it was published.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let mut c = srv.conn().await;
    let (_, stats) = c.data("STATS QUEUE s").await;
    let most = before.elapsed().as_millis() as u64;
    assert_eq!(stat(&stats, "stream_first_offset"), "1", "{stats}");
    assert_eq!(stat(&stats, "stream_last_offset"), "5", "{stats}");
    assert_eq!(stat(&stats, "stream_groups"), "1", "{stats}");
    assert_eq!(stat(&stats, "group.g.committed_offset"), "1", "{stats}");
    assert_eq!(stat(&stats, "group.g.lag_messages"), "5", "{stats}");
    assert_eq!(stat(&stats, "group.g.in_flight"), "5", "{stats}");
    assert_eq!(stat(&stats, "group.g.active"), "m1", "{stats}");
    let lag_ms: u64 = stat(&stats, "group.g.lag_ms").parse().expect("ms");
    // The server's two wall-clock times are each cut to the millisecond,
    // and so is `most`: the lag may read up to 2 ms over the true one.
    assert!((60..=most + 2).contains(&lag_ms), "{lag_ms} ms, {most} ms");

    let groups = table(&mut c, "LIST GROUPS").await;
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert_eq!(
        (&*g["committed"], &*g["lag"], &*g["last"], &*g["active"]),
        ("1", "5", "5", "m1"),
        "{g:?}"
    );
    assert!(g["lag_ms"].parse::<u64>().expect("ms") >= 60, "{g:?}");
    assert_eq!(g["partition"], "-");
    let consumers = table(&mut c, "LIST CONSUMERS").await;
    let r = &consumers[0];
    assert_eq!(
        (&*r["group"], &*r["lag"], &*r["active"]),
        ("g", "5", "true"),
        "{r:?}"
    );
    assert!(r["lag_ms"].parse::<u64>().expect("ms") >= 60, "{r:?}");

    let at = |pairs: &[(&str, &str)]| labels(pairs);
    let g_labels = at(&[("stream", "s"), ("group", "g"), ("partition", "0")]);
    let lag = metric(&srv, "sluice_group_lag_messages").await;
    assert_eq!(lag, [(g_labels.clone(), 5.0)]);
    let secs = metric(&srv, "sluice_group_lag_seconds").await;
    assert!(secs[0].1 >= 0.06, "{secs:?}");
    let committed = metric(&srv, "sluice_group_committed_offset").await;
    assert_eq!(committed, [(g_labels.clone(), 1.0)]);
    let last = metric(&srv, "sluice_stream_last_offset").await;
    assert_eq!(last, [(at(&[("stream", "s"), ("partition", "0")]), 5.0)]);
    let active = metric(&srv, "sluice_group_active_member").await;
    assert_eq!(
        active,
        [(
            at(&[
                ("stream", "s"),
                ("group", "g"),
                ("partition", "0"),
                ("consumer", "m1")
            ]),
            1.0
        )]
    );

    // Acked out of order: the lag drops as the committed offset moves.
    m.ok(&format!("ACK {}", got[1].dtag), "OK").await;
    let (_, stats) = c.data("STATS QUEUE s").await;
    assert_eq!(stat(&stats, "group.g.lag_messages"), "5", "{stats}");
    m.ok(&format!("ACK {}", got[0].dtag), "OK").await;
    let (_, stats) = c.data("STATS QUEUE s").await;
    assert_eq!(stat(&stats, "group.g.committed_offset"), "3", "{stats}");
    assert_eq!(stat(&stats, "group.g.lag_messages"), "3", "{stats}");
    for d in &got[2..] {
        m.ok(&format!("ACK {}", d.dtag), "OK").await;
    }
    let (_, stats) = c.data("STATS QUEUE s").await;
    assert_eq!(stat(&stats, "group.g.committed_offset"), "6", "{stats}");
    assert_eq!(stat(&stats, "group.g.lag_messages"), "0", "{stats}");
    assert_eq!(stat(&stats, "group.g.lag_ms"), "0", "{stats}");
    let g = &table(&mut c, "LIST GROUPS").await[0];
    assert_eq!((&*g["lag"], &*g["lag_ms"]), ("0", "0"), "{g:?}");
    let lag = metric(&srv, "sluice_group_lag_messages").await;
    assert_eq!(lag, [(g_labels.clone(), 0.0)]);
    let secs = metric(&srv, "sluice_group_lag_seconds").await;
    assert_eq!(secs, [(g_labels, 0.0)]);

    // The member leaves: no active member, the lag stays visible.
    m.ok("UNSUB m1", "OK").await;
    p.publish("", "s", "later", 1).await;
    let (_, stats) = c.data("STATS QUEUE s").await;
    assert_eq!(stat(&stats, "group.g.active"), "none", "{stats}");
    assert_eq!(stat(&stats, "group.g.lag_messages"), "1", "{stats}");
    assert_eq!(stat(&stats, "stream_last_offset"), "6", "{stats}");
    assert!(metric(&srv, "sluice_group_active_member").await.is_empty());
}

#[tokio::test]
async fn a_partitioned_group_shows_lag_and_active_member_per_partition() {
    let srv = TestServer::start_with(|c| c.http = Some(([127, 0, 0, 1], 0).into())).await;
    let mut p = Peer::connect(&srv).await;
    p.ok(
        "DECLARE QUEUE pay type=stream partitions=2",
        "OK pay messages=0 consumers=0 partitions=2",
    )
    .await;
    for i in 0..20 {
        p.publish("pay", &format!("user-{i}"), "x", 1).await;
    }
    let mut c = srv.conn().await;
    let mut kept = [0u64; 2];
    for (part, n) in kept.iter_mut().enumerate() {
        let (_, s) = c.data(&format!("STATS QUEUE pay-{part}")).await;
        *n = stat(&s, "messages_ready").parse().expect("count");
    }
    assert!(
        kept.iter().all(|n| *n > 0),
        "both partitions hold some: {kept:?}"
    );
    let mut a = Peer::connect(&srv).await;
    a.ok(
        "SUB pay group=ledger offset=first prefetch=100 tag=a",
        "OK a",
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..20 {
        got.push(a.msg().await);
    }
    let lag_of =
        |part: &str| labels(&[("stream", "pay"), ("group", "ledger"), ("partition", part)]);
    let lag = metric(&srv, "sluice_group_lag_messages").await;
    assert_eq!(
        lag,
        [(lag_of("0"), kept[0] as f64), (lag_of("1"), kept[1] as f64)]
    );
    let groups = table(&mut c, "LIST GROUPS pay-*").await;
    let row = |g: &BTreeMap<String, String>| {
        (
            g["stream"].clone(),
            g["partition"].clone(),
            g["lag"].clone(),
            g["active"].clone(),
        )
    };
    assert_eq!(
        groups.iter().map(row).collect::<Vec<_>>(),
        [
            ("pay-0".into(), "0".into(), kept[0].to_string(), "a".into()),
            ("pay-1".into(), "1".into(), kept[1].to_string(), "a".into()),
        ]
    );
    // b joins: partition 1 is handed to it once a settles its deliveries
    // of partition 1 (acked: that partition is caught up).
    let mut b = Peer::connect(&srv).await;
    b.ok("SUB pay group=ledger prefetch=100 tag=b", "OK b")
        .await;
    for m in got.iter().filter(|m| m.partition == Some(1)) {
        a.ok(&format!("ACK {}", m.dtag), "OK").await;
    }
    assert_eq!(b.notice().await, "NOTICE active b partition=1");
    let active = metric(&srv, "sluice_group_active_member").await;
    let member = |part: &str, tag: &str| {
        labels(&[
            ("stream", "pay"),
            ("group", "ledger"),
            ("partition", part),
            ("consumer", tag),
        ])
    };
    assert_eq!(active, [(member("0", "a"), 1.0), (member("1", "b"), 1.0)]);
    let lag = metric(&srv, "sluice_group_lag_messages").await;
    assert_eq!(lag, [(lag_of("0"), kept[0] as f64), (lag_of("1"), 0.0)]);
    let groups = table(&mut c, "LIST GROUPS pay-*").await;
    assert_eq!(
        groups.iter().map(row).collect::<Vec<_>>(),
        [
            ("pay-0".into(), "0".into(), kept[0].to_string(), "a".into()),
            ("pay-1".into(), "1".into(), "0".into(), "b".into()),
        ]
    );
}

/// Publishes `body` to queue `q` through the default exchange.
async fn put(p: &mut Peer, q: &str, body: &str) {
    p.publish("", q, body, 1).await;
}

/// Declares queue `q`, or (`stream`) stream `st`: returns its name, the
/// `SUB` option that reads it from its start, and the declaring peer.
async fn declare(srv: &TestServer, stream: bool) -> (&'static str, &'static str, Peer) {
    let (q, kind, start) = match stream {
        false => ("q", "", ""),
        true => ("st", " type=stream", " offset=first"),
    };
    let mut p = Peer::connect(srv).await;
    p.ok(
        &format!("DECLARE QUEUE {q}{kind}"),
        &format!("OK {q} messages=0 consumers=0"),
    )
    .await;
    (q, start, p)
}

/// The bodies of the next `n` deliveries.
async fn bodies(c: &mut Peer, n: usize) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let m = c.msg().await;
        out.push((m.dtag, m.text()));
    }
    out
}

#[tokio::test]
async fn prefetch_bytes_sends_only_what_fits_and_more_after_an_ack() {
    let srv = TestServer::start().await;
    for stream in [false, true] {
        let (q, start, mut p) = declare(&srv, stream).await;
        for b in ["aaaa", "bbbb", "cccc", "dddd", "eeee"] {
            put(&mut p, q, b).await;
        }
        let mut c = Peer::connect(&srv).await;
        c.ok(
            &format!("SUB {q} prefetch=10 prefetch-bytes=10 tag=w{start}"),
            "OK w",
        )
        .await;
        // 4 + 4 bytes fit in 10; a third body would make 12.
        let got = bodies(&mut c, 2).await;
        assert_eq!(
            got.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>(),
            ["aaaa", "bbbb"],
            "{q}"
        );
        c.quiet().await;
        let mut l = srv.conn().await;
        let rows = table(&mut l, &format!("LIST CONSUMERS {q}")).await;
        assert_eq!(
            (
                &*rows[0]["prefetch_bytes"],
                &*rows[0]["bytes_in_flight"],
                &*rows[0]["in_flight"]
            ),
            ("10", "8", "2"),
            "{q}: {rows:?}"
        );
        // An ACK gives 4 bytes back: one more fits.
        c.ok(&format!("ACK {}", got[0].0), "OK").await;
        assert_eq!(bodies(&mut c, 1).await[0].1, "cccc", "{q}");
        c.quiet().await;
        // Another ACK: the next body fits again.
        c.ok(&format!("ACK {}", got[1].0), "OK").await;
        assert_eq!(bodies(&mut c, 1).await[0].1, "dddd", "{q}");
        c.quiet().await;
    }
}

#[tokio::test]
async fn a_body_larger_than_prefetch_bytes_goes_out_alone() {
    let srv = TestServer::start().await;
    for stream in [false, true] {
        let (q, start, mut p) = declare(&srv, stream).await;
        let big = "B".repeat(50);
        for b in ["s1", big.as_str(), "s2", "s3"] {
            put(&mut p, q, b).await;
        }
        let mut c = Peer::connect(&srv).await;
        c.ok(&format!("SUB {q} prefetch-bytes=10 tag=w{start}"), "OK w")
            .await;
        // s1 is in flight: the big body waits until nothing is.
        let s1 = bodies(&mut c, 1).await;
        assert_eq!(s1[0].1, "s1", "{q}");
        c.quiet().await;
        c.ok(&format!("ACK {}", s1[0].0), "OK").await;
        let b = bodies(&mut c, 1).await;
        assert_eq!(b[0].1, big, "{q}: the big body alone");
        c.quiet().await;
        c.ok(&format!("ACK {}", b[0].0), "OK").await;
        let rest = bodies(&mut c, 2).await;
        assert_eq!(
            rest.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>(),
            ["s2", "s3"],
            "{q}"
        );
    }
}

#[tokio::test]
async fn prefetch_bytes_out_of_range_or_not_a_number_is_a_syntax_error() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    for bad in ["0", "1073741825", "lots", "-1", "1k", ""] {
        let got = c.cmd(&format!("SUB q prefetch-bytes={bad}")).await;
        assert!(
            got.starts_with("ERR SYNTAX prefetch-bytes"),
            "{bad:?}: {got}"
        );
    }
    c.ok("SUB q prefetch-bytes=1073741824 tag=t", "OK t").await;
}

#[tokio::test]
async fn sluice_stats_prints_a_groups_lag_as_text_and_json() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE s type=stream", "OK s messages=0 consumers=0")
        .await;
    for i in 0..3 {
        put(&mut p, "s", &format!("m{i}")).await;
    }
    let mut m = Peer::connect(&srv).await;
    m.ok("SUB s group=g offset=first prefetch=1 tag=m1", "OK m1")
        .await;
    let first = m.msg().await;
    m.ok(&format!("ACK {}", first.dtag), "OK").await;
    // Offset 1 acked, 2 in flight: 2 behind.
    let r = cli(srv.addr, &["stats", "s"]).await.ok();
    assert_eq!(stat(&r.text(), "group.g.lag_messages"), "2", "{}", r.text());
    assert_eq!(stat(&r.text(), "group.g.committed_offset"), "2");
    let r = cli(srv.addr, &["stats", "s", "--json"]).await.ok();
    let v = &r.json_lines()[0];
    assert_eq!(v["group.g.lag_messages"], 2, "{v}");
    assert_eq!(v["group.g.active"], "m1", "{v}");
    assert_eq!(v["stream_last_offset"], 3, "{v}");
}
