//! `ACK`, `NACK`, `REJECT` and `TOUCH`: settling a delivery by its tag. See
//! protocol.md, "ACK"; run by `cmd/ack.rs`.

use super::{choice, number, Args, Opt, Res, Spec};
use crate::protocol::command::{Ack, Command, Nack, Touch};
use crate::protocol::encode::{opt, BOOLS};
use crate::protocol::error::ParseError;

/// How `ACK` is used.
pub(super) const ACK_USAGE: &str = "ACK <delivery-tag> [multiple]";

/// How `NACK` is used.
pub(super) const NACK_USAGE: &str =
    "NACK <delivery-tag> [multiple] [requeue=true|false] [delay=<ms>]";

/// How `REJECT` is used.
pub(super) const REJECT_USAGE: &str = "REJECT <delivery-tag>";

/// How `TOUCH` is used.
pub(super) const TOUCH_USAGE: &str = "TOUCH <delivery-tag>";

fn delivery_tag(a: &mut Args<'_>) -> Res<u64> {
    number(
        "delivery tag",
        &a.required("<delivery-tag>")?.text,
        0,
        u64::MAX,
    )
}

pub(super) fn ack(mut a: Args<'_>) -> Res<Command> {
    let tag = delivery_tag(&mut a)?;
    let spec = Spec {
        flags: &[opt::MULTIPLE],
        ..Spec::default()
    };
    let multiple = a
        .options(&spec)?
        .iter()
        .any(|o| matches!(o, Opt::Flag(_, true)));
    Ok(Command::Ack(Ack { tag, multiple }))
}

pub(super) fn nack(mut a: Args<'_>) -> Res<Command> {
    let tag = delivery_tag(&mut a)?;
    let spec = Spec {
        flags: &[opt::MULTIPLE],
        values: &[opt::REQUEUE, opt::DELAY],
        ..Spec::default()
    };
    let mut n = Nack {
        tag,
        multiple: false,
        requeue: true,
        delay_ms: None,
    };
    for o in a.options(&spec)? {
        match o {
            Opt::Flag(_, on) => n.multiple = on,
            Opt::Value(opt::REQUEUE, v) => n.requeue = choice(opt::REQUEUE, v, BOOLS)?,
            Opt::Value(_, v) => n.delay_ms = Some(number(opt::DELAY, v, 0, u64::MAX)?),
            Opt::Header(_) => {}
        }
    }
    if n.delay_ms.is_some() && !n.requeue {
        return Err(ParseError::syntax("delay needs requeue"));
    }
    Ok(Command::Nack(n))
}

pub(super) fn reject(mut a: Args<'_>) -> Res<Command> {
    let tag = delivery_tag(&mut a)?;
    a.end(Command::Nack(Nack {
        tag,
        multiple: false,
        requeue: false,
        delay_ms: None,
    }))
}

pub(super) fn touch(mut a: Args<'_>) -> Res<Command> {
    let tag = delivery_tag(&mut a)?;
    a.end(Command::Touch(Touch { tag }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bytes::Bytes;

    use super::super::testing::{ok, syntax};
    use super::*;
    use crate::protocol::code::ErrorCode;
    use crate::protocol::parse::parse_line;

    #[test]
    fn ack_nack_reject() {
        assert_eq!(
            ok("ACK 7"),
            Command::Ack(Ack {
                tag: 7,
                multiple: false
            })
        );
        assert_eq!(
            ok("ack 18446744073709551615 MULTIPLE"),
            Command::Ack(Ack {
                tag: u64::MAX,
                multiple: true
            })
        );
        let n = |tag, multiple, requeue| {
            Command::Nack(Nack {
                tag,
                multiple,
                requeue,
                delay_ms: None,
            })
        };
        assert_eq!(ok("NACK 3"), n(3, false, true));
        assert_eq!(ok("nack 3 multiple requeue=FALSE"), n(3, true, false));
        assert_eq!(ok("NACK 3 multiple=false requeue=true"), n(3, false, true));
        assert_eq!(ok("REJECT 4"), n(4, false, false));
        assert_eq!(
            syntax("ACK x"),
            "delivery tag: expected a number, got \"x\""
        );
        assert_eq!(
            syntax("ACK 18446744073709551616"),
            "delivery tag: expected a number, got \"18446744073709551616\""
        );
        assert!(syntax("ACK").starts_with("missing <delivery-tag>; usage: ACK"));
        assert_eq!(
            syntax("ACK 1 requeue=false"),
            "unknown option \"requeue=false\""
        );
        assert_eq!(
            syntax("NACK 1 requeue=maybe"),
            "requeue: expected true or false, got \"maybe\""
        );
        assert_eq!(
            syntax("NACK 1 requeue"),
            "requeue needs a value (requeue=...)"
        );
        assert_eq!(
            syntax("REJECT 1 multiple"),
            "unexpected argument \"multiple\""
        );
        assert_eq!(
            syntax("ACK 1 multiple multiple"),
            "duplicate option multiple"
        );
    }

    #[test]
    fn nack_delay() {
        let n = |tag, multiple, requeue, delay_ms| {
            Command::Nack(Nack {
                tag,
                multiple,
                requeue,
                delay_ms,
            })
        };
        assert_eq!(ok("NACK 3 delay=500"), n(3, false, true, Some(500)));
        assert_eq!(ok("nack 3 MULTIPLE Delay=0"), n(3, true, true, Some(0)));
        assert_eq!(
            ok("NACK 3 requeue=TRUE delay=7 multiple"),
            n(3, true, true, Some(7))
        );
        assert_eq!(
            ok("NACK 3 delay=7 requeue=true"),
            n(3, false, true, Some(7))
        );
        assert_eq!(ok("NACK 3 requeue=false"), n(3, false, false, None));
        assert_eq!(ok("REJECT 3"), n(3, false, false, None));
        assert_eq!(
            syntax("NACK 1 requeue=false delay=5"),
            "delay needs requeue"
        );
        assert_eq!(
            syntax("NACK 1 delay=5 requeue=FALSE"),
            "delay needs requeue"
        );
        assert_eq!(
            syntax("NACK 1 delay=soon"),
            "delay: expected a number, got \"soon\""
        );
        assert_eq!(syntax("NACK 1 delay"), "delay needs a value (delay=...)");
        assert_eq!(syntax("NACK 1 delay=1 delay=2"), "duplicate option delay");
        assert_eq!(
            syntax("REJECT 1 delay=5"),
            "unexpected argument \"delay=5\""
        );
        assert_eq!(syntax("ACK 1 delay=5"), "unknown option \"delay=5\"");
        assert!(syntax("NACK")
            .ends_with("NACK <delivery-tag> [multiple] [requeue=true|false] [delay=<ms>]"));
    }

    #[test]
    fn touch() {
        assert_eq!(ok("TOUCH 7"), Command::Touch(Touch { tag: 7 }));
        assert_eq!(
            ok("touch 18446744073709551615"),
            Command::Touch(Touch { tag: u64::MAX })
        );
        assert_eq!(
            syntax("TOUCH"),
            "missing <delivery-tag>; usage: TOUCH <delivery-tag>"
        );
        assert_eq!(syntax("TOUCH 1 2"), "unexpected argument \"2\"");
        assert_eq!(
            syntax("TOUCH 1 multiple"),
            "unexpected argument \"multiple\""
        );
        assert_eq!(
            syntax("TOUCH x"),
            "delivery tag: expected a number, got \"x\""
        );
        let e = parse_line(b"TOUCH 1 {3}", Some(Bytes::from_static(b"abc"))).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::Syntax, "TOUCH does not take a literal")
        );
    }
}
