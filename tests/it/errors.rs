//! One test per error code the broker can produce today: the code, that the
//! reply is one line, and whether the connection survives.

use crate::common::{Peer, TestServer};

#[tokio::test]
async fn syntax_errors_name_the_problem_and_the_session_goes_on() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE jobs", "OK jobs messages=0 consumers=0")
        .await;
    let r = p.err("SUB jobs prefetch=lots", "SYNTAX").await;
    assert!(r.contains("prefetch"), "{r}");
    p.err(r#"PUB "" jobs "oops"#, "SYNTAX").await;
    p.err("SUB jobs bogus=1", "SYNTAX").await;
    p.err("SUB jobs prefetch=1 prefetch=2", "SYNTAX").await;
    p.err("PURGE jobs extra", "SYNTAX").await;
    p.err("PUB", "SYNTAX").await;
    p.err("ACK notanumber", "SYNTAX").await;
    p.err("NACK 1 requeue=maybe", "SYNTAX").await;
    p.err("DECLARE", "SYNTAX").await;
    p.err(r#"PUB "" jobs "bad \n escape""#, "SYNTAX").await;
    p.err("TOUCH", "SYNTAX").await;
    p.err("NACK 1 requeue=false delay=10", "SYNTAX").await;
    p.err("DECLARE QUEUE q overflow=sideways", "SYNTAX").await;
    p.err("DECLARE QUEUE q retry-delays=10,,20", "SYNTAX").await;
    p.err(r#"PUB "" jobs priority=256 x"#, "SYNTAX").await;
    p.ok("PING", "OK pong").await;
    p.ok("DECLARE QUEUE jobs", "OK jobs messages=0 consumers=0")
        .await;
}

#[tokio::test]
async fn unknown_command() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.err("FROBNICATE now", "UNKNOWN_COMMAND").await;
    p.err("SUBSCRIBE q", "UNKNOWN_COMMAND").await;
    p.ok("PING", "OK pong").await;
}

/// What a newcomer types gets an answer that says what to type instead,
/// over the wire; `EXIT` leaves as `QUIT` does.
#[tokio::test]
async fn errors_say_what_to_type_and_exit_is_quit() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE jobs", "OK jobs messages=0 consumers=0")
        .await;
    for (line, reply) in [
        (
            r#"publish "" jobs hello"#,
            r#"ERR UNKNOWN_COMMAND "publish" (did you mean PUB?)"#,
        ),
        (
            "subscribe jobs",
            r#"ERR UNKNOWN_COMMAND "subscribe" (did you mean SUB?)"#,
        ),
        (
            "declre queue q",
            r#"ERR UNKNOWN_COMMAND "declre" (did you mean DECLARE?)"#,
        ),
        (
            "frobnicate",
            r#"ERR UNKNOWN_COMMAND "frobnicate" (try HELP)"#,
        ),
        (
            "declare queue q durabel",
            r#"ERR SYNTAX unexpected argument "durabel" (did you mean durable?)"#,
        ),
        (
            "sub jobs prefech=5",
            r#"ERR SYNTAX unknown option "prefech=5" (did you mean prefetch=...?)"#,
        ),
        (
            r#"pub "" jobs hello world"#,
            r#"ERR SYNTAX unexpected argument "hello": a body with spaces needs quotes ("hello world") or a {N} literal"#,
        ),
        (
            "help pbu",
            r#"ERR NOT_FOUND no help for "PBU" (did you mean PUB?)"#,
        ),
    ] {
        c.ok(line, reply).await;
    }
    // Nothing was declared or published by the refused lines.
    c.ok("PEEK jobs", "OK 0").await;
    c.err("STATS QUEUE q", "NOT_FOUND").await;
    // HELP finds a verb by its other names.
    let (_, publish) = c.data("help publish").await;
    let (_, pub_) = c.data("HELP PUB").await;
    assert_eq!(publish, pub_);
    assert!(publish.starts_with("PUB <exchange> <key> "), "{publish}");
    let (_, exit) = c.data("help exit").await;
    assert!(exit.starts_with("QUIT (or EXIT)"), "{exit}");
    c.ok("exit", "OK bye").await;
    c.expect_closed().await;
}

#[tokio::test]
async fn not_found() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.err("SUB nosuch", "NOT_FOUND").await;
    p.err("GET nosuch", "NOT_FOUND").await;
    p.err("PUB nosuch k x", "NOT_FOUND").await;
    p.err("BIND nosuch amq k", "NOT_FOUND").await;
    p.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn precondition() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE q durable", "OK q messages=0 consumers=0")
        .await;
    p.err("DECLARE QUEUE q", "PRECONDITION").await;
    p.err("HELLO proto=9", "PRECONDITION").await;
    p.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn no_route() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE EXCHANGE ex topic", "OK").await;
    let r = p.err("PUB ex a.b mandatory body", "NO_ROUTE").await;
    assert!(!r.contains('{'), "an ERR line never carries a literal: {r}");
    p.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn too_large() {
    let srv = TestServer::start_with(|c| c.limits.max_literal = 1024).await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    p.conn.send_literal(r#"PUB "" q"#, &[b'x'; 1025]).await;
    let r = p.reply().await;
    assert!(r.starts_with("ERR TOO_LARGE "), "{r}");
    p.ok("PING", "OK pong").await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
}

#[tokio::test]
async fn line_too_long() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    let r = p.cmd(&"x".repeat(65 * 1024)).await;
    assert!(r.starts_with("ERR LINE_TOO_LONG "), "{r}");
    p.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn bad_frame_closes_the_connection() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.send_raw(b"PING\r\nPUB \"\" q {2}\r\nabc\r\nPING\r\n")
        .await;
    c.expect("OK pong").await;
    let r = c.line().await;
    assert!(r.starts_with("ERR BAD_FRAME "), "{r}");
    c.expect_closed().await;
    // The server itself is fine.
    let mut other = srv.conn().await;
    other.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn unknown_tag() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    let r = p.err("ACK 99", "UNKNOWN_TAG").await;
    assert!(r.contains("99"), "{r}");
    p.err("NACK 99 multiple", "UNKNOWN_TAG").await;
    p.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn locked() {
    let srv = TestServer::start().await;
    let mut owner = Peer::connect(&srv).await;
    owner
        .ok(
            "DECLARE QUEUE mine exclusive",
            "OK mine messages=0 consumers=0",
        )
        .await;
    let mut other = Peer::connect(&srv).await;
    other.err("GET mine", "LOCKED").await;
    other.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn pipelined_errors_get_one_line_each_in_order() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.send_raw(
        b"DECLARE QUEUE q durable\r\n\
          NOPE\r\n\
          GET nosuch\r\n\
          DECLARE QUEUE q\r\n\
          PUB \"\" nosuch mandatory x\r\n\
          ACK 5\r\n\
          SUB q prefetch=x\r\n\
          PING\r\n",
    )
    .await;
    c.expect("OK q messages=0 consumers=0").await;
    for code in [
        "UNKNOWN_COMMAND",
        "NOT_FOUND",
        "PRECONDITION",
        "NO_ROUTE",
        "UNKNOWN_TAG",
        "SYNTAX",
    ] {
        let line = c.line().await;
        assert!(
            line.starts_with(&format!("ERR {code} ")),
            "expected {code}: {line}"
        );
    }
    c.expect("OK pong").await;
}
