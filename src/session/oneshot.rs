//! One command run without a connection: how the HTTP API acts. The
//! command goes through [`cmd::apply`] against a detached
//! [`SessionState`] logged in as the API's user, exactly as it would on a
//! connection, so it meets the same checks (`NOAUTH`, `FORBIDDEN`, the
//! limits) and has the same effects; then its waits are driven here
//! instead of by the loop in `run.rs`: a pending command (`USER ADD`
//! hashing a password, `GET wait=`), a held `PUB` (a full
//! `overflow=block` queue, an alarm) and a confirm that waits for the
//! group commit. What the command showed (its reply, a `GET`'s or a
//! `PEEK`'s messages) is handed back as values.
//!
//! The state lives for that one command, then is closed as a connection
//! is: a `GET ack=manual` delivery goes back to its queue (flagged
//! redelivered), an `exclusive` queue it declared is deleted. Commands
//! that only make sense on a connection that stays (`SUB`, `ACK`, ...) are
//! refused before they run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::User;
use crate::broker::Broker;
use crate::cmd::{self, HeldPub, Outcome, Retried};
use crate::error::BrokerError;
use crate::protocol::reply::Reply;
use crate::protocol::Command;
use crate::session_state::{Out, SessionState, Shown};

/// What one command came to.
#[derive(Debug)]
pub(crate) struct Ran {
    /// Its reply (`OK ...` or `ERR ...`).
    pub(crate) reply: Reply,
    /// The messages it showed, in order (`GET`, `PEEK`).
    pub(crate) shown: Vec<Shown>,
}

/// Why a command was not run, or not to the end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotRun {
    /// The verb needs a connection that stays (a subscription, the
    /// connection's own deliveries, its login or handshake).
    #[error("{0} needs a connection of its own: use the protocol")]
    NeedsConnection(&'static str),
    /// No answer within the patience given: the command may still take
    /// effect (a held `PUB` stops waiting and stores nothing).
    #[error("no answer within {} s", .0.as_secs())]
    TimedOut(Duration),
}

/// Runs `command` as `login` (a user and the registry generation it was
/// read at; `None` on an open broker) for a client at `peer`, waiting at
/// most `patience` for its answer (see the module docs).
pub(crate) async fn run(
    broker: &Broker,
    login: Option<(Arc<User>, u64)>,
    peer: SocketAddr,
    command: Command,
    patience: Duration,
) -> Result<Ran, NotRun> {
    if let Some(verb) = needs_connection(&command) {
        return Err(NotRun::NeedsConnection(verb));
    }
    let mut state = SessionState::detached(broker.next_id(), peer, broker.clone());
    if let Some((user, generation)) = login {
        state.log_in(user, generation);
    }
    let ran = execute(&mut state, command, patience).await;
    state.close();
    ran
}

/// Runs an `AUTH` for a client at `peer`, as a connection would (the same
/// answer for an unknown user and a wrong password, the same rate limit
/// per user and address): its reply, and the user it logged in (`None`
/// when it failed, or on an open broker, where `AUTH` is `OK` and logs in
/// no one).
pub(crate) async fn authenticate(
    broker: &Broker,
    peer: SocketAddr,
    auth: crate::protocol::command::Auth,
    patience: Duration,
) -> Result<(Reply, Option<Arc<User>>), NotRun> {
    let mut state = SessionState::detached(broker.next_id(), peer, broker.clone());
    let ran = execute(&mut state, Command::Auth(auth), patience).await;
    let user = state.login().user().cloned();
    state.close();
    Ok((ran?.reply, user))
}

/// Runs `command` on `state` and collects what it showed.
async fn execute(
    state: &mut SessionState,
    command: Command,
    patience: Duration,
) -> Result<Ran, NotRun> {
    let done = tokio::time::timeout(patience, async {
        drive(state, command).await;
        durable(state).await;
    })
    .await;
    if done.is_err() {
        return Err(NotRun::TimedOut(patience));
    }
    let broker = state.broker().clone();
    let commit = broker.committer().subscribe().borrow().clone();
    let (replies, shown) = state.outbox_mut().take_detached(&commit, &broker);
    let reply = replies
        .into_iter()
        .next_back()
        .unwrap_or_else(|| Reply::Err(crate::protocol::ErrorCode::Internal, "no reply".into()));
    Ok(Ran { reply, shown })
}

/// The verbs refused (see the module docs), by name.
fn needs_connection(command: &Command) -> Option<&'static str> {
    Some(match command {
        Command::Hello(_) => "HELLO",
        Command::Auth(_) => "AUTH",
        Command::Quit => "QUIT",
        Command::Subscribe(_) => "SUB",
        Command::Unsubscribe(_) => "UNSUB",
        Command::Ack(_) => "ACK",
        Command::Nack(_) => "NACK",
        Command::Touch(_) => "TOUCH",
        Command::Tx(_) => "TX",
        _ => return None,
    })
}

/// Runs the command and whatever it waits for, until its reply is queued.
async fn drive(state: &mut SessionState, command: Command) {
    let mut outcome = cmd::apply(command, state);
    loop {
        outcome = match outcome {
            Ok(Outcome::Reply(reply, gen)) => {
                state.outbox_mut().push(Out::Reply(reply, gen));
                return;
            }
            // Refused before it ran (`needs_connection`).
            Ok(Outcome::Quit(reply)) => {
                state.outbox_mut().push(Out::Reply(reply, None));
                return;
            }
            Ok(Outcome::Pending(p)) | Ok(Outcome::Later(p)) => {
                let complete = p.await;
                complete(state)
            }
            Ok(Outcome::Hold(h)) => held(h, state.broker()).await,
            Err(e) => {
                state.outbox_mut().push(Out::Reply(e.to_reply(), None));
                return;
            }
        };
    }
}

/// Waits for room for a held `PUB` and publishes it again, until it is
/// through.
async fn held(mut h: HeldPub, broker: &Broker) -> Result<Outcome, BrokerError> {
    loop {
        h.room().await;
        match h.retry(broker)? {
            Retried::Held => continue,
            Retried::Done(reply, gen) => return Ok(Outcome::Reply(reply, gen)),
            Retried::Later(p) => return Ok(Outcome::Later(p)),
        }
    }
}

/// Waits until the group commit has decided every confirm queued.
async fn durable(state: &mut SessionState) {
    let mut rx = state.broker().committer().subscribe();
    loop {
        let commit = rx.borrow_and_update().clone();
        if !state.outbox().undecided(&commit) || rx.changed().await.is_err() {
            return;
        }
    }
}
