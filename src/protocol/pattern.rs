//! [`Pattern`]: one permission's regular expression (`USER ADD|PERMIT`'s
//! `configure=`, `write=`, `read=`), compiled, with the limits that keep a
//! client's regex cheap. The parser compiles one to refuse a bad pattern
//! with `ERR SYNTAX`; [`auth`](crate::auth) matches resource names with it.
//! It lives here, below both, so that parsing does not depend on `auth`.

use std::fmt;

use regex::{Regex, RegexBuilder};

/// Longest pattern accepted, in bytes.
pub(crate) const MAX_PATTERN_BYTES: usize = 1024;
/// The compiled size a pattern may reach (the regex crate's own guard
/// against patterns that blow up when compiled).
const MAX_COMPILED_BYTES: usize = 1 << 20;

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
    pub(crate) fn as_str(&self) -> &str {
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
    }
}
