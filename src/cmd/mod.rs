//! Command execution: [`apply`] runs one parsed [`Command`] against the
//! broker for one session and queues its reply (and any `GET` deliveries).
//! One file per verb family, named after it, so that a verb in
//! `protocol.md` is answered by one file here.

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

pub use publish::confirm;

use crate::error::BrokerError;
use crate::protocol::reply::Reply;
use crate::protocol::Command;
use crate::session::{GetWait, HeldPub, Pending, Session};

/// What the session does after a command.
#[derive(Debug)]
pub enum Outcome {
    /// The reply is queued; go on.
    Done,
    /// A `GET wait=` found nothing: wait before replying.
    Wait(GetWait),
    /// A `PUB` met a full `overflow=block` queue: hold its reply.
    Hold(HeldPub),
    /// `AUTH` or a `USER` command hashing a password off the session's
    /// task: read no further commands until it completes.
    Pending(Pending),
    /// `QUIT`: close once the queued replies are written.
    Quit,
}

/// Runs one command for `s`: `NOAUTH` first if the session may not run
/// it at all (see [`crate::auth::Login::admit`]).
pub fn apply(command: Command, s: &mut Session) -> Outcome {
    if let Err(e) = s.login.admit(s.broker.users(), &command) {
        if s.login.user().is_none() {
            // Logged out (its user was removed): LIST CONNECTIONS shows it.
            s.conn.set_user(None);
        }
        s.reply(e.to_reply());
        return Outcome::Done;
    }
    let result = match command {
        Command::Hello(c) => hello::hello(c, s),
        Command::Auth(c) => match auth::auth(c, s) {
            Ok(Some(p)) => return Outcome::Pending(p),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        },
        Command::User(c) => match user::user(c, s) {
            Ok(Some(p)) => return Outcome::Pending(p),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        },
        Command::Ping => {
            s.reply(Reply::words(["pong"]));
            Ok(())
        }
        Command::Quit => {
            s.reply(Reply::words(["bye"]));
            return Outcome::Quit;
        }
        Command::Help(c) => help::help(c, s),
        Command::DeclareExchange(c) => declare::exchange(c, s),
        Command::DeclareQueue(c) => declare::queue(c, s),
        Command::DeleteExchange(c) => delete::exchange(c, s),
        Command::DeleteQueue(c) => delete::queue(c, s),
        Command::Bind(c) => bind::bind(c, s),
        Command::Unbind(c) => bind::unbind(c, s),
        Command::Purge(c) => purge::purge(c, s),
        Command::Publish(c) => match publish::publish(c, s) {
            Ok(Some(held)) => return Outcome::Hold(held),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        },
        Command::Subscribe(c) => subscribe::subscribe(c, s),
        Command::Unsubscribe(c) => subscribe::unsubscribe(c, s),
        Command::Get(c) => match get::get(c, s) {
            Ok(Some(wait)) => return Outcome::Wait(wait),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        },
        Command::Ack(c) => ack::ack(c, s),
        Command::Nack(c) => ack::nack(c, s),
        Command::Touch(c) => ack::touch(c, s),
        Command::Peek(c) => peek::peek(c, s),
        Command::Redrive(c) => redrive::redrive(c, s),
        Command::Stats(c) => stats::stats(c, s),
        Command::List(c) => list::list(c, s),
        Command::Seek(c) => seek::seek(c, s),
    };
    if let Err(e) = result {
        s.reply(e.to_reply());
    }
    Outcome::Done
}

/// Queues a reply that waits for store generation `gen` when there is one.
fn reply_after(s: &mut Session, reply: Reply, gen: Option<u64>) -> Result<(), BrokerError> {
    s.push_reply(reply, gen);
    Ok(())
}
