//! What the log store knows of each queue's log in RAM (pure: no files
//! here): its segments as index ranges with the sequence number of every
//! entry and a bit per settled entry, the copies applied but not yet in a
//! round ([`QueueView::fresh`]) and those in the round being written
//! ([`QueueView::inflight`]). It answers the two questions the store asks
//! on every call: where is the copy with sequence number `seq`, and which
//! are the first `limit` live copies in a range of sequence numbers.
//!
//! Sequence numbers are the broker's; indexes are the log's. A round gives
//! a queue's fresh copies consecutive indexes in sequence order, so within
//! a segment sequence numbers are nearly always sorted; a copy applied
//! after a later one of the same queue had already gone to disk (two
//! publishers racing across a round, as several publishers to one queue
//! do all the time) makes its segment unsorted. An unsorted segment keeps
//! its positions in sequence order too (4 bytes an entry, see
//! [`SegView::order`]), so an ack or a read finds its entries by binary
//! search there as well, never by a scan of the segment.

use bytes::Bytes;

use super::super::log::record::{ENTRY_HEADER_LEN, FRAME_LEN};

/// Where a read from a file stopped: the segment's first index, the byte
/// offset and the index of the entry there.
pub(super) type Cursor = (u64, u64, u64);

/// Read cursors kept per queue: one per concurrent reader, up to this.
const CURSORS: usize = 8;

/// The sequence numbers of a segment's entries, by position: a run of
/// consecutive numbers (what one publisher to a queue of persistent
/// messages writes) takes no memory per entry; anything else is a list.
#[derive(Debug, Clone)]
pub(super) enum Seqs {
    /// `start`, `start + 1`, ... : `len` of them.
    Run { start: u64, len: usize },
    /// Any numbers.
    List(Vec<u64>),
}

impl Default for Seqs {
    fn default() -> Self {
        Seqs::Run { start: 0, len: 0 }
    }
}

impl Seqs {
    pub(super) fn len(&self) -> usize {
        match self {
            Seqs::Run { len, .. } => *len,
            Seqs::List(v) => v.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, seq: u64) {
        match self {
            Seqs::Run {
                len: len @ 0,
                start,
            } => {
                *start = seq;
                *len = 1;
            }
            Seqs::Run { start, len } if *start + *len as u64 == seq => *len += 1,
            Seqs::Run { start, len } => {
                let mut v: Vec<u64> = (*start..*start + *len as u64).collect();
                v.push(seq);
                *self = Seqs::List(v);
            }
            Seqs::List(v) => v.push(seq),
        }
    }

    /// The sequence number at position `pos`.
    pub(super) fn get(&self, pos: usize) -> Option<u64> {
        match self {
            Seqs::Run { start, len } => (pos < *len).then(|| start + pos as u64),
            Seqs::List(v) => v.get(pos).copied(),
        }
    }

    /// The first position whose number is not below `seq` (sorted only).
    fn lower_bound(&self, seq: u64) -> usize {
        match self {
            Seqs::Run { start, len } => {
                usize::try_from(seq.saturating_sub(*start)).map_or(*len, |d| d.min(*len))
            }
            Seqs::List(v) => v.partition_point(|s| *s < seq),
        }
    }

    /// The numbers from position `from` on.
    pub(super) fn iter_from(&self, from: usize) -> impl Iterator<Item = u64> + '_ {
        (from..self.len()).map_while(|p| self.get(p))
    }
}

/// One segment of a queue, as the store tracks it.
#[derive(Debug, Clone)]
pub(super) struct SegView {
    /// Index of its first entry (the number in its file name).
    pub(super) first: u64,
    /// Sequence number of each entry, by position.
    pub(super) seqs: Seqs,
    /// A bit per entry: settled.
    settled: Vec<u64>,
    /// Entries not settled.
    pub(super) live: u64,
    /// Smallest and largest sequence number in it.
    pub(super) min_seq: u64,
    pub(super) max_seq: u64,
    /// Whether `seqs` is in ascending order.
    pub(super) sorted: bool,
    /// An unsorted segment's positions `0..order.len()` sorted by
    /// (sequence number, position); the positions after them (appended
    /// since) are searched one by one until there are more than an eighth
    /// of the segment's, when the order is made again. Empty while sorted.
    order: Vec<u32>,
    /// Bytes its entries take in the file (header included), written or
    /// about to be: what decides when the next round starts a new segment.
    pub(super) bytes: u64,
    /// Entries written to the file so far (readable there), and the
    /// file's length then.
    pub(super) on_disk: u64,
    pub(super) file_len: u64,
}

impl SegView {
    /// An empty segment starting at index `first`.
    pub(super) fn new(first: u64, header: u64) -> SegView {
        SegView {
            first,
            seqs: Seqs::default(),
            settled: Vec::new(),
            live: 0,
            min_seq: u64::MAX,
            max_seq: 0,
            sorted: true,
            order: Vec::new(),
            bytes: header,
            on_disk: 0,
            file_len: header,
        }
    }

    /// Adds the entry with sequence number `seq` whose body is `len` bytes.
    pub(super) fn push(&mut self, seq: u64, len: usize) {
        let pos = self.seqs.len();
        self.seqs.push(seq);
        if seq < self.max_seq && pos > 0 && self.sorted {
            self.sorted = false;
            self.reorder();
        } else if !self.sorted
            && self.seqs.len() - self.order.len() > (self.order.len() / 8).max(64)
        {
            self.reorder();
        }
        if pos.is_multiple_of(64) {
            self.settled.push(0);
        }
        self.live += 1;
        self.min_seq = self.min_seq.min(seq);
        self.max_seq = self.max_seq.max(seq);
        self.bytes += (FRAME_LEN + ENTRY_HEADER_LEN + len) as u64;
    }

    /// Makes [`SegView::order`] again, over every position.
    fn reorder(&mut self) {
        let n = u32::try_from(self.seqs.len()).unwrap_or(u32::MAX);
        let mut order: Vec<u32> = (0..n).collect();
        order.sort_unstable_by_key(|p| (self.seqs.get(*p as usize), *p));
        self.order = order;
    }

    /// An unsorted segment's positions in [`SegView::order`] whose
    /// sequence number is in `from..to`, in sequence order.
    fn ordered_in(&self, from: u64, to: u64) -> impl Iterator<Item = (usize, u64)> + '_ {
        let key = |p: &u32| self.seqs.get(*p as usize).unwrap_or(u64::MAX);
        let start = self.order.partition_point(|p| key(p) < from);
        self.order[start..]
            .iter()
            .map(move |p| (*p as usize, key(p)))
            .take_while(move |(_, seq)| *seq < to)
    }

    /// An unsorted segment's positions appended since [`SegView::order`]
    /// was made whose sequence number is in `from..to`.
    fn unordered_in(&self, from: u64, to: u64) -> impl Iterator<Item = (usize, u64)> + '_ {
        (self.order.len()..)
            .zip(self.seqs.iter_from(self.order.len()))
            .filter(move |(_, seq)| (from..to).contains(seq))
    }

    /// One past its last index.
    pub(super) fn end(&self) -> u64 {
        self.first + self.seqs.len() as u64
    }

    /// Whether the entry at position `pos` is settled.
    pub(super) fn is_settled(&self, pos: usize) -> bool {
        self.settled
            .get(pos / 64)
            .is_some_and(|w| w & (1 << (pos % 64)) != 0)
    }

    /// Settles the entry at position `pos`; false if it already was (or
    /// is out of range).
    pub(super) fn settle(&mut self, pos: usize) -> bool {
        if pos >= self.seqs.len() || self.is_settled(pos) {
            return false;
        }
        self.settled[pos / 64] |= 1 << (pos % 64);
        self.live -= 1;
        true
    }

    /// The position of the live entry with sequence number `seq`.
    fn find_live(&self, seq: u64) -> Option<usize> {
        if self.live == 0 || seq < self.min_seq || seq > self.max_seq {
            return None;
        }
        // The same number may be there settled (given out again after a
        // restart after the newest copies of a queue were settled): the live one
        // is wanted.
        if self.sorted {
            let first = self.seqs.lower_bound(seq);
            (first..self.seqs.len())
                .take_while(|p| self.seqs.get(*p) == Some(seq))
                .find(|p| !self.is_settled(*p))
        } else {
            let to = seq.saturating_add(1);
            self.ordered_in(seq, to)
                .chain(self.unordered_in(seq, to))
                .map(|(p, _)| p)
                .find(|p| !self.is_settled(*p))
        }
    }

    /// Live entries with `from <= seq < to`, at most `limit` of the
    /// smallest when sorted (every one in range when not), as
    /// `(seq, index)`.
    fn live_in(&self, from: u64, to: u64, limit: usize, out: &mut Vec<(u64, u64)>) {
        if self.live == 0 || self.max_seq < from || self.min_seq >= to {
            return;
        }
        if !self.sorted {
            // The ordered positions give the smallest first; those after
            // them are all looked at (fewer than an eighth of the segment).
            let live = |(pos, _): &(usize, u64)| !self.is_settled(*pos);
            let found = self.ordered_in(from, to).filter(live).take(limit);
            let rest = self.unordered_in(from, to).filter(live);
            out.extend(
                found
                    .chain(rest)
                    .map(|(pos, seq)| (seq, self.first + pos as u64)),
            );
            return;
        }
        let start = self.seqs.lower_bound(from);
        let mut taken = 0;
        for (pos, seq) in (start..).zip(self.seqs.iter_from(start)) {
            if seq >= to || taken >= limit {
                break;
            }
            if !self.is_settled(pos) {
                out.push((seq, self.first + pos as u64));
                taken += 1;
            }
        }
    }
}

/// One queue's log as the store tracks it.
#[derive(Debug, Default)]
pub(super) struct QueueView {
    /// Its segments in index order; the last is the active one.
    pub(super) segs: Vec<SegView>,
    /// The index the next round gives its first copy.
    pub(super) next_index: u64,
    /// The largest sequence number ever appended to a segment: a publish
    /// with a larger one (nearly every publish) is not a rewrite, and
    /// [`QueueView::is_logged`] answers it without a look at the segments.
    logged_max: u64,
    /// Copies applied since the last round was taken: (seq, entry body),
    /// in sequence order ([`QueueView::add_fresh`] keeps it so), so that
    /// a publish, an ack or a read finds a copy by binary search.
    fresh: Vec<(u64, Bytes)>,
    /// Copies of the round being written: (index, entry body), in index
    /// order; readable from here until their segment write lands.
    pub(super) inflight: Vec<(u64, Bytes)>,
    /// Where recent reads from files stopped (at most [`CURSORS`], the
    /// latest last), so that a queue read in order, or a stream read by
    /// several groups, reads each segment once per reader.
    pub(super) cursors: Vec<Cursor>,
}

/// What settling a range of sequence numbers did to a queue's log
/// ([`QueueView::settle_range`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Cut {
    /// Entries settled in segments that stay: (segment, index), for their
    /// ack files.
    pub(super) acks: Vec<(u64, u64)>,
    /// Sealed segments left with nothing live, dropped from the view whole:
    /// their files go once the round is durable.
    pub(super) doomed: Vec<u64>,
}

/// Where a live copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// Not yet in a round: it was removed from the fresh copies.
    Fresh,
    /// In segment `first`, at `index`: now settled.
    Logged { first: u64, index: u64 },
}

impl QueueView {
    /// A queue whose next index is `next` and that has no segments.
    pub(super) fn empty(next: u64) -> QueueView {
        QueueView {
            next_index: next,
            ..QueueView::default()
        }
    }

    /// Settles the live copy `seq`: a fresh one is forgotten, a logged one
    /// marked. `None` if there is no such live copy.
    pub(super) fn settle(&mut self, seq: u64) -> Option<Found> {
        if let Ok(p) = self.fresh_at(seq) {
            self.fresh.remove(p);
            return Some(Found::Fresh);
        }
        for seg in self.segs.iter_mut() {
            if let Some(pos) = seg.find_live(seq) {
                seg.settle(pos);
                return Some(Found::Logged {
                    first: seg.first,
                    index: seg.first + pos as u64,
                });
            }
        }
        None
    }

    /// Settles every live copy with `from <= seq < to`: fresh ones are
    /// forgotten, a sealed segment the range covers whole is dropped
    /// without a look at its entries, others are settled entry by entry.
    pub(super) fn settle_range(&mut self, from: u64, to: u64) -> Cut {
        let mut cut = Cut::default();
        if from >= to {
            return cut;
        }
        let start = self.fresh.partition_point(|(s, _)| *s < from);
        let end = self.fresh.partition_point(|(s, _)| *s < to);
        self.fresh.drain(start..end.max(start));
        let active = self.segs.last().map(|s| s.first);
        let mut kept = Vec::with_capacity(self.segs.len());
        for mut seg in std::mem::take(&mut self.segs) {
            let sealed = Some(seg.first) != active;
            if seg.live == 0 || seg.max_seq < from || seg.min_seq >= to {
                kept.push(seg);
                continue;
            }
            if sealed && seg.min_seq >= from && seg.max_seq < to {
                cut.doomed.push(seg.first);
                continue;
            }
            let begin = if seg.sorted {
                seg.seqs.lower_bound(from)
            } else {
                0
            };
            let mut settled = Vec::new();
            for (pos, seq) in (begin..).zip(seg.seqs.iter_from(begin)) {
                if seg.sorted && seq >= to {
                    break;
                }
                if seq >= from && seq < to && !seg.is_settled(pos) {
                    settled.push(pos);
                }
            }
            for pos in settled {
                seg.settle(pos);
                cut.acks.push((seg.first, seg.first + pos as u64));
            }
            if sealed && seg.live == 0 {
                let first = seg.first;
                cut.acks.retain(|(s, _)| *s != first);
                cut.doomed.push(first);
                continue;
            }
            kept.push(seg);
        }
        self.segs = kept;
        cut
    }

    /// Whether the live copy `seq` is in the log (not only fresh).
    pub(super) fn is_logged(&self, seq: u64) -> bool {
        seq <= self.logged_max && self.segs.iter().any(|s| s.find_live(seq).is_some())
    }

    /// Appends copy `seq` (an entry body of `size` bytes) to the active
    /// segment at the next index, and returns that index (`None` without
    /// a segment).
    pub(super) fn append(&mut self, seq: u64, size: usize) -> Option<u64> {
        let seg = self.segs.last_mut()?;
        seg.push(seq, size);
        let index = self.next_index;
        self.next_index += 1;
        self.logged_max = self.logged_max.max(seq);
        Some(index)
    }

    /// Where the fresh copy `seq` is, or would go.
    fn fresh_at(&self, seq: u64) -> Result<usize, usize> {
        self.fresh.binary_search_by_key(&seq, |(s, _)| *s)
    }

    /// The fresh copy `seq`.
    pub(super) fn fresh(&self, seq: u64) -> Option<&Bytes> {
        self.fresh_at(seq).ok().map(|p| &self.fresh[p].1)
    }

    /// Adds the fresh copy `seq`, or replaces it (a requeue before its
    /// round was taken).
    pub(super) fn add_fresh(&mut self, seq: u64, body: Bytes) {
        match self.fresh_at(seq) {
            Ok(p) => self.fresh[p].1 = body,
            Err(p) => self.fresh.insert(p, (seq, body)),
        }
    }

    /// Whether any copy waits fresh.
    pub(super) fn has_fresh(&self) -> bool {
        !self.fresh.is_empty()
    }

    /// Takes the fresh copies, in sequence order.
    pub(super) fn take_fresh(&mut self) -> Vec<(u64, Bytes)> {
        std::mem::take(&mut self.fresh)
    }

    /// The `limit` live copies with the smallest sequence numbers in
    /// `from..to`, in sequence order: `(seq, where)` with `where` the index
    /// of a logged copy or `None` for a fresh one.
    pub(super) fn pick(&self, from: u64, to: u64, limit: usize) -> Vec<(u64, Option<u64>)> {
        let mut found: Vec<(u64, u64)> = Vec::new();
        for (i, seg) in self.segs.iter().enumerate() {
            if found.len() >= limit {
                // Later segments can only matter if they hold something
                // below what is already picked.
                found.sort_unstable();
                found.truncate(limit);
                let worst = found.last().map_or(u64::MAX, |f| f.0);
                if self.segs[i..]
                    .iter()
                    .all(|s| s.live == 0 || s.min_seq > worst)
                {
                    break;
                }
            }
            seg.live_in(from, to, limit, &mut found);
        }
        let mut out: Vec<(u64, Option<u64>)> =
            found.into_iter().map(|(s, i)| (s, Some(i))).collect();
        let start = self.fresh.partition_point(|(s, _)| *s < from);
        out.extend(
            self.fresh[start..]
                .iter()
                .take_while(|(s, _)| *s < to)
                .take(limit)
                .map(|(s, _)| (*s, None)),
        );
        out.sort_unstable_by_key(|(s, _)| *s);
        out.truncate(limit);
        out
    }

    /// A read that started at `from` stopped at `to`: `from`'s cursor (if
    /// it was one) moves there, else `to` is added.
    pub(super) fn move_cursor(&mut self, from: Cursor, to: Cursor) {
        if let Some(p) = self.cursors.iter().position(|c| *c == from) {
            self.cursors.remove(p);
        }
        if self.cursors.len() >= CURSORS {
            self.cursors.remove(0);
        }
        self.cursors.push(to);
    }

    /// The segment holding `index`.
    pub(super) fn seg_of(&self, index: u64) -> Option<&SegView> {
        let p = self.segs.partition_point(|s| s.end() <= index);
        self.segs.get(p).filter(|s| s.first <= index)
    }

    /// Live copies in all segments and fresh.
    #[cfg(test)]
    pub(super) fn live(&self) -> u64 {
        self.segs.iter().map(|s| s.live).sum::<u64>() + self.fresh.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(segs: &[&[u64]]) -> QueueView {
        let mut q = QueueView::empty(1);
        for seqs in segs {
            q.segs.push(SegView::new(q.next_index, 32));
            for seq in *seqs {
                q.append(*seq, 10);
            }
        }
        q
    }

    #[test]
    fn pick_takes_the_smallest_live_in_range_across_unsorted_segments() {
        // Segment 2 holds a copy (4) that raced past a later one.
        let mut q = view(&[&[1, 2, 3, 5], &[6, 4, 7], &[8, 9]]);
        q.add_fresh(10, Bytes::new());
        let seqs = |v: Vec<(u64, Option<u64>)>| v.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(seqs(q.pick(0, 100, 4)), [1, 2, 3, 4]);
        assert_eq!(q.pick(4, 5, 10), [(4, Some(6))]);
        assert_eq!(seqs(q.pick(3, 100, 100)), [3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(q.settle(4), Some(Found::Logged { first: 5, index: 6 }));
        assert_eq!(q.settle(4), None);
        assert_eq!(seqs(q.pick(0, 100, 5)), [1, 2, 3, 5, 6]);
        assert_eq!(q.settle(10), Some(Found::Fresh));
        assert_eq!(seqs(q.pick(9, 100, 5)), [9]);
        assert_eq!(q.live(), 8);
    }

    #[test]
    fn seqs_stay_a_run_while_consecutive_and_answer_the_same_as_a_list() {
        let mut run = Seqs::default();
        for s in 5..10 {
            run.push(s);
        }
        assert!(matches!(run, Seqs::Run { start: 5, len: 5 }));
        assert_eq!((run.get(4), run.get(5)), (Some(9), None));
        assert_eq!(
            (run.lower_bound(0), run.lower_bound(7), run.lower_bound(99)),
            (0, 2, 5)
        );
        run.push(12);
        assert!(matches!(&run, Seqs::List(v) if v == &[5, 6, 7, 8, 9, 12]));
        assert_eq!(run.iter_from(4).collect::<Vec<_>>(), [9, 12]);
        assert_eq!(run.lower_bound(10), 5);
    }

    #[test]
    fn a_number_given_out_again_after_a_restart_settles_its_live_copy() {
        // Copies 5 and 6 were settled before a restart, which gave 5 and 6
        // out again: in the same segment, sorted or not, and in the next.
        for segs in [&[&[4, 5, 6, 5, 6][..]][..], &[&[4, 5, 6], &[5, 6]]] {
            let mut q = view(segs);
            assert!(matches!(q.settle(5), Some(Found::Logged { index: 2, .. })));
            assert!(matches!(q.settle(6), Some(Found::Logged { index: 3, .. })));
            assert!(matches!(q.settle(5), Some(Found::Logged { index: 4, .. })));
            assert!(matches!(q.settle(6), Some(Found::Logged { index: 5, .. })));
            assert_eq!(q.settle(6), None);
            assert_eq!(q.pick(0, 100, 10), [(4, Some(1))]);
        }
    }

    /// A small deterministic generator (xorshift), for the model test.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn unsorted_segments_answer_as_a_scan_of_every_entry_would() {
        // Sequence numbers appended in racing order (each round a shuffled
        // window, sometimes a number given out again), settled at random,
        // checked against a plain list after every step.
        let mut rng = 0x5eed_u64;
        let mut q = QueueView::empty(1);
        let mut model: Vec<(u64, bool)> = Vec::new(); // (seq, live), by index
        let mut next_seq = 1u64;
        for round in 0..400 {
            if round % 60 == 0 {
                q.segs.push(SegView::new(q.next_index, 32));
            }
            let mut batch: Vec<u64> = (next_seq..next_seq + 7).collect();
            next_seq += 7;
            for i in (1..batch.len()).rev() {
                batch.swap(i, (next(&mut rng) % (i as u64 + 1)) as usize);
            }
            if next(&mut rng).is_multiple_of(5) {
                batch.push((next_seq - 1).saturating_sub(next(&mut rng) % 20).max(1));
            }
            for seq in batch {
                q.append(seq, 10);
                model.push((seq, true));
            }
            for _ in 0..4 {
                let seq = next(&mut rng) % next_seq;
                let want = model.iter().position(|(s, live)| *s == seq && *live);
                let got = q.settle(seq);
                match (want, got) {
                    (None, None) => {}
                    (Some(i), Some(Found::Logged { index, .. })) => {
                        assert_eq!(model[i].0, seq);
                        assert_eq!(
                            q.seg_of(index)
                                .and_then(|s| s.seqs.get((index - s.first) as usize)),
                            Some(seq)
                        );
                        let at = (index - 1) as usize;
                        assert!(
                            model[at].1 && model[at].0 == seq,
                            "settled a live copy {seq}"
                        );
                        model[at].1 = false;
                    }
                    other => panic!("seq {seq}: {other:?}"),
                }
            }
            let from = next(&mut rng) % next_seq;
            let limit = 1 + (next(&mut rng) % 40) as usize;
            let mut want: Vec<(u64, u64)> = model
                .iter()
                .enumerate()
                .filter(|(_, (s, live))| *live && *s >= from)
                .map(|(i, (s, _))| (*s, i as u64 + 1))
                .collect();
            want.sort_unstable();
            want.truncate(limit);
            let got: Vec<(u64, u64)> = q
                .pick(from, u64::MAX, limit)
                .into_iter()
                .map(|(s, i)| (s, i.unwrap_or(0)))
                .collect();
            assert_eq!(
                got.iter().map(|g| g.0).collect::<Vec<_>>(),
                want.iter().map(|w| w.0).collect::<Vec<_>>(),
                "round {round}"
            );
        }
        assert!(q.segs.iter().any(|s| !s.sorted && !s.order.is_empty()));
    }

    #[test]
    fn settle_range_drops_covered_sealed_segments_whole_and_acks_the_rest() {
        // Sealed [1,2,3], sealed unsorted [6,4,5], sealed [7,8], active [9,10].
        let mut q = view(&[&[1, 2, 3], &[6, 4, 5], &[7, 8], &[9, 10]]);
        q.add_fresh(11, Bytes::new());
        q.add_fresh(12, Bytes::new());
        assert_eq!(q.settle(2), Some(Found::Logged { first: 1, index: 2 }));
        let cut = q.settle_range(0, 7);
        // The first two are covered whole (the second although unsorted).
        assert_eq!(cut.doomed, [1, 4]);
        assert!(cut.acks.is_empty());
        assert_eq!(q.segs.iter().map(|s| s.first).collect::<Vec<_>>(), [7, 9]);
        // A range through the middle of a sealed segment, the active one
        // and the fresh copies.
        let cut = q.settle_range(8, 12);
        assert_eq!(cut.acks, [(7, 8), (9, 9), (9, 10)]);
        assert!(cut.doomed.is_empty());
        let seqs = |v: Vec<(u64, Option<u64>)>| v.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(seqs(q.pick(0, 100, 10)), [7, 12]);
        // The active segment stays even when nothing in it is live; a
        // sealed one settled in full by pieces goes, without acks.
        let cut = q.settle_range(7, 8);
        assert_eq!((cut.doomed, cut.acks), (vec![7], vec![]));
        assert_eq!(q.segs.len(), 1);
        assert_eq!(q.settle_range(5, 5), Cut::default());
        assert_eq!(q.live(), 1);
    }

    #[test]
    fn settle_marks_each_entry_once_and_counts_live() {
        let mut q = view(&[&[1, 2], &[3]]);
        assert!(q.is_logged(2));
        assert_eq!(q.settle(2), Some(Found::Logged { first: 1, index: 2 }));
        assert!(!q.is_logged(2));
        assert_eq!((q.segs[0].live, q.segs[1].live), (1, 1));
        assert_eq!(q.seg_of(3).map(|s| s.first), Some(3));
        assert_eq!(q.seg_of(4).map(|s| s.first), None);
    }
}
