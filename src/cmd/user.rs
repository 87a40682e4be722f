//! `USER ADD|PASSWD|PERMIT|REMOVE|LIST`: user administration over the
//! protocol. See protocol.md, "USER".

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use tracing::instrument;

use super::outcome::{Completion, Outcome, Pending};
use crate::auth::{self, Change, Pattern, Permissions, Registry, User, DEFAULT_PATTERN};
use crate::broker::MetaOp;
use crate::error::BrokerError;
use crate::protocol::command::{PermissionArgs, UserCommand, UserPermit};
use crate::protocol::reply::Reply;
use crate::session_state::SessionState;

/// Runs a `USER` command. Only a user tagged `admin` may (`FORBIDDEN`
/// otherwise); on an open broker (no users yet) anyone may, and the first
/// user added must be an admin, so that the broker is never left with
/// users but no one to manage them.
#[instrument(level = "debug", name = "USER", skip_all, fields(conn = s.conn_id()))]
pub(super) fn user(c: UserCommand, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    s.login().require_admin(verb(&c))?;
    let users = s.broker().users().clone();
    // On a cluster node a change goes through the metadata group, which
    // applies it on every node (`apply_add` and the rest, below); here
    // after its password is hashed.
    let consensus = s.broker().consensus();
    match c {
        UserCommand::Add(a) => {
            if !users.has_users() && !a.admin {
                return Err(first_user_not_admin());
            }
            users.check_absent(&a.name)?;
            let perms = permissions(&a.perms)?;
            let (name, admin, given) = (a.name, a.admin, a.perms);
            Ok(hash_then(
                users,
                a.password.0,
                move |users, hash| async move {
                    match consensus {
                        Some(c) => {
                            let op = MetaOp::UserAdd {
                                name,
                                hash,
                                admin,
                                configure: given.configure,
                                write: given.write,
                                read: given.read,
                            };
                            c.propose(op).await.map(|_| None)
                        }
                        None => apply_add(&users, name, hash, admin, perms),
                    }
                },
            ))
        }
        UserCommand::Passwd(p) => {
            users.check_exists(&p.name)?;
            let name = p.name;
            Ok(hash_then(
                users,
                p.password.0,
                move |users, hash| async move {
                    match consensus {
                        Some(c) => c
                            .propose(MetaOp::UserPasswd { name, hash })
                            .await
                            .map(|_| None),
                        None => apply_passwd(&users, &name, hash),
                    }
                },
            ))
        }
        // On a cluster node these two went to the group before they came
        // here (`replicated.rs`).
        UserCommand::Permit(p) => Ok(Outcome::Reply(Reply::ok(), apply_permit(&users, &p)?)),
        UserCommand::Remove(name) => Ok(Outcome::Reply(Reply::ok(), apply_remove(&users, &name)?)),
        UserCommand::List => {
            let table = auth::table(&users.list());
            Ok(Outcome::reply(Reply::Data(
                String::new(),
                Bytes::from(table),
            )))
        }
    }
}

/// The verb, as errors name it.
pub(super) fn verb(c: &UserCommand) -> &'static str {
    match c {
        UserCommand::Add(_) => "USER ADD",
        UserCommand::Passwd(_) => "USER PASSWD",
        UserCommand::Permit(_) => "USER PERMIT",
        UserCommand::Remove(_) => "USER REMOVE",
        UserCommand::List => "USER LIST",
    }
}

fn first_user_not_admin() -> BrokerError {
    BrokerError::Precondition(
        "the first user must be an admin: USER ADD <name> <password> admin".into(),
    )
}

/// Adds a user whose password is hashed (here, or on the cluster node
/// that took the `USER ADD`).
pub(super) fn apply_add(
    users: &Registry,
    name: String,
    hash: String,
    admin: bool,
    perms: Permissions,
) -> Result<Option<u64>, BrokerError> {
    if !users.has_users() && !admin {
        return Err(first_user_not_admin());
    }
    tracing::info!(user = %name, admin, "user added");
    users.add(User::new(name, hash, admin, perms))
}

/// Sets a user's password hash.
pub(super) fn apply_passwd(
    users: &Registry,
    name: &str,
    hash: String,
) -> Result<Option<u64>, BrokerError> {
    tracing::info!(user = %name, "password changed");
    users.set_password(name, hash)
}

/// `USER PERMIT`.
pub(super) fn apply_permit(users: &Registry, p: &UserPermit) -> Result<Option<u64>, BrokerError> {
    let gen = users.permit(&p.name, change(p)?)?;
    tracing::info!(user = %p.name, "permissions changed");
    Ok(gen)
}

/// `USER REMOVE`.
pub(super) fn apply_remove(users: &Registry, name: &str) -> Result<Option<u64>, BrokerError> {
    let gen = users.remove(name)?;
    tracing::info!(user = %name, "user removed");
    Ok(gen)
}

/// What a `USER PERMIT` changes.
pub(super) fn change(p: &UserPermit) -> Result<Change, BrokerError> {
    Ok(Change {
        configure: pattern(p.perms.configure.as_deref())?,
        write: pattern(p.perms.write.as_deref())?,
        read: pattern(p.perms.read.as_deref())?,
        admin: p.admin,
    })
}

/// Hashes `password` off the session's task, then runs `then` with the
/// hash and answers `OK` once its write is durable (or, on a cluster
/// node, once the metadata group has it).
fn hash_then<F>(
    users: Arc<Registry>,
    password: String,
    then: impl FnOnce(Arc<Registry>, String) -> F + Send + 'static,
) -> Outcome
where
    F: Future<Output = Result<Option<u64>, BrokerError>> + Send,
{
    Outcome::Pending(Pending::new(async move {
        let done = match users.hash_password(password).await {
            Ok(hash) => then(users, hash).await,
            Err(e) => Err(e),
        };
        Box::new(move |_: &mut SessionState| Ok(Outcome::Reply(Reply::ok(), done?))) as Completion
    }))
}

/// The patterns of a new user: `.*` where not given.
pub(super) fn permissions(p: &PermissionArgs) -> Result<Permissions, BrokerError> {
    let or_all = |p: &Option<String>| p.clone().unwrap_or_else(|| DEFAULT_PATTERN.to_string());
    Permissions::new(&or_all(&p.configure), &or_all(&p.write), &or_all(&p.read))
        .map_err(BrokerError::Syntax)
}

fn pattern(p: Option<&str>) -> Result<Option<Pattern>, BrokerError> {
    p.map(Pattern::new).transpose().map_err(BrokerError::Syntax)
}
