//! [`Held`]: a held `PUB` and what waits behind it. A `PUB` to a full
//! `overflow=block` queue, or held by a resource alarm, keeps its reply's
//! place in the outbox (a placeholder) and waits for room, announced by
//! `NOTICE blocked` and ended by `NOTICE unblocked` (at a stop, by the
//! `PUB`'s `ERR` alone); pushes go around the placeholder. What the client
//! sends meanwhile is deferred, but for `ACK`, `NACK` and `TOUCH`, which
//! run at once (a connection that consumes the full queue frees it); their
//! replies wait their turn behind what was deferred before them.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use crate::cmd::{HeldPub, Pending, Retried};
use crate::protocol::reply::{Blocker, Notice, Reply};
use crate::protocol::{Command, ErrorCode};
use crate::session_state::{Out, Outbox, SessionState};

/// Stop reading while this many commands wait behind a held `PUB`.
const MAX_DEFERRED: usize = 16 * 1024;

/// What waits behind a held `PUB`.
#[derive(Debug)]
enum Deferred {
    /// A command to run once the `PUB` is through.
    Command(Command),
    /// The reply of a command that already ran (`ACK`, `NACK`, `TOUCH`,
    /// an error), to write in its turn.
    Reply(Out),
}

/// The held `PUB`, if any, with its wait for room, and what waits behind
/// it (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Held {
    /// The held `PUB` and its wait.
    publish: Option<Waiting>,
    /// Commands read while a `PUB` is held, to run after it, and the
    /// replies of those that ran at once, in order.
    deferred: VecDeque<Deferred>,
}

/// A held `PUB` and its wait for room.
struct Waiting {
    publish: HeldPub,
    room: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Waiting {
    fn new(publish: HeldPub) -> Waiting {
        let room = Box::pin(publish.room());
        Waiting { publish, room }
    }
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("publish", &self.publish)
            .finish_non_exhaustive()
    }
}

impl Held {
    /// Whether a `PUB` is held.
    pub(super) fn is_holding(&self) -> bool {
        self.publish.is_some()
    }

    /// Whether nothing is held and nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.publish.is_none() && self.deferred.is_empty()
    }

    /// Whether as many commands wait as may: read no more.
    pub(super) fn is_full(&self) -> bool {
        self.deferred.len() >= MAX_DEFERRED
    }

    /// Keeps `command` behind the held `PUB`; hands it back to run now when
    /// nothing is held, or when it settles deliveries (`ACK`, `NACK`,
    /// `TOUCH`) and no `TX` waits before it (an `ACK` after a `TX BEGIN`
    /// belongs to the transaction).
    pub(super) fn defer(&mut self, command: Command) -> Option<Command> {
        let tx_waits = || {
            self.deferred
                .iter()
                .any(|d| matches!(d, Deferred::Command(Command::Tx(_))))
        };
        if self.publish.is_some()
            && (!matches!(
                command,
                Command::Ack(_) | Command::Nack(_) | Command::Touch(_)
            ) || tx_waits())
        {
            self.deferred.push_back(Deferred::Command(command));
            return None;
        }
        Some(command)
    }

    /// Once nothing is held: the next deferred command, the replies
    /// deferred before it going to `outbox`.
    pub(super) fn next_deferred(&mut self, outbox: &mut Outbox) -> Option<Command> {
        if self.publish.is_some() {
            return None;
        }
        while let Some(d) = self.deferred.pop_front() {
            match d {
                Deferred::Command(c) => return Some(c),
                Deferred::Reply(r) => outbox.push(r),
            }
        }
        None
    }

    /// Queues a reply (one that may wait for a store generation): in
    /// `outbox`, or, while a `PUB` is held with commands deferred behind
    /// it (a reply to an `ACK` that ran at once, or an error), behind them.
    pub(super) fn answer(&mut self, item: Out, outbox: &mut Outbox) {
        if self.publish.is_some() && !self.deferred.is_empty() {
            self.deferred.push_back(Deferred::Reply(item));
        } else {
            outbox.push(item);
        }
    }

    /// Holds a `PUB` until its queue has room (or its alarm clears).
    pub(super) fn start(&mut self, h: HeldPub, outbox: &mut Outbox) {
        outbox.hold();
        let on = h.blocker();
        self.publish = Some(Waiting::new(h));
        outbox.push_around(Out::Notice(Notice::Blocked { on }));
    }

    /// Completes when what holds the `PUB` may have cleared; never while
    /// nothing is held. Cancel-safe.
    pub(super) async fn room(&mut self) {
        match self.publish.as_mut() {
            Some(w) => w.room.as_mut().await,
            None => std::future::pending().await,
        }
    }

    /// The held `PUB`'s queue signalled room: publish again. Done (or
    /// failed), the reply takes the placeholder's place and the pushes
    /// that went around it follow it.
    ///
    /// A confirm that waits for replicated queues is handed to `later`,
    /// which runs it and returns its placeholder.
    pub(super) fn retry(&mut self, state: &mut SessionState, later: impl FnOnce(Pending) -> Out) {
        let Some(Waiting { publish: mut h, .. }) = self.publish.take() else {
            return;
        };
        let reply = match h.retry(state.broker()) {
            Ok(Retried::Held) => {
                self.publish = Some(Waiting::new(h));
                return;
            }
            Ok(Retried::Done(reply, gen)) => Out::Reply(reply, gen),
            Ok(Retried::Later(p)) => later(p),
            Err(e) => Out::Reply(e.to_reply(), None),
        };
        release(state.outbox_mut(), reply, h.blocker());
    }

    /// The server is shutting down: a held `PUB` fails in its place, and
    /// what waits behind it is dropped. No `NOTICE unblocked` follows the
    /// failure: it would say that the `PUB` went through and that the
    /// connection's commands run again, and neither is so.
    pub(super) fn shut_down(&mut self, outbox: &mut Outbox) {
        if self.publish.take().is_some() {
            let failed = Reply::Err(
                ErrorCode::Internal,
                "server shutting down; message not stored".into(),
            );
            outbox.release(Out::Reply(failed, None));
        }
        self.deferred.clear();
    }
}

/// Puts `reply` where the held `PUB`'s placeholder is, followed by the
/// pushes that went around it.
fn release(outbox: &mut Outbox, reply: Out, on: Blocker) {
    outbox.push_around(Out::Notice(Notice::Unblocked { on }));
    outbox.release(reply);
}
