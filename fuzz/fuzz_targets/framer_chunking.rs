//! `framer_chunking`: a byte stream and split points into the `Framer`.
//!
//! The input is hand-decoded (so that a plain text file is a valid seed once
//! it has two leading bytes): byte 0 picks the limits, byte 1 (mod 16) is how
//! many split sizes follow as u16s, and the rest is the stream. The stream is
//! framed whole, one byte at a time, and in pieces of the given sizes
//! (cycled). Properties:
//! - the three give the same events, the same `BadFrame` and the same
//!   `at_end` verdict (chunking invariance);
//! - after the framer asks for more, the buffer holds at most
//!   max(max-line, max-literal) + 1 bytes;
//! - the buffer's capacity follows the bytes that arrived (at most twice
//!   them plus a constant): a `{N}` announcement reserves nothing ahead.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sluice::protocol::check::frame_in_chunks;
use sluice::protocol::frame::Limits;

#[derive(Debug)]
struct Input {
    limits: Limits,
    sizes: Vec<usize>,
    stream: Vec<u8>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let pick: u8 = u.arbitrary()?;
        let n: u8 = u.arbitrary()?;
        let small = usize::from(pick >> 2);
        let limits = match pick & 3 {
            0 => Limits::default(),
            1 => Limits {
                max_line: 1 + small,
                max_literal: 16,
            },
            2 => Limits {
                max_line: 64,
                max_literal: small,
            },
            _ => Limits {
                max_line: 1 + small,
                ..Limits::default()
            },
        };
        let mut sizes = Vec::new();
        for _ in 0..n % 16 {
            let s: u16 = u.arbitrary()?;
            sizes.push(1 + usize::from(s) % 512);
        }
        let stream = u.bytes(u.len())?.to_vec();
        Ok(Input {
            limits,
            sizes,
            stream,
        })
    }
}

fuzz_target!(|input: Input| {
    let whole = frame_in_chunks(input.limits, &input.stream, &[]);
    let bytewise = frame_in_chunks(input.limits, &input.stream, &[1]);
    assert_eq!(bytewise, whole, "one byte at a time");
    if !input.sizes.is_empty() {
        let chunked = frame_in_chunks(input.limits, &input.stream, &input.sizes);
        assert_eq!(chunked, whole, "in pieces of {:?}", input.sizes);
    }
});
