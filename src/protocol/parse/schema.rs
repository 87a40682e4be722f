//! `SCHEMA ADD|GET|LIST|DELETE`: subjects, versions, compatibility rules
//! and the schema literal. See protocol.md, "SCHEMA"; run by
//! `cmd/schema.rs`.

use super::{bounded, choice, name, number, utf8, Args, Opt, Res, Spec};
use crate::protocol::command::{Command, List, ListKind, SchemaAdd, SchemaCommand};
use crate::protocol::encode::{opt, COMPATS, LATEST};
use crate::protocol::error::{show, ParseError};
use crate::protocol::frame::lit_mark;
use bytes::Bytes;

/// How `SCHEMA` is used.
pub(super) const USAGE: &str = "SCHEMA ADD|GET|LIST|DELETE ...";

const ADD_USAGE: &str =
    "SCHEMA ADD <subject> [compat=none|backward|forward|full] [transitive] {N}<json-schema>";
const GET_USAGE: &str = "SCHEMA GET <subject> [version=<n>|latest]";
const DELETE_USAGE: &str = "SCHEMA DELETE <subject> [version=<n>]";

/// The schema: the literal that the line's last word (`{N}`) announces,
/// that word taken off the line.
fn schema_literal(a: &mut Args<'_>) -> Res<Bytes> {
    let announced = a
        .toks
        .split_last()
        .filter(|(last, _)| !last.quoted)
        .and_then(|(last, rest)| Some((lit_mark(&last.text, true)?, rest)));
    match (a.literal.take(), announced) {
        (Some(lit), Some((Ok(n), rest))) if n == lit.len() as u64 => {
            a.toks = rest;
            Ok(lit)
        }
        _ => Err(ParseError::syntax(format!(
            "missing the schema literal; usage: {ADD_USAGE}"
        ))),
    }
}

/// A version number: 1 and up.
fn version(v: &[u8]) -> Res<u32> {
    number("version", v, 1, u64::from(u32::MAX)).map(|n| n as u32)
}

pub(super) fn schema(mut a: Args<'_>) -> Res<Command> {
    const SUB_VERBS: &[(&str, u8)] = &[("ADD", 0), ("GET", 1), ("LIST", 2), ("DELETE", 3)];
    let tok = a.required("ADD, GET, LIST or DELETE")?;
    let sub = choice("SCHEMA", &tok.text, SUB_VERBS).map_err(|_| {
        ParseError::syntax(format!(
            "SCHEMA: expected ADD, GET, LIST or DELETE, got {}",
            show(&tok.text)
        ))
    })?;
    if sub != 0 && a.literal.is_some() {
        return Err(ParseError::syntax(
            "only SCHEMA ADD takes a literal (the schema)",
        ));
    }
    if sub == 2 {
        a.usage = "SCHEMA LIST [<pattern>]";
        let pattern = match a.optional(&[]) {
            Some(tok) => Some(bounded(&tok.text, "pattern", false)?),
            None => None,
        };
        a.options(&Spec::default())?;
        return Ok(Command::List(List {
            kind: ListKind::Schemas,
            pattern,
        }));
    }
    a.usage = match sub {
        0 => ADD_USAGE,
        1 => GET_USAGE,
        _ => DELETE_USAGE,
    };
    let subject = name(a.required("<subject>")?, "subject", false)?;
    if sub == 0 {
        let schema = utf8(&schema_literal(&mut a)?, "schema")?;
        let spec = Spec {
            flags: &[opt::TRANSITIVE],
            values: &[opt::COMPAT],
            ..Spec::default()
        };
        let (mut compat, mut transitive) = (None, false);
        for o in a.options(&spec)? {
            match o {
                Opt::Flag(_, on) => transitive = on,
                Opt::Value(_, v) => compat = Some(choice(opt::COMPAT, v, COMPATS)?),
                Opt::Header(_) => {}
            }
        }
        if transitive && compat.is_none() {
            return Err(ParseError::syntax(
                "transitive goes with compat=backward|forward|full",
            ));
        }
        return Ok(Command::Schema(SchemaCommand::Add(SchemaAdd {
            subject,
            rule: compat.map(|c| (c, transitive)),
            schema,
        })));
    }
    let spec = Spec {
        values: &[opt::VERSION],
        ..Spec::default()
    };
    let mut chosen = None;
    for o in a.options(&spec)? {
        if let Opt::Value(_, v) = o {
            chosen = match (sub, v) {
                (1, v) if v.eq_ignore_ascii_case(LATEST.as_bytes()) => None,
                (_, v) => Some(version(v)?),
            };
        }
    }
    Ok(Command::Schema(match sub {
        1 => SchemaCommand::Get {
            subject,
            version: chosen,
        },
        _ => SchemaCommand::Delete {
            subject,
            version: chosen,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::super::parse_line;
    use super::super::testing::{ok, syntax};
    use super::*;
    use crate::protocol::command::Compat;

    #[test]
    fn add_takes_a_rule_and_a_literal() {
        let c = parse_line(
            b"SCHEMA ADD orders compat=full transitive {2}",
            Some(bytes::Bytes::from_static(b"{}")),
        )
        .unwrap();
        assert_eq!(
            c,
            Command::Schema(SchemaCommand::Add(SchemaAdd {
                subject: "orders".into(),
                rule: Some((Compat::Full, true)),
                schema: "{}".into(),
            }))
        );
        assert!(syntax("SCHEMA ADD orders").starts_with("missing the schema literal"));
        let e = parse_line(
            b"SCHEMA ADD orders transitive {2}",
            Some(bytes::Bytes::from_static(b"{}")),
        )
        .unwrap_err();
        assert!(e.message.starts_with("transitive goes with compat="));
    }

    #[test]
    fn get_list_delete() {
        let get = |version| {
            Command::Schema(SchemaCommand::Get {
                subject: "orders".into(),
                version,
            })
        };
        assert_eq!(ok("SCHEMA GET orders"), get(None));
        assert_eq!(ok("schema get orders version=latest"), get(None));
        assert_eq!(ok("SCHEMA GET orders version=2"), get(Some(2)));
        assert!(syntax("SCHEMA GET orders version=0").starts_with("version: must be"));
        assert_eq!(
            ok("SCHEMA DELETE orders version=3"),
            Command::Schema(SchemaCommand::Delete {
                subject: "orders".into(),
                version: Some(3)
            })
        );
        assert!(syntax("SCHEMA DELETE orders version=latest").starts_with("version: expected"));
        assert_eq!(
            ok("SCHEMA LIST ord*"),
            Command::List(List {
                kind: ListKind::Schemas,
                pattern: Some("ord*".into())
            })
        );
        assert_eq!(ok("LIST SCHEMAS"), ok("SCHEMA LIST"));
        assert!(syntax("SCHEMA FROB x").starts_with("SCHEMA: expected ADD"));
    }

    #[test]
    fn commands_encode_as_they_read() {
        for line in [
            "SCHEMA GET orders version=2",
            "SCHEMA DELETE orders",
            "SCHEMA DELETE orders version=1",
        ] {
            let c = ok(line);
            assert_eq!(
                String::from_utf8(c.encode()).unwrap(),
                format!("{line}\r\n")
            );
        }
        let add = Command::Schema(SchemaCommand::Add(SchemaAdd {
            subject: "orders".into(),
            rule: Some((Compat::Forward, true)),
            schema: "{\"type\": \"object\"}".into(),
        }));
        assert_eq!(
            crate::protocol::parse::decode_one(&add.encode()).unwrap(),
            add
        );
    }
}
