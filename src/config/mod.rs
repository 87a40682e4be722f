//! [`Config`]: every tunable of the broker, with its documented default;
//! [`layered`]: how `sluice serve` puts them together from a TOML file, the
//! environment and flags.

pub mod layered;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::frame::{Limits, DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_LITERAL_BYTES};
use crate::store::sled::DEFAULT_CACHE_BYTES;
use crate::tls::{TlsFiles, DEFAULT_TLS_PORT};

/// The default listen address: loopback only, port 5680.
pub const DEFAULT_ADDR: &str = "127.0.0.1:5680";
/// The default data directory (the topology in sled, messages in `log/`; created when missing).
pub const DEFAULT_DATA_DIR: &str = "./sluice-data";
/// Unacked deliveries per subscription when `SUB` does not say `prefetch=`.
pub const DEFAULT_PREFETCH: u32 = 100;
/// What all queues together keep of their waiting messages in RAM before
/// new ones are paged out to the store (and each queue's persistent ones
/// past an 8 MiB read-ahead window stay on disk anyway).
pub const DEFAULT_QUEUE_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// Connections served at once; more are answered `ERR LIMIT` and closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// How long a command may take to arrive once its first byte has: a line
/// without its end, or a literal not all here, after this long closes the
/// connection (`ERR BAD_FRAME`). Slowloris clients hold nothing for longer.
pub const DEFAULT_FRAME_TIMEOUT_MS: u64 = 30_000;
/// Free space on the data directory's file system under which publishes
/// that write to the store are held (RabbitMQ's `disk_free_limit` is 50 MB).
pub const DEFAULT_DISK_FREE_LIMIT_BYTES: u64 = 64 * 1024 * 1024;
/// The disk reserve (`--disk-reserve`): a file of this many bytes in the
/// data directory, released for acks, rejects, purges and deletes when
/// free space runs out (see [`crate::broker::reserve`]).
pub const DEFAULT_DISK_RESERVE_BYTES: u64 = 32 * 1024 * 1024;
/// Whether a broker with no users may listen beyond loopback: no (see
/// [`crate::auth::check_exposure`]).
pub(crate) const DEFAULT_INSECURE_OPEN: bool = false;

/// Subscriptions one connection may hold; a `SUB` over it is `ERR LIMIT`.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 1_000;
/// Unacked deliveries one connection may have reserved: the `prefetch` of
/// its manual-ack subscriptions plus its unacked `GET` deliveries. The
/// default lets a connection use its whole subscription budget at the
/// default prefetch (1,000 × 100); past it a `SUB` or `GET` is `ERR LIMIT`.
pub const DEFAULT_MAX_UNACKED: u64 = 100_000;
/// Queues in the broker (exclusive and server-named ones included); a
/// `DECLARE QUEUE` of a new one over it is `ERR LIMIT`. Leaves every one
/// of the default 10,000 connections room for a handful of its own.
pub const DEFAULT_MAX_QUEUES: usize = 100_000;
/// Exchanges in the broker (declared ones: the default exchange is not
/// counted); a `DECLARE EXCHANGE` of a new one over it is `ERR LIMIT`.
pub const DEFAULT_MAX_EXCHANGES: usize = 10_000;
/// The memory high-watermark: above this resident memory, every `PUB` is
/// held (`NOTICE blocked memory`). A fraction of the machine's RAM (or of
/// the cgroup's limit, if lower), as RabbitMQ's `vm_memory_high_watermark`.
pub const DEFAULT_MEMORY_HIGH_WATERMARK: MemoryWatermark = MemoryWatermark::Fraction(0.4);
/// The address `--http` serves when given without one: loopback only
/// (the endpoint has no authentication).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:15680";

/// `--memory-high-watermark`: a number of bytes, or a fraction of RAM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryWatermark {
    /// This many bytes of resident memory (`0`: off).
    Bytes(u64),
    /// This fraction of the machine's RAM, or of the cgroup's memory limit
    /// if that is lower (`0.4` is RabbitMQ's default).
    Fraction(f64),
}

impl std::str::FromStr for MemoryWatermark {
    type Err = String;

    /// `1073741824` (bytes; `0` is off) or `0.4` (a fraction of RAM, with
    /// a decimal point, at most 1).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.contains('.') {
            match s.parse::<f64>() {
                Ok(f) if (0.0..=1.0).contains(&f) => Ok(MemoryWatermark::Fraction(f)),
                _ => Err(format!(
                    "{s:?}: a fraction of RAM is between 0.0 and 1.0 (e.g. 0.4)"
                )),
            }
        } else {
            s.parse::<u64>().map(MemoryWatermark::Bytes).map_err(|_| {
                format!("{s:?}: expected bytes (e.g. 2147483648) or a fraction of RAM (e.g. 0.4)")
            })
        }
    }
}

impl std::fmt::Display for MemoryWatermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryWatermark::Bytes(b) => write!(f, "{b}"),
            MemoryWatermark::Fraction(x) if x.fract() == 0.0 => write!(f, "{x:.1}"),
            MemoryWatermark::Fraction(x) => write!(f, "{x}"),
        }
    }
}

/// Broker configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The sled directory.
    pub data_dir: PathBuf,
    /// Keep nothing on disk (every message transient, nothing survives).
    pub in_memory: bool,
    /// Line and literal limits.
    pub limits: Limits,
    /// Default prefetch for `SUB`.
    pub default_prefetch: u32,
    /// Maximum concurrent connections.
    pub max_connections: usize,
    /// sled page-cache size in bytes.
    pub cache_bytes: u64,
    /// The broker-wide RAM budget for waiting messages, every queue
    /// together (bodies plus a fixed cost each); past it new ones are paged
    /// out to the store. Ignored in memory.
    pub queue_memory_bytes: u64,
    /// The longest a started command may take to arrive.
    pub frame_timeout: Duration,
    /// Free bytes under which storing publishes are held (0: off).
    pub disk_free_limit: u64,
    /// Bytes of disk held back for settling on a full disk (0: none).
    pub disk_reserve: u64,
    /// How long a stop (a signal, a failed store) may take before the
    /// process ends regardless (see [`crate::shutdown`]).
    pub shutdown_timeout: Duration,
    /// TLS certificate and key; `None`: no TLS port.
    pub tls: Option<TlsFiles>,
    /// The TLS port's address; `None`: the `addr` host, port 5681.
    pub tls_addr: Option<SocketAddr>,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// Unacked deliveries a connection may reserve (manual-ack prefetch
    /// plus unacked `GET` deliveries).
    pub max_unacked: u64,
    /// Queues in the broker.
    pub max_queues: usize,
    /// Exchanges in the broker.
    pub max_exchanges: usize,
    /// Resident memory above which every `PUB` is held.
    pub memory_high_watermark: MemoryWatermark,
    /// Serve a broker that has no users on addresses other than loopback
    /// (`--insecure-open`; default [`DEFAULT_INSECURE_OPEN`]: refuse).
    pub insecure_open: bool,
    /// Where to serve `/metrics`, `/api/overview` and the dashboard
    /// (`--http`); `None` (the default): no HTTP endpoint.
    pub http: Option<SocketAddr>,
    /// This node's place in a cluster (`--node-id`, `--cluster-addr`,
    /// `--peers`, `--cluster-secret`); `None` (the default): a single node.
    pub cluster: Option<ClusterConfig>,
}

/// A node's cluster settings.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's id (`--node-id`), one of `peers`.
    pub node_id: u64,
    /// Where this node listens for the other nodes (`--cluster-addr`).
    pub addr: SocketAddr,
    /// Every node of the cluster, this one included: id and the address
    /// the others reach it at (`--peers 1=host:port,2=...`).
    pub peers: std::collections::BTreeMap<u64, String>,
    /// The secret every node of the cluster shares (`--cluster-secret`).
    pub secret: String,
    /// What a node trusts of the others' certificates when the nodes talk
    /// TLS (`--cluster-ca`; default: the node's own `--tls-cert`, for a
    /// certificate all nodes share).
    pub ca: Option<PathBuf>,
    /// `--join`: the node joins a running cluster when an admin adds it,
    /// and never starts one.
    pub join: bool,
    /// `--snapshot-every`: a replicated queue takes a snapshot (and its log
    /// is purged behind it) every this many entries of its log.
    pub snapshot_every: u64,
}

/// A replicated queue's snapshot interval, in log entries, unless told.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 20_000;

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node_id", &self.node_id)
            .field("addr", &self.addr)
            .field("peers", &self.peers)
            .field("secret", &"<hidden>")
            .field("ca", &self.ca)
            .field("join", &self.join)
            .finish()
    }
}

impl Config {
    /// Where the TLS port listens: `tls_addr`, else the `addr` host with
    /// port 5681.
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls_addr
            .unwrap_or_else(|| SocketAddr::new(self.addr.ip(), DEFAULT_TLS_PORT))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 5680)),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            in_memory: false,
            limits: Limits {
                max_line: DEFAULT_MAX_LINE_BYTES,
                max_literal: DEFAULT_MAX_LITERAL_BYTES,
            },
            default_prefetch: DEFAULT_PREFETCH,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            cache_bytes: DEFAULT_CACHE_BYTES,
            queue_memory_bytes: DEFAULT_QUEUE_MEMORY_BYTES,
            frame_timeout: Duration::from_millis(DEFAULT_FRAME_TIMEOUT_MS),
            disk_free_limit: DEFAULT_DISK_FREE_LIMIT_BYTES,
            disk_reserve: DEFAULT_DISK_RESERVE_BYTES,
            shutdown_timeout: crate::shutdown::DEFAULT_SHUTDOWN_TIMEOUT,
            tls: None,
            tls_addr: None,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            max_unacked: DEFAULT_MAX_UNACKED,
            max_queues: DEFAULT_MAX_QUEUES,
            max_exchanges: DEFAULT_MAX_EXCHANGES,
            memory_high_watermark: DEFAULT_MEMORY_HIGH_WATERMARK,
            insecure_open: DEFAULT_INSECURE_OPEN,
            http: None,
            cluster: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moved from `broker/alarm.rs` with `MemoryWatermark`.
    #[test]
    fn watermark_parses_bytes_and_fractions() {
        assert_eq!("0".parse(), Ok(MemoryWatermark::Bytes(0)));
        assert_eq!("1048576".parse(), Ok(MemoryWatermark::Bytes(1 << 20)));
        assert_eq!("0.4".parse(), Ok(MemoryWatermark::Fraction(0.4)));
        assert!("1.5".parse::<MemoryWatermark>().is_err());
        assert!("-1".parse::<MemoryWatermark>().is_err());
        assert!("lots".parse::<MemoryWatermark>().is_err());
        for s in ["0.4", "1.0", "1048576"] {
            let w: MemoryWatermark = s.parse().expect("parses");
            assert_eq!(w.to_string(), s);
        }
    }
}
