//! SUB, UNSUB, GET, ACK, NACK, REJECT: who gets which message, when, and
//! what happens to unacknowledged ones.

use std::time::{Duration, Instant};

use crate::common::{Peer, TestServer};

/// A connection with queue `q` declared.
async fn with_queue(srv: &TestServer) -> Peer {
    let mut p = Peer::connect(srv).await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    p
}

/// Publishes `bodies` to `q` with ids equal to the bodies.
async fn publish_all(p: &mut Peer, bodies: &[&str]) {
    for b in bodies {
        p.ok(
            &format!(r#"PUB "" q id={b} {b}"#),
            &format!("OK {b} routed=1"),
        )
        .await;
    }
}

#[tokio::test]
async fn sub_reply_precedes_its_first_delivery_and_msg_has_the_documented_shape() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    c.ok(r#"PUB "" q id=m1 hello"#, "OK m1 routed=1").await;
    c.ok("SUB q tag=w1", "OK w1").await;
    c.expect(r#"MSG w1 1 "" q deliveries=1 id=m1 {5}"#).await;
    assert_eq!(c.literal(5).await, b"hello");
    c.ok("ACK 1", "OK").await;
}

#[tokio::test]
async fn sub_without_a_tag_gets_a_generated_one() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    let r = p.cmd("SUB q").await;
    let tag = r.strip_prefix("OK ").expect("OK <ctag>").to_string();
    assert!(!tag.is_empty() && !tag.contains(' '), "{r}");
    let r2 = p.cmd("SUB q").await;
    assert_ne!(r, r2, "generated tags must differ");
    p.publish("", "q", "x", 1).await;
    let m = p.msg().await;
    assert!(
        m.ctag == tag || format!("OK {}", m.ctag) == r2,
        "MSG for an unknown tag {:?}",
        m.ctag
    );
}

#[tokio::test]
async fn delivery_tags_are_per_connection_and_start_at_one() {
    let srv = TestServer::start().await;
    let mut a = with_queue(&srv).await;
    publish_all(&mut a, &["m1", "m2", "m3", "m4"]).await;
    let (msgs, r) = a.get("GET q count=2").await;
    assert_eq!(r, "OK 2");
    assert_eq!((msgs[0].dtag, msgs[1].dtag), (1, 2));
    a.ok("SUB q tag=s prefetch=1", "OK s").await;
    assert_eq!(a.msg().await.dtag, 3);
    let mut b = Peer::connect(&srv).await;
    let (msgs, r) = b.get("GET q").await;
    assert_eq!(r, "OK 1");
    assert_eq!((msgs[0].dtag, msgs[0].id.as_str()), (1, "m4"));
}

#[tokio::test]
async fn get_writes_its_deliveries_before_ok_with_the_count() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    for i in 1..=5 {
        c.ok(
            &format!(r#"PUB "" q id=m{i} b{i}"#),
            &format!("OK m{i} routed=1"),
        )
        .await;
    }
    c.send("GET q count=3").await;
    for i in 1..=3 {
        c.expect(&format!(r#"MSG - {i} "" q deliveries=1 id=m{i} {{2}}"#))
            .await;
        assert_eq!(c.literal(2).await, format!("b{i}").as_bytes());
    }
    c.expect("OK 3").await;
    c.send("get q COUNT=10").await;
    for i in 4..=5 {
        c.expect(&format!(r#"MSG - {i} "" q deliveries=1 id=m{i} {{2}}"#))
            .await;
        c.literal(2).await;
    }
    c.expect("OK 2").await;
    c.ok("GET q", "OK 0").await;
}

#[tokio::test]
async fn get_with_manual_ack_keeps_the_message_unacked_until_ack() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    publish_all(&mut p, &["m1"]).await;
    let (msgs, _) = p.get("GET q").await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    p.ok(&format!("ACK {}", msgs[0].dtag), "OK").await;
    p.ok("GET q", "OK 0").await;
}

#[tokio::test]
async fn get_with_auto_ack_needs_no_ack() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    publish_all(&mut p, &["m1"]).await;
    let (msgs, r) = p.get("GET q ack=auto").await;
    assert_eq!((msgs.len(), r.as_str()), (1, "OK 1"));
    p.err(&format!("ACK {}", msgs[0].dtag), "UNKNOWN_TAG").await;
    drop(p);
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
}

#[tokio::test]
async fn get_wait_returns_a_message_published_by_another_connection_during_the_wait() {
    let srv = TestServer::start().await;
    let mut waiter = with_queue(&srv).await;
    let mut publisher = Peer::connect(&srv).await;
    let started = Instant::now();
    waiter.conn.send("GET q wait=8000").await;
    publisher.publish("", "q", "late", 1).await;
    let m = waiter.msg().await;
    assert_eq!((m.ctag.as_str(), m.text().as_str()), ("-", "late"));
    assert_eq!(waiter.reply().await, "OK 1");
    assert!(
        started.elapsed() < Duration::from_millis(4000),
        "GET wait= did not return when the message arrived"
    );
}

#[tokio::test]
async fn get_wait_on_an_empty_queue_answers_ok_0_after_the_wait() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    let started = Instant::now();
    p.ok("GET q wait=200", "OK 0").await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(190),
        "returned after {took:?}"
    );
    assert!(
        took < Duration::from_millis(3000),
        "returned after {took:?}"
    );
}

#[tokio::test]
async fn prefetch_one_holds_the_next_message_until_the_first_is_acked() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    publish_all(&mut p, &["m1", "m2"]).await;
    p.ok("SUB q prefetch=1 tag=c", "OK c").await;
    let m1 = p.msg().await;
    assert_eq!(m1.id, "m1");
    p.quiet().await;
    p.ok(&format!("ACK {}", m1.dtag), "OK").await;
    let m2 = p.msg().await;
    assert_eq!(m2.id, "m2");
    p.quiet().await;
}

#[tokio::test]
async fn prefetch_bounds_unacked_deliveries_and_nack_gives_credit_back() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    publish_all(&mut p, &["m1", "m2", "m3", "m4", "m5"]).await;
    p.ok("SUB q prefetch=3 tag=c", "OK c").await;
    let got: Vec<_> = [p.msg().await, p.msg().await, p.msg().await]
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(got, ["m1", "m2", "m3"]);
    p.quiet().await;
    p.ok("REJECT 2", "OK").await;
    assert_eq!(p.msg().await.id, "m4");
    p.quiet().await;
}

#[tokio::test]
async fn auto_ack_subscription_needs_no_ack() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    publish_all(&mut p, &["m1", "m2", "m3"]).await;
    p.ok("SUB q ack=AUTO prefetch=1 tag=c", "OK c").await;
    for id in ["m1", "m2", "m3"] {
        let m = p.msg().await;
        assert_eq!(m.id, id);
        p.err(&format!("ACK {}", m.dtag), "UNKNOWN_TAG").await;
    }
    p.ok("UNSUB c", "OK").await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
}

#[tokio::test]
async fn competing_consumers_share_messages_round_robin_each_exactly_once() {
    let srv = TestServer::start().await;
    let mut publisher = with_queue(&srv).await;
    let mut a = Peer::connect(&srv).await;
    let mut b = Peer::connect(&srv).await;
    a.ok("SUB q tag=a", "OK a").await;
    b.ok("SUB q tag=b", "OK b").await;
    let ids: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    for id in &ids {
        publisher
            .ok(
                &format!(r#"PUB "" q id={id} x"#),
                &format!("OK {id} routed=1"),
            )
            .await;
    }
    publisher
        .ok("DECLARE QUEUE q", "OK q messages=0 consumers=2")
        .await;
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for _ in 0..5 {
        got_a.push(a.msg().await.id);
        got_b.push(b.msg().await.id);
    }
    a.quiet().await;
    b.quiet().await;
    let mut all: Vec<String> = got_a.iter().chain(&got_b).cloned().collect();
    all.sort_by_key(|s| s[1..].parse::<u32>().unwrap_or(u32::MAX));
    assert_eq!(all, ids, "a got {got_a:?}, b got {got_b:?}");
}

#[tokio::test]
async fn a_consumer_without_prefetch_room_is_skipped() {
    let srv = TestServer::start().await;
    let mut publisher = with_queue(&srv).await;
    let mut slow = Peer::connect(&srv).await;
    let mut fast = Peer::connect(&srv).await;
    slow.ok("SUB q prefetch=1 tag=slow", "OK slow").await;
    fast.ok("SUB q prefetch=10 tag=fast", "OK fast").await;
    publish_all(&mut publisher, &["m1", "m2", "m3", "m4", "m5"]).await;
    let first = slow.msg().await;
    let mut fast_ids = Vec::new();
    for _ in 0..4 {
        fast_ids.push(fast.msg().await.id);
    }
    slow.quiet().await;
    fast.quiet().await;
    let mut all = fast_ids.clone();
    all.push(first.id.clone());
    all.sort();
    assert_eq!(all, ["m1", "m2", "m3", "m4", "m5"]);
}

#[tokio::test]
async fn exclusive_sub_is_locked_while_the_queue_has_consumers() {
    let srv = TestServer::start().await;
    let mut a = with_queue(&srv).await;
    a.ok("SUB q tag=a", "OK a").await;
    let mut b = Peer::connect(&srv).await;
    b.err("SUB q exclusive tag=b", "LOCKED").await;
    a.ok("UNSUB a", "OK").await;
    b.ok("SUB q exclusive tag=b", "OK b").await;
}

#[tokio::test]
async fn duplicate_consumer_tag_on_one_connection_is_a_precondition_error() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    p.ok("DECLARE QUEUE r", "OK r messages=0 consumers=0").await;
    p.ok("SUB q tag=dup", "OK dup").await;
    p.err("SUB r tag=dup", "PRECONDITION").await;
    // The same tag on another connection is fine.
    let mut other = Peer::connect(&srv).await;
    other.ok("SUB q tag=dup", "OK dup").await;
}

#[tokio::test]
async fn unsub_of_an_unknown_tag_is_not_found() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    p.err("UNSUB nosuch", "NOT_FOUND").await;
    p.ok("SUB q tag=t", "OK t").await;
    p.ok("UNSUB t", "OK").await;
    p.err("UNSUB t", "NOT_FOUND").await;
}

#[tokio::test]
async fn no_delivery_for_a_tag_after_its_unsub_is_answered() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    p.ok("SUB q tag=t", "OK t").await;
    p.ok("UNSUB t", "OK").await;
    publish_all(&mut p, &["m1"]).await;
    p.quiet().await;
    let (msgs, r) = p.get("GET q").await;
    assert_eq!((msgs[0].id.as_str(), r.as_str()), ("m1", "OK 1"));
}

#[tokio::test]
async fn unacked_deliveries_of_a_cancelled_subscription_can_still_be_acked() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    publish_all(&mut p, &["m1", "m2"]).await;
    p.ok("SUB q tag=t prefetch=2", "OK t").await;
    let m1 = p.msg().await;
    let m2 = p.msg().await;
    p.ok("UNSUB t", "OK").await;
    p.ok(&format!("ACK {}", m1.dtag), "OK").await;
    p.ok(&format!("NACK {}", m2.dtag), "OK").await;
    let (msgs, _) = p.get("GET q").await;
    assert_eq!(msgs.len(), 1);
    assert_eq!((msgs[0].id.as_str(), msgs[0].redelivered), ("m2", true));
}

#[tokio::test]
async fn ack_and_nack_of_unknown_tags_are_unknown_tag() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    p.err("ACK 1", "UNKNOWN_TAG").await;
    p.err("NACK 99", "UNKNOWN_TAG").await;
    p.err("REJECT 7", "UNKNOWN_TAG").await;
    publish_all(&mut p, &["m1"]).await;
    let (msgs, _) = p.get("GET q").await;
    p.ok(&format!("ACK {}", msgs[0].dtag), "OK").await;
    p.err(&format!("ACK {}", msgs[0].dtag), "UNKNOWN_TAG").await;
    p.err(&format!("NACK {}", msgs[0].dtag), "UNKNOWN_TAG")
        .await;
}

#[tokio::test]
async fn a_delivery_can_only_be_settled_on_its_own_connection() {
    let srv = TestServer::start().await;
    let mut a = with_queue(&srv).await;
    publish_all(&mut a, &["m1"]).await;
    let (msgs, _) = a.get("GET q").await;
    let mut b = Peer::connect(&srv).await;
    b.err(&format!("ACK {}", msgs[0].dtag), "UNKNOWN_TAG").await;
    a.ok(&format!("ACK {}", msgs[0].dtag), "OK").await;
}

#[tokio::test]
async fn ack_multiple_acks_every_outstanding_tag_up_to_the_given_one() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    publish_all(&mut p, &["m1", "m2", "m3", "m4"]).await;
    let (msgs, r) = p.get("GET q count=4").await;
    assert_eq!(r, "OK 4");
    let tags: Vec<u64> = msgs.iter().map(|m| m.dtag).collect();
    assert_eq!(tags, [1, 2, 3, 4]);
    p.ok("ACK 2", "OK").await;
    p.ok("ACK 3 multiple", "OK").await;
    p.err("ACK 1", "UNKNOWN_TAG").await;
    p.err("ACK 3", "UNKNOWN_TAG").await;
    p.ok("ACK 4", "OK").await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
}

#[tokio::test]
async fn nack_requeue_returns_message_to_its_original_position() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    publish_all(&mut p, &["m1"]).await;
    let (first, _) = p.get("GET q").await;
    assert_eq!((first[0].dtag, first[0].deliveries), (1, 1));
    publish_all(&mut p, &["m2"]).await;
    p.ok("NACK 1", "OK").await;
    p.conn.send("GET q count=2").await;
    p.conn
        .expect(r#"MSG - 2 "" q redelivered deliveries=2 id=m1 {2}"#)
        .await;
    assert_eq!(p.conn.literal(2).await, b"m1");
    p.conn
        .expect(r#"MSG - 3 "" q deliveries=1 id=m2 {2}"#)
        .await;
    assert_eq!(p.conn.literal(2).await, b"m2");
    p.conn.expect("OK 2").await;
}

#[tokio::test]
async fn nack_requeue_redelivers_to_a_subscriber_with_a_higher_delivery_count() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    publish_all(&mut p, &["m1"]).await;
    p.ok("SUB q prefetch=1 tag=c", "OK c").await;
    let m = p.msg().await;
    assert_eq!((m.redelivered, m.deliveries), (false, 1));
    p.ok(&format!("NACK {} requeue=true", m.dtag), "OK").await;
    let m = p.msg().await;
    assert_eq!(
        (m.id.as_str(), m.redelivered, m.deliveries),
        ("m1", true, 2)
    );
    p.ok(&format!("nack {}", m.dtag), "OK").await;
    let m = p.msg().await;
    assert_eq!((m.redelivered, m.deliveries), (true, 3));
    assert!(
        m.head.contains(" redelivered deliveries=3 id=m1"),
        "{}",
        m.head
    );
}

#[tokio::test]
async fn nack_without_requeue_and_reject_drop_the_message() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    publish_all(&mut p, &["m1", "m2", "m3"]).await;
    let (msgs, _) = p.get("GET q count=2").await;
    p.ok(&format!("NACK {} requeue=false", msgs[0].dtag), "OK")
        .await;
    p.ok(&format!("REJECT {}", msgs[1].dtag), "OK").await;
    let (rest, r) = p.get("GET q count=5").await;
    assert_eq!(r, "OK 1");
    assert_eq!(rest[0].id, "m3");
}

#[tokio::test]
async fn nack_multiple_requeues_every_outstanding_tag_up_to_the_given_one() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    publish_all(&mut p, &["m1", "m2", "m3"]).await;
    let (msgs, _) = p.get("GET q count=3").await;
    assert_eq!(msgs.len(), 3);
    p.ok("NACK 2 multiple", "OK").await;
    p.ok("ACK 3", "OK").await;
    let (again, r) = p.get("GET q count=5 ack=auto").await;
    assert_eq!(r, "OK 2");
    let ids: Vec<_> = again
        .iter()
        .map(|m| (m.id.as_str(), m.deliveries))
        .collect();
    assert_eq!(ids, [("m1", 2), ("m2", 2)]);
}

#[tokio::test]
async fn closing_a_connection_redelivers_its_unacked_messages_in_order_to_another_consumer() {
    let srv = TestServer::start().await;
    let mut a = with_queue(&srv).await;
    publish_all(&mut a, &["m1", "m2", "m3"]).await;
    a.ok("SUB q prefetch=10 tag=a", "OK a").await;
    for id in ["m1", "m2", "m3"] {
        assert_eq!(a.msg().await.id, id);
    }
    let mut b = Peer::connect(&srv).await;
    b.ok("SUB q prefetch=10 tag=b", "OK b").await;
    b.quiet().await;
    drop(a);
    for (i, id) in ["m1", "m2", "m3"].into_iter().enumerate() {
        let m = b.msg().await;
        assert_eq!(
            (m.ctag.as_str(), m.dtag, m.id.as_str()),
            ("b", i as u64 + 1, id)
        );
        assert!(m.redelivered, "{}", m.head);
        assert_eq!(m.deliveries, 2, "{}", m.head);
    }
}

#[tokio::test]
async fn unacked_messages_of_a_closed_connection_go_back_before_later_ones() {
    let srv = TestServer::start().await;
    let mut a = with_queue(&srv).await;
    publish_all(&mut a, &["m1", "m2"]).await;
    let (got, _) = a.get("GET q").await;
    assert_eq!(got[0].id, "m1");
    publish_all(&mut a, &["m3"]).await;
    drop(a);
    let mut b = Peer::connect(&srv).await;
    b.poll_until("DECLARE QUEUE q", |r| r == "OK q messages=3 consumers=0")
        .await;
    let (msgs, r) = b.get("GET q count=3 ack=auto").await;
    assert_eq!(r, "OK 3");
    let seen: Vec<_> = msgs
        .iter()
        .map(|m| (m.id.as_str(), m.redelivered, m.deliveries))
        .collect();
    assert_eq!(seen, [("m1", true, 2), ("m2", false, 1), ("m3", false, 1)]);
}

#[tokio::test]
async fn empty_exchange_is_written_quoted_and_named_exchanges_as_is() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    c.ok("DECLARE EXCHANGE logs topic", "OK").await;
    c.ok("BIND q logs eu.#", "OK").await;
    c.ok(r#"PUB "" q id=a x"#, "OK a routed=1").await;
    c.ok(r#"PUB logs eu.api.error id=b y"#, "OK b routed=1")
        .await;
    c.send("GET q count=2 ack=auto").await;
    c.expect(r#"MSG - 1 "" q deliveries=1 id=a {1}"#).await;
    c.literal(1).await;
    c.expect("MSG - 2 logs eu.api.error deliveries=1 id=b {1}")
        .await;
    c.literal(1).await;
    c.expect("OK 2").await;
}

#[tokio::test]
async fn unsub_right_after_sub_loses_no_message_and_writes_none_after_its_ok() {
    let srv = TestServer::start().await;
    let mut p = with_queue(&srv).await;
    let mut batch = Vec::new();
    for i in 0..200 {
        batch.extend_from_slice(format!("PUB \"\" q id=m{i} x\r\n").as_bytes());
    }
    batch.extend_from_slice(b"SUB q tag=t prefetch=1000\r\nUNSUB t\r\n");
    p.conn.send_raw(&batch).await;
    for i in 0..200 {
        assert_eq!(p.reply().await, format!("OK m{i} routed=1"));
    }
    assert_eq!(p.reply().await, "OK t");
    assert_eq!(p.reply().await, "OK");
    // Deliveries written before UNSUB's OK are buffered; none may follow it.
    let mut received = Vec::new();
    while let Some(m) = p.take_buffered_msg() {
        assert_eq!(m.ctag, "t");
        received.push(m);
    }
    p.quiet().await;
    for m in &received {
        p.ok(&format!("ACK {}", m.dtag), "OK").await;
    }
    // Whatever was not written to us went back to the queue before the OK.
    let expect = format!("OK q messages={} consumers=0", 200 - received.len());
    p.ok("DECLARE QUEUE q", &expect).await;
}

#[tokio::test]
async fn messages_in_flight_to_a_connection_that_quits_go_back_to_the_queue() {
    let srv = TestServer::start().await;
    let mut a = with_queue(&srv).await;
    a.conn
        .send_raw(b"SUB q tag=a\r\nPUB \"\" q id=m1 x\r\nQUIT\r\n")
        .await;
    assert_eq!(a.reply().await, "OK a");
    assert_eq!(a.reply().await, "OK m1 routed=1");
    assert_eq!(a.reply().await, "OK bye");
    let mut b = Peer::connect(&srv).await;
    b.poll_until("DECLARE QUEUE q", |r| r == "OK q messages=1 consumers=0")
        .await;
    let (msgs, r) = b.get("GET q").await;
    assert_eq!((msgs[0].id.as_str(), r.as_str()), ("m1", "OK 1"));
}

#[tokio::test]
async fn unsub_gives_back_deliveries_still_on_their_way_before_its_ok() {
    let srv = TestServer::start().await;
    let mut publisher = with_queue(&srv).await;
    let mut c = Peer::connect(&srv).await;
    c.ok("SUB q prefetch=1000 tag=t", "OK t").await;
    let total = 500;
    let mut batch = String::new();
    for i in 0..total {
        batch.push_str(&format!("PUB \"\" q m{i}\r\n"));
    }
    // Publishes stream in while the subscriber cancels: some deliveries are
    // on their way (pushed, not yet written) when UNSUB runs.
    publisher.conn.send_raw(batch.as_bytes()).await;
    // One write: GET runs right after UNSUB, with no loop turn in between.
    c.conn.send_raw(b"UNSUB t\r\nGET q count=1000\r\n").await;
    assert_eq!(c.reply().await, "OK");
    let mut pushed = 0;
    while let Some(m) = c.take_buffered_msg() {
        assert_eq!(m.ctag, "t");
        pushed += 1;
    }
    let (got, reply) = c.get_reply().await;
    assert_eq!(reply, format!("OK {}", got.len()));
    assert!(
        c.take_buffered_msg().is_none(),
        "a delivery for t followed UNSUB's OK"
    );
    for _ in 0..total {
        let r = publisher.reply().await;
        assert!(r.ends_with("routed=1"), "{r}");
    }
    let depth = publisher.cmd("DECLARE QUEUE q").await;
    let ready: usize = depth
        .strip_prefix("OK q messages=")
        .and_then(|r| r.strip_suffix(" consumers=0"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{depth}"));
    assert_eq!(
        pushed + got.len() + ready,
        total,
        "pushed {pushed}, got {}, ready {ready}",
        got.len()
    );
}
