//! Routing keys are any token (contract §1): bytes that are not UTF-8, and
//! bytes that need quoting, are routed, bound, stored, dead-lettered and
//! delivered back exactly, through direct and topic exchanges and across a
//! restart.

use sluice::client::Client;
use sluice::protocol::token::{encode_word, tokenize};

use crate::common::{TestConn, TestServer};

/// `word` as the protocol writes it (quoted when needed).
fn enc(word: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_word(&mut out, word);
    out
}

/// One line from parts, with `\r\n`.
fn line(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = parts.join(&b' ');
    out.extend_from_slice(b"\r\n");
    out
}

/// Sends a raw line and returns the reply.
async fn cmd(c: &mut TestConn, parts: &[&[u8]]) -> String {
    c.send_raw(&line(parts)).await;
    c.line().await
}

/// `PUB <exchange> <key> <body>` (the key encoded), asserting `routed=<n>`.
async fn publish(c: &mut TestConn, exchange: &str, key: &[u8], body: &str, routed: u32) {
    let got = cmd(
        c,
        &[
            b"PUB",
            &enc(exchange.as_bytes()),
            &enc(key),
            body.as_bytes(),
        ],
    )
    .await;
    assert!(
        got.starts_with("OK ") && got.ends_with(&format!(" routed={routed}")),
        "PUB {key:?}: expected routed={routed}, got {got:?}"
    );
}

/// A `MSG` push read as bytes: its words (tokenized as a client would) and
/// its body.
async fn msg(c: &mut TestConn) -> (Vec<Vec<u8>>, Vec<u8>) {
    let head = c.line_bytes().await;
    let words: Vec<Vec<u8>> = tokenize(&head)
        .unwrap_or_else(|e| panic!("MSG line does not tokenize ({e}): {head:?}"))
        .into_iter()
        .map(|t| t.text)
        .collect();
    assert_eq!(
        words.first().map(Vec::as_slice),
        Some(&b"MSG"[..]),
        "{head:?}"
    );
    let n = words
        .last()
        .and_then(|w| std::str::from_utf8(w).ok())
        .and_then(|w| w.strip_prefix('{')?.strip_suffix('}')?.parse().ok())
        .unwrap_or_else(|| panic!("MSG without literal: {head:?}"));
    let body = c.literal(n).await;
    (words, body)
}

/// `GET <queue> count=<n> ack=auto`: the routing key and body of each
/// delivery, then asserts `OK <n>`.
async fn get_keys(c: &mut TestConn, queue: &str, n: usize) -> Vec<(Vec<u8>, String)> {
    c.send(&format!("GET {queue} count=100 ack=auto")).await;
    let mut out = Vec::new();
    for _ in 0..n {
        let (words, body) = msg(c).await;
        out.push((
            words[4].clone(),
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    c.expect(&format!("OK {n}")).await;
    out
}

/// The value of `h.<name>=` among a MSG's words.
fn header<'a>(words: &'a [Vec<u8>], name: &str) -> Option<&'a [u8]> {
    let prefix = format!("h.{name}=");
    words.iter().find_map(|w| w.strip_prefix(prefix.as_bytes()))
}

/// Keys that are not UTF-8, or that must be quoted on the wire.
const KEYS: &[&[u8]] = &[
    b"\xc3\x28",
    b"\xff",
    b"caf\xc3\xa9",
    b"a b\xfe",
    b"q\"uote\\d",
    b"tab\there",
    b"\x01\x1b[A\x7f",
    b"{5}",
    b"",
];

#[tokio::test]
async fn direct_exchange_routes_any_key_exactly_and_delivers_it_back() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE EXCHANGE d direct", "OK").await;
    c.ok("DECLARE QUEUE q", "OK q messages=0 consumers=0").await;
    for key in KEYS {
        assert_eq!(
            cmd(&mut c, &[b"BIND q d", &enc(key)]).await,
            "OK",
            "{key:?}"
        );
    }
    for (i, key) in KEYS.iter().enumerate() {
        publish(&mut c, "d", key, &format!("m{i}"), 1).await;
    }
    // Byte for byte: a prefix, another byte or the UTF-8 look-alike miss.
    for miss in [
        &b"\xc3"[..],
        b"\xc3\x29",
        b"\xef\xbf\xbd(",
        b"cafe",
        b"A B\xfe",
    ] {
        publish(&mut c, "d", miss, "miss", 0).await;
    }
    let got = get_keys(&mut c, "q", KEYS.len()).await;
    let want: Vec<(Vec<u8>, String)> = KEYS
        .iter()
        .enumerate()
        .map(|(i, k)| (k.to_vec(), format!("m{i}")))
        .collect();
    assert_eq!(got, want);
    // UNBIND takes the same bytes.
    assert_eq!(cmd(&mut c, &[b"UNBIND q d", &enc(b"\xc3\x28")]).await, "OK");
    publish(&mut c, "d", b"\xc3\x28", "gone", 0).await;
    publish(&mut c, "d", b"\xff", "kept", 1).await;
}

#[tokio::test]
async fn topic_exchange_splits_any_key_on_dots() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE EXCHANGE t topic", "OK").await;
    for q in ["one", "tail", "spaced"] {
        c.ok(
            &format!("DECLARE QUEUE {q}"),
            &format!("OK {q} messages=0 consumers=0"),
        )
        .await;
    }
    assert_eq!(cmd(&mut c, &[b"BIND one t", b"\xff.*"]).await, "OK");
    assert_eq!(cmd(&mut c, &[b"BIND tail t", b"#.\xfe\xfe"]).await, "OK");
    assert_eq!(cmd(&mut c, &[b"BIND spaced t", &enc(b"a b.#")]).await, "OK");
    publish(&mut c, "t", b"\xff.\x80abc", "1", 1).await;
    publish(&mut c, "t", b"\xff.a.b", "no", 0).await;
    publish(&mut c, "t", b"\xfe.\xff", "no", 0).await;
    publish(&mut c, "t", b"x.y.\xfe\xfe", "2", 1).await;
    publish(&mut c, "t", b"\xfe\xfe", "3", 1).await;
    publish(&mut c, "t", b"\xff.\xfe\xfe", "4", 2).await;
    publish(&mut c, "t", b"a b.\"q\".\x01", "5", 1).await;
    assert_eq!(
        get_keys(&mut c, "one", 2).await,
        [
            (b"\xff.\x80abc".to_vec(), "1".into()),
            (b"\xff.\xfe\xfe".to_vec(), "4".into())
        ]
    );
    assert_eq!(
        get_keys(&mut c, "tail", 3).await,
        [
            (b"x.y.\xfe\xfe".to_vec(), "2".into()),
            (b"\xfe\xfe".to_vec(), "3".into()),
            (b"\xff.\xfe\xfe".to_vec(), "4".into())
        ]
    );
    assert_eq!(
        get_keys(&mut c, "spaced", 1).await,
        [(b"a b.\"q\".\x01".to_vec(), "5".to_string())]
    );
}

#[tokio::test]
async fn dead_letters_peek_and_redrive_keep_a_binary_key() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE EXCHANGE work direct", "OK").await;
    c.ok("DECLARE EXCHANGE dlx direct", "OK").await;
    c.ok(
        "DECLARE QUEUE jobs dead-letter=dlx",
        "OK jobs messages=0 consumers=0",
    )
    .await;
    c.ok("DECLARE QUEUE dead", "OK dead messages=0 consumers=0")
        .await;
    let key: &[u8] = b"job \xe9t\xe9";
    assert_eq!(cmd(&mut c, &[b"BIND jobs work", &enc(key)]).await, "OK");
    assert_eq!(cmd(&mut c, &[b"BIND dead dlx", &enc(key)]).await, "OK");
    let note = [&b"h.note="[..], &enc(b"x\xff y")].concat();
    let got = cmd(&mut c, &[b"PUB work", &enc(key), b"id=j1", &note, b"body"]).await;
    assert_eq!(got, "OK j1 routed=1");
    c.send("GET jobs").await;
    let (words, _) = msg(&mut c).await;
    assert_eq!(words[4], key);
    assert_eq!(header(&words, "note"), Some(&b"x\xff y"[..]));
    c.expect("OK 1").await;
    // Rejected: dead-lettered with its own key, which x-death-key records.
    c.ok("REJECT 1", "OK").await;
    c.send("PEEK dead").await;
    let (words, body) = msg(&mut c).await;
    c.expect("OK 1").await;
    assert_eq!((&words[1][..], &words[3][..]), (&b"*"[..], &b"dlx"[..]));
    assert_eq!(words[4], key);
    assert_eq!(header(&words, "x-death-key"), Some(key));
    assert_eq!(header(&words, "x-death-exchange"), Some(&b"work"[..]));
    assert_eq!(header(&words, "note"), Some(&b"x\xff y"[..]));
    assert_eq!(body, b"body");
    // REDRIVE sends it back to `work` with that key: it reaches `jobs`.
    c.ok("REDRIVE dead", "OK moved=1 kept=0").await;
    c.send("GET jobs ack=auto").await;
    let (words, _) = msg(&mut c).await;
    c.expect("OK 1").await;
    assert_eq!((&words[3][..], &words[4][..]), (&b"work"[..], key));
    assert_eq!(header(&words, "x-death-key"), None);
}

#[tokio::test]
async fn a_binary_dead_letter_key_is_used_as_given() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE EXCHANGE dlx direct", "OK").await;
    c.ok("DECLARE QUEUE dead", "OK dead messages=0 consumers=0")
        .await;
    let dlk: &[u8] = b"\xfe\"d\"";
    assert_eq!(cmd(&mut c, &[b"BIND dead dlx", &enc(dlk)]).await, "OK");
    let declare = [
        &b"DECLARE QUEUE jobs dead-letter=dlx dead-letter-key="[..],
        &enc(dlk),
    ]
    .concat();
    assert_eq!(
        cmd(&mut c, &[&declare]).await,
        "OK jobs messages=0 consumers=0"
    );
    // The same again is a no-op; another key is a different declaration.
    assert_eq!(
        cmd(&mut c, &[&declare]).await,
        "OK jobs messages=0 consumers=0"
    );
    let other = b"DECLARE QUEUE jobs dead-letter=dlx dead-letter-key=\xfe";
    assert!(cmd(&mut c, &[other]).await.starts_with("ERR PRECONDITION "));
    publish(&mut c, "", b"jobs", "b", 1).await;
    c.send("GET jobs").await;
    let _ = msg(&mut c).await;
    c.expect("OK 1").await;
    c.ok("NACK 1 requeue=false", "OK").await;
    c.send("GET dead ack=auto").await;
    let (words, _) = msg(&mut c).await;
    c.expect("OK 1").await;
    assert_eq!(words[4], dlk);
    assert_eq!(header(&words, "x-death-key"), Some(&b"jobs"[..]));
}

#[tokio::test]
async fn binary_keys_survive_a_restart() {
    let srv = TestServer::start().await;
    let mut c = srv.conn().await;
    c.ok("DECLARE EXCHANGE d direct durable", "OK").await;
    c.ok("DECLARE EXCHANGE t topic durable", "OK").await;
    c.ok("DECLARE EXCHANGE dlx direct durable", "OK").await;
    c.ok("DECLARE QUEUE q durable", "OK q messages=0 consumers=0")
        .await;
    let dlk: &[u8] = b"dead \xff";
    let declare = [
        &b"DECLARE QUEUE r durable dead-letter=dlx dead-letter-key="[..],
        &enc(dlk),
    ]
    .concat();
    assert_eq!(
        cmd(&mut c, &[&declare]).await,
        "OK r messages=0 consumers=0"
    );
    let key: &[u8] = b"\xc3\x28 k";
    assert_eq!(cmd(&mut c, &[b"BIND q d", &enc(key)]).await, "OK");
    assert_eq!(cmd(&mut c, &[b"BIND r t", b"\xff.#"]).await, "OK");
    assert_eq!(cmd(&mut c, &[b"BIND q dlx", &enc(dlk)]).await, "OK");
    let h = [&b"h.k="[..], &enc(b"\x80 v")].concat();
    let got = cmd(
        &mut c,
        &[b"PUB d", &enc(key), b"id=p1 persistent", &h, b"one"],
    )
    .await;
    assert_eq!(got, "OK p1 routed=1");
    publish(&mut c, "t", b"\xff.\xfe", "two", 1).await;
    drop(c);

    let srv = srv.restart().await;
    let mut c = srv.conn().await;
    // The bindings survived: new publishes are routed by the same bytes.
    publish(&mut c, "d", key, "three", 1).await;
    publish(&mut c, "t", b"\xff", "four", 1).await;
    publish(&mut c, "d", b"\xc3\x28", "miss", 0).await;
    c.send("GET q count=10 ack=auto").await;
    let (w1, b1) = msg(&mut c).await;
    let (w2, b2) = msg(&mut c).await;
    c.expect("OK 2").await;
    assert_eq!((&w1[4][..], &b1[..]), (key, &b"one"[..]));
    assert_eq!(w1[6], b"id=p1");
    assert_eq!(header(&w1, "k"), Some(&b"\x80 v"[..]));
    assert_eq!((&w2[4][..], &b2[..]), (key, &b"three"[..]));
    // The dead-letter key survived too.
    c.send("GET r count=10").await;
    let (w1, _) = msg(&mut c).await;
    let (w2, _) = msg(&mut c).await;
    c.expect("OK 2").await;
    assert_eq!((&w1[4][..], &w2[4][..]), (&b"\xff.\xfe"[..], &b"\xff"[..]));
    let last = String::from_utf8_lossy(&w2[2]).into_owned();
    c.ok(&format!("NACK {last} multiple requeue=false"), "OK")
        .await;
    c.send("GET q count=10 ack=auto").await;
    let (w1, _) = msg(&mut c).await;
    let (w2, _) = msg(&mut c).await;
    c.expect("OK 2").await;
    assert_eq!((&w1[4][..], &w2[4][..]), (dlk, dlk));
    assert_eq!(header(&w1, "x-death-key"), Some(&b"\xff.\xfe"[..]));
    assert_eq!(header(&w2, "x-death-key"), Some(&b"\xff"[..]));
    // UNBIND by the same bytes removes the durable binding for good.
    assert_eq!(cmd(&mut c, &[b"UNBIND q d", &enc(key)]).await, "OK");
    drop(c);
    let srv = srv.restart().await;
    let mut c = srv.conn().await;
    publish(&mut c, "d", key, "gone", 0).await;
    publish(&mut c, "t", b"\xff.x", "still", 1).await;
}

#[tokio::test]
async fn the_rust_client_publishes_and_receives_binary_keys() {
    let srv = TestServer::start().await;
    let mut client = Client::connect(srv.addr).await.expect("connect");
    client
        .request("DECLARE EXCHANGE d direct", None)
        .await
        .expect("declare exchange");
    client
        .request("DECLARE QUEUE q", None)
        .await
        .expect("declare queue");
    let key: &[u8] = b"\xc3\x28 \"k\"";
    let mut bind = b"BIND q d ".to_vec();
    encode_word(&mut bind, key);
    let h = client.send_raw(&bind, None);
    client.flush().await.expect("flush");
    h.wait().await.expect("bind");
    let id = client
        .publish_raw_key("d", key, "h.v=\"\\\\\"", b"body")
        .await
        .expect("publish");
    let r = client.request("GET q ack=auto", None).await.expect("get");
    let d = &r.deliveries[0];
    assert_eq!(&d.raw_routing_key[..], key);
    assert_eq!(d.routing_key, "\u{fffd}( \"k\"");
    assert_eq!(d.id, id);
    assert_eq!(
        d.headers,
        [("v".to_string(), bytes::Bytes::from_static(b"\\"))]
    );
    assert_eq!(&d.body[..], b"body");
}
