//! How nodes talk Raft to each other: openraft's `RaftNetworkFactory` and
//! `RaftNetwork` on TCP ([`Peers`], the client side) and the accept loop
//! that hands what arrives to the local Raft ([`serve`]).
//!
//! Each message is a frame, `[len u32 BE][JSON]`, at most [`MAX_FRAME`]
//! bytes. A connection starts with the client's [`Hello`], which carries
//! the cluster's shared secret: a server whose secret differs closes the
//! connection (compared in constant time; in the clear unless the nodes
//! talk TLS). Then each request ([`Rpc`]: append
//! entries, vote, a snapshot chunk) is followed by its reply (the Raft's
//! result, error included). A client keeps one connection per peer,
//! opened lazily on its first request and dropped on any I/O error, which
//! openraft sees as the peer being unreachable (it backs off and
//! retries), and with any request given up on before its reply came. With TLS (a node whose client port has it), every connection
//! is TLS first: the server shows its certificate, the client checks it
//! names the peer's IP address and chains to what the cluster trusts.

// openraft's traits return its `RPCError`, large as it is.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;

use openraft::error::{
    ClientWriteError, Fatal, Infallible, InstallSnapshotError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::broker::MetaAnswer;
use crate::error::BrokerError;
use crate::protocol::command::{ClusterCommand, StreamStart};
use crate::protocol::parse::decode_one;
use crate::protocol::Command;
use crate::tls::TlsClientConfig;

use super::{Payload, TypeConfig, META_GROUP};

/// The Rafts this node runs, by group: where the RPCs that arrive go.
pub(crate) type Router = Arc<dashmap::DashMap<u64, Raft<TypeConfig>>>;

/// The largest frame either side reads (a batch of entries or a snapshot
/// chunk is far below it).
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// The first frame of a connection.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    /// The cluster's shared secret.
    secret: String,
    /// The node that connects (for the logs, and for a proxy between
    /// nodes that cuts some off: the partition tests').
    #[serde(default)]
    from: u64,
}

/// Whether `a` and `b` are the same bytes, in a time that depends on their
/// lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A request from one node to another.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Rpc {
    /// Raft's own, each for one group (0: the metadata group; a replicated
    /// queue's otherwise).
    Append(u64, AppendEntriesRequest<TypeConfig>),
    Vote(u64, VoteRequest<u64>),
    Snapshot(u64, InstallSnapshotRequest<TypeConfig>),
    /// A change for a group, forwarded to its leader by the node that
    /// took it from a client.
    Write(u64, Payload),
    /// A membership change of a group (`CLUSTER ...`, as its wire frame),
    /// for its leader: the metadata group's forwarded by the node that
    /// took it, a replicated queue's from a member that repairs its
    /// damaged copy.
    Membership(u64, String),
    /// From the leader handing its lead over: stand for election now.
    Elect,
    /// A subscription to a replicated queue, for its leader, from the
    /// node its subscriber is connected to. The connection is the
    /// subscription's from then on (`remote.rs`).
    Consume(ConsumeReq),
}

/// A subscription to a replicated queue on its leader, for a subscriber
/// connected to another node (`SUB` there).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ConsumeReq {
    /// The queue.
    pub(super) queue: String,
    /// The subscription's consumer tag.
    pub(super) tag: String,
    /// Its prefetch (`ack=auto` too: its node acks once it has written).
    pub(super) prefetch: u32,
    /// Its `prefetch-bytes=` (absent from an older node's request: no byte
    /// bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) prefetch_bytes: Option<u64>,
    /// `SUB exclusive`.
    pub(super) exclusive: bool,
    /// A stream's `SUB group=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) group: Option<String>,
    /// A stream's `SUB offset=` or `time=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) start: Option<Start>,
}

/// Where a stream reader starts, as a [`ConsumeReq`] carries it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) enum Start {
    First,
    Last,
    Next,
    Offset(u64),
    Time(u64),
}

impl From<StreamStart> for Start {
    fn from(s: StreamStart) -> Start {
        match s {
            StreamStart::First => Start::First,
            StreamStart::Last => Start::Last,
            StreamStart::Next => Start::Next,
            StreamStart::Offset(n) => Start::Offset(n),
            StreamStart::Time(t) => Start::Time(t),
        }
    }
}

impl From<Start> for StreamStart {
    fn from(s: Start) -> StreamStart {
        match s {
            Start::First => StreamStart::First,
            Start::Last => StreamStart::Last,
            Start::Next => StreamStart::Next,
            Start::Offset(n) => StreamStart::Offset(n),
            Start::Time(t) => StreamStart::Time(t),
        }
    }
}

/// What a node does with a subscription that arrives ([`Rpc::Consume`]):
/// `remote.rs`'s, handed in by the node; it owns the connection from then
/// on.
pub(super) type OnConsume = Arc<
    dyn Fn(
            ConsumeReq,
            Box<dyn Io>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

impl Rpc {
    /// Membership change `change` of group `group`, for its leader.
    pub(super) fn membership(group: u64, change: &ClusterCommand) -> Rpc {
        let frame = Command::Cluster(change.clone()).encode();
        Rpc::Membership(group, String::from_utf8_lossy(&frame).into_owned())
    }
}

/// What a node does with a membership change of a group forwarded to it
/// (as the group's leader): `cluster::membership`'s, handed in by the
/// node.
pub(crate) type OnMembership = Arc<
    dyn Fn(
            u64,
            ClusterCommand,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = MetaAnswer> + Send>>
        + Send
        + Sync,
>;

/// How long a leader waits for a forwarded change to commit.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the leader made of a forwarded change.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Written {
    /// Committed and applied on the leader at this log index.
    Done(u64, MetaAnswer),
    /// Not the leader (any more), or not a member of the group: nothing
    /// was proposed. Where the leader is, when known.
    NotLeader(Option<String>),
    /// Proposed, but not known to be committed in time: it may be, later.
    Unknown(String),
}

/// Why a forwarded change has no answer.
#[derive(Debug)]
pub(crate) enum ForwardError {
    /// It never reached the leader (no connection): nothing was proposed.
    Unsent(String),
    /// The connection broke after it was sent: it may have been made.
    Unknown(String),
}

/// How long a node waits to connect to another before it counts as
/// unreachable (a paused process's port still accepts connections, so
/// the reply is bounded too: see [`call`]).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Sends `rpc` to the node at `addr` and reads its reply, on a connection
/// of its own (replication's connection answers one request at a time):
/// a forwarded change, a membership change, a call to stand. Gives up at
/// `deadline` (a node that does not answer: paused, cut off).
pub(super) async fn call<R: DeserializeOwned>(
    peers: &Peers,
    addr: &str,
    rpc: &Rpc,
    deadline: std::time::Instant,
) -> Result<R, ForwardError> {
    let left = || deadline.saturating_duration_since(std::time::Instant::now());
    let connect = tokio::time::timeout(left().min(CONNECT_TIMEOUT), peers.connect(addr));
    let mut s = match connect.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ForwardError::Unsent(e.to_string())),
        Err(_) => return Err(ForwardError::Unsent("no connection in time".into())),
    };
    let sent = tokio::time::timeout(left(), write_frame(&mut s, rpc)).await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(ForwardError::Unknown(e.to_string())),
        Err(_) => return Err(ForwardError::Unknown("not sent in time".into())),
    }
    match tokio::time::timeout(left(), read_frame(&mut s)).await {
        Ok(r) => r.map_err(|e| ForwardError::Unknown(e.to_string())),
        Err(_) => Err(ForwardError::Unknown("no answer in time".into())),
    }
}

/// The leader's side of a forwarded change.
async fn write(raft: &Raft<TypeConfig>, command: Payload) -> Written {
    match tokio::time::timeout(WRITE_TIMEOUT, raft.client_write(command)).await {
        Ok(Ok(r)) => Written::Done(r.log_id.index, r.data),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Written::NotLeader(f.leader_node.map(|n| n.addr))
        }
        Ok(Err(e)) => Written::Unknown(e.to_string()),
        Err(_) => Written::Unknown("not committed within 5 s".into()),
    }
}

/// A connection between nodes: TCP, or TLS over it.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

pub(super) async fn write_frame(
    s: &mut (impl AsyncWrite + Unpin),
    value: &impl Serialize,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(value)?;
    let len = u32::try_from(body.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    s.write_all(&buf).await
}

pub(super) async fn read_frame<T: DeserializeOwned>(
    s: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!("a frame of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    Ok(serde_json::from_slice(&body)?)
}

/// Serves the Raft RPCs that arrive on `listener` to `raft`, until the
/// listener fails, over TLS with `tls`; forwarded changes go to `raft`
/// too, membership changes to `membership`, subscriptions from other
/// nodes to `consume`. A connection that fails the TLS
/// handshake, does not start with the cluster's `secret`, or sends
/// something that is not a request, is closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    secret: Arc<str>,
    tls: Option<TlsAcceptor>,
    membership: Option<OnMembership>,
    consume: Option<OnConsume>,
) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            return;
        };
        let router = router.clone();
        let secret = secret.clone();
        let membership = membership.clone();
        let consume = consume.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let mut s: Box<dyn Io> = match tls {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(t) => Box::new(t),
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "refused a cluster connection: TLS handshake failed");
                        return;
                    }
                },
                None => Box::new(tcp),
            };
            match read_frame::<Hello>(&mut s).await {
                Ok(h) if same(h.secret.as_bytes(), secret.as_bytes()) => {}
                Ok(h) => {
                    tracing::warn!(%peer, node = h.from, "refused a cluster connection: wrong secret");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "refused a cluster connection: no hello");
                    return;
                }
            }
            while let Ok(rpc) = read_frame::<Rpc>(&mut s).await {
                // A Raft that stopped answers nothing more on this
                // connection: the peer reconnects, to whatever serves the
                // address next.
                let raft_of = |g: u64| router.get(&g).map(|r| r.clone());
                let go_on = match rpc {
                    Rpc::Append(g, r) => match raft_of(g) {
                        Some(raft) => answer(&mut s, raft.append_entries(r).await).await,
                        None => absent::<AppendEntriesResponse<u64>, Infallible>(&mut s).await,
                    },
                    Rpc::Vote(g, r) => match raft_of(g) {
                        Some(raft) => answer(&mut s, raft.vote(r).await).await,
                        None => absent::<VoteResponse<u64>, Infallible>(&mut s).await,
                    },
                    Rpc::Snapshot(g, r) => match raft_of(g) {
                        Some(raft) => answer(&mut s, raft.install_snapshot(r).await).await,
                        None => {
                            absent::<InstallSnapshotResponse<u64>, InstallSnapshotError>(&mut s)
                                .await
                        }
                    },
                    Rpc::Write(g, c) => {
                        let written = match raft_of(g) {
                            Some(raft) => write(&raft, c).await,
                            None => Written::NotLeader(None),
                        };
                        write_frame(&mut s, &written).await.is_ok()
                    }
                    Rpc::Membership(g, frame) => {
                        let answer = match (decode_one(frame.as_bytes()), &membership) {
                            (Ok(Command::Cluster(c)), Some(on)) => on(g, c).await,
                            (Ok(Command::Cluster(_)), None) => {
                                MetaAnswer::error(BrokerError::Unavailable(
                                    "this node takes no membership changes".into(),
                                ))
                            }
                            _ => MetaAnswer::error(BrokerError::Syntax(
                                "not a CLUSTER command".into(),
                            )),
                        };
                        write_frame(&mut s, &answer).await.is_ok()
                    }
                    Rpc::Consume(req) => {
                        if let Some(on) = &consume {
                            on(req, s).await;
                        }
                        return;
                    }
                    Rpc::Elect => {
                        let stood = match raft_of(META_GROUP) {
                            Some(raft) => raft.trigger().elect().await.is_ok(),
                            None => false,
                        };
                        write_frame(&mut s, &stood).await.is_ok()
                    }
                };
                if !go_on {
                    return;
                }
            }
        });
    }
}

/// Answers a request for a group this node does not run (not yet, or no
/// longer) as a stopped Raft, and ends the connection: the peer sees it
/// unreachable and tries again later.
async fn absent<T: Serialize, E: Serialize>(s: &mut (impl AsyncWrite + Unpin)) -> bool {
    let res: Result<T, RaftError<u64, E>> = Err(RaftError::Fatal(Fatal::Stopped));
    let _ = write_frame(s, &res).await;
    false
}

/// Writes the Raft's reply `res`; false when the connection is over (the
/// write failed, or the Raft stopped).
async fn answer<T: Serialize, E: Serialize>(
    s: &mut (impl AsyncWrite + Unpin),
    res: Result<T, RaftError<u64, E>>,
) -> bool {
    let stopped = matches!(res, Err(RaftError::Fatal(_)));
    write_frame(s, &res).await.is_ok() && !stopped
}

/// Makes a [`Peer`] for each node the Raft talks to, with the cluster's
/// shared secret, over TLS when `tls` says what to trust.
#[derive(Debug, Clone)]
pub(crate) struct Peers {
    /// This node's id.
    me: u64,
    secret: Arc<str>,
    tls: Option<TlsClientConfig>,
    /// The group whose Raft talks through it.
    group: u64,
}

impl Peers {
    /// Node `me`'s, for the metadata group.
    pub(crate) fn new(me: u64, secret: Arc<str>, tls: Option<TlsClientConfig>) -> Peers {
        Peers {
            me,
            secret,
            tls,
            group: META_GROUP,
        }
    }

    /// The same peers, for group `group`'s Raft.
    pub(crate) fn for_group(&self, group: u64) -> Peers {
        Peers {
            group,
            ..self.clone()
        }
    }

    /// A connection to the node at `addr`: TCP (then TLS, checking its
    /// certificate names the address's IP), and the hello with the secret.
    pub(super) async fn connect(&self, addr: &str) -> std::io::Result<Box<dyn Io>> {
        let addr: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        let mut s: Box<dyn Io> = match &self.tls {
            Some(tls) => Box::new(
                tls.connect(tcp, &addr.ip().to_string())
                    .await
                    .map_err(std::io::Error::other)?,
            ),
            None => Box::new(tcp),
        };
        let hello = Hello {
            secret: self.secret.to_string(),
            from: self.me,
        };
        write_frame(&mut s, &hello).await?;
        Ok(s)
    }
}

/// One peer: its id, address and connection.
pub(crate) struct Peer {
    target: u64,
    addr: String,
    peers: Peers,
    conn: Option<Box<dyn Io>>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("target", &self.target)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RaftNetworkFactory<TypeConfig> for Peers {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            peers: self.clone(),
            conn: None,
        }
    }
}

impl Peer {
    /// Sends `rpc` and reads its reply, connecting first if need be; an
    /// I/O error drops the connection.
    ///
    /// The connection is taken out for the call and put back only once
    /// its reply is read: a call given up on (openraft drops the future at
    /// its timeout) closes its connection with it, so a reply that comes
    /// later is never read as the next request's. (A stale "success" would
    /// count entries the peer never took as replicated.)
    async fn call<R: DeserializeOwned>(&mut self, rpc: &Rpc) -> Result<R, Unreachable> {
        let mut s = match self.conn.take() {
            Some(s) => s,
            None => self
                .peers
                .connect(&self.addr)
                .await
                .map_err(|e| Unreachable::new(&e))?,
        };
        let reply = match write_frame(&mut s, rpc).await {
            Ok(()) => read_frame::<R>(&mut s).await,
            Err(e) => Err(e),
        };
        match reply {
            Ok(r) => {
                self.conn = Some(s);
                Ok(r)
            }
            Err(e) => Err(Unreachable::new(&e)),
        }
    }

    /// Makes the call `rpc`: an I/O failure is the peer unreachable, the
    /// Raft error it answered a remote error.
    async fn request<T: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &mut self,
        rpc: &Rpc,
    ) -> Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>> {
        let reply: Result<T, RaftError<u64, E>> =
            self.call(rpc).await.map_err(RPCError::Unreachable)?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.request(&Rpc::Append(self.peers.group, rpc)).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.request(&Rpc::Snapshot(self.peers.group, rpc)).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.request(&Rpc::Vote(self.peers.group, rpc)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node that answers each request with its group number, in order,
    /// the first one late (after `late`).
    async fn slow_first(late: std::time::Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((mut s, _)) = listener.accept().await {
                let slow = std::mem::take(&mut first);
                tokio::spawn(async move {
                    let _: Hello = read_frame(&mut s).await.unwrap();
                    let mut slow = slow;
                    while let Ok(Rpc::Write(g, _)) = read_frame::<Rpc>(&mut s).await {
                        if std::mem::take(&mut slow) {
                            tokio::time::sleep(late).await;
                        }
                        if write_frame(&mut s, &g).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_call_given_up_on_leaves_no_reply_behind_for_the_next() {
        // openraft gives up on a request after its timeout (dropping the
        // call): the reply that comes later must never be taken for the
        // next request's (a stale "success" would count entries a peer
        // never took as replicated).
        let addr = slow_first(std::time::Duration::from_millis(300)).await;
        let peers = Peers::new(1, Arc::from("s"), None);
        let mut peer = Peer {
            target: 2,
            addr,
            peers,
            conn: None,
        };
        let rpc = |g| Rpc::Write(g, Payload(String::new()));
        let given_up = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            peer.call::<u64>(&rpc(1)),
        )
        .await;
        assert!(given_up.is_err(), "the first call was to time out");
        assert_eq!(peer.call::<u64>(&rpc(2)).await.unwrap(), 2);
        assert_eq!(peer.call::<u64>(&rpc(3)).await.unwrap(), 3);
    }
}
