//! The benchmark's clients: [`publish`] pipelines confirmed publishes
//! within a window (until a count or a deadline, optionally paced at a
//! fixed rate); [`consume`] takes deliveries from a subscription, acks each
//! one and records its latency from the body's timestamp. Both update the
//! shared [`Counters`] (progress bar, watchdog); consumers of one queue
//! share a [`Tally`] that says when that queue has delivered everything.
//! Both run on a link (`link.rs`), so the same loops measure sluice and,
//! with the `amqp` feature, an AMQP broker.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::link::{ConsumeLink, PublishLink};
use super::AckMode;
use sluice::protocol::command::StreamStart;

/// Bytes at the start of every body: the send time (8 bytes, big-endian
/// nanoseconds since the run's [`Clock`] base) and a sequence number (8
/// bytes, big-endian: the publisher's index in the top 16 bits).
pub(crate) const STAMP_BYTES: usize = 16;

/// Publishes queued before a flush at most (the socket write batch).
const FLUSH_BATCH: usize = 256;
/// Acks queued before a flush at most.
const ACK_BATCH: usize = 64;

/// The clock every client of the run shares: nanoseconds since one
/// [`Instant`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base: Instant,
}

impl Clock {
    /// A clock starting now.
    pub(crate) fn new() -> Clock {
        Clock {
            base: Instant::now(),
        }
    }

    /// Nanoseconds since the base.
    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Writes the send time and sequence number into the first
/// [`STAMP_BYTES`] of `body` (which must be at least that long).
pub(crate) fn write_stamp(body: &mut [u8], sent_ns: u64, seq: u64) {
    if let Some(b) = body.get_mut(..8) {
        b.copy_from_slice(&sent_ns.to_be_bytes());
    }
    if let Some(b) = body.get_mut(8..16) {
        b.copy_from_slice(&seq.to_be_bytes());
    }
}

/// How a JSON body (`PublishPlan::json`) starts: the [`STAMP_BYTES`]
/// follow as 32 lower-case hex digits, then `","pad":"xx..."}`.
const JSON_STAMP_PREFIX: &[u8] = br#"{"stamp":""#;
/// What follows the hex stamp in a JSON body, before the padding.
const JSON_PAD_PREFIX: &[u8] = br#"","pad":""#;

/// A JSON body of about `size` bytes (at least what the stamp needs):
/// `{"stamp":"<32 hex>","pad":"xx..."}`, the schema scenario's.
pub(crate) fn json_body(size: usize) -> Vec<u8> {
    let fixed = JSON_STAMP_PREFIX.len() + 2 * STAMP_BYTES + JSON_PAD_PREFIX.len() + 2;
    let mut body = JSON_STAMP_PREFIX.to_vec();
    body.resize(body.len() + 2 * STAMP_BYTES, b'0');
    body.extend_from_slice(JSON_PAD_PREFIX);
    body.resize(body.len() + size.saturating_sub(fixed), b'x');
    body.extend_from_slice(b"\"}");
    body
}

/// [`write_stamp`] for a [`json_body`]: the stamp's bytes as hex.
fn write_json_stamp(body: &mut [u8], sent_ns: u64, seq: u64) {
    let mut raw = [0u8; STAMP_BYTES];
    write_stamp(&mut raw, sent_ns, seq);
    let at = JSON_STAMP_PREFIX.len();
    if let Some(hex) = body.get_mut(at..at + 2 * STAMP_BYTES) {
        for (pair, b) in hex.chunks_mut(2).zip(raw) {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
    }
}

/// Reads back `(sent_ns, seq)`, from the raw stamp or a [`json_body`]'s;
/// `None` for a body too short to carry them.
pub(crate) fn read_stamp(body: &[u8]) -> Option<(u64, u64)> {
    if let Some(hex) = body.strip_prefix(JSON_STAMP_PREFIX) {
        let hex = std::str::from_utf8(hex.get(..2 * STAMP_BYTES)?).ok()?;
        let mut raw = [0u8; STAMP_BYTES];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        return read_raw_stamp(&raw);
    }
    read_raw_stamp(body)
}

fn read_raw_stamp(body: &[u8]) -> Option<(u64, u64)> {
    let ns = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
    let seq = u64::from_be_bytes(body.get(8..16)?.try_into().ok()?);
    Some((ns, seq))
}

/// Live totals over every client of the run.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// `PUB`s written.
    pub(crate) sent: AtomicU64,
    /// `PUB`s confirmed (`OK`).
    pub(crate) confirmed: AtomicU64,
    /// Deliveries received.
    pub(crate) delivered: AtomicU64,
    /// `ACK`s answered `OK`.
    pub(crate) acked: AtomicU64,
}

impl Counters {
    /// A number that grows whenever anything happens (for the watchdog).
    pub(crate) fn activity(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
            + self.confirmed.load(Ordering::Relaxed)
            + self.delivered.load(Ordering::Relaxed)
            + self.acked.load(Ordering::Relaxed)
    }

    /// One line of the totals, for errors and the progress bar.
    pub(crate) fn summary(&self) -> String {
        format!(
            "{} sent, {} confirmed, {} delivered, {} acked",
            self.sent.load(Ordering::Relaxed),
            self.confirmed.load(Ordering::Relaxed),
            self.delivered.load(Ordering::Relaxed),
            self.acked.load(Ordering::Relaxed)
        )
    }
}

/// One queue's progress towards its expected number of deliveries; the
/// consumers of the queue stop once it is reached. The target is unknown
/// (never reached) until [`Tally::set_target`].
#[derive(Debug)]
pub(crate) struct Tally {
    /// The queue's name.
    pub(crate) queue: String,
    /// What messages call it: the queue's name, or the stream's and the
    /// group's.
    pub(crate) label: String,
    delivered: AtomicU64,
    target: AtomicU64,
    done: watch::Sender<bool>,
}

impl Tally {
    /// A tally for `queue` with no target yet.
    pub(crate) fn new(queue: &str) -> Arc<Tally> {
        Tally::labelled(queue, queue.to_string())
    }

    /// A tally for `queue`, called `label` in messages (a stream group's
    /// reads).
    pub(crate) fn labelled(queue: &str, label: String) -> Arc<Tally> {
        Arc::new(Tally {
            queue: queue.to_string(),
            label,
            delivered: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            done: watch::channel(false).0,
        })
    }

    /// Sets how many deliveries the queue owes (publishing is over).
    pub(crate) fn set_target(&self, target: u64) {
        self.target.store(target, Ordering::SeqCst);
        if self.delivered.load(Ordering::SeqCst) >= target {
            self.done.send_replace(true);
        }
    }

    /// Counts one delivery; true when it reached the target.
    fn record(&self) -> bool {
        let n = self.delivered.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.target.load(Ordering::SeqCst) {
            self.done.send_replace(true);
            true
        } else {
            false
        }
    }

    /// Deliveries so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst)
    }

    /// The target, once set.
    pub(crate) fn target(&self) -> Option<u64> {
        match self.target.load(Ordering::SeqCst) {
            u64::MAX => None,
            t => Some(t),
        }
    }
}

/// When a publisher stops.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stop {
    /// After this many publishes.
    Count(u64),
    /// Once this long has passed since it started.
    For(Duration),
}

/// What one publisher does.
#[derive(Debug, Clone)]
pub(crate) struct PublishPlan {
    /// Index of the publisher (top 16 bits of the sequence numbers).
    pub(crate) index: u64,
    /// Exchange to publish to (`""`: the default exchange).
    pub(crate) exchange: String,
    /// Routing keys, used in turn.
    pub(crate) keys: Arc<[String]>,
    /// Persistent messages (else transient).
    pub(crate) persistent: bool,
    /// Body size in bytes (at least [`STAMP_BYTES`]).
    pub(crate) size: usize,
    /// Unconfirmed publishes in flight at most.
    pub(crate) window: usize,
    /// When to stop.
    pub(crate) stop: Stop,
    /// Messages per second, if paced.
    pub(crate) rate: Option<f64>,
    /// The `routed=` every confirm must carry.
    pub(crate) expect_routed: u64,
    /// Whether to keep every publish->confirm latency.
    pub(crate) record_confirm_latency: bool,
    /// JSON bodies ([`json_body`]) instead of raw bytes.
    pub(crate) json: bool,
}

/// What one publisher achieved.
#[derive(Debug, Clone)]
pub(crate) struct PublishOutcome {
    /// Confirmed publishes.
    pub(crate) confirmed: u64,
    /// When the last confirm arrived.
    pub(crate) last_confirm: Option<Instant>,
    /// Publish (written to the link) -> confirm latencies in nanoseconds,
    /// if recorded.
    pub(crate) confirm_latencies_ns: Vec<u64>,
}

/// Publishes per `plan` on `link` and waits for every confirm.
pub(crate) async fn publish<L: PublishLink>(
    mut link: L,
    plan: PublishPlan,
    clock: Clock,
    counters: Arc<Counters>,
) -> anyhow::Result<PublishOutcome> {
    let window = Arc::new(Semaphore::new(plan.window.max(1)));
    // Unbounded, but never holds more than `window` entries: each carries
    // one of the window's permits.
    let (tx, mut rx) = mpsc::unbounded_channel::<(L::Pending, OwnedSemaphorePermit, u64)>();
    let started = Instant::now();
    let keys = plan.keys.clone();
    let index = plan.index;
    let record_confirm_latency = plan.record_confirm_latency;
    if keys.is_empty() {
        bail!("publisher {index} has no routing key");
    }
    let sender = {
        let counters = counters.clone();
        async move {
            let mut body = match plan.json {
                true => json_body(plan.size),
                false => vec![b'x'; plan.size.max(STAMP_BYTES)],
            };
            let deadline = match plan.stop {
                Stop::For(d) => Some(started + d),
                Stop::Count(_) => None,
            };
            let mut seq: u64 = 0;
            let mut unflushed = 0usize;
            loop {
                match plan.stop {
                    Stop::Count(n) if seq >= n => break,
                    _ => {}
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if let Some(rate) = plan.rate {
                    let due = started + Duration::from_secs_f64(seq as f64 / rate);
                    if due > Instant::now() {
                        if unflushed > 0 {
                            link.flush()
                                .await
                                .map_err(|e| anyhow!("publisher {index}: {e:#}"))?;
                            unflushed = 0;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        continue;
                    }
                }
                let permit = match window.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        if unflushed > 0 {
                            link.flush()
                                .await
                                .map_err(|e| anyhow!("publisher {index}: {e:#}"))?;
                            unflushed = 0;
                        }
                        window
                            .clone()
                            .acquire_owned()
                            .await
                            .context("publisher window closed")?
                    }
                };
                let sent_ns = clock.now_ns();
                match plan.json {
                    true => write_json_stamp(&mut body, sent_ns, (plan.index << 48) | seq),
                    false => write_stamp(&mut body, sent_ns, (plan.index << 48) | seq),
                }
                let key = &keys[(seq % keys.len() as u64) as usize];
                let pending = link
                    .publish(key, &body)
                    .await
                    .map_err(|e| anyhow!("publisher {index}: {e:#}"))?;
                counters.sent.fetch_add(1, Ordering::Relaxed);
                if tx.send((pending, permit, sent_ns)).is_err() {
                    // The confirm loop failed; its error is the one to report.
                    break;
                }
                seq += 1;
                unflushed += 1;
                if unflushed >= FLUSH_BATCH {
                    link.flush()
                        .await
                        .map_err(|e| anyhow!("publisher {index}: {e:#}"))?;
                    unflushed = 0;
                }
            }
            link.flush()
                .await
                .map_err(|e| anyhow!("publisher {index}: {e:#}"))?;
            drop(tx);
            // Keep the connection open until every confirm is in.
            anyhow::Ok(link)
        }
    };
    let confirmer = async move {
        let mut confirmed = 0u64;
        let mut last_confirm = None;
        let mut latencies = Vec::new();
        while let Some((pending, permit, sent_ns)) = rx.recv().await {
            L::confirmed(pending)
                .await
                .map_err(|e| anyhow!("publisher {index}: {e:#}"))?;
            if record_confirm_latency {
                latencies.push(clock.now_ns().saturating_sub(sent_ns));
            }
            confirmed += 1;
            counters.confirmed.fetch_add(1, Ordering::Relaxed);
            last_confirm = Some(Instant::now());
            drop(permit);
        }
        anyhow::Ok((confirmed, last_confirm, latencies))
    };
    let (link, (confirmed, last_confirm, confirm_latencies_ns)) =
        tokio::try_join!(sender, confirmer)?;
    link.close().await;
    Ok(PublishOutcome {
        confirmed,
        last_confirm,
        confirm_latencies_ns,
    })
}

/// What one consumer does.
#[derive(Debug, Clone)]
pub(crate) struct ConsumePlan {
    /// Index of the consumer (for messages).
    pub(crate) index: u64,
    /// The queue's tally, shared by its consumers.
    pub(crate) tally: Arc<Tally>,
    /// How to acknowledge.
    pub(crate) ack: AckMode,
    /// Whether to keep every latency sample.
    pub(crate) record_latency: bool,
    /// Read a stream as a member of a consumer group (`SUB group= offset=`)
    /// instead of consuming a queue.
    pub(crate) stream: Option<StreamRead>,
    /// Check that deliveries come in publish order, by offset and body
    /// sequence number ([`OrderCheck`]).
    pub(crate) check_order: bool,
}

/// How a consumer reads a stream: its group and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamRead {
    /// `SUB group=`.
    pub(crate) group: String,
    /// `SUB offset=`.
    pub(crate) start: StreamStart,
}

/// Whether one reader saw a stream's messages each once and in order:
/// consecutive offsets, and body sequence numbers counting up from 0
/// (one publisher, index 0, so the sequence number is the message's
/// position in the stream).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OrderCheck {
    /// Deliveries looked at.
    pub(crate) seen: u64,
    /// The first delivery's offset.
    pub(crate) first_offset: Option<u64>,
    /// The last delivery's offset.
    pub(crate) last_offset: Option<u64>,
    /// Deliveries that carried no `offset=`.
    pub(crate) without_offset: u64,
    /// Deliveries whose offset was not the previous one + 1.
    pub(crate) offset_breaks: u64,
    /// Deliveries whose body sequence number was not their position (or
    /// that had no sequence number).
    pub(crate) seq_breaks: u64,
    /// What the first break was, for the error.
    pub(crate) first_break: Option<String>,
}

impl OrderCheck {
    /// Looks at the next delivery: its `offset=` and its body's sequence
    /// number.
    pub(crate) fn record(&mut self, offset: Option<u64>, seq: Option<u64>) {
        let position = self.seen;
        self.seen += 1;
        match (offset, self.last_offset) {
            (None, _) => {
                self.without_offset += 1;
                self.note(|| format!("delivery {position} carried no offset="));
            }
            (Some(o), Some(last)) if last.checked_add(1) != Some(o) => {
                self.offset_breaks += 1;
                self.note(|| format!("delivery {position}: offset {o} after offset {last}"));
            }
            _ => {}
        }
        if let Some(o) = offset {
            self.first_offset.get_or_insert(o);
            self.last_offset = Some(o);
        }
        if seq != Some(position) {
            self.seq_breaks += 1;
            self.note(|| match seq {
                Some(s) => format!("delivery {position} carried message {s} (sequence number)"),
                None => format!("delivery {position} had no sequence number"),
            });
        }
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.first_break.is_none() {
            self.first_break = Some(what());
        }
    }

    /// `Ok` when the reader saw `expected` messages, each once and in
    /// order, starting at offset `first` when given; else what went wrong.
    pub(crate) fn verify(&self, expected: u64, first: Option<u64>) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.seen != expected {
            problems.push(format!("{} deliveries, {expected} expected", self.seen));
        }
        if self.without_offset > 0 {
            problems.push(format!("{} without offset=", self.without_offset));
        }
        if self.offset_breaks > 0 {
            problems.push(format!("{} offsets out of sequence", self.offset_breaks));
        }
        if self.seq_breaks > 0 {
            problems.push(format!("{} bodies out of publish order", self.seq_breaks));
        }
        if let (Some(want), Some(got)) = (first, self.first_offset) {
            if want != got {
                problems.push(format!("first offset {got}, expected {want}"));
            }
        }
        if let (Some(f), Some(l)) = (self.first_offset, self.last_offset) {
            let span = l.checked_sub(f).and_then(|d| d.checked_add(1));
            if span != Some(expected) {
                problems.push(format!("offsets {f}..={l} for {expected} messages"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            if let Some(b) = &self.first_break {
                problems.push(format!("first: {b}"));
            }
            Err(problems.join(", "))
        }
    }
}

/// What one consumer achieved.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConsumeOutcome {
    /// The consumer's index (its plan's).
    pub(crate) index: u64,
    /// Deliveries received.
    pub(crate) delivered: u64,
    /// `ACK`s answered `OK` (0 with `ack=auto`).
    pub(crate) acked: u64,
    /// Deliveries flagged `redelivered`.
    pub(crate) redelivered: u64,
    /// Deliveries whose body carried no timestamp.
    pub(crate) unstamped: u64,
    /// When the last delivery arrived.
    pub(crate) last_delivery: Option<Instant>,
    /// When the last `ACK` was answered.
    pub(crate) last_ack: Option<Instant>,
    /// Publish→deliver latencies in nanoseconds, if recorded.
    pub(crate) latencies_ns: Vec<u64>,
    /// The order of the deliveries, if checked.
    pub(crate) order: Option<OrderCheck>,
}

/// Polls `f` once: its output if ready, `None` if it would wait.
pub(crate) async fn now_or_never<F: Future>(f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    std::future::poll_fn(|cx| match f.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Takes deliveries on a subscribed `link` until the queue's tally is
/// reached, acks each one (manual mode) and waits for the acks' replies.
pub(crate) async fn consume<L: ConsumeLink>(
    mut link: L,
    plan: ConsumePlan,
    clock: Clock,
    counters: Arc<Counters>,
) -> anyhow::Result<ConsumeOutcome> {
    // Unbounded, but the broker's prefetch bounds the acks outstanding.
    let (tx, mut rx) = mpsc::unbounded_channel::<L::Pending>();
    let mut done = plan.tally.done.subscribe();
    let index = plan.index;
    let receiver = {
        let counters = counters.clone();
        async move {
            let mut out = ConsumeOutcome {
                index,
                order: plan.check_order.then(OrderCheck::default),
                ..ConsumeOutcome::default()
            };
            let mut unflushed = 0usize;
            let manual = plan.ack == AckMode::Manual;
            loop {
                let next = if unflushed > 0 {
                    // Acks are waiting: take what is already here, and flush
                    // them as soon as nothing is.
                    match now_or_never(link.next_delivery()).await {
                        Some(d) => d,
                        None => {
                            link.flush()
                                .await
                                .map_err(|e| anyhow!("consumer {index}: {e:#}"))?;
                            unflushed = 0;
                            continue;
                        }
                    }
                } else {
                    tokio::select! {
                        biased;
                        d = link.next_delivery() => d,
                        _ = done.wait_for(|d| *d) => break,
                    }
                };
                let next = next.map_err(|e| anyhow!("consumer {index}: {e:#}"))?;
                let Some(d) = next else {
                    bail!(
                        "consumer {index}: the broker closed the connection after {} deliveries from {}",
                        out.delivered,
                        plan.tally.label
                    );
                };
                let now = clock.now_ns();
                out.delivered += 1;
                out.last_delivery = Some(Instant::now());
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                if d.redelivered {
                    out.redelivered += 1;
                }
                let stamp = read_stamp(&d.body);
                match stamp {
                    Some((sent, _)) if plan.record_latency => {
                        out.latencies_ns.push(now.saturating_sub(sent));
                    }
                    Some(_) => {}
                    None => out.unstamped += 1,
                }
                if let Some(order) = &mut out.order {
                    order.record(d.offset, stamp.map(|(_, seq)| seq));
                }
                if manual {
                    let pending = link
                        .ack(d.tag)
                        .await
                        .map_err(|e| anyhow!("consumer {index}: ACK: {e:#}"))?;
                    if tx.send(pending).is_err() {
                        break;
                    }
                    unflushed += 1;
                    if unflushed >= ACK_BATCH {
                        link.flush()
                            .await
                            .map_err(|e| anyhow!("consumer {index}: {e:#}"))?;
                        unflushed = 0;
                    }
                }
                if plan.tally.record() {
                    break;
                }
            }
            link.flush()
                .await
                .map_err(|e| anyhow!("consumer {index}: {e:#}"))?;
            drop(tx);
            anyhow::Ok((out, link))
        }
    };
    let acker = async move {
        let mut acked = 0u64;
        let mut last_ack = None;
        while let Some(pending) = rx.recv().await {
            L::acked(pending)
                .await
                .map_err(|e| anyhow!("consumer {index}: {e:#}"))?;
            acked += 1;
            counters.acked.fetch_add(1, Ordering::Relaxed);
            last_ack = Some(Instant::now());
        }
        anyhow::Ok((acked, last_ack))
    };
    let ((mut out, link), (acked, last_ack)) = tokio::try_join!(receiver, acker)?;
    link.close().await;
    out.acked = acked;
    out.last_ack = last_ack;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips() {
        let mut body = vec![b'x'; 20];
        write_stamp(&mut body, 123_456_789, (3 << 48) | 42);
        assert_eq!(read_stamp(&body), Some((123_456_789, (3 << 48) | 42)));
        assert_eq!(&body[16..], b"xxxx");
        assert_eq!(read_stamp(b"short"), None);
        let mut json = json_body(100);
        assert_eq!(json.len(), 100);
        write_json_stamp(&mut json, 123_456_789, (3 << 48) | 42);
        assert_eq!(read_stamp(&json), Some((123_456_789, (3 << 48) | 42)));
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["stamp"].as_str().map(str::len), Some(32));
        assert_eq!(json_body(10).len(), 53);
    }

    /// An order check fed `(offset, seq)` pairs.
    fn fed(deliveries: &[(Option<u64>, Option<u64>)]) -> OrderCheck {
        let mut c = OrderCheck::default();
        for &(o, s) in deliveries {
            c.record(o, s);
        }
        c
    }

    #[test]
    fn order_check_accepts_every_offset_once_in_order() {
        let c = fed(&[(Some(5), Some(0)), (Some(6), Some(1)), (Some(7), Some(2))]);
        assert_eq!(
            (c.first_offset, c.last_offset, c.seen),
            (Some(5), Some(7), 3)
        );
        assert_eq!(c.verify(3, None), Ok(()));
        assert_eq!(c.verify(3, Some(5)), Ok(()));
        let e = c.verify(3, Some(0)).unwrap_err();
        assert!(e.contains("first offset 5, expected 0"), "{e}");
        let e = c.verify(4, None).unwrap_err();
        assert!(e.contains("3 deliveries, 4 expected"), "{e}");
        assert!(OrderCheck::default().verify(0, None).is_ok());
    }

    #[test]
    fn order_check_finds_gaps_duplicates_and_reordering() {
        // A gap: offset 2 missing (and with it message 2).
        let c = fed(&[(Some(0), Some(0)), (Some(1), Some(1)), (Some(3), Some(3))]);
        assert_eq!((c.offset_breaks, c.seq_breaks), (1, 1));
        let e = c.verify(3, Some(0)).unwrap_err();
        assert!(e.contains("1 offsets out of sequence"), "{e}");
        assert!(e.contains("offsets 0..=3 for 3 messages"), "{e}");
        assert!(
            e.contains("first: delivery 2: offset 3 after offset 1"),
            "{e}"
        );
        // A duplicate.
        let c = fed(&[(Some(0), Some(0)), (Some(0), Some(0)), (Some(1), Some(1))]);
        assert_eq!(c.offset_breaks, 1);
        assert!(c.verify(3, None).is_err());
        // Offsets in order, but the bodies are not the messages published
        // in that order.
        let c = fed(&[(Some(0), Some(1)), (Some(1), Some(0))]);
        assert_eq!((c.offset_breaks, c.seq_breaks), (0, 2));
        let e = c.verify(2, None).unwrap_err();
        assert!(e.contains("2 bodies out of publish order"), "{e}");
        assert!(e.contains("delivery 0 carried message 1"), "{e}");
        // No offset= at all (not a stream delivery).
        let c = fed(&[(None, Some(0)), (None, Some(1))]);
        assert_eq!(c.without_offset, 2);
        let e = c.verify(2, None).unwrap_err();
        assert!(e.contains("2 without offset="), "{e}");
        // A body too short for the sequence number.
        let c = fed(&[(Some(0), None)]);
        assert!(c
            .verify(1, None)
            .unwrap_err()
            .contains("no sequence number"));
        // u64::MAX then anything is a break, not an overflow.
        let c = fed(&[(Some(u64::MAX), Some(0)), (Some(0), Some(1))]);
        assert_eq!(c.offset_breaks, 1);
    }

    #[test]
    fn tally_reaches_target_set_before_or_after() {
        let t = Tally::new("q");
        assert!(!t.record());
        assert!(!t.record());
        assert_eq!(t.target(), None);
        t.set_target(2);
        assert!(*t.done.subscribe().borrow());
        let t = Tally::new("q");
        t.set_target(2);
        assert!(!t.record());
        assert!(t.record());
        assert_eq!(t.delivered(), 2);
    }
}
