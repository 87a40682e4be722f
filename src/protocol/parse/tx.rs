//! `TX BEGIN`, `TX COMMIT`, `TX ABORT`: a transaction of acks and
//! publishes. See protocol.md, "TX"; run by `cmd/tx.rs`.

use super::{choice, Args, Res};
use crate::protocol::command::{Command, Tx};

/// How `TX` is used.
pub(super) const USAGE: &str = "TX BEGIN|COMMIT|ABORT";

pub(super) fn tx(mut a: Args<'_>) -> Res<Command> {
    let tok = a.required("BEGIN, COMMIT or ABORT")?;
    let step = choice(
        "TX",
        &tok.text,
        &[
            ("BEGIN", Tx::Begin),
            ("COMMIT", Tx::Commit),
            ("ABORT", Tx::Abort),
        ],
    )?;
    a.end(Command::Tx(step))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, syntax};
    use super::*;

    #[test]
    fn tx_steps_in_any_case() {
        assert_eq!(ok("TX BEGIN"), Command::Tx(Tx::Begin));
        assert_eq!(ok("tx commit"), Command::Tx(Tx::Commit));
        assert_eq!(ok("Tx Abort"), Command::Tx(Tx::Abort));
        assert!(syntax("TX")
            .starts_with("missing BEGIN, COMMIT or ABORT; usage: TX BEGIN|COMMIT|ABORT"));
        assert_eq!(
            syntax("TX START"),
            "TX: expected BEGIN or COMMIT or ABORT, got \"START\""
        );
        assert_eq!(syntax("TX COMMIT now"), "unexpected argument \"now\"");
    }
}
