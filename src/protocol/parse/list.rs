//! `LIST QUEUES|EXCHANGES|BINDINGS|CONNECTIONS|CONSUMERS [<pattern>]`. See
//! protocol.md, "LIST"; run by `cmd/list.rs`.

use super::{bounded, choice, Args, Res, Spec};
use crate::protocol::command::{Command, List};
use crate::protocol::encode::LIST_KINDS;

/// How `LIST` is used.
pub(super) const USAGE: &str =
    "LIST QUEUES|EXCHANGES|BINDINGS|CONNECTIONS|CONSUMERS|GROUPS|NODES [<pattern>]";

pub(super) fn list(mut a: Args<'_>) -> Res<Command> {
    let tok = a.required("what to list")?;
    let kind = choice("LIST", &tok.text, LIST_KINDS)?;
    let pattern = match a.optional(&[]) {
        Some(tok) => Some(bounded(&tok.text, "pattern", false)?),
        None => None,
    };
    a.options(&Spec::default())?;
    Ok(Command::List(List { kind, pattern }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, syntax};
    use super::*;
    use crate::protocol::command::ListKind;

    #[test]
    fn list() {
        let l = |kind, pattern: Option<&str>| {
            Command::List(List {
                kind,
                pattern: pattern.map(String::from),
            })
        };
        assert_eq!(ok("LIST QUEUES"), l(ListKind::Queues, None));
        assert_eq!(ok("list exchanges"), l(ListKind::Exchanges, None));
        assert_eq!(
            ok("LIST Bindings jobs.*"),
            l(ListKind::Bindings, Some("jobs.*"))
        );
        assert_eq!(
            ok("LIST CONNECTIONS \"my app?\""),
            l(ListKind::Connections, Some("my app?"))
        );
        assert_eq!(ok("LIST CONSUMERS *"), l(ListKind::Consumers, Some("*")));
        assert_eq!(ok("list groups bill*"), l(ListKind::Groups, Some("bill*")));
        assert!(syntax("LIST").starts_with("missing what to list; usage: LIST"));
        assert!(syntax("LIST THINGS").starts_with("LIST: expected QUEUES or EXCHANGES"));
        assert_eq!(syntax("LIST QUEUES a b"), "unexpected argument \"b\"");
        assert_eq!(syntax("LIST QUEUES a=b"), "unknown option \"a=b\"");
        assert_eq!(syntax("LIST QUEUES \"\""), "pattern must be 1 to 255 bytes");
    }
}
