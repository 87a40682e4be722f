//! Framing: line endings, quoting, literals, size limits, garbage and
//! pipelining. Exact bytes matter here, so these tests speak raw text.

use crate::common::{split_literal, Peer, TestServer};

/// Declares queue `q` on a fresh connection.
async fn with_queue(srv: &TestServer) -> Peer {
    let mut p = Peer::connect(srv).await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    p
}

/// Takes the one message in `q` with an auto-ack GET and returns its body.
async fn take_body(p: &mut Peer) -> Vec<u8> {
    let (msgs, reply) = p.get("GET q ack=auto").await;
    assert_eq!(reply, "OK 1");
    assert_eq!(msgs.len(), 1);
    msgs[0].body.clone()
}

#[tokio::test]
async fn lf_only_line_endings_work() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.send_raw(b"PING\n").await;
    c.expect("OK pong").await;
}

#[tokio::test]
async fn crlf_and_lf_lines_can_be_mixed_in_one_write() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.send_raw(b"PING\r\nPING\nDECLARE QUEUE q\nPING\r\n").await;
    c.expect("OK pong").await;
    c.expect("OK pong").await;
    c.expect("OK q messages=0 consumers=0").await;
    c.expect("OK pong").await;
}

#[tokio::test]
async fn tabs_and_repeated_spaces_separate_tokens() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    p.conn.send_raw(b"PUB\t\"\"   q \t body\r\n").await;
    let r = p.reply().await;
    assert!(r.ends_with(" routed=1"), "{r}");
    assert_eq!(take_body(&mut p).await, b"body");
}

#[tokio::test]
async fn quoted_tokens_unescape_quotes_and_backslashes() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    let r = p.cmd(r#"PUB "" "q" "say \"hi\" \\o/""#).await;
    assert!(r.ends_with(" routed=1"), "{r}");
    assert_eq!(take_body(&mut p).await, br#"say "hi" \o/"#);
}

#[tokio::test]
async fn quoted_literal_marker_is_plain_text() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    let r = p.cmd(r#"PUB "" q "{5}""#).await;
    assert!(r.ends_with(" routed=1"), "{r}");
    // If "{5}" had been taken as a literal, this PING would be its body.
    p.ok("PING", "OK pong").await;
    assert_eq!(take_body(&mut p).await, b"{5}");
}

#[tokio::test]
async fn bare_body_token_containing_equals_is_the_body() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    let r = p.cmd(r#"PUB "" q a=b"#).await;
    assert!(r.ends_with(" routed=1"), "{r}");
    assert_eq!(take_body(&mut p).await, b"a=b");
}

#[tokio::test]
async fn binary_literal_body_round_trips_exactly() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    let mut body: Vec<u8> = (0..=255u8).collect();
    body.extend_from_slice(b"\r\n\n\r\x00\xff{3}\r\n");
    p.conn.send_literal(r#"PUB "" q"#, &body).await;
    let r = p.reply().await;
    assert!(r.ends_with(" routed=1"), "{r}");
    p.ok("SUB q tag=c", "OK c").await;
    let m = p.msg().await;
    assert!(
        m.head.starts_with(r#"MSG c 1 "" q deliveries=1 id="#),
        "{}",
        m.head
    );
    assert_eq!(m.body, body);
}

#[tokio::test]
async fn literal_terminated_by_lf_only_is_accepted() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    p.conn
        .send_raw(b"PUB \"\" q {5}\nhello\nPUB \"\" q {0}\n\nPING\n")
        .await;
    assert!(p.reply().await.ends_with(" routed=1"));
    assert!(p.reply().await.ends_with(" routed=1"));
    assert_eq!(p.reply().await, "OK pong");
    let (msgs, reply) = p.get("GET q count=5 ack=auto").await;
    assert_eq!(reply, "OK 2");
    assert_eq!(msgs[0].body, b"hello");
    assert_eq!(msgs[1].body, b"");
}

#[tokio::test]
async fn command_sent_one_byte_at_a_time_is_assembled() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    for b in b"PUB \"\" q {6}\r\nab\r\ncd\r\n" {
        p.conn.send_raw(&[*b]).await;
    }
    assert!(p.reply().await.ends_with(" routed=1"));
    assert_eq!(take_body(&mut p).await, b"ab\r\ncd");
}

#[tokio::test]
async fn literal_with_wrong_terminator_is_bad_frame_and_closes() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.send_raw(b"PUB \"\" q {3}\r\nhello\r\nPING\r\n").await;
    let line = c.line().await;
    assert!(line.starts_with("ERR BAD_FRAME "), "{line}");
    c.expect_closed().await;
}

#[tokio::test]
async fn line_over_64k_is_line_too_long_and_the_connection_goes_on() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    let long = format!("PUB \"\" {} x", "k".repeat(70 * 1024));
    c.send(&long).await;
    let line = c.line().await;
    assert!(line.starts_with("ERR LINE_TOO_LONG"), "{line}");
    c.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn oversize_line_announcing_a_literal_skips_the_literal_too() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    let mut bytes = format!("PUB \"\" {} {{6}}\r\n", "k".repeat(70 * 1024)).into_bytes();
    bytes.extend_from_slice(b"PING\r\n\r\nPING\r\n");
    c.send_raw(&bytes).await;
    let line = c.line().await;
    assert!(line.starts_with("ERR LINE_TOO_LONG"), "{line}");
    // The 6 literal bytes were "PING\r\n": one pong only, for the last line.
    c.expect("OK pong").await;
    c.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn literal_over_the_limit_is_too_large_and_its_bytes_are_skipped() {
    let srv = TestServer::start_with(|c| c.limits.max_literal = 1024).await;
    let mut p = with_queue(&srv).await;
    // The literal's bytes are command lines: none of them may run.
    let body = "PUB \"\" q leaked\r\n".repeat(200);
    p.conn.send_literal("PUB \"\" q", body.as_bytes()).await;
    let r = p.reply().await;
    assert!(r.starts_with("ERR TOO_LARGE"), "{r}");
    p.ok("PING", "OK pong").await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
}

#[tokio::test]
async fn too_large_is_answered_before_the_literal_bytes_arrive() {
    let srv = TestServer::start_with(|c| c.limits.max_literal = 1024).await;
    let mut c = srv.conn().await;
    c.send("PUB \"\" q {2000}").await;
    let line = c.line().await;
    assert!(line.starts_with("ERR TOO_LARGE"), "{line}");
    let mut rest = vec![b'x'; 2000];
    rest.extend_from_slice(b"\r\nPING\r\n");
    c.send_raw(&rest).await;
    c.expect("OK pong").await;
}

#[tokio::test]
async fn literal_exactly_at_the_limit_is_accepted() {
    let srv = TestServer::start_with(|c| c.limits.max_literal = 1024).await;
    let mut p = with_queue(&srv).await;
    let body = vec![b'z'; 1024];
    p.conn.send_literal("PUB \"\" q", &body).await;
    assert!(p.reply().await.ends_with(" routed=1"));
    assert_eq!(take_body(&mut p).await, body);
}

#[tokio::test]
async fn http_request_line_is_bad_frame_and_closes() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.send_raw(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let line = c.line().await;
    assert!(line.starts_with("ERR BAD_FRAME"), "{line}");
    c.expect_closed().await;
}

#[tokio::test]
async fn random_bytes_on_one_connection_do_not_disturb_another() {
    let srv = TestServer::start().await;
    let mut good = with_queue(&srv).await;
    let mut bad = srv.conn().await;
    // Deterministic noise (xorshift), no literal markers so that the
    // stream stays in sync; then a PING.
    let mut x: u32 = 0x9e37_79b9;
    let mut noise = Vec::new();
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let b = (x & 0xff) as u8;
        noise.push(if b == b'{' { b'(' } else { b });
    }
    noise.extend_from_slice(b"\r\nPING\r\n");
    bad.send_raw(&noise).await;
    good.publish("", "q", "still fine", 1).await;
    assert_eq!(take_body(&mut good).await, b"still fine");
    good.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn thousand_pipelined_commands_get_thousand_replies_in_order() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    let mut batch = Vec::new();
    for i in 0..1000 {
        if i % 10 == 9 {
            batch.extend_from_slice(b"PING\r\n");
        } else {
            batch.extend_from_slice(format!("PUB \"\" q id=m{i} body{i}\r\n").as_bytes());
        }
    }
    c.send_raw(&batch).await;
    for i in 0..1000 {
        if i % 10 == 9 {
            c.expect("OK pong").await;
        } else {
            c.expect(&format!("OK m{i} routed=1")).await;
        }
    }
    c.ok("DECLARE QUEUE q", "OK q messages=900 consumers=0")
        .await;
}

#[tokio::test]
async fn thousand_pipelined_bad_lines_get_thousand_errors_and_the_connection_survives() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend_from_slice(format!("NOPE{i} x y\r\n").as_bytes());
    }
    c.send_raw(&batch).await;
    for i in 0..1000 {
        let line = c.line().await;
        assert!(
            line.starts_with("ERR UNKNOWN_COMMAND"),
            "reply {i}: expected ERR UNKNOWN_COMMAND, got {line:?}"
        );
    }
    c.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn one_mebibyte_body_round_trips() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    let body: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    c.send_literal("PUB \"\" q id=big", &body).await;
    c.expect("OK big routed=1").await;
    c.send("GET q").await;
    let line = c.line().await;
    let (head, n) = split_literal(&line).expect("MSG literal");
    assert_eq!(head, "MSG - 1 \"\" q deliveries=1 id=big");
    assert_eq!(n, body.len());
    let got = c.literal(n).await;
    assert!(got == body, "1 MiB body differs");
    c.expect("OK 1").await;
}
