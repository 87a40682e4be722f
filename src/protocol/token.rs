//! STUB (replaced by the real tokenizer).
#![allow(missing_docs, unreachable_pub, dead_code)]
pub fn encode_word(out: &mut Vec<u8>, word: &[u8]) {
    if word.is_empty() || word.iter().any(|b| *b <= b' ' || *b == b'"' || *b == b'\\') || word.first() == Some(&b'{') {
        out.push(b'"');
        for b in word { if *b == b'"' || *b == b'\\' { out.push(b'\\'); } out.push(*b); }
        out.push(b'"');
    } else { out.extend_from_slice(word); }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token { pub text: Vec<u8>, pub quoted: bool }
pub fn tokenize(line: &[u8]) -> Result<Vec<Token>, crate::protocol::parse::ParseError> {
    Ok(line.split(|b| *b == b' ').filter(|w| !w.is_empty()).map(|w| Token { text: w.to_vec(), quoted: false }).collect())
}
