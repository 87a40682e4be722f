//! `--http ADDR`: the monitoring endpoint. `GET /metrics` (Prometheus
//! text format 0.0.4, see [`metrics`]), `GET /api/overview` (JSON: the
//! broker's totals and every queue with its rates and recent depths) and
//! `GET /` (the dashboard: one self-contained page that polls the API).
//! Any other path is `404`, any other method `405`.
//!
//! hyper's HTTP/1 server, no framework. Bounded so that a slow or hostile
//! client cannot hurt the broker: at most [`MAX_HTTP_CONNECTIONS`] at once
//! (more are closed at accept), request headers must arrive within
//! [`HEADER_READ_TIMEOUT`] and 16 KiB, bodies are never read, and a
//! connection is closed gracefully after [`MAX_CONNECTION_AGE`] (a browser
//! simply opens another).

pub(crate) mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::broker::stats::{self, BrokerSnapshot, QueueSnapshot};
use crate::broker::Broker;

/// HTTP connections served at once; more are closed when accepted.
pub(crate) const MAX_HTTP_CONNECTIONS: usize = 64;
/// How long a request's headers may take to arrive.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one HTTP connection is kept (keep-alive included).
pub(crate) const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);
/// The largest request head read.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long a connection closing at `MAX_CONNECTION_AGE` may take to end.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The dashboard page (inline CSS and JavaScript, no framework).
const DASHBOARD: &str = include_str!("dashboard.html");

/// Binds `addr` and serves it for `broker` on a task; returns the bound
/// address (the real port when `addr` asked for port 0) and the task,
/// which runs until aborted.
pub async fn start(
    addr: SocketAddr,
    broker: Broker,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, tokio::spawn(serve(listener, broker))))
}

/// Accepts HTTP connections on `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, broker: Broker) {
    let limit = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "http connection refused: too many");
            continue;
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let broker = broker.clone();
                async move { Ok::<_, Infallible>(route(&req, &broker)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let done = tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = tokio::time::sleep(MAX_CONNECTION_AGE) => None,
            };
            let result = match done {
                Some(r) => r,
                None => {
                    conn.as_mut().graceful_shutdown();
                    tokio::time::timeout(CLOSE_GRACE, conn)
                        .await
                        .unwrap_or(Ok(()))
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "http connection ended");
            }
            drop(permit);
        });
    }
}

type Reply = Response<Full<Bytes>>;

/// Answers one request.
fn route(req: &Request<Incoming>, broker: &Broker) -> Reply {
    let path = req.uri().path();
    let known = matches!(path, "/" | "/metrics" | "/api/overview");
    if !known {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    match path {
        "/metrics" => respond(
            metrics::render(broker).into_bytes(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/api/overview" => match serde_json::to_vec(&overview(broker)) {
            Ok(json) => respond(json, "application/json"),
            Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
        },
        _ => respond(DASHBOARD.as_bytes().to_vec(), "text/html; charset=utf-8"),
    }
}

fn respond(body: Vec<u8>, content_type: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn plain(status: StatusCode, text: &str) -> Reply {
    let mut r = respond(text.as_bytes().to_vec(), "text/plain; charset=utf-8");
    *r.status_mut() = status;
    r
}

/// `GET /api/overview`.
#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    /// The broker's totals.
    pub(crate) broker: BrokerSnapshot,
    /// Every queue, by name.
    pub(crate) queues: Vec<QueueView>,
    /// This node's view of its cluster (`null` on a single node).
    pub(crate) cluster: Option<crate::broker::ClusterStatus>,
}

/// One queue in the overview: its snapshot and its recent depths.
#[derive(Debug, Serialize)]
pub(crate) struct QueueView {
    /// The snapshot.
    #[serde(flatten)]
    pub(crate) snapshot: QueueSnapshot,
    /// Depth at each of the last samples (one a second), oldest first.
    pub(crate) depth_history: Vec<u64>,
}

/// The overview as the API serves it.
pub(crate) fn overview(broker: &Broker) -> Overview {
    let (totals, queues) = stats::snapshot(broker);
    let sampler = broker.sampler();
    let queues = queues
        .into_iter()
        .map(|snapshot| QueueView {
            depth_history: sampler.queue_depths(snapshot.id),
            snapshot,
        })
        .collect();
    Overview {
        broker: totals,
        queues,
        cluster: broker.cluster_status(),
    }
}
