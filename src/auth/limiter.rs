//! [`LoginLimiter`]: failed logins per peer IP. After
//! [`MAX_FAILED_LOGINS`] failures within [`FAILED_LOGIN_WINDOW`], `AUTH`
//! from that IP is refused without checking the password until the window
//! (counted from its first failure) has passed; a success clears the IP.
//! Memory is bounded: at most [`MAX_TRACKED_PEERS`] addresses are tracked,
//! expired ones are evicted first, then the oldest.
//!
//! The clock is a parameter (`now`), so tests drive it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed logins from one IP that close it out for the rest of the window.
pub(crate) const MAX_FAILED_LOGINS: u32 = 5;
/// The window the failures are counted in.
pub(crate) const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once.
pub(crate) const MAX_TRACKED_PEERS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
}

/// Failed logins per peer IP.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    peers: HashMap<IpAddr, Failures>,
    max_peers: usize,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter::with_capacity(MAX_TRACKED_PEERS)
    }
}

impl LoginLimiter {
    /// A limiter tracking at most `max_peers` addresses.
    pub(crate) fn with_capacity(max_peers: usize) -> LoginLimiter {
        LoginLimiter {
            peers: HashMap::new(),
            max_peers: max_peers.max(1),
        }
    }

    /// `Some(wait)` when `ip` must wait this long before trying again.
    pub(crate) fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let f = self.peers.get(&ip)?;
        let end = f.since + FAILED_LOGIN_WINDOW;
        (f.count >= MAX_FAILED_LOGINS && now < end).then(|| end - now)
    }

    /// Records a failed login from `ip`.
    pub(crate) fn failed(&mut self, ip: IpAddr, now: Instant) {
        if !self.peers.contains_key(&ip) && self.peers.len() >= self.max_peers {
            self.evict(now);
        }
        let f = self.peers.entry(ip).or_insert(Failures {
            since: now,
            count: 0,
        });
        if now >= f.since + FAILED_LOGIN_WINDOW {
            *f = Failures {
                since: now,
                count: 0,
            };
        }
        f.count = f.count.saturating_add(1);
    }

    /// Records a successful login from `ip`: its failures are forgotten.
    pub(crate) fn succeeded(&mut self, ip: IpAddr) {
        self.peers.remove(&ip);
    }

    /// How many addresses are tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// Makes room for one more: drops expired entries, else the oldest.
    fn evict(&mut self, now: Instant) {
        self.peers
            .retain(|_, f| now < f.since + FAILED_LOGIN_WINDOW);
        if self.peers.len() >= self.max_peers {
            if let Some(oldest) = self
                .peers
                .iter()
                .min_by_key(|(_, f)| f.since)
                .map(|(ip, _)| *ip)
            {
                self.peers.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn five_failures_block_until_the_window_passes() {
        let mut l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..MAX_FAILED_LOGINS {
            assert_eq!(l.blocked(ip(1), t0), None, "attempt {i}");
            l.failed(ip(1), t0 + Duration::from_secs(u64::from(i)));
        }
        let t = t0 + Duration::from_secs(10);
        assert_eq!(l.blocked(ip(1), t), Some(Duration::from_secs(50)));
        assert_eq!(l.blocked(ip(2), t), None, "other peers are not affected");
        assert_eq!(l.blocked(ip(1), t0 + FAILED_LOGIN_WINDOW), None);
        // A failure after the window starts a new one.
        l.failed(ip(1), t0 + FAILED_LOGIN_WINDOW);
        assert_eq!(l.blocked(ip(1), t0 + FAILED_LOGIN_WINDOW), None);
    }

    #[test]
    fn failures_spread_over_more_than_a_window_do_not_block() {
        let mut l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..20u64 {
            l.failed(ip(1), t0 + Duration::from_secs(20 * i));
            assert_eq!(l.blocked(ip(1), t0 + Duration::from_secs(20 * i)), None);
        }
    }

    #[test]
    fn a_success_resets() {
        let mut l = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILED_LOGINS - 1 {
            l.failed(ip(1), t0);
        }
        l.succeeded(ip(1));
        l.failed(ip(1), t0);
        assert_eq!(l.blocked(ip(1), t0), None);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn memory_is_bounded_expired_entries_go_first_then_the_oldest() {
        let mut l = LoginLimiter::with_capacity(3);
        let t0 = Instant::now();
        for _ in 0..MAX_FAILED_LOGINS {
            l.failed(ip(1), t0);
        }
        let later = t0 + Duration::from_secs(1);
        for _ in 0..MAX_FAILED_LOGINS {
            l.failed(ip(2), later);
        }
        l.failed(ip(3), later);
        l.failed(ip(4), later);
        assert_eq!(l.len(), 3);
        assert_eq!(l.blocked(ip(1), later), None, "the oldest was evicted");
        assert!(l.blocked(ip(2), later).is_some());
        // Once expired, entries are dropped before anything live.
        let much_later = later + FAILED_LOGIN_WINDOW;
        l.failed(ip(5), much_later);
        assert_eq!(l.len(), 1);
    }
}
