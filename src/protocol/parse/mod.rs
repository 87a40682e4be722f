//! Client command lines to [`Command`]s: the only place that reads the wire's
//! verbs, sub-verbs, flag words, option names and enumerated values. Its
//! inverse, [`encode`](super::encode), writes them back; the option names
//! and enumerated values that both use are spelt there, once.
//!
//! Keywords match in any case; data (names, keys, headers, ids, tags, bodies)
//! is kept exactly. Arguments are classified left to right: required
//! positionals by position whatever they look like; an optional positional
//! (`BIND`/`UNBIND` key, `HELP` verb) only when it is quoted or is neither an
//! option nor a flag of the verb; then options and flags. For `PUB` the last
//! word is always the body. Every refusal is a [`ParseError`] whose message
//! echoes input quoted, so an `ERR` line never ends in a lit-mark.
//!
//! This file holds what every verb shares: the verb table and
//! [`parse_line`], the argument reader `Args` and its option classifier, and
//! the scalars (names, routing keys, numbers, enumerated choices). Each verb
//! family's grammar has a file of its own, named like its handler in
//! `src/cmd/` (`declare.rs` for `DECLARE`, `ack.rs` for `ACK`, `NACK`,
//! `REJECT` and `TOUCH`, ...), with its usage line, limits and tests.

mod ack;
mod auth;
mod bind;
mod close;
mod cluster;
mod declare;
mod delete;
mod get;
mod hello;
mod help;
mod hint;
mod list;
mod peek;
mod publish;
mod purge;
mod redrive;
mod schema;
mod seek;
mod stats;
mod subscribe;
mod tx;
mod user;

use hint::near_miss;
pub(crate) use hint::{verb_meant, verb_named};

use bytes::Bytes;

use super::code::ErrorCode;
use super::command::{Command, Header};
use super::encode::{opt, BOOLS};
use super::frame::Frame;
use super::token::{tokenize, Token};

pub(crate) use super::error::{show, ParseError};
#[cfg(test)]
pub(crate) use declare::MAX_PARTITIONS;
pub(crate) use user::user_name;

type Res<T> = Result<T, ParseError>;

/// Parses one frame from the [`Framer`](super::frame::Framer).
pub fn parse_command(frame: &Frame) -> Res<Command> {
    parse_line(&frame.line, frame.literal.clone())
}

/// Frames `wire`, which must be exactly one frame (nothing left over),
/// and parses it: the inverse of [`Command::encode`](super::Command::encode) (a cluster's
/// metadata log carries commands so).
pub(crate) fn decode_one(wire: &[u8]) -> Result<Command, String> {
    use super::frame::{FrameEvent, Framer, Limits};
    let limits = Limits {
        max_line: wire.len(),
        max_literal: wire.len(),
    };
    let mut framer = Framer::new(limits);
    let mut buf = bytes::BytesMut::from(wire);
    let Ok(Some(FrameEvent::Frame(frame))) = framer.next_event(&mut buf) else {
        return Err("not one whole frame".into());
    };
    if !buf.is_empty() {
        return Err("more than one frame".into());
    }
    parse_command(&frame).map_err(|e| e.to_string())
}

/// Parses one line (without its EOL) and the literal it announced, if any.
pub fn parse_line(line: &[u8], literal: Option<Bytes>) -> Res<Command> {
    if line.first() == Some(&0x16) {
        return Err(bad_frame("this is a plain-text port, not TLS"));
    }
    if is_http(line) {
        return Err(bad_frame("this is not an HTTP server"));
    }
    let toks = tokenize(line)?;
    let Some((verb, rest)) = toks.split_first() else {
        return Err(ParseError::syntax("empty command"));
    };
    let Some(&(name, takes_literal, usage, handler)) = VERBS
        .iter()
        .find(|v| v.0.as_bytes().eq_ignore_ascii_case(&verb.text))
    else {
        let hint = match verb_meant(&verb.text) {
            Some(meant) => format!("did you mean {meant}?"),
            None => "try HELP".to_string(),
        };
        return Err(ParseError {
            code: ErrorCode::UnknownCommand,
            message: format!("{} ({hint})", show(&verb.text)),
        });
    };
    if literal.is_some() && !takes_literal {
        return Err(ParseError::syntax(format!(
            "{name} does not take a literal"
        )));
    }
    handler(Args {
        usage,
        toks: rest,
        literal,
    })
}

type Handler = fn(Args<'_>) -> Res<Command>;

/// Verb, takes a literal, usage, parser.
const VERBS: &[(&str, bool, &str, Handler)] = &[
    ("HELLO", false, hello::USAGE, hello::hello),
    ("AUTH", false, auth::USAGE, auth::auth),
    ("PING", false, "PING", |a| a.end(Command::Ping)),
    ("QUIT", false, "QUIT", |a| a.end(Command::Quit)),
    // What people type to leave a prompt: the same as QUIT.
    ("EXIT", false, "EXIT", |a| a.end(Command::Quit)),
    ("HELP", false, help::USAGE, help::help),
    ("DECLARE", false, declare::USAGE, declare::declare),
    ("DELETE", false, delete::USAGE, delete::delete),
    ("BIND", false, bind::USAGE, |a| {
        bind::bind(a).map(Command::Bind)
    }),
    ("UNBIND", false, bind::USAGE, |a| {
        bind::bind(a).map(Command::Unbind)
    }),
    ("PURGE", false, purge::USAGE, purge::purge),
    ("PUB", true, publish::USAGE, publish::publish),
    ("SUB", false, subscribe::SUB_USAGE, subscribe::subscribe),
    (
        "UNSUB",
        false,
        subscribe::UNSUB_USAGE,
        subscribe::unsubscribe,
    ),
    ("GET", false, get::USAGE, get::get),
    ("ACK", false, ack::ACK_USAGE, ack::ack),
    ("NACK", false, ack::NACK_USAGE, ack::nack),
    ("REJECT", false, ack::REJECT_USAGE, ack::reject),
    ("TOUCH", false, ack::TOUCH_USAGE, ack::touch),
    ("PEEK", false, peek::USAGE, peek::peek),
    ("REDRIVE", false, redrive::USAGE, redrive::redrive),
    ("USER", false, user::USAGE, user::user),
    ("STATS", false, stats::USAGE, stats::stats),
    ("LIST", false, list::USAGE, list::list),
    ("SEEK", false, seek::USAGE, seek::seek),
    ("CLUSTER", false, cluster::USAGE, cluster::cluster),
    ("CLOSE", false, close::USAGE, close::close),
    ("TX", false, tx::USAGE, tx::tx),
    ("SCHEMA", true, schema::USAGE, schema::schema),
];

/// What the options of a verb may be.
#[derive(Default)]
struct Spec {
    flags: &'static [&'static str],
    values: &'static [&'static str],
    headers: bool,
}

/// One option or flag, its name in canonical (lower) case.
enum Opt<'a> {
    Flag(&'static str, bool),
    Value(&'static str, &'a [u8]),
    Header(Header),
}

/// The words after the verb, taken from the front.
struct Args<'a> {
    usage: &'static str,
    toks: &'a [Token],
    literal: Option<Bytes>,
}

impl<'a> Args<'a> {
    fn required(&mut self, what: &str) -> Res<&'a Token> {
        let Some((first, rest)) = self.toks.split_first() else {
            let usage = self.usage;
            return Err(ParseError::syntax(format!(
                "missing {what}; usage: {usage}"
            )));
        };
        self.toks = rest;
        Ok(first)
    }

    fn optional(&mut self, flags: &[&str]) -> Option<&'a Token> {
        let first = self.toks.first()?;
        let is_flag = flags
            .iter()
            .any(|f| f.as_bytes().eq_ignore_ascii_case(&first.text));
        if first.quoted || !(option_name(first).is_some() || is_flag) {
            self.toks = &self.toks[1..];
            return Some(first);
        }
        None
    }

    /// The rest as options and flags; duplicates and unknown words refused.
    fn options(&mut self, spec: &Spec) -> Res<Vec<Opt<'a>>> {
        let mut out: Vec<Opt<'a>> = Vec::new();
        for tok in std::mem::take(&mut self.toks) {
            let opt = classify(tok, spec)?;
            let dup = out.iter().any(|o| match (o, &opt) {
                (Opt::Header((a, _)), Opt::Header((b, _))) => a == b,
                (Opt::Flag(a, _) | Opt::Value(a, _), Opt::Flag(b, _) | Opt::Value(b, _)) => a == b,
                _ => false,
            });
            if dup {
                return Err(ParseError::syntax(match &opt {
                    Opt::Header((name, _)) => format!("duplicate header h.{name}"),
                    Opt::Flag(name, _) | Opt::Value(name, _) => format!("duplicate option {name}"),
                }));
            }
            out.push(opt);
        }
        Ok(out)
    }

    /// Refuses any word left.
    fn end(self, cmd: Command) -> Res<Command> {
        match self.toks.first() {
            Some(tok) => Err(unexpected(tok)),
            None => Ok(cmd),
        }
    }
}

fn classify<'a>(tok: &'a Token, spec: &Spec) -> Res<Opt<'a>> {
    let known = |list: &[&'static str], name: &[u8]| {
        list.iter()
            .copied()
            .find(|k| k.as_bytes().eq_ignore_ascii_case(name))
    };
    if tok.quoted {
        return Err(unexpected(tok));
    }
    let (name, value) = match option_name(tok) {
        Some(name) => (name, Some(&tok.text[name.len() + 1..])),
        None => (&tok.text[..], None),
    };
    if let Some(flag) = known(spec.flags, name) {
        return match value {
            None => Ok(Opt::Flag(flag, true)),
            Some(v) => Ok(Opt::Flag(flag, choice(flag, v, BOOLS)?)),
        };
    }
    if let Some(opt) = known(spec.values, name) {
        return match value {
            Some(v) => Ok(Opt::Value(opt, v)),
            None => Err(ParseError::syntax(format!(
                "{opt} needs a value ({opt}=...)"
            ))),
        };
    }
    let prefix = opt::HEADER_PREFIX.as_bytes();
    match (value, name.get(..prefix.len())) {
        (Some(v), Some(h)) if spec.headers && h.eq_ignore_ascii_case(prefix) => {
            let hname = plain_word(&name[prefix.len()..], "header name", 255)?;
            // Any token, like a routing key (`x-death-key` holds one).
            Ok(Opt::Header((hname, Bytes::copy_from_slice(v))))
        }
        (Some(_), _) => Err(ParseError::syntax(format!(
            "unknown option {}{}",
            show(&tok.text),
            option_hint(name, spec)
        ))),
        (None, _) => {
            let mut e = unexpected(tok);
            e.message.push_str(&option_hint(name, spec));
            Err(e)
        }
    }
}

/// ` (did you mean durable?)` when `name` is a near miss of one of the
/// verb's flags, or ` (did you mean max-length=...?)` of one of its
/// options; else nothing.
fn option_hint(name: &[u8], spec: &Spec) -> String {
    let names = spec.flags.iter().chain(spec.values).copied();
    match near_miss(name, names) {
        Some(flag) if spec.flags.contains(&flag) => format!(" (did you mean {flag}?)"),
        Some(opt) => format!(" (did you mean {opt}=...?)"),
        None => String::new(),
    }
}

/// The name of an unquoted `name=value` word, when `name` is an opt-name.
fn option_name(tok: &Token) -> Option<&[u8]> {
    if tok.quoted {
        return None;
    }
    let eq = tok.text.iter().position(|&b| b == b'=')?;
    let name = &tok.text[..eq];
    let mut bytes = name.iter();
    let ok = bytes.next().is_some_and(u8::is_ascii_alphabetic)
        && bytes.all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then_some(name)
}

/// `EXCHANGE` or `QUEUE` after `DECLARE`/`DELETE`: true for `EXCHANGE`.
fn sub_verb(a: &mut Args<'_>, verb: &str) -> Res<bool> {
    let tok = a.required("EXCHANGE or QUEUE")?;
    match choice(verb, &tok.text, &[("EXCHANGE", true), ("QUEUE", false)]) {
        Ok(is_exchange) => Ok(is_exchange),
        Err(_) => Err(ParseError::syntax(format!(
            "{verb}: expected EXCHANGE or QUEUE, got {}",
            show(&tok.text)
        ))),
    }
}

/// 1 to `max` bytes of `A-Z a-z 0-9 - _ .` (header and user names).
fn plain_word(text: &[u8], what: &str, max: usize) -> Res<String> {
    let ok = (1..=max).contains(&text.len())
        && text
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(ParseError::syntax(format!(
            "bad {what} {}: use 1-{max} bytes of A-Z a-z 0-9 - _ .",
            show(text)
        )));
    }
    utf8(text, what)
}

fn bad_frame(message: &str) -> ParseError {
    ParseError {
        code: ErrorCode::BadFrame,
        message: message.into(),
    }
}

fn unexpected(tok: &Token) -> ParseError {
    ParseError::syntax(format!("unexpected argument {}", show(&tok.text)))
}

/// An exchange or queue name; `""` only when `empty_ok`.
fn name(tok: &Token, what: &str, empty_ok: bool) -> Res<String> {
    name_bytes(&tok.text, what, empty_ok)
}

fn name_bytes(text: &[u8], what: &str, empty_ok: bool) -> Res<String> {
    if text.is_empty() && empty_ok {
        return Ok(String::new());
    }
    if text.is_empty() {
        return Err(ParseError::syntax(format!("{what} name must not be empty")));
    }
    let ok = text.len() <= 255
        && text
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/' | b'-'));
    if !ok {
        return Err(ParseError::syntax(format!(
            "bad {what} name {}: use 1-255 bytes of A-Z a-z 0-9 _ . : / -",
            show(text)
        )));
    }
    utf8(text, what)
}

fn routing_key(tok: &Token) -> Res<Bytes> {
    key_bytes(&tok.text, "routing key")
}

/// A routing key: any token of at most 255 bytes, possibly empty. Not only
/// UTF-8: the bytes are kept as they came (the tokenizer has already
/// refused NUL, CR and LF).
fn key_bytes(text: &[u8], what: &str) -> Res<Bytes> {
    if text.len() > 255 {
        return Err(ParseError::syntax(format!(
            "{what} is longer than 255 bytes"
        )));
    }
    Ok(Bytes::copy_from_slice(text))
}

/// 1..=255 bytes of UTF-8 (or 0 when `empty_ok`).
fn bounded(text: &[u8], what: &str, empty_ok: bool) -> Res<String> {
    if text.len() > 255 || (text.is_empty() && !empty_ok) {
        return Err(ParseError::syntax(format!("{what} must be 1 to 255 bytes")));
    }
    utf8(text, what)
}

fn utf8(text: &[u8], what: &str) -> Res<String> {
    String::from_utf8(text.to_vec())
        .map_err(|_| ParseError::syntax(format!("{what} is not valid UTF-8")))
}

/// A decimal u64 (1 to 20 digits, no sign) within `min..=max`.
fn number(what: &str, text: &[u8], min: u64, max: u64) -> Res<u64> {
    let n = std::str::from_utf8(text)
        .ok()
        .filter(|s| (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok());
    let Some(n) = n else {
        return Err(ParseError::syntax(format!(
            "{what}: expected a number, got {}",
            show(text)
        )));
    };
    if !(min..=max).contains(&n) {
        return Err(ParseError::syntax(format!(
            "{what}: must be between {min} and {max}, got {n}"
        )));
    }
    Ok(n)
}

/// An enumerated keyword, in any case.
fn choice<T: Copy>(what: &str, text: &[u8], options: &[(&str, T)]) -> Res<T> {
    if let Some(&(_, v)) = options
        .iter()
        .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(text))
    {
        return Ok(v);
    }
    let names: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
    Err(ParseError::syntax(format!(
        "{what}: expected {}, got {}",
        names.join(" or "),
        show(text)
    )))
}

/// A line that can only be an HTTP request: `<METHOD> <target> HTTP/<d>.<d>`,
/// or a first word `POST`, `HEAD` or `Host:` (none is a sluice verb).
fn is_http(line: &[u8]) -> bool {
    const METHODS: &[&[u8]] = &[
        b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH",
        b"PRI",
    ];
    let words: Vec<&[u8]> = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty())
        .collect();
    let version = |v: &[u8]| {
        matches!(v, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit())
    };
    match words.as_slice() {
        [first, ..]
            if first.eq_ignore_ascii_case(b"host:") || *first == b"POST" || *first == b"HEAD" =>
        {
            true
        }
        [method, target, v] => {
            METHODS.contains(method)
                && version(v)
                && (target.starts_with(b"/")
                    || *target == b"*"
                    || target.windows(3).any(|w| w == b"://")
                    || *method == b"CONNECT")
        }
        _ => false,
    }
}

/// What the grammar tests of every verb family share.
#[cfg(test)]
mod testing {
    #![allow(clippy::unwrap_used)]
    use bytes::Bytes;

    use super::{parse_line, ParseError};
    use crate::protocol::code::ErrorCode;
    use crate::protocol::command::{Command, Header, Publish};

    pub(super) fn ok(line: &str) -> Command {
        parse_line(line.as_bytes(), None).unwrap()
    }

    pub(super) fn err(line: &str) -> ParseError {
        parse_line(line.as_bytes(), None).unwrap_err()
    }

    pub(super) fn syntax(line: &str) -> String {
        let e = err(line);
        assert_eq!(e.code, ErrorCode::Syntax, "{line}: {e}");
        e.message
    }

    pub(super) fn publish(line: &str) -> Publish {
        match ok(line) {
            Command::Publish(p) => p,
            other => panic!("{other:?}"),
        }
    }

    pub(super) fn h(n: &str, v: &str) -> Header {
        (n.to_string(), Bytes::copy_from_slice(v.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::testing::{err, ok, publish, syntax};
    use super::*;
    use crate::protocol::frame::lit_mark;

    #[test]
    fn session_verbs() {
        assert_eq!(ok("PING"), Command::Ping);
        assert_eq!(ok("  ping  "), Command::Ping);
        assert_eq!(ok("QuIt"), Command::Quit);
    }

    #[test]
    fn session_errors() {
        assert_eq!(syntax("PING now"), "unexpected argument \"now\"");
        assert_eq!(syntax("QUIT x=1"), "unexpected argument \"x=1\"");
    }

    #[test]
    fn unknown_commands_say_which_verb_was_meant() {
        let meant = |line: &str| {
            let e = err(line);
            assert_eq!(e.code, ErrorCode::UnknownCommand, "{line}");
            e.to_string()
        };
        assert_eq!(
            meant("publish \"\" jobs x"),
            "UNKNOWN_COMMAND \"publish\" (did you mean PUB?)"
        );
        assert_eq!(
            meant("SUBSCRIBE q"),
            "UNKNOWN_COMMAND \"SUBSCRIBE\" (did you mean SUB?)"
        );
        assert_eq!(
            meant("consume q"),
            "UNKNOWN_COMMAND \"consume\" (did you mean SUB?)"
        );
        assert_eq!(meant("bye"), "UNKNOWN_COMMAND \"bye\" (did you mean QUIT?)");
        // Near misses: a typo, two letters swapped, a prefix.
        assert_eq!(
            meant("declre queue q"),
            "UNKNOWN_COMMAND \"declre\" (did you mean DECLARE?)"
        );
        assert_eq!(
            meant("pbu x k b"),
            "UNKNOWN_COMMAND \"pbu\" (did you mean PUB?)"
        );
        assert_eq!(meant("PIN"), "UNKNOWN_COMMAND \"PIN\" (did you mean PING?)");
        assert_eq!(
            meant("redriv q"),
            "UNKNOWN_COMMAND \"redriv\" (did you mean REDRIVE?)"
        );
        assert_eq!(
            meant("decl"),
            "UNKNOWN_COMMAND \"decl\" (did you mean DECLARE?)"
        );
        // Nothing close, or two verbs as close: no guess.
        assert_eq!(
            meant("frobnicate"),
            "UNKNOWN_COMMAND \"frobnicate\" (try HELP)"
        );
        assert_eq!(meant("xack 1"), "UNKNOWN_COMMAND \"xack\" (try HELP)");
        assert_eq!(meant("u"), "UNKNOWN_COMMAND \"u\" (try HELP)");
    }

    #[test]
    fn exit_is_quit() {
        assert_eq!(ok("exit"), Command::Quit);
        assert_eq!(ok("EXIT"), Command::Quit);
        assert_eq!(syntax("exit now"), "unexpected argument \"now\"");
    }

    #[test]
    fn misspelled_options_say_which_was_meant() {
        assert_eq!(
            syntax("DECLARE QUEUE q durabel"),
            "unexpected argument \"durabel\" (did you mean durable?)"
        );
        assert_eq!(
            syntax("declare queue q max-lenght=5"),
            "unknown option \"max-lenght=5\" (did you mean max-length=...?)"
        );
        assert_eq!(
            syntax("SUB q prefech=5"),
            "unknown option \"prefech=5\" (did you mean prefetch=...?)"
        );
        assert_eq!(
            syntax("SUB q exclusiv"),
            "unexpected argument \"exclusiv\" (did you mean exclusive?)"
        );
        assert_eq!(
            syntax("DECLARE QUEUE q frobnicate"),
            "unexpected argument \"frobnicate\""
        );
    }

    #[test]
    fn unknown_command() {
        let e = err("frobnicate now");
        assert_eq!(e.code, ErrorCode::UnknownCommand);
        assert_eq!(e.to_string(), "UNKNOWN_COMMAND \"frobnicate\" (try HELP)");
        let e = err("{5}");
        assert_eq!(e.message, "\"{5}\" (try HELP)");
        let long = "x".repeat(100);
        let e = err(&long);
        assert_eq!(e.message, format!("\"{}...\" (try HELP)", "x".repeat(64)));
        assert_eq!(err("a\u{1b}b").message, "\"a\\x1bb\" (try HELP)");
        assert_eq!(err("\"PI NG\"").code, ErrorCode::UnknownCommand);
    }

    #[test]
    fn http_and_tls_are_bad_frames() {
        for line in [
            "GET / HTTP/1.1",
            "POST /x HTTP/1.0",
            "GET http://a/ HTTP/1.1",
            "OPTIONS * HTTP/1.1",
            "POST",
            "HEAD /",
            "Host: localhost:5680",
            "PRI * HTTP/2.0",
            "DELETE /q HTTP/1.1",
        ] {
            let e = err(line);
            assert_eq!(
                (e.code, e.message.as_str()),
                (ErrorCode::BadFrame, "this is not an HTTP server"),
                "{line}"
            );
        }
        let e = parse_line(b"\x16\x03\x01\x00", None).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::BadFrame, "this is a plain-text port, not TLS")
        );
    }

    #[test]
    fn http_lookalikes_are_commands() {
        assert_eq!(err("GET jobs HTTP/1.1").code, ErrorCode::Syntax);
        let p = publish("PUB \"\" jobs HTTP/1.1");
        assert_eq!(&p.body[..], b"HTTP/1.1");
        let d = ok("DELETE QUEUE HTTP/1.1");
        assert!(matches!(d, Command::DeleteQueue(q) if q.name == "HTTP/1.1"));
        assert_eq!(err("get / http/1.1").code, ErrorCode::Syntax);
        assert_eq!(err("post x").code, ErrorCode::UnknownCommand);
    }

    #[test]
    fn tokenizer_errors_surface() {
        assert_eq!(syntax("PUB \"\" k \"abc"), "unbalanced quote");
        assert!(syntax("PUB \"\" k \"a\\nb\"").starts_with("unknown escape"));
        assert_eq!(err("").message, "empty command");
    }

    #[test]
    fn keys_and_header_values_are_any_token() {
        // Not only UTF-8: the bytes are kept as they came, quoted or not.
        let Command::Bind(b) = parse_line(b"BIND q ex k\xff h.a=\xfe\x80", None).unwrap() else {
            panic!()
        };
        assert_eq!(
            (&b.key[..], &b.headers[0].1[..]),
            (&b"k\xff"[..], &b"\xfe\x80"[..])
        );
        let p = parse_line(b"PUB x \"\xc3\x28 \\\"\x01\" h.k=\"a \xff\" b", None).unwrap();
        let Command::Publish(p) = p else { panic!() };
        assert_eq!(&p.key[..], b"\xc3\x28 \"\x01");
        assert_eq!(
            p.headers,
            vec![("k".to_string(), Bytes::from_static(b"a \xff"))]
        );
        let Command::DeclareQueue(d) =
            parse_line(b"DECLARE QUEUE q dead-letter-key=\xff.\xfe", None).unwrap()
        else {
            panic!()
        };
        assert_eq!(d.args.dead_letter_key.as_deref(), Some(&b"\xff.\xfe"[..]));
        // 255 bytes is the limit, whatever they are.
        let mut line = b"PUB x ".to_vec();
        line.extend_from_slice(&[0xff; 255]);
        line.extend_from_slice(b" b");
        let Command::Publish(p) = parse_line(&line, None).unwrap() else {
            panic!()
        };
        assert_eq!(p.key.len(), 255);
        line.insert(6, 0xff);
        let e = parse_line(&line, None).unwrap_err();
        assert_eq!(e.message, "routing key is longer than 255 bytes");
        // What the tokenizer forbids in any word stays forbidden.
        for bad in [&b"PUB x a\0b c"[..], b"PUB x a\rb c", b"BIND q ex \"a\rb\""] {
            assert_eq!(parse_line(bad, None).unwrap_err().code, ErrorCode::Syntax);
        }
    }

    #[test]
    fn literal_on_a_verb_without_body() {
        let lit = Some(Bytes::from_static(b"abc"));
        let e = parse_line(b"PING {3}", lit.clone()).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::Syntax, "PING does not take a literal")
        );
        let e = parse_line(b"sub q {3}", lit.clone()).unwrap_err();
        assert_eq!(e.message, "SUB does not take a literal");
        assert_eq!(
            parse_line(b"nope {3}", lit).unwrap_err().code,
            ErrorCode::UnknownCommand
        );
    }

    #[test]
    fn names_and_non_utf8() {
        let e = parse_line(b"AUTH \xff pw", None).unwrap_err();
        assert_eq!(e.message, "user is not valid UTF-8");
        let e = parse_line(b"PUB x k id=\xfe b", None).unwrap_err();
        assert_eq!(e.message, "id is not valid UTF-8");
        let p = parse_line(b"PUB x k \xff\xfe", None).unwrap();
        assert!(matches!(p, Command::Publish(p) if &p.body[..] == b"\xff\xfe"));
        assert!(ok("SUB a-Z_0.9:/x") != Command::Ping);
    }

    #[test]
    fn errors_never_end_in_a_lit_mark() {
        for line in [
            "frob {5}",
            "SUB q {5}",
            "BIND q ex k {5}",
            "ACK {5}",
            "SUB q prefetch={5}",
            "DECLARE {5}",
            "DECLARE QUEUE q retry-delays={5}",
            "DECLARE QUEUE q overflow={5}",
            "PEEK q count={5}",
            "TOUCH {5}",
        ] {
            let e = err(line);
            assert!(
                lit_mark(e.to_string().as_bytes(), true).is_none(),
                "{line}: {e}"
            );
        }
    }

    #[test]
    fn framer_to_parser_pipeline() {
        use super::super::frame::{FrameEvent, Framer, Limits};
        let mut framer = Framer::new(Limits::default());
        let mut buf = bytes::BytesMut::from(&b"pub \"\" q {5}\r\nhello\r\nPING\n"[..]);
        let mut cmds = Vec::new();
        while let Some(FrameEvent::Frame(f)) = framer.next_event(&mut buf).unwrap() {
            cmds.push(parse_command(&f).unwrap());
        }
        assert_eq!(cmds.len(), 2);
        assert!(matches!(&cmds[0], Command::Publish(p) if &p.body[..] == b"hello" && p.key == "q"));
        assert_eq!(cmds[1], Command::Ping);
    }
}
