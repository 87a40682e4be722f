//! Checks of the wire layer shared by the property tests
//! (`prop_tests`, in `cargo test`) and the cargo-fuzz targets in `fuzz/`
//! (which build this crate with the `fuzzing` feature): one place says
//! what "round trip" and "chunking invariance" mean. Not part of the
//! broker's build.

use bytes::BytesMut;

use super::command::Command;
use super::frame::{BadFrame, FrameEvent, Framer, Limits};
use super::parse::parse_command;

/// Frames `wire` (it must be exactly one frame) and parses it.
pub fn decode(wire: &[u8]) -> Result<Command, String> {
    let limits = Limits {
        max_line: wire.len(),
        max_literal: wire.len(),
    };
    let mut framer = Framer::new(limits);
    let mut buf = BytesMut::from(wire);
    match framer.next_event(&mut buf) {
        Ok(Some(FrameEvent::Frame(frame))) if buf.is_empty() => {
            parse_command(&frame).map_err(|e| e.to_string())
        }
        other => Err(format!("not one frame: {other:?}, left {buf:?}")),
    }
}

/// Slack above twice the bytes fed that the read buffer's capacity may take
/// (`BytesMut` keeps up to 64 KiB of its original capacity when it moves).
const CAPACITY_SLACK: usize = 128 * 1024;

/// What framing a stream gave: the events, the error that stopped it, and
/// what [`Framer::at_end`] says at the end.
#[derive(Debug, PartialEq)]
pub struct Framed {
    /// The events, in order.
    pub events: Vec<FrameEvent>,
    /// The error that stopped framing, if any.
    pub error: Option<BadFrame>,
    /// What [`Framer::at_end`] said after the last byte.
    pub at_end: Option<BadFrame>,
}

/// Feeds `stream` in pieces of the given sizes (cycled; one piece if none),
/// checking after every step that the buffer holds no more than the limits
/// allow and that its capacity follows the bytes that arrived.
pub fn frame_in_chunks(limits: Limits, stream: &[u8], sizes: &[usize]) -> Framed {
    let mut framer = Framer::new(limits);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let bound = limits.max_line.max(limits.max_literal) + 1;
    let mut fed = 0;
    let mut sizes = sizes.iter().copied().cycle();
    while fed < stream.len() {
        let n = sizes.next().unwrap_or(stream.len()).max(1);
        let piece = &stream[fed..(fed + n).min(stream.len())];
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            let step = framer.next_event(&mut buf);
            assert!(
                buf.capacity() <= 2 * fed + CAPACITY_SLACK,
                "capacity {} after {fed} bytes: reserved ahead of the input",
                buf.capacity()
            );
            match step {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => {
                    return Framed {
                        events,
                        error: Some(e),
                        at_end: None,
                    }
                }
            }
        }
        assert!(buf.len() <= bound, "{} bytes buffered", buf.len());
    }
    let at_end = framer.at_end(&buf);
    Framed {
        events,
        error: None,
        at_end,
    }
}
