//! [`Client`]: a small async client for sluice, used by the tests, the
//! examples and the benchmark. It pipelines: [`Client::send`] queues a
//! command and returns a handle for its reply; [`Client::flush`] writes
//! everything queued in one go. A reader task matches replies to commands
//! in order, attaches `GET`'s `MSG -` and `PEEK`'s `MSG *` lines to their reply, and hands
//! subscription deliveries to [`Client::next_delivery`]. Commands are
//! queued as lines ([`Client::send`]) or as values ([`Client::send_command`]).
//!
//! [`Client::connect`] speaks plain TCP; [`Client::connect_tls`] the same
//! protocol over TLS (the server's `--tls-addr` port).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};

use crate::protocol::command::Header;
use crate::protocol::frame::{Frame, FrameEvent, Framer, Limits};
use crate::protocol::token::{encode_word, tokenize};
use crate::protocol::{Command, ErrorCode};
use crate::tls::TlsClientConfig;

/// Client-side failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered `ERR`.
    #[error("ERR {code} {message}")]
    Server {
        /// The error code.
        code: ErrorCode,
        /// The server's text.
        message: String,
    },
    /// The connection failed or closed. The I/O error is the
    /// [`source`](std::error::Error::source), not part of this message, so an
    /// error chain (`{:#}` of `anyhow`) names it once.
    #[error("connection failed")]
    Io(#[from] std::io::Error),
    /// The server sent something this client cannot read.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A delivered message.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Consumer tag (`-` for `GET`).
    pub(crate) consumer_tag: String,
    /// Delivery tag on this connection.
    pub delivery_tag: u64,
    /// Exchange it was published to.
    pub exchange: String,
    /// Routing key as text: [`Delivery::raw_routing_key`] decoded as UTF-8,
    /// with any invalid bytes replaced by U+FFFD.
    pub routing_key: String,
    /// Routing key, its exact bytes (a key is any token, not only UTF-8).
    pub raw_routing_key: Bytes,
    /// Delivered before (or may have been).
    pub redelivered: bool,
    /// Deliveries so far, this one included.
    pub deliveries: u32,
    /// Message id.
    pub id: String,
    /// Headers: names, and values as their exact bytes.
    pub headers: Vec<Header>,
    /// Its message group (`group=`), if any.
    pub(crate) group: Option<Bytes>,
    /// A stream delivery's offset (`offset=`).
    pub offset: Option<u64>,
    /// A partitioned stream's partition index (`partition=`).
    pub(crate) partition: Option<u32>,
    /// Body.
    pub body: Bytes,
}

/// A push: a subscription delivery or a notice ([`Client::next_push`]).
#[derive(Debug, Clone)]
// One push is handled at a time: boxing the delivery would cost an
// allocation per message to save stack space no one holds for long.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Pushed {
    /// A `MSG` of a subscription.
    Delivery(Delivery),
    /// A `NOTICE`, without the `NOTICE ` prefix.
    Notice(String),
}

/// A successful reply: the words after `OK`, the literal if any, and the
/// `MSG -` or `MSG *` lines that preceded it (for `GET` and `PEEK`).
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// Words after `OK`.
    pub words: Vec<String>,
    /// The reply's literal (`HELP`).
    pub(crate) data: Option<Bytes>,
    /// `GET` deliveries, or the messages `PEEK` showed.
    pub deliveries: Vec<Delivery>,
}

type Pending = oneshot::Sender<Result<Response, ClientError>>;

/// The replies still owed, and why the connection ended once it has. Both
/// under one lock, so a command either lands in `pending` before the reader
/// task drains it, or sees `closed` and fails at once: none waits forever.
#[derive(Debug, Default)]
struct Replies {
    pending: VecDeque<Pending>,
    closed: Option<Closed>,
}

/// Why the reader task stopped, kept to fail later commands with.
#[derive(Debug, Clone)]
enum Closed {
    Io(std::io::ErrorKind, String),
    Protocol(String),
}

impl Closed {
    fn of(e: &ClientError) -> Closed {
        match e {
            ClientError::Io(io) => Closed::Io(io.kind(), io.to_string()),
            ClientError::Protocol(m) => Closed::Protocol(m.clone()),
            ClientError::Server { code, message } => {
                Closed::Protocol(format!("ERR {code} {message}"))
            }
        }
    }

    fn error(&self) -> ClientError {
        match self {
            Closed::Io(kind, m) => ClientError::Io(std::io::Error::new(*kind, m.clone())),
            Closed::Protocol(m) => ClientError::Protocol(m.clone()),
        }
    }
}

type Shared = Arc<parking_lot::Mutex<Replies>>;

/// A reply that has not arrived yet.
#[derive(Debug)]
pub struct ReplyHandle(oneshot::Receiver<Result<Response, ClientError>>);

impl ReplyHandle {
    /// The reply if it has arrived, without waiting (`None`: not yet).
    pub(crate) fn try_take(&mut self) -> Option<Result<Response, ClientError>> {
        match self.0.try_recv() {
            Ok(r) => Some(r),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(ClientError::Io(
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"),
            ))),
        }
    }

    /// Waits for the reply.
    pub async fn wait(self) -> Result<Response, ClientError> {
        self.0.await.map_err(|_| {
            ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ))
        })?
    }
}

/// The write half of either transport.
struct Writer(std::pin::Pin<Box<dyn AsyncWrite + Send>>);

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

/// A connection to a sluice broker.
#[derive(Debug)]
pub struct Client {
    writer: Writer,
    buf: Vec<u8>,
    replies: Shared,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    notices: mpsc::UnboundedReceiver<String>,
    /// The server's greeting line.
    pub greeting: String,
}

impl Client {
    /// Connects and reads the greeting.
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (rd, writer) = stream.into_split();
        Client::start(rd, Box::pin(writer)).await
    }

    /// Connects to the first of `addrs` that answers (a cluster's nodes:
    /// any of them serves any client) and reads its greeting; the last
    /// failure when none does. A program that loses its connection calls
    /// it again to go on with another node.
    pub async fn connect_any<A: ToSocketAddrs>(addrs: &[A]) -> Result<Client, ClientError> {
        let mut last = None;
        for addr in addrs {
            match Client::connect(addr).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            ClientError::from(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no address to connect to",
            ))
        }))
    }

    /// Connects over TLS, checks the server's certificate against
    /// `server_name` and what `tls` trusts, and reads the greeting.
    pub async fn connect_tls(
        addr: impl ToSocketAddrs,
        server_name: &str,
        tls: &TlsClientConfig,
    ) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let stream = tls.connect(stream, server_name).await?;
        let (rd, writer) = tokio::io::split(stream);
        Client::start(rd, Box::pin(writer)).await
    }

    /// Reads the greeting from `rd` and starts the reader task.
    async fn start(
        mut rd: impl AsyncRead + Send + Unpin + 'static,
        writer: std::pin::Pin<Box<dyn AsyncWrite + Send>>,
    ) -> Result<Client, ClientError> {
        let mut framer = Framer::new(Limits {
            max_line: 1024 * 1024,
            max_literal: 1024 * 1024 * 1024,
        });
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        let greeting = loop {
            match framer.next_event(&mut rbuf) {
                Ok(Some(FrameEvent::Frame(f))) => {
                    break String::from_utf8_lossy(&f.line).into_owned()
                }
                Ok(Some(FrameEvent::Reject(r))) => return Err(ClientError::Protocol(r.message)),
                Err(e) => return Err(ClientError::Protocol(e.0)),
                Ok(None) => {
                    if rd.read_buf(&mut rbuf).await? == 0 {
                        return Err(ClientError::Protocol("closed before the greeting".into()));
                    }
                }
            }
        };
        // A server that refuses the connection at once says why in place
        // of its greeting (over --max-connections; a TLS port, reached
        // without TLS).
        if let Some(rest) = greeting.strip_prefix("ERR ") {
            let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
            return Err(ClientError::Server {
                code: ErrorCode::parse(code).unwrap_or(ErrorCode::Internal),
                message: message.to_string(),
            });
        }
        if !greeting.starts_with("HELLO sluice ") {
            return Err(ClientError::Protocol(format!(
                "unexpected greeting {greeting:?}"
            )));
        }
        let replies: Shared = Arc::default();
        let (dtx, drx) = mpsc::unbounded_channel();
        let (ntx, nrx) = mpsc::unbounded_channel();
        let shared = replies.clone();
        tokio::spawn(async move {
            let mut reader = Reader {
                replies: shared.clone(),
                deliveries: dtx,
                notices: ntx,
                got: Vec::new(),
            };
            let end = loop {
                match framer.next_event(&mut rbuf) {
                    Ok(Some(FrameEvent::Frame(f))) => {
                        if let Err(e) = reader.on_frame(f) {
                            break e;
                        }
                    }
                    Ok(Some(FrameEvent::Reject(r))) => break ClientError::Protocol(r.message),
                    Err(e) => break ClientError::Protocol(e.0),
                    Ok(None) => match rd.read_buf(&mut rbuf).await {
                        Ok(0) => {
                            break ClientError::Io(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "connection closed by the server",
                            ))
                        }
                        Ok(_) => {}
                        Err(e) => break ClientError::Io(e),
                    },
                }
            };
            let source = std::error::Error::source(&end);
            tracing::debug!(error = %end, source = ?source, "client reader stopped");
            // Whoever still waits, and whoever sends from now on, learns
            // that the connection is gone (and why).
            let closed = Closed::of(&end);
            let orphans = {
                let mut r = shared.lock();
                r.closed = Some(closed.clone());
                std::mem::take(&mut r.pending)
            };
            for tx in orphans {
                let _ = tx.send(Err(closed.error()));
            }
        });
        Ok(Client {
            writer: Writer(writer),
            buf: Vec::with_capacity(64 * 1024),
            replies,
            deliveries: drx,
            notices: nrx,
            greeting,
        })
    }

    /// Queues a command line (words already encoded) and optional literal
    /// body; nothing is written until [`Client::flush`].
    pub fn send(&mut self, line: &str, body: Option<&[u8]>) -> ReplyHandle {
        self.send_raw(line.as_bytes(), body)
    }

    /// [`Client::send`] for a line that is not UTF-8 (a word may be any
    /// bytes: encode each with [`encode_word`]).
    pub fn send_raw(&mut self, line: &[u8], body: Option<&[u8]>) -> ReplyHandle {
        self.buf.extend_from_slice(line);
        if let Some(b) = body {
            self.buf
                .extend_from_slice(format!(" {{{}}}\r\n", b.len()).as_bytes());
            self.buf.extend_from_slice(b);
        }
        self.buf.extend_from_slice(b"\r\n");
        self.expect_reply()
    }

    /// Queues a [`Command`], written by its encoder (the parser's inverse,
    /// so every word is quoted as it must be); nothing is written until
    /// [`Client::flush`].
    pub fn send_command(&mut self, command: &Command) -> ReplyHandle {
        command.encode_into(&mut self.buf);
        self.expect_reply()
    }

    /// Registers the reply owed to the command just queued.
    fn expect_reply(&mut self) -> ReplyHandle {
        let (tx, rx) = oneshot::channel();
        let mut r = self.replies.lock();
        match &r.closed {
            // The reader task is gone: nobody would ever answer.
            Some(closed) => {
                let _ = tx.send(Err(closed.error()));
            }
            None => r.pending.push_back(tx),
        }
        ReplyHandle(rx)
    }

    /// Writes every queued command.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.buf.is_empty() {
            self.writer.0.write_all(&self.buf).await?;
            // Over TLS the records wait in rustls's buffer until flushed.
            self.writer.0.flush().await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Sends one command and waits for its reply.
    pub async fn request(
        &mut self,
        line: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        let h = self.send(line, body);
        self.flush().await?;
        h.wait().await
    }

    /// Queues a `PUB` with a literal body; `opts` are extra option words.
    pub fn send_publish(
        &mut self,
        exchange: &str,
        key: &str,
        opts: &str,
        body: &[u8],
    ) -> ReplyHandle {
        self.send_publish_raw_key(exchange, key.as_bytes(), opts, body)
    }

    /// [`Client::send_publish`] with a routing key given as bytes (any
    /// token: not only UTF-8; it is quoted as needed).
    pub(crate) fn send_publish_raw_key(
        &mut self,
        exchange: &str,
        key: &[u8],
        opts: &str,
        body: &[u8],
    ) -> ReplyHandle {
        let mut line = b"PUB ".to_vec();
        encode_word(&mut line, exchange.as_bytes());
        line.push(b' ');
        encode_word(&mut line, key);
        if !opts.is_empty() {
            line.push(b' ');
            line.extend_from_slice(opts.as_bytes());
        }
        self.send_raw(&line, Some(body))
    }

    /// Publishes and waits for the confirm: returns the message id.
    pub async fn publish(
        &mut self,
        exchange: &str,
        key: &str,
        opts: &str,
        body: &[u8],
    ) -> Result<String, ClientError> {
        self.publish_raw_key(exchange, key.as_bytes(), opts, body)
            .await
    }

    /// [`Client::publish`] with a routing key given as bytes.
    pub async fn publish_raw_key(
        &mut self,
        exchange: &str,
        key: &[u8],
        opts: &str,
        body: &[u8],
    ) -> Result<String, ClientError> {
        let h = self.send_publish_raw_key(exchange, key, opts, body);
        self.flush().await?;
        let r = h.wait().await?;
        r.words
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("PUB reply without an id".into()))
    }

    /// The next subscription delivery (`None` once the connection is gone).
    pub async fn next_delivery(&mut self) -> Option<Delivery> {
        self.deliveries.recv().await
    }

    /// The next push of either kind, whichever comes first (`None` once
    /// the connection is gone).
    pub(crate) async fn next_push(&mut self) -> Option<Pushed> {
        tokio::select! {
            d = self.deliveries.recv() => match d {
                Some(d) => Some(Pushed::Delivery(d)),
                // Both channels close together; drain the notices (a
                // `NOTICE closing` that came right before the end).
                None => self.notices.recv().await.map(Pushed::Notice),
            },
            n = self.notices.recv() => match n {
                Some(n) => Some(Pushed::Notice(n)),
                // Both channels close together; drain the deliveries.
                None => self.deliveries.recv().await.map(Pushed::Delivery),
            },
        }
    }

    /// A subscription delivery that has already arrived, without waiting.
    pub(crate) fn try_next_delivery(&mut self) -> Option<Delivery> {
        self.deliveries.try_recv().ok()
    }

    /// `ACK <tag>`, queued (flush to send).
    pub fn send_ack(&mut self, tag: u64) -> ReplyHandle {
        self.send(&format!("ACK {tag}"), None)
    }
}

struct Reader {
    replies: Shared,
    deliveries: mpsc::UnboundedSender<Delivery>,
    notices: mpsc::UnboundedSender<String>,
    got: Vec<Delivery>,
}

impl Reader {
    fn on_frame(&mut self, f: Frame) -> Result<(), ClientError> {
        let tokens = tokenize(&f.line).map_err(|e| ClientError::Protocol(e.message))?;
        if tokens.first().is_some_and(|t| t.text == b"MSG") {
            let raw: Vec<Vec<u8>> = tokens.into_iter().map(|t| t.text).collect();
            let d = parse_msg(&raw, f.literal.unwrap_or_default())?;
            // `GET`'s (`MSG -`) and `PEEK`'s (`MSG *`) lines belong to
            // the reply that follows them; others are a subscription's.
            if d.consumer_tag == "-" || d.consumer_tag == "*" {
                self.got.push(d);
            } else {
                let _ = self.deliveries.send(d);
            }
            return Ok(());
        }
        let words: Vec<String> = tokens
            .into_iter()
            .map(|t| String::from_utf8_lossy(&t.text).into_owned())
            .collect();
        match words.first().map(String::as_str) {
            Some("NOTICE") => {
                let _ = self.notices.send(words[1..].join(" "));
            }
            Some("OK") => {
                let mut rest: Vec<String> = words[1..].to_vec();
                if f.literal.is_some() {
                    rest.pop();
                }
                let r = Response {
                    words: rest,
                    data: f.literal,
                    deliveries: std::mem::take(&mut self.got),
                };
                self.complete(Ok(r));
            }
            Some("ERR") => {
                let line = String::from_utf8_lossy(&f.line).into_owned();
                let mut parts = line.splitn(3, ' ');
                parts.next();
                let code = parts
                    .next()
                    .and_then(ErrorCode::parse)
                    .unwrap_or(ErrorCode::Internal);
                let message = parts.next().unwrap_or("").to_string();
                self.got.clear();
                self.complete(Err(ClientError::Server { code, message }));
            }
            _ => {}
        }
        Ok(())
    }

    fn complete(&mut self, r: Result<Response, ClientError>) {
        let tx = self.replies.lock().pending.pop_front();
        if let Some(tx) = tx {
            let _ = tx.send(r);
        }
    }
}

/// A `MSG` line's words (as bytes: the routing key and header values may
/// be any bytes) and its body.
fn parse_msg(words: &[Vec<u8>], body: Bytes) -> Result<Delivery, ClientError> {
    let bad = || {
        let shown: Vec<_> = words.iter().map(|w| String::from_utf8_lossy(w)).collect();
        ClientError::Protocol(format!("bad MSG line: {shown:?}"))
    };
    let text = |w: &[u8]| String::from_utf8_lossy(w).into_owned();
    fn number<T: std::str::FromStr>(w: &[u8]) -> Option<T> {
        std::str::from_utf8(w).ok()?.parse().ok()
    }
    if words.len() < 7 {
        return Err(bad());
    }
    let mut d = Delivery {
        consumer_tag: text(&words[1]),
        delivery_tag: number(&words[2]).ok_or_else(bad)?,
        exchange: text(&words[3]),
        routing_key: text(&words[4]),
        raw_routing_key: Bytes::copy_from_slice(&words[4]),
        redelivered: false,
        deliveries: 0,
        id: String::new(),
        headers: Vec::new(),
        group: None,
        offset: None,
        partition: None,
        body,
    };
    for w in &words[5..words.len() - 1] {
        if w == b"redelivered" {
            d.redelivered = true;
        } else if let Some(n) = w.strip_prefix(b"deliveries=") {
            d.deliveries = number(n).ok_or_else(bad)?;
        } else if let Some(id) = w.strip_prefix(b"id=") {
            d.id = text(id);
        } else if let Some(g) = w.strip_prefix(b"group=") {
            d.group = Some(Bytes::copy_from_slice(g));
        } else if let Some(n) = w.strip_prefix(b"offset=") {
            d.offset = Some(number(n).ok_or_else(bad)?);
        } else if let Some(n) = w.strip_prefix(b"partition=") {
            d.partition = Some(number(n).ok_or_else(bad)?);
        } else if let Some(h) = w.strip_prefix(b"h.") {
            let eq = h.iter().position(|&b| b == b'=').ok_or_else(bad)?;
            let (k, v) = (&h[..eq], &h[eq + 1..]);
            d.headers.push((text(k), Bytes::copy_from_slice(v)));
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;
    use tokio::time::timeout;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(5);
    const GREETING: &[u8] = b"HELLO sluice 0.1.0 proto=1\r\n";

    #[test]
    fn an_io_error_appears_once_in_the_error_chain() {
        let io = std::io::Error::from_raw_os_error(111);
        let os_message = io.to_string();
        let e = ClientError::from(io);
        assert!(std::error::Error::source(&e).is_some());
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain.matches(&os_message).count(), 1, "{chain}");
        assert_eq!(chain, format!("connection failed: {os_message}"));
    }

    #[tokio::test]
    async fn a_refused_connection_reads_cleanly() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let e = Client::connect(addr).await.unwrap_err();
        let ClientError::Io(io) = &e else {
            panic!("expected an I/O error, got {e:?}");
        };
        let os_message = io.to_string();
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain.matches(&os_message).count(), 1, "{chain}");
    }

    /// A server that greets, then closes at once.
    async fn greet_and_close() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(GREETING).await.unwrap();
            s.shutdown().await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn a_request_after_the_connection_closed_fails_at_once() {
        let mut client = Client::connect(greet_and_close().await).await.unwrap();
        assert_eq!(client.greeting, "HELLO sluice 0.1.0 proto=1");
        // The delivery channel closes when the reader task has stopped.
        let end = timeout(DEADLINE, client.next_delivery()).await;
        assert!(matches!(end, Ok(None)), "reader did not stop");
        for _ in 0..2 {
            let r = timeout(DEADLINE, client.request("PING", None)).await;
            let e = r.expect("a request after the close hung").unwrap_err();
            assert!(matches!(e, ClientError::Io(_)), "{e:?}");
        }
        // Queued without a flush: the handle fails too.
        let h = client.send("PING", None);
        let r = timeout(DEADLINE, h.wait()).await.expect("wait hung");
        assert!(matches!(r, Err(ClientError::Io(_))), "{r:?}");
    }

    #[tokio::test]
    async fn a_request_pending_when_the_connection_closes_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut s = BufReader::new(s);
            s.get_mut().write_all(GREETING).await.unwrap();
            // Read one command, then hang up without answering.
            let mut line = String::new();
            s.read_line(&mut line).await.unwrap();
        });
        let mut client = Client::connect(addr).await.unwrap();
        let r = timeout(DEADLINE, client.request("PING", None))
            .await
            .expect("a pending request hung");
        assert!(matches!(r, Err(ClientError::Io(_))), "{r:?}");
    }
}
