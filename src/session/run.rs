//! The session's loop: read and run commands, put what came of each in
//! its place, write what may be written, and wait for whatever comes next
//! (bytes, pushes, a durable generation, a timer, room for a held `PUB`,
//! a pending command, the shutdown). The only caller of [`cmd::apply`].

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::clock::Clocks;
use super::{Session, CLOSING_WRITE_TIMEOUT};
use crate::broker::queue::Settle;
use crate::cmd::{self, Completion, Outcome, Pending};
use crate::connection::{FrameReader, FrameWriter};
use crate::error::BrokerError;
use crate::protocol::command::Command;
use crate::protocol::frame::FrameEvent;
use crate::protocol::parse::parse_command;
use crate::protocol::reply::{Notice, Reply};
use crate::protocol::ErrorCode;
use crate::session_state::Out;
use crate::store::CommitState;

/// Stop reading new commands while this many outputs wait to be written.
const MAX_PENDING_OUTPUTS: usize = 16 * 1024;

/// While a command waits, read on until this many bytes are buffered (to
/// see the peer close its side; its later commands wait their turn).
const READ_AHEAD_WHILE_WAITING: usize = 64 * 1024;

/// What the loop does after a command.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    /// Read on.
    Read,
    /// Read no further command until the pending one completes.
    Wait,
    /// Close once what is queued is written.
    Close,
}

/// How the loop ended, for the close that follows.
#[derive(Debug)]
pub(super) struct Ended {
    /// The peer had not closed its side.
    pub(super) reading: bool,
    /// The peer stopped reading or answering: no point lingering.
    pub(super) peer_gone: bool,
}

impl Session {
    /// The loop: runs until the connection must close.
    pub(super) async fn serve(
        &mut self,
        reader: &mut FrameReader,
        writer: &mut FrameWriter,
        shutdown: &mut watch::Receiver<Option<&'static str>>,
    ) -> Ended {
        let mut commit_rx = self.state.broker().committer().subscribe();
        let mut reading = true;
        let mut closing = false;
        let mut peer_gone = false;
        let mut clocks = Clocks::new(self.state.broker().config().frame_timeout, reader.frames());
        // Where an admin's close (`ConnInfo::close`) arrives.
        let registration = self.state.registration();
        loop {
            if self.pending.is_none() && !closing && self.run_buffered(reader) == Flow::Close {
                closing = true;
            }
            match self.write_ready(writer, &mut commit_rx, closing).await {
                Ok(true) => clocks.last_write = Instant::now(),
                Ok(false) => {}
                Err(()) => {
                    peer_gone = true;
                    break;
                }
            }
            if (closing || !reading) && self.is_idle() {
                break;
            }
            let durable_wait = self.state.outbox().waits_for_commit();
            let can_read = reading
                && !closing
                && self.pending.is_none()
                && self.state.outbox().len() < MAX_PENDING_OUTPUTS
                && !self.held.is_full();
            // While a command waits (a `GET wait=`, a change the cluster
            // must commit), a little more is read: enough to see the peer
            // close its side. Its commands run once the wait is over.
            let reads_ahead = reading
                && !closing
                && self.pending.is_some()
                && reader.buffered() < READ_AHEAD_WHILE_WAITING;
            let next_timeout = self.state.next_ack_deadline();
            // A command that started to arrive must finish within the frame
            // timeout; time the server spends not reading does not count.
            let frame_deadline = clocks.frame_deadline(reader, can_read);
            let heartbeat_at = clocks.heartbeat_deadline(self.state.heartbeat(), can_read, closing);
            self.state.sync_registry();
            tokio::select! {
                res = shutdown.changed(), if !closing => {
                    let _ = res;
                    let reason = shutdown.borrow().unwrap_or("shutdown");
                    self.shut_down(reason);
                    closing = true;
                }
                _ = async { match &registration { Some(r) => r.closed().await, None => std::future::pending().await } }, if !closing => {
                    tracing::info!(conn = self.state.conn_id(), "closed by an admin");
                    self.shut_down("closed-by-admin");
                    closing = true;
                }
                n = reader.read_more(), if can_read || reads_ahead => match n {
                    Ok(0) => {
                        reading = false;
                        // The peer sends nothing more: no ACK can come, so
                        // what it holds goes back now, not when what it
                        // still waits for is answered.
                        if !self.is_idle() {
                            self.state.peer_done_sending();
                        }
                        // A literal whose terminator "is not there" is
                        // answered even when the stream ends right after it.
                        if let Some(bad) = reader.at_end() {
                            self.answer(Out::Reply(Reply::Err(ErrorCode::BadFrame, bad.0), None));
                            closing = true;
                        }
                    }
                    Err(_) => reading = false,
                    Ok(n) => {
                        self.state.count_bytes(n, 0);
                        clocks.last_read = Instant::now();
                    }
                },
                _ = clocks.frame_timer.fired(), if frame_deadline.is_some() => {
                    // The timer may be for an earlier command that has since
                    // arrived: then it is armed again for this one.
                    if frame_deadline.is_some_and(|at| Instant::now() < at) {
                        continue;
                    }
                    self.frame_timed_out(clocks.frame_timeout());
                    closing = true;
                }
                _ = clocks.heartbeat_timer.fired(), if heartbeat_at.is_some() => {
                    if !self.beat(&mut clocks) {
                        peer_gone = true;
                        break;
                    }
                }
                Some(push) = self.state.next_push() => self.state.take_push_batch(push),
                res = commit_rx.changed(), if durable_wait => {
                    if res.is_err() {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(next_timeout.unwrap_or_else(Instant::now)), if next_timeout.is_some() => {
                    self.state.expire_acks(Instant::now());
                }
                _ = self.held.room(), if self.held.is_holding() => {
                    let (later, next) = (&mut self.later, &mut self.next_later);
                    self.held
                        .retry(&mut self.state, |p| run_later(later, next, p));
                }
                Some(Ok((id, done))) = self.later.join_next(), if !self.later.is_empty() => {
                    let reply = match done(&mut self.state) {
                        Ok(Outcome::Reply(reply, gen)) => Out::Reply(reply, gen),
                        Ok(_) => Out::Reply(
                            Reply::Err(ErrorCode::Internal, "a later reply that is not one".into()),
                            None,
                        ),
                        Err(e) => Out::Reply(e.to_reply(), None),
                    };
                    self.state.outbox_mut().fill(id, reply);
                }
                done = async { match self.pending.as_mut() { Some(p) => p.await, None => std::future::pending().await } }, if self.pending.is_some() => {
                    self.pending = None;
                    let done = done(&mut self.state);
                    if self.follow(done) == Flow::Close {
                        closing = true;
                    }
                }
            }
        }
        Ended { reading, peer_gone }
    }

    /// A command did not finish arriving within `timeout`: `ERR
    /// BAD_FRAME`, and the connection closes.
    fn frame_timed_out(&mut self, timeout: Duration) {
        tracing::info!(
            conn = self.state.conn_id(),
            "command not completed within the frame timeout; closing"
        );
        let ms = timeout.as_millis();
        self.answer(Out::Reply(
            Reply::Err(
                ErrorCode::BadFrame,
                format!("command not completed within {ms} ms; closing"),
            ),
            None,
        ));
    }

    /// The heartbeat timer fired: `NOTICE heartbeat` if nothing was
    /// written for an interval. False when nothing came from the client
    /// for two: it is gone.
    fn beat(&mut self, clocks: &mut Clocks) -> bool {
        let now = Instant::now();
        if let Some(hb) = self.state.heartbeat() {
            if now >= clocks.last_read + 2 * hb {
                tracing::info!(
                    conn = self.state.conn_id(),
                    "nothing from the client for two heartbeats; closing"
                );
                return false;
            }
            if now >= clocks.last_write + hb {
                self.state
                    .outbox_mut()
                    .push_around(Out::Notice(Notice::Heartbeat));
                clocks.last_write = now;
            }
        }
        true
    }

    /// Whether nothing is left to write or to wait for.
    fn is_idle(&self) -> bool {
        self.state.outbox().is_empty()
            && self.pending.is_none()
            && self.held.is_empty()
            && self.later.is_empty()
    }

    /// Writes every output that may be written now; true if there were
    /// any. `Err` when the peer is gone: the write failed, or took longer
    /// than a peer that reads would let it (two heartbeats; while closing,
    /// at most [`CLOSING_WRITE_TIMEOUT`]).
    async fn write_ready(
        &mut self,
        writer: &mut FrameWriter,
        commit_rx: &mut watch::Receiver<CommitState>,
        closing: bool,
    ) -> Result<bool, ()> {
        let autos = {
            let state = commit_rx.borrow_and_update().clone();
            self.state
                .outbox_mut()
                .encode_ready(&state, &mut writer.buf)
        };
        let wrote = !writer.buf.is_empty();
        let bytes = writer.buf.len();
        // A peer that does not read for two heartbeats is gone; one
        // that does not read while the server closes is not waited for.
        let patience = match self.state.heartbeat() {
            Some(hb) if closing => Some((2 * hb).min(CLOSING_WRITE_TIMEOUT)),
            Some(hb) => Some(2 * hb),
            None => closing.then_some(CLOSING_WRITE_TIMEOUT),
        };
        let flushed = match patience {
            Some(t) => tokio::time::timeout(t, writer.flush())
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
            None => writer.flush().await,
        };
        if let Err(e) = flushed {
            tracing::debug!(conn = self.state.conn_id(), error = %e, "write failed; closing");
            // Auto-ack deliveries that may not have reached the peer go
            // back, flagged: dropped, they would stay counted as unacked
            // and hold a single-active handover or a group forever.
            for a in autos {
                if let Err(err) = a.settle(self.state.broker(), Settle::Requeue { delay_ms: None })
                {
                    tracing::warn!(error = %err, "requeue failed");
                }
            }
            return Err(());
        }
        self.state.count_bytes(0, bytes);
        for a in autos {
            if let Err(err) = a.settle(self.state.broker(), Settle::Ack) {
                tracing::warn!(error = %err, "auto-ack removal failed");
            }
        }
        Ok(wrote)
    }

    /// The server is shutting down: a held `PUB` fails, what waits behind
    /// it or is pending is dropped, and `NOTICE closing` follows what is
    /// queued.
    fn shut_down(&mut self, reason: &'static str) {
        self.held.shut_down(self.state.outbox_mut());
        self.state
            .outbox_mut()
            .push(Out::Notice(Notice::Closing { reason }));
        self.pending = None;
    }

    /// Executes every complete frame already buffered (and the commands
    /// deferred behind a `PUB` that is no longer held), until a command
    /// must wait or the connection must close.
    fn run_buffered(&mut self, reader: &mut FrameReader) -> Flow {
        loop {
            if self.state.outbox().len() >= MAX_PENDING_OUTPUTS {
                return Flow::Read;
            }
            let command = match self.next_command(reader) {
                Ok(Some(c)) => c,
                Ok(None) => return Flow::Read,
                Err(()) => return Flow::Close,
            };
            // While a PUB is held, only settling runs; the rest waits its turn.
            let Some(command) = self.held.defer(command) else {
                continue;
            };
            let done = cmd::apply(command, &mut self.state);
            match self.follow(done) {
                Flow::Read => {}
                flow => return flow,
            }
        }
    }

    /// The next command: one deferred behind a `PUB` that is no longer
    /// held, else one from the buffered frames. `Err` when the stream ends
    /// in a bad frame: the connection closes.
    fn next_command(&mut self, reader: &mut FrameReader) -> Result<Option<Command>, ()> {
        if let Some(c) = self.held.next_deferred(self.state.outbox_mut()) {
            return Ok(Some(c));
        }
        if self.held.is_full() {
            return Ok(None);
        }
        loop {
            let frame = match reader.next_event() {
                Ok(None) => return Ok(None),
                Ok(Some(FrameEvent::Reject(r))) => {
                    self.answer(Out::Reply(Reply::Err(r.code, r.message), None));
                    continue;
                }
                Ok(Some(FrameEvent::Frame(f))) => f,
                Err(bad) => {
                    self.answer(Out::Reply(Reply::Err(ErrorCode::BadFrame, bad.0), None));
                    return Err(());
                }
            };
            match parse_command(&frame) {
                Ok(c) => return Ok(Some(c)),
                Err(e) => {
                    let close = e.code == ErrorCode::BadFrame;
                    self.answer(Out::Reply(Reply::Err(e.code, e.message), None));
                    if close {
                        return Err(());
                    }
                }
            }
        }
    }

    /// Puts what came of a command in its place.
    fn follow(&mut self, done: Result<Outcome, BrokerError>) -> Flow {
        match done {
            Ok(Outcome::Reply(reply, gen)) => self.answer(Out::Reply(reply, gen)),
            Ok(Outcome::Hold(h)) => self.held.start(h, self.state.outbox_mut()),
            Ok(Outcome::Pending(p)) => {
                self.pending = Some(p);
                return Flow::Wait;
            }
            Ok(Outcome::Later(p)) => {
                let placeholder = run_later(&mut self.later, &mut self.next_later, p);
                self.answer(placeholder);
            }
            Ok(Outcome::Quit(reply)) => {
                self.answer(Out::Reply(reply, None));
                return Flow::Close;
            }
            Err(e) => self.answer(Out::Reply(e.to_reply(), None)),
        }
        Flow::Read
    }

    /// Queues a reply (one that may wait for a store generation), behind
    /// what is deferred behind a held `PUB` if need be.
    fn answer(&mut self, item: Out) {
        self.held.answer(item, self.state.outbox_mut());
    }
}

/// Runs `p`, a command that completes later, as the session's `later`
/// task number `next` (counted on); its placeholder among the replies.
fn run_later(
    later: &mut tokio::task::JoinSet<(u64, Completion)>,
    next: &mut u64,
    p: Pending,
) -> Out {
    let id = *next;
    *next += 1;
    later.spawn(async move { (id, p.await) });
    Out::Later(id)
}
