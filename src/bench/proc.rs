//! The broker's resource use, read from `/proc` (Linux) when `--pid` names
//! a broker on this machine: CPU time (user + system) from
//! `/proc/<pid>/stat` and resident memory from `/proc/<pid>/status`,
//! sampled every [`SAMPLE_EVERY`] by a background task that keeps the peak.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

/// How often the RSS is sampled.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on
/// every mainstream Linux kernel and architecture).
const USER_HZ: f64 = 100.0;

/// User + system CPU time in clock ticks, from the text of
/// `/proc/<pid>/stat`.
pub(crate) fn parse_cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    // The command name (field 2) is in parentheses and may itself contain
    // spaces and parentheses: the fields that follow start after the last ')'.
    let (_, rest) = stat
        .rsplit_once(')')
        .ok_or_else(|| anyhow!("no ')' after the command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; `rest` starts at
    // field 3 (the state).
    let field = |n: usize, name: &str| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .ok_or_else(|| anyhow!("no {name} field"))?
            .parse::<u64>()
            .with_context(|| format!("bad {name} field"))
    };
    Ok(field(14, "utime")? + field(15, "stime")?)
}

/// A `<field>:  <n> kB` line of `/proc/<pid>/status`, in bytes.
pub(crate) fn parse_status_bytes(status: &str, field: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .ok_or_else(|| anyhow!("no {field} line"))?;
    let mut words = line.split_whitespace();
    let n: u64 = words
        .next()
        .ok_or_else(|| anyhow!("empty {field} line"))?
        .parse()
        .with_context(|| format!("bad {field} value"))?;
    let scale = match words.next() {
        Some("kB") | Some("KB") | Some("kb") => 1024,
        Some("mB") | Some("MB") => 1024 * 1024,
        None | Some("B") => 1,
        Some(unit) => return Err(anyhow!("unknown unit {unit:?} in the {field} line")),
    };
    Ok(n * scale)
}

fn read_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_cpu_ticks(&text).with_context(|| format!("parsing {path}"))
}

fn read_rss(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_bytes(&text, "VmRSS").with_context(|| format!("parsing {path}"))
}

/// The broker's use of CPU and memory over one stretch of the run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct BrokerUsage {
    /// Wall-clock seconds of the stretch.
    pub(crate) secs: f64,
    /// CPU-seconds used (user + system).
    pub(crate) cpu_secs: f64,
    /// `cpu_secs / secs` in percent of one core.
    pub(crate) cpu_percent: f64,
    /// RSS at the start, in bytes.
    pub(crate) start_rss_bytes: u64,
    /// Highest RSS sampled, in bytes.
    pub(crate) peak_rss_bytes: u64,
    /// Mean of the RSS samples (the start and end readings included), in
    /// bytes.
    pub(crate) avg_rss_bytes: u64,
    /// RSS readings the mean is over.
    pub(crate) rss_samples: u64,
    /// RSS at the end, in bytes.
    pub(crate) end_rss_bytes: u64,
}

impl BrokerUsage {
    /// The usage over two consecutive stretches.
    pub(crate) fn then(self, next: BrokerUsage) -> BrokerUsage {
        let secs = self.secs + next.secs;
        let cpu_secs = self.cpu_secs + next.cpu_secs;
        let rss_samples = self.rss_samples + next.rss_samples;
        let sum = u128::from(self.avg_rss_bytes) * u128::from(self.rss_samples)
            + u128::from(next.avg_rss_bytes) * u128::from(next.rss_samples);
        BrokerUsage {
            secs,
            cpu_secs,
            cpu_percent: percent(cpu_secs, secs),
            start_rss_bytes: self.start_rss_bytes,
            peak_rss_bytes: self.peak_rss_bytes.max(next.peak_rss_bytes),
            avg_rss_bytes: mean(sum, rss_samples),
            rss_samples,
            end_rss_bytes: next.end_rss_bytes,
        }
    }
}

/// `sum / n`, 0 for no samples.
fn mean(sum: u128, n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        u64::try_from(sum / u128::from(n)).unwrap_or(u64::MAX)
    }
}

fn percent(cpu: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        100.0 * cpu / secs
    } else {
        0.0
    }
}

/// The start of a stretch: see [`BrokerProbe::mark`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    at: Instant,
    cpu_ticks: u64,
    rss: u64,
}

/// What the sampler has seen since the last [`BrokerProbe::mark`].
#[derive(Debug, Default)]
struct Samples {
    peak: AtomicU64,
    /// Sum of the samples, in KiB (so that it cannot overflow).
    sum_kib: AtomicU64,
    count: AtomicU64,
}

impl Samples {
    fn add(&self, rss: u64) {
        self.peak.fetch_max(rss, Ordering::Relaxed);
        self.sum_kib.fetch_add(rss / 1024, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn reset(&self, rss: u64) {
        self.peak.store(rss, Ordering::Relaxed);
        self.sum_kib.store(0, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
    }
}

/// Watches the broker process: CPU time on demand, RSS sampled in the
/// background (the sampler stops when the probe is dropped).
#[derive(Debug)]
pub(crate) struct BrokerProbe {
    /// The broker's process id.
    pub(crate) pid: u32,
    samples: Arc<Samples>,
    sampler: tokio::task::JoinHandle<()>,
}

impl BrokerProbe {
    /// Checks that `pid` can be read and starts sampling its RSS. Must be
    /// called inside the runtime.
    pub(crate) fn start(pid: u32) -> anyhow::Result<BrokerProbe> {
        let rss = read_rss(pid).with_context(|| {
            format!("--pid {pid}: cannot read the broker's /proc entry (is it running on this machine?)")
        })?;
        read_cpu_ticks(pid).with_context(|| format!("--pid {pid}"))?;
        let samples = Arc::new(Samples::default());
        samples.reset(rss);
        let p = samples.clone();
        let sampler = tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                // A failed read (the process is gone) shows up in `usage`.
                if let Ok(Ok(rss)) = tokio::task::spawn_blocking(move || read_rss(pid)).await {
                    p.add(rss);
                }
            }
        });
        Ok(BrokerProbe {
            pid,
            samples,
            sampler,
        })
    }

    /// The process name from `/proc/<pid>/comm`, if readable.
    pub(crate) fn command_name(&self) -> Option<String> {
        std::fs::read_to_string(format!("/proc/{}/comm", self.pid))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Starts a stretch: takes the CPU time and resets the RSS peak and
    /// mean.
    pub(crate) fn mark(&self) -> anyhow::Result<Mark> {
        let rss = read_rss(self.pid).context("the broker process")?;
        self.samples.reset(rss);
        Ok(Mark {
            at: Instant::now(),
            cpu_ticks: read_cpu_ticks(self.pid).context("the broker process")?,
            rss,
        })
    }

    /// The usage since `mark`.
    pub(crate) fn usage_since(&self, mark: &Mark) -> anyhow::Result<BrokerUsage> {
        let ticks = read_cpu_ticks(self.pid).context("the broker process")?;
        let rss = read_rss(self.pid).context("the broker process")?;
        let secs = mark.at.elapsed().as_secs_f64();
        let cpu_secs = ticks.saturating_sub(mark.cpu_ticks) as f64 / USER_HZ;
        // The start and end readings count as samples too (a stretch
        // shorter than the sampling interval has no other).
        let rss_samples = self.samples.count.load(Ordering::Relaxed) + 2;
        let sum = u128::from(self.samples.sum_kib.load(Ordering::Relaxed)) * 1024
            + u128::from(mark.rss)
            + u128::from(rss);
        Ok(BrokerUsage {
            secs,
            cpu_secs,
            cpu_percent: percent(cpu_secs, secs),
            start_rss_bytes: mark.rss,
            peak_rss_bytes: self.samples.peak.load(Ordering::Relaxed).max(rss),
            avg_rss_bytes: mean(sum, rss_samples),
            rss_samples,
            end_rss_bytes: rss,
        })
    }
}

impl Drop for BrokerProbe {
    fn drop(&mut self) {
        self.sampler.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (sluice) S 1 4242 4242 0 -1 4194560 2573 0 0 0 \
        1234 567 0 0 20 0 9 0 123456 1073741824 5120 18446744073709551615 1 1 0 0 0 0 0 4096 17987 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn cpu_ticks_from_stat() {
        assert_eq!(parse_cpu_ticks(STAT).unwrap(), 1234 + 567);
    }

    #[test]
    fn cpu_ticks_with_a_strange_command_name() {
        let stat = "77 (tokio (rt) 1) R 1 77 77 0 -1 0 0 0 0 0 10 5 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), 15);
    }

    #[test]
    fn cpu_ticks_rejects_garbage() {
        assert!(parse_cpu_ticks("").is_err());
        assert!(parse_cpu_ticks("1 (x) S 1 2").is_err());
        assert!(parse_cpu_ticks("1 (x) S 1 2 3 4 5 6 7 8 9 10 ten 5").is_err());
    }

    #[test]
    fn rss_from_status() {
        let status = "Name:\tsluice\nUmask:\t0022\nState:\tS (sleeping)\n\
            VmPeak:\t  912344 kB\nVmHWM:\t   80412 kB\nVmRSS:\t   45312 kB\nRssAnon:\t   30000 kB\n";
        assert_eq!(parse_status_bytes(status, "VmRSS").unwrap(), 45312 * 1024);
        assert_eq!(parse_status_bytes(status, "VmHWM").unwrap(), 80412 * 1024);
        // "VmRSS" must not match "RssAnon" or a longer name.
        assert!(parse_status_bytes(status, "Rss").is_err());
        assert!(parse_status_bytes("Name:\tx\n", "VmRSS").is_err());
        assert!(parse_status_bytes("VmRSS:\tlots kB\n", "VmRSS").is_err());
    }

    #[test]
    fn usage_combines() {
        let a = BrokerUsage {
            secs: 1.0,
            cpu_secs: 0.5,
            cpu_percent: 50.0,
            start_rss_bytes: 10,
            peak_rss_bytes: 40,
            avg_rss_bytes: 20,
            rss_samples: 3,
            end_rss_bytes: 30,
        };
        let b = BrokerUsage {
            secs: 3.0,
            cpu_secs: 1.5,
            cpu_percent: 50.0,
            start_rss_bytes: 30,
            peak_rss_bytes: 35,
            avg_rss_bytes: 30,
            rss_samples: 2,
            end_rss_bytes: 20,
        };
        let c = a.then(b);
        assert_eq!(c.secs, 4.0);
        assert_eq!(c.cpu_secs, 2.0);
        assert_eq!(c.cpu_percent, 50.0);
        assert_eq!(
            (c.start_rss_bytes, c.peak_rss_bytes, c.end_rss_bytes),
            (10, 40, 20)
        );
        // (20 x 3 + 30 x 2) / 5
        assert_eq!((c.avg_rss_bytes, c.rss_samples), (24, 5));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_can_be_read() {
        let pid = std::process::id();
        assert!(read_rss(pid).unwrap() > 0);
        read_cpu_ticks(pid).unwrap();
    }
}
