//! `AUTH`: log in. See protocol.md, "AUTH".

use tracing::instrument;

use super::outcome::{Completion, Outcome, Pending};
use crate::error::BrokerError;
use crate::protocol::command::Auth;
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// `AUTH <user> <password>` → `OK <user>`, or `ERR NOAUTH invalid user or
/// password` (the same for an unknown user and a wrong password, and as
/// slow). On a broker without users it is `OK` at once (open broker).
///
/// The argon2 check runs on the blocking pool ([`Pending`]); the
/// connection reads no further command until it is done, so what the
/// client pipelined after `AUTH` runs as the new user. A failed `AUTH`
/// leaves the connection as it was (logged in as before, or not); a
/// successful one switches user. After
/// [`MAX_FAILED_LOGINS`](crate::auth::limiter::MAX_FAILED_LOGINS) failures
/// for one user name from one IP within a minute, `AUTH` as that user from
/// that IP is refused unchecked until the minute is over; other users of
/// the address log in as before.
#[instrument(level = "debug", name = "AUTH", skip_all, fields(conn = s.conn_id(), user = %c.user))]
pub(super) fn auth(c: Auth, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    let users = s.broker().users().clone();
    if !users.has_users() {
        return Ok(Outcome::reply(Reply::ok()));
    }
    let ip = s.peer().ip();
    if let Some(wait) = users.login_blocked(&c.user, ip) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(BrokerError::NoAuth(format!(
            "too many failed logins as {:?} from {ip}; try again in {secs} s",
            c.user
        )));
    }
    // Read before the user: a change made meanwhile is picked up at the
    // next command (see `Login::admit`).
    let generation = users.generation();
    let user = users.get(&c.user);
    let hash = user.as_ref().map(|u| u.hash().to_string());
    let conn = s.conn_id();
    Ok(Outcome::Pending(Pending::new(async move {
        let ok = users.verify_password(hash, c.password.0).await;
        let user = user.filter(|_| ok);
        users.login_outcome(&c.user, ip, user.is_some());
        Box::new(move |s: &mut SessionState| match user {
            Some(u) => {
                tracing::info!(conn, user = %u.name, "authenticated");
                let reply = Reply::words([u.name.as_str()]);
                s.log_in(u, generation);
                Ok(Outcome::reply(reply))
            }
            None => {
                tracing::info!(conn, peer = %ip, user = %c.user, "failed login");
                Err(BrokerError::NoAuth("invalid user or password".into()))
            }
        }) as Completion
    })))
}
