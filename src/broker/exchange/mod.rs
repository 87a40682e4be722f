//! The routing table of one exchange: which bindings exist, and which queues a
//! message goes to. Pure data: no I/O, no locks, no async (the owner of the
//! `Exchange` decides how to share it).
//!
//! # Layout
//!
//! - this file: [`Binding`] (the identity of one `BIND`), [`Bindings`] (the
//!   table: identity set plus a per-kind index) and the helpers the kinds share.
//! - `direct.rs`: exact-key index, one hash lookup per publish.
//! - `fanout.rs`: every bound queue.
//! - `topic.rs`: a trie over dot-separated words with `*` and `#` edges.
//! - `headers.rs`: `match=all|any` over message headers.
//! - `hash.rs`: a consistent-hash ring weighted by binding keys.
//!
//! # Design
//!
//! [`Bindings`] keeps one authoritative set of bindings grouped by queue. It
//! answers identity (idempotent `add`, `remove` of a missing binding), listing,
//! `len` and `remove_queue` the same way for every kind. Only routing differs:
//! direct and topic keep an extra index keyed by the binding key, and the
//! index counts how many bindings put a queue at each entry, so that two
//! bindings that differ only in headers keep the queue there until both go.
//! Fanout and headers route straight from the per-queue set, so they need no
//! index of their own.

mod direct;
mod fanout;
pub(crate) mod hash;
mod headers;
mod topic;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::command::{ExchangeKind, Header, HeaderMatch};

use self::direct::Direct;
use self::hash::Hash;
use self::topic::Topic;

/// Identity of one binding on an exchange: what `BIND` creates and `UNBIND`
/// removes.
///
/// Every field takes part in identity, whatever the exchange kind (as in
/// RabbitMQ): binding the same queue with two keys, or with the same key and
/// different headers, makes two bindings. Build it with [`Binding::new`],
/// which normalises `headers` so that their order on the wire does not matter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Binding {
    /// The bound queue's name.
    pub(crate) queue: Arc<str>,
    /// The binding key (`""` when omitted): any bytes, compared byte for
    /// byte (not only UTF-8). Ignored by fanout and headers routing, but
    /// still part of the identity.
    pub key: Bytes,
    /// The `h.<name>=<value>` arguments, sorted by name (then value) with exact
    /// duplicates removed.
    pub(crate) headers: Vec<Header>,
    /// `match=all|any` (all when not given). Used by headers routing only.
    pub(crate) matching: HeaderMatch,
}

impl Binding {
    /// A binding with its headers normalised: sorted by name, then by value,
    /// and with repeated identical `name=value` pairs dropped, so that
    /// `h.a=1 h.b=2` and `h.b=2 h.a=1` name the same binding.
    pub fn new(
        queue: Arc<str>,
        key: Bytes,
        mut headers: Vec<Header>,
        matching: HeaderMatch,
    ) -> Self {
        normalise(&mut headers);
        Self {
            queue,
            key,
            headers,
            matching,
        }
    }

    /// `self` if its headers are already normalised (the common case: it came
    /// from [`Binding::new`]), else a normalised copy. The fields are public,
    /// so a struct literal can skip `new`; this keeps identity right anyway.
    fn normalised(&self) -> Cow<'_, Binding> {
        if is_normalised(&self.headers) {
            Cow::Borrowed(self)
        } else {
            let mut copy = self.clone();
            normalise(&mut copy.headers);
            Cow::Owned(copy)
        }
    }
}

fn normalise(headers: &mut Vec<Header>) {
    headers.sort_unstable();
    headers.dedup();
}

fn is_normalised(headers: &[Header]) -> bool {
    headers.windows(2).all(|pair| pair[0] < pair[1])
}

/// Every binding, grouped by queue name.
type ByQueue = HashMap<Arc<str>, HashSet<Binding>>;

/// The routing table of one exchange.
///
/// Bindings are a set: adding one twice is a no-op and reports `false`.
/// Routing cost depends on the kind:
///
/// | kind    | cost of [`Bindings::route`]                                   |
/// |---------|---------------------------------------------------------------|
/// | direct  | one hash lookup                                               |
/// | fanout  | the number of bound queues                                    |
/// | topic   | the trie nodes the key's words reach, not the binding count   |
/// | headers | a scan of the headers bindings (see `headers.rs` for why)     |
/// | hash    | a binary search of the ring (`hash.rs`)                       |
#[derive(Debug)]
pub struct Bindings {
    /// Authoritative set of bindings: identity, listing, `remove_queue`.
    by_queue: ByQueue,
    /// Number of bindings in `by_queue`.
    len: usize,
    /// The kind, with its routing index where it needs one.
    index: Index,
}

/// The per-kind routing index. Direct and topic index by binding key; fanout
/// and headers route from [`Bindings::by_queue`] itself.
#[derive(Debug)]
enum Index {
    Direct(Direct),
    Fanout,
    Topic(Topic),
    Headers,
    Hash(Hash),
}

impl Bindings {
    /// An empty table for an exchange of this kind.
    pub fn new(kind: ExchangeKind) -> Self {
        let index = match kind {
            ExchangeKind::Direct => Index::Direct(Direct::default()),
            ExchangeKind::Fanout => Index::Fanout,
            ExchangeKind::Topic => Index::Topic(Topic::default()),
            ExchangeKind::Headers => Index::Headers,
            ExchangeKind::Hash => Index::Hash(Hash::default()),
        };
        Self {
            by_queue: HashMap::new(),
            len: 0,
            index,
        }
    }

    /// An empty table for a `hash` exchange that hashes header `header`
    /// (the routing key when `None`).
    pub(crate) fn new_hash(header: Option<String>) -> Self {
        Self {
            by_queue: HashMap::new(),
            len: 0,
            index: Index::Hash(Hash::new(header)),
        }
    }

    /// A table for an exchange of `kind` (with its `hash-header=`).
    pub(crate) fn for_exchange(kind: ExchangeKind, hash_header: Option<String>) -> Self {
        match kind {
            ExchangeKind::Hash => Self::new_hash(hash_header),
            other => Self::new(other),
        }
    }

    /// The header a `hash` exchange hashes, if it hashes one.
    pub(crate) fn hash_header(&self) -> Option<&str> {
        match &self.index {
            Index::Hash(h) => h.header(),
            _ => None,
        }
    }

    /// The exchange kind this table routes for.
    #[cfg(test)]
    pub(crate) fn kind(&self) -> ExchangeKind {
        match self.index {
            Index::Direct(_) => ExchangeKind::Direct,
            Index::Fanout => ExchangeKind::Fanout,
            Index::Topic(_) => ExchangeKind::Topic,
            Index::Headers => ExchangeKind::Headers,
            Index::Hash(_) => ExchangeKind::Hash,
        }
    }

    /// Adds a binding. Returns `false`, changing nothing, if an identical one
    /// exists: `BIND` is idempotent.
    pub fn add(&mut self, binding: Binding) -> bool {
        let binding = match binding.normalised() {
            Cow::Borrowed(_) => binding,
            Cow::Owned(normal) => normal,
        };
        let set = self.by_queue.entry(Arc::clone(&binding.queue)).or_default();
        if set.contains(&binding) {
            return false;
        }
        match &mut self.index {
            Index::Direct(direct) => direct.add(&binding),
            Index::Topic(topic) => topic.add(&binding),
            Index::Fanout | Index::Headers | Index::Hash(_) => {}
        }
        set.insert(binding);
        self.len += 1;
        if let Index::Hash(hash) = &mut self.index {
            hash.rebuild(&self.by_queue);
        }
        true
    }

    /// Removes a binding. Returns `false` if it did not exist.
    pub(crate) fn remove(&mut self, binding: &Binding) -> bool {
        let binding = binding.normalised();
        let Some(set) = self.by_queue.get_mut(&*binding.queue) else {
            return false;
        };
        if !set.remove(&*binding) {
            return false;
        }
        if set.is_empty() {
            self.by_queue.remove(&*binding.queue);
        }
        self.unindex(&binding);
        self.len -= 1;
        true
    }

    /// Removes every binding of `queue` (the queue was deleted). Returns how
    /// many there were.
    pub(crate) fn remove_queue(&mut self, queue: &str) -> usize {
        let Some(set) = self.by_queue.remove(queue) else {
            return 0;
        };
        for binding in &set {
            self.unindex(binding);
        }
        self.len -= set.len();
        set.len()
    }

    fn unindex(&mut self, binding: &Binding) {
        match &mut self.index {
            Index::Direct(direct) => direct.remove(binding),
            Index::Topic(topic) => topic.remove(binding),
            // The binding has already left `by_queue`.
            Index::Hash(hash) => hash.rebuild(&self.by_queue),
            Index::Fanout | Index::Headers => {}
        }
    }

    /// The number of bindings.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no bindings (what `DELETE EXCHANGE if-unused` and
    /// auto-delete ask).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every binding, in no particular order: for `LIST` and persistence.
    pub fn iter(&self) -> impl Iterator<Item = &Binding> + '_ {
        self.by_queue.values().flatten()
    }

    /// Appends to `out` the queues that a message with routing key `key` and
    /// these `headers` goes to, each at most once however many of its
    /// bindings match. What `out` held before is left alone (clearing it is
    /// the caller's job, so one buffer can serve many publishes).
    ///
    /// Direct and topic look at `key` only (as bytes: any token is a key),
    /// headers at `headers` only, fanout at neither.
    pub fn route(&self, key: &[u8], headers: &[Header], out: &mut Vec<Arc<str>>) {
        match &self.index {
            Index::Direct(direct) => direct.route(key, out),
            Index::Fanout => fanout::route(&self.by_queue, out),
            Index::Topic(topic) => topic.route(key, out),
            Index::Headers => headers::route(&self.by_queue, headers, out),
            Index::Hash(hash) => hash.route(key, headers, out),
        }
    }
}

/// How many bindings put each queue at one index entry (a direct key, a trie
/// node). A queue stays routable from the entry until its count drops to zero.
#[derive(Debug, Default)]
struct QueueRefs {
    counts: HashMap<Arc<str>, usize>,
}

impl QueueRefs {
    fn add(&mut self, queue: &Arc<str>) {
        *self.counts.entry(Arc::clone(queue)).or_insert(0) += 1;
    }

    /// Drops one reference to `queue`; false if it had none.
    fn remove(&mut self, queue: &str) -> bool {
        match self.counts.get_mut(queue) {
            Some(count) if *count > 1 => *count -= 1,
            Some(_) => {
                self.counts.remove(queue);
            }
            None => return false,
        }
        true
    }

    fn count(&self, queue: &str) -> usize {
        self.counts.get(queue).copied().unwrap_or(0)
    }

    /// Number of distinct queues.
    fn len(&self) -> usize {
        self.counts.len()
    }

    fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Appends each distinct queue once.
    fn push_all(&self, out: &mut Vec<Arc<str>>) {
        out.extend(self.counts.keys().cloned());
    }
}

/// Removes duplicates from `out[start..]` in place (sorting that part), leaving
/// `out[..start]` untouched.
fn dedup_tail(out: &mut Vec<Arc<str>>, start: usize) {
    let Some(tail) = out.get_mut(start..) else {
        return;
    };
    tail.sort_unstable();
    let mut kept = start;
    for i in start..out.len() {
        if kept == start || out[i] != out[kept - 1] {
            out.swap(kept, i);
            kept += 1;
        }
    }
    out.truncate(kept);
}

/// Builders and probes shared by the tests of every kind.
#[cfg(test)]
mod test_support {
    use bytes::Bytes;

    use super::{Binding, Bindings};
    use crate::protocol::command::{ExchangeKind, Header, HeaderMatch};

    pub(super) fn bindings(kind: ExchangeKind) -> Bindings {
        Bindings::new(kind)
    }

    /// A binding with no header arguments.
    pub(super) fn binding(queue: &str, key: impl AsRef<[u8]>) -> Binding {
        hbinding(queue, key, &[], HeaderMatch::All)
    }

    pub(super) fn hbinding(
        queue: &str,
        key: impl AsRef<[u8]>,
        headers: &[(&str, &str)],
        matching: HeaderMatch,
    ) -> Binding {
        Binding::new(
            queue.into(),
            Bytes::copy_from_slice(key.as_ref()),
            owned(headers),
            matching,
        )
    }

    pub(super) fn owned(headers: &[(&str, &str)]) -> Vec<Header> {
        headers
            .iter()
            .map(|&(n, v)| (n.to_owned(), Bytes::copy_from_slice(v.as_bytes())))
            .collect()
    }

    /// The queues a message goes to, sorted (duplicates kept, so that tests
    /// comparing with a list also check "at most once").
    pub(super) fn routed(
        b: &Bindings,
        key: impl AsRef<[u8]>,
        headers: &[(&str, &str)],
    ) -> Vec<String> {
        let mut out = Vec::new();
        b.route(key.as_ref(), &owned(headers), &mut out);
        let mut names: Vec<String> = out.iter().map(|q| q.to_string()).collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::test_support::{binding, bindings, hbinding, owned, routed};
    use super::{dedup_tail, Binding, Bindings};
    use crate::protocol::command::{ExchangeKind, HeaderMatch};

    const KINDS: [ExchangeKind; 4] = [
        ExchangeKind::Direct,
        ExchangeKind::Fanout,
        ExchangeKind::Topic,
        ExchangeKind::Headers,
    ];

    #[test]
    fn new_sorts_headers_so_their_order_does_not_matter() {
        let a = hbinding("q", "k", &[("b", "2"), ("a", "1")], HeaderMatch::All);
        let b = hbinding("q", "k", &[("a", "1"), ("b", "2")], HeaderMatch::All);
        assert_eq!(a, b);
        assert_eq!(a.headers, owned(&[("a", "1"), ("b", "2")]));
    }

    #[test]
    fn new_drops_repeated_identical_headers_only() {
        let a = hbinding(
            "q",
            "",
            &[("a", "1"), ("a", "1"), ("a", "0")],
            HeaderMatch::All,
        );
        assert_eq!(a.headers, owned(&[("a", "0"), ("a", "1")]));
    }

    #[test]
    fn kind_is_the_one_given() {
        for kind in KINDS {
            assert_eq!(Bindings::new(kind).kind(), kind);
        }
    }

    #[test]
    fn add_is_idempotent_for_every_kind() {
        for kind in KINDS {
            let mut b = bindings(kind);
            assert!(
                b.add(hbinding("q", "k", &[("a", "1")], HeaderMatch::Any)),
                "{kind:?}"
            );
            assert!(
                !b.add(hbinding("q", "k", &[("a", "1")], HeaderMatch::Any)),
                "{kind:?}"
            );
            assert_eq!(b.len(), 1, "{kind:?}");
        }
    }

    #[test]
    fn key_headers_and_matching_all_take_part_in_identity() {
        for kind in KINDS {
            let mut b = bindings(kind);
            assert!(b.add(binding("q", "k")));
            assert!(b.add(binding("q", "j")));
            assert!(b.add(binding("r", "k")));
            assert!(b.add(hbinding("q", "k", &[("a", "1")], HeaderMatch::All)));
            assert!(b.add(hbinding("q", "k", &[("a", "1")], HeaderMatch::Any)));
            assert!(b.add(hbinding("q", "k", &[("a", "2")], HeaderMatch::Any)));
            assert_eq!(b.len(), 6, "{kind:?}");
        }
    }

    #[test]
    fn remove_of_a_missing_binding_is_false_and_changes_nothing() {
        for kind in KINDS {
            let mut b = bindings(kind);
            assert!(!b.remove(&binding("q", "k")), "{kind:?}");
            b.add(binding("q", "k"));
            assert!(!b.remove(&binding("q", "other")), "{kind:?}");
            assert!(!b.remove(&binding("other", "k")), "{kind:?}");
            assert!(
                !b.remove(&hbinding("q", "k", &[("a", "1")], HeaderMatch::All)),
                "{kind:?}"
            );
            assert!(
                !b.remove(&hbinding("q", "k", &[], HeaderMatch::Any)),
                "{kind:?}"
            );
            assert_eq!(b.len(), 1, "{kind:?}");
            assert!(b.remove(&binding("q", "k")), "{kind:?}");
            assert!(!b.remove(&binding("q", "k")), "{kind:?}");
            assert!(b.is_empty(), "{kind:?}");
        }
    }

    #[test]
    fn remove_matches_headers_in_any_order() {
        let mut b = bindings(ExchangeKind::Headers);
        b.add(hbinding(
            "q",
            "",
            &[("a", "1"), ("b", "2")],
            HeaderMatch::All,
        ));
        let unsorted = Binding {
            queue: "q".into(),
            key: Bytes::new(),
            headers: owned(&[("b", "2"), ("a", "1")]),
            matching: HeaderMatch::All,
        };
        assert!(!b.add(unsorted.clone()));
        assert!(b.remove(&unsorted));
        assert!(b.is_empty());
    }

    #[test]
    fn remove_queue_drops_all_its_bindings_for_every_kind() {
        for kind in KINDS {
            let mut b = bindings(kind);
            b.add(binding("q", "a"));
            b.add(binding("q", "a.b"));
            b.add(hbinding("q", "a", &[("x", "1")], HeaderMatch::Any));
            b.add(binding("r", "a"));
            assert_eq!(b.remove_queue("q"), 3, "{kind:?}");
            assert_eq!(b.remove_queue("q"), 0, "{kind:?}");
            assert_eq!(b.len(), 1, "{kind:?}");
            let left: Vec<&Binding> = b.iter().collect();
            assert_eq!(left, [&binding("r", "a")], "{kind:?}");
            assert_eq!(routed(&b, "a", &[("x", "1")]), ["r"], "{kind:?}");
        }
    }

    #[test]
    fn remove_queue_of_an_unbound_queue_is_zero() {
        let mut b = bindings(ExchangeKind::Topic);
        b.add(binding("q", "#"));
        assert_eq!(b.remove_queue("nope"), 0);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn iter_lists_every_binding_once() {
        let mut b = bindings(ExchangeKind::Topic);
        let all = [binding("q", "a.*"), binding("q", "#"), binding("r", "a.*")];
        for one in &all {
            b.add(one.clone());
        }
        let mut listed: Vec<Binding> = b.iter().cloned().collect();
        listed.sort_by(|x, y| (&x.queue, &x.key).cmp(&(&y.queue, &y.key)));
        let mut expected = all.to_vec();
        expected.sort_by(|x, y| (&x.queue, &x.key).cmp(&(&y.queue, &y.key)));
        assert_eq!(listed, expected);
    }

    #[test]
    fn len_and_is_empty_follow_adds_and_removes() {
        let mut b = bindings(ExchangeKind::Direct);
        assert!(b.is_empty());
        b.add(binding("q", "a"));
        b.add(binding("q", "a"));
        b.add(binding("r", "a"));
        assert_eq!(b.len(), 2);
        b.remove(&binding("q", "a"));
        assert_eq!(b.len(), 1);
        assert!(!b.is_empty());
    }

    #[test]
    fn route_appends_and_leaves_earlier_entries_alone() {
        let mut b = bindings(ExchangeKind::Topic);
        b.add(binding("q", "a.*"));
        b.add(binding("q", "#"));
        let mut out: Vec<Arc<str>> = vec!["q".into(), "earlier".into()];
        b.route(b"a.b", &[], &mut out);
        let names: Vec<&str> = out.iter().map(|q| &**q).collect();
        assert_eq!(names, ["q", "earlier", "q"]);
    }

    #[test]
    fn dedup_tail_keeps_the_prefix_and_dedupes_the_rest() {
        let mut out: Vec<Arc<str>> = ["z", "b", "a", "b", "z", "a"].map(Arc::from).to_vec();
        dedup_tail(&mut out, 1);
        let names: Vec<&str> = out.iter().map(|q| &**q).collect();
        assert_eq!(names, ["z", "a", "b", "z"]);
        dedup_tail(&mut out, 10);
        assert_eq!(out.len(), 4);
    }
}
