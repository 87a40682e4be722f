//! Headers exchange: a message goes to the queues with a binding whose
//! `h.<name>=<value>` arguments match the message headers; the routing key is
//! ignored.
//!
//! - `match=all` (the default): every binding header is present in the message
//!   with an equal value. A binding with no header arguments therefore matches
//!   every message.
//! - `match=any`: at least one is. A binding with no header arguments matches
//!   no message.
//!
//! Names and values compare exactly (case-sensitive). Extra message headers do
//! not matter. A message header repeated with several values matches a binding
//! header equal to any of them.
//!
//! # Why a linear scan
//!
//! Routing checks every headers binding, grouped by queue (a queue stops at its
//! first matching binding, so it is added once). An index would have to answer
//! "which subsets of the message's headers are some binding's argument set",
//! with `any` and `all` mixed; that is worth it only for many bindings on one
//! headers exchange, which is rare (RabbitMQ also scans). The scan allocates
//! nothing: each check is a loop over two short slices.

use std::sync::Arc;

use super::{Binding, ByQueue};
use crate::protocol::command::{Header, HeaderMatch};

/// Appends each queue that has at least one binding matching `headers`.
pub(super) fn route(by_queue: &ByQueue, headers: &[Header], out: &mut Vec<Arc<str>>) {
    for (queue, set) in by_queue {
        if set.iter().any(|binding| matches(binding, headers)) {
            out.push(Arc::clone(queue));
        }
    }
}

/// Whether a message with these headers satisfies this binding's arguments.
fn matches(binding: &Binding, headers: &[Header]) -> bool {
    let present = |(name, value): &Header| headers.iter().any(|(n, v)| n == name && v == value);
    match binding.matching {
        HeaderMatch::All => binding.headers.iter().all(present),
        HeaderMatch::Any => binding.headers.iter().any(present),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{bindings, hbinding, routed};
    use super::super::Bindings;
    use crate::protocol::command::{ExchangeKind, HeaderMatch};

    const ALL: HeaderMatch = HeaderMatch::All;
    const ANY: HeaderMatch = HeaderMatch::Any;

    fn one(pairs: &[(&str, &str)], matching: HeaderMatch) -> Bindings {
        let mut b = bindings(ExchangeKind::Headers);
        b.add(hbinding("q", "", pairs, matching));
        b
    }

    fn hits(b: &Bindings, message: &[(&str, &str)]) -> bool {
        routed(b, "", message) == ["q"]
    }

    #[test]
    fn all_needs_every_header() {
        let b = one(&[("format", "pdf"), ("type", "report")], ALL);
        assert!(hits(&b, &[("type", "report"), ("format", "pdf")]));
        assert!(!hits(&b, &[("format", "pdf")]));
        assert!(!hits(&b, &[]));
    }

    #[test]
    fn all_needs_equal_values_case_sensitive() {
        let b = one(&[("format", "pdf")], ALL);
        assert!(!hits(&b, &[("format", "PDF")]));
        assert!(!hits(&b, &[("Format", "pdf")]));
        assert!(!hits(&b, &[("format", "")]));
        assert!(hits(&b, &[("format", "pdf")]));
    }

    #[test]
    fn any_needs_one_header() {
        let b = one(&[("format", "pdf"), ("type", "report")], ANY);
        assert!(hits(&b, &[("type", "report")]));
        assert!(hits(&b, &[("format", "pdf"), ("type", "log")]));
        assert!(!hits(&b, &[("format", "zip"), ("type", "log")]));
        assert!(!hits(&b, &[]));
    }

    #[test]
    fn all_with_no_arguments_matches_every_message() {
        let b = one(&[], ALL);
        assert!(hits(&b, &[]));
        assert!(hits(&b, &[("x", "1")]));
    }

    #[test]
    fn any_with_no_arguments_matches_nothing() {
        let b = one(&[], ANY);
        assert!(!hits(&b, &[]));
        assert!(!hits(&b, &[("x", "1")]));
    }

    #[test]
    fn extra_message_headers_do_not_matter() {
        let b = one(&[("a", "1")], ALL);
        assert!(hits(&b, &[("z", "9"), ("a", "1"), ("b", "2")]));
    }

    #[test]
    fn repeated_message_header_matches_any_of_its_values() {
        let b = one(&[("a", "2")], ALL);
        assert!(hits(&b, &[("a", "1"), ("a", "2")]));
    }

    #[test]
    fn routing_key_is_ignored() {
        let mut b = bindings(ExchangeKind::Headers);
        b.add(hbinding("q", "bound-key", &[("a", "1")], ALL));
        assert_eq!(routed(&b, "other-key", &[("a", "1")]), ["q"]);
        assert!(routed(&b, "bound-key", &[("a", "2")]).is_empty());
    }

    #[test]
    fn queue_matching_through_several_bindings_is_routed_once() {
        let mut b = bindings(ExchangeKind::Headers);
        b.add(hbinding("q", "", &[("a", "1")], ALL));
        b.add(hbinding("q", "", &[("b", "2")], ANY));
        b.add(hbinding("q", "", &[], ALL));
        assert_eq!(b.len(), 3);
        assert_eq!(routed(&b, "", &[("a", "1"), ("b", "2")]), ["q"]);
    }

    #[test]
    fn several_queues_match_independently() {
        let mut b = bindings(ExchangeKind::Headers);
        b.add(hbinding("pdf", "", &[("format", "pdf")], ALL));
        b.add(hbinding("reports", "", &[("type", "report")], ALL));
        b.add(hbinding(
            "either",
            "",
            &[("format", "pdf"), ("type", "log")],
            ANY,
        ));
        b.add(hbinding(
            "both",
            "",
            &[("format", "pdf"), ("type", "log")],
            ALL,
        ));
        assert_eq!(
            routed(&b, "", &[("format", "pdf"), ("type", "report")]),
            ["either", "pdf", "reports"]
        );
        assert_eq!(
            routed(&b, "", &[("format", "pdf"), ("type", "log")]),
            ["both", "either", "pdf"]
        );
        assert!(routed(&b, "", &[("format", "zip")]).is_empty());
    }

    #[test]
    fn unbind_stops_matching() {
        let mut b = one(&[("a", "1")], ALL);
        assert!(!b.remove(&hbinding("q", "", &[("a", "1")], ANY)));
        assert!(b.remove(&hbinding("q", "", &[("a", "1")], ALL)));
        assert!(!hits(&b, &[("a", "1")]));
    }
}
