//! What the full-disk tests send and check: messages whose body follows
//! from their id (so a body read back is checked against its id alone),
//! a pipelining publisher that runs until the broker stops or holds it,
//! a settler that drains a queue with manual acks, and the final count of
//! what was lost.
//!
//! Every `PUB` carries `id=<prefix>-<n>`; its body is `<id>:` followed by
//! a filler whose length (1 KiB to 400 KiB) and byte follow from a hash of
//! the id.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

use super::DEADLINE;

/// FNV-1a of the id: the body's size and filler byte.
fn hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The body of message `id` with sizes in `sizes` (bytes).
pub fn body_for(id: &str, sizes: std::ops::RangeInclusive<usize>) -> Vec<u8> {
    let h = hash(id);
    let span = (sizes.end() - sizes.start() + 1) as u64;
    let len = sizes.start() + (h % span) as usize;
    let mut b = format!("{id}:").into_bytes();
    b.resize(len.max(b.len()), b'a' + (h >> 32) as u8 % 26);
    b
}

/// What the tests learned of each message.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every id sent in a `PUB`.
    pub sent: HashSet<String>,
    /// Answered `OK`: must be found at the end unless acked.
    pub confirmed: HashSet<String>,
    /// In an `ACK` answered `OK`: must not be found at the end.
    pub acked: HashSet<String>,
    /// In an `ACK` answered `ERR`, or not answered at all: the removal may
    /// or may not have happened (as for a publish answered `ERR`), so
    /// these may be missing at the end.
    pub ack_unsure: HashSet<String>,
    /// `ERR` replies seen (the id and the line).
    pub errs: Vec<(String, String)>,
    /// `NOTICE` lines seen by publishers.
    pub notices: Vec<String>,
}

/// How a publisher's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The broker closed the connection.
    Closed,
    /// The broker held it (`NOTICE blocked disk`) and nothing came for a
    /// while.
    Held,
}

impl Ledger {
    /// Adds what `other` learned.
    pub fn merge(&mut self, other: Ledger) {
        self.sent.extend(other.sent);
        self.confirmed.extend(other.confirmed);
        self.acked.extend(other.acked);
        self.ack_unsure.extend(other.ack_unsure);
        self.errs.extend(other.errs);
        self.notices.extend(other.notices);
    }
}

/// The frame of a `PUB` of message `id` to `queue` (default exchange).
pub fn pub_frame(queue: &str, id: &str, sizes: std::ops::RangeInclusive<usize>) -> Vec<u8> {
    let body = body_for(id, sizes);
    let mut frame = format!("PUB \"\" {queue} id={id} {{{}}}\r\n", body.len()).into_bytes();
    frame.extend_from_slice(&body);
    frame.extend_from_slice(b"\r\n");
    frame
}

/// Publishes to the default exchange, `window` in flight, until the
/// broker closes the connection or holds it for `quiet`: how it ended,
/// and what it learned.
pub async fn publish_until_stopped(
    addr: SocketAddr,
    queue: String,
    prefix: String,
    window: usize,
    sizes: std::ops::RangeInclusive<usize>,
    quiet: Duration,
) -> (End, Ledger) {
    let mut ledger = Ledger::default();
    let ledger = &mut ledger;
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (r, w) = stream.into_split();
    let mut reader = BufReader::new(r);
    let mut hello = String::new();
    reader.read_line(&mut hello).await.expect("greeting");
    assert!(hello.starts_with("HELLO sluice"), "{hello}");
    let permits = Arc::new(Semaphore::new(window));
    let (ids_tx, mut ids_rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(write_pubs(
        w,
        queue,
        prefix.clone(),
        sizes,
        permits.clone(),
        ids_tx,
    ));
    let mut in_flight: VecDeque<String> = VecDeque::new();
    let mut blocked = false;
    let end = loop {
        let mut line = String::new();
        let wait = if blocked { quiet } else { DEADLINE * 3 };
        let read = tokio::time::timeout(wait, reader.read_line(&mut line)).await;
        let n = match read {
            Err(_) if blocked => break End::Held,
            Err(_) => panic!("{prefix}: no reply in {wait:?} and not held: a hang"),
            Ok(r) => r.unwrap_or(0),
        };
        if n == 0 {
            break End::Closed;
        }
        let line = line.trim_end().to_string();
        if let Some(notice) = line.strip_prefix("NOTICE ") {
            if notice.starts_with("blocked disk") {
                blocked = true;
            } else if notice.starts_with("unblocked disk") {
                blocked = false;
            }
            ledger.notices.push(line);
            continue;
        }
        while let Ok(id) = ids_rx.try_recv() {
            ledger.sent.insert(id.clone());
            in_flight.push_back(id);
        }
        let id = match in_flight.pop_front() {
            Some(id) => id,
            None => {
                // The writer may not have handed the id over yet.
                let id = tokio::time::timeout(DEADLINE, ids_rx.recv()).await;
                let id = id.ok().flatten().expect("a reply nobody asked for");
                ledger.sent.insert(id.clone());
                id
            }
        };
        permits.add_permits(1);
        if line.starts_with("OK ") {
            assert_eq!(line, format!("OK {id} routed=1"));
            ledger.confirmed.insert(id);
        } else {
            assert!(line.starts_with("ERR "), "{prefix}: unexpected {line:?}");
            ledger.errs.push((id, line));
        }
    };
    writer.abort();
    let _ = writer.await;
    // Every id handed over may have been written.
    while let Ok(id) = ids_rx.try_recv() {
        ledger.sent.insert(id);
    }
    (end, std::mem::take(ledger))
}

/// The writing half of [`publish_until_stopped`]: one `PUB` per permit,
/// each id handed to the reader before it is written.
async fn write_pubs(
    mut w: OwnedWriteHalf,
    queue: String,
    prefix: String,
    sizes: std::ops::RangeInclusive<usize>,
    permits: Arc<Semaphore>,
    ids: mpsc::UnboundedSender<String>,
) {
    for n in 0u64.. {
        let Ok(p) = permits.acquire().await else {
            break;
        };
        p.forget();
        let id = format!("{prefix}-{n}");
        let frame = pub_frame(&queue, &id, sizes.clone());
        // Handed over before it is written: a reply may come before
        // write_all returns.
        if ids.send(id).is_err() || w.write_all(&frame).await.is_err() {
            break;
        }
    }
}

/// How a settler's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The queue is empty.
    Drained,
    /// A `GET` or `ACK` was answered `ERR`.
    Refused,
    /// The broker closed the connection.
    Closed,
}

/// A raw connection for `GET`/`ACK` that survives the broker going away.
pub struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (r, w) = stream.into_split();
        let mut c = Conn {
            reader: BufReader::new(r),
            writer: w,
        };
        let hello = c.line().await.expect("greeting");
        assert!(hello.starts_with("HELLO sluice"), "{hello}");
        c
    }

    /// The next line; `None` when the connection is closed.
    pub async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(DEADLINE * 3, self.reader.read_line(&mut line))
            .await
            .expect("no line in time: a hang")
            .unwrap_or(0);
        (n > 0).then(|| line.trim_end().to_string())
    }

    /// Sends `line`; false if the connection is gone.
    pub async fn send(&mut self, line: &str) -> bool {
        self.send_raw(format!("{line}\r\n").as_bytes()).await
    }

    /// Sends raw bytes; false if the connection is gone.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> bool {
        self.writer.write_all(bytes).await.is_ok()
    }

    /// `GET <queue> count=<n> ack=<ack>`: the deliveries (tag, id, body)
    /// and the final line (`OK n`, an `ERR`, or `None` when closed).
    pub async fn get(
        &mut self,
        queue: &str,
        n: usize,
        ack: &str,
    ) -> (Vec<(u64, String, Vec<u8>)>, Option<String>) {
        let mut got = Vec::new();
        if !self.send(&format!("GET {queue} count={n} ack={ack}")).await {
            return (got, None);
        }
        loop {
            let Some(line) = self.line().await else {
                return (got, None);
            };
            if line.starts_with("NOTICE ") {
                continue;
            }
            let Some((head, len)) = super::split_literal(&line) else {
                return (got, Some(line));
            };
            let mut body = vec![0u8; len + 2];
            if self.reader.read_exact(&mut body).await.is_err() {
                return (got, None);
            }
            body.truncate(len);
            let words: Vec<&str> = head.split(' ').collect();
            let tag = words[2].parse().expect("delivery tag");
            let id = words
                .iter()
                .find_map(|w| w.strip_prefix("id="))
                .expect("id=")
                .to_string();
            got.push((tag, id, body));
        }
    }
}

/// Drains `queue` with `GET ... ack=manual` and `ACK <last> multiple`,
/// `batch` at a time, recording what each `ACK OK` removed, until the
/// queue is empty, a command is refused, or the connection closes.
pub async fn settle_all(
    addr: SocketAddr,
    queue: &str,
    batch: usize,
    sizes: std::ops::RangeInclusive<usize>,
    ledger: &mut Ledger,
) -> Settled {
    let mut c = Conn::connect(addr).await;
    loop {
        let (got, end) = c.get(queue, batch, "manual").await;
        for (_, id, body) in &got {
            assert_eq!(*body, body_for(id, sizes.clone()), "corrupted body of {id}");
        }
        match end.as_deref() {
            None => return Settled::Closed,
            Some(l) if l.starts_with("ERR ") => return Settled::Refused,
            Some(l) => assert_eq!(l, format!("OK {}", got.len())),
        }
        let Some(last) = got.last().map(|(tag, _, _)| *tag) else {
            return Settled::Drained;
        };
        let ids = got.into_iter().map(|(_, id, _)| id);
        if !c.send(&format!("ACK {last} multiple")).await {
            return Settled::Closed;
        }
        match c.line().await.as_deref() {
            Some("OK") => ledger.acked.extend(ids),
            None => {
                ledger.ack_unsure.extend(ids);
                return Settled::Closed;
            }
            Some(l) if l.starts_with("ERR ") => {
                ledger.ack_unsure.extend(ids);
                return Settled::Refused;
            }
            Some(l) => panic!("unexpected reply to ACK: {l:?}"),
        }
    }
}

/// Every message left in `queue`, read with `GET ... ack=auto`: each body
/// checked against its id, no id twice.
pub async fn collect(
    addr: SocketAddr,
    queue: &str,
    sizes: std::ops::RangeInclusive<usize>,
) -> HashSet<String> {
    let mut c = Conn::connect(addr).await;
    let mut found = HashSet::new();
    loop {
        let (got, end) = c.get(queue, 200, "auto").await;
        let end = end.expect("the broker closed the connection while collecting");
        assert_eq!(end, format!("OK {}", got.len()));
        if got.is_empty() {
            return found;
        }
        for (_, id, body) in got {
            assert_eq!(body, body_for(&id, sizes.clone()), "corrupted body of {id}");
            assert!(found.insert(id.clone()), "{id} found twice");
        }
    }
}

/// What the final count found wrong: confirmed but missing (and not in
/// an `ACK`), acked (`OK`) but back, found but never sent.
#[derive(Debug, Default)]
pub struct Verdict {
    pub lost: Vec<String>,
    pub resurrected: Vec<String>,
    pub unexpected: Vec<String>,
}

impl Verdict {
    pub fn of(ledger: &Ledger, found: &HashSet<String>) -> Verdict {
        let mut v = Verdict::default();
        for id in &ledger.confirmed {
            if !found.contains(id) && !ledger.acked.contains(id) && !ledger.ack_unsure.contains(id)
            {
                v.lost.push(id.clone());
            }
        }
        for id in found {
            if ledger.acked.contains(id) {
                v.resurrected.push(id.clone());
            }
            if !ledger.sent.contains(id) && !ledger.confirmed.contains(id) {
                v.unexpected.push(id.clone());
            }
        }
        v
    }

    pub fn clean(&self) -> bool {
        self.lost.is_empty() && self.resurrected.is_empty() && self.unexpected.is_empty()
    }
}

#[test]
fn the_verdict_catches_a_lost_a_resurrected_and_an_unexpected_message() {
    let mut l = Ledger::default();
    for id in ["a", "b", "c"] {
        l.sent.insert(id.into());
        l.confirmed.insert(id.into());
    }
    l.acked.insert("c".into());
    let all: HashSet<String> = ["a", "b"].map(String::from).into();
    assert!(Verdict::of(&l, &all).clean());
    // An ACK answered ERR may have removed what it named.
    l.ack_unsure.insert("b".into());
    let missing_b: HashSet<String> = ["a"].map(String::from).into();
    assert!(Verdict::of(&l, &missing_b).clean());
    l.ack_unsure.clear();
    let missing_b: HashSet<String> = ["a"].map(String::from).into();
    assert_eq!(Verdict::of(&l, &missing_b).lost, ["b"]);
    let with_c: HashSet<String> = ["a", "b", "c"].map(String::from).into();
    assert_eq!(Verdict::of(&l, &with_c).resurrected, ["c"]);
    let with_x: HashSet<String> = ["a", "b", "x"].map(String::from).into();
    assert_eq!(Verdict::of(&l, &with_x).unexpected, ["x"]);
}
