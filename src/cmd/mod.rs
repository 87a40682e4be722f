//! Command execution: [`apply`] runs one parsed [`Command`] against the
//! broker for one connection and returns what happened, an [`Outcome`]:
//! the reply, or a command that must wait (a held `PUB`, an `AUTH` hashing
//! a password, a `GET wait=`). One file per verb family, named after it, so
//! that a verb in `protocol.md` is answered by one file here.
//!
//! What a handler returns is in [`outcome`], below the handlers (they
//! import it; this file only dispatches to them). A handler touches the
//! connection only through the [`SessionState`] methods it is handed
//! (tags, unacked deliveries, subscriptions, the login, the lines a `GET`
//! or `PEEK` shows); it never writes its reply itself. The session loop
//! ([`crate::session`]) calls [`apply`] and puts each reply in its place;
//! so does, for one command without a connection (the HTTP API's),
//! `session::oneshot`. So `cmd` depends on `session_state`, and `session`
//! on both, never the other way round.
//!
//! On a cluster node the commands that change the replicated topology
//! go to the cluster's metadata group first ([`replicated`]), which
//! applies them on every node with the same broker calls (`USER`'s
//! changes do so in `user.rs`, after hashing the password).
//!
//! Each handler opens a tracing span named after its verb, at `debug`
//! (`trace` for `PUB`, `ACK`, `NACK`, `TOUCH` and `GET`, which run at the
//! message rate): disabled, as at the default `info`, a span costs one
//! check of the level filter.

mod ack;
mod auth;
mod bind;
mod close;
mod cluster;
mod declare;
mod delete;
mod get;
mod hello;
mod help;
mod list;
mod outcome;
mod peek;
mod publish;
mod purge;
mod redrive;
mod replicated;
mod schema;
mod seek;
mod stats;
mod subscribe;
mod tx;
mod user;

pub(crate) use outcome::{Completion, HeldPub, Outcome, Pending};
pub(crate) use publish::Retried;
pub(crate) use replicated::apply_meta;

use crate::error::BrokerError;
use crate::protocol::reply::Reply;
use crate::protocol::Command;
use crate::session_state::SessionState;

/// Runs one command for the connection `s`: `NOAUTH` first if it may not
/// run it at all (see [`crate::auth::Login::admit`]).
pub(crate) fn apply(command: Command, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.admit(&command)?;
    if let Some(consensus) = s.broker().consensus() {
        if let Some(proposed) = replicated::propose(&command, consensus, s)? {
            return Ok(proposed);
        }
    }
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
        Command::Publish(c) => {
            s.count_publish();
            match s.tx() {
                Some(_) => tx::buffer_publish(c, s),
                None => publish::publish(c, s),
            }
        }
        Command::Subscribe(c) => subscribe::subscribe(c, s),
        Command::Unsubscribe(c) => subscribe::unsubscribe(c, s),
        Command::Get(c) => get::get(c, s),
        Command::Ack(c) => match s.tx() {
            Some(_) => tx::buffer_ack(c, s),
            None => ack::ack(c, s),
        },
        Command::Nack(c) => ack::nack(c, s),
        Command::Touch(c) => ack::touch(c, s),
        Command::Peek(c) => peek::peek(c, s),
        Command::Redrive(c) => redrive::redrive(c, s),
        Command::Stats(c) => stats::stats(c, s),
        Command::List(c) => list::list(c, s),
        Command::Seek(c) => seek::seek(c, s),
        Command::Cluster(c) => cluster::cluster(c, s),
        Command::CloseConnection(c) => close::close(c, s),
        Command::Tx(c) => tx::tx(c, s),
        Command::Schema(c) => schema::schema(c, s),
    }
}
