//! [`Reserve`]: the disk reserve, a file of `--disk-reserve` bytes in the
//! data directory (`disk.reserve`) that holds space back for the writes
//! that make room.
//!
//! Acks, rejects, purges and deletes write to the store too (sled is
//! log-structured: a removal is an append), so on a full disk the very
//! commands an operator uses to make room would fail, and sled fails every
//! write after its first `ENOSPC` until it is reopened. So sluice keeps a
//! reserve, as CockroachDB keeps its ballast file: when free space runs
//! low the disk alarm deletes the file ([`Reserve::release`]), publishes
//! are held, and the space it held is there for settling. It is made again
//! once there is room for it ([`Reserve::ensure`]).
//!
//! A file, not space preallocated inside the store: sled gives no control
//! over where or when it allocates, and a file is something an operator
//! can see (`ls -l`) and delete by hand in an emergency. The space is
//! really allocated (`posix_fallocate`, else written), so that another
//! process cannot take it while the file exists.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The reserve file's name in the data directory.
pub(crate) const RESERVE_FILE: &str = "disk.reserve";

/// The disk reserve of one data directory.
#[derive(Debug)]
pub(crate) struct Reserve {
    path: PathBuf,
    /// The size it should have (`0`: no reserve).
    size: u64,
}

impl Reserve {
    /// The reserve of `dir`, `size` bytes (`0`: none).
    pub(crate) fn new(dir: &Path, size: u64) -> Reserve {
        Reserve {
            path: dir.join(RESERVE_FILE),
            size,
        }
    }

    /// Its size when in place (`0`: there is no reserve).
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The bytes the file holds now (0 when it is missing).
    pub(crate) fn held(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Whether it is in place, whole.
    pub(crate) fn in_place(&self) -> bool {
        self.size > 0 && self.held() >= self.size
    }

    /// Makes (or completes) the file, with its space really allocated. A
    /// file that could not be made whole is removed, so that a half-made
    /// reserve never holds space it does not count as held.
    pub(crate) fn ensure(&self) -> std::io::Result<()> {
        if self.size == 0 || self.in_place() {
            return Ok(());
        }
        let made = self.allocate();
        if made.is_err() {
            let _ = std::fs::remove_file(&self.path);
        }
        made
    }

    fn allocate(&self) -> std::io::Result<()> {
        use std::os::unix::io::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&self.path)?;
        let len = libc::off_t::try_from(self.size)
            .map_err(|_| std::io::Error::other("--disk-reserve is too large"))?;
        // SAFETY: `f` is an open file; posix_fallocate reads only its
        // arguments.
        let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, len) };
        match rc {
            0 => Ok(()),
            // A file system without fallocate: write the bytes instead
            // (not zeros, which a compressing file system would not store).
            libc::EOPNOTSUPP | libc::EINVAL => write_out(f, self.size),
            e => Err(std::io::Error::from_raw_os_error(e)),
        }
    }

    /// Deletes the file, giving its space to the store. Returns the bytes
    /// it held.
    pub(crate) fn release(&self) -> std::io::Result<u64> {
        let held = self.held();
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(held),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// Writes `size` bytes of a fixed non-zero pattern to `f`.
fn write_out(mut f: File, size: u64) -> std::io::Result<()> {
    let chunk = vec![0xA5u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_is_made_whole_released_and_made_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Reserve::new(dir.path(), 1 << 20);
        assert!(!r.in_place());
        r.ensure().expect("made");
        assert!(r.in_place());
        assert_eq!(r.held(), 1 << 20);
        assert_eq!(r.release().expect("released"), 1 << 20);
        assert!(!r.in_place());
        assert_eq!(r.release().expect("already gone"), 0);
        r.ensure().expect("made again");
        assert!(r.in_place());
    }

    #[test]
    fn no_reserve_makes_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Reserve::new(dir.path(), 0);
        r.ensure().expect("nothing to do");
        assert!(!dir.path().join(RESERVE_FILE).exists());
        assert!(!r.in_place());
    }

    #[test]
    fn a_reserve_that_cannot_be_made_leaves_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Reserve::new(dir.path(), u64::MAX);
        assert!(r.ensure().is_err());
        assert!(!dir.path().join(RESERVE_FILE).exists());
    }
}
