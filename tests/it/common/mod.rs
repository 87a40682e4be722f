//! Test harness: a real sluice server on 127.0.0.1:0 with a temporary sled
//! directory, started in-process ([`TestServer`]), and a raw-text
//! connection with deadlines ([`TestConn`]). No sleeps: every wait has a
//! deadline and fails the test with what was (not) received.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sluice::broker::Broker;
use sluice::config::Config;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod cert;
pub mod cli_run;
pub mod faults;
pub mod ledger;
pub mod spawned;
pub mod web;

/// How long any single expected event may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The TLS port, when the config has `tls` (bound on 127.0.0.1:0).
    pub tls_addr: Option<SocketAddr>,
    /// The broker's resource alarms (a test seam: the memory mark can be
    /// moved while it runs). Not the broker itself: a handle to it would
    /// keep the store open after `stop`.
    pub alarms: sluice::broker::alarm::Alarms,
    /// The `--http` endpoint, when the config asked for one.
    pub http: Option<SocketAddr>,
    http_task: Option<JoinHandle<()>>,
    pub dir: Arc<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), sluice::server::ServeError>>>,
    committer: Arc<sluice::store::Committer>,
}

impl TestServer {
    /// Starts a server on a fresh temporary data directory.
    pub async fn start() -> TestServer {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::start_in(dir, |_| {}).await
    }

    /// Starts a server with a config tweak.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::start_in(dir, tweak).await
    }

    /// Starts a server on an existing data directory (restart tests).
    pub async fn start_in(
        dir: Arc<tempfile::TempDir>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = Config {
            addr,
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        tweak(&mut config);
        let tls = match &config.tls {
            Some(files) => {
                let acceptor = sluice::tls::acceptor(files).expect("TLS certificate");
                let l = TcpListener::bind("127.0.0.1:0").await.expect("bind TLS");
                Some((l, acceptor))
            }
            None => None,
        };
        let tls_addr = tls.as_ref().map(|(l, _)| l.local_addr().expect("TLS addr"));
        let http_addr = config.http;
        let broker = Broker::open(config).expect("open broker");
        let committer = broker.committer().clone();
        let (http, http_task) = match http_addr {
            Some(a) => {
                let (bound, task) = sluice::http::start(a, broker.clone())
                    .await
                    .expect("start http");
                (Some(bound), Some(task))
            }
            None => (None, None),
        };
        let (tx, rx) = oneshot::channel::<()>();
        let listeners = sluice::server::Listeners {
            plain: listener,
            tls,
        };
        let alarms = broker.alarms().clone();
        let handle = tokio::spawn(sluice::server::serve(
            listeners,
            broker,
            async move {
                let _ = rx.await;
            },
            sluice::shutdown::Deadline::disabled(),
        ));
        TestServer {
            addr,
            tls_addr,
            alarms,
            http,
            http_task,
            dir,
            stop: Some(tx),
            handle: Some(handle),
            committer,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Graceful shutdown (as SIGTERM does); waits until the store is closed.
    pub async fn stop(mut self) -> Arc<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(DEADLINE, h)
                .await
                .expect("server did not stop in time")
                .expect("server task panicked")
                .expect("server returned an error");
        }
        self.dir.clone()
    }

    /// Stops and starts again on the same directory.
    pub async fn restart(self) -> TestServer {
        let dir = self.stop().await;
        TestServer::start_in(dir, |_| {}).await
    }

    /// How many store syncs (fsyncs of the data file) have run so far.
    pub fn fsyncs(&self) -> u64 {
        self.committer.sync_count()
    }

    pub async fn conn(&self) -> TestConn {
        TestConn::connect(self.addr).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.http_task.take() {
            t.abort();
        }
    }
}

/// A raw protocol connection.
pub struct TestConn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    pub greeting: String,
}

impl TestConn {
    pub async fn connect(addr: SocketAddr) -> TestConn {
        let stream = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        let (r, w) = stream.into_split();
        let mut c = TestConn {
            reader: BufReader::new(r),
            writer: w,
            greeting: String::new(),
        };
        c.greeting = c.line().await;
        assert!(
            c.greeting.starts_with("HELLO sluice "),
            "greeting: {:?}",
            c.greeting
        );
        c
    }

    /// A connection on `stream`, once its greeting came (`None`: it did
    /// not within a few seconds, or was not sluice's). For clients that
    /// must live through faults.
    pub async fn from_stream(stream: TcpStream) -> Option<TestConn> {
        let (r, w) = stream.into_split();
        let mut c = TestConn {
            reader: BufReader::new(r),
            writer: w,
            greeting: String::new(),
        };
        c.greeting = c.try_line().await?;
        c.greeting.starts_with("HELLO sluice ").then_some(c)
    }

    /// Reads one line within a few seconds; `None` when the connection
    /// ended or nothing came (a paused or killed node).
    pub async fn try_line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(8),
            self.reader.read_until(b'\n', &mut buf),
        )
        .await;
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        Some(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Sends a line and reads the next; `None` when the connection failed
    /// (see [`TestConn::try_line`]).
    pub async fn try_cmd(&mut self, line: &str) -> Option<String> {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .ok()?;
        self.try_line().await
    }

    /// `GET <queue> count=<n>`, then an `ACK` of what came: the bodies,
    /// and whether the `ACK` was answered `OK` (a connection that fails
    /// after the `ACK` went out may have acked them: they were delivered
    /// all the same). `None` when the `GET` failed or the node refused
    /// (not the queue's leader, an election).
    pub async fn try_get(&mut self, queue: &str, n: u32) -> Option<(Vec<String>, bool)> {
        let head = self.try_cmd(&format!("GET {queue} count={n}")).await?;
        let mut bodies = Vec::new();
        let mut line = head;
        let mut last = None;
        loop {
            if line.starts_with("OK") {
                break;
            }
            if !line.starts_with("MSG") {
                return None;
            }
            let (head, len) = split_literal(&line)?;
            let body = self.try_literal(len).await?;
            bodies.push(String::from_utf8_lossy(&body).into_owned());
            last = head.split_whitespace().nth(2).map(str::to_owned);
            line = self.try_line().await?;
        }
        let acked = match last {
            Some(dtag) => self
                .try_cmd(&format!("ACK {dtag} multiple"))
                .await
                .is_some_and(|r| r == "OK"),
            None => true,
        };
        Some((bodies, acked))
    }

    /// Reads a literal of `len` bytes and the end of line after it within
    /// a few seconds; `None` when the connection failed (see
    /// [`TestConn::try_line`]).
    pub async fn try_literal(&mut self, len: usize) -> Option<Vec<u8>> {
        let mut body = vec![0u8; len + 2];
        tokio::time::timeout(
            std::time::Duration::from_secs(8),
            self.reader.read_exact(&mut body),
        )
        .await
        .ok()?
        .ok()?;
        body.truncate(len);
        Some(body)
    }

    /// Sends a line; `None` when the connection failed.
    pub async fn try_send(&mut self, line: &str) -> Option<()> {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .ok()
    }

    /// Writes raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// Writes one line (adds `\r\n`).
    pub async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
    }

    /// Writes a line ending in `{N}` followed by the literal.
    pub async fn send_literal(&mut self, line: &str, body: &[u8]) {
        let mut v = format!("{line} {{{}}}\r\n", body.len()).into_bytes();
        v.extend_from_slice(body);
        v.extend_from_slice(b"\r\n");
        self.send_raw(&v).await;
    }

    /// Reads one line, without its end of line.
    pub async fn line(&mut self) -> String {
        String::from_utf8_lossy(&self.line_bytes().await).into_owned()
    }

    /// Reads one line as bytes (a routing key may be any bytes), without
    /// its end of line.
    pub async fn line_bytes(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(DEADLINE, self.reader.read_until(b'\n', &mut buf))
            .await
            .expect("timed out waiting for a line")
            .expect("read");
        assert!(n > 0, "connection closed while waiting for a line");
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        buf
    }

    /// Reads one line into `line` (without its end of line); `false` when
    /// the server closed the connection instead.
    pub async fn read_line_or_close(&mut self, line: &mut String) -> bool {
        let mut buf = Vec::new();
        let n = self.reader.read_until(b'\n', &mut buf).await.unwrap_or(0);
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        *line = String::from_utf8_lossy(&buf).into_owned();
        n > 0
    }

    /// Reads exactly n bytes plus the end of line after them.
    pub async fn literal(&mut self, n: usize) -> Vec<u8> {
        let mut body = vec![0u8; n];
        tokio::time::timeout(DEADLINE, self.reader.read_exact(&mut body))
            .await
            .expect("timed out reading a literal")
            .expect("read");
        let eol = self.line().await;
        assert_eq!(eol, "", "literal not followed by an end of line");
        body
    }

    /// Sends a line and returns the next line.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(line).await;
        self.line().await
    }

    /// Sends a command answered `OK <words> {N}` + a literal (`STATS`,
    /// `LIST`, `HELP`); returns the words and the literal as text.
    pub async fn data(&mut self, line: &str) -> (String, String) {
        let head = self.cmd(line).await;
        let (head, n) = split_literal(&head)
            .unwrap_or_else(|| panic!("reply to {line:?} has no literal: {head:?}"));
        let body = self.literal(n).await;
        let words = head
            .strip_prefix("OK")
            .unwrap_or_else(|| panic!("reply to {line:?}: {head:?}"))
            .trim()
            .to_string();
        (words, String::from_utf8(body).expect("utf-8 literal"))
    }

    /// Publishes `n` small messages (`m0`, `m1`, ...) to `queue` through
    /// the default exchange, each confirmed `routed=1`.
    pub async fn publish_n(&mut self, queue: &str, n: usize) {
        for i in 0..n {
            let got = self.cmd(&format!("PUB \"\" {queue} m{i}")).await;
            assert!(got.ends_with("routed=1"), "{got:?}");
        }
    }

    /// Sends a line and asserts the reply.
    pub async fn ok(&mut self, line: &str, expect: &str) {
        let got = self.cmd(line).await;
        assert_eq!(got, expect, "reply to {line:?}");
    }

    /// Sends a line and asserts an `ERR <code>` reply; returns the whole line.
    pub async fn err(&mut self, line: &str, code: &str) -> String {
        let got = self.cmd(line).await;
        assert_err_reply(line, code, &got);
        got
    }

    /// Reads the next line and asserts it.
    pub async fn expect(&mut self, expect: &str) {
        let got = self.line().await;
        assert_eq!(got, expect);
    }

    /// Reads a `MSG` push: returns its line (without `{N}`) and its body.
    pub async fn msg(&mut self) -> (String, Vec<u8>) {
        let line = self.line().await;
        assert!(line.starts_with("MSG "), "expected MSG, got {line:?}");
        let (head, n) =
            split_literal(&line).unwrap_or_else(|| panic!("MSG without literal: {line:?}"));
        let body = self.literal(n).await;
        (head, body)
    }

    /// Reads a `MSG` and returns (delivery tag, body as text).
    pub async fn msg_tag(&mut self) -> (u64, String) {
        let (head, body) = self.msg().await;
        let tag = head
            .split(' ')
            .nth(2)
            .and_then(|t| t.parse().ok())
            .expect("delivery tag");
        (tag, String::from_utf8_lossy(&body).into_owned())
    }

    /// Asserts the server closes the connection (after any remaining lines).
    pub async fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        let r = tokio::time::timeout(DEADLINE, self.reader.read_to_end(&mut rest))
            .await
            .expect("connection not closed in time");
        assert!(r.is_ok() || rest.is_empty(), "read error {r:?}");
        assert!(
            rest.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Asserts nothing arrives until a PING round trip completes.
    pub async fn expect_quiet(&mut self) {
        self.ok("PING", "OK pong").await;
    }
}

/// Asserts that `got`, the reply to `line`, is `ERR <code>` (with or without text).
pub fn assert_err_reply(line: &str, code: &str, got: &str) {
    assert!(
        got.starts_with(&format!("ERR {code} ")) || got == format!("ERR {code}"),
        "reply to {line:?}: expected ERR {code}, got {got:?}"
    );
}

/// Splits `... {N}` into the head and N.
pub fn split_literal(line: &str) -> Option<(String, usize)> {
    let open = line.rfind(" {")?;
    let n = line[open + 2..].strip_suffix('}')?.parse().ok()?;
    Some((line[..open].to_string(), n))
}

/// The path of the built `sluice` binary.
pub fn sluice_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

// ---------------------------------------------------------------------------
// Helpers for message flows: a parsed `MSG` push and a connection wrapper
// that keeps pushes which arrive between replies.
// ---------------------------------------------------------------------------

/// Splits a server line into words, undoing the quoting rules
/// (`"a b"`, `""`, `\"` and `\\` inside quotes).
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(' ' | '\t')) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        // A word is bare text with quoted sections (`"a b"`, `h.k="a b"`).
        let mut w = String::new();
        while let Some(&ch) = chars.peek() {
            if ch == ' ' || ch == '\t' {
                break;
            }
            chars.next();
            if ch == '"' {
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            } else {
                w.push(ch);
            }
        }
        out.push(w);
    }
    out
}

/// A parsed `MSG` push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// The line without its `{N}`.
    pub head: String,
    pub ctag: String,
    pub dtag: u64,
    pub exchange: String,
    pub key: String,
    pub redelivered: bool,
    pub deliveries: u32,
    pub id: String,
    /// `h.<name>=<value>` options, in order, without the `h.`.
    pub headers: Vec<(String, String)>,
    /// `group=`, `offset=`, `partition=`.
    pub group: Option<String>,
    pub offset: Option<u64>,
    pub partition: Option<u32>,
    pub body: Vec<u8>,
}

impl Msg {
    /// Parses `MSG ...` (head without `{N}`) and its body.
    pub fn parse(head: &str, body: Vec<u8>) -> Msg {
        let w = words(head);
        assert!(w.len() >= 7 && w[0] == "MSG", "malformed MSG line {head:?}");
        let mut m = Msg {
            head: head.to_string(),
            ctag: w[1].clone(),
            dtag: w[2]
                .parse()
                .unwrap_or_else(|_| panic!("bad delivery tag in {head:?}")),
            exchange: w[3].clone(),
            key: w[4].clone(),
            redelivered: false,
            deliveries: 0,
            id: String::new(),
            headers: Vec::new(),
            group: None,
            offset: None,
            partition: None,
            body,
        };
        for word in &w[5..] {
            if word == "redelivered" {
                m.redelivered = true;
            } else if let Some(n) = word.strip_prefix("deliveries=") {
                m.deliveries = n
                    .parse()
                    .unwrap_or_else(|_| panic!("bad deliveries in {head:?}"));
            } else if let Some(id) = word.strip_prefix("id=") {
                m.id = id.to_string();
            } else if let Some(g) = word.strip_prefix("group=") {
                m.group = Some(g.to_string());
            } else if let Some(n) = word.strip_prefix("offset=") {
                m.offset = Some(
                    n.parse()
                        .unwrap_or_else(|_| panic!("bad offset in {head:?}")),
                );
            } else if let Some(n) = word.strip_prefix("partition=") {
                m.partition = Some(
                    n.parse()
                        .unwrap_or_else(|_| panic!("bad partition in {head:?}")),
                );
            } else if let Some(h) = word.strip_prefix("h.") {
                let (k, v) = h
                    .split_once('=')
                    .unwrap_or_else(|| panic!("bad header in {head:?}"));
                m.headers.push((k.to_string(), v.to_string()));
            } else {
                panic!("unexpected word {word:?} in {head:?}");
            }
        }
        m
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A [`TestConn`] that buffers `MSG` and `NOTICE` pushes seen while it waits
/// for a reply, so tests can read replies and deliveries independently of
/// how the server interleaves them.
pub struct Peer {
    pub conn: TestConn,
    msgs: std::collections::VecDeque<Msg>,
    notices: std::collections::VecDeque<String>,
}

impl Peer {
    pub async fn connect(srv: &TestServer) -> Peer {
        Peer::over(srv.conn().await)
    }

    /// A peer on a connection already open (to a spawned broker, say).
    pub fn over(conn: TestConn) -> Peer {
        Peer {
            conn,
            msgs: Default::default(),
            notices: Default::default(),
        }
    }

    /// Reads one line; `MSG` and `NOTICE` lines are buffered and `None`
    /// returned, any other line is returned.
    async fn read_one(&mut self) -> Option<String> {
        let line = self.conn.line().await;
        if line.starts_with("MSG ") {
            let (head, n) =
                split_literal(&line).unwrap_or_else(|| panic!("MSG without literal: {line:?}"));
            let body = self.conn.literal(n).await;
            self.msgs.push_back(Msg::parse(&head, body));
            None
        } else if line.starts_with("NOTICE ") {
            self.notices.push_back(line);
            None
        } else {
            Some(line)
        }
    }

    /// Reads the next reply line, buffering pushes before it.
    pub async fn reply(&mut self) -> String {
        loop {
            if let Some(l) = self.read_one().await {
                return l;
            }
        }
    }

    /// Sends a line and returns its reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.conn.send(line).await;
        self.reply().await
    }

    /// Sends a line and asserts its reply.
    pub async fn ok(&mut self, line: &str, expect: &str) {
        let got = self.cmd(line).await;
        assert_eq!(got, expect, "reply to {line:?}");
    }

    /// Sends a line and asserts an `ERR <code>` reply.
    pub async fn err(&mut self, line: &str, code: &str) -> String {
        let got = self.cmd(line).await;
        assert_err_reply(line, code, &got);
        got
    }

    /// Publishes a text body and returns the message id; asserts `routed=`.
    pub async fn publish(&mut self, exchange: &str, key: &str, body: &str, routed: u32) -> String {
        let line = format!("PUB {} {} {}", quote(exchange), quote(key), quote(body));
        let got = self.cmd(&line).await;
        let w = words(&got);
        assert!(
            w.len() == 3 && w[0] == "OK" && w[2] == format!("routed={routed}"),
            "reply to {line:?}: expected OK <id> routed={routed}, got {got:?}"
        );
        w[1].clone()
    }

    /// The next delivery (buffered or read now). Fails on a reply line.
    pub async fn msg(&mut self) -> Msg {
        loop {
            if let Some(m) = self.msgs.pop_front() {
                return m;
            }
            if let Some(l) = self.read_one().await {
                panic!("expected MSG, got reply {l:?}");
            }
        }
    }

    /// The next delivery, or the next notice when no delivery is
    /// buffered (`Err` with it): whichever the broker pushes first. Fails
    /// on a reply line.
    pub async fn push(&mut self) -> Result<Msg, String> {
        loop {
            if let Some(m) = self.msgs.pop_front() {
                return Ok(m);
            }
            if let Some(n) = self.notices.pop_front() {
                return Err(n);
            }
            if let Some(l) = self.read_one().await {
                panic!("expected MSG or NOTICE, got reply {l:?}");
            }
        }
    }

    /// The next notice (buffered or read now). Fails on a reply line.
    pub async fn notice(&mut self) -> String {
        loop {
            if let Some(n) = self.notices.pop_front() {
                return n;
            }
            if let Some(l) = self.read_one().await {
                panic!("expected NOTICE, got reply {l:?}");
            }
        }
    }

    /// The deliveries buffered so far (read while waiting for replies).
    pub fn take_buffered(&mut self) -> Vec<Msg> {
        self.msgs.drain(..).collect()
    }

    /// Asserts no delivery is pending: none buffered, and a PING round
    /// trip returns `OK pong` with no push before it.
    pub async fn quiet(&mut self) {
        assert!(
            self.msgs.is_empty(),
            "unexpected deliveries {:?}",
            self.msgs
        );
        self.conn.send("PING").await;
        let line = self.conn.line().await;
        assert_eq!(line, "OK pong", "expected no push before the PING reply");
    }

    /// Runs a `GET` and returns its deliveries and its final reply line.
    /// Deliveries with a consumer tag other than `-` stay buffered.
    pub async fn get(&mut self, line: &str) -> (Vec<Msg>, String) {
        self.conn.send(line).await;
        self.get_reply().await
    }

    /// Reads the reply of a `GET` already sent, as [`Peer::get`] does.
    pub async fn get_reply(&mut self) -> (Vec<Msg>, String) {
        let before = self.msgs.len();
        let reply = self.reply().await;
        let mut got = Vec::new();
        let mut keep = std::collections::VecDeque::new();
        for (i, m) in std::mem::take(&mut self.msgs).into_iter().enumerate() {
            if i >= before && m.ctag == "-" {
                got.push(m);
            } else {
                keep.push_back(m);
            }
        }
        self.msgs = keep;
        (got, reply)
    }

    /// Asserts the server closes the connection.
    pub async fn expect_closed(&mut self) {
        self.conn.expect_closed().await;
    }
}

/// One HTTP/1.1 request (`Connection: close`) and its response: status,
/// head (lower-cased), body.
pub async fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    web::http_call(addr, method, path, &[], "").await
}

/// Writes a word the way the protocol reads it (quoted when needed).
pub fn quote(w: &str) -> String {
    let plain = !w.is_empty()
        && !w.starts_with('{')
        && w.bytes()
            .all(|b| b > b' ' && b != b'"' && b != b'\\' && b != 0x7f);
    if plain {
        w.to_string()
    } else {
        let mut s = String::from("\"");
        for ch in w.chars() {
            if ch == '"' || ch == '\\' {
                s.push('\\');
            }
            s.push(ch);
        }
        s.push('"');
        s
    }
}

impl Peer {
    /// Repeats `line` until its reply satisfies `done`, or fails after the
    /// deadline; for effects of a disconnect, which the server applies
    /// asynchronously. Returns the last reply.
    pub async fn poll_until(&mut self, line: &str, done: impl Fn(&str) -> bool) -> String {
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let got = self.cmd(line).await;
            if done(&got) {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "timed out: last reply to {line:?} was {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Peer {
    /// Sends a raw `PUB` line and asserts `OK <id> routed=<n>` with n >= 1.
    pub async fn publish_line(&mut self, line: &str) -> String {
        let got = self.cmd(line).await;
        let w = words(&got);
        assert!(
            w.len() == 3 && w[0] == "OK" && w[2].starts_with("routed=") && w[2] != "routed=0",
            "reply to {line:?}: expected OK <id> routed=<n>=1.., got {got:?}"
        );
        w[1].clone()
    }
}

impl Peer {
    /// Takes a delivery that was already read (while waiting for a reply),
    /// without reading more.
    pub fn take_buffered_msg(&mut self) -> Option<Msg> {
        self.msgs.pop_front()
    }
}

impl Peer {
    /// Takes a notice that was already read, without reading more.
    pub fn take_buffered_notice(&mut self) -> Option<String> {
        self.notices.pop_front()
    }

    /// Buffers every push the server wrote before the reply to a `PING`.
    pub async fn sync(&mut self) {
        self.ok("PING", "OK pong").await;
    }
}

/// The next delivery on any of `peers`, with the index of the peer: what
/// each has buffered, else a `PING` round trip on each in turn, polling
/// until one has a delivery (fails after the deadline). For a delivery that
/// may go to any of them; the caller checks the others stay quiet.
pub async fn next_on_any(peers: &mut [&mut Peer]) -> (usize, Msg) {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        for (i, p) in peers.iter_mut().enumerate() {
            if let Some(m) = p.take_buffered_msg() {
                return (i, m);
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no delivery on any of {} connections",
            peers.len()
        );
        for p in peers.iter_mut() {
            p.sync().await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Restarts `srv` and checks that its durable queue `q` kept the option
/// `flag` and its `messages`: a redeclare without the flag is
/// `ERR PRECONDITION` naming it, one with it a no-op.
pub async fn restart_keeps_flag(srv: TestServer, flag: &str, messages: u64) -> TestServer {
    let srv = srv.restart().await;
    let mut p = Peer::connect(&srv).await;
    let e = p.err("DECLARE QUEUE q durable", "PRECONDITION").await;
    assert!(e.contains(flag), "{e}");
    p.ok(
        &format!("DECLARE QUEUE q durable {flag}"),
        &format!("OK q messages={messages} consumers=0"),
    )
    .await;
    srv
}

/// A connection that declared the new queue `q` with `opts`.
pub async fn declare_q(srv: &TestServer, opts: &str) -> Peer {
    let mut p = Peer::connect(srv).await;
    p.ok(
        &format!("DECLARE QUEUE q {opts}"),
        "OK q messages=0 consumers=0",
    )
    .await;
    p
}
