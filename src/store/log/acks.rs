//! A segment's ack file: which of its entries are settled (acked, rejected,
//! expired, dead-lettered). Append-only u64 LE indexes, in any order,
//! duplicates harmless (format in the parent module's doc). Writing
//! ([`AckWriter`]), reading back ([`read_acks`] into an [`AckSet`]) and the
//! question the log asks of it, [`fully_settled`]: may this segment go?

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{first_index_of, FileKind, LogError};

/// Bytes of one ack.
pub(crate) const ACK_LEN: usize = 8;

/// The settled indexes of one segment, sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AckSet {
    sorted: Vec<u64>,
}

impl AckSet {
    /// A set of these indexes (any order, duplicates allowed). Index 0,
    /// which is never an entry's (a zero-filled tail reads as it), is left
    /// out.
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
    pub(crate) fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Distinct settled indexes in `first..first + count`.
    pub(crate) fn count_in(&self, first: u64, count: u64) -> u64 {
        let end = first.saturating_add(count);
        let lo = self.sorted.partition_point(|&i| i < first);
        let hi = self.sorted.partition_point(|&i| i < end);
        (hi - lo) as u64
    }
}

/// Whether every entry of a segment (`count` entries from `first`) is
/// settled, so the segment and its ack file can be unlinked.
pub(crate) fn fully_settled(first: u64, count: u64, acks: &AckSet) -> bool {
    acks.count_in(first, count) == count
}

/// What [`read_acks`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AckRead {
    /// The settled indexes.
    pub(crate) set: AckSet,
    /// Bytes of a partial trailing ack (a torn write), ignored; 0 when the
    /// file ends on a whole ack. [`AckWriter::open`] cuts them.
    pub(crate) torn_bytes: usize,
}

/// Reads a whole ack file. A missing file is an empty set (nothing settled
/// yet in that segment).
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
    Ok(decode_acks(&bytes))
}

/// The acks in an ack file's bytes (pure).
pub(crate) fn decode_acks(bytes: &[u8]) -> AckRead {
    let chunks = bytes.chunks_exact(ACK_LEN);
    let torn_bytes = chunks.remainder().len();
    let indexes = chunks
        .map(|c| {
            let mut w = [0u8; ACK_LEN];
            w.copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    AckRead {
        set: AckSet::from_indexes(indexes),
        torn_bytes,
    }
}

/// Appends acks to one segment's ack file.
#[derive(Debug)]
pub(crate) struct AckWriter {
    path: PathBuf,
    file: File,
    /// Bytes in the file: where the next ack goes.
    len: u64,
    buf: Vec<u8>,
    /// A write or sync failed: what is on disk is unknown.
    poisoned: bool,
}

impl AckWriter {
    /// Opens (creating if needed) an ack file for append. A partial
    /// trailing ack left by a torn write is cut first, so that new acks
    /// stay aligned. Creating the file changes the directory: the caller
    /// syncs it ([`super::sync_dir`]) with the next barrier.
    pub(crate) fn open(path: &Path) -> Result<AckWriter, LogError> {
        first_index_of(path, FileKind::Acks)?;
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| LogError::io(path, e))?;
        let mut len = file.metadata().map_err(|e| LogError::io(path, e))?.len();
        let torn = len % ACK_LEN as u64;
        if torn != 0 {
            len -= torn;
            file.set_len(len)
                .and_then(|()| file.sync_data())
                .map_err(|e| LogError::io(path, e))?;
        }
        Ok(AckWriter {
            path: path.to_owned(),
            file,
            len,
            buf: Vec::new(),
            poisoned: false,
        })
    }

    /// Appends acks for `indexes` with one `write`. Not durable until
    /// [`sync`](Self::sync).
    pub(crate) fn append(&mut self, indexes: &[u64]) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned(self.path.clone()));
        }
        self.buf.clear();
        for i in indexes {
            self.buf.extend_from_slice(&i.to_le_bytes());
        }
        if let Err(e) = self.file.write_all_at(&self.buf, self.len) {
            self.poisoned = true;
            return Err(LogError::io(&self.path, e));
        }
        self.len += self.buf.len() as u64;
        Ok(())
    }

    /// Makes the acks appended so far durable (`fdatasync`); a failure
    /// poisons the writer, as for segments.
    pub(crate) fn sync(&mut self) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned(self.path.clone()));
        }
        self.file.sync_data().map_err(|e| {
            self.poisoned = true;
            LogError::io(&self.path, e)
        })
    }

    /// Acks written (duplicates counted).
    pub(crate) fn written(&self) -> u64 {
        self.len / ACK_LEN as u64
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

    #[test]
    fn partial_trailing_ack_is_ignored_and_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = ack_path(&dir, 1);
        let mut bytes = Vec::new();
        for i in [1u64, 2, 3] {
            bytes.extend_from_slice(&i.to_le_bytes());
        }
        for torn in 1..ACK_LEN {
            let mut b = bytes.clone();
            b.extend_from_slice(&4u64.to_le_bytes()[..torn]);
            std::fs::write(&path, &b).unwrap();
            let read = read_acks(&path).unwrap();
            assert_eq!(read.torn_bytes, torn);
            assert_eq!(read.set, AckSet::from_indexes(vec![1, 2, 3]));
            let mut w = AckWriter::open(&path).unwrap();
            assert_eq!(w.written(), 3);
            w.append(&[4]).unwrap();
            let read = read_acks(&path).unwrap();
            assert_eq!(read.torn_bytes, 0);
            assert_eq!(read.set, AckSet::from_indexes(vec![1, 2, 3, 4]));
        }
    }

    #[test]
    fn zero_filled_tail_acknowledges_nothing() {
        let mut b = 3u64.to_le_bytes().to_vec();
        b.extend_from_slice(&[0; 64]);
        let read = decode_acks(&b);
        assert_eq!(read.set, AckSet::from_indexes(vec![3]));
        assert_eq!(read.torn_bytes, 0);
    }

    #[test]
    fn a_segment_name_is_not_an_ack_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::super::segment_file_name(1));
        assert!(matches!(read_acks(&path), Err(LogError::BadName(_))));
        assert!(matches!(AckWriter::open(&path), Err(LogError::BadName(_))));
    }
}
