//! The crash test: the real `sluice` binary is SIGKILLed at random moments
//! while two publishers pipeline persistent messages, half to a durable
//! queue `q` and half fanned out to three durable queues `f1`, `f2`, `f3`,
//! a fifth of them delayed (`PUB ... delay=`). Meanwhile consumers ack on
//! `f1`, ack or retry with a delay (`NACK ... delay=`) on `q`, reject
//! everything on `f3` (`NACK requeue=false`, dead-lettered into `dlq`) and
//! ack on `dlq`; `f2` keeps its backlog. The broker is restarted on the same
//! directory; every third restart is first SIGKILLed inside recovery, which
//! the test proves from outside (see [`kill_during_recovery`]). At the end
//! every message whose `PUB` was answered `OK` must be found, exactly as
//! published, wherever it may legitimately be.
//!
//! Counting follows the Jepsen "total queue" idea: every message carries an
//! id and a checksum. Each `ok` id must end up acked on each of its queues
//! (its copy on `f3` either there or, dead-lettered, on `dlq`): lost = 0.
//! Found copies must have been sent, be where they may be and carry the
//! dead-letter headers that fit (unexpected = 0); bodies must match their
//! id (corrupted = 0); a copy delivered twice must be flagged `redelivered`
//! the second time (unflagged duplicates = 0). Also 0: copies delivered
//! again after their removal was answered `OK` (resurrected) and deliveries
//! before the end of their delay (early). A figures line sums it all up;
//! `SLUICE_CRASH_CYCLES=20` runs the long version.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sluice::client::{Client, Delivery};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::faults::{holds_open, strip_ansi, wait_until_open, Rng};
use crate::common::sluice_bin;

/// Kill/restart cycles in the CI version of the test; the long version
/// sets `SLUICE_CRASH_CYCLES` (e.g. 20, see docs/development.md).
const CYCLES: usize = 3;

fn cycles() -> usize {
    std::env::var("SLUICE_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CYCLES)
}

/// The long version (`SLUICE_CRASH_CYCLES` set) lets each cycle run longer.
fn long_mode() -> bool {
    std::env::var_os("SLUICE_CRASH_CYCLES").is_some()
}

/// Publishes in flight per publisher.
const WINDOW: usize = 128;

pub(crate) struct Broker {
    pub(crate) child: Child,
    pub(crate) addr: String,
    /// From spawning the process to its `listening on` line.
    ready_in: Duration,
}

pub(crate) async fn start(dir: &Path) -> Broker {
    start_with(dir, &[]).await
}

/// `sluice serve` on a free port and `dir`, logging warnings only.
pub(crate) fn serve(dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "warn");
    cmd
}

pub(crate) fn spawn(dir: &Path, extra: &[&str]) -> Child {
    serve(dir, extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sluice")
}

async fn start_with(dir: &Path, extra: &[&str]) -> Broker {
    let spawned = Instant::now();
    let mut child = spawn(dir, extra);
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("no listening line in time")
        .expect("read stdout")
        .expect("sluice exited before listening");
    let addr = first
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_string();
    Broker {
        child,
        addr,
        ready_in: spawned.elapsed(),
    }
}

pub(crate) fn body_for(id: &str) -> Vec<u8> {
    let crc = crc32fast::hash(id.as_bytes());
    format!("{id}:{crc:08x}:{}", "p".repeat(64)).into_bytes()
}

pub(crate) fn check_body(id: &str, body: &[u8]) -> bool {
    body == body_for(id).as_slice()
}

/// The main test's queues, each with the line that declares it: repeated
/// at the end, an identical `DECLARE` is a no-op that reports its depth.
/// `q` is fed by the default exchange; `fan` fans out to `f1`, `f2` and
/// `f3`; `f3` dead-letters into `dlx`, which feeds `dlq`.
const QUEUES: [(&str, &str); 5] = [
    ("q", "DECLARE QUEUE q durable"),
    ("f1", "DECLARE QUEUE f1 durable"),
    ("f2", "DECLARE QUEUE f2 durable"),
    ("f3", "DECLARE QUEUE f3 durable dead-letter=dlx"),
    ("dlq", "DECLARE QUEUE dlq durable"),
];

/// How one publish was sent.
#[derive(Clone, Copy)]
struct Plan {
    cycle: usize,
    /// To `fan` (else to `q`).
    fan: bool,
    /// With `delay=`: no delivery may come before this ([`not_before`]).
    due: Option<Instant>,
}

impl Plan {
    /// Where a copy of the message may legitimately be: its queues, and for
    /// the copy on `f3`, the dead-letter queue once it has been rejected.
    fn may_be_in(&self, queue: &str) -> bool {
        if self.fan {
            matches!(queue, "f1" | "f2" | "f3" | "dlq")
        } else {
            queue == "q"
        }
    }
}

/// What the publishers sent, and which of it was confirmed.
#[derive(Default)]
struct Published {
    plans: HashMap<String, Plan>,
    confirmed: HashSet<String>,
}

impl Published {
    fn merge(&mut self, other: Published) {
        self.plans.extend(other.plans);
        self.confirmed.extend(other.confirmed);
    }
}

/// Every fifth publish is held back 100 ms to 1.9 s: long enough for many
/// to be waiting when the kill comes, and some still at the final drain.
fn delay_ms(seq: usize) -> Option<u64> {
    seq.is_multiple_of(5)
        .then(|| 100 + 200 * ((seq / 5) % 10) as u64)
}

/// Publishes with a window until killed, recording every id sent and every
/// id confirmed.
async fn publish_until_dead(addr: &str, cycle: usize, publisher: usize, out: &mut Published) {
    let Ok(mut c) = Client::connect(addr).await else {
        return;
    };
    let mut inflight = VecDeque::new();
    let mut seq = 0usize;
    loop {
        while inflight.len() < WINDOW {
            seq += 1;
            let id = format!("c{cycle}-p{publisher}-{seq}");
            let fan = seq.is_multiple_of(2);
            let (ex, key) = if fan { ("fan", "") } else { ("", "q") };
            let delay = delay_ms(seq);
            let mut opts = format!("persistent id={id}");
            if let Some(ms) = delay {
                opts.push_str(&format!(" delay={ms}"));
            }
            let due = delay.map(not_before);
            let h = c.send_publish(ex, key, &opts, &body_for(&id));
            out.plans.insert(id.clone(), Plan { cycle, fan, due });
            inflight.push_back((id, fan, h));
        }
        if c.flush().await.is_err() {
            return;
        }
        let Some((id, fan, h)) = inflight.pop_front() else {
            return;
        };
        match h.wait().await {
            Ok(r) => {
                assert_eq!(r.words.first(), Some(&id), "confirm for the wrong message");
                let routed = if fan { "routed=3" } else { "routed=1" };
                assert_eq!(
                    r.words.get(1).map(String::as_str),
                    Some(routed),
                    "confirm of {id}"
                );
                out.confirmed.insert(id);
            }
            Err(e) if e.code().is_some() => panic!("publish {id} refused: {e}"),
            Err(_) => return, // connection died: outcome unknown ("info")
        }
    }
}

/// One delivery of one copy (`queue/id`).
struct Obs {
    redelivered: bool,
    deliveries: u32,
    /// When the test had it (after the server sent it).
    at: Instant,
    /// Which run of the broker sent it: the cycle, or the number of
    /// cycles for the final drain.
    run: usize,
}

impl std::fmt::Debug for Obs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flag = if self.redelivered { " redelivered" } else { "" };
        write!(f, "run {}{flag} deliveries={}", self.run, self.deliveries)
    }
}

/// What the consumers saw.
#[derive(Default)]
struct Seen {
    /// `queue/id` -> every delivery of that copy, in order.
    obs: HashMap<String, Vec<Obs>>,
    /// `queue/id` -> when its removal (`ACK`, or `NACK requeue=false`) was
    /// first answered `OK`, which is only once it is on disk.
    settled: HashMap<String, Instant>,
    /// `queue/id` of the copies an `ACK` was sent for, answered or not:
    /// each confirmed message must end up acked on each of its queues.
    /// (An `ACK` whose answer the kill cut off may or may not have been
    /// applied: if not, the copy comes back and is acked again.)
    ack_sent: HashSet<String>,
    /// Ids whose copy on `f3` a `NACK requeue=false` was sent for: the only
    /// ones that may reach `dlq`.
    rejected: HashSet<String>,
    /// Deliveries that came before the end of a `NACK ... delay=`.
    early: Vec<String>,
    /// Deliveries whose body does not match their id.
    corrupted: Vec<String>,
    /// Deliveries whose dead-letter headers do not fit their queue: on
    /// `dlq` they must say `rejected` from `f3`, elsewhere be absent.
    misplaced: Vec<String>,
    /// Deliveries retried with `NACK ... delay=`.
    retried: usize,
}

impl Seen {
    fn record(&mut self, queue: &str, d: &Delivery, run: usize) {
        let key = format!("{queue}/{}", d.id);
        if !check_body(&d.id, &d.body) {
            self.corrupted.push(key.clone());
        }
        let header = |name: &str| {
            d.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_ref())
        };
        let fits = if queue == "dlq" {
            header("x-death-reason") == Some(&b"rejected"[..])
                && header("x-death-queue") == Some(&b"f3"[..])
        } else {
            d.headers.iter().all(|(n, _)| !n.starts_with("x-death-"))
        };
        if !fits {
            self.misplaced.push(format!("{key} {:?}", d.headers));
        }
        self.obs.entry(key).or_default().push(Obs {
            redelivered: d.redelivered,
            deliveries: d.deliveries,
            at: Instant::now(),
            run,
        });
    }

    /// An `ACK` of `ids` on `queue` is about to be sent.
    fn acking<'a>(&mut self, queue: &str, ids: impl IntoIterator<Item = &'a String>) {
        self.ack_sent
            .extend(ids.into_iter().map(|id| format!("{queue}/{id}")));
    }

    /// The removal (`ACK`, or `NACK requeue=false`) of `ids` on `queue` was
    /// answered `OK`.
    fn settled<'a>(&mut self, queue: &str, ids: impl IntoIterator<Item = &'a String>) {
        let now = Instant::now();
        for id in ids {
            self.settled.entry(format!("{queue}/{id}")).or_insert(now);
        }
    }

    fn merge(&mut self, other: Seen) {
        for (k, v) in other.obs {
            self.obs.entry(k).or_default().extend(v);
        }
        for (k, at) in other.settled {
            let first = self.settled.entry(k).or_insert(at);
            *first = (*first).min(at);
        }
        self.ack_sent.extend(other.ack_sent);
        self.rejected.extend(other.rejected);
        self.early.extend(other.early);
        self.corrupted.extend(other.corrupted);
        self.misplaced.extend(other.misplaced);
        self.retried += other.retried;
    }
}

/// How a consumer settles what it gets.
#[derive(Clone, Copy, PartialEq)]
enum Settle {
    Ack,
    /// Ack, but retry a tenth of the fresh deliveries with `NACK delay=`.
    AckOrRetry,
    /// `NACK requeue=false` everything: dead-letter it.
    Reject,
}

const RETRY_MS: u64 = 250;

/// The earliest a message held back `ms` from now may be delivered. The
/// server's deadline is later (it reads its clock after the command is
/// sent), but it keeps deadlines in whole milliseconds of the wall clock,
/// so it may act up to 1 ms before the exact instant.
fn not_before(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms) - Duration::from_millis(1)
}

/// Consumes `queue` (GET, then settle the batch) until the connection dies,
/// recording what it saw: settlements are in flight when the kill comes.
async fn consume_until_dead(addr: &str, run: usize, queue: &str, how: Settle, seen: &mut Seen) {
    let Ok(mut c) = Client::connect(addr).await else {
        return;
    };
    // Ids retried on this connection (so in this run of the broker), with
    // the earliest moment they may come back.
    let mut held: HashMap<String, Instant> = HashMap::new();
    loop {
        // Waits up to 50 ms for a first message when the queue is empty.
        let Ok(r) = c
            .request(&format!("GET {queue} count=100 wait=50"), None)
            .await
        else {
            return;
        };
        let Some(last) = r.deliveries.last().map(|d| d.delivery_tag) else {
            continue;
        };
        let mut replies = Vec::new();
        let mut settled = Vec::new();
        let mut ack_to = None;
        for d in &r.deliveries {
            seen.record(queue, d, run);
            if let Some(not_before) = held.remove(&d.id) {
                if Instant::now() < not_before {
                    seen.early.push(format!("{queue}/{} (retry)", d.id));
                }
            }
            if how == Settle::Reject {
                seen.rejected.insert(d.id.clone());
            } else if how == Settle::AckOrRetry
                && !d.redelivered
                && crc32fast::hash(d.id.as_bytes()).is_multiple_of(10)
            {
                held.insert(d.id.clone(), not_before(RETRY_MS));
                let line = format!("NACK {} delay={RETRY_MS}", d.delivery_tag);
                replies.push(c.send(&line, None));
                seen.retried += 1;
                continue;
            }
            settled.push(d.id.clone());
            ack_to = Some(d.delivery_tag);
        }
        let settle = match (how, ack_to) {
            (Settle::Reject, _) => Some(format!("NACK {last} multiple requeue=false")),
            (_, Some(tag)) => Some(format!("ACK {tag} multiple")),
            (_, None) => None,
        };
        if let Some(line) = settle {
            if how != Settle::Reject {
                seen.acking(queue, &settled);
            }
            replies.push(c.send(&line, None));
        }
        if c.flush().await.is_err() {
            return;
        }
        for h in replies {
            match h.wait().await {
                Ok(_) => {}
                Err(e) if e.code().is_some() => panic!("settling on {queue}: {e}"),
                Err(_) => return,
            }
        }
        seen.settled(queue, &settled);
    }
}

/// One `GET` of up to 1000 messages from `queue`, acked; returns how many.
async fn get_and_ack(
    c: &mut Client,
    run: usize,
    queue: &str,
    wait_ms: u64,
    seen: &mut Seen,
) -> usize {
    let r = c
        .request(&format!("GET {queue} count=1000 wait={wait_ms}"), None)
        .await
        .expect("GET");
    let Some(last) = r.deliveries.last().map(|d| d.delivery_tag) else {
        return 0;
    };
    for d in &r.deliveries {
        seen.record(queue, d, run);
    }
    seen.acking(queue, r.deliveries.iter().map(|d| &d.id));
    c.request(&format!("ACK {last} multiple"), None)
        .await
        .expect("ACK");
    seen.settled(queue, r.deliveries.iter().map(|d| &d.id));
    r.deliveries.len()
}

/// Drains every queue of [`QUEUES`] until each reports `messages=0`: a
/// message still delayed counts in `messages=` and is waited for (on the
/// server, with `GET ... wait=`) until `deadline`.
async fn drain_all(c: &mut Client, run: usize, seen: &mut Seen, deadline: Instant) {
    loop {
        for (q, _) in QUEUES {
            while get_and_ack(c, run, q, 0, seen).await > 0 {}
        }
        let mut waiting = Vec::new();
        for (q, declare) in QUEUES {
            let r = c.request(declare, None).await.expect(declare);
            let depth = r.words.get(1).cloned().unwrap_or_default();
            if depth != "messages=0" {
                waiting.push((q, depth));
            }
        }
        let Some((q, _)) = waiting.first() else {
            return;
        };
        assert!(
            Instant::now() < deadline,
            "queues still not empty at the drain's deadline: {waiting:?}"
        );
        get_and_ack(c, run, q, 500, seen).await;
    }
}

/// What proves a SIGKILL landed inside recovery.
struct RecoveryKill {
    attempt: usize,
    /// From the spawn to the kill.
    after_spawn: Duration,
    /// From the moment the store's `db` file was seen open to the kill.
    after_open: Duration,
    /// Whether `commit.mark` was open just before the kill: sled had
    /// replayed its log and sluice's own scan of the store had begun.
    in_scan: bool,
}

/// Attempts at [`kill_during_recovery`] before the test fails.
const RECOVERY_KILL_ATTEMPTS: usize = 6;

/// Starts sluice on `dir` and SIGKILLs it while it recovers, and proves it
/// from outside (sluice logs no line when recovery starts):
///
/// - recovery had started: the process held the store's `db` file open
///   (`/proc/<pid>/fd`), which sled opens to replay its log, the first step
///   of `Broker::open`;
/// - the process was alive when the signal came: it died of SIGKILL;
/// - recovery had not finished: of everything it wrote before dying
///   (stdout and stderr are pipes, read to their end afterwards) there is
///   no `sluice::broker: recovered` log line, which `Broker::open` logs
///   as its last step, and no `listening on`.
///
/// The kill comes a random part of `typical` (the last start's time to
/// listen) after the file is seen open, so it lands in sled's log replay
/// or in sluice's scan of the store (which opens `commit.mark` first); a
/// miss is retried sooner (the last attempts at once), and never landing
/// fails the test.
async fn kill_during_recovery(dir: &Path, rng: &mut Rng, typical: Duration) -> RecoveryKill {
    let dir_path = std::fs::canonicalize(dir).expect("data dir");
    let (db, mark) = (dir_path.join("db"), dir_path.join("commit.mark"));
    for attempt in 1..=RECOVERY_KILL_ATTEMPTS {
        let spawned = Instant::now();
        let mut child = serve(dir, &[])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sluice");
        let pid = child.id().expect("pid");
        let path = db.clone();
        let opened = tokio::task::spawn_blocking(move || wait_until_open(pid, &path))
            .await
            .expect("poll /proc");
        let pause = if attempt + 2 > RECOVERY_KILL_ATTEMPTS {
            Duration::ZERO
        } else {
            typical.mul_f64(rng.unit() / f64::from(1u32 << attempt))
        };
        if opened.is_some() && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let in_scan = holds_open(pid, &mark) == Some(true);
        let _ = child.start_kill();
        let killed_at = Instant::now();
        let status = child.wait().await.expect("wait");
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = child.stdout.take() {
            s.read_to_string(&mut out).await.expect("stdout");
        }
        if let Some(mut s) = child.stderr.take() {
            s.read_to_string(&mut err).await.expect("stderr");
        }
        let err = strip_ansi(&err);
        // 9 = SIGKILL: it was still running when the signal came.
        assert_eq!(
            status.signal(),
            Some(9),
            "sluice did not die of the SIGKILL ({status:?}): {err}"
        );
        let recovered = err.lines().any(|l| l.contains("sluice::broker: recovered"));
        let listening = out.contains("listening on");
        match opened {
            Some(opened) if !recovered && !listening => {
                return RecoveryKill {
                    attempt,
                    after_spawn: killed_at - spawned,
                    after_open: killed_at - opened,
                    in_scan,
                }
            }
            _ => eprintln!(
                "crash test: recovery kill attempt {attempt} missed the window \
                 (db seen open: {}, recovered: {recovered}, listening: {listening}, \
                 pause {pause:?}, killed {:?} after the spawn)",
                opened.is_some(),
                killed_at - spawned
            ),
        }
    }
    panic!("no SIGKILL landed inside recovery in {RECOVERY_KILL_ATTEMPTS} attempts")
}

/// The classification at the end, each a list of examples.
#[derive(Default)]
struct Verdict {
    lost: Vec<String>,
    dup: Vec<String>,
    unexpected: Vec<String>,
    corrupted: Vec<String>,
    resurrected: Vec<String>,
    early: Vec<String>,
    /// Unflagged repeats on `dlq` made by a second rejection (see
    /// [`classify`]): reported, not faults.
    dead_lettered_again: Vec<String>,
}

/// Lost: a confirmed message with a copy that was never acked on one of its
/// queues (the drain acks whatever is left). The copy on `f3` is acked
/// there, or rejected and then acked on `dlq`; merely seeing a copy once
/// does not count, it must not vanish before it is acked.
fn classify(published: &Published, seen: &Seen, last_run: usize) -> Verdict {
    let mut v = Verdict::default();
    let acked = |q: &str, id: &str| seen.ack_sent.contains(&format!("{q}/{id}"));
    for id in &published.confirmed {
        let plan = &published.plans[id];
        if !plan.fan {
            if !acked("q", id) {
                v.lost.push(format!("q/{id}"));
            }
            continue;
        }
        for q in ["f1", "f2"] {
            if !acked(q, id) {
                v.lost.push(format!("{q}/{id}"));
            }
        }
        if !acked("f3", id) && !acked("dlq", id) {
            v.lost.push(format!("f3|dlq/{id}"));
        }
    }
    for (key, obs) in &seen.obs {
        let (q, id) = key.split_once('/').expect("queue/id");
        match published.plans.get(id) {
            None => v.unexpected.push(format!("{key}: never sent")),
            Some(plan) if !plan.may_be_in(q) => v.unexpected.push(format!("{key}: misrouted")),
            Some(plan) => {
                if let Some(due) = plan.due {
                    if obs.iter().any(|o| o.at < due) {
                        v.early.push(format!("{key}: before its delay"));
                    }
                }
            }
        }
        if q == "dlq" && !seen.rejected.contains(id) {
            v.unexpected
                .push(format!("{key}: dead-lettered but never rejected"));
        }
        // A delivery after the first must be flagged. That includes a dead
        // letter made again: the broker delivers a dead letter before the
        // move is on disk (as it does a publish before its confirm), so a
        // kill can undo the move; the copy then comes back on `f3`, is
        // rejected again, and its new dead letter must be flagged, since
        // the first one may have been seen. `dead_lettered_again` counts
        // those (flagged, so not duplicates).
        let f3 = seen.obs.get(&format!("f3/{id}"));
        for (i, o) in obs.iter().enumerate().skip(1) {
            let prev = obs[i - 1].at;
            if q == "dlq" && f3.is_some_and(|f3| f3.iter().any(|r| r.at > prev && r.at < o.at)) {
                v.dead_lettered_again.push(format!("{key}: {obs:?}"));
            }
            if !(o.redelivered && o.deliveries >= 2) {
                v.dup
                    .push(format!("{key}: duplicate without redelivered: {obs:?}"));
            }
        }
        if let Some(settled) = seen.settled.get(key) {
            if obs.iter().any(|o| o.at > *settled) {
                v.resurrected.push(format!(
                    "{key}: delivered after its removal was confirmed: {obs:?}"
                ));
            }
        }
        // A dead-letter move is atomic: never in both queues at once.
        let at_end = |obs: &[Obs]| obs.iter().any(|o| o.run == last_run);
        if q == "dlq" && at_end(obs) {
            if let Some(f3) = seen.obs.get(&format!("f3/{id}")).filter(|f3| at_end(f3)) {
                v.dup
                    .push(format!("{id}: in f3 and dlq at once: {f3:?} {obs:?}"));
            }
        }
    }
    v.unexpected.extend(seen.misplaced.iter().cloned());
    v.corrupted.extend(seen.corrupted.iter().cloned());
    v.early.extend(seen.early.iter().cloned());
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_confirmed_publishing_loses_no_confirmed_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::from_env();
    let seed = rng.0;
    let mut broker = start(dir.path()).await;
    {
        let mut c = Client::connect(&broker.addr).await.expect("connect");
        for line in [
            "DECLARE EXCHANGE fan fanout durable",
            "DECLARE EXCHANGE dlx fanout durable",
        ]
        .into_iter()
        .chain(QUEUES.iter().map(|(_, declare)| *declare))
        .chain(["BIND f1 fan", "BIND f2 fan", "BIND f3 fan", "BIND dlq dlx"])
        {
            c.request(line, None).await.expect(line);
        }
    }
    let mut published = Published::default();
    let mut seen = Seen::default();
    let mut kills: Vec<Instant> = Vec::new();
    let mut recovery_kills = Vec::new();
    let mut restart_ms = Vec::new();
    let cycles = cycles();
    for cycle in 0..cycles {
        let addr = broker.addr.clone();
        let (mut p0, mut p1) = (Published::default(), Published::default());
        let mut seen_q = Seen::default();
        let mut seen_f1 = Seen::default();
        let mut seen_f3 = Seen::default();
        let mut seen_dlq = Seen::default();
        // A random moment, once publishing is well under way.
        let (from, span) = if long_mode() {
            (500, 2000)
        } else {
            (300, 1000)
        };
        let kill_after = Duration::from_millis(from + (rng.unit() * span as f64) as u64);
        let publishers = async {
            tokio::join!(
                publish_until_dead(&addr, cycle, 0, &mut p0),
                publish_until_dead(&addr, cycle, 1, &mut p1)
            );
        };
        let consumers = async {
            tokio::join!(
                consume_until_dead(&addr, cycle, "q", Settle::AckOrRetry, &mut seen_q),
                consume_until_dead(&addr, cycle, "f1", Settle::Ack, &mut seen_f1),
                consume_until_dead(&addr, cycle, "f3", Settle::Reject, &mut seen_f3),
                consume_until_dead(&addr, cycle, "dlq", Settle::Ack, &mut seen_dlq)
            );
        };
        let killer = async {
            tokio::time::sleep(kill_after).await;
            broker.child.start_kill().expect("SIGKILL");
            let killed = Instant::now();
            let _ = broker.child.wait().await;
            killed
        };
        let ((), (), killed) = tokio::join!(publishers, consumers, killer);
        kills.push(killed);
        let confirmed = p0.confirmed.len() + p1.confirmed.len();
        assert!(
            confirmed > 0,
            "cycle {cycle}: nothing was confirmed before the kill"
        );
        published.merge(p0);
        published.merge(p1);
        for s in [seen_q, seen_f1, seen_f3, seen_dlq] {
            seen.merge(s);
        }
        if cycle % 3 == 2 {
            let k = kill_during_recovery(dir.path(), &mut rng, broker.ready_in).await;
            let phase = if k.in_scan {
                "sluice's scan of the store"
            } else {
                "sled's log replay"
            };
            eprintln!(
                "crash test: cycle {cycle}: SIGKILL inside recovery, in {phase} (attempt {}, \
                 {} ms after the spawn, {} ms after the db file was open; no `recovered`, \
                 no `listening on`)",
                k.attempt,
                k.after_spawn.as_millis(),
                k.after_open.as_millis()
            );
            recovery_kills.push(k);
        }
        broker = start(dir.path()).await;
        restart_ms.push(broker.ready_in.as_millis());
    }
    // Wait for every delayed message, however late its delay ends.
    let last_due = published
        .plans
        .values()
        .filter_map(|p| p.due)
        .max()
        .unwrap_or_else(Instant::now);
    let deadline = last_due.max(Instant::now()) + Duration::from_secs(30);
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    drain_all(&mut c, cycles, &mut seen, deadline).await;

    let v = classify(&published, &seen, cycles);
    let confirmed = published.confirmed.len();
    let delayed: Vec<&Plan> = published
        .confirmed
        .iter()
        .map(|id| &published.plans[id])
        .filter(|p| p.due.is_some())
        .collect();
    // Delayed messages still held back when their cycle's kill came.
    let delayed_over_kill = delayed
        .iter()
        .filter(|p| p.due.is_some_and(|due| due > kills[p.cycle]))
        .count();
    let found = |q: &str| {
        seen.obs
            .keys()
            .filter(|k| k.split_once('/').is_some_and(|(kq, _)| kq == q))
            .count()
    };
    let redelivered: usize = seen
        .obs
        .values()
        .map(|obs| obs.iter().filter(|o| o.redelivered).count())
        .sum();
    eprintln!(
        "crash test: seed={seed} cycles={cycles} recovery_kills={} (in_replay={} in_scan={}) \
         sent={} confirmed={confirmed} \
         delayed={} delayed_over_kill={delayed_over_kill} found q={} f1={} f2={} f3={} \
         dead_lettered={} dead_lettered_again={} retried={} redelivered={redelivered} \
         restart_ms_max={} lost={} dup={} unexpected={} corrupted={} resurrected={} early={}",
        recovery_kills.len(),
        recovery_kills.iter().filter(|k| !k.in_scan).count(),
        recovery_kills.iter().filter(|k| k.in_scan).count(),
        published.plans.len(),
        delayed.len(),
        found("q"),
        found("f1"),
        found("f2"),
        found("f3"),
        found("dlq"),
        v.dead_lettered_again.len(),
        seen.retried,
        restart_ms.iter().max().copied().unwrap_or(0),
        v.lost.len(),
        v.dup.len(),
        v.unexpected.len(),
        v.corrupted.len(),
        v.resurrected.len(),
        v.early.len(),
    );
    let some = |l: &[String]| l[..l.len().min(20)].to_vec();
    assert!(v.lost.is_empty(), "confirmed but lost: {:?}", some(&v.lost));
    assert!(v.dup.is_empty(), "unflagged duplicates: {:?}", some(&v.dup));
    assert!(
        v.unexpected.is_empty(),
        "unexpected: {:?}",
        some(&v.unexpected)
    );
    assert!(
        v.corrupted.is_empty(),
        "corrupted: {:?}",
        some(&v.corrupted)
    );
    assert!(
        v.resurrected.is_empty(),
        "resurrected: {:?}",
        some(&v.resurrected)
    );
    assert!(v.early.is_empty(), "delivered early: {:?}", some(&v.early));
    // The load must have exercised what it claims to.
    let min_confirmed = if cycles >= 20 { 100_000 } else { 1000 };
    assert!(
        confirmed >= min_confirmed,
        "too few confirms to mean anything: {confirmed}"
    );
    assert!(found("dlq") > 0, "nothing was dead-lettered");
    assert!(
        delayed_over_kill > 0,
        "no delayed message was waiting at a kill"
    );
    assert!(seen.retried > 0, "nothing was retried with a delay");
    assert_eq!(recovery_kills.len(), cycles / 3, "kills inside recovery");
}

/// Drains a queue with GET, acking everything; returns id -> deliveries seen.
async fn drain(c: &mut Client, queue: &str, seen: &mut HashMap<String, Vec<(bool, u32)>>) {
    loop {
        let r = c
            .request(&format!("GET {queue} count=1000"), None)
            .await
            .expect("GET");
        if r.deliveries.is_empty() {
            break;
        }
        let last = r.deliveries.last().map(|d| d.delivery_tag).unwrap_or(0);
        for d in r.deliveries {
            assert!(check_body(&d.id, &d.body), "corrupted body for {}", d.id);
            seen.entry(format!("{queue}/{}", d.id))
                .or_default()
                .push((d.redelivered, d.deliveries));
        }
        c.request(&format!("ACK {last} multiple"), None)
            .await
            .expect("ACK");
    }
}

/// Rejects (NACK requeue=false, 100 at a time) everything on `src` until
/// the connection dies; counts the rejections confirmed.
async fn reject_until_dead(addr: &str, rejected: &std::sync::atomic::AtomicUsize) {
    let Ok(mut c) = Client::connect(addr).await else {
        return;
    };
    loop {
        let Ok(r) = c.request("GET src count=100", None).await else {
            return;
        };
        let Some(last) = r.deliveries.last().map(|d| d.delivery_tag) else {
            return;
        };
        let n = r.deliveries.len();
        if c.request(&format!("NACK {last} multiple requeue=false"), None)
            .await
            .is_err()
        {
            return;
        }
        rejected.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_dead_lettering_leaves_each_message_in_exactly_one_queue() {
    const TOTAL: usize = 6000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = start(dir.path()).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    for line in [
        "DECLARE EXCHANGE dlx fanout durable",
        "DECLARE QUEUE dlq durable",
        "BIND dlq dlx",
        "DECLARE QUEUE src durable dead-letter=dlx",
    ] {
        c.request(line, None).await.expect(line);
    }
    let mut handles = std::collections::VecDeque::new();
    for i in 0..TOTAL {
        let id = format!("d{i}");
        handles.push_back(c.send_publish("", "src", &format!("id={id}"), &body_for(&id)));
        if handles.len() >= WINDOW || i + 1 == TOTAL {
            c.flush().await.expect("flush");
            while let Some(h) = handles.pop_front() {
                h.wait().await.expect("confirm");
            }
        }
    }
    drop(c);
    // Kill once a quarter has been dead-lettered, while rejections stream.
    let rejected = std::sync::atomic::AtomicUsize::new(0);
    let addr = broker.addr.clone();
    let killer = async {
        while rejected.load(std::sync::atomic::Ordering::SeqCst) < TOTAL / 4 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        broker.child.start_kill().expect("SIGKILL");
        let _ = broker.child.wait().await;
    };
    tokio::join!(reject_until_dead(&addr, &rejected), killer);
    let confirmed_rejections = rejected.load(std::sync::atomic::Ordering::SeqCst);
    let broker = start(dir.path()).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    let mut seen = HashMap::new();
    for q in ["src", "dlq"] {
        drain(&mut c, q, &mut seen).await;
    }
    let mut where_found: HashMap<String, Vec<String>> = HashMap::new();
    for key in seen.keys() {
        if let Some((q, id)) = key.split_once('/') {
            where_found
                .entry(id.to_string())
                .or_default()
                .push(q.to_string());
        }
    }
    let in_dlq = where_found.values().filter(|qs| qs == &&["dlq"]).count();
    let missing: Vec<String> = (0..TOTAL)
        .map(|i| format!("d{i}"))
        .filter(|id| !where_found.contains_key(id))
        .collect();
    let doubled: Vec<_> = where_found.iter().filter(|(_, qs)| qs.len() > 1).collect();
    eprintln!(
        "dead-letter crash test: total={TOTAL} rejections_confirmed={confirmed_rejections} in_dlq={in_dlq} missing={} in_both={}",
        missing.len(),
        doubled.len()
    );
    assert!(
        missing.is_empty(),
        "in neither queue: {:?}",
        &missing[..missing.len().min(20)]
    );
    assert!(doubled.is_empty(), "in both queues: {doubled:?}");
    assert!(
        in_dlq >= confirmed_rejections,
        "confirmed rejections lost: {in_dlq} in the DLQ, {confirmed_rejections} confirmed"
    );
    for (key, deliveries) in &seen {
        if key.starts_with("dlq/") {
            assert_eq!(deliveries.len(), 1, "{key} delivered twice from the DLQ");
        }
    }
}

#[tokio::test]
async fn a_crash_does_not_use_up_the_delivery_limit_of_an_undelivered_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = start(dir.path()).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    c.request("DECLARE QUEUE once durable delivery-limit=1", None)
        .await
        .expect("declare");
    c.publish("", "once", "id=never-delivered", b"job")
        .await
        .expect("publish");
    drop(c);
    broker.child.start_kill().expect("SIGKILL");
    let _ = broker.child.wait().await;
    let broker = start(dir.path()).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    let r = c.request("GET once", None).await.expect("GET");
    assert_eq!(r.deliveries.len(), 1, "dead-lettered by the crash alone");
    let d = &r.deliveries[0];
    assert_eq!(d.id, "never-delivered");
    assert!(d.redelivered, "after a crash it may have been delivered");
}

/// Pages a backlog out, crashes, then stops cleanly before the paged-out
/// part was read back: those messages must still come flagged as possibly
/// delivered after the next start (the flag is applied when a message is
/// read back, so the clean stop must not hide the crash).
#[tokio::test]
async fn a_paged_out_backlog_keeps_its_crash_flag_across_a_clean_stop() {
    const SMALL: [&str; 2] = ["--queue-memory", "4096"];
    const N: usize = 1500;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = start_with(dir.path(), &SMALL).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    c.request("DECLARE QUEUE backlog durable", None)
        .await
        .expect("declare");
    for i in 0..N {
        c.publish("", "backlog", &format!("id=m-{i}"), b"x")
            .await
            .expect("publish");
    }
    drop(c);
    broker.child.start_kill().expect("SIGKILL");
    let _ = broker.child.wait().await;

    let broker = start_with(dir.path(), &SMALL).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    let r = c
        .request("GET backlog count=100 ack=auto", None)
        .await
        .expect("GET");
    assert_eq!(r.deliveries.len(), 100);
    for (i, d) in r.deliveries.iter().enumerate() {
        assert_eq!(d.id, format!("m-{i}"));
        assert!(d.redelivered, "{} after a crash", d.id);
    }
    drop(c);
    stop_cleanly(broker).await;

    let broker = start_with(dir.path(), &SMALL).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    let mut next = 100;
    while next < N {
        let r = c
            .request("GET backlog count=1000 ack=auto", None)
            .await
            .expect("GET");
        assert!(!r.deliveries.is_empty(), "backlog ended at {next}");
        for d in &r.deliveries {
            assert_eq!(d.id, format!("m-{next}"));
            assert!(d.redelivered, "{} lost its crash flag", d.id);
            // Never delivered: one possible delivery for the crash, this one.
            assert_eq!(d.deliveries, 2, "{} counted the crash twice", d.id);
            next += 1;
        }
    }
}

/// SIGTERM: the clean shutdown.
pub(crate) async fn stop_cleanly(mut broker: Broker) {
    let pid = broker.child.id().expect("pid").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill -TERM");
    assert!(status.success());
    let exit = broker.child.wait().await.expect("wait");
    assert!(exit.success(), "clean stop: {exit:?}");
}

/// Runs `sluice serve` on `dir` expecting it to refuse: returns its stderr.
pub(crate) async fn refused(dir: &std::path::Path) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        serve(dir, &[]).env("RUST_LOG", "error").output(),
    )
    .await
    .expect("a damaged store must be refused, not served")
    .expect("run sluice");
    assert_eq!(out.status.code(), Some(1), "exit status of a refused start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub(crate) fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let kind = e.file_type().expect("type");
        if kind.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        } else if kind.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        }
    }
}

/// sled 0.34 takes a damaged log record for the torn end of its log and
/// would start without everything after it; the commit mark beside it
/// turns that into a refusal to start, with a clear error and exit 1.
#[tokio::test]
async fn a_damaged_or_truncated_store_is_refused_not_served_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    c.request("DECLARE QUEUE q durable", None)
        .await
        .expect("declare");
    for i in 0..300 {
        c.publish("", "q", &format!("id=m{i}"), &body_for(&format!("m{i}")))
            .await
            .expect("publish");
    }
    drop(c);
    stop_cleanly(broker).await;
    let db = |d: &std::path::Path| d.join("db");
    let len = std::fs::metadata(db(dir.path())).expect("db").len();

    // One flipped bit in the middle of the log.
    let flipped = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), flipped.path());
    let mut bytes = std::fs::read(db(flipped.path())).expect("read db");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(db(flipped.path()), bytes).expect("write db");
    let err = refused(flipped.path()).await;
    assert!(err.contains("confirmed are missing"), "{err}");

    // The log cut in half.
    let cut = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), cut.path());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(db(cut.path()))
        .expect("open db");
    f.set_len(len / 2).expect("truncate");
    drop(f);
    let err = refused(cut.path()).await;
    assert!(err.contains("confirmed are missing"), "{err}");

    // The undamaged directory still serves everything.
    let broker = start(dir.path()).await;
    let mut c = Client::connect(&broker.addr).await.expect("connect");
    let r = c
        .request("DECLARE QUEUE q durable", None)
        .await
        .expect("declare");
    assert_eq!(r.words, ["q", "messages=300", "consumers=0"]);
}
