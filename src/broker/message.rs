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
}

impl Message {
    /// The metadata of a stored copy with `deliveries` so far.
    pub fn meta(&self, deliveries: u32) -> MessageMeta {
        MessageMeta {
            body_id: self.body_id,
            id: self.id.clone(),
            exchange: self.exchange.to_string(),
            routing_key: self.routing_key.clone(),
            headers: self.headers.clone(),
            deliveries,
            expires_at: None,
            not_before: None,
            priority: 0,
        }
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
}
