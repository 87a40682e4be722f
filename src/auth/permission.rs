//! Permissions as RabbitMQ has them: per user, three regular expressions
//! over resource names (`configure`, `write`, `read`), matched unanchored;
//! `""` grants nothing. Pure: no I/O, no locks.

use std::fmt;

use regex::{Regex, RegexBuilder};

/// The pattern a new user gets for each permission unless told otherwise:
/// everything.
pub const DEFAULT_PATTERN: &str = ".*";
/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// The compiled size a pattern may reach (the regex crate's own guard
/// against patterns that blow up when compiled).
const MAX_COMPILED_BYTES: usize = 1 << 20;

/// Which permission a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// Declare, delete, purge.
    Configure,
    /// Publish to an exchange; be the destination of a binding.
    Write,
    /// Consume, get, peek; be the source of a binding.
    Read,
}

impl Perm {
    /// Its name, as `USER PERMIT` and the error messages spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Perm::Configure => "configure",
            Perm::Write => "write",
            Perm::Read => "read",
        }
    }
}

/// What kind of resource a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An exchange.
    Exchange,
    /// A queue.
    Queue,
}

impl Kind {
    /// `exchange` or `queue`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Exchange => "exchange",
            Kind::Queue => "queue",
        }
    }
}

/// One permission's regular expression, compiled.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    /// `None` for `""`, which grants nothing (as in RabbitMQ, where the
    /// empty regex would otherwise match everything).
    re: Option<Regex>,
}

impl Pattern {
    /// Compiles `source`; the message says why it is not a valid pattern.
    pub fn new(source: &str) -> Result<Pattern, String> {
        if source.len() > MAX_PATTERN_BYTES {
            return Err(format!("pattern longer than {MAX_PATTERN_BYTES} bytes"));
        }
        let re = if source.is_empty() {
            None
        } else {
            let re = RegexBuilder::new(source)
                .size_limit(MAX_COMPILED_BYTES)
                .build()
                .map_err(|e| match e {
                    regex::Error::CompiledTooBig(_) => "pattern too large".to_string(),
                    e => format!("invalid regular expression: {}", one_line(&e.to_string())),
                })?;
            Some(re)
        };
        Ok(Pattern {
            source: source.to_string(),
            re,
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether it grants `name` (unanchored, as RabbitMQ matches).
    pub fn allows(&self, name: &str) -> bool {
        self.re.as_ref().is_some_and(|re| re.is_match(name))
    }
}

/// The regex crate's multi-line syntax error (the pattern, a caret under
/// the spot, then `error: <why>`) as its one `<why>`.
fn one_line(s: &str) -> String {
    s.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(
            || s.split_whitespace().collect::<Vec<_>>().join(" "),
            String::from,
        )
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// A user's three patterns.
#[derive(Debug, Clone, PartialEq)]
pub struct Permissions {
    /// Declare, delete, purge.
    pub configure: Pattern,
    /// Publish; binding destination.
    pub write: Pattern,
    /// Consume; binding source.
    pub read: Pattern,
}

impl Permissions {
    /// All three from their sources.
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Permissions, String> {
        Ok(Permissions {
            configure: Pattern::new(configure)?,
            write: Pattern::new(write)?,
            read: Pattern::new(read)?,
        })
    }

    /// The pattern of one permission.
    pub fn get(&self, perm: Perm) -> &Pattern {
        match perm {
            Perm::Configure => &self.configure,
            Perm::Write => &self.write,
            Perm::Read => &self.read,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_unanchored_and_empty_grants_nothing() {
        let p = Pattern::new("orders").unwrap();
        assert!(p.allows("orders"));
        assert!(p.allows("my.orders.eu"));
        assert!(!p.allows("order"));
        let anchored = Pattern::new(r"^orders\.").unwrap();
        assert!(anchored.allows("orders.eu"));
        assert!(!anchored.allows("my.orders.eu"));
        let none = Pattern::new("").unwrap();
        assert!(!none.allows(""));
        assert!(!none.allows("x"));
        let all = Pattern::new(DEFAULT_PATTERN).unwrap();
        assert!(all.allows(""), "the default exchange is the name \"\"");
        assert!(all.allows("anything"));
    }

    #[test]
    fn invalid_patterns_are_refused_with_a_one_line_reason() {
        for bad in ["(", "*", "[a-", "a{99999999}"] {
            let e = Pattern::new(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
        assert_eq!(
            Pattern::new("(").unwrap_err(),
            "invalid regular expression: unclosed group"
        );
        assert!(Pattern::new(&"a".repeat(MAX_PATTERN_BYTES + 1)).is_err());
        let p = Permissions::new("^c", "^w", "^r").unwrap();
        assert!(p.get(Perm::Configure).allows("c1"));
        assert!(p.get(Perm::Write).allows("w1"));
        assert!(p.get(Perm::Read).allows("r1"));
        assert!(!p.get(Perm::Read).allows("w1"));
    }
}
