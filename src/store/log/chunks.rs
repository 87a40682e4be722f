//! Sequential reads of a log file's records: large positional reads
//! ([`READ_CHUNK`] by default) into one reused
//! buffer that grows only to hold a record bigger than it, cut into records
//! with [`record::decode`](super::record::decode). What a bad or partial
//! record means is for the caller ([`super::scan`], the segment reader).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{decode, Decoded, FRAME_LEN};
use super::LogError;

/// Bytes read from a segment at a time: large sequential reads
/// (`message-store.md` §6).
pub(crate) const READ_CHUNK: usize = 1 << 20;

/// Opens a file for reading, mapping the error to the path.
pub(super) fn open_read(path: &Path) -> Result<(File, u64), LogError> {
    let file = File::open(path).map_err(|e| LogError::io(path, e))?;
    let len = file.metadata().map_err(|e| LogError::io(path, e))?.len();
    Ok((file, len))
}

/// Reads `len` bytes at `offset` (fewer only at the end of the file).
pub(super) fn read_exact_at(
    file: &File,
    path: &Path,
    len: usize,
    offset: u64,
) -> Result<Vec<u8>, LogError> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LogError::io(path, e)),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// One step of reading a segment's records.
#[derive(Debug)]
pub(super) enum Step {
    /// A valid record starting at file offset `offset`, whose payload is
    /// `buf[payload]`.
    Record {
        /// The record's type.
        typ: u8,
        /// Where it starts in the file.
        offset: u64,
        /// Its payload's place in [`Chunks::buf`].
        payload: std::ops::Range<usize>,
    },
    /// The readable bytes ended exactly at a record boundary.
    End,
    /// A record starting at `offset` is partial (the bytes end inside it)
    /// or invalid.
    Bad {
        /// Where the record starts in the file.
        offset: u64,
        /// What is wrong with it.
        what: String,
    },
}

/// Sequential reads of a segment's records through one reused buffer.
#[derive(Debug)]
pub(super) struct Chunks {
    file: File,
    /// The file's path, for errors.
    pub(super) path: PathBuf,
    /// The reused buffer; a [`Step::Record`]'s payload range points in it.
    pub(super) buf: Vec<u8>,
    /// `buf[start..end]` holds unparsed bytes.
    start: usize,
    end: usize,
    /// File offset of `buf[start]`: after a record, where it ended.
    pub(super) pos: u64,
    /// Where reading stops (the file's length, or a limit).
    stop: u64,
    /// Bytes per read.
    chunk: usize,
}

impl Chunks {
    pub(super) fn new(file: File, path: &Path, from: u64, stop: u64, chunk: usize) -> Chunks {
        Chunks {
            file,
            path: path.to_owned(),
            buf: vec![0; chunk],
            start: 0,
            end: 0,
            pos: from,
            stop,
            chunk,
        }
    }

    /// Reads more bytes so that at least `want` are buffered, or as many as
    /// remain; false if none remained.
    pub(super) fn refill(&mut self, want: usize) -> Result<bool, LogError> {
        let file_at = self.pos + (self.end - self.start) as u64;
        if file_at >= self.stop {
            return Ok(false);
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        let room = want.max(self.end + self.chunk);
        if self.buf.len() < room {
            self.buf.resize(room, 0);
        }
        let left = usize::try_from(self.stop - file_at).unwrap_or(usize::MAX);
        let n = (self.buf.len() - self.end).min(left);
        let got = loop {
            match self
                .file
                .read_at(&mut self.buf[self.end..self.end + n], file_at)
            {
                Ok(got) => break got,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LogError::io(&self.path, e)),
            }
        };
        self.end += got;
        Ok(got > 0)
    }

    /// The next record, or where and why there is none.
    pub(super) fn next(&mut self) -> Result<Step, LogError> {
        loop {
            let offset = self.pos;
            match decode(&self.buf[self.start..self.end]) {
                Decoded::Record { typ, payload, size } => {
                    let from = self.start + FRAME_LEN;
                    let range = from..from + payload.len();
                    self.start += size;
                    self.pos += size as u64;
                    return Ok(Step::Record {
                        typ,
                        offset,
                        payload: range,
                    });
                }
                Decoded::Invalid(why) => {
                    return Ok(Step::Bad {
                        offset,
                        what: why.to_string(),
                    })
                }
                Decoded::NeedMore { total } => {
                    let buffered = self.end - self.start;
                    // A record longer than what is left is cut short: say so
                    // without reading (or allocating) for it.
                    if let Some(total) = total {
                        if offset + total as u64 > self.stop {
                            return Ok(Step::Bad {
                                offset,
                                what: "partial record".into(),
                            });
                        }
                    }
                    if !self.refill(total.unwrap_or(FRAME_LEN))? {
                        return Ok(if buffered == 0 {
                            Step::End
                        } else {
                            Step::Bad {
                                offset,
                                what: "partial record".into(),
                            }
                        });
                    }
                }
            }
        }
    }
}
