//! The state machine's pure parts: `reject-publish` room, the
//! de-duplication window, snapshots read back.

use super::*;

#[test]
fn a_reject_publish_queue_is_full_by_its_unsettled_copies() {
    let limits = Limits {
        max_length: Some(2),
        max_bytes: Some(10),
    };
    let mut st = QueueState::default();
    let m = |body: &str| {
        let frame = format!("PUB \"\" q \"{body}\"\r\n");
        let Ok(crate::protocol::Command::Publish(p)) =
            crate::protocol::parse::decode_one(frame.as_bytes())
        else {
            panic!("{frame} does not parse");
        };
        ReplicaMessage::of(&p, "id", &crate::broker::message::Now::default())
    };
    assert_eq!(m("hello").body_len(), 5);
    assert_eq!(m("").body_len(), 0);
    assert_eq!(m("abcdef").body_len(), 6);
    assert!(!st.full(limits, 5));
    st.keep(1, m("hello"));
    assert!(st.full(limits, 6), "over max-bytes");
    assert!(!st.full(limits, 5));
    st.keep(2, m("hi"));
    assert!(st.full(limits, 0), "over max-length");
    assert!(st.drop_copy(1).is_some());
    assert_eq!(st.bytes, 2);
    assert!(!st.full(limits, 8));
}

#[test]
fn an_id_is_a_duplicate_within_its_window_only() {
    let mut st = QueueState::default();
    assert!(!st.duplicate("a", 1_000, 100));
    assert!(st.duplicate("a", 1_050, 100), "within the window");
    assert!(!st.duplicate("b", 1_060, 100), "another id");
    // The window ends 100 ms after the first publish, not the last
    // duplicate: at 1,100 it is over, and the id starts a new one.
    assert!(!st.duplicate("a", 1_100, 100));
    assert!(st.duplicate("a", 1_150, 100));
    // Ended windows are forgotten as time goes on.
    assert!(!st.duplicate("c", 5_000, 100));
    assert_eq!(st.dedup.len(), 1);
    assert_eq!(st.dedup_ends.len(), 1);
}

#[test]
fn a_snapshot_reads_back_and_damage_is_refused() {
    let saved = Saved {
        last_applied: None,
        membership: StoredMembership::default(),
        copies: Vec::new(),
        returns: Vec::new(),
        dedup: vec![("pay-1".into(), 7)],
        next: Some(12),
        offsets: vec![("g".into(), 9)],
        failed: Vec::new(),
        messages: Vec::new(),
        prepared: Vec::new(),
    };
    let json = serde_json::to_vec(&saved).unwrap();
    let mut bytes = crc32fast::hash(&json).to_be_bytes().to_vec();
    bytes.extend_from_slice(&json);
    let back = decode(&bytes).unwrap();
    assert_eq!(
        (back.next, back.offsets),
        (Some(12), vec![("g".to_string(), 9)])
    );
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    assert!(decode(&bytes).unwrap_err().contains("damaged"));
    assert!(decode(&bytes[..2]).unwrap_err().contains("cut short"));
}
