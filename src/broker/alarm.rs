//! [`Alarms`]: the resource alarms that hold publishers, as RabbitMQ's disk
//! and memory alarms do. One [`Alarm`] per resource, read every 100 ms:
//!
//! - **disk**: while the data directory's file system has less than
//!   `--disk-free-limit` bytes free, publishes that would write to the
//!   store are held, so the store does not run into `ENOSPC`. Between two
//!   readings, every write to the store is counted against the free space
//!   of the last reading (twice its size, for the store's overhead), so a
//!   fast publisher is held before the mark even when it writes more than
//!   the mark in 100 ms; a publish is admitted only if it leaves the
//!   estimate at or over the mark. Under the mark the alarm also manages the
//!   [disk reserve](super::reserve): when free space falls under the
//!   reserve's size the reserve is released (deleted) for acks, rejects,
//!   purges and deletes, and publishes are held until there is room to
//!   make it again (the limit plus twice the reserve);
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

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::AtomicBool;

use tokio::sync::watch;

use super::reserve::Reserve;
use crate::config::{Config, MemoryWatermark};
pub(crate) use crate::protocol::reply::Resource;
pub use crate::store::free_bytes;

/// What a store write is counted as against the free space, per byte
/// written: sled's log keeps a record's header, the node it changes and,
/// until its cleaner runs, the copy it replaced. Measured on a tmpfs: 1.5×
/// for a steady stream of 200–400 KiB bodies, 2× for 1 KiB ones, and
/// bursts of 2.5× when publishers start on a fresh store; 2 let a 30 MiB
/// disk run into `ENOSPC` in 3 of 5 rounds, 3 in none of 5.
const WRITE_AMPLIFICATION: u64 = 3;

/// How often the gauges are read: a `statvfs` or a read of
/// `/proc/self/statm` costs about a microsecond, and at 100 ms a publisher
/// writing 100 MB/s gets 10 MB past the mark at most before it is held.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The mark of a [`MemoryWatermark`] in bytes (`0`: off), reading the
/// RAM size for a fraction.
pub(crate) fn watermark_bytes(w: MemoryWatermark) -> std::io::Result<u64> {
    match w {
        MemoryWatermark::Bytes(b) => Ok(b),
        MemoryWatermark::Fraction(f) if f <= 0.0 => Ok(0),
        MemoryWatermark::Fraction(f) => Ok((total_memory()? as f64 * f) as u64),
    }
}

/// What an alarm reads.
#[derive(Debug)]
enum Gauge {
    /// Free bytes on the file system of the data directory: raised under
    /// the limit, or while the reserve is released.
    FreeDisk(Box<DiskGauge>),
    /// This process's resident bytes: raised over the limit.
    Rss,
}

/// The free-space gauge: the last reading, what was written since, and
/// the reserve.
#[derive(Debug)]
struct DiskGauge {
    dir: PathBuf,
    /// Where readings come from: `statvfs`, or a test's number.
    source: FreeSource,
    reserve: Reserve,
    /// Free bytes at the last reading.
    free: AtomicU64,
    /// Every byte charged ([`Alarm::charge`]) so far, already multiplied
    /// by [`WRITE_AMPLIFICATION`].
    charged: AtomicU64,
    /// `charged` as it was at the reading before the last one: what was
    /// charged since is counted against the last reading. Two readings
    /// back, not one, because the store writes some of it later (its
    /// buffers, its cleaner): counting a write twice only holds publishes
    /// a little early, missing one lets them run into `ENOSPC`.
    counted_from: AtomicU64,
    /// `charged` at the last reading.
    last_reading: AtomicU64,
    /// The reserve is in place (false: released, or never made).
    reserve_in_place: AtomicBool,
    /// Serialises readings and the reserve's moves.
    moving: parking_lot::Mutex<()>,
}

/// Where the disk gauge reads free space.
#[derive(Debug)]
enum FreeSource {
    Statvfs,
    /// A number the test sets.
    #[cfg(test)]
    Fixed(Arc<AtomicU64>),
}

/// How far over the floor the estimate must be for a reading to clear
/// the disk alarm: a quarter of the floor, at most 4 MiB.
fn hysteresis(floor: u64) -> u64 {
    (floor / 4).min(4 << 20)
}

impl DiskGauge {
    /// Under this estimate publishes are held: the limit, or the reserve's
    /// size while it is in place if that is more (publishes stop before
    /// the reserve is needed).
    fn floor(&self, limit: u64) -> u64 {
        if self.reserve_in_place.load(Ordering::Acquire) {
            limit.max(self.reserve.size())
        } else {
            limit
        }
    }

    /// Free bytes now, as far as the gauge knows: the last reading less
    /// what was written since (see `counted_from`).
    fn estimate(&self) -> u64 {
        let since = self
            .charged
            .load(Ordering::Acquire)
            .saturating_sub(self.counted_from.load(Ordering::Acquire));
        self.free.load(Ordering::Acquire).saturating_sub(since)
    }
}

/// One resource's watermark and its current state.
#[derive(Debug)]
pub struct Alarm {
    resource: Resource,
    gauge: Gauge,
    /// The mark; `0` is off. Atomic for the test seam [`Alarm::set_limit`].
    limit: AtomicU64,
    raised: watch::Sender<bool>,
    /// Bumped by every reading.
    ticks: watch::Sender<u64>,
}

impl Alarm {
    /// An alarm raised while `dir`'s file system has under `limit` free
    /// bytes (`0`: off), keeping a reserve of `reserve` bytes there (`0`:
    /// none).
    pub(crate) fn disk(dir: PathBuf, limit: u64, reserve: u64) -> Alarm {
        Alarm::disk_reading(dir, limit, reserve, FreeSource::Statvfs)
    }

    fn disk_reading(dir: PathBuf, limit: u64, reserve: u64, source: FreeSource) -> Alarm {
        let gauge = DiskGauge {
            reserve: Reserve::new(&dir, reserve),
            source,
            dir,
            free: AtomicU64::new(u64::MAX),
            charged: AtomicU64::new(0),
            counted_from: AtomicU64::new(0),
            last_reading: AtomicU64::new(0),
            reserve_in_place: AtomicBool::new(false),
            moving: parking_lot::Mutex::new(()),
        };
        gauge
            .reserve_in_place
            .store(gauge.reserve.in_place(), Ordering::Release);
        Alarm::new(Resource::Disk, Gauge::FreeDisk(Box::new(gauge)), limit)
    }

    /// An alarm raised while this process's resident memory is over
    /// `limit` bytes (`0`: off).
    pub(crate) fn memory(limit: u64) -> Alarm {
        Alarm::new(Resource::Memory, Gauge::Rss, limit)
    }

    fn new(resource: Resource, gauge: Gauge, limit: u64) -> Alarm {
        Alarm {
            resource,
            gauge,
            limit: AtomicU64::new(limit),
            raised: watch::channel(false).0,
            ticks: watch::channel(0).0,
        }
    }

    /// Which resource this is.
    pub(crate) fn resource(&self) -> Resource {
        self.resource
    }

    /// True while the resource is on the wrong side of its mark.
    pub(crate) fn raised(&self) -> bool {
        *self.raised.borrow()
    }

    /// Waits until the alarm is clear; if it already is (a publish that
    /// did not fit, see [`Alarm::admits`]), until the next reading.
    pub(crate) async fn wait_clear(&self) {
        let mut ticks = self.ticks.subscribe();
        let was_raised = self.raised();
        let mut rx = self.raised.subscribe();
        // The senders live as long as `self`; an error cannot happen here.
        let _ = rx.wait_for(|raised| !raised).await;
        if !was_raised {
            let _ = ticks.changed().await;
        }
    }

    /// Whether the alarm is on at all.
    fn on(&self) -> bool {
        self.limit.load(Ordering::Relaxed) > 0 || self.reserve_size() > 0
    }

    fn reserve_size(&self) -> u64 {
        match &self.gauge {
            Gauge::FreeDisk(d) => d.reserve.size(),
            Gauge::Rss => 0,
        }
    }

    /// Reads the gauge now and updates the state; logs changes. The disk
    /// alarm also releases or makes its reserve here.
    pub(crate) fn check(&self) {
        let limit = self.limit.load(Ordering::Relaxed);
        if !self.on() {
            self.set(false, 0, 0);
        } else {
            let result = match &self.gauge {
                Gauge::FreeDisk(d) => self.check_disk(d, limit),
                Gauge::Rss => resident_bytes().map(|r| self.set(r > limit, r, limit)),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, resource = self.resource.as_str(), "could not read the resource's usage");
            }
        }
        self.ticks.send_modify(|t| *t = t.wrapping_add(1));
    }

    fn check_disk(&self, d: &DiskGauge, limit: u64) -> std::io::Result<()> {
        let _moving = d.moving.lock();
        let now = d.charged.load(Ordering::Acquire);
        let free = match &d.source {
            FreeSource::Statvfs => free_bytes(&d.dir)?,
            #[cfg(test)]
            FreeSource::Fixed(f) => f.load(Ordering::Acquire),
        };
        let previous = d.last_reading.swap(now, Ordering::AcqRel);
        d.counted_from.store(previous, Ordering::Release);
        d.free.store(free, Ordering::Release);
        tracing::trace!(free, estimate = d.estimate(), "disk reading");
        let size = d.reserve.size();
        if size > 0 {
            let in_place = d.reserve_in_place.load(Ordering::Acquire);
            if in_place && d.estimate() < size / 2 {
                self.release_locked(d, "free space is under half the reserve");
            } else if !in_place
                && d.estimate() >= limit.max(size).saturating_add(size.saturating_mul(2))
            {
                match d.reserve.ensure() {
                    Ok(()) => {
                        d.reserve_in_place.store(true, Ordering::Release);
                        // The reading predates the reserve.
                        d.free
                            .fetch_sub(size.min(d.free.load(Ordering::Acquire)), Ordering::AcqRel);
                        tracing::info!(bytes = size, "disk reserve in place");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not make the disk reserve");
                    }
                }
            }
        }
        self.update_disk(d, limit, true);
        Ok(())
    }

    /// Raises or clears the disk alarm from the gauge as it stands. Only a
    /// reading (`reading`) clears it, and only once the estimate is back
    /// over the floor by [`hysteresis`]: a publish held because it does
    /// not fit must not make the alarm flap.
    fn update_disk(&self, d: &DiskGauge, limit: u64, reading: bool) {
        let released = d.reserve.size() > 0 && !d.reserve_in_place.load(Ordering::Acquire);
        let est = d.estimate();
        let floor = d.floor(limit);
        let raised = if released || est < floor {
            true
        } else if self.raised() {
            !reading || est < floor.saturating_add(hysteresis(floor))
        } else {
            false
        };
        self.set(raised, est, limit);
    }

    /// Deletes the reserve (the caller holds `moving`).
    fn release_locked(&self, d: &DiskGauge, why: &str) {
        if !d.reserve_in_place.swap(false, Ordering::AcqRel) {
            return;
        }
        match d.reserve.release() {
            Ok(held) => {
                // Its space is free now, before the next reading says so.
                d.free.fetch_add(held, Ordering::AcqRel);
                tracing::warn!(
                    bytes = held,
                    "disk reserve released ({why}): its space is there for acks, rejects, purges \
                     and deletes; publishes that write to the store are held until there is room \
                     to make it again"
                );
            }
            Err(e) => tracing::error!(error = %e, "could not release the disk reserve"),
        }
    }

    /// Logs why the reserve could not be made at start, if it could not.
    fn explain_missing_reserve(&self, limit: u64) {
        let Gauge::FreeDisk(d) = &self.gauge else {
            return;
        };
        let size = d.reserve.size();
        if size == 0 || d.reserve_in_place.load(Ordering::Acquire) {
            return;
        }
        let needs = limit.max(size).saturating_add(size.saturating_mul(2));
        tracing::warn!(
            free = d.estimate(),
            needs,
            reserve = size,
            "no room for the disk reserve (--disk-reserve): publishes that write to the store \
             are held until the data directory's file system has the room"
        );
    }

    /// Releases the disk reserve now, if it is in place (a store that ran
    /// out of space, say: its restart then has room to start and settle).
    pub(crate) fn release_reserve(&self, why: &str) {
        if let Gauge::FreeDisk(d) = &self.gauge {
            let _moving = d.moving.lock();
            self.release_locked(d, why);
            self.update_disk(d, self.limit.load(Ordering::Relaxed), false);
        }
    }

    /// Counts `bytes` written to the store against the free space of the
    /// last reading, and raises the alarm at once if that takes the
    /// estimate under the floor (releasing the reserve under half its
    /// size). A no-op for the memory alarm.
    pub(crate) fn charge(&self, bytes: u64) {
        let Gauge::FreeDisk(d) = &self.gauge else {
            return;
        };
        if !self.on() {
            return;
        }
        d.charged
            .fetch_add(bytes.saturating_mul(WRITE_AMPLIFICATION), Ordering::AcqRel);
        let limit = self.limit.load(Ordering::Relaxed);
        let est = d.estimate();
        let size = d.reserve.size();
        if d.reserve_in_place.load(Ordering::Acquire) && est < size / 2 {
            let _moving = d.moving.lock();
            self.release_locked(d, "free space is under half the reserve");
            self.update_disk(d, limit, false);
        } else if est < d.floor(limit) && !self.raised() {
            let _moving = d.moving.lock();
            self.update_disk(d, limit, false);
        }
    }

    /// Whether a publish that writes `bytes` to the store may go ahead now:
    /// the alarm is clear and the estimate stays at or over the floor after
    /// it. A publish that may not waits in [`Alarm::wait_clear`], which
    /// also waits for the next reading.
    pub(crate) fn admits(&self, bytes: u64) -> bool {
        if self.raised() {
            return false;
        }
        let Gauge::FreeDisk(d) = &self.gauge else {
            return true;
        };
        if !self.on() {
            return true;
        }
        let after = d
            .estimate()
            .saturating_sub(bytes.saturating_mul(WRITE_AMPLIFICATION));
        after >= d.floor(self.limit.load(Ordering::Relaxed))
    }

    fn set(&self, raised: bool, reading: u64, limit: u64) {
        if raised == self.raised() {
            return;
        }
        let what = match (self.resource, raised) {
            (Resource::Disk, true) => {
                "disk space low (under --disk-free-limit, or the disk reserve is released): \
                 publishes that write to the store are held until space is freed"
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
    pub(crate) disk: Arc<Alarm>,
    /// Resident memory (`--memory-high-watermark`).
    pub memory: Arc<Alarm>,
}

impl Alarms {
    /// The alarms `config` asks for, read once. A broker that keeps nothing
    /// on disk has no disk alarm; a RAM size that cannot be read turns the
    /// memory alarm off (with a warning).
    pub(crate) fn new(config: &Config) -> Alarms {
        let (disk_limit, reserve) = if config.in_memory {
            (0, 0)
        } else {
            (config.disk_free_limit, config.disk_reserve)
        };
        let memory_limit = watermark_bytes(config.memory_high_watermark).unwrap_or_else(|e| {
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
            disk: Arc::new(Alarm::disk(config.data_dir.clone(), disk_limit, reserve)),
            memory: Arc::new(Alarm::memory(memory_limit)),
        };
        alarms.check();
        alarms.disk.explain_missing_reserve(disk_limit);
        alarms
    }

    fn check(&self) {
        self.disk.check();
        self.memory.check();
    }

    /// Reads every gauge every 100 ms, forever (run as a task).
    pub(crate) async fn run(self) {
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

/// This process's resident memory: `/proc/self/statm`'s second field, in
/// pages.
pub(crate) fn resident_bytes() -> std::io::Result<u64> {
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
pub(crate) fn total_memory() -> std::io::Result<u64> {
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
        let all = Alarm::disk(dir.path().to_path_buf(), u64::MAX, 0);
        all.check();
        assert!(all.raised());
        let off = Alarm::disk(dir.path().to_path_buf(), 0, 0);
        off.check();
        assert!(!off.raised());
        let one = Alarm::disk(dir.path().to_path_buf(), 1, 0);
        one.check();
        assert!(!one.raised());
    }

    const MIB: u64 = 1 << 20;

    /// A disk alarm on a temporary directory whose free space the test sets.
    fn fake_disk(
        limit: u64,
        reserve: u64,
        free: u64,
    ) -> (Alarm, Arc<AtomicU64>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = Arc::new(AtomicU64::new(free));
        let a = Alarm::disk_reading(
            dir.path().to_path_buf(),
            limit,
            reserve,
            FreeSource::Fixed(f.clone()),
        );
        a.check();
        (a, f, dir)
    }

    #[test]
    fn writes_between_readings_raise_the_disk_alarm_before_the_next_reading() {
        let (a, free, _dir) = fake_disk(16 * MIB, 0, 30 * MIB);
        assert!(!a.raised());
        assert!(a.admits(MIB), "1 MiB (counted three times) leaves 27 MiB");
        assert!(
            !a.admits(5 * MIB),
            "5 MiB counted three times would leave 15 MiB"
        );
        assert!(!a.raised(), "a publish that does not fit does not raise it");
        a.charge(3 * MIB);
        assert!(!a.raised(), "21 MiB left");
        a.charge(2 * MIB);
        assert!(a.raised(), "15 MiB left by the estimate");
        // The next reading still counts them (the store may not have
        // written them yet); the one after trusts the disk.
        a.check();
        assert!(a.raised());
        free.store(14 * MIB, Ordering::Release);
        a.check();
        assert!(a.raised());
        // Cleared only past the hysteresis (a quarter of the floor).
        free.store(17 * MIB, Ordering::Release);
        a.check();
        assert!(a.raised(), "17 MiB is under 16 + 4");
        free.store(21 * MIB, Ordering::Release);
        a.check();
        assert!(!a.raised());
    }

    #[test]
    fn the_reserve_is_released_under_half_its_size_and_made_again_with_room() {
        let (a, free, dir) = fake_disk(0, 4 * MIB, 30 * MIB);
        let file = dir.path().join(super::super::reserve::RESERVE_FILE);
        assert!(file.exists(), "made at the first reading");
        assert!(!a.raised());
        // The reserve is the floor while it is in place.
        free.store(30 * MIB - 4 * MIB, Ordering::Release);
        a.check();
        assert!(a.admits(7 * MIB), "26 - 21 = 5 MiB >= 4");
        assert!(!a.admits(8 * MIB));
        // Settling eats into the rest: at 2 MiB it goes.
        free.store(3 * MIB, Ordering::Release);
        a.check();
        assert!(a.raised(), "under the floor");
        assert!(file.exists());
        free.store(MIB, Ordering::Release);
        a.check();
        assert!(!file.exists(), "released under half its size");
        assert!(a.raised(), "held while the reserve is out");
        // Made again only with room for it and more: floor + 2 reserves.
        free.store(11 * MIB, Ordering::Release);
        a.check();
        assert!(!file.exists() && a.raised());
        free.store(12 * MIB, Ordering::Release);
        a.check();
        assert!(file.exists());
        assert!(!a.raised(), "8 MiB left over a floor of 4");
        // A store failure releases it at once.
        a.release_reserve("test");
        assert!(!file.exists() && a.raised());
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
    fn a_watermark_fraction_is_of_the_ram() {
        let ram = total_memory().expect("meminfo");
        let half = watermark_bytes(MemoryWatermark::Fraction(0.5)).expect("bytes");
        assert!(half > 0 && half <= ram / 2 + 1);
        assert_eq!(
            watermark_bytes(MemoryWatermark::Fraction(0.0)).ok(),
            Some(0)
        );
        assert_eq!(watermark_bytes(MemoryWatermark::Bytes(7)).ok(), Some(7));
    }
}
