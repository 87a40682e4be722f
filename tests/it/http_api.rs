//! The management API without a browser: its logins and sessions, its
//! guards against other sites, bounded bodies, and commands answered with
//! the protocol's codes, checked against what the protocol then sees.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::web::http_call;
use crate::common::{TestConn, TestServer, DEADLINE};

const POST: &[(&str, &str)] = &[("X-Sluice", "1"), ("Content-Type", "application/json")];

async fn server() -> (TestServer, SocketAddr) {
    let srv = TestServer::start_with(|c| c.http = Some(([127, 0, 0, 1], 0).into())).await;
    let http = srv.http.expect("http");
    (srv, http)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// `POST path` with `body`, the custom header, and `cookie` if any.
async fn post(
    http: SocketAddr,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> (u16, String, Value) {
    let mut headers = POST.to_vec();
    let c;
    if let Some(cookie) = cookie {
        c = cookie.to_string();
        headers.push(("Cookie", &c));
    }
    let (status, head, body) = http_call(http, "POST", path, &headers, body).await;
    (status, head, json(&body))
}

async fn get(http: SocketAddr, path: &str, cookie: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
    let (status, _, body) = http_call(http, "GET", path, &headers, "").await;
    (status, json(&body))
}

async fn command(http: SocketAddr, cookie: Option<&str>, line: &str) -> (u16, Value) {
    let body = serde_json::json!({ "command": line }).to_string();
    let (status, _, v) = post(http, "/api/command", cookie, &body).await;
    (status, v)
}

/// Logs in; the cookie to send back (`sluice_session=...`).
async fn log_in(http: SocketAddr, user: &str, password: &str) -> String {
    let body = serde_json::json!({ "user": user, "password": password }).to_string();
    let (status, head, v) = post(http, "/api/login", None, &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["user"], user);
    let set = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie");
    assert!(
        set.contains("; httponly") && set.contains("samesite=strict"),
        "{set}"
    );
    set.split(';').next().expect("cookie").to_string()
}

async fn users(c: &mut TestConn) {
    c.ok("USER ADD root \"root pw\" admin", "OK").await;
    c.ok("AUTH root \"root pw\"", "OK root").await;
    c.ok(
        "USER ADD reader r3ad configure=\"\" write=\"\" read=.*",
        "OK",
    )
    .await;
}

#[tokio::test]
async fn with_users_the_api_needs_a_login_and_answers_with_the_protocols_codes() {
    let (srv, http) = server().await;
    let mut c = srv.conn().await;
    users(&mut c).await;
    c.ok("DECLARE QUEUE jobs", "OK jobs messages=0 consumers=0")
        .await;
    c.publish_n("jobs", 2).await;

    // No session: who am I answers, everything else is 401 NOAUTH.
    let (status, me) = get(http, "/api/whoami", None).await;
    assert_eq!(
        (status, me["open"].clone(), me["user"].clone()),
        (200, false.into(), Value::Null)
    );
    for path in [
        "/api/overview",
        "/api/history",
        "/api/connections",
        "/api/streams",
    ] {
        let (status, v) = get(http, path, None).await;
        assert_eq!(
            (status, v["code"].as_str()),
            (401, Some("NOAUTH")),
            "{path}"
        );
    }
    let (status, v) = command(http, None, "PURGE jobs").await;
    assert_eq!((status, v["code"].as_str()), (401, Some("NOAUTH")));
    // A wrong password: the protocol's answer.
    let (status, _, v) = post(
        http,
        "/api/login",
        None,
        r#"{"user":"root","password":"nope"}"#,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(v["error"], "invalid user or password");
    // A bogus cookie is no session.
    let (status, _) = get(http, "/api/overview", Some("sluice_session=00ff")).await;
    assert_eq!(status, 401);

    let reader = log_in(http, "reader", "r3ad").await;
    let (status, v) = get(http, "/api/overview", Some(&reader)).await;
    assert_eq!(status, 200);
    assert_eq!(v["queues"][0]["name"], "jobs");
    let (status, v) = command(http, Some(&reader), "PURGE jobs").await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["code"], "FORBIDDEN");
    assert_eq!(
        v["reply"],
        "ERR FORBIDDEN PURGE needs configure permission on queue 'jobs' (user reader)"
    );
    let (status, v) = get(http, "/api/users", Some(&reader)).await;
    assert_eq!((status, v["code"].as_str()), (403, Some("FORBIDDEN")));
    let (status, v) = command(http, Some(&reader), "CLOSE CONNECTION 1").await;
    assert_eq!((status, v["code"].as_str()), (403, Some("FORBIDDEN")));
    // What the reader may do, it does: PEEK shows, GET takes and, its API
    // session gone with the command, gives back (flagged redelivered).
    let (status, v) = command(http, Some(&reader), "PEEK jobs count=5").await;
    assert_eq!(status, 200);
    let bodies: Vec<&str> = v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(bodies, ["m0", "m1"]);
    let (_, v) = command(http, Some(&reader), "GET jobs").await;
    assert_eq!(v["reply"], "OK 1");
    assert_eq!(v["messages"][0]["body"], "m0");
    let (_, v) = command(http, Some(&reader), "GET jobs ack=auto").await;
    assert_eq!(v["messages"][0]["body"], "m0");
    assert_eq!(v["messages"][0]["redelivered"], true);
    let (_, peeked) = command(http, Some(&reader), "PEEK jobs count=5").await;
    assert_eq!(peeked["reply"], "OK 1", "the auto-acked one is gone");
    // A command that needs a connection of its own is refused.
    let (status, v) = command(http, Some(&reader), "SUB jobs").await;
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("SUB needs a connection")),
        "{v}"
    );

    // Permissions changed by the admin apply at the reader's next request.
    let root = log_in(http, "root", "root pw").await;
    let (status, v) = command(http, Some(&root), "USER PERMIT reader configure=^jobs$").await;
    assert_eq!((status, v["reply"].as_str()), (200, Some("OK")));
    let (status, v) = command(http, Some(&reader), "PURGE jobs").await;
    assert_eq!((status, v["reply"].as_str()), (200, Some("OK messages=1")));
    // A removed user's session ends; a logged-out one too.
    command(http, Some(&root), "USER REMOVE reader").await;
    let (status, _) = get(http, "/api/overview", Some(&reader)).await;
    assert_eq!(status, 401);
    let (status, _, _) = post(http, "/api/logout", Some(&root), "{}").await;
    assert_eq!(status, 200);
    let (status, _) = get(http, "/api/overview", Some(&root)).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_post_without_the_custom_header_or_from_a_named_host_changes_nothing() {
    let (srv, http) = server().await;
    let body = r#"{"command":"DECLARE QUEUE x"}"#;
    let (status, _, text) = http_call(
        http,
        "POST",
        "/api/command",
        &[("Content-Type", "application/json")],
        body,
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("X-Sluice: 1"), "{text}");
    // An open broker answers its API only to an address: not to a page
    // served under another name that resolves here (DNS rebinding).
    let mut headers = POST.to_vec();
    headers.push(("Host", "evil.example:15680"));
    let (status, _, text) = http_call(http, "POST", "/api/command", &headers, body).await;
    assert_eq!(status, 403, "{text}");
    let (status, _, _) = http_call(
        http,
        "GET",
        "/api/overview",
        &[("Host", "evil.example")],
        "",
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) =
        http_call(http, "GET", "/api/overview", &[("Host", "localhost:1")], "").await;
    assert_eq!(status, 200);
    let mut c = srv.conn().await;
    c.err("PURGE x", "NOT_FOUND").await;
    // With the header, on the address, it runs.
    let (status, v) = command(http, None, "DECLARE QUEUE x").await;
    assert_eq!(
        (status, v["reply"].as_str()),
        (200, Some("OK x messages=0 consumers=0"))
    );
}

#[tokio::test]
async fn bodies_are_bounded_and_must_be_the_json_a_route_takes() {
    let (_srv, http) = server().await;
    // Refused on its announced length, before a byte of it is read.
    let mut s = TcpStream::connect(http).await.expect("connect");
    let head = format!(
        "POST /api/command HTTP/1.1\r\nHost: {http}\r\nX-Sluice: 1\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n",
        1024 * 1024 + 1
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, s.read_to_string(&mut answer))
        .await
        .expect("no answer")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.contains(r#""code":"TOO_LARGE""#), "{answer}");
    let (status, _, v) = post(http, "/api/command", None, r#"{"line":"PING"}"#).await;
    assert_eq!((status, v["code"].as_str()), (400, Some("SYNTAX")));
    let (status, _, v) = post(http, "/api/command", None, "not json").await;
    assert_eq!(status, 400, "{v}");
    let (status, _, v) = post(
        http,
        "/api/command",
        None,
        r#"{"command":"PING\r\nPURGE q"}"#,
    )
    .await;
    assert_eq!((status, v["code"].as_str()), (400, Some("SYNTAX")));
    let (status, _, v) = post(http, "/api/command", None, r#"{"command":"FROB q"}"#).await;
    assert_eq!((status, v["code"].as_str()), (400, Some("UNKNOWN_COMMAND")));
    let (status, v) = command(http, None, "PURGE nope").await;
    assert_eq!((status, v["code"].as_str()), (404, Some("NOT_FOUND")));
    // A body published through the API, as any bytes.
    command(http, None, "DECLARE QUEUE q").await;
    let (status, _, v) = post(
        http,
        "/api/command",
        None,
        r#"{"command":"PUB \"\" q h.kind=raw","body_base64":"AP8="}"#,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (_, v) = command(http, None, "PEEK q").await;
    let m = &v["messages"][0];
    assert_eq!(
        (m["body"].clone(), m["body_base64"].as_str()),
        (Value::Null, Some("AP8="))
    );
    assert_eq!(m["headers"]["kind"], "raw");
    let (status, _) = get(http, "/api/nothing", None).await;
    assert_eq!(status, 404);
    let (status, _, _) = http_call(http, "GET", "/api/command", &[], "").await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn failed_logins_are_limited_per_user_and_address_as_auth_is() {
    let (srv, http) = server().await;
    let mut c = srv.conn().await;
    users(&mut c).await;
    let wrong = r#"{"user":"reader","password":"wrong"}"#;
    for _ in 0..5 {
        let (status, _, _) = post(http, "/api/login", None, wrong).await;
        assert_eq!(status, 401);
    }
    let (status, _, v) = post(
        http,
        "/api/login",
        None,
        r#"{"user":"reader","password":"r3ad"}"#,
    )
    .await;
    assert_eq!((status, v["code"].as_str()), (429, Some("NOAUTH")));
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("too many failed logins")),
        "{v}"
    );
    // Another user of the address logs in.
    log_in(http, "root", "root pw").await;
}

#[tokio::test]
async fn an_admin_closes_a_connection_which_is_told_why() {
    let (srv, http) = server().await;
    let mut c = srv.conn().await;
    c.ok("HELLO name=victim", "OK sluice 0.1.0 proto=1").await;
    let (_, v) = get(http, "/api/connections", None).await;
    let id = v
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == "victim"))
        .and_then(|c| c["id"].as_u64())
        .expect("the connection listed");
    let (status, v) = command(http, None, &format!("CLOSE CONNECTION {id}")).await;
    assert_eq!((status, v["reply"].as_str()), (200, Some("OK")));
    c.expect("NOTICE closing reason=closed-by-admin").await;
    let mut rest = String::new();
    assert!(!c.read_line_or_close(&mut rest).await, "still open: {rest}");
    let (status, v) = command(http, None, &format!("CLOSE CONNECTION {id}")).await;
    assert_eq!((status, v["code"].as_str()), (404, Some("NOT_FOUND")));
}
