//! What a command returns: an [`Outcome`], and the two kinds of wait it
//! may ask the session for, a [`Pending`] command (the connection reads
//! nothing more until it completes) and a [`HeldPub`] (its reply's place
//! is kept while the connection reads on).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::broker::Hold;
use crate::error::BrokerError;
use crate::protocol::command::Publish;
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// What came of a command (its failure is the `Err` beside it, answered
/// `ERR <code> <message>`).
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Answer with this reply, once the store generation beside it (if
    /// any) is durable: a confirm. Then go on.
    Reply(Reply, Option<u64>),
    /// A `PUB` met a full `overflow=block` queue or a resource alarm:
    /// hold its reply's place until it can run again.
    Hold(HeldPub),
    /// A command that completes later (`AUTH` or a `USER` command hashing
    /// a password off the session's task, a `GET wait=` waiting for a
    /// message): read no further commands until it completes.
    Pending(Pending),
    /// A command whose reply comes later (a publish to replicated queues,
    /// waiting for their commit), while the connection reads on: its
    /// reply keeps its place, and what it completes to may only be a
    /// reply.
    Later(Pending),
    /// `QUIT`: answer with this reply, then close once it is written.
    Quit(Reply),
}

impl Outcome {
    /// Answer with `reply` at once.
    pub(crate) fn reply(reply: Reply) -> Outcome {
        Outcome::Reply(reply, None)
    }
}

/// What a [`Pending`] command does on the connection once its work is
/// done: update the session, and say what came of it.
pub(crate) type Completion =
    Box<dyn FnOnce(&mut SessionState) -> Result<Outcome, BrokerError> + Send>;

/// A command that completes later: its work runs off the session's task
/// (an argon2 hash, on the blocking pool) or waits (a `GET wait=`). The
/// connection reads no further commands until it completes (pushes still
/// flow), so replies stay in order and what follows runs after it (as the
/// user an `AUTH` logged in).
pub(crate) struct Pending(Pin<Box<dyn Future<Output = Completion> + Send>>);

impl Pending {
    /// Wraps the work.
    pub(crate) fn new(work: impl Future<Output = Completion> + Send + 'static) -> Pending {
        Pending(Box::pin(work))
    }
}

impl Future for Pending {
    type Output = Completion;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Completion> {
        self.0.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

/// A `PUB` waiting for room in a full `overflow=block` queue, or for a
/// resource alarm (disk, memory) to clear. The session keeps its reply's
/// place meanwhile (see [`crate::session`]). How it waits and runs again
/// is `PUB`'s, in publish.rs.
#[derive(Debug)]
pub(crate) struct HeldPub {
    /// The publish, run again when the hold ends.
    pub(super) cmd: Publish,
    /// What it waits for.
    pub(super) on: Hold,
}
