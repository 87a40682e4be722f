//! The node-wide write-ahead file of the group commit (format in the parent
//! module's doc, "Write-ahead file"): [`WalWriter`] writes each round's
//! entries, of every queue it touched, as one record with one `write` and makes them
//! durable with one `fdatasync`; [`replay`] reads a file back at recovery,
//! entry by entry through a callback; `retirable` (tests) says when a file may
//! go.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::chunks::{open_read, read_exact_at, Chunks, Step, READ_CHUNK};
use super::record::{
    claimed_size, encode_in_place, reaches_end, Entry, FRAME_LEN, MAX_BODY, MAX_PAYLOAD, TYPE_WAL,
    WAL_ENTRY_HEADER_LEN,
};
use super::{first_index_of, sync_data_or_poison, wal_file_name, FileKind, LogError};

/// Appends rounds to one write-ahead file.
#[derive(Debug)]
pub(crate) struct WalWriter {
    path: PathBuf,
    file: File,
    generation: u64,
    /// Bytes in the file: where the next round goes.
    len: u64,
    /// The last index written for each queue: the next must follow it, and
    /// it is what `retirable` needs of this file.
    last: HashMap<u64, u64>,
    /// A round's records, reused.
    buf: Vec<u8>,
    /// A write or sync failed: what is on disk is unknown.
    poisoned: bool,
}

impl WalWriter {
    /// Creates the write-ahead file of `generation` in `dir`; one that
    /// already exists is an error (a generation is never reused). Creating
    /// it changes the directory: the caller syncs it ([`super::sync_dir`])
    /// before confirming anything written to it.
    pub(crate) fn create(dir: &Path, generation: u64) -> Result<WalWriter, LogError> {
        let path = dir.join(wal_file_name(generation));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        Ok(WalWriter {
            path,
            file,
            generation,
            len: 0,
            last: HashMap::new(),
            buf: Vec::new(),
            poisoned: false,
        })
    }

    /// Writes `bytes` zeros after what is written (a preallocated tail),
    /// for tests of the torn-tail rule.
    #[cfg(test)]
    pub(crate) fn zero_tail(&mut self, bytes: u64) -> Result<(), LogError> {
        let zeros = vec![0u8; usize::try_from(bytes).unwrap_or(0)];
        self.file
            .write_all_at(&zeros, self.len)
            .map_err(|e| LogError::io(&self.path, e))
    }

    /// Writes one round: its `(queue id, entry)`s, in order, as one WAL
    /// record (several past the record limit), with one `write`. Not durable until [`sync`](Self::sync).
    /// Nothing is written if a body is over [`MAX_BODY`]
    /// ([`LogError::TooLarge`]) or an entry does not follow its queue's
    /// last index in this file by exactly 1 ([`LogError::OutOfOrder`];
    /// a queue's first entry in the file may have any index but 0).
    pub(crate) fn append_round(&mut self, round: &[(u64, Entry<'_>)]) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned(self.path.clone()));
        }
        let mut pending: HashMap<u64, u64> = HashMap::new();
        for (queue, entry) in round {
            if entry.body.len() > MAX_BODY {
                return Err(LogError::TooLarge {
                    len: entry.body.len(),
                    max: MAX_BODY,
                });
            }
            let before = pending.get(queue).or_else(|| self.last.get(queue));
            let expected = before.map_or(1, |last| last + 1);
            let follows = match before {
                Some(_) => entry.index == expected,
                None => entry.index != 0,
            };
            if !follows {
                return Err(LogError::OutOfOrder {
                    expected,
                    got: entry.index,
                });
            }
            pending.insert(*queue, entry.index);
        }
        if round.is_empty() {
            return Ok(());
        }
        // The round is one record (its CRC covers the round, so a torn
        // round is always the last record), or several when it is over
        // the record limit. Framed in place: each body is copied once.
        self.buf.clear();
        let mut rest = round;
        while !rest.is_empty() {
            let mut payload = 0;
            let n = rest
                .iter()
                .take_while(|(_, e)| {
                    let fits = payload == 0 || payload + wal_entry_len(e) <= MAX_PAYLOAD;
                    if fits {
                        payload += wal_entry_len(e);
                    }
                    fits
                })
                .count();
            let (group, after) = rest.split_at(n);
            encode_in_place(&mut self.buf, TYPE_WAL, FRAME_LEN + payload, |out| {
                for (queue, entry) in group {
                    put_wal_entry(out, *queue, entry);
                }
            });
            rest = after;
        }
        if let Err(e) = self.file.write_all_at(&self.buf, self.len) {
            self.poisoned = true;
            return Err(LogError::io(&self.path, e));
        }
        self.len += self.buf.len() as u64;
        self.last.extend(pending);
        Ok(())
    }

    /// Makes the rounds appended so far durable (`fdatasync`). A failure
    /// poisons the writer: it is never retried (`message-store.md` §5.6).
    pub(crate) fn sync(&mut self) -> Result<(), LogError> {
        sync_data_or_poison(&self.file, &self.path, &mut self.poisoned)
    }

    /// Takes back what was written from byte `len` on (the last round,
    /// which the segments could not take: it was never confirmed), made
    /// durable. The writer takes nothing after it: the store stops.
    pub(crate) fn take_back(&mut self, len: u64) -> Result<(), LogError> {
        self.poisoned = true;
        self.file
            .set_len(len)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| LogError::io(&self.path, e))?;
        self.len = len;
        Ok(())
    }

    /// Bytes written to the file.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The file's generation, the number in its name.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The highest index written to this file for each queue: with what
    /// the segments have synced, [`retirable`] says when the file may go.
    #[cfg(test)]
    pub(crate) fn max_indexes(&self) -> &HashMap<u64, u64> {
        &self.last
    }
}

/// What [`replay`] found in a write-ahead file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalReplay {
    /// The file's generation, from its name.
    pub(crate) generation: u64,
    /// Bytes of whole, valid records from the start of the file.
    pub(crate) valid_len: u64,
    /// Bytes after them that are a torn last round (ignored; the file is
    /// never appended to again), or `None` when the file ends on a record.
    pub(crate) torn: Option<u64>,
    /// Whether the torn tail is all zeros: the unwritten rest of a
    /// preallocated file, or a write whose data never reached the disk.
    pub(crate) zeros: bool,
    /// The highest index seen for each queue.
    pub(crate) max_index: HashMap<u64, u64>,
}

/// Reads the write-ahead file at `path` from the start, handing every
/// entry to `each` in file order as `(queue id, entry)`, the entry borrowed
/// from the read buffer (nothing is allocated per record). An error from
/// `each` stops the replay and is returned. A torn tail is reported, not
/// an error; a bad record with more after it, another record type, a
/// short payload, index 0, or a gap or step back in a queue's indexes is
/// [`LogError::Corrupt`]. A name that is not `<20 digits>.wal` is
/// [`LogError::BadName`].
pub(crate) fn replay(
    path: &Path,
    mut each: impl FnMut(u64, Entry<'_>) -> Result<(), LogError>,
) -> Result<WalReplay, LogError> {
    let generation = first_index_of(path, FileKind::Wal)?;
    let (file, len) = open_read(path)?;
    let tail_file = file.try_clone().map_err(|e| LogError::io(path, e))?;
    let mut chunks = Chunks::new(file, path, 0, len, READ_CHUNK);
    let mut max_index: HashMap<u64, u64> = HashMap::new();
    loop {
        match chunks.next()? {
            Step::Record {
                typ,
                offset,
                payload,
            } => {
                if typ != TYPE_WAL {
                    return Err(LogError::corrupt(
                        path,
                        offset,
                        format!("record of type {typ} in a write-ahead file"),
                    ));
                }
                let mut rest = &chunks.buf[payload];
                while !rest.is_empty() {
                    let Some((queue, entry, after)) = split_wal_entry(rest) else {
                        return Err(LogError::corrupt(path, offset, "short write-ahead entry"));
                    };
                    rest = after;
                    let follows = match max_index.get(&queue) {
                        Some(&last) => entry.index == last.wrapping_add(1),
                        None => entry.index != 0,
                    };
                    if !follows {
                        return Err(LogError::corrupt(
                            path,
                            offset,
                            format!(
                                "queue {queue}: index {} after {:?}",
                                entry.index,
                                max_index.get(&queue)
                            ),
                        ));
                    }
                    max_index.insert(queue, entry.index);
                    each(queue, entry)?;
                }
            }
            Step::End => {
                return Ok(WalReplay {
                    generation,
                    valid_len: chunks.pos,
                    torn: None,
                    zeros: false,
                    max_index,
                })
            }
            Step::Bad { offset, what } => {
                let frame = read_exact_at(&tail_file, path, FRAME_LEN, offset)?;
                let claimed = claimed_size(&frame);
                let zeros = zeros_to_end(&tail_file, path, offset, len)?;
                // In a file whose tail was zero-filled (preallocated, or
                // allocated before its data was written, as ext4 does in
                // data=writeback), a round cut short by a crash is followed
                // by zeros, not by the end of the file: past what its frame
                // claims (or past the frame, when the cut fell inside it
                // and left no plausible length).
                let rest = claimed.unwrap_or(FRAME_LEN) as u64;
                let zeros_after =
                    zeros_to_end(&tail_file, path, offset.saturating_add(rest).min(len), len)?;
                let last = zeros || zeros_after || reaches_end(claimed, len - offset);
                if !last {
                    return Err(LogError::corrupt(
                        path,
                        offset,
                        format!("{what}, with more after it"),
                    ));
                }
                return Ok(WalReplay {
                    generation,
                    valid_len: offset,
                    torn: Some(len - offset),
                    zeros,
                    max_index,
                });
            }
        }
    }
}

/// Bytes of `entry` inside a write-ahead record.
fn wal_entry_len(entry: &Entry<'_>) -> usize {
    WAL_ENTRY_HEADER_LEN + entry.body.len()
}

/// Appends `entry` of queue `queue` as a write-ahead record holds it:
/// `[queue u64][index u64][term u64][body len u32][body]`. The body is at
/// most [`MAX_BODY`] (the writer checks), so its length fits a u32.
fn put_wal_entry(out: &mut Vec<u8>, queue: u64, entry: &Entry<'_>) {
    out.extend_from_slice(&queue.to_le_bytes());
    out.extend_from_slice(&entry.index.to_le_bytes());
    out.extend_from_slice(&entry.term.to_le_bytes());
    out.extend_from_slice(&(entry.body.len() as u32).to_le_bytes());
    out.extend_from_slice(entry.body);
}

/// The first entry of a write-ahead record's payload, and what follows it:
/// `[queue u64][index u64][term u64][body len u32][body]`. `None` when the
/// bytes are too short for what they declare.
fn split_wal_entry(p: &[u8]) -> Option<(u64, Entry<'_>, &[u8])> {
    let (head, rest) = p.split_first_chunk::<WAL_ENTRY_HEADER_LEN>()?;
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&head[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let len = u32::from_le_bytes([head[24], head[25], head[26], head[27]]) as usize;
    if rest.len() < len {
        return None;
    }
    let (body, after) = rest.split_at(len);
    let entry = Entry {
        index: word(8),
        term: word(16),
        body,
    };
    Some((word(0), entry, after))
}

/// Whether the bytes of `file` from `from` to `len` are all zeros, read
/// [`READ_CHUNK`] at a time.
fn zeros_to_end(file: &File, path: &Path, from: u64, len: u64) -> Result<bool, LogError> {
    let mut at = from;
    while at < len {
        let n = usize::try_from(len - at).map_or(READ_CHUNK, |left| left.min(READ_CHUNK));
        let bytes = read_exact_at(file, path, n, at)?;
        if bytes.is_empty() {
            break;
        }
        if bytes.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += bytes.len() as u64;
    }
    Ok(true)
}

/// Whether a write-ahead file may be retired: every queue it holds records
/// of (`max_in_wal`, its highest index there, from
/// [`WalWriter::max_indexes`] or [`WalReplay::max_index`]) has its segments
/// synced through that index (`synced`, the last index synced per queue;
/// a queue missing there has synced nothing).
#[cfg(test)]
pub(crate) fn retirable(max_in_wal: &HashMap<u64, u64>, synced: &HashMap<u64, u64>) -> bool {
    max_in_wal
        .iter()
        .all(|(queue, &max)| synced.get(queue).is_some_and(|&s| s >= max))
}

#[cfg(test)]
mod tests {
    use super::super::record::{encode_into, TYPE_ENTRY};
    use super::super::{ack_file_name, segment_file_name};
    use super::*;

    /// `(queue, index, term, body)` of every entry a replay hands over.
    type Seen = Vec<(u64, u64, u64, Vec<u8>)>;

    fn replay_all(path: &Path) -> Result<(WalReplay, Seen), LogError> {
        let mut seen = Vec::new();
        let r = replay(path, |q, e| {
            seen.push((q, e.index, e.term, e.body.to_vec()));
            Ok(())
        })?;
        Ok((r, seen))
    }

    /// Bytes of the write-ahead record holding these entries (one round).
    fn record_len(entries: &[(u64, u64, u64, Vec<u8>)]) -> usize {
        FRAME_LEN
            + entries
                .iter()
                .map(|e| WAL_ENTRY_HEADER_LEN + e.3.len())
                .sum::<usize>()
    }

    fn body(queue: u64, index: u64) -> Vec<u8> {
        format!("q{queue} i{index} {}", "x".repeat((index % 40) as usize)).into_bytes()
    }

    /// Writes `rounds` rounds of one entry for each of queues 1, 2, 3
    /// (queue q starting at index 10 * q) and returns the file's path and
    /// what a replay must see.
    fn write_rounds(dir: &Path, rounds: u64) -> (PathBuf, Seen) {
        let mut w = WalWriter::create(dir, 7).unwrap();
        let mut want = Vec::new();
        for r in 0..rounds {
            let bodies: Vec<(u64, u64, Vec<u8>)> = (1..=3)
                .map(|q| (q, 10 * q + r, body(q, 10 * q + r)))
                .collect();
            let round: Vec<(u64, Entry<'_>)> = bodies
                .iter()
                .map(|(q, i, b)| {
                    (
                        *q,
                        Entry {
                            index: *i,
                            term: r,
                            body: b,
                        },
                    )
                })
                .collect();
            w.append_round(&round).unwrap();
            w.sync().unwrap();
            want.extend(bodies.into_iter().map(|(q, i, b)| (q, i, r, b)));
        }
        assert_eq!(w.generation(), 7);
        let path = dir.join(wal_file_name(7));
        assert_eq!(w.len(), std::fs::metadata(&path).unwrap().len());
        (path, want)
    }

    #[test]
    fn a_thousand_rounds_of_three_queues_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (path, want) = write_rounds(dir.path(), 1000);
        let (r, seen) = replay_all(&path).unwrap();
        assert_eq!(seen, want);
        assert_eq!(r.generation, 7);
        assert_eq!(r.torn, None);
        assert_eq!(r.valid_len, std::fs::metadata(&path).unwrap().len());
        let max: HashMap<u64, u64> = (1..=3).map(|q| (q, 10 * q + 999)).collect();
        assert_eq!(r.max_index, max);
    }

    #[test]
    fn the_writer_knows_its_max_indexes_and_refuses_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::create(dir.path(), 1).unwrap();
        let e = |index| Entry {
            index,
            term: 0,
            body: b"b",
        };
        w.append_round(&[(1, e(5)), (2, e(1)), (1, e(6))]).unwrap();
        assert!(matches!(
            w.append_round(&[(2, e(2)), (1, e(8))]),
            Err(LogError::OutOfOrder {
                expected: 7,
                got: 8
            })
        ));
        assert!(matches!(
            w.append_round(&[(3, e(0))]),
            Err(LogError::OutOfOrder { .. })
        ));
        let len = w.len();
        w.append_round(&[]).unwrap();
        assert_eq!(w.len(), len, "a refused or empty round writes nothing");
        let max: HashMap<u64, u64> = [(1, 6), (2, 1)].into();
        assert_eq!(w.max_indexes(), &max);
        assert!(
            WalWriter::create(dir.path(), 1).is_err(),
            "generation reused"
        );
    }

    /// Every cut inside the last record, and the last record with any one
    /// byte but its length flipped, leave exactly the records before it.
    #[test]
    fn a_torn_last_record_is_cut_to_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let (path, want) = write_rounds(dir.path(), 5);
        let whole = std::fs::read(&path).unwrap();
        // The last round, its 3 entries, is the last record.
        let last_len = record_len(&want[want.len() - 3..]);
        let before = whole.len() - last_len;
        let mut torn: Vec<Vec<u8>> = (before + 1..whole.len())
            .map(|cut| whole[..cut].to_vec())
            .collect();
        for at in (before..whole.len()).filter(|at| !(before + 1..before + 5).contains(at)) {
            let mut b = whole.clone();
            b[at] ^= 0x10;
            torn.push(b);
        }
        for bytes in torn {
            std::fs::write(&path, &bytes).unwrap();
            let (r, seen) = replay_all(&path).unwrap();
            assert_eq!(r.valid_len, before as u64, "{} bytes", bytes.len());
            assert_eq!(r.torn, Some((bytes.len() - before) as u64));
            assert_eq!(seen, want[..want.len() - 3]);
            assert_eq!(r.max_index[&3], 34 - 1);
        }
    }

    #[test]
    fn a_flipped_byte_in_an_earlier_record_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (path, want) = write_rounds(dir.path(), 3);
        let whole = std::fs::read(&path).unwrap();
        let first_len = record_len(&want[..3]);
        // Every byte of the first record but its length field, which can
        // make it claim the rest of the file (read as torn, never wrong).
        for at in (0..first_len).filter(|at| !(1..5).contains(at)) {
            let mut b = whole.clone();
            b[at] ^= 0x01;
            std::fs::write(&path, &b).unwrap();
            match replay_all(&path) {
                Err(LogError::Corrupt { offset, .. }) => assert_eq!(offset, 0, "byte {at}"),
                other => panic!("byte {at}: {other:?}"),
            }
        }
    }

    #[test]
    fn zeros_after_valid_records_are_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (path, want) = write_rounds(dir.path(), 4);
        let mut bytes = std::fs::read(&path).unwrap();
        let whole = bytes.len() as u64;
        bytes.extend_from_slice(&vec![0; 3 * READ_CHUNK + 5]);
        std::fs::write(&path, &bytes).unwrap();
        let (r, seen) = replay_all(&path).unwrap();
        assert_eq!(seen, want);
        assert_eq!(r.valid_len, whole);
        assert_eq!(r.torn, Some(3 * READ_CHUNK as u64 + 5));
        // One non-zero byte far behind the zeros: not a torn tail.
        bytes.push(1);
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            replay_all(&path),
            Err(LogError::Corrupt { offset, .. }) if offset == whole
        ));
    }

    /// A file with a zero-filled tail, with a last round cut short at any
    /// point (inside its frame too): what follows is zeros, not the end of
    /// the file, and the cut round is a torn tail; the rounds before it are
    /// all replayed. A byte of data after the zeros is corruption.
    #[test]
    fn a_round_cut_short_before_a_zero_filled_tail_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (path, want) = write_rounds(dir.path(), 3);
        let whole = std::fs::read(&path).unwrap();
        let last = wal_record(9, 1);
        for cut in 1..last.len() {
            let mut b = whole.clone();
            b.extend_from_slice(&last[..cut]);
            b.extend_from_slice(&vec![0; 64 * 1024]);
            std::fs::write(&path, &b).unwrap();
            let (r, seen) = replay_all(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(
                (r.valid_len, &seen),
                (whole.len() as u64, &want),
                "cut at {cut}"
            );
            assert!(r.torn.is_some() && !r.zeros, "cut at {cut}");
            b.push(1);
            std::fs::write(&path, &b).unwrap();
            assert!(
                replay_all(&path).is_err(),
                "cut at {cut}, data after the zeros"
            );
        }
        // A zero-filled tail after whole rounds: replay ends at the last.
        let mut w = WalWriter::create(dir.path(), 8).unwrap();
        let entry = Entry {
            index: 1,
            term: 0,
            body: b"x",
        };
        w.append_round(&[(1, entry)]).unwrap();
        w.zero_tail(1 << 20).unwrap();
        let path8 = dir.path().join(wal_file_name(8));
        let (r, seen) = replay_all(&path8).unwrap();
        assert_eq!((seen.len(), r.valid_len, r.zeros), (1, w.len(), true));
    }

    /// A last record whose length is 0 or over the limit, with bytes after
    /// its frame: where it ends is unknown, so it is not a torn tail.
    #[test]
    fn a_frame_with_no_plausible_length_before_more_bytes_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write_rounds(dir.path(), 2);
        let whole = std::fs::read(&path).unwrap();
        let mut b = whole.clone();
        b.extend_from_slice(&wal_record(1, 12));
        for len in [0, u32::MAX] {
            b[whole.len() + 1..whole.len() + 5].copy_from_slice(&len.to_le_bytes());
            std::fs::write(&path, &b).unwrap();
            assert!(matches!(
                replay_all(&path),
                Err(LogError::Corrupt { offset, .. }) if offset == whole.len() as u64
            ));
            // Cut inside its frame: a torn tail.
            std::fs::write(&path, &b[..whole.len() + 4]).unwrap();
            assert_eq!(replay_all(&path).unwrap().0.torn, Some(4));
        }
    }

    /// A round over the record limit is split into records that each fit,
    /// all replayed in order.
    #[test]
    fn a_round_over_the_record_limit_is_split_into_records_that_fit() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![7u8; MAX_BODY / 2 + 1];
        let mut w = WalWriter::create(dir.path(), 1).unwrap();
        let round: Vec<(u64, Entry<'_>)> = (1..=3)
            .map(|i| {
                let entry = Entry {
                    index: i,
                    term: 0,
                    body: &big,
                };
                (9, entry)
            })
            .collect();
        w.append_round(&round).unwrap();
        // Two bodies of just over half the limit cannot share a record.
        let one = FRAME_LEN + WAL_ENTRY_HEADER_LEN + big.len();
        assert_eq!(w.len(), 3 * one as u64);
        let path = dir.path().join(wal_file_name(1));
        let (r, seen) = replay_all(&path).unwrap();
        assert_eq!(r.torn, None);
        assert_eq!(seen.iter().map(|e| e.1).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(seen.iter().all(|e| e.3 == big));
    }

    /// A write-ahead record of one entry, as a round of one.
    fn wal_record(queue: u64, index: u64) -> Vec<u8> {
        let mut p = Vec::new();
        let entry = Entry {
            index,
            term: 0,
            body: b"body",
        };
        put_wal_entry(&mut p, queue, &entry);
        let mut out = Vec::new();
        encode_into(&mut out, TYPE_WAL, &p);
        out
    }

    /// The case a record per entry could not tell from damage: a power
    /// loss kept a later page of the last round's `write` and not an
    /// earlier one. The round is one record, so it reads as a torn tail.
    #[test]
    fn a_round_with_a_hole_in_its_middle_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (path, want) = write_rounds(dir.path(), 4);
        let whole = std::fs::read(&path).unwrap();
        let last_len = record_len(&want[want.len() - 3..]);
        let before = whole.len() - last_len;
        let mut b = whole.clone();
        // Zero the middle of the round, keep its frame and its end.
        let mid = before + FRAME_LEN + 8;
        b[mid..whole.len() - 8].fill(0);
        std::fs::write(&path, &b).unwrap();
        let (r, seen) = replay_all(&path).unwrap();
        assert_eq!(r.valid_len, before as u64);
        assert_eq!(seen, want[..want.len() - 3]);
    }

    #[test]
    fn an_index_gap_or_step_back_within_a_queue_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(wal_file_name(2));
        let ok = [wal_record(1, 4), wal_record(2, 9), wal_record(1, 5)].concat();
        std::fs::write(&path, &ok).unwrap();
        assert_eq!(replay_all(&path).unwrap().1.len(), 3);
        for bad in [wal_record(1, 7), wal_record(1, 5), wal_record(1, 4)] {
            std::fs::write(&path, [ok.clone(), bad, wal_record(2, 10)].concat()).unwrap();
            assert!(matches!(
                replay_all(&path),
                Err(LogError::Corrupt { offset, .. }) if offset == ok.len() as u64
            ));
        }
        std::fs::write(&path, wal_record(3, 0)).unwrap();
        assert!(matches!(replay_all(&path), Err(LogError::Corrupt { .. })));
    }

    #[test]
    fn another_record_type_or_a_short_payload_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(wal_file_name(2));
        let mut b = wal_record(1, 1);
        encode_into(&mut b, TYPE_ENTRY, &[1; 20]);
        std::fs::write(&path, &b).unwrap();
        assert!(matches!(replay_all(&path), Err(LogError::Corrupt { .. })));
        let mut b = Vec::new();
        encode_into(&mut b, TYPE_WAL, &[1; WAL_ENTRY_HEADER_LEN - 1]);
        std::fs::write(&path, &b).unwrap();
        assert!(matches!(replay_all(&path), Err(LogError::Corrupt { .. })));
    }

    #[test]
    fn an_error_from_the_callback_stops_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write_rounds(dir.path(), 2);
        let mut calls = 0;
        let r = replay(&path, |_, _| {
            calls += 1;
            Err(LogError::EmptySeal(PathBuf::from("stop")))
        });
        assert!(matches!(r, Err(LogError::EmptySeal(_))));
        assert_eq!(calls, 1);
    }

    #[test]
    fn retirable_needs_every_queue_synced_through_its_max() {
        let wal: HashMap<u64, u64> = [(1, 10), (2, 20)].into();
        assert!(retirable(&wal, &[(1, 10), (2, 20)].into()));
        assert!(retirable(&wal, &[(1, 11), (2, 25), (3, 1)].into()));
        assert!(!retirable(&wal, &[(1, 10), (2, 19)].into()));
        assert!(
            !retirable(&wal, &[(1, 10)].into()),
            "queue 2 synced nothing"
        );
        assert!(retirable(&HashMap::new(), &HashMap::new()));
    }

    #[test]
    fn segment_and_ack_names_are_not_wal_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [segment_file_name(1), ack_file_name(1), "x.wal".into()] {
            let path = dir.path().join(name);
            std::fs::write(&path, wal_record(1, 1)).unwrap();
            assert!(
                matches!(replay_all(&path), Err(LogError::BadName(_))),
                "{path:?}"
            );
        }
    }
}
