//! `sluice seek`: moves a stream consumer group (`SEEK`), for replay or to
//! skip ahead, and prints the offsets the group reads next.

use crate::protocol::command::{Seek, StreamStart};
use crate::protocol::Command;

use super::connect::{CommonArgs, Conn, ConnectOptions};
use super::consume::{parse_offset, stream_start};
use super::exit::{CliError, Exit, EXIT_CODES_HELP};
use super::output::Out;

/// Move a stream's consumer group to a new position (replay, or skip ahead).
///
/// The position is stored before the broker answers; a group that does not
/// exist yet is created there. The group's active member (a running
/// `sluice sub STREAM --group GROUP`) goes on from the new position at
/// once. Prints the offset the group reads next: one per partition,
/// space-separated, for a partitioned stream; with --json
/// {"offsets":[n,...]}.
///
/// Examples:
///   sluice seek orders billing --offset first            # replay everything kept
///   sluice seek orders billing --time 1700000000000      # from that moment on
///   sluice seek orders billing --offset next             # skip the backlog
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
#[group(id = "to", required = true, multiple = false, args = ["offset", "time"])]
pub struct SeekArgs {
    /// The stream (or partitioned stream).
    pub(crate) stream: String,
    /// The consumer group.
    pub(crate) group: String,
    /// The oldest message kept, the newest, what comes after the newest, or
    /// this offset (clamped to what is kept).
    #[arg(long, value_name = "first|last|next|N", value_parser = parse_offset)]
    pub(crate) offset: Option<StreamStart>,
    /// The first message published at or after this Unix time in milliseconds.
    #[arg(long, value_name = "UNIX_MS")]
    pub(crate) time: Option<u64>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// Runs `sluice seek`.
pub(super) async fn run(args: SeekArgs) -> Result<Exit, CliError> {
    let Some(to) = stream_start(args.offset, args.time) else {
        return Err(CliError::Usage("give --offset or --time".into()));
    };
    let mut conn = Conn::open(&ConnectOptions::from(&args.common)).await?;
    let reply = conn
        .request(&Command::Seek(Seek {
            stream: args.stream,
            group: args.group,
            to,
        }))
        .await?;
    let offsets = parse_offsets(&reply.words)?;
    let mut out = Out::default();
    if args.common.json {
        out.json(&serde_json::json!({ "offsets": offsets }))?;
    } else {
        let text: Vec<String> = offsets.iter().map(u64::to_string).collect();
        out.line(&text.join(" "))?;
    }
    out.flush()?;
    Ok(Exit::Success)
}

/// The offsets of a `SEEK` reply, `OK offset=<n>[,<n>...]`.
fn parse_offsets(words: &[String]) -> Result<Vec<u64>, CliError> {
    let bad = || {
        CliError::Connection(format!(
            "protocol error: unexpected SEEK reply {:?}",
            words.join(" ")
        ))
    };
    let list = words
        .iter()
        .find_map(|w| w.strip_prefix("offset="))
        .ok_or_else(bad)?;
    list.split(',')
        .map(|n| n.parse::<u64>().map_err(|_| bad()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seek_replies_give_one_offset_per_partition() {
        let w = |s: &str| vec![s.to_string()];
        assert_eq!(parse_offsets(&w("offset=4")).unwrap(), [4]);
        assert_eq!(parse_offsets(&w("offset=1,7,3")).unwrap(), [1, 7, 3]);
        assert!(parse_offsets(&w("offset=")).is_err());
        assert!(parse_offsets(&w("offset=1,,2")).is_err());
        assert!(parse_offsets(&[]).is_err());
    }
}
