//! [`History`]: the broker's recent past, for the dashboard's charts. Two
//! fixed-size rings of [`Point`]s, filled by the sampler
//! ([`Sampler`](super::stats::Sampler)) from the counters it reads anyway:
//! one point a second for the last ten minutes, and one every five
//! seconds for the last hour. A point holds the publish, deliver and ack
//! rates over the time since the ring's previous point, and the depth,
//! unacked deliveries and resident memory at that moment. No database:
//! about 1,300 points of 56 bytes, whatever the number of queues (queues
//! keep only their last minute, in the sampler's own rings).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Points in the fine ring (one a sample interval: ten minutes).
pub(crate) const RECENT_POINTS: usize = 600;
/// Sample intervals between two points of the coarse ring.
pub(crate) const HOUR_EVERY: u64 = 5;
/// Points in the coarse ring (one an [`HOUR_EVERY`] intervals: an hour).
pub(crate) const HOUR_POINTS: usize = 720;

/// The counters a point's rates come from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    /// When they were read.
    pub(crate) at: Instant,
    /// Wall clock then (Unix ms), for the charts' time axis.
    pub(crate) unix_ms: u64,
    /// `PUB`s accepted since start.
    pub(crate) published: u64,
    /// Deliveries since start.
    pub(crate) delivered: u64,
    /// Acks since start.
    pub(crate) acked: u64,
    /// Messages waiting, all queues.
    pub(crate) messages: u64,
    /// Deliveries not settled, all queues.
    pub(crate) unacked: u64,
    /// Resident memory, when known.
    pub(crate) memory: Option<u64>,
}

/// One point of a ring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    /// Unix ms.
    pub(crate) t: u64,
    /// Publishes per second since the previous point.
    pub(crate) publish: f64,
    /// Deliveries per second since the previous point.
    pub(crate) deliver: f64,
    /// Acks per second since the previous point.
    pub(crate) ack: f64,
    /// Messages waiting.
    pub(crate) messages: u64,
    /// Deliveries not settled.
    pub(crate) unacked: u64,
    /// Resident memory in bytes (0 where unknown).
    pub(crate) memory: u64,
}

/// One ring: its points, oldest first, and the reading the next point's
/// rates start from.
#[derive(Debug)]
struct Ring {
    points: VecDeque<Point>,
    cap: usize,
    last: Option<Reading>,
}

impl Ring {
    fn new(cap: usize) -> Ring {
        Ring {
            points: VecDeque::with_capacity(cap),
            cap,
            last: None,
        }
    }

    fn record(&mut self, r: Reading) {
        let Some(prev) = self.last.replace(r) else {
            return;
        };
        let secs = r.at.saturating_duration_since(prev.at).as_secs_f64();
        let rate = |from: u64, to: u64| {
            if secs <= 0.0 {
                0.0
            } else {
                to.saturating_sub(from) as f64 / secs
            }
        };
        if self.points.len() == self.cap {
            self.points.pop_front();
        }
        self.points.push_back(Point {
            t: r.unix_ms,
            publish: rate(prev.published, r.published),
            deliver: rate(prev.delivered, r.delivered),
            ack: rate(prev.acked, r.acked),
            messages: r.messages,
            unacked: r.unacked,
            memory: r.memory.unwrap_or(0),
        });
    }

    fn series(&self, interval: Duration) -> Series {
        let p = &self.points;
        Series {
            interval_s: interval.as_secs(),
            t: p.iter().map(|p| p.t).collect(),
            publish: p.iter().map(|p| round(p.publish)).collect(),
            deliver: p.iter().map(|p| round(p.deliver)).collect(),
            ack: p.iter().map(|p| round(p.ack)).collect(),
            messages: p.iter().map(|p| p.messages).collect(),
            unacked: p.iter().map(|p| p.unacked).collect(),
            memory: p.iter().map(|p| p.memory).collect(),
        }
    }
}

/// A rate with two decimals (the JSON stays short).
fn round(r: f64) -> f64 {
    (r * 100.0).round() / 100.0
}

/// A ring as the API serves it: one array per quantity, oldest first.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct Series {
    /// Seconds between two points.
    pub(crate) interval_s: u64,
    /// Unix ms of each point.
    pub(crate) t: Vec<u64>,
    /// Publishes per second.
    pub(crate) publish: Vec<f64>,
    /// Deliveries per second.
    pub(crate) deliver: Vec<f64>,
    /// Acks per second.
    pub(crate) ack: Vec<f64>,
    /// Messages waiting.
    pub(crate) messages: Vec<u64>,
    /// Deliveries not settled.
    pub(crate) unacked: Vec<u64>,
    /// Resident memory (bytes; 0 where unknown).
    pub(crate) memory: Vec<u64>,
}

/// Both rings (see the module docs).
#[derive(Debug)]
pub(crate) struct History {
    recent: Ring,
    hour: Ring,
    readings: u64,
}

impl Default for History {
    fn default() -> Self {
        History {
            recent: Ring::new(RECENT_POINTS),
            hour: Ring::new(HOUR_POINTS),
            readings: 0,
        }
    }
}

impl History {
    /// Records one reading (the sampler's, once an interval).
    pub(crate) fn record(&mut self, r: Reading) {
        self.recent.record(r);
        if self.readings.is_multiple_of(HOUR_EVERY) {
            self.hour.record(r);
        }
        self.readings += 1;
    }

    /// The fine ring, its points `interval` apart.
    pub(crate) fn recent(&self, interval: Duration) -> Series {
        self.recent.series(interval)
    }

    /// The coarse ring, its points `interval` × [`HOUR_EVERY`] apart.
    pub(crate) fn hour(&self, interval: Duration) -> Series {
        self.hour.series(interval * HOUR_EVERY as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(t0: Instant, s: u64) -> Reading {
        Reading {
            at: t0 + Duration::from_secs(s),
            unix_ms: 1_000_000 + s * 1000,
            published: s * 10,
            delivered: s * 4,
            acked: s,
            messages: s,
            unacked: 2 * s,
            memory: Some(100 + s),
        }
    }

    #[test]
    fn points_carry_rates_since_the_previous_point_and_the_rings_are_bounded() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.record(reading(t0, 0));
        assert!(h.recent(Duration::from_secs(1)).t.is_empty(), "no rate yet");
        for s in 1..=4000 {
            h.record(reading(t0, s));
        }
        let recent = h.recent(Duration::from_secs(1));
        assert_eq!(recent.t.len(), RECENT_POINTS);
        assert_eq!(recent.t.last(), Some(&(1_000_000 + 4000 * 1000)));
        assert!(recent.publish.iter().all(|&r| r == 10.0));
        assert!(recent.ack.iter().all(|&r| r == 1.0));
        assert_eq!(recent.unacked.last(), Some(&8000));
        assert_eq!(recent.memory.last(), Some(&4100));
        let hour = h.hour(Duration::from_secs(1));
        assert_eq!(hour.interval_s, 5);
        assert_eq!(hour.t.len(), HOUR_POINTS);
        // Points of the coarse ring are five readings apart; the rates
        // are per second all the same.
        assert_eq!(hour.t[1] - hour.t[0], 5000);
        assert!(hour.deliver.iter().all(|&r| r == 4.0));
    }

    #[test]
    fn a_counter_going_backwards_reads_as_no_events() {
        let t0 = Instant::now();
        let mut h = History::default();
        h.record(reading(t0, 10));
        h.record(reading(t0, 11));
        let mut r = reading(t0, 12);
        r.published = 0;
        h.record(r);
        assert_eq!(h.recent(Duration::from_secs(1)).publish, vec![10.0, 0.0]);
    }
}
