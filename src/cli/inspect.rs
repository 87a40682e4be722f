//! `sluice stats [queue]` and `sluice ls <kind> [pattern]`: send `STATS`,
//! `STATS QUEUE <name>` or `LIST <KIND> [pattern]` and print the reply's
//! text as it is, or with `--json` parsed: `key value` lines into an
//! object, an aligned table (a header row, then a row per item) into an
//! array of objects keyed by the lower-cased header; numbers as numbers.

use serde_json::{Map, Value};

use crate::client::Response;
use crate::protocol::command::{List, Stats};
use crate::protocol::table::split_row;
use crate::protocol::Command;

use super::connect::{CommonArgs, Conn, ConnectOptions};
use super::exit::{CliError, Exit, EXIT_CODES_HELP};
use super::output::{scalar, Out};

/// Show the broker's statistics, or one queue's.
///
/// Prints the broker's `key value` lines as they are; --json prints one
/// object ({"key": value, ...}, numbers as numbers).
///
/// Examples:
///   sluice stats
///   sluice stats jobs --json
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
pub struct StatsArgs {
    /// A queue (default: the whole broker).
    pub(crate) queue: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// List queues, exchanges, bindings, connections or consumers.
///
/// Prints the broker's table as it is (a header row, then one row per
/// item); --json prints one array of objects keyed by the lower-cased
/// column names (numbers as numbers).
///
/// Examples:
///   sluice ls queues
///   sluice ls queues 'orders.*' --json
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
pub struct LsArgs {
    /// What to list.
    #[arg(value_enum)]
    pub(crate) kind: ListKind,
    /// Only names matching this pattern (`*` any run of characters).
    pub(crate) pattern: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// The kinds `LIST` knows.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// Queues.
    Queues,
    /// Exchanges.
    Exchanges,
    /// Bindings.
    Bindings,
    /// Client connections.
    Connections,
    /// Subscriptions.
    Consumers,
    /// A cluster's nodes.
    Nodes,
}

impl From<ListKind> for crate::protocol::command::ListKind {
    fn from(k: ListKind) -> Self {
        use crate::protocol::command::ListKind as P;
        match k {
            ListKind::Queues => P::Queues,
            ListKind::Exchanges => P::Exchanges,
            ListKind::Bindings => P::Bindings,
            ListKind::Connections => P::Connections,
            ListKind::Consumers => P::Consumers,
            ListKind::Nodes => P::Nodes,
        }
    }
}

/// Runs `sluice stats`.
pub(super) async fn stats(args: StatsArgs) -> Result<Exit, CliError> {
    let command = Command::Stats(Stats {
        queue: args.queue.clone(),
    });
    let reply = request(&args.common, &command).await?;
    print(&args.common, &reply, parse_key_values)
}

/// Runs `sluice ls`.
pub(super) async fn ls(args: LsArgs) -> Result<Exit, CliError> {
    let command = Command::List(List {
        kind: args.kind.into(),
        pattern: args.pattern.clone(),
    });
    let reply = request(&args.common, &command).await?;
    print(&args.common, &reply, |t| Value::Array(parse_table(t)))
}

pub(super) async fn request(common: &CommonArgs, command: &Command) -> Result<Response, CliError> {
    let mut conn = Conn::open(&ConnectOptions::from(common)).await?;
    let h = conn.client.send_command(command);
    conn.flush().await?;
    conn.wait(h).await
}

/// Prints the reply's literal (or its words when it has none) as text, or
/// through `parse` as one JSON value.
fn print(
    common: &CommonArgs,
    reply: &Response,
    parse: impl Fn(&str) -> Value,
) -> Result<Exit, CliError> {
    let text = match &reply.data {
        Some(data) => String::from_utf8_lossy(data).into_owned(),
        None => reply.words.join(" "),
    };
    let mut out = Out::default();
    if common.json {
        out.json(&parse(&text))?;
    } else {
        out.bytes(text.as_bytes())?;
        if !text.is_empty() && !text.ends_with('\n') {
            out.bytes(b"\n")?;
        }
    }
    out.flush()?;
    Ok(Exit::Success)
}

/// `key value` lines as an object: the key is the first word, the value
/// the rest of the line (trimmed), a number when it reads as one. Blank
/// lines are skipped; a key alone has the value `null`.
pub(crate) fn parse_key_values(text: &str) -> Value {
    let mut m = Map::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (key, value) = match line.split_once(char::is_whitespace) {
            Some((k, v)) => (k, Some(v.trim())),
            None => (line, None),
        };
        m.insert(key.to_string(), value.map_or(Value::Null, scalar));
    }
    Value::Object(m)
}

/// A `LIST` table as objects keyed by the lower-cased header words. Every
/// cell is a protocol token ([`split_row`]): an empty cell or one with a
/// space in it is quoted, so rows split exactly; a row that is not
/// well-formed tokens is skipped.
pub(crate) fn parse_table(text: &str) -> Vec<Value> {
    let mut rows = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| split_row(l.as_bytes()));
    let Some(header) = rows.next() else {
        return Vec::new();
    };
    let columns: Vec<String> = header
        .iter()
        .map(|c| String::from_utf8_lossy(c).to_lowercase())
        .collect();
    rows.map(|cells| {
        let m: Map<String, Value> = columns
            .iter()
            .zip(cells)
            .map(|(name, cell)| (name.clone(), scalar(&String::from_utf8_lossy(&cell))))
            .collect();
        Value::Object(m)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn key_value_lines_become_an_object() {
        let text = "connections 3\nqueues  12\nuptime 3h 2m\npublish_rate 10.5\n\nflag\n";
        assert_eq!(
            parse_key_values(text),
            json!({"connections": 3, "queues": 12, "uptime": "3h 2m",
                   "publish_rate": 10.5, "flag": null})
        );
        assert_eq!(parse_key_values(""), json!({}));
    }

    #[test]
    fn aligned_tables_become_arrays_of_objects() {
        let text = "\
NAME     MESSAGES  CONSUMERS  DURABLE
jobs           12          1  true
gen-a-1         0          0  false
";
        assert_eq!(
            Value::Array(parse_table(text)),
            json!([
                {"name": "jobs", "messages": 12, "consumers": 1, "durable": "true"},
                {"name": "gen-a-1", "messages": 0, "consumers": 0, "durable": "false"},
            ])
        );
        assert!(parse_table("").is_empty());
        assert!(parse_table("NAME  MESSAGES\n").is_empty());
    }

    #[test]
    fn quoted_cells_hold_spaces_and_empty_values() {
        let text = "\
PEER             NAME       USER   CONSUMERS
127.0.0.1:5001   \"my app\"   bob    2
127.0.0.1:5002   \"\"         -      0
";
        assert_eq!(
            Value::Array(parse_table(text)),
            json!([
                {"peer": "127.0.0.1:5001", "name": "my app", "user": "bob", "consumers": 2},
                {"peer": "127.0.0.1:5002", "name": "", "user": "-", "consumers": 0},
            ])
        );
    }
}
