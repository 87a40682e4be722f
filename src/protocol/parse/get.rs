//! `GET <queue>`: pulling messages, with `ack=`, `count=` and `wait=`. See
//! protocol.md, "GET"; run by `cmd/get.rs`.

use super::{choice, name, number, Args, Opt, Res, Spec};
use crate::protocol::command::{AckMode, Command, Get};
use crate::protocol::encode::{opt, ACK_MODES};

/// How `GET` is used.
pub(super) const USAGE: &str = "GET <queue> [ack=manual|auto] [count=<n>] [wait=<ms>]";

pub(super) fn get(mut a: Args<'_>) -> Res<Command> {
    let queue = name(a.required("<queue>")?, "queue", false)?;
    let spec = Spec {
        values: &[opt::ACK, opt::COUNT, opt::WAIT],
        ..Spec::default()
    };
    let mut g = Get {
        queue,
        ack: AckMode::Manual,
        count: 1,
        wait_ms: 0,
    };
    for o in a.options(&spec)? {
        match o {
            Opt::Value(opt::ACK, v) => g.ack = choice(opt::ACK, v, ACK_MODES)?,
            Opt::Value(opt::COUNT, v) => g.count = number(opt::COUNT, v, 1, 10_000)? as u32,
            Opt::Value(_, v) => g.wait_ms = number(opt::WAIT, v, 0, 3_600_000)?,
            _ => {}
        }
    }
    Ok(Command::Get(g))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, syntax};
    use super::*;

    #[test]
    fn get() {
        let g = Get {
            queue: "jobs".into(),
            ack: AckMode::Manual,
            count: 1,
            wait_ms: 0,
        };
        assert_eq!(ok("GET jobs"), Command::Get(g));
        let g = Get {
            queue: "jobs".into(),
            ack: AckMode::Auto,
            count: 10000,
            wait_ms: 3_600_000,
        };
        assert_eq!(
            ok("get jobs ack=auto count=10000 wait=3600000"),
            Command::Get(g)
        );
        assert_eq!(
            syntax("GET jobs count=0"),
            "count: must be between 1 and 10000, got 0"
        );
        assert_eq!(
            syntax("GET jobs count=10001"),
            "count: must be between 1 and 10000, got 10001"
        );
        assert_eq!(
            syntax("GET jobs wait=3600001"),
            "wait: must be between 0 and 3600000, got 3600001"
        );
        assert_eq!(
            syntax("GET jobs wait=99999999999999999999999"),
            "wait: expected a number, got \"99999999999999999999999\""
        );
        assert_eq!(
            syntax("GET jobs prefetch=1"),
            "unknown option \"prefetch=1\""
        );
        assert_eq!(syntax("GET jobs count"), "count needs a value (count=...)");
    }
}
