//! Greeting, PING, QUIT, HELLO, HELP, unknown verbs.

use crate::common::TestServer;

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
