//! Fanout exchange: a message goes to every bound queue, whatever its routing
//! key and headers. The per-queue binding set of [`super::Bindings`] already
//! holds each bound queue once, so fanout needs no index of its own.

use std::sync::Arc;

use super::ByQueue;

/// Appends every bound queue, each once.
pub(super) fn route(by_queue: &ByQueue, out: &mut Vec<Arc<str>>) {
    out.extend(by_queue.keys().cloned());
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{binding, bindings, hbinding, routed};
    use crate::protocol::command::{ExchangeKind, HeaderMatch};

    #[test]
    fn routes_to_every_queue_whatever_the_key() {
        let mut b = bindings(ExchangeKind::Fanout);
        b.add(binding("q1", ""));
        b.add(binding("q2", "only-this"));
        b.add(hbinding("q3", "", &[("x", "1")], HeaderMatch::Any));
        for key in ["", "only-this", "anything.else", "#"] {
            assert_eq!(routed(&b, key, &[]), ["q1", "q2", "q3"], "key {key:?}");
        }
    }

    #[test]
    fn queue_with_several_bindings_is_routed_once() {
        let mut b = bindings(ExchangeKind::Fanout);
        assert!(b.add(binding("q", "a")));
        assert!(b.add(binding("q", "b")));
        assert!(b.add(binding("q", "")));
        assert_eq!(b.len(), 3);
        assert_eq!(routed(&b, "a", &[]), ["q"]);
    }

    #[test]
    fn no_bindings_routes_nowhere() {
        let b = bindings(ExchangeKind::Fanout);
        assert!(routed(&b, "k", &[]).is_empty());
    }

    #[test]
    fn queue_leaves_when_its_last_binding_goes() {
        let mut b = bindings(ExchangeKind::Fanout);
        b.add(binding("q", "a"));
        b.add(binding("q", "b"));
        b.add(binding("r", ""));
        assert!(b.remove(&binding("q", "a")));
        assert_eq!(routed(&b, "", &[]), ["q", "r"]);
        assert!(b.remove(&binding("q", "b")));
        assert_eq!(routed(&b, "", &[]), ["r"]);
    }
}
