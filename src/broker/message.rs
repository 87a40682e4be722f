//! [`Message`] (one published message, shared by every queue it was routed
//! to), [`Entry`] (one queue's copy: its position and delivery count) and
//! [`Bodies`] (the count of stored copies of a shared body while none of
//! them is in RAM).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::protocol::command::Header;
use crate::store::{MessageMeta, RecoveredMessage};

/// A published message. One `Arc<Message>` is shared by every queue the
/// message was routed to, so a fan-out holds its body once in RAM, and (as
/// `body_id`) once on disk.
#[derive(Debug)]
pub(crate) struct Message {
    /// Message id (client-chosen or generated).
    pub(crate) id: String,
    /// Exchange it was published to.
    pub(crate) exchange: Arc<str>,
    /// Routing key: any bytes (not only UTF-8), shared rather than copied
    /// by the stored metadata and by dead-lettered copies.
    pub(crate) routing_key: Bytes,
    /// Headers.
    pub(crate) headers: Vec<Header>,
    /// Body.
    pub(crate) body: Bytes,
    /// Key of the stored body; meaningful only while `stored_refs` > 0.
    pub(crate) body_id: u64,
    /// How many stored queue copies reference the stored body; the body is
    /// removed from the store with the last one.
    pub(crate) stored_refs: AtomicU32,
    /// Published as persistent (stored in every durable queue it reaches).
    pub(crate) persistent: bool,
    /// Set when a copy of a shared stored body was paged out: the registry
    /// that keeps `stored_refs` once this `Message` is dropped.
    pub(crate) registry: OnceLock<Arc<Bodies>>,
    /// When it was published (Unix ms), for the age of a queue's oldest
    /// message; for a message read back from the store, when it was read
    /// (older stores did not keep the time).
    pub(crate) published_at: u64,
    /// Its message group (`PUB group=`): on a `groups` queue, messages of
    /// one group go to one consumer at a time, in order.
    pub(crate) group: Option<Bytes>,
}

impl Drop for Message {
    fn drop(&mut self) {
        if let Some(reg) = self.registry.get() {
            reg.dropped(self.body_id, self.stored_refs.load(Ordering::Acquire));
        }
    }
}

impl Message {
    /// The value of header `name`, if present (any bytes).
    pub(crate) fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Drops one stored reference; true when it was the last (remove the body).
    pub(crate) fn release_stored(&self) -> bool {
        self.stored_refs.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// A stored message read for display (`PEEK`): it holds no stored
    /// reference, so dropping it changes nothing.
    pub(crate) fn read_only(m: &RecoveredMessage) -> Message {
        Message::from_stored(m, 0)
    }

    /// A message as stored, with `refs` stored references.
    fn from_stored(m: &RecoveredMessage, refs: u32) -> Message {
        Message {
            id: m.meta.id.clone(),
            exchange: Arc::from(m.meta.exchange.as_str()),
            routing_key: m.meta.routing_key.clone(),
            headers: m.meta.headers.clone(),
            body: m.body.clone(),
            body_id: m.meta.body_id,
            stored_refs: AtomicU32::new(refs),
            persistent: !m.meta.volatile,
            registry: OnceLock::new(),
            published_at: match m.meta.published_at {
                0 => now_ms(),
                t => t,
            },
            group: m.meta.group.clone(),
        }
    }
}

/// The stored-reference counts of bodies stored apart from their copies
/// (fan-outs: one body, several queues), for as long as a paged-out copy
/// may still be read back.
///
/// While any copy of such a body is in RAM, its [`Message`] holds the count
/// (`stored_refs`). A queue that pages a copy out drops its `Arc`; the
/// message registers here first, so that when its last `Arc` goes the count
/// is kept, and a copy paged back in gets the live message (or a new one
/// with the kept count). Without this, two queues paging in the same body
/// would each think they held its last reference, and the first ack would
/// remove a body the other still needs.
///
/// A store that keeps a copy per queue ([`MessageStore::shares_bodies`]
/// false) has nothing to count: every copy read back owns its body, and
/// nothing is registered.
///
/// [`MessageStore::shares_bodies`]: crate::store::MessageStore::shares_bodies
#[derive(Debug)]
pub(crate) struct Bodies {
    inner: Mutex<BodiesInner>,
    /// Whether the store shares bodies between copies (else this counts
    /// nothing).
    shared: bool,
}

#[derive(Debug, Default)]
struct BodiesInner {
    /// Registered messages still alive.
    live: HashMap<u64, Weak<Message>>,
    /// Counts of bodies none of whose copies is in RAM.
    detached: HashMap<u64, u32>,
}

impl Bodies {
    /// The counts for a store that shares bodies between copies, or not.
    pub(crate) fn new(shared: bool) -> Bodies {
        Bodies {
            inner: Mutex::default(),
            shared,
        }
    }

    /// Whether the store shares bodies between copies.
    pub(crate) fn shared(&self) -> bool {
        self.shared
    }

    /// Seeds the counts found at recovery (every stored copy starts on disk).
    pub(crate) fn restore(&self, refs: HashMap<u64, u32>) {
        self.inner.lock().detached = refs;
    }

    /// Registers `msg` (whose copy is being paged out) if its body has
    /// other stored copies.
    pub(crate) fn register(self: &Arc<Self>, msg: &Arc<Message>) {
        if !self.shared
            || msg.stored_refs.load(Ordering::Acquire) <= 1
            || msg.registry.get().is_some()
        {
            return;
        }
        let mut inner = self.inner.lock();
        if msg.registry.set(self.clone()).is_ok() {
            inner.live.insert(msg.body_id, Arc::downgrade(msg));
        }
    }

    /// The message of a copy read back from the store.
    pub(crate) fn adopt(self: &Arc<Self>, m: &RecoveredMessage) -> Arc<Message> {
        if m.inline {
            // Its body is its own: one reference, nobody to share with.
            return Arc::new(Message::from_stored(m, 1));
        }
        let body_id = m.meta.body_id;
        let mut inner = self.inner.lock();
        let refs = match inner.live.get(&body_id) {
            Some(w) => match w.upgrade() {
                Some(live) => return live,
                // Being dropped right now: its `dropped` adds its count to
                // the message made here.
                None => 0,
            },
            // No copy was paged out while others were stored: this is the
            // only one left.
            None => inner.detached.remove(&body_id).unwrap_or(1),
        };
        let msg = Arc::new(Message::from_stored(m, refs));
        let _ = msg.registry.set(self.clone());
        inner.live.insert(body_id, Arc::downgrade(&msg));
        msg
    }

    /// A registered message was dropped with `refs` stored references left.
    fn dropped(&self, body_id: u64, refs: u32) {
        let mut inner = self.inner.lock();
        if let Some(other) = inner.live.get(&body_id).and_then(Weak::upgrade) {
            // Replaced by a message adopted while this one was dropping.
            other.stored_refs.fetch_add(refs, Ordering::AcqRel);
            return;
        }
        inner.live.remove(&body_id);
        if refs > 0 {
            inner.detached.insert(body_id, refs);
        }
    }
}

/// One queue's copy of a message.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Position in its queue (the store key's suffix). Requeued entries go
    /// back to their position, so order survives redelivery.
    pub(crate) seq: u64,
    /// The shared message.
    pub(crate) msg: Arc<Message>,
    /// How many times this copy has been delivered.
    pub(crate) deliveries: u32,
    /// Flagged as possibly delivered before (after a crash).
    pub(crate) redelivered: bool,
    /// Whether this copy is in the store (durable queue, persistent message).
    pub(crate) stored: bool,
    /// Priority within its queue (0 unless the queue has `max-priority`).
    pub(crate) priority: u8,
    /// When it expires (Unix ms): the smaller of the queue's and the
    /// message's TTL, counted from when it entered this queue.
    pub(crate) expires_at: Option<u64>,
    /// Not to be delivered before this (Unix ms).
    pub(crate) not_before: Option<u64>,
    /// Recovered after a crash: `deliveries` counts one delivery that may
    /// not have happened. `delivery-limit` does not count it, so a crash
    /// never dead-letters a message that was not delivered (at the price of
    /// one delivery over the limit for one that was).
    pub(crate) uncertain: bool,
}

impl Entry {
    /// A copy read back from the store, with its `msg` (see
    /// [`Bodies::adopt`]). `crashed`: the broker stopped without a clean
    /// shutdown since this copy was stored, so it may have been delivered.
    pub(crate) fn from_stored(m: &RecoveredMessage, msg: Arc<Message>, crashed: bool) -> Entry {
        Entry {
            seq: m.seq,
            msg,
            // After a crash nobody knows which messages were out on the
            // wire: flag them all (over-flagging is allowed, under-flagging
            // is not).
            deliveries: m.meta.deliveries + u32::from(crashed),
            redelivered: crashed || m.meta.deliveries > 0,
            stored: true,
            priority: m.meta.priority,
            expires_at: m.meta.expires_at,
            not_before: m.meta.not_before,
            uncertain: crashed,
        }
    }

    /// The stored form of this copy's metadata; `volatile` for a spilled
    /// copy that must not survive a restart.
    pub(crate) fn meta(&self, volatile: bool) -> MessageMeta {
        let m = &self.msg;
        MessageMeta {
            body_id: m.body_id,
            id: m.id.clone(),
            exchange: m.exchange.to_string(),
            routing_key: m.routing_key.clone(),
            headers: m.headers.clone(),
            deliveries: self.deliveries,
            expires_at: self.expires_at,
            not_before: self.not_before,
            priority: self.priority,
            volatile,
            published_at: m.published_at,
            group: m.group.clone(),
        }
    }

    /// Whether it has expired at `now` (Unix ms). `expires_at` is the last
    /// millisecond it lives: clocks are read in whole milliseconds, so a
    /// copy never expires before its full TTL has passed.
    pub(crate) fn expired(&self, now: &Now) -> bool {
        self.expires_at.is_some_and(|t| t < now.get())
    }
}

/// The wall clock read at most once per operation, and only when a
/// deadline needs it (most messages have none: no clock call per message).
#[derive(Debug, Default)]
pub(crate) struct Now(std::cell::Cell<Option<u64>>);

impl Now {
    /// A clock already read.
    pub(crate) fn at(t: u64) -> Now {
        Now(std::cell::Cell::new(Some(t)))
    }

    /// The time (Unix ms), read on first use.
    pub(crate) fn get(&self) -> u64 {
        match self.0.get() {
            Some(t) => t,
            None => {
                let t = now_ms();
                self.0.set(Some(t));
                t
            }
        }
    }
}

/// The wall clock in Unix milliseconds: deadlines are stored, so they must
/// survive a restart.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MessageMeta;

    fn stored(seq: u64, body_id: u64, inline: bool) -> RecoveredMessage {
        RecoveredMessage {
            queue_id: 1,
            seq,
            meta: MessageMeta {
                published_at: 0,
                group: None,
                body_id,
                id: "m".into(),
                exchange: String::new(),
                routing_key: "q".into(),
                headers: vec![],
                deliveries: 0,
                expires_at: None,
                not_before: None,
                priority: 0,
                volatile: false,
            },
            body: Bytes::from_static(b"body"),
            inline,
        }
    }

    fn refs(m: &Arc<Message>) -> u32 {
        m.stored_refs.load(Ordering::Acquire)
    }

    #[test]
    fn a_shared_body_keeps_its_count_while_every_copy_is_paged_out() {
        let bodies = Arc::new(Bodies::new(true));
        bodies.restore(HashMap::from([(7, 3)]));
        // Two queues read their copies back: one message, count 3.
        let a = bodies.adopt(&stored(1, 7, false));
        let b = bodies.adopt(&stored(1, 7, false));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(refs(&a), 3);
        assert!(!a.release_stored());
        drop((a, b));
        // Both dropped: the count (2) is kept for the third copy.
        let c = bodies.adopt(&stored(1, 7, false));
        assert_eq!(refs(&c), 2);
        assert!(!c.release_stored());
        assert!(c.release_stored(), "the last copy removes the body");
    }

    #[test]
    fn a_registered_message_hands_its_count_over_when_dropped() {
        let bodies = Arc::new(Bodies::new(true));
        let m = Arc::new(Message::from_stored(&stored(1, 9, false), 2));
        bodies.register(&m);
        drop(m);
        assert_eq!(refs(&bodies.adopt(&stored(1, 9, false))), 2);
        // A sole copy is not registered: read back, it has one reference.
        let sole = Arc::new(Message::from_stored(&stored(1, 11, false), 1));
        bodies.register(&sole);
        drop(sole);
        assert_eq!(refs(&bodies.adopt(&stored(1, 11, false))), 1);
        // An inline body is its copy's alone.
        assert_eq!(refs(&bodies.adopt(&stored(1, 12, true))), 1);
    }
}
