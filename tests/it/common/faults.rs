//! Helpers for fault tests: a tmpfs of a given size (a full disk on
//! demand), a seeded random source for kill moments, and `/proc` probes of
//! what a process holds open.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// xorshift64*: the kill moments, from a seed the figures line prints
/// (`SLUICE_CRASH_SEED` replays one).
pub struct Rng(pub u64);

impl Rng {
    pub fn from_env() -> Rng {
        let seed = std::env::var("SLUICE_CRASH_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Whether process `pid` holds `path` open; `None` if it is gone.
pub fn holds_open(pid: u32, path: &Path) -> Option<bool> {
    let mut fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .peekable();
    // A live process has at least stdin, stdout and stderr.
    fds.peek()?;
    Some(
        fds.flatten()
            .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == path)),
    )
}

/// Polls until process `pid` holds `path` open; `None` if the process is
/// gone first (or after 30 s).
pub fn wait_until_open(pid: u32, path: &Path) -> Option<Instant> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if holds_open(pid, path)? {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    None
}

/// `text` without its terminal colour sequences (`ESC [ ... m`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// A tmpfs mounted on a temporary directory, unmounted on drop: a disk
/// that fills up on demand. Mounting needs root (CI runs as root).
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `mib` MiB, or `None` (and a line saying so) where
    /// mounting is refused.
    pub fn mount(mib: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    /// Resizes it to `mib` MiB.
    pub fn grow(&self, mib: u32) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(self.dir.path())
            .status()
            .expect("remount");
        assert!(ok.success(), "remount failed");
    }

    /// The broker's data directory on it.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A file of `bytes` bytes beside the data directory (the "filler"
    /// of another program), really allocated.
    pub fn fill(&self, name: &str, bytes: u64) -> PathBuf {
        use std::io::Write;
        let path = self.dir.path().join(name);
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0x5au8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n]).expect("write filler");
            left -= n as u64;
        }
        path
    }

    /// Fills every byte still free with a file `name` (ENOSPC ends it).
    pub fn fill_up(&self, name: &str) -> PathBuf {
        use std::io::Write;
        let path = self.dir.path().join(name);
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0x5au8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let small = [0x5au8; 512];
        while f.write_all(&small).is_ok() {}
        path
    }

    /// Free bytes on it.
    pub fn free(&self) -> u64 {
        sluice::broker::alarm::free_bytes(self.dir.path()).expect("statvfs")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
