//! A full disk (issue 5, part 5): the data directory on a small tmpfs.
//!
//! - Under `--disk-free-limit`, publishes that would write to the store are
//!   held (`NOTICE blocked disk`), other commands go on, and they resume
//!   when space comes back (the tmpfs is grown); after a SIGKILL and a
//!   restart every confirmed message is there.
//! - Without the watermark the store runs into `ENOSPC`: the publishes
//!   caught in it get `ERR INTERNAL`, none gets `OK`, the broker stops with
//!   a clear error and status 1, and once space is back a restart serves
//!   every confirmed message.
//!
//! Mounting a tmpfs needs root (CI runs as root); elsewhere these tests say
//! so and pass without running.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::process::Command;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::common::spawned::Spawned;
use crate::common::{TestConn, DEADLINE};

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn grow(&self, mib: u32) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(self.dir.path())
            .status()
            .expect("remount");
        assert!(ok.success(), "remount failed");
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn body_for(id: &str) -> Vec<u8> {
    let mut b = format!("{id}:").into_bytes();
    b.resize(1024, b'.');
    b
}

/// What a pipelining publisher saw.
#[derive(Default)]
struct Tally {
    ok: HashSet<String>,
    errs: Vec<String>,
    notices: Vec<String>,
}

/// Publishes persistent 1 KiB messages, 100 in flight, until `stop` says
/// so about a reply or notice line; then reads the replies still owed for
/// as long as `drain` allows. Ids are `<prefix>-<n>`.
struct Publisher {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    in_flight: VecDeque<String>,
    next: u64,
    prefix: &'static str,
    tally: Tally,
}

impl Publisher {
    async fn connect(addr: std::net::SocketAddr, prefix: &'static str) -> Publisher {
        let s = TcpStream::connect(addr).await.expect("connect");
        let (r, w) = s.into_split();
        let mut p = Publisher {
            reader: BufReader::new(r),
            writer: w,
            in_flight: VecDeque::new(),
            next: 0,
            prefix,
            tally: Tally::default(),
        };
        let hello = p.line().await.expect("greeting");
        assert!(hello.starts_with("HELLO sluice "), "{hello}");
        p
    }

    async fn line(&mut self) -> Option<String> {
        let mut buf = String::new();
        let n = tokio::time::timeout(DEADLINE, self.reader.read_line(&mut buf))
            .await
            .expect("no line in time")
            .unwrap_or(0);
        (n > 0).then(|| buf.trim_end().to_string())
    }

    /// Sends one `PUB`; false when the broker has closed the connection.
    async fn send_one(&mut self) -> bool {
        let id = format!("{}-{}", self.prefix, self.next);
        self.next += 1;
        let mut frame = format!("PUB \"\" q id={id} {{1024}}\r\n").into_bytes();
        frame.extend_from_slice(&body_for(&id));
        frame.extend_from_slice(b"\r\n");
        let sent = tokio::time::timeout(DEADLINE, self.writer.write_all(&frame))
            .await
            .expect("the broker stopped reading");
        if sent.is_ok() {
            self.in_flight.push_back(id);
        }
        sent.is_ok()
    }

    /// Handles one line; false when the connection is closed.
    async fn step(&mut self) -> bool {
        let Some(line) = self.line().await else {
            return false;
        };
        if line.starts_with("NOTICE ") {
            self.tally.notices.push(line);
            return true;
        }
        let id = self
            .in_flight
            .pop_front()
            .expect("a reply nobody asked for");
        if line.starts_with("OK ") {
            assert_eq!(line, format!("OK {id} routed=1"));
            self.tally.ok.insert(id);
        } else {
            assert!(line.starts_with("ERR INTERNAL "), "{line}");
            self.tally.errs.push(id);
        }
        true
    }

    /// Pipelines until a notice or an error shows up.
    async fn until_trouble(&mut self) {
        while self.tally.notices.is_empty() && self.tally.errs.is_empty() {
            while self.in_flight.len() < 100 {
                if !self.send_one().await {
                    return;
                }
            }
            if !self.step().await {
                break;
            }
        }
    }

    /// Reads until every publish sent has its reply (or the connection ends).
    async fn settle(&mut self) {
        while !self.in_flight.is_empty() && self.step().await {}
    }
}

/// Every message in queue `q`, by id, checking each body.
async fn drain(addr: std::net::SocketAddr) -> HashSet<String> {
    let mut c = TestConn::connect(addr).await;
    let mut found = HashSet::new();
    loop {
        c.send("GET q count=1000 ack=auto").await;
        let mut n = 0;
        loop {
            let line = c.line().await;
            if let Some(count) = line.strip_prefix("OK ") {
                assert_eq!(count.parse::<usize>().expect("count"), n);
                break;
            }
            let (head, n_bytes) = crate::common::split_literal(&line).expect("MSG");
            let body = c.literal(n_bytes).await;
            let id = head
                .split(' ')
                .find_map(|w| w.strip_prefix("id="))
                .expect("id=")
                .to_string();
            assert_eq!(body, body_for(&id), "corrupted body for {id}");
            assert!(found.insert(id.clone()), "{id} twice");
            n += 1;
        }
        if n == 0 {
            return found;
        }
    }
}

async fn declare(addr: std::net::SocketAddr) {
    let mut c = TestConn::connect(addr).await;
    c.ok("DECLARE QUEUE q durable", "OK q messages=0 consumers=0")
        .await;
}

fn lost(ok: &HashSet<String>, found: &HashSet<String>) -> usize {
    ok.iter().filter(|id| !found.contains(*id)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_publishes_until_space_returns_and_loses_nothing() {
    let Some(fs) = Tmpfs::mount(64) else { return };
    let limit = (16u64 << 20).to_string();
    let mut b = Spawned::start_in(&fs.data(), &["--disk-free-limit", &limit]).await;
    declare(b.addr).await;
    let mut p = Publisher::connect(b.addr, "a").await;
    p.until_trouble().await;
    assert!(
        p.tally.errs.is_empty(),
        "ERR before the watermark held publishes"
    );
    assert_eq!(p.tally.notices, ["NOTICE blocked disk"]);
    b.wait_log("disk space low").await;
    // The broker still serves other commands.
    let mut other = TestConn::connect(b.addr).await;
    other.ok("PING", "OK pong").await;
    let (_, body) = {
        other.send("GET q").await;
        let m = other.msg().await;
        other.expect("OK 1").await;
        m
    };
    assert!(body.starts_with(b"a-0:"));
    // Space comes back: the held publishes go through, in order, all OK.
    fs.grow(256);
    p.settle().await;
    assert!(
        p.tally.errs.is_empty(),
        "{} publishes failed",
        p.tally.errs.len()
    );
    assert!(p
        .tally
        .notices
        .contains(&"NOTICE unblocked disk".to_string()));
    b.wait_log("disk space back").await;
    for _ in 0..100 {
        assert!(p.send_one().await, "connection closed");
    }
    p.settle().await;
    let confirmed = p.tally.ok.len();
    // The GET above left a-0 unacknowledged: it is back after the crash.
    b.kill().await;
    let b = Spawned::start_in(&fs.data(), &["--disk-free-limit", &limit]).await;
    let found = drain(b.addr).await;
    let unexpected = found.iter().filter(|id| !p.tally.ok.contains(*id)).count();
    println!(
        "disk full (64 MiB tmpfs, limit 16 MiB): {confirmed} confirmed, held at the \
         watermark with no ERR, resumed after the tmpfs grew; after SIGKILL and \
         restart lost {} unexpected {unexpected}",
        lost(&p.tally.ok, &found)
    );
    assert_eq!(lost(&p.tally.ok, &found), 0);
    assert_eq!(unexpected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_runs_out_of_space_stops_the_broker_and_a_restart_loses_nothing() {
    let Some(fs) = Tmpfs::mount(32) else { return };
    let mut b = Spawned::start_in(&fs.data(), &["--disk-free-limit", "0"]).await;
    declare(b.addr).await;
    let mut p = Publisher::connect(b.addr, "e").await;
    p.until_trouble().await;
    // The rest are answered (OK if they made it to disk before the error,
    // else ERR), or the connection ends with the broker.
    p.settle().await;
    // Then the broker stops: the notice may come after the last reply.
    while p.step().await {}
    assert_eq!(p.tally.notices, ["NOTICE closing reason=store-failed"]);
    assert!(!p.tally.errs.is_empty(), "no ERR although the disk is full");
    let status = b.exited().await;
    assert_eq!(status.code(), Some(1), "{status:?}");
    b.wait_log("the store failed a write").await;
    let answered_ok = p.tally.ok.len();
    let errs = p.tally.errs.len();
    fs.grow(256);
    let b = Spawned::start_in(&fs.data(), &[]).await;
    let found = drain(b.addr).await;
    let sent: HashSet<String> = (0..p.next).map(|n| format!("e-{n}")).collect();
    let unexpected = found.iter().filter(|id| !sent.contains(*id)).count();
    println!(
        "ENOSPC (32 MiB tmpfs, no watermark): {answered_ok} OK, {errs} ERR INTERNAL, broker \
         exited 1; after growing the tmpfs and restarting lost {} unexpected {unexpected} \
         ({} of the ERR'd are there: not confirmed, may or may not be)",
        lost(&p.tally.ok, &found),
        found.len() - answered_ok.min(found.len())
    );
    assert_eq!(lost(&p.tally.ok, &found), 0);
    assert_eq!(unexpected, 0);
    // The data directory is usable again.
    let mut c = TestConn::connect(b.addr).await;
    let r = c.cmd("PUB \"\" q again").await;
    assert!(r.ends_with("routed=1"), "{r}");
}
