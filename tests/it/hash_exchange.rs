//! The consistent-hash exchange (`DECLARE EXCHANGE <name> hash`): each
//! message goes to exactly one bound queue, picked by hashing its routing
//! key (or, with `hash-header=`, one header); a binding's key is its
//! queue's weight.
//!
//! The hash is fixed, so with a fixed key set every count below is the
//! same on every run: the bounds are wide only so that they state the
//! property (about a third, about a quarter), not today's exact numbers.
//! Which queue got a message is read back by draining the queues with
//! `GET count=...`; each message's body is the value it was hashed by.

use std::collections::BTreeMap;

use sluice::protocol::table::split_row;

use crate::common::{words, Peer, TestServer};

/// Messages per pipelined burst: the replies of one burst fit in the
/// socket buffers while the next one is written.
const BURST: usize = 250;

/// `n` distinct routing keys.
fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("key-{i}")).collect()
}

/// Declares each queue (durable or not) and binds it to `ex` with its
/// key: on a hash exchange its weight (`""` for the default, 1).
async fn declare_and_bind(p: &mut Peer, ex: &str, queues: &[(&str, &str)], durable: bool) {
    let flag = if durable { " durable" } else { "" };
    for (q, key) in queues {
        p.ok(
            &format!("DECLARE QUEUE {q}{flag}"),
            &format!("OK {q} messages=0 consumers=0"),
        )
        .await;
        p.ok(&format!("BIND {q} {ex} \"{key}\""), "OK").await;
    }
}

/// Sends the `PUB` lines pipelined and asserts every reply is
/// `OK <id> routed=<routed>`.
async fn publish_all(p: &mut Peer, lines: &[String], routed: u32) {
    for burst in lines.chunks(BURST) {
        let mut raw = String::new();
        for line in burst {
            raw.push_str(line);
            raw.push_str("\r\n");
        }
        p.conn.send_raw(raw.as_bytes()).await;
        for line in burst {
            let got = p.reply().await;
            let w = words(&got);
            assert!(
                w.len() == 3 && w[0] == "OK" && w[2] == format!("routed={routed}"),
                "reply to {line:?}: {got:?}"
            );
        }
    }
}

/// Publishes one message per key to `ex`, the key as routing key and body.
async fn publish_keys(p: &mut Peer, ex: &str, keys: &[String]) {
    let lines: Vec<String> = keys.iter().map(|k| format!("PUB {ex} {k} {k}")).collect();
    publish_all(p, &lines, 1).await;
}

/// Drains the queues; for each body received, the queues it was in (a
/// queue once per copy).
async fn drain(p: &mut Peer, queues: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for q in queues {
        let (msgs, reply) = p.get(&format!("GET {q} count=10000 ack=auto")).await;
        assert_eq!(reply, format!("OK {}", msgs.len()), "GET {q}");
        for m in msgs {
            found.entry(m.text()).or_default().push(q.to_string());
        }
    }
    found
}

/// [`drain`], asserting each body was in exactly one queue (once): body →
/// queue.
async fn owners(p: &mut Peer, queues: &[&str]) -> BTreeMap<String, String> {
    drain(p, queues)
        .await
        .into_iter()
        .map(|(body, mut qs)| {
            assert_eq!(qs.len(), 1, "{body} went to {qs:?}");
            (body, qs.remove(0))
        })
        .collect()
}

/// How many keys each queue owns.
fn shares(owners: &BTreeMap<String, String>) -> BTreeMap<&str, usize> {
    let mut n = BTreeMap::new();
    for q in owners.values() {
        *n.entry(q.as_str()).or_default() += 1;
    }
    n
}

/// One `LIST` table's cell at (row named `name`, column `column`).
async fn list_cell(p: &mut Peer, list: &str, name: &str, column: &str) -> String {
    let (_, text) = p.conn.data(list).await;
    let mut rows = text
        .lines()
        .map(|l| split_row(l.as_bytes()).unwrap_or_else(|| panic!("row {l:?}")));
    let header = rows.next().expect("header row");
    let col = header
        .iter()
        .position(|c| c == column.as_bytes())
        .unwrap_or_else(|| panic!("no column {column} in {text:?}"));
    let row = rows
        .find(|r| r[0] == name.as_bytes())
        .unwrap_or_else(|| panic!("no row {name} in {text:?}"));
    String::from_utf8_lossy(&row[col]).into_owned()
}

#[tokio::test]
async fn each_key_goes_to_exactly_one_queue_and_always_the_same_one() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE EXCHANGE h hash", "OK").await;
    let queues = ["q1", "q2", "q3"];
    declare_and_bind(&mut p, "h", &[("q1", "1"), ("q2", "1"), ("q3", "")], false).await;
    let keys = keys(600);
    // Twice, in two orders: each copy lands where the first did.
    publish_keys(&mut p, "h", &keys).await;
    let reversed: Vec<String> = keys.iter().rev().cloned().collect();
    publish_keys(&mut p, "h", &reversed).await;
    let found = drain(&mut p, &queues).await;
    assert_eq!(found.len(), keys.len(), "every key arrived");
    let mut per_queue: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, qs) in &found {
        assert!(qs.len() == 2 && qs[0] == qs[1], "{key} went to {qs:?}");
        *per_queue.entry(qs[0].as_str()).or_default() += 1;
    }
    // Equal weights (the empty key is weight 1): about a third each.
    for q in queues {
        let n = per_queue.get(q).copied().unwrap_or(0);
        assert!(
            (150..=250).contains(&n),
            "{q} owns {n} of 600: {per_queue:?}"
        );
    }
    // A second connection sees the same ring.
    let mut other = Peer::connect(&srv).await;
    publish_keys(&mut other, "h", &keys[..50]).await;
    let again = owners(&mut other, &queues).await;
    for (key, q) in &again {
        assert_eq!(&found[key][0], q, "{key}");
    }
}

#[tokio::test]
async fn weights_shift_the_share_of_keys() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE EXCHANGE w hash", "OK").await;
    let queues = ["light", "medium", "heavy"];
    declare_and_bind(
        &mut p,
        "w",
        &[("light", "1"), ("medium", "2"), ("heavy", "5")],
        false,
    )
    .await;
    let keys = keys(2000);
    publish_keys(&mut p, "w", &keys).await;
    let owned = owners(&mut p, &queues).await;
    assert_eq!(owned.len(), keys.len());
    let n = shares(&owned);
    let share = |q: &str| n.get(q).copied().unwrap_or(0) as f64 / 2000.0;
    // 1/8, 2/8 and 5/8 of the keys.
    assert!((0.06..0.19).contains(&share("light")), "{n:?}");
    assert!((0.17..0.33).contains(&share("medium")), "{n:?}");
    assert!((0.53..0.72).contains(&share("heavy")), "{n:?}");
    assert!(share("light") < share("medium") && share("medium") < share("heavy"));
}

#[tokio::test]
async fn a_fourth_queue_takes_about_a_quarter_of_the_keys_from_the_others() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE EXCHANGE h hash", "OK").await;
    declare_and_bind(&mut p, "h", &[("q1", "1"), ("q2", "1"), ("q3", "1")], false).await;
    let keys = keys(2000);
    let all = ["q1", "q2", "q3", "q4"];
    publish_keys(&mut p, "h", &keys).await;
    let before = owners(&mut p, &all[..3]).await;
    assert_eq!(before.len(), keys.len());

    declare_and_bind(&mut p, "h", &[("q4", "1")], false).await;
    publish_keys(&mut p, "h", &keys).await;
    let after = owners(&mut p, &all).await;
    assert_eq!(after.len(), keys.len());
    let moved: Vec<&String> = keys.iter().filter(|k| before[*k] != after[*k]).collect();
    for k in &moved {
        assert_eq!(
            after[*k], "q4",
            "{k} moved from {} to {}",
            before[*k], after[*k]
        );
    }
    // And q4 got nothing but moved keys: no key moved between old queues.
    assert_eq!(shares(&after).get("q4").copied(), Some(moved.len()));
    let frac = moved.len() as f64 / keys.len() as f64;
    assert!(
        (0.18..0.32).contains(&frac),
        "{} of 2000 moved",
        moved.len()
    );

    // Deleting q4 gives every key back to the queue it had before.
    p.ok("DELETE QUEUE q4", "OK messages=0").await;
    publish_keys(&mut p, "h", &keys).await;
    assert_eq!(owners(&mut p, &all[..3]).await, before);
}

#[tokio::test]
async fn a_hash_header_routes_by_that_header_and_without_it_nowhere() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE EXCHANGE users hash hash-header=user", "OK")
        .await;
    let queues = ["u1", "u2", "u3"];
    declare_and_bind(
        &mut p,
        "users",
        &[("u1", ""), ("u2", ""), ("u3", "")],
        false,
    )
    .await;
    // Ten messages per user, each with another routing key: the key is
    // ignored, all ten go where the user's header value hashes.
    let mut lines = Vec::new();
    for copy in 0..10 {
        for u in 0..60 {
            lines.push(format!("PUB users rk-{copy}-{u} h.user=user-{u} user-{u}"));
        }
    }
    publish_all(&mut p, &lines, 1).await;
    let found = drain(&mut p, &queues).await;
    assert_eq!(found.len(), 60);
    for (user, qs) in &found {
        assert!(
            qs.len() == 10 && qs.iter().all(|q| q == &qs[0]),
            "{user}: {qs:?}"
        );
    }
    let used: std::collections::BTreeSet<&String> = found.values().map(|qs| &qs[0]).collect();
    assert_eq!(used.len(), 3, "60 users spread over every queue: {found:?}");

    // No such header (another name, or another case): no queue.
    p.ok("PUB users user-1 id=m1 x", "OK m1 routed=0").await;
    p.ok("PUB users k h.User=user-1 id=m2 x", "OK m2 routed=0")
        .await;
    p.err("PUB users k h.other=1 mandatory x", "NO_ROUTE").await;
    for q in queues {
        p.ok(
            &format!("DECLARE QUEUE {q}"),
            &format!("OK {q} messages=0 consumers=0"),
        )
        .await;
    }
}

#[tokio::test]
async fn a_message_without_the_hash_header_goes_to_the_alternate_exchange() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE EXCHANGE lost fanout", "OK").await;
    declare_and_bind(&mut p, "lost", &[("unrouted", "")], false).await;
    p.ok(
        "DECLARE EXCHANGE users hash hash-header=user alternate=lost",
        "OK",
    )
    .await;
    // Nothing bound yet: even a message with the header is unroutable.
    p.ok("PUB users k h.user=a id=m1 one", "OK m1 routed=1")
        .await;
    declare_and_bind(&mut p, "users", &[("u1", "1")], false).await;
    p.ok("PUB users k h.user=a id=m2 two", "OK m2 routed=1")
        .await;
    p.ok("PUB users k mandatory id=m3 three", "OK m3 routed=1")
        .await;
    let found = drain(&mut p, &["u1", "unrouted"]).await;
    let expect: BTreeMap<String, Vec<String>> =
        [("one", "unrouted"), ("two", "u1"), ("three", "unrouted")]
            .into_iter()
            .map(|(b, q)| (b.to_string(), vec![q.to_string()]))
            .collect();
    assert_eq!(found, expect);
}

#[tokio::test]
async fn a_weight_that_is_not_1_to_1000_is_refused_and_binds_nothing() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE EXCHANGE h hash", "OK").await;
    p.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    for bad in [
        "0",
        "abc",
        "1001",
        "-1",
        "+2",
        "1.5",
        "\" 1\"",
        "99999999999",
    ] {
        let line = format!("BIND q h {bad}");
        let got = p.err(&line, "PRECONDITION").await;
        assert!(got.contains("weight"), "{line}: {got}");
    }
    assert_eq!(
        list_cell(&mut p, "LIST EXCHANGES", "h", "bindings").await,
        "0"
    );
    let (rows, _) = p.conn.data("LIST BINDINGS h").await;
    assert_eq!(rows, "0");
    p.ok("PUB h k id=m1 x", "OK m1 routed=0").await;
    // The refusal is only for hash exchanges: a direct one takes any key.
    p.ok("DECLARE EXCHANGE d direct", "OK").await;
    p.ok("BIND q d abc", "OK").await;
    // The bounds themselves are weights.
    p.ok("BIND q h 1000", "OK").await;
    p.ok("BIND q h 1", "OK").await;
    p.ok("PUB h k id=m2 x", "OK m2 routed=1").await;
    assert_eq!(
        list_cell(&mut p, "LIST EXCHANGES", "h", "bindings").await,
        "2"
    );
}

#[tokio::test]
async fn redeclaring_with_another_hash_header_is_precondition() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE EXCHANGE h hash hash-header=user", "OK").await;
    p.ok("declare exchange h HASH HASH-HEADER=user", "OK").await;
    for other in ["hash-header=tenant", "hash-header=User", ""] {
        let line = format!("DECLARE EXCHANGE h hash {other}");
        let got = p.err(&line, "PRECONDITION").await;
        assert!(got.contains("hash-header=\"user\""), "{line}: {got}");
    }
    p.ok("DECLARE EXCHANGE k hash", "OK").await;
    let got = p
        .err("DECLARE EXCHANGE k hash hash-header=user", "PRECONDITION")
        .await;
    assert!(got.contains("hash-header=none"), "{got}");
    p.err("DECLARE EXCHANGE h direct", "PRECONDITION").await;
    p.err("DECLARE EXCHANGE d direct hash-header=user", "SYNTAX")
        .await;
    p.err("DECLARE EXCHANGE e hash hash-header=\"a b\"", "SYNTAX")
        .await;
    // Refused, so not declared.
    p.err("PUB d k x", "NOT_FOUND").await;
}

#[tokio::test]
async fn a_durable_hash_exchange_maps_keys_the_same_after_a_restart() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE EXCHANGE byKey hash durable", "OK").await;
    p.ok(
        "DECLARE EXCHANGE byUser hash durable hash-header=user",
        "OK",
    )
    .await;
    let weighted = [("d1", "1"), ("d2", "2"), ("d3", "3")];
    declare_and_bind(&mut p, "byKey", &weighted, true).await;
    for (q, w) in weighted {
        p.ok(&format!("BIND {q} byUser {w}"), "OK").await;
    }
    let queues = ["d1", "d2", "d3"];
    let keys = keys(600);
    let user_lines: Vec<String> = keys
        .iter()
        .map(|k| format!("PUB byUser ignored h.user={k} {k}"))
        .collect();
    publish_keys(&mut p, "byKey", &keys).await;
    let by_key = owners(&mut p, &queues).await;
    publish_all(&mut p, &user_lines, 1).await;
    let by_user = owners(&mut p, &queues).await;
    assert_eq!(by_key.len(), 600);
    assert_eq!(by_user.len(), 600);
    drop(p);

    let srv = srv.restart().await;
    let mut p = Peer::connect(&srv).await;
    // Same options: a no-op; the header came back from the store.
    p.ok(
        "DECLARE EXCHANGE byUser hash durable hash-header=user",
        "OK",
    )
    .await;
    p.err("DECLARE EXCHANGE byUser hash durable", "PRECONDITION")
        .await;
    p.ok("PUB byUser key-1 id=m1 x", "OK m1 routed=0").await;
    publish_keys(&mut p, "byKey", &keys).await;
    assert_eq!(owners(&mut p, &queues).await, by_key);
    publish_all(&mut p, &user_lines, 1).await;
    assert_eq!(owners(&mut p, &queues).await, by_user);
}

#[tokio::test]
async fn list_shows_the_type_hash_and_the_weights_as_keys() {
    let srv = TestServer::start().await;
    let mut p = Peer::connect(&srv).await;
    p.ok("DECLARE EXCHANGE h hash durable", "OK").await;
    declare_and_bind(&mut p, "h", &[("a", "3"), ("b", "")], false).await;
    assert_eq!(
        list_cell(&mut p, "LIST EXCHANGES", "h", "type").await,
        "hash"
    );
    assert_eq!(
        list_cell(&mut p, "LIST EXCHANGES", "h", "bindings").await,
        "2"
    );
    let (_, text) = p.conn.data("LIST BINDINGS h").await;
    let rows: Vec<Vec<Vec<u8>>> = text
        .lines()
        .skip(1)
        .map(|l| split_row(l.as_bytes()).expect("row"))
        .collect();
    let pairs: Vec<(&[u8], &[u8])> = rows.iter().map(|r| (&r[1][..], &r[2][..])).collect();
    assert_eq!(pairs, [(&b"a"[..], &b"3"[..]), (b"b", b"")]);
}
