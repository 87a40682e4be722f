//! Topic exchange: binding keys are patterns over dot-separated words, where
//! the whole word `*` matches exactly one word and `#` zero or more (RabbitMQ
//! semantics). This file owns the trie that makes routing cost follow the
//! routing key, not the number of bindings (the `sublist.go` of sluice).
//!
//! # Words
//!
//! A key is any bytes (not only UTF-8), split on every `.` byte, so `a..b`
//! has three words (`a`, ``, `b`) and `a.` two; the empty key has no words
//! at all. Hence `#` matches `""` but `*` does not. `*` and `#` are special
//! only as whole words: `a*` is a literal. Words compare byte for byte.
//!
//! # The trie
//!
//! Each node has a child per literal word, a `*` child and a `#` child, and the
//! queues whose binding key ends there. Binding `a.*.#` walks root → `a` → `*`
//! → `#`. Routing walks the key's words from the root along the literal and
//! `*` edges; a `#` node reached at word `i` may swallow words `i..j` for any
//! `j`, so it is tried at every later position.
//!
//! # Cost
//!
//! Routing visits each (node, position) pair at most once: for every `#` node
//! it remembers the earliest position it was entered at, and later entries
//! at or after it stop at once (they would redo the same work). So the cost is
//! bounded by (trie nodes the key reaches) × (words + 1), never exponential
//! in the number of `#`, and independent of how many bindings sit elsewhere.
//! The walk uses an explicit stack, not recursion, so a long key cannot
//! overflow the thread's stack.
//!
//! Unbinding prunes the nodes that no longer lead to any queue, so bind/unbind
//! churn does not leak memory.

use std::collections::HashMap;
use std::sync::Arc;

use super::{dedup_tail, Binding, QueueRefs};

/// The words of a key: none for `""`, else every `.`-separated part.
fn words(key: &[u8]) -> impl Iterator<Item = &[u8]> {
    (!key.is_empty())
        .then(|| key.split(|&b| b == b'.'))
        .into_iter()
        .flatten()
}

/// An edge out of a trie node, as a binding-key word selects it.
#[derive(Debug, Clone, Copy)]
enum Edge<'a> {
    Word(&'a [u8]),
    Star,
    Hash,
}

impl<'a> Edge<'a> {
    fn of(word: &'a [u8]) -> Self {
        match word {
            b"*" => Edge::Star,
            b"#" => Edge::Hash,
            literal => Edge::Word(literal),
        }
    }
}

/// One trie node: the binding-key prefix spelt by the path from the root.
#[derive(Debug, Default)]
struct Node {
    words: HashMap<Box<[u8]>, Node>,
    star: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    /// Queues whose binding key ends at this node.
    queues: QueueRefs,
}

impl Node {
    fn child(&self, edge: Edge<'_>) -> Option<&Node> {
        match edge {
            Edge::Word(word) => self.words.get(word),
            Edge::Star => self.star.as_deref(),
            Edge::Hash => self.hash.as_deref(),
        }
    }

    fn child_mut(&mut self, edge: Edge<'_>) -> Option<&mut Node> {
        match edge {
            Edge::Word(word) => self.words.get_mut(word),
            Edge::Star => self.star.as_deref_mut(),
            Edge::Hash => self.hash.as_deref_mut(),
        }
    }

    /// The child along `edge`, created if missing; true when created.
    fn child_or_insert(&mut self, edge: Edge<'_>) -> (&mut Node, bool) {
        match edge {
            Edge::Word(word) => match self.words.entry(Box::from(word)) {
                std::collections::hash_map::Entry::Occupied(child) => (child.into_mut(), false),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    (slot.insert(Node::default()), true)
                }
            },
            Edge::Star => {
                let created = self.star.is_none();
                (self.star.get_or_insert_with(Box::default), created)
            }
            Edge::Hash => {
                let created = self.hash.is_none();
                (self.hash.get_or_insert_with(Box::default), created)
            }
        }
    }

    fn remove_child(&mut self, edge: Edge<'_>) {
        match edge {
            Edge::Word(word) => {
                self.words.remove(word);
            }
            Edge::Star => self.star = None,
            Edge::Hash => self.hash = None,
        }
    }

    fn child_count(&self) -> usize {
        self.words.len() + usize::from(self.star.is_some()) + usize::from(self.hash.is_some())
    }
}

/// The topic index: a trie of binding keys.
#[derive(Debug, Default)]
pub(super) struct Topic {
    root: Node,
    /// Nodes below the root (the root always exists).
    nodes: usize,
}

/// A pending step of the routing walk. Positions are byte offsets into the
/// routing key where the next word starts; `end` (one past the key) means
/// every word has been consumed.
#[derive(Debug, Clone, Copy)]
enum Step<'n> {
    /// Match the words from `pos` on against `node`'s edges (or, at the end,
    /// collect `node`'s queues).
    Visit(&'n Node, usize),
    /// `#` node entered at `pos`: it may swallow any number of words first.
    Hash(&'n Node, usize),
}

impl Topic {
    /// Indexes a binding that [`super::Bindings`] has just added.
    pub(super) fn add(&mut self, binding: &Binding) {
        let mut node = &mut self.root;
        for word in words(&binding.key) {
            let (child, created) = node.child_or_insert(Edge::of(word));
            self.nodes += usize::from(created);
            node = child;
        }
        node.queues.add(&binding.queue);
    }

    /// Unindexes a binding that [`super::Bindings`] has just removed, pruning
    /// the nodes that lead nowhere afterwards.
    pub(super) fn remove(&mut self, binding: &Binding) {
        let removed = self.unindex(&binding.key, &binding.queue);
        debug_assert!(removed, "topic index lacks {binding:?}");
    }

    /// Drops one reference to `queue` at the node of `key`; false if absent.
    fn unindex(&mut self, key: &[u8], queue: &str) -> bool {
        // First pass, read-only: find the node, and the deepest node above it
        // that must stay (the root, or one holding queues or other children).
        // If the target ends up empty, the edge below that node is cut, which
        // frees exactly the single-child chain down to the target.
        let mut keep = 0;
        let mut depth = 0;
        let mut node = &self.root;
        for word in words(key) {
            if depth == 0 || !node.queues.is_empty() || node.child_count() > 1 {
                keep = depth;
            }
            match node.child(Edge::of(word)) {
                Some(child) => node = child,
                None => return false,
            }
            depth += 1;
        }
        let refs = node.queues.count(queue);
        if refs == 0 {
            return false;
        }
        let target_empties = refs == 1 && node.queues.len() == 1 && node.child_count() == 0;

        let mut path = words(key);
        if target_empties && depth > 0 {
            let parent = descend(&mut self.root, path.by_ref().take(keep));
            match (parent, path.next()) {
                (Some(parent), Some(word)) => parent.remove_child(Edge::of(word)),
                _ => return false,
            }
            self.nodes -= depth - keep;
            true
        } else {
            descend(&mut self.root, path).is_some_and(|target| target.queues.remove(queue))
        }
    }

    /// Appends the queues whose binding key matches `key`, each once.
    pub(super) fn route(&self, key: &[u8], out: &mut Vec<Arc<str>>) {
        self.walk(key, out);
    }

    /// [`Topic::route`], returning how many nodes it visited (tests use the
    /// count to show that cost does not grow with the number of bindings).
    fn walk(&self, key: &[u8], out: &mut Vec<Arc<str>>) -> usize {
        let end = key.len() + 1;
        let start = if key.is_empty() { end } else { 0 };
        let first = out.len();
        let mut contributors = 0usize;
        let mut visited = 0usize;
        // `#` node → earliest position it was entered at.
        let mut hash_from: HashMap<*const Node, usize> = HashMap::new();
        let mut stack = vec![Step::Visit(&self.root, start)];

        while let Some(step) = stack.pop() {
            match step {
                Step::Visit(node, pos) if pos == end => {
                    visited += 1;
                    if !node.queues.is_empty() {
                        node.queues.push_all(out);
                        contributors += 1;
                    }
                    if let Some(hash) = node.hash.as_deref() {
                        stack.push(Step::Hash(hash, end));
                    }
                }
                Step::Visit(node, pos) => {
                    visited += 1;
                    let (word, next) = next_word(key, pos, end);
                    if let Some(child) = node.words.get(word) {
                        stack.push(Step::Visit(child, next));
                    }
                    if let Some(star) = node.star.as_deref() {
                        stack.push(Step::Visit(star, next));
                    }
                    if let Some(hash) = node.hash.as_deref() {
                        stack.push(Step::Hash(hash, pos));
                    }
                }
                Step::Hash(hash, pos) => {
                    let id: *const Node = hash;
                    // Positions from `done` on were already scheduled.
                    let done = hash_from.get(&id).copied().unwrap_or(usize::MAX);
                    if pos >= done {
                        continue;
                    }
                    hash_from.insert(id, pos);
                    let mut at = pos;
                    loop {
                        stack.push(Step::Visit(hash, at));
                        if at == end {
                            break;
                        }
                        at = next_word(key, at, end).1;
                        if at >= done {
                            break;
                        }
                    }
                }
            }
        }
        // One node holds each queue once; only several nodes can repeat one.
        if contributors > 1 {
            dedup_tail(out, first);
        }
        visited
    }

    /// Trie nodes below the root (tests check that unbinding frees them).
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.nodes
    }
}

/// The node at the end of `path` below `node`, if it exists.
fn descend<'n, 'w>(
    mut node: &'n mut Node,
    path: impl Iterator<Item = &'w [u8]>,
) -> Option<&'n mut Node> {
    for word in path {
        node = node.child_mut(Edge::of(word))?;
    }
    Some(node)
}

/// The word starting at byte `pos` of `key`, and where the next one starts
/// (`end` when it was the last).
fn next_word(key: &[u8], pos: usize, end: usize) -> (&[u8], usize) {
    let rest = key.get(pos..).unwrap_or_default();
    match memchr::memchr(b'.', rest) {
        Some(dot) => (&rest[..dot], pos + dot + 1),
        None => (rest, end),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{binding, bindings, routed};
    use super::super::{Bindings, Index};
    use super::{words, Node, Topic};
    use crate::protocol::command::ExchangeKind;

    /// A topic table with one queue per pattern, named after the pattern.
    fn patterns(keys: &[&str]) -> Bindings {
        let mut b = bindings(ExchangeKind::Topic);
        for key in keys {
            b.add(binding(key, key));
        }
        b
    }

    fn matches(pattern: &str, key: &str) -> bool {
        routed(&patterns(&[pattern]), key, &[]) == [pattern]
    }

    fn topic(b: &Bindings) -> &Topic {
        match &b.index {
            Index::Topic(topic) => topic,
            other => panic!("not a topic index: {other:?}"),
        }
    }

    /// Counts the nodes below `node` by walking them (checks `Topic::nodes`).
    fn count_below(node: &Node) -> usize {
        let children = node
            .words
            .values()
            .chain(node.star.as_deref())
            .chain(node.hash.as_deref());
        children.map(|child| 1 + count_below(child)).sum()
    }

    /// Straightforward recursive matcher over word lists, to check the trie.
    fn reference(pattern: &[&[u8]], key: &[&[u8]]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&b"#", rest)) => (0..=key.len()).any(|skip| reference(rest, &key[skip..])),
            Some((&b"*", rest)) => !key.is_empty() && reference(rest, &key[1..]),
            Some((word, rest)) => key.first() == Some(word) && reference(rest, &key[1..]),
        }
    }

    /// Deterministic pseudo-random numbers (xorshift), so tests need no crate.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
        fn key(&mut self, alphabet: &[&str], max_words: usize) -> String {
            let n = self.below(max_words + 1);
            (0..n)
                .map(|_| alphabet[self.below(alphabet.len())])
                .collect::<Vec<_>>()
                .join(".")
        }
    }

    #[test]
    fn literal_pattern_matches_equal_key_only() {
        assert!(matches("a.b.c", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(!matches("a.b.c", "a.b.c.d"));
        assert!(!matches("a.b.c", "A.b.c"));
    }

    #[test]
    fn star_matches_exactly_one_word() {
        assert!(matches("a.*.c", "a.b.c"));
        assert!(matches("*", "word"));
        assert!(!matches("a.*.c", "a.c"));
        assert!(!matches("a.*.c", "a.b.b.c"));
        assert!(!matches("*", "a.b"));
    }

    #[test]
    fn star_does_not_match_the_empty_key() {
        assert!(!matches("*", ""));
        assert!(!matches("*.#", ""));
        assert!(!matches("#.*", ""));
        assert!(matches("*.#", "a"));
        assert!(matches("#.*", "a"));
    }

    #[test]
    fn a_star_does_not_match_a() {
        assert!(!matches("a.*", "a"));
        assert!(matches("a.*", "a.b"));
    }

    #[test]
    fn hash_alone_matches_everything_including_the_empty_key() {
        for key in ["", "a", "a.b.c", ".", "a..b", "*", "#"] {
            assert!(matches("#", key), "{key:?}");
        }
    }

    #[test]
    fn a_hash_matches_a_and_anything_below_it() {
        assert!(matches("a.#", "a"));
        assert!(matches("a.#", "a.b"));
        assert!(matches("a.#", "a.b.c"));
        assert!(!matches("a.#", "b.a"));
        assert!(!matches("a.#", ""));
    }

    #[test]
    fn hash_a_matches_a_and_anything_ending_in_it() {
        assert!(matches("#.a", "a"));
        assert!(matches("#.a", "x.y.a"));
        assert!(!matches("#.a", "a.x"));
    }

    #[test]
    fn hash_in_the_middle_swallows_zero_or_more_words() {
        assert!(matches("a.#.b", "a.b"));
        assert!(matches("a.#.b", "a.x.b"));
        assert!(matches("a.#.b", "a.x.y.b"));
        assert!(matches("a.#.b", "a.b.b"));
        assert!(!matches("a.#.b", "a.b.c"));
        assert!(!matches("a.#.b", "a"));
    }

    #[test]
    fn consecutive_hashes_behave_like_one() {
        for key in ["", "a", "a.b", "x.y.z"] {
            assert!(matches("#.#", key), "{key:?}");
        }
        assert!(matches("a.#.#.b", "a.b"));
        assert!(matches("a.#.#.b", "a.x.y.b"));
        assert!(!matches("#.#.a", "b"));
    }

    #[test]
    fn empty_words_are_words() {
        assert!(matches("a..b", "a..b"));
        assert!(matches("a.*.b", "a..b"));
        assert!(!matches("a.b", "a..b"));
        assert!(matches("*.*", "."));
        assert!(!matches("*", "."));
        assert!(matches("a.*", "a."));
        assert!(matches("*.a", ".a"));
        assert!(matches("a.#", "a."));
    }

    #[test]
    fn empty_binding_key_matches_the_empty_routing_key_only() {
        assert!(matches("", ""));
        assert!(!matches("", "a"));
        assert!(!matches("", "."));
    }

    #[test]
    fn wildcards_are_special_only_as_whole_words() {
        assert!(matches("a*", "a*"));
        assert!(!matches("a*", "ab"));
        assert!(!matches("a#", "a.b"));
        assert!(matches("a#.b", "a#.b"));
        assert!(!matches("**", "a"));
        assert!(matches("**", "**"));
    }

    #[test]
    fn keys_are_bytes_split_on_dot_bytes() {
        let mut b = bindings(ExchangeKind::Topic);
        b.add(binding("star", b"\xff.*"));
        b.add(binding("hash", b"#.\xfe\xfe"));
        b.add(binding("exact", b"caf\xe9.\xc3\x28"));
        assert_eq!(routed(&b, b"\xff.\x80abc", &[]), ["star"]);
        assert_eq!(routed(&b, b"\xff.\xfe\xfe", &[]), ["hash", "star"]);
        assert_eq!(routed(&b, b"x.y.\xfe\xfe", &[]), ["hash"]);
        assert_eq!(routed(&b, b"caf\xe9.\xc3\x28", &[]), ["exact"]);
        assert!(routed(&b, b"\xff.a.b", &[]).is_empty());
        assert!(routed(&b, "caf\u{e9}.\u{fffd}(", &[]).is_empty());
        // A multi-byte character that contains no `.` byte is one word.
        b.add(binding("one", "*"));
        assert_eq!(routed(&b, "\u{2024}", &[]), ["one"]);
        assert!(b.remove(&binding("star", b"\xff.*")));
        assert!(routed(&b, b"\xff.\x80abc", &[]).is_empty());
    }

    #[test]
    fn routing_words_star_and_hash_are_plain_words() {
        assert!(!matches("a.b", "a.*"));
        assert!(matches("a.*", "a.#"));
    }

    #[test]
    fn queue_matched_by_several_patterns_is_routed_once() {
        let mut b = bindings(ExchangeKind::Topic);
        for key in ["#", "a.#", "*.b", "a.b", "#.b", "a.*", "#.#"] {
            b.add(binding("q", key));
        }
        b.add(binding("r", "a.b"));
        assert_eq!(routed(&b, "a.b", &[]), ["q", "r"]);
    }

    #[test]
    fn several_queues_each_get_their_matches() {
        let b = patterns(&["orders.*", "orders.#", "*.eu", "#.eu", "orders.eu", "other"]);
        assert_eq!(
            routed(&b, "orders.eu", &[]),
            ["#.eu", "*.eu", "orders.#", "orders.*", "orders.eu"]
        );
        assert_eq!(routed(&b, "orders", &[]), ["orders.#"]);
        assert_eq!(routed(&b, "x.y.eu", &[]), ["#.eu"]);
        assert!(routed(&b, "nothing", &[]).is_empty());
    }

    #[test]
    fn headers_are_ignored() {
        let b = patterns(&["a.*"]);
        assert_eq!(routed(&b, "a.b", &[("x", "1")]), ["a.*"]);
    }

    #[test]
    fn same_pattern_for_two_queues_keeps_one_node() {
        let mut b = bindings(ExchangeKind::Topic);
        b.add(binding("q", "a.b"));
        b.add(binding("r", "a.b"));
        assert_eq!(topic(&b).node_count(), 2);
        assert!(b.remove(&binding("q", "a.b")));
        assert_eq!(routed(&b, "a.b", &[]), ["r"]);
        assert_eq!(topic(&b).node_count(), 2);
    }

    #[test]
    fn unbinding_prunes_only_the_nodes_that_lead_nowhere() {
        let mut b = patterns(&["a.b.c.d", "a.b", "a.x"]);
        assert_eq!(topic(&b).node_count(), 5);
        assert!(b.remove(&binding("a.b.c.d", "a.b.c.d")));
        assert_eq!(topic(&b).node_count(), 3);
        assert_eq!(routed(&b, "a.b", &[]), ["a.b"]);
        assert!(b.remove(&binding("a.b", "a.b")));
        assert_eq!(topic(&b).node_count(), 2);
        assert_eq!(routed(&b, "a.x", &[]), ["a.x"]);
        assert!(b.remove(&binding("a.x", "a.x")));
        assert_eq!(topic(&b).node_count(), 0);
    }

    #[test]
    fn removing_a_missing_pattern_leaves_the_trie_alone() {
        let mut b = patterns(&["a.*.#"]);
        assert!(!b.remove(&binding("a.*.#", "a.*")));
        assert!(!b.remove(&binding("a.*.#", "a.*.#.x")));
        assert!(!b.remove(&binding("other", "a.*.#")));
        let t = topic(&b);
        assert_eq!(t.node_count(), 3);
        assert!(!Topic::default().unindex(b"a", "q"));
    }

    #[test]
    fn bind_unbind_churn_returns_the_trie_to_zero_nodes() {
        let alphabet = ["a", "b", "c", "", "*", "#", "long-word"];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut b = bindings(ExchangeKind::Topic);
        let mut added = Vec::new();
        while added.len() < 1000 {
            let one = binding(&format!("q{}", rng.below(20)), rng.key(&alphabet, 6));
            if b.add(one.clone()) {
                added.push(one);
            }
        }
        assert!(topic(&b).node_count() > 0);
        assert_eq!(topic(&b).node_count(), count_below(&topic(&b).root));
        // Remove in a different order than added, checking the count as we go.
        for i in 0..added.len() {
            let one = &added[(i * 617) % added.len()];
            assert!(b.remove(one), "{one:?}");
            if i % 97 == 0 {
                assert_eq!(topic(&b).node_count(), count_below(&topic(&b).root));
            }
        }
        assert!(b.is_empty());
        assert_eq!(topic(&b).node_count(), 0);
        assert_eq!(count_below(&topic(&b).root), 0);
        assert!(topic(&b).root.queues.is_empty());
    }

    #[test]
    fn remove_queue_prunes_the_trie() {
        let mut b = bindings(ExchangeKind::Topic);
        b.add(binding("q", "a.#"));
        b.add(binding("q", "*.b.c"));
        b.add(binding("r", "a.b"));
        assert_eq!(b.remove_queue("q"), 2);
        assert_eq!(topic(&b).node_count(), 2);
        assert_eq!(b.remove_queue("r"), 1);
        assert_eq!(topic(&b).node_count(), 0);
    }

    #[test]
    fn routing_cost_does_not_grow_with_the_number_of_bindings() {
        let build = |n: usize| {
            let mut b = bindings(ExchangeKind::Topic);
            for i in 0..n {
                b.add(binding(&format!("q{i}"), format!("t.{i}.x")));
            }
            b
        };
        let (small, large) = (build(10), build(100_000));
        assert_eq!(routed(&large, "t.5.x", &[]), ["q5"]);
        assert_eq!(routed(&large, "t.99999.x", &[]), ["q99999"]);
        assert!(routed(&large, "t.100000.x", &[]).is_empty());
        let mut out = Vec::new();
        let visited_small = topic(&small).walk(b"t.5.x", &mut out);
        let visited_large = topic(&large).walk(b"t.5.x", &mut out);
        assert_eq!(visited_small, 4); // root, t, 5, x
        assert_eq!(visited_large, visited_small);
    }

    #[test]
    fn many_hashes_do_not_blow_up() {
        let pattern = "#.a.#.a.#.a.#.a.#.a.#.b";
        let b = patterns(&[pattern]);
        let key = vec!["a"; 60].join(".");
        let mut out = Vec::new();
        let visited = topic(&b).walk(key.as_bytes(), &mut out);
        assert!(out.is_empty());
        // 11 trie nodes plus the root, each visited at most once per position.
        assert!(visited <= 12 * 61, "visited {visited}");
        let with_b = format!("{key}.b");
        assert_eq!(routed(&b, &with_b, &[]), [pattern]);
    }

    #[test]
    fn trie_agrees_with_a_reference_matcher() {
        let alphabet = ["a", "b", "", "*", "#"];
        let keys_alphabet = ["a", "b", "", "c"];
        let mut rng = Rng(42);
        for _round in 0..40 {
            let pats: Vec<String> = (0..12).map(|_| rng.key(&alphabet, 5)).collect();
            let refs: Vec<&str> = pats.iter().map(String::as_str).collect();
            let b = patterns(&refs);
            for _ in 0..50 {
                let key = rng.key(&keys_alphabet, 5);
                let key_words: Vec<&[u8]> = words(key.as_bytes()).collect();
                let mut expected: Vec<String> = pats
                    .iter()
                    .filter(|p| reference(&words(p.as_bytes()).collect::<Vec<_>>(), &key_words))
                    .cloned()
                    .collect();
                expected.sort();
                expected.dedup();
                assert_eq!(
                    routed(&b, &key, &[]),
                    expected,
                    "key {key:?} patterns {pats:?}"
                );
            }
        }
    }
}

/// Property tests: the trie routes exactly as a backtracking matcher over
/// word lists would, after any mix of binds and unbinds. 256 cases by
/// default; `PROPTEST_CASES=N` for more.
#[cfg(test)]
mod prop_tests {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::{select, Index};

    use super::super::test_support::{binding, bindings, routed};
    use crate::protocol::command::ExchangeKind;

    /// A key's words, written independently of the trie: none for `""`.
    fn split(key: &str) -> Vec<&str> {
        if key.is_empty() {
            Vec::new()
        } else {
            key.split('.').collect()
        }
    }

    /// Backtracking reference: `#` tries every number of words, `*` one.
    fn matches(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|n| matches(rest, &key[n..])),
            Some((&"*", rest)) => !key.is_empty() && matches(rest, &key[1..]),
            Some((word, rest)) => key.first() == Some(word) && matches(rest, &key[1..]),
        }
    }

    /// Dotted strings over a small alphabet, so that patterns and keys meet;
    /// `*` and `#` are plain words in a routing key.
    fn dotted(
        alphabet: &'static [&'static str],
        max_words: usize,
    ) -> impl Strategy<Value = String> {
        vec(select(alphabet), 0..=max_words).prop_map(|w| w.join("."))
    }

    const PATTERN_WORDS: &[&str] = &["a", "b", "", "*", "#", "a*", "ab"];
    const KEY_WORDS: &[&str] = &["a", "b", "", "c", "*", "#", "ab"];

    proptest! {
        #[test]
        fn trie_routes_as_the_reference_after_binds_and_unbinds(
            binds in vec((0usize..4, dotted(PATTERN_WORDS, 6)), 1..16),
            unbinds in vec(any::<Index>(), 0..6),
            keys in vec(dotted(KEY_WORDS, 7), 1..12),
        ) {
            let mut table = bindings(ExchangeKind::Topic);
            let mut live: Vec<(String, String)> = Vec::new();
            for (q, pattern) in binds {
                let queue = format!("q{q}");
                if table.add(binding(&queue, &pattern)) {
                    live.push((queue, pattern));
                }
            }
            for i in unbinds {
                if live.is_empty() {
                    break;
                }
                let (queue, pattern) = live.remove(i.index(live.len()));
                prop_assert!(table.remove(&binding(&queue, &pattern)));
            }
            for key in &keys {
                let mut want: Vec<String> = live
                    .iter()
                    .filter(|(_, p)| matches(&split(p), &split(key)))
                    .map(|(q, _)| q.clone())
                    .collect();
                want.sort();
                want.dedup();
                // `routed` keeps duplicates: each queue at most once.
                prop_assert_eq!(routed(&table, key, &[]), want, "key {:?} bindings {:?}", key, live);
            }
        }
    }
}
