//! `PEEK <queue> [count=<n>] [from=<position>]`: looking without taking.
//! See protocol.md, "PEEK"; run by `cmd/peek.rs`.

use super::{name, number, Args, Opt, Res, Spec};
use crate::protocol::command::{Command, Peek};
use crate::protocol::encode::opt;

/// How `PEEK` is used.
pub(super) const USAGE: &str = "PEEK <queue> [count=<n>] [from=<position>]";

pub(super) fn peek(mut a: Args<'_>) -> Res<Command> {
    let queue = name(a.required("<queue>")?, "queue", false)?;
    let spec = Spec {
        values: &[opt::COUNT, opt::FROM],
        ..Spec::default()
    };
    let mut p = Peek {
        queue,
        count: 1,
        from: None,
    };
    for o in a.options(&spec)? {
        match o {
            Opt::Value(opt::COUNT, v) => p.count = number(opt::COUNT, v, 1, 1000)? as u32,
            Opt::Value(_, v) => p.from = Some(number(opt::FROM, v, 0, u64::MAX)?),
            _ => {}
        }
    }
    Ok(Command::Peek(p))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, syntax};
    use super::*;

    #[test]
    fn peek() {
        let p = |queue: &str, count, from| {
            Command::Peek(Peek {
                queue: queue.into(),
                count,
                from,
            })
        };
        assert_eq!(ok("PEEK jobs"), p("jobs", 1, None));
        assert_eq!(ok("peek jobs COUNT=1000 From=0"), p("jobs", 1000, Some(0)));
        assert_eq!(
            ok(&format!("PEEK q.dead from={} count=5", u64::MAX)),
            p("q.dead", 5, Some(u64::MAX))
        );
        assert!(syntax("PEEK")
            .starts_with("missing <queue>; usage: PEEK <queue> [count=<n>] [from=<position>]"));
        assert_eq!(syntax("PEEK jobs extra"), "unexpected argument \"extra\"");
        assert_eq!(syntax("PEEK \"\""), "queue name must not be empty");
        assert_eq!(
            syntax("PEEK jobs count=0"),
            "count: must be between 1 and 1000, got 0"
        );
        assert_eq!(
            syntax("PEEK jobs count=1001"),
            "count: must be between 1 and 1000, got 1001"
        );
        assert_eq!(
            syntax("PEEK jobs from=first"),
            "from: expected a number, got \"first\""
        );
        assert_eq!(
            syntax("PEEK jobs count=1 count=2"),
            "duplicate option count"
        );
        assert_eq!(syntax("PEEK jobs ack=auto"), "unknown option \"ack=auto\"");
        assert_eq!(syntax("PEEK jobs count"), "count needs a value (count=...)");
    }
}
