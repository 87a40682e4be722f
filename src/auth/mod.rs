//! Users, passwords, permissions and the login rate limiter.
//!
//! - [`Registry`]: every user, loaded from the store at open and written
//!   back durably on each change. The broker holds one; sessions, the
//!   `USER` commands and `sluice user` (on a stopped broker's data
//!   directory) share its rules.
//! - [`Login`]: one connection's authentication state: who it is, and a
//!   small cache of the exchanges it may publish to, so that the publish
//!   path runs no regex for an exchange it has seen.
//! - [`permission`]: RabbitMQ's three regexes per user (`configure`,
//!   `write`, `read`). [`password`]: argon2id hashing. [`limiter`]: failed
//!   logins per peer IP. `sluice user ...` is the CLI's (`crate::cli::user`).
//!
//! A broker with no users is *open*: every connection may do everything,
//! as before users existed ([`check_exposure`] keeps such a broker on
//! loopback unless told otherwise). Once a user exists, a connection may
//! run only `HELLO`, `AUTH`, `PING`, `HELP` and `QUIT` until `AUTH`
//! succeeds. The last admin can be neither removed nor demoted, so a broker
//! that has users never becomes open again by accident.
//!
//! **Changes apply to the next command.** Every change bumps a generation
//! counter; a session compares it (one atomic load) before each command and
//! re-reads its user when it moved: new permissions apply at once, a
//! removed user's connection gets `ERR NOAUTH user removed`. Nothing is
//! cached across logins: each `AUTH` verifies against the current hash.

pub(crate) mod limiter;
pub(crate) mod password;
pub(crate) mod permission;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::Semaphore;

use crate::error::BrokerError;
pub use crate::protocol::command::Secret;
use crate::protocol::Command;
use crate::store::{Committer, StoreError, TopologyStore, UserRecord};
pub(crate) use limiter::LoginLimiter;
pub(crate) use permission::{Kind, Perm};
pub use permission::{Pattern, Permissions, DEFAULT_PATTERN};

/// The tag that makes a user an administrator (the `USER` commands).
pub(crate) const ADMIN_TAG: &str = "admin";
/// Exchanges a session remembers it may (or may not) publish to.
const PUBLISH_CACHE_ENTRIES: usize = 16;

/// One user.
#[derive(Debug)]
pub struct User {
    /// Name.
    pub(crate) name: String,
    hash: Secret,
    /// Tags (`admin`).
    pub(crate) tags: Vec<String>,
    /// Permissions.
    pub(crate) perms: Permissions,
}

impl User {
    /// A user from its parts; `hash` is a PHC string from [`password::hash`].
    pub fn new(name: String, hash: String, admin: bool, perms: Permissions) -> User {
        User {
            name,
            hash: Secret(hash),
            tags: if admin {
                vec![ADMIN_TAG.to_string()]
            } else {
                Vec::new()
            },
            perms,
        }
    }

    /// Whether it may run the `USER` commands.
    pub(crate) fn is_admin(&self) -> bool {
        self.tags.iter().any(|t| t == ADMIN_TAG)
    }

    /// The password hash (PHC string).
    pub(crate) fn hash(&self) -> &str {
        &self.hash.0
    }

    fn record(&self) -> UserRecord {
        UserRecord {
            name: self.name.clone(),
            hash: self.hash.clone(),
            tags: self.tags.clone(),
            configure: self.perms.configure.as_str().to_string(),
            write: self.perms.write.as_str().to_string(),
            read: self.perms.read.as_str().to_string(),
        }
    }

    fn from_record(r: UserRecord) -> Result<User, StoreError> {
        let perms = Permissions::new(&r.configure, &r.write, &r.read)
            .map_err(|e| StoreError::Corrupt(format!("user {}: {e}", r.name)))?;
        Ok(User {
            name: r.name,
            hash: r.hash,
            tags: r.tags,
            perms,
        })
    }
}

/// What `USER PERMIT` changes; `None` keeps the current value.
#[derive(Debug, Default, Clone)]
pub(crate) struct Change {
    /// New `configure` pattern.
    pub(crate) configure: Option<Pattern>,
    /// New `write` pattern.
    pub(crate) write: Option<Pattern>,
    /// New `read` pattern.
    pub(crate) read: Option<Pattern>,
    /// Grant or take away the admin tag.
    pub(crate) admin: Option<bool>,
}

/// Every user, shared by the broker's sessions.
#[derive(Debug)]
pub struct Registry {
    users: RwLock<HashMap<String, Arc<User>>>,
    has_users: AtomicBool,
    generation: AtomicU64,
    limiter: Mutex<LoginLimiter>,
    /// Hashes computed at once: argon2 takes ~19 MiB and tens of ms of a
    /// core each, so a burst of logins queues here rather than filling the
    /// blocking pool (and RAM) with hundreds of them.
    hash_slots: Arc<Semaphore>,
    store: Arc<dyn TopologyStore>,
    /// The broker's group commit; without one (`sluice user`), each write
    /// is synced at once.
    committer: Option<Arc<Committer>>,
}

fn not_found(name: &str) -> BrokerError {
    BrokerError::NotFound(format!(
        "user {}",
        crate::protocol::reply::quote_for_message(name)
    ))
}

fn absent(users: &HashMap<String, Arc<User>>, name: &str) -> Result<(), BrokerError> {
    match users.contains_key(name) {
        true => Err(BrokerError::Precondition(format!(
            "user {name} exists (USER PASSWD or USER PERMIT change it)"
        ))),
        false => Ok(()),
    }
}

impl Registry {
    /// Loads the users of `store`.
    pub fn open(
        store: Arc<dyn TopologyStore>,
        committer: Option<Arc<Committer>>,
    ) -> Result<Registry, StoreError> {
        let mut users = HashMap::new();
        for r in store.users()? {
            let u = User::from_record(r)?;
            users.insert(u.name.clone(), Arc::new(u));
        }
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Registry {
            has_users: AtomicBool::new(!users.is_empty()),
            users: RwLock::new(users),
            generation: AtomicU64::new(1),
            limiter: Mutex::new(LoginLimiter::default()),
            hash_slots: Arc::new(Semaphore::new(slots)),
            store,
            committer,
        })
    }

    /// Whether any user exists (else the broker is open).
    pub(crate) fn has_users(&self) -> bool {
        self.has_users.load(Ordering::Acquire)
    }

    /// Bumped by every change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A user by name.
    pub fn get(&self, name: &str) -> Option<Arc<User>> {
        self.users.read().get(name).cloned()
    }

    /// `PRECONDITION` if `name` exists (checked again by [`Registry::add`]).
    pub(crate) fn check_absent(&self, name: &str) -> Result<(), BrokerError> {
        absent(&self.users.read(), name)
    }

    /// `NOT_FOUND` unless `name` exists.
    pub(crate) fn check_exists(&self, name: &str) -> Result<(), BrokerError> {
        match self.users.read().contains_key(name) {
            true => Ok(()),
            false => Err(not_found(name)),
        }
    }

    /// Every user, by name.
    pub(crate) fn list(&self) -> Vec<Arc<User>> {
        let mut all: Vec<_> = self.users.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Adds a user; `PRECONDITION` if the name is taken. Returns the store
    /// generation the reply must wait for.
    pub fn add(&self, user: User) -> Result<Option<u64>, BrokerError> {
        let mut users = self.users.write();
        absent(&users, &user.name)?;
        let gen = self.persist(|s| s.put_user(&user.record()))?;
        users.insert(user.name.clone(), Arc::new(user));
        self.changed(&users);
        Ok(gen)
    }

    /// Sets a user's password hash.
    pub(crate) fn set_password(
        &self,
        name: &str,
        hash: String,
    ) -> Result<Option<u64>, BrokerError> {
        self.update(name, |u| {
            u.hash = Secret(hash);
            Ok(())
        })
    }

    /// Changes a user's permissions or admin tag. Demoting the last admin
    /// is `PRECONDITION`.
    pub(crate) fn permit(&self, name: &str, change: Change) -> Result<Option<u64>, BrokerError> {
        if change.admin == Some(false) {
            self.keep_an_admin(name, "demoted")?;
        }
        self.update(name, |u| {
            let p = &mut u.perms;
            if let Some(c) = change.configure {
                p.configure = c;
            }
            if let Some(w) = change.write {
                p.write = w;
            }
            if let Some(r) = change.read {
                p.read = r;
            }
            match change.admin {
                Some(true) if !u.is_admin() => u.tags.push(ADMIN_TAG.to_string()),
                Some(false) => u.tags.retain(|t| t != ADMIN_TAG),
                _ => {}
            }
            Ok(())
        })
    }

    /// Removes a user (its connections get `ERR NOAUTH user removed` at
    /// their next command). Removing the last admin is `PRECONDITION`.
    pub(crate) fn remove(&self, name: &str) -> Result<Option<u64>, BrokerError> {
        self.keep_an_admin(name, "removed")?;
        let mut users = self.users.write();
        if !users.contains_key(name) {
            return Err(not_found(name));
        }
        let gen = self.persist(|s| s.delete_user(name))?;
        users.remove(name);
        self.changed(&users);
        Ok(gen)
    }

    /// `PRECONDITION` if `name` is the only admin.
    fn keep_an_admin(&self, name: &str, what: &str) -> Result<(), BrokerError> {
        let users = self.users.read();
        let is_admin = users.get(name).is_some_and(|u| u.is_admin());
        let admins = users.values().filter(|u| u.is_admin()).count();
        if is_admin && admins == 1 {
            return Err(BrokerError::Precondition(format!(
                "{name} is the last admin and cannot be {what}; make another user admin first"
            )));
        }
        Ok(())
    }

    /// Replaces a user by an edited copy.
    fn update(
        &self,
        name: &str,
        edit: impl FnOnce(&mut User) -> Result<(), BrokerError>,
    ) -> Result<Option<u64>, BrokerError> {
        let mut users = self.users.write();
        let old = users.get(name).ok_or_else(|| not_found(name))?;
        let mut new = User {
            name: old.name.clone(),
            hash: old.hash.clone(),
            tags: old.tags.clone(),
            perms: old.perms.clone(),
        };
        edit(&mut new)?;
        let gen = self.persist(|s| s.put_user(&new.record()))?;
        users.insert(new.name.clone(), Arc::new(new));
        self.changed(&users);
        Ok(gen)
    }

    fn changed(&self, users: &HashMap<String, Arc<User>>) {
        self.has_users.store(!users.is_empty(), Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Writes to the store: through the group commit (the generation to
    /// wait for), or synced at once when there is none.
    fn persist(
        &self,
        write: impl FnOnce(&dyn TopologyStore) -> Result<(), StoreError>,
    ) -> Result<Option<u64>, BrokerError> {
        let Some(committer) = &self.committer else {
            write(self.store.as_ref())?;
            self.store.sync()?;
            return Ok(None);
        };
        if let Err(e) = write(self.store.as_ref()) {
            committer.write_failed(&e);
            return Err(e.into());
        }
        Ok(Some(committer.written()))
    }

    /// Hashes a password on the blocking pool.
    pub(crate) async fn hash_password(&self, password: String) -> Result<String, BrokerError> {
        self.blocking(move || password::hash(&password))
            .await?
            .map_err(|e| BrokerError::Store(StoreError::Io(e)))
    }

    /// Checks a password on the blocking pool (`hash` `None`: no such user,
    /// checked against a fixed hash so that it takes as long).
    pub(crate) async fn verify_password(&self, hash: Option<String>, password: String) -> bool {
        self.blocking(move || password::verify(hash.as_deref(), &password))
            .await
            .unwrap_or(false)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, BrokerError> {
        let fail = |e: &dyn std::fmt::Display| {
            BrokerError::Store(StoreError::Io(format!("password check failed: {e}")))
        };
        let _slot = self
            .hash_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| fail(&e))?;
        tokio::task::spawn_blocking(f).await.map_err(|e| fail(&e))
    }

    /// `Some(wait)` while `user` is locked out at `ip` after failed logins.
    pub(crate) fn login_blocked(&self, user: &str, ip: IpAddr) -> Option<Duration> {
        self.limiter.lock().blocked(user, ip, Instant::now())
    }

    /// Records the outcome of a login as `user` from `ip`.
    pub(crate) fn login_outcome(&self, user: &str, ip: IpAddr, ok: bool) {
        let mut l = self.limiter.lock();
        if ok {
            l.succeeded(user, ip);
        } else {
            l.failed(user, ip, Instant::now());
        }
    }
}

/// One connection's authentication.
#[derive(Debug, Default)]
pub struct Login {
    user: Option<Arc<User>>,
    /// The registry generation `user` was read at.
    generation: u64,
    /// Exchanges looked up for `PUB`, and whether `write` allowed them.
    publish: Vec<(Box<str>, bool)>,
}

impl Login {
    /// The authenticated user, if any.
    pub(crate) fn user(&self) -> Option<&Arc<User>> {
        self.user.as_ref()
    }

    /// Authenticated as `user` (read at registry generation `generation`).
    pub fn set(&mut self, user: Arc<User>, generation: u64) {
        self.user = Some(user);
        self.generation = generation;
        self.publish.clear();
    }

    /// Whether `command` may run at all: `NOAUTH` before a successful
    /// `AUTH` on a broker with users (but for `HELLO`, `AUTH`, `PING`,
    /// `HELP`, `QUIT`) and after the user was removed. Picks up changes
    /// to the user made since the last command.
    pub fn admit(&mut self, users: &Registry, command: &Command) -> Result<(), BrokerError> {
        let exempt = matches!(
            command,
            Command::Hello(_) | Command::Auth(_) | Command::Ping | Command::Help(_) | Command::Quit
        );
        let Some(user) = &self.user else {
            if users.has_users() && !exempt {
                return Err(BrokerError::NoAuth(
                    "authentication required: AUTH <user> <password>".into(),
                ));
            }
            return Ok(());
        };
        let g = users.generation();
        if g != self.generation {
            match users.get(&user.name) {
                Some(fresh) => self.set(fresh, g),
                // Said at the first command that is not exempt.
                None if exempt => {}
                None => {
                    tracing::info!(user = %user.name, "user removed; connection logged out");
                    self.user = None;
                    self.publish.clear();
                    return Err(BrokerError::NoAuth("user removed".into()));
                }
            }
        }
        Ok(())
    }

    /// `FORBIDDEN` unless the user's `perm` pattern grants `name`. On an
    /// open broker (no user) everything is allowed.
    pub(crate) fn check(
        &self,
        verb: &str,
        perm: Perm,
        kind: Kind,
        name: &str,
    ) -> Result<(), BrokerError> {
        match &self.user {
            Some(u) if !u.perms.get(perm).allows(name) => Err(forbidden(verb, perm, kind, name, u)),
            _ => Ok(()),
        }
    }

    /// Whether `perm` grants `name` (always, on an open broker).
    pub(crate) fn allows(&self, perm: Perm, name: &str) -> bool {
        self.user
            .as_ref()
            .is_none_or(|u| u.perms.get(perm).allows(name))
    }

    /// `check("PUB", Write, Exchange, exchange)`, remembered per exchange
    /// so that a publisher pays no regex (and no allocation) per message.
    pub fn check_publish(&mut self, exchange: &str) -> Result<(), BrokerError> {
        let Some(u) = &self.user else {
            return Ok(());
        };
        let allowed = match self.publish.iter().find(|(x, _)| &**x == exchange) {
            Some((_, allowed)) => *allowed,
            None => {
                let allowed = u.perms.write.allows(exchange);
                if self.publish.len() >= PUBLISH_CACHE_ENTRIES {
                    self.publish.remove(0);
                }
                self.publish.push((exchange.into(), allowed));
                allowed
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(forbidden("PUB", Perm::Write, Kind::Exchange, exchange, u))
        }
    }

    /// `FORBIDDEN` unless the user is an admin, or the broker is open.
    pub(crate) fn require_admin(&self, verb: &str) -> Result<(), BrokerError> {
        match &self.user {
            Some(u) if !u.is_admin() => Err(BrokerError::Forbidden(format!(
                "{verb} needs the admin tag (user {})",
                u.name
            ))),
            _ => Ok(()),
        }
    }
}

/// The users as aligned text (`USER LIST`, `sluice user list`): name,
/// tags (`-` for none), then the three patterns (`""` for an empty one).
pub(crate) fn table(users: &[Arc<User>]) -> String {
    let show = |p: &Pattern| match p.as_str() {
        "" => "\"\"".to_string(),
        s => s.to_string(),
    };
    let mut rows = vec![[
        "name".to_string(),
        "tags".to_string(),
        "configure".to_string(),
        "write".to_string(),
        "read".to_string(),
    ]];
    for u in users {
        let tags = if u.tags.is_empty() {
            "-".to_string()
        } else {
            u.tags.join(",")
        };
        rows.push([
            u.name.clone(),
            tags,
            show(&u.perms.configure),
            show(&u.perms.write),
            show(&u.perms.read),
        ]);
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn forbidden(verb: &str, perm: Perm, kind: Kind, name: &str, u: &User) -> BrokerError {
    BrokerError::Forbidden(format!(
        "{verb} needs {} permission on {} '{name}' (user {})",
        perm.as_str(),
        kind.as_str(),
        u.name
    ))
}

/// `serve` refuses to listen beyond loopback while the broker is open.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to listen on {addr} with no users: anyone who can reach it could use the broker. \
     Create an admin first (sluice user add <name> --admin --data-dir <dir>), listen on \
     127.0.0.1, or pass --insecure-open to serve an open broker anyway"
)]
pub struct ExposureError {
    /// The first address that is not loopback.
    pub(crate) addr: SocketAddr,
}

/// Whether the broker may listen on `addrs`: any address but loopback
/// needs users, unless `insecure_open`. Returns the addresses that are
/// exposed without users (to warn about when `insecure_open`).
pub(crate) fn check_exposure(
    addrs: &[SocketAddr],
    has_users: bool,
    insecure_open: bool,
) -> Result<Vec<SocketAddr>, ExposureError> {
    if has_users {
        return Ok(Vec::new());
    }
    let exposed: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| !a.ip().to_canonical().is_loopback())
        .collect();
    match exposed.first() {
        Some(&addr) if !insecure_open => Err(ExposureError { addr }),
        _ => Ok(exposed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NullStore;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_loopback_is_served_open() {
        let lo = [addr("127.0.0.1:5680"), addr("[::1]:5681")];
        assert_eq!(check_exposure(&lo, false, false).unwrap(), vec![]);
        for bad in [
            "0.0.0.0:5680",
            "[::]:5680",
            "192.168.1.2:1",
            "[::ffff:10.0.0.1]:1",
        ] {
            let all = [lo[0], addr(bad)];
            let e = check_exposure(&all, false, false).unwrap_err();
            assert_eq!(e.addr, addr(bad));
            assert!(e.to_string().contains("--insecure-open"), "{e}");
            assert!(e.to_string().contains("sluice user add"), "{e}");
            assert_eq!(check_exposure(&all, false, true).unwrap(), vec![addr(bad)]);
            assert_eq!(check_exposure(&all, true, false).unwrap(), vec![]);
        }
        assert!(check_exposure(&[addr("[::ffff:127.0.0.1]:1")], false, false).is_ok());
    }

    fn registry() -> Registry {
        Registry::open(Arc::new(NullStore), None).unwrap()
    }

    fn user(name: &str, admin: bool, write: &str) -> User {
        User::new(
            name.into(),
            "$argon2id$x".into(),
            admin,
            Permissions::new(".*", write, ".*").unwrap(),
        )
    }

    #[test]
    fn the_last_admin_stays() {
        let r = registry();
        assert!(!r.has_users());
        r.add(user("root", true, ".*")).unwrap();
        r.add(user("bob", false, ".*")).unwrap();
        assert!(r.has_users());
        assert!(matches!(
            r.add(user("bob", false, "")),
            Err(BrokerError::Precondition(_))
        ));
        assert!(matches!(
            r.remove("root"),
            Err(BrokerError::Precondition(_))
        ));
        let demote = Change {
            admin: Some(false),
            ..Change::default()
        };
        assert!(matches!(
            r.permit("root", demote.clone()),
            Err(BrokerError::Precondition(_))
        ));
        let promote = Change {
            admin: Some(true),
            ..Change::default()
        };
        r.permit("bob", promote).unwrap();
        r.permit("root", demote).unwrap();
        r.remove("root").unwrap();
        assert!(matches!(r.remove("root"), Err(BrokerError::NotFound(_))));
        assert_eq!(r.list().len(), 1);
        assert!(r.get("bob").unwrap().is_admin());
    }

    #[test]
    fn sessions_see_changes_at_their_next_command() {
        let r = registry();
        let mut login = Login::default();
        let ping = Command::Ping;
        let purge = Command::Purge(crate::protocol::command::Purge { queue: "q".into() });
        login.admit(&r, &purge).unwrap();
        r.add(user("root", true, ".*")).unwrap();
        r.add(user("bob", false, "^ok$")).unwrap();
        assert!(matches!(
            login.admit(&r, &purge),
            Err(BrokerError::NoAuth(_))
        ));
        login.admit(&r, &ping).unwrap();
        login.set(r.get("bob").unwrap(), r.generation());
        login.admit(&r, &purge).unwrap();
        login.check_publish("ok").unwrap();
        assert!(matches!(
            login.check_publish("no"),
            Err(BrokerError::Forbidden(_))
        ));
        let change = Change {
            write: Some(Pattern::new("^no$").unwrap()),
            ..Change::default()
        };
        r.permit("bob", change).unwrap();
        // The cached answers go with the change.
        login.admit(&r, &purge).unwrap();
        assert!(matches!(
            login.check_publish("ok"),
            Err(BrokerError::Forbidden(_))
        ));
        login.check_publish("no").unwrap();
        r.remove("bob").unwrap();
        login.admit(&r, &ping).unwrap();
        match login.admit(&r, &purge) {
            Err(BrokerError::NoAuth(m)) => assert_eq!(m, "user removed"),
            other => panic!("{other:?}"),
        }
        assert!(login.user().is_none());
    }

    #[test]
    fn the_publish_cache_is_bounded() {
        let r = registry();
        r.add(user("root", true, "^a")).unwrap();
        let mut login = Login::default();
        login.set(r.get("root").unwrap(), r.generation());
        for i in 0..100 {
            let _ = login.check_publish(&format!("a{i}"));
            let _ = login.check_publish(&format!("b{i}"));
        }
        assert_eq!(login.publish.len(), PUBLISH_CACHE_ENTRIES);
        login.check_publish("a1").unwrap();
    }
}
