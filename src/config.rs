//! [`Config`]: every tunable of the broker, with its documented default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::frame::{Limits, DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_LITERAL_BYTES};
use crate::store::sled_store::DEFAULT_CACHE_BYTES;

/// The default listen address: loopback only, port 5680.
pub const DEFAULT_ADDR: &str = "127.0.0.1:5680";
/// The default data directory (a sled database, created when missing).
pub const DEFAULT_DATA_DIR: &str = "./sluice-data";
/// Unacked deliveries per subscription when `SUB` does not say `prefetch=`.
pub const DEFAULT_PREFETCH: u32 = 100;
/// What one queue keeps of its waiting messages in RAM before it pages the
/// rest out to the store (persistent ones past an 8 MiB read-ahead window
/// stay on disk anyway).
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
/// The address `--http` serves when given without one: loopback only
/// (the endpoint has no authentication).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:15680";

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
    /// Per-queue RAM budget for waiting messages (bodies plus a fixed cost
    /// each); past it they are paged out to the store. Ignored in memory.
    pub queue_memory_bytes: u64,
    /// The longest a started command may take to arrive.
    pub frame_timeout: Duration,
    /// Free bytes under which storing publishes are held (0: off).
    pub disk_free_limit: u64,
    /// Where to serve `/metrics`, `/api/overview` and the dashboard
    /// (`--http`); `None` (the default): no HTTP endpoint.
    pub http: Option<SocketAddr>,
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
            http: None,
        }
    }
}
