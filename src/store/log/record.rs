//! Record framing and the entry payload, pure (no I/O): how a segment's
//! bytes are cut into records and what an entry record holds. The format is
//! described in the parent module's doc; this file is its code.
//!
//! [`decode`] looks at the start of a buffer and says one of three things,
//! and the caller (who knows where the file ends and where the commit mark
//! is) decides what it means: a whole valid record; [`Decoded::NeedMore`],
//! the buffer ends inside a record (at the end of a file, a torn tail); or
//! [`Decoded::Invalid`], the bytes cannot be a record (a torn tail above the
//! commit mark, corruption at or below it).

/// Bytes of a record's frame before its payload: type, len, CRC.
pub(crate) const FRAME_LEN: usize = 1 + 4 + 4;

/// The largest entry body a record may carry: 64 MiB.
pub(crate) const MAX_BODY: usize = 64 << 20;

/// Bytes of an entry payload before its body: index, term.
pub(crate) const ENTRY_HEADER_LEN: usize = 8 + 8;

/// Bytes of one entry inside a write-ahead record before its body: queue
/// id, the entry payload's index and term, and the body's length (u32).
pub(crate) const WAL_ENTRY_HEADER_LEN: usize = 8 + ENTRY_HEADER_LEN + 4;

/// The largest payload a record may declare; a larger `len` is invalid and
/// nothing is allocated for it. The largest payload is a write-ahead
/// record's with a body of [`MAX_BODY`].
pub(crate) const MAX_PAYLOAD: usize = MAX_BODY + WAL_ENTRY_HEADER_LEN;

/// The largest whole record, frame included.
#[cfg(test)]
pub(crate) const MAX_RECORD: usize = FRAME_LEN + MAX_PAYLOAD;

/// Record type of an entry.
pub(crate) const TYPE_ENTRY: u8 = 1;

/// Record type of a segment's footer.
pub(crate) const TYPE_SEAL: u8 = 2;

/// Record type of an ack file's batch of settled indexes.
pub(crate) const TYPE_ACKS: u8 = 3;

/// Record type of a write-ahead record (WAL files only).
pub(crate) const TYPE_WAL: u8 = 4;

/// A segment index record ([`super::index`]), in `.idx` files only.
pub(crate) const TYPE_INDEX: u8 = 5;

/// What the start of a buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A whole record whose CRC matches.
    Record {
        /// Its type, never 0.
        typ: u8,
        /// Its payload, never empty.
        payload: &'a [u8],
        /// Bytes it takes in the buffer, frame included.
        size: usize,
    },
    /// The buffer ends inside a record. `total` is the record's whole size
    /// when its frame was complete and plausible (so a reader knows how
    /// much to read), `None` when even the frame is cut short.
    NeedMore {
        /// The record's whole size, if known.
        total: Option<usize>,
    },
    /// These bytes are not a record.
    Invalid(Invalid),
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Type 0 (zero-filled bytes, among others).
    ZeroType,
    /// Length 0.
    ZeroLen,
    /// A length over [`MAX_PAYLOAD`].
    TooLong(u32),
    /// The CRC does not match type, length and payload.
    Crc,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::ZeroType => f.write_str("record of type 0"),
            Invalid::ZeroLen => f.write_str("record of length 0"),
            Invalid::TooLong(len) => write!(f, "record length {len} over the limit"),
            Invalid::Crc => f.write_str("record CRC mismatch"),
        }
    }
}

/// The CRC of a record: over type, len and payload.
fn crc(typ: u8, len: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[typ]);
    h.update(&len);
    h.update(payload);
    h.finalize()
}

/// Appends one framed record to `out`. The caller keeps `typ` non-zero and
/// `payload` non-empty and at most [`MAX_PAYLOAD`] bytes (a debug assertion
/// checks); [`encode_entry_into`] and the segment writer do.
pub(crate) fn encode_into(out: &mut Vec<u8>, typ: u8, payload: &[u8]) {
    debug_assert!(typ != 0 && !payload.is_empty() && payload.len() <= MAX_PAYLOAD);
    // Fits: MAX_PAYLOAD is far below u32::MAX.
    let len = (payload.len() as u32).to_le_bytes();
    out.reserve(FRAME_LEN + payload.len());
    out.push(typ);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc(typ, len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Reads the record at the start of `buf`. Never allocates and never
/// panics, whatever the bytes.
pub(crate) fn decode(buf: &[u8]) -> Decoded<'_> {
    let Some(frame) = buf.first_chunk::<FRAME_LEN>() else {
        // A partial frame may already show it is not a record.
        return match buf.first() {
            Some(0) => Decoded::Invalid(Invalid::ZeroType),
            _ => Decoded::NeedMore { total: None },
        };
    };
    let typ = frame[0];
    let len_bytes = [frame[1], frame[2], frame[3], frame[4]];
    let len = u32::from_le_bytes(len_bytes);
    let stored = u32::from_le_bytes([frame[5], frame[6], frame[7], frame[8]]);
    if typ == 0 {
        return Decoded::Invalid(Invalid::ZeroType);
    }
    if len == 0 {
        return Decoded::Invalid(Invalid::ZeroLen);
    }
    let plen = len as usize;
    if plen > MAX_PAYLOAD {
        return Decoded::Invalid(Invalid::TooLong(len));
    }
    let size = FRAME_LEN + plen;
    let Some(payload) = buf.get(FRAME_LEN..size) else {
        return Decoded::NeedMore { total: Some(size) };
    };
    if crc(typ, len_bytes, payload) != stored {
        return Decoded::Invalid(Invalid::Crc);
    }
    Decoded::Record { typ, payload, size }
}

/// The whole size the frame at the start of `buf` claims for its record,
/// whatever its CRC, if the frame is all there and its length plausible
/// (non-zero, at most [`MAX_PAYLOAD`]).
pub(crate) fn claimed_size(buf: &[u8]) -> Option<usize> {
    let frame = buf.first_chunk::<FRAME_LEN>()?;
    let len = u32::from_le_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    (len > 0 && len <= MAX_PAYLOAD).then_some(FRAME_LEN + len)
}

/// The first half of the torn-tail rule of the files with no commit mark
/// (ack files, write-ahead files): a bad or partial record `rest_len` bytes
/// before the end of its file, whose frame claims `claimed`
/// ([`claimed_size`]), is the last thing in the file when its frame is cut
/// short by the end or claims a length reaching it. A whole frame with no
/// plausible length says nothing of where the record ends, so it is not
/// (an ack file takes it as its last batch all the same, see
/// [`super::acks`]). The other half is zeros from the record to the end;
/// anything else is corruption.
pub(crate) fn reaches_end(claimed: Option<usize>, rest_len: u64) -> bool {
    match claimed {
        Some(total) => total as u64 >= rest_len,
        None => rest_len < FRAME_LEN as u64,
    }
}

/// One entry of the log, borrowed from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// Its position in the log; consecutive, never 0.
    pub(crate) index: u64,
    /// The replication term it was written in (0 until replication).
    pub(crate) term: u64,
    /// The layer above's bytes.
    pub(crate) body: &'a [u8],
}

impl<'a> Entry<'a> {
    /// Bytes of this entry as a framed record.
    pub(crate) fn record_len(&self) -> usize {
        FRAME_LEN + ENTRY_HEADER_LEN + self.body.len()
    }

    /// Appends this entry's payload (not framed) to `out`.
    pub(crate) fn encode_payload_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.term.to_le_bytes());
        out.extend_from_slice(self.body);
    }

    /// Reads an entry payload; `None` if it is shorter than index and term.
    pub(crate) fn decode_payload(payload: &'a [u8]) -> Option<Entry<'a>> {
        let (index, rest) = payload.split_first_chunk::<8>()?;
        let (term, body) = rest.split_first_chunk::<8>()?;
        Some(Entry {
            index: u64::from_le_bytes(*index),
            term: u64::from_le_bytes(*term),
            body,
        })
    }
}

/// Appends `entry` to `out` as a framed ENTRY record, or refuses a body
/// over [`MAX_BODY`] (returning its length) and leaves `out` unchanged.
pub(crate) fn encode_entry_into(out: &mut Vec<u8>, entry: &Entry<'_>) -> Result<(), usize> {
    if entry.body.len() > MAX_BODY {
        return Err(entry.body.len());
    }
    encode_in_place(out, TYPE_ENTRY, entry.record_len(), |out| {
        entry.encode_payload_into(out)
    });
    Ok(())
}

/// Appends one framed record of type `typ` (about `size` bytes, frame
/// included) whose payload `write_payload` appends: framed in place, the
/// frame filled in last, so a body is copied once. The caller keeps the
/// payload non-empty and at most [`MAX_PAYLOAD`] bytes.
pub(crate) fn encode_in_place(
    out: &mut Vec<u8>,
    typ: u8,
    size: usize,
    write_payload: impl FnOnce(&mut Vec<u8>),
) {
    out.reserve(size);
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_LEN]);
    write_payload(out);
    let payload = &out[start + FRAME_LEN..];
    debug_assert!(typ != 0 && !payload.is_empty() && payload.len() <= MAX_PAYLOAD);
    let len = (payload.len() as u32).to_le_bytes();
    let sum = crc(typ, len, payload).to_le_bytes();
    out[start] = typ;
    out[start + 1..start + 5].copy_from_slice(&len);
    out[start + 5..start + FRAME_LEN].copy_from_slice(&sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry_record(index: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_entry_into(
            &mut out,
            &Entry {
                index,
                term: 3,
                body,
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn record_round_trips() {
        let mut buf = Vec::new();
        encode_into(&mut buf, 7, b"hello");
        encode_into(&mut buf, TYPE_SEAL, &[1; 24]);
        let Decoded::Record { typ, payload, size } = decode(&buf) else {
            panic!("{:?}", decode(&buf));
        };
        assert_eq!((typ, payload, size), (7, &b"hello"[..], FRAME_LEN + 5));
        assert_eq!(
            decode(&buf[size..]),
            Decoded::Record {
                typ: TYPE_SEAL,
                payload: &[1; 24],
                size: FRAME_LEN + 24
            }
        );
    }

    #[test]
    fn entry_round_trips_through_a_record() {
        let e = Entry {
            index: 42,
            term: 9,
            body: b"body",
        };
        let mut buf = Vec::new();
        encode_entry_into(&mut buf, &e).unwrap();
        assert_eq!(buf.len(), e.record_len());
        let Decoded::Record { typ, payload, size } = decode(&buf) else {
            panic!()
        };
        assert_eq!((typ, size), (TYPE_ENTRY, buf.len()));
        assert_eq!(Entry::decode_payload(payload), Some(e));
        // Same bytes as framing the payload the general way.
        let mut p = Vec::new();
        e.encode_payload_into(&mut p);
        let mut general = Vec::new();
        encode_into(&mut general, TYPE_ENTRY, &p);
        assert_eq!(general, buf);
    }

    #[test]
    fn empty_body_is_an_entry_and_short_payload_is_not() {
        let buf = entry_record(1, b"");
        let Decoded::Record { payload, .. } = decode(&buf) else {
            panic!()
        };
        assert_eq!(Entry::decode_payload(payload).unwrap().body, b"");
        assert_eq!(Entry::decode_payload(&[0; 15]), None);
    }

    #[test]
    fn every_truncation_needs_more() {
        let buf = entry_record(5, b"some body bytes");
        assert_eq!(decode(&[]), Decoded::NeedMore { total: None });
        for cut in 1..buf.len() {
            let want = if cut < FRAME_LEN {
                None
            } else {
                Some(buf.len())
            };
            assert_eq!(
                decode(&buf[..cut]),
                Decoded::NeedMore { total: want },
                "cut at {cut}"
            );
        }
    }

    /// A single flipped bit anywhere is caught. Only a flip in `len` that
    /// makes the record look longer (and still within the limit) reads as
    /// `NeedMore`, because the bytes it now claims are not in the buffer; a
    /// flip that shortens it, or touches type, CRC or payload, is Invalid.
    #[test]
    fn every_bit_flip_is_invalid_or_a_longer_need_more() {
        let buf = entry_record(5, b"some body bytes");
        let real_len = (buf.len() - FRAME_LEN) as u32;
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                let got = decode(&b);
                if (1..5).contains(&byte) {
                    let len = u32::from_le_bytes(b[1..5].try_into().unwrap());
                    if len == 0 {
                        assert_eq!(got, Decoded::Invalid(Invalid::ZeroLen));
                    } else if len as usize > MAX_PAYLOAD {
                        assert_eq!(got, Decoded::Invalid(Invalid::TooLong(len)));
                    } else if len > real_len {
                        let total = Some(FRAME_LEN + len as usize);
                        assert_eq!(got, Decoded::NeedMore { total }, "{byte}:{bit}");
                    } else {
                        assert_eq!(got, Decoded::Invalid(Invalid::Crc), "{byte}:{bit}");
                    }
                } else if byte == 0 && b[0] == 0 {
                    assert_eq!(got, Decoded::Invalid(Invalid::ZeroType));
                } else {
                    assert_eq!(got, Decoded::Invalid(Invalid::Crc), "{byte}:{bit}");
                }
            }
        }
    }

    #[test]
    fn zeros_never_parse() {
        for n in 1..64 {
            assert_eq!(
                decode(&vec![0; n]),
                Decoded::Invalid(Invalid::ZeroType),
                "{n}"
            );
        }
        // Type set, rest zero: zero length.
        let mut b = vec![0; 32];
        b[0] = TYPE_ENTRY;
        assert_eq!(decode(&b), Decoded::Invalid(Invalid::ZeroLen));
    }

    #[test]
    fn length_over_the_limit_is_invalid_without_the_bytes() {
        let mut b = vec![TYPE_ENTRY];
        b.extend_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        assert_eq!(
            decode(&b),
            Decoded::Invalid(Invalid::TooLong(MAX_PAYLOAD as u32 + 1))
        );
        b[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&b), Decoded::Invalid(Invalid::TooLong(u32::MAX)));
        // At the limit: a record, just not all here yet.
        b[1..5].copy_from_slice(&(MAX_PAYLOAD as u32).to_le_bytes());
        assert_eq!(
            decode(&b),
            Decoded::NeedMore {
                total: Some(MAX_RECORD)
            }
        );
    }

    #[test]
    fn claimed_size_and_reaches_end() {
        let buf = entry_record(5, b"body");
        assert_eq!(claimed_size(&buf), Some(buf.len()));
        assert_eq!(claimed_size(&buf[..FRAME_LEN]), Some(buf.len()));
        assert_eq!(claimed_size(&buf[..FRAME_LEN - 1]), None);
        assert_eq!(claimed_size(&[0; FRAME_LEN]), None);
        let n = buf.len() as u64;
        assert!(reaches_end(Some(buf.len()), n));
        assert!(reaches_end(Some(buf.len()), n - 1));
        assert!(!reaches_end(Some(buf.len()), n + 1));
        assert!(reaches_end(None, FRAME_LEN as u64 - 1));
        assert!(!reaches_end(None, FRAME_LEN as u64));
    }

    #[test]
    fn body_over_the_limit_is_refused() {
        let body = vec![0; MAX_BODY + 1];
        let mut out = vec![9];
        let e = Entry {
            index: 1,
            term: 0,
            body: &body,
        };
        assert_eq!(encode_entry_into(&mut out, &e), Err(MAX_BODY + 1));
        assert_eq!(out, [9]);
    }

    proptest! {
        #[test]
        fn entries_round_trip(
            entries in proptest::collection::vec(
                (1..u64::MAX, any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300)),
                1..20,
            )
        ) {
            let mut buf = Vec::new();
            for (index, term, body) in &entries {
                encode_entry_into(&mut buf, &Entry { index: *index, term: *term, body }).unwrap();
            }
            let mut at = 0;
            for (index, term, body) in &entries {
                let Decoded::Record { typ, payload, size } = decode(&buf[at..]) else {
                    panic!("at {at}")
                };
                prop_assert_eq!(typ, TYPE_ENTRY);
                let e = Entry::decode_payload(payload).unwrap();
                prop_assert_eq!((e.index, e.term, e.body), (*index, *term, &body[..]));
                at += size;
            }
            prop_assert_eq!(at, buf.len());
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Decoded::Record { size, payload, .. } = decode(&bytes) {
                prop_assert!(size <= bytes.len());
                prop_assert!(!payload.is_empty());
            }
        }
    }
}
