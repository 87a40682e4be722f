//! [`ParseError`]: why a command line was refused, and [`show`], the one way
//! a refusal echoes the client's input. Both the tokenizer
//! ([`token`](super::token)) and the grammars ([`parse`](super::parse)) build
//! them, so this module sits below both.

use super::code::ErrorCode;

/// A command line that was refused: answer `ERR <code> <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {message}")]
pub struct ParseError {
    /// `Syntax`, `UnknownCommand`, or `BadFrame` (HTTP or TLS: answer, then close).
    pub(crate) code: ErrorCode,
    /// Human-readable text.
    pub(crate) message: String,
}

impl ParseError {
    /// An `ERR SYNTAX` with this message.
    pub(crate) fn syntax(message: impl Into<String>) -> Self {
        ParseError {
            code: ErrorCode::Syntax,
            message: message.into(),
        }
    }
}

/// Echoed input for an error text: always quoted, at most 64 bytes of it,
/// control bytes as `\xHH`, so the line never ends in a lit-mark.
pub(crate) fn show(word: &[u8]) -> String {
    const MAX: usize = 64;
    let mut cut = word.len().min(MAX);
    while cut < word.len() && cut > 0 && word[cut] & 0xc0 == 0x80 {
        cut -= 1;
    }
    let mut out = String::with_capacity(cut + 8);
    out.push('"');
    for chunk in String::from_utf8_lossy(&word[..cut]).chars() {
        match chunk {
            '"' | '\\' => {
                out.push('\\');
                out.push(chunk);
            }
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    if cut < word.len() {
        out.push_str("...");
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_quotes_and_truncates() {
        assert_eq!(show(b"a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(show(b"\t\x7f"), "\"\\x09\\x7f\"");
        let mut word = "a".repeat(63).into_bytes();
        word.extend_from_slice("\u{e9}tail".as_bytes());
        assert_eq!(show(&word), format!("\"{}...\"", "a".repeat(63)));
    }
}
