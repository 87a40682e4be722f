//! The on-disk encoding of sluice's records: a version byte, a CRC32, then
//! length-prefixed fields. Decoding never panics: a short, altered or
//! over-long record is [`StoreError::Corrupt`].
//!
//! This file holds what every record shares: the versions, [`Writer`] and
//! [`Reader`]. The records themselves, each with its layouts, are in
//! `topology.rs` (exchange, queue, binding, user) and `message.rs`
//! (message copy, de-duplication, stream offset, body head chunk); this
//! module re-exports their encoders and decoders.
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
//! # Fields
//!
//! A record's fields are listed in order; `opt<T>` is a tag byte, 0 = absent or
//! 1 = present, followed by the `T` when present; `str`/`bytes` are a u32
//! length then the bytes, `str` being checked UTF-8 when read and `bytes`
//! any bytes; integers are big-endian.
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

mod message;
#[cfg(test)]
mod tests;
mod topology;

#[cfg(test)]
pub(crate) use message::decode_meta;
pub(crate) use message::{
    decode_dedup, decode_offset, encode_dedup, encode_meta, encode_offset, view_meta,
};
pub(crate) use topology::{
    decode_binding, decode_exchange, decode_queue, decode_user, encode_binding, encode_exchange,
    encode_queue, encode_user,
};

use bytes::Bytes;

use super::StoreError;
use crate::protocol::command::Header;

/// The first layout: CRC over the fields only.
pub(crate) const V1: u8 = 1;
/// CRC over the version byte and the fields; queue arguments and
/// per-message expiry, delay and priority.
pub(crate) const V2: u8 = 2;
/// As [`V2`], plus a flags byte in message records (volatile copies).
pub(crate) const V3: u8 = 3;
/// The current layout: as [`V3`], plus hash exchanges and partitioned
/// streams (exchange), streams and queue modes (queue), publish time and
/// group key (message).
pub(crate) const V4: u8 = 4;
/// The version new records are written with.
pub(crate) const VERSION: u8 = V4;

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
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

impl Writer {
    /// A record of the current [`VERSION`], with room for the header.
    pub(crate) fn new() -> Writer {
        Writer::with_version(VERSION)
    }
    /// A record of an explicit version ([`V1`] to [`V4`]): the caller
    /// writes that version's layout.
    pub(crate) fn with_version(version: u8) -> Writer {
        debug_assert!((V1..=V4).contains(&version), "unknown record version");
        Writer {
            buf: vec![version, 0, 0, 0, 0],
        }
    }
    /// One byte.
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// A big-endian u32.
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A big-endian u64.
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Length-prefixed bytes.
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(v);
        self
    }
    /// A length-prefixed string.
    pub(crate) fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    /// A list of headers: `str` names, `bytes` values.
    pub(crate) fn headers(&mut self, hs: &[Header]) -> &mut Self {
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
    pub(crate) fn opt_u8(&mut self, v: Option<u8>) -> &mut Self {
        self.tag(&v);
        if let Some(v) = v {
            self.u8(v);
        }
        self
    }
    /// An optional u32.
    pub(crate) fn opt_u32(&mut self, v: Option<u32>) -> &mut Self {
        self.tag(&v);
        if let Some(v) = v {
            self.u32(v);
        }
        self
    }
    /// An optional u64.
    pub(crate) fn opt_u64(&mut self, v: Option<u64>) -> &mut Self {
        self.tag(&v);
        if let Some(v) = v {
            self.u64(v);
        }
        self
    }
    /// An optional string (`Some("")` stays distinct from `None`).
    pub(crate) fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        self.opt_bytes(v.map(str::as_bytes))
    }
    /// Optional length-prefixed bytes (`Some(b"")` stays distinct from
    /// `None`).
    pub(crate) fn opt_bytes(&mut self, v: Option<&[u8]>) -> &mut Self {
        self.tag(&v);
        if let Some(v) = v {
            self.bytes(v);
        }
        self
    }
    /// A counted list of u64s.
    pub(crate) fn u64s(&mut self, vs: &[u64]) -> &mut Self {
        self.u32(u32::try_from(vs.len()).unwrap_or(u32::MAX));
        for v in vs {
            self.u64(*v);
        }
        self
    }
    /// A counted list of strings.
    pub(crate) fn strs(&mut self, vs: &[String]) -> &mut Self {
        self.u32(u32::try_from(vs.len()).unwrap_or(u32::MAX));
        for v in vs {
            self.str(v);
        }
        self
    }
    /// Seals the record: fills in the CRC.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let crc = record_crc(self.buf[0], &self.buf[5..]);
        self.buf[1..5].copy_from_slice(&crc.to_be_bytes());
        self.buf
    }
}

/// Reads fields back from a record whose CRC has been checked.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    what: &'static str,
    version: u8,
}

impl<'a> Reader<'a> {
    /// Checks version ([`V1`] to [`V4`]) and CRC; `what` names the record
    /// in errors. The decoder then reads the layout of [`Reader::version`].
    pub(crate) fn open(record: &'a [u8], what: &'static str) -> Result<Reader<'a>, StoreError> {
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
    pub(crate) fn version(&self) -> u8 {
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
    pub(crate) fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    /// A big-endian u32.
    pub(crate) fn u32(&mut self) -> Result<u32, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A big-endian u64.
    pub(crate) fn u64(&mut self) -> Result<u64, StoreError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    /// Length-prefixed bytes.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A length-prefixed string.
    pub(crate) fn str(&mut self) -> Result<String, StoreError> {
        self.str_ref().map(str::to_owned)
    }
    /// A length-prefixed string, borrowed from the record (checked UTF-8,
    /// nothing copied).
    pub(crate) fn str_ref(&mut self) -> Result<&'a str, StoreError> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| self.corrupt("invalid UTF-8"))
    }
    /// Length-prefixed bytes, copied out of the record.
    pub(crate) fn owned_bytes(&mut self) -> Result<Bytes, StoreError> {
        self.bytes().map(Bytes::copy_from_slice)
    }
    /// A list of headers: `str` names, `bytes` values.
    pub(crate) fn headers(&mut self) -> Result<Vec<Header>, StoreError> {
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
    pub(crate) fn opt_u8(&mut self) -> Result<Option<u8>, StoreError> {
        Ok(if self.tag()? { Some(self.u8()?) } else { None })
    }
    /// An optional u32.
    pub(crate) fn opt_u32(&mut self) -> Result<Option<u32>, StoreError> {
        Ok(if self.tag()? { Some(self.u32()?) } else { None })
    }
    /// An optional u64.
    pub(crate) fn opt_u64(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(if self.tag()? { Some(self.u64()?) } else { None })
    }
    /// An optional string.
    pub(crate) fn opt_str(&mut self) -> Result<Option<String>, StoreError> {
        Ok(if self.tag()? { Some(self.str()?) } else { None })
    }
    /// Optional length-prefixed bytes, copied out of the record.
    pub(crate) fn opt_bytes(&mut self) -> Result<Option<Bytes>, StoreError> {
        Ok(if self.tag()? {
            Some(self.owned_bytes()?)
        } else {
            None
        })
    }
    /// A counted list of strings.
    pub(crate) fn strs(&mut self) -> Result<Vec<String>, StoreError> {
        let n = self.u32()? as usize;
        // Each takes at least its 4-byte length: no huge allocation.
        if n > self.rest.len() / 4 {
            return Err(self.corrupt("truncated"));
        }
        (0..n).map(|_| self.str()).collect()
    }
    /// A counted list of u64s.
    pub(crate) fn u64s(&mut self) -> Result<Vec<u64>, StoreError> {
        let n = self.u32()? as usize;
        if n > self.rest.len() / 8 {
            return Err(self.corrupt("truncated"));
        }
        (0..n).map(|_| self.u64()).collect()
    }
    /// Ends the record: every byte must have been read.
    pub(crate) fn end(self) -> Result<(), StoreError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt("trailing bytes"))
        }
    }
}
