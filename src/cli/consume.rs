//! `sluice sub` (a subscription, printing each delivery as it arrives),
//! `sluice get` (one pull) and `sluice nack` (a pull given back with
//! `NACK`: retried later or dead-lettered). Each prints first, then
//! settles what was printed and flushed (manual ack, the default): a
//! consumer killed or cut off mid-way loses nothing; what it had not
//! printed goes back to the queue.

use std::collections::VecDeque;
use std::time::Duration;

use crate::client::{Delivery, Pushed, ReplyHandle};
use crate::protocol::command::{Ack, AckMode, Get, Nack, StreamStart, Subscribe, Unsubscribe};
use crate::protocol::{Command, ErrorCode};

use super::connect::{parse_duration, parse_millis, CommonArgs, Conn, ConnectOptions};
use super::exit::{CliError, Exit, EXIT_CODES_HELP};
use super::output::{stdout_closed, DeliveryFormat, Out};

/// Acknowledgements sent but not yet confirmed before `sub` waits for the
/// oldest (they are confirmed in order, long before this many pile up).
const ACKS_IN_FLIGHT: usize = 64;

/// `--ack`: who acknowledges.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckArg {
    /// The CLI acks each message once it has printed it (nothing is lost
    /// if it is killed).
    Manual,
    /// The broker counts a message acked once it has sent it (faster; a
    /// message in flight when the CLI dies is lost).
    Auto,
}

impl From<AckArg> for AckMode {
    fn from(a: AckArg) -> AckMode {
        match a {
            AckArg::Manual => AckMode::Manual,
            AckArg::Auto => AckMode::Auto,
        }
    }
}

/// Subscribe to a queue and print each message as it arrives.
///
/// By default each message is printed as its body followed by a newline,
/// so `sluice sub jobs | while read -r line; do ...; done` works (a body
/// that holds newlines is printed as it is, over several lines: use --json
/// to keep messages apart). -v prints a line of routing information before
/// each body; --json prints one JSON object per message:
///   {"queue","consumer_tag","delivery_tag","exchange","routing_key",
///    "redelivered","deliveries","id","headers":{...},"body"}
/// plus "group" for a message published with a group, and "offset" (and
/// "partition", for a partitioned stream) when reading a stream; a body,
/// routing key, group or header values that are not UTF-8 come as
/// "body_base64", "routing_key_base64", "group_base64",
/// "headers_base64":{...} instead.
///
/// On a stream, --offset or --time says where to start (default: only new
/// messages) and --group reads as a member of a consumer group, which
/// resumes from its committed offset (--offset/--time then only place a new
/// group; `sluice seek` moves an existing one). Each acknowledgement
/// commits the group's position.
///
/// With --ack manual (the default) each message is acknowledged after it
/// has been written to stdout, so a killed `sub` loses nothing. It runs
/// until --count messages (exit 0), --timeout-idle without a message
/// (exit 3 if --count was not reached, or nothing came at all), or Ctrl-C
/// (exit 130).
///
/// On a cluster (--server a,b,c), any node serves a replicated queue:
/// when its leader moves, `sub` subscribes again on the same node; when
/// its node goes away, on the next one (messages printed and not yet
/// acknowledged then come again: at least once).
///
/// Examples:
///   sluice sub jobs
///   sluice sub jobs --count 1 --timeout-idle 5s --json
///   sluice sub clicks --offset first --timeout-idle 1s -v  # a stream, from its start
///   sluice sub orders --group billing --count 100          # a consumer group
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
pub struct SubArgs {
    /// Queue to consume from.
    pub(crate) queue: String,
    /// Exit 0 after this many messages.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Unacknowledged messages in flight at most (default: the broker's, 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub(crate) prefetch: Option<u32>,
    /// Who acknowledges.
    #[arg(long, value_enum, default_value_t = AckArg::Manual)]
    pub(crate) ack: AckArg,
    /// Be the queue's only consumer.
    #[arg(long)]
    pub(crate) exclusive: bool,
    /// Streams: read as a member of this consumer group (its position is
    /// stored and resumed).
    #[arg(long, value_name = "NAME", help_heading = "Streams")]
    pub(crate) group: Option<String>,
    /// Streams: start at the oldest message kept, the newest, only new ones
    /// (the default), or this offset.
    #[arg(long, value_name = "first|last|next|N", value_parser = parse_offset, conflicts_with = "time", help_heading = "Streams")]
    pub(crate) offset: Option<StreamStart>,
    /// Streams: start at the first message published at or after this Unix
    /// time in milliseconds.
    #[arg(long, value_name = "UNIX_MS", help_heading = "Streams")]
    pub(crate) time: Option<u64>,
    /// Stop after this long without a message (`5s`, or milliseconds).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) timeout_idle: Option<Duration>,
    /// Print a routing line before each body.
    #[arg(short, long)]
    pub(crate) verbose: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// Fetch messages once (like `rabbitmqadmin get`).
///
/// Takes up to --count ready messages, waiting up to --wait for the first,
/// prints them (as `sub` does: body lines, -v, or --json) and then
/// acknowledges them, or with --requeue puts them back (they are then
/// flagged redelivered). Exits 3 when there was nothing to get.
///
/// Examples:
///   sluice get jobs
///   sluice get jobs --count 10 --wait 2s --json
///   sluice get jobs.dead --count 100 --requeue -v    # look, leave them there
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
pub struct GetArgs {
    /// Queue to take from.
    pub(crate) queue: String,
    /// At most this many messages (1 to 10000).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub(crate) count: u32,
    /// Wait up to this long for a first message (`5s`, or milliseconds).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", default_value = "0")]
    pub(crate) wait: Duration,
    /// Who acknowledges.
    #[arg(long, value_enum, default_value_t = AckArg::Manual)]
    pub(crate) ack: AckArg,
    /// Put the messages back instead of acknowledging them (needs --ack manual).
    #[arg(long)]
    pub(crate) requeue: bool,
    /// Print a routing line before each body.
    #[arg(short, long)]
    pub(crate) verbose: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// Take messages and give them back with `NACK`: retry them later, or
/// dead-letter them.
///
/// Takes up to --count ready messages as `get` does (waiting up to --wait
/// for the first), prints them (body lines, -v, or --json) and then
/// NACKs them: back into the queue at their place, flagged redelivered
/// (the default), held back --delay first, or with --no-requeue
/// dead-lettered to the queue's dead-letter exchange (dropped when it has
/// none). A requeue of a message's last allowed delivery (the queue's
/// delivery-limit) dead-letters it too. Exits 3 when there was nothing to
/// take.
///
/// Examples:
///   sluice nack jobs --delay 30s              # retry the next job in 30 s
///   sluice nack jobs --count 10 --no-requeue  # dead-letter ten jobs
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
pub struct NackArgs {
    /// Queue to take from.
    pub(crate) queue: String,
    /// At most this many messages (1 to 10000).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub(crate) count: u32,
    /// Wait up to this long for a first message (`5s`, or milliseconds).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", default_value = "0")]
    pub(crate) wait: Duration,
    /// Hold the requeued messages back this long (`30s`, or milliseconds).
    #[arg(long, value_parser = parse_millis, value_name = "DURATION", conflicts_with = "no_requeue")]
    pub(crate) delay: Option<u64>,
    /// Dead-letter the messages (NACK requeue=false) instead of requeueing.
    #[arg(long)]
    pub(crate) no_requeue: bool,
    /// Print a routing line before each body.
    #[arg(short, long)]
    pub(crate) verbose: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// Parses `--offset first|last|next|N` (keywords in any case, as the
/// protocol takes them).
pub(super) fn parse_offset(s: &str) -> Result<StreamStart, String> {
    match s.to_ascii_lowercase().as_str() {
        "first" => Ok(StreamStart::First),
        "last" => Ok(StreamStart::Last),
        "next" => Ok(StreamStart::Next),
        n => n
            .parse()
            .map(StreamStart::Offset)
            .map_err(|_| format!("{s:?}: expected first, last, next or an offset")),
    }
}

/// `--offset` or `--time` (clap lets only one through) as a start.
pub(super) fn stream_start(offset: Option<StreamStart>, time: Option<u64>) -> Option<StreamStart> {
    offset.or(time.map(StreamStart::Time))
}

/// Runs `sluice get`.
pub(super) async fn get(args: GetArgs) -> Result<Exit, CliError> {
    if args.requeue && args.ack == AckArg::Auto {
        return Err(CliError::Usage(
            "--requeue needs --ack manual (auto-acked messages are gone)".into(),
        ));
    }
    let settle = match (args.ack, args.requeue) {
        (AckArg::Auto, _) => None,
        (AckArg::Manual, false) => Some(Settle::Ack),
        (AckArg::Manual, true) => Some(Settle::Nack {
            requeue: true,
            delay_ms: None,
        }),
    };
    let take = Take {
        queue: args.queue,
        ack: args.ack.into(),
        count: args.count,
        wait: args.wait,
        format: DeliveryFormat::pick(args.common.json, args.verbose),
    };
    take_and_settle(&args.common, take, settle).await
}

/// Runs `sluice nack`.
pub(super) async fn nack(args: NackArgs) -> Result<Exit, CliError> {
    let take = Take {
        queue: args.queue,
        ack: AckMode::Manual,
        count: args.count,
        wait: args.wait,
        format: DeliveryFormat::pick(args.common.json, args.verbose),
    };
    let settle = Settle::Nack {
        requeue: !args.no_requeue,
        delay_ms: args.delay,
    };
    take_and_settle(&args.common, take, Some(settle)).await
}

/// What `get` and `nack` take: a `GET`, and how to print what it got.
struct Take {
    queue: String,
    ack: AckMode,
    count: u32,
    wait: Duration,
    format: DeliveryFormat,
}

/// How `get` and `nack` settle what they printed.
enum Settle {
    /// `ACK <last> multiple`.
    Ack,
    /// `NACK <last> multiple [requeue=false] [delay=<ms>]`.
    Nack {
        requeue: bool,
        delay_ms: Option<u64>,
    },
}

/// Sends the `GET`, prints what it got, then settles it all with one
/// command (`None`: auto-acked, nothing to settle). Exit 3 for nothing.
async fn take_and_settle(
    common: &CommonArgs,
    take: Take,
    settle: Option<Settle>,
) -> Result<Exit, CliError> {
    let mut conn = Conn::open(&ConnectOptions::from(common)).await?;
    let cmd = Command::Get(Get {
        queue: take.queue.clone(),
        ack: take.ack,
        count: take.count,
        wait_ms: u64::try_from(take.wait.as_millis()).unwrap_or(u64::MAX),
    });
    let h = conn.client.send_command(&cmd);
    conn.flush().await?;
    let got = conn.wait_longer(h, take.wait).await?.deliveries;
    let Some(last) = got.last().map(|d| d.delivery_tag) else {
        return Ok(Exit::Nothing);
    };
    let mut out = Out::default();
    for d in &got {
        out.delivery(take.format, &take.queue, d)?;
    }
    out.flush()?;
    let settle = match settle {
        None => return Ok(Exit::Success),
        Some(Settle::Ack) => ack_up_to(last),
        Some(Settle::Nack { requeue, delay_ms }) => Command::Nack(Nack {
            tag: last,
            multiple: true,
            requeue,
            delay_ms,
        }),
    };
    conn.request(&settle).await?;
    Ok(Exit::Success)
}

/// `ACK <tag> multiple`: every delivery of this connection up to `tag`
/// (the CLI's deliveries are printed in tag order).
fn ack_up_to(tag: u64) -> Command {
    Command::Ack(Ack {
        tag,
        multiple: true,
    })
}

/// Runs `sluice sub`.
pub(super) async fn sub(args: SubArgs) -> Result<Exit, CliError> {
    // With --count, take no more than that in flight: the rest stays
    // available to other consumers.
    let prefetch = match (args.prefetch, args.count) {
        (p, Some(n)) => {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            Some(p.unwrap_or(crate::config::DEFAULT_PREFETCH).min(n))
        }
        (p, None) => p,
    };
    let subscribe = Command::Subscribe(Subscribe {
        queue: args.queue.clone(),
        prefetch,
        prefetch_bytes: None,
        ack: args.ack.into(),
        tag: None,
        exclusive: args.exclusive,
        group: args.group.clone(),
        start: stream_start(args.offset, args.time),
    });
    let opts = ConnectOptions::from(&args.common);
    let (mut conn, reply) = subscribe_where_served(&opts, &subscribe).await?;
    let mut ctag = reply.words.first().cloned().unwrap_or_default();
    let mut consumer = Consumer {
        out: Out::default(),
        format: DeliveryFormat::pick(args.common.json, args.verbose),
        queue: args.queue,
        manual: args.ack == AckArg::Manual,
        acks: VecDeque::new(),
        printed: 0,
    };
    let end = loop {
        match consumer
            .run(&mut conn, &ctag, args.count, args.timeout_idle)
            .await
        {
            // A replicated queue's leader moved (or this node lost it):
            // again, on the same node, once what was printed is acked.
            Ok(Ended::Moved) => {
                consumer.settle_all(&conn).await?;
                eprintln!("sluice: the queue's leader moved: subscribing again");
                ctag = subscribe_again(&mut conn, &subscribe).await?;
            }
            // The node went away: on another of --server's, when there is
            // one. What was printed and not yet acked comes again.
            Ok(Ended::Lost) if opts.servers().count() > 1 => {
                eprintln!("sluice: the connection was lost: subscribing on the next node that takes it (deliveries not yet acknowledged come again)");
                consumer.acks.clear();
                let (c, reply) = subscribe_where_served(&opts, &subscribe).await?;
                conn = c;
                ctag = reply.words.first().cloned().unwrap_or_default();
            }
            Ok(Ended::Lost) => {
                break Err(CliError::Connection(
                    "the server closed the connection".into(),
                ))
            }
            Ok(Ended::Exit(exit)) => break Ok(exit),
            Err(e) => break Err(e),
        }
    };
    // What was printed is acknowledged before the connection closes, also
    // on Ctrl-C or a closed stdout.
    let settled = consumer.settle_all(&conn).await;
    let exit = end?;
    settled?;
    Ok(exit)
}

/// How a subscription's run ended.
enum Ended {
    /// As `sluice sub` exits.
    Exit(Exit),
    /// `NOTICE cancelled <tag> reason=leader-moved`: the replicated queue
    /// has a new leader.
    Moved,
    /// The connection closed.
    Lost,
}

/// How long `sluice sub` tries to subscribe again after the queue's
/// leader moved: an election takes about 2 s, but split votes on a
/// loaded machine have taken over 15 s.
const RESUBSCRIBE_FOR: Duration = Duration::from_secs(60);

/// `SUB` again on `conn`, trying again while it is answered `ERR
/// UNAVAILABLE` (an election), up to [`RESUBSCRIBE_FOR`]: the new consumer
/// tag.
async fn subscribe_again(conn: &mut Conn, subscribe: &Command) -> Result<String, CliError> {
    let until = tokio::time::Instant::now() + RESUBSCRIBE_FOR;
    loop {
        match conn.request(subscribe).await {
            Ok(reply) => return Ok(reply.words.first().cloned().unwrap_or_default()),
            Err(CliError::Server {
                code: ErrorCode::Unavailable,
                ..
            }) if tokio::time::Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Subscribes with `subscribe` on the first of the servers (`--server
/// a,b,c`) that takes it: one that does not answer, or answers `ERR
/// UNAVAILABLE` (a cluster's election), or `ERR PRECONDITION ... led by
/// node N` (a node of an older version), is passed over. The last
/// server's answer stands.
async fn subscribe_where_served(
    opts: &ConnectOptions,
    subscribe: &Command,
) -> Result<(Conn, crate::client::Response), CliError> {
    let servers: Vec<&str> = opts.servers().collect();
    for (i, server) in servers.iter().enumerate() {
        let last = i + 1 == servers.len();
        let mut conn = match Conn::open(&opts.only(server)).await {
            Ok(conn) => conn,
            Err(_) if !last => continue,
            Err(e) => return Err(e),
        };
        match conn.request(subscribe).await {
            Ok(reply) => return Ok((conn, reply)),
            Err(CliError::Server { code, message })
                if !last
                    && (code == ErrorCode::Unavailable
                        || (code == ErrorCode::Precondition
                            && message.contains("led by node"))) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
    Err(CliError::Usage("--server is empty".into()))
}

/// A running subscription's printing and acknowledging.
struct Consumer {
    out: Out,
    format: DeliveryFormat,
    queue: String,
    manual: bool,
    /// `ACK`s (and the final `UNSUB`) sent, oldest first.
    acks: VecDeque<ReplyHandle>,
    printed: u64,
}

impl Consumer {
    async fn run(
        &mut self,
        conn: &mut Conn,
        ctag: &str,
        count: Option<u64>,
        idle: Option<Duration>,
    ) -> Result<Ended, CliError> {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let stdout_closed = stdout_closed();
        tokio::pin!(stdout_closed);
        loop {
            if count.is_some_and(|n| self.printed >= n) {
                return Ok(Ended::Exit(Exit::Success));
            }
            let idle_timer = async {
                match idle {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            let first = tokio::select! {
                biased;
                _ = &mut ctrl_c => return Ok(Ended::Exit(Exit::Interrupted)),
                () = &mut stdout_closed => {
                    return Err(CliError::stdout(std::io::ErrorKind::BrokenPipe.into()))
                }
                p = conn.client.next_push() => match p {
                    Some(Pushed::Delivery(d)) => d,
                    Some(Pushed::Notice(n)) => {
                        if n.starts_with("closing ") {
                            // Why the end of the connection that follows.
                            eprintln!("sluice: the server is closing the connection: NOTICE {n}");
                        }
                        if cancelled(&n, ctag)? {
                            return Ok(Ended::Moved);
                        }
                        continue;
                    }
                    None => return Ok(Ended::Lost),
                },
                () = idle_timer => {
                    let short = count.map_or(self.printed == 0, |n| self.printed < n);
                    return Ok(Ended::Exit(if short { Exit::Nothing } else { Exit::Success }));
                }
            };
            let room = count.map_or(u64::MAX, |n| n - self.printed);
            let mut batch = vec![first];
            while (batch.len() as u64) < room {
                match conn.client.try_next_delivery() {
                    Some(d) => batch.push(d),
                    None => break,
                }
            }
            self.print(&batch)?;
            if count.is_some_and(|n| self.printed >= n) {
                // Cancel before the last ACK frees prefetch credit, so that
                // the broker pushes nothing more (which would only go back
                // to the queue, flagged redelivered, when we close).
                let unsub = Command::Unsubscribe(Unsubscribe { tag: ctag.into() });
                self.acks.push_back(conn.client.send_command(&unsub));
            }
            if self.manual {
                if let Some(last) = batch.last() {
                    self.acks
                        .push_back(conn.client.send_command(&ack_up_to(last.delivery_tag)));
                }
            }
            conn.flush().await?;
            while self.acks.len() > ACKS_IN_FLIGHT {
                if let Some(h) = self.acks.pop_front() {
                    acked(conn.wait(h).await)?;
                }
            }
        }
    }

    /// Prints a batch and flushes it: only then is it acknowledged.
    fn print(&mut self, batch: &[Delivery]) -> Result<(), CliError> {
        for d in batch {
            self.out.delivery(self.format, &self.queue, d)?;
        }
        self.out.flush()?;
        self.printed += batch.len() as u64;
        Ok(())
    }

    /// Waits for every `ACK` sent.
    async fn settle_all(&mut self, conn: &Conn) -> Result<(), CliError> {
        while let Some(h) = self.acks.pop_front() {
            acked(conn.wait(h).await)?;
        }
        Ok(())
    }
}

/// An `ACK`'s reply. `UNKNOWN_TAG` means the broker had already taken the
/// deliveries back (their ack timeout passed): they will be delivered
/// again; `UNAVAILABLE`, that a cluster's replicated queue could not
/// record the ack (its leader failed meanwhile): they may be. Either is
/// worth a warning, not the end of the subscription.
fn acked(r: Result<crate::client::Response, CliError>) -> Result<(), CliError> {
    match r {
        Ok(_) => Ok(()),
        Err(CliError::Server {
            code: ErrorCode::UnknownTag,
            message,
        }) => {
            eprintln!("sluice: warning: acknowledgement refused ({message}): the broker will deliver those messages again");
            Ok(())
        }
        Err(CliError::Server {
            code: ErrorCode::Unavailable,
            message,
        }) => {
            eprintln!("sluice: warning: acknowledgement not confirmed ({message}): those messages may be delivered again");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// A `NOTICE` (its words after `NOTICE`): `true` when it cancels this
/// subscription because its replicated queue's leader moved (subscribe
/// again), an error when it cancels it otherwise (its queue was deleted);
/// other kinds are ignored here (`closing`, printed on stderr, is followed
/// by the close itself; `active`/`inactive` only say when a single-active queue or a
/// stream group starts or stops sending to this subscription).
fn cancelled(notice: &str, ctag: &str) -> Result<bool, CliError> {
    let mut words = notice.split(' ');
    if words.next() == Some("cancelled") && words.next() == Some(ctag) {
        let reason = words.next().unwrap_or_default();
        if reason == "reason=leader-moved" {
            return Ok(true);
        }
        return Err(CliError::Server {
            code: ErrorCode::NotFound,
            message: format!("subscription cancelled by the server ({reason})"),
        });
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_cancel_notice_ends_the_subscription() {
        assert!(cancelled("cancelled ctag-1 reason=queue-deleted", "ctag-1").is_err());
        assert!(matches!(
            cancelled("cancelled ctag-1 reason=leader-moved", "ctag-1"),
            Ok(true)
        ));
        for other in [
            "cancelled ctag-2 reason=queue-deleted",
            "cancelled ctag-2 reason=leader-moved",
            "heartbeat",
            "blocked queue=x",
            "active ctag-1",
            "inactive ctag-1 partition=1",
        ] {
            assert!(matches!(cancelled(other, "ctag-1"), Ok(false)), "{other}");
        }
    }

    #[test]
    fn offsets_are_keywords_or_numbers() {
        assert_eq!(parse_offset("first"), Ok(StreamStart::First));
        assert_eq!(parse_offset("LAST"), Ok(StreamStart::Last));
        assert_eq!(parse_offset("next"), Ok(StreamStart::Next));
        assert_eq!(parse_offset("17"), Ok(StreamStart::Offset(17)));
        assert!(parse_offset("-1").is_err());
        assert!(parse_offset("").is_err());
        assert_eq!(
            stream_start(None, Some(1_700_000_000_000)),
            Some(StreamStart::Time(1_700_000_000_000))
        );
        assert_eq!(stream_start(None, None), None);
    }
}
