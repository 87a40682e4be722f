//! Greeting, PING, QUIT, HELLO, HELP, unknown verbs.

use crate::common::{split_literal, TestServer};

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[tokio::test]
async fn greeting_names_the_protocol_version() {
    let srv = TestServer::start().await;
    let c = srv.conn().await;
    assert_eq!(
        c.greeting,
        format!("HELLO sluice {} proto=1", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn ping_answers_pong() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn hello_answers_with_server_name_version_and_protocol() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    let expect = format!("OK sluice {VERSION} proto=1");
    c.ok("HELLO", &expect).await;
    c.ok("HELLO name=alice proto=1", &expect).await;
}

#[tokio::test]
async fn hello_asking_for_an_unsupported_protocol_is_a_precondition_error() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.err("HELLO proto=2", "PRECONDITION").await;
    c.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn auth_accepts_any_credentials_on_an_open_broker() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("AUTH alice secret", "OK").await;
    c.ok(r#"AUTH "bob smith" "p a s s""#, "OK").await;
}

#[tokio::test]
async fn quit_says_bye_and_closes_without_answering_later_commands() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.send_raw(b"QUIT\r\nPING\r\n").await;
    c.expect("OK bye").await;
    c.expect_closed().await;
}

#[tokio::test]
async fn help_lists_the_commands_in_a_literal() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    let line = c.cmd("HELP").await;
    let (head, n) = split_literal(&line).expect("HELP reply carries a literal");
    assert_eq!(head, "OK");
    let text = String::from_utf8(c.literal(n).await).expect("utf-8 help");
    for verb in ["PUB", "SUB", "GET", "ACK", "DECLARE", "BIND"] {
        assert!(text.contains(verb), "HELP does not mention {verb}: {text}");
    }
    c.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn help_for_a_verb_shows_its_grammar() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    let line = c.cmd("help pub").await;
    let (head, n) = split_literal(&line).expect("HELP PUB reply carries a literal");
    assert_eq!(head, "OK");
    let text = String::from_utf8(c.literal(n).await).expect("utf-8 help");
    assert!(
        text.starts_with("PUB <exchange>"),
        "HELP PUB should start with the PUB grammar: {text}"
    );
}

#[tokio::test]
async fn help_for_an_unknown_verb_is_not_found() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.err("HELP nosuch", "NOT_FOUND").await;
    c.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn unknown_verb_is_unknown_command_and_the_session_goes_on() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    let line = c.err("frobnicate now", "UNKNOWN_COMMAND").await;
    assert!(
        line.contains("frobnicate"),
        "error should name the verb: {line}"
    );
    c.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn verbs_are_case_insensitive() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("ping", "OK pong").await;
    c.ok("PiNg", "OK pong").await;
    c.ok("hElLo", &format!("OK sluice {VERSION} proto=1")).await;
}

#[tokio::test]
async fn blank_and_whitespace_only_lines_get_no_reply() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.send_raw(b"\r\n\n   \r\n\t\nPING\r\n").await;
    c.expect("OK pong").await;
    c.ok("PING", "OK pong").await;
}

#[tokio::test]
async fn server_lines_end_in_crlf() {
    let srv = TestServer::start().await;
    let addr = srv.addr;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"PING\n").await.expect("write");
    let expect = format!("HELLO sluice {VERSION} proto=1\r\nOK pong\r\n");
    let mut got = vec![0u8; expect.len()];
    tokio::time::timeout(crate::common::DEADLINE, s.read_exact(&mut got))
        .await
        .expect("timed out")
        .expect("read");
    assert_eq!(String::from_utf8_lossy(&got), expect);
}
