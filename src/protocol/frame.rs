//! STUB (replaced by the real framer).
#![allow(missing_docs, unreachable_pub, dead_code)]
use crate::protocol::ErrorCode;
use bytes::{Bytes, BytesMut};
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;
pub const DEFAULT_MAX_LITERAL_BYTES: usize = 16 * 1024 * 1024;
#[derive(Debug, Clone, Copy)]
pub struct Limits { pub max_line: usize, pub max_literal: usize }
impl Default for Limits { fn default() -> Self { Limits { max_line: DEFAULT_MAX_LINE_BYTES, max_literal: DEFAULT_MAX_LITERAL_BYTES } } }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame { pub line: Bytes, pub literal: Option<Bytes> }
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameEvent { Frame(Frame), Reject(Rejection) }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection { pub code: ErrorCode, pub message: String }
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadFrame(pub String);
#[derive(Debug)]
pub struct Framer { limits: Limits }
impl Framer {
    pub fn new(limits: Limits) -> Self { Framer { limits } }
    pub fn next_event(&mut self, buf: &mut BytesMut) -> Result<Option<FrameEvent>, BadFrame> {
        let Some(pos) = buf.iter().position(|b| *b == b'\n') else { return Ok(None) };
        let mut line = buf.split_to(pos + 1); line.truncate(pos);
        if line.last() == Some(&b'\r') { line.truncate(pos - 1); }
        let s = String::from_utf8_lossy(&line).to_string();
        if let Some(open) = s.rfind(" {") { if s.ends_with('}') { if let Ok(n) = s[open+2..s.len()-1].parse::<usize>() {
            if buf.len() < n + 2 { let mut l = line; l.extend_from_slice(b"\n"); l.unsplit(buf.split()); *buf = l; return Ok(None); }
            let lit = buf.split_to(n).freeze(); let _ = buf.split_to(2);
            return Ok(Some(FrameEvent::Frame(Frame { line: line.freeze(), literal: Some(lit) })));
        }}}
        Ok(Some(FrameEvent::Frame(Frame { line: line.freeze(), literal: None })))
    }
}
