//! Words of one complete line: the nom tokenizer and its inverse.
//!
//! [`tokenize`] splits a line (no EOL) on SP/HTAB into [`Token`]s, undoing
//! double quotes (`"a b"`, `""`) and their only escapes `\"` and `\\`; an
//! option's value may be quoted (`h.x="a b"`). [`encode_word`] writes a word
//! so that `tokenize` gives it back. The framer, not nom, decides that a line
//! is complete: these are nom `complete` parsers and never report `Incomplete`.

use nom::branch::alt;
use nom::bytes::complete::{is_not, tag, take_while, take_while1};
use nom::combinator::map;
use nom::multi::fold_many0;
use nom::IResult;

use super::code::ErrorCode;
use super::error::ParseError;

/// One word of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The word's bytes, quotes and escapes removed.
    pub text: Vec<u8>,
    /// The word began with a double quote: it is always positional, never an
    /// option, a flag or a lit-mark.
    pub(crate) quoted: bool,
}

/// Why a line does not tokenize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Unbalanced,
    BadEscape(u8),
    NoBlankAfterQuote,
    StrayQuote,
    BadByte(u8),
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LexError {
    kind: Lex,
}

impl<I> nom::error::ParseError<I> for LexError {
    fn from_error_kind(_: I, _: nom::error::ErrorKind) -> Self {
        LexError { kind: Lex::Other }
    }

    fn append(_: I, _: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

type Res<'a, T> = IResult<&'a [u8], T, LexError>;

fn fail<T>(kind: Lex) -> Res<'static, T> {
    Err(nom::Err::Failure(LexError { kind }))
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Bytes that can never be inside a line (the framer refuses them).
fn is_forbidden(b: u8) -> bool {
    matches!(b, 0 | b'\r' | b'\n')
}

fn is_bare(b: u8) -> bool {
    !is_blank(b) && !is_forbidden(b) && b != b'"'
}

fn blanks(i: &[u8]) -> Res<'_, &[u8]> {
    take_while(is_blank)(i)
}

/// `\"` or `\\`; any other escape is reserved.
fn escape(i: &[u8]) -> Res<'_, u8> {
    let (i, _) = tag("\\")(i)?;
    match i.first() {
        Some(&b) if b == b'"' || b == b'\\' => Ok((&i[1..], b)),
        Some(&b) => fail(Lex::BadEscape(b)),
        None => fail(Lex::Unbalanced),
    }
}

/// `"` ... `"`, which must be followed by a blank or the end of the line.
fn quoted(i: &[u8]) -> Res<'_, Vec<u8>> {
    let (i, _) = tag("\"")(i)?;
    let piece = alt((
        map(is_not("\"\\\0\r\n"), |s: &[u8]| s.to_vec()),
        map(escape, |b| vec![b]),
    ));
    let (i, text) = fold_many0(piece, Vec::new, |mut acc, s| {
        acc.extend_from_slice(&s);
        acc
    })(i)?;
    match i.first() {
        Some(b'"') => {}
        Some(&b) if is_forbidden(b) => return fail(Lex::BadByte(b)),
        _ => return fail(Lex::Unbalanced),
    }
    let i = &i[1..];
    match i.first() {
        Some(&b) if !is_blank(b) => fail(Lex::NoBlankAfterQuote),
        _ => Ok((i, text)),
    }
}

/// `opt-name "="`: the only place a quote may follow bare bytes.
fn is_opt_prefix(word: &[u8]) -> bool {
    let Some((b'=', name)) = word.split_last() else {
        return false;
    };
    let mut bytes = name.iter();
    bytes.next().is_some_and(u8::is_ascii_alphabetic)
        && bytes.all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.contains(&b'=')
}

/// A bare word, or `name=` followed by a quoted value.
fn bare(i: &[u8]) -> Res<'_, Token> {
    let (i, text) = take_while1(is_bare)(i)?;
    let mut text = text.to_vec();
    match i.first() {
        Some(b'"') if is_opt_prefix(&text) => {
            let (i, v) = quoted(i)?;
            text.extend_from_slice(&v);
            Ok((
                i,
                Token {
                    text,
                    quoted: false,
                },
            ))
        }
        Some(b'"') => fail(Lex::StrayQuote),
        Some(&b) if is_forbidden(b) => fail(Lex::BadByte(b)),
        _ => Ok((
            i,
            Token {
                text,
                quoted: false,
            },
        )),
    }
}

fn word(i: &[u8]) -> Res<'_, Token> {
    match i.first() {
        Some(&b) if is_forbidden(b) => fail(Lex::BadByte(b)),
        _ => alt((map(quoted, |text| Token { text, quoted: true }), bare))(i),
    }
}

/// Splits one complete line (without its EOL) into words.
pub fn tokenize(line: &[u8]) -> Result<Vec<Token>, ParseError> {
    let mut words = Vec::new();
    let mut rest = line;
    loop {
        let (i, _) = blanks(rest).map_err(to_parse_error)?;
        if i.is_empty() {
            return Ok(words);
        }
        let (i, tok) = word(i).map_err(to_parse_error)?;
        words.push(tok);
        rest = i;
    }
}

fn to_parse_error(e: nom::Err<LexError>) -> ParseError {
    let kind = match e {
        nom::Err::Error(e) | nom::Err::Failure(e) => e.kind,
        nom::Err::Incomplete(_) => Lex::Other,
    };
    let message = match kind {
        Lex::Unbalanced => "unbalanced quote".to_string(),
        Lex::BadEscape(b) => format!(
            "unknown escape {} in a quoted word (only \\\" and \\\\ are allowed)",
            show_escape(b)
        ),
        Lex::NoBlankAfterQuote => "a closing quote must be followed by a blank".to_string(),
        Lex::StrayQuote => "unexpected quote inside a word".to_string(),
        Lex::BadByte(b) => format!("byte 0x{b:02x} is not allowed in a line"),
        Lex::Other => "malformed line".to_string(),
    };
    ParseError {
        code: ErrorCode::Syntax,
        message,
    }
}

fn show_escape(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("\"\\{}\"", b as char)
    } else {
        format!("\\ before byte 0x{b:02x}")
    }
}

/// True when `word` is `{` 1*DIGIT `}` (any number of digits).
fn looks_like_mark(word: &[u8]) -> bool {
    word.len() > 2
        && word.starts_with(b"{")
        && word.ends_with(b"}")
        && word[1..word.len() - 1].iter().all(u8::is_ascii_digit)
}

/// True when [`encode_word`] writes `word` quoted.
pub(crate) fn needs_quotes(word: &[u8]) -> bool {
    word.is_empty()
        || looks_like_mark(word)
        || word
            .iter()
            .any(|&b| matches!(b, b' ' | b'"' | b'\\' | 0x7f) || b < 0x20)
}

/// Appends one word written so that tokenize() gives it back: quoted when it is empty, contains SP, HTAB,
/// DQUOTE, backslash, control bytes, or looks like `{N}` / starts with a quote; bare otherwise.
/// NUL, CR and LF cannot be part of a line at all: a word holding one is
/// written quoted as is, and the line it is in will not read back.
pub fn encode_word(out: &mut Vec<u8>, word: &[u8]) {
    if needs_quotes(word) {
        encode_quoted(out, word);
    } else {
        out.extend_from_slice(word);
    }
}

/// Appends `word` always quoted, with `"` and `\` escaped.
pub(crate) fn encode_quoted(out: &mut Vec<u8>, word: &[u8]) {
    out.reserve(word.len() + 2);
    out.push(b'"');
    for &b in word {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn words(line: &[u8]) -> Vec<(Vec<u8>, bool)> {
        tokenize(line)
            .unwrap()
            .into_iter()
            .map(|t| (t.text, t.quoted))
            .collect()
    }

    fn w(s: &str, quoted: bool) -> (Vec<u8>, bool) {
        (s.as_bytes().to_vec(), quoted)
    }

    fn err(line: &[u8]) -> String {
        let e = tokenize(line).unwrap_err();
        assert_eq!(e.code, ErrorCode::Syntax);
        e.message
    }

    #[test]
    fn splits_on_spaces_and_tabs() {
        assert_eq!(
            words(b"  PUB\tx  k \t body  "),
            vec![
                w("PUB", false),
                w("x", false),
                w("k", false),
                w("body", false)
            ]
        );
        assert!(words(b"").is_empty());
        assert!(words(b" \t ").is_empty());
    }

    #[test]
    fn quoted_words_and_escapes() {
        assert_eq!(
            words(br#"PUB "" "a b" "say \"hi\"" "c:\\d""#),
            vec![
                w("PUB", false),
                w("", true),
                w("a b", true),
                w("say \"hi\"", true),
                w("c:\\d", true)
            ]
        );
        assert_eq!(words(b"\"\ttab\""), vec![w("\ttab", true)]);
    }

    #[test]
    fn quoted_option_value() {
        assert_eq!(
            words(br#"h.x="a b" name="x y" e="" v=plain"#),
            vec![
                w("h.x=a b", false),
                w("name=x y", false),
                w("e=", false),
                w("v=plain", false)
            ]
        );
        assert_eq!(words(br#"h.q="\"""#), vec![w("h.q=\"", false)]);
    }

    #[test]
    fn quoted_mark_and_high_bytes_are_text() {
        assert_eq!(words(br#""{5}""#), vec![w("{5}", true)]);
        assert_eq!(
            words(b"\xff\x80 caf\xc3\xa9"),
            vec![(vec![0xff, 0x80], false), w("caf\u{e9}", false)]
        );
    }

    #[test]
    fn unbalanced_quotes() {
        assert_eq!(err(br#"PUB "abc"#), "unbalanced quote");
        assert_eq!(err(br#"""#), "unbalanced quote");
        assert_eq!(err(br#"a h.x="b"#), "unbalanced quote");
        assert_eq!(err(b"\"abc\\"), "unbalanced quote");
    }

    #[test]
    fn reserved_escapes() {
        assert_eq!(
            err(br#""a\nb""#),
            r#"unknown escape "\n" in a quoted word (only \" and \\ are allowed)"#
        );
        assert!(err(b"\"a\\\x01\"").contains("0x01"));
        assert!(err(br#"h.x="\t""#).starts_with("unknown escape"));
    }

    #[test]
    fn closing_quote_needs_a_blank() {
        assert_eq!(
            err(br#""a"b"#),
            "a closing quote must be followed by a blank"
        );
        assert_eq!(
            err(br#"x="a"b"#),
            "a closing quote must be followed by a blank"
        );
        assert_eq!(words(br#""a" "b""#), vec![w("a", true), w("b", true)]);
    }

    #[test]
    fn stray_quotes() {
        assert_eq!(err(br#"ab"c""#), "unexpected quote inside a word");
        assert_eq!(err(br#"1x="a""#), "unexpected quote inside a word");
        assert_eq!(err(br#"a=b="c""#), "unexpected quote inside a word");
    }

    #[test]
    fn forbidden_bytes() {
        assert_eq!(err(b"PI\0NG"), "byte 0x00 is not allowed in a line");
        assert_eq!(err(b"a \rb"), "byte 0x0d is not allowed in a line");
        assert_eq!(err(b"\"a\nb\""), "byte 0x0a is not allowed in a line");
    }

    #[test]
    fn encode_examples() {
        let enc = |s: &[u8]| {
            let mut out = Vec::new();
            encode_word(&mut out, s);
            out
        };
        assert_eq!(enc(b"jobs"), b"jobs");
        assert_eq!(enc(b""), b"\"\"");
        assert_eq!(enc(b"a b"), b"\"a b\"");
        assert_eq!(enc(b"{5}"), b"\"{5}\"");
        assert_eq!(enc(b"{}"), b"{}");
        assert_eq!(enc(b"x{5}"), b"x{5}");
        assert_eq!(enc(b"a\"b\\"), b"\"a\\\"b\\\\\"");
        assert_eq!(enc(b"\x01"), b"\"\x01\"");
        let mut out = Vec::new();
        encode_quoted(&mut out, b"frobnicate");
        assert_eq!(out, b"\"frobnicate\"");
    }

    #[test]
    fn encode_then_tokenize_round_trip() {
        let mut tricky: Vec<Vec<u8>> = [
            "",
            " ",
            "a b",
            "\"",
            "\"\"",
            "\\",
            "\\\"",
            "a\\b\"c",
            "{5}",
            "{0}",
            "{123456789012345678901}",
            "{}",
            "{x}",
            "x=1",
            "h.x=a b",
            "tab\there",
            "-",
            "=",
            "trailing ",
            " leading",
            "caf\u{e9}",
            "\u{7f}",
            "\u{1b}[A",
            "\u{1}\u{2}\u{1f}",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        tricky.push((0x80..=0xff).collect());
        tricky.push(vec![b'"', 0xff, b'\\', b' ']);
        tricky.push((1..0x20).filter(|&b| b != b'\r' && b != b'\n').collect());
        let mut line = Vec::new();
        for (n, word) in tricky.iter().enumerate() {
            let mut one = Vec::new();
            encode_word(&mut one, word);
            let toks = tokenize(&one).unwrap();
            assert_eq!(toks.len(), 1, "word {n}");
            assert_eq!(&toks[0].text, word, "word {n}");
            assert_eq!(toks[0].quoted, needs_quotes(word), "word {n}");
            if n > 0 {
                line.push(b' ');
            }
            line.extend_from_slice(&one);
        }
        let all: Vec<Vec<u8>> = tokenize(&line)
            .unwrap()
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert_eq!(all, tricky);
    }
}
