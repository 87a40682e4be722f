//! The segment log (issue 17): the building blocks that keep queues' and
//! streams' messages in files of sluice's own ([`super::logstore`] puts
//! them together behind the `MessageStore` seam). This module owns the
//! **on-disk format**, and this comment is its reference;
//! [`record`] owns the framing (pure), [`header`] a segment's header and
//! footer, [`segment`] writing and reading one segment file, [`scan`]
//! checking one at recovery, [`chunks`] the large sequential reads both
//! use, [`acks`] one segment's ack file, and [`wal`] the node-wide
//! write-ahead file. Nothing here knows about queues, messages or the
//! broker: an entry's body is opaque bytes.
//!
//! The group commit is one node-wide write-ahead file ([`wal`], format
//! under "Write-ahead file" below), written and fdatasync'd once per round
//! for every queue; segments are written without a sync and synced off the
//! critical path. The commit mark below then covers what the segments' own
//! syncs made durable, and recovery replays the write-ahead file past it.
//!
//! # Directory layout
//!
//! Each queue and each stream has a directory of its own:
//!
//! ```text
//! <data>/log/<queue id>/                 queue id in decimal
//!     00000000000000000001.seg           a segment: entries from index 1
//!     00000000000000000001.ack           its ack file
//!     00000000000000000001.idx           its index file ([`index`])
//!     00000000000000059421.seg           the next segment: entries from 59421
//!     00000000000000059421.ack
//!     00000000000000059421.idx
//! <data>/log/wal/
//!     00000000000000000007.wal           the write-ahead file (below)
//! ```
//!
//! While a start migrates the messages of an older data directory out of
//! sled, the log is built in `<data>/log.migrating/` and renamed to
//! `<data>/log/` once complete; a start that finds `log.migrating/` deletes
//! it and migrates again.
//!
//! A file's name is its segment's first index as exactly 20 decimal digits
//! (so name order is index order) and `.seg` or `.ack`. Any other name, such
//! as a `*.tmp` left by a crash, is not part of the log ([`parse_file_name`]
//! returns `None` for it); recovery deletes such files rather than reading
//! them (`message-store.md` §5.8).
//!
//! Creating or unlinking a file changes the directory, which needs its own
//! fsync ([`sync_dir`]) before anything that depends on the file is
//! confirmed.
//!
//! # Indexes
//!
//! Every entry has an index; indexes are consecutive within a segment and
//! across the segments of a directory. **Index 0 is never an entry's**: the
//! first index of a log is at least 1. That keeps a zero-filled stretch of
//! an ack file (preallocation, or ext4 `data=writeback` after a crash) from
//! ever acknowledging an entry, and lets a commit mark of nothing be a plain 0.
//!
//! # Segment file (`.seg`)
//!
//! A 32-byte header, then records, all integers little-endian:
//!
//! ```text
//! offset size  field
//!  0      8    magic b"SLUICESG"
//!  8      2    format version (1)
//! 10      6    reserved, zero
//! 16      8    first index: the index of the segment's first entry, equal
//!              to the number in the file name
//! 24      4    reserved, zero
//! 28      4    CRC-32 (IEEE, crc32fast) of bytes 0..28
//! ```
//!
//! # Record framing
//!
//! ```text
//! [type u8 ≠ 0][len u32 ≠ 0][crc u32][payload: len bytes]
//! ```
//!
//! `crc` is the CRC-32 (IEEE) of `type ‖ len ‖ payload`. Covering the
//! header as well as the payload means an all-zero stretch never parses: a
//! zero type or zero length is invalid on its own, and a zero CRC does not
//! match a zero header. `len` is bounded by [`record::MAX_PAYLOAD`] before
//! anything is allocated for it. Types in a segment:
//!
//! - `1` ENTRY: an entry, payload `[index u64][term u64][body]`. `term` is
//!   for the replication issue after this one (0 until then); the body is
//!   the layer above's encoding of a message.
//! - `2` SEAL: the segment's footer, payload `[first index u64][last index
//!   u64][count u64]`, 33 bytes with its frame. It is the last record of a
//!   sealed segment; nothing follows it. A segment is never sealed empty.
//! - `3` ACKS is for ack files only (below).
//! - `4` WAL: a write-ahead record, WAL files only (below).
//! - `5` INDEX: a segment index record, `.idx` files only ([`index`]:
//!   what recovery needs of each entry, so that a sealed segment's bodies
//!   are not read at a start).
//!
//! Any other type is refused as corruption (a newer format bumps the
//! version instead).
//!
//! # Sealed and active segments
//!
//! Only the newest segment of a directory is appended to (the *active*
//! segment). When it is full it is *sealed*: the SEAL record is written and
//! the file is fdatasynced **before** the next segment is created, so a
//! segment that has a successor always has its footer on disk. A sealed
//! segment is never written again; it is unlinked (with its ack file) once
//! every entry in it is settled, or by a stream's retention.
//!
//! # Ack file (`.ack`)
//!
//! Append-only records in the segment framing above, no header. Each is an
//! ACKS record (type 3) whose payload is one or more u64 LE indexes of
//! settled entries (acked, rejected, expired, dead-lettered), one batch
//! per barrier round. Order does not matter and duplicates are harmless.
//! The CRC means a flipped bit never settles an entry: it makes its batch
//! invalid. Only the last batch may be bad, a torn write (partial, failing
//! its CRC, or zeros): it is ignored, and cut before the file is appended
//! to again; its entries are delivered again, which at-least-once allows.
//! A bad batch with more data after it is corruption.
//!
//! # Write-ahead file (`.wal`)
//!
//! One per node at a time, in a directory of its own (the store's choice,
//! apart from the queues' directories), named by its **generation** as
//! exactly 20 decimal digits and `.wal`: `00000000000000000007.wal`. Each
//! new file takes the next generation, so name order is write order; other
//! names (temp files) are not WAL files. There is no header: the file
//! starts directly with records, and its generation is in its name only.
//! A WAL file is only ever appended to by the writer that created it; after
//! a restart, writing goes on in a new file of the next generation.
//!
//! Every record is a WAL record (type 4) in the framing above, and one
//! record is one round of the group commit: the entries of every queue the
//! round touched, each `[queue id u64][index u64][term u64][body len
//! u32][body]`, one after another. It is written with one `write` and made
//! durable with one `fdatasync`. A round over the record limit is split
//! into several records (all in the one `write`).
//!
//! Queue id 2^64 − 1 is reserved for **control entries**: each round's
//! changes other than new copies (acks by index, ranges of sequence
//! numbers removed, rewritten metadata of requeued copies, de-duplication
//! records, group offsets, queue drops),
//! one entry per round, in the same record as the round's copies, so a
//! round is durable whole or not at all (layout in `logstore/ops.rs`).
//! Control entries go to no segment: a checkpoint writes what they say to
//! the ack files and to sled before their write-ahead file is retired. A
//! removed range (a stream's retention, a purge) unlinks the sealed
//! segments it covers whole and acks only the entries of those it covers
//! in part, so a cut of millions of entries writes a few bytes.
//!
//! Within one queue, indexes increase by
//! exactly 1 from record to record across the file (queues interleave
//! freely); a gap or a step back is corruption, and so is index 0 or any
//! other record type.
//!
//! With no commit mark to tell them apart, a WAL file follows Ra's rule,
//! as the ack file does: a bad or partial record is a **torn tail** (the
//! last round, never confirmed: ignored at replay) only if it is the last
//! thing in the file, that is the bytes
//! from it to the end are all zeros, or its frame is cut short by the end
//! of the file or claims a length reaching it, or only zeros follow the
//! length it claims (or the frame itself, when it claims none that is
//! plausible): a file whose tail was zero-filled (preallocated, or
//! allocated before its data was written, as ext4 does in
//! `data=writeback`) has a round cut short by a crash followed by zeros
//! rather than by the end of the file. A bad record with more after
//! it is corruption, and so is a whole frame with no plausible length (0,
//! or over the limit) and non-zero bytes after it: where it ends is
//! unknown, and dropping what follows could drop confirmed entries. (An
//! ack file takes such a frame as its last batch: that costs redeliveries
//! only.)
//!
//! Because a round is one record, its CRC covers the whole round: a power
//! loss that kept a later page of the round's `write` and not an earlier
//! one leaves a bad *last* record, a torn tail, and never a bad record
//! with valid ones after it. (Only a round split past the record limit can
//! still show that, and then it is reported as corruption.)
//!
//! A round that the segments then fail to take (a full disk) was never
//! confirmed: the store takes it back, cutting the segments it reached to
//! their length before it (removing a segment it started) and then the
//! WAL file to its length before it, each fdatasync'd, and stops. A start
//! then has nothing of it to replay, so it needs no room it lacked.
//!
//! A WAL file is **retired** (unlinked, then its directory synced) once
//! every queue it holds records of has its segments fdatasync'd through
//! the highest index the file holds for it. Recovery replays the files
//! still there in generation order, and from each keeps for a queue only
//! the entries past what that queue's segments hold.
//!
//! # Torn tail or damage: the commit mark
//!
//! A crash can leave the end of the active segment half-written: a partial
//! record, a record whose CRC fails, or zeros. A CRC alone cannot tell such
//! a *torn tail* (data never confirmed, safe to drop) from damage to data a
//! publisher was told was safe. A witness kept elsewhere can: the
//! [`CommitMark`], "every entry below index N was durable". It is written
//! after the fdatasync that made those entries durable and becomes durable
//! itself with a later barrier, so it lags and never overstates. Where it is
//! kept (sled, or a small file written atomically) is the store's business.
//!
//! When a segment is scanned ([`scan::scan`]), the entries before a bad
//! or partial record are counted; let *next* be the index the bad record
//! would have had.
//!
//! - In the active segment, if *next* ≥ the mark, the bad record and every
//!   byte after it are a torn tail: nothing there was confirmed. The scan
//!   reports its offset and size; the caller logs it, truncates the file to
//!   the last good record ([`scan::truncate_torn`]) and appends from
//!   there. Bytes after the first bad record are dropped even if they parse:
//!   the kernel may have written a later page of the last batch and not an
//!   earlier one, and all of it is above the mark.
//! - If *next* < the mark, confirmed entries are missing: corruption.
//! - The same holds when the active segment ends cleanly but below the mark
//!   (a file cut at a record boundary): corruption.
//! - In a sealed segment anything bad is corruption, and so is a missing
//!   footer, bytes after the footer, or a footer that disagrees with the
//!   entries.
//! - A header that does not match (magic, version, CRC, reserved bytes,
//!   first index against the file name) is corruption. The one exception is
//!   an active segment whose header is itself incomplete or all zeros and
//!   above the mark: a crash right after the file was created. That is a
//!   torn tail at offset 0, and appending after it rewrites the header.
//!
//! Corruption is [`LogError::Corrupt`], never served short: the store
//! refuses the queue (or, in a cluster, repairs it from its peers).
//!
//! # Group file (`.grp`)
//!
//! A consensus group's log (a replicated queue's Raft log, `logstore/
//! groups.rs`) lives in the write-ahead file's control entries until a
//! checkpoint, which writes each group changed since the last one to
//! `<data>/log/groups/<group>.<generation>.grp` (both 20 decimal digits),
//! whole: to a `.tmp` file first, fdatasync'd, renamed, the directory
//! synced; the older generation is then unlinked. Records in the framing
//! above: first a GROUP record (type 6), payload `[has purged u8][purged
//! index u64][purged term u64][first index u64][count u64][through
//! generation u64][through control index u64][has vote u8]` then, with a
//! vote, `[len u32][vote]`; then `count` ENTRY records with consecutive
//! indexes from `first` (`first` is one past the purged index). *Through*
//! is the write-ahead position (generation, control entry index) the file
//! is up to date with: a start replays the group's operations only past
//! it, in order (unlike a queue's, a group's operations are not
//! idempotent: a truncation undoes appends). A start reads the newest
//! generation of each group and deletes the others and any `.tmp`; any
//! damage in it is corruption (it was complete when renamed into place).
//!
//! # Replication
//!
//! What a Raft log store needs (openraft's `RaftLogStorage`), and where
//! it is:
//!
//! - **append at an index, with its term**: a group's entries, `[index
//!   u64][term u64][payload]`, appended at the next index only; a queue's
//!   entries carry a term field too (0 until clusters);
//! - **read a range**: from RAM since the last checkpoint, else by offset
//!   from the group file; a queue's copies by sequence number
//!   (`MessageStore::load`);
//! - **truncate after an index** and **purge before one**: group
//!   operations, ordered with the appends in the write-ahead file; a
//!   queue removes a range of sequence numbers with one RANGE control
//!   operation (a stream's retention uses it), unlinking the segments it
//!   covers whole;
//! - **the vote**, saved with the same group commit, in order with the
//!   appends (one ordered, checksummed log for vote, append, truncate and
//!   purge, as `replication.md` asks);
//! - **a snapshot of a queue's state**, its settled prefix and unsettled
//!   messages: the live copies `MessageStore::load` reads back in
//!   sequence order, from the first live one, whose sequence number is
//!   where the settled prefix ends.
//!
//! # Recovery
//!
//! For each directory: list it and keep exact names; delete stray files;
//! check that the segments' first indexes increase (a gap is a segment
//! deleted once settled). Each ack file is read whole (8 bytes per settled
//! entry). A sealed segment is read by its header and footer
//! ([`scan::read_seal`]) and its index file, never by its entries, when the
//! index is whole and counts what the footer does; otherwise it is read
//! through in 1 MiB sequential reads (and must end with its footer), and
//! its index file is written again. The active segment is scanned with the commit mark; a
//! torn tail is cut and logged, and the segment is opened for append at
//! its valid length ([`segment::SegmentWriter::open_append`]). Fully
//! settled segments left over by a crash before their unlink are unlinked
//! then.

pub(crate) mod acks;
pub(crate) mod chunks;
pub(crate) mod group;
pub(crate) mod header;
pub(crate) mod index;
pub(crate) mod record;
pub(crate) mod scan;
pub(crate) mod segment;
pub(crate) mod wal;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// "Every entry with an index below `end` was durable when this mark was
/// written": the witness that tells a torn tail (above the mark, never
/// confirmed, cut at recovery) from lost confirmed data (below it,
/// corruption). Where a mark is stored is the store's business; it must
/// become durable only after the data it covers (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct CommitMark {
    /// One past the last index known durable; 0 when nothing is.
    pub(crate) end: u64,
}

impl CommitMark {
    /// Nothing is known durable: every bad tail is torn.
    #[cfg(test)]
    pub(crate) const NONE: CommitMark = CommitMark { end: 0 };

    /// The mark after entries up to and including `last` were made durable.
    #[cfg(test)]
    pub(crate) fn through(last: u64) -> CommitMark {
        CommitMark {
            end: last.saturating_add(1),
        }
    }

    /// Whether entry `index` was confirmed durable, so its absence is damage.
    pub(crate) fn covers(self, index: u64) -> bool {
        index < self.end
    }
}

/// Failures of the segment log.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogError {
    /// The file system failed on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory being worked on.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A file holds something the format does not allow where it is: data
    /// below the commit mark is missing or damaged, a sealed segment is
    /// short or bad, or a header does not match.
    #[error("{file} is corrupt at byte {offset}: {what}")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What was found.
        what: String,
    },
    /// An entry's body is over [`record::MAX_BODY`].
    #[error("entry body of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// The body's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An append did not continue the segment's indexes.
    #[error("entry index {got} appended where {expected} was due")]
    OutOfOrder {
        /// The index the segment needs next.
        expected: u64,
        /// The index given.
        got: u64,
    },
    /// A name that is not `<20 digits>` and the extension of the kind of
    /// file expected (`.seg`, `.ack`, `.wal`) was given as a log file.
    #[error("{0} is not a log file name of the kind expected")]
    BadName(PathBuf),
    /// A segment with no entries cannot be sealed.
    #[error("{0}: an empty segment cannot be sealed")]
    EmptySeal(PathBuf),
    /// An earlier write or sync on this writer failed, so what is on disk is
    /// unknown: the file must be rescanned, never appended to blindly (a
    /// failed fsync is not retried, `message-store.md` §5.6).
    #[error("{0}: an earlier write or sync failed; rescan before appending")]
    Poisoned(PathBuf),
}

impl LogError {
    /// An [`LogError::Io`] on `path`.
    pub(crate) fn io(path: &Path, source: io::Error) -> LogError {
        LogError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// A [`LogError::Corrupt`] in `file` at `offset`.
    pub(crate) fn corrupt(file: &Path, offset: u64, what: impl Into<String>) -> LogError {
        LogError::Corrupt {
            file: file.to_owned(),
            offset,
            what: what.into(),
        }
    }
}

/// Which of a log directory's files a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// `<first>.seg`, a segment.
    Segment,
    /// `<first>.ack`, a segment's ack file.
    Acks,
    /// `<generation>.wal`, a write-ahead file.
    Wal,
    /// `<first>.idx`, a segment's index file.
    Index,
}

/// Digits in a file name's index.
const NAME_DIGITS: usize = 20;

/// The name of the segment whose first index is `first`.
pub(crate) fn segment_file_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// The name of the index file of the segment whose first index is `first`.
pub(crate) fn index_file_name(first: u64) -> String {
    format!("{first:020}.idx")
}

/// The name of the ack file of the segment whose first index is `first`.
pub(crate) fn ack_file_name(first: u64) -> String {
    format!("{first:020}.ack")
}

/// The name of the write-ahead file of generation `generation`.
pub(crate) fn wal_file_name(generation: u64) -> String {
    format!("{generation:020}.wal")
}

/// Reads a log file's name: its number (a segment's first index, or a
/// write-ahead file's generation) and kind, or `None` for any name that is
/// not exactly 20 digits and `.seg`/`.ack`/`.wal` (temp files, strays),
/// which the log never reads.
pub(crate) fn parse_file_name(name: &str) -> Option<(u64, FileKind)> {
    let (digits, ext) = name.split_at_checked(NAME_DIGITS)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let kind = match ext {
        ".seg" => FileKind::Segment,
        ".ack" => FileKind::Acks,
        ".wal" => FileKind::Wal,
        ".idx" => FileKind::Index,
        _ => return None,
    };
    Some((digits.parse().ok()?, kind))
}

/// The number a log file's path names (first index, or generation for
/// [`FileKind::Wal`]), if its name is exact and of `kind`.
pub(crate) fn first_index_of(path: &Path, kind: FileKind) -> Result<u64, LogError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_file_name)
        .filter(|&(_, k)| k == kind)
        .map(|(first, _)| first)
        .ok_or_else(|| LogError::BadName(path.to_owned()))
}

/// `fdatasync` for a log file's writer: a failure poisons the writer
/// (`poisoned` is set and every later call is [`LogError::Poisoned`]),
/// because a failed fsync is never retried (`message-store.md` §5.6).
pub(crate) fn sync_data_or_poison(
    file: &File,
    path: &Path,
    poisoned: &mut bool,
) -> Result<(), LogError> {
    if *poisoned {
        return Err(LogError::Poisoned(path.to_owned()));
    }
    file.sync_data().map_err(|e| {
        *poisoned = true;
        LogError::io(path, e)
    })
}

/// fsyncs a directory, making the creates, renames and unlinks in it
/// durable. Needed after creating a segment or ack file and after unlinking
/// one, before anything depending on it is confirmed.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_sort_by_index() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        assert_eq!(ack_file_name(u64::MAX), "18446744073709551615.ack");
        for first in [1, 59_421, u64::MAX] {
            assert_eq!(
                parse_file_name(&segment_file_name(first)),
                Some((first, FileKind::Segment))
            );
            assert_eq!(
                parse_file_name(&ack_file_name(first)),
                Some((first, FileKind::Acks))
            );
            assert_eq!(
                parse_file_name(&wal_file_name(first)),
                Some((first, FileKind::Wal))
            );
        }
        assert_eq!(wal_file_name(7), "00000000000000000007.wal");
        assert!(segment_file_name(9) < segment_file_name(10));
    }

    #[test]
    fn inexact_names_are_not_log_files() {
        for name in [
            "1.seg",
            "00000000000000000001.seg.tmp",
            "00000000000000000001.wal.tmp",
            "1.wal",
            "00000000000000000001.sega",
            "0000000000000000000x.seg",
            "00000000000000000001.log",
            "+0000000000000000001.seg",
            "99999999999999999999.seg", // over u64::MAX
            "",
        ] {
            assert_eq!(parse_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn first_index_of_checks_the_kind() {
        let p = Path::new("/x").join(segment_file_name(7));
        assert_eq!(first_index_of(&p, FileKind::Segment).unwrap(), 7);
        assert!(matches!(
            first_index_of(&p, FileKind::Acks),
            Err(LogError::BadName(_))
        ));
    }

    #[test]
    fn commit_mark_covers_below_its_end() {
        assert!(!CommitMark::NONE.covers(0));
        assert!(!CommitMark::NONE.covers(1));
        let m = CommitMark::through(10);
        assert!(m.covers(10));
        assert!(!m.covers(11));
        assert_eq!(CommitMark::through(u64::MAX).end, u64::MAX);
    }
}
