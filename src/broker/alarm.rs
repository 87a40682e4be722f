//! [`Alarms`]: the resource alarms that hold publishers, as RabbitMQ's disk
//! and memory alarms do. One [`Alarm`] per resource, read every 100 ms:
//!
//! - **disk**: while the data directory's file system has less than
//!   `--disk-free-limit` bytes free, publishes that would write to the
//!   store are held, so the store does not run into `ENOSPC`;
//! - **memory**: while the broker's resident memory (RSS, from
//!   `/proc/self/statm`) is over `--memory-high-watermark`, every publish
//!   is held, transient ones too (they are what fills RAM).
//!
//! A held `PUB` waits with its reply (the session shows `NOTICE blocked
//! disk` or `NOTICE blocked memory`); consumers, acks and everything else
//! go on, which is what frees the resource. There is no hysteresis: the
//! alarm clears as soon as a reading is back on the right side of the
//! mark. Readings are 100 ms apart, so an alarm flips 10 times a second at
//! most, and jemalloc gives freed memory back gradually (its decay), so
//! RSS falls smoothly rather than oscillating round the mark.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
pub use crate::protocol::reply::Resource;

/// How often the gauges are read: a `statvfs` or a read of
/// `/proc/self/statm` costs about a microsecond, and at 100 ms a publisher
/// writing 100 MB/s gets 10 MB past the mark at most before it is held.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// `--memory-high-watermark`: a number of bytes, or a fraction of RAM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryWatermark {
    /// This many bytes of resident memory (`0`: off).
    Bytes(u64),
    /// This fraction of the machine's RAM, or of the cgroup's memory limit
    /// if that is lower (`0.4` is RabbitMQ's default).
    Fraction(f64),
}

impl MemoryWatermark {
    /// The mark in bytes (`0`: off), reading the RAM size for a fraction.
    pub fn bytes(self) -> std::io::Result<u64> {
        match self {
            MemoryWatermark::Bytes(b) => Ok(b),
            MemoryWatermark::Fraction(f) if f <= 0.0 => Ok(0),
            MemoryWatermark::Fraction(f) => Ok((total_memory()? as f64 * f) as u64),
        }
    }
}

impl std::str::FromStr for MemoryWatermark {
    type Err = String;

    /// `1073741824` (bytes; `0` is off) or `0.4` (a fraction of RAM, with
    /// a decimal point, at most 1).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.contains('.') {
            match s.parse::<f64>() {
                Ok(f) if (0.0..=1.0).contains(&f) => Ok(MemoryWatermark::Fraction(f)),
                _ => Err(format!(
                    "{s:?}: a fraction of RAM is between 0.0 and 1.0 (e.g. 0.4)"
                )),
            }
        } else {
            s.parse::<u64>().map(MemoryWatermark::Bytes).map_err(|_| {
                format!("{s:?}: expected bytes (e.g. 2147483648) or a fraction of RAM (e.g. 0.4)")
            })
        }
    }
}

impl std::fmt::Display for MemoryWatermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryWatermark::Bytes(b) => write!(f, "{b}"),
            MemoryWatermark::Fraction(x) if x.fract() == 0.0 => write!(f, "{x:.1}"),
            MemoryWatermark::Fraction(x) => write!(f, "{x}"),
        }
    }
}

/// What an alarm reads.
#[derive(Debug)]
enum Gauge {
    /// Free bytes on the file system of this directory: raised under the limit.
    FreeDisk(PathBuf),
    /// This process's resident bytes: raised over the limit.
    Rss,
}

/// One resource's watermark and its current state.
#[derive(Debug)]
pub struct Alarm {
    resource: Resource,
    gauge: Gauge,
    /// The mark; `0` is off. Atomic for the test seam [`Alarm::set_limit`].
    limit: AtomicU64,
    raised: watch::Sender<bool>,
}

impl Alarm {
    /// An alarm raised while `dir`'s file system has under `limit` free
    /// bytes (`0`: off).
    pub fn disk(dir: PathBuf, limit: u64) -> Alarm {
        Alarm::new(Resource::Disk, Gauge::FreeDisk(dir), limit)
    }

    /// An alarm raised while this process's resident memory is over
    /// `limit` bytes (`0`: off).
    pub fn memory(limit: u64) -> Alarm {
        Alarm::new(Resource::Memory, Gauge::Rss, limit)
    }

    fn new(resource: Resource, gauge: Gauge, limit: u64) -> Alarm {
        Alarm {
            resource,
            gauge,
            limit: AtomicU64::new(limit),
            raised: watch::channel(false).0,
        }
    }

    /// Which resource this is.
    pub fn resource(&self) -> Resource {
        self.resource
    }

    /// True while the resource is on the wrong side of its mark.
    pub fn raised(&self) -> bool {
        *self.raised.borrow()
    }

    /// Waits until the alarm is clear.
    pub async fn wait_clear(&self) {
        let mut rx = self.raised.subscribe();
        // The sender lives as long as `self`; an error cannot happen here.
        let _ = rx.wait_for(|raised| !raised).await;
    }

    /// Whether the alarm is on at all.
    fn on(&self) -> bool {
        self.limit.load(Ordering::Relaxed) > 0
    }

    /// Reads the gauge now and updates the state; logs changes.
    pub fn check(&self) {
        let limit = self.limit.load(Ordering::Relaxed);
        if limit == 0 {
            self.set(false, 0, 0);
            return;
        }
        let reading = match &self.gauge {
            Gauge::FreeDisk(dir) => free_bytes(dir),
            Gauge::Rss => resident_bytes(),
        };
        match reading {
            Ok(r) => {
                let over = match self.gauge {
                    Gauge::FreeDisk(_) => r < limit,
                    Gauge::Rss => r > limit,
                };
                self.set(over, r, limit);
            }
            Err(e) => {
                tracing::warn!(error = %e, resource = self.resource.as_str(), "could not read the resource's usage");
            }
        }
    }

    fn set(&self, raised: bool, reading: u64, limit: u64) {
        if raised == self.raised() {
            return;
        }
        let what = match (self.resource, raised) {
            (Resource::Disk, true) => {
                "disk space low: publishes that write to the store are held until space is freed"
            }
            (Resource::Disk, false) => "disk space back: publishes resume",
            (Resource::Memory, true) => {
                "memory over the high-watermark: every publish is held until it falls under it"
            }
            (Resource::Memory, false) => "memory back under the high-watermark: publishes resume",
        };
        // Disk: free bytes; memory: resident bytes.
        tracing::warn!(resource = self.resource.as_str(), reading, limit, "{what}");
        self.raised.send_replace(raised);
    }

    /// Test seam: a new mark (`0`: off), applied at once.
    #[doc(hidden)]
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
        self.check();
    }
}

/// Every resource alarm of a broker.
#[derive(Debug, Clone)]
pub struct Alarms {
    /// Free disk space (`--disk-free-limit`).
    pub disk: Arc<Alarm>,
    /// Resident memory (`--memory-high-watermark`).
    pub memory: Arc<Alarm>,
}

impl Alarms {
    /// The alarms `config` asks for, read once. A broker that keeps nothing
    /// on disk has no disk alarm; a RAM size that cannot be read turns the
    /// memory alarm off (with a warning).
    pub fn new(config: &Config) -> Alarms {
        let disk_limit = if config.in_memory {
            0
        } else {
            config.disk_free_limit
        };
        let memory_limit = config.memory_high_watermark.bytes().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the RAM size; --memory-high-watermark is off");
            0
        });
        if memory_limit > 0 {
            tracing::info!(
                bytes = memory_limit,
                "memory high-watermark: publishes are held while resident memory is over it"
            );
        }
        let alarms = Alarms {
            disk: Arc::new(Alarm::disk(config.data_dir.clone(), disk_limit)),
            memory: Arc::new(Alarm::memory(memory_limit)),
        };
        alarms.check();
        alarms
    }

    fn check(&self) {
        self.disk.check();
        self.memory.check();
    }

    /// Reads every gauge every 100 ms, forever (run as a task).
    pub async fn run(self) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !self.disk.on() && !self.memory.on() {
                continue;
            }
            let me = self.clone();
            // statvfs and a read of /proc are quick, but they are file I/O.
            if tokio::task::spawn_blocking(move || me.check())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Bytes available to an unprivileged user on the file system of `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("data directory path contains a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `st` points to
    // writable memory of the right type; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ by platform
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// This process's resident memory: `/proc/self/statm`'s second field, in
/// pages.
pub fn resident_bytes() -> std::io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| std::io::Error::other("unexpected /proc/self/statm"))?;
    Ok(pages.saturating_mul(page_size()))
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}

/// The RAM this process may use: the machine's (`/proc/meminfo`), or the
/// cgroup's limit if one is set and lower (v2 `memory.max`, v1
/// `memory.limit_in_bytes`).
pub fn total_memory() -> std::io::Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no MemTotal in /proc/meminfo"))?;
    let machine = kib.saturating_mul(1024);
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .filter_map(|v| v.trim().parse::<u64>().ok())
    .min();
    Ok(cgroup.map_or(machine, |c| c.min(machine)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_bytes_of_a_real_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(free_bytes(dir.path()).expect("statvfs") > 0);
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_disk_limit_over_the_free_space_is_raised_and_zero_is_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let all = Alarm::disk(dir.path().to_path_buf(), u64::MAX);
        all.check();
        assert!(all.raised());
        let off = Alarm::disk(dir.path().to_path_buf(), 0);
        off.check();
        assert!(!off.raised());
        let one = Alarm::disk(dir.path().to_path_buf(), 1);
        one.check();
        assert!(!one.raised());
    }

    #[test]
    fn memory_over_the_mark_is_raised_and_clears_under_it() {
        assert!(resident_bytes().expect("statm") > 0);
        let m = Alarm::memory(1);
        m.check();
        assert!(m.raised());
        m.set_limit(u64::MAX);
        assert!(!m.raised());
        m.set_limit(1);
        assert!(m.raised());
        m.set_limit(0);
        assert!(!m.raised(), "off clears it");
    }

    #[test]
    fn watermark_parses_bytes_and_fractions() {
        assert_eq!("0".parse(), Ok(MemoryWatermark::Bytes(0)));
        assert_eq!("1048576".parse(), Ok(MemoryWatermark::Bytes(1 << 20)));
        assert_eq!("0.4".parse(), Ok(MemoryWatermark::Fraction(0.4)));
        assert!("1.5".parse::<MemoryWatermark>().is_err());
        assert!("-1".parse::<MemoryWatermark>().is_err());
        assert!("lots".parse::<MemoryWatermark>().is_err());
        for s in ["0.4", "1.0", "1048576"] {
            let w: MemoryWatermark = s.parse().expect("parses");
            assert_eq!(w.to_string(), s);
        }
        let ram = total_memory().expect("meminfo");
        let half = MemoryWatermark::Fraction(0.5).bytes().expect("bytes");
        assert!(half > 0 && half <= ram / 2 + 1);
        assert_eq!(MemoryWatermark::Fraction(0.0).bytes().ok(), Some(0));
    }
}
