//! `CLOSE CONNECTION <id>`. See protocol.md, "CLOSE CONNECTION"; run by
//! `cmd/close.rs`.

use super::{choice, number, Args, Res};
use crate::protocol::command::{CloseConnection, Command};
use crate::protocol::error::{show, ParseError};

/// How `CLOSE` is used.
pub(super) const USAGE: &str = "CLOSE CONNECTION <id>";

pub(super) fn close(mut a: Args<'_>) -> Res<Command> {
    let tok = a.required("CONNECTION")?;
    choice("CLOSE", &tok.text, &[("CONNECTION", ())]).map_err(|_| {
        ParseError::syntax(format!(
            "CLOSE: expected CONNECTION, got {}",
            show(&tok.text)
        ))
    })?;
    let id = number("<id>", &a.required("<id>")?.text, 1, u64::MAX)?;
    a.end(Command::CloseConnection(CloseConnection { id }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, syntax};
    use super::*;

    #[test]
    fn close() {
        assert_eq!(
            ok("close connection 7"),
            Command::CloseConnection(CloseConnection { id: 7 })
        );
        assert!(syntax("CLOSE").starts_with("missing CONNECTION"));
        assert!(syntax("CLOSE QUEUE 7").starts_with("CLOSE: expected CONNECTION"));
        assert!(syntax("CLOSE CONNECTION").starts_with("missing <id>"));
        assert!(syntax("CLOSE CONNECTION x").starts_with("<id>:"));
        assert_eq!(syntax("CLOSE CONNECTION 7 8"), "unexpected argument \"8\"");
    }
}
