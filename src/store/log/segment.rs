//! One segment file: its header and footer, writing entries to it
//! ([`SegmentWriter`]) and reading them back in order with large reads
//! ([`SegmentReader`]). Checking a segment at recovery is [`super::scan`]'s.
//! The format is in the parent module's doc.
//!
//! Reads are positional (`pread`) of [`READ_CHUNK`] bytes into one reused
//! buffer ([`super::chunks`]). Writes are one `write` per
//! [`SegmentWriter::append`] call, however many entries it has.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::chunks::READ_CHUNK;
use super::chunks::{Chunks, Step};
use super::header::{check_seal, encode_header, open_checked, Seal, HEADER_LEN};
use super::record::{self, encode_into, Entry, MAX_BODY, TYPE_ENTRY, TYPE_SEAL};
use super::scan::{truncate_torn, ScanResult};
use super::{first_index_of, sync_data_or_poison, FileKind, LogError};

/// A write buffer grown past this by a large batch is given back.
const KEEP_WRITE_BUF: usize = 4 << 20;

/// Appends entries to one segment: the active segment of a log.
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    path: PathBuf,
    file: File,
    first: u64,
    /// The index the next entry must have.
    next: u64,
    /// Bytes written.
    len: u64,
    /// Reused encoding buffer: one `write` per append.
    buf: Vec<u8>,
    /// A write or sync failed: what is on disk is unknown.
    poisoned: bool,
}

impl SegmentWriter {
    /// Creates the segment `path`, whose name gives its first index (never
    /// 0), and writes its header. The file is not synced: the first
    /// [`sync`](Self::sync) covers the header, and the caller syncs the
    /// directory ([`super::sync_dir`]) before confirming anything in it.
    pub(crate) fn create(path: &Path) -> Result<SegmentWriter, LogError> {
        let first = first_index_of(path, FileKind::Segment)?;
        if first == 0 {
            return Err(LogError::OutOfOrder {
                expected: 1,
                got: 0,
            });
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| LogError::io(path, e))?;
        file.write_all_at(&encode_header(first), 0)
            .map_err(|e| LogError::io(path, e))?;
        Ok(SegmentWriter {
            path: path.to_owned(),
            file,
            first,
            next: first,
            len: HEADER_LEN as u64,
            buf: Vec::new(),
            poisoned: false,
        })
    }

    /// Opens an unsealed segment that [`scan`](super::scan::scan) checked, to append after its
    /// last valid entry. A torn tail the scan found is cut first (the caller
    /// has logged it); a torn header is rewritten.
    pub(crate) fn open_append(path: &Path, scan: &ScanResult) -> Result<SegmentWriter, LogError> {
        if scan.sealed {
            return Err(LogError::corrupt(
                path,
                scan.valid_len,
                "sealed segments are not appended to",
            ));
        }
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| LogError::io(path, e))?;
        let len = file.metadata().map_err(|e| LogError::io(path, e))?.len();
        if len != scan.valid_len {
            if scan.torn.is_none() {
                return Err(LogError::corrupt(path, len, "changed since it was scanned"));
            }
            truncate_torn(path, scan.valid_len)?;
        }
        let mut len = scan.valid_len;
        if len < HEADER_LEN as u64 {
            file.write_all_at(&encode_header(scan.first), 0)
                .map_err(|e| LogError::io(path, e))?;
            len = HEADER_LEN as u64;
        }
        Ok(SegmentWriter {
            path: path.to_owned(),
            file,
            first: scan.first,
            next: scan.next_index(),
            len,
            buf: Vec::new(),
            poisoned: false,
        })
    }

    /// Appends `entries` with one `write`. Their indexes must continue the
    /// segment's ([`LogError::OutOfOrder`]) and their bodies fit
    /// ([`LogError::TooLarge`]); if not, nothing is written. Not durable
    /// until [`sync`](Self::sync).
    pub(crate) fn append(&mut self, entries: &[Entry<'_>]) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned(self.path.clone()));
        }
        self.buf.clear();
        let mut next = self.next;
        for e in entries {
            if e.index != next {
                return Err(LogError::OutOfOrder {
                    expected: next,
                    got: e.index,
                });
            }
            record::encode_entry_into(&mut self.buf, e)
                .map_err(|len| LogError::TooLarge { len, max: MAX_BODY })?;
            next = next.saturating_add(1);
        }
        self.write_buf()?;
        self.next = next;
        Ok(())
    }

    /// Writes the encoding buffer at the end of the file.
    fn write_buf(&mut self) -> Result<(), LogError> {
        if let Err(e) = self.file.write_all_at(&self.buf, self.len) {
            self.poisoned = true;
            return Err(LogError::io(&self.path, e));
        }
        self.len += self.buf.len() as u64;
        self.buf.clear();
        if self.buf.capacity() > KEEP_WRITE_BUF {
            self.buf.shrink_to(READ_CHUNK);
        }
        Ok(())
    }

    /// The segment's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The segment's first index.
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// The index the next entry must have.
    pub(crate) fn next_index(&self) -> u64 {
        self.next
    }

    /// Entries in the segment.
    pub(crate) fn count(&self) -> u64 {
        self.next - self.first
    }

    /// Bytes written, header included.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether the segment has reached `max_bytes` and should be sealed. A
    /// segment overshoots by at most one append's batch and its footer.
    #[cfg(test)]
    pub(crate) fn is_full(&self, max_bytes: u64) -> bool {
        self.len >= max_bytes
    }

    /// Makes everything appended so far durable (`fdatasync`). A failure
    /// poisons the writer: it is never retried (`message-store.md` §5.6).
    pub(crate) fn sync(&mut self) -> Result<(), LogError> {
        sync_data_or_poison(&self.file, &self.path, &mut self.poisoned)
    }

    /// Seals the segment: writes its footer and syncs it, so that it is
    /// durable before the caller creates the next segment. An empty segment
    /// is not sealed ([`LogError::EmptySeal`]).
    pub(crate) fn seal(mut self) -> Result<Seal, LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned(self.path));
        }
        if self.next == self.first {
            return Err(LogError::EmptySeal(self.path));
        }
        let seal = Seal {
            first: self.first,
            last: self.next - 1,
            count: self.count(),
        };
        self.buf.clear();
        encode_into(&mut self.buf, TYPE_SEAL, &seal.encode());
        self.write_buf()?;
        self.sync()?;
        Ok(seal)
    }
}

/// Reads a segment's entries in order, [`READ_CHUNK`] bytes at a time.
/// Meant for bytes a [`scan`](super::scan::scan) (or the writer) vouched for: anything bad is
/// [`LogError::Corrupt`].
#[derive(Debug)]
pub(crate) struct SegmentReader {
    chunks: Chunks,
    first: u64,
    next: u64,
    sealed: bool,
}

impl SegmentReader {
    /// Opens a segment to read all of it.
    pub(crate) fn open(path: &Path) -> Result<SegmentReader, LogError> {
        Self::open_with(path, None, READ_CHUNK)
    }

    /// Opens a segment to read its first `valid_len` bytes: an active
    /// segment up to what its writer has written.
    pub(crate) fn open_until(path: &Path, valid_len: u64) -> Result<SegmentReader, LogError> {
        Self::open_with(path, Some(valid_len), READ_CHUNK)
    }

    fn open_with(path: &Path, until: Option<u64>, chunk: usize) -> Result<SegmentReader, LogError> {
        let (file, len, first) = open_checked(path)?;
        let stop = until.map_or(len, |u| u.min(len));
        Ok(SegmentReader {
            chunks: Chunks::new(file, path, HEADER_LEN as u64, stop, chunk),
            first,
            next: first,
            sealed: false,
        })
    }

    /// Opens a segment to read from byte `offset`, where entry `index`
    /// starts (a position an earlier reader reported with
    /// [`position`](Self::position)), up to `until` bytes, `chunk` bytes a
    /// read.
    pub(crate) fn open_at(
        path: &Path,
        offset: u64,
        index: u64,
        until: u64,
        chunk: usize,
    ) -> Result<SegmentReader, LogError> {
        let (file, len, first) = open_checked(path)?;
        if offset < HEADER_LEN as u64 || index < first {
            return Err(LogError::corrupt(path, offset, "no entry starts there"));
        }
        Ok(SegmentReader {
            chunks: Chunks::new(file, path, offset, until.min(len), chunk),
            first,
            next: index,
            sealed: false,
        })
    }

    /// The byte offset where the next entry starts.
    pub(crate) fn position(&self) -> u64 {
        self.chunks.pos
    }

    /// The next entry, or `None` at the footer or the end of the bytes.
    pub(crate) fn next_entry(&mut self) -> Result<Option<Entry<'_>>, LogError> {
        if self.sealed {
            return Ok(None);
        }
        let step = self.chunks.next()?;
        let path = &self.chunks.path;
        match step {
            Step::Record {
                typ: TYPE_ENTRY,
                offset,
                payload,
            } => {
                let entry = Entry::decode_payload(&self.chunks.buf[payload]);
                match entry {
                    Some(e) if e.index == self.next && e.index < u64::MAX => {
                        self.next += 1;
                        Ok(Some(e))
                    }
                    _ => Err(LogError::corrupt(
                        path,
                        offset,
                        format!("not entry {}", self.next),
                    )),
                }
            }
            Step::Record {
                typ: TYPE_SEAL,
                offset,
                payload,
            } => {
                check_seal(&self.chunks.buf[payload], self.first, self.next)
                    .map_err(|what| LogError::corrupt(path, offset, what))?;
                self.sealed = true;
                Ok(None)
            }
            Step::Record { typ, offset, .. } => Err(LogError::corrupt(
                path,
                offset,
                format!("unknown record type {typ}"),
            )),
            Step::End => Ok(None),
            Step::Bad { offset, what } => Err(LogError::corrupt(path, offset, what)),
        }
    }

    /// Whether the footer has been read.
    pub(crate) fn sealed(&self) -> bool {
        self.sealed
    }

    /// The index of the next entry to be read.
    pub(crate) fn next_index(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::header::{check_header, Header};
    use super::super::scan::{read_seal, scan, SegmentRole};
    use super::super::{segment_file_name, sync_dir, CommitMark};
    use super::*;

    pub(crate) fn seg_path(dir: &tempfile::TempDir, first: u64) -> PathBuf {
        dir.path().join(segment_file_name(first))
    }

    /// The body of entry `index`: its length varies, its bytes name it.
    pub(crate) fn body(index: u64) -> Vec<u8> {
        let len = (index * 37 % 400) as usize;
        (0..len).map(|i| (index as usize + i) as u8).collect()
    }

    /// Writes entries `first..first + n` in batches of `batch`.
    pub(crate) fn write_entries(w: &mut SegmentWriter, first: u64, n: u64, batch: usize) {
        let bodies: Vec<Vec<u8>> = (first..first + n).map(body).collect();
        let entries: Vec<Entry<'_>> = bodies
            .iter()
            .enumerate()
            .map(|(k, b)| Entry {
                index: first + k as u64,
                term: 1,
                body: b,
            })
            .collect();
        for c in entries.chunks(batch) {
            w.append(c).unwrap();
        }
    }

    pub(crate) fn read_all(mut r: SegmentReader) -> Vec<u64> {
        let mut seen = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            assert_eq!(e.body, body(e.index), "body of {}", e.index);
            assert_eq!(e.term, 1);
            seen.push(e.index);
        }
        seen
    }

    /// A segment with entries `first..first + n`, synced, unsealed.
    pub(crate) fn segment(dir: &tempfile::TempDir, first: u64, n: u64) -> (PathBuf, SegmentWriter) {
        let path = seg_path(dir, first);
        let mut w = SegmentWriter::create(&path).unwrap();
        sync_dir(dir.path()).unwrap();
        write_entries(&mut w, first, n, 7);
        w.sync().unwrap();
        (path, w)
    }

    pub(crate) fn is_corrupt(r: Result<ScanResult, LogError>) -> bool {
        matches!(r, Err(LogError::Corrupt { .. }))
    }

    #[test]
    fn header_round_trips_and_checks_every_field() {
        let h = encode_header(42);
        assert_eq!(check_header(&h, 42), Header::Valid);
        assert!(matches!(check_header(&h, 43), Header::Bad(_)));
        assert_eq!(check_header(&h[..31], 42), Header::Torn);
        assert_eq!(check_header(&[0; HEADER_LEN], 42), Header::Torn);
        for byte in 0..HEADER_LEN {
            let mut b = h;
            b[byte] ^= 0x10;
            assert!(matches!(check_header(&b, 42), Header::Bad(_)), "{byte}");
        }
    }

    #[test]
    fn ten_thousand_entries_read_back_across_read_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let (path, w) = segment(&dir, 1, 10_000);
        assert!(w.len() > READ_CHUNK as u64 * 2, "straddles 1 MiB reads");
        assert_eq!((w.count(), w.next_index()), (10_000, 10_001));
        let want: Vec<u64> = (1..=10_000).collect();
        assert_eq!(read_all(SegmentReader::open(&path).unwrap()), want);
        // Small, odd reads: every record straddles a read somewhere.
        for chunk in [1, 13, 4096] {
            let r = SegmentReader::open_with(&path, None, chunk).unwrap();
            assert_eq!(read_all(r), want, "chunk {chunk}");
        }
        let s = scan(&path, CommitMark::through(10_000), SegmentRole::Active).unwrap();
        assert_eq!((s.entries, s.first, s.last), (10_000, 1, Some(10_000)));
        assert_eq!((s.valid_len, s.sealed, s.torn), (w.len(), false, None));
    }

    #[test]
    fn a_record_bigger_than_the_read_buffer_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = seg_path(&dir, 1);
        let mut w = SegmentWriter::create(&path).unwrap();
        let big = vec![7u8; 3 * READ_CHUNK + 5];
        let entries = [
            Entry {
                index: 1,
                term: 2,
                body: b"a",
            },
            Entry {
                index: 2,
                term: 2,
                body: &big,
            },
            Entry {
                index: 3,
                term: 2,
                body: b"c",
            },
        ];
        w.append(&entries).unwrap();
        let mut r = SegmentReader::open(&path).unwrap();
        for want in &entries {
            assert_eq!(r.next_entry().unwrap().as_ref(), Some(want));
        }
        assert_eq!(r.next_entry().unwrap(), None);
        assert_eq!(
            scan(&path, CommitMark::NONE, SegmentRole::Active)
                .unwrap()
                .entries,
            3
        );
    }

    #[test]
    fn appending_after_reopen_continues_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (path, w) = segment(&dir, 5, 30);
        drop(w);
        let s = scan(&path, CommitMark::through(34), SegmentRole::Active).unwrap();
        let mut w = SegmentWriter::open_append(&path, &s).unwrap();
        assert_eq!((w.next_index(), w.len()), (35, s.valid_len));
        let wrong = Entry {
            index: 36,
            term: 1,
            body: b"",
        };
        assert!(matches!(
            w.append(&[wrong]),
            Err(LogError::OutOfOrder {
                expected: 35,
                got: 36
            })
        ));
        write_entries(&mut w, 35, 30, 4);
        w.sync().unwrap();
        let seal = w.seal().unwrap();
        assert_eq!(
            seal,
            Seal {
                first: 5,
                last: 64,
                count: 60
            }
        );
        let s = scan(&path, CommitMark::through(64), SegmentRole::Sealed).unwrap();
        assert_eq!((s.entries, s.sealed, s.torn), (60, true, None));
        assert_eq!(read_seal(&path).unwrap(), seal);
        let mut r = SegmentReader::open(&path).unwrap();
        let mut n = 0;
        while r.next_entry().unwrap().is_some() {
            n += 1;
        }
        assert!(r.sealed());
        assert_eq!((n, r.next_index()), (60, 65));
        // Sealed segments are not appended to.
        assert!(SegmentWriter::open_append(&path, &s).is_err());
    }

    #[test]
    fn misuse_is_refused_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            SegmentWriter::create(&seg_path(&dir, 0)),
            Err(LogError::OutOfOrder {
                expected: 1,
                got: 0
            })
        ));
        assert!(matches!(
            SegmentWriter::create(&dir.path().join("1.seg")),
            Err(LogError::BadName(_))
        ));
        let (path, w) = segment(&dir, 1, 0);
        assert!(matches!(w.seal(), Err(LogError::EmptySeal(_))));
        let s = scan(&path, CommitMark::NONE, SegmentRole::Active).unwrap();
        let mut w = SegmentWriter::open_append(&path, &s).unwrap();
        let big = vec![0; MAX_BODY + 1];
        let entries = [
            Entry {
                index: 1,
                term: 0,
                body: b"ok",
            },
            Entry {
                index: 2,
                term: 0,
                body: &big,
            },
        ];
        assert!(matches!(w.append(&entries), Err(LogError::TooLarge { .. })));
        assert_eq!((w.len(), w.next_index()), (HEADER_LEN as u64, 1));
        assert!(!w.is_full(HEADER_LEN as u64 + 1) && w.is_full(HEADER_LEN as u64));
    }

    #[test]
    fn open_until_reads_only_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut w) = segment(&dir, 1, 10);
        let len = w.len();
        write_entries(&mut w, 11, 1, 1);
        let r = SegmentReader::open_until(&path, len).unwrap();
        assert_eq!(read_all(r), (1..=10).collect::<Vec<_>>());
    }
}
