//! `sluice stats [queue]` and `sluice ls <kind> [pattern]`: send `STATS`,
//! `STATS QUEUE <name>` or `LIST <KIND> [pattern]` and print the reply's
//! text as it is, or with `--json` parsed: `key value` lines into an
//! object, an aligned table (a header row, then a row per item) into an
//! array of objects keyed by the lower-cased header; numbers as numbers.

use serde_json::{Map, Value};

use crate::client::Response;
use crate::protocol::token::encode_word;

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
    pub queue: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
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
    pub kind: ListKind,
    /// Only names matching this pattern (`*` any run of characters).
    pub pattern: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

/// The kinds `LIST` knows.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
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
}

impl ListKind {
    fn word(self) -> &'static str {
        match self {
            ListKind::Queues => "QUEUES",
            ListKind::Exchanges => "EXCHANGES",
            ListKind::Bindings => "BINDINGS",
            ListKind::Connections => "CONNECTIONS",
            ListKind::Consumers => "CONSUMERS",
        }
    }
}

/// Runs `sluice stats`.
pub(super) async fn stats(args: StatsArgs) -> Result<Exit, CliError> {
    // TODO(integrator): encode `Command::Stats` once STATS is in the
    // parser (protocol/command.rs); until then the line is written here.
    let mut line = b"STATS".to_vec();
    if let Some(q) = &args.queue {
        line.extend_from_slice(b" QUEUE ");
        encode_word(&mut line, q.as_bytes());
    }
    let reply = request_line(&args.common, &line).await?;
    print(&args.common, &reply, parse_key_values)
}

/// Runs `sluice ls`.
pub(super) async fn ls(args: LsArgs) -> Result<Exit, CliError> {
    // TODO(integrator): encode `Command::List` once LIST is in the parser.
    let mut line = format!("LIST {}", args.kind.word()).into_bytes();
    if let Some(p) = &args.pattern {
        line.push(b' ');
        encode_word(&mut line, p.as_bytes());
    }
    let reply = request_line(&args.common, &line).await?;
    print(&args.common, &reply, |t| Value::Array(parse_table(t)))
}

async fn request_line(common: &CommonArgs, line: &[u8]) -> Result<Response, CliError> {
    let mut conn = Conn::open(&ConnectOptions::from(common)).await?;
    let h = conn.client.send_raw(line, None);
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
pub fn parse_key_values(text: &str) -> Value {
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

/// An aligned table as objects keyed by the lower-cased header words.
///
/// A row with as many whitespace-separated words as the header has
/// columns is split on whitespace; any other row (an empty cell, a value
/// with a space in it) is cut at the byte positions where the header's
/// columns start, which is what alignment guarantees for left-aligned
/// columns (right-aligned numbers end inside their column, and are found
/// the same way).
pub fn parse_table(text: &str) -> Vec<Value> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<(usize, String)> = word_starts(header)
        .into_iter()
        .map(|(at, w)| (at, w.to_lowercase()))
        .collect();
    lines
        .map(|row| {
            let words: Vec<&str> = row.split_whitespace().collect();
            let cells: Vec<&str> = if words.len() == columns.len() {
                words
            } else {
                cut_at(row, &columns)
            };
            let m: Map<String, Value> = columns
                .iter()
                .zip(cells)
                .map(|((_, name), cell)| (name.clone(), scalar(cell)))
                .collect();
            Value::Object(m)
        })
        .collect()
}

/// Each word of `line` with the byte offset where it starts.
fn word_starts(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((s, &line[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

/// `row` cut into one trimmed cell per column. A cut that falls inside a
/// word moves back to that word's start (a right-aligned number wider
/// than its header starts before its column), or, when that would pass the
/// previous cut, forward to the word's end (a value wider than its column).
fn cut_at<'a>(row: &'a str, columns: &[(usize, String)]) -> Vec<&'a str> {
    let inside = |at: usize| {
        at > 0
            && at < row.len()
            && !row[at..].starts_with(char::is_whitespace)
            && !row[..at].ends_with(char::is_whitespace)
    };
    let mut cuts = vec![0];
    for (at, _) in columns.iter().skip(1) {
        let prev = cuts.last().copied().unwrap_or(0);
        let mut at = (*at).clamp(prev, row.len());
        while !row.is_char_boundary(at) {
            at += 1;
        }
        let mut back = at;
        while inside(back) {
            back -= row[..back].chars().next_back().map_or(1, char::len_utf8);
        }
        if back > prev {
            at = back;
        } else {
            while inside(at) {
                at += row[at..].chars().next().map_or(1, char::len_utf8);
            }
        }
        cuts.push(at);
    }
    cuts.push(row.len());
    cuts.windows(2).map(|w| row[w[0]..w[1]].trim()).collect()
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
    fn cells_with_spaces_or_empty_are_cut_at_the_columns() {
        let text = "\
PEER             NAME       USER   CONSUMERS
127.0.0.1:5001   my app     bob    2
127.0.0.1:5002              -      0
";
        assert_eq!(
            Value::Array(parse_table(text)),
            json!([
                {"peer": "127.0.0.1:5001", "name": "my app", "user": "bob", "consumers": 2},
                {"peer": "127.0.0.1:5002", "name": "", "user": "-", "consumers": 0},
            ])
        );
    }

    #[test]
    fn a_value_wider_than_its_column_is_not_split() {
        let text = "Q  N\nlongname 1 x\n";
        // Three words for two columns: cut at the header's positions, but
        // never inside a word.
        assert_eq!(
            Value::Array(parse_table(text)),
            json!([{"q": "longname", "n": "1 x"}])
        );
    }
}
