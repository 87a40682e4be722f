//! [`serve`]: the accept loops. One task per connection, a cap on concurrent
//! connections (one over it is answered `ERR LIMIT` and closed), TCP
//! keepalive on every socket (a peer that vanished without a FIN is found
//! within about two minutes even when idle), an accept that survives running
//! out of file descriptors, and a clean shutdown: stop accepting, let every
//! session finish its in-flight confirms, then flush the store.
//!
//! **Every stop ends.** When the stop begins (the `shutdown` future, which
//! arms the [`Deadline`] on a signal, or a store that failed a write,
//! which arms it here), the process has `--shutdown-timeout` to finish;
//! past it the deadline ends the process with status 1. A failed store is
//! not flushed (sled's flush may never return after an I/O error) and the
//! disk reserve is released, so that the restart a supervisor makes has
//! room to recover.
//!
//! **Two ports.** [`serve`] takes the plain listener and, with
//! `--tls-cert`/`--tls-key`, a TLS one: the same sessions behind both, one
//! `--max-connections` budget for the two, the same shutdown. A TLS
//! handshake runs in the connection's own task (the accept loop never waits
//! for a client), bounded by [`HANDSHAKE_TIMEOUT`] or `--frame-timeout`,
//! whichever is shorter. A client on the TLS port that speaks plain text,
//! or waits for a greeting in silence, gets one plain-text `ERR BAD_FRAME`
//! that names the port (`PLAIN_TEXT_ON_TLS_PORT`) before the close.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::connection;
use crate::protocol::frame::Limits;
use crate::protocol::reply::Reply;
use crate::protocol::ErrorCode;
use crate::session::Session;
use crate::shutdown::Deadline;
use crate::tls::{NotTls, TlsAcceptor, HANDSHAKE_TIMEOUT};
use crate::{PROTOCOL_VERSION, VERSION};

/// Why [`serve`] ended other than by a clean stop.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store failed a write and the server stopped (status 1).
    #[error("the store failed a write ({0}); stopped so that a restart can recover; every confirmed message is on disk")]
    StoreFailed(Arc<str>),
    /// The last flush of the store failed.
    #[error(transparent)]
    Flush(#[from] crate::store::StoreError),
    /// The stop itself failed (its task panicked).
    #[error("the stop failed: {0}")]
    Stop(String),
}

/// What [`serve`] listens on: the plain port and, optionally, the TLS one.
pub struct Listeners {
    /// The plain TCP port (`--addr`).
    pub plain: TcpListener,
    /// The TLS port (`--tls-addr`) and its certificate, if TLS is on.
    pub tls: Option<(TcpListener, TlsAcceptor)>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("plain", &self.plain)
            .field("tls", &self.tls.as_ref().map(|(l, _)| l))
            .finish()
    }
}

/// Serves `listeners` until `shutdown` completes or the store fails, then
/// closes every connection and shuts the broker's store down cleanly. A
/// store failure arms `deadline` (see the module docs).
pub async fn serve(
    listeners: Listeners,
    broker: Broker,
    shutdown: impl Future,
    deadline: Deadline,
) -> Result<(), ServeError> {
    let Listeners {
        plain: listener,
        tls,
    } = listeners;
    let (stop_tx, stop_rx) = watch::channel(None);
    let limit = Arc::new(Semaphore::new(broker.config().max_connections));
    let mut sessions = JoinSet::new();
    let timers = tokio::spawn(broker.run_timers());
    let alarms = tokio::spawn(broker.alarms().clone().run());
    let sampler = tokio::spawn(crate::broker::stats::Sampler::run(broker.clone()));
    let mut commits = broker.committer().subscribe();
    let mut store_failure: Option<Arc<str>> = None;
    tokio::pin!(shutdown);
    let mut accept_errors = AcceptErrors::default();
    let mut refused_logged = EverySecond::default();
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            // A store that failed a write takes no more (sled's I/O errors
            // are sticky until it is reopened): stop, so that a restart by
            // the supervisor recovers, rather than answer ERR forever.
            Ok(state) = commits.wait_for(|s| s.error.is_some()) => {
                store_failure = state.error.clone();
                deadline.arm(broker.config().shutdown_timeout, "stopping on a store failure");
                tracing::error!(error = %state.error.as_deref().unwrap_or(""), "the store failed a write: stopping");
                broker.alarms().disk.release_reserve("the store failed");
                break;
            }
            a = listener.accept() => a.map(|(s, p)| (s, p, None)),
            a = accept_tls(&tls) => a,
            // Reap finished sessions as they end, not at the next accept.
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let (stream, peer, acceptor) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: the connection waits in the kernel's
                // queue; back off rather than spin, keep serving the rest.
                accept_errors.failed(&e);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        accept_errors.recovered();
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            // On the TLS port the line could only be sent after a
            // handshake, which costs what the limit protects: closed.
            let tls = acceptor.is_some();
            refuse(
                stream,
                tls,
                broker.config().max_connections,
                &mut refused_logged,
            );
            continue;
        };
        keepalive(&stream);
        let broker = broker.clone();
        let mut stop = stop_rx.clone();
        sessions.spawn(async move {
            let conn_id = broker.next_id();
            let limits = broker.config().limits;
            let tls = acceptor.is_some();
            let (reader, mut writer) = match acceptor {
                None => connection::split(stream, limits),
                Some(acceptor) => {
                    let bound = HANDSHAKE_TIMEOUT.min(broker.config().frame_timeout);
                    let handshake = tokio::select! {
                        done = crate::tls::accept(&acceptor, stream, bound) => done,
                        _ = stop.changed() => return,
                    };
                    match handshake {
                        Ok(s) => connection::split_tls(s, limits),
                        Err(NotTls::PlainText(stream)) => {
                            tracing::debug!(conn = conn_id, %peer, "no TLS handshake on the TLS port: told so in plain text");
                            tell_plain_text_client(stream, limits).await;
                            return;
                        }
                        Err(NotTls::Failed(e)) => {
                            tracing::debug!(conn = conn_id, %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                    }
                }
            };
            tracing::debug!(conn = conn_id, %peer, "connection opened");
            writer.buf.extend_from_slice(
                format!("HELLO sluice {VERSION} proto={PROTOCOL_VERSION}\r\n").as_bytes(),
            );
            let session = Session::new(conn_id, peer, tls, broker);
            session.run(reader, writer, stop).await;
            drop(permit);
        });
    }
    tracing::info!("shutting down: closing connections");
    drop(listener);
    drop(tls);
    let reason = if store_failure.is_some() {
        "store-failed"
    } else {
        "shutdown"
    };
    let _ = stop_tx.send(Some(reason));
    while sessions.join_next().await.is_some() {}
    timers.abort();
    alarms.abort();
    sampler.abort();
    let b = broker.clone();
    let flushed = tokio::task::spawn_blocking(move || b.shutdown())
        .await
        .map_err(|e| ServeError::Stop(e.to_string()))?;
    if store_failure.is_none() && broker.committer().has_failed() {
        // It failed during the stop (the last sync, say).
        store_failure = broker.committer().subscribe().borrow().error.clone();
    }
    if store_failure.is_some() {
        // Dropping the last handle on a failed sled flushes it, which may
        // never return: this one is never dropped (the process is ending).
        std::mem::forget(broker);
    }
    if let Some(e) = store_failure {
        tracing::error!(error = %e, "stopped: the store failed a write; every confirmed message is on disk; restart once the cause (a full disk?) is fixed");
        return Err(ServeError::StoreFailed(e));
    }
    flushed?;
    tracing::info!("store flushed; bye");
    Ok(())
}

/// A connection accepted on the TLS port (with its acceptor), or never
/// when TLS is off.
type Accepted = std::io::Result<(TcpStream, std::net::SocketAddr, Option<TlsAcceptor>)>;

async fn accept_tls(tls: &Option<(TcpListener, TlsAcceptor)>) -> Accepted {
    match tls {
        Some((l, acceptor)) => l
            .accept()
            .await
            .map(|(s, p)| (s, p, Some(acceptor.clone()))),
        None => std::future::pending().await,
    }
}

/// What a client on the TLS port that does not speak TLS is told, in
/// plain text (the plain port's framer says the converse to a ClientHello).
pub(crate) const PLAIN_TEXT_ON_TLS_PORT: &str =
    "this is a TLS port, not plain text: connect with TLS (sluice --tls, openssl s_client) or to the plain-text port";

/// Answers a plain-text client on the TLS port: one `ERR BAD_FRAME` line
/// that names the mismatch, then a gentle close (a FIN, and its input read
/// and thrown away for a while, so that the line is not lost to a reset).
async fn tell_plain_text_client(stream: TcpStream, limits: Limits) {
    let (mut reader, mut writer) = connection::split(stream, limits);
    Reply::Err(ErrorCode::BadFrame, PLAIN_TEXT_ON_TLS_PORT.into()).encode(&mut writer.buf);
    let _ = tokio::time::timeout(connection::LINGER, async {
        if writer.flush().await.is_ok() {
            writer.shutdown().await;
        }
    })
    .await;
    reader.discard_until_eof(connection::LINGER).await;
}

/// The pause after a failed `accept` (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Keepalive: first probe after this much silence, then one every
/// `KEEPALIVE_INTERVAL`, and the peer is dropped after `KEEPALIVE_RETRIES`
/// unanswered ones (60 + 6 × 10 s = about 2 minutes).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 6;

/// Turns TCP keepalive on, so that the kernel finds a peer that vanished
/// without closing (power loss, a cable pulled, a NAT that forgot it); its
/// unacked deliveries then go back to their queues.
fn keepalive(stream: &TcpStream) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&ka) {
        tracing::debug!(error = %e, "could not turn on TCP keepalive");
    }
}

/// A connection over `--max-connections`: `ERR LIMIT`, then closed (on the
/// TLS port, closed at once). The line fits any fresh socket's send
/// buffer, so the write never waits. Logged once a second at most.
fn refuse(stream: TcpStream, tls: bool, max: usize, logged: &mut EverySecond) {
    if logged.due() {
        tracing::warn!(
            max,
            "connection refused with ERR LIMIT: --max-connections reached"
        );
    }
    if tls {
        return;
    }
    let line =
        format!("ERR LIMIT too many connections (--max-connections {max}); try again later\r\n");
    let _ = stream.try_write(line.as_bytes());
}

/// A log line's rate limit: at most one a second.
#[derive(Default)]
struct EverySecond(Option<Instant>);

impl EverySecond {
    /// True (and the clock restarts) when a second has passed since the
    /// last true, or the first time.
    fn due(&mut self) -> bool {
        let now = Instant::now();
        let due = self
            .0
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if due {
            self.0 = Some(now);
        }
        due
    }
}

/// Logs accept failures once a second, not once per attempt, and says
/// when accepting works again.
#[derive(Default)]
struct AcceptErrors {
    since: Option<Instant>,
    logged: EverySecond,
    count: u64,
}

impl AcceptErrors {
    fn failed(&mut self, e: &std::io::Error) {
        self.since.get_or_insert_with(Instant::now);
        self.count += 1;
        if self.logged.due() {
            let hint = if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                "; out of file descriptors (raise `ulimit -n` or lower --max-connections)"
            } else {
                ""
            };
            tracing::warn!(error = %e, failures = self.count, "accept failed{hint}; new connections wait");
        }
    }

    fn recovered(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::warn!(
                failures = self.count,
                after_ms = since.elapsed().as_millis() as u64,
                "accepting connections again"
            );
            self.count = 0;
            self.logged = EverySecond::default();
        }
    }
}
