//! `sluice cluster status|add|remove|transfer-leader`: a cluster node's
//! view of its cluster (`STATS`'s `cluster_*` lines), and the membership
//! changes (`CLUSTER ADD|REMOVE|TRANSFER`), sent to any node.

use std::time::Duration;

use crate::protocol::command::{ClusterCommand as Change, Stats};
use crate::protocol::Command;

use super::connect::{CommonArgs, Conn, ConnectOptions};
use super::exit::{CliError, Exit, EXIT_CODES_HELP};
use super::inspect::{parse_key_values, request};
use super::output::Out;

/// A cluster node's view of its cluster.
///
/// Prints this node's view of the cluster's metadata group (`STATS`'s
/// `cluster_*` lines, without the prefix): node_id, state, leader, term,
/// last_log_index, last_applied, members; --json prints one object.
/// Fails on a broker that is not a cluster node.
///
/// Examples:
///   sluice cluster status
///   sluice cluster status -s 10.0.0.2:5680 --json
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
pub struct ClusterStatusArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// `sluice cluster ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// This node's view of the cluster: its state, the leader, the term,
    /// its log and the members.
    Status(ClusterStatusArgs),
    /// Add a node (started with --join) to the cluster.
    Add(AddArgs),
    /// Remove a node from the cluster's members.
    Remove(NodeArgs),
    /// Make a node the leader.
    TransferLeader(NodeArgs),
}

/// Add a node to the cluster, online.
///
/// The node must run already, started with --join and its own
/// --node-id and --cluster-addr (and the cluster's secret). It joins as a
/// learner, catches up with the cluster's log, then votes; this waits
/// for all of that (up to a minute) and prints the members.
///
/// Examples:
///   sluice cluster add 4 10.0.0.4:7001
///   sluice cluster add 4 127.0.0.1:7004 -s 127.0.0.1:5701
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
pub struct AddArgs {
    /// The new node's id.
    id: u64,
    /// Where it listens for the other nodes (its --cluster-addr).
    addr: std::net::SocketAddr,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// A node of the cluster: remove it, or make it the leader.
///
/// remove: the node leaves the voting members (stop its process after);
/// prints the members. transfer-leader: the leader hands over to the node
/// (about 1.5 s: it waits out its lease first); prints the leader.
///
/// Examples:
///   sluice cluster remove 3
///   sluice cluster transfer-leader 2 -s 127.0.0.1:5701
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
pub struct NodeArgs {
    /// The node's id.
    id: u64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// How long a membership change may take beyond the usual timeout (a
/// learner catching up).
const CHANGE_TIME: Duration = Duration::from_secs(70);

/// Runs `sluice cluster ...`.
pub(super) async fn cluster(command: ClusterCommand) -> Result<Exit, CliError> {
    let (common, change) = match command {
        ClusterCommand::Status(args) => return status(args).await,
        ClusterCommand::Add(a) => (
            a.common,
            Change::Add {
                id: a.id,
                addr: a.addr,
            },
        ),
        ClusterCommand::Remove(a) => (a.common, Change::Remove(a.id)),
        ClusterCommand::TransferLeader(a) => (a.common, Change::Transfer(a.id)),
    };
    let mut conn = Conn::open(&ConnectOptions::from(&common)).await?;
    let h = conn.client.send_command(&Command::Cluster(change));
    conn.flush().await?;
    let reply = conn.wait_longer(h, CHANGE_TIME).await?;
    let words = reply.words.join(" ");
    let mut out = Out::default();
    if common.json {
        let lines: String = reply
            .words
            .iter()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| format!("{k} {v}\n"))
            .collect();
        out.json(&parse_key_values(&lines))?;
    } else {
        out.bytes(format!("{words}\n").as_bytes())?;
    }
    out.flush()?;
    Ok(Exit::Success)
}

/// Runs `sluice cluster status`.
async fn status(args: ClusterStatusArgs) -> Result<Exit, CliError> {
    let reply = request(&args.common, &Command::Stats(Stats { queue: None })).await?;
    let text = reply
        .data
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let lines: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("cluster_"))
        .map(|l| format!("{l}\n"))
        .collect();
    if lines.is_empty() {
        return Err(CliError::Usage(
            "this broker is not a cluster node (sluice serve --node-id ...)".into(),
        ));
    }
    let mut out = Out::default();
    if args.common.json {
        out.json(&parse_key_values(&lines))?;
    } else {
        out.bytes(lines.as_bytes())?;
    }
    out.flush()?;
    Ok(Exit::Success)
}
