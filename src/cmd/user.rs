//! `USER ADD|PASSWD|PERMIT|REMOVE|LIST`: user administration over the
//! protocol. See protocol.md, "USER".

use std::sync::Arc;

use bytes::Bytes;

use tracing::instrument;

use super::outcome::{Completion, Outcome, Pending};
use crate::auth::{self, Change, Pattern, Permissions, Registry, User, DEFAULT_PATTERN};
use crate::error::BrokerError;
use crate::protocol::command::{PermissionArgs, UserCommand};
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// Runs a `USER` command. Only a user tagged `admin` may (`FORBIDDEN`
/// otherwise); on an open broker (no users yet) anyone may, and the first
/// user added must be an admin, so that the broker is never left with
/// users but no one to manage them.
#[instrument(level = "debug", name = "USER", skip_all, fields(conn = s.conn_id()))]
pub(super) fn user(c: UserCommand, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    let verb = match &c {
        UserCommand::Add(_) => "USER ADD",
        UserCommand::Passwd(_) => "USER PASSWD",
        UserCommand::Permit(_) => "USER PERMIT",
        UserCommand::Remove(_) => "USER REMOVE",
        UserCommand::List => "USER LIST",
    };
    s.login().require_admin(verb)?;
    let users = s.broker().users().clone();
    match c {
        UserCommand::Add(a) => {
            if !users.has_users() && !a.admin {
                return Err(BrokerError::Precondition(
                    "the first user must be an admin: USER ADD <name> <password> admin".into(),
                ));
            }
            users.check_absent(&a.name)?;
            let perms = permissions(&a.perms)?;
            let (name, admin) = (a.name, a.admin);
            Ok(hash_then(users, a.password.0, move |users, hash| {
                tracing::info!(user = %name, admin, "user added");
                users.add(User::new(name, hash, admin, perms))
            }))
        }
        UserCommand::Passwd(p) => {
            users.check_exists(&p.name)?;
            let name = p.name;
            Ok(hash_then(users, p.password.0, move |users, hash| {
                tracing::info!(user = %name, "password changed");
                users.set_password(&name, hash)
            }))
        }
        UserCommand::Permit(p) => {
            let change = Change {
                configure: pattern(p.perms.configure.as_deref())?,
                write: pattern(p.perms.write.as_deref())?,
                read: pattern(p.perms.read.as_deref())?,
                admin: p.admin,
            };
            let gen = users.permit(&p.name, change)?;
            tracing::info!(user = %p.name, "permissions changed");
            Ok(Outcome::Reply(Reply::ok(), gen))
        }
        UserCommand::Remove(name) => {
            let gen = users.remove(&name)?;
            tracing::info!(user = %name, "user removed");
            Ok(Outcome::Reply(Reply::ok(), gen))
        }
        UserCommand::List => {
            let table = auth::table(&users.list());
            Ok(Outcome::reply(Reply::Data(
                String::new(),
                Bytes::from(table),
            )))
        }
    }
}

/// Hashes `password` off the session's task, then runs `then` with the
/// hash and answers `OK` once its write is durable.
fn hash_then(
    users: Arc<Registry>,
    password: String,
    then: impl FnOnce(&Registry, String) -> Result<Option<u64>, BrokerError> + Send + 'static,
) -> Outcome {
    Outcome::Pending(Pending::new(async move {
        let done = match users.hash_password(password).await {
            Ok(hash) => then(&users, hash),
            Err(e) => Err(e),
        };
        Box::new(move |_: &mut SessionState| Ok(Outcome::Reply(Reply::ok(), done?))) as Completion
    }))
}

/// The patterns of a new user: `.*` where not given.
fn permissions(p: &PermissionArgs) -> Result<Permissions, BrokerError> {
    let or_all = |p: &Option<String>| p.clone().unwrap_or_else(|| DEFAULT_PATTERN.to_string());
    Permissions::new(&or_all(&p.configure), &or_all(&p.write), &or_all(&p.read))
        .map_err(BrokerError::Syntax)
}

fn pattern(p: Option<&str>) -> Result<Option<Pattern>, BrokerError> {
    p.map(Pattern::new).transpose().map_err(BrokerError::Syntax)
}
