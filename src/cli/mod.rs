//! The command-line client: `sluice pub|sub|get|nack|peek|redrive|seek|
//! declare|bind|unbind|delete|purge|stats|ls|schema|cluster`, scriptable in the manner of `nats` and `redis-cli`.
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
//! - `publish`: `pub`; `consume`: `sub`, `get` and `nack`; `peek`:
//!   `peek` and `redrive` (what failed); `seek`: `seek` (a
//!   stream consumer group's position); `topology`: `declare`,
//!   `bind`, `unbind`, `delete`, `purge`; `inspect`: `stats` and `ls`;
//!   `schema`: `schema add|get|list|delete` (the schema registry);
//!   `args`: argument parsers they share;
//! - [`user`]: `sluice user ...`, which works on a stopped broker's data
//!   directory instead of connecting (moved here from `auth/cli.rs`).

use std::ffi::OsString;
use std::process::ExitCode;

mod args;
mod cluster;
mod connect;
mod consume;
mod exit;
mod inspect;
mod output;
mod peek;
mod publish;
mod schema;
mod seek;
mod topology;
pub mod user;

pub(crate) use consume::{GetArgs, NackArgs, SubArgs};
pub(crate) use exit::Exit;
pub(crate) use inspect::{LsArgs, StatsArgs};
pub(crate) use peek::{PeekArgs, RedriveArgs};
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
    /// Fetch messages and NACK them: retry later, or dead-letter.
    Nack(NackArgs),
    /// Show a queue's waiting messages without taking them.
    Peek(PeekArgs),
    /// Send dead letters back where they were first published.
    Redrive(RedriveArgs),
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
    /// List queues, exchanges, bindings, connections, consumers, nodes,
    /// groups or schemas.
    Ls(LsArgs),
    /// The schema registry: add, get, list and delete JSON Schema versions.
    #[command(subcommand)]
    Schema(schema::SchemaCommandArgs),
    /// A cluster: a node's view of it, and changes to its members.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

/// The connection and output options every client command takes
/// ([`connect::CommonArgs`]), and whether each takes a value.
const GLOBAL_FLAGS: &[(&str, bool)] = &[
    ("-s", true),
    ("--server", true),
    ("--user", true),
    ("--password", true),
    ("--tls", false),
    ("--tls-ca", true),
    ("--tls-server-name", true),
    ("--timeout", true),
    ("--json", false),
];

/// Subcommands that take no connection options: they are left alone, so
/// that clap refuses `sluice -s HOST serve` as it always did.
const NOT_CLIENTS: &[&str] = &["serve", "user"];

/// Moves the connection options written before the subcommand (`sluice -s
/// HOST:PORT get q`, `sluice --json ls queues`) to the end of the command
/// line (before a `--`, if any), where the subcommand's own parser takes
/// them, so they work in either place. Each client subcommand (and every
/// `sluice bench` scenario) declares these options itself, in its
/// innermost subcommand (`sluice cluster status`, `sluice declare queue`),
/// so clap alone would take them only after it. Anything else before the
/// subcommand (`--help`, `--version`, an unknown flag) stops the search and
/// is left where it is, for clap to handle.
pub fn hoist_global_flags(args: Vec<OsString>) -> Vec<OsString> {
    // args[0] is the program; the flags are args[1..command].
    let mut command = 1;
    while let Some(arg) = args.get(command).and_then(|a| a.to_str()) {
        let (name, inline_value) = match arg.split_once('=') {
            Some((n, _)) if n.starts_with("--") => (n, true),
            _ if arg.starts_with("-s") && arg.len() > 2 => ("-s", true),
            _ => (arg, false),
        };
        let Some(&(_, takes_value)) = GLOBAL_FLAGS.iter().find(|(f, _)| *f == name) else {
            break;
        };
        if inline_value && !takes_value {
            break;
        }
        let len = if takes_value && !inline_value { 2 } else { 1 };
        if command + len > args.len() {
            break;
        }
        command += len;
    }
    let Some(name) = args.get(command).and_then(|a| a.to_str()) else {
        return args;
    };
    if command == 1 || name.starts_with('-') || NOT_CLIENTS.contains(&name) {
        return args;
    }
    let rest = &args[command..];
    let end = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    let mut out = vec![args[0].clone()];
    out.extend_from_slice(&rest[..end]);
    out.extend_from_slice(&args[1..command]);
    out.extend_from_slice(&rest[end..]);
    out
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
            ClientCommand::Nack(a) => consume::nack(a).await,
            ClientCommand::Peek(a) => peek::peek(a).await,
            ClientCommand::Redrive(a) => peek::redrive(a).await,
            ClientCommand::Seek(a) => seek::run(a).await,
            ClientCommand::Declare(a) => topology::declare(a).await,
            ClientCommand::Bind(a) => topology::bind(a, false).await,
            ClientCommand::Unbind(a) => topology::bind(a, true).await,
            ClientCommand::Delete(a) => topology::delete(a).await,
            ClientCommand::Purge(a) => topology::purge(a).await,
            ClientCommand::Stats(a) => inspect::stats(a).await,
            ClientCommand::Ls(a) => inspect::ls(a).await,
            ClientCommand::Cluster(c) => cluster::cluster(c).await,
            ClientCommand::Schema(c) => schema::schema(c).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hoist(line: &str) -> String {
        let args = line.split(' ').map(OsString::from).collect();
        let out: Vec<String> = hoist_global_flags(args)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        out.join(" ")
    }

    #[test]
    fn connection_flags_before_the_subcommand_move_after_it() {
        assert_eq!(hoist("sluice -s h:1 get q"), "sluice get q -s h:1");
        assert_eq!(
            hoist("sluice --server=h:1 --json --timeout 2s ls queues"),
            "sluice ls queues --server=h:1 --json --timeout 2s"
        );
        assert_eq!(hoist("sluice -sh:1 get q"), "sluice get q -sh:1");
        assert_eq!(
            hoist("sluice --user u --password p --tls --tls-ca c.pem --tls-server-name n get q"),
            "sluice get q --user u --password p --tls --tls-ca c.pem --tls-server-name n"
        );
        assert_eq!(
            hoist("sluice -s h:1 pub x k -- -body"),
            "sluice pub x k -s h:1 -- -body"
        );
        assert_eq!(
            hoist("sluice -s h:1 bench queue -n 5"),
            "sluice bench queue -n 5 -s h:1"
        );
    }

    #[test]
    fn anything_else_is_left_for_clap() {
        for line in [
            "sluice get q -s h:1",
            "sluice -s h:1 serve",
            "sluice -s h:1 user list",
            "sluice -s",
            "sluice -s h:1",
            "sluice --help",
            "sluice -s h:1 --bogus get q",
            "sluice --json=yes get q",
            "sluice -v -s h:1 get q",
        ] {
            assert_eq!(hoist(line), line);
        }
    }
}
