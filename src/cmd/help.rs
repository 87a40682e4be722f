//! `HELP [<verb>]`: the grammar at a person's fingertips. See protocol.md, "HELP".

use bytes::Bytes;

use crate::error::BrokerError;
use crate::protocol::command::Help;
use crate::protocol::reply::{quote_for_message, Reply};
use crate::session::Session;

const OVERVIEW: &str = "\
commands (HELP <verb> for one verb):
  session   HELLO AUTH PING HELP QUIT
  topology  DECLARE DELETE BIND UNBIND PURGE
  messages  PUB SUB UNSUB GET ACK NACK REJECT
bodies: last token, quoted (\"two words\") or {N} then N bytes
reference: protocol.md
";

const VERBS: &[(&str, &str)] = &[
    ("HELLO", "HELLO [name=<client>] [proto=1]\n  -> OK sluice <version> proto=1\n"),
    ("AUTH", "AUTH <user> <password>\n  -> OK (this broker has no users yet: it is open)\n"),
    ("PING", "PING\n  -> OK pong (every earlier command has been answered)\n"),
    ("QUIT", "QUIT\n  -> OK bye, then the server closes the connection\n"),
    ("HELP", "HELP [<verb>]\n  -> OK {N} and this text\n"),
    ("DECLARE", "DECLARE EXCHANGE <name> direct|fanout|topic|headers [durable] [auto-delete] [alternate=<ex>]\n  -> OK\nDECLARE QUEUE <name>|\"\" [durable] [exclusive] [auto-delete]\n  -> OK <name> messages=<n> consumers=<n>\nexample: DECLARE QUEUE jobs durable\n"),
    ("DELETE", "DELETE EXCHANGE <name> [if-unused]\n  -> OK\nDELETE QUEUE <name> [if-unused] [if-empty]\n  -> OK messages=<n>\n"),
    ("BIND", "BIND <queue> <exchange> [<key>] [h.<name>=<value>...] [match=all|any]\n  -> OK\nexample: BIND errors logs \"*.error\"\n"),
    ("UNBIND", "UNBIND <queue> <exchange> [<key>] [h.<name>=<value>...]\n  -> OK\n"),
    ("PURGE", "PURGE <queue>\n  -> OK messages=<n>\n"),
    ("PUB", "PUB <exchange> <key> [persistent|transient] [mandatory] [id=<id>] [h.<name>=<value>...] <body>\n  -> OK <msg-id> routed=<n> (after fsync when persistent)\nexample: PUB \"\" jobs \"hello world\"\n"),
    ("SUB", "SUB <queue> [prefetch=<n>] [ack=manual|auto] [tag=<ctag>] [exclusive]\n  -> OK <ctag>, then MSG <ctag> <dtag> <exchange> <key> [redelivered] deliveries=<n> id=<id> [h.*] {N}\n"),
    ("UNSUB", "UNSUB <ctag>\n  -> OK\n"),
    ("GET", "GET <queue> [ack=manual|auto] [count=<n>] [wait=<ms>]\n  -> MSG - <dtag> ... for each message, then OK <n>\n"),
    ("ACK", "ACK <dtag> [multiple]\n  -> OK\n"),
    ("NACK", "NACK <dtag> [multiple] [requeue=true|false]\n  -> OK (requeued messages keep their position)\n"),
    ("REJECT", "REJECT <dtag>\n  -> OK (same as NACK <dtag> requeue=false)\n"),
];

/// `HELP [<verb>]` → `OK {N}` with the overview or one verb's grammar.
pub(super) fn help(c: Help, s: &mut Session) -> Result<(), BrokerError> {
    let text = match c.verb {
        None => OVERVIEW,
        Some(v) => VERBS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&v))
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                BrokerError::NotFound(format!("no help for {}", quote_for_message(&v)))
            })?,
    };
    s.reply(Reply::Data(
        String::new(),
        Bytes::from_static(text.as_bytes()),
    ));
    Ok(())
}
