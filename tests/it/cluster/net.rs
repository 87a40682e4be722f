//! A network between nodes that the tests control: a proxy in front of
//! each node's cluster port, so that a test can cut nodes off from each
//! other (a partition) and heal the cut.
//!
//! Node `j`'s proxy listens where the others reach `j` (`--peers`) and
//! forwards to where `j` listens (`--cluster-addr`). It reads the first
//! frame of each connection, the connecting node's hello, to learn who
//! connects: a connection from a node cut off from `j` is closed at once,
//! and a cut closes the connections already open across it. Both
//! directions of a link travel on the connection one of its ends opened,
//! so closing it cuts the pair both ways.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// The pairs cut off from each other, and the connections open.
#[derive(Default)]
struct Links {
    /// Unordered pairs `(a, b)`, `a < b`.
    cut: HashSet<(u64, u64)>,
    /// Open connections: from, to, and the task that forwards them.
    open: Vec<(u64, u64, AbortHandle)>,
}

impl Links {
    fn is_cut(&self, a: u64, b: u64) -> bool {
        self.cut.contains(&(a.min(b), a.max(b)))
    }
}

/// The proxies of a cluster's nodes (stopped on drop).
pub(crate) struct Net {
    links: Arc<Mutex<Links>>,
    proxies: Vec<JoinHandle<()>>,
    /// Node `i`'s proxy port at `i - 1`.
    pub(crate) ports: Vec<u16>,
}

impl Net {
    /// A proxy for each node, node `i` (from 1) listening on `targets[i - 1]`.
    pub(crate) async fn start(targets: &[u16]) -> Net {
        let links = Arc::new(Mutex::new(Links::default()));
        let mut proxies = Vec::new();
        let mut ports = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            let port = super::free_port();
            let listener = TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("proxy port");
            ports.push(port);
            proxies.push(tokio::spawn(proxy(
                listener,
                i as u64 + 1,
                *target,
                links.clone(),
            )));
        }
        Net {
            links,
            proxies,
            ports,
        }
    }

    /// Cuts node `k` off from every other of the `n` nodes (a minority of
    /// one), closing their connections.
    pub(crate) fn isolate(&self, k: u64, n: u64) {
        let mut l = self.links.lock().expect("links");
        for other in (1..=n).filter(|o| *o != k) {
            l.cut.insert((k.min(other), k.max(other)));
        }
        let (closed, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut l.open)
            .into_iter()
            .partition(|(a, b, _)| (*a == k) != (*b == k));
        for (_, _, task) in closed {
            task.abort();
        }
        l.open = kept;
    }

    /// Heals every cut.
    pub(crate) fn heal(&self) {
        self.links.lock().expect("links").cut.clear();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for p in &self.proxies {
            p.abort();
        }
        for (_, _, task) in &self.links.lock().expect("links").open {
            task.abort();
        }
    }
}

/// Node `to`'s proxy: accepts on `listener`, forwards to port `target`.
async fn proxy(listener: TcpListener, to: u64, target: u16, links: Arc<Mutex<Links>>) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        let seen = links.clone();
        let forward = async move {
            let _ = inbound.set_nodelay(true);
            // The hello: [len u32 BE][JSON {"secret":..,"from":n}].
            let mut len = [0u8; 4];
            inbound.read_exact(&mut len).await.ok()?;
            let mut hello = vec![0u8; u32::from_be_bytes(len) as usize];
            inbound.read_exact(&mut hello).await.ok()?;
            let from = serde_json::from_slice::<serde_json::Value>(&hello)
                .ok()?
                .get("from")?
                .as_u64()?;
            if seen.lock().expect("links").is_cut(from, to) {
                return None;
            }
            let mut outbound = TcpStream::connect(("127.0.0.1", target)).await.ok()?;
            let _ = outbound.set_nodelay(true);
            outbound.write_all(&len).await.ok()?;
            outbound.write_all(&hello).await.ok()?;
            Some((from, inbound, outbound))
        };
        let links2 = links.clone();
        tokio::spawn(async move {
            let Some((from, mut inbound, mut outbound)) = forward.await else {
                return;
            };
            let task = tokio::spawn(async move {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
            let mut l = links2.lock().expect("links");
            // Cut meanwhile: close it now.
            if l.is_cut(from, to) {
                task.abort();
                return;
            }
            l.open.retain(|(_, _, t)| !t.is_finished());
            l.open.push((from, to, task.abort_handle()));
        });
    }
}
