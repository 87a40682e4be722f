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

/// How long any single expected event may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: Arc<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
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
        let broker = Broker::open(config).expect("open broker");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(sluice::server::run(listener, broker, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            dir,
            stop: Some(tx),
            handle: Some(handle),
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

    pub async fn conn(&self) -> TestConn {
        TestConn::connect(self.addr).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
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
        let mut buf = Vec::new();
        let n = tokio::time::timeout(DEADLINE, self.reader.read_until(b'\n', &mut buf))
            .await
            .expect("timed out waiting for a line")
            .expect("read");
        assert!(n > 0, "connection closed while waiting for a line");
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        String::from_utf8_lossy(&buf).into_owned()
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

    /// Sends a line and asserts the reply.
    pub async fn ok(&mut self, line: &str, expect: &str) {
        let got = self.cmd(line).await;
        assert_eq!(got, expect, "reply to {line:?}");
    }

    /// Sends a line and asserts an `ERR <code>` reply; returns the whole line.
    pub async fn err(&mut self, line: &str, code: &str) -> String {
        let got = self.cmd(line).await;
        assert!(
            got.starts_with(&format!("ERR {code} ")) || got == format!("ERR {code}"),
            "reply to {line:?}: expected ERR {code}, got {got:?}"
        );
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
