//! `REDRIVE <queue> [count=<n>]`: dead letters back to where they were
//! published. See protocol.md, "REDRIVE"; run by `cmd/redrive.rs`.

use super::{name, number, Args, Opt, Res, Spec};
use crate::protocol::command::{Command, Redrive};
use crate::protocol::encode::opt;

/// How `REDRIVE` is used.
pub(super) const USAGE: &str = "REDRIVE <queue> [count=<n>]";

pub(super) fn redrive(mut a: Args<'_>) -> Res<Command> {
    let queue = name(a.required("<queue>")?, "queue", false)?;
    let spec = Spec {
        values: &[opt::COUNT],
        ..Spec::default()
    };
    let mut r = Redrive { queue, count: None };
    for o in a.options(&spec)? {
        if let Opt::Value(_, v) = o {
            r.count = Some(number(opt::COUNT, v, 1, u64::MAX)?);
        }
    }
    Ok(Command::Redrive(r))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, syntax};
    use super::*;

    #[test]
    fn redrive() {
        let r = |queue: &str, count| {
            Command::Redrive(Redrive {
                queue: queue.into(),
                count,
            })
        };
        assert_eq!(ok("REDRIVE jobs.dead"), r("jobs.dead", None));
        assert_eq!(ok("redrive dlq COUNT=10"), r("dlq", Some(10)));
        assert_eq!(
            ok(&format!("REDRIVE dlq count={}", u64::MAX)),
            r("dlq", Some(u64::MAX))
        );
        assert_eq!(
            syntax("REDRIVE"),
            "missing <queue>; usage: REDRIVE <queue> [count=<n>]"
        );
        assert_eq!(syntax("REDRIVE dlq jobs"), "unexpected argument \"jobs\"");
        assert_eq!(
            syntax("REDRIVE dlq count=0"),
            "count: must be between 1 and 18446744073709551615, got 0"
        );
        assert_eq!(
            syntax("REDRIVE dlq count=all"),
            "count: expected a number, got \"all\""
        );
        assert_eq!(syntax("REDRIVE dlq from=1"), "unknown option \"from=1\"");
        assert_eq!(
            syntax("REDRIVE dlq count=1 count=1"),
            "duplicate option count"
        );
        assert!(syntax("REDRIVE bad!").starts_with("bad queue name \"bad!\""));
    }
}
