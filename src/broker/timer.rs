//! [`Timers`]: the broker's one timer, shared by every queue.
//!
//! A queue keeps its own deadlines in sorted indexes (delayed messages by
//! due time, ready messages by expiry, its own idle expiry) and registers
//! only its *earliest* deadline here. The timer task sleeps until the
//! earliest registered deadline of all queues, then hands each queue that
//! is due to the broker (`Broker::run_timers`), which runs the queue's
//! `on_timer` (everything due; it registers its next deadline) and deals
//! with what that returns. So a million messages with TTLs cost one heap
//! entry and no wake-ups until the first of them is due: nothing polls
//! every message.
//!
//! The heap knows nothing of queues (it holds a `Weak<T>` and gives it
//! back when due), so that a queue can register here without this module
//! knowing what a queue is.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::message::now_ms;

/// One registration: wake `queue` at `at` (Unix ms).
#[derive(Debug)]
struct Due<T> {
    at: u64,
    order: u64,
    queue: Weak<T>,
}

impl<T> PartialEq for Due<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl<T> Eq for Due<T> {}
impl<T> PartialOrd for Due<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Due<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// The registrations of every `T` (a queue), earliest first.
#[derive(Debug)]
pub(crate) struct Timers<T> {
    heap: Mutex<(BinaryHeap<Reverse<Due<T>>>, u64)>,
    wake: Notify,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            heap: Mutex::new((BinaryHeap::new(), 0)),
            wake: Notify::new(),
        }
    }
}

impl<T> Timers<T> {
    /// Asks for `queue` to be handed to the timer task's `fire` at `at`
    /// (Unix ms) or soon after.
    pub(crate) fn schedule(&self, at: u64, queue: &Arc<T>) {
        let mut h = self.heap.lock();
        let earliest = h.0.peek().map(|Reverse(d)| d.at);
        h.1 += 1;
        let order = h.1;
        h.0.push(Reverse(Due {
            at,
            order,
            queue: Arc::downgrade(queue),
        }));
        drop(h);
        if earliest.is_none_or(|e| at < e) {
            self.wake.notify_one();
        }
    }

    /// Takes every registration due at `now`.
    fn take_due(&self, now: u64) -> Vec<Weak<T>> {
        let mut h = self.heap.lock();
        let mut due = Vec::new();
        while h.0.peek().is_some_and(|Reverse(d)| d.at <= now) {
            if let Some(Reverse(d)) = h.0.pop() {
                due.push(d.queue);
            }
        }
        due
    }

    fn next_at(&self) -> Option<u64> {
        self.heap.lock().0.peek().map(|Reverse(d)| d.at)
    }

    /// The timer task: hands every queue whose deadline has come, and that
    /// still exists, to `fire` with the time. It holds no queue alive; the
    /// server aborts it at shutdown.
    pub(crate) async fn run(self: Arc<Self>, mut fire: impl FnMut(Arc<T>, u64)) {
        loop {
            let wake = self.wake.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            let now = now_ms();
            for q in self.take_due(now) {
                if let Some(q) = q.upgrade() {
                    fire(q, now);
                }
            }
            match self.next_at() {
                Some(at) => {
                    let now = now_ms();
                    if at > now {
                        let _ = tokio::time::timeout(Duration::from_millis(at - now), wake).await;
                    }
                }
                None => wake.await,
            }
        }
    }
}
