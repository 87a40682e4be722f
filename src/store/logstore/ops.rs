//! The control entries of the write-ahead file (pure): what a round
//! changes besides appending message copies, encoded as the body of an
//! entry of the reserved queue id [`CONTROL`], so that one write-ahead
//! record (one CRC) covers a round's copies and its other changes together.
//!
//! A control body is a sequence of operations, each a tag byte then its
//! fields (integers little-endian, strings as `u16` length then bytes):
//!
//! - `1` ACKS: `queue u64`, `n u32`, `n × index u64`: entries settled.
//! - `2` REWRITE: `queue u64`, `seq u64`, `len u32`, a message record
//!   without its body (`codec::encode_meta`): a copy's new metadata
//!   (deliveries, not-before) after a requeue.
//! - `3` DEDUP: `queue u64`, `expires_at u64`, `id str`: a publisher
//!   de-duplication record (written or renewed).
//! - `4` UNDEDUP: `queue u64`, `id str`: one removed.
//! - `5` OFFSET: `queue u64`, `offset u64`, `group str`: a stream consumer
//!   group's committed offset.
//! - `6` DROP: `queue u64`: the queue was deleted; what it held and what the
//!   control entries said of it is forgotten.
//! - `7` RANGE: `queue u64`, `from u64`, `to u64`, `below u64`: every entry
//!   of `queue` with an index below `below` (what the log held when the
//!   range was removed) and a sequence number in `from..to` is settled. A
//!   purged backlog or a stream's retention is one operation, not an index
//!   per entry; a segment it settles whole is unlinked, and a partly
//!   settled one gets its indexes in its ack file.
//!
//! Operations on a consensus group's log (`groups.rs`), replayed in order
//! and only past the position the group's file covers:
//!
//! - `8` GAPPEND: `group u64`, `index u64`, `term u64`, `len u32`, the
//!   payload: an entry appended.
//! - `9` GTRUNCATE: `group u64`, `since u64`: entries from `since` on
//!   removed.
//! - `10` GPURGE: `group u64`, `upto u64`, `term u64`: entries up to
//!   `upto` (whose term is `term`) removed.
//! - `11` GVOTE: `group u64`, `len u32`, the vote: saved.
//! - `12` GDROP: `group u64`: the group's log forgotten.
//!
//! Every queue operation is idempotent, so replaying one twice is
//! harmless. Group operations are not (a truncation undoes appends):
//! their replay starts where the group's file stops.

use std::ops::Range;

/// The queue id whose entries carry control bodies (no queue has it: ids
/// count up from 1).
pub(super) const CONTROL: u64 = u64::MAX;

/// One operation of a control body, borrowed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Op<'a> {
    /// Entries of `queue` settled.
    Acks { queue: u64, indexes: Vec<u64> },
    /// A copy's metadata rewritten (a message record, no body).
    Rewrite {
        queue: u64,
        seq: u64,
        meta: &'a [u8],
    },
    /// A de-duplication record written.
    Dedup {
        queue: u64,
        expires_at: u64,
        id: &'a str,
    },
    /// A de-duplication record removed.
    Undedup { queue: u64, id: &'a str },
    /// A group's offset.
    Offset {
        queue: u64,
        offset: u64,
        group: &'a str,
    },
    /// The queue was deleted.
    Drop { queue: u64 },
    /// Entries of `queue` below index `below` with a sequence number in
    /// `from..to` settled.
    Range {
        queue: u64,
        from: u64,
        to: u64,
        below: u64,
    },
    /// An entry appended to a group's log.
    GroupAppend {
        group: u64,
        index: u64,
        term: u64,
        payload: &'a [u8],
    },
    /// A group's entries from `since` on removed.
    GroupTruncate { group: u64, since: u64 },
    /// A group's entries up to `upto` removed.
    GroupPurge { group: u64, upto: u64, term: u64 },
    /// A group's vote saved.
    GroupVote { group: u64, vote: &'a [u8] },
    /// A group's log forgotten.
    GroupDrop { group: u64 },
}

const ACKS: u8 = 1;
const REWRITE: u8 = 2;
const DEDUP: u8 = 3;
const UNDEDUP: u8 = 4;
const OFFSET: u8 = 5;
const DROP: u8 = 6;
const RANGE: u8 = 7;
const GAPPEND: u8 = 8;
const GTRUNCATE: u8 = 9;
const GPURGE: u8 = 10;
const GVOTE: u8 = 11;
const GDROP: u8 = 12;

/// A control body is cut into several entries once it passes this, at an
/// operation's end, so that each stays below the entry size limit (an
/// operation itself is at most [`MAX_OP`]).
const CHUNK: usize = 16 << 20;

/// The largest operation (a group entry's payload, a vote) a control body
/// takes: what fits in an entry with room to spare for the fields.
pub(super) const MAX_OP: usize = super::super::log::record::MAX_BODY - 64;

/// Builds a round's control body: one, or several past [`CHUNK`] bytes.
#[derive(Debug, Default)]
pub(super) struct Writer {
    pub(super) buf: Vec<u8>,
    /// Bodies already full, in order before `buf`.
    full: Vec<Vec<u8>>,
}

impl Writer {
    /// Makes room for an operation of `n` bytes: a full body is put aside.
    fn room(&mut self, n: usize) {
        if !self.buf.is_empty() && self.buf.len() + n > CHUNK {
            self.full.push(std::mem::take(&mut self.buf));
        }
    }

    /// Takes the bodies written, in order (none if nothing was).
    pub(super) fn take(&mut self) -> Vec<Vec<u8>> {
        let mut out = std::mem::take(&mut self.full);
        if !self.buf.is_empty() {
            out.push(std::mem::take(&mut self.buf));
        }
        out
    }

    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        // Message ids and group names are protocol tokens, far below 64 KiB;
        // a longer one is cut at a char boundary rather than misframed.
        let mut end = s.len().min(u16::MAX as usize);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.buf.extend_from_slice(&(end as u16).to_le_bytes());
        self.buf.extend_from_slice(&s.as_bytes()[..end]);
    }

    /// Entries `indexes` of `queue` settled.
    pub(super) fn acks(&mut self, queue: u64, indexes: &[u64]) {
        if indexes.is_empty() {
            return;
        }
        self.room(13 + 8 * indexes.len());
        self.buf.push(ACKS);
        self.u64(queue);
        self.buf
            .extend_from_slice(&(indexes.len() as u32).to_le_bytes());
        for i in indexes {
            self.u64(*i);
        }
    }

    /// The copy `seq` of `queue` has metadata `meta` now.
    pub(super) fn rewrite(&mut self, queue: u64, seq: u64, meta: &[u8]) {
        self.room(21 + meta.len());
        self.buf.push(REWRITE);
        self.u64(queue);
        self.u64(seq);
        self.buf
            .extend_from_slice(&(meta.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(meta);
    }

    /// A de-duplication record.
    pub(super) fn dedup(&mut self, queue: u64, id: &str, expires_at: u64) {
        self.room(19 + id.len());
        self.buf.push(DEDUP);
        self.u64(queue);
        self.u64(expires_at);
        self.str(id);
    }

    /// A de-duplication record removed.
    pub(super) fn undedup(&mut self, queue: u64, id: &str) {
        self.room(11 + id.len());
        self.buf.push(UNDEDUP);
        self.u64(queue);
        self.str(id);
    }

    /// A group's offset.
    pub(super) fn offset(&mut self, queue: u64, group: &str, offset: u64) {
        self.room(19 + group.len());
        self.buf.push(OFFSET);
        self.u64(queue);
        self.u64(offset);
        self.str(group);
    }

    /// The queue was deleted.
    pub(super) fn drop_queue(&mut self, queue: u64) {
        self.room(9);
        self.buf.push(DROP);
        self.u64(queue);
    }

    /// Entries of `queue` below index `below` with a sequence number in
    /// `from..to` settled.
    pub(super) fn range(&mut self, queue: u64, from: u64, to: u64, below: u64) {
        self.room(33);
        self.buf.push(RANGE);
        for v in [queue, from, to, below] {
            self.u64(v);
        }
    }

    /// An entry appended to `group`'s log (the caller keeps `payload` at
    /// most [`MAX_OP`] bytes).
    pub(super) fn group_append(&mut self, group: u64, index: u64, term: u64, payload: &[u8]) {
        self.room(29 + payload.len());
        self.buf.push(GAPPEND);
        for v in [group, index, term] {
            self.u64(v);
        }
        self.buf
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(payload);
    }

    /// `group`'s entries from `since` on removed.
    pub(super) fn group_truncate(&mut self, group: u64, since: u64) {
        self.room(17);
        self.buf.push(GTRUNCATE);
        self.u64(group);
        self.u64(since);
    }

    /// `group`'s entries up to `upto` (of term `term`) removed.
    pub(super) fn group_purge(&mut self, group: u64, upto: u64, term: u64) {
        self.room(25);
        self.buf.push(GPURGE);
        for v in [group, upto, term] {
            self.u64(v);
        }
    }

    /// `group`'s vote (at most [`MAX_OP`] bytes).
    pub(super) fn group_vote(&mut self, group: u64, vote: &[u8]) {
        self.room(13 + vote.len());
        self.buf.push(GVOTE);
        self.u64(group);
        self.buf
            .extend_from_slice(&(vote.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(vote);
    }

    /// `group`'s log forgotten.
    pub(super) fn group_drop(&mut self, group: u64) {
        self.room(9);
        self.buf.push(GDROP);
        self.u64(group);
    }
}

/// Reads the operations of a control body; an error once it is malformed
/// (the caller reports corruption: the body passed its record's CRC).
pub(super) fn decode(body: &[u8]) -> Result<Vec<Op<'_>>, String> {
    let mut r = Reader { b: body, at: 0 };
    let mut out = Vec::new();
    while r.at < body.len() {
        let tag = r.u8()?;
        let op = match tag {
            ACKS => {
                let queue = r.u64()?;
                let n = r.u32()? as usize;
                let bytes = r.take(n.checked_mul(8).ok_or("ack count overflows")?)?;
                let indexes = bytes
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect();
                Op::Acks { queue, indexes }
            }
            REWRITE => {
                let queue = r.u64()?;
                let seq = r.u64()?;
                let n = r.u32()? as usize;
                let meta = r.take(n)?;
                Op::Rewrite { queue, seq, meta }
            }
            DEDUP => Op::Dedup {
                queue: r.u64()?,
                expires_at: r.u64()?,
                id: r.str()?,
            },
            UNDEDUP => Op::Undedup {
                queue: r.u64()?,
                id: r.str()?,
            },
            OFFSET => Op::Offset {
                queue: r.u64()?,
                offset: r.u64()?,
                group: r.str()?,
            },
            DROP => Op::Drop { queue: r.u64()? },
            RANGE => Op::Range {
                queue: r.u64()?,
                from: r.u64()?,
                to: r.u64()?,
                below: r.u64()?,
            },
            GAPPEND => {
                let (group, index, term) = (r.u64()?, r.u64()?, r.u64()?);
                let n = r.u32()? as usize;
                Op::GroupAppend {
                    group,
                    index,
                    term,
                    payload: r.take(n)?,
                }
            }
            GTRUNCATE => Op::GroupTruncate {
                group: r.u64()?,
                since: r.u64()?,
            },
            GPURGE => Op::GroupPurge {
                group: r.u64()?,
                upto: r.u64()?,
                term: r.u64()?,
            },
            GVOTE => {
                let group = r.u64()?;
                let n = r.u32()? as usize;
                Op::GroupVote {
                    group,
                    vote: r.take(n)?,
                }
            }
            GDROP => Op::GroupDrop { group: r.u64()? },
            other => return Err(format!("unknown control operation {other}")),
        };
        out.push(op);
    }
    Ok(out)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let r: Range<usize> = self.at..self.at.checked_add(n).ok_or("length overflows")?;
        let s = self.b.get(r).ok_or("control entry cut short")?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn str(&mut self) -> Result<&'a str, String> {
        let b = self.take(2)?;
        let n = u16::from_le_bytes([b[0], b[1]]) as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| "control string not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_round_trips_in_order() {
        let mut w = Writer::default();
        w.acks(3, &[7, 9, 8]);
        w.acks(3, &[]);
        w.rewrite(4, 11, b"meta");
        w.dedup(5, "m-1", 1234);
        w.undedup(5, "m-0");
        w.offset(6, "g", 42);
        w.drop_queue(7);
        w.range(8, 10, 20, 30);
        w.group_append(9, 4, 2, b"cmd");
        w.group_truncate(9, 3);
        w.group_purge(9, 1, 2);
        w.group_vote(9, b"v");
        w.group_drop(9);
        let ops = decode(&w.buf).unwrap();
        assert_eq!(
            ops,
            vec![
                Op::Acks {
                    queue: 3,
                    indexes: vec![7, 9, 8]
                },
                Op::Rewrite {
                    queue: 4,
                    seq: 11,
                    meta: b"meta"
                },
                Op::Dedup {
                    queue: 5,
                    expires_at: 1234,
                    id: "m-1"
                },
                Op::Undedup {
                    queue: 5,
                    id: "m-0"
                },
                Op::Offset {
                    queue: 6,
                    offset: 42,
                    group: "g"
                },
                Op::Drop { queue: 7 },
                Op::Range {
                    queue: 8,
                    from: 10,
                    to: 20,
                    below: 30
                },
                Op::GroupAppend {
                    group: 9,
                    index: 4,
                    term: 2,
                    payload: b"cmd"
                },
                Op::GroupTruncate { group: 9, since: 3 },
                Op::GroupPurge {
                    group: 9,
                    upto: 1,
                    term: 2
                },
                Op::GroupVote {
                    group: 9,
                    vote: b"v"
                },
                Op::GroupDrop { group: 9 },
            ]
        );
    }

    #[test]
    fn a_large_round_is_cut_into_bodies_at_operation_ends() {
        let mut w = Writer::default();
        let big = vec![7u8; CHUNK / 3];
        for i in 0..7 {
            w.group_append(1, i + 1, 1, &big);
        }
        w.drop_queue(2);
        let bodies = w.take();
        assert_eq!(bodies.len(), 4);
        assert!(bodies.iter().all(|b| b.len() <= CHUNK));
        let ops: Vec<Op<'_>> = bodies.iter().flat_map(|b| decode(b).unwrap()).collect();
        assert_eq!(ops.len(), 8);
        assert!(matches!(ops[6], Op::GroupAppend { index: 7, .. }));
        assert!(w.take().is_empty());
    }

    #[test]
    fn every_truncation_and_unknown_tag_is_an_error() {
        let mut w = Writer::default();
        w.acks(3, &[7]);
        w.offset(6, "group", 42);
        let boundary = 1 + 8 + 4 + 8;
        for cut in (1..w.buf.len()).filter(|c| *c != boundary) {
            assert!(decode(&w.buf[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(decode(&w.buf[..boundary]).unwrap().len(), 1);
        assert!(decode(&[13]).is_err());
        assert!(decode(&[]).unwrap().is_empty());
    }
}
