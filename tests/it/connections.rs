//! Hostile and broken connections (issue 5, part 4): slowloris clients are
//! closed at the frame timeout while others are served; a client that goes
//! silent is found by its heartbeat and its deliveries go back; a connection
//! over `--max-connections` gets `ERR LIMIT`; running out of file
//! descriptors leaves the broker serving; idle connections cost little.
//!
//! The CI versions are small. `SLUICE_LONG=1` runs the plan's sizes (1,000
//! slowloris connections trickling a byte a second, 10,000 idle ones) and
//! prints the figures: `SLUICE_LONG=1 cargo test --release --test it
//! connections:: -- --nocapture`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::spawned::Spawned;
use crate::common::{TestConn, TestServer, DEADLINE};

fn long() -> bool {
    std::env::var_os("SLUICE_LONG").is_some()
}

/// Reads what the server sends until it closes; panics after `within`.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> String {
    let mut all = Vec::new();
    let r = tokio::time::timeout(within, s.read_to_end(&mut all)).await;
    assert!(
        r.is_ok(),
        "not closed in time; got {:?}",
        String::from_utf8_lossy(&all)
    );
    String::from_utf8_lossy(&all).into_owned()
}

async fn connect_raw(addr: std::net::SocketAddr) -> TcpStream {
    tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// p50 and p99 of a sample, in ms.
fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    (at(0.50), at(0.99))
}

/// One slowloris client: starts a command (a line, or a literal) and then
/// trickles one byte per `every`, never finishing. Returns how long after
/// its first byte the server closed it, and what the server said.
async fn slowloris(
    addr: std::net::SocketAddr,
    literal: bool,
    every: Duration,
) -> (Duration, String) {
    let mut s = connect_raw(addr).await;
    let start: &[u8] = if literal {
        b"PUB \"\" k {1000000}\r\nab"
    } else {
        b"PUB \"\" k "
    };
    let (mut r, mut w) = s.split();
    let t0 = Instant::now();
    w.write_all(start).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            n = r.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            },
            _ = tokio::time::sleep(every) => {
                // The write fails once the server has closed: then read what it said.
                if w.write_all(b"a").await.is_err() {
                    let _ = r.read_to_end(&mut got).await;
                    break;
                }
            }
        }
        assert!(t0.elapsed() < DEADLINE * 6, "slowloris client never closed");
    }
    let _ = s.shutdown().await;
    (t0.elapsed(), String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_closed_at_the_frame_timeout_and_others_are_served() {
    let (n, timeout, every) = if long() {
        (1000, Duration::from_secs(5), Duration::from_secs(1))
    } else {
        (200, Duration::from_millis(1000), Duration::from_millis(100))
    };
    let srv = TestServer::start_with(|c| c.frame_timeout = timeout).await;
    let mut slow = Vec::new();
    for i in 0..n {
        slow.push(tokio::spawn(slowloris(srv.addr, i % 5 == 0, every)));
    }
    // A normal client keeps working meanwhile, and keeps its connection
    // although it, too, sends a command a byte at a time: each command
    // finishes well inside the timeout.
    let mut c = TestConn::connect(srv.addr).await;
    let mut pings = Vec::new();
    let began = Instant::now();
    while began.elapsed() < timeout * 2 {
        let t = Instant::now();
        c.ok("PING", "OK pong").await;
        pings.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Four commands of 6 bytes at one byte per timeout/16: each takes 3/8
    // of the timeout, all four 1.5 timeouts.
    for _ in 0..4 {
        for b in b"PING\r\n" {
            c.send_raw(&[*b]).await;
            tokio::time::sleep(timeout / 16).await;
        }
        c.expect("OK pong").await;
    }
    let mut closed_after = Vec::new();
    for h in slow {
        let (after, said) = h.await.expect("slowloris task");
        assert!(
            said.starts_with("HELLO sluice ")
                && said.ends_with(&format!(
                    "ERR BAD_FRAME command not completed within {} ms; closing\r\n",
                    timeout.as_millis()
                )),
            "slowloris client got {said:?}"
        );
        assert!(
            after >= timeout,
            "closed after {after:?}, before the timeout"
        );
        closed_after.push(after);
    }
    c.ok("PING", "OK pong").await;
    let (p50, p99) = percentiles(pings);
    let (_, close_p99) = percentiles(closed_after);
    println!(
        "slowloris: {n} clients, frame timeout {} ms: all closed with ERR BAD_FRAME, \
         99% within {close_p99:.0} ms of their first byte; another client's PING \
         p50 {p50:.2} ms p99 {p99:.2} ms",
        timeout.as_millis()
    );
}

#[tokio::test]
async fn a_silent_client_is_closed_after_two_heartbeats_and_its_deliveries_go_back() {
    let srv = TestServer::start().await;
    let mut setup = TestConn::connect(srv.addr).await;
    setup
        .ok("DECLARE QUEUE hb", "OK hb messages=0 consumers=0")
        .await;
    let pubd = setup.cmd("PUB \"\" hb one").await;
    assert!(pubd.ends_with("routed=1"), "{pubd}");

    // The silent one: takes the message, then never sends another byte.
    let mut silent = TestConn::connect(srv.addr).await;
    silent
        .ok("HELLO heartbeat=300", "OK sluice 0.1.0 proto=1")
        .await;
    silent.ok("SUB hb prefetch=1", "OK ctag-1").await;
    let (head, body) = silent.msg().await;
    assert!(
        head.starts_with("MSG ctag-1 1 \"\" hb deliveries=1 "),
        "{head}"
    );
    assert_eq!(body, b"one");
    // It may be told the server is alive; then it is dropped.
    let t0 = Instant::now();
    loop {
        let mut line = String::new();
        let got = tokio::time::timeout(DEADLINE, silent.read_line_or_close(&mut line))
            .await
            .expect("silent client not closed in time");
        if !got {
            break;
        }
        assert_eq!(line, "NOTICE heartbeat", "only heartbeats before the close");
    }
    assert!(t0.elapsed() < DEADLINE);

    // Its unacked delivery is ready again, flagged.
    let mut other = TestConn::connect(srv.addr).await;
    other.ok("SUB hb", "OK ctag-1").await;
    let (head, body) = other.msg().await;
    assert!(
        head.starts_with("MSG ctag-1 1 \"\" hb redelivered deliveries=2 "),
        "{head}"
    );
    assert_eq!(body, b"one");
}

#[tokio::test]
async fn a_client_that_keeps_talking_keeps_its_heartbeat_connection() {
    let srv = TestServer::start().await;
    let mut c = TestConn::connect(srv.addr).await;
    c.ok("HELLO heartbeat=300", "OK sluice 0.1.0 proto=1").await;
    // Empty lines are enough to show the client is alive; the server sends
    // a heartbeat whenever it has been quiet for 300 ms.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        c.send_raw(b"\r\n").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The heartbeats sent meanwhile come before the PING's reply.
    c.send("PING").await;
    let mut beats = 0;
    loop {
        match c.line().await.as_str() {
            "NOTICE heartbeat" => beats += 1,
            "OK pong" => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        beats >= 1,
        "no heartbeat in 1.5 s of silence from the server"
    );
    // heartbeat=0 turns it off again; out-of-range values are refused.
    c.send("HELLO heartbeat=0").await;
    loop {
        match c.line().await.as_str() {
            "NOTICE heartbeat" => {}
            "OK sluice 0.1.0 proto=1" => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    c.err("HELLO heartbeat=50", "SYNTAX").await;
    c.expect_quiet().await;
}

#[tokio::test]
async fn a_connection_over_the_limit_gets_err_limit_and_is_closed() {
    let srv = TestServer::start_with(|c| c.max_connections = 2).await;
    let mut a = TestConn::connect(srv.addr).await;
    let _b = TestConn::connect(srv.addr).await;
    let mut third = connect_raw(srv.addr).await;
    let said = read_to_close(&mut third, DEADLINE).await;
    assert_eq!(
        said,
        "ERR LIMIT too many connections (--max-connections 2); try again later\r\n"
    );
    a.ok("PING", "OK pong").await;
    drop(a);
    // Once the server has seen `a` go, there is room again.
    let t0 = Instant::now();
    loop {
        let mut s = connect_raw(srv.addr).await;
        let mut buf = [0u8; 128];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .expect("no greeting")
            .expect("read");
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        if line.starts_with("HELLO sluice ") {
            break;
        }
        assert!(line.starts_with("ERR LIMIT "), "{line}");
        assert!(
            t0.elapsed() < DEADLINE,
            "the closed connection's slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_leaves_the_broker_serving() {
    // 64 descriptors: the broker needs about 15 for itself, so about 49
    // connections fit; 75 are attempted, so that closing the waiting
    // ones' number of served ones (and 5 more) lets them all in.
    let mut b = Spawned::start_under(&["prlimit", "--nofile=64:64", "--"], &[]).await;
    let mut served = Vec::new();
    let mut waiting = Vec::new();
    for _ in 0..75 {
        waiting.push(connect_raw(b.addr).await);
    }
    // Those the broker accepted say HELLO; the rest wait in the kernel.
    for mut s in std::mem::take(&mut waiting) {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => served.push(s),
            Ok(other) => panic!("connection closed or failed: {other:?}"),
            Err(_) => waiting.push(s),
        }
    }
    assert!(
        !waiting.is_empty(),
        "all 75 were accepted: the limit did not bite"
    );
    assert!(
        served.len() >= 20,
        "only {} connections served",
        served.len()
    );
    b.wait_log("out of file descriptors").await;
    // The broker goes on serving the connections it has...
    let first = served.first_mut().expect("one served connection");
    first.write_all(b"PING\r\n").await.expect("write");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(DEADLINE, first.read(&mut buf))
        .await
        .expect("no pong")
        .expect("read");
    assert_eq!(&buf[..n], b"OK pong\r\n");
    // ...without spinning on the failing accept.
    let ticks = b.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = b.cpu_ticks() - ticks;
    assert!(
        used < 50,
        "broker used {used}/100 of a core while out of descriptors"
    );
    b.assert_alive("while out of descriptors");
    // Closing some lets the waiting ones in.
    let freed = waiting.len() + 5;
    served.truncate(served.len().saturating_sub(freed));
    for s in waiting.iter_mut() {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .expect("a waiting connection was never served")
            .expect("read");
        assert!(buf[..n].starts_with(b"HELLO sluice "));
    }
    b.wait_log("accepting connections again").await;
    println!(
        "fd exhaustion: {} served, {} waited and were served after closes; \
         broker CPU while exhausted {used}% of a core",
        served.len() + freed,
        waiting.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cost_a_few_kib_each() {
    let n = if long() { 10_000 } else { 1_000 };
    let b = Spawned::start(&["--max-connections", "20000"]).await;
    let mut c = TestConn::connect(b.addr).await;
    c.ok("PING", "OK pong").await;
    let before = b.rss_kib();
    let t0 = Instant::now();
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        idle.push(TestConn::connect(b.addr).await);
    }
    let accept = t0.elapsed();
    let after = b.rss_kib();
    let mut pings = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        c.ok("PING", "OK pong").await;
        pings.push(t.elapsed());
    }
    let per_conn = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    // 32 KiB is four times today's cost: it fails if buffers are allocated
    // up front again (128 KiB per connection).
    assert!(
        per_conn < 32.0 * 1024.0,
        "{per_conn:.0} B of RSS per idle connection"
    );
    drop(idle);
    let (p50, p99) = percentiles(pings);
    println!(
        "idle: {n} connections in {:.2} s, RSS {before} -> {after} KiB = {per_conn:.0} B each; \
         PING p50 {p50:.3} ms p99 {p99:.3} ms",
        accept.as_secs_f64()
    );
}

#[tokio::test]
async fn a_shorter_heartbeat_takes_effect_at_once() {
    let srv = TestServer::start().await;
    let mut c = TestConn::connect(srv.addr).await;
    c.ok("HELLO heartbeat=3600000", "OK sluice 0.1.0 proto=1")
        .await;
    c.ok("HELLO heartbeat=300", "OK sluice 0.1.0 proto=1").await;
    // Within the test's deadline, not an hour later.
    c.expect("NOTICE heartbeat").await;
}

/// A client that closes its connection while a `GET wait=` of its waits
/// can ack nothing more: what it held goes back at once, not when the
/// wait (ten minutes here) would have ended.
#[tokio::test]
async fn a_connection_closed_while_its_get_waits_gives_back_what_it_held_at_once() {
    let srv = TestServer::start().await;
    let mut p = srv.conn().await;
    p.ok("DECLARE QUEUE jobs", "OK jobs messages=0 consumers=0")
        .await;
    p.ok("DECLARE QUEUE empty", "OK empty messages=0 consumers=0")
        .await;
    let got = p.cmd("PUB \"\" jobs held").await;
    assert!(got.ends_with("routed=1"), "{got}");
    let mut c = srv.conn().await;
    c.ok("SUB jobs prefetch=1 tag=w", "OK w").await;
    let (head, _) = c.msg().await;
    assert!(head.starts_with("MSG w 1 "), "{head}");
    c.send("GET empty wait=600000").await;
    drop(c);
    let until = Instant::now() + DEADLINE;
    loop {
        let (_, stats) = p.data("STATS QUEUE jobs").await;
        let value = |key: &str| {
            stats
                .lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
        };
        if value("messages_unacked") == Some(0) && value("messages_ready") == Some(1) {
            break;
        }
        assert!(
            Instant::now() < until,
            "still held by the closed connection: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Taken again by the next consumer, flagged redelivered.
    let mut d = srv.conn().await;
    d.ok("SUB jobs tag=x", "OK x").await;
    let (head, body) = d.msg().await;
    assert!(head.contains("redelivered"), "{head}");
    assert_eq!(body, b"held");
}

/// The id `LIST CONNECTIONS` gives the connection named `name`.
async fn connection_id(c: &mut TestConn, name: &str) -> String {
    let (_, table) = c.data(&format!("LIST CONNECTIONS {name}")).await;
    let row = table
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("{name} not listed: {table}"));
    row.split_whitespace().next().expect("id").to_string()
}

#[tokio::test]
async fn an_admin_closes_a_connection_which_is_told_why_and_gives_back_its_deliveries() {
    let srv = TestServer::start().await;
    let mut admin = srv.conn().await;
    admin.ok("USER ADD root pw admin", "OK").await;
    admin.ok("AUTH root pw", "OK root").await;
    admin.ok("USER ADD app apppw", "OK").await;
    admin
        .ok("DECLARE QUEUE jobs", "OK jobs messages=0 consumers=0")
        .await;
    admin.publish_n("jobs", 1).await;
    let mut app = srv.conn().await;
    app.ok("HELLO name=app-1", "OK sluice 0.1.0 proto=1").await;
    app.ok("AUTH app apppw", "OK app").await;
    app.send("GET jobs").await;
    let (_, body) = app.msg().await;
    assert_eq!(body, b"m0");
    app.expect("OK 1").await;
    let id = connection_id(&mut admin, "app-1").await;

    // Not an admin: FORBIDDEN, and nothing happens.
    let mut other = srv.conn().await;
    other.ok("AUTH app apppw", "OK app").await;
    other
        .err(&format!("CLOSE CONNECTION {id}"), "FORBIDDEN")
        .await;
    app.ok("PING", "OK pong").await;

    admin.ok(&format!("CLOSE CONNECTION {id}"), "OK").await;
    app.expect("NOTICE closing reason=closed-by-admin").await;
    let mut rest = String::new();
    assert!(
        !app.read_line_or_close(&mut rest).await,
        "still open: {rest}"
    );
    // Its unacked delivery went back, flagged.
    admin.send("GET jobs ack=auto").await;
    let (head, body) = admin.msg().await;
    assert_eq!(body, b"m0");
    assert!(head.contains(" redelivered "), "{head}");
    admin.expect("OK 1").await;
    admin
        .err(&format!("CLOSE CONNECTION {id}"), "NOT_FOUND")
        .await;
}
