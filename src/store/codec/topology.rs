//! The topology records: exchange, queue, binding and user (fields in
//! order, as the [codec](super)'s module doc writes them).
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
//!   groups, bit 2 stream: the `QueueMode`, none for a classic queue; any
//!   other bit, or two of them, is corruption) and `opt<u64> max_age_ms`.
//! - user (v3): `str name`, `str hash` (argon2id PHC string), `u32 n` then
//!   `n` × `str tag`, `str configure`, `str write`, `str read`.

use super::{Reader, Writer, V1, V3, V4};
use crate::protocol::command::{ExchangeKind, HeaderMatch, Overflow, QueueArgs, QueueMode, Secret};
use crate::store::{BindingDef, ExchangeDef, QueueDef, StoreError, UserRecord};

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
pub(crate) fn encode_exchange(d: &ExchangeDef) -> Vec<u8> {
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
pub(crate) fn decode_exchange(b: &[u8]) -> Result<ExchangeDef, StoreError> {
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
pub(crate) fn encode_user(u: &UserRecord) -> Vec<u8> {
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
pub(crate) fn decode_user(b: &[u8]) -> Result<UserRecord, StoreError> {
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
pub(crate) fn encode_queue(d: &QueueDef) -> Vec<u8> {
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
pub(crate) fn decode_queue(b: &[u8]) -> Result<QueueDef, StoreError> {
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
pub(crate) fn encode_binding(d: &BindingDef) -> Vec<u8> {
    let mut w = Writer::with_version(V1);
    w.str(&d.exchange)
        .str(&d.queue)
        .bytes(&d.key)
        .headers(&d.headers)
        .u8(u8::from(d.matching == HeaderMatch::Any));
    w.finish()
}

/// Decodes a binding.
pub(crate) fn decode_binding(b: &[u8]) -> Result<BindingDef, StoreError> {
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
