//! A segment's index file (`.idx`): what recovery needs of each entry
//! without reading its body. Records in the segment framing, type 5
//! (INDEX), each a run of [`INDEX_ENTRY_LEN`]-byte entries for consecutive
//! indexes from the segment's first: `[seq u64][body len u32][published_at
//! u64][body id u64][flags u8]` (little-endian; flags bit 0: volatile).
//! It is derived data: written beside the segment without a sync of its
//! own, and a missing, short or damaged one only means that recovery reads
//! the segment instead ([`read_index`] says `None`).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{decode, encode_into, Decoded, TYPE_INDEX};
use super::LogError;

/// Bytes of one entry in an index record.
pub(crate) const INDEX_ENTRY_LEN: usize = 8 + 4 + 8 + 8 + 1;

/// What the index keeps of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// The copy's sequence number.
    pub(crate) seq: u64,
    /// Its body's length.
    pub(crate) len: u32,
    /// When it was published (Unix ms).
    pub(crate) published_at: u64,
    /// Its body id.
    pub(crate) body_id: u64,
    /// A copy written only to save RAM.
    pub(crate) volatile: bool,
}

impl IndexEntry {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.published_at.to_le_bytes());
        out.extend_from_slice(&self.body_id.to_le_bytes());
        out.push(u8::from(self.volatile));
    }

    fn get(b: &[u8]) -> Option<IndexEntry> {
        let word = |at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
        let len = u32::from_le_bytes(b.get(8..12)?.try_into().ok()?);
        let flags = *b.get(28)?;
        if flags > 1 {
            return None;
        }
        Some(IndexEntry {
            seq: word(0)?,
            len,
            published_at: word(12)?,
            body_id: word(20)?,
            volatile: flags == 1,
        })
    }
}

/// Appends to one segment's index file.
#[derive(Debug)]
pub(crate) struct IndexWriter {
    path: PathBuf,
    file: File,
    len: u64,
    payload: Vec<u8>,
    buf: Vec<u8>,
}

impl IndexWriter {
    /// Creates (or empties) the index file `path`.
    pub(crate) fn create(path: &Path) -> Result<IndexWriter, LogError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| LogError::io(path, e))?;
        Ok(IndexWriter {
            path: path.to_owned(),
            file,
            len: 0,
            payload: Vec::new(),
            buf: Vec::new(),
        })
    }

    /// Appends the entries that follow those already written, as one
    /// record (several past the record limit) with one `write`.
    pub(crate) fn append(&mut self, entries: &[IndexEntry]) -> Result<(), LogError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        for chunk in entries.chunks(1 << 20) {
            self.payload.clear();
            for e in chunk {
                e.put(&mut self.payload);
            }
            encode_into(&mut self.buf, TYPE_INDEX, &self.payload);
        }
        self.file
            .write_all_at(&self.buf, self.len)
            .map_err(|e| LogError::io(&self.path, e))?;
        self.len += self.buf.len() as u64;
        Ok(())
    }

    /// Makes what was appended durable.
    pub(crate) fn sync(&mut self) -> Result<(), LogError> {
        self.file
            .sync_data()
            .map_err(|e| LogError::io(&self.path, e))
    }
}

/// The entries of the index file `path`, in index order; `None` when it
/// is missing or anything in it is not whole and valid.
pub(crate) fn read_index(path: &Path) -> Option<Vec<IndexEntry>> {
    let mut bytes = Vec::new();
    File::open(path).ok()?.read_to_end(&mut bytes).ok()?;
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        match decode(rest) {
            Decoded::Record {
                typ: TYPE_INDEX,
                payload,
                size,
            } => {
                if payload.len() % INDEX_ENTRY_LEN != 0 {
                    return None;
                }
                for e in payload.chunks_exact(INDEX_ENTRY_LEN) {
                    out.push(IndexEntry::get(e)?);
                }
                rest = &rest[size..];
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> IndexEntry {
        IndexEntry {
            seq,
            len: seq as u32 * 3,
            published_at: 1000 + seq,
            body_id: 7 * seq,
            volatile: seq.is_multiple_of(2),
        }
    }

    #[test]
    fn entries_round_trip_across_appends_and_damage_means_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000001.idx");
        assert_eq!(read_index(&path), None);
        let mut w = IndexWriter::create(&path).unwrap();
        let all: Vec<_> = (1..=10).map(entry).collect();
        w.append(&all[..4]).unwrap();
        w.append(&all[4..]).unwrap();
        w.append(&[]).unwrap();
        assert_eq!(read_index(&path), Some(all.clone()));
        let whole = std::fs::read(&path).unwrap();
        // Cut anywhere inside the last record, or a flipped byte: no index.
        for cut in [whole.len() - 1, whole.len() - INDEX_ENTRY_LEN] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert_eq!(read_index(&path), None);
        }
        let mut flipped = whole.clone();
        flipped[20] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert_eq!(read_index(&path), None);
        // Created again: empty.
        IndexWriter::create(&path).unwrap();
        assert_eq!(read_index(&path), Some(vec![]));
    }
}
