//! `SEEK <stream> <group> offset=...|time=...`: moving a stream consumer
//! group's position. See protocol.md, "SEEK"; run by `cmd/seek.rs`.

use super::subscribe::stream_start;
use super::{name, Args, Opt, Res, Spec};
use crate::protocol::command::{Command, Seek};
use crate::protocol::encode::opt;
use crate::protocol::error::ParseError;

/// How `SEEK` is used.
pub(super) const USAGE: &str = "SEEK <stream> <group> offset=first|last|next|<n> | time=<unix-ms>";

pub(super) fn seek(mut a: Args<'_>) -> Res<Command> {
    let stream = name(a.required("<stream>")?, "stream", false)?;
    let group = name(a.required("<group>")?, "group", false)?;
    let spec = Spec {
        values: &[opt::OFFSET, opt::TIME],
        ..Spec::default()
    };
    let mut to = None;
    for o in a.options(&spec)? {
        if let Opt::Value(name, v) = o {
            if to.is_some() {
                return Err(ParseError::syntax("offset= and time= exclude each other"));
            }
            to = Some(stream_start(name, v)?);
        }
    }
    let Some(to) = to else {
        return Err(ParseError::syntax(format!(
            "missing offset= or time=; usage: {USAGE}"
        )));
    };
    Ok(Command::Seek(Seek { stream, group, to }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, syntax};
    use super::*;
    use crate::protocol::command::StreamStart;

    #[test]
    fn seek() {
        assert_eq!(
            ok("SEEK orders billing time=5"),
            Command::Seek(Seek {
                stream: "orders".into(),
                group: "billing".into(),
                to: StreamStart::Time(5)
            })
        );
        assert!(syntax("SEEK orders billing").starts_with("missing offset= or time="));
        assert!(syntax("SEEK orders").starts_with("missing <group>"));
    }
}
