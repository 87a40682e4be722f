//! `HELLO [name=<client>] [proto=<n>] [heartbeat=<ms>]`: the session
//! handshake's grammar and the heartbeat limits. See protocol.md, "HELLO";
//! run by `cmd/hello.rs`.

use super::{number, utf8, Args, Opt, Res, Spec};
use crate::protocol::command::{Command, Hello};
use crate::protocol::encode::opt;
use crate::protocol::error::ParseError;

/// How `HELLO` is used.
pub(super) const USAGE: &str = "HELLO [name=<client>] [proto=<n>]";

/// The shortest heartbeat interval (`HELLO heartbeat=`), in ms; 0 is off.
pub(crate) const MIN_HEARTBEAT_MS: u64 = 100;

/// The longest heartbeat interval, in ms (one hour).
pub(crate) const MAX_HEARTBEAT_MS: u64 = 3_600_000;

pub(super) fn hello(mut a: Args<'_>) -> Res<Command> {
    let spec = Spec {
        values: &[opt::NAME, opt::PROTO, opt::HEARTBEAT],
        ..Spec::default()
    };
    let mut h = Hello::default();
    for o in a.options(&spec)? {
        match o {
            Opt::Value(opt::NAME, v) => h.name = Some(utf8(v, opt::NAME)?),
            Opt::Value(opt::HEARTBEAT, v) => {
                // Milliseconds, like every duration here; `30s` (AMQP and
                // STOMP users think in seconds) is 30,000.
                let ms = match v.strip_suffix(b"s").filter(|n| !n.ends_with(b"m")) {
                    Some(secs) => number(opt::HEARTBEAT, secs, 0, MAX_HEARTBEAT_MS / 1000)? * 1000,
                    None => number(
                        opt::HEARTBEAT,
                        v.strip_suffix(b"ms").unwrap_or(v),
                        0,
                        MAX_HEARTBEAT_MS,
                    )?,
                };
                if ms != 0 && ms < MIN_HEARTBEAT_MS {
                    return Err(ParseError::syntax(format!(
                        "heartbeat: must be 0 (off) or between {MIN_HEARTBEAT_MS} and {MAX_HEARTBEAT_MS}, got {ms}"
                    )));
                }
                h.heartbeat = Some(ms);
            }
            Opt::Value(_, v) => h.proto = Some(number(opt::PROTO, v, 0, u64::MAX)?),
            _ => {}
        }
    }
    Ok(Command::Hello(h))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, syntax};
    use super::*;

    #[test]
    fn hello() {
        assert_eq!(ok("HELLO"), Command::Hello(Hello::default()));
        let hello = Hello {
            name: Some("my app".into()),
            proto: Some(1),
            heartbeat: None,
        };
        assert_eq!(ok("hello NAME=\"my app\" proto=1"), Command::Hello(hello));
    }

    #[test]
    fn hello_errors() {
        assert_eq!(
            syntax("HELLO proto=one"),
            "proto: expected a number, got \"one\""
        );
        assert_eq!(
            ok("HELLO heartbeat=5000"),
            Command::Hello(Hello {
                heartbeat: Some(5000),
                ..Hello::default()
            })
        );
        for (text, ms) in [("30s", 30_000), ("250ms", 250), ("3600s", 3_600_000)] {
            assert_eq!(
                ok(&format!("HELLO heartbeat={text}")),
                Command::Hello(Hello {
                    heartbeat: Some(ms),
                    ..Hello::default()
                }),
                "{text}"
            );
        }
        assert!(syntax("HELLO heartbeat=3601s").contains("heartbeat"));
        assert!(syntax("HELLO heartbeat=10m").contains("heartbeat"));
        assert_eq!(
            ok("hello HEARTBEAT=0"),
            Command::Hello(Hello {
                heartbeat: Some(0),
                ..Hello::default()
            })
        );
        assert_eq!(
            syntax("HELLO heartbeat=99"),
            "heartbeat: must be 0 (off) or between 100 and 3600000, got 99"
        );
        assert_eq!(
            syntax("HELLO heartbeat=3600001"),
            "heartbeat: must be between 0 and 3600000, got 3600001"
        );
        assert_eq!(syntax("HELLO name=a name=b"), "duplicate option name");
        assert_eq!(syntax("HELLO color=red"), "unknown option \"color=red\"");
        assert_eq!(syntax("HELLO name"), "name needs a value (name=...)");
    }
}
