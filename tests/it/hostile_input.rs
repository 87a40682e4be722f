//! The bad-input catalogue: a table of hostile byte streams sent to the real
//! `sluice` binary, each with the outcome the wire contract
//! (`protocol-contract.md`, `protocol.md` §3 and §12) prescribes: the exact
//! `ERR <CODE>` lines in order, then either a usable connection (`PING`
//! answers `OK pong` as the very next line, so no stray reply slipped in) or
//! a clean close.
//!
//! While the catalogue runs a bystander connection makes a `PUB`/`GET` round
//! trip after every case, the broker process must still be alive at the end,
//! and its resident memory must not have grown by more than a bound.
//!
//! Nothing sleeps: every read waits for a line or the end of the stream under
//! [`DEADLINE`] and fails the test (naming the case) when it does not come.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::common::spawned::Spawned;
use crate::common::{TestConn, DEADLINE};

/// `--max-line` for the catalogue's broker (small: oversize lines are cheap).
const MAX_LINE: usize = 1024;
/// `--max-literal` for the catalogue's broker.
const MAX_LITERAL: usize = 1024;
/// Allowed growth of the broker's VmRSS over the whole catalogue.
const RSS_BUDGET_KIB: u64 = 16 * 1024;

// ---------------------------------------------------------------------------
// The broker process
// ---------------------------------------------------------------------------

/// The binary with the catalogue's small limits.
async fn spawn_broker() -> Spawned {
    Spawned::start(&[
        "--max-line",
        &MAX_LINE.to_string(),
        "--max-literal",
        &MAX_LITERAL.to_string(),
    ])
    .await
}

// ---------------------------------------------------------------------------
// The catalogue's vocabulary
// ---------------------------------------------------------------------------

/// One expected server line.
#[derive(Debug, Clone)]
enum Reply {
    /// Exactly this line.
    Exact(String),
    /// `ERR <CODE>` with or without a message.
    Err(&'static str),
    /// `OK <msg-id> routed=<n>`.
    Routed(u32),
    /// Any `ERR` except `BAD_FRAME` (one reply, connection goes on).
    AnyErr,
}

/// One step of a case, run in order.
#[derive(Debug)]
enum Step {
    /// Write these bytes (written by a separate task, so a case that sends a
    /// lot while the server answers cannot deadlock on full socket buffers).
    Send(Vec<u8>),
    /// Half-close: no more bytes from the client (end of stream).
    Eof,
    /// Read the next line and check it.
    Expect(Reply),
}

/// What must hold after the steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The connection goes on: `PING` answers `OK pong` as the next line.
    Usable,
    /// The server closes: nothing more arrives, then the end of the stream.
    Closed,
    /// Random bytes: every line is a well-formed `ERR <CODE>` (or the final
    /// `OK pong`); a `BAD_FRAME` is the last line; then the stream ends.
    Noise,
}

#[derive(Debug)]
struct Case {
    name: String,
    steps: Vec<Step>,
    end: End,
}

/// Builds a case from its steps.
fn case(name: impl Into<String>, steps: Vec<Step>, end: End) -> Case {
    Case {
        name: name.into(),
        steps,
        end,
    }
}

fn send(bytes: impl AsRef<[u8]>) -> Step {
    Step::Send(bytes.as_ref().to_vec())
}

fn err(code: &'static str) -> Step {
    Step::Expect(Reply::Err(code))
}

fn exact(line: &str) -> Step {
    Step::Expect(Reply::Exact(line.to_string()))
}

fn routed(n: u32) -> Step {
    Step::Expect(Reply::Routed(n))
}

/// Sends `bytes`, expects one `ERR <code>`, the connection goes on.
fn one_err(name: &str, bytes: impl AsRef<[u8]>, code: &'static str) -> Case {
    case(name, vec![send(bytes), err(code)], End::Usable)
}

/// Sends `bytes`, expects `ERR BAD_FRAME`, then the connection is closed.
fn bad_frame(name: &str, bytes: impl AsRef<[u8]>) -> Case {
    case(name, vec![send(bytes), err("BAD_FRAME")], End::Closed)
}

/// The parts, concatenated.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// ---------------------------------------------------------------------------
// Deterministic inputs
// ---------------------------------------------------------------------------

/// xorshift64*: deterministic noise from a seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// `n` body bytes that are themselves command lines: none of them may run.
fn leaky(n: usize) -> Vec<u8> {
    b"PING\r\n".repeat(n / 6 + 1)[..n].to_vec()
}

/// How many replies the server owes for `bytes` (which contain no literal
/// mark and no TLS byte): one per line that is not empty or all blanks.
fn replies_owed(bytes: &[u8]) -> usize {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // The part after the last LF is not a line (yet).
    lines.pop();
    lines
        .into_iter()
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(|&b| b == b' ' || b == b'\t'))
        .count()
}

/// A TLS 1.2/1.3 ClientHello record for `localhost`, as a client library
/// pointed at the plain port would send it.
fn tls_client_hello() -> Vec<u8> {
    let host = b"localhost";
    let mut sni = Vec::new();
    sni.extend_from_slice(&((host.len() + 3) as u16).to_be_bytes());
    sni.push(0); // host_name
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    let mut ext = Vec::new();
    ext.extend_from_slice(&[0x00, 0x00]); // server_name
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]); // supported_versions: 1.3
    let mut body = vec![0x03, 0x03]; // legacy_version 1.2
    body.extend_from_slice(&noise(0x71_5c, 32)); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f]); // cipher suites
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![0x01]; // ClientHello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01]; // handshake record, TLS 1.0 framing
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// 10 000 pipelined bad commands of ten kinds, cycling, each with the code
/// the contract gives it; all are sent before any reply is read.
fn pipelined_errors() -> Case {
    let mut bytes = Vec::new();
    let mut steps = Vec::new();
    for i in 0..10_000u32 {
        let (line, code): (Vec<u8>, &'static str) = match i % 10 {
            0 => (format!("NOPE{i} x y\r\n").into_bytes(), "UNKNOWN_COMMAND"),
            1 => (format!("PING {i}\r\n").into_bytes(), "SYNTAX"),
            2 => (format!("GET nosuch{i}\r\n").into_bytes(), "NOT_FOUND"),
            3 => (format!("ACK {i}\r\n").into_bytes(), "UNKNOWN_TAG"),
            4 => (format!("PI\0NG {i}\r\n").into_bytes(), "SYNTAX"),
            5 => (format!("PUB \"\" k \"open{i}\r\n").into_bytes(), "SYNTAX"),
            6 => (format!("SUB q{i} prefetch=0\r\n").into_bytes(), "SYNTAX"),
            7 => (
                cat(&[&vec![b'L'; MAX_LINE + 1 + i as usize % 7], b"\r\n"]),
                "LINE_TOO_LONG",
            ),
            8 => (
                cat(&[
                    format!("PUB \"\" k {{{}}}\r\n", MAX_LITERAL + 1).as_bytes(),
                    &leaky(MAX_LITERAL + 1),
                    b"\r\n",
                ]),
                "TOO_LARGE",
            ),
            _ => (
                format!("HELLO proto={}\r\n", i + 2).into_bytes(),
                "PRECONDITION",
            ),
        };
        bytes.extend_from_slice(&line);
        steps.push(err(code));
    }
    steps.insert(0, Step::Send(bytes));
    case("10 000 pipelined errors of ten kinds", steps, End::Usable)
}

// ---------------------------------------------------------------------------
// The catalogue
// ---------------------------------------------------------------------------

fn catalogue() -> Vec<Case> {
    let k = |n: usize| "k".repeat(n);
    let over_line = MAX_LINE + 1;
    let over_lit = MAX_LITERAL + 1;

    let mut cases = vec![
        // --- oversize lines -------------------------------------------------
        one_err(
            "line over max-line",
            format!("PUB \"\" hq {} x\r\n", k(2 * MAX_LINE)),
            "LINE_TOO_LONG",
        ),
        one_err(
            "line of max-line + 1 bytes",
            cat(&[&vec![b'x'; over_line], b"\r\n"]),
            "LINE_TOO_LONG",
        ),
        case(
            "line of exactly max-line bytes (LF) is accepted",
            vec![
                send(format!("PUB \"\" nowhere {}\n", k(MAX_LINE - 15))),
                routed(0),
            ],
            End::Usable,
        ),
        case(
            "line of exactly max-line bytes (CR LF) is accepted",
            vec![
                send(format!("PUB \"\" nowhere {}\r\n", k(MAX_LINE - 15))),
                routed(0),
            ],
            End::Usable,
        ),
        case(
            "oversize line is answered before its end of line arrives",
            vec![
                send(vec![b'x'; 3 * MAX_LINE]),
                err("LINE_TOO_LONG"),
                send(vec![b'y'; 3 * MAX_LINE]),
                send("\r\n"),
            ],
            End::Usable,
        ),
        case(
            "oversize line without end of line, then EOF",
            vec![
                send(vec![b'x'; 2 * MAX_LINE]),
                Step::Eof,
                err("LINE_TOO_LONG"),
            ],
            End::Closed,
        ),
        one_err(
            "4 MiB line (discarded in constant memory)",
            cat(&[b"PUB \"\" hq ", &vec![b'z'; 4 << 20], b" x\r\n"]),
            "LINE_TOO_LONG",
        ),
        case(
            "oversize line announcing a literal skips the literal too",
            vec![
                send(format!(
                    "PUB \"\" hq {} {{6}}\r\nPING\r\n\r\n",
                    k(2 * MAX_LINE)
                )),
                err("LINE_TOO_LONG"),
            ],
            End::Usable,
        ),
        case(
            // The line is refused at once (the mark is not seen yet); at its
            // LF the mark turns out to be unskippable.
            "oversize line announcing an over-u64 literal",
            vec![
                send(format!(
                    "PUB \"\" hq {} {{99999999999999999999}}\r\nPING\r\n",
                    k(2 * MAX_LINE)
                )),
                err("LINE_TOO_LONG"),
                err("BAD_FRAME"),
            ],
            End::Closed,
        ),
        // --- oversize literals ----------------------------------------------
        one_err(
            "literal over max-literal, its bytes are skipped",
            cat(&[
                format!("PUB \"\" hq {{{over_lit}}}\r\n").as_bytes(),
                &leaky(over_lit),
                b"\r\n",
            ]),
            "TOO_LARGE",
        ),
        case(
            "TOO_LARGE is answered before the literal's bytes arrive",
            vec![
                send(format!("PUB \"\" hq {{{}}}\r\n", 3 * MAX_LITERAL)),
                err("TOO_LARGE"),
                send(leaky(3 * MAX_LITERAL)),
                send("\n"),
            ],
            End::Usable,
        ),
        case(
            "literal of exactly max-literal bytes is accepted",
            vec![
                send(cat(&[
                    format!("PUB \"\" nowhere {{{MAX_LITERAL}}}\r\n").as_bytes(),
                    &leaky(MAX_LITERAL),
                    b"\r\n",
                ])),
                routed(0),
            ],
            End::Usable,
        ),
        one_err(
            "oversize literal to a verb that takes none",
            cat(&[
                format!("PING {{{over_lit}}}\r\n").as_bytes(),
                &leaky(over_lit),
                b"\r\n",
            ]),
            "TOO_LARGE",
        ),
        case(
            "skipped literal not followed by an end of line",
            vec![
                send(cat(&[
                    format!("PUB \"\" hq {{{over_lit}}}\r\n").as_bytes(),
                    &vec![b'x'; over_lit],
                    b"X\r\n",
                ])),
                err("TOO_LARGE"),
                err("BAD_FRAME"),
            ],
            End::Closed,
        ),
        case(
            "u64::MAX literal count: TOO_LARGE, then EOF mid-skip",
            vec![
                send("PUB \"\" hq {18446744073709551615}\r\nabc"),
                err("TOO_LARGE"),
                Step::Eof,
            ],
            End::Closed,
        ),
        bad_frame(
            "literal count of u64::MAX + 1",
            "PUB \"\" hq {18446744073709551616}\r\nabc\r\n",
        ),
        bad_frame(
            "literal count of 20 nines",
            "PUB \"\" hq {99999999999999999999}\r\n",
        ),
        bad_frame(
            "literal count of 1000 digits",
            format!("PUB \"\" hq {{{}}}\r\n", "9".repeat(1000)),
        ),
        case(
            "literal count with 30 leading zeros is accepted",
            vec![
                send("PUB \"\" nowhere {000000000000000000000000000005}\r\nhello\r\n"),
                routed(0),
            ],
            End::Usable,
        ),
        // --- wrong byte counts ----------------------------------------------
        bad_frame(
            "literal longer than announced",
            "PUB \"\" hq {3}\r\nhello\r\nPING\r\n",
        ),
        bad_frame(
            "literal shorter than announced",
            "PUB \"\" hq {10}\r\nhello\r\nPING\r\n",
        ),
        bad_frame(
            "literal not followed by an end of line",
            "PUB \"\" hq {5}\r\nhelloPING\r\n",
        ),
        bad_frame(
            "literal followed by CR without LF",
            "PUB \"\" hq {5}\r\nhello\rPING\r\n",
        ),
        bad_frame(
            "empty literal without its end of line",
            "PUB \"\" nowhere {0}\r\nPING\r\n",
        ),
        case(
            // No command is complete, so there is nothing to answer.
            "literal count lies: fewer bytes, then EOF",
            vec![send("PUB \"\" hq {100}\r\nshort"), Step::Eof],
            End::Closed,
        ),
        case(
            "literal count lies: no bytes at all, then EOF",
            vec![send("PUB \"\" hq {5}\r\n"), Step::Eof],
            End::Closed,
        ),
        case(
            "literal mark alone on a line",
            vec![send("{5}\r\nhello\r\n"), err("UNKNOWN_COMMAND")],
            End::Usable,
        ),
        one_err(
            "literal to a verb that takes none (bytes are read)",
            "PING {6}\r\nPING\r\n\r\n",
            "SYNTAX",
        ),
        case(
            "quoted literal mark is plain text",
            vec![send("PUB \"\" nowhere \"{5}\"\r\n"), routed(0)],
            End::Usable,
        ),
        case(
            "literal mark glued to a word is plain text",
            vec![send("PUB \"\" nowhere x{5}\r\n"), routed(0)],
            End::Usable,
        ),
        case(
            "literal mark followed by blanks",
            vec![send("PUB \"\" nowhere {5}  \t\r\nhello\r\n"), routed(0)],
            End::Usable,
        ),
        // --- NUL, invalid UTF-8, CR -----------------------------------------
        one_err("NUL after the verb", "PING\0\r\n", "SYNTAX"),
        one_err("NUL in a queue name", "DECLARE QUEUE a\0b\r\n", "SYNTAX"),
        one_err("NUL in a routing key", "PUB \"\" a\0b x\r\n", "SYNTAX"),
        one_err("NUL as a body token", "PUB \"\" nowhere \0\r\n", "SYNTAX"),
        one_err(
            "NUL in a line that announced a literal (literal skipped)",
            "PUB \"\" k\0 {6}\r\nPING\r\n\r\n",
            "SYNTAX",
        ),
        case(
            "NUL and 0xff inside a literal are data",
            vec![send(b"PUB \"\" nowhere {4}\r\n\0\xff\r\0\r\n"), routed(0)],
            End::Usable,
        ),
        one_err(
            "invalid UTF-8 in a queue name",
            b"DECLARE QUEUE \xff\xfe\r\n",
            "SYNTAX",
        ),
        one_err(
            "invalid UTF-8 in an exchange name",
            b"DECLARE EXCHANGE ex\xc3\x28 direct\r\n",
            "SYNTAX",
        ),
        one_err(
            "invalid UTF-8 in the verb",
            b"\xff\xfePING\r\n",
            "UNKNOWN_COMMAND",
        ),
        // The contract does not give ids and tags a character set; protocol.md
        // §12 makes a bad name or word ERR SYNTAX, and the server's message
        // says "not valid UTF-8". Pinned here, reported as under-specified.
        one_err(
            "invalid UTF-8 in a message id",
            b"PUB \"\" nowhere id=\xff\xfe x\r\n",
            "SYNTAX",
        ),
        one_err(
            "invalid UTF-8 in a consumer tag",
            b"SUB hq tag=\xff\r\n",
            "SYNTAX",
        ),
        one_err("CR inside a line", "PI\rNG\r\n", "SYNTAX"),
        one_err(
            "CR between two commands on one line",
            "PING\rPING\r\n",
            "SYNTAX",
        ),
        one_err("two CRs before the LF", "PING\r\r\n", "SYNTAX"),
        case(
            "bare LF ends a line",
            vec![send("PING\nPING\n"), exact("OK pong"), exact("OK pong")],
            End::Usable,
        ),
        case(
            "command without end of line, then EOF",
            vec![send("PING"), Step::Eof],
            End::Closed,
        ),
        case(
            "command ending in a lone CR, then EOF",
            vec![send("PING\r"), Step::Eof],
            End::Closed,
        ),
        // --- empty lines ----------------------------------------------------
        case(
            "empty and blank lines get no reply",
            vec![send("\r\n\n   \r\n\t\t\n \t \r\n")],
            End::Usable,
        ),
        case(
            "10 000 empty lines get no reply",
            vec![send("\r\n".repeat(10_000))],
            End::Usable,
        ),
        // --- HTTP and TLS ---------------------------------------------------
        bad_frame(
            "HTTP GET request",
            "GET / HTTP/1.1\r\nHost: localhost:5680\r\nUser-Agent: curl/8\r\n\r\n",
        ),
        bad_frame(
            "HTTP POST request with a body",
            "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        ),
        bad_frame("HTTP Host header line alone", "Host: localhost\r\n"),
        bad_frame(
            "HTTP/2 connection preface",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ),
        case(
            "HTTP request after a valid command",
            vec![
                send("PING\r\nGET /index.html HTTP/1.0\r\n\r\n"),
                exact("OK pong"),
                err("BAD_FRAME"),
            ],
            End::Closed,
        ),
        bad_frame("TLS ClientHello", tls_client_hello()),
        case(
            "TLS ClientHello after a valid command",
            vec![
                send(cat(&[b"PING\r\n", &tls_client_hello()])),
                exact("OK pong"),
                err("BAD_FRAME"),
            ],
            End::Closed,
        ),
        // --- unknown commands -----------------------------------------------
        one_err("unknown verb", "FROBNICATE now\r\n", "UNKNOWN_COMMAND"),
        one_err(
            "unknown verb of 1000 bytes",
            format!("{}\r\n", "V".repeat(1000)),
            "UNKNOWN_COMMAND",
        ),
        one_err("verb prefix of a real verb", "PIN\r\n", "UNKNOWN_COMMAND"),
        one_err(
            "HTTP-like lower-case line is a command",
            "get / http/1.1\r\n",
            "SYNTAX",
        ),
        case(
            "lower-case verb is a keyword",
            vec![send("ping\r\n"), exact("OK pong")],
            End::Usable,
        ),
        // --- wrong arity ----------------------------------------------------
        one_err("PING with an argument", "PING extra\r\n", "SYNTAX"),
        one_err(
            "QUIT with an argument does not quit",
            "QUIT now\r\n",
            "SYNTAX",
        ),
        one_err("PUB alone", "PUB\r\n", "SYNTAX"),
        one_err("PUB without routing key or body", "PUB \"\"\r\n", "SYNTAX"),
        one_err("PUB without body", "PUB \"\" hq\r\n", "SYNTAX"),
        one_err("DECLARE alone", "DECLARE\r\n", "SYNTAX"),
        one_err(
            "DECLARE QUEUE without a name",
            "DECLARE QUEUE\r\n",
            "SYNTAX",
        ),
        one_err(
            "DECLARE of an unknown kind",
            "DECLARE TABLE x\r\n",
            "SYNTAX",
        ),
        one_err(
            "PURGE with a left-over word",
            "PURGE hq extra\r\n",
            "SYNTAX",
        ),
        one_err("ACK without a tag", "ACK\r\n", "SYNTAX"),
        one_err("AUTH without a password", "AUTH user\r\n", "SYNTAX"),
        one_err(
            "DECLARE EXCHANGE of an unknown type",
            "DECLARE EXCHANGE ex nosuchtype\r\n",
            "SYNTAX",
        ),
        // --- numbers out of range -------------------------------------------
        one_err("prefetch=0", "SUB hq prefetch=0\r\n", "SYNTAX"),
        one_err("prefetch=65536", "SUB hq prefetch=65536\r\n", "SYNTAX"),
        one_err("prefetch=+5", "SUB hq prefetch=+5\r\n", "SYNTAX"),
        one_err("GET count=0", "GET hq count=0\r\n", "SYNTAX"),
        one_err("GET count=10001", "GET hq count=10001\r\n", "SYNTAX"),
        one_err("GET wait=3600001", "GET hq wait=3600001\r\n", "SYNTAX"),
        one_err(
            "priority=256",
            "PUB \"\" nowhere priority=256 x\r\n",
            "SYNTAX",
        ),
        one_err("negative delivery tag", "ACK -1\r\n", "SYNTAX"),
        one_err(
            "delivery tag over u64",
            "ACK 18446744073709551616\r\n",
            "SYNTAX",
        ),
        one_err(
            "delivery tag 0 was never issued",
            "ACK 0\r\n",
            "UNKNOWN_TAG",
        ),
        one_err(
            "ttl over u64",
            "PUB \"\" nowhere ttl=18446744073709551616 x\r\n",
            "SYNTAX",
        ),
        one_err(
            "max-length over u64",
            "DECLARE QUEUE hq2 max-length=18446744073709551616\r\n",
            "SYNTAX",
        ),
        case(
            "ttl and delay of u64::MAX ms are in range",
            vec![
                send("PUB \"\" hq ttl=18446744073709551615 delay=18446744073709551615 x\r\n"),
                routed(1),
            ],
            End::Usable,
        ),
        // --- very long tokens -----------------------------------------------
        one_err(
            "queue name of 256 bytes",
            format!("DECLARE QUEUE {}\r\n", "a".repeat(256)),
            "SYNTAX",
        ),
        case(
            "queue name of 255 bytes is accepted",
            vec![
                send(format!("DECLARE QUEUE {}\r\n", "a".repeat(255))),
                exact(&format!("OK {} messages=0 consumers=0", "a".repeat(255))),
            ],
            End::Usable,
        ),
        one_err(
            "routing key of 256 bytes",
            format!("PUB \"\" {} x\r\n", k(256)),
            "SYNTAX",
        ),
        one_err(
            "message id of 256 bytes",
            format!("PUB \"\" nowhere id={} x\r\n", "i".repeat(256)),
            "SYNTAX",
        ),
        one_err(
            "header name of 256 bytes",
            format!("PUB \"\" nowhere h.{}=1 x\r\n", "h".repeat(256)),
            "SYNTAX",
        ),
        one_err(
            "quoted argument of 1000 bytes to PING",
            format!("PING \"{}\"\r\n", "a".repeat(1000)),
            "SYNTAX",
        ),
        // --- quotes and escapes ---------------------------------------------
        one_err("unterminated quote", "PUB \"\" hq \"oops\r\n", "SYNTAX"),
        one_err(
            "unterminated quote on a literal line (literal read)",
            "PUB \"\" k \"a {6}\r\nPING\r\n\r\n",
            "SYNTAX",
        ),
        one_err(
            "quote closed by an escaped quote only",
            "PUB \"\" nowhere \"abc\\\"\r\n",
            "SYNTAX",
        ),
        one_err(
            "reserved escape in quotes",
            "PUB \"\" nowhere \"a\\nb\"\r\n",
            "SYNTAX",
        ),
        one_err(
            "closing quote glued to a word",
            "PUB \"\" nowhere \"a\"b\r\n",
            "SYNTAX",
        ),
        one_err(
            "quoted queue name with a blank",
            "DECLARE QUEUE \"with space\"\r\n",
            "SYNTAX",
        ),
        one_err(
            "bad character in a queue name",
            "DECLARE QUEUE a*b\r\n",
            "SYNTAX",
        ),
        // --- options --------------------------------------------------------
        one_err("unknown option", "GET hq bogus=1\r\n", "SYNTAX"),
        one_err("duplicate option", "GET hq count=1 count=2\r\n", "SYNTAX"),
        one_err(
            "duplicate header",
            "PUB \"\" nowhere h.a=1 h.a=2 x\r\n",
            "SYNTAX",
        ),
        one_err(
            "persistent with transient",
            "PUB \"\" nowhere persistent transient x\r\n",
            "SYNTAX",
        ),
        one_err("reserved consumer tag", "SUB hq tag=-\r\n", "SYNTAX"),
        one_err(
            "unknown enumerated value",
            "DECLARE QUEUE hq3 overflow=sideways\r\n",
            "SYNTAX",
        ),
        // --- other codes on hostile lines -----------------------------------
        one_err(
            "HELLO with another protocol",
            "HELLO proto=2\r\n",
            "PRECONDITION",
        ),
        one_err(
            "HELP of an unknown verb",
            "HELP NOSUCHVERB\r\n",
            "NOT_FOUND",
        ),
        one_err("UNSUB of an unknown tag", "UNSUB nosuch\r\n", "NOT_FOUND"),
        case(
            "QUIT after an error closes after its reply",
            vec![
                send("NOPE\r\nQUIT\r\nPING\r\n"),
                err("UNKNOWN_COMMAND"),
                exact("OK bye"),
            ],
            End::Closed,
        ),
        case(
            "one byte at a time: errors still one per line",
            b"NOPE\r\nPI\0NG\r\nPUB \"\" k \"x\r\n"
                .iter()
                .map(|b| Step::Send(vec![*b]))
                .chain([err("UNKNOWN_COMMAND"), err("SYNTAX"), err("SYNTAX")])
                .collect(),
            End::Usable,
        ),
        pipelined_errors(),
    ];

    // --- random bytes -------------------------------------------------------
    // Raw noise (literal marks, TLS bytes and all), then EOF: only ERR lines
    // (or the final pong), a BAD_FRAME only as the last line, then a close.
    for seed in 1..=4u64 {
        let bytes = cat(&[&noise(seed, 4096), b"\r\nPING\r\n"]);
        cases.push(case(
            format!("raw random bytes, seed {seed}"),
            vec![Step::Send(bytes), Step::Eof],
            End::Noise,
        ));
    }
    // Noise that cannot announce a literal or look like TLS stays in sync:
    // exactly one ERR per non-blank line, then the connection goes on.
    for seed in 101..=104u64 {
        let mut bytes: Vec<u8> = noise(seed, 16 * 1024)
            .into_iter()
            .map(|b| match b {
                b'{' => b'(',
                0x16 => 0x17,
                b => b,
            })
            .collect();
        bytes.push(b'\n');
        let owed = replies_owed(&bytes);
        let mut steps = vec![Step::Send(bytes)];
        steps.extend((0..owed).map(|_| Step::Expect(Reply::AnyErr)));
        cases.push(case(
            format!("in-sync random lines, seed {seed} ({owed} replies)"),
            steps,
            End::Usable,
        ));
    }
    cases
}

// ---------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------

/// What the writer task is asked to do.
#[derive(Debug)]
enum Write {
    Bytes(Vec<u8>),
    Eof,
}

/// A raw connection for one case: reads here, writes in a task.
struct Raw {
    name: String,
    reader: BufReader<OwnedReadHalf>,
    tx: Option<mpsc::UnboundedSender<Write>>,
    writer: Option<JoinHandle<std::io::Result<()>>>,
}

impl Raw {
    async fn connect(addr: SocketAddr, name: &str) -> Raw {
        let stream = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("[{name}] connect timed out"))
            .unwrap_or_else(|e| panic!("[{name}] connect: {e}"));
        let (r, mut w) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Write>();
        let writer = tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                match job {
                    Write::Bytes(b) => w.write_all(&b).await?,
                    Write::Eof => w.shutdown().await?,
                }
            }
            Ok(())
        });
        let mut raw = Raw {
            name: name.to_string(),
            reader: BufReader::new(r),
            tx: Some(tx),
            writer: Some(writer),
        };
        let hello = raw.line().await;
        assert!(
            hello
                .as_deref()
                .is_some_and(|h| h.starts_with("HELLO sluice ")),
            "[{name}] greeting: {hello:?}"
        );
        raw
    }

    fn write(&self, job: Write) {
        let tx = self.tx.as_ref().expect("writer open");
        // A send error means the writer task ended on a write error, which
        // `writer_result` reports.
        let _ = tx.send(job);
    }

    /// The next line without its end of line; `None` at the end of the
    /// stream. With `reset_is_end`, a connection reset also counts as the
    /// end (the server closed with our unread bytes in its socket).
    async fn read_line(&mut self, reset_is_end: bool) -> Option<String> {
        let mut buf = Vec::new();
        let res = tokio::time::timeout(DEADLINE, self.reader.read_until(b'\n', &mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "[{}] timed out waiting for a line (partial: {:?})",
                    self.name,
                    String::from_utf8_lossy(&buf)
                )
            });
        match res {
            Ok(0) => None,
            Ok(_) => {
                assert!(
                    buf.ends_with(b"\r\n"),
                    "[{}] server line not ended by CR LF: {:?}",
                    self.name,
                    String::from_utf8_lossy(&buf)
                );
                buf.truncate(buf.len() - 2);
                Some(String::from_utf8_lossy(&buf).into_owned())
            }
            Err(e) if reset_is_end && e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("[{}] read: {e}", self.name),
        }
    }

    async fn line(&mut self) -> Option<String> {
        self.read_line(false).await
    }

    async fn expect(&mut self, want: &Reply, index: usize) {
        let name = self.name.clone();
        let got = self
            .line()
            .await
            .unwrap_or_else(|| panic!("[{name}] closed while expecting reply {index}: {want:?}"));
        let ok = match want {
            Reply::Exact(s) => got == *s,
            Reply::Err(code) => {
                got == format!("ERR {code}") || got.starts_with(&format!("ERR {code} "))
            }
            Reply::Routed(n) => {
                let w: Vec<&str> = got.split(' ').collect();
                w.len() == 3 && w[0] == "OK" && !w[1].is_empty() && w[2] == format!("routed={n}")
            }
            Reply::AnyErr => is_err_line(&got) && !got.starts_with("ERR BAD_FRAME"),
        };
        assert!(ok, "[{name}] reply {index}: expected {want:?}, got {got:?}");
    }

    /// Expects the end of the stream, with nothing before it.
    async fn expect_closed(&mut self) {
        if let Some(extra) = self.read_line(true).await {
            panic!("[{}] expected a close, got {extra:?}", self.name);
        }
    }

    async fn writer_result(&mut self) -> std::io::Result<()> {
        self.tx = None;
        let h = self.writer.take().expect("writer");
        tokio::time::timeout(DEADLINE, h)
            .await
            .unwrap_or_else(|_| panic!("[{}] writer did not finish", self.name))
            .expect("writer task panicked")
    }
}

/// `ERR <UPPER_SNAKE>` with or without a message.
fn is_err_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("ERR ") else {
        return false;
    };
    let code = rest.split(' ').next().unwrap_or("");
    !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
}

async fn run_case(addr: SocketAddr, case: Case) {
    let mut c = Raw::connect(addr, &case.name).await;
    let mut index = 0;
    for step in &case.steps {
        match step {
            Step::Send(b) => c.write(Write::Bytes(b.clone())),
            Step::Eof => c.write(Write::Eof),
            Step::Expect(want) => {
                c.expect(want, index).await;
                index += 1;
            }
        }
    }
    match case.end {
        End::Usable => {
            c.write(Write::Bytes(b"PING\r\n".to_vec()));
            c.expect(&Reply::Exact("OK pong".into()), index).await;
            let w = c.writer_result().await;
            assert!(w.is_ok(), "[{}] write failed: {w:?}", case.name);
        }
        End::Closed => {
            c.expect_closed().await;
            // Writes may fail once the server has closed: not checked.
            let _ = c.writer_result().await;
        }
        End::Noise => {
            let mut n = 0usize;
            while let Some(line) = c.read_line(false).await {
                n += 1;
                if line == "OK pong" {
                    continue;
                }
                assert!(
                    is_err_line(&line),
                    "[{}] line {n}: expected ERR <CODE>, got {line:?}",
                    case.name
                );
                if line.starts_with("ERR BAD_FRAME") {
                    c.expect_closed().await;
                    break;
                }
            }
            let _ = c.writer_result().await;
        }
    }
}

/// The bystander's round trip: publish a body and get it back.
async fn bystander_round_trip(b: &mut TestConn, i: usize, after: &str) {
    let body = format!("bystander {i}");
    b.send_literal(&format!("PUB \"\" bystander id=b{i}"), body.as_bytes())
        .await;
    let got = b.line().await;
    assert_eq!(
        got,
        format!("OK b{i} routed=1"),
        "bystander PUB after {after}"
    );
    b.send("GET bystander ack=auto").await;
    let head = b.line().await;
    assert!(
        head.starts_with("MSG - ") && head.contains(&format!(" id=b{i} ")),
        "bystander GET after {after}: {head:?}"
    );
    let n = crate::common::split_literal(&head)
        .map(|(_, n)| n)
        .expect("MSG literal");
    assert_eq!(
        b.literal(n).await,
        body.as_bytes(),
        "bystander body after {after}"
    );
    b.expect("OK 1").await;
}

#[tokio::test]
async fn bad_input_catalogue_against_the_real_binary() {
    let mut broker = spawn_broker().await;
    let addr = broker.addr;

    let mut bystander = TestConn::connect(addr).await;
    bystander
        .ok(
            "DECLARE QUEUE bystander",
            "OK bystander messages=0 consumers=0",
        )
        .await;
    bystander
        .ok("DECLARE QUEUE hq", "OK hq messages=0 consumers=0")
        .await;
    bystander_round_trip(&mut bystander, 0, "start-up").await;

    let cases = catalogue();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let rss_before = broker.rss_kib();

    let total = cases.len();
    for (i, case) in cases.into_iter().enumerate() {
        let name = case.name.clone();
        run_case(addr, case).await;
        bystander_round_trip(&mut bystander, i + 1, &name).await;
    }
    bystander.ok("PING", "OK pong").await;
    broker.assert_alive("after the catalogue");

    // Resident memory after every hostile connection has closed. The bound
    // is generous on purpose: the allocator keeps freed pages, sled's page
    // cache and tokio's buffers settle, and the 10 000-error pipeline
    // buffers its replies for a while. What it catches is memory that
    // scales with the hostile input: a 4 MiB line, a skipped literal or an
    // announced u64::MAX count held in RAM, or state kept per closed
    // connection.
    let rss_after = broker.rss_kib();
    let grew = rss_after.saturating_sub(rss_before);
    assert!(
        grew <= RSS_BUDGET_KIB,
        "broker VmRSS grew {grew} KiB over {total} cases ({rss_before} -> {rss_after} KiB)"
    );
}

// ---------------------------------------------------------------------------
// Discrepancies between the contract and the live server
// ---------------------------------------------------------------------------

/// Contract §1: "If the terminator after the N bytes is not there, the
/// sender gets `ERR BAD_FRAME ...` and the connection is closed." A client
/// that sends all N bytes and then ends the stream has certainly not sent
/// the terminator: it gets the `BAD_FRAME` before the close (this catalogue
/// found the server closing without a reply; fixed).
#[tokio::test]
async fn literal_without_terminator_at_eof_gets_bad_frame() {
    let broker = spawn_broker().await;
    let case = case(
        "N literal bytes then EOF",
        vec![
            send("PUB \"\" hq {5}\r\nhello"),
            Step::Eof,
            err("BAD_FRAME"),
        ],
        End::Closed,
    );
    run_case(broker.addr, case).await;
}

/// Contract §1: "Routing keys: up to 255 bytes, any token." A token that is
/// not UTF-8 is still a token: it is routed (here to no queue), not refused.
/// More in `binary_keys.rs`.
#[tokio::test]
async fn routing_key_that_is_not_utf8_is_any_token() {
    let broker = spawn_broker().await;
    let case = case(
        "non-UTF-8 routing key",
        vec![send(b"PUB \"\" \xc3\x28 x\r\n"), routed(0)],
        End::Usable,
    );
    run_case(broker.addr, case).await;
}
