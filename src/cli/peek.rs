//! `sluice peek` (look at a queue's waiting messages without taking them:
//! `PEEK`) and `sluice redrive` (send dead letters back where they were
//! first published: `REDRIVE`), the tools for what failed.

use crate::protocol::command::{Peek, Redrive};
use crate::protocol::Command;

use super::connect::{CommonArgs, Conn, ConnectOptions};
use super::exit::{CliError, Exit, EXIT_CODES_HELP};
use super::output::{DeliveryFormat, Out};

/// Show a queue's waiting messages without taking them.
///
/// Prints up to --count waiting messages (ready and delayed, in the order
/// they entered the queue) as `get` does: body lines, -v, or --json, where
/// each message's position in the queue stands in for a delivery tag
/// (`position=` with -v, "position" in JSON; --from takes it). Nothing
/// changes in the queue. Exits 3 when nothing waits.
///
/// Examples:
///   sluice peek jobs.dead --count 10 -v
///   sluice peek jobs --from 42 --json
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
pub struct PeekArgs {
    /// Queue to look at.
    pub(crate) queue: String,
    /// At most this many messages (1 to 1000).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) count: u32,
    /// Start at this position (as a previous peek printed it).
    #[arg(long, value_name = "POSITION")]
    pub(crate) from: Option<u64>,
    /// Print a routing line before each body.
    #[arg(short, long)]
    pub(crate) verbose: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// Send a dead-letter queue's messages back where they were first published.
///
/// Takes up to --count messages (default: all) from the head of the queue
/// and re-publishes each to the exchange and routing key in its
/// x-death-exchange and x-death-key headers; a message that was never
/// dead-lettered, or whose exchange is gone or routes it nowhere, is kept.
/// Prints `moved=<n> kept=<k>` (--json: {"moved":n,"kept":k}).
///
/// Examples:
///   sluice redrive jobs.dead
///   sluice redrive jobs.dead --count 100 --json
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
pub struct RedriveArgs {
    /// The dead-letter queue.
    pub(crate) queue: String,
    /// At most this many messages (default: all).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// Runs `sluice peek`.
pub(super) async fn peek(args: PeekArgs) -> Result<Exit, CliError> {
    let mut conn = Conn::open(&ConnectOptions::from(&args.common)).await?;
    let reply = conn
        .request(&Command::Peek(Peek {
            queue: args.queue.clone(),
            count: args.count,
            from: args.from,
        }))
        .await?;
    if reply.deliveries.is_empty() {
        return Ok(Exit::Nothing);
    }
    let mut out = Out::default();
    let format = DeliveryFormat::pick(args.common.json, args.verbose);
    for d in &reply.deliveries {
        out.peeked(format, &args.queue, d)?;
    }
    out.flush()?;
    Ok(Exit::Success)
}

/// Runs `sluice redrive`.
pub(super) async fn redrive(args: RedriveArgs) -> Result<Exit, CliError> {
    let mut conn = Conn::open(&ConnectOptions::from(&args.common)).await?;
    let reply = conn
        .request(&Command::Redrive(Redrive {
            queue: args.queue,
            count: args.count,
        }))
        .await?;
    let mut out = Out::default();
    out.reply_words(args.common.json, "", &reply.words)?;
    out.flush()?;
    Ok(Exit::Success)
}
