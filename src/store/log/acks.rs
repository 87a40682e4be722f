//! A segment's ack file: which of its entries are settled (acked, rejected,
//! expired, dead-lettered). Append-only records of the segment framing,
//! each an ACKS batch of u64 LE indexes, in any order, duplicates harmless
//! (format in the parent module's doc). Writing ([`AckWriter`]), reading
//! back ([`read_acks`] into an [`AckSet`]) and the question the log asks of
//! it, `fully_settled` (tests): may this segment go? (the store counts live entries instead)
//!
//! Each batch carries the record CRC, so a flipped bit can never settle an
//! entry that was not settled: it makes the batch invalid instead. Only the
//! last batch may be bad (a torn write: cut, and its entries delivered
//! again, which at-least-once allows); a bad batch with more data after it
//! is damage, and is reported as corruption.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{
    claimed_size, decode, encode_into, reaches_end, Decoded, MAX_PAYLOAD, TYPE_ACKS,
};
use super::{first_index_of, sync_data_or_poison, FileKind, LogError};

/// Bytes of one ack inside a batch.
pub(crate) const ACK_LEN: usize = 8;

/// At most this many acks in one batch record (bounded by the record's
/// payload limit).
const MAX_BATCH: usize = MAX_PAYLOAD / ACK_LEN;

/// The settled indexes of one segment, sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AckSet {
    sorted: Vec<u64>,
}

impl AckSet {
    /// A set of these indexes (any order, duplicates allowed). Index 0,
    /// which is never an entry's, is left out.
    pub(crate) fn from_indexes(mut indexes: Vec<u64>) -> AckSet {
        indexes.retain(|&i| i != 0);
        indexes.sort_unstable();
        indexes.dedup();
        AckSet { sorted: indexes }
    }

    /// Whether `index` is settled.
    pub(crate) fn contains(&self, index: u64) -> bool {
        self.sorted.binary_search(&index).is_ok()
    }

    /// Distinct settled indexes.
    pub(crate) fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether nothing is settled.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Distinct settled indexes in `first..first + count`.
    #[cfg(test)]
    pub(crate) fn count_in(&self, first: u64, count: u64) -> u64 {
        let end = first.saturating_add(count);
        let lo = self.sorted.partition_point(|&i| i < first);
        let hi = self.sorted.partition_point(|&i| i < end);
        (hi - lo) as u64
    }
}

/// Whether every entry of a segment (`count` entries from `first`) is
/// settled, so the segment and its ack file can be unlinked.
#[cfg(test)]
pub(crate) fn fully_settled(first: u64, count: u64, acks: &AckSet) -> bool {
    acks.count_in(first, count) == count
}

/// What [`read_acks`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AckRead {
    /// The settled indexes.
    pub(crate) set: AckSet,
    /// Bytes of whole, valid batches: where the next batch goes.
    pub(crate) valid_len: u64,
    /// Bytes after them that are a torn last batch (partial, failing its
    /// CRC, or zeros), ignored; 0 when the file ends on a whole batch.
    /// [`AckWriter::open`] cuts them.
    pub(crate) torn_bytes: usize,
}

/// Reads a whole ack file. A missing file is an empty set (nothing settled
/// yet in that segment). A bad batch followed by more data is
/// [`LogError::Corrupt`].
pub(crate) fn read_acks(path: &Path) -> Result<AckRead, LogError> {
    first_index_of(path, FileKind::Acks)?;
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)
                .map_err(|e| LogError::io(path, e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LogError::io(path, e)),
    }
    decode_acks(&bytes).map_err(|(offset, what)| LogError::Corrupt {
        file: path.to_owned(),
        offset,
        what,
    })
}

/// The acks in an ack file's bytes (pure). `Err((offset, what))`: damage
/// that is not a torn last batch.
pub(crate) fn decode_acks(bytes: &[u8]) -> Result<AckRead, (u64, String)> {
    let mut indexes = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let bad = match decode(rest) {
            Decoded::Record { typ, payload, size } => {
                if typ != TYPE_ACKS || payload.len() % ACK_LEN != 0 {
                    return Err((
                        at as u64,
                        format!(
                            "record of type {typ} and {} bytes in an ack file",
                            payload.len()
                        ),
                    ));
                }
                indexes.extend(payload.chunks_exact(ACK_LEN).map(|c| {
                    let mut w = [0u8; ACK_LEN];
                    w.copy_from_slice(c);
                    u64::from_le_bytes(w)
                }));
                at += size;
                continue;
            }
            // Cut short by the end of the file: a torn last batch.
            Decoded::NeedMore { .. } => None,
            Decoded::Invalid(why) => Some(why),
        };
        // Zeros to the end, or a bad last batch, are a torn write; a bad
        // batch with more bytes after it is damage. Unlike a write-ahead
        // file, an ack file also takes a frame with no plausible length as
        // its last batch: dropping what follows costs only redeliveries.
        if let Some(why) = bad {
            let claimed = claimed_size(rest);
            let last = claimed.is_none() || reaches_end(claimed, rest.len() as u64);
            if !last && !rest.iter().all(|&b| b == 0) {
                return Err((
                    at as u64,
                    format!("bad ack batch ({why}) with more after it"),
                ));
            }
        }
        return Ok(AckRead {
            set: AckSet::from_indexes(indexes),
            valid_len: at as u64,
            torn_bytes: rest.len(),
        });
    }
    Ok(AckRead {
        set: AckSet::from_indexes(indexes),
        valid_len: at as u64,
        torn_bytes: 0,
    })
}

/// Appends acks to one segment's ack file.
#[derive(Debug)]
pub(crate) struct AckWriter {
    path: PathBuf,
    file: File,
    /// Bytes in the file: where the next batch goes.
    len: u64,
    /// Acks written so far (duplicates counted).
    written: u64,
    buf: Vec<u8>,
    payload: Vec<u8>,
    /// A write or sync failed: what is on disk is unknown.
    poisoned: bool,
}

impl AckWriter {
    /// Opens (creating if needed) an ack file for append. A torn last batch
    /// is cut first; damage is [`LogError::Corrupt`]. Creating the file
    /// changes the directory: the caller syncs it ([`super::sync_dir`])
    /// with the next barrier.
    pub(crate) fn open(path: &Path) -> Result<AckWriter, LogError> {
        let read = read_acks(path)?;
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| LogError::io(path, e))?;
        if read.torn_bytes != 0 {
            file.set_len(read.valid_len)
                .and_then(|()| file.sync_data())
                .map_err(|e| LogError::io(path, e))?;
        }
        Ok(AckWriter {
            path: path.to_owned(),
            file,
            len: read.valid_len,
            written: read.set.len() as u64,
            buf: Vec::new(),
            payload: Vec::new(),
            poisoned: false,
        })
    }

    /// Appends acks for `indexes` (as one batch record, or several past
    /// the record limit) with one `write`. Not durable until
    /// [`sync`](Self::sync).
    pub(crate) fn append(&mut self, indexes: &[u64]) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned(self.path.clone()));
        }
        if indexes.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        for batch in indexes.chunks(MAX_BATCH) {
            self.payload.clear();
            for i in batch {
                self.payload.extend_from_slice(&i.to_le_bytes());
            }
            encode_into(&mut self.buf, TYPE_ACKS, &self.payload);
        }
        if let Err(e) = self.file.write_all_at(&self.buf, self.len) {
            self.poisoned = true;
            return Err(LogError::io(&self.path, e));
        }
        self.len += self.buf.len() as u64;
        self.written += indexes.len() as u64;
        Ok(())
    }

    /// Makes the acks appended so far durable (`fdatasync`); a failure
    /// poisons the writer, as for segments.
    pub(crate) fn sync(&mut self) -> Result<(), LogError> {
        sync_data_or_poison(&self.file, &self.path, &mut self.poisoned)
    }

    /// Acks written: on open, the distinct ones found; then every one
    /// appended (duplicates counted).
    #[cfg(test)]
    pub(crate) fn written(&self) -> u64 {
        self.written
    }
}

#[cfg(test)]
mod tests {
    use super::super::ack_file_name;
    use super::*;

    fn ack_path(dir: &tempfile::TempDir, first: u64) -> PathBuf {
        dir.path().join(ack_file_name(first))
    }

    #[test]
    fn acks_round_trip_with_duplicates_and_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = ack_path(&dir, 10);
        let mut w = AckWriter::open(&path).unwrap();
        w.append(&[12, 10, 11]).unwrap();
        w.append(&[11, 14]).unwrap();
        w.sync().unwrap();
        assert_eq!(w.written(), 5);
        let read = read_acks(&path).unwrap();
        assert_eq!(read.torn_bytes, 0);
        assert_eq!(read.set, AckSet::from_indexes(vec![10, 11, 12, 14]));
        assert!(read.set.contains(14) && !read.set.contains(13));
        assert_eq!(read.set.len(), 4);
    }

    #[test]
    fn missing_file_is_nothing_settled() {
        let dir = tempfile::tempdir().unwrap();
        let read = read_acks(&ack_path(&dir, 1)).unwrap();
        assert!(read.set.is_empty());
        assert_eq!(read.torn_bytes, 0);
    }

    #[test]
    fn fully_settled_needs_every_index_in_range() {
        let set = AckSet::from_indexes(vec![5, 6, 7, 7, 9, 100]);
        assert!(!fully_settled(5, 5, &set)); // 8 missing
        assert!(fully_settled(5, 3, &set));
        assert!(fully_settled(9, 1, &set));
        assert!(!fully_settled(4, 4, &set));
        // Acks outside the range do not stand in for missing ones.
        assert!(!fully_settled(6, 3, &set));
        assert!(fully_settled(u64::MAX, 0, &set));
    }

    /// The bytes of ack batches, as the writer lays them out.
    fn batches(batches: &[&[u64]]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in batches {
            let payload: Vec<u8> = b.iter().flat_map(|i| i.to_le_bytes()).collect();
            encode_into(&mut out, TYPE_ACKS, &payload);
        }
        out
    }

    #[test]
    fn a_torn_last_batch_is_ignored_and_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = ack_path(&dir, 1);
        let whole = batches(&[&[1, 2], &[3]]);
        let last = batches(&[&[4, 5]]);
        // Every cut of the last batch, and the whole batch with any one
        // byte flipped: the first two batches stand, the last is torn.
        let mut torn: Vec<Vec<u8>> = (1..last.len()).map(|n| last[..n].to_vec()).collect();
        for at in 0..last.len() {
            let mut b = last.clone();
            b[at] ^= 0x10;
            torn.push(b);
        }
        for t in torn {
            let mut b = whole.clone();
            b.extend_from_slice(&t);
            std::fs::write(&path, &b).unwrap();
            let read = read_acks(&path).unwrap();
            assert_eq!(read.torn_bytes, t.len(), "{t:?}");
            assert_eq!(read.set, AckSet::from_indexes(vec![1, 2, 3]), "{t:?}");
            let mut w = AckWriter::open(&path).unwrap();
            assert_eq!(w.written(), 3);
            w.append(&[4]).unwrap();
            let read = read_acks(&path).unwrap();
            assert_eq!(read.torn_bytes, 0);
            assert_eq!(read.set, AckSet::from_indexes(vec![1, 2, 3, 4]));
        }
    }

    /// The checker catches what a raw u64 file could not: a flipped bit in
    /// an earlier batch settles nothing it should not, and is reported.
    #[test]
    fn a_flipped_byte_before_the_last_batch_is_corruption_never_a_wrong_ack() {
        let bytes = batches(&[&[10, 11], &[12], &[13, 14]]);
        let first_two = batches(&[&[10, 11], &[12]]).len();
        for at in 0..first_two {
            let mut b = bytes.clone();
            b[at] ^= 0x01;
            match decode_acks(&b) {
                Err((offset, _)) => assert!(offset as usize <= at, "byte {at}"),
                // A flip in a length field can make a batch claim the rest
                // of the file: then it reads as a torn tail, settling less,
                // never more.
                Ok(read) => {
                    assert!(read.torn_bytes > 0, "byte {at}");
                    for i in read.set.sorted.iter() {
                        assert!([10, 11, 12].contains(i), "byte {at} settled {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn zero_filled_tail_acknowledges_nothing() {
        let mut b = batches(&[&[3]]);
        let whole = b.len();
        b.extend_from_slice(&[0; 64]);
        let read = decode_acks(&b).unwrap();
        assert_eq!(read.set, AckSet::from_indexes(vec![3]));
        assert_eq!(read.valid_len, whole as u64);
        assert_eq!(read.torn_bytes, 64);
    }

    #[test]
    fn another_record_type_in_an_ack_file_is_corruption() {
        let mut b = batches(&[&[3]]);
        encode_into(&mut b, super::super::record::TYPE_SEAL, &[1; 24]);
        assert!(decode_acks(&b).is_err());
    }

    #[test]
    fn a_segment_name_is_not_an_ack_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::super::segment_file_name(1));
        assert!(matches!(read_acks(&path), Err(LogError::BadName(_))));
        assert!(matches!(AckWriter::open(&path), Err(LogError::BadName(_))));
    }
}
