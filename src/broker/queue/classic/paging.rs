//! Paging a classic queue to the store: which new copies go to the tail,
//! reading it back, and the spill hint publishes read.
//!
//! The queues on disk keep at most the broker's RAM budget
//! (`--queue-memory`, all queues together: `Disk::ram_used` counts it) of
//! waiting messages in RAM, and each of its stored copies (on disk anyway)
//! only an 8 MiB read-ahead window. Past these, a new copy
//! is left in (or, transient, written to) the store (flagged volatile so
//! that a restart drops it) and only its position is kept: the *tail*, a set of
//! position ranges plus a count and byte total. Positions in the tail come
//! after everything in RAM, so the head is always in RAM; as consumers
//! drain it the queue reads the tail back a page at a time, in order (the
//! RabbitMQ lazy-queue / CQv2 model). At start every stored copy is in the
//! tail, so recovery reads no message. Expiry and delays of paged-out copies
//! are applied when they are read back, at the head. Priority queues keep
//! everything in RAM (the head of a priority queue is not its oldest copy).
//! A `groups` queue also reads the tail back when nothing in RAM may go to
//! a consumer with credit, but only while the read-ahead window has room:
//! a backlog that fills the window and cannot go (its groups owned by
//! consumers without credit, or held back by a delayed copy) holds back
//! the copies behind it on disk until it moves.

use std::sync::atomic::Ordering;

use super::state::State;
use super::Classic;
use crate::broker::message::{Entry, Now};
use crate::broker::queue::{Queue, PAGE};

impl Classic {
    /// Whether a new stored copy goes to the tail rather than RAM: after a
    /// tail's first position (so that order holds), or past the window
    /// (a transient copy is stored only once RAM is full, past the window).
    pub(super) fn to_tail(&self, s: &State, e: &Entry) -> bool {
        match s.tail.head() {
            Some(head) => e.seq >= head,
            None => s.ram_bytes() >= self.window || (self.pages && self.over_budget()),
        }
    }

    pub(super) fn update_spill(&self, s: &State) {
        let on =
            self.pages && !s.deleted && (!s.tail.is_empty() || s.ram_bytes() >= self.ram_budget);
        self.spilling.store(on, Ordering::Relaxed);
    }

    /// Reads up to a page of the tail back into RAM, in order. False when
    /// nothing was read (the tail is empty, or the store failed: logged,
    /// and the copies stay where they are).
    pub(super) fn page_in(&self, q: &Queue, s: &mut State, now: &Now) -> bool {
        let page = match s
            .tail
            .read(|from, to, n| q.disk.load(q.id, from, to, n), PAGE)
        {
            Ok(page) => page,
            Err(e) => {
                q.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(queue = %q.name, error = %e, "could not read paged-out messages back");
                return false;
            }
        };
        for m in &page {
            let e = Entry::from_stored(m, q.disk.bodies.adopt(m), m.seq < s.crash_below);
            s.insert_waiting(e, now);
        }
        !page.is_empty()
    }

    /// The next ready copy, reading the tail back first when the head in
    /// RAM runs low (or would overtake the tail).
    pub(super) fn next_ready(&self, q: &Queue, s: &mut State, now: &Now) -> Option<Entry> {
        while let Some(head) = s.tail.head() {
            let blocked = s
                .ready
                .first_key_value()
                .is_none_or(|((_, seq), _)| *seq >= head);
            let low = s.reads_ahead(self.window);
            if !blocked && !low {
                break;
            }
            if !self.page_in(q, s, now) {
                if blocked && !s.tail.is_empty() {
                    return None;
                }
                break;
            }
            if !blocked {
                break;
            }
        }
        s.pop_ready()
    }

    /// The oldest waiting copy: the ready head, else the first delayed.
    pub(super) fn pop_head(&self, q: &Queue, s: &mut State, now: &Now) -> Option<Entry> {
        if let Some(e) = self.next_ready(q, s, now) {
            return Some(e);
        }
        let (_, e) = s.delayed.pop_first()?;
        s.bytes.sub(e.msg.body.len() as u64);
        s.left_waiting(&e);
        Some(e)
    }
}
