//! Direct exchange: a message goes to the queues bound with a binding key
//! equal to its routing key (exact: byte for byte, whatever the bytes, so
//! case-sensitive and not limited to UTF-8). The index maps each
//! binding key to its queues, so a publish costs one hash lookup whatever
//! the number of bindings.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::{Binding, QueueRefs};

/// Binding key → the queues bound with it. The key is the binding's own
/// `Bytes` (shared, not copied).
#[derive(Debug, Default)]
pub(super) struct Direct {
    routes: HashMap<Bytes, QueueRefs>,
}

impl Direct {
    /// Indexes a binding that [`super::Bindings`] has just added.
    pub(super) fn add(&mut self, binding: &Binding) {
        if let Some(queues) = self.routes.get_mut(&binding.key) {
            queues.add(&binding.queue);
            return;
        }
        let mut queues = QueueRefs::default();
        queues.add(&binding.queue);
        self.routes.insert(binding.key.clone(), queues);
    }

    /// Unindexes a binding that [`super::Bindings`] has just removed, dropping
    /// the key's entry when its last queue goes.
    pub(super) fn remove(&mut self, binding: &Binding) {
        let Some(queues) = self.routes.get_mut(&binding.key) else {
            debug_assert!(false, "direct index lacks key {:?}", binding.key);
            return;
        };
        let found = queues.remove(&binding.queue);
        debug_assert!(found, "direct index lacks queue {:?}", binding.queue);
        if queues.is_empty() {
            self.routes.remove(&binding.key);
        }
    }

    /// Appends the queues bound with exactly `key`, each once.
    pub(super) fn route(&self, key: &[u8], out: &mut Vec<Arc<str>>) {
        if let Some(queues) = self.routes.get(key) {
            queues.push_all(out);
        }
    }

    /// Number of distinct binding keys (tests check that unbinding frees them).
    #[cfg(test)]
    pub(super) fn keys(&self) -> usize {
        self.routes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{binding, bindings, hbinding, routed};
    use super::super::Index;
    use crate::protocol::command::{ExchangeKind, HeaderMatch};

    fn direct() -> super::super::Bindings {
        bindings(ExchangeKind::Direct)
    }

    #[test]
    fn routes_to_queue_bound_with_equal_key() {
        let mut b = direct();
        b.add(binding("q1", "jobs"));
        b.add(binding("q2", "logs"));
        assert_eq!(routed(&b, "jobs", &[]), ["q1"]);
        assert_eq!(routed(&b, "logs", &[]), ["q2"]);
    }

    #[test]
    fn key_match_is_case_sensitive_and_exact() {
        let mut b = direct();
        b.add(binding("q", "Jobs"));
        assert!(routed(&b, "jobs", &[]).is_empty());
        assert!(routed(&b, "Jobs.x", &[]).is_empty());
        assert!(routed(&b, "Job", &[]).is_empty());
        assert_eq!(routed(&b, "Jobs", &[]), ["q"]);
    }

    #[test]
    fn unknown_key_routes_nowhere() {
        let mut b = direct();
        b.add(binding("q", "a"));
        assert!(routed(&b, "b", &[]).is_empty());
        assert!(routed(&b, "", &[]).is_empty());
    }

    #[test]
    fn several_queues_on_one_key_each_get_it() {
        let mut b = direct();
        for q in ["q1", "q2", "q3"] {
            b.add(binding(q, "k"));
        }
        assert_eq!(routed(&b, "k", &[]), ["q1", "q2", "q3"]);
    }

    #[test]
    fn queue_bound_twice_on_one_key_is_routed_once() {
        let mut b = direct();
        assert!(b.add(binding("q", "k")));
        assert!(b.add(hbinding("q", "k", &[("x", "1")], HeaderMatch::All)));
        assert_eq!(b.len(), 2);
        assert_eq!(routed(&b, "k", &[]), ["q"]);
        // The queue stays routable until its last binding on the key goes.
        assert!(b.remove(&binding("q", "k")));
        assert_eq!(routed(&b, "k", &[]), ["q"]);
        assert!(b.remove(&hbinding("q", "k", &[("x", "1")], HeaderMatch::All)));
        assert!(routed(&b, "k", &[]).is_empty());
    }

    #[test]
    fn empty_binding_key_matches_empty_routing_key_only() {
        let mut b = direct();
        b.add(binding("q", ""));
        assert_eq!(routed(&b, "", &[]), ["q"]);
        assert!(routed(&b, "x", &[]).is_empty());
    }

    #[test]
    fn wildcards_are_literal_in_direct_keys() {
        let mut b = direct();
        b.add(binding("q", "a.*"));
        b.add(binding("r", "#"));
        assert!(routed(&b, "a.b", &[]).is_empty());
        assert!(routed(&b, "x", &[]).is_empty());
        assert_eq!(routed(&b, "a.*", &[]), ["q"]);
        assert_eq!(routed(&b, "#", &[]), ["r"]);
    }

    #[test]
    fn keys_are_bytes_not_text() {
        let mut b = direct();
        b.add(binding("latin1", b"caf\xe9"));
        b.add(binding("utf8", "caf\u{e9}"));
        b.add(binding("broken", b"\xc3\x28"));
        assert_eq!(routed(&b, b"caf\xe9", &[]), ["latin1"]);
        assert_eq!(routed(&b, "caf\u{e9}", &[]), ["utf8"]);
        assert_eq!(routed(&b, b"\xc3\x28", &[]), ["broken"]);
        assert!(routed(&b, b"\xc3", &[]).is_empty());
        assert!(routed(&b, "\u{fffd}(", &[]).is_empty());
        assert!(b.remove(&binding("broken", b"\xc3\x28")));
        assert!(routed(&b, b"\xc3\x28", &[]).is_empty());
    }

    #[test]
    fn message_headers_are_ignored() {
        let mut b = direct();
        b.add(hbinding("q", "k", &[("x", "1")], HeaderMatch::All));
        assert_eq!(routed(&b, "k", &[("x", "2")]), ["q"]);
        assert!(routed(&b, "other", &[("x", "1")]).is_empty());
    }

    #[test]
    fn unbinding_last_queue_frees_the_key() {
        let mut b = direct();
        b.add(binding("q1", "k"));
        b.add(binding("q2", "k"));
        b.add(binding("q1", "j"));
        assert!(b.remove(&binding("q1", "k")));
        assert_eq!(routed(&b, "k", &[]), ["q2"]);
        assert_eq!(b.remove_queue("q2"), 1);
        assert_eq!(b.remove_queue("q1"), 1);
        assert!(b.is_empty());
        match &b.index {
            Index::Direct(direct) => assert_eq!(direct.keys(), 0),
            other => panic!("not a direct index: {other:?}"),
        }
    }
}
