//! Held publishes: a `PUB` to a full `overflow=block` queue, or held by a
//! resource alarm, keeps its reply's place in the outbox (a placeholder)
//! and waits for room; what the client sends meanwhile is [`Deferred`],
//! but for `ACK`, `NACK` and `TOUCH`, which run at once. Pushes go around
//! the placeholder, announced by `NOTICE blocked` and ended by `NOTICE
//! unblocked`.

use std::future::Future;
use std::pin::Pin;

use super::Session;
use crate::cmd::HeldPub;
use crate::protocol::reply::{Blocker, Notice};
use crate::protocol::Command;
use crate::session_state::Out;

/// What waits behind a held `PUB`.
#[derive(Debug)]
pub(super) enum Deferred {
    /// A command to run once the `PUB` is through.
    Command(Command),
    /// The reply of a command that already ran (`ACK`, `NACK`, `TOUCH`,
    /// an error), to write in its turn.
    Reply(Out),
}

/// A held `PUB` and its wait for room.
pub(super) struct Held {
    publish: HeldPub,
    room: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("publish", &self.publish)
            .finish_non_exhaustive()
    }
}

impl Held {
    fn new(publish: HeldPub) -> Held {
        let room = Box::pin(publish.room());
        Held { publish, room }
    }

    /// Completes when what holds the `PUB` may have cleared. Cancel-safe.
    pub(super) async fn wait(&mut self) {
        self.room.as_mut().await;
    }
}

impl Session {
    /// Holds a `PUB` until its queue has room (or its alarm clears).
    pub(super) fn start_hold(&mut self, h: HeldPub) {
        self.state.outbox_mut().hold();
        let on = h.blocker();
        self.held = Some(Held::new(h));
        self.state
            .outbox_mut()
            .push_around(Out::Notice(Notice::Blocked { on }));
    }

    /// The held `PUB`'s queue signalled room: publish again. Done (or
    /// failed), the reply takes the placeholder's place and the pushes
    /// that went around it follow it.
    pub(super) fn retry_held(&mut self) {
        let Some(Held { publish: mut h, .. }) = self.held.take() else {
            return;
        };
        let reply = match h.retry(self.state.broker()) {
            Ok(None) => {
                self.held = Some(Held::new(h));
                return;
            }
            Ok(Some((reply, gen))) => Out::Reply(reply, gen),
            Err(e) => Out::Reply(e.to_reply(), None),
        };
        self.release_held(reply, h.blocker());
    }

    /// Ends the hold with `reply` (a shutdown's error, say) in the
    /// placeholder's place, if a `PUB` is held.
    pub(super) fn drop_held(&mut self, reply: Out) {
        if let Some(h) = self.held.take() {
            self.release_held(reply, h.publish.blocker());
        }
    }

    /// Puts `reply` where the held `PUB`'s placeholder is, followed by the
    /// pushes that went around it.
    fn release_held(&mut self, reply: Out, on: Blocker) {
        let outbox = self.state.outbox_mut();
        outbox.push_around(Out::Notice(Notice::Unblocked { on }));
        outbox.release(reply);
    }
}
