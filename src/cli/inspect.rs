//! `sluice stats [queue]` and `sluice ls <kind> [pattern]`: send `STATS`,
//! `STATS QUEUE <name>` or `LIST <KIND> [pattern]` and print the reply's
//! text as it is, or with `--json` parsed: `key value` lines into an
//! object, an aligned table (a header row, then a row per item) into an
//! array of objects keyed by the lower-cased header, each value typed
//! ([`typed`]: numbers, `true`/`false`, `null` for the broker's `-` and
//! `none`) but names, which stay strings ([`text`](super::output::text)).

use serde_json::{Map, Value};

use crate::client::Response;
use crate::protocol::command::{List, Stats};
use crate::protocol::table::split_row;
use crate::protocol::Command;

use super::connect::{CommonArgs, Conn, ConnectOptions};
use super::exit::{CliError, Exit, EXIT_CODES_HELP};
use super::output::{typed, Out};

/// Show the broker's statistics, or one queue's.
///
/// Prints the broker's `key value` lines as they are; --json prints one
/// object ({"key": value, ...}: numbers as numbers, true/false as
/// booleans, null where the broker says none).
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

/// List queues, exchanges, bindings, connections, consumers, nodes,
/// groups or schemas.
///
/// Prints the broker's table as it is (a header row, then one row per
/// item); --json prints one array of objects keyed by the lower-cased
/// column names (numbers as numbers, true/false as booleans, null for
/// the broker's "-" and "none"; names always strings).
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
    /// Streams' consumer groups.
    Groups,
    /// The schema registry's subjects.
    Schemas,
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
            ListKind::Groups => P::Groups,
            ListKind::Schemas => P::Schemas,
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
    let list = List {
        kind: args.kind.into(),
        pattern: args.pattern.clone(),
    };
    list_of(&args.common, list, args.kind).await
}

/// Sends `list` and prints its table (as `kind`'s, with `--json`).
pub(super) async fn list_of(
    common: &CommonArgs,
    list: List,
    kind: ListKind,
) -> Result<Exit, CliError> {
    let reply = request(common, &Command::List(list)).await?;
    print(common, &reply, |t| Value::Array(parse_table(t, kind)))
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

/// The `STATS` keys (and `sluice cluster status` ones, without their
/// `cluster_` prefix) whose values are text, whatever they look like: a
/// queue's name, a node list (`1` alone is still a list), a state.
const TEXT_KEYS: &[&str] = &[
    "name",
    "state",
    "members",
    "cluster_state",
    "cluster_members",
    "replica_members",
    "schema",
];

/// `key value` lines as an object: the key is the first word, the value
/// the rest of the line (trimmed), typed ([`typed`]) unless the key is one
/// of [`TEXT_KEYS`]. Blank lines are skipped; a key alone has the value
/// `null`.
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
        let value = match value {
            None => Value::Null,
            Some(v) if TEXT_KEYS.contains(&key) => super::output::text(v, false),
            Some(v) => typed(v),
        };
        m.insert(key.to_string(), value);
    }
    Value::Object(m)
}

/// A `LIST` table's columns that hold names or other text: `(always text,
/// text or "-" for none)`. Every other column is [`typed`].
fn text_columns(kind: ListKind) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        ListKind::Queues => (&["name"], &[]),
        ListKind::Exchanges => (&["name", "type"], &["alternate"]),
        ListKind::Bindings => (&["exchange", "queue", "key"], &["match", "args"]),
        ListKind::Connections => (&["peer"], &["name", "user"]),
        ListKind::Consumers => (&["queue", "tag", "ack"], &[]),
        ListKind::Nodes => (&["addr", "role"], &[]),
        ListKind::Groups => (&["stream", "group"], &["members", "active"]),
        ListKind::Schemas => (&["subject", "versions", "compat"], &["used_by"]),
    }
}

/// A `LIST` table as objects keyed by the lower-cased header words, the
/// cells typed by column ([`text_columns`]). Every cell is a protocol
/// token ([`split_row`]): an empty cell or one with a space in it is
/// quoted, so rows split exactly; a row that is not well-formed tokens is
/// skipped.
pub(crate) fn parse_table(text: &str, kind: ListKind) -> Vec<Value> {
    let (names, optional) = text_columns(kind);
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
            .map(|(name, cell)| {
                let cell = String::from_utf8_lossy(&cell);
                let value = if names.contains(&name.as_str()) {
                    super::output::text(&cell, false)
                } else if optional.contains(&name.as_str()) {
                    super::output::text(&cell, true)
                } else {
                    typed(&cell)
                };
                (name.clone(), value)
            })
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
    fn key_values_are_typed_but_names_and_lists_stay_text() {
        let text = "name true\ndurable true\nexclusive false\ncluster_leader none\n\
                    cluster_members 1\nreplica_lag_max none\nmembers 1,2\n";
        assert_eq!(
            parse_key_values(text),
            json!({"name": "true", "durable": true, "exclusive": false,
                   "cluster_leader": null, "cluster_members": "1",
                   "replica_lag_max": null, "members": "1,2"})
        );
    }

    #[test]
    fn aligned_tables_become_arrays_of_typed_objects() {
        let text = "\
name     messages  consumers  durable  leader
jobs           12          1  true     -
false           0          0  false    none
7               0          0  false    2
";
        assert_eq!(
            Value::Array(parse_table(text, ListKind::Queues)),
            json!([
                {"name": "jobs", "messages": 12, "consumers": 1, "durable": true, "leader": null},
                {"name": "false", "messages": 0, "consumers": 0, "durable": false, "leader": null},
                {"name": "7", "messages": 0, "consumers": 0, "durable": false, "leader": 2},
            ])
        );
        assert!(parse_table("", ListKind::Queues).is_empty());
        assert!(parse_table("NAME  MESSAGES\n", ListKind::Queues).is_empty());
    }

    #[test]
    fn quoted_cells_hold_spaces_and_empty_values() {
        let text = "\
id  peer             name       user   tls    subscriptions
1   127.0.0.1:5001   \"my app\"   bob    true   2
2   127.0.0.1:5002   \"\"         -      false  0
3   127.0.0.1:5003   -          42     false  0
";
        assert_eq!(
            Value::Array(parse_table(text, ListKind::Connections)),
            json!([
                {"id": 1, "peer": "127.0.0.1:5001", "name": "my app", "user": "bob", "tls": true, "subscriptions": 2},
                {"id": 2, "peer": "127.0.0.1:5002", "name": "", "user": null, "tls": false, "subscriptions": 0},
                {"id": 3, "peer": "127.0.0.1:5003", "name": null, "user": "42", "tls": false, "subscriptions": 0},
            ])
        );
    }

    #[test]
    fn binding_keys_stay_text_and_missing_arguments_are_null() {
        let text = "\
exchange  queue  key  match  args
ex        q      -    -      -
ex        q      1    all    \"h.a=1\"
";
        assert_eq!(
            Value::Array(parse_table(text, ListKind::Bindings)),
            json!([
                {"exchange": "ex", "queue": "q", "key": "-", "match": null, "args": null},
                {"exchange": "ex", "queue": "q", "key": "1", "match": "all", "args": "h.a=1"},
            ])
        );
    }
}
