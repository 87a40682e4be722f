//! The connection's clocks: when it last read and wrote (for heartbeats),
//! when the command being received started to arrive (for the frame
//! timeout), and the timers that wake the loop for them.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

use crate::connection::FrameReader;

/// A timer for a deadline that mostly moves later, such as "this command
/// must have arrived by": armed when first needed, and again only after it
/// fires or when the deadline moves earlier (a `HELLO` with a shorter
/// heartbeat), so a connection whose deadline moves later on every loop
/// iteration (a pipelining client) does not touch the timer wheel each
/// time. When it fires, the caller checks the real deadline.
#[derive(Debug)]
pub(super) struct LazyTimer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
}

impl Default for LazyTimer {
    fn default() -> Self {
        LazyTimer {
            // Never polled before `arm` resets it.
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: false,
        }
    }
}

impl LazyTimer {
    /// Arms the timer for `at` unless it is armed already for that moment
    /// or an earlier one.
    fn arm(&mut self, at: Instant) {
        if !self.armed || at < self.sleep.deadline() {
            self.sleep.as_mut().reset(at);
            self.armed = true;
        }
    }

    /// Completes when the armed moment comes. Cancel-safe.
    pub(super) async fn fired(&mut self) {
        self.sleep.as_mut().await;
        self.armed = false;
    }
}

/// The connection's clocks (see the module docs).
#[derive(Debug)]
pub(super) struct Clocks {
    /// `--frame-timeout`.
    frame_timeout: Duration,
    /// When the command being received started to arrive.
    frame_started: Option<Instant>,
    /// How many frames had come before it.
    frames_seen: u64,
    /// When the connection last read (or last stopped reading).
    pub(super) last_read: Instant,
    /// When it last wrote.
    pub(super) last_write: Instant,
    /// Wakes the loop at the frame deadline.
    pub(super) frame_timer: LazyTimer,
    /// Wakes the loop at the heartbeat deadline.
    pub(super) heartbeat_timer: LazyTimer,
}

impl Clocks {
    /// The clocks of a connection starting now, `frames` frames read.
    pub(super) fn new(frame_timeout: Duration, frames: u64) -> Clocks {
        Clocks {
            frame_timeout,
            frame_started: None,
            frames_seen: frames,
            last_read: Instant::now(),
            last_write: Instant::now(),
            frame_timer: LazyTimer::default(),
            heartbeat_timer: LazyTimer::default(),
        }
    }

    /// `--frame-timeout`.
    pub(super) fn frame_timeout(&self) -> Duration {
        self.frame_timeout
    }

    /// When the command being received must have arrived (the frame timer
    /// armed for it), if one started to arrive. Time the server spends not
    /// reading (`can_read` false) does not count.
    pub(super) fn frame_deadline(
        &mut self,
        reader: &FrameReader,
        can_read: bool,
    ) -> Option<Instant> {
        if !can_read || reader.frames() != self.frames_seen || !reader.mid_frame() {
            self.frame_started = None;
            self.frames_seen = reader.frames();
        }
        if can_read && reader.mid_frame() {
            self.frame_started.get_or_insert_with(Instant::now);
        }
        let at = self.frame_started.map(|t| t + self.frame_timeout);
        if let Some(at) = at {
            self.frame_timer.arm(at);
        }
        at
    }

    /// When the heartbeat timer next fires (armed for it), if heartbeats
    /// are on and the connection is not closing: a heartbeat interval
    /// after the last write, or two after the last read. Time the server
    /// spends not reading does not count as silence from the client.
    pub(super) fn heartbeat_deadline(
        &mut self,
        heartbeat: Option<Duration>,
        can_read: bool,
        closing: bool,
    ) -> Option<Instant> {
        if !can_read {
            self.last_read = Instant::now();
        }
        let at = match heartbeat {
            Some(hb) if !closing => Some((self.last_write + hb).min(self.last_read + 2 * hb)),
            _ => None,
        };
        if let Some(at) = at {
            self.heartbeat_timer.arm(at);
        }
        at
    }
}
