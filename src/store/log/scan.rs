//! Checking a segment at recovery: [`scan`] reads every record and tells a
//! torn tail (reported, to be cut with [`truncate_torn`]) from corruption;
//! [`read_seal`] reads a sealed segment's header and footer only. The rules
//! are the parent module's "Torn tail or damage".

use std::fs::OpenOptions;
use std::path::Path;

use super::chunks::READ_CHUNK;
use super::chunks::{open_read, read_exact_at, Chunks, Step};
use super::header::{
    check_header, check_seal, open_checked, Header, Seal, HEADER_LEN, SEAL_RECORD_LEN,
};
use super::record::{decode, Decoded, Entry, TYPE_ENTRY, TYPE_SEAL};
use super::{first_index_of, CommitMark, FileKind, LogError};

/// Where a segment stands in its directory, which decides what a bad tail
/// means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentRole {
    /// The newest segment: it may be unsealed, and a bad tail above the
    /// commit mark is torn.
    Active,
    /// A segment with a successor: it must be whole and sealed.
    Sealed,
}

/// What [`scan`] found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanResult {
    /// Valid entries.
    pub(crate) entries: u64,
    /// The segment's first index (from its name and header).
    pub(crate) first: u64,
    /// The last valid entry's index, if there is one.
    pub(crate) last: Option<u64>,
    /// Bytes up to the end of the last valid record (or of the footer).
    pub(crate) valid_len: u64,
    /// Whether the segment ends with its footer.
    pub(crate) sealed: bool,
    /// A torn tail: its offset (= `valid_len`) and size. The caller logs it
    /// and cuts it ([`truncate_torn`]) before appending.
    pub(crate) torn: Option<(u64, u64)>,
}

impl ScanResult {
    /// The index the next entry appended to this segment must have.
    pub(crate) fn next_index(&self) -> u64 {
        self.first + self.entries
    }
}

/// Reads a whole segment and checks every record: see the parent module
/// for what is a torn tail (reported in [`ScanResult::torn`]) and what is
/// [`LogError::Corrupt`]. `mark` is the log's commit mark; `role` says
/// whether this is the newest segment.
pub(crate) fn scan(
    path: &Path,
    mark: CommitMark,
    role: SegmentRole,
) -> Result<ScanResult, LogError> {
    scan_with_chunk(path, mark, role, READ_CHUNK)
}

fn scan_with_chunk(
    path: &Path,
    mark: CommitMark,
    role: SegmentRole,
    chunk: usize,
) -> Result<ScanResult, LogError> {
    let first = first_index_of(path, FileKind::Segment)?;
    let (file, len) = open_read(path)?;
    let header = read_exact_at(&file, path, HEADER_LEN, 0)?;
    let mut result = ScanResult {
        entries: 0,
        first,
        last: None,
        valid_len: HEADER_LEN as u64,
        sealed: false,
        torn: None,
    };
    match check_header(&header, first) {
        Header::Valid if first == 0 => return Err(LogError::corrupt(path, 16, "first index 0")),
        Header::Valid => {}
        Header::Torn if role == SegmentRole::Active && !mark.covers(first) => {
            result.valid_len = 0;
            result.torn = Some((0, len));
            return Ok(result);
        }
        Header::Torn => return Err(LogError::corrupt(path, 0, "header missing or zeroed")),
        Header::Bad(what) => return Err(LogError::corrupt(path, 0, what)),
    }
    let mut chunks = Chunks::new(file, path, HEADER_LEN as u64, len, chunk);
    let mut next = first;
    loop {
        match chunks.next()? {
            Step::Record {
                typ: TYPE_ENTRY,
                offset,
                payload,
            } => {
                let index = Entry::decode_payload(&chunks.buf[payload]).map(|e| e.index);
                if index != Some(next) {
                    let what = format!("entry {index:?} where {next} was due");
                    return Err(LogError::corrupt(path, offset, what));
                }
                next = next
                    .checked_add(1)
                    .ok_or_else(|| LogError::corrupt(path, offset, "index overflow"))?;
            }
            Step::Record {
                typ: TYPE_SEAL,
                offset,
                payload,
            } => {
                check_seal(&chunks.buf[payload], first, next)
                    .map_err(|what| LogError::corrupt(path, offset, what))?;
                if chunks.pos != len {
                    return Err(LogError::corrupt(
                        path,
                        chunks.pos,
                        "bytes after the footer",
                    ));
                }
                result.sealed = true;
                result.valid_len = len;
                break;
            }
            Step::Record { typ, offset, .. } => {
                let what = format!("unknown record type {typ}");
                return Err(LogError::corrupt(path, offset, what));
            }
            Step::End => {
                if role == SegmentRole::Sealed {
                    return Err(LogError::corrupt(path, len, "sealed segment has no footer"));
                }
                result.valid_len = len;
                break;
            }
            Step::Bad { offset, what } => {
                if role == SegmentRole::Sealed || mark.covers(next) {
                    let what = format!("{what} where entry {next} was due");
                    return Err(LogError::corrupt(path, offset, what));
                }
                result.valid_len = offset;
                result.torn = Some((offset, len - offset));
                break;
            }
        }
    }
    if role == SegmentRole::Active && mark.covers(next) {
        let what = format!(
            "ends before entry {next}, below the commit mark {}",
            mark.end
        );
        return Err(LogError::corrupt(path, result.valid_len, what));
    }
    result.entries = next - first;
    result.last = next.checked_sub(1).filter(|_| next > first);
    Ok(result)
}

/// Reads a sealed segment's header and footer only, not its entries: how
/// recovery learns what a sealed segment holds without reading its bodies.
/// A missing or bad footer is [`LogError::Corrupt`].
pub(crate) fn read_seal(path: &Path) -> Result<Seal, LogError> {
    let (file, len, first) = open_checked(path)?;
    let min = (HEADER_LEN + SEAL_RECORD_LEN) as u64;
    if len < min {
        return Err(LogError::corrupt(path, len, "too short to be sealed"));
    }
    let at = len - SEAL_RECORD_LEN as u64;
    let tail = read_exact_at(&file, path, SEAL_RECORD_LEN, at)?;
    let seal = match decode(&tail) {
        Decoded::Record {
            typ: TYPE_SEAL,
            payload,
            size: SEAL_RECORD_LEN,
        } => Seal::decode(payload),
        _ => None,
    };
    match seal {
        Some(s)
            if s.first == first
                && s.count > 0
                && s.last.checked_sub(s.first) == Some(s.count - 1) =>
        {
            Ok(s)
        }
        _ => Err(LogError::corrupt(path, at, "no valid footer")),
    }
}

/// Cuts a segment to `valid_len`, dropping a torn tail found by [`scan`],
/// and makes the cut durable.
pub(crate) fn truncate_torn(path: &Path, valid_len: u64) -> Result<(), LogError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| LogError::io(path, e))?;
    file.set_len(valid_len)
        .and_then(|()| file.sync_data())
        .map_err(|e| LogError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::super::header::encode_header;
    use super::super::segment::tests::{
        body, is_corrupt, read_all, seg_path, segment, write_entries,
    };
    use super::super::segment::{SegmentReader, SegmentWriter};
    use super::*;

    #[test]
    fn torn_tail_at_every_offset_of_the_last_record_is_cut_to_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let (path, w) = segment(&dir, 1, 50);
        let whole = std::fs::read(&path).unwrap();
        let last_len = Entry {
            index: 50,
            term: 1,
            body: &body(50),
        }
        .record_len() as u64;
        let before = w.len() - last_len;
        drop(w);
        for cut in before + 1..w_len(&whole) {
            std::fs::write(&path, &whole[..cut as usize]).unwrap();
            // The mark covers 1..=49: the 50th was never confirmed.
            let s = scan(&path, CommitMark::through(49), SegmentRole::Active).unwrap();
            assert_eq!(s.valid_len, before, "cut at {cut}");
            assert_eq!(s.torn, Some((before, cut - before)));
            assert_eq!((s.entries, s.last), (49, Some(49)));
            // Had the 50th been confirmed, its loss is corruption.
            let confirmed = scan(&path, CommitMark::through(50), SegmentRole::Active);
            assert!(is_corrupt(confirmed), "cut at {cut}");
        }
        // Cut at the boundary: nothing torn, 49 entries.
        std::fs::write(&path, &whole[..before as usize]).unwrap();
        let s = scan(&path, CommitMark::through(49), SegmentRole::Active).unwrap();
        assert_eq!((s.entries, s.torn), (49, None));
    }

    fn w_len(b: &[u8]) -> u64 {
        b.len() as u64
    }

    #[test]
    fn damage_below_the_mark_is_corrupt_and_above_it_torn() {
        let dir = tempfile::tempdir().unwrap();
        let (path, w) = segment(&dir, 1, 100);
        drop(w);
        let whole = std::fs::read(&path).unwrap();
        // A byte in the middle of the file: inside an entry around 50.
        let at = whole.len() / 2;
        let mut bad = whole.clone();
        bad[at] ^= 0x01;
        std::fs::write(&path, &bad).unwrap();
        let below = scan(&path, CommitMark::through(100), SegmentRole::Active);
        let Err(LogError::Corrupt { offset, .. }) = below else {
            panic!("{below:?}")
        };
        assert!(offset <= at as u64);
        // With no mark, the same damage is a torn tail there.
        let s = scan(&path, CommitMark::NONE, SegmentRole::Active).unwrap();
        assert_eq!(s.torn, Some((offset, whole.len() as u64 - offset)));
        // The reader never serves past it.
        let mut r = SegmentReader::open(&path).unwrap();
        let err = loop {
            match r.next_entry() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("read past the damage"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, LogError::Corrupt { .. }));
    }

    #[test]
    fn active_segment_ending_cleanly_below_the_mark_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (path, w) = segment(&dir, 1, 10);
        drop(w);
        let s = scan(&path, CommitMark::through(10), SegmentRole::Active).unwrap();
        assert_eq!((s.entries, s.torn), (10, None));
        assert!(is_corrupt(scan(
            &path,
            CommitMark::through(11),
            SegmentRole::Active
        )));
        // A mark from an earlier segment covers nothing here.
        let (path, w) = segment(&dir, 100, 0);
        drop(w);
        let s = scan(&path, CommitMark::through(99), SegmentRole::Active).unwrap();
        assert_eq!((s.entries, s.last, s.next_index()), (0, None, 100));
    }

    #[test]
    fn zero_filled_tail_is_torn_not_records() {
        let dir = tempfile::tempdir().unwrap();
        let (path, w) = segment(&dir, 1, 20);
        let len = w.len();
        drop(w);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len + 4096).unwrap(); // as preallocation leaves it
        let s = scan(&path, CommitMark::through(20), SegmentRole::Active).unwrap();
        assert_eq!(
            (s.entries, s.valid_len, s.torn),
            (20, len, Some((len, 4096)))
        );
        // Appending after the cut goes where the zeros were.
        let mut w = SegmentWriter::open_append(&path, &s).unwrap();
        write_entries(&mut w, 21, 5, 5);
        let want: Vec<u64> = (1..=25).collect();
        assert_eq!(read_all(SegmentReader::open(&path).unwrap()), want);
    }

    #[test]
    fn sealed_segment_missing_its_footer_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (path, w) = segment(&dir, 1, 10);
        let unsealed_len = w.len();
        w.seal().unwrap();
        let whole = std::fs::read(&path).unwrap();
        for cut in unsealed_len..whole.len() as u64 {
            std::fs::write(&path, &whole[..cut as usize]).unwrap();
            assert!(
                is_corrupt(scan(&path, CommitMark::NONE, SegmentRole::Sealed)),
                "{cut}"
            );
            assert!(
                matches!(read_seal(&path), Err(LogError::Corrupt { .. })),
                "{cut}"
            );
        }
        // As the newest segment, a footer cut above the mark is torn: a crash
        // while sealing, before the next segment was created.
        std::fs::write(&path, &whole[..unsealed_len as usize + 3]).unwrap();
        let s = scan(&path, CommitMark::through(10), SegmentRole::Active).unwrap();
        assert_eq!(
            (s.entries, s.sealed, s.valid_len),
            (10, false, unsealed_len)
        );
    }

    #[test]
    fn bytes_after_the_footer_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (path, w) = segment(&dir, 1, 3);
        w.seal().unwrap();
        let mut whole = std::fs::read(&path).unwrap();
        whole.extend_from_slice(&[0; 8]);
        std::fs::write(&path, &whole).unwrap();
        for role in [SegmentRole::Active, SegmentRole::Sealed] {
            assert!(is_corrupt(scan(&path, CommitMark::NONE, role)));
        }
        assert!(read_seal(&path).is_err());
    }

    #[test]
    fn header_mismatch_is_corrupt_and_a_torn_header_above_the_mark_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let (path, w) = segment(&dir, 1, 3);
        drop(w);
        // Renamed: the header names another first index.
        let moved = seg_path(&dir, 2);
        std::fs::rename(&path, &moved).unwrap();
        assert!(is_corrupt(scan(
            &moved,
            CommitMark::NONE,
            SegmentRole::Active
        )));
        assert!(SegmentReader::open(&moved).is_err());
        // A create cut short: 10 bytes of header.
        let path = seg_path(&dir, 7);
        std::fs::write(&path, &encode_header(7)[..10]).unwrap();
        assert!(is_corrupt(scan(
            &path,
            CommitMark::through(7),
            SegmentRole::Active
        )));
        assert!(is_corrupt(scan(
            &path,
            CommitMark::NONE,
            SegmentRole::Sealed
        )));
        let s = scan(&path, CommitMark::through(6), SegmentRole::Active).unwrap();
        assert_eq!((s.valid_len, s.torn, s.entries), (0, Some((0, 10)), 0));
        let mut w = SegmentWriter::open_append(&path, &s).unwrap();
        write_entries(&mut w, 7, 2, 2);
        assert_eq!(read_all(SegmentReader::open(&path).unwrap()), vec![7, 8]);
    }
}
