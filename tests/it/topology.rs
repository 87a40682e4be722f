//! DECLARE, DELETE, BIND, UNBIND, PURGE; exclusive and auto-delete queues.

use crate::common::{words, Peer, TestServer};

#[tokio::test]
async fn declare_queue_reports_its_depth_and_consumers() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE jobs", "OK jobs messages=0 consumers=0")
        .await;
    p.publish("", "jobs", "a", 1).await;
    p.publish("", "jobs", "b", 1).await;
    p.ok("DECLARE QUEUE jobs", "OK jobs messages=2 consumers=0")
        .await;
    let mut other = Peer::connect(&srv).await;
    other.ok("SUB jobs prefetch=1 tag=w", "OK w").await;
    other.msg().await;
    p.ok("DECLARE QUEUE jobs", "OK jobs messages=1 consumers=1")
        .await;
}

#[tokio::test]
async fn redeclaring_a_queue_with_other_flags_is_a_precondition_error() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE q durable", "OK q messages=0 consumers=0")
        .await;
    p.ok("declare queue q DURABLE", "OK q messages=0 consumers=0")
        .await;
    p.ok(
        "DECLARE QUEUE q durable=true",
        "OK q messages=0 consumers=0",
    )
    .await;
    p.err("DECLARE QUEUE q", "PRECONDITION").await;
    p.err("DECLARE QUEUE q durable exclusive", "PRECONDITION")
        .await;
    p.err("DECLARE QUEUE q durable auto-delete", "PRECONDITION")
        .await;
    p.ok("DECLARE QUEUE r", "OK r messages=0 consumers=0").await;
    p.err("DECLARE QUEUE r durable", "PRECONDITION").await;
    p.ok(
        "DECLARE QUEUE r durable=false",
        "OK r messages=0 consumers=0",
    )
    .await;
}

#[tokio::test]
async fn queue_names_are_case_sensitive() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE Jobs", "OK Jobs messages=0 consumers=0")
        .await;
    p.publish("", "Jobs", "x", 1).await;
    p.ok("DECLARE QUEUE jobs", "OK jobs messages=0 consumers=0")
        .await;
    p.ok("DECLARE QUEUE Jobs", "OK Jobs messages=1 consumers=0")
        .await;
}

#[tokio::test]
async fn declaring_a_queue_named_empty_generates_a_unique_name() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    let mut names = Vec::new();
    for _ in 0..2 {
        let r = p.cmd(r#"DECLARE QUEUE """#).await;
        let w = words(&r);
        assert_eq!(w.len(), 4, "{r}");
        assert_eq!(
            (w[0].as_str(), w[2].as_str(), w[3].as_str()),
            ("OK", "messages=0", "consumers=0")
        );
        assert!(w[1].starts_with("gen-"), "generated name {:?}", w[1]);
        names.push(w[1].clone());
    }
    assert_ne!(names[0], names[1]);
    p.publish("", &names[0], "hi", 1).await;
    p.ok(
        &format!("DECLARE QUEUE {}", names[0]),
        &format!("OK {} messages=1 consumers=0", names[0]),
    )
    .await;
}

#[tokio::test]
async fn invalid_queue_names_are_syntax_errors() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.err("DECLARE QUEUE a*b", "SYNTAX").await;
    p.err("DECLARE QUEUE \"a b\"", "SYNTAX").await;
    p.err(&format!("DECLARE QUEUE {}", "n".repeat(256)), "SYNTAX")
        .await;
    let ok = "n".repeat(255);
    p.ok(
        &format!("DECLARE QUEUE {ok}"),
        &format!("OK {ok} messages=0 consumers=0"),
    )
    .await;
    p.ok(
        "DECLARE QUEUE A-z_0.9:/x",
        "OK A-z_0.9:/x messages=0 consumers=0",
    )
    .await;
}

#[tokio::test]
async fn declare_exchange_of_each_type_and_again_with_the_same_options() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    for ty in ["direct", "fanout", "topic", "headers"] {
        p.ok(&format!("DECLARE EXCHANGE ex-{ty} {ty}"), "OK").await;
        p.ok(
            &format!("declare exchange ex-{ty} {}", ty.to_uppercase()),
            "OK",
        )
        .await;
    }
    p.ok("DECLARE EXCHANGE d direct durable", "OK").await;
    p.ok("DECLARE EXCHANGE d direct durable", "OK").await;
}

#[tokio::test]
async fn redeclaring_an_exchange_with_another_type_is_a_precondition_error() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE EXCHANGE orders direct", "OK").await;
    p.err("DECLARE EXCHANGE orders fanout", "PRECONDITION")
        .await;
    p.err("DECLARE EXCHANGE orders topic", "PRECONDITION").await;
    p.ok("DECLARE EXCHANGE orders direct", "OK").await;
}

#[tokio::test]
async fn declare_exchange_with_an_unknown_type_is_a_syntax_error() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.err("DECLARE EXCHANGE e nosuchtype", "SYNTAX").await;
    p.err("PUB e k x", "NOT_FOUND").await;
}

#[tokio::test]
async fn exclusive_queue_is_locked_for_other_connections() {
    let srv = TestServer::start().await;
    let mut owner = Peer::connect(&srv).await;
    owner
        .ok(
            "DECLARE QUEUE mine exclusive",
            "OK mine messages=0 consumers=0",
        )
        .await;
    owner.ok("DECLARE EXCHANGE ex direct", "OK").await;
    let mut other = Peer::connect(&srv).await;
    for cmd in [
        "DECLARE QUEUE mine exclusive",
        "DECLARE QUEUE mine",
        "SUB mine",
        "GET mine",
        "PURGE mine",
        "DELETE QUEUE mine",
        "BIND mine ex k",
    ] {
        other.err(cmd, "LOCKED").await;
    }
    // The owner can do all of it.
    owner.ok("BIND mine ex k", "OK").await;
    owner.publish("ex", "k", "m", 1).await;
    owner.ok("PURGE mine", "OK messages=1").await;
    owner.ok("SUB mine tag=s", "OK s").await;
    owner.ok("DELETE QUEUE mine", "OK messages=0").await;
}

#[tokio::test]
async fn exclusive_queue_is_deleted_when_its_owner_disconnects() {
    let srv = TestServer::start().await;
    let mut owner = Peer::connect(&srv).await;
    owner
        .ok(
            "DECLARE QUEUE mine exclusive",
            "OK mine messages=0 consumers=0",
        )
        .await;
    owner.publish("", "mine", "m", 1).await;
    drop(owner);
    let mut other = Peer::connect(&srv).await;
    other
        .poll_until("GET mine", |r| !r.starts_with("ERR LOCKED"))
        .await;
    other.err("GET mine", "NOT_FOUND").await;
    other
        .ok("DECLARE QUEUE mine", "OK mine messages=0 consumers=0")
        .await;
}

#[tokio::test]
async fn auto_delete_queue_is_deleted_when_its_last_subscription_is_cancelled() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok(
        "DECLARE QUEUE tmp auto-delete",
        "OK tmp messages=0 consumers=0",
    )
    .await;
    p.ok("SUB tmp tag=a", "OK a").await;
    p.ok("SUB tmp tag=b", "OK b").await;
    p.ok("UNSUB a", "OK").await;
    p.ok(
        "DECLARE QUEUE tmp auto-delete",
        "OK tmp messages=0 consumers=1",
    )
    .await;
    p.ok("UNSUB b", "OK").await;
    p.err("GET tmp", "NOT_FOUND").await;
}

#[tokio::test]
async fn auto_delete_queue_is_deleted_when_its_subscriber_disconnects() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok(
        "DECLARE QUEUE tmp auto-delete",
        "OK tmp messages=0 consumers=0",
    )
    .await;
    let mut sub = Peer::connect(&srv).await;
    sub.ok("SUB tmp tag=a", "OK a").await;
    p.ok(
        "DECLARE QUEUE tmp auto-delete",
        "OK tmp messages=0 consumers=1",
    )
    .await;
    drop(sub);
    p.poll_until("GET tmp", |r| r.starts_with("ERR NOT_FOUND"))
        .await;
}

#[tokio::test]
async fn auto_delete_queue_that_never_had_a_subscription_stays() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok(
        "DECLARE QUEUE tmp auto-delete",
        "OK tmp messages=0 consumers=0",
    )
    .await;
    p.publish("", "tmp", "x", 1).await;
    let (msgs, r) = p.get("GET tmp").await;
    assert_eq!((msgs.len(), r.as_str()), (1, "OK 1"));
    p.ok(
        "DECLARE QUEUE tmp auto-delete",
        "OK tmp messages=0 consumers=0",
    )
    .await;
}

#[tokio::test]
async fn delete_queue_reports_its_ready_messages() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    for i in 0..3 {
        p.publish("", "q", &format!("m{i}"), 1).await;
    }
    p.ok("DELETE QUEUE q", "OK messages=3").await;
    p.err("GET q", "NOT_FOUND").await;
    p.publish("", "q", "gone", 0).await;
}

#[tokio::test]
async fn delete_queue_if_unused_fails_while_it_has_a_consumer() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    p.ok("SUB q tag=c", "OK c").await;
    p.err("DELETE QUEUE q if-unused", "PRECONDITION").await;
    p.ok("UNSUB c", "OK").await;
    p.ok("DELETE QUEUE q if-unused", "OK messages=0").await;
}

#[tokio::test]
async fn delete_queue_if_empty_fails_while_it_has_ready_messages() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    p.publish("", "q", "x", 1).await;
    p.err("DELETE QUEUE q if-empty", "PRECONDITION").await;
    p.ok("PURGE q", "OK messages=1").await;
    p.ok("DELETE QUEUE q if-empty IF-UNUSED", "OK messages=0")
        .await;
}

#[tokio::test]
async fn deleting_what_does_not_exist_is_not_found() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.err("DELETE QUEUE nosuch", "NOT_FOUND").await;
    p.err("DELETE EXCHANGE nosuch", "NOT_FOUND").await;
    p.err("PURGE nosuch", "NOT_FOUND").await;
}

#[tokio::test]
async fn delete_exchange_if_unused_fails_while_it_has_bindings() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE EXCHANGE ex fanout", "OK").await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    p.ok("BIND q ex", "OK").await;
    p.err("DELETE EXCHANGE ex if-unused", "PRECONDITION").await;
    p.ok("UNBIND q ex", "OK").await;
    p.ok("DELETE EXCHANGE ex if-unused", "OK").await;
    p.err("PUB ex k x", "NOT_FOUND").await;
}

#[tokio::test]
async fn deleting_an_exchange_stops_its_routing() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE EXCHANGE ex fanout", "OK").await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    p.ok("BIND q ex", "OK").await;
    p.publish("ex", "", "one", 1).await;
    p.ok("DELETE EXCHANGE ex", "OK").await;
    p.err("PUB ex k x", "NOT_FOUND").await;
    p.ok("DECLARE EXCHANGE ex fanout", "OK").await;
    p.publish("ex", "", "two", 0).await;
    p.ok("DECLARE QUEUE q", "OK q messages=1 consumers=0").await;
}

#[tokio::test]
async fn deleting_a_queue_cancels_its_subscriptions_with_a_notice() {
    let srv = TestServer::start().await;
    let mut sub = Peer::connect(&srv).await;
    sub.ok("DECLARE QUEUE audit", "OK audit messages=0 consumers=0")
        .await;
    sub.ok("SUB audit tag=a1", "OK a1").await;
    let mut admin = Peer::connect(&srv).await;
    admin.publish("", "audit", "fan me out", 1).await;
    let m = sub.msg().await;
    assert_eq!(m.dtag, 1);
    admin.ok("DELETE QUEUE audit", "OK messages=0").await;
    assert_eq!(
        sub.notice().await,
        "NOTICE cancelled a1 reason=queue-deleted"
    );
    // The delivery died with its queue: it is no longer outstanding.
    sub.err("ACK 1", "UNKNOWN_TAG").await;
    sub.err("UNSUB a1", "NOT_FOUND").await;
}

#[tokio::test]
async fn bind_to_the_default_exchange_is_a_precondition_error() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    p.err(r#"BIND q "" k"#, "PRECONDITION").await;
    p.err(r#"UNBIND q "" q"#, "PRECONDITION").await;
}

#[tokio::test]
async fn bind_with_a_missing_queue_or_exchange_is_not_found() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    p.ok("DECLARE EXCHANGE ex direct", "OK").await;
    p.err("BIND q nowhere k", "NOT_FOUND").await;
    p.err("BIND nosuch ex k", "NOT_FOUND").await;
    p.publish("ex", "k", "x", 0).await;
}

#[tokio::test]
async fn unbinding_a_binding_that_does_not_exist_is_ok() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    p.ok("DECLARE EXCHANGE ex direct", "OK").await;
    p.ok("UNBIND q ex never-bound", "OK").await;
    p.ok("BIND q ex k", "OK").await;
    p.ok("UNBIND q ex k", "OK").await;
    p.ok("UNBIND q ex k", "OK").await;
    p.publish("ex", "k", "x", 0).await;
}

#[tokio::test]
async fn purge_removes_ready_messages_and_reports_how_many() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    for i in 0..5 {
        p.publish("", "q", &format!("m{i}"), 1).await;
    }
    p.ok("purge q", "OK messages=5").await;
    p.ok("PURGE q", "OK messages=0").await;
    let (msgs, r) = p.get("GET q").await;
    assert_eq!((msgs.len(), r.as_str()), (0, "OK 0"));
}
