//! The command-line client: `sluice pub|sub|get|seek|declare|bind|unbind|
//! delete|purge|stats|ls`, scriptable in the manner of `nats` and `redis-cli`.
//! Each command connects with [`crate::client::Client`], sends its
//! command(s), prints on stdout (text, or one JSON value per line with
//! `--json`) and ends with an exit code that scripts can test
//! ([`Exit`], documented in README.md and each command's `--help`).
//!
//! Layout:
//!
//! - this file: [`ClientCommand`] (the subcommands, flattened into the
//!   binary's) and [`run`];
//! - `connect`: the shared options (`CommonArgs`: `--server`, `--user`,
//!   `--password`, `--tls*`, `--timeout`, `--json`), `ConnectOptions` and
//!   the connected, time-bounded `Conn`;
//! - `exit`: [`Exit`] codes and `CliError`;
//! - `output`: stdout, delivery and reply printing, the JSON conventions;
//! - `publish`: `pub`; `consume`: `sub` and `get`; `seek`: `seek` (a
//!   stream consumer group's position); `topology`: `declare`,
//!   `bind`, `unbind`, `delete`, `purge`; `inspect`: `stats` and `ls`;
//!   `args`: argument parsers they share;
//! - [`user`]: `sluice user ...`, which works on a stopped broker's data
//!   directory instead of connecting (moved here from `auth/cli.rs`).

use std::process::ExitCode;

mod args;
mod cluster;
mod connect;
mod consume;
mod exit;
mod inspect;
mod output;
mod publish;
mod seek;
mod topology;
pub mod user;

pub(crate) use consume::{GetArgs, SubArgs};
pub(crate) use exit::Exit;
pub(crate) use inspect::{LsArgs, StatsArgs};
pub(crate) use publish::PubArgs;
pub(crate) use seek::SeekArgs;
pub(crate) use topology::{BindArgs, DeclareArgs, DeleteArgs, PurgeArgs};

/// The client subcommands of the `sluice` binary.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Publish a message, or one per line of stdin (--lines).
    Pub(PubArgs),
    /// Subscribe to a queue and print messages as they arrive.
    Sub(SubArgs),
    /// Fetch messages once (exit 3 when there are none).
    Get(GetArgs),
    /// Move a stream consumer group to another offset (replay).
    Seek(SeekArgs),
    /// Declare a queue or an exchange.
    #[command(subcommand_required = true)]
    Declare(DeclareArgs),
    /// Bind a queue to an exchange.
    Bind(BindArgs),
    /// Remove a binding.
    Unbind(BindArgs),
    /// Delete a queue or an exchange.
    #[command(subcommand_required = true)]
    Delete(DeleteArgs),
    /// Delete a queue's ready messages.
    Purge(PurgeArgs),
    /// Show broker or queue statistics.
    Stats(StatsArgs),
    /// List queues, exchanges, bindings, connections or consumers.
    Ls(LsArgs),
    /// A cluster: a node's view of it, and changes to its members.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

/// Runs a client command to its exit code; errors are printed on stderr
/// as `sluice: <CODE> <message>` (server errors) or `sluice: <message>`.
pub fn run(command: ClientCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice: starting the runtime: {e}");
            return Exit::Failed.into();
        }
    };
    let result = runtime.block_on(async move {
        match command {
            ClientCommand::Pub(a) => publish::run(a).await,
            ClientCommand::Sub(a) => consume::sub(a).await,
            ClientCommand::Get(a) => consume::get(a).await,
            ClientCommand::Seek(a) => seek::run(a).await,
            ClientCommand::Declare(a) => topology::declare(a).await,
            ClientCommand::Bind(a) => topology::bind(a, false).await,
            ClientCommand::Unbind(a) => topology::bind(a, true).await,
            ClientCommand::Delete(a) => topology::delete(a).await,
            ClientCommand::Purge(a) => topology::purge(a).await,
            ClientCommand::Stats(a) => inspect::stats(a).await,
            ClientCommand::Ls(a) => inspect::ls(a).await,
            ClientCommand::Cluster(c) => cluster::cluster(c).await,
        }
    });
    // Don't wait for stdin readers (tokio reads stdin on a blocking thread).
    runtime.shutdown_background();
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            if !e.is_quiet() {
                eprintln!("sluice: {e}");
            }
            e.exit().into()
        }
    }
}
