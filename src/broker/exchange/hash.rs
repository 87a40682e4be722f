//! Consistent-hash exchange: each message goes to exactly one bound queue,
//! chosen by hashing its routing key (or, with `hash-header=`, one header's
//! value) onto a ring of points. A binding's key is its weight (a decimal
//! number, 1 when empty); a queue's weight is the sum of its bindings'
//! (at most [`MAX_WEIGHT`]), and it puts `weight ×` [`POINTS_PER_WEIGHT`]
//! points on the ring: its points number 0, 1, 2, ..., so a change of
//! weight adds or removes only the points past the smaller weight. A key
//! goes to the owner of the first point at or after its hash.
//!
//! The same key lands on the same queue while the bindings are unchanged
//! (across restarts too: the hash is fixed, not seeded), and adding a queue
//! moves only the keys that fall on its new points, about its share of
//! the total weight (the RabbitMQ consistent-hash exchange and LavinMQ model).

use std::sync::Arc;

use super::ByQueue;
use crate::protocol::command::Header;

/// Ring points per unit of weight: enough that three queues of equal
/// weight each take within a few percent of a third of the keys.
pub(crate) const POINTS_PER_WEIGHT: u32 = 160;
/// The largest weight a binding key may give.
pub(crate) const MAX_WEIGHT: u32 = 1000;

/// The weight a `hash` binding key gives: a decimal 1 to [`MAX_WEIGHT`]
/// (empty means 1); `None` for anything else.
pub(crate) fn weight(key: &[u8]) -> Option<u32> {
    if key.is_empty() {
        return Some(1);
    }
    let text = std::str::from_utf8(key).ok()?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>()
        .ok()
        .filter(|w| (1..=MAX_WEIGHT).contains(w))
}

/// The ring, rebuilt from the bindings whenever they change (binding is
/// rare, routing is per message).
#[derive(Debug, Default)]
pub(super) struct Hash {
    /// `hash-header=`: hash this header's value, not the routing key.
    header: Option<String>,
    /// (point, queue), sorted by point.
    ring: Vec<(u64, Arc<str>)>,
}

impl Hash {
    pub(super) fn new(header: Option<String>) -> Hash {
        Hash {
            header,
            ring: Vec::new(),
        }
    }

    /// The header it hashes, if not the routing key.
    pub(super) fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    /// Rebuilds the ring from every binding.
    pub(super) fn rebuild(&mut self, by_queue: &ByQueue) {
        self.ring.clear();
        for (queue, bindings) in by_queue {
            // The broker refuses bad weights at BIND; a stored one that is
            // not a number (it cannot be) counts as 1.
            let total: u32 = bindings
                .iter()
                .map(|b| weight(&b.key).unwrap_or(1))
                .fold(0, u32::saturating_add);
            add_points(&mut self.ring, queue, total.min(MAX_WEIGHT));
        }
        // Ties (vanishingly rare) are broken by queue name, so the ring does
        // not depend on the order the bindings were made in.
        self.ring.sort_unstable();
    }

    /// Appends the one queue a message with `key` and `headers` goes to (none
    /// when nothing is bound, or the hashed header is missing).
    pub(super) fn route(&self, key: &[u8], headers: &[Header], out: &mut Vec<Arc<str>>) {
        let Some(first) = self.ring.first() else {
            return;
        };
        let value: &[u8] = match &self.header {
            None => key,
            Some(name) => match headers.iter().find(|(k, _)| k == name) {
                Some((_, v)) => v,
                None => return,
            },
        };
        let h = hash(value, &[]);
        let i = self.ring.partition_point(|(p, _)| *p < h);
        let (_, q) = self.ring.get(i).unwrap_or(first);
        out.push(q.clone());
    }
}

fn add_points(ring: &mut Vec<(u64, Arc<str>)>, queue: &Arc<str>, weight: u32) {
    // Point `i` of a queue hashes `queue 0xff i`: a queue name (ASCII)
    // holds no 0xff, so two queues' points never hash the same bytes.
    for i in 0..weight * POINTS_PER_WEIGHT {
        let mut salt = [0xff; 5];
        salt[1..].copy_from_slice(&i.to_be_bytes());
        ring.push((hash(queue.as_bytes(), &salt), queue.clone()));
    }
}

/// FNV-1a over `a` then `b`, finished with the splitmix64 mixer so that
/// near keys spread over the whole ring. Fixed, so routing is stable
/// across restarts and releases.
fn hash(a: &[u8], b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in a.iter().chain(b) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::test_support::{binding, hbinding, routed};
    use super::super::Bindings;
    use super::*;
    use crate::protocol::command::HeaderMatch;

    fn hash_exchange(header: Option<&str>) -> Bindings {
        Bindings::new_hash(header.map(str::to_string))
    }

    fn owners(b: &Bindings, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let r = routed(b, format!("key-{i}"), &[]);
                assert_eq!(r.len(), 1, "exactly one queue");
                r[0].clone()
            })
            .collect()
    }

    #[test]
    fn weights_are_decimal_one_to_the_max() {
        assert_eq!(weight(b""), Some(1));
        assert_eq!(weight(b"3"), Some(3));
        assert_eq!(weight(b"1000"), Some(1000));
        for bad in [&b"0"[..], b"1001", b"-1", b"+2", b"two", b"1.5", b" 1"] {
            assert_eq!(weight(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn each_key_goes_to_exactly_one_queue_and_always_the_same() {
        let mut b = hash_exchange(None);
        assert!(routed(&b, "k", &[]).is_empty(), "nothing bound");
        for q in ["q1", "q2", "q3"] {
            b.add(binding(q, "1"));
        }
        let first = owners(&b, 300);
        assert_eq!(owners(&b, 300), first);
        // Built in another order, the ring is the same.
        let mut c = hash_exchange(None);
        for q in ["q3", "q1", "q2"] {
            c.add(binding(q, "1"));
        }
        assert_eq!(owners(&c, 300), first);
    }

    #[test]
    fn equal_weights_share_the_keys_and_weights_scale_the_share() {
        let mut b = hash_exchange(None);
        b.add(binding("a", "1"));
        b.add(binding("b", "1"));
        b.add(binding("c", "2"));
        let mut count: HashMap<String, usize> = HashMap::new();
        for q in owners(&b, 20_000) {
            *count.entry(q).or_default() += 1;
        }
        let share = |q: &str| count[q] as f64 / 20_000.0;
        assert!((0.2..0.3).contains(&share("a")), "{count:?}");
        assert!((0.2..0.3).contains(&share("b")), "{count:?}");
        assert!((0.43..0.57).contains(&share("c")), "{count:?}");
    }

    #[test]
    fn adding_a_queue_moves_only_about_its_share() {
        let mut b = hash_exchange(None);
        for q in ["q1", "q2", "q3"] {
            b.add(binding(q, "1"));
        }
        let before = owners(&b, 10_000);
        b.add(binding("q4", "1"));
        let after = owners(&b, 10_000);
        let moved: Vec<_> = before.iter().zip(&after).filter(|(x, y)| x != y).collect();
        // Every moved key moved to the new queue, and about a quarter moved.
        assert!(moved.iter().all(|(_, to)| to.as_str() == "q4"));
        let frac = moved.len() as f64 / 10_000.0;
        assert!((0.18..0.32).contains(&frac), "moved {frac}");
        // Removing it again puts every key back.
        b.remove(&binding("q4", "1"));
        assert_eq!(owners(&b, 10_000), before);
    }

    #[test]
    fn a_queue_name_and_a_weight_never_spell_another_binding() {
        // "q" with weight "1" and "q1" with the default weight "" are two
        // queues of weight 1: each takes about half of the keys, however
        // their bytes line up.
        for (a, b) in [(("q", "1"), ("q1", "")), (("s1", "12"), ("s11", "2"))] {
            let mut ring = hash_exchange(None);
            ring.add(binding(a.0, a.1));
            ring.add(binding(b.0, b.1));
            let total = weight(a.1.as_bytes()).unwrap() + weight(b.1.as_bytes()).unwrap();
            let want = f64::from(weight(b.1.as_bytes()).unwrap()) / f64::from(total);
            let got = owners(&ring, 4000)
                .iter()
                .filter(|q| q.as_str() == b.0)
                .count();
            let share = got as f64 / 4000.0;
            assert!(
                (want - 0.1..want + 0.1).contains(&share),
                "{a:?} {b:?}: {share}"
            );
        }
    }

    #[test]
    fn a_hash_header_routes_by_that_header_and_without_it_nowhere() {
        let mut b = hash_exchange(Some("user"));
        for q in ["q1", "q2", "q3"] {
            b.add(binding(q, ""));
        }
        let h = |v: &'static str| [("user", v)];
        let one = routed(&b, "ignored-1", &h("alice"));
        assert_eq!(one.len(), 1);
        assert_eq!(routed(&b, "ignored-2", &h("alice")), one);
        assert!(routed(&b, "key", &[]).is_empty());
    }

    #[test]
    fn raising_a_weight_only_moves_keys_to_that_queue() {
        let mut b = hash_exchange(None);
        for q in ["q1", "q2", "q3"] {
            b.add(binding(q, "1"));
        }
        let before = owners(&b, 6_000);
        // A second binding of q1 adds its weight: 1 + 1 = 2.
        b.add(hbinding("q1", "1", &[("a", "1")], HeaderMatch::All));
        let after = owners(&b, 6_000);
        let moved: Vec<_> = before.iter().zip(&after).filter(|(x, y)| x != y).collect();
        assert!(!moved.is_empty());
        assert!(moved.iter().all(|(_, to)| to.as_str() == "q1"), "{moved:?}");
    }
}
