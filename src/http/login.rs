//! Who is calling the API: logins, their sessions, and the cookie that
//! carries them.
//!
//! `POST /api/login` runs the protocol's `AUTH` (through
//! [`oneshot::authenticate`]: the same argon2 check, the same answer for
//! an unknown user and a wrong password, the same rate limit per user and
//! address) and, when it logs a user in, answers with a cookie holding a
//! random token (32 bytes from the OS, hex): `HttpOnly` (no script reads
//! it), `SameSite=Strict`, `Path=/`. The session behind it is in RAM only
//! ([`Sessions`]): it ends at `POST /api/logout`, after
//! [`SESSION_IDLE`] unused or [`SESSION_LIFETIME`] in all, when the user
//! is removed, and when the broker stops. A session stores the user's
//! name, not a copy of the user: each request reads the user as it is now,
//! so a change of permissions applies at the next request, as it does at a
//! connection's next command.
//!
//! **An open broker** (no users) needs no login, as the protocol needs no
//! `AUTH`: every request runs as the protocol's unauthenticated
//! connection, which may do everything. From the moment a user exists,
//! every API route but `/api/whoami` and `/api/login` needs a session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, COOKIE, SET_COOKIE};
use hyper::{Request, StatusCode};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::body::read_json;
use super::response::{error, json, Reply};
use super::{Http, COMMAND_PATIENCE};
use crate::auth::{Login, Registry, User};
use crate::protocol::reply::Reply as WireReply;
use crate::protocol::token::encode_word;
use crate::protocol::{parse::parse_line, Command, ErrorCode};
use crate::session::oneshot;

/// The cookie that carries a session's token.
pub(crate) const SESSION_COOKIE: &str = "sluice_session";
/// A session unused this long ends.
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after its login, used or not.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; a login beyond ends the least recently used.
pub(crate) const MAX_SESSIONS: usize = 1024;

/// The logged-in sessions, by token.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

#[derive(Debug)]
struct Session {
    user: String,
    created: Instant,
    used: Instant,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.used) >= SESSION_IDLE
            || now.duration_since(self.created) >= SESSION_LIFETIME
    }
}

impl Sessions {
    /// A new session for `user`; its token.
    fn create(&self, user: &str) -> Result<String, getrandom::Error> {
        let mut raw = [0u8; 32];
        getrandom::getrandom(&mut raw)?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut map = self.map.lock();
        map.retain(|_, s| !s.expired(now));
        if map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(t, _)| t.clone());
            if let Some(t) = oldest {
                map.remove(&t);
            }
        }
        map.insert(
            token.clone(),
            Session {
                user: user.to_string(),
                created: now,
                used: now,
            },
        );
        Ok(token)
    }

    /// The user of the session `token`, if it is live (it counts as used).
    fn user(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut map = self.map.lock();
        let s = map.get_mut(token)?;
        if s.expired(now) {
            map.remove(token);
            return None;
        }
        s.used = now;
        Some(s.user.clone())
    }

    /// Ends the session `token`.
    fn remove(&self, token: &str) {
        self.map.lock().remove(token);
    }
}

/// Who a request comes from.
#[derive(Debug)]
pub(crate) enum Caller {
    /// The broker has no users: anyone may do everything.
    Open,
    /// A logged-in user, as read now, and the registry generation then.
    User(Arc<User>, u64),
    /// No (live) session on a broker with users.
    Nobody,
}

impl Caller {
    /// Whoever sent `req`.
    pub(crate) fn of(req: &Request<Incoming>, users: &Registry, sessions: &Sessions) -> Caller {
        if !users.has_users() {
            return Caller::Open;
        }
        let Some(token) = session_token(req) else {
            return Caller::Nobody;
        };
        let Some(name) = sessions.user(&token) else {
            return Caller::Nobody;
        };
        // Read before the user, as AUTH does: a change meanwhile is seen
        // at the command's admission.
        let generation = users.generation();
        match users.get(&name) {
            Some(u) => Caller::User(u, generation),
            None => {
                // Removed: its sessions end.
                sessions.remove(&token);
                Caller::Nobody
            }
        }
    }

    /// The login a command runs as (`None` on an open broker).
    pub(crate) fn login(&self) -> Option<(Arc<User>, u64)> {
        match self {
            Caller::User(u, g) => Some((u.clone(), *g)),
            _ => None,
        }
    }

    /// `Err(reply)` unless the caller may read (logged in, or open).
    pub(crate) fn may_read(&self) -> Result<(), Reply> {
        match self {
            Caller::Nobody => Err(super::response::unauthorized()),
            _ => Ok(()),
        }
    }

    /// `Err(reply)` unless the caller is an admin (or the broker open):
    /// the check the `USER` commands make, [`Login::require_admin`].
    pub(crate) fn require_admin(&self, what: &str) -> Result<(), Reply> {
        self.may_read()?;
        let mut login = Login::default();
        if let Caller::User(u, g) = self {
            login.set(u.clone(), *g);
        }
        login
            .require_admin(what)
            .map_err(|e| error(StatusCode::FORBIDDEN, Some(e.code()), e.to_string()))
    }
}

/// The session token in `req`'s cookies, if any.
fn session_token(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

/// `GET /api/whoami`.
#[derive(Debug, Serialize)]
struct WhoAmI {
    /// The broker has no users.
    open: bool,
    /// The logged-in user.
    user: Option<String>,
    /// May run the `USER` commands and `CLOSE CONNECTION`.
    admin: bool,
    /// The user's permission patterns.
    permissions: Option<Patterns>,
    /// The broker's version.
    version: &'static str,
}

#[derive(Debug, Serialize)]
struct Patterns {
    configure: String,
    write: String,
    read: String,
}

/// `GET /api/whoami`: who the page is logged in as (no session needed).
pub(crate) fn whoami(caller: &Caller) -> Reply {
    let (user, admin, permissions) = match caller {
        Caller::Open => (None, true, None),
        Caller::Nobody => (None, false, None),
        Caller::User(u, _) => (
            Some(u.name.clone()),
            u.is_admin(),
            Some(Patterns {
                configure: u.perms.configure.as_str().to_string(),
                write: u.perms.write.as_str().to_string(),
                read: u.perms.read.as_str().to_string(),
            }),
        ),
    };
    json(&WhoAmI {
        open: matches!(caller, Caller::Open),
        user,
        admin,
        permissions,
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// `POST /api/login`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    user: String,
    password: String,
}

/// `POST /api/login`: `AUTH`, then a session (see the module docs).
pub(crate) async fn login(req: Request<Incoming>, http: &Http, peer: SocketAddr) -> Reply {
    let c: Credentials = match read_json(req).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut line = b"AUTH ".to_vec();
    encode_word(&mut line, c.user.as_bytes());
    line.push(b' ');
    encode_word(&mut line, c.password.as_bytes());
    let auth = match parse_line(&line, None) {
        Ok(Command::Auth(a)) => a,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                Some(ErrorCode::Syntax),
                "not a login",
            )
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, Some(e.code), e.message),
    };
    let (reply, user) =
        match oneshot::authenticate(&http.broker, peer, auth, COMMAND_PATIENCE).await {
            Ok(done) => done,
            Err(e) => return error(StatusCode::GATEWAY_TIMEOUT, None, e.to_string()),
        };
    match (reply, user) {
        (WireReply::Err(code, message), _) => {
            let status = if message.starts_with("too many failed logins") {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                super::response::status_of(code)
            };
            error(status, Some(code), message)
        }
        (_, None) => whoami(&Caller::Open),
        (_, Some(user)) => {
            let token = match http.sessions.create(&user.name) {
                Ok(t) => t,
                Err(e) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Some(ErrorCode::Internal),
                        format!("no random token: {e}"),
                    )
                }
            };
            let generation = http.broker.users().generation();
            let mut r = whoami(&Caller::User(user, generation));
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
            )) {
                r.headers_mut().insert(SET_COOKIE, v);
            }
            r
        }
    }
}

/// `POST /api/logout`: ends the session, if any, and clears the cookie.
pub(crate) fn logout(req: &Request<Incoming>, http: &Http) -> Reply {
    if let Some(token) = session_token(req) {
        http.sessions.remove(&token);
    }
    let mut r = json(&serde_json::json!({ "ok": true }));
    r.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("sluice_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_when_removed_and_are_bounded() {
        let s = Sessions::default();
        let a = s.create("root").unwrap();
        let b = s.create("bob").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(s.user(&a).as_deref(), Some("root"));
        s.remove(&a);
        assert_eq!(s.user(&a), None);
        for _ in 0..MAX_SESSIONS + 10 {
            s.create("x").unwrap();
        }
        assert_eq!(s.map.lock().len(), MAX_SESSIONS);
        // The least recently used went first: bob's, used before them all.
        assert_eq!(s.user(&b), None);
    }

    #[test]
    fn an_idle_session_expires() {
        let s = Sessions::default();
        let t = s.create("root").unwrap();
        s.map.lock().get_mut(&t).unwrap().used -= SESSION_IDLE;
        assert_eq!(s.user(&t), None);
        assert!(s.map.lock().is_empty());
    }
}
