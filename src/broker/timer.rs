//! [`Timers`]: the broker's one timer, shared by every queue.
//!
//! A queue keeps its own deadlines in sorted indexes (delayed messages by
//! due time, ready messages by expiry, its own idle expiry) and registers
//! only its *earliest* deadline here. The timer task sleeps until the
//! earliest registered deadline of all queues, then calls
//! [`Queue::on_timer`], which handles everything due and registers its next
//! deadline. So a million messages with TTLs cost one heap entry and no
//! wake-ups until the first of them is due: nothing polls every message.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::message::now_ms;
use super::queue::Queue;

/// One registration: wake `queue` at `at` (Unix ms).
#[derive(Debug)]
struct Due {
    at: u64,
    order: u64,
    queue: Weak<Queue>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// The registrations, earliest first.
#[derive(Debug, Default)]
pub struct Timers {
    heap: Mutex<(BinaryHeap<Reverse<Due>>, u64)>,
    wake: Notify,
}

impl Timers {
    /// Asks for `queue.on_timer` to run at `at` (Unix ms) or soon after.
    pub fn schedule(&self, at: u64, queue: &Arc<Queue>) {
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

    /// How many registrations are pending (stats and tests).
    pub fn pending(&self) -> usize {
        self.heap.lock().0.len()
    }

    /// Takes every registration due at `now`.
    fn take_due(&self, now: u64) -> Vec<Weak<Queue>> {
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

    /// The timer task. It holds no queue alive; the server aborts it at
    /// shutdown.
    pub async fn run(self: Arc<Self>) {
        loop {
            let wake = self.wake.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            let now = now_ms();
            for q in self.take_due(now) {
                if let Some(q) = q.upgrade() {
                    q.on_timer(now);
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
