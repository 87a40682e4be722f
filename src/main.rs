//! The `sluice` binary: `sluice serve` runs the broker in the foreground.
//! Logs go to stderr (`RUST_LOG` respected); the first line on stdout is
//! `listening on HOST:PORT`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use sluice::broker::Broker;
use sluice::config::{Config, DEFAULT_ADDR, DEFAULT_DATA_DIR, DEFAULT_PREFETCH};
use sluice::protocol::frame::{DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_LITERAL_BYTES};

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "A small, fast AMQP-style message broker with a text protocol"
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
    Bench(sluice::bench::BenchArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = DEFAULT_ADDR)]
    addr: SocketAddr,
    /// Data directory (a sled database, created when missing).
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
    /// RAM one queue may use for its waiting messages, in bytes (bodies plus
    /// about 256 bytes each); past it, messages wait on disk and are read
    /// back as consumers drain the queue.
    #[arg(long, default_value_t = sluice::config::DEFAULT_QUEUE_MEMORY_BYTES)]
    queue_memory: u64,
    /// sled's page cache, in bytes.
    #[arg(long, default_value_t = sluice::store::sled_store::DEFAULT_CACHE_BYTES)]
    cache: u64,
    /// Serve Prometheus /metrics, /api/overview and the live dashboard (/)
    /// over HTTP on this address (`--http` alone: 127.0.0.1:15680). Off by default.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = sluice::config::DEFAULT_HTTP_ADDR)]
    http: Option<SocketAddr>,
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Bench(args) => sluice::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

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
        http: args.http,
        ..Config::default()
    };
    config.limits.max_line = args.max_line.max(64);
    config.limits.max_literal = args.max_literal;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let broker = Broker::open(config.clone())
            .with_context(|| format!("opening the data directory {}", config.data_dir.display()))?;
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("listening on {}", config.addr))?;
        let local = listener.local_addr()?;
        println!("listening on {local}");
        let http = match config.http {
            Some(addr) => {
                let (bound, task) = sluice::http::start(addr, broker.clone())
                    .await
                    .with_context(|| format!("serving HTTP (--http) on {addr}"))?;
                println!("http on {bound}");
                tracing::info!(addr = %bound, "dashboard at http://{bound}/, metrics at /metrics");
                Some(task)
            }
            None => None,
        };
        tracing::info!(addr = %local, data_dir = %config.data_dir.display(), in_memory = config.in_memory, "sluice serving");
        let result = sluice::server::run(listener, broker, shutdown_signal()).await;
        if let Some(task) = http {
            task.abort();
        }
        result
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("signal received");
}
