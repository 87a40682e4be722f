//! The on-disk encoding of sluice's records: a version byte, a CRC32 over the
//! rest, then length-prefixed fields. Decoding never panics: a short or
//! altered record is [`StoreError::Corrupt`].

use super::{BindingDef, ExchangeDef, MessageMeta, QueueDef, StoreError};
use crate::protocol::command::{ExchangeKind, Header, HeaderMatch};

const VERSION: u8 = 1;

/// Appends fields to a record.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A record with room for the header.
    pub fn new() -> Writer {
        Writer {
            buf: vec![VERSION, 0, 0, 0, 0],
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
    /// A list of headers.
    pub fn headers(&mut self, hs: &[Header]) -> &mut Self {
        self.u32(u32::try_from(hs.len()).unwrap_or(u32::MAX));
        for (k, v) in hs {
            self.str(k).str(v);
        }
        self
    }
    /// Seals the record: fills in the CRC.
    pub fn finish(mut self) -> Vec<u8> {
        let crc = crc32fast::hash(&self.buf[5..]);
        self.buf[1..5].copy_from_slice(&crc.to_be_bytes());
        self.buf
    }
}

/// Reads fields back from a record whose CRC has been checked.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Checks version and CRC; `what` names the record in errors.
    pub fn open(record: &'a [u8], what: &'static str) -> Result<Reader<'a>, StoreError> {
        if record.len() < 5 || record[0] != VERSION {
            return Err(StoreError::Corrupt(format!("{what}: bad header")));
        }
        let crc = u32::from_be_bytes([record[1], record[2], record[3], record[4]]);
        if crc32fast::hash(&record[5..]) != crc {
            return Err(StoreError::Corrupt(format!("{what}: checksum mismatch")));
        }
        Ok(Reader {
            rest: &record[5..],
            what,
        })
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.rest.len() < n {
            return Err(StoreError::Corrupt(format!("{}: truncated", self.what)));
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
        let what = self.what;
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| StoreError::Corrupt(format!("{what}: invalid UTF-8")))
    }
    /// A list of headers.
    pub fn headers(&mut self) -> Result<Vec<Header>, StoreError> {
        let n = self.u32()? as usize;
        let mut out = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            out.push((self.str()?, self.str()?));
        }
        Ok(out)
    }
}

fn kind_byte(k: ExchangeKind) -> u8 {
    match k {
        ExchangeKind::Direct => 0,
        ExchangeKind::Fanout => 1,
        ExchangeKind::Topic => 2,
        ExchangeKind::Headers => 3,
    }
}

fn byte_kind(b: u8) -> Result<ExchangeKind, StoreError> {
    Ok(match b {
        0 => ExchangeKind::Direct,
        1 => ExchangeKind::Fanout,
        2 => ExchangeKind::Topic,
        3 => ExchangeKind::Headers,
        _ => return Err(StoreError::Corrupt("exchange: unknown type".into())),
    })
}

/// Encodes an exchange definition.
pub fn encode_exchange(d: &ExchangeDef) -> Vec<u8> {
    let mut w = Writer::new();
    w.str(&d.name)
        .u8(kind_byte(d.kind))
        .u8(u8::from(d.auto_delete))
        .str(d.alternate.as_deref().unwrap_or(""));
    w.finish()
}

/// Decodes an exchange definition.
pub fn decode_exchange(b: &[u8]) -> Result<ExchangeDef, StoreError> {
    let mut r = Reader::open(b, "exchange")?;
    let name = r.str()?;
    let kind = byte_kind(r.u8()?)?;
    let auto_delete = r.u8()? != 0;
    let alternate = Some(r.str()?).filter(|s| !s.is_empty());
    Ok(ExchangeDef {
        name,
        kind,
        auto_delete,
        alternate,
    })
}

/// Encodes a queue definition.
pub fn encode_queue(d: &QueueDef) -> Vec<u8> {
    let mut w = Writer::new();
    w.str(&d.name).u64(d.id).u8(u8::from(d.auto_delete));
    w.finish()
}

/// Decodes a queue definition.
pub fn decode_queue(b: &[u8]) -> Result<QueueDef, StoreError> {
    let mut r = Reader::open(b, "queue")?;
    Ok(QueueDef {
        name: r.str()?,
        id: r.u64()?,
        auto_delete: r.u8()? != 0,
        args: Default::default(),
    })
}

/// Encodes a binding (used as its key: identity is the whole definition).
pub fn encode_binding(d: &BindingDef) -> Vec<u8> {
    let mut w = Writer::new();
    w.str(&d.exchange)
        .str(&d.queue)
        .str(&d.key)
        .headers(&d.headers)
        .u8(u8::from(d.matching == HeaderMatch::Any));
    w.finish()
}

/// Decodes a binding.
pub fn decode_binding(b: &[u8]) -> Result<BindingDef, StoreError> {
    let mut r = Reader::open(b, "binding")?;
    Ok(BindingDef {
        exchange: r.str()?,
        queue: r.str()?,
        key: r.str()?,
        headers: r.headers()?,
        matching: if r.u8()? != 0 {
            HeaderMatch::Any
        } else {
            HeaderMatch::All
        },
    })
}

/// Encodes a message copy's metadata, with its body inline when the copy
/// is the body's only reference (one key, one insert: the fast path).
pub fn encode_meta(m: &MessageMeta, inline_body: Option<&[u8]>) -> Vec<u8> {
    let mut w = Writer::new();
    w.u64(m.body_id)
        .str(&m.id)
        .str(&m.exchange)
        .str(&m.routing_key)
        .headers(&m.headers)
        .u32(m.deliveries);
    match inline_body {
        Some(body) => w.u8(1).bytes(body),
        None => w.u8(0),
    };
    w.finish()
}

/// Decodes a message copy's metadata and its inline body, if it has one.
pub fn decode_meta(b: &[u8]) -> Result<(MessageMeta, Option<Vec<u8>>), StoreError> {
    let mut r = Reader::open(b, "message")?;
    let meta = MessageMeta {
        body_id: r.u64()?,
        id: r.str()?,
        exchange: r.str()?,
        routing_key: r.str()?,
        headers: r.headers()?,
        deliveries: r.u32()?,
        expires_at: None,
        not_before: None,
        priority: 0,
    };
    let body = match r.u8()? {
        0 => None,
        _ => Some(r.bytes()?.to_vec()),
    };
    Ok((meta, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let e = ExchangeDef {
            name: "logs".into(),
            kind: ExchangeKind::Topic,
            auto_delete: true,
            alternate: Some("ae".into()),
        };
        assert_eq!(decode_exchange(&encode_exchange(&e)).unwrap(), e);
        let q = QueueDef {
            name: "jobs".into(),
            id: 42,
            auto_delete: false,
            args: Default::default(),
        };
        assert_eq!(decode_queue(&encode_queue(&q)).unwrap(), q);
        let b = BindingDef {
            exchange: "x".into(),
            queue: "q".into(),
            key: "a.*".into(),
            headers: vec![("k".into(), "v".into())],
            matching: HeaderMatch::Any,
        };
        assert_eq!(decode_binding(&encode_binding(&b)).unwrap(), b);
        let m = MessageMeta {
            body_id: 9,
            id: "m1".into(),
            exchange: "".into(),
            routing_key: "jobs".into(),
            headers: vec![],
            deliveries: 3,
            expires_at: None,
            not_before: None,
            priority: 0,
        };
        assert_eq!(
            decode_meta(&encode_meta(&m, None)).unwrap(),
            (m.clone(), None)
        );
        assert_eq!(
            decode_meta(&encode_meta(&m, Some(b"body"))).unwrap(),
            (m, Some(b"body".to_vec()))
        );
    }

    #[test]
    fn a_flipped_byte_is_corruption_not_a_panic() {
        let q = QueueDef {
            name: "jobs".into(),
            id: 1,
            auto_delete: false,
            args: Default::default(),
        };
        let mut rec = encode_queue(&q);
        let last = rec.len() - 1;
        rec[last] ^= 0x40;
        assert!(matches!(decode_queue(&rec), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            decode_queue(&rec[..3]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(decode_queue(&[]), Err(StoreError::Corrupt(_))));
    }
}
