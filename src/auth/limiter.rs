//! [`LoginLimiter`]: failed logins per user name and peer IP. After
//! [`MAX_FAILED_LOGINS`] failures for one user name from one IP within
//! [`FAILED_LOGIN_WINDOW`], `AUTH` as that user from that IP is refused
//! without checking the password until the window (counted from its first
//! failure) has passed; a success clears the pair. Counting per pair, not
//! per address, keeps one script that retries a wrong password on
//! 127.0.0.1 from locking every local operator out.
//! Memory is bounded: at most [`MAX_TRACKED_PEERS`] pairs are tracked,
//! expired ones are evicted first, then the oldest; a user name is kept
//! as a keyed hash, not as the (client-chosen, up to a line long) text.
//!
//! The clock is a parameter (`now`), so tests drive it.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed logins for one user from one IP that close that pair out for
/// the rest of the window.
pub(crate) const MAX_FAILED_LOGINS: u32 = 5;
/// The window the failures are counted in.
pub(crate) const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// (User, address) pairs tracked at once.
pub(crate) const MAX_TRACKED_PEERS: usize = 10_000;

/// A tracked pair: the peer's address and its user name's hash (two names
/// that collide share a count, which only makes the limit stricter).
type Key = (IpAddr, u64);

#[derive(Debug, Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
}

/// Failed logins per user name and peer IP.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    peers: HashMap<Key, Failures>,
    max_peers: usize,
    /// Hashes user names (keyed per process, so that no one can pick
    /// names that collide on purpose).
    names: RandomState,
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
            names: RandomState::new(),
        }
    }

    fn key(&self, user: &str, ip: IpAddr) -> Key {
        (ip, self.names.hash_one(user))
    }

    /// `Some(wait)` when `user` from `ip` must wait this long before
    /// trying again.
    pub(crate) fn blocked(&self, user: &str, ip: IpAddr, now: Instant) -> Option<Duration> {
        let f = self.peers.get(&self.key(user, ip))?;
        let end = f.since + FAILED_LOGIN_WINDOW;
        (f.count >= MAX_FAILED_LOGINS && now < end).then(|| end - now)
    }

    /// Records a failed login as `user` from `ip`.
    pub(crate) fn failed(&mut self, user: &str, ip: IpAddr, now: Instant) {
        let key = self.key(user, ip);
        if !self.peers.contains_key(&key) && self.peers.len() >= self.max_peers {
            self.evict(now);
        }
        let f = self.peers.entry(key).or_insert(Failures {
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

    /// Records a successful login as `user` from `ip`: the pair's failures
    /// are forgotten.
    pub(crate) fn succeeded(&mut self, user: &str, ip: IpAddr) {
        let key = self.key(user, ip);
        self.peers.remove(&key);
    }

    /// How many pairs are tracked.
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
                .map(|(key, _)| *key)
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
            assert_eq!(l.blocked("ops", ip(1), t0), None, "attempt {i}");
            l.failed("ops", ip(1), t0 + Duration::from_secs(u64::from(i)));
        }
        let t = t0 + Duration::from_secs(10);
        assert_eq!(l.blocked("ops", ip(1), t), Some(Duration::from_secs(50)));
        assert_eq!(
            l.blocked("ops", ip(2), t),
            None,
            "other peers are not affected"
        );
        assert_eq!(
            l.blocked("dev", ip(1), t),
            None,
            "nor other users of that peer"
        );
        assert_eq!(l.blocked("ops", ip(1), t0 + FAILED_LOGIN_WINDOW), None);
        // A failure after the window starts a new one.
        l.failed("ops", ip(1), t0 + FAILED_LOGIN_WINDOW);
        assert_eq!(l.blocked("ops", ip(1), t0 + FAILED_LOGIN_WINDOW), None);
    }

    #[test]
    fn failures_spread_over_more_than_a_window_do_not_block() {
        let mut l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..20u64 {
            l.failed("ops", ip(1), t0 + Duration::from_secs(20 * i));
            assert_eq!(
                l.blocked("ops", ip(1), t0 + Duration::from_secs(20 * i)),
                None
            );
        }
    }

    #[test]
    fn a_success_resets() {
        let mut l = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILED_LOGINS - 1 {
            l.failed("ops", ip(1), t0);
        }
        l.succeeded("ops", ip(1));
        l.failed("ops", ip(1), t0);
        assert_eq!(l.blocked("ops", ip(1), t0), None);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn memory_is_bounded_expired_entries_go_first_then_the_oldest() {
        let mut l = LoginLimiter::with_capacity(3);
        let t0 = Instant::now();
        for _ in 0..MAX_FAILED_LOGINS {
            l.failed("ops", ip(1), t0);
        }
        let later = t0 + Duration::from_secs(1);
        for _ in 0..MAX_FAILED_LOGINS {
            l.failed("ops", ip(2), later);
        }
        l.failed("ops", ip(3), later);
        l.failed("ops", ip(4), later);
        assert_eq!(l.len(), 3);
        assert_eq!(
            l.blocked("ops", ip(1), later),
            None,
            "the oldest was evicted"
        );
        assert!(l.blocked("ops", ip(2), later).is_some());
        // Once expired, entries are dropped before anything live.
        let much_later = later + FAILED_LOGIN_WINDOW;
        l.failed("ops", ip(5), much_later);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn one_user_locked_out_leaves_the_others_of_its_address_alone() {
        let mut l = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILED_LOGINS {
            l.failed("script", ip(1), t0);
        }
        assert!(l.blocked("script", ip(1), t0).is_some());
        assert_eq!(l.blocked("ops", ip(1), t0), None);
        // A success of one user clears that user only.
        l.succeeded("ops", ip(1));
        assert!(l.blocked("script", ip(1), t0).is_some());
    }
}
