//! `parse_line`: any bytes into the line parser.
//!
//! The input is a line, then optionally an LF and the bytes of the literal
//! the line announces (`PUB "" jobs {5}` LF `hello`). Properties:
//! - parsing never panics (a refusal is an `Err`);
//! - a command that parses survives the round trip: `Command::encode`, then
//!   the framer, then `parse_command` give the same command back.
//!
//! No normalisation is needed: the parser keeps keywords' meaning, not their
//! spelling, so the encoder's canonical spelling (upper-case verbs, defaults
//! left out, `REJECT` as `NACK requeue=false`) reads back as the same value.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice::protocol::check::decode;
use sluice::protocol::parse::parse_line;

fuzz_target!(|data: &[u8]| {
    let (line, literal) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], Some(Bytes::copy_from_slice(&data[at + 1..]))),
        None => (data, None),
    };
    let Ok(cmd) = parse_line(line, literal) else {
        return;
    };
    let wire = cmd.encode();
    let shown = String::from_utf8_lossy(&wire);
    match decode(&wire) {
        Ok(again) => assert_eq!(again, cmd, "encoded as {shown:?}"),
        Err(e) => panic!("{cmd:?} encoded as {shown:?} does not read back: {e}"),
    }
});
