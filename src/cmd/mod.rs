//! Command execution: [`apply`] runs one parsed [`Command`] against the
//! broker for one connection and returns what happened, an [`Outcome`]:
//! the reply, or a command that must wait (a held `PUB`, an `AUTH` hashing
//! a password, a `GET wait=`). One file per verb family, named after it, so
//! that a verb in `protocol.md` is answered by one file here.
//!
//! A handler touches the connection only through the [`SessionState`]
//! methods it is handed (tags, unacked deliveries, subscriptions, the
//! login, the lines a `GET` or `PEEK` shows); it never writes its reply
//! itself. The session loop ([`crate::session`]) is the only caller of
//! [`apply`] and puts each reply in its place. So `cmd` depends on
//! `session_state` and `session` on both, never the other way round.
//!
//! Each handler opens a tracing span named after its verb, at `debug`
//! (`trace` for `PUB`, `ACK`, `NACK`, `TOUCH` and `GET`, which run at the
//! message rate): disabled, as at the default `info`, a span costs one
//! check of the level filter.

mod ack;
mod auth;
mod bind;
mod declare;
mod delete;
mod get;
mod hello;
mod help;
mod list;
mod peek;
mod publish;
mod purge;
mod redrive;
mod seek;
mod stats;
mod subscribe;
mod user;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub(crate) use publish::HeldPub;

use crate::error::BrokerError;
use crate::protocol::reply::Reply;
use crate::protocol::Command;
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

/// Runs one command for the connection `s`: `NOAUTH` first if it may not
/// run it at all (see [`crate::auth::Login::admit`]).
pub(crate) fn apply(command: Command, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.admit(&command)?;
    match command {
        Command::Hello(c) => hello::hello(c, s),
        Command::Auth(c) => auth::auth(c, s),
        Command::User(c) => user::user(c, s),
        Command::Ping => Ok(Outcome::reply(Reply::words(["pong"]))),
        Command::Quit => Ok(Outcome::Quit(Reply::words(["bye"]))),
        Command::Help(c) => help::help(c),
        Command::DeclareExchange(c) => declare::exchange(c, s),
        Command::DeclareQueue(c) => declare::queue(c, s),
        Command::DeleteExchange(c) => delete::exchange(c, s),
        Command::DeleteQueue(c) => delete::queue(c, s),
        Command::Bind(c) => bind::bind(c, s),
        Command::Unbind(c) => bind::unbind(c, s),
        Command::Purge(c) => purge::purge(c, s),
        Command::Publish(c) => publish::publish(c, s),
        Command::Subscribe(c) => subscribe::subscribe(c, s),
        Command::Unsubscribe(c) => subscribe::unsubscribe(c, s),
        Command::Get(c) => get::get(c, s),
        Command::Ack(c) => ack::ack(c, s),
        Command::Nack(c) => ack::nack(c, s),
        Command::Touch(c) => ack::touch(c, s),
        Command::Peek(c) => peek::peek(c, s),
        Command::Redrive(c) => redrive::redrive(c, s),
        Command::Stats(c) => stats::stats(c, s),
        Command::List(c) => list::list(c, s),
        Command::Seek(c) => seek::seek(c, s),
    }
}
