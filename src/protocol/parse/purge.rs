//! `PURGE <queue>`. See protocol.md, "PURGE"; run by `cmd/purge.rs`.

use super::{name, Args, Res};
use crate::protocol::command::{Command, Purge};

/// How `PURGE` is used.
pub(super) const USAGE: &str = "PURGE <queue>";

pub(super) fn purge(mut a: Args<'_>) -> Res<Command> {
    let queue = name(a.required("<queue>")?, "queue", false)?;
    a.end(Command::Purge(Purge { queue }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, syntax};
    use super::*;

    #[test]
    fn purge() {
        assert_eq!(
            ok("purge jobs"),
            Command::Purge(Purge {
                queue: "jobs".into()
            })
        );
        assert!(syntax("PURGE").starts_with("missing <queue>; usage: PURGE <queue>"));
        assert_eq!(syntax("PURGE a b"), "unexpected argument \"b\"");
    }
}
