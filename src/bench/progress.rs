//! The progress bar (`indicatif`), drawn on stderr only when stderr is a
//! terminal and the report is text: a ticker task refreshes it from the
//! shared [`Counters`] every [`REFRESH`], so the clients never touch it.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::worker::Counters;

/// How often the bar is redrawn.
const REFRESH: Duration = Duration::from_millis(100);

/// Which counter the bar follows.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Track {
    /// Confirmed publishes (a phase without consumers).
    Confirmed,
    /// Deliveries.
    Delivered,
}

/// What a phase's bar shows: progress towards a known total, or, when the
/// phase publishes for a fixed time, the time elapsed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Goal {
    /// This many events of the tracked counter.
    Count(u64),
    /// Publishing for this long (then the tail is drained).
    Time(Duration),
}

/// Whether bars should be drawn at all: stderr is a terminal and the
/// report is not JSON.
pub(crate) fn wanted(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// A phase's progress bar; cleared when dropped.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts a bar labelled `label` (a no-op when `enabled` is false).
    /// Must be called inside the runtime.
    pub(crate) fn start(
        enabled: bool,
        label: &'static str,
        track: Track,
        goal: Goal,
        counters: Arc<Counters>,
    ) -> Progress {
        if !enabled {
            return Progress {
                bar: None,
                ticker: None,
            };
        }
        let (len, template) = match goal {
            Goal::Count(n) => (
                n,
                "{prefix:>9} {elapsed_precise} [{bar:32}] {percent:>3}% {msg}",
            ),
            Goal::Time(d) => (
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                "{prefix:>9} {elapsed_precise} [{bar:32}] {msg}",
            ),
        };
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label);
        let b = bar.clone();
        let ticker = tokio::spawn(async move {
            let start = Instant::now();
            let mut every = tokio::time::interval(REFRESH);
            let mut last = (start, 0u64);
            let mut rate = 0.0;
            loop {
                every.tick().await;
                let now = Instant::now();
                let n = match track {
                    Track::Confirmed => counters.confirmed.load(Ordering::Relaxed),
                    Track::Delivered => counters.delivered.load(Ordering::Relaxed),
                };
                let dt = now.duration_since(last.0).as_secs_f64();
                if dt >= 0.5 {
                    rate = n.saturating_sub(last.1) as f64 / dt;
                    last = (now, n);
                }
                match goal {
                    Goal::Count(_) => b.set_position(n),
                    Goal::Time(_) => b.set_position(
                        u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                    ),
                }
                b.set_message(format!("{:>9.0}/s  {}", rate, counters.summary()));
            }
        });
        Progress {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
