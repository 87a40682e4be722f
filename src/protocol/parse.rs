//! STUB (replaced by the real parser).
#![allow(missing_docs, unreachable_pub, dead_code)]
use crate::protocol::{command::*, frame::Frame, ErrorCode};
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {message}")]
pub struct ParseError { pub code: ErrorCode, pub message: String }
pub fn parse_command(frame: &Frame) -> Result<Command, ParseError> {
    let s = String::from_utf8_lossy(&frame.line).to_string();
    let w: Vec<&str> = s.split_whitespace().collect();
    let err = || ParseError { code: ErrorCode::Syntax, message: "stub".into() };
    match w.first().map(|s| s.to_ascii_uppercase()).as_deref() {
        Some("PING") => Ok(Command::Ping),
        _ => Err(err()),
    }
}
