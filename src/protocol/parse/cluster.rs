//! `CLUSTER ADD|REMOVE|TRANSFER`: node ids and addresses. See
//! protocol.md, "CLUSTER"; run by `cmd/cluster.rs`.

use super::{choice, number, utf8, Args, Res};
use crate::protocol::command::{ClusterCommand, Command};
use crate::protocol::error::{show, ParseError};

/// How `CLUSTER` is used.
pub(super) const USAGE: &str = "CLUSTER ADD <id> <ip:port> | REMOVE <id> | TRANSFER <id>";

pub(super) fn cluster(mut a: Args<'_>) -> Res<Command> {
    const SUB_VERBS: &[(&str, u8)] = &[("ADD", 0), ("REMOVE", 1), ("TRANSFER", 2)];
    let tok = a.required("ADD, REMOVE or TRANSFER")?;
    let sub = choice("CLUSTER", &tok.text, SUB_VERBS).map_err(|_| {
        ParseError::syntax(format!(
            "CLUSTER: expected ADD, REMOVE or TRANSFER, got {}",
            show(&tok.text)
        ))
    })?;
    let id = number("<id>", &a.required("<id>")?.text, 1, u64::MAX)?;
    let command = match sub {
        0 => {
            let text = utf8(&a.required("<ip:port>")?.text, "<ip:port>")?;
            let addr = text.parse().map_err(|_| {
                ParseError::syntax(format!(
                    "<ip:port>: expected an IP address and port (like 10.0.0.4:7001), got {}",
                    show(text.as_bytes())
                ))
            })?;
            ClusterCommand::Add { id, addr }
        }
        1 => ClusterCommand::Remove(id),
        _ => ClusterCommand::Transfer(id),
    };
    a.end(Command::Cluster(command))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, syntax};
    use super::*;

    #[test]
    fn cluster() {
        assert_eq!(
            ok("CLUSTER ADD 4 127.0.0.1:7004"),
            Command::Cluster(ClusterCommand::Add {
                id: 4,
                addr: "127.0.0.1:7004".parse().unwrap()
            })
        );
        assert_eq!(
            ok("cluster remove 2"),
            Command::Cluster(ClusterCommand::Remove(2))
        );
        assert_eq!(
            ok("CLUSTER TRANSFER 3"),
            Command::Cluster(ClusterCommand::Transfer(3))
        );
        assert!(syntax("CLUSTER ADD 4 somewhere").starts_with("<ip:port>: expected"));
        assert!(syntax("CLUSTER ADD 0 127.0.0.1:1").starts_with("<id>: must be between"));
        assert!(syntax("CLUSTER JOIN 4").starts_with("CLUSTER: expected ADD"));
        assert!(syntax("CLUSTER REMOVE").starts_with("missing <id>"));
        assert!(!syntax("CLUSTER REMOVE 2 3").is_empty());
    }
}
