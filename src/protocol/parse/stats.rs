//! `STATS [QUEUE <name>]`. See protocol.md, "STATS"; run by
//! `cmd/stats.rs`.

use super::{name, Args, Res};
use crate::protocol::command::{Command, Stats};
use crate::protocol::error::{show, ParseError};

/// How `STATS` is used.
pub(super) const USAGE: &str = "STATS [QUEUE <name>]";

pub(super) fn stats(mut a: Args<'_>) -> Res<Command> {
    let Some(tok) = a.toks.first() else {
        return Ok(Command::Stats(Stats { queue: None }));
    };
    if tok.quoted || !tok.text.eq_ignore_ascii_case(b"QUEUE") {
        return Err(ParseError::syntax(format!(
            "STATS: expected QUEUE <name> or nothing, got {}",
            show(&tok.text)
        )));
    }
    a.toks = &a.toks[1..];
    a.usage = "STATS QUEUE <name>";
    let queue = name(a.required("<name>")?, "queue", false)?;
    a.end(Command::Stats(Stats { queue: Some(queue) }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, syntax};
    use super::*;

    #[test]
    fn stats() {
        assert_eq!(ok("STATS"), Command::Stats(Stats { queue: None }));
        assert_eq!(
            ok("stats queue jobs"),
            Command::Stats(Stats {
                queue: Some("jobs".into())
            })
        );
        assert_eq!(
            syntax("STATS jobs"),
            "STATS: expected QUEUE <name> or nothing, got \"jobs\""
        );
        assert!(syntax("STATS QUEUE").starts_with("missing <name>; usage: STATS QUEUE"));
        assert_eq!(syntax("STATS QUEUE a b"), "unexpected argument \"b\"");
    }
}
