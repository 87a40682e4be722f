//! `HELP [<verb>]`: its grammar. See protocol.md, "HELP"; run by
//! `cmd/help.rs`.

use super::{utf8, verb_named, Args, Res, Spec};
use crate::protocol::command::{Command, Help};

/// How `HELP` is used.
pub(super) const USAGE: &str = "HELP [<verb>]";

pub(super) fn help(mut a: Args<'_>) -> Res<Command> {
    // A verb's other names find it (`help publish` is `help PUB`); any
    // other word is looked up as it is (and not found).
    let verb = match a.optional(&[]) {
        Some(tok) => Some(match verb_named(&tok.text) {
            Some(verb) => verb.to_string(),
            None => utf8(&tok.text, "verb")?.to_ascii_uppercase(),
        }),
        None => None,
    };
    a.options(&Spec::default())?;
    Ok(Command::Help(Help { verb }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, syntax};
    use super::*;

    #[test]
    fn help() {
        assert_eq!(ok("HELP"), Command::Help(Help { verb: None }));
        assert_eq!(
            ok("help pub"),
            Command::Help(Help {
                verb: Some("PUB".into())
            })
        );
        for (word, verb) in [("publish", "PUB"), ("Subscribe", "SUB"), ("exit", "EXIT")] {
            assert_eq!(
                ok(&format!("help {word}")),
                Command::Help(Help {
                    verb: Some(verb.into())
                }),
                "{word}"
            );
        }
        assert_eq!(
            ok("HELP \"x=y\""),
            Command::Help(Help {
                verb: Some("X=Y".into())
            })
        );
    }

    #[test]
    fn help_errors() {
        assert_eq!(syntax("HELP x=y"), "unknown option \"x=y\"");
        assert_eq!(syntax("HELP pub sub"), "unexpected argument \"sub\"");
    }
}
