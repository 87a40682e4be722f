//! `SCHEMA ADD|GET|DELETE` and `LIST SCHEMAS` (`SCHEMA LIST`): the schema
//! registry over the protocol. See protocol.md, "SCHEMA".
//!
//! Changing the registry (`ADD`, `DELETE`) needs the admin tag, as `USER`
//! does (anyone on an open broker); reading it (`GET`, `LIST`) does not.
//! On a cluster node `ADD` and `DELETE` go through the metadata group
//! first (`replicated.rs`), which runs [`apply`] on every node.

use bytes::Bytes;
use tracing::instrument;

use super::outcome::Outcome;
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::protocol::command::SchemaCommand;
use crate::protocol::encode::schema_reply_words;
use crate::protocol::reply::{join_words, Reply};
use crate::protocol::table::Table;
use crate::session_state::SessionState;

/// `SCHEMA ADD <subject> [compat=...] [transitive] {N}<schema>` →
/// `OK <subject> version=<n>`; `SCHEMA GET <subject> [version=<n>|latest]`
/// → `OK <subject> version=<n> compat=<rule> [transitive] {N}<schema>`;
/// `SCHEMA DELETE <subject> [version=<n>]` → `OK`.
#[instrument(level = "debug", name = "SCHEMA", skip_all, fields(conn = s.conn_id()))]
pub(super) fn schema(c: SchemaCommand, s: &mut SessionState) -> Result<Outcome, BrokerError> {
    if let SchemaCommand::Get { subject, version } = &c {
        let shown = s.broker().schemas().get(subject, *version)?;
        let rule = Some((shown.compat, shown.transitive));
        let words = join_words(schema_reply_words(subject, shown.version, rule));
        return Ok(Outcome::reply(Reply::Data(
            words,
            Bytes::from(shown.schema),
        )));
    }
    s.login().require_admin(verb(&c))?;
    let (words, gen) = apply(s.broker(), &c)?;
    Ok(Outcome::Reply(Reply::words(words), gen))
}

/// The verb, for `FORBIDDEN`'s message.
pub(super) fn verb(c: &SchemaCommand) -> &'static str {
    match c {
        SchemaCommand::Add(_) => "SCHEMA ADD",
        SchemaCommand::Get { .. } => "SCHEMA GET",
        SchemaCommand::Delete { .. } => "SCHEMA DELETE",
    }
}

/// Runs `ADD` or `DELETE` on `broker` (here, or as the metadata group on
/// every node): the words of its `OK` and the generation to wait for.
pub(super) fn apply(
    broker: &Broker,
    c: &SchemaCommand,
) -> Result<(Vec<String>, Option<u64>), BrokerError> {
    match c {
        SchemaCommand::Add(a) => {
            let (version, gen) = broker.schema_add(a)?;
            Ok((schema_reply_words(&a.subject, version, None), gen))
        }
        SchemaCommand::Delete { subject, version } => {
            Ok((Vec::new(), broker.schema_delete(subject, *version)?))
        }
        SchemaCommand::Get { .. } => Err(BrokerError::Syntax("SCHEMA GET changes nothing".into())),
    }
}

/// `LIST SCHEMAS`, matched against the subject's name.
pub(super) fn table(broker: &Broker, keep: impl Fn(&[&[u8]]) -> bool) -> Table {
    let mut t = Table::new(&["subject", "latest", "versions", "compat", "used_by"]);
    for row in broker.schemas().list() {
        if !keep(&[row.subject.as_bytes()]) {
            continue;
        }
        let versions: Vec<String> = row.versions.iter().map(u32::to_string).collect();
        let mut compat = row.compat.keyword().to_string();
        if row.transitive {
            compat.push_str(",transitive");
        }
        let users = broker.schema_users(&row.subject);
        t.row([
            row.subject.clone(),
            row.latest.to_string(),
            versions.join(","),
            compat,
            match users.is_empty() {
                true => "-".to_string(),
                false => users
                    .iter()
                    .map(|u| u.shown())
                    .collect::<Vec<_>>()
                    .join(","),
            },
        ]);
    }
    t
}
