//! Configurable limits (issue 6, part 4): subscriptions per connection,
//! unacked deliveries per connection, queues and exchanges in the broker,
//! each answered `ERR LIMIT <what> (<flag> N)`, changing nothing, with the
//! connection going on; and the memory high-watermark, which holds every
//! publisher (`NOTICE blocked memory`) until memory is back under it.

use sluice::config::MemoryWatermark;

use crate::common::{words, Peer, TestServer};

#[tokio::test]
async fn a_sub_over_max_subscriptions_is_refused_and_the_connection_goes_on() {
    let srv = TestServer::start_with(|c| c.max_subscriptions = 2).await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    p.ok("SUB q tag=a", "OK a").await;
    p.ok("SUB q tag=b", "OK b").await;
    let e = p.err("SUB q tag=c", "LIMIT").await;
    assert_eq!(
        e,
        "ERR LIMIT too many subscriptions on this connection (--max-subscriptions 2)"
    );
    // Nothing changed: still two consumers, and `c` is not a tag here.
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=2").await;
    p.err("UNSUB c", "NOT_FOUND").await;
    // A freed slot can be taken again.
    p.ok("UNSUB a", "OK").await;
    p.ok("SUB q tag=c", "OK c").await;
    // Another connection has its own budget.
    let mut other = Peer::connect(&srv).await;
    other.ok("SUB q tag=a", "OK a").await;
    other.ok("SUB q tag=b", "OK b").await;
}

#[tokio::test]
async fn prefetch_and_get_reserve_unacked_deliveries_up_to_max_unacked() {
    let srv = TestServer::start_with(|c| c.max_unacked = 10).await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    p.ok("DECLARE QUEUE g", "OK g messages=0 consumers=0").await;
    p.ok("SUB q prefetch=6 tag=a", "OK a").await;
    let e = p.err("SUB q prefetch=5 tag=b", "LIMIT").await;
    assert!(e.ends_with("(--max-unacked 10)"), "{e}");
    // Auto-ack subscriptions hold nothing unacked.
    p.ok("SUB q prefetch=100 ack=auto tag=c", "OK c").await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=2").await;
    for i in 0..5 {
        p.publish("", "g", &format!("m{i}"), 1).await;
    }
    // 6 reserved: a GET that could take 5 more unacked is refused, whole.
    p.err("GET g count=5", "LIMIT").await;
    p.ok("DECLARE QUEUE g", "OK g messages=5 consumers=0").await;
    let (got, reply) = p.get("GET g count=4").await;
    assert_eq!((got.len(), reply.as_str()), (4, "OK 4"));
    // 10 reserved now: nothing more, but auto-ack GETs are free.
    p.err("GET g", "LIMIT").await;
    let (auto, reply) = p.get("GET g ack=auto").await;
    assert_eq!((auto.len(), reply.as_str()), (1, "OK 1"));
    // Acking gives room back; so does an UNSUB.
    p.ok(&format!("ACK {}", got[0].dtag), "OK").await;
    p.publish("", "g", "again", 1).await;
    let (one, reply) = p.get("GET g").await;
    assert_eq!((one.len(), reply.as_str()), (1, "OK 1"));
    p.err("SUB q prefetch=1", "LIMIT").await;
    p.ok("UNSUB a", "OK").await;
    p.ok("SUB q prefetch=6 tag=d", "OK d").await;
}

#[tokio::test]
async fn a_new_queue_over_max_queues_is_refused_exclusive_and_named_ones_too() {
    let srv = TestServer::start_with(|c| c.max_queues = 2).await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE a durable", "OK a messages=0 consumers=0")
        .await;
    let generated = p.cmd("DECLARE QUEUE \"\" exclusive").await;
    let name = words(&generated)[1].clone();
    let e = p.err("DECLARE QUEUE c", "LIMIT").await;
    assert_eq!(e, "ERR LIMIT too many queues (--max-queues 2)");
    p.err("DECLARE QUEUE \"\" exclusive", "LIMIT").await;
    // Redeclaring an existing one is fine; the refused one does not exist.
    p.ok("DECLARE QUEUE a durable", "OK a messages=0 consumers=0")
        .await;
    p.err("GET c", "NOT_FOUND").await;
    p.ok(&format!("DELETE QUEUE {name}"), "OK messages=0").await;
    p.ok("DECLARE QUEUE c", "OK c messages=0 consumers=0").await;
    // The refusal did not survive anywhere: a restart has a and c only.
    drop(p);
    let srv = srv.restart().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE QUEUE a durable", "OK a messages=0 consumers=0")
        .await;
}

#[tokio::test]
async fn a_new_exchange_over_max_exchanges_is_refused() {
    let srv = TestServer::start_with(|c| c.max_exchanges = 1).await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE EXCHANGE logs fanout", "OK").await;
    let e = p.err("DECLARE EXCHANGE events topic", "LIMIT").await;
    assert_eq!(e, "ERR LIMIT too many exchanges (--max-exchanges 1)");
    p.ok("DECLARE EXCHANGE logs fanout", "OK").await;
    p.err("DELETE EXCHANGE events", "NOT_FOUND").await;
    // The default exchange is not counted and still routes.
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    p.publish("", "q", "hi", 1).await;
    p.ok("DELETE EXCHANGE logs", "OK").await;
    p.ok("DECLARE EXCHANGE events topic", "OK").await;
}

#[tokio::test]
async fn over_the_memory_high_watermark_every_publish_is_held_until_it_clears() {
    // One byte: any process is over it.
    let srv = TestServer::start_with(|c| {
        c.memory_high_watermark = MemoryWatermark::Bytes(1);
    })
    .await;
    let mut publisher = Peer::connect(&srv).await;
    let mut consumer = Peer::connect(&srv).await;
    // Topology and consuming go on under the alarm.
    publisher
        .ok("DECLARE QUEUE q", "OK q messages=0 consumers=0")
        .await;
    // A transient message to a non-durable queue: held all the same (the
    // disk alarm would let it through; memory is what it fills).
    publisher.conn.send("PUB \"\" q transient hello").await;
    assert_eq!(publisher.notice().await, "NOTICE blocked memory");
    // Commands behind the held PUB wait for it...
    publisher.conn.send("PING").await;
    // ...while other connections consume, and their PUBs are held too.
    consumer
        .ok("DECLARE QUEUE q", "OK q messages=0 consumers=0")
        .await;
    let (none, reply) = consumer.get("GET q").await;
    assert_eq!((none.len(), reply.as_str()), (0, "OK 0"));
    consumer.conn.send("PUB \"\" q second").await;
    assert_eq!(consumer.notice().await, "NOTICE blocked memory");
    // Memory back under the mark (the mark raised, through the test seam).
    srv.alarms.memory.set_limit(u64::MAX);
    let confirm = publisher.reply().await;
    assert!(
        confirm.starts_with("OK ") && confirm.ends_with(" routed=1"),
        "{confirm}"
    );
    assert_eq!(publisher.notice().await, "NOTICE unblocked memory");
    assert_eq!(publisher.reply().await, "OK pong");
    let confirm = consumer.reply().await;
    assert!(confirm.ends_with(" routed=1"), "{confirm}");
    assert_eq!(consumer.notice().await, "NOTICE unblocked memory");
    let (got, reply) = consumer.get("GET q count=2 ack=auto").await;
    assert_eq!(reply, "OK 2");
    // Two connections released at once: either may be enqueued first.
    let mut bodies: Vec<String> = got.iter().map(|m| m.text()).collect();
    bodies.sort();
    assert_eq!(bodies, ["hello", "second"]);
    // Over it again: held again.
    srv.alarms.memory.set_limit(1);
    publisher.conn.send("PUB \"\" q third").await;
    assert_eq!(publisher.notice().await, "NOTICE blocked memory");
    srv.alarms.memory.set_limit(0);
    assert!(publisher.reply().await.ends_with(" routed=1"));
}
