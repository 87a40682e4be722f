//! [`Connections`]: the registry of live connections that `LIST
//! CONNECTIONS`, `STATS` and `/metrics` read.
//!
//! A session registers when it starts and is removed when its
//! [`Registered`] guard drops (however the session ends). The registry is a
//! `DashMap` touched only at connect and close; what changes while a
//! connection lives (its subscription and unacked counts, its client name,
//! its user) sits in the shared [`ConnInfo`], which the session updates with
//! relaxed atomic stores, so no per-message path goes near the map.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::message::now_ms;

/// What is known about one live connection.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    /// Connection id (broker-unique).
    pub(crate) id: u64,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// When it connected (Unix ms).
    pub(crate) since_ms: u64,
    /// Over TLS (set by the TLS listener; plain text otherwise).
    pub(crate) tls: bool,
    /// `HELLO name=`, once given.
    pub(crate) client_name: Mutex<Option<String>>,
    /// The authenticated user, once `AUTH` succeeded (set by the auth
    /// part through [`ConnInfo::set_user`]).
    pub(crate) user: Mutex<Option<String>>,
    /// Its subscriptions.
    pub(crate) subscriptions: AtomicU64,
    /// Its deliveries not yet acknowledged.
    pub(crate) unacked: AtomicU64,
    /// `PUB`s it sent (counted when they run, whatever came of them).
    pub(crate) published: AtomicU64,
    /// Messages delivered to it (subscriptions and `GET`).
    pub(crate) delivered: AtomicU64,
    /// Bytes read from it.
    pub(crate) recv_bytes: AtomicU64,
    /// Bytes written to it.
    pub(crate) sent_bytes: AtomicU64,
    /// Told by [`ConnInfo::close`] to close (an admin's `CLOSE
    /// CONNECTION`); its session waits on it.
    closing: Notify,
}

impl ConnInfo {
    /// Records `HELLO name=`.
    pub(crate) fn set_client_name(&self, name: Option<String>) {
        *self.client_name.lock() = name;
    }

    /// Records the authenticated user.
    pub(crate) fn set_user(&self, user: Option<String>) {
        *self.user.lock() = user;
    }

    /// Asks the connection's session to close (`CLOSE CONNECTION`), as at
    /// a shutdown (`NOTICE closing reason=closed-by-admin`, unacked
    /// deliveries requeued). It is closed at its session's next turn, even
    /// if the session is not waiting now (the request is kept until it is).
    pub(crate) fn close(&self) {
        self.closing.notify_one();
    }

    /// Completes once [`ConnInfo::close`] was called.
    pub(crate) async fn closed(&self) {
        self.closing.notified().await;
    }

    /// Adds to one of the counters (a relaxed add, uncontended: only the
    /// connection's own session writes them).
    pub(crate) fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Publishes the session's current counts (two relaxed stores).
    pub(crate) fn sync(&self, subscriptions: usize, unacked: usize) {
        self.subscriptions
            .store(subscriptions as u64, Ordering::Relaxed);
        self.unacked.store(unacked as u64, Ordering::Relaxed);
    }
}

/// The registry (one per broker).
#[derive(Debug, Default)]
pub(crate) struct Connections {
    live: DashMap<u64, Arc<ConnInfo>>,
    opened: AtomicU64,
}

impl Connections {
    /// Registers a new connection; it stays listed while the guard lives.
    pub(crate) fn register(self: &Arc<Self>, id: u64, peer: SocketAddr, tls: bool) -> Registered {
        let info = Arc::new(ConnInfo {
            id,
            peer,
            since_ms: now_ms(),
            tls,
            client_name: Mutex::new(None),
            user: Mutex::new(None),
            subscriptions: AtomicU64::new(0),
            unacked: AtomicU64::new(0),
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            recv_bytes: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            closing: Notify::new(),
        });
        self.live.insert(id, info.clone());
        self.opened.fetch_add(1, Ordering::Relaxed);
        Registered {
            info,
            registry: self.clone(),
        }
    }

    /// Connections open now.
    pub(crate) fn current(&self) -> usize {
        self.live.len()
    }

    /// Connections accepted since the broker started.
    pub(crate) fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// A live connection by id.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<ConnInfo>> {
        self.live.get(&id).map(|e| e.value().clone())
    }

    /// Every live connection, by id.
    pub(crate) fn list(&self) -> Vec<Arc<ConnInfo>> {
        let mut out: Vec<Arc<ConnInfo>> = self.live.iter().map(|e| e.value().clone()).collect();
        out.sort_by_key(|c| c.id);
        out
    }
}

/// A connection's place in the registry; dropping it removes the entry.
#[derive(Debug)]
pub(crate) struct Registered {
    info: Arc<ConnInfo>,
    registry: Arc<Connections>,
}

impl Registered {
    /// The shared entry, for a session to wait on while it borrows
    /// itself elsewhere.
    pub(crate) fn info(&self) -> Arc<ConnInfo> {
        self.info.clone()
    }
}

impl std::ops::Deref for Registered {
    type Target = ConnInfo;
    fn deref(&self) -> &ConnInfo {
        &self.info
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.live.remove(&self.info.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_listed_while_registered() {
        let reg = Arc::new(Connections::default());
        let peer: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let a = reg.register(2, peer, false);
        let b = reg.register(1, peer, true);
        a.set_client_name(Some("app".into()));
        a.sync(3, 7);
        let list = reg.list();
        assert_eq!(list.iter().map(|c| c.id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(list[1].client_name.lock().as_deref(), Some("app"));
        assert_eq!(list[1].unacked.load(Ordering::Relaxed), 7);
        drop(b);
        assert_eq!(reg.current(), 1);
        drop(a);
        assert_eq!(reg.current(), 0);
        assert_eq!(reg.opened(), 2);
    }
}
