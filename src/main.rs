//! The `sluice` binary: `sluice serve` runs the broker in the foreground
//! (logs go to stderr, `RUST_LOG` respected, coloured only on a terminal
//! and without `NO_COLOR`; the first line on stdout is
//! `listening on HOST:PORT`, then, with TLS on, `listening tls on
//! HOST:PORT`); `sluice bench` measures one; `sluice pub`, `sub`, `get`,
//! ... are the client ([`sluice::cli`]).

/// `sluice bench`: the load generator (scenarios, report, `/proc` sampling).
/// It lives in the binary, not the library: nothing but `sluice bench`
/// uses it.
mod bench;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tokio::net::TcpListener;

use sluice::broker::Broker;
use sluice::config::MemoryWatermark;
use sluice::config::{Config, DEFAULT_ADDR, DEFAULT_DATA_DIR, DEFAULT_PREFETCH};
use sluice::protocol::frame::{DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_LITERAL_BYTES};

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "A small, fast AMQP-style message broker with a text protocol",
    after_help = "The client's connection options (-s/--server, --user, --password, --tls, \
                  --tls-ca, --tls-server-name, --timeout, --json) go before or after its \
                  command: `sluice -s 10.0.0.5:5680 get jobs` is `sluice get jobs -s 10.0.0.5:5680`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker in the foreground.
    Serve(ServeArgs),
    // Its help texts come from `BenchArgs` (a doc comment here would
    // replace them).
    Bench(bench::BenchArgs),
    /// The client: pub, sub, get, nack, peek, redrive, seek, declare, bind,
    /// unbind, delete, purge, stats, ls, cluster (`sluice::cli`).
    #[command(flatten)]
    Client(sluice::cli::ClientCommand),
    /// Manage users: on a data directory, or through the broker running on
    /// it (or at -s HOST:PORT) with its USER commands.
    User(sluice::cli::user::UserArgs),
}

/// Every option here is also a setting of the `--config` file (`max-line =
/// 1024`) and an environment variable (`SLUICE_MAX_LINE=1024`); see
/// `sluice::config::layered`.
#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// A TOML file of settings, named like the flags (`data-dir = "/var/lib/sluice"`);
    /// the environment (SLUICE_<SETTING>) and flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the effective configuration (as a TOML file, with where each value
    /// came from) and exit.
    #[arg(long)]
    print_config: bool,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = DEFAULT_ADDR)]
    addr: SocketAddr,
    /// Data directory (the topology in sled, messages in `log/`; created when missing).
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Keep nothing on disk: every message is transient and nothing survives a restart.
    #[arg(long)]
    in_memory: bool,
    /// Longest command line accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE_BYTES)]
    max_line: usize,
    /// Largest literal (message body) accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_LITERAL_BYTES)]
    max_literal: usize,
    /// Prefetch of a SUB that does not say prefetch=.
    #[arg(long, default_value_t = DEFAULT_PREFETCH)]
    default_prefetch: u32,
    /// Most connections served at once; more are answered ERR LIMIT and closed.
    #[arg(long, default_value_t = sluice::config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Milliseconds a command may take to arrive once it has started (a line
    /// without its end, a literal not all sent); then the connection is closed.
    #[arg(long, default_value_t = sluice::config::DEFAULT_FRAME_TIMEOUT_MS)]
    frame_timeout: u64,
    /// Free bytes on the data directory's file system under which publishes
    /// that write to the store are held until space is freed (0: off).
    #[arg(long, default_value_t = sluice::config::DEFAULT_DISK_FREE_LIMIT_BYTES)]
    disk_free_limit: u64,
    /// Bytes of disk held back in the data directory (the file disk.reserve)
    /// and released for acks, rejects, purges and deletes when free space runs
    /// out; publishes are held while it is released (0: no reserve).
    #[arg(long, default_value_t = sluice::config::DEFAULT_DISK_RESERVE_BYTES)]
    disk_reserve: u64,
    /// Milliseconds a stop (SIGTERM, SIGINT, a failed store) may take; past
    /// them the process exits with status 1 regardless.
    #[arg(long, default_value_t = sluice::shutdown::DEFAULT_SHUTDOWN_TIMEOUT.as_millis() as u64)]
    shutdown_timeout: u64,
    /// RAM all queues together may use for their waiting messages, in bytes
    /// (bodies plus about 256 bytes each); past it, new messages wait on
    /// disk and are read back as consumers drain their queues.
    #[arg(long, default_value_t = sluice::config::DEFAULT_QUEUE_MEMORY_BYTES)]
    queue_memory: u64,
    /// sled's page cache, in bytes.
    #[arg(long, default_value_t = sluice::store::sled::DEFAULT_CACHE_BYTES)]
    cache: u64,
    /// Serve TLS on a second port with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Address of the TLS port [default: the --addr host, port 5681].
    #[arg(long, requires = "tls_cert")]
    tls_addr: Option<SocketAddr>,
    /// Subscriptions one connection may hold; a SUB over it is ERR LIMIT.
    #[arg(long, default_value_t = sluice::config::DEFAULT_MAX_SUBSCRIPTIONS)]
    max_subscriptions: usize,
    /// Unacked deliveries one connection may reserve: the prefetch of its
    /// manual-ack subscriptions plus its unacked GET deliveries.
    #[arg(long, default_value_t = sluice::config::DEFAULT_MAX_UNACKED)]
    max_unacked: u64,
    /// Queues in the broker (exclusive and server-named ones too).
    #[arg(long, default_value_t = sluice::config::DEFAULT_MAX_QUEUES)]
    max_queues: usize,
    /// Exchanges in the broker (the default exchange is not counted).
    #[arg(long, default_value_t = sluice::config::DEFAULT_MAX_EXCHANGES)]
    max_exchanges: usize,
    /// Resident memory over which every PUB is held until it falls back:
    /// bytes, or a fraction of RAM with a decimal point (0.4); 0 is off.
    #[arg(long, default_value_t = sluice::config::DEFAULT_MEMORY_HIGH_WATERMARK)]
    memory_high_watermark: MemoryWatermark,
    /// Serve a broker with no users on an address other than loopback
    /// (anyone who can reach it can do anything). Without it, serve refuses.
    #[arg(long)]
    insecure_open: bool,
    /// Serve Prometheus /metrics, /api/overview and the live dashboard (/)
    /// over HTTP on this address (`--http` alone: 127.0.0.1:15680). Off by default.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = sluice::config::DEFAULT_HTTP_ADDR)]
    http: Option<SocketAddr>,
    /// This node's id in a cluster (with --cluster-addr, --peers and
    /// --cluster-secret). Without it, a single node, as ever.
    #[arg(long, requires_all = ["cluster_addr", "peers", "cluster_secret"])]
    node_id: Option<u64>,
    /// Where this node listens for the other nodes of its cluster.
    #[arg(long, requires = "node_id")]
    cluster_addr: Option<SocketAddr>,
    /// Every node of the cluster, this one included, as ID=HOST:PORT
    /// (comma-separated): where the others reach it.
    #[arg(long, requires = "node_id", value_delimiter = ',', value_parser = parse_peer)]
    peers: Vec<(u64, String)>,
    /// The secret every node of the cluster shares (prefer the environment,
    /// SLUICE_CLUSTER_SECRET, or the config file to a flag ps can show).
    #[arg(long, requires = "node_id")]
    cluster_secret: Option<String>,
    /// With --tls-cert, the nodes talk TLS; this PEM file is what a node
    /// trusts of the others' certificates [default: its own --tls-cert].
    #[arg(long, requires_all = ["node_id", "tls_cert"])]
    cluster_ca: Option<PathBuf>,
    /// This node joins a cluster that runs already (an admin adds it:
    /// `sluice cluster add <id> <ip:port>`); it never starts one, and
    /// --peers may name it alone.
    #[arg(long, requires = "node_id")]
    join: bool,
    /// A replicated queue takes a snapshot of what it holds, and purges its
    /// log behind it, every this many entries of its log.
    #[arg(long, default_value_t = sluice::config::DEFAULT_SNAPSHOT_EVERY, value_parser = clap::value_parser!(u64).range(10..))]
    snapshot_every: u64,
}

/// `ID=HOST:PORT`: a node of the cluster.
fn parse_peer(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected ID=HOST:PORT"))?;
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: the node id must be a number"))?;
    let addr = addr.trim();
    if addr.parse::<SocketAddr>().is_err() {
        return Err(format!(
            "{s:?}: {addr:?} is not HOST:PORT (an IP address and a port)"
        ));
    }
    Ok((id, addr.to_string()))
}

/// jemalloc instead of glibc's malloc: a broker allocates and frees small
/// objects per message on every core, where glibc fragments and keeps
/// freed memory (a drained 1M-message backlog left RSS at its peak).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options: a background thread gives freed pages back to the
/// system after its decay time (10 s), so the memory of a burst (10,000
/// connections that came and went) does not stay in RSS until the next
/// allocation happens to trigger a purge.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 23] = b"background_thread:true\0";

/// Whether the log (on stderr) is coloured: only on a terminal, and not
/// when `NO_COLOR` is set to anything but the empty string
/// (<https://no-color.org>). A log piped to a file or a supervisor's
/// journal gets no escape codes.
fn log_colours(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(log_colours(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let layered = match sluice::config::layered::parse(
        Cli::command(),
        "serve",
        sluice::cli::hoist_global_flags(std::env::args_os().collect()),
    ) {
        Ok(l) => l,
        Err(sluice::config::layered::LayerError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("sluice: error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::from_arg_matches(&layered.matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Serve(args) if args.print_config => {
            print!(
                "{}",
                sluice::config::layered::describe(&layered, &Cli::command(), "serve")
            );
            Ok(())
        }
        Command::Serve(args) => serve(args),
        Command::Bench(args) => bench::run(args),
        Command::Client(command) => return sluice::cli::run(command),
        Command::User(args) => sluice::cli::user::run(args).map(|out| print!("{out}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Under this much free space, a store that fails to open with an I/O
/// error is said to be on a full disk.
const FULL_DISK_BYTES: u64 = 1024 * 1024;

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config {
        addr: args.addr,
        data_dir: args.data_dir,
        in_memory: args.in_memory,
        default_prefetch: args.default_prefetch.max(1),
        max_connections: args.max_connections.max(1),
        queue_memory_bytes: args.queue_memory.max(1),
        cache_bytes: args.cache,
        frame_timeout: std::time::Duration::from_millis(args.frame_timeout.max(1)),
        disk_free_limit: args.disk_free_limit,
        disk_reserve: args.disk_reserve,
        shutdown_timeout: std::time::Duration::from_millis(args.shutdown_timeout.max(1)),
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| sluice::tls::TlsFiles { cert, key }),
        tls_addr: args.tls_addr,
        max_subscriptions: args.max_subscriptions,
        max_unacked: args.max_unacked,
        max_queues: args.max_queues,
        max_exchanges: args.max_exchanges,
        memory_high_watermark: args.memory_high_watermark,
        insecure_open: args.insecure_open,
        http: args.http,
        cluster: match (args.node_id, args.cluster_addr, args.cluster_secret) {
            (Some(node_id), Some(addr), Some(secret)) => Some(sluice::config::ClusterConfig {
                node_id,
                addr,
                peers: args.peers.into_iter().collect(),
                secret,
                ca: args.cluster_ca,
                join: args.join,
                snapshot_every: args.snapshot_every,
            }),
            _ => None,
        },
        ..Config::default()
    };
    config.limits.max_line = args.max_line.max(64);
    config.limits.max_literal = args.max_literal;
    // Before any other thread exists: the signals go to a thread of their
    // own from here on, and a stop that hangs ends at its deadline.
    let deadline = sluice::shutdown::Deadline::new();
    let signals = sluice::shutdown::Signals::install(deadline.clone(), config.shutdown_timeout)
        .context("taking SIGINT and SIGTERM")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // Before the store is opened: a bad certificate is a quick, clear error.
    let acceptor = config.tls.as_ref().map(sluice::tls::acceptor).transpose()?;
    let result = runtime.block_on(async move {
        let broker = Broker::open(config.clone()).map_err(|e| {
            let dir = config.data_dir.display();
            let full = sluice::broker::alarm::free_bytes(&config.data_dir)
                .is_ok_and(|free| free < FULL_DISK_BYTES);
            if full && matches!(e, sluice::store::StoreError::Io(_)) {
                anyhow::anyhow!(
                    "opening the data directory {dir}: {e}; its disk is full: free some space \
                     (or grow the disk) and start again; nothing stored is lost"
                )
            } else {
                anyhow::Error::new(e).context(format!("opening the data directory {dir}"))
            }
        })?;
        let mut addrs = vec![config.addr];
        if config.tls.is_some() {
            addrs.push(config.tls_addr());
        }
        broker.check_exposure(&addrs)?;
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("listening on {}", config.addr))?;
        let local = listener.local_addr()?;
        let tls = match acceptor {
            Some(acceptor) => {
                let addr = config.tls_addr();
                let l = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening (TLS) on {addr}"))?;
                Some((l, acceptor))
            }
            None => None,
        };
        // One write for both lines: a reader that takes only the first
        // and closes the pipe cannot make the second one fail.
        let mut lines = format!("listening on {local}\n");
        if let Some((l, _)) = &tls {
            lines.push_str(&format!("listening tls on {}\n", l.local_addr()?));
        }
        let http = match config.http {
            Some(addr) => {
                let (bound, task) = sluice::http::start(addr, broker.clone())
                    .await
                    .with_context(|| format!("serving HTTP (--http) on {addr}"))?;
                lines.push_str(&format!("http on {bound}\n"));
                tracing::info!(addr = %bound, "dashboard at http://{bound}/, metrics at /metrics");
                Some(task)
            }
            None => None,
        };
        let cluster = match &config.cluster {
            Some(c) => {
                let node = sluice::cluster::ClusterNode::start(&broker, c)
                    .await
                    .context("starting the cluster node")?;
                lines.push_str(&format!("cluster on {}\n", node.addr()));
                tracing::info!(node = c.node_id, addr = %node.addr(), "cluster node started");
                Some(node)
            }
            None => None,
        };
        print!("{lines}");
        tracing::info!(addr = %local, data_dir = %config.data_dir.display(), in_memory = config.in_memory, "sluice serving");
        let listeners = sluice::server::Listeners {
            plain: listener,
            tls,
        };
        let result =
            sluice::server::serve(listeners, broker, signals.received(), deadline).await;
        if let Some(task) = http {
            task.abort();
        }
        if let Some(node) = cluster {
            node.stop().await;
        }
        result.map_err(anyhow::Error::from)
    });
    // Blocking tasks still running (a read of a stuck disk, say) are not
    // waited for: the stop is over.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

#[cfg(test)]
mod tests {
    use super::log_colours;
    use std::ffi::OsStr;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(log_colours(true, None));
        assert!(
            log_colours(true, Some(OsStr::new(""))),
            "NO_COLOR empty is unset"
        );
        assert!(!log_colours(true, Some(OsStr::new("1"))));
        assert!(!log_colours(false, None), "piped");
        assert!(!log_colours(false, Some(OsStr::new("1"))));
    }
}
