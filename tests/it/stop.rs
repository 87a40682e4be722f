//! Every stop ends, and its last words reach the client (issue 15).
//!
//! - SIGTERM with a client that has stopped reading: the stop cannot
//!   flush that client's output, so it would take as long as the session's
//!   write patience; `--shutdown-timeout` ends the process at its deadline
//!   instead, with status 1 and a log line that says why.
//! - A second SIGTERM while stopping ends the process at once.
//! - SIGTERM with a client whose pipelined input the broker has not read
//!   (its `PUB` held by a full queue): the client reads the held publish's
//!   `ERR INTERNAL` and `NOTICE closing reason=shutdown`, and then an
//!   orderly end of stream, not a reset.
//! - SIGTERM with a `PUB` held by the memory alarm: its `ERR INTERNAL`,
//!   no `NOTICE unblocked` (nothing went through), `NOTICE closing`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::common::spawned::Spawned;
use crate::common::DEADLINE;

/// A client that subscribes to a queue full of large messages and never
/// reads: the broker's writes to it block. Returns the socket (kept open).
async fn stalled_subscriber(b: &Spawned) -> TcpStream {
    let mut c = crate::common::TestConn::connect(b.addr).await;
    c.ok("DECLARE QUEUE big", "OK big messages=0 consumers=0")
        .await;
    let body = vec![b'x'; 256 * 1024];
    for _ in 0..64 {
        c.send_literal("PUB \"\" big", &body).await;
        let r = c.line().await;
        assert!(r.ends_with("routed=1"), "{r}");
    }
    let mut s = TcpStream::connect(b.addr).await.expect("connect");
    s.write_all(b"SUB big prefetch=64\r\n").await.expect("sub");
    // 16 MiB is on its way to a socket nobody reads.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_cannot_finish_ends_at_the_shutdown_timeout_with_status_1() {
    let mut b = Spawned::start(&["--shutdown-timeout", "1000"]).await;
    let _stalled = stalled_subscriber(&b).await;
    let asked = Instant::now();
    b.terminate();
    let status = b
        .exited_within(DEADLINE)
        .await
        .expect("SIGTERM did not end the broker");
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(1), "{status:?}");
    b.wait_log("did not finish within the grace period").await;
    println!("a stop blocked on a client that does not read ended after {took:?} (grace 1 s)");
    assert!(
        took >= Duration::from_millis(900),
        "{took:?}: it was not the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_ends_a_stop_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_string_lossy().into_owned();
    let args = [
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        &data,
        "--shutdown-timeout",
        "60000",
    ];
    // At info, the log says when the first signal was taken (two sent
    // at once could arrive as one).
    let mut b = Spawned::start_bare(&args, &[("RUST_LOG", "info")]).await;
    let _stalled = stalled_subscriber(&b).await;
    b.terminate();
    b.wait_log("SIGTERM received").await;
    let asked = Instant::now();
    b.terminate();
    let status = b.exited_within(DEADLINE).await.expect("still running");
    assert_eq!(status.code(), Some(1), "{status:?}");
    b.wait_log("SIGTERM again while stopping").await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_unread_pipelined_input_reads_the_shutdown_notice_and_a_clean_end() {
    let mut b = Spawned::start(&[]).await;
    let mut c = crate::common::TestConn::connect(b.addr).await;
    c.ok(
        "DECLARE QUEUE tiny max-length=1 overflow=block",
        "OK tiny messages=0 consumers=0",
    )
    .await;
    c.cmd("PUB \"\" tiny first").await;
    drop(c);
    // A client that writes all its commands (9 MB, more than the socket
    // buffers hold), then reads, as a simple pipelining client does: the
    // first PUB is held (the queue is full), the broker reads 16k commands
    // ahead behind it and then stops reading, and the rest wait in the
    // socket. SIGTERM comes while the client is still writing.
    let s = TcpStream::connect(b.addr).await.expect("connect");
    let (r, mut w) = s.into_split();
    let mut reader = BufReader::new(r);
    let mut hello = String::new();
    reader.read_line(&mut hello).await.expect("greeting");
    let mut input = Vec::new();
    for _ in 0..300_000 {
        input.extend_from_slice(b"PUB \"\" tiny {10}\r\n0123456789\r\n");
    }
    let (written, ()) = tokio::join!(w.write_all(&input), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.terminate();
    });
    written.expect("the broker reset the connection while the client wrote");
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(DEADLINE, reader.read_line(&mut line))
            .await
            .expect("neither a line nor the end")
            .expect("the connection was reset: the last lines were lost");
        if n == 0 {
            break;
        }
        lines.push(line.trim_end().to_string());
    }
    assert_eq!(
        lines,
        [
            "NOTICE blocked queue=tiny",
            "ERR INTERNAL server shutting down; message not stored",
            "NOTICE closing reason=shutdown"
        ]
    );
    let status = b.exited().await;
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[tokio::test]
async fn a_pub_held_by_the_memory_alarm_gets_its_err_and_no_unblocked_notice_at_a_stop() {
    // Two bytes: any process is over it.
    let mut b = Spawned::start(&["--memory-high-watermark", "2"]).await;
    let mut c = crate::common::TestConn::connect(b.addr).await;
    c.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    c.send("PUB \"\" q hello").await;
    c.expect("NOTICE blocked memory").await;
    // Behind the held PUB: never run.
    c.send("PING").await;
    b.terminate();
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let more = tokio::time::timeout(DEADLINE, c.read_line_or_close(&mut line))
            .await
            .expect("neither a line nor the end");
        if !more {
            break;
        }
        lines.push(line.trim_end().to_string());
    }
    assert_eq!(
        lines,
        [
            "ERR INTERNAL server shutting down; message not stored",
            "NOTICE closing reason=shutdown"
        ]
    );
    let status = b.exited().await;
    assert_eq!(status.code(), Some(0), "{status:?}");
}
