//! `--http ADDR`: the monitoring endpoint and the management UI.
//!
//! - `GET /metrics`: Prometheus text format 0.0.4 ([`metrics`]); no login
//!   (scrapers; it shows names and counts, never messages).
//! - `GET /`, `GET /ui/*`: the management UI, one page of vanilla
//!   JavaScript, CSS and inline SVG charts embedded in the binary
//!   (`ui/`), a client of the API below.
//! - `/api/*`: JSON. Logins and their sessions ([`login`]); reads
//!   ([`views`]: the overview, the charts' history, exchanges and
//!   bindings, connections, consumers, streams and their groups, schema
//!   subjects, users);
//!   and every action as one protocol command run as the caller
//!   ([`command`]), so that the page can do nothing a connection logged
//!   in as the same user could not.
//!
//! **Cross-site requests.** The session cookie is `SameSite=Strict`, and
//! every `POST` must carry the header `X-Sluice: 1`, which a page of
//! another origin cannot add without a CORS preflight (never granted): a
//! form or a script elsewhere cannot act through a logged-in browser, nor
//! through an open broker. On an open broker (no users), requests to
//! `/api/` must also name the server by an IP address or `localhost` in
//! `Host`, which stops a DNS-rebinding page (served under its own name)
//! from reading or acting.
//!
//! hyper's HTTP/1 server, no framework. Bounded so that a slow or hostile
//! client cannot hurt the broker: at most [`MAX_HTTP_CONNECTIONS`] at once
//! (more are closed at accept), request headers must arrive within
//! [`HEADER_READ_TIMEOUT`] and 16 KiB, bodies are read only by `POST`
//! routes and up to [`body::MAX_BODY_BYTES`], a command waits at most
//! [`COMMAND_PATIENCE`], and a connection is closed gracefully after
//! [`MAX_CONNECTION_AGE`] (a browser simply opens another).

mod body;
mod command;
mod login;
pub(crate) mod metrics;
mod response;
mod views;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use response::{error, json, plain, respond, Reply};

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

/// The page and its parts (no framework, nothing from elsewhere).
const PAGE: &str = include_str!("ui/index.html");
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/ui/app.css",
        include_str!("ui/app.css"),
        "text/css; charset=utf-8",
    ),
    (
        "/ui/app.js",
        include_str!("ui/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/ui/charts.js",
        include_str!("ui/charts.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/ui/views.js",
        include_str!("ui/views.js"),
        "text/javascript; charset=utf-8",
    ),
];
/// How long a command run for the API may take (a `GET wait=`, a held
/// `PUB`, a confirm): `504` after.
pub(crate) const COMMAND_PATIENCE: Duration = Duration::from_secs(30);

/// What every request is served with.
#[derive(Debug)]
pub(crate) struct Http {
    /// The broker.
    pub(crate) broker: Broker,
    /// The logged-in sessions.
    pub(crate) sessions: login::Sessions,
}

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
    let http = Arc::new(Http {
        broker,
        sessions: login::Sessions::default(),
    });
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
        let http = http.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let http = http.clone();
                async move { Ok::<_, Infallible>(route(req, &http, peer).await) }
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

/// Answers one request.
async fn route(req: Request<Incoming>, http: &Http, peer: SocketAddr) -> Reply {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if let Some(rest) = path.strip_prefix("/api/") {
        return api(req, http, peer, rest, &method).await;
    }
    let asset = ASSETS.iter().find(|(p, _, _)| *p == path);
    if path != "/" && path != "/metrics" && asset.is_none() {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    if method != Method::GET {
        return only(&[Method::GET]);
    }
    match (path.as_str(), asset) {
        ("/metrics", _) => respond(
            metrics::render(&http.broker),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        (_, Some((_, body, kind))) => respond(*body, kind),
        _ => respond(PAGE, "text/html; charset=utf-8"),
    }
}

/// `405` naming the methods allowed.
fn only(methods: &[Method]) -> Reply {
    let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        format!("only {}", names.join(", ")),
    );
    if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
        r.headers_mut().insert(ALLOW, v);
    }
    r
}

/// The `/api/` routes (see the module docs).
async fn api(
    req: Request<Incoming>,
    http: &Http,
    peer: SocketAddr,
    rest: &str,
    method: &Method,
) -> Reply {
    let posts = matches!(rest, "login" | "logout" | "command");
    let gets = matches!(
        rest,
        "whoami"
            | "overview"
            | "history"
            | "exchanges"
            | "connections"
            | "consumers"
            | "streams"
            | "schemas"
            | "users"
    );
    if !posts && !gets {
        return error(StatusCode::NOT_FOUND, None, format!("no route /api/{rest}"));
    }
    let wanted = if posts { Method::POST } else { Method::GET };
    if *method != wanted {
        return only(&[wanted]);
    }
    let broker = &http.broker;
    let caller = login::Caller::of(&req, broker.users(), &http.sessions);
    if matches!(caller, login::Caller::Open) && !names_itself_by_address(&req) {
        return error(
            StatusCode::FORBIDDEN,
            None,
            "an open broker (no users) answers its API only to a Host that is an IP address or localhost",
        );
    }
    if posts && req.headers().get("x-sluice").is_none_or(|v| v != "1") {
        return error(
            StatusCode::FORBIDDEN,
            None,
            "a POST needs the header X-Sluice: 1 (a request from another site cannot add it)",
        );
    }
    let read = |f: fn(&Broker) -> Reply| match caller.may_read() {
        Ok(()) => f(broker),
        Err(r) => r,
    };
    match rest {
        "whoami" => login::whoami(&caller),
        "login" => login::login(req, http, peer).await,
        "logout" => login::logout(&req, http),
        "command" => command::command(req, http, caller, peer).await,
        "overview" => read(|b| json(&views::overview(b))),
        "history" => read(views::history),
        "exchanges" => read(views::exchanges),
        "connections" => read(views::connections),
        "consumers" => read(views::consumers),
        "streams" => read(views::streams),
        "schemas" => read(views::schemas),
        _ => views::users(broker, &caller),
    }
}

/// Whether `req`'s `Host` is an IP address or `localhost` (with or
/// without a port).
fn names_itself_by_address(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(is_address)
}

/// Whether `host` (a `Host` header) is an IP address or `localhost`, with
/// or without a port.
fn is_address(host: &str) -> bool {
    if host.parse::<SocketAddr>().is_ok() || host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::is_address;

    #[test]
    fn an_open_broker_answers_hosts_that_are_addresses() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:15680",
            "[::1]:15680",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST:80",
            "10.0.0.4:1",
        ] {
            assert!(is_address(ok), "{ok}");
        }
        for no in [
            "evil.example",
            "evil.example:15680",
            "localhost.evil.example",
            "",
            "127.0.0.1.nip.io:80",
        ] {
            assert!(!is_address(no), "{no}");
        }
    }
}
