//! What a segment file says about itself: its 32-byte header (magic,
//! version, first index) and its footer, the SEAL record that closes a
//! sealed segment. Both the writer (`segment.rs`) and the recovery scan
//! (`scan.rs`) use these; the format is in the parent module's doc.

use std::fs::File;
use std::path::Path;

use super::chunks::{open_read, read_exact_at};
use super::record::FRAME_LEN;
use super::{first_index_of, FileKind, LogError};
/// Bytes of a segment's header.
pub(crate) const HEADER_LEN: usize = 32;

/// A segment's first 8 bytes.
pub(crate) const MAGIC: &[u8; 8] = b"SLUICESG";

/// The format version this code writes and reads.
pub(crate) const VERSION: u16 = 1;

/// Bytes of a SEAL record's payload: first, last, count.
const SEAL_PAYLOAD_LEN: usize = 24;

/// Bytes of a whole SEAL record, the footer of a sealed segment.
pub(crate) const SEAL_RECORD_LEN: usize = FRAME_LEN + SEAL_PAYLOAD_LEN;

/// The header of the segment whose first index is `first`.
pub(crate) fn encode_header(first: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&first.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What a segment's first bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Header {
    /// A valid header for this file.
    Valid,
    /// Shorter than a header, or all zeros: a create cut short by a crash.
    Torn,
    /// Anything else, and why.
    Bad(String),
}

/// Checks a segment's first bytes (up to [`HEADER_LEN`]) against the first
/// index its name gives.
pub(super) fn check_header(bytes: &[u8], first: u64) -> Header {
    let Some(h) = bytes.first_chunk::<HEADER_LEN>() else {
        return Header::Torn;
    };
    if h.iter().all(|&b| b == 0) {
        return Header::Torn;
    }
    if &h[0..8] != MAGIC {
        return Header::Bad("not a segment (bad magic)".into());
    }
    let stored = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
    if crc32fast::hash(&h[..28]) != stored {
        return Header::Bad("header CRC mismatch".into());
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != VERSION {
        return Header::Bad(format!(
            "format version {version}, this build reads {VERSION}"
        ));
    }
    if h[10..16].iter().chain(&h[24..28]).any(|&b| b != 0) {
        return Header::Bad("reserved header bytes are set".into());
    }
    let in_header = u64::from_le_bytes([h[16], h[17], h[18], h[19], h[20], h[21], h[22], h[23]]);
    if in_header != first {
        return Header::Bad(format!(
            "header says first index {in_header}, name says {first}"
        ));
    }
    Header::Valid
}

/// A sealed segment's footer: what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seal {
    /// Index of its first entry.
    pub(crate) first: u64,
    /// Index of its last entry.
    pub(crate) last: u64,
    /// Number of entries (`last - first + 1`, stored as a cross-check).
    pub(crate) count: u64,
}

impl Seal {
    /// The SEAL record's payload.
    pub(super) fn encode(&self) -> [u8; SEAL_PAYLOAD_LEN] {
        let mut p = [0u8; SEAL_PAYLOAD_LEN];
        p[0..8].copy_from_slice(&self.first.to_le_bytes());
        p[8..16].copy_from_slice(&self.last.to_le_bytes());
        p[16..24].copy_from_slice(&self.count.to_le_bytes());
        p
    }

    /// Reads a SEAL payload, `None` if its size is wrong.
    pub(super) fn decode(p: &[u8]) -> Option<Seal> {
        let p: &[u8; SEAL_PAYLOAD_LEN] = p.try_into().ok()?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&p[i..i + 8]);
            u64::from_le_bytes(w)
        };
        Some(Seal {
            first: word(0),
            last: word(8),
            count: word(16),
        })
    }
}

/// Reads a SEAL record's payload as a footer that must agree with what
/// was read before it.
pub(super) fn check_seal(p: &[u8], first: u64, next: u64) -> Result<Seal, String> {
    let seal = Seal::decode(p).ok_or("footer of the wrong size")?;
    let count = next - first;
    if seal.first != first || seal.count != count || seal.last != next.wrapping_sub(1) || count == 0
    {
        return Err(format!(
            "footer {seal:?} disagrees with {count} entries from {first}"
        ));
    }
    Ok(seal)
}

/// Opens a segment for reading and checks its header against its name:
/// the file, its length and its first index. A header that is missing,
/// zeroed or does not match is [`LogError::Corrupt`] (the recovery scan,
/// which may cut a torn header of the newest segment, checks it itself).
pub(super) fn open_checked(path: &Path) -> Result<(File, u64, u64), LogError> {
    let first = first_index_of(path, FileKind::Segment)?;
    let (file, len) = open_read(path)?;
    let header = read_exact_at(&file, path, HEADER_LEN, 0)?;
    match check_header(&header, first) {
        Header::Valid => Ok((file, len, first)),
        Header::Torn => Err(LogError::corrupt(path, 0, "header missing or zeroed")),
        Header::Bad(what) => Err(LogError::corrupt(path, 0, what)),
    }
}
