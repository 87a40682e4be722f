//! The message-side records: a message copy's metadata (with its body
//! inline when it is the body's only copy), a de-duplication record and a
//! stream consumer group's offset (fields in order, as the [codec](super)'s
//! module doc writes them).
//!
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
//!   position (queue id and group name are in the key, see `store::sled`).
//! - de-duplication (v2 and v3): `u64 expires_at` (queue id and message id
//!   are in the key, see `store::sled`).
//! - body head chunk (v1, v2, v3, built in `store::sled`): `u32 crc of the
//!   whole body`, `u64 length`, `bytes first chunk`.

use bytes::Bytes;

use super::{Reader, Writer, V1, V2, V3, V4, VERSION};
use crate::store::{MessageMeta, StoreError};

/// Message flags byte, bit 0: the copy is volatile (see
/// [`MessageMeta::volatile`]).
const FLAG_VOLATILE: u8 = 1;

/// Encodes a message copy's metadata (current version), with its body
/// inline when the copy is the body's only reference (one key, one insert:
/// the fast path).
pub(crate) fn encode_meta(m: &MessageMeta, inline_body: Option<&[u8]>) -> Vec<u8> {
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
/// `decode_meta` checks it, nothing copied. Recovery runs over every
/// stored copy and needs only a few fields, so it reads this view instead
/// of allocating a [`MessageMeta`] per record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MetaView<'a> {
    /// See [`MessageMeta::body_id`].
    pub(crate) body_id: u64,
    /// See [`MessageMeta::id`].
    pub(crate) id: &'a str,
    /// See [`MessageMeta::exchange`].
    pub(crate) exchange: &'a str,
    /// See [`MessageMeta::routing_key`].
    pub(crate) routing_key: &'a [u8],
    /// The encoded headers after their count (already checked): `n` ×
    /// (`str name`, `bytes value`).
    headers: &'a [u8],
    /// The number of headers in `headers`.
    header_count: u32,
    /// See [`MessageMeta::deliveries`].
    pub(crate) deliveries: u32,
    /// See [`MessageMeta::expires_at`].
    pub(crate) expires_at: Option<u64>,
    /// See [`MessageMeta::not_before`].
    pub(crate) not_before: Option<u64>,
    /// See [`MessageMeta::priority`].
    pub(crate) priority: u8,
    /// See [`MessageMeta::volatile`].
    pub(crate) volatile: bool,
    /// See [`MessageMeta::published_at`].
    pub(crate) published_at: u64,
    /// See [`MessageMeta::group`].
    pub(crate) group: Option<&'a [u8]>,
    /// The body, when it is stored inside this record.
    pub(crate) inline_body: Option<&'a [u8]>,
}

impl<'a> MetaView<'a> {
    /// The headers, in order.
    pub(crate) fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
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
    pub(crate) fn to_meta(self) -> MessageMeta {
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
pub(crate) fn view_meta(b: &[u8]) -> Result<MetaView<'_>, StoreError> {
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
#[cfg(test)]
pub(crate) fn decode_meta(b: &[u8]) -> Result<(MessageMeta, Option<Vec<u8>>), StoreError> {
    let v = view_meta(b)?;
    Ok((v.to_meta(), v.inline_body.map(<[u8]>::to_vec)))
}

/// Encodes the value of a de-duplication record: the end of its window
/// (Unix ms). Its queue id and message id are its key.
pub(crate) fn encode_dedup(expires_at: u64) -> Vec<u8> {
    encode_u64(expires_at)
}

/// Encodes the value of a stream offset record: a consumer group's
/// committed offset (its queue id and group name are its key).
pub(crate) fn encode_offset(offset: u64) -> Vec<u8> {
    encode_u64(offset)
}

/// Decodes the value of a stream offset record.
pub(crate) fn decode_offset(b: &[u8]) -> Result<u64, StoreError> {
    decode_u64(b, "offset", V4)
}

/// Decodes the value of a de-duplication record: its `expires_at`.
pub(crate) fn decode_dedup(b: &[u8]) -> Result<u64, StoreError> {
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
