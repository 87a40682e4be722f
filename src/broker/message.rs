//! [`Message`] (one published message, shared by every queue it was routed
//! to) and [`Entry`] (one queue's copy: its position and delivery count).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::command::Header;
use crate::store::MessageMeta;

/// A published message. One `Arc<Message>` is shared by every queue the
/// message was routed to, so a fan-out holds its body once in RAM, and (as
/// `body_id`) once on disk.
#[derive(Debug)]
pub struct Message {
    /// Message id (client-chosen or generated).
    pub id: String,
    /// Exchange it was published to.
    pub exchange: Arc<str>,
    /// Routing key.
    pub routing_key: String,
    /// Headers.
    pub headers: Vec<Header>,
    /// Body.
    pub body: Bytes,
    /// Key of the stored body; meaningful only while `stored_refs` > 0.
    pub body_id: u64,
    /// How many stored queue copies reference the stored body; the body is
    /// removed from the store with the last one.
    pub stored_refs: AtomicU32,
    /// Published as persistent (stored in every durable queue it reaches).
    pub persistent: bool,
}

impl Message {
    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Drops one stored reference; true when it was the last (remove the body).
    pub fn release_stored(&self) -> bool {
        self.stored_refs.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

/// One queue's copy of a message.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Position in its queue (the store key's suffix). Requeued entries go
    /// back to their position, so order survives redelivery.
    pub seq: u64,
    /// The shared message.
    pub msg: Arc<Message>,
    /// How many times this copy has been delivered.
    pub deliveries: u32,
    /// Flagged as possibly delivered before (after a crash).
    pub redelivered: bool,
    /// Whether this copy is in the store (durable queue, persistent message).
    pub stored: bool,
    /// Priority within its queue (0 unless the queue has `max-priority`).
    pub priority: u8,
    /// When it expires (Unix ms): the smaller of the queue's and the
    /// message's TTL, counted from when it entered this queue.
    pub expires_at: Option<u64>,
    /// Not to be delivered before this (Unix ms).
    pub not_before: Option<u64>,
    /// Recovered after a crash: `deliveries` counts one delivery that may
    /// not have happened. `delivery-limit` does not count it, so a crash
    /// never dead-letters a message that was not delivered (at the price of
    /// one delivery over the limit for one that was).
    pub uncertain: bool,
}

impl Entry {
    /// The stored form of this copy's metadata.
    pub fn meta(&self) -> MessageMeta {
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
            volatile: false,
        }
    }

    /// Whether it has expired at `now` (Unix ms). `expires_at` is the last
    /// millisecond it lives: clocks are read in whole milliseconds, so a
    /// copy never expires before its full TTL has passed.
    pub fn expired(&self, now: &Now) -> bool {
        self.expires_at.is_some_and(|t| t < now.get())
    }
}

/// The wall clock read at most once per operation, and only when a
/// deadline needs it (most messages have none: no clock call per message).
#[derive(Debug, Default)]
pub struct Now(std::cell::Cell<Option<u64>>);

impl Now {
    /// A clock already read.
    pub fn at(t: u64) -> Now {
        Now(std::cell::Cell::new(Some(t)))
    }

    /// The time (Unix ms), read on first use.
    pub fn get(&self) -> u64 {
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
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
