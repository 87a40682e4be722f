//! Argument parsers the client's commands share: `-H name=value` headers
//! and arguments taken as bytes (routing keys need not be UTF-8).

use std::ffi::OsString;

use bytes::Bytes;

use crate::protocol::command::Header;

/// Parses `-H name=value`.
pub(super) fn parse_header(s: &str) -> Result<Header, String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => {
            Ok((name.to_string(), Bytes::copy_from_slice(value.as_bytes())))
        }
        _ => Err(format!("{s:?}: expected NAME=VALUE")),
    }
}

/// A command-line argument's bytes (routing keys need not be UTF-8).
pub(super) fn os_bytes(s: OsString) -> Bytes {
    Bytes::from(s.into_encoded_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moved from `cli/publish.rs` with `parse_header`.
    #[test]
    fn headers_split_at_the_first_equals() {
        assert_eq!(
            parse_header("a=b=c").unwrap(),
            ("a".to_string(), Bytes::from_static(b"b=c"))
        );
        assert_eq!(parse_header("a=").unwrap().1, Bytes::new());
        assert!(parse_header("=b").is_err());
        assert!(parse_header("ab").is_err());
    }
}
