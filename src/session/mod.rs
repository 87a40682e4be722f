//! `Session`: one connection's event loop. Frames come in, commands run
//! (through [`crate::cmd`], against the connection's
//! [`SessionState`](crate::session_state)), and replies and pushes go out
//! in the order the protocol promises; server.rs makes one per connection
//! and runs it.
//!
//! **Ordering.** Everything to be written goes through the state's outbox,
//! one FIFO: a reply that promises durability (a persistent `PUB`, an
//! `ACK` that removed a stored message) waits at its place until the group
//! commit reaches its generation, and everything behind it waits too.
//! Meanwhile the loop keeps reading and executing pipelined commands, which
//! is what lets many publishes share one fsync.
//!
//! **Held publishes** ([`held`]). A `PUB` to a full `overflow=block` queue
//! stores nothing and holds its place in the outbox until the queue has
//! room, then runs again; so does one held by a resource alarm
//! (`broker::alarm`: disk, memory). Meanwhile the connection keeps
//! reading: `ACK`, `NACK` and `TOUCH` take effect at once (so a connection
//! that consumes the full queue frees it), every other command waits,
//! deferred, and runs, in order, after the held one. Pushes (deliveries,
//! notices) go around the held reply.
//!
//! **Waiting commands.** `AUTH`, `USER` commands that hash a password and
//! `GET wait=` on an empty queue complete later: until they do, the
//! connection reads no further command (pushes still flow).
//!
//! **Liveness** ([`clock`]). A command that started to arrive must finish
//! within `--frame-timeout`; with `HELLO heartbeat=`, the server writes a
//! `NOTICE heartbeat` when it has written nothing for an interval, and
//! closes a connection it heard nothing from for two.
//!
//! **Close.** When the loop ends (the client quit or closed, a bad frame,
//! a shutdown, a peer gone), the write side is shut down (bounded: over
//! TLS it is a write), the state is closed (subscriptions cancelled,
//! unacked deliveries requeued, exclusive queues deleted), and unless the
//! peer is gone, what it still sends is read and dropped for a moment, so
//! that it reads our last replies rather than a reset.

mod clock;
mod held;
pub(crate) mod oneshot;
mod run;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;

use crate::broker::Broker;
use crate::cmd::{Completion, Pending};
use crate::connection::{FrameReader, FrameWriter};
use crate::session_state::SessionState;

use held::Held;

/// How long a closing connection's last writes may wait for the peer to
/// read them (at a shutdown, say), before it is closed regardless.
const CLOSING_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection: its state and what its loop is waiting for.
#[derive(Debug)]
pub(crate) struct Session {
    /// What the connection holds, and what commands touch.
    state: SessionState,
    /// A command that completes later: no further command is read until
    /// it does.
    pending: Option<Pending>,
    /// The held `PUB`, if any, and what waits behind it.
    held: Held,
    /// Commands whose replies come later, while the connection reads on
    /// (publishes to replicated queues), by the id of their reply's place.
    later: tokio::task::JoinSet<(u64, Completion)>,
    /// The id of the next later reply.
    next_later: u64,
}

impl Session {
    /// A new session for connection `conn_id`.
    pub(crate) fn new(conn_id: u64, peer: SocketAddr, tls: bool, broker: Broker) -> Session {
        Session {
            state: SessionState::new(conn_id, peer, tls, broker),
            pending: None,
            held: Held::default(),
            later: tokio::task::JoinSet::new(),
            next_later: 0,
        }
    }

    /// Runs the connection until it closes, the client quits, or `shutdown`
    /// fires (with the reason for `NOTICE closing`), then closes it (see
    /// the module docs).
    pub(crate) async fn run(
        mut self,
        mut reader: FrameReader,
        mut writer: FrameWriter,
        mut shutdown: watch::Receiver<Option<&'static str>>,
    ) {
        let ended = self.serve(&mut reader, &mut writer, &mut shutdown).await;
        // Bounded: over TLS the close_notify is a write, which a peer that
        // does not read would hold up.
        let _ = tokio::time::timeout(CLOSING_WRITE_TIMEOUT, writer.shutdown()).await;
        let Session {
            state,
            pending,
            held,
            later,
            ..
        } = self;
        drop(later);
        state.close();
        // A held PUB stops counting as blocked with the state; a pending
        // command's work is dropped last, after the linger.
        drop(held);
        if ended.reading && !ended.peer_gone {
            // Closed by the server (a shutdown, a failed store, a bad
            // frame) while the peer may still be sending: a FIN and a
            // short read to its end, not a reset that would cost the peer
            // our last replies.
            reader.discard_until_eof(crate::connection::LINGER).await;
        }
        drop(pending);
    }
}
