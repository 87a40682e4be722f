//! [`Tail`]: the paged-out part of a queue, copies on disk only, kept as
//! position ranges plus a count and byte total (see the paging notes in
//! `queue/mod.rs`). A stream's retention uses it too, to remove a cut
//! stretch of its log from the store a page at a time.

use std::collections::BTreeMap;

use crate::store::{RecoveredMessage, StoreError};

/// The paged-out part of a queue: copies on disk only.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    /// Position ranges `[start, end)` holding them (with holes where copies
    /// were removed before a restart).
    pub(super) ranges: BTreeMap<u64, u64>,
    /// How many.
    pub(super) count: u64,
    /// Their body bytes.
    pub(super) bytes: u64,
}

impl Tail {
    pub(super) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The first position in the tail.
    pub(super) fn head(&self) -> Option<u64> {
        self.ranges.first_key_value().map(|(k, _)| *k)
    }

    /// Adds the copy at `seq`, joining adjacent ranges.
    pub(super) fn push(&mut self, seq: u64, len: u64) {
        self.count += 1;
        self.bytes += len;
        let next_end = self.ranges.remove(&(seq + 1));
        let prev = self.ranges.range(..=seq).next_back().map(|(s, e)| (*s, *e));
        match prev {
            Some((start, end)) if end == seq => {
                self.ranges.insert(start, next_end.unwrap_or(seq + 1));
            }
            Some((_, end)) if end > seq => {
                // Already inside a range (cannot happen: a position is
                // enqueued once); keep the ranges as they were.
                if let Some(e) = next_end {
                    self.ranges.insert(seq + 1, e);
                }
            }
            _ => {
                self.ranges.insert(seq, next_end.unwrap_or(seq + 1));
            }
        }
    }

    /// Reads up to `limit` copies off the front of the tail, in position
    /// order, through `load` (a [`MessageStore::load`](crate::store::MessageStore::load)),
    /// and forgets them. An error after some copies were read returns those
    /// (the next read meets it again); the totals are reset once no range
    /// is left.
    pub(super) fn read(
        &mut self,
        mut load: impl FnMut(u64, u64, usize) -> Result<Vec<RecoveredMessage>, StoreError>,
        limit: usize,
    ) -> Result<Vec<RecoveredMessage>, StoreError> {
        let mut out: Vec<RecoveredMessage> = Vec::new();
        while out.len() < limit {
            let Some((&start, &end)) = self.ranges.first_key_value() else {
                break;
            };
            let want = limit - out.len();
            let found = match load(start, end, want) {
                Ok(found) => found,
                Err(e) if out.is_empty() => return Err(e),
                Err(_) => break,
            };
            self.ranges.remove(&start);
            if found.len() >= want {
                if let Some(last) = found.last() {
                    if last.seq + 1 < end {
                        self.ranges.insert(last.seq + 1, end);
                    }
                }
            }
            for m in &found {
                self.count = self.count.saturating_sub(1);
                self.bytes = self.bytes.saturating_sub(m.body.len() as u64);
            }
            out.extend(found);
        }
        if self.ranges.is_empty() {
            self.count = 0;
            self.bytes = 0;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::Tail;

    fn ranges(t: &Tail) -> Vec<(u64, u64)> {
        t.ranges.iter().map(|(s, e)| (*s, *e)).collect()
    }

    #[test]
    fn tail_positions_join_into_ranges_in_any_arrival_order() {
        let mut t = Tail::default();
        for seq in [5, 6, 7, 10, 9] {
            t.push(seq, 1);
        }
        assert_eq!(ranges(&t), [(5, 8), (9, 11)]);
        // A late position closes the gap: one range again.
        t.push(8, 1);
        assert_eq!(ranges(&t), [(5, 11)]);
        assert_eq!((t.count, t.bytes), (6, 6));
        assert_eq!(t.head(), Some(5));
        // A position before the head starts a range of its own.
        t.push(3, 1);
        assert_eq!(ranges(&t), [(3, 4), (5, 11)]);
    }

    #[test]
    fn reading_the_tail_walks_its_ranges_in_order_and_forgets_what_it_read() {
        use crate::store::{MessageMeta, RecoveredMessage, StoreError};
        let copy = |seq: u64| RecoveredMessage {
            queue_id: 1,
            seq,
            meta: MessageMeta {
                published_at: 0,
                group: None,
                body_id: seq,
                id: format!("m{seq}"),
                exchange: String::new(),
                routing_key: "q".into(),
                headers: vec![],
                deliveries: 0,
                expires_at: None,
                not_before: None,
                priority: 0,
                volatile: false,
            },
            body: bytes::Bytes::from_static(b"0123456789"),
            inline: true,
        };
        // On "disk": positions 1..=4 and 10..=11; 3 was removed before a restart.
        let disk = [1u64, 2, 4, 10, 11];
        let load = |from: u64, to: u64, n: usize| -> Result<Vec<RecoveredMessage>, StoreError> {
            Ok(disk
                .iter()
                .filter(|s| (from..to).contains(*s))
                .take(n)
                .map(|s| copy(*s))
                .collect())
        };
        let mut t = Tail::default();
        for seq in [1, 2, 3, 4, 10, 11] {
            t.push(seq, 10);
        }
        let seqs = |v: Vec<RecoveredMessage>| v.iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(seqs(t.read(load, 2).unwrap()), [1, 2]);
        assert_eq!(ranges(&t), [(3, 5), (10, 12)]);
        assert_eq!((t.count, t.bytes), (4, 40));
        // Across the hole and into the next range.
        assert_eq!(seqs(t.read(load, 2).unwrap()), [4, 10]);
        assert_eq!(ranges(&t), [(11, 12)]);
        assert_eq!(seqs(t.read(load, 5).unwrap()), [11]);
        // The count was one too high (the removed copy): reset at the end.
        assert!(t.is_empty());
        assert_eq!((t.count, t.bytes), (0, 0));
        assert!(t.read(load, 5).unwrap().is_empty());
    }
}
