//! The group commit: one thread turns many writes into one durability
//! barrier ([`Store::sync`]), and publishes how far the store is durable.
//!
//! Every write to the store takes a *generation* from [`Committer::written`]
//! after it has landed in the engine. The committer thread reads the latest
//! generation, calls `sync` once, and publishes that generation as durable
//! on a `watch` channel. A reply that promises durability (a persistent
//! `PUB`'s `OK`, an `ACK` that removed a stored message, a durable declare)
//! waits until the durable generation reaches its own. Writes that arrive
//! while a sync runs share the next one, so a pipelining publisher gets one
//! fsync per batch, not one per message; a lone publisher pays one each.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use tokio::sync::watch;

use super::Store;

/// How far the store is durable, as the committer last published it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitState {
    /// Every generation up to this one is durable.
    pub durable: u64,
    /// Generations above `durable` and up to this one failed to sync.
    pub failed: u64,
    /// The first store error (a failed sync or write), if any: the store
    /// takes no more writes after it (see [`crate::server::run`]).
    pub error: Option<Arc<str>>,
}

impl CommitState {
    /// `Some(Ok(()))` once generation `g` is durable, `Some(Err(..))` if its
    /// sync failed, `None` while it is still pending.
    pub fn outcome(&self, g: u64) -> Option<Result<(), Arc<str>>> {
        if g <= self.durable {
            Some(Ok(()))
        } else if g <= self.failed {
            Some(Err(self
                .error
                .clone()
                .unwrap_or_else(|| Arc::from("sync failed"))))
        } else {
            None
        }
    }
}

/// Handle on the group-commit thread.
#[derive(Debug)]
pub struct Committer {
    written: AtomicU64,
    stop: AtomicBool,
    state: watch::Sender<CommitState>,
    thread: parking_lot::Mutex<Option<JoinHandle<()>>>,
    waker: Thread,
    syncs: AtomicU64,
}

impl Committer {
    /// Starts the committer thread for `store`.
    pub fn start(store: Arc<dyn Store>) -> std::io::Result<Arc<Committer>> {
        let (state, _) = watch::channel(CommitState::default());
        // The thread needs the Arc, and the Arc needs the thread handle:
        // build the thread parked on a rendezvous, then hand it the Arc.
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Committer>>();
        let handle = thread::Builder::new()
            .name("sluice-commit".into())
            .spawn(move || {
                if let Ok(me) = rx.recv() {
                    me.run(store.as_ref());
                }
            })?;
        let me = Arc::new(Committer {
            written: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            state,
            waker: handle.thread().clone(),
            thread: parking_lot::Mutex::new(None),
            syncs: AtomicU64::new(0),
        });
        *me.thread.lock() = Some(handle);
        // The receiver only disappears if the thread died, which start reports below.
        if tx.send(me.clone()).is_err() {
            return Err(std::io::Error::other("commit thread died at start"));
        }
        Ok(me)
    }

    /// Records that a write has landed in the store and returns its
    /// generation: the write is durable once [`CommitState::outcome`] says so.
    pub fn written(&self) -> u64 {
        let g = self.written.fetch_add(1, Ordering::SeqCst) + 1;
        self.waker.unpark();
        g
    }

    /// The generation of the latest write (0 when nothing was written).
    pub fn latest(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// A receiver of the durable generation.
    pub fn subscribe(&self) -> watch::Receiver<CommitState> {
        self.state.subscribe()
    }

    /// Records a failed write to the store (not a sync): the store cannot
    /// be trusted to take more writes (sled's I/O errors are sticky), which
    /// [`CommitState::error`] tells whoever watches.
    pub fn write_failed(&self, e: &super::StoreError) {
        if let super::StoreError::Io(_) = e {
            let msg: Arc<str> = Arc::from(e.to_string());
            self.state.send_modify(|s| {
                if s.error.is_none() {
                    s.error = Some(msg);
                }
            });
        }
    }

    /// How many syncs have run (for tests and stats: proof of group commit).
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Waits until generation `g` is durable or failed.
    pub async fn wait(&self, g: u64) -> Result<(), Arc<str>> {
        let mut rx = self.subscribe();
        loop {
            if let Some(r) = rx.borrow_and_update().outcome(g) {
                return r;
            }
            if rx.changed().await.is_err() {
                return Err(Arc::from("commit thread stopped"));
            }
        }
    }

    /// Syncs what is pending, stops the thread and waits for it.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.unpark();
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
    }

    fn run(&self, store: &dyn Store) {
        let mut synced = 0u64;
        loop {
            let target = self.written.load(Ordering::SeqCst);
            if target > synced {
                let result = store.sync();
                self.syncs.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(()) => {
                        synced = target;
                        self.state.send_modify(|s| s.durable = target);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "store sync failed; pending confirms get ERR INTERNAL");
                        synced = target;
                        let msg: Arc<str> = Arc::from(e.to_string());
                        self.state.send_modify(|s| {
                            s.failed = target;
                            s.error.get_or_insert(msg);
                        });
                    }
                }
                continue;
            }
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            thread::park_timeout(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[test]
    fn outcome_tracks_durable_and_failed() {
        let s = CommitState {
            durable: 5,
            failed: 7,
            error: Some(Arc::from("disk")),
        };
        assert_eq!(s.outcome(4), Some(Ok(())));
        assert_eq!(s.outcome(5), Some(Ok(())));
        assert!(matches!(s.outcome(6), Some(Err(_))));
        assert_eq!(s.outcome(8), None);
    }

    #[tokio::test]
    async fn writes_become_durable_and_share_syncs() {
        let c = Committer::start(Arc::new(MemStore)).unwrap();
        let gens: Vec<u64> = (0..1000).map(|_| c.written()).collect();
        for g in &gens {
            c.wait(*g).await.unwrap();
        }
        assert!(c.sync_count() >= 1);
        assert!(c.sync_count() < 1000, "syncs: {}", c.sync_count());
        c.shutdown();
    }
}
