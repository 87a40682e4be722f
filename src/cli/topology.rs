//! `sluice declare`, `bind`, `unbind`, `delete` and `purge`: one command
//! each, its reply words printed (`jobs messages=0 consumers=0`; with
//! `--json` an object; nothing for a bare `OK`).

use std::ffi::OsString;

use crate::protocol::command::{
    Bind, DeclareExchange, DeclareQueue, DeleteExchange, DeleteQueue, ExchangeKind, Header,
    HeaderMatch, Overflow, Purge, QueueArgs, QueueMode,
};
use crate::protocol::Command;

use super::args::{os_bytes, parse_header};
use super::connect::{parse_millis, CommonArgs, Conn, ConnectOptions};
use super::exit::{CliError, Exit, EXIT_CODES_HELP};
use super::output::Out;

/// Create a queue or an exchange (or check that it exists as described).
///
/// Prints the broker's reply: for a queue `<name> messages=<n>
/// consumers=<n>` (the generated name for ""; a partitioned stream adds
/// `partitions=<n>`), with --json {"queue":...,"messages":n,"consumers":n};
/// nothing for an exchange.
///
/// Examples:
///   sluice declare queue jobs --durable --max-length 10000 --dead-letter dlx
///   sluice declare queue ledger --single-active
///   sluice declare queue clicks --stream --max-age 7d --max-bytes 10000000000
///   sluice declare queue payments --stream --partitions 4
///   sluice declare exchange logs topic --durable
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
pub struct DeclareArgs {
    #[command(subcommand)]
    #[allow(missing_docs)]
    pub(crate) what: DeclareWhat,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// `declare queue` or `declare exchange`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum DeclareWhat {
    /// Declare a queue ("" lets the broker name it).
    #[command(after_help = EXIT_CODES_HELP)]
    Queue(DeclareQueueArgs),
    /// Declare an exchange.
    #[command(after_help = EXIT_CODES_HELP)]
    Exchange(DeclareExchangeArgs),
}

/// `sluice declare queue`: the options of `DECLARE QUEUE`.
#[derive(clap::Args, Debug)]
pub(crate) struct DeclareQueueArgs {
    /// Queue name ("" asks the broker to generate one).
    pub(crate) name: String,
    /// Survive a restart (its messages are persistent by default).
    #[arg(long)]
    pub(crate) durable: bool,
    /// Belong to this connection (deleted when the command exits: of little
    /// use from the CLI).
    #[arg(long)]
    pub(crate) exclusive: bool,
    /// Delete the queue when its last subscription ends.
    #[arg(long)]
    pub(crate) auto_delete: bool,
    /// At most N messages waiting.
    #[arg(long, value_name = "N")]
    pub(crate) max_length: Option<u64>,
    /// At most N body bytes waiting.
    #[arg(long, value_name = "N")]
    pub(crate) max_bytes: Option<u64>,
    /// What a full queue does with one more message.
    #[arg(long, value_enum)]
    pub(crate) overflow: Option<OverflowArg>,
    /// Messages expire after this long (`60s`, or milliseconds).
    #[arg(long, value_parser = parse_millis, value_name = "DURATION")]
    pub(crate) ttl: Option<u64>,
    /// Delete the queue after this long unused (`10m`, or milliseconds).
    #[arg(long, value_parser = parse_millis, value_name = "DURATION")]
    pub(crate) expires: Option<u64>,
    /// Exchange that rejected, expired and dropped messages go to.
    #[arg(long, value_name = "EXCHANGE")]
    pub(crate) dead_letter: Option<String>,
    /// Routing key for dead letters (default: the message's own).
    #[arg(long, value_name = "KEY")]
    pub(crate) dead_letter_key: Option<OsString>,
    /// Deliver a message at most N times, then dead-letter it.
    #[arg(long, value_name = "N")]
    pub(crate) delivery_limit: Option<u32>,
    /// An unacknowledged delivery goes back after this long (`30s`, or ms).
    #[arg(long, value_parser = parse_millis, value_name = "DURATION")]
    pub(crate) ack_timeout: Option<u64>,
    /// Make a priority queue with levels 0 to N (1 to 255).
    #[arg(long, value_name = "N")]
    pub(crate) max_priority: Option<u8>,
    /// Drop a repeated message id within this window (`1h`, or ms).
    #[arg(long, value_parser = parse_millis, value_name = "DURATION")]
    pub(crate) dedup_window: Option<u64>,
    /// Requeues wait by delivery count: `1s,5s,30s` (the last repeats).
    #[arg(long, value_delimiter = ',', value_parser = parse_millis, value_name = "DURATION,...")]
    pub(crate) retry_delays: Vec<u64>,
    /// Only one subscription receives at a time; the others wait their
    /// turn in subscription order.
    #[arg(long, conflicts_with_all = ["groups", "stream"])]
    pub(crate) single_active: bool,
    /// Messages of one `pub --group` key go out in order, to one consumer
    /// at a time.
    #[arg(long, conflicts_with = "stream")]
    pub(crate) groups: bool,
    /// Make a stream (`type=stream`): an append-only log read by offset.
    /// It takes only --durable, --max-age, --max-bytes (retention) and
    /// --partitions; the broker refuses the other options (exit 1).
    #[arg(long, help_heading = "Streams")]
    pub(crate) stream: bool,
    /// Streams: trim messages older than this (`7d`, `12h`, or ms).
    #[arg(long, value_parser = parse_millis, value_name = "DURATION", requires = "stream", help_heading = "Streams")]
    pub(crate) max_age: Option<u64>,
    /// Streams: N partitions `<name>-0`..`<name>-<N-1>` behind a hash
    /// exchange `<name>` (publish to it with a routing key).
    #[arg(long, value_name = "N", requires = "stream", help_heading = "Streams")]
    pub(crate) partitions: Option<u32>,
    /// A cluster node: replicate the queue on N nodes (its own Raft group;
    /// 1 to 7; 1 or none: the node's own queue).
    #[arg(long, value_name = "N")]
    pub(crate) replicas: Option<u8>,
    /// Check the body of every message published to this queue through the
    /// default exchange against this schema subject's latest version
    /// (`sluice schema add` it first).
    #[arg(long, value_name = "SUBJECT")]
    pub(crate) schema: Option<String>,
}

/// `--overflow`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverflowArg {
    /// Drop (or dead-letter) the oldest message.
    DropHead,
    /// Refuse the publish (ERR QUEUE_FULL).
    RejectPublish,
    /// Hold the publisher until there is room.
    Block,
}

/// `sluice declare exchange`.
#[derive(clap::Args, Debug)]
pub(crate) struct DeclareExchangeArgs {
    /// Exchange name.
    pub(crate) name: String,
    /// Exchange type.
    #[arg(value_enum)]
    pub(crate) kind: KindArg,
    /// Survive a restart.
    #[arg(long)]
    pub(crate) durable: bool,
    /// Delete the exchange when its last binding is removed.
    #[arg(long)]
    pub(crate) auto_delete: bool,
    /// Where messages that route nowhere go.
    #[arg(long, value_name = "EXCHANGE")]
    pub(crate) alternate: Option<String>,
    /// A `hash` exchange: hash this header instead of the routing key.
    #[arg(long, value_name = "HEADER")]
    pub(crate) hash_header: Option<String>,
    /// Check every published body against this schema subject's latest
    /// version (`SCHEMA ADD` it first).
    #[arg(long, value_name = "SUBJECT")]
    pub(crate) schema: Option<String>,
}

/// An exchange type.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KindArg {
    /// Routing key equals binding key.
    Direct,
    /// Every bound queue.
    Fanout,
    /// Dotted words, `*` one word, `#` zero or more.
    Topic,
    /// Headers match the binding's (`--match all|any`).
    Headers,
    /// One queue per key, by consistent hashing (binding key = weight).
    Hash,
}

/// Bind a queue to an exchange (`unbind`: remove that binding).
///
/// Examples:
///   sluice bind errors logs "*.error"
///   sluice bind pdfs docs -H type=pdf -H lang=en --match any
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
pub struct BindArgs {
    /// Queue.
    pub(crate) queue: String,
    /// Exchange.
    pub(crate) exchange: String,
    /// Binding key (default: empty).
    pub(crate) routing_key: Option<OsString>,
    /// A header to match, `name=value` (repeatable; headers exchanges).
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub(crate) headers: Vec<Header>,
    /// Whether all headers must match, or any one.
    #[arg(long = "match", value_enum)]
    pub(crate) matching: Option<MatchArg>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// `--match`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchArg {
    /// Every header must match.
    All,
    /// One is enough.
    Any,
}

/// Delete a queue or an exchange.
///
/// Prints `messages=<n>` (the messages deleted with a queue), with --json
/// {"messages":n}; nothing for an exchange.
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct DeleteArgs {
    #[command(subcommand)]
    #[allow(missing_docs)]
    pub(crate) what: DeleteWhat,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// `delete queue` or `delete exchange`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum DeleteWhat {
    /// Delete a queue and its messages.
    #[command(after_help = EXIT_CODES_HELP)]
    Queue {
        /// Queue name.
        name: String,
        /// Only if it has no subscriptions (else ERR PRECONDITION).
        #[arg(long)]
        if_unused: bool,
        /// Only if it has no messages (else ERR PRECONDITION).
        #[arg(long)]
        if_empty: bool,
    },
    /// Delete an exchange and its bindings.
    #[command(after_help = EXIT_CODES_HELP)]
    Exchange {
        /// Exchange name.
        name: String,
        /// Only if it has no bindings (else ERR PRECONDITION).
        #[arg(long)]
        if_unused: bool,
    },
}

/// Delete every ready message of a queue; prints `messages=<n>`.
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct PurgeArgs {
    /// Queue name.
    pub(crate) queue: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// Runs `sluice declare`.
pub(super) async fn declare(args: DeclareArgs) -> Result<Exit, CliError> {
    let cmd = match args.what {
        DeclareWhat::Queue(q) => Command::DeclareQueue(DeclareQueue {
            name: q.name,
            durable: q.durable,
            exclusive: q.exclusive,
            auto_delete: q.auto_delete,
            args: QueueArgs {
                max_length: q.max_length,
                max_bytes: q.max_bytes,
                overflow: match q.overflow {
                    None | Some(OverflowArg::DropHead) => Overflow::DropHead,
                    Some(OverflowArg::RejectPublish) => Overflow::RejectPublish,
                    Some(OverflowArg::Block) => Overflow::Block,
                },
                ttl_ms: q.ttl,
                expires_ms: q.expires,
                dead_letter: q.dead_letter,
                dead_letter_key: q.dead_letter_key.map(os_bytes),
                delivery_limit: q.delivery_limit,
                ack_timeout_ms: q.ack_timeout,
                max_priority: q.max_priority,
                dedup_window_ms: q.dedup_window,
                retry_delays_ms: q.retry_delays,
                schema: q.schema,
                mode: if q.stream {
                    QueueMode::Stream
                } else if q.single_active {
                    QueueMode::SingleActive
                } else if q.groups {
                    QueueMode::Groups
                } else {
                    QueueMode::Classic
                },
                max_age_ms: q.max_age,
            },
            partitions: q.partitions,
            replicas: q.replicas,
        }),
        DeclareWhat::Exchange(e) => Command::DeclareExchange(DeclareExchange {
            name: e.name,
            kind: match e.kind {
                KindArg::Direct => ExchangeKind::Direct,
                KindArg::Fanout => ExchangeKind::Fanout,
                KindArg::Topic => ExchangeKind::Topic,
                KindArg::Headers => ExchangeKind::Headers,
                KindArg::Hash => ExchangeKind::Hash,
            },
            durable: e.durable,
            auto_delete: e.auto_delete,
            alternate: e.alternate,
            hash_header: e.hash_header,
            schema: e.schema,
        }),
    };
    one(&args.common, "queue", &cmd).await
}

/// Runs `sluice bind` (`unbind` when `unbind`).
pub(super) async fn bind(args: BindArgs, unbind: bool) -> Result<Exit, CliError> {
    let b = Bind {
        queue: args.queue,
        exchange: args.exchange,
        key: args.routing_key.map(os_bytes).unwrap_or_default(),
        headers: args.headers,
        matching: args.matching.map(|m| match m {
            MatchArg::All => HeaderMatch::All,
            MatchArg::Any => HeaderMatch::Any,
        }),
    };
    let cmd = if unbind {
        Command::Unbind(b)
    } else {
        Command::Bind(b)
    };
    one(&args.common, "", &cmd).await
}

/// Runs `sluice delete`.
pub(super) async fn delete(args: DeleteArgs) -> Result<Exit, CliError> {
    let cmd = match args.what {
        DeleteWhat::Queue {
            name,
            if_unused,
            if_empty,
        } => Command::DeleteQueue(DeleteQueue {
            name,
            if_unused,
            if_empty,
        }),
        DeleteWhat::Exchange { name, if_unused } => {
            Command::DeleteExchange(DeleteExchange { name, if_unused })
        }
    };
    one(&args.common, "", &cmd).await
}

/// Runs `sluice purge`.
pub(super) async fn purge(args: PurgeArgs) -> Result<Exit, CliError> {
    let cmd = Command::Purge(Purge { queue: args.queue });
    one(&args.common, "", &cmd).await
}

/// Connects, sends `cmd`, prints its reply words (`first` names a leading
/// positional word in JSON).
async fn one(common: &CommonArgs, first: &str, cmd: &Command) -> Result<Exit, CliError> {
    let mut conn = Conn::open(&ConnectOptions::from(common)).await?;
    let reply = conn.request(cmd).await?;
    let mut out = Out::default();
    out.reply_words(common.json, first, &reply.words)?;
    out.flush()?;
    Ok(Exit::Success)
}
