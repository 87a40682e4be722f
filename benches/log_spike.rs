//! Spike for issue 17: three ways to keep persistent messages, measured
//! directly (no broker, no network), on the workloads the targets
//! name.
//!
//! Shapes:
//! - `0`: today's layout, the crate's own [`SledStore`]: one sled key per
//!   message (meta with the body inline), one `apply` per publish and per
//!   ack (as the broker does), barrier = [`Durable::sync`] (sled `flush`,
//!   then `fdatasync` of sled's `db` file).
//! - `A`: sled chunks. One sled value per group commit and queue (split into
//!   chunks of at most `--chunk-kib`, so that a leaf node, up to 17 values,
//!   stays under sled's 128 KiB blob threshold: sled never fsyncs its blob
//!   files), plus a small per-chunk ack record (count + bitmap) under its own
//!   key; a round is one `sled::Batch`; a chunk and its ack record go once
//!   all of it is acked. Barrier = `flush` + `fdatasync` of `db`, as shape 0.
//! - `B`: segment files. Per queue a directory of append-only segments of at
//!   most `--seg-mib`, records framed `[type u8][len u32][crc32 over
//!   type‖len‖payload][payload]`, a footer record (first seq, count) when a
//!   segment is sealed; acks appended as 8-byte seqs to a per-segment ack
//!   file; a segment and its ack file are unlinked once all of it is acked.
//!   Barrier = `fdatasync` of each file written since the last one, and an
//!   `fsync` of the directory after creating or unlinking files.
//!
//! Workloads: `queue`, `backlog`, `fanout` (shape B only: a copy per queue
//! vs a shared body log with per-queue index records), `rawdisk` (1 MiB
//! writes each followed by `fdatasync`), `groupsync` (the group commit's
//! barrier for `--queues` busy queues: `--sync per-file|syncfs|wal`), and
//! `reopen` (used by `backlog`, in a child process, to time a restart).
//!
//! Run: `cargo bench --bench log_spike -- <workload> <shape> [options]`.
//! Results: `docs/message-log-spike.md`.

// A measurement program: errors end the run through `?` in `main`; no
// public API, so no docs lint.
#![allow(missing_docs, unsafe_code)]

use std::collections::BTreeMap;
use std::error::Error;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::protocol::command::QueueArgs;
use sluice::store::sled::DEFAULT_CACHE_BYTES;
use sluice::store::TopologyStore;
use sluice::store::{Durable, MessageBatch, MessageMeta, MessageStore, QueueDef, SledStore};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type Res<T> = Result<T, Box<dyn Error>>;

/// Body bytes per message.
const BODY: usize = 100;
/// Record payload: seq u64, id [u8; 16], timestamp u64, body.
const PAYLOAD: usize = 8 + 16 + 8 + BODY;
/// Frame header: type, len, crc.
const FRAME: usize = 1 + 4 + 4;
/// Largest record accepted when parsing.
const MAX_RECORD: usize = 1 << 20;
/// Record types.
const T_MSG: u8 = 1;
const T_FOOTER: u8 = 2;
const T_INDEX: u8 = 3;
/// `groupsync`'s write-ahead file: the header of one queue's records in a
/// round (queue u32, count u32).
const T_WAL_QUEUE: u8 = 4;
/// Segment file header: magic and first seq.
const SEG_MAGIC: &[u8; 8] = b"SLSEG001";
const SEG_HEADER: usize = 16;
/// Footer record: first seq, count.
const FOOTER_LEN: usize = FRAME + 16;
/// Shape 0's queue id.
const QUEUE_ID: u64 = 1;

// ---------------------------------------------------------------- options

#[derive(Debug, Clone)]
struct Opts {
    workload: String,
    shape: String,
    count: u64,
    batch: u64,
    secs: f64,
    lag: u64,
    seg_mib: u64,
    chunk_kib: u64,
    read_kib: usize,
    queues: u64,
    mib: u64,
    dir: Option<PathBuf>,
    json: bool,
    cold: bool,
    expect: u64,
    /// `--secs` was given (`groupsync` defaults to 10 s, the others to 20).
    secs_set: bool,
    /// `groupsync`'s barrier: per-file, syncfs or wal.
    sync: String,
    /// `groupsync --sync wal`: a background thread fdatasyncs the queue
    /// files every this many rounds (0: never).
    seg_sync_rounds: u64,
}

fn parse_opts() -> Res<Opts> {
    let mut o = Opts {
        workload: String::new(),
        shape: String::new(),
        count: 10_000_000,
        batch: 1000,
        secs: 20.0,
        lag: 10,
        seg_mib: 8,
        chunk_kib: 6,
        read_kib: 1024,
        queues: 4,
        mib: 1024,
        dir: None,
        json: false,
        cold: false,
        expect: 0,
        secs_set: false,
        sync: "per-file".to_owned(),
        seg_sync_rounds: 100,
    };
    let mut pos = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            // cargo bench passes --bench to harness = false programs.
            "--bench" => {}
            "--json" => o.json = true,
            "--cold" => o.cold = true,
            "--count" => o.count = val()?.replace('_', "").parse()?,
            "--batch" => o.batch = val()?.parse()?,
            "--secs" => {
                o.secs = val()?.parse()?;
                o.secs_set = true;
            }
            "--sync" => o.sync = val()?,
            "--seg-sync-rounds" => o.seg_sync_rounds = val()?.parse()?,
            "--lag" => o.lag = val()?.parse()?,
            "--seg-mib" => o.seg_mib = val()?.parse()?,
            "--chunk-kib" => o.chunk_kib = val()?.parse()?,
            "--read-kib" => o.read_kib = val()?.parse()?,
            "--queues" => o.queues = val()?.parse()?,
            "--mib" => o.mib = val()?.parse()?,
            "--expect" => o.expect = val()?.parse()?,
            "--dir" => o.dir = Some(PathBuf::from(val()?)),
            s if s.starts_with("--") => return Err(format!("unknown option {s}").into()),
            _ => pos.push(a),
        }
    }
    o.workload = pos.first().cloned().unwrap_or_default();
    o.shape = pos.get(1).cloned().unwrap_or_default();
    Ok(o)
}

// ---------------------------------------------------------------- output

/// One result line: `key=value` pairs in order, or a JSON object.
struct Line(Vec<(String, String)>);

impl Line {
    fn new() -> Line {
        Line(Vec::new())
    }
    fn s(&mut self, k: &str, v: impl ToString) -> &mut Line {
        self.0.push((k.to_owned(), v.to_string()));
        self
    }
    fn f(&mut self, k: &str, v: f64) -> &mut Line {
        self.s(k, format!("{v:.1}"))
    }
    fn print(&self, json: bool) {
        if json {
            let map: serde_json::Map<String, serde_json::Value> = self
                .0
                .iter()
                .map(|(k, v)| {
                    let val = v
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map_or_else(|| serde_json::Value::String(v.clone()), Into::into);
                    (k.clone(), val)
                })
                .collect();
            println!("{}", serde_json::Value::Object(map));
        } else {
            let s: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("{}", s.join(" "));
        }
    }
}

// ---------------------------------------------------------------- process figures

fn proc_status_kib(field: &str) -> u64 {
    let s = fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// (wchar, write_bytes) from /proc/self/io.
fn proc_io() -> (u64, u64) {
    let s = fs::read_to_string("/proc/self/io").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("wchar:"), get("write_bytes:"))
}

/// CPU time (user + system, all threads) this process has used, in µs.
fn cpu_us() -> u64 {
    let s = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the
    // 14th field of the line, stime the 15th.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 1_000_000 / hz
}

/// Samples VmRSS every 100 ms; `phase` resets the sampled peak and VmHWM.
struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak_kib.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(proc_status_kib("VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssSampler { peak_kib, stop }
    }
    /// Starts a phase: resets the sampled peak and the kernel's VmHWM.
    fn phase(&self) {
        let _ = fs::write("/proc/self/clear_refs", "5");
        self.peak_kib
            .store(proc_status_kib("VmRSS:"), Ordering::Relaxed);
    }
    /// (sampled peak MiB, VmHWM MiB) since the phase began.
    fn peak(&self) -> (f64, f64) {
        let now = proc_status_kib("VmRSS:");
        let p = self.peak_kib.fetch_max(now, Ordering::Relaxed).max(now);
        (p as f64 / 1024.0, proc_status_kib("VmHWM:") as f64 / 1024.0)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Bytes the files under `dir` take on disk (allocated blocks).
fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                if m.is_dir() {
                    total += disk_usage(&e.path());
                } else {
                    total += m.blocks() * 512;
                }
            }
        }
    }
    total
}

/// Files under `dir` (recursively) whose path contains `part`.
fn count_files(dir: &Path, part: &str) -> u64 {
    let mut n = 0;
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                n += count_files(&p, part);
            } else if p.to_string_lossy().contains(part) {
                n += 1;
            }
        }
    }
    n
}

/// Drops the page cache of every file under `dir` (`posix_fadvise
/// DONTNEED`; the files are synced, so their pages are clean).
fn drop_cache(dir: &Path) -> Res<()> {
    use std::os::fd::AsRawFd;
    for e in fs::read_dir(dir)?.flatten() {
        let p = e.path();
        if p.is_dir() {
            drop_cache(&p)?;
        } else {
            let f = File::open(&p)?;
            f.sync_data()?;
            // SAFETY: a plain syscall on a valid, open descriptor.
            let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            if r != 0 {
                return Err(format!("posix_fadvise: {r}").into());
            }
        }
    }
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// p50 and p99 of `v` (sorted in place), in µs.
fn pct(v: &mut [u64]) -> (u64, u64, u64) {
    if v.is_empty() {
        return (0, 0, 0);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (at(0.5), at(0.99), v[v.len() - 1])
}

// ---------------------------------------------------------------- records

/// The payload of message `seq`: seq, a 16-byte id, a timestamp, a body.
fn payload(seq: u64, out: &mut [u8; PAYLOAD]) {
    out[0..8].copy_from_slice(&seq.to_le_bytes());
    out[8..16].copy_from_slice(&seq.to_be_bytes());
    out[16..24].copy_from_slice(&(!seq).to_le_bytes());
    out[24..32].copy_from_slice(&(1_700_000_000_000 + seq).to_le_bytes());
    out[32..].fill(b'a' + (seq % 26) as u8);
}

/// Checks a message payload read back: its length, its seq, its body.
fn check_payload(expected: u64, p: &[u8]) -> Res<()> {
    if p.len() != PAYLOAD {
        return Err(format!("seq {expected}: payload of {} bytes", p.len()).into());
    }
    let seq = u64::from_le_bytes(p[0..8].try_into()?);
    if seq != expected {
        return Err(format!("expected seq {expected}, read {seq}").into());
    }
    if p[PAYLOAD - 1] != b'a' + (seq % 26) as u8 {
        return Err(format!("seq {seq}: wrong body").into());
    }
    Ok(())
}

fn frame(out: &mut Vec<u8>, typ: u8, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&[typ]);
    h.update(&len);
    h.update(payload);
    out.push(typ);
    out.extend_from_slice(&len);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// Parses one framed record at the start of `b`: `Ok(None)` if `b` holds
/// only part of it, an error if it is invalid.
fn parse(b: &[u8]) -> Res<Option<(u8, &[u8], usize)>> {
    if b.len() < FRAME {
        return Ok(None);
    }
    let typ = b[0];
    let len = u32::from_le_bytes(b[1..5].try_into()?) as usize;
    if typ == 0 || len == 0 || len > MAX_RECORD {
        return Err(format!("invalid record header: type {typ}, len {len}").into());
    }
    if b.len() < FRAME + len {
        return Ok(None);
    }
    let crc = u32::from_le_bytes(b[5..9].try_into()?);
    let mut h = crc32fast::Hasher::new();
    h.update(&b[0..5]);
    h.update(&b[FRAME..FRAME + len]);
    if h.finalize() != crc {
        return Err("record CRC mismatch".into());
    }
    Ok(Some((typ, &b[FRAME..FRAME + len], FRAME + len)))
}

// ---------------------------------------------------------------- the shapes

/// A single persistent queue, as each shape stores it.
trait Shape {
    /// Appends message `seq` (seqs are consecutive from 1).
    fn publish(&mut self, seq: u64, payload: &[u8; PAYLOAD]) -> Res<()>;
    /// Settles message `seq` (published before the last barrier).
    fn ack(&mut self, seq: u64) -> Res<()>;
    /// Makes every earlier publish and ack durable.
    fn barrier(&mut self) -> Res<()>;
    /// Reads up to `n` messages from the read cursor, in order, checking
    /// each against `*next` (and advancing it). Returns how many it read.
    fn read(&mut self, n: u64, next: &mut u64) -> Res<u64>;
    /// Messages stored and not acked (as rebuilt at open).
    fn unacked(&self) -> u64;
    /// Sub-figures worth reporting (e.g. sled blob files).
    fn extra(&self, _line: &mut Line) {}
}

fn open_shape(o: &Opts, dir: &Path) -> Res<Box<dyn Shape>> {
    Ok(match o.shape.as_str() {
        "0" => Box::new(Sled0::open(dir)?),
        "A" => Box::new(SledChunks::open(dir, o.chunk_kib * 1024)?),
        "B" => Box::new(SegLog::open(
            &dir.join("q1"),
            o.seg_mib << 20,
            o.read_kib << 10,
        )?),
        s => return Err(format!("unknown shape {s:?} (0, A or B)").into()),
    })
}

fn shape_label(o: &Opts) -> String {
    match o.shape.as_str() {
        "A" => format!("A(chunk={}KiB)", o.chunk_kib),
        "B" => format!("B(seg={}MiB)", o.seg_mib),
        s => s.to_owned(),
    }
}

// --- shape 0: today's SledStore

struct Sled0 {
    store: SledStore,
    body: Vec<u8>,
    read_next: u64,
    unacked: u64,
}

impl Sled0 {
    fn open(dir: &Path) -> Res<Sled0> {
        let store = SledStore::open(dir, DEFAULT_CACHE_BYTES)?;
        let def = QueueDef {
            name: "jobs".into(),
            id: QUEUE_ID,
            auto_delete: false,
            args: QueueArgs::default(),
        };
        store.put_queue(&def)?;
        // What the broker does at start: sum up the stored copies.
        let recovered = store.recover(&[def])?;
        // StoredQueue's fields are crate-private; its Debug form is not.
        let (unacked, first) = match recovered.stored.first() {
            Some(q) => {
                let d = format!("{q:?}");
                let field = |name: &str| -> u64 {
                    d.split(&format!("{name}: "))
                        .nth(1)
                        .and_then(|s| s.split([',', ' ']).next())
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0)
                };
                (field("count"), field("first_seq"))
            }
            None => (0, 1),
        };
        Ok(Sled0 {
            store,
            body: vec![b'x'; BODY],
            read_next: first,
            unacked,
        })
    }
}

fn meta(seq: u64) -> MessageMeta {
    MessageMeta {
        published_at: 1_700_000_000_000 + seq,
        group: None,
        body_id: seq,
        id: format!("{seq:016x}"),
        exchange: String::new(),
        routing_key: "jobs".into(),
        headers: Vec::new(),
        deliveries: 0,
        expires_at: None,
        not_before: None,
        priority: 0,
        volatile: false,
    }
}

impl Shape for Sled0 {
    fn publish(&mut self, seq: u64, _payload: &[u8; PAYLOAD]) -> Res<()> {
        let m = meta(seq);
        // One small body for its only copy: the store keeps it inline.
        self.store.apply(&MessageBatch {
            put_bodies: vec![(seq, &self.body)],
            put_metas: vec![(QUEUE_ID, seq, &m)],
            ..MessageBatch::default()
        })?;
        Ok(())
    }
    fn ack(&mut self, seq: u64) -> Res<()> {
        // As the broker's Queue::add_removals does for a sole copy.
        self.store.apply(&MessageBatch {
            del_metas: vec![(QUEUE_ID, seq)],
            del_bodies: vec![(seq, BODY)],
            ..MessageBatch::default()
        })?;
        Ok(())
    }
    fn barrier(&mut self) -> Res<()> {
        Durable::sync(&self.store)?;
        Ok(())
    }
    fn read(&mut self, n: u64, next: &mut u64) -> Res<u64> {
        // The broker pages a queue in with `load`, a window at a time.
        let got = self
            .store
            .load(QUEUE_ID, self.read_next, self.read_next + n, n as usize)?;
        let got = got.len() as u64;
        // RecoveredMessage's fields are crate-private: `load` returned `got`
        // copies with seqs in [read_next, read_next + n), in order, so
        // `got == n` means exactly those seqs (and their records passed
        // the codec's CRC).
        if got != n && got != 0 {
            return Err(format!("load from {}: {got} of {n}", self.read_next).into());
        }
        if got > 0 && self.read_next != *next {
            return Err(format!("read cursor {} != {}", self.read_next, *next).into());
        }
        self.read_next += got;
        *next += got;
        Ok(got)
    }
    fn unacked(&self) -> u64 {
        self.unacked
    }
}

// --- shape A: sled chunks

fn chunk_key(space: u8, first: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = space;
    k[1..9].copy_from_slice(&QUEUE_ID.to_be_bytes());
    k[9..17].copy_from_slice(&first.to_be_bytes());
    k
}

#[derive(Debug)]
struct ChunkState {
    n: u32,
    acked: u32,
    bits: Vec<u8>,
    dirty: bool,
}

impl ChunkState {
    fn record(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(4 + self.bits.len());
        v.extend_from_slice(&self.n.to_le_bytes());
        v.extend_from_slice(&self.bits);
        v
    }
}

struct SledChunks {
    dir: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    db_file: File,
    chunk_max: usize,
    /// Records of the open chunk, and its first seq and count.
    pending: Vec<u8>,
    pending_first: u64,
    pending_n: u32,
    /// Chunks sealed since the last barrier: (first, n, records).
    sealed: Vec<(u64, u32, Vec<u8>)>,
    chunks: BTreeMap<u64, ChunkState>,
    dirty: Vec<u64>,
    /// Read cursor: the next chunk key to look for, and the chunk being read.
    read_from: u64,
    cur: Option<(sled::IVec, usize)>,
    unacked: u64,
}

impl SledChunks {
    fn open(dir: &Path, chunk_max: u64) -> Res<SledChunks> {
        fs::create_dir_all(dir)?;
        // As SledStore configures sled.
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(DEFAULT_CACHE_BYTES)
            .flush_every_ms(Some(500))
            .open()?;
        let tree = db.open_tree("messages")?;
        let db_file = File::open(dir.join("db"))?;
        // Rebuild the chunk table from the ack records alone.
        let mut chunks = BTreeMap::new();
        let mut unacked = 0;
        for kv in tree.scan_prefix([b'a']) {
            let (k, v) = kv?;
            let first = u64::from_be_bytes(k[9..17].try_into()?);
            let n = u32::from_le_bytes(v[0..4].try_into()?);
            let bits = v[4..].to_vec();
            let acked: u32 = bits.iter().map(|b| b.count_ones()).sum();
            unacked += u64::from(n - acked);
            chunks.insert(
                first,
                ChunkState {
                    n,
                    acked,
                    bits,
                    dirty: false,
                },
            );
        }
        Ok(SledChunks {
            dir: dir.to_owned(),
            db,
            tree,
            db_file,
            chunk_max: chunk_max as usize,
            pending: Vec::new(),
            pending_first: 0,
            pending_n: 0,
            sealed: Vec::new(),
            chunks,
            dirty: Vec::new(),
            read_from: 0,
            cur: None,
            unacked,
        })
    }

    fn seal(&mut self) {
        if self.pending_n > 0 {
            let records = std::mem::take(&mut self.pending);
            self.sealed
                .push((self.pending_first, self.pending_n, records));
            self.pending_n = 0;
        }
    }
}

impl Shape for SledChunks {
    fn publish(&mut self, seq: u64, payload: &[u8; PAYLOAD]) -> Res<()> {
        if self.pending.len() + FRAME + PAYLOAD > self.chunk_max {
            self.seal();
        }
        if self.pending_n == 0 {
            self.pending_first = seq;
        }
        frame(&mut self.pending, T_MSG, payload);
        self.pending_n += 1;
        Ok(())
    }
    fn ack(&mut self, seq: u64) -> Res<()> {
        let (first, st) = self
            .chunks
            .range_mut(..=seq)
            .next_back()
            .ok_or_else(|| format!("ack {seq}: no chunk"))?;
        let i = (seq - first) as usize;
        if i >= st.n as usize || st.bits[i / 8] & (1 << (i % 8)) != 0 {
            return Err(format!("ack {seq}: not in chunk {first} or acked twice").into());
        }
        st.bits[i / 8] |= 1 << (i % 8);
        st.acked += 1;
        if !st.dirty {
            st.dirty = true;
            self.dirty.push(*first);
        }
        Ok(())
    }
    fn barrier(&mut self) -> Res<()> {
        self.seal();
        let mut batch = sled::Batch::default();
        for (first, n, records) in self.sealed.drain(..) {
            let st = ChunkState {
                n,
                acked: 0,
                bits: vec![0; (n as usize).div_ceil(8)],
                dirty: false,
            };
            batch.insert(&chunk_key(b'a', first), st.record());
            batch.insert(&chunk_key(b'c', first), records);
            self.chunks.insert(first, st);
        }
        for first in self.dirty.drain(..) {
            let Some(st) = self.chunks.get_mut(&first) else {
                continue;
            };
            st.dirty = false;
            if st.acked == st.n {
                batch.remove(&chunk_key(b'c', first));
                batch.remove(&chunk_key(b'a', first));
                self.chunks.remove(&first);
            } else {
                batch.insert(&chunk_key(b'a', first), st.record());
            }
        }
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        self.db_file.sync_data()?;
        Ok(())
    }
    fn read(&mut self, n: u64, next: &mut u64) -> Res<u64> {
        let mut got = 0;
        while got < n {
            if self.cur.is_none() {
                let mut it = self
                    .tree
                    .range(chunk_key(b'c', self.read_from)..chunk_key(b'c', u64::MAX));
                match it.next() {
                    Some(kv) => {
                        let (k, v) = kv?;
                        self.read_from = u64::from_be_bytes(k[9..17].try_into()?) + 1;
                        self.cur = Some((v, 0));
                    }
                    None => break,
                }
            }
            let Some((v, pos)) = &mut self.cur else {
                break;
            };
            match parse(&v[*pos..])? {
                Some((T_MSG, p, used)) => {
                    check_payload(*next, p)?;
                    *next += 1;
                    got += 1;
                    *pos += used;
                    if *pos == v.len() {
                        self.cur = None;
                    }
                }
                Some((t, _, _)) => return Err(format!("chunk: record type {t}").into()),
                None => return Err("chunk: torn record".into()),
            }
        }
        Ok(got)
    }
    fn unacked(&self) -> u64 {
        self.unacked
    }
    fn extra(&self, line: &mut Line) {
        line.s("blob_files", count_files(&self.dir.join("blobs"), ""));
    }
}

// --- shape B: segment files

fn seg_name(first: u64, ext: &str) -> String {
    format!("{first:020}.{ext}")
}

#[derive(Debug, Default)]
struct Seg {
    count: u64,
    acked: u64,
    ack_file: Option<File>,
    ack_buf: Vec<u8>,
    dirty: bool,
}

struct SegReader {
    seg: Option<u64>,
    file: Option<File>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

struct SegLog {
    dir: PathBuf,
    dir_file: File,
    seg_max: u64,
    segs: BTreeMap<u64, Seg>,
    active_first: u64,
    active: Option<File>,
    active_len: u64,
    /// Bytes for the active segment not yet written.
    pending: Vec<u8>,
    active_touched: bool,
    /// Sealed segments written since the last barrier.
    to_sync: Vec<File>,
    dirty: Vec<u64>,
    dir_dirty: bool,
    reader: SegReader,
    unacked: u64,
    /// fdatasync / fsync calls made (files, directory).
    syncs: u64,
}

impl SegLog {
    fn open(dir: &Path, seg_max: u64, read_buf: usize) -> Res<SegLog> {
        fs::create_dir_all(dir)?;
        let mut segs: BTreeMap<u64, Seg> = BTreeMap::new();
        let mut acks: Vec<(u64, u64)> = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((num, ext)) = name.split_once('.') else {
                continue;
            };
            let Ok(first) = num.parse::<u64>() else {
                continue;
            };
            match ext {
                "seg" => {
                    segs.insert(first, Seg::default());
                }
                "ack" => acks.push((first, e.metadata()?.len() / 8)),
                _ => {}
            }
        }
        // Sealed segments: the footer (last FOOTER_LEN bytes) gives the
        // count. The last segment has no footer: its records are scanned
        // (this is also where a torn tail would be found and cut).
        let last = segs.keys().next_back().copied();
        for (&first, seg) in segs.iter_mut() {
            let f = File::open(dir.join(seg_name(first, "seg")))?;
            let len = f.metadata()?.len();
            let mut footer = [0u8; FOOTER_LEN];
            let has_footer = len >= (SEG_HEADER + FOOTER_LEN) as u64
                && f.read_exact_at(&mut footer, len - FOOTER_LEN as u64)
                    .is_ok()
                && matches!(parse(&footer), Ok(Some((T_FOOTER, _, _))));
            if has_footer {
                let p = &footer[FRAME..];
                if u64::from_le_bytes(p[0..8].try_into()?) != first {
                    return Err(format!("segment {first}: footer of another segment").into());
                }
                seg.count = u64::from_le_bytes(p[8..16].try_into()?);
            } else if Some(first) == last {
                seg.count = scan_count(&f, read_buf)?;
            } else {
                return Err(format!("sealed segment {first} has no footer").into());
            }
        }
        let mut unacked: u64 = segs.values().map(|s| s.count).sum();
        for (first, n) in acks {
            if let Some(s) = segs.get_mut(&first) {
                s.acked = n;
                unacked -= n;
            }
        }
        // Keep appending to a new segment after a reopen.
        let dir_file = File::open(dir)?;
        let head = segs.keys().next().copied();
        Ok(SegLog {
            dir: dir.to_owned(),
            dir_file,
            seg_max,
            segs,
            active_first: 0,
            active: None,
            active_len: 0,
            pending: Vec::new(),
            active_touched: false,
            to_sync: Vec::new(),
            dirty: Vec::new(),
            dir_dirty: false,
            reader: SegReader {
                seg: head.map(|h| h.wrapping_sub(1)),
                file: None,
                buf: vec![0; read_buf + MAX_RECORD],
                start: 0,
                end: 0,
            },
            unacked,
            syncs: 0,
        })
    }

    /// Seals the active segment (footer) and starts one at `seq`.
    fn roll(&mut self, seq: u64) -> Res<()> {
        if let Some(mut f) = self.active.take() {
            let count = self.segs.get(&self.active_first).map_or(0, |s| s.count);
            let mut p = [0u8; 16];
            p[0..8].copy_from_slice(&self.active_first.to_le_bytes());
            p[8..16].copy_from_slice(&count.to_le_bytes());
            frame(&mut self.pending, T_FOOTER, &p);
            f.write_all(&self.pending)?;
            self.pending.clear();
            self.to_sync.push(f);
            self.active_touched = false;
            // Acked in full while it was active: goes at the next barrier.
            if let Some(s) = self.segs.get_mut(&self.active_first) {
                if s.acked == s.count && !s.dirty {
                    s.dirty = true;
                    self.dirty.push(self.active_first);
                }
            }
        }
        let f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(self.dir.join(seg_name(seq, "seg")))?;
        self.dir_dirty = true;
        self.pending.extend_from_slice(SEG_MAGIC);
        self.pending.extend_from_slice(&seq.to_le_bytes());
        self.active = Some(f);
        self.active_first = seq;
        self.active_len = 0;
        self.segs.insert(seq, Seg::default());
        Ok(())
    }

    fn append(&mut self, seq: u64, typ: u8, payload: &[u8]) -> Res<()> {
        let need = (FRAME + payload.len() + FOOTER_LEN) as u64;
        if self.active.is_none()
            || self.active_len + self.pending.len() as u64 + need > self.seg_max
        {
            self.roll(seq)?;
        }
        frame(&mut self.pending, typ, payload);
        if let Some(s) = self.segs.get_mut(&self.active_first) {
            s.count += 1;
        }
        Ok(())
    }

    fn sync_file(&mut self, f: &File) -> Res<()> {
        f.sync_data()?;
        self.syncs += 1;
        Ok(())
    }
}

/// Counts the message records of a segment without a footer.
fn scan_count(f: &File, read_buf: usize) -> Res<u64> {
    let mut buf = vec![0u8; read_buf + MAX_RECORD];
    let (mut start, mut end, mut off) = (SEG_HEADER, 0usize, 0u64);
    let mut n = 0;
    loop {
        match parse(&buf[start.min(end)..end])? {
            Some((_, _, used)) => {
                start += used;
                n += 1;
            }
            None => {
                buf.copy_within(start.min(end)..end, 0);
                end -= start.min(end);
                start = if off == 0 { SEG_HEADER } else { 0 };
                let r = f.read_at(&mut buf[end..end + read_buf], off)?;
                if r == 0 {
                    if start < end {
                        return Err("torn tail in the last segment".into());
                    }
                    return Ok(n);
                }
                off += r as u64;
                end += r;
            }
        }
    }
}

impl Shape for SegLog {
    fn publish(&mut self, seq: u64, payload: &[u8; PAYLOAD]) -> Res<()> {
        self.append(seq, T_MSG, payload)
    }
    fn ack(&mut self, seq: u64) -> Res<()> {
        let (first, s) = self
            .segs
            .range_mut(..=seq)
            .next_back()
            .ok_or_else(|| format!("ack {seq}: no segment"))?;
        s.ack_buf.extend_from_slice(&seq.to_le_bytes());
        s.acked += 1;
        if !s.dirty {
            s.dirty = true;
            self.dirty.push(*first);
        }
        Ok(())
    }
    fn barrier(&mut self) -> Res<()> {
        if !self.pending.is_empty() {
            if let Some(f) = &mut self.active {
                f.write_all(&self.pending)?;
                self.active_len += self.pending.len() as u64;
                self.pending.clear();
                self.active_touched = true;
            }
        }
        let mut ack_files = Vec::new();
        for first in std::mem::take(&mut self.dirty) {
            let Some(s) = self.segs.get_mut(&first) else {
                continue;
            };
            s.dirty = false;
            if first != self.active_first && s.acked == s.count {
                self.segs.remove(&first);
                fs::remove_file(self.dir.join(seg_name(first, "seg")))?;
                let ack = self.dir.join(seg_name(first, "ack"));
                if ack.exists() {
                    fs::remove_file(ack)?;
                }
                self.dir_dirty = true;
                continue;
            }
            if s.ack_file.is_none() {
                s.ack_file = Some(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(self.dir.join(seg_name(first, "ack")))?,
                );
                self.dir_dirty = true;
            }
            if let Some(f) = &mut s.ack_file {
                f.write_all(&s.ack_buf)?;
                s.ack_buf.clear();
                ack_files.push(f.try_clone()?);
            }
        }
        for f in std::mem::take(&mut self.to_sync) {
            self.sync_file(&f)?;
        }
        if self.active_touched {
            if let Some(f) = self.active.take() {
                self.sync_file(&f)?;
                self.active = Some(f);
            }
            self.active_touched = false;
        }
        for f in ack_files {
            self.sync_file(&f)?;
        }
        if self.dir_dirty {
            self.dir_file.sync_all()?;
            self.syncs += 1;
            self.dir_dirty = false;
        }
        Ok(())
    }
    fn read(&mut self, n: u64, next: &mut u64) -> Res<u64> {
        let r = &mut self.reader;
        let mut got = 0;
        while got < n {
            if r.file.is_none() {
                let after = r.seg.map_or(0, |s| s.wrapping_add(1));
                let Some((&first, _)) = self.segs.range(after..).next() else {
                    break;
                };
                let f = File::open(self.dir.join(seg_name(first, "seg")))?;
                {
                    use std::os::fd::AsRawFd;
                    // SAFETY: a plain syscall on a valid, open descriptor.
                    unsafe {
                        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL)
                    };
                }
                r.file = Some(f);
                r.seg = Some(first);
                r.start = 0;
                r.end = 0;
                // Header first.
                let mut h = [0u8; SEG_HEADER];
                if let Some(f) = &mut r.file {
                    f.read_exact(&mut h)?;
                }
                if &h[0..8] != SEG_MAGIC || u64::from_le_bytes(h[8..16].try_into()?) != first {
                    return Err(format!("segment {first}: bad header").into());
                }
            }
            match parse(&r.buf[r.start..r.end])? {
                Some((T_MSG, p, used)) => {
                    check_payload(*next, p)?;
                    *next += 1;
                    got += 1;
                    r.start += used;
                }
                Some((T_FOOTER, _, used)) => {
                    r.start += used;
                    if r.start != r.end {
                        return Err("bytes after a footer".into());
                    }
                    r.file = None;
                }
                Some((t, _, _)) => return Err(format!("segment: record type {t}").into()),
                None => {
                    // Need more bytes: keep the partial record, read a stretch.
                    r.buf.copy_within(r.start..r.end, 0);
                    r.end -= r.start;
                    r.start = 0;
                    let read_len = r.buf.len() - MAX_RECORD;
                    let Some(f) = &mut r.file else { break };
                    let k = f.read(&mut r.buf[r.end..r.end + read_len])?;
                    if k == 0 {
                        let later = r.seg.and_then(|s| self.segs.range(s + 1..).next());
                        if later.is_none() {
                            // The newest segment (no footer yet): nothing more.
                            if r.start != r.end {
                                return Err("torn record at the end of the log".into());
                            }
                            break;
                        }
                        return Err("sealed segment ends without a footer".into());
                    }
                    r.end += k;
                }
            }
        }
        Ok(got)
    }
    fn unacked(&self) -> u64 {
        self.unacked
    }
    fn extra(&self, line: &mut Line) {
        line.s("segments", self.segs.len()).s("syncs", self.syncs);
    }
}

// ---------------------------------------------------------------- workloads

fn work_dir(o: &Opts) -> Res<tempfile::TempDir> {
    let base = o.dir.clone().unwrap_or_else(std::env::temp_dir);
    fs::create_dir_all(&base)?;
    Ok(tempfile::Builder::new()
        .prefix("log-spike-")
        .tempdir_in(base)?)
}

fn queue(o: &Opts) -> Res<()> {
    let tmp = work_dir(o)?;
    let rss = RssSampler::start();
    let mut s = open_shape(o, tmp.path())?;
    let b = o.batch;
    let mut p = [0u8; PAYLOAD];
    let mut next_pub = 1u64;
    let mut next_ack = 1u64;
    let mut lat = Vec::new();
    let (mut published, mut acked) = (0u64, 0u64);
    // Fill the backlog the acks trail by (not timed).
    for _ in 0..o.lag {
        for _ in 0..b {
            payload(next_pub, &mut p);
            s.publish(next_pub, &p)?;
            next_pub += 1;
        }
        s.barrier()?;
    }
    rss.phase();
    let io0 = proc_io();
    let cpu0 = cpu_us();
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < o.secs {
        for _ in 0..b {
            payload(next_pub, &mut p);
            s.publish(next_pub, &p)?;
            next_pub += 1;
        }
        for _ in 0..b {
            s.ack(next_ack)?;
            next_ack += 1;
        }
        let tb = Instant::now();
        s.barrier()?;
        lat.push(tb.elapsed().as_micros() as u64);
        published += b;
        acked += b;
    }
    let el = t0.elapsed().as_secs_f64();
    let cpu = cpu_us() - cpu0;
    let io1 = proc_io();
    let (peak, hwm) = rss.peak();
    let disk = disk_usage(tmp.path());
    let (p50, p99, max) = pct(&mut lat);
    let mut line = Line::new();
    line.s("workload", "queue")
        .s("shape", shape_label(o))
        .s("batch", b)
        .s("rounds", lat.len())
        .f("secs", el)
        .f("acked_per_s", acked as f64 / el)
        .f("published_per_s", published as f64 / el)
        .s("barrier_p50_us", p50)
        .s("barrier_p99_us", p99)
        .s("barrier_max_us", max)
        .f("cpu_pct", cpu as f64 / 1e4 / el)
        .s(
            "cpu_us_per_msg",
            format!("{:.2}", cpu as f64 / acked as f64),
        )
        .f("wchar_mib", mib(io1.0 - io0.0))
        .f("write_bytes_mib", mib(io1.1 - io0.1))
        .f(
            "write_bytes_per_msg",
            (io1.1 - io0.1) as f64 / published as f64,
        )
        .f("rss_peak_mib", peak)
        .f("vmhwm_mib", hwm)
        .f("disk_mib", mib(disk));
    s.extra(&mut line);
    line.print(o.json);
    drop(s);
    Ok(())
}

/// Times a restart in a child process: open and count.
fn reopen_child(o: &Opts, dir: &Path) -> Res<Vec<(String, String)>> {
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .args(["reopen", &o.shape, "--dir"])
        .arg(dir)
        .args(["--seg-mib", &o.seg_mib.to_string()])
        .args(["--chunk-kib", &o.chunk_kib.to_string()])
        .args(["--expect", &o.count.to_string()])
        .output()?;
    if !out.status.success() {
        return Err(format!("reopen: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let s = String::from_utf8_lossy(&out.stdout);
    Ok(s.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// `reopen`: opens the store in `--dir` (not a temporary one) and counts.
fn reopen(o: &Opts) -> Res<()> {
    let dir = o.dir.clone().ok_or("reopen needs --dir")?;
    let t0 = Instant::now();
    let s = open_shape(o, &dir)?;
    let n = s.unacked();
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    if n != o.expect {
        return Err(format!("reopen counted {n}, expected {}", o.expect).into());
    }
    let hwm = proc_status_kib("VmHWM:") as f64 / 1024.0;
    Line::new()
        .f("reopen_ms", ms)
        .s("count", n)
        .f("reopen_vmhwm_mib", hwm)
        .print(false);
    Ok(())
}

fn backlog(o: &Opts) -> Res<()> {
    let tmp = work_dir(o)?;
    let dir = tmp.path().to_owned();
    let rss = RssSampler::start();
    let round = 1000u64;
    let n = o.count;
    let mut p = [0u8; PAYLOAD];
    let mut line = Line::new();
    line.s("workload", "backlog")
        .s("shape", shape_label(o))
        .s("count", n);

    // Publish.
    let mut s = open_shape(o, &dir)?;
    rss.phase();
    let io0 = proc_io();
    let mut lat = Vec::new();
    let t0 = Instant::now();
    let mut seq = 1;
    while seq <= n {
        let end = (seq + round).min(n + 1);
        while seq < end {
            payload(seq, &mut p);
            s.publish(seq, &p)?;
            seq += 1;
        }
        let tb = Instant::now();
        s.barrier()?;
        lat.push(tb.elapsed().as_micros() as u64);
    }
    let el = t0.elapsed().as_secs_f64();
    let io1 = proc_io();
    let (peak, hwm) = rss.peak();
    let (p50, p99, _) = pct(&mut lat);
    line.f("publish_per_s", n as f64 / el)
        .f("publish_secs", el)
        .s("pub_barrier_p50_us", p50)
        .s("pub_barrier_p99_us", p99)
        .f("pub_write_bytes_mib", mib(io1.1 - io0.1))
        .f("pub_rss_peak_mib", peak)
        .f("pub_vmhwm_mib", hwm);
    s.extra(&mut line);
    drop(s);
    line.f("disk_after_publish_mib", mib(disk_usage(&dir)));

    // Restart with the full backlog, in a fresh process: warm page cache,
    // then cold (the store's files dropped from the cache).
    std::thread::sleep(Duration::from_millis(1500)); // sled releases its lock late
    for (k, v) in reopen_child(o, &dir)? {
        line.s(&format!("warm_{k}"), v);
    }
    drop_cache(&dir)?;
    for (k, v) in reopen_child(o, &dir)? {
        line.s(&format!("cold_{k}"), v);
    }
    if o.cold {
        drop_cache(&dir)?;
    }
    line.s("drain_cache", if o.cold { "cold" } else { "warm" });

    // Drain.
    let mut s = open_shape(o, &dir)?;
    if s.unacked() != n {
        return Err(format!("reopened with {} messages, expected {n}", s.unacked()).into());
    }
    rss.phase();
    let mut lat = Vec::new();
    let t0 = Instant::now();
    let mut next = 1u64;
    let mut read_secs = 0.0;
    loop {
        let first = next;
        let tr = Instant::now();
        let got = s.read(round.min(n + 1 - next), &mut next)?;
        read_secs += tr.elapsed().as_secs_f64();
        if got == 0 {
            break;
        }
        for q in first..next {
            s.ack(q)?;
        }
        let tb = Instant::now();
        s.barrier()?;
        lat.push(tb.elapsed().as_micros() as u64);
        if next > n {
            break;
        }
    }
    let el = t0.elapsed().as_secs_f64();
    if next != n + 1 {
        return Err(format!("drain read {} of {n}", next - 1).into());
    }
    let (peak, hwm) = rss.peak();
    let (p50, p99, _) = pct(&mut lat);
    line.f("drain_per_s", n as f64 / el)
        .f("drain_secs", el)
        .f("drain_read_secs", read_secs)
        .s("drain_barrier_p50_us", p50)
        .s("drain_barrier_p99_us", p99)
        .f("drain_rss_peak_mib", peak)
        .f("drain_vmhwm_mib", hwm);
    drop(s);
    line.f("disk_after_drain_mib", mib(disk_usage(&dir)))
        .s("check", "ok");
    line.print(o.json);
    Ok(())
}

/// `fanout` (shape B): one publish to `--queues` queues, acked `--lag`
/// rounds later on each, one barrier per round. `copy`: a full record per
/// queue in each queue's log. `shared`: the body once in a shared body log,
/// and per queue an index record (queue seq, body seq, body segment,
/// offset); a body segment goes once every queue has acked all of it.
fn fanout(o: &Opts) -> Res<()> {
    let tmp = work_dir(o)?;
    let rss = RssSampler::start();
    let shared = match o.shape.as_str() {
        "copy" => false,
        "shared" => true,
        s => return Err(format!("fanout shape {s:?}: copy or shared").into()),
    };
    let seg = o.seg_mib << 20;
    let rb = o.read_kib << 10;
    let nq = o.queues;
    let mut queues: Vec<SegLog> = (0..nq)
        .map(|i| SegLog::open(&tmp.path().join(format!("q{i}")), seg, rb))
        .collect::<Res<_>>()?;
    let mut bodies = if shared {
        Some(SegLog::open(&tmp.path().join("bodies"), seg, rb)?)
    } else {
        None
    };
    let b = o.batch;
    let mut p = [0u8; PAYLOAD];
    let mut next_pub = 1u64;
    let mut next_ack = 1u64;
    let mut lat = Vec::new();
    let mut published = 0u64;
    let mut round = |s: &mut Vec<SegLog>,
                     bodies: &mut Option<SegLog>,
                     next_pub: &mut u64,
                     ack: bool,
                     next_ack: &mut u64|
     -> Res<u64> {
        for _ in 0..b {
            payload(*next_pub, &mut p);
            match bodies {
                Some(bl) => {
                    // One body record; its segment's ack file gets one
                    // entry once the last queue has acked it (here the
                    // queues ack in step, so at their ack).
                    bl.append(*next_pub, T_MSG, &p)?;
                    let body_seg = bl.active_first;
                    let off = bl.active_len + bl.pending.len() as u64 - (FRAME + PAYLOAD) as u64;
                    let mut idx = [0u8; 24];
                    idx[0..8].copy_from_slice(&next_pub.to_le_bytes());
                    idx[8..16].copy_from_slice(&body_seg.to_le_bytes());
                    idx[16..24].copy_from_slice(&off.to_le_bytes());
                    for q in s.iter_mut() {
                        q.append(*next_pub, T_INDEX, &idx)?;
                    }
                }
                None => {
                    for q in s.iter_mut() {
                        q.publish(*next_pub, &p)?;
                    }
                }
            }
            *next_pub += 1;
        }
        let mut t = 0;
        if ack {
            for _ in 0..b {
                for q in s.iter_mut() {
                    q.ack(*next_ack)?;
                }
                if let Some(bl) = bodies {
                    bl.ack(*next_ack)?;
                }
                *next_ack += 1;
            }
            let tb = Instant::now();
            for q in s.iter_mut() {
                q.barrier()?;
            }
            if let Some(bl) = bodies {
                bl.barrier()?;
            }
            t = tb.elapsed().as_micros() as u64;
        } else {
            for q in s.iter_mut() {
                q.barrier()?;
            }
            if let Some(bl) = bodies {
                bl.barrier()?;
            }
        }
        Ok(t)
    };
    for _ in 0..o.lag {
        round(
            &mut queues,
            &mut bodies,
            &mut next_pub,
            false,
            &mut next_ack,
        )?;
    }
    rss.phase();
    let io0 = proc_io();
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < o.secs {
        lat.push(round(
            &mut queues,
            &mut bodies,
            &mut next_pub,
            true,
            &mut next_ack,
        )?);
        published += b;
    }
    let el = t0.elapsed().as_secs_f64();
    let io1 = proc_io();
    let (peak, _) = rss.peak();
    let (p50, p99, _) = pct(&mut lat);
    let syncs: u64 =
        queues.iter().map(|q| q.syncs).sum::<u64>() + bodies.as_ref().map_or(0, |bl| bl.syncs);
    let mut line = Line::new();
    line.s("workload", "fanout")
        .s("shape", format!("B-{}(seg={}MiB)", o.shape, o.seg_mib))
        .s("queues", nq)
        .s("batch", b)
        .f("secs", el)
        .f("published_per_s", published as f64 / el)
        .f("copies_acked_per_s", (published * nq) as f64 / el)
        .s("barrier_p50_us", p50)
        .s("barrier_p99_us", p99)
        .f(
            "syncs_per_round",
            syncs as f64 / (lat.len() as u64 + o.lag) as f64,
        )
        .f("write_bytes_mib", mib(io1.1 - io0.1))
        .f("rss_peak_mib", peak)
        .f("disk_mib", mib(disk_usage(tmp.path())));
    line.print(o.json);
    Ok(())
}

/// `rawdisk`: `--mib` 1 MiB appends, each followed by `fdatasync`.
fn rawdisk(o: &Opts) -> Res<()> {
    let tmp = work_dir(o)?;
    let mut f = File::create(tmp.path().join("raw"))?;
    let buf = vec![0x5au8; 1 << 20];
    let mut lat = Vec::new();
    let t0 = Instant::now();
    for _ in 0..o.mib {
        let tw = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        lat.push(tw.elapsed().as_micros() as u64);
    }
    let el = t0.elapsed().as_secs_f64();
    let (p50, p99, max) = pct(&mut lat);
    Line::new()
        .s("workload", "rawdisk")
        .s("mib", o.mib)
        .f("secs", el)
        .f("mb_per_s", (o.mib << 20) as f64 / el / 1e6)
        .f("mib_per_s", o.mib as f64 / el)
        .s("write_sync_p50_us", p50)
        .s("write_sync_p99_us", p99)
        .s("write_sync_max_us", max)
        .print(o.json);
    Ok(())
}

/// `groupsync`: the group commit's barrier, at the storage level. Each of
/// `--queues` queues has one append-only file; each round every queue
/// appends `--batch` framed records (one `write` per queue), then one
/// barrier makes the round durable:
/// - `per-file`: `fdatasync` of every queue file, one after another;
/// - `syncfs`: one `syncfs(2)` on the data directory's file system;
/// - `wal`: the round's records of all queues also go to one node-wide
///   write-ahead file in one `write`, and only that file is `fdatasync`ed.
///   The queue files are written without a sync on the critical path; a
///   background thread `fdatasync`s them every `--seg-sync-rounds` rounds
///   (0: never).
fn groupsync(o: &Opts) -> Res<()> {
    use std::os::fd::AsRawFd;
    #[derive(PartialEq)]
    enum Barrier {
        PerFile,
        SyncFs,
        Wal,
    }
    let mode = match o.sync.as_str() {
        "per-file" => Barrier::PerFile,
        "syncfs" => Barrier::SyncFs,
        "wal" => Barrier::Wal,
        s => return Err(format!("--sync {s:?}: per-file, syncfs or wal").into()),
    };
    let secs = if o.secs_set { o.secs } else { 10.0 };
    let tmp = work_dir(o)?;
    let nq = o.queues.max(1);
    let b = o.batch;
    let mut files = Vec::new();
    for i in 0..nq {
        let mut f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(tmp.path().join(format!("q{i}.seg")))?;
        let mut h = Vec::with_capacity(SEG_HEADER);
        h.extend_from_slice(SEG_MAGIC);
        h.extend_from_slice(&1u64.to_le_bytes());
        f.write_all(&h)?;
        f.sync_data()?;
        files.push(f);
    }
    let mut wal = if mode == Barrier::Wal {
        let f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(tmp.path().join("node.wal"))?;
        f.sync_data()?;
        Some(f)
    } else {
        None
    };
    let dir = File::open(tmp.path())?;
    dir.sync_all()?;
    // `--sync wal`: the queue files' syncs, off the critical path.
    let rounds_done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let seg_syncs = Arc::new(AtomicU64::new(0));
    let bg = if mode == Barrier::Wal && o.seg_sync_rounds > 0 {
        let fs: Vec<File> = files
            .iter()
            .map(File::try_clone)
            .collect::<Result<_, _>>()?;
        let (rd, st, n, k) = (
            rounds_done.clone(),
            stop.clone(),
            seg_syncs.clone(),
            o.seg_sync_rounds,
        );
        Some(std::thread::spawn(move || -> std::io::Result<()> {
            let mut next = k;
            while !st.load(Ordering::Relaxed) {
                if rd.load(Ordering::Relaxed) >= next {
                    next = rd.load(Ordering::Relaxed) + k;
                    for f in &fs {
                        f.sync_data()?;
                    }
                    n.fetch_add(1, Ordering::Relaxed);
                } else {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            Ok(())
        }))
    } else {
        None
    };
    let mut p = [0u8; PAYLOAD];
    let mut bufs: Vec<Vec<u8>> = (0..nq)
        .map(|_| Vec::with_capacity(b as usize * (FRAME + PAYLOAD)))
        .collect();
    let mut wal_buf = Vec::new();
    let mut next_seq = vec![1u64; nq as usize];
    let mut lat = Vec::new();
    let io0 = proc_io();
    let cpu0 = cpu_us();
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        wal_buf.clear();
        for (q, buf) in bufs.iter_mut().enumerate() {
            buf.clear();
            for _ in 0..b {
                payload(next_seq[q], &mut p);
                frame(buf, T_MSG, &p);
                next_seq[q] += 1;
            }
            if wal.is_some() {
                let mut h = [0u8; 8];
                h[0..4].copy_from_slice(&(q as u32).to_le_bytes());
                h[4..8].copy_from_slice(&(b as u32).to_le_bytes());
                frame(&mut wal_buf, T_WAL_QUEUE, &h);
                wal_buf.extend_from_slice(buf);
            }
        }
        if let Some(w) = wal.as_mut() {
            w.write_all(&wal_buf)?;
        }
        for (f, buf) in files.iter_mut().zip(&bufs) {
            f.write_all(buf)?;
        }
        let tb = Instant::now();
        match mode {
            Barrier::PerFile => {
                for f in &files {
                    f.sync_data()?;
                }
            }
            Barrier::SyncFs => {
                // SAFETY: a plain syscall on a valid, open descriptor.
                if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
                    return Err(std::io::Error::last_os_error().into());
                }
            }
            Barrier::Wal => {
                if let Some(w) = wal.as_ref() {
                    w.sync_data()?;
                }
            }
        }
        lat.push(tb.elapsed().as_micros() as u64);
        rounds_done.fetch_add(1, Ordering::Relaxed);
    }
    let el = t0.elapsed().as_secs_f64();
    let cpu = cpu_us() - cpu0;
    let io1 = proc_io();
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = bg {
        h.join().map_err(|_| "segment sync thread panicked")??;
    }
    let rounds = lat.len() as u64;
    let msgs = rounds * nq * b;
    let (p50, p99, max) = pct(&mut lat);
    let mut line = Line::new();
    line.s("workload", "groupsync")
        .s("sync", &o.sync)
        .s("queues", nq)
        .s("batch", b)
        .s("rounds", rounds)
        .f("secs", el)
        .f("rounds_per_s", rounds as f64 / el)
        .f("msgs_per_s", msgs as f64 / el)
        .s("barrier_p50_us", p50)
        .s("barrier_p99_us", p99)
        .s("barrier_max_us", max)
        .f("cpu_pct", cpu as f64 / 1e4 / el)
        .f("wchar_per_msg", (io1.0 - io0.0) as f64 / msgs as f64)
        .f("write_bytes_per_msg", (io1.1 - io0.1) as f64 / msgs as f64)
        .f("write_bytes_mib", mib(io1.1 - io0.1));
    if mode == Barrier::Wal {
        line.s("seg_sync_rounds", o.seg_sync_rounds)
            .s("seg_syncs", seg_syncs.load(Ordering::Relaxed));
    }
    line.f("disk_mib", mib(disk_usage(tmp.path())));
    line.print(o.json);
    Ok(())
}

fn main() -> Res<()> {
    let o = parse_opts()?;
    match o.workload.as_str() {
        "queue" => queue(&o),
        "backlog" => backlog(&o),
        "fanout" => fanout(&o),
        "rawdisk" => rawdisk(&o),
        "groupsync" => groupsync(&o),
        "reopen" => reopen(&o),
        w => Err(format!(
            "usage: log_spike <queue|backlog|fanout|rawdisk|groupsync|reopen> \
             <0|A|B|copy|shared> [--count N] [--batch B] [--secs S] [--seg-mib M] \
             [--chunk-kib K] [--read-kib K] [--queues N] [--lag R] [--mib M] [--dir D] \
             [--sync per-file|syncfs|wal] [--seg-sync-rounds K] [--cold] [--json]; got {w:?}"
        )
        .into()),
    }
}
