//! Pure framing of the byte stream into frames (no I/O, no verbs).
//!
//! A frame is one line (ended by LF, one CR right before it dropped), or a
//! line whose last unquoted word is a lit-mark `{N}` followed by exactly N raw
//! bytes and an end of line. The [`Framer`] finds frame boundaries from the
//! raw bytes alone, enforces the line and literal limits and keeps the stream
//! in sync after an oversize line or literal. It is used in both directions
//! (server reading commands, client reading replies and pushes).

use bytes::{Buf, Bytes, BytesMut};

use super::code::ErrorCode;

/// Default longest line, without its end of line.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;
/// Default largest literal.
pub const DEFAULT_MAX_LITERAL_BYTES: usize = 16 * 1024 * 1024;

const LF: u8 = b'\n';
const CR: u8 = b'\r';
/// First byte of a TLS record (a ClientHello is a handshake record).
const TLS_HANDSHAKE: u8 = 0x16;

/// The framer's size limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line in bytes, without its end of line.
    pub max_line: usize,
    /// Largest literal in bytes.
    pub max_literal: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: DEFAULT_MAX_LINE_BYTES,
            max_literal: DEFAULT_MAX_LITERAL_BYTES,
        }
    }
}

/// One complete frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The line, without its end of line (a CR right before the LF is dropped).
    /// When a literal follows, the line still ends with its `{N}` lit-mark.
    pub line: Bytes,
    /// The literal's N bytes, when the line announced one.
    pub(crate) literal: Option<Bytes>,
}

/// What the framer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameEvent {
    /// A complete frame, to be parsed.
    Frame(Frame),
    /// A frame that was refused: answer it, the connection goes on.
    Reject(Rejection),
}

/// A rejected frame: answer `ERR <code> <message>` and keep the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `LineTooLong`, `TooLarge` or `Syntax` (NUL or bare CR in a line).
    pub(crate) code: ErrorCode,
    /// Human-readable text; never ends in a lit-mark.
    pub message: String,
}

/// Fatal: answer `ERR BAD_FRAME <message>` then close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadFrame(pub String);

#[derive(Debug)]
enum State {
    /// Looking for the end of a line; `scanned` bytes are known to hold no LF.
    Line { scanned: usize },
    /// Collecting a literal of `len` bytes (within the limit) for `line`.
    Literal { line: Bytes, len: usize },
    /// Dropping an oversize line up to its LF, scanning it for a final `{N}`.
    Discard { scan: MarkScan },
    /// Dropping `left` more bytes of a skipped `len`-byte literal, then its EOL.
    Swallow { left: u64, len: u64 },
    /// A `BadFrame` was returned: the stream is broken for good.
    Failed(BadFrame),
}

/// Splits a byte stream into [`FrameEvent`]s.
#[derive(Debug)]
pub struct Framer {
    limits: Limits,
    state: State,
}

impl Framer {
    /// A framer at the start of a stream.
    pub fn new(limits: Limits) -> Self {
        Framer {
            limits,
            state: State::Line { scanned: 0 },
        }
    }

    /// True when the framer is inside a frame (a partial line, a literal being
    /// collected or skipped): an end of stream now cuts a frame short.
    pub(crate) fn in_frame(&self, buf: &BytesMut) -> bool {
        !matches!(self.state, State::Line { .. }) || !buf.is_empty()
    }

    /// At the end of the stream: the error owed when a literal's N bytes
    /// all arrived but not the end of line after them (the terminator "is
    /// not there"). `None` when the stream merely stopped: between frames,
    /// in a partial line, or before a literal's bytes were all sent.
    pub(crate) fn at_end(&self, buf: &BytesMut) -> Option<BadFrame> {
        match &self.state {
            State::Literal { len, .. } if buf.len() >= *len => {
                Some(BadFrame(after_literal(*len as u64)))
            }
            State::Swallow { left: 0, len } => Some(BadFrame(after_literal(*len))),
            _ => None,
        }
    }

    /// Consumes bytes from `buf`. `Ok(None)`: need more bytes (everything
    /// useful stays buffered, the state has advanced). After an `Err`, every
    /// later call returns the same error.
    pub fn next_event(&mut self, buf: &mut BytesMut) -> Result<Option<FrameEvent>, BadFrame> {
        loop {
            match &mut self.state {
                State::Failed(bad) => return Err(bad.clone()),
                State::Line { scanned } => {
                    let Some(&first) = buf.first() else {
                        return Ok(None);
                    };
                    if first == TLS_HANDSHAKE {
                        return self.fail("this is a plain-text port, not TLS".into());
                    }
                    let max = self.limits.max_line;
                    let window = buf.len().min(max.saturating_add(2));
                    let start = (*scanned).min(window);
                    match memchr::memchr(LF, &buf[start..window]) {
                        Some(off) => {
                            let at = start + off;
                            let len = if at > 0 && buf[at - 1] == CR {
                                at - 1
                            } else {
                                at
                            };
                            if len > max {
                                return Ok(Some(self.line_too_long()));
                            }
                            let mut raw = buf.split_to(at + 1);
                            raw.truncate(len);
                            self.state = State::Line { scanned: 0 };
                            if let Some(event) = self.on_line(raw.freeze())? {
                                return Ok(Some(event));
                            }
                        }
                        None => {
                            let surely_long = buf.len() > max.saturating_add(1)
                                || (buf.len() == max.saturating_add(1) && buf[max] != CR);
                            if surely_long {
                                return Ok(Some(self.line_too_long()));
                            }
                            *scanned = window;
                            return Ok(None);
                        }
                    }
                }
                State::Literal { line, len } => {
                    let len = *len;
                    match eol_at(buf, len) {
                        None => return Ok(None),
                        Some(None) => return self.fail(after_literal(len as u64)),
                        Some(Some(eol)) => {
                            let literal = buf.split_to(len).freeze();
                            buf.advance(eol);
                            let line = std::mem::take(line);
                            self.state = State::Line { scanned: 0 };
                            let frame = Frame {
                                line,
                                literal: Some(literal),
                            };
                            return Ok(Some(FrameEvent::Frame(frame)));
                        }
                    }
                }
                State::Discard { scan } => match memchr::memchr(LF, buf) {
                    None => {
                        scan.push_all(buf);
                        buf.clear();
                        return Ok(None);
                    }
                    Some(at) => {
                        scan.push_all(&buf[..at]);
                        buf.advance(at + 1);
                        match scan.lit_mark() {
                            None => self.state = State::Line { scanned: 0 },
                            Some(Ok(n)) => self.state = State::Swallow { left: n, len: n },
                            Some(Err(message)) => return self.fail(message),
                        }
                    }
                },
                State::Swallow { left, len } => {
                    if *left > 0 {
                        let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                        buf.advance(take);
                        *left -= take as u64;
                        if *left > 0 {
                            return Ok(None);
                        }
                    }
                    let len = *len;
                    match eol_at(buf, 0) {
                        None => return Ok(None),
                        Some(None) => return self.fail(after_literal(len)),
                        Some(Some(eol)) => {
                            buf.advance(eol);
                            self.state = State::Line { scanned: 0 };
                        }
                    }
                }
            }
        }
    }

    /// Handles one complete line (EOL removed). `None`: skipped (blank) or a
    /// literal is now being collected; the caller loops.
    fn on_line(&mut self, line: Bytes) -> Result<Option<FrameEvent>, BadFrame> {
        if line.iter().all(|&b| is_blank(b)) {
            return Ok(None);
        }
        let mark = match lit_mark(&line, true) {
            Some(Err(digits)) => return self.fail(impossible(digits)),
            Some(Ok(n)) => Some(n),
            None => None,
        };
        let bad = if line.contains(&0) {
            Some("line contains a NUL byte")
        } else if line.contains(&CR) {
            Some("line contains a CR that is not right before its LF")
        } else {
            None
        };
        if let Some(message) = bad {
            if let Some(n) = mark {
                self.state = State::Swallow { left: n, len: n };
            }
            return Ok(Some(reject(ErrorCode::Syntax, message.into())));
        }
        let Some(n) = mark else {
            let frame = Frame {
                line,
                literal: None,
            };
            return Ok(Some(FrameEvent::Frame(frame)));
        };
        match usize::try_from(n) {
            Ok(len) if len <= self.limits.max_literal => {
                // No `reserve(len)`: a `{N}` is a claim, not bytes. The buffer
                // grows as the literal arrives (BytesMut doubles), so a client
                // that announces 16 MiB and sends nothing costs nothing.
                self.state = State::Literal { line, len };
                Ok(None)
            }
            _ => {
                self.state = State::Swallow { left: n, len: n };
                let message = format!(
                    "literal of {n} bytes exceeds max-literal={}",
                    self.limits.max_literal
                );
                Ok(Some(reject(ErrorCode::TooLarge, message)))
            }
        }
    }

    fn line_too_long(&mut self) -> FrameEvent {
        self.state = State::Discard {
            scan: MarkScan::default(),
        };
        let message = format!("line exceeds max-line={} bytes", self.limits.max_line);
        reject(ErrorCode::LineTooLong, message)
    }

    fn fail<T>(&mut self, message: String) -> Result<T, BadFrame> {
        let bad = BadFrame(message);
        self.state = State::Failed(bad.clone());
        Err(bad)
    }
}

fn reject(code: ErrorCode, message: String) -> FrameEvent {
    FrameEvent::Reject(Rejection { code, message })
}

fn after_literal(len: u64) -> String {
    format!("expected end of line after a {len}-byte literal")
}

fn impossible(digits: &[u8]) -> String {
    let digits = String::from_utf8_lossy(digits);
    format!("literal length {digits} does not fit in 64 bits")
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The end of line at `buf[at..]`: `None` when more bytes are needed,
/// `Some(None)` when it is not an EOL, `Some(Some(len))` for LF / CR LF.
fn eol_at(buf: &[u8], at: usize) -> Option<Option<usize>> {
    match *buf.get(at)? {
        LF => Some(Some(1)),
        CR => match *buf.get(at + 1)? {
            LF => Some(Some(2)),
            _ => Some(None),
        },
        _ => Some(None),
    }
}

/// The lexical literal test on a line without its EOL: after trailing blanks,
/// does it end in `{` 1*DIGIT `}` with the `{` at the start (when
/// `at_start` says the slice starts the line) or after a blank?
/// `Some(Err(digits))` when the count does not fit in a u64: the sender
/// meant a literal that cannot be honoured, so the stream cannot be
/// re-synchronised (anchors §4.3: BAD_FRAME), rather than read as text.
pub(crate) fn lit_mark(line: &[u8], at_start: bool) -> Option<Result<u64, &[u8]>> {
    let end = line.iter().rposition(|&b| !is_blank(b))? + 1;
    let line = &line[..end];
    let inner = line.strip_suffix(b"}")?;
    let ndigits = inner
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if ndigits == 0 {
        return None;
    }
    let digits = &inner[inner.len() - ndigits..];
    let before = inner[..inner.len() - ndigits].strip_suffix(b"{")?;
    match before.last() {
        Some(&b) if is_blank(b) => {}
        None if at_start => {}
        _ => return None,
    }
    let n = digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    Some(n.ok_or(digits))
}

/// Digits of a `{N}` kept for the BAD_FRAME message of an oversize line; more
/// than any u64 needs, so that the message is exact for any plausible count.
const MARK_DIGITS: usize = 40;

/// [`lit_mark`] computed incrementally over a line fed in pieces (an oversize
/// line being discarded), in O(1) memory whatever the length of the line or
/// of its mark: a small automaton over the bytes, with the value of the
/// current `{` DIGITs run accumulated as it goes. It sees the same line as
/// [`lit_mark`] does on a normal line: a CR right before the LF is dropped,
/// any other CR is text.
#[derive(Debug)]
struct MarkScan {
    lex: Lex,
    /// The last byte was a CR: dropped if the LF comes next, text otherwise.
    cr: bool,
    /// The current or last candidate mark's digits as written (the first
    /// `MARK_DIGITS` of them), for the error message.
    digits: [u8; MARK_DIGITS],
    /// How many digits the current or last candidate mark has.
    ndigits: u64,
    /// Their value; `None` once it does not fit in a u64.
    value: Option<u64>,
}

/// Where [`MarkScan`] stands in the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// At the line start or after a blank: a `{` here may open a mark.
    Boundary,
    /// In a word that cannot end in a mark before the next blank.
    Word,
    /// After a `{` that may open a mark, then `ndigits` digits.
    Open,
    /// After `{` 1*DIGIT `}`; `blanks`: blanks followed it.
    Closed { blanks: bool },
}

impl Default for MarkScan {
    fn default() -> Self {
        MarkScan {
            lex: Lex::Boundary,
            cr: false,
            digits: [0; MARK_DIGITS],
            ndigits: 0,
            value: Some(0),
        }
    }
}

impl MarkScan {
    fn push_all(&mut self, data: &[u8]) {
        for &b in data {
            self.push(b);
        }
    }

    /// One byte of the line (never its LF).
    fn push(&mut self, b: u8) {
        if std::mem::take(&mut self.cr) {
            // That CR was not right before the LF: it is text.
            self.lex = Lex::Word;
        }
        if b == CR {
            self.cr = true;
            return;
        }
        self.lex = match self.lex {
            Lex::Closed { .. } if is_blank(b) => Lex::Closed { blanks: true },
            _ if is_blank(b) => Lex::Boundary,
            Lex::Boundary | Lex::Closed { blanks: true } if b == b'{' => {
                self.ndigits = 0;
                self.value = Some(0);
                Lex::Open
            }
            Lex::Open if b.is_ascii_digit() => {
                if let Some(slot) = usize::try_from(self.ndigits)
                    .ok()
                    .and_then(|i| self.digits.get_mut(i))
                {
                    *slot = b;
                }
                self.ndigits = self.ndigits.saturating_add(1);
                self.value = self
                    .value
                    .and_then(|n| n.checked_mul(10)?.checked_add(u64::from(b - b'0')));
                Lex::Open
            }
            Lex::Open if b == b'}' && self.ndigits > 0 => Lex::Closed { blanks: false },
            _ => Lex::Word,
        };
    }

    /// At the LF: the announced count, or the BAD_FRAME message when it does
    /// not fit in a u64, as [`lit_mark`] on the whole line.
    fn lit_mark(&self) -> Option<Result<u64, String>> {
        if !matches!(self.lex, Lex::Closed { .. }) {
            return None;
        }
        Some(self.value.ok_or_else(|| self.too_big()))
    }

    /// The BAD_FRAME message for a count that does not fit in a u64: the same
    /// as on a normal line, the digits cut short if there are very many.
    fn too_big(&self) -> String {
        match usize::try_from(self.ndigits) {
            Ok(n) if n <= MARK_DIGITS => impossible(&self.digits[..n]),
            _ => {
                let shown = String::from_utf8_lossy(&self.digits);
                let n = self.ndigits;
                format!("literal length {shown}... ({n} digits) does not fit in 64 bits")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn small() -> Limits {
        Limits {
            max_line: 32,
            max_literal: 10,
        }
    }

    /// Feeds `input` in chunks of `chunk` bytes; collects events, then the error.
    #[test]
    fn a_literal_cut_off_before_its_end_of_line_is_a_bad_frame_at_the_end() {
        let limits = Limits {
            max_line: 64,
            max_literal: 8,
        };
        let at_end = |input: &[u8]| {
            let mut f = Framer::new(limits);
            let mut buf = BytesMut::from(input);
            while let Ok(Some(_)) = f.next_event(&mut buf) {}
            f.at_end(&buf)
        };
        // All five bytes, no terminator: owed a BAD_FRAME.
        assert!(at_end(b"PUB q {5}\r\nhello").is_some());
        assert!(at_end(b"PUB q {5}\r\nhello\r").is_some());
        // A skipped (oversize) literal likewise.
        assert!(at_end(b"PUB q {9}\r\n123456789").is_some());
        // Cut short, or complete: nothing to answer.
        assert!(at_end(b"PUB q {5}\r\nhel").is_none());
        assert!(at_end(b"PUB q {5}\r\nhello\r\n").is_none());
        assert!(at_end(b"PING").is_none());
        assert!(at_end(b"").is_none());
    }

    fn run(limits: Limits, input: &[u8], chunk: usize) -> (Vec<FrameEvent>, Option<BadFrame>) {
        let mut framer = Framer::new(limits);
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match framer.next_event(&mut buf) {
                    Ok(Some(e)) => events.push(e),
                    Ok(None) => break,
                    Err(e) => return (events, Some(e)),
                }
            }
        }
        (events, None)
    }

    /// Runs whole and one byte at a time, asserts both agree.
    fn both(limits: Limits, input: &[u8]) -> (Vec<FrameEvent>, Option<BadFrame>) {
        let whole = run(limits, input, input.len());
        for chunk in [1, 2, 3, 7] {
            assert_eq!(run(limits, input, chunk), whole, "chunk {chunk}");
        }
        whole
    }

    fn line(s: &str) -> FrameEvent {
        FrameEvent::Frame(Frame {
            line: Bytes::copy_from_slice(s.as_bytes()),
            literal: None,
        })
    }

    fn lit(s: &str, body: &[u8]) -> FrameEvent {
        FrameEvent::Frame(Frame {
            line: Bytes::copy_from_slice(s.as_bytes()),
            literal: Some(Bytes::copy_from_slice(body)),
        })
    }

    fn rej(code: ErrorCode) -> impl Fn(&FrameEvent) -> bool {
        move |e| matches!(e, FrameEvent::Reject(r) if r.code == code)
    }

    #[test]
    fn lf_and_crlf_lines() {
        let (ev, err) = both(Limits::default(), b"PING\nPING\r\nQUIT\r\n");
        assert_eq!(ev, vec![line("PING"), line("PING"), line("QUIT")]);
        assert!(err.is_none());
    }

    #[test]
    fn blank_and_whitespace_lines_are_skipped() {
        let (ev, _) = both(Limits::default(), b"\n\r\n  \t \r\nPING\n \n");
        assert_eq!(ev, vec![line("PING")]);
    }

    #[test]
    fn partial_line_waits() {
        let (ev, err) = both(Limits::default(), b"PIN");
        assert!(ev.is_empty() && err.is_none());
    }

    #[test]
    fn literal_whole_and_byte_by_byte() {
        let input = b"PUB orders k {5}\r\nhello\r\nPING\n";
        let (ev, err) = both(Limits::default(), input);
        assert_eq!(ev, vec![lit("PUB orders k {5}", b"hello"), line("PING")]);
        assert!(err.is_none());
    }

    #[test]
    fn literal_is_binary_safe() {
        let input = b"PUB o k h.enc=raw {4}\r\n\x00\xff\r\n\r\nPING\r\n";
        let (ev, _) = both(Limits::default(), input);
        assert_eq!(
            ev,
            vec![lit("PUB o k h.enc=raw {4}", b"\x00\xff\r\n"), line("PING")]
        );
    }

    #[test]
    fn literal_with_lf_only_and_trailing_blanks() {
        let (ev, _) = both(Limits::default(), b"OK {3}  \t\nabc\n");
        assert_eq!(ev, vec![lit("OK {3}  \t", b"abc")]);
    }

    #[test]
    fn empty_literal() {
        let (ev, _) = both(Limits::default(), b"PUB x k {0}\r\n\r\nPING\n");
        assert_eq!(ev, vec![lit("PUB x k {0}", b""), line("PING")]);
    }

    #[test]
    fn lit_mark_alone_on_a_line() {
        let (ev, _) = both(Limits::default(), b"{2}\nab\n");
        assert_eq!(ev, vec![lit("{2}", b"ab")]);
    }

    #[test]
    fn quoted_or_glued_marks_are_text() {
        let (ev, _) = both(
            Limits::default(),
            b"PUB \"\" k \"{5}\"\nPUB x k a{5}\nPUB x k {5}x\nX {}\n",
        );
        assert_eq!(
            ev,
            vec![
                line("PUB \"\" k \"{5}\""),
                line("PUB x k a{5}"),
                line("PUB x k {5}x"),
                line("X {}")
            ]
        );
    }

    #[test]
    fn unbalanced_quote_still_owns_its_literal() {
        let (ev, _) = both(Limits::default(), b"PUB x k \"a {2}\nzz\nPING\n");
        assert_eq!(ev, vec![lit("PUB x k \"a {2}", b"zz"), line("PING")]);
    }

    #[test]
    fn leading_zeros_beyond_twenty_digits_still_make_a_mark() {
        let input = b"X {000000000000000000001}\nz\n";
        let (ev, _) = both(Limits::default(), input);
        assert_eq!(ev, vec![lit("X {000000000000000000001}", b"z")]);
    }

    #[test]
    fn a_count_of_many_digits_is_bad_frame_not_text() {
        let (ev, err) = both(Limits::default(), b"PUB x k {123456789012345678901234}\n");
        assert!(ev.is_empty());
        assert!(err.unwrap().0.contains("does not fit in 64 bits"));
    }

    #[test]
    fn literal_count_over_u64_is_bad_frame() {
        let (ev, err) = both(Limits::default(), b"PUB x k {99999999999999999999}\n");
        assert!(ev.is_empty());
        assert_eq!(
            err.unwrap().0,
            "literal length 99999999999999999999 does not fit in 64 bits"
        );
    }

    #[test]
    fn bad_terminator_after_literal_is_bad_frame() {
        let (ev, err) = both(Limits::default(), b"PUB orders k {3}\r\nhello\r\n");
        assert!(ev.is_empty());
        assert_eq!(
            err.unwrap().0,
            "expected end of line after a 3-byte literal"
        );
        let (_, err) = both(Limits::default(), b"PUB orders k {3}\r\nhel\rX");
        assert!(err.is_some());
    }

    #[test]
    fn after_bad_frame_everything_fails() {
        let mut f = Framer::new(Limits::default());
        let mut buf = BytesMut::from(&b"X {1}\nab\nPING\n"[..]);
        assert!(f.next_event(&mut buf).is_err());
        assert!(f.next_event(&mut buf).is_err());
    }

    #[test]
    fn literal_exactly_at_the_limit() {
        let mut input = b"PUB x k {10}\r\n".to_vec();
        input.extend_from_slice(b"0123456789\r\nPING\n");
        let (ev, _) = both(small(), &input);
        assert_eq!(ev, vec![lit("PUB x k {10}", b"0123456789"), line("PING")]);
    }

    #[test]
    fn literal_over_limit_is_rejected_and_swallowed() {
        let input = b"PUB x k {11}\r\n01234567890\r\nPING\n";
        let (ev, err) = both(small(), input);
        assert!(err.is_none());
        assert_eq!(ev.len(), 2);
        let FrameEvent::Reject(r) = &ev[0] else {
            panic!()
        };
        assert_eq!(r.code, ErrorCode::TooLarge);
        assert_eq!(r.message, "literal of 11 bytes exceeds max-literal=10");
        assert_eq!(ev[1], line("PING"));
    }

    #[test]
    fn default_too_large_message_and_reply_is_immediate() {
        let mut f = Framer::new(Limits::default());
        let mut buf = BytesMut::from(&b"PUB orders k {20000000}\r\n"[..]);
        let ev = f.next_event(&mut buf).unwrap().unwrap();
        let FrameEvent::Reject(r) = ev else { panic!() };
        assert_eq!(
            r.message,
            "literal of 20000000 bytes exceeds max-literal=16777216"
        );
        assert!(buf.is_empty());
    }

    /// Found by `prop_tests::framing_does_not_depend_on_chunking` (and the
    /// `framer_chunking` fuzz target): the framer reserved the announced
    /// 200,002 bytes after reading 22.
    #[test]
    fn announced_literal_reserves_nothing_ahead() {
        let mut f = Framer::new(Limits::default());
        let mut buf = BytesMut::from(&b"PUB \"\" jobs {200000}\r\n"[..]);
        assert_eq!(f.next_event(&mut buf).unwrap(), None);
        assert!(buf.capacity() < 1024, "capacity {}", buf.capacity());
        assert!(f.in_frame(&buf));
        // The literal still arrives whole, in any number of reads.
        let chunk = vec![b'z'; 1000];
        for _ in 0..200 {
            assert_eq!(f.next_event(&mut buf).unwrap(), None);
            buf.extend_from_slice(&chunk);
        }
        buf.extend_from_slice(b"\r\n");
        let Some(FrameEvent::Frame(frame)) = f.next_event(&mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(frame.literal.unwrap().len(), 200_000);
    }

    #[test]
    fn big_literal_is_swallowed_without_buffering() {
        let mut f = Framer::new(Limits::default());
        let mut buf = BytesMut::from(&b"PUB x k {20000000}\r\n"[..]);
        assert!(rej(ErrorCode::TooLarge)(
            &f.next_event(&mut buf).unwrap().unwrap()
        ));
        let chunk = vec![b'z'; 64 * 1024];
        let mut left = 20_000_000usize;
        while left > 0 {
            let n = left.min(chunk.len());
            buf.extend_from_slice(&chunk[..n]);
            left -= n;
            assert_eq!(f.next_event(&mut buf).unwrap(), None);
            assert!(buf.is_empty());
        }
        buf.extend_from_slice(b"\r\nPING\r\n");
        assert_eq!(f.next_event(&mut buf).unwrap(), Some(line("PING")));
    }

    #[test]
    fn swallowed_literal_with_bad_terminator_is_bad_frame() {
        let (ev, err) = both(small(), b"X {11}\n01234567890XX\n");
        assert_eq!(ev.len(), 1);
        assert_eq!(
            err.unwrap().0,
            "expected end of line after a 11-byte literal"
        );
    }

    #[test]
    fn oversize_line_is_rejected_then_next_command_parses() {
        let mut input = vec![b'a'; 100];
        input.extend_from_slice(b"\r\nPING\r\n");
        let (ev, err) = both(small(), &input);
        assert!(err.is_none());
        assert_eq!(ev.len(), 2);
        let FrameEvent::Reject(r) = &ev[0] else {
            panic!()
        };
        assert_eq!(
            (r.code, r.message.as_str()),
            (ErrorCode::LineTooLong, "line exceeds max-line=32 bytes")
        );
        assert_eq!(ev[1], line("PING"));
    }

    #[test]
    fn oversize_reply_is_immediate_and_discard_does_not_buffer() {
        let mut f = Framer::new(Limits::default());
        let mut buf = BytesMut::from(&vec![b'k'; 70_000][..]);
        assert!(rej(ErrorCode::LineTooLong)(
            &f.next_event(&mut buf).unwrap().unwrap()
        ));
        assert_eq!(f.next_event(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
        buf.extend_from_slice(b"kkk\nPING\n");
        assert_eq!(f.next_event(&mut buf).unwrap(), Some(line("PING")));
    }

    #[test]
    fn line_exactly_at_the_limit() {
        let l = "a".repeat(32);
        let input = format!("{l}\r\n{l}\n");
        let (ev, _) = both(small(), input.as_bytes());
        assert_eq!(ev, vec![line(&l), line(&l)]);
        let input = format!("{l}b\n{l}\rb\n");
        let (ev, _) = both(small(), input.as_bytes());
        assert!(ev.len() == 2 && ev.iter().all(rej(ErrorCode::LineTooLong)));
    }

    #[test]
    fn oversize_line_with_literal_skips_both_with_one_reply() {
        let mut input = b"PUB orders ".to_vec();
        input.extend_from_slice(&vec![b'k'; 70_000]);
        input.extend_from_slice(b" {5}\r\nhello\r\nPING\r\n");
        let (ev, err) = both(Limits::default(), &input);
        assert!(err.is_none());
        assert_eq!(ev.len(), 2);
        assert!(rej(ErrorCode::LineTooLong)(&ev[0]));
        assert_eq!(ev[1], line("PING"));
    }

    #[test]
    fn oversize_line_mark_followed_by_many_blanks() {
        let mut input = vec![b'k'; 40];
        input.extend_from_slice(b" {3}");
        input.extend_from_slice(&[b' '; 50]);
        input.extend_from_slice(b"\nabc\nPING\n");
        let (ev, _) = both(small(), &input);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1], line("PING"));
    }

    #[test]
    fn oversize_line_mark_not_after_blank_is_not_a_mark() {
        let mut input = vec![b'k'; 40];
        input.extend_from_slice(b"{3}\r\nPING\n");
        let (ev, _) = both(small(), &input);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1], line("PING"));
        let mut input = vec![b'k'; 40];
        input.extend_from_slice(b" {3}\r \nPING\n");
        let (ev, _) = both(small(), &input);
        assert_eq!(ev[1], line("PING"));
    }

    #[test]
    fn oversize_line_that_is_only_a_mark() {
        let limits = Limits {
            max_line: 4,
            max_literal: 10,
        };
        let (ev, _) = both(limits, b"{12345}\nPING\n");
        assert_eq!(ev.len(), 1);
        let (ev, err) = both(limits, b"  {99999999999999999999}\nPING\n");
        assert_eq!(ev.len(), 1);
        assert!(err.is_some());
    }

    /// `PUB "" jobs <n × 'a'>` followed by `end`.
    fn oversize_pub(n: usize, end: &[u8]) -> Vec<u8> {
        let mut input = b"PUB \"\" jobs ".to_vec();
        input.extend_from_slice(&vec![b'a'; n]);
        input.extend_from_slice(end);
        input
    }

    #[test]
    fn oversize_line_with_thirty_digit_mark_swallows_its_literal() {
        let end = b" {000000000000000000000000000005}\r\nhello\r\nPING\r\n";
        let (ev, err) = both(Limits::default(), &oversize_pub(70_000, end));
        assert!(err.is_none());
        assert_eq!(ev.len(), 2);
        let FrameEvent::Reject(r) = &ev[0] else {
            panic!()
        };
        assert_eq!(
            (r.code, r.message.as_str()),
            (ErrorCode::LineTooLong, "line exceeds max-line=65536 bytes")
        );
        assert_eq!(ev[1], line("PING"));
        // Small limits, and the mark alone at the start of the oversize line.
        let (ev, err) = both(small(), &oversize_pub(40, end));
        assert!(err.is_none());
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1], line("PING"));
        let tiny = Limits {
            max_line: 4,
            max_literal: 10,
        };
        let (ev, err) = both(tiny, b"{000000000000000000000000000005}\nhello\nPING\n");
        assert!(err.is_none());
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1], line("PING"));
    }

    #[test]
    fn oversize_line_ending_in_count_over_u64_is_bad_frame() {
        let end = b" {1234567890123456789012345}\r\nhello\r\nPING\r\n";
        let (ev, err) = both(Limits::default(), &oversize_pub(70_000, end));
        assert_eq!(ev.len(), 1);
        assert!(rej(ErrorCode::LineTooLong)(&ev[0]));
        assert_eq!(
            err.unwrap().0,
            "literal length 1234567890123456789012345 does not fit in 64 bits"
        );
        // Just over u64::MAX, with blanks after it.
        let (ev, err) = both(
            small(),
            &oversize_pub(40, b" {18446744073709551616} \t\nPING\n"),
        );
        assert_eq!(ev.len(), 1);
        assert_eq!(
            err.unwrap().0,
            "literal length 18446744073709551616 does not fit in 64 bits"
        );
        // A count too long to quote whole is still BAD_FRAME.
        let mut end = b" {".to_vec();
        end.extend_from_slice(&[b'7'; 100]);
        end.extend_from_slice(b"}\nPING\n");
        let (ev, err) = both(small(), &oversize_pub(40, &end));
        assert_eq!(ev.len(), 1);
        let shown = "7".repeat(MARK_DIGITS);
        assert_eq!(
            err.unwrap().0,
            format!("literal length {shown}... (100 digits) does not fit in 64 bits")
        );
    }

    #[test]
    fn oversize_line_mark_then_trailing_blanks_swallows() {
        for end in [
            &b" {5} \t  \r\nhello\r\nPING\r\n"[..],
            b" {5}\t\nhello\nPING\n",
            b"\t{5}  \nhello\nPING\n",
        ] {
            let (ev, err) = both(small(), &oversize_pub(40, end));
            assert!(err.is_none());
            assert_eq!(ev.len(), 2, "{end:?}");
            assert!(rej(ErrorCode::LineTooLong)(&ev[0]));
            assert_eq!(ev[1], line("PING"));
        }
    }

    #[test]
    fn oversize_line_glued_mark_is_text() {
        for end in [
            &b" x{5}\r\nhello\r\nPING\r\n"[..],
            b" \"{5}\"\r\nhello\r\nPING\r\n",
            b" }{5}\nhello\nPING\n",
            b" {{5}\nhello\nPING\n",
        ] {
            let (ev, err) = both(small(), &oversize_pub(40, end));
            assert!(err.is_none());
            assert_eq!(ev, vec![ev[0].clone(), line("hello"), line("PING")]);
            assert!(rej(ErrorCode::LineTooLong)(&ev[0]));
        }
    }

    #[test]
    fn oversize_line_mark_followed_by_text_is_text() {
        for end in [
            &b" {5}x\r\nhello\r\nPING\r\n"[..],
            b" {5} x\nhello\nPING\n",
            b" {5}{3}\nhello\nPING\n",
            b" {5}\r\r\nhello\nPING\n",
        ] {
            let (ev, err) = both(small(), &oversize_pub(40, end));
            assert!(err.is_none());
            assert_eq!(ev, vec![ev[0].clone(), line("hello"), line("PING")]);
            assert!(rej(ErrorCode::LineTooLong)(&ev[0]));
        }
    }

    #[test]
    fn mark_scan_agrees_with_lit_mark() {
        let parts: [&[u8]; 14] = [
            b" ",
            b"\t",
            b"{",
            b"}",
            b"0",
            b"5",
            b"00000000000",
            b"98765432109",
            b"x",
            b"\r",
            b"\"",
            b"{5}",
            b" {18446744073709551615}",
            b" {18446744073709551616}",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut raw = Vec::new();
            for _ in 0..seed % 10 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                raw.extend_from_slice(parts[(seed % 14) as usize]);
            }
            let mut scan = MarkScan::default();
            scan.push_all(&raw);
            // What a normal line sees: a CR right before the LF is dropped.
            let line = raw.strip_suffix(b"\r").unwrap_or(&raw);
            let want = lit_mark(line, true).map(|r| r.map_err(impossible));
            assert_eq!(scan.lit_mark(), want, "{:?}", String::from_utf8_lossy(&raw));
        }
    }

    #[test]
    fn nul_in_a_line_is_syntax() {
        let (ev, _) = both(Limits::default(), b"PI\0NG\nPING\n");
        assert_eq!(ev.len(), 2);
        let FrameEvent::Reject(r) = &ev[0] else {
            panic!()
        };
        assert_eq!(
            (r.code, r.message.as_str()),
            (ErrorCode::Syntax, "line contains a NUL byte")
        );
        assert_eq!(ev[1], line("PING"));
    }

    #[test]
    fn bare_cr_is_syntax() {
        let (ev, _) = both(Limits::default(), b"PI\rNG\r\n\r\r\nPING\n");
        assert_eq!(ev.len(), 3);
        assert!(rej(ErrorCode::Syntax)(&ev[0]) && rej(ErrorCode::Syntax)(&ev[1]));
        assert_eq!(ev[2], line("PING"));
    }

    #[test]
    fn bad_line_still_owns_its_literal() {
        let (ev, _) = both(Limits::default(), b"PUB\0 x k {5}\r\nPING\n\r\nPING\n");
        assert_eq!(ev.len(), 2);
        assert!(rej(ErrorCode::Syntax)(&ev[0]));
        assert_eq!(ev[1], line("PING"));
    }

    #[test]
    fn tls_client_hello_is_bad_frame() {
        let (ev, err) = both(
            Limits::default(),
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        );
        assert!(ev.is_empty());
        assert_eq!(err.unwrap().0, "this is a plain-text port, not TLS");
    }

    #[test]
    fn many_frames_in_one_buffer() {
        let input = b"PUB a k {1}\nx\nPUB a k {2}\r\nyy\r\n\nPING\n";
        let (ev, _) = both(Limits::default(), input);
        assert_eq!(
            ev,
            vec![
                lit("PUB a k {1}", b"x"),
                lit("PUB a k {2}", b"yy"),
                line("PING")
            ]
        );
    }

    #[test]
    fn literal_is_split_off_zero_copy() {
        let mut f = Framer::new(Limits::default());
        let mut buf = BytesMut::from(&b"X {3}\nabc\n"[..]);
        let base = buf.as_ptr() as usize;
        let Some(FrameEvent::Frame(frame)) = f.next_event(&mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(frame.literal.unwrap().as_ptr() as usize, base + 6);
        assert!(!f.in_frame(&buf));
    }

    #[test]
    fn random_streams_frame_the_same_in_any_chunking() {
        let parts: [&[u8]; 12] = [
            b"PING\r\n",
            b"PUB x k {3}\r\nabc\r\n",
            b"X {12}\n",
            b"0123456789ab\n",
            b"\r",
            b"\0",
            b" ",
            b"{2}",
            b"\n",
            b"kkkkkkkkkkkkkkkkkkkk",
            b"\"{1}\"\n",
            b"ab\r\n",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..300 {
            let mut input = Vec::new();
            for _ in 0..12 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.extend_from_slice(parts[(seed % 12) as usize]);
            }
            both(small(), &input);
        }
    }

    #[test]
    fn lit_mark_function() {
        assert_eq!(lit_mark(b"a {12}", true), Some(Ok(12)));
        assert_eq!(lit_mark(b"{0} \t", true), Some(Ok(0)));
        assert_eq!(lit_mark(b"{1}", false), None);
        assert_eq!(lit_mark(b"a\t{7}", false), Some(Ok(7)));
        assert_eq!(lit_mark(b"a {x}", true), None);
        assert_eq!(lit_mark(b"a {-1}", true), None);
        assert_eq!(
            lit_mark(b"a {18446744073709551615}", true),
            Some(Ok(u64::MAX))
        );
        assert!(matches!(
            lit_mark(b"a {18446744073709551616}", true),
            Some(Err(_))
        ));
    }
}
