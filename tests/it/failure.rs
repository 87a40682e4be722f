//! Failure handling: dead letters, delivery limits, TTLs, length limits and
//! overflow policies, ack timeouts, delays, priorities, de-duplication,
//! retry back-off, PEEK and REDRIVE. Waits for timed effects use `GET
//! wait=` or deadline polling; elapsed-time checks are lower bounds only
//! (a slow machine can only make them later).

use std::time::{Duration, Instant};

use crate::common::{Msg, Peer, TestServer};

/// Declares a fanout dead-letter exchange `dlx` bound to queue `dlq`.
async fn dead_letter_target(p: &mut Peer) {
    p.ok("DECLARE EXCHANGE dlx fanout", "OK").await;
    p.ok("DECLARE QUEUE dlq", "OK dlq messages=0 consumers=0")
        .await;
    p.ok("BIND dlq dlx", "OK").await;
}

/// Waits (up to 10 s) for one message on `q` and takes it with auto-ack.
async fn next_on(p: &mut Peer, q: &str) -> Msg {
    let (mut got, r) = p.get(&format!("GET {q} ack=auto wait=10000")).await;
    assert_eq!(r, "OK 1", "nothing arrived on {q}");
    got.remove(0)
}

fn header<'a>(m: &'a Msg, name: &str) -> Option<&'a str> {
    m.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Runs `PEEK` and returns its lines.
async fn peek(p: &mut Peer, line: &str) -> Vec<Msg> {
    let r = p.cmd(line).await;
    let mut seen = Vec::new();
    while let Some(m) = p.take_buffered_msg() {
        assert_eq!(m.ctag, "*", "PEEK line {}", m.head);
        seen.push(m);
    }
    assert_eq!(r, format!("OK {}", seen.len()));
    seen
}

#[tokio::test]
async fn rejected_message_is_dead_lettered_with_its_history() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    dead_letter_target(&mut p).await;
    p.ok("DECLARE EXCHANGE orders direct", "OK").await;
    p.ok(
        "DECLARE QUEUE work dead-letter=dlx",
        "OK work messages=0 consumers=0",
    )
    .await;
    p.ok("BIND work orders eu", "OK").await;
    p.ok("PUB orders eu id=o1 h.k=v payload", "OK o1 routed=1")
        .await;
    p.send_get_and_nack("work", "NACK {} requeue=false").await;
    let m = next_on(&mut p, "dlq").await;
    assert_eq!(m.id, "o1");
    assert_eq!(m.text(), "payload");
    assert_eq!(m.exchange, "dlx");
    assert_eq!(m.key, "eu");
    assert_eq!(header(&m, "k"), Some("v"));
    assert_eq!(header(&m, "x-death-reason"), Some("rejected"));
    assert_eq!(header(&m, "x-death-queue"), Some("work"));
    assert_eq!(header(&m, "x-death-count"), Some("1"));
    assert_eq!(header(&m, "x-death-exchange"), Some("orders"));
    assert_eq!(header(&m, "x-death-key"), Some("eu"));
    p.ok(
        "DECLARE QUEUE work dead-letter=dlx",
        "OK work messages=0 consumers=0",
    )
    .await;
}

impl Peer {
    /// `GET`s one message from `q` and settles it with `settle` (`{}` is
    /// replaced by its delivery tag); returns the message.
    async fn send_get_and_nack(&mut self, q: &str, settle: &str) -> Msg {
        let (mut got, r) = self.get(&format!("GET {q}")).await;
        assert_eq!(r, "OK 1", "GET {q}");
        let m = got.remove(0);
        self.ok(&settle.replace("{}", &m.dtag.to_string()), "OK")
            .await;
        m
    }
}

#[tokio::test]
async fn reject_without_a_dead_letter_exchange_drops_and_dead_letter_key_renames() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE plain", "OK plain messages=0 consumers=0")
        .await;
    p.publish("", "plain", "gone", 1).await;
    p.send_get_and_nack("plain", "REJECT {}").await;
    p.ok("DECLARE QUEUE plain", "OK plain messages=0 consumers=0")
        .await;
    // Dead letters through the default exchange, renamed to a queue.
    p.ok("DECLARE QUEUE parked", "OK parked messages=0 consumers=0")
        .await;
    p.ok(
        r#"DECLARE QUEUE work dead-letter="" dead-letter-key=parked"#,
        "OK work messages=0 consumers=0",
    )
    .await;
    p.publish("", "work", "fix me", 1).await;
    p.send_get_and_nack("work", "NACK {} requeue=false").await;
    let m = next_on(&mut p, "parked").await;
    assert_eq!((m.exchange.as_str(), m.key.as_str()), ("", "parked"));
    assert_eq!(header(&m, "x-death-key"), Some("work"));
}

#[tokio::test]
async fn delivery_limit_dead_letters_after_the_last_allowed_delivery() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    dead_letter_target(&mut p).await;
    p.ok(
        "DECLARE QUEUE work delivery-limit=2 dead-letter=dlx",
        "OK work messages=0 consumers=0",
    )
    .await;
    p.publish("", "work", "poison", 1).await;
    let first = p.send_get_and_nack("work", "NACK {}").await;
    assert_eq!((first.deliveries, first.redelivered), (1, false));
    let second = p.send_get_and_nack("work", "NACK {}").await;
    assert_eq!((second.deliveries, second.redelivered), (2, true));
    let (got, r) = p.get("GET work").await;
    assert!(got.is_empty(), "a third delivery: {got:?}");
    assert_eq!(r, "OK 0");
    let m = next_on(&mut p, "dlq").await;
    assert_eq!(m.text(), "poison");
    assert_eq!(header(&m, "x-death-reason"), Some("delivery-limit"));
}

#[tokio::test]
async fn delivery_limit_counts_a_lost_connection() {
    let srv = TestServer::start().await;
    let mut admin = Peer::connect(&srv).await;
    dead_letter_target(&mut admin).await;
    admin
        .ok(
            "DECLARE QUEUE work delivery-limit=1 dead-letter=dlx",
            "OK work messages=0 consumers=0",
        )
        .await;
    admin.publish("", "work", "crashes workers", 1).await;
    let mut worker = Peer::connect(&srv).await;
    let (got, _) = worker.get("GET work").await;
    assert_eq!(got.len(), 1);
    drop(worker);
    let m = next_on(&mut admin, "dlq").await;
    assert_eq!(header(&m, "x-death-reason"), Some("delivery-limit"));
}

#[tokio::test]
async fn queue_ttl_expires_messages_promptly_into_the_dead_letter_queue() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    dead_letter_target(&mut p).await;
    p.ok(
        "DECLARE QUEUE work ttl=100 dead-letter=dlx",
        "OK work messages=0 consumers=0",
    )
    .await;
    let sent = Instant::now();
    p.publish("", "work", "stale", 1).await;
    let m = next_on(&mut p, "dlq").await;
    assert!(sent.elapsed() >= Duration::from_millis(100));
    assert_eq!(header(&m, "x-death-reason"), Some("expired"));
    p.ok(
        "DECLARE QUEUE work ttl=100 dead-letter=dlx",
        "OK work messages=0 consumers=0",
    )
    .await;
}

#[tokio::test]
async fn a_message_ttl_expires_it_behind_a_longer_lived_head() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    dead_letter_target(&mut p).await;
    p.ok(
        "DECLARE QUEUE work ttl=60000 dead-letter=dlx",
        "OK work messages=0 consumers=0",
    )
    .await;
    p.ok(r#"PUB "" work id=head keep"#, "OK head routed=1")
        .await;
    p.ok(r#"PUB "" work id=short ttl=50 drop"#, "OK short routed=1")
        .await;
    let m = next_on(&mut p, "dlq").await;
    assert_eq!(m.id, "short");
    let got = next_on(&mut p, "work").await;
    assert_eq!(got.id, "head");
}

#[tokio::test]
async fn without_a_dead_letter_exchange_expired_messages_are_never_delivered() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE work", "OK work messages=0 consumers=0")
        .await;
    p.ok(r#"PUB "" work id=x ttl=1 gone"#, "OK x routed=1")
        .await;
    p.poll_until("DECLARE QUEUE work", |r| {
        r == "OK work messages=0 consumers=0"
    })
    .await;
    let (got, r) = p.get("GET work").await;
    assert!(got.is_empty());
    assert_eq!(r, "OK 0");
}

#[tokio::test]
async fn max_length_with_drop_head_dead_letters_the_oldest() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    dead_letter_target(&mut p).await;
    let decl = "DECLARE QUEUE work max-length=2 dead-letter=dlx";
    p.ok(decl, "OK work messages=0 consumers=0").await;
    for b in ["one", "two", "three"] {
        p.publish("", "work", b, 1).await;
    }
    p.ok(decl, "OK work messages=2 consumers=0").await;
    let m = next_on(&mut p, "dlq").await;
    assert_eq!(m.text(), "one");
    assert_eq!(header(&m, "x-death-reason"), Some("maxlen"));
    assert_eq!(next_on(&mut p, "work").await.text(), "two");
    assert_eq!(next_on(&mut p, "work").await.text(), "three");
}

#[tokio::test]
async fn max_bytes_counts_body_bytes() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    let decl = "DECLARE QUEUE work max-bytes=10 overflow=reject-publish";
    p.ok(decl, "OK work messages=0 consumers=0").await;
    p.publish("", "work", "12345", 1).await;
    p.publish("", "work", "67890", 1).await;
    p.err(r#"PUB "" work x"#, "QUEUE_FULL").await;
    p.ok(decl, "OK work messages=2 consumers=0").await;
}

#[tokio::test]
async fn reject_publish_refuses_and_reports_partial_fanout() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    let full = "DECLARE QUEUE small max-length=1 overflow=reject-publish";
    p.ok(full, "OK small messages=0 consumers=0").await;
    p.ok("DECLARE QUEUE big", "OK big messages=0 consumers=0")
        .await;
    p.ok("DECLARE EXCHANGE both fanout", "OK").await;
    p.ok("BIND small both", "OK").await;
    p.ok("BIND big both", "OK").await;
    p.ok(r#"PUB both "" id=a first"#, "OK a routed=2").await;
    p.ok(r#"PUB both "" id=b second"#, "OK b routed=1 rejected=1")
        .await;
    let r = p.err(r#"PUB "" small id=c third"#, "QUEUE_FULL").await;
    assert!(r.contains("small"), "{r}");
    p.ok(full, "OK small messages=1 consumers=0").await;
    p.ok("DECLARE QUEUE big", "OK big messages=2 consumers=0")
        .await;
}

#[tokio::test]
async fn block_holds_the_publish_until_another_connection_makes_room() {
    let srv = TestServer::start().await;
    let mut publisher = Peer::connect(&srv).await;
    let decl = "DECLARE QUEUE work max-length=1 overflow=block";
    publisher.ok(decl, "OK work messages=0 consumers=0").await;
    publisher
        .ok(r#"PUB "" work id=1 one"#, "OK 1 routed=1")
        .await;
    // Held: the reply does not come, and later commands wait behind it.
    publisher
        .conn
        .send_raw(b"PUB \"\" work id=2 two\r\nPING\r\n")
        .await;
    assert_eq!(publisher.notice().await, "NOTICE blocked queue=work");
    let mut other = Peer::connect(&srv).await;
    other.ok(decl, "OK work messages=1 consumers=0").await;
    assert_eq!(next_on(&mut other, "work").await.text(), "one");
    assert_eq!(publisher.reply().await, "OK 2 routed=1");
    assert_eq!(publisher.reply().await, "OK pong");
    assert_eq!(publisher.notice().await, "NOTICE unblocked queue=work");
    assert_eq!(next_on(&mut other, "work").await.text(), "two");
}

#[tokio::test]
async fn a_blocked_publisher_that_also_consumes_frees_the_queue_with_its_acks() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    let decl = "DECLARE QUEUE work max-length=1 overflow=block";
    p.ok(decl, "OK work messages=0 consumers=0").await;
    p.ok(r#"PUB "" work id=1 one"#, "OK 1 routed=1").await;
    p.ok("SUB work prefetch=1 tag=c", "OK c").await;
    let first = p.msg().await;
    assert_eq!(first.text(), "one");
    // "two" waits in the queue (one is unacked); "three" finds it full.
    p.ok(r#"PUB "" work id=2 two"#, "OK 2 routed=1").await;
    p.conn
        .send_raw(b"PUB \"\" work id=3 three\r\nACK 1\r\n")
        .await;
    // The ACK takes effect although the PUB before it is held: "two" is
    // delivered, which makes room for "three".
    assert_eq!(p.reply().await, "OK 3 routed=1");
    assert_eq!(p.reply().await, "OK");
    assert_eq!(p.msg().await.text(), "two");
}

#[tokio::test]
async fn ack_timeout_requeues_notifies_and_forgets_the_tag() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok(
        "DECLARE QUEUE work ack-timeout=100",
        "OK work messages=0 consumers=0",
    )
    .await;
    p.publish("", "work", "slow job", 1).await;
    p.ok("SUB work tag=w", "OK w").await;
    let got_at = Instant::now();
    let first = p.msg().await;
    assert_eq!(first.dtag, 1);
    assert_eq!(p.notice().await, "NOTICE ack-timeout w 1");
    assert!(got_at.elapsed() >= Duration::from_millis(100));
    let again = p.msg().await;
    assert_eq!((again.dtag, again.deliveries), (2, 2));
    assert!(again.redelivered);
    p.err("ACK 1", "UNKNOWN_TAG").await;
    p.ok("ACK 2", "OK").await;
}

#[tokio::test]
async fn touch_restarts_the_ack_timeout() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok(
        "DECLARE QUEUE work ack-timeout=1000",
        "OK work messages=0 consumers=0",
    )
    .await;
    p.publish("", "work", "long job", 1).await;
    let (got, _) = p.get("GET work").await;
    let tag = got[0].dtag;
    // Part of the timeout passes before the TOUCH.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let touched = Instant::now();
    p.ok(&format!("TOUCH {tag}"), "OK").await;
    assert_eq!(p.notice().await, format!("NOTICE ack-timeout - {tag}"));
    assert!(
        touched.elapsed() >= Duration::from_millis(1000),
        "timed out {:?} after TOUCH",
        touched.elapsed()
    );
    p.err(&format!("TOUCH {tag}"), "UNKNOWN_TAG").await;
    p.err("TOUCH 99", "UNKNOWN_TAG").await;
}

#[tokio::test]
async fn delayed_message_is_stored_at_once_and_delivered_later() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE work", "OK work messages=0 consumers=0")
        .await;
    let sent = Instant::now();
    p.ok(r#"PUB "" work id=d delay=200 later"#, "OK d routed=1")
        .await;
    let (got, r) = p.get("GET work").await;
    assert!(got.is_empty(), "delivered before its delay");
    assert_eq!(r, "OK 0");
    p.ok("DECLARE QUEUE work", "OK work messages=1 consumers=0")
        .await;
    let m = next_on(&mut p, "work").await;
    assert!(sent.elapsed() >= Duration::from_millis(200));
    assert_eq!(m.text(), "later");
}

#[tokio::test]
async fn nack_delay_and_retry_delays_hold_a_requeue_back() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE a", "OK a messages=0 consumers=0").await;
    p.publish("", "a", "retry me", 1).await;
    p.send_get_and_nack("a", "NACK {} delay=200").await;
    let nacked = Instant::now();
    let (got, _) = p.get("GET a").await;
    assert!(got.is_empty(), "redelivered before its delay");
    let m = next_on(&mut p, "a").await;
    assert!(nacked.elapsed() >= Duration::from_millis(200));
    assert!(m.redelivered);

    let decl = "DECLARE QUEUE b retry-delays=100,300";
    p.ok(decl, "OK b messages=0 consumers=0").await;
    p.publish("", "b", "ladder", 1).await;
    p.send_get_and_nack("b", "NACK {}").await;
    let t1 = Instant::now();
    let m = p.get("GET b wait=10000").await.0.remove(0);
    assert!(t1.elapsed() >= Duration::from_millis(100));
    p.ok(&format!("NACK {}", m.dtag), "OK").await;
    let t2 = Instant::now();
    let m = next_on(&mut p, "b").await;
    assert!(t2.elapsed() >= Duration::from_millis(300));
    assert_eq!(m.deliveries, 3);
}

#[tokio::test]
async fn priorities_go_first_and_stay_fifo_within_a_level() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok(
        "DECLARE QUEUE work max-priority=10",
        "OK work messages=0 consumers=0",
    )
    .await;
    for (id, prio) in [
        ("low", 1),
        ("mid-a", 5),
        ("mid-b", 5),
        ("top", 9),
        ("capped", 200),
    ] {
        p.ok(
            &format!(r#"PUB "" work id={id} priority={prio} x"#),
            &format!("OK {id} routed=1"),
        )
        .await;
    }
    p.publish("", "work", "none", 1).await;
    let (got, _) = p.get("GET work count=10 ack=auto").await;
    let ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids[..5], ["capped", "top", "mid-a", "mid-b", "low"]);
    assert_eq!(got[5].text(), "none");
}

#[tokio::test]
async fn a_repeated_id_within_the_dedup_window_is_not_stored_again_even_after_restart() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    let decl = "DECLARE QUEUE work durable dedup-window=60000";
    p.ok(decl, "OK work messages=0 consumers=0").await;
    p.ok(r#"PUB "" work id=order-7 first"#, "OK order-7 routed=1")
        .await;
    p.ok(
        r#"PUB "" work id=order-7 retry"#,
        "OK order-7 routed=1 duplicate",
    )
    .await;
    p.publish("", "work", "second", 1).await;
    drop(p);
    let srv = srv.restart().await;
    let mut p = Peer::connect(&srv).await;
    p.ok(decl, "OK work messages=2 consumers=0").await;
    p.ok(
        r#"PUB "" work id=order-7 again"#,
        "OK order-7 routed=1 duplicate",
    )
    .await;
    let (got, _) = p.get("GET work count=10 ack=auto").await;
    assert_eq!(got[0].text(), "first");
    assert_eq!(got.len(), 2);
}

#[tokio::test]
async fn peek_shows_without_taking() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE work", "OK work messages=0 consumers=0")
        .await;
    for b in ["a", "b", "c"] {
        p.ok(
            &format!(r#"PUB "" work id={b} {b}"#),
            &format!("OK {b} routed=1"),
        )
        .await;
    }
    let all = peek(&mut p, "PEEK work count=10").await;
    let bodies: Vec<String> = all.iter().map(Msg::text).collect();
    assert_eq!(bodies, ["a", "b", "c"]);
    assert!(all.iter().all(|m| m.deliveries == 0 && !m.redelivered));
    let from_b = peek(&mut p, &format!("PEEK work count=1 from={}", all[1].dtag)).await;
    assert_eq!(from_b[0].text(), "b");
    assert_eq!(peek(&mut p, "PEEK work").await.len(), 1);
    p.ok("DECLARE QUEUE work", "OK work messages=3 consumers=0")
        .await;
    let first = next_on(&mut p, "work").await;
    assert_eq!((first.text().as_str(), first.deliveries), ("a", 1));
    p.err("PEEK nowhere", "NOT_FOUND").await;
}

#[tokio::test]
async fn redrive_sends_dead_letters_back_where_they_were_published() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    dead_letter_target(&mut p).await;
    p.ok("DECLARE EXCHANGE jobs topic", "OK").await;
    let decl = "DECLARE QUEUE work dead-letter=dlx";
    p.ok(decl, "OK work messages=0 consumers=0").await;
    p.ok("BIND work jobs email.*", "OK").await;
    for id in ["j1", "j2"] {
        p.ok(
            &format!("PUB jobs email.send id={id} body-{id}"),
            &format!("OK {id} routed=1"),
        )
        .await;
        p.send_get_and_nack("work", "REJECT {}").await;
    }
    // A message that never died stays where it is.
    p.publish("", "dlq", "not a dead letter", 1).await;
    p.ok("DECLARE QUEUE dlq", "OK dlq messages=3 consumers=0")
        .await;
    p.ok("REDRIVE dlq", "OK moved=2 kept=1").await;
    p.ok("DECLARE QUEUE dlq", "OK dlq messages=1 consumers=0")
        .await;
    let m = next_on(&mut p, "work").await;
    assert_eq!(
        (m.exchange.as_str(), m.key.as_str()),
        ("jobs", "email.send")
    );
    assert_eq!(m.id, "j1");
    assert_eq!(header(&m, "x-death-reason"), None);
    assert_eq!(header(&m, "x-death-count"), Some("1"));
    assert_eq!(next_on(&mut p, "work").await.id, "j2");
    p.err("REDRIVE nowhere", "NOT_FOUND").await;
}

#[tokio::test]
async fn an_unused_queue_with_expires_is_deleted() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok(
        "DECLARE QUEUE temp expires=100",
        "OK temp messages=0 consumers=0",
    )
    .await;
    let declared = Instant::now();
    p.poll_until("PEEK temp", |r| r.starts_with("ERR NOT_FOUND"))
        .await;
    assert!(declared.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn a_queue_with_a_subscriber_does_not_expire() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    let decl = "DECLARE QUEUE kept expires=50";
    p.ok(decl, "OK kept messages=0 consumers=0").await;
    p.ok("SUB kept tag=k", "OK k").await;
    // Well past `expires`, measured by a GET long poll on another queue.
    p.ok("DECLARE QUEUE clock", "OK clock messages=0 consumers=0")
        .await;
    let (_, r) = p.get("GET clock wait=300").await;
    assert_eq!(r, "OK 0");
    p.ok(decl, "OK kept messages=0 consumers=1").await;
}

#[tokio::test]
async fn queue_options_must_match_on_redeclare() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok(
        "DECLARE QUEUE q max-length=5 overflow=drop-head",
        "OK q messages=0 consumers=0",
    )
    .await;
    // overflow=drop-head is the default: the same declaration.
    p.ok(
        "DECLARE QUEUE q max-length=5",
        "OK q messages=0 consumers=0",
    )
    .await;
    let r = p.err("DECLARE QUEUE q", "PRECONDITION").await;
    assert!(r.contains("max-length=5"), "{r}");
    p.err("DECLARE QUEUE q max-length=6", "PRECONDITION").await;
}

#[tokio::test]
async fn delays_ttls_and_limits_survive_a_restart() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    let decl = "DECLARE QUEUE work durable delivery-limit=2 max-priority=5";
    p.ok(decl, "OK work messages=0 consumers=0").await;
    // Long enough to outlast a restart on a loaded machine (at 1.5 s the
    // delay could pass before the GET below, and "late" come with it).
    p.ok(
        r#"PUB "" work id=late delay=3000 later"#,
        "OK late routed=1",
    )
    .await;
    p.ok(r#"PUB "" work id=hi priority=5 urgent"#, "OK hi routed=1")
        .await;
    p.ok(r#"PUB "" work id=lo priority=1 routine"#, "OK lo routed=1")
        .await;
    p.ok(
        r#"PUB "" work id=soon ttl=100 perishable"#,
        "OK soon routed=1",
    )
    .await;
    let m = p.send_get_and_nack("work", "NACK {}").await;
    assert_eq!(m.id, "hi");
    drop(p);
    let srv = srv.restart().await;
    let mut p = Peer::connect(&srv).await;
    // The options came back with the queue (a mismatch would be PRECONDITION).
    p.poll_until(decl, |r| r == "OK work messages=3 consumers=0")
        .await;
    let (got, _) = p.get("GET work count=10").await;
    let ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["hi", "lo"]);
    // "hi" was delivered once before the restart: this is its 2nd and last.
    assert_eq!((got[0].deliveries, got[0].redelivered), (2, true));
    p.ok(&format!("NACK {}", got[0].dtag), "OK").await;
    let late = next_on(&mut p, "work").await;
    assert_eq!(late.id, "late");
    let (got, r) = p.get("GET work count=10").await;
    assert!(got.is_empty(), "hi came back past its delivery limit");
    assert_eq!(r, "OK 0");
}

#[tokio::test]
async fn replies_stay_in_order_around_a_held_publish() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    let decl = "DECLARE QUEUE work max-length=1 overflow=block";
    p.ok(decl, "OK work messages=0 consumers=0").await;
    p.ok("DECLARE QUEUE side", "OK side messages=0 consumers=0")
        .await;
    p.publish("", "side", "to ack", 1).await;
    let (got, _) = p.get("GET side").await;
    p.ok(r#"PUB "" work id=1 one"#, "OK 1 routed=1").await;
    // Held PUB, then a command that waits behind it, then a NACK (runs at
    // once), a bad line and an unknown tag: replies come in command order.
    let lines = format!(
        "PUB \"\" work id=2 two\r\nPING\r\nNACK {}\r\nDECLARE QUEUE \"bad name!\"\r\nACK 99\r\n",
        got[0].dtag
    );
    p.conn.send_raw(lines.as_bytes()).await;
    assert_eq!(p.notice().await, "NOTICE blocked queue=work");
    // The NACK took effect although its reply has not come: the message
    // is back in "side".
    let mut other = Peer::connect(&srv).await;
    other
        .poll_until("DECLARE QUEUE side", |r| {
            r == "OK side messages=1 consumers=0"
        })
        .await;
    assert_eq!(next_on(&mut other, "work").await.text(), "one");
    assert_eq!(p.reply().await, "OK 2 routed=1");
    assert_eq!(p.reply().await, "OK pong");
    assert_eq!(p.reply().await, "OK");
    assert!(p.reply().await.starts_with("ERR SYNTAX"));
    assert!(p.reply().await.starts_with("ERR UNKNOWN_TAG"));
}

#[tokio::test]
async fn max_length_zero_still_hands_a_message_to_a_waiting_consumer() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    dead_letter_target(&mut p).await;
    let decl = "DECLARE QUEUE live max-length=0 dead-letter=dlx";
    p.ok(decl, "OK live messages=0 consumers=0").await;
    p.ok("SUB live tag=l prefetch=1", "OK l").await;
    p.publish("", "live", "taken", 1).await;
    assert_eq!(p.msg().await.text(), "taken");
    // No room for a second: nobody can take it, it is dropped at once.
    p.publish("", "live", "dropped", 1).await;
    assert_eq!(next_on(&mut p, "dlq").await.text(), "dropped");
}

#[tokio::test]
async fn redrive_respects_the_room_left_in_a_reject_publish_queue() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    dead_letter_target(&mut p).await;
    let decl = "DECLARE QUEUE work max-length=1 overflow=reject-publish dead-letter=dlx";
    p.ok(decl, "OK work messages=0 consumers=0").await;
    for b in ["a", "b"] {
        p.publish("", "work", b, 1).await;
        p.send_get_and_nack("work", "REJECT {}").await;
    }
    p.ok("REDRIVE dlq", "OK moved=1 kept=1").await;
    p.ok(decl, "OK work messages=1 consumers=0").await;
    p.ok("DECLARE QUEUE dlq", "OK dlq messages=1 consumers=0")
        .await;
}
