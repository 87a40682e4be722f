//! The on-disk encoding of sluice's records: a version byte, a CRC32, then
//! length-prefixed fields. Decoding never panics: a short, altered or
//! over-long record is [`StoreError::Corrupt`].
//!
//! # Versions
//!
//! The version byte says how to read the rest; data directories hold both.
//!
//! - **Version 1**: the CRC covers the fields only (bytes 5..).
//! - **Version 2**: the CRC covers the version byte, then the fields, so a
//!   version byte altered on disk fails the check instead of making the
//!   fields be read with the wrong layout.
//! - **Version 3**: CRC as in version 2; only the message record changed
//!   (a flags byte). Every other record kind has the same layout in v3 as
//!   in v2.
//! - **Version 4** (written today): CRC as in version 2; the exchange,
//!   queue and message records gained fields (hash exchanges, streams and
//!   queue modes, publish times and message groups), and the stream
//!   consumer-group offset record is new.
//!
//! Per record kind (fields in order; `opt<T>` is a tag byte, 0 = absent or
//! 1 = present, followed by the `T` when present; `str`/`bytes` are a u32
//! length then the bytes, `str` being checked UTF-8 when read and `bytes`
//! any bytes; integers are big-endian):
//!
//! - exchange (v1, v2, v3): `str name`, `u8 kind`, `u8 auto_delete`,
//!   `str alternate` (empty = none).
//! - exchange v4: the v3 fields, then `opt<str> hash_header` (the header a
//!   `hash` exchange hashes instead of the routing key) and `u32 partitions`
//!   (0 for an ordinary exchange; N for the exchange of a partitioned
//!   stream). Kind 4 is `hash`.
//! - binding: `str exchange`, `str queue`, `bytes key`, headers (`u32 n`,
//!   then `n` × `str name`, `bytes value`), `u8 any`. Always written as
//!   **version 1**: the encoded binding is its key in the `bindings` tree,
//!   so its bytes must never change or older keys could not be deleted.
//! - queue v1: `str name`, `u64 id`, `u8 auto_delete` (its `args` decode as
//!   [`QueueArgs::default`]).
//! - queue v2 and v3: the v1 fields, then the args: `opt<u64> max_length`,
//!   `opt<u64> max_bytes`, `u8 overflow` (0 drop-head, 1 reject-publish,
//!   2 block), `opt<u64> ttl_ms`, `opt<u64> expires_ms`,
//!   `opt<str> dead_letter`, `opt<bytes> dead_letter_key`,
//!   `opt<u32> delivery_limit`, `opt<u64> ack_timeout_ms`,
//!   `opt<u8> max_priority`, `opt<u64> dedup_window_ms`,
//!   `u32 n` then `n` × `u64` retry_delays_ms.
//! - queue v4: the v3 fields, then `u8 flags` (bit 0 single-active, bit 1
//!   groups, bit 2 stream: the [`QueueMode`], none for a classic queue; any
//!   other bit, or two of them, is corruption) and `opt<u64> max_age_ms`.
//! - message v1: `u64 body_id`, `str id`, `str exchange`,
//!   `bytes routing_key`, headers, `u32 deliveries`, `u8 inline`, then
//!   `bytes body` if `inline` ≠ 0 (`expires_at`/`not_before` decode as
//!   `None`, `priority` as 0).
//! - message v2: the v1 fields up to `deliveries`, then
//!   `opt<u64> expires_at`, `opt<u64> not_before`, `u8 priority`,
//!   `u8 inline`, `bytes body` if `inline` ≠ 0 (`volatile` decodes as
//!   false).
//! - message v3: the v2 fields up to `priority`, then `u8 flags` (bit 0:
//!   volatile, a copy spilled to disk only to save RAM that must not survive
//!   a restart; any other bit set is corruption), then `u8 inline`,
//!   `bytes body` if `inline` ≠ 0.
//! - message v4: the v3 fields up to `flags`, then `u64 published_at`
//!   (Unix ms) and `opt<bytes> group`, then `u8 inline`, `bytes body` if
//!   `inline` ≠ 0 (a v3 or older record has `published_at` 0: unknown, and
//!   no group).
//! - stream offset (v4): `u64 offset`, a consumer group's committed
//!   position (queue id and group name are in the key, see `sled_store`).
//! - de-duplication (v2 and v3): `u64 expires_at` (queue id and message id
//!   are in the key, see `sled_store`).
//! - user (v3): `str name`, `str hash` (argon2id PHC string), `u32 n` then
//!   `n` × `str tag`, `str configure`, `str write`, `str read`.
//! - body head chunk (v1, v2, v3, built in `sled_store`): `u32 crc of the
//!   whole body`, `u64 length`, `bytes first chunk`.
//!
//! Every byte of a record is read: trailing bytes are corruption too.
//!
//! Routing keys (binding keys, `dead_letter_key`, a message's key) and
//! header values are `bytes` in every version: any token of the protocol,
//! not only UTF-8. They used to be read as `str`; the layout is the same, so
//! a record whose keys and values are UTF-8 has the same bytes either way
//! (binding keys in the `bindings` tree do not change) and no version was
//! added. Only a record holding non-UTF-8 there is new, and a release that
//! read these fields as `str` would call it corrupt.

use bytes::Bytes;

use super::{BindingDef, ExchangeDef, MessageMeta, QueueDef, StoreError, UserRecord};
use crate::protocol::command::{
    ExchangeKind, Header, HeaderMatch, Overflow, QueueArgs, QueueMode, Secret,
};

/// The first layout: CRC over the fields only.
pub const V1: u8 = 1;
/// CRC over the version byte and the fields; queue arguments and
/// per-message expiry, delay and priority.
pub const V2: u8 = 2;
/// As [`V2`], plus a flags byte in message records (volatile copies).
pub const V3: u8 = 3;
/// The current layout: as [`V3`], plus hash exchanges and partitioned
/// streams (exchange), streams and queue modes (queue), publish time and
/// group key (message).
pub const V4: u8 = 4;
/// The version new records are written with.
pub const VERSION: u8 = V4;

/// Message flags byte, bit 0: the copy is volatile (see
/// [`MessageMeta::volatile`]).
const FLAG_VOLATILE: u8 = 1;

/// The CRC of a record under its version's rules, over its fields (the
/// bytes after the 5-byte header).
fn record_crc(version: u8, fields: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    if version >= V2 {
        h.update(&[version]);
    }
    h.update(fields);
    h.finalize()
}

/// Appends fields to a record.
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

impl Writer {
    /// A record of the current [`VERSION`], with room for the header.
    pub fn new() -> Writer {
        Writer::with_version(VERSION)
    }
    /// A record of an explicit version ([`V1`] to [`V4`]): the caller
    /// writes that version's layout.
    pub fn with_version(version: u8) -> Writer {
        debug_assert!((V1..=V4).contains(&version), "unknown record version");
        Writer {
            buf: vec![version, 0, 0, 0, 0],
        }
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// A big-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A big-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(v);
        self
    }
    /// A length-prefixed string.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    /// A list of headers: `str` names, `bytes` values.
    pub fn headers(&mut self, hs: &[Header]) -> &mut Self {
        self.u32(u32::try_from(hs.len()).unwrap_or(u32::MAX));
        for (k, v) in hs {
            self.str(k).bytes(v);
        }
        self
    }
    /// The tag of an optional value: 1 if present, 0 if not.
    fn tag<T>(&mut self, v: &Option<T>) -> &mut Self {
        self.u8(u8::from(v.is_some()))
    }
    /// An optional byte.
    pub fn opt_u8(&mut self, v: Option<u8>) -> &mut Self {
        self.tag(&v);
        if let Some(v) = v {
            self.u8(v);
        }
        self
    }
    /// An optional u32.
    pub fn opt_u32(&mut self, v: Option<u32>) -> &mut Self {
        self.tag(&v);
        if let Some(v) = v {
            self.u32(v);
        }
        self
    }
    /// An optional u64.
    pub fn opt_u64(&mut self, v: Option<u64>) -> &mut Self {
        self.tag(&v);
        if let Some(v) = v {
            self.u64(v);
        }
        self
    }
    /// An optional string (`Some("")` stays distinct from `None`).
    pub fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        self.opt_bytes(v.map(str::as_bytes))
    }
    /// Optional length-prefixed bytes (`Some(b"")` stays distinct from
    /// `None`).
    pub fn opt_bytes(&mut self, v: Option<&[u8]>) -> &mut Self {
        self.tag(&v);
        if let Some(v) = v {
            self.bytes(v);
        }
        self
    }
    /// A counted list of u64s.
    pub fn u64s(&mut self, vs: &[u64]) -> &mut Self {
        self.u32(u32::try_from(vs.len()).unwrap_or(u32::MAX));
        for v in vs {
            self.u64(*v);
        }
        self
    }
    /// A counted list of strings.
    pub fn strs(&mut self, vs: &[String]) -> &mut Self {
        self.u32(u32::try_from(vs.len()).unwrap_or(u32::MAX));
        for v in vs {
            self.str(v);
        }
        self
    }
    /// Seals the record: fills in the CRC.
    pub fn finish(mut self) -> Vec<u8> {
        let crc = record_crc(self.buf[0], &self.buf[5..]);
        self.buf[1..5].copy_from_slice(&crc.to_be_bytes());
        self.buf
    }
}

/// Reads fields back from a record whose CRC has been checked.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
    what: &'static str,
    version: u8,
}

impl<'a> Reader<'a> {
    /// Checks version ([`V1`] to [`V4`]) and CRC; `what` names the record
    /// in errors. The decoder then reads the layout of [`Reader::version`].
    pub fn open(record: &'a [u8], what: &'static str) -> Result<Reader<'a>, StoreError> {
        if record.len() < 5 {
            return Err(StoreError::Corrupt(format!("{what}: bad header")));
        }
        let version = record[0];
        if !(V1..=V4).contains(&version) {
            return Err(StoreError::Corrupt(format!(
                "{what}: unknown record version {version}"
            )));
        }
        let crc = u32::from_be_bytes([record[1], record[2], record[3], record[4]]);
        if record_crc(version, &record[5..]) != crc {
            return Err(StoreError::Corrupt(format!("{what}: checksum mismatch")));
        }
        Ok(Reader {
            rest: &record[5..],
            what,
            version,
        })
    }
    /// The record's version.
    pub fn version(&self) -> u8 {
        self.version
    }
    fn corrupt(&self, why: &str) -> StoreError {
        StoreError::Corrupt(format!("{}: {why}", self.what))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.rest.len() < n {
            return Err(self.corrupt("truncated"));
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Ok(a)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A big-endian u64.
    pub fn u64(&mut self) -> Result<u64, StoreError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A length-prefixed string.
    pub fn str(&mut self) -> Result<String, StoreError> {
        self.str_ref().map(str::to_owned)
    }
    /// A length-prefixed string, borrowed from the record (checked UTF-8,
    /// nothing copied).
    pub fn str_ref(&mut self) -> Result<&'a str, StoreError> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| self.corrupt("invalid UTF-8"))
    }
    /// Length-prefixed bytes, copied out of the record.
    pub fn owned_bytes(&mut self) -> Result<Bytes, StoreError> {
        self.bytes().map(Bytes::copy_from_slice)
    }
    /// A list of headers: `str` names, `bytes` values.
    pub fn headers(&mut self) -> Result<Vec<Header>, StoreError> {
        let n = self.u32()? as usize;
        let mut out = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            out.push((self.str()?, self.owned_bytes()?));
        }
        Ok(out)
    }
    /// The tag of an optional value: whether it is present.
    fn tag(&mut self) -> Result<bool, StoreError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.corrupt("bad optional tag")),
        }
    }
    /// An optional byte.
    pub fn opt_u8(&mut self) -> Result<Option<u8>, StoreError> {
        Ok(if self.tag()? { Some(self.u8()?) } else { None })
    }
    /// An optional u32.
    pub fn opt_u32(&mut self) -> Result<Option<u32>, StoreError> {
        Ok(if self.tag()? { Some(self.u32()?) } else { None })
    }
    /// An optional u64.
    pub fn opt_u64(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(if self.tag()? { Some(self.u64()?) } else { None })
    }
    /// An optional string.
    pub fn opt_str(&mut self) -> Result<Option<String>, StoreError> {
        Ok(if self.tag()? { Some(self.str()?) } else { None })
    }
    /// Optional length-prefixed bytes, copied out of the record.
    pub fn opt_bytes(&mut self) -> Result<Option<Bytes>, StoreError> {
        Ok(if self.tag()? {
            Some(self.owned_bytes()?)
        } else {
            None
        })
    }
    /// A counted list of strings.
    pub fn strs(&mut self) -> Result<Vec<String>, StoreError> {
        let n = self.u32()? as usize;
        // Each takes at least its 4-byte length: no huge allocation.
        if n > self.rest.len() / 4 {
            return Err(self.corrupt("truncated"));
        }
        (0..n).map(|_| self.str()).collect()
    }
    /// A counted list of u64s.
    pub fn u64s(&mut self) -> Result<Vec<u64>, StoreError> {
        let n = self.u32()? as usize;
        if n > self.rest.len() / 8 {
            return Err(self.corrupt("truncated"));
        }
        (0..n).map(|_| self.u64()).collect()
    }
    /// Ends the record: every byte must have been read.
    pub fn end(self) -> Result<(), StoreError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt("trailing bytes"))
        }
    }
}

fn kind_byte(k: ExchangeKind) -> u8 {
    match k {
        ExchangeKind::Direct => 0,
        ExchangeKind::Fanout => 1,
        ExchangeKind::Topic => 2,
        ExchangeKind::Headers => 3,
        ExchangeKind::Hash => 4,
    }
}

fn byte_kind(b: u8) -> Result<ExchangeKind, StoreError> {
    Ok(match b {
        0 => ExchangeKind::Direct,
        1 => ExchangeKind::Fanout,
        2 => ExchangeKind::Topic,
        3 => ExchangeKind::Headers,
        4 => ExchangeKind::Hash,
        _ => return Err(StoreError::Corrupt("exchange: unknown type".into())),
    })
}

fn overflow_byte(o: Overflow) -> u8 {
    match o {
        Overflow::DropHead => 0,
        Overflow::RejectPublish => 1,
        Overflow::Block => 2,
    }
}

fn byte_overflow(b: u8) -> Result<Overflow, StoreError> {
    Ok(match b {
        0 => Overflow::DropHead,
        1 => Overflow::RejectPublish,
        2 => Overflow::Block,
        _ => return Err(StoreError::Corrupt("queue: unknown overflow mode".into())),
    })
}

/// Encodes an exchange definition.
pub fn encode_exchange(d: &ExchangeDef) -> Vec<u8> {
    let mut w = Writer::new();
    w.str(&d.name)
        .u8(kind_byte(d.kind))
        .u8(u8::from(d.auto_delete))
        .str(d.alternate.as_deref().unwrap_or(""))
        .opt_str(d.hash_header.as_deref())
        .u32(d.partitions);
    w.finish()
}

/// Decodes an exchange definition (v1 to v3 have no hash header and no
/// partitions).
pub fn decode_exchange(b: &[u8]) -> Result<ExchangeDef, StoreError> {
    let mut r = Reader::open(b, "exchange")?;
    let name = r.str()?;
    let kind = byte_kind(r.u8()?)?;
    let auto_delete = r.u8()? != 0;
    let alternate = Some(r.str()?).filter(|s| !s.is_empty());
    let (hash_header, partitions) = match r.version() {
        V1..=V3 => (None, 0),
        _ => (r.opt_str()?, r.u32()?),
    };
    r.end()?;
    Ok(ExchangeDef {
        name,
        kind,
        auto_delete,
        alternate,
        hash_header,
        partitions,
    })
}

/// Encodes a user.
pub fn encode_user(u: &UserRecord) -> Vec<u8> {
    let mut w = Writer::new();
    w.str(&u.name)
        .str(&u.hash.0)
        .strs(&u.tags)
        .str(&u.configure)
        .str(&u.write)
        .str(&u.read);
    w.finish()
}

/// Decodes a user (one layout, first written as version 3).
pub fn decode_user(b: &[u8]) -> Result<UserRecord, StoreError> {
    let mut r = Reader::open(b, "user")?;
    let name = r.str()?;
    let hash = Secret(r.str()?);
    let tags = r.strs()?;
    let (configure, write, read) = (r.str()?, r.str()?, r.str()?);
    r.end()?;
    Ok(UserRecord {
        name,
        hash,
        tags,
        configure,
        write,
        read,
    })
}

/// Encodes a queue definition, with all its arguments (v2 layout, written
/// as the current version).
pub fn encode_queue(d: &QueueDef) -> Vec<u8> {
    let a = &d.args;
    let mut w = Writer::new();
    w.str(&d.name)
        .u64(d.id)
        .u8(u8::from(d.auto_delete))
        .opt_u64(a.max_length)
        .opt_u64(a.max_bytes)
        .u8(overflow_byte(a.overflow))
        .opt_u64(a.ttl_ms)
        .opt_u64(a.expires_ms)
        .opt_str(a.dead_letter.as_deref())
        .opt_bytes(a.dead_letter_key.as_deref())
        .opt_u32(a.delivery_limit)
        .opt_u64(a.ack_timeout_ms)
        .opt_u8(a.max_priority)
        .opt_u64(a.dedup_window_ms)
        .u64s(&a.retry_delays_ms)
        .u8(queue_flags(a))
        .opt_u64(a.max_age_ms);
    w.finish()
}

const QUEUE_SINGLE_ACTIVE: u8 = 1;
const QUEUE_GROUPS: u8 = 2;
const QUEUE_STREAM: u8 = 4;

/// The kind of queue as v4 stores it: one bit of the flags byte each
/// (at most one is set), none for a classic queue.
fn queue_flags(a: &QueueArgs) -> u8 {
    match a.mode {
        QueueMode::Classic => 0,
        QueueMode::SingleActive => QUEUE_SINGLE_ACTIVE,
        QueueMode::Groups => QUEUE_GROUPS,
        QueueMode::Stream => QUEUE_STREAM,
    }
}

fn read_queue_args(r: &mut Reader<'_>) -> Result<QueueArgs, StoreError> {
    let mut args = QueueArgs {
        max_length: r.opt_u64()?,
        max_bytes: r.opt_u64()?,
        overflow: byte_overflow(r.u8()?)?,
        ttl_ms: r.opt_u64()?,
        expires_ms: r.opt_u64()?,
        dead_letter: r.opt_str()?,
        dead_letter_key: r.opt_bytes()?,
        delivery_limit: r.opt_u32()?,
        ack_timeout_ms: r.opt_u64()?,
        max_priority: r.opt_u8()?,
        dedup_window_ms: r.opt_u64()?,
        retry_delays_ms: r.u64s()?,
        ..QueueArgs::default()
    };
    if r.version() >= V4 {
        let flags = r.u8()?;
        if flags & !(QUEUE_SINGLE_ACTIVE | QUEUE_GROUPS | QUEUE_STREAM) != 0 {
            return Err(r.corrupt("unknown queue flags"));
        }
        args.mode = match flags {
            0 => QueueMode::Classic,
            QUEUE_SINGLE_ACTIVE => QueueMode::SingleActive,
            QUEUE_GROUPS => QueueMode::Groups,
            QUEUE_STREAM => QueueMode::Stream,
            _ => return Err(r.corrupt("queue flags of two kinds")),
        };
        args.max_age_ms = r.opt_u64()?;
    }
    Ok(args)
}

/// Decodes a queue definition: a v1 record has default arguments (v2 and
/// v3 share a layout; v4 adds the queue flags and `max-age`).
pub fn decode_queue(b: &[u8]) -> Result<QueueDef, StoreError> {
    let mut r = Reader::open(b, "queue")?;
    let name = r.str()?;
    let id = r.u64()?;
    let auto_delete = r.u8()? != 0;
    let args = match r.version() {
        V1 => QueueArgs::default(),
        _ => read_queue_args(&mut r)?,
    };
    r.end()?;
    Ok(QueueDef {
        name,
        id,
        auto_delete,
        args,
    })
}

/// Encodes a binding (used as its key: identity is the whole definition).
/// Always version 1, so that the key of a binding never changes.
pub fn encode_binding(d: &BindingDef) -> Vec<u8> {
    let mut w = Writer::with_version(V1);
    w.str(&d.exchange)
        .str(&d.queue)
        .bytes(&d.key)
        .headers(&d.headers)
        .u8(u8::from(d.matching == HeaderMatch::Any));
    w.finish()
}

/// Decodes a binding.
pub fn decode_binding(b: &[u8]) -> Result<BindingDef, StoreError> {
    let mut r = Reader::open(b, "binding")?;
    let def = BindingDef {
        exchange: r.str()?,
        queue: r.str()?,
        key: r.owned_bytes()?,
        headers: r.headers()?,
        matching: if r.u8()? != 0 {
            HeaderMatch::Any
        } else {
            HeaderMatch::All
        },
    };
    r.end()?;
    Ok(def)
}

/// Encodes a message copy's metadata (current version), with its body
/// inline when the copy is the body's only reference (one key, one insert:
/// the fast path).
pub fn encode_meta(m: &MessageMeta, inline_body: Option<&[u8]>) -> Vec<u8> {
    let mut w = Writer::new();
    w.u64(m.body_id)
        .str(&m.id)
        .str(&m.exchange)
        .bytes(&m.routing_key)
        .headers(&m.headers)
        .u32(m.deliveries)
        .opt_u64(m.expires_at)
        .opt_u64(m.not_before)
        .u8(m.priority)
        .u8(if m.volatile { FLAG_VOLATILE } else { 0 })
        .u64(m.published_at)
        .opt_bytes(m.group.as_deref());
    match inline_body {
        Some(body) => w.u8(1).bytes(body),
        None => w.u8(0),
    };
    w.finish()
}

/// A message record read in place: every field checked exactly as
/// [`decode_meta`] checks it, nothing copied. Recovery runs over every
/// stored copy and needs only a few fields, so it reads this view instead
/// of allocating a [`MessageMeta`] per record.
#[derive(Debug, Clone, Copy)]
pub struct MetaView<'a> {
    /// See [`MessageMeta::body_id`].
    pub body_id: u64,
    /// See [`MessageMeta::id`].
    pub id: &'a str,
    /// See [`MessageMeta::exchange`].
    pub exchange: &'a str,
    /// See [`MessageMeta::routing_key`].
    pub routing_key: &'a [u8],
    /// The encoded headers after their count (already checked): `n` ×
    /// (`str name`, `bytes value`).
    headers: &'a [u8],
    /// The number of headers in `headers`.
    header_count: u32,
    /// See [`MessageMeta::deliveries`].
    pub deliveries: u32,
    /// See [`MessageMeta::expires_at`].
    pub expires_at: Option<u64>,
    /// See [`MessageMeta::not_before`].
    pub not_before: Option<u64>,
    /// See [`MessageMeta::priority`].
    pub priority: u8,
    /// See [`MessageMeta::volatile`].
    pub volatile: bool,
    /// See [`MessageMeta::published_at`].
    pub published_at: u64,
    /// See [`MessageMeta::group`].
    pub group: Option<&'a [u8]>,
    /// The body, when it is stored inside this record.
    pub inline_body: Option<&'a [u8]>,
}

impl<'a> MetaView<'a> {
    /// The headers, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let mut r = Reader {
            rest: self.headers,
            what: "message",
            version: VERSION,
        };
        // Already checked by `view_meta`: a failure cannot happen, and
        // would only end the list early.
        (0..self.header_count).map_while(move |_| Some((r.str_ref().ok()?, r.bytes().ok()?)))
    }

    /// The owned metadata.
    pub fn to_meta(&self) -> MessageMeta {
        MessageMeta {
            body_id: self.body_id,
            id: self.id.to_owned(),
            exchange: self.exchange.to_owned(),
            routing_key: Bytes::copy_from_slice(self.routing_key),
            headers: self
                .headers()
                .map(|(k, v)| (k.to_owned(), Bytes::copy_from_slice(v)))
                .collect(),
            deliveries: self.deliveries,
            expires_at: self.expires_at,
            not_before: self.not_before,
            priority: self.priority,
            volatile: self.volatile,
            published_at: self.published_at,
            group: self.group.map(Bytes::copy_from_slice),
        }
    }
}

/// Reads a message record in place (see [`MetaView`]). A v1 record has no
/// expiry, no delay and priority 0; v1 and v2 records are not volatile.
pub fn view_meta(b: &[u8]) -> Result<MetaView<'_>, StoreError> {
    let mut r = Reader::open(b, "message")?;
    let body_id = r.u64()?;
    let id = r.str_ref()?;
    let exchange = r.str_ref()?;
    let routing_key = r.bytes()?;
    let header_count = r.u32()?;
    let start = r.rest;
    for _ in 0..header_count {
        r.str_ref()?;
        r.bytes()?;
    }
    let headers = &start[..start.len() - r.rest.len()];
    let deliveries = r.u32()?;
    let (expires_at, not_before, priority) = match r.version() {
        V1 => (None, None, 0),
        _ => (r.opt_u64()?, r.opt_u64()?, r.u8()?),
    };
    let volatile = match r.version() {
        V1 | V2 => false,
        _ => match r.u8()? {
            0 => false,
            FLAG_VOLATILE => true,
            _ => return Err(r.corrupt("unknown flags")),
        },
    };
    let (published_at, group) = match r.version() {
        V1..=V3 => (0, None),
        _ => (r.u64()?, if r.tag()? { Some(r.bytes()?) } else { None }),
    };
    let inline_body = match r.u8()? {
        0 => None,
        _ => Some(r.bytes()?),
    };
    r.end()?;
    Ok(MetaView {
        body_id,
        id,
        exchange,
        routing_key,
        headers,
        header_count,
        deliveries,
        expires_at,
        not_before,
        priority,
        volatile,
        published_at,
        group,
        inline_body,
    })
}

/// Decodes a message copy's metadata and its inline body, if it has one
/// (see [`view_meta`] for the defaults of older versions).
pub fn decode_meta(b: &[u8]) -> Result<(MessageMeta, Option<Vec<u8>>), StoreError> {
    let v = view_meta(b)?;
    Ok((v.to_meta(), v.inline_body.map(<[u8]>::to_vec)))
}

/// Encodes the value of a de-duplication record: the end of its window
/// (Unix ms). Its queue id and message id are its key.
pub fn encode_dedup(expires_at: u64) -> Vec<u8> {
    encode_u64(expires_at)
}

/// Encodes the value of a stream offset record: a consumer group's
/// committed offset (its queue id and group name are its key).
pub fn encode_offset(offset: u64) -> Vec<u8> {
    encode_u64(offset)
}

/// Decodes the value of a stream offset record.
pub fn decode_offset(b: &[u8]) -> Result<u64, StoreError> {
    decode_u64(b, "offset", V4)
}

/// Decodes the value of a de-duplication record: its `expires_at`.
pub fn decode_dedup(b: &[u8]) -> Result<u64, StoreError> {
    decode_u64(b, "dedup", V2)
}

/// A record holding one `u64` (current version).
fn encode_u64(v: u64) -> Vec<u8> {
    let mut w = Writer::new();
    w.u64(v);
    w.finish()
}

/// Reads a record holding one `u64`, written since version `since`.
fn decode_u64(b: &[u8], what: &'static str, since: u8) -> Result<u64, StoreError> {
    let mut r = Reader::open(b, what)?;
    if r.version() < since {
        return Err(StoreError::Corrupt(format!(
            "{what}: unknown record version"
        )));
    }
    let v = r.u64()?;
    r.end()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_corrupt<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
        matches!(r, Err(StoreError::Corrupt(_)))
    }

    fn full_args() -> QueueArgs {
        QueueArgs {
            mode: QueueMode::SingleActive,
            max_age_ms: Some(3_600_000),
            max_length: Some(10),
            max_bytes: Some(u64::MAX),
            overflow: Overflow::Block,
            ttl_ms: Some(60_000),
            expires_ms: Some(0),
            dead_letter: Some("dlx".into()),
            dead_letter_key: Some(Bytes::new()),
            delivery_limit: Some(5),
            ack_timeout_ms: Some(30_000),
            max_priority: Some(255),
            dedup_window_ms: Some(1_000),
            retry_delays_ms: vec![100, 1_000, 10_000],
        }
    }

    fn queue(args: QueueArgs) -> QueueDef {
        QueueDef {
            name: "jobs".into(),
            id: 42,
            auto_delete: true,
            args,
        }
    }

    fn meta(expires_at: Option<u64>, not_before: Option<u64>, priority: u8) -> MessageMeta {
        MessageMeta {
            published_at: 0,
            group: None,
            body_id: 9,
            id: "m1".into(),
            exchange: "".into(),
            routing_key: "jobs".into(),
            headers: vec![("k".into(), "v".into())],
            deliveries: 3,
            expires_at,
            not_before,
            priority,
            volatile: false,
        }
    }

    /// A record assembled by hand, as version 1 wrote it: version byte,
    /// CRC32 (big-endian) of the fields, the fields.
    fn v1_record(fields: &[u8]) -> Vec<u8> {
        let mut rec = vec![1u8];
        rec.extend_from_slice(&crc32fast::hash(fields).to_be_bytes());
        rec.extend_from_slice(fields);
        rec
    }

    fn lp(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s);
    }

    #[test]
    fn records_round_trip() {
        let e = ExchangeDef {
            hash_header: None,
            partitions: 0,
            name: "logs".into(),
            kind: ExchangeKind::Topic,
            auto_delete: true,
            alternate: Some("ae".into()),
        };
        assert_eq!(decode_exchange(&encode_exchange(&e)).unwrap(), e);
        let b = BindingDef {
            exchange: "x".into(),
            queue: "q".into(),
            key: "a.*".into(),
            headers: vec![("k".into(), "v".into())],
            matching: HeaderMatch::Any,
        };
        assert_eq!(decode_binding(&encode_binding(&b)).unwrap(), b);
    }

    #[test]
    fn queue_args_round_trip() {
        for args in [
            QueueArgs::default(),
            full_args(),
            QueueArgs {
                overflow: Overflow::RejectPublish,
                dead_letter: Some(String::new()),
                retry_delays_ms: vec![7],
                ..QueueArgs::default()
            },
        ] {
            let q = queue(args);
            let rec = encode_queue(&q);
            assert_eq!(rec[0], VERSION);
            assert_eq!(decode_queue(&rec).unwrap(), q);
        }
    }

    #[test]
    fn every_queue_arg_field_is_kept() {
        // Each field alone, so that one written in the wrong slot shows.
        let full = full_args();
        let singles = [
            QueueArgs {
                max_length: full.max_length,
                ..Default::default()
            },
            QueueArgs {
                max_bytes: full.max_bytes,
                ..Default::default()
            },
            QueueArgs {
                overflow: full.overflow,
                ..Default::default()
            },
            QueueArgs {
                ttl_ms: full.ttl_ms,
                ..Default::default()
            },
            QueueArgs {
                expires_ms: full.expires_ms,
                ..Default::default()
            },
            QueueArgs {
                dead_letter: full.dead_letter.clone(),
                ..Default::default()
            },
            QueueArgs {
                dead_letter_key: full.dead_letter_key.clone(),
                ..Default::default()
            },
            QueueArgs {
                delivery_limit: full.delivery_limit,
                ..Default::default()
            },
            QueueArgs {
                ack_timeout_ms: full.ack_timeout_ms,
                ..Default::default()
            },
            QueueArgs {
                max_priority: full.max_priority,
                ..Default::default()
            },
            QueueArgs {
                dedup_window_ms: full.dedup_window_ms,
                ..Default::default()
            },
            QueueArgs {
                retry_delays_ms: full.retry_delays_ms.clone(),
                ..Default::default()
            },
            QueueArgs {
                mode: QueueMode::SingleActive,
                ..Default::default()
            },
            QueueArgs {
                mode: QueueMode::Groups,
                ..Default::default()
            },
            QueueArgs {
                mode: QueueMode::Stream,
                ..Default::default()
            },
            QueueArgs {
                max_age_ms: full.max_age_ms,
                ..Default::default()
            },
        ];
        for args in singles {
            assert_ne!(args, QueueArgs::default());
            let q = queue(args);
            assert_eq!(decode_queue(&encode_queue(&q)).unwrap(), q);
        }
    }

    #[test]
    fn message_meta_round_trips_with_and_without_the_new_fields() {
        for m in [
            meta(None, None, 0),
            meta(Some(1_700_000_000_000), None, 0),
            meta(None, Some(1_700_000_000_500), 0),
            meta(None, None, 9),
            meta(Some(u64::MAX), Some(0), 255),
        ] {
            let rec = encode_meta(&m, None);
            assert_eq!(rec[0], VERSION);
            assert_eq!(decode_meta(&rec).unwrap(), (m.clone(), None));
            assert_eq!(
                decode_meta(&encode_meta(&m, Some(b"body"))).unwrap(),
                (m.clone(), Some(b"body".to_vec()))
            );
            assert_eq!(
                decode_meta(&encode_meta(&m, Some(b""))).unwrap(),
                (m, Some(Vec::new()))
            );
        }
    }

    #[test]
    fn version_4_fields_round_trip() {
        let m = MessageMeta {
            published_at: 1_700_000_000_123,
            group: Some(Bytes::from_static(b"order-7")),
            ..meta(None, None, 0)
        };
        for body in [None, Some(&b"body"[..])] {
            let rec = encode_meta(&m, body);
            let v = view_meta(&rec).unwrap();
            assert_eq!(v.published_at, m.published_at);
            assert_eq!(v.group, Some(&b"order-7"[..]));
            assert_eq!(v.inline_body, body);
            assert_eq!(v.to_meta(), m);
        }
        let e = ExchangeDef {
            name: "orders".into(),
            kind: ExchangeKind::Hash,
            auto_delete: false,
            alternate: None,
            hash_header: Some("user".into()),
            partitions: 3,
        };
        assert_eq!(decode_exchange(&encode_exchange(&e)).unwrap(), e);
        assert_eq!(decode_offset(&encode_offset(42)).unwrap(), 42);
        // A queue flags byte with an unknown bit, or naming two kinds (no
        // sluice wrote one: the parser refuses them), is corruption.
        for flags in [0x80, 3, 5, 6, 7] {
            let mut rec = encode_queue(&queue(QueueArgs::default()));
            let flags_at = rec.len() - 2; // flags, then an absent max-age
            rec[flags_at] = flags;
            let crc = record_crc(VERSION, &rec[5..]);
            rec[1..5].copy_from_slice(&crc.to_be_bytes());
            assert!(is_corrupt(decode_queue(&rec)), "flags {flags:#x}");
        }
    }

    #[test]
    fn a_version_3_message_has_no_publish_time_and_no_group() {
        let mut w = Writer::with_version(V3);
        w.u64(9)
            .str("m1")
            .str("")
            .bytes(b"jobs")
            .headers(&[])
            .u32(0)
            .opt_u64(None)
            .opt_u64(None)
            .u8(0)
            .u8(0)
            .u8(1)
            .bytes(b"body");
        let rec = w.finish();
        let v = view_meta(&rec).unwrap();
        assert_eq!((v.published_at, v.group), (0, None));
        assert_eq!(v.inline_body, Some(&b"body"[..]));
    }

    #[test]
    fn message_flags_round_trip_volatile_or_not() {
        for volatile in [false, true] {
            let m = MessageMeta {
                volatile,
                ..meta(Some(1), Some(2), 3)
            };
            for body in [None, Some(&b"body"[..])] {
                let rec = encode_meta(&m, body);
                assert_eq!(rec[0], VERSION);
                let v = view_meta(&rec).unwrap();
                assert_eq!(v.volatile, volatile);
                assert_eq!(v.inline_body, body);
                assert_eq!(v.to_meta(), m);
                assert_eq!(
                    decode_meta(&rec).unwrap(),
                    (m.clone(), body.map(<[u8]>::to_vec))
                );
            }
        }
    }

    #[test]
    fn version_2_message_decodes_as_not_volatile() {
        // The v2 layout: no flags byte between priority and inline.
        let m = meta(Some(1_700_000_000_000), Some(5), 4);
        let mut w = Writer::with_version(V2);
        w.u64(m.body_id)
            .str(&m.id)
            .str(&m.exchange)
            .bytes(&m.routing_key)
            .headers(&m.headers)
            .u32(m.deliveries)
            .opt_u64(m.expires_at)
            .opt_u64(m.not_before)
            .u8(m.priority)
            .u8(1)
            .bytes(b"old");
        let (back, body) = decode_meta(&w.finish()).unwrap();
        assert!(!back.volatile);
        assert_eq!((back, body), (m, Some(b"old".to_vec())));
    }

    #[test]
    fn unknown_message_flags_are_corruption() {
        for flags in [2u8, 3, 0x80, 0xff] {
            let mut w = Writer::new();
            w.u64(1)
                .str("m")
                .str("")
                .str("q")
                .headers(&[])
                .u32(0)
                .opt_u64(None)
                .opt_u64(None)
                .u8(0)
                .u8(flags)
                .u8(0);
            assert!(is_corrupt(decode_meta(&w.finish())), "flags {flags:#x}");
        }
    }

    #[test]
    fn dedup_round_trips() {
        for t in [0, 1, 1_700_000_000_000, u64::MAX] {
            assert_eq!(decode_dedup(&encode_dedup(t)).unwrap(), t);
        }
        // A v1 record of the same shape never existed: refused.
        let mut w = Writer::with_version(V1);
        w.u64(5);
        assert!(is_corrupt(decode_dedup(&w.finish())));
    }

    /// Queue records as the encoder wrote them while the kind was three
    /// flags (before `QueueMode`, commit 6e6a33c): each decodes to its
    /// mode, and encodes again to the very same bytes.
    #[test]
    fn queue_records_from_before_queue_mode_read_and_write_the_same_bytes() {
        let def = |name: &str, id: u64, args: QueueArgs| QueueDef {
            name: name.into(),
            id,
            auto_delete: false,
            args,
        };
        let old = [
            (
                "04274fbc1a00000005706c61696e000000000000000100000000000000000000\
                 0000000000000000",
                def("plain", 1, QueueArgs::default()),
            ),
            (
                "0444c95b24000000036f6e650000000000000002000000000000000000000000\
                 000000000100",
                def(
                    "one",
                    2,
                    QueueArgs {
                        mode: QueueMode::SingleActive,
                        ..QueueArgs::default()
                    },
                ),
            ),
            (
                "045d7d7d500000000767726f7570656400000000000000030001000000000000\
                 000a00000000000000000000000000000200",
                def(
                    "grouped",
                    3,
                    QueueArgs {
                        mode: QueueMode::Groups,
                        max_length: Some(10),
                        ..QueueArgs::default()
                    },
                ),
            ),
            (
                "0486c88720000000036c6f670000000000000004000001000000004000000000\
                 00000000000000000000000004010000000005265c00",
                def(
                    "log",
                    4,
                    QueueArgs {
                        mode: QueueMode::Stream,
                        max_age_ms: Some(86_400_000),
                        max_bytes: Some(1 << 30),
                        ..QueueArgs::default()
                    },
                ),
            ),
        ];
        let unhex = |h: &str| -> Vec<u8> {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect()
        };
        for (hex, want) in old {
            let rec = unhex(hex);
            assert_eq!(decode_queue(&rec).unwrap(), want, "{}", want.name);
            assert_eq!(encode_queue(&want), rec, "{}", want.name);
        }
    }

    #[test]
    fn version_1_queue_decodes_with_default_args() {
        let mut fields = Vec::new();
        lp(&mut fields, b"jobs");
        fields.extend_from_slice(&42u64.to_be_bytes());
        fields.push(1);
        let rec = v1_record(&fields);
        assert_eq!(decode_queue(&rec).unwrap(), queue(QueueArgs::default()));
        // The same, through the Writer.
        let mut w = Writer::with_version(V1);
        w.str("jobs").u64(42).u8(1);
        assert_eq!(w.finish(), rec);
    }

    #[test]
    fn version_1_message_decodes_with_defaults() {
        let mut fields = Vec::new();
        fields.extend_from_slice(&9u64.to_be_bytes());
        lp(&mut fields, b"m1");
        lp(&mut fields, b"");
        lp(&mut fields, b"jobs");
        fields.extend_from_slice(&1u32.to_be_bytes());
        lp(&mut fields, b"k");
        lp(&mut fields, b"v");
        fields.extend_from_slice(&3u32.to_be_bytes());
        let mut plain = fields.clone();
        plain.push(0);
        assert_eq!(
            decode_meta(&v1_record(&plain)).unwrap(),
            (meta(None, None, 0), None)
        );
        let mut inline = fields;
        inline.push(1);
        lp(&mut inline, b"body");
        assert_eq!(
            decode_meta(&v1_record(&inline)).unwrap(),
            (meta(None, None, 0), Some(b"body".to_vec()))
        );
    }

    #[test]
    fn version_1_exchange_and_binding_decode_and_binding_keys_stay_version_1() {
        let mut fields = Vec::new();
        lp(&mut fields, b"logs");
        fields.extend_from_slice(&[2, 1]);
        lp(&mut fields, b"");
        let e = ExchangeDef {
            hash_header: None,
            partitions: 0,
            name: "logs".into(),
            kind: ExchangeKind::Topic,
            auto_delete: true,
            alternate: None,
        };
        assert_eq!(decode_exchange(&v1_record(&fields)).unwrap(), e);

        // A binding is its own key: its bytes must be exactly what
        // version 1 wrote, or existing bindings could never be deleted.
        let mut fields = Vec::new();
        lp(&mut fields, b"x");
        lp(&mut fields, b"q");
        lp(&mut fields, b"a.*");
        fields.extend_from_slice(&1u32.to_be_bytes());
        lp(&mut fields, b"k");
        lp(&mut fields, b"v");
        fields.push(0);
        let rec = v1_record(&fields);
        let b = BindingDef {
            exchange: "x".into(),
            queue: "q".into(),
            key: "a.*".into(),
            headers: vec![("k".into(), "v".into())],
            matching: HeaderMatch::All,
        };
        assert_eq!(encode_binding(&b), rec);
        assert_eq!(decode_binding(&rec).unwrap(), b);
    }

    #[test]
    fn keys_and_header_values_are_any_bytes() {
        let key = Bytes::from_static(b"\xc3\x28.\xff \"q\"");
        let value = Bytes::from_static(b"\xfe\x80");
        let b = BindingDef {
            exchange: "x".into(),
            queue: "q".into(),
            key: key.clone(),
            headers: vec![("k".into(), value.clone())],
            matching: HeaderMatch::All,
        };
        let rec = encode_binding(&b);
        assert_eq!(rec[0], V1, "binding keys stay version 1");
        assert_eq!(decode_binding(&rec).unwrap(), b);
        let m = MessageMeta {
            routing_key: key.clone(),
            headers: vec![("x-death-key".into(), key.clone()), ("k".into(), value)],
            ..meta(None, None, 0)
        };
        let rec = encode_meta(&m, Some(b"body"));
        assert_eq!(rec[0], VERSION);
        let v = view_meta(&rec).unwrap();
        assert_eq!(v.routing_key, &key[..]);
        assert_eq!(v.headers().count(), 2);
        assert_eq!(decode_meta(&rec).unwrap(), (m, Some(b"body".to_vec())));
        let q = queue(QueueArgs {
            dead_letter_key: Some(key),
            ..QueueArgs::default()
        });
        assert_eq!(decode_queue(&encode_queue(&q)).unwrap(), q);
        // Names and ids are still text: not UTF-8 there is corruption.
        let mut w = Writer::new();
        w.u64(1)
            .bytes(b"\xff")
            .str("")
            .str("q")
            .headers(&[])
            .u32(0)
            .opt_u64(None)
            .opt_u64(None)
            .u8(0)
            .u8(0)
            .u8(0);
        assert!(is_corrupt(decode_meta(&w.finish())));
    }

    #[test]
    fn users_round_trip() {
        let u = UserRecord {
            name: "alice".into(),
            hash: Secret("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
            tags: vec!["admin".into()],
            configure: "^orders\\.".into(),
            write: ".*".into(),
            read: "".into(),
        };
        let rec = encode_user(&u);
        assert_eq!(decode_user(&rec).unwrap(), u);
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x41;
            assert!(is_corrupt(decode_user(&bad)), "user byte {i}");
        }
        for n in 0..rec.len() {
            assert!(is_corrupt(decode_user(&rec[..n])), "user {n}");
        }
    }

    #[test]
    fn a_flipped_byte_is_corruption_not_a_panic() {
        let records = [
            encode_queue(&queue(full_args())),
            encode_queue(&queue(QueueArgs::default())),
            encode_meta(&meta(Some(1), Some(2), 3), Some(b"body")),
            encode_meta(&meta(None, None, 0), None),
            encode_dedup(1_700_000_000_000),
            encode_exchange(&ExchangeDef {
                hash_header: None,
                partitions: 0,
                name: "x".into(),
                kind: ExchangeKind::Direct,
                auto_delete: false,
                alternate: None,
            }),
        ];
        for rec in &records {
            for i in 0..rec.len() {
                // 0x01 turns version 3 into version 2, 0x02 into version 1:
                // the version byte is under the CRC, so that is caught too.
                for mask in [0x01u8, 0x02, 0x03, 0x40, 0x80, 0xff] {
                    let mut bad = rec.clone();
                    bad[i] ^= mask;
                    assert!(is_corrupt(decode_queue(&bad)), "queue byte {i}");
                    assert!(is_corrupt(decode_meta(&bad)), "meta byte {i}");
                    assert!(is_corrupt(decode_dedup(&bad)), "dedup byte {i}");
                    assert!(is_corrupt(decode_exchange(&bad)), "exchange byte {i}");
                    assert!(is_corrupt(decode_binding(&bad)), "binding byte {i}");
                }
            }
        }
    }

    #[test]
    fn a_truncated_record_is_corruption_not_a_panic() {
        let records = [
            encode_queue(&queue(full_args())),
            encode_meta(&meta(Some(1), Some(2), 3), Some(b"body")),
            encode_dedup(7),
        ];
        for rec in &records {
            for n in 0..rec.len() {
                assert!(is_corrupt(decode_queue(&rec[..n])), "queue {n}");
                assert!(is_corrupt(decode_meta(&rec[..n])), "meta {n}");
                assert!(is_corrupt(decode_dedup(&rec[..n])), "dedup {n}");
            }
        }
        assert!(is_corrupt(decode_queue(&[])));
    }

    #[test]
    fn well_sealed_but_malformed_records_are_corruption() {
        // Missing fields under a valid CRC: a v2 queue without its args.
        let mut w = Writer::new();
        w.str("jobs").u64(1).u8(0);
        assert!(is_corrupt(decode_queue(&w.finish())));
        // A current message without its v2 fields.
        let mut w = Writer::new();
        w.u64(1).str("m").str("").str("q").headers(&[]).u32(0).u8(0);
        assert!(is_corrupt(decode_meta(&w.finish())));
        // A v3 message in the v2 layout (no flags byte).
        let mut w = Writer::new();
        w.u64(1)
            .str("m")
            .str("")
            .str("q")
            .headers(&[])
            .u32(0)
            .opt_u64(None)
            .opt_u64(None)
            .u8(0)
            .u8(0);
        assert!(is_corrupt(decode_meta(&w.finish())));
        // A header count far beyond the record.
        let mut w = Writer::new();
        w.u64(1).str("m").str("").str("q").u32(u32::MAX);
        assert!(is_corrupt(decode_meta(&w.finish())));
        // An optional tag that is neither 0 nor 1.
        let mut w = Writer::new();
        w.str("jobs").u64(1).u8(0).u8(2);
        assert!(is_corrupt(decode_queue(&w.finish())));
        // An unknown overflow mode.
        let mut w = Writer::new();
        w.str("jobs").u64(1).u8(0).opt_u64(None).opt_u64(None).u8(3);
        assert!(is_corrupt(decode_queue(&w.finish())));
        // A retry-delay count far beyond the record: no huge allocation.
        let mut w = Writer::new();
        w.str("jobs")
            .u64(1)
            .u8(0)
            .opt_u64(None)
            .opt_u64(None)
            .u8(0)
            .opt_u64(None)
            .opt_u64(None)
            .opt_str(None)
            .opt_str(None)
            .opt_u32(None)
            .opt_u64(None)
            .opt_u8(None)
            .opt_u64(None)
            .u32(u32::MAX);
        assert!(is_corrupt(decode_queue(&w.finish())));
        // Trailing bytes.
        let mut w = Writer::new();
        w.u64(1).u8(0);
        assert!(is_corrupt(decode_dedup(&w.finish())));
        let mut fields = Vec::new();
        lp(&mut fields, b"jobs");
        fields.extend_from_slice(&42u64.to_be_bytes());
        fields.extend_from_slice(&[0, 0]);
        assert!(is_corrupt(decode_queue(&v1_record(&fields))));
        // Unknown versions, even with a matching CRC.
        for version in [0u8, 4, 0xff] {
            let mut rec = encode_dedup(1);
            rec[0] = version;
            let crc = crc32fast::hash(&rec[5..]);
            rec[1..5].copy_from_slice(&crc.to_be_bytes());
            assert!(is_corrupt(decode_dedup(&rec)));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic generator: random records, some sealed with
        // a correct CRC so that the field readers are exercised too.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..5_000 {
            let len = (next() % 64) as usize;
            let mut rec: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if rec.len() >= 5 && next() % 2 == 0 {
                rec[0] = [V1, V2, V3][(next() % 3) as usize];
                let crc = record_crc(rec[0], &rec[5..]);
                rec[1..5].copy_from_slice(&crc.to_be_bytes());
            }
            let _ = decode_queue(&rec);
            let _ = decode_meta(&rec);
            if let Ok(v) = view_meta(&rec) {
                let _ = v.to_meta();
            }
            let _ = decode_exchange(&rec);
            let _ = decode_binding(&rec);
            let _ = decode_dedup(&rec);
            let _ = decode_user(&rec);
        }
    }
}
