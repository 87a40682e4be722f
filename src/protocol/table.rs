//! The text of `LIST` and `STATS` literals: aligned tables and `key value`
//! blocks that a person reads in `nc` and a script splits on spaces.
//!
//! **Tables** (`LIST`): a header row of column names, then one row per
//! line. Every cell is one protocol token ([`encode_word`]: quoted when it
//! is empty or holds a space, a quote or a backslash), and cells are
//! separated by runs of spaces, padded so that the columns line up. So a
//! row splits back into its cells with the protocol's own tokenizer
//! ([`split_row`]), whatever bytes a routing key holds.
//!
//! **Key-value blocks** (`STATS`): one `key value` pair per line, the key
//! padded to align the values, groups separated by an empty line. Keys are
//! `lower_snake` with their unit at the end (`memory_rss_bytes`,
//! `publish_per_sec_1s`); each value is one number, or one token.

use super::token::{encode_word, tokenize};

/// A table being built: its column names, then rows of cells.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<Vec<u8>>>,
}

impl Table {
    /// An empty table with these columns.
    pub(crate) fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; each cell is written as a protocol token.
    pub(crate) fn row<I, C>(&mut self, cells: I)
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        let row = cells
            .into_iter()
            .map(|c| {
                let mut out = Vec::new();
                encode_word(&mut out, c.as_ref());
                out
            })
            .collect();
        self.rows.push(row);
    }

    /// Rows added (the header not counted).
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row was added.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The aligned text: header, rows, each line ending in `\n`.
    pub(crate) fn render(&self) -> Vec<u8> {
        let cols = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(display_width(cell));
            }
        }
        let mut out = Vec::new();
        let header: Vec<&[u8]> = self.header.iter().map(|h| h.as_bytes()).collect();
        line(&mut out, &header, &width);
        for row in &self.rows {
            let cells: Vec<&[u8]> = row.iter().map(Vec::as_slice).collect();
            line(&mut out, &cells, &width);
        }
        out
    }
}

fn line(out: &mut Vec<u8>, cells: &[&[u8]], width: &[usize]) {
    let last = cells.len().saturating_sub(1);
    for (i, cell) in cells.iter().enumerate() {
        out.extend_from_slice(cell);
        if i < last {
            let pad = width
                .get(i)
                .map_or(0, |w| w.saturating_sub(display_width(cell)));
            out.extend(std::iter::repeat_n(b' ', pad + 2));
        }
    }
    out.push(b'\n');
}

/// Characters, not bytes, so that UTF-8 names line up in a terminal.
fn display_width(cell: &[u8]) -> usize {
    match std::str::from_utf8(cell) {
        Ok(s) => s.chars().count(),
        Err(_) => cell.len(),
    }
}

/// The cells of one table row (or header), as the protocol tokenizer
/// reads them: quotes removed, escapes undone. `None` for a line that is
/// not a row (unbalanced quotes).
pub fn split_row(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let toks = tokenize(line).ok()?;
    Some(toks.into_iter().map(|t| t.text).collect())
}

/// A `STATS` literal being built: groups of `key value` lines.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyValues {
    groups: Vec<Vec<(std::borrow::Cow<'static, str>, String)>>,
}

impl KeyValues {
    /// Starts a new group (an empty line before it, but for the first).
    pub(crate) fn group(&mut self) -> &mut Self {
        self.groups.push(Vec::new());
        self
    }

    /// Adds one `key value` line to the current group.
    pub(crate) fn put(
        &mut self,
        key: impl Into<std::borrow::Cow<'static, str>>,
        value: impl std::fmt::Display,
    ) -> &mut Self {
        if self.groups.is_empty() {
            self.groups.push(Vec::new());
        }
        if let Some(g) = self.groups.last_mut() {
            g.push((key.into(), value.to_string()));
        }
        self
    }

    /// Adds a rate, per second, with one decimal.
    pub(crate) fn rate(&mut self, key: &'static str, per_sec: f64) -> &mut Self {
        self.put(key, format!("{per_sec:.1}"))
    }

    /// The text.
    pub(crate) fn render(&self) -> Vec<u8> {
        let width = self
            .groups
            .iter()
            .flatten()
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (i, g) in self.groups.iter().filter(|g| !g.is_empty()).enumerate() {
            if i > 0 {
                out.push('\n');
            }
            for (k, v) in g {
                out.push_str(&format!("{:width$}  {v}\n", k.as_ref()));
            }
        }
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn columns_line_up_and_rows_split_back() {
        let mut t = Table::new(&["exchange", "queue", "key"]);
        t.row(["logs", "errors", "*.error"]);
        t.row(["", "q", "two words"]);
        t.row(["x", "quotes", "a\"b\\c"]);
        let text = String::from_utf8(t.render()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "exchange  queue   key");
        assert_eq!(lines[1], "logs      errors  *.error");
        assert_eq!(lines[2], "\"\"        q       \"two words\"");
        assert_eq!(
            split_row(lines[3].as_bytes()).unwrap(),
            vec![b"x".to_vec(), b"quotes".to_vec(), b"a\"b\\c".to_vec()]
        );
        assert_eq!(
            split_row(lines[2].as_bytes()).unwrap(),
            vec![b"".to_vec(), b"q".to_vec(), b"two words".to_vec()]
        );
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn an_empty_table_is_its_header() {
        let t = Table::new(&["name", "messages"]);
        assert_eq!(t.render(), b"name  messages\n");
        assert!(t.is_empty());
    }

    #[test]
    fn key_values_align_in_groups() {
        let mut kv = KeyValues::default();
        kv.put("queues", 2).put("memory_rss_bytes", 1024);
        kv.group().rate("publish_per_sec_1s", 2.26);
        let text = String::from_utf8(kv.render()).unwrap();
        assert_eq!(
            text,
            "queues              2\nmemory_rss_bytes    1024\n\npublish_per_sec_1s  2.3\n"
        );
    }
}
