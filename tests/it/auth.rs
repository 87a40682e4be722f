//! Users, AUTH and permissions against the real server: the open broker,
//! NOAUTH gating, wrong passwords, the login rate limit, each permission
//! denied and allowed (and that a denied command changes nothing), the
//! USER admin commands, restarts, `sluice user` on a data directory, and
//! `serve` refusing to expose a broker without users.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::common::{sluice_bin, split_literal, TestConn, TestServer, DEADLINE};

const NOAUTH: &str = "ERR NOAUTH authentication required: AUTH <user> <password>";
const INVALID: &str = "ERR NOAUTH invalid user or password";

/// A server whose first user, `root` (admin), was added over the protocol
/// while it was open; and a connection logged in as root.
async fn with_root() -> (TestServer, TestConn) {
    let srv = TestServer::start().await;
    let mut root = srv.conn().await;
    root.ok("USER ADD root rootpw admin", "OK").await;
    root.ok("AUTH root rootpw", "OK root").await;
    (srv, root)
}

/// A connection logged in as `user`.
async fn login(srv: &TestServer, user: &str, password: &str) -> TestConn {
    let mut c = srv.conn().await;
    c.ok(&format!("AUTH {user} {password}"), &format!("OK {user}"))
        .await;
    c
}

/// The ready-message count `DECLARE QUEUE` reports for an existing queue
/// (`queue` followed by the options it was declared with, if any).
async fn depth(c: &mut TestConn, queue: &str) -> String {
    let reply = c.cmd(&format!("DECLARE QUEUE {queue}")).await;
    let queue = queue.split(' ').next().unwrap_or_default();
    let w: Vec<&str> = reply.split(' ').collect();
    assert_eq!(w.get(1), Some(&queue), "{reply}");
    w[2].to_string()
}

/// Reads an `OK {N}` data reply; returns its text.
async fn data(c: &mut TestConn, line: &str) -> String {
    let head = c.cmd(line).await;
    let (ok, n) = split_literal(&head).unwrap_or_else(|| panic!("no literal: {head:?}"));
    assert_eq!(ok, "OK", "{line}");
    String::from_utf8(c.literal(n).await).expect("utf-8")
}

#[tokio::test]
async fn open_broker_without_users_allows_everything() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("AUTH anyone anything", "OK").await;
    c.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    let line = c.cmd("PUB \"\" q hi").await;
    assert!(line.ends_with(" routed=1"), "{line}");
}

#[tokio::test]
async fn first_user_must_be_admin_and_then_the_broker_is_closed() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    let e = c.err("USER ADD bob pw", "PRECONDITION").await;
    assert!(e.contains("first user must be an admin"), "{e}");
    c.ok(
        "DECLARE QUEUE still-open",
        "OK still-open messages=0 consumers=0",
    )
    .await;
    c.ok("USER ADD root pw admin", "OK").await;
    // The same, unauthenticated, connection is gated from its next command.
    c.ok("DECLARE QUEUE q", NOAUTH).await;
    c.ok("AUTH root pw", "OK root").await;
    c.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
}

#[tokio::test]
async fn every_gated_verb_answers_noauth_before_auth_and_changes_nothing() {
    let (srv, mut root) = with_root().await;
    root.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0")
        .await;
    root.ok("DECLARE EXCHANGE x fanout", "OK").await;
    let mut c = srv.conn().await;
    for line in [
        "DECLARE EXCHANGE y direct",
        "DECLARE QUEUE other",
        "DELETE QUEUE q",
        "DELETE EXCHANGE x",
        "BIND q x",
        "UNBIND q x",
        "PURGE q",
        "PUB \"\" q inline",
        "SUB q",
        "UNSUB ctag-1",
        "GET q",
        "PEEK q",
        "REDRIVE q",
        "ACK 1",
        "NACK 1",
        "TOUCH 1",
        "USER LIST",
        "USER ADD eve pw admin",
    ] {
        c.ok(line, NOAUTH).await;
    }
    // A PUB's literal is consumed whole: its body looks like commands, and
    // the connection stays in sync.
    c.send_literal("PUB \"\" q", b"DECLARE QUEUE evil\r\nPING\r\n")
        .await;
    c.expect(NOAUTH).await;
    // These work before AUTH.
    c.ok("PING", "OK pong").await;
    let hello = c.cmd("HELLO name=t").await;
    assert!(hello.starts_with("OK sluice "), "{hello}");
    let help = data(&mut c, "HELP AUTH").await;
    assert!(help.contains("AUTH <user> <password>"), "{help}");
    // Nothing changed.
    assert_eq!(depth(&mut root, "q").await, "messages=0");
    root.err("DELETE QUEUE evil", "NOT_FOUND").await;
    root.err("DELETE QUEUE other", "NOT_FOUND").await;
    root.err("DELETE EXCHANGE y", "NOT_FOUND").await;
    let users = data(&mut root, "USER LIST").await;
    assert!(!users.contains("eve"), "{users}");
    c.ok("QUIT", "OK bye").await;
    c.expect_closed().await;
}

#[tokio::test]
async fn a_wrong_password_or_user_gets_one_answer_and_can_do_nothing() {
    let (srv, _root) = with_root().await;
    let mut c = srv.conn().await;
    c.ok("AUTH root wrong", INVALID).await;
    c.ok("AUTH nobody rootpw", INVALID).await;
    c.ok("AUTH ROOT rootpw", INVALID).await;
    c.ok("DECLARE QUEUE q", NOAUTH).await;
    c.ok("PUB \"\" q hi", NOAUTH).await;
    // A failed AUTH leaves a logged-in connection logged in.
    let mut r = login(&srv, "root", "rootpw").await;
    r.ok("AUTH root wrong", INVALID).await;
    r.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
}

#[tokio::test]
async fn commands_pipelined_after_auth_run_as_the_new_user() {
    let (srv, mut root) = with_root().await;
    root.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0")
        .await;
    let mut c = srv.conn().await;
    c.send_raw(b"AUTH root rootpw\r\nPUB \"\" q hi\r\nAUTH root bad\r\nPING\r\n")
        .await;
    c.expect("OK root").await;
    let published = c.line().await;
    assert!(
        published.starts_with("OK ") && published.ends_with(" routed=1"),
        "{published}"
    );
    c.expect(INVALID).await;
    c.expect("OK pong").await;
}

#[tokio::test]
async fn five_failed_logins_lock_the_user_out_at_that_address_even_with_the_right_password() {
    let (srv, mut root) = with_root().await;
    root.ok("USER ADD ops opspw admin", "OK").await;
    let mut c = srv.conn().await;
    for _ in 0..5 {
        c.ok("AUTH root nope", INVALID).await;
    }
    // From another connection of the same address, too.
    let mut d = srv.conn().await;
    for conn in [&mut c, &mut d] {
        let e = conn.err("AUTH root rootpw", "NOAUTH").await;
        assert!(
            e.starts_with(
                "ERR NOAUTH too many failed logins as \"root\" from 127.0.0.1; try again in "
            ),
            "{e}"
        );
        let secs: u64 = e
            .rsplit(' ')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no seconds in {e:?}"));
        assert!((1..=60).contains(&secs), "{e}");
        conn.ok("DECLARE QUEUE q", NOAUTH).await;
    }
    // Another operator on the same address is not locked out by them.
    d.ok("AUTH ops opspw", "OK ops").await;
    d.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
}

/// root, plus `app` whose three patterns are `^app\.`, and topology for
/// both sides: `app.q` and `other.q` each bound to `app.x`/`other.x`
/// (fanout), with one message in `other.q`.
async fn with_app() -> (TestServer, TestConn, TestConn) {
    let (srv, mut root) = with_root().await;
    root.ok(
        "USER ADD app apppw configure=^app\\. write=^app\\. read=^app\\.",
        "OK",
    )
    .await;
    for side in ["app", "other"] {
        root.ok(
            &format!("DECLARE QUEUE {side}.q"),
            &format!("OK {side}.q messages=0 consumers=0"),
        )
        .await;
        root.ok(&format!("DECLARE EXCHANGE {side}.x fanout"), "OK")
            .await;
        root.ok(&format!("BIND {side}.q {side}.x"), "OK").await;
    }
    let line = root.cmd("PUB other.x k kept").await;
    assert!(line.ends_with("routed=1"), "{line}");
    let app = login(&srv, "app", "apppw").await;
    (srv, root, app)
}

#[tokio::test]
async fn without_write_a_user_cannot_publish_or_bind_a_queue() {
    let (_srv, mut root, mut app) = with_app().await;
    app.ok(
        "PUB other.x k hi",
        "ERR FORBIDDEN PUB needs write permission on exchange 'other.x' (user app)",
    )
    .await;
    app.ok(
        "PUB \"\" other.q hi",
        "ERR FORBIDDEN PUB needs write permission on exchange '' (user app)",
    )
    .await;
    app.send_literal("PUB other.x k", b"PING\r\n").await;
    app.expect("ERR FORBIDDEN PUB needs write permission on exchange 'other.x' (user app)")
        .await;
    assert_eq!(depth(&mut root, "other.q").await, "messages=1");
    // BIND/UNBIND need write on the queue (the destination)...
    app.ok(
        "BIND other.q app.x",
        "ERR FORBIDDEN BIND needs write permission on queue 'other.q' (user app)",
    )
    .await;
    app.err("UNBIND other.q other.x", "FORBIDDEN").await;
    // ...which the binding shows: app.x still reaches only app.q.
    let line = root.cmd("PUB app.x k one").await;
    assert!(line.ends_with("routed=1"), "{line}");
    // Allowed: its own exchange.
    let line = app.cmd("PUB app.x k mine").await;
    assert!(line.ends_with("routed=1"), "{line}");
    app.ok("UNBIND app.q app.x", "OK").await;
    app.ok("BIND app.q app.x", "OK").await;
}

#[tokio::test]
async fn without_read_a_user_cannot_consume_get_peek_or_bind_from() {
    let (_srv, mut root, mut app) = with_app().await;
    for (line, verb) in [
        ("SUB other.q", "SUB"),
        ("GET other.q", "GET"),
        ("GET other.q ack=auto count=10", "GET"),
        ("PEEK other.q", "PEEK"),
        ("REDRIVE other.q", "REDRIVE"),
    ] {
        app.ok(
            line,
            &format!("ERR FORBIDDEN {verb} needs read permission on queue 'other.q' (user app)"),
        )
        .await;
    }
    app.ok(
        "BIND app.q other.x",
        "ERR FORBIDDEN BIND needs read permission on exchange 'other.x' (user app)",
    )
    .await;
    assert_eq!(depth(&mut root, "other.q").await, "messages=1");
    let line = root.cmd("PUB other.x k two").await;
    assert!(
        line.ends_with("routed=1"),
        "other.x still reaches only other.q: {line}"
    );
    // Allowed: its own queue.
    app.ok("GET app.q", "OK 0").await;
    app.ok("SUB app.q tag=c1", "OK c1").await;
    app.ok("PEEK app.q", "OK 0").await;
}

#[tokio::test]
async fn redrive_keeps_dead_letters_whose_exchange_the_user_may_not_write() {
    let (_srv, mut root, mut app) = with_app().await;
    root.ok("DECLARE QUEUE app.dlq", "OK app.dlq messages=0 consumers=0")
        .await;
    root.ok(
        "DECLARE QUEUE other.work dead-letter=\"\" dead-letter-key=app.dlq",
        "OK other.work messages=0 consumers=0",
    )
    .await;
    let line = root.cmd("PUB \"\" other.work job").await;
    assert!(line.ends_with("routed=1"), "{line}");
    root.send("GET other.work").await;
    root.msg().await;
    root.expect("OK 1").await;
    root.ok("REJECT 1", "OK").await;
    assert_eq!(depth(&mut root, "app.dlq").await, "messages=1");
    // Its way back is the default exchange, "", which app may not write to.
    app.ok("REDRIVE app.dlq", "OK moved=0 kept=1").await;
    let work = "other.work dead-letter=\"\" dead-letter-key=app.dlq";
    assert_eq!(depth(&mut root, work).await, "messages=0");
    root.ok("USER PERMIT app write=.*", "OK").await;
    app.ok("REDRIVE app.dlq", "OK moved=1 kept=0").await;
    assert_eq!(depth(&mut root, work).await, "messages=1");
}

#[tokio::test]
async fn without_configure_a_user_cannot_declare_delete_or_purge() {
    let (_srv, mut root, mut app) = with_app().await;
    let denied = [
        ("DECLARE QUEUE other.new", "DECLARE", "queue", "other.new"),
        ("DECLARE QUEUE other.q", "DECLARE", "queue", "other.q"),
        (
            "DECLARE EXCHANGE other.e direct",
            "DECLARE",
            "exchange",
            "other.e",
        ),
        ("DELETE QUEUE other.q", "DELETE", "queue", "other.q"),
        ("DELETE EXCHANGE other.x", "DELETE", "exchange", "other.x"),
        ("PURGE other.q", "PURGE", "queue", "other.q"),
    ];
    for (line, verb, kind, name) in denied {
        app.ok(
            line,
            &format!(
                "ERR FORBIDDEN {verb} needs configure permission on {kind} '{name}' (user app)"
            ),
        )
        .await;
    }
    // A server-named queue is checked on the name it would get.
    let e = app.err("DECLARE QUEUE \"\"", "FORBIDDEN").await;
    assert!(e.contains("on queue 'gen-"), "{e}");
    // Nothing changed.
    root.err("DELETE QUEUE other.new", "NOT_FOUND").await;
    root.err("DELETE EXCHANGE other.e", "NOT_FOUND").await;
    assert_eq!(depth(&mut root, "other.q").await, "messages=1");
    let line = root.cmd("PUB other.x k again").await;
    assert!(line.ends_with("routed=1"), "other.x is still there: {line}");
    // Allowed under its own prefix.
    app.ok("DECLARE QUEUE app.new", "OK app.new messages=0 consumers=0")
        .await;
    app.ok("DECLARE EXCHANGE app.e topic", "OK").await;
    app.ok("PURGE app.q", "OK messages=0").await;
    app.ok("DELETE QUEUE app.new", "OK messages=0").await;
    app.ok("DELETE EXCHANGE app.e", "OK").await;
}

#[tokio::test]
async fn an_empty_pattern_grants_nothing() {
    let (srv, mut root) = with_root().await;
    root.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0")
        .await;
    root.ok("USER ADD ro pw write=\"\"", "OK").await;
    let mut ro = login(&srv, "ro", "pw").await;
    ro.err("PUB \"\" q hi", "FORBIDDEN").await;
    ro.ok("GET q", "OK 0").await;
    ro.ok("DECLARE QUEUE mine", "OK mine messages=0 consumers=0")
        .await;
}

#[tokio::test]
async fn permission_changes_apply_to_the_next_command() {
    let (_srv, mut root, mut app) = with_app().await;
    // Denied, and remembered by the session's publish check...
    app.err("PUB other.x k hi", "FORBIDDEN").await;
    root.ok("USER PERMIT app write=.* read=^other\\.", "OK")
        .await;
    // ...but the change is seen at once.
    let line = app.cmd("PUB other.x k hi").await;
    assert!(line.ends_with("routed=1"), "{line}");
    app.send("PEEK other.q").await;
    app.msg().await;
    app.expect("OK 1").await;
    app.err("GET app.q", "FORBIDDEN").await;
    app.err("USER LIST", "FORBIDDEN").await;
    root.ok("USER PERMIT app admin", "OK").await;
    let list = data(&mut app, "USER LIST").await;
    assert!(list.contains("app"), "{list}");
}

#[tokio::test]
async fn user_admin_commands_need_the_admin_tag() {
    let (_srv, mut root, mut app) = with_app().await;
    for line in [
        "USER LIST",
        "USER ADD eve pw admin",
        "USER PASSWD root x",
        "USER PERMIT app configure=.*",
        "USER REMOVE root",
    ] {
        let e = app.err(line, "FORBIDDEN").await;
        assert!(e.contains("needs the admin tag (user app)"), "{e}");
    }
    let list = data(&mut root, "USER LIST").await;
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    let cols = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(
        cols(lines[0]),
        ["name", "tags", "configure", "write", "read"]
    );
    assert_eq!(
        cols(lines[1]),
        ["app", "-", "^app\\.", "^app\\.", "^app\\."]
    );
    assert_eq!(cols(lines[2]), ["root", "admin", ".*", ".*", ".*"]);
    // Columns are aligned.
    let at = |l: &str| {
        l.find("configure")
            .or_else(|| l.find(".*"))
            .or_else(|| l.find('^'))
    };
    assert_eq!(at(lines[0]), at(lines[1]));
    // Admin errors.
    root.err("USER ADD app x", "PRECONDITION").await;
    root.err("USER PASSWD ghost x", "NOT_FOUND").await;
    root.err("USER REMOVE ghost", "NOT_FOUND").await;
    root.err("USER PERMIT ghost read=x", "NOT_FOUND").await;
    root.err("USER PERMIT app read=(", "SYNTAX").await;
    let e = root.err("USER REMOVE root", "PRECONDITION").await;
    assert!(e.contains("last admin"), "{e}");
    root.err("USER PERMIT root admin=false", "PRECONDITION")
        .await;
}

#[tokio::test]
async fn a_changed_password_takes_effect_for_new_logins() {
    let (srv, mut root, _app) = with_app().await;
    root.ok("USER PASSWD app newpw", "OK").await;
    let mut c = srv.conn().await;
    c.ok("AUTH app apppw", INVALID).await;
    c.ok("AUTH app newpw", "OK app").await;
}

#[tokio::test]
async fn a_removed_user_is_logged_out_at_its_next_command() {
    let (srv, mut root, mut app) = with_app().await;
    root.ok("USER REMOVE app", "OK").await;
    app.ok("PING", "OK pong").await;
    app.ok("GET app.q", "ERR NOAUTH user removed").await;
    app.ok("GET app.q", NOAUTH).await;
    app.ok("AUTH app apppw", INVALID).await;
    let mut c = srv.conn().await;
    c.ok("AUTH app apppw", INVALID).await;
}

#[tokio::test]
async fn users_survive_a_restart() {
    let (srv, mut root) = with_root().await;
    root.ok("USER ADD app apppw read=^a$", "OK").await;
    drop(root);
    let srv = srv.restart().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE q", NOAUTH).await;
    c.ok("AUTH app wrong", INVALID).await;
    c.ok("AUTH app apppw", "OK app").await;
    c.err("GET q", "FORBIDDEN").await;
    let mut root = login(&srv, "root", "rootpw").await;
    let list = data(&mut root, "USER LIST").await;
    assert!(list.contains("^a$"), "{list}");
}

/// Runs `sluice user <args> --data-dir <dir>` with `stdin` piped in;
/// returns (exit code, stdout, stderr).
async fn sluice_user(dir: &std::path::Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    sluice_user_env(dir, args, stdin, &[]).await
}

/// The same with `env` set (and no other `SLUICE_*` variable).
async fn sluice_user_env(
    dir: &std::path::Path,
    args: &[&str],
    stdin: &str,
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut child = Command::new(sluice_bin())
        .arg("user")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_USER")
        .env_remove("SLUICE_PASSWORD")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sluice user");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("sluice user did not finish")
        .expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn sluice_user_on_a_data_dir_then_the_server_accepts_the_login() {
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("tempdir"));
    let d = dir.path();
    let (code, _, err) = sluice_user(
        d,
        &["add", "alice", "--admin", "--password-stdin"],
        "s3cret\n",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = sluice_user(
        d,
        &[
            "add",
            "bob",
            "--password",
            "bobpw",
            "--write",
            "^bob\\.",
            "--read",
            "",
        ],
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = sluice_user(d, &["list"], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("name "), "{out}");
    assert!(out.contains("alice  admin"), "{out}");
    assert!(out.contains("^bob\\.") && out.contains("\"\""), "{out}");
    // Usage errors exit 2; failures 1.
    let (code, _, _) = sluice_user(d, &["add", "a/b", "--password", "x"], "").await;
    assert_eq!(code, 2);
    let (code, _, _) = sluice_user(d, &["add", "c", "--password", "x", "--read", "("], "").await;
    assert_eq!(code, 2);
    let (code, _, err) = sluice_user(d, &["add", "alice", "--password", "x"], "").await;
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = sluice_user(d, &["add", "carol"], "").await;
    assert_eq!(code, 1, "no terminal, no --password-stdin: {err}");
    assert!(err.contains("--password-stdin"), "{err}");
    let (code, _, err) = sluice_user(d, &["remove", "alice"], "").await;
    assert_eq!(code, 1, "the last admin stays: {err}");

    let srv = TestServer::start_in(dir.clone(), |_| {}).await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE q", NOAUTH).await;
    c.ok("AUTH alice s3cret", "OK alice").await;
    c.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    let mut b = login(&srv, "bob", "bobpw").await;
    b.err("GET q", "FORBIDDEN").await;
    // While the broker runs, the CLI goes through it: an admin's login
    // is needed, and the change is live at once.
    let addr = srv.addr.to_string();
    let server = [("SLUICE_SERVER", addr.as_str())];
    let (code, _, err) =
        sluice_user_env(d, &["passwd", "bob", "--password", "x"], "", &server).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("a broker is running on {}", d.display()))
            && err.contains(&format!("the broker at {addr}"))
            && err.contains("NOAUTH"),
        "{err}"
    );
    let admin = [
        ("SLUICE_SERVER", addr.as_str()),
        ("SLUICE_USER", "alice"),
        ("SLUICE_PASSWORD", "s3cret"),
    ];
    let (code, out, err) =
        sluice_user_env(d, &["passwd", "bob", "--password", "x"], "", &admin).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "password of bob changed\n"),
        "{err}"
    );
    login(&srv, "bob", "x").await;
    drop(c);
    drop(b);
    let dir = srv.stop().await;
    let (code, _, err) =
        sluice_user(dir.path(), &["passwd", "bob", "--password-stdin"], "new\n").await;
    assert_eq!(code, 0, "{err}");
    let srv = TestServer::start_in(dir, |_| {}).await;
    login(&srv, "bob", "new").await;
}

/// `sluice user` against a running broker: every subcommand through its
/// `USER` commands, the first user without a login (the broker is open),
/// the rest as that admin; `-s` names the broker without a data directory
/// of its own. Answers as the offline ones, refusals are the broker's.
#[tokio::test]
async fn sluice_user_works_through_a_running_broker() {
    let b = crate::common::spawned::Spawned::start(&[]).await;
    let addr = b.addr.to_string();
    // No data directory of its own here: -s says where the broker is.
    let nowhere = tempfile::tempdir().expect("tempdir");
    let d = nowhere.path();
    let open = ["-s", addr.as_str()];
    let with = |args: &[&'static str]| -> Vec<&str> {
        args.iter().copied().chain(open.iter().copied()).collect()
    };
    let (code, out, err) = sluice_user(
        d,
        &with(&["add", "ops", "--admin", "--password-stdin"]),
        "opspw\n",
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "user ops added\n"), "{err}");
    // Now the broker has users: the next change needs an admin's login.
    let (code, _, err) = sluice_user(d, &with(&["add", "app", "--password", "apppw"]), "").await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("NOAUTH"), "{err}");
    let admin = [("SLUICE_USER", "ops"), ("SLUICE_PASSWORD", "opspw")];
    for (args, want) in [
        (
            &["add", "app", "--password", "apppw", "--read", "^app\\."][..],
            "user app added\n",
        ),
        (
            &["permit", "app", "--write", ""][..],
            "permissions of app changed\n",
        ),
        (
            &["passwd", "app", "--password", "n3w"][..],
            "password of app changed\n",
        ),
    ] {
        let (code, out, err) = sluice_user_env(d, &with(args), "", &admin).await;
        assert_eq!((code, out.as_str()), (0, want), "{args:?}: {err}");
    }
    let (code, out, err) = sluice_user_env(d, &with(&["list"]), "", &admin).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["name", "tags", "configure", "write", "read"],
            vec!["app", "-", ".*", "\"\"", "^app\\."],
            vec!["ops", "admin", ".*", ".*", ".*"],
        ],
        "{out}"
    );
    // The changes are live.
    let mut c = TestConn::connect(b.addr).await;
    c.ok("AUTH app n3w", "OK app").await;
    // The broker's refusals come back as they are.
    let (code, _, err) = sluice_user_env(d, &with(&["remove", "ops"]), "", &admin).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("PRECONDITION") && err.contains("last admin"),
        "{err}"
    );
    let (code, out, err) = sluice_user_env(d, &with(&["remove", "app"]), "", &admin).await;
    assert_eq!((code, out.as_str()), (0, "user app removed\n"), "{err}");
    c.err("DECLARE QUEUE q", "NOAUTH").await;
}

/// `sluice user remove|passwd|permit` of a user who is not there says
/// so, and where it looked; nothing changes.
#[tokio::test]
async fn sluice_user_on_a_missing_user_says_it_does_not_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (code, _, err) = sluice_user(d, &["add", "alice", "--admin", "--password", "pw"], "").await;
    assert_eq!(code, 0, "{err}");
    for args in [
        &["remove", "nosuch"][..],
        &["passwd", "nosuch", "--password", "x"][..],
        &["permit", "nosuch", "--read", "^a"][..],
    ] {
        let (code, out, err) = sluice_user(d, args, "").await;
        assert_eq!((code, out.as_str()), (1, ""), "{args:?}: {err}");
        assert!(
            err.contains("user \"nosuch\" does not exist in the data directory")
                && err.contains(&d.display().to_string()),
            "{args:?}: {err}"
        );
    }
    let (code, out, err) = sluice_user(d, &["list"], "").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "a header and alice: {out}");
}

/// A `sluice serve` child and its data directory.
struct Served {
    /// Exit code, if it exited instead of listening.
    status: Option<i32>,
    /// Its first line on stdout (empty if it exited).
    first: String,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

/// `sluice serve` with `args` on a fresh directory.
async fn serve(args: &[&str]) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(sluice_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sluice serve");
    let stdout = child.stdout.take().expect("stdout");
    let first = tokio::time::timeout(DEADLINE, BufReader::new(stdout).lines().next_line())
        .await
        .expect("neither listening nor exited in time")
        .expect("read stdout")
        .unwrap_or_default();
    let status = if first.is_empty() {
        let s = tokio::time::timeout(DEADLINE, child.wait())
            .await
            .expect("did not exit")
            .expect("wait");
        s.code()
    } else {
        None
    };
    Served {
        status,
        first,
        child,
        _dir: dir,
    }
}

#[tokio::test]
async fn serve_refuses_a_non_loopback_address_without_users() {
    let mut refused = serve(&["--addr", "0.0.0.0:0"]).await;
    assert_eq!(refused.status, Some(1));
    let mut err = String::new();
    if let Some(mut e) = refused.child.stderr.take() {
        use tokio::io::AsyncReadExt;
        e.read_to_string(&mut err).await.expect("stderr");
    }
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 with no users"),
        "{err}"
    );
    assert!(
        err.contains("--insecure-open") && err.contains("sluice user add"),
        "{err}"
    );

    let mut open = serve(&["--addr", "0.0.0.0:0", "--insecure-open"]).await;
    assert_eq!(open.status, None);
    assert!(
        open.first.starts_with("listening on 0.0.0.0:"),
        "{}",
        open.first
    );
    let stderr = open.child.stderr.take().expect("stderr");
    let warned = tokio::time::timeout(DEADLINE, async {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("NO USERS") {
                return true;
            }
        }
        false
    })
    .await
    .expect("no warning in time");
    assert!(warned);
    open.child.kill().await.expect("kill");
}
