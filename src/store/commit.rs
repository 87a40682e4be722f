//! The group commit: one thread turns many writes into one durability
//! barrier ([`Storage::sync`]), and publishes how far the store is durable.
//!
//! Every write to the store takes a *generation* from [`Committer::written`]
//! after it has landed in the engine. The committer thread reads the latest
//! generation, calls `sync` once, and publishes that generation as durable
//! on a `watch` channel. A reply that promises durability (a persistent
//! `PUB`'s `OK`, an `ACK` that removed a stored message, a durable declare)
//! waits until the durable generation reaches its own. Writes that arrive
//! while a sync runs share the next one, so a pipelining publisher gets one
//! fsync per batch, not one per message; a lone publisher pays one each.
//!
//! **Failure is sticky.** Once a write or a sync has failed (sled's I/O
//! errors are sticky until it is reopened), every generation not yet
//! durable fails, and so does every later one: a reply that was waiting
//! gets `ERR INTERNAL` at once instead of waiting for a sync that will
//! never succeed. A sync that does not return within [`SYNC_STALL`] (sled
//! 0.34's flush can wait forever after an I/O error in its background
//! writer) is a failure too, declared by a watchdog thread.
//!
//! Stream consumer-group positions are *deferred* writes
//! ([`Committer::defer_offset`]): an ack that moves a group only records the
//! new offset, and the committer thread writes the latest offset of each
//! group once, right before its next sync. A consumer acking one message at
//! a time so costs one store write per group per sync, not one per ack,
//! and its `OK` still comes only once the position is durable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{MessageBatch, MessageStore, Storage};

/// How long one sync may take before the store is declared failed.
///
/// A healthy disk syncs in milliseconds, a slow or overloaded one in
/// seconds; one that has not answered in half a minute is not coming
/// back in a time any client waits for.
pub(crate) const SYNC_STALL: Duration = Duration::from_secs(30);

/// How far the store is durable, as the committer last published it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CommitState {
    /// Every generation up to this one is durable.
    pub(crate) durable: u64,
    /// The first store error (a failed sync or write, or a stalled sync),
    /// if any: every generation above `durable` has failed, and the store
    /// takes no more writes (see [`crate::server::serve`]).
    pub(crate) error: Option<Arc<str>>,
}

impl CommitState {
    /// `Some(Ok(()))` once generation `g` is durable, `Some(Err(..))` if the
    /// store failed before it was, `None` while it is still pending.
    pub(crate) fn outcome(&self, g: u64) -> Option<Result<(), Arc<str>>> {
        if g <= self.durable {
            Some(Ok(()))
        } else {
            self.error.clone().map(Err)
        }
    }
}

/// Upper bounds of the sync-latency histogram's buckets, in seconds
/// (Prometheus' `le`; a last, unbounded `+Inf` bucket is implied).
pub(crate) const SYNC_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How long the store's syncs take: a lock-free histogram (one atomic per
/// bucket, bumped by the commit thread, read by `/metrics`).
#[derive(Debug, Default)]
pub(crate) struct SyncHistogram {
    /// Syncs per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; SYNC_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl SyncHistogram {
    /// Records one sync that took `d`.
    pub(crate) fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = SYNC_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(SYNC_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket of [`SYNC_BUCKETS`] then `+Inf` (the
    /// total), and the sum of the durations in seconds.
    pub(crate) fn snapshot(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (cumulative, sum)
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
    latency: SyncHistogram,
    /// Deferred group positions: (queue id, group) → offset, written by the
    /// committer thread before its next sync.
    deferred: parking_lot::Mutex<HashMap<(u64, Arc<str>), u64>>,
    /// When the sync under way started (`None` between syncs), for the
    /// stall watchdog.
    syncing_since: parking_lot::Mutex<Option<Instant>>,
    /// Set by the committer thread as it returns.
    finished: (parking_lot::Mutex<bool>, parking_lot::Condvar),
}

impl Committer {
    /// Starts the committer thread for `storage` (and its stall watchdog).
    pub fn start(storage: &Storage) -> std::io::Result<Arc<Committer>> {
        Committer::start_with(storage, SYNC_STALL)
    }

    fn start_with(storage: &Storage, stall: Duration) -> std::io::Result<Arc<Committer>> {
        let storage = storage.clone();
        let (state, _) = watch::channel(CommitState::default());
        // The thread needs the Arc, and the Arc needs the thread handle:
        // build the thread parked on a rendezvous, then hand it the Arc.
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Committer>>();
        let handle = thread::Builder::new()
            .name("sluice-commit".into())
            .spawn(move || {
                if let Ok(me) = rx.recv() {
                    me.run(&storage);
                    *me.finished.0.lock() = true;
                    me.finished.1.notify_all();
                }
            })?;
        let me = Arc::new(Committer {
            written: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            state,
            waker: handle.thread().clone(),
            thread: parking_lot::Mutex::new(None),
            syncs: AtomicU64::new(0),
            latency: SyncHistogram::default(),
            deferred: parking_lot::Mutex::new(HashMap::new()),
            syncing_since: parking_lot::Mutex::new(None),
            finished: Default::default(),
        });
        *me.thread.lock() = Some(handle);
        // The receiver only disappears if the thread died, which start reports below.
        if tx.send(me.clone()).is_err() {
            return Err(std::io::Error::other("commit thread died at start"));
        }
        let weak = Arc::downgrade(&me);
        thread::Builder::new()
            .name("sluice-commit-watch".into())
            .spawn(move || Committer::watch(weak, stall))?;
        Ok(me)
    }

    /// The stall watchdog: declares the store failed when a sync has run
    /// for longer than `stall`. Ends with the committer.
    fn watch(me: std::sync::Weak<Committer>, stall: Duration) {
        let tick = (stall / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            thread::sleep(tick);
            let Some(me) = me.upgrade() else { return };
            if *me.finished.0.lock() {
                return;
            }
            let stalled = me
                .syncing_since
                .lock()
                .is_some_and(|t| t.elapsed() >= stall);
            if stalled {
                tracing::error!(
                    stall_s = stall.as_secs(),
                    "a store sync has not returned in time; the store is failed and \
                     pending confirms get ERR INTERNAL"
                );
                me.fail(&format!(
                    "storage stalled: a sync did not return within {} s",
                    stall.as_secs()
                ));
                return;
            }
        }
    }

    /// Marks the store failed with `msg` (the first failure is kept):
    /// every generation not yet durable fails.
    fn fail(&self, msg: &str) {
        self.state.send_modify(|s| {
            if s.error.is_none() {
                s.error = Some(Arc::from(msg));
            }
        });
    }

    /// Whether the store has failed (a write, a sync, or a stalled sync).
    pub(crate) fn has_failed(&self) -> bool {
        self.state.borrow().error.is_some()
    }

    /// Records that a write has landed in the store and returns its
    /// generation: the write is durable once [`CommitState::outcome`] says so.
    pub fn written(&self) -> u64 {
        let g = self.written.fetch_add(1, Ordering::SeqCst) + 1;
        self.waker.unpark();
        g
    }

    /// Records that group `group` of stream `queue_id` is now at `offset`,
    /// to be written before the next sync (a later offset for the same
    /// group replaces it). Returns the generation that makes it durable.
    ///
    /// The map's lock is held by the committer from taking the map to
    /// counting its write, so an offset recorded meanwhile gets a later
    /// generation than that write and waits for the next round.
    pub(crate) fn defer_offset(&self, queue_id: u64, group: Arc<str>, offset: u64) -> u64 {
        let g = {
            let mut d = self.deferred.lock();
            d.insert((queue_id, group), offset);
            self.written.load(Ordering::SeqCst) + 1
        };
        self.waker.unpark();
        g
    }

    /// Writes the deferred offsets (one write for all) and counts it.
    fn write_deferred(&self, messages: &dyn MessageStore) {
        let mut d = self.deferred.lock();
        if d.is_empty() {
            return;
        }
        let taken = std::mem::take(&mut *d);
        let batch = MessageBatch {
            put_offsets: taken
                .iter()
                .map(|((q, group), at)| (*q, &**group, *at))
                .collect(),
            ..MessageBatch::default()
        };
        if let Err(e) = messages.apply(&batch) {
            tracing::error!(error = %e, "could not store consumer-group offsets");
            self.write_failed(&e);
        }
        self.written.fetch_add(1, Ordering::SeqCst);
    }

    /// A receiver of the durable generation.
    pub(crate) fn subscribe(&self) -> watch::Receiver<CommitState> {
        self.state.subscribe()
    }

    /// Records a failed write to the store (not a sync): the store cannot
    /// be trusted to take more writes (sled's I/O errors are sticky), which
    /// [`CommitState::error`] tells whoever watches.
    pub(crate) fn write_failed(&self, e: &super::StoreError) {
        if let super::StoreError::Io(_) = e {
            self.fail(&e.to_string());
        }
    }

    /// How many syncs have run (for tests and stats: proof of group commit).
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// How long syncs took.
    pub(crate) fn sync_latency(&self) -> &SyncHistogram {
        &self.latency
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

    /// Syncs what is pending, stops the thread and waits for it, for at
    /// most `patience`: a thread stuck in a sync that never returns is left
    /// behind (the process is about to end). True if it finished.
    pub fn shutdown(&self, patience: Duration) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.unpark();
        let mut finished = self.finished.0.lock();
        if !*finished {
            let _ = self.finished.1.wait_for(&mut finished, patience);
        }
        if !*finished {
            return false;
        }
        drop(finished);
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
        true
    }

    fn run(&self, storage: &Storage) {
        let mut synced = 0u64;
        loop {
            if self.has_failed() {
                // Nothing more can become durable: no more syncs (sled's
                // flush may never return after an I/O error).
                return;
            }
            self.write_deferred(storage.messages.as_ref());
            let target = self.written.load(Ordering::SeqCst);
            if target > synced {
                let started = Instant::now();
                *self.syncing_since.lock() = Some(started);
                let result = storage.sync();
                *self.syncing_since.lock() = None;
                self.latency.record(started.elapsed());
                self.syncs.fetch_add(1, Ordering::Relaxed);
                synced = target;
                match result {
                    Ok(()) => {
                        // A sync that returned after the watchdog gave up
                        // on it changes nothing: the failure stands.
                        self.state.send_modify(|s| {
                            if s.error.is_none() {
                                s.durable = target;
                            }
                        });
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "store sync failed; pending confirms get ERR INTERNAL");
                        self.fail(&e.to_string());
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
    use crate::store::{NullStore, QueueDef, RecoveredMessage, StoreError, StoredMessages};

    #[test]
    fn outcome_tracks_durable_and_a_failure_fails_everything_after() {
        let mut s = CommitState {
            durable: 5,
            error: None,
        };
        assert_eq!(s.outcome(5), Some(Ok(())));
        assert_eq!(s.outcome(6), None);
        s.error = Some(Arc::from("disk"));
        assert_eq!(s.outcome(4), Some(Ok(())));
        assert_eq!(s.outcome(5), Some(Ok(())));
        assert!(matches!(s.outcome(6), Some(Err(_))));
        assert!(matches!(s.outcome(u64::MAX), Some(Err(_))));
    }

    #[test]
    fn the_histogram_is_cumulative_and_ends_in_the_count() {
        let h = SyncHistogram::default();
        h.record(Duration::from_micros(50));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(10));
        let (cum, sum) = h.snapshot();
        assert_eq!(cum.len(), SYNC_BUCKETS.len() + 1);
        assert_eq!(cum[0], 1);
        assert_eq!(cum[5], 2, "3 ms falls in le=0.005");
        assert_eq!(cum[SYNC_BUCKETS.len() - 1], 2);
        assert_eq!(cum[SYNC_BUCKETS.len()], 3);
        assert!((sum - 10.00305).abs() < 1e-6, "{sum}");
    }

    #[tokio::test]
    async fn writes_become_durable_and_share_syncs() {
        let c = Committer::start(&Storage::one(Arc::new(NullStore))).unwrap();
        let gens: Vec<u64> = (0..1000).map(|_| c.written()).collect();
        for g in &gens {
            c.wait(*g).await.unwrap();
        }
        assert!(c.sync_count() >= 1);
        assert!(c.sync_count() < 1000, "syncs: {}", c.sync_count());
        assert!(c.shutdown(Duration::from_secs(5)));
    }

    /// A store whose syncs block until `release` is set (as sled's flush
    /// can block forever after an I/O error).
    #[derive(Debug, Default)]
    struct Stuck {
        release: AtomicBool,
    }

    impl crate::store::Durable for Stuck {
        fn sync(&self) -> Result<(), StoreError> {
            while !self.release.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        }
    }

    impl MessageStore for Stuck {
        fn recover(&self, queues: &[QueueDef]) -> Result<StoredMessages, StoreError> {
            NullStore.recover(queues)
        }
        fn load(
            &self,
            _: u64,
            _: u64,
            _: u64,
            _: usize,
        ) -> Result<Vec<RecoveredMessage>, StoreError> {
            Ok(Vec::new())
        }
        fn apply(&self, _: &MessageBatch<'_>) -> Result<(), StoreError> {
            Ok(())
        }
        fn remove_queue(&self, _: u64) -> Result<(), StoreError> {
            Ok(())
        }
        fn set_clean(&self, _: bool) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_stalled_sync_fails_the_waiting_writes_and_shutdown_does_not_wait_for_it() {
        let store = Arc::new(Stuck::default());
        let storage = Storage::split(Arc::new(NullStore), store.clone());
        let c = Committer::start_with(&storage, Duration::from_millis(200)).unwrap();
        let g = c.written();
        let err = tokio::time::timeout(Duration::from_secs(10), c.wait(g))
            .await
            .expect("the wait ended")
            .expect_err("a stalled sync is a failure");
        assert!(err.contains("stalled"), "{err}");
        assert!(c.has_failed());
        // Later writes fail at once too.
        let g2 = c.written();
        assert!(c.wait(g2).await.is_err());
        assert!(
            !c.shutdown(Duration::from_millis(50)),
            "the thread is stuck"
        );
        // Once the sync returns, the failure stands and the thread ends.
        store.release.store(true, Ordering::SeqCst);
        assert!(c.shutdown(Duration::from_secs(5)));
        assert!(c.wait(g).await.is_err());
    }
}
