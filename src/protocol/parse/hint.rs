//! "Did you mean": the verb a word that is none means (another
//! broker's name for it, or a near miss), and the option a misspelled one
//! is. Pure, as the rest of the parser.

use super::VERBS;

/// Words other brokers and tools use for a verb (and `BYE`/`LOGOUT` for
/// `QUIT`): not verbs, but an `UNKNOWN_COMMAND` for one says which verb
/// is meant, and `HELP <word>` answers with that verb's help.
const ALIASES: &[(&str, &str)] = &[
    ("PUBLISH", "PUB"),
    ("SEND", "PUB"),
    ("PRODUCE", "PUB"),
    ("SUBSCRIBE", "SUB"),
    ("CONSUME", "SUB"),
    ("UNSUBSCRIBE", "UNSUB"),
    ("CANCEL", "UNSUB"),
    ("FETCH", "GET"),
    ("RECEIVE", "GET"),
    ("POP", "GET"),
    ("ACKNOWLEDGE", "ACK"),
    ("REQUEUE", "NACK"),
    ("CREATE", "DECLARE"),
    ("REMOVE", "DELETE"),
    ("DROP", "DELETE"),
    ("DEL", "DELETE"),
    ("CLEAR", "PURGE"),
    ("LOGIN", "AUTH"),
    ("LS", "LIST"),
    ("SHOW", "LIST"),
    ("STATUS", "STATS"),
    ("INFO", "STATS"),
    ("BYE", "QUIT"),
    ("LOGOUT", "QUIT"),
];

/// The verb a word that is none means: one of [`ALIASES`], else the one
/// verb it is a near miss of ([`near_miss`]). `None` when there is no
/// single answer.
pub(crate) fn verb_meant(word: &[u8]) -> Option<&'static str> {
    if let Some(&(_, verb)) = ALIASES
        .iter()
        .find(|(alias, _)| alias.as_bytes().eq_ignore_ascii_case(word))
    {
        return Some(verb);
    }
    near_miss(word, VERBS.iter().map(|v| v.0))
}

/// The verb `word` names: itself (any case), or what it is an alias of
/// (`publish` → `PUB`, `exit` → `EXIT`). For `HELP <word>`.
pub(crate) fn verb_named(word: &[u8]) -> Option<&'static str> {
    VERBS
        .iter()
        .map(|v| v.0)
        .find(|v| v.as_bytes().eq_ignore_ascii_case(word))
        .or_else(|| {
            ALIASES
                .iter()
                .find(|(alias, _)| alias.as_bytes().eq_ignore_ascii_case(word))
                .map(|&(_, verb)| verb)
        })
}

/// The one candidate `word` is a near miss of, compared without case: at
/// most one edit away (a letter added, dropped, changed, or two swapped)
/// for words of up to 4 letters, two for longer ones; or, for 3 letters or
/// more, the start of exactly one candidate (`decl` → `DECLARE`). `None`
/// when no candidate, or more than one, is that close.
pub(super) fn near_miss<'c>(
    word: &[u8],
    candidates: impl Iterator<Item = &'c str> + Clone,
) -> Option<&'c str> {
    let word = word.to_ascii_lowercase();
    if word.is_empty() || word.len() > 64 {
        return None;
    }
    let limit = if word.len() <= 4 { 1 } else { 2 };
    let mut best: Option<(usize, &str)> = None;
    let mut tied = false;
    for c in candidates.clone() {
        let d = edit_distance(&word, &c.to_ascii_lowercase().into_bytes());
        match best {
            _ if d > limit => {}
            Some((bd, _)) if d > bd => {}
            Some((bd, _)) if d == bd => tied = true,
            _ => {
                best = Some((d, c));
                tied = false;
            }
        }
    }
    if let (Some((_, c)), false) = (best, tied) {
        return Some(c);
    }
    if best.is_some() || word.len() < 3 {
        return None;
    }
    let mut prefixed = candidates.filter(|c| c.to_ascii_lowercase().as_bytes().starts_with(&word));
    match (prefixed.next(), prefixed.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`
/// (optimal string alignment distance).
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = v;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_named_by_themselves_or_an_alias() {
        assert_eq!(verb_named(b"publish"), Some("PUB"));
        assert_eq!(verb_named(b"pub"), Some("PUB"));
        assert_eq!(verb_named(b"Exit"), Some("EXIT"));
        assert_eq!(verb_named(b"pbu"), None, "a near miss is no name");
        assert_eq!(verb_meant(b"pbu"), Some("PUB"));
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance(b"pub", b"pub"), 0);
        assert_eq!(edit_distance(b"pbu", b"pub"), 1);
        assert_eq!(edit_distance(b"durabel", b"durable"), 1);
        assert_eq!(edit_distance(b"", b"ack"), 3);
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
    }
}
