//! `DELETE EXCHANGE` and `DELETE QUEUE` with their `if-unused` and
//! `if-empty` conditions. See protocol.md, "DELETE"; run by
//! `cmd/delete.rs`.

use super::{name, sub_verb, Args, Opt, Res, Spec};
use crate::protocol::command::{Command, DeleteExchange, DeleteQueue};
use crate::protocol::encode::opt;

/// How `DELETE` is used.
pub(super) const USAGE: &str = "DELETE EXCHANGE|QUEUE <name> ...";

pub(super) fn delete(mut a: Args<'_>) -> Res<Command> {
    if sub_verb(&mut a, "DELETE")? {
        a.usage = "DELETE EXCHANGE <name> [if-unused]";
        let name = name(a.required("<name>")?, "exchange", false)?;
        let spec = Spec {
            flags: &[opt::IF_UNUSED],
            ..Spec::default()
        };
        let mut d = DeleteExchange {
            name,
            if_unused: false,
        };
        for o in a.options(&spec)? {
            if let Opt::Flag(_, on) = o {
                d.if_unused = on;
            }
        }
        return Ok(Command::DeleteExchange(d));
    }
    a.usage = "DELETE QUEUE <name> [if-unused] [if-empty]";
    let name = name(a.required("<name>")?, "queue", false)?;
    let spec = Spec {
        flags: &[opt::IF_UNUSED, opt::IF_EMPTY],
        ..Spec::default()
    };
    let mut d = DeleteQueue {
        name,
        if_unused: false,
        if_empty: false,
    };
    for o in a.options(&spec)? {
        match o {
            Opt::Flag(opt::IF_UNUSED, on) => d.if_unused = on,
            Opt::Flag(_, on) => d.if_empty = on,
            _ => {}
        }
    }
    Ok(Command::DeleteQueue(d))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, syntax};
    use super::*;

    #[test]
    fn delete() {
        let e = DeleteExchange {
            name: "logs".into(),
            if_unused: true,
        };
        assert_eq!(
            ok("delete EXCHANGE logs IF-UNUSED"),
            Command::DeleteExchange(e)
        );
        let q = DeleteQueue {
            name: "jobs".into(),
            if_unused: false,
            if_empty: true,
        };
        assert_eq!(ok("DELETE QUEUE jobs if-empty"), Command::DeleteQueue(q));
        assert_eq!(
            syntax("DELETE EXCHANGE logs if-empty"),
            "unexpected argument \"if-empty\""
        );
        assert_eq!(syntax("DELETE QUEUE \"\""), "queue name must not be empty");
        assert_eq!(
            syntax("DELETE EXCHANGE \"\""),
            "exchange name must not be empty"
        );
        assert_eq!(
            syntax("DELETE QUEUE q if-unused if-unused"),
            "duplicate option if-unused"
        );
        assert!(syntax("DELETE").starts_with("missing EXCHANGE or QUEUE"));
    }
}
