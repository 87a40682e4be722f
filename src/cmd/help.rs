//! `HELP [<verb>]`: the grammar at a person's fingertips. See protocol.md, "HELP".

use bytes::Bytes;
use tracing::instrument;

use super::outcome::Outcome;
use crate::error::BrokerError;
use crate::protocol::command::Help;
use crate::protocol::parse::verb_meant;
use crate::protocol::reply::{quote_for_message, Reply};

const OVERVIEW: &str = "\
commands (HELP <verb> for one verb):
  session   HELLO AUTH PING HELP QUIT (or EXIT)
  topology  DECLARE DELETE BIND UNBIND PURGE
  messages  PUB SUB UNSUB GET ACK NACK REJECT TOUCH
  atomic    TX BEGIN|COMMIT|ABORT (ACKs and PUBs as one step)
  queues    PEEK REDRIVE
  streams   SEEK (and SUB offset= time= group=)
  users     USER ADD|PASSWD|PERMIT|REMOVE|LIST (admins)
  schemas   SCHEMA ADD|GET|LIST|DELETE (ADD and DELETE: admins)
  inspect   STATS LIST
  admin     CLOSE CONNECTION (admins)
  cluster   CLUSTER ADD|REMOVE|TRANSFER (admins, on a cluster node)
bodies: last token, quoted (\"two words\") or {N} then N bytes
reference: protocol.md
";

/// `QUIT`'s help, which `EXIT` shares.
const QUIT: &str = "QUIT (or EXIT)\n  -> OK bye, then the server closes the connection\n";

const VERBS: &[(&str, &str)] = &[
    ("CLOSE", "CLOSE CONNECTION <id>\n  -> OK; connection <id> (LIST CONNECTIONS) gets NOTICE closing reason=closed-by-admin and is closed\n  admins only\n"),
    ("CLUSTER", "CLUSTER ADD <id> <ip:port>\n  -> OK members=<id>,...  (the node, started with --join, catches up, then votes)\nCLUSTER REMOVE <id>\n  -> OK members=<id>,...\nCLUSTER TRANSFER <id>\n  -> OK leader=<id>  (about 1.5 s)\n  admins only, on a cluster node\n"),
    ("HELLO", "HELLO [name=<client>] [proto=1] [heartbeat=<ms>]\n  -> OK sluice <version> proto=1\n"),
    ("AUTH", "AUTH <user> <password>\n  -> OK <user>, or ERR NOAUTH invalid user or password\n  once a user exists, only HELLO AUTH PING HELP QUIT work before AUTH\n  a broker with no users is open: AUTH answers OK and everything is allowed\n"),
    ("PING", "PING\n  -> OK pong (every earlier command has been answered)\n"),
    ("QUIT", QUIT),
    ("EXIT", QUIT),
    ("HELP", "HELP [<verb>]\n  -> OK {N} and this text\n"),
    ("DECLARE", "DECLARE EXCHANGE <name> direct|fanout|topic|headers|hash [durable] [auto-delete] [alternate=<ex>] [hash-header=<name>] [schema=<subject>]\n  -> OK\n  hash: each message to one bound queue, by a hash of its routing key (or of header <name>)\n  schema=<subject>  every PUB body must be JSON valid against the subject's latest version\n                    (else ERR SCHEMA <json-pointer>: <reason>); stored ones get h.schema, h.schema-version\nDECLARE QUEUE <name>|\"\" [durable] [exclusive] [auto-delete] [single-active|groups] [<option>=<value>...]\n  -> OK <name> messages=<n> consumers=<n>\n  single-active     one subscription at a time gets the queue, in order; the others wait\n  groups            PUB group=<key>: one key's messages in order, to one consumer at a time\noptions (times in ms):\n  max-length=N      at most N messages waiting\n  max-bytes=N       at most N body bytes waiting\n  overflow=drop-head|reject-publish|block\n                    when full: dead-letter the oldest (default), ERR QUEUE_FULL, or hold the PUB\n  ttl=<ms>          a message may wait this long, then it expires and is dead-lettered\n  expires=<ms>      the queue is deleted after this long unused\n  dead-letter=<ex>  where rejected, expired and dropped messages go (\"\" = default exchange)\n  dead-letter-key=<key>  their routing key (default: their own)\n  delivery-limit=N  at most N deliveries, then dead-lettered\n  ack-timeout=<ms>  an unacked delivery goes back after this long; TOUCH restarts it\n  max-priority=N    a priority queue: a higher PUB priority= goes first\n  dedup-window=<ms> a repeated id= within the window is not stored again; the reply says duplicate\n  retry-delays=<ms>,<ms>,...  requeue back-off by delivery count (the last repeats)\n  replicas=N        on a cluster node: a replicated queue, on N nodes\n  schema=<subject>  PUB \"\" <queue> (the default exchange only) must have a JSON body valid\n                    against the subject's latest version (else ERR SCHEMA)\nexample: DECLARE QUEUE jobs durable dead-letter=dlx delivery-limit=5\nDECLARE QUEUE <name> type=stream [max-age=<ms>] [max-bytes=N] [dead-letter=<ex>] [dead-letter-key=<key>] [delivery-limit=N] [ack-timeout=<ms>] [partitions=N] [replicas=N] [schema=<subject>]\n  -> OK <name> messages=<n> consumers=<n> [partitions=N]\n  an append-only log read by offset; acks do not remove; always durable\n  max-age=<ms>, max-bytes=N   retention: older segments are removed\n  dead-letter=, dead-letter-key=, delivery-limit=, ack-timeout=   per consumer group: a rejected or given-up offset is dead-lettered as a copy\n  partitions=N      N streams <name>-<i> behind a hash exchange <name>\n  replicas=N        on a cluster node: a replicated stream, on N nodes\n"),
    ("DELETE", "DELETE EXCHANGE <name> [if-unused]\n  -> OK\nDELETE QUEUE <name> [if-unused] [if-empty]\n  -> OK messages=<n>\n"),
    ("BIND", "BIND <queue> <exchange> [<key>] [h.<name>=<value>...] [match=all|any]\n  -> OK\n  on a hash exchange the key is the queue's weight: 1 to 1000 (default 1)\nexample: BIND errors logs \"*.error\"\n"),
    ("UNBIND", "UNBIND <queue> <exchange> [<key>] [h.<name>=<value>...]\n  -> OK\n"),
    ("PURGE", "PURGE <queue>\n  -> OK messages=<n>\n"),
    ("PUB", "PUB <exchange> <key> [persistent|transient] [mandatory] [id=<id>] [ttl=<ms>] [delay=<ms>] [priority=<n>] [group=<key>] [h.<name>=<value>...] <body>\n  -> OK <msg-id> routed=<n> [rejected=<k>] [duplicate] (after fsync when persistent)\n  mandatory     ERR NO_ROUTE instead of routed=0 when no queue takes it\n  id=<id>       the message id (default: generated); dedup-window queues drop a repeat\n  ttl=<ms>      expires after this long (the queue's ttl may be shorter)\n  delay=<ms>    stored at once, delivered no earlier than this\n  priority=<n>  0..255, for queues with max-priority\n  group=<key>   a message group, for queues declared with groups\n  the body is the last word: quote one with spaces, or send {N} and N bytes\nexample: PUB \"\" jobs \"hello world\"\n"),
    ("SUB", "SUB <queue> [prefetch=<n>] [prefetch-bytes=<n>] [ack=manual|auto] [tag=<ctag>] [exclusive]\n  -> OK <ctag>, then MSG <ctag> <dtag> <exchange> <key> [redelivered] deliveries=<n> id=<id> [h.*] {N}\nSUB <stream> [offset=first|last|next|<n> | time=<unix-ms>] [group=<name>] [prefetch=<n>] [ack=...]\n  reads from that point (default next); MSG ... offset=<n> [partition=<i>]\n  group=<name>  one position per group, stored; acks commit it in order; one member active\n"),
    ("SEEK", "SEEK <stream> <group> offset=first|last|next|<n> | time=<unix-ms>\n  -> OK offset=<n>[,<n>...] (one per partition)\n  moves the group's stored position: replay, or skip ahead\nexample: SEEK orders billing time=1764720000000\n"),
    ("UNSUB", "UNSUB <ctag>\n  -> OK\n"),
    ("GET", "GET <queue> [ack=manual|auto] [count=<n>] [wait=<ms>]\n  -> MSG - <dtag> ... for each message, then OK <n>\n"),
    ("ACK", "ACK <dtag> [multiple]\n  -> OK\n"),
    ("NACK", "NACK <dtag> [multiple] [requeue=true|false] [delay=<ms>]\n  -> OK (requeued messages keep their position)\n  requeue=false  dead-letter (or drop) instead\n  delay=<ms>     requeue, but hold back this long (not with requeue=false)\n"),
    ("REJECT", "REJECT <dtag>\n  -> OK (same as NACK <dtag> requeue=false)\n"),
    ("TX", "TX BEGIN\n  -> OK; from now ACK and PUB are checked and buffered: OK queued [<msg-id>]\nTX COMMIT\n  -> OK acked=<n> published=<m> routed=<r> [duplicate=<d>] (one atomic write, after fsync)\nTX ABORT\n  -> OK; nothing buffered happens (the deliveries stay outstanding)\n  after a crash a transaction happened whole or not at all; not on replicated queues\n"),
    ("TOUCH", "TOUCH <dtag>\n  -> OK (restarts the delivery's ack-timeout)\n"),
    ("PEEK", "PEEK <queue> [count=<n>] [from=<position>]\n  -> MSG * <position> ... for each waiting message, then OK <n>; nothing is taken\n  count=<n>         at most n (default 1, up to 1000)\n  from=<position>   start at this position\n"),
    ("USER", "USER ADD <name> <password> [admin] [configure=<re>] [write=<re>] [read=<re>]\nUSER PASSWD <name> <password>\nUSER PERMIT <name> [configure=<re>] [write=<re>] [read=<re>] [admin=true|false]\nUSER REMOVE <name>\n  -> OK\nUSER LIST\n  -> OK {N}: name, tags, configure, write, read\nadmins only; on a broker with no users the first must be added with admin\npermissions are regexes over names, unanchored (^orders\\. to anchor), default .*, \"\" grants nothing:\n  configure  DECLARE DELETE PURGE\n  write      PUB to an exchange; the queue of BIND/UNBIND\n  read       SUB GET PEEK REDRIVE on a queue; the exchange of BIND/UNBIND\n"),
    ("REDRIVE", "REDRIVE <queue> [count=<n>]\n  -> OK moved=<n> kept=<k>\n  moves dead letters back to the exchange and key they were first published to\n  count=<n>  at most n (default: all)\nexample: REDRIVE jobs.dead count=100\n"),
    ("STATS", "STATS [QUEUE <name>]\n  -> OK stats {N}: one `key value` line each (units in the key), groups apart\n  STATS              broker totals: connections, queues, messages, rates, memory, disk\n  STATS QUEUE <name> one queue: depth, unacked, consumers, counts, rates, oldest message age\n"),
    ("SCHEMA", "SCHEMA ADD <subject> [compat=none|backward|forward|full] [transitive] {N}<json-schema>\n  -> OK <subject> version=<n> (an identical schema: its existing version)\n  a new version that breaks the subject's rule: ERR PRECONDITION naming the break\n  compat=   backward (default): the new version reads old data; forward: old reads new; full: both\n  transitive  against every earlier version, not only the latest\nSCHEMA GET <subject> [version=<n>|latest]\n  -> OK <subject> version=<n> compat=<rule> [transitive] {N} and the schema\nSCHEMA LIST [<pattern>]  (the same as LIST SCHEMAS)\nSCHEMA DELETE <subject> [version=<n>]\n  -> OK (the whole subject: refused while an exchange or a queue has schema=<subject>)\nexample: DECLARE EXCHANGE orders topic schema=orders\n"),
    ("LIST", "LIST QUEUES|EXCHANGES|BINDINGS|CONNECTIONS|CONSUMERS|GROUPS|SCHEMAS [<pattern>]\n  -> OK <rows> {N}: a header row, then one row per line, columns apart by spaces\n  GROUPS: streams' consumer groups: committed offset, lag, in flight, members, active\n  pattern: * any run, ? one character; matched against the name\n    (bindings: exchange or queue; connections: peer or client name; consumers: queue or tag;\n     groups: stream or group)\nexample: LIST QUEUES jobs.*\n"),
];

/// `HELP [<verb>]` → `OK {N}` with the overview or one verb's grammar.
#[instrument(level = "debug", name = "HELP", skip_all)]
pub(super) fn help(c: Help) -> Result<Outcome, BrokerError> {
    let text = match c.verb {
        None => OVERVIEW,
        Some(v) => VERBS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&v))
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let hint = match verb_meant(v.as_bytes()) {
                    Some(meant) => format!(" (did you mean {meant}?)"),
                    None => String::new(),
                };
                BrokerError::NotFound(format!("no help for {}{hint}", quote_for_message(&v)))
            })?,
    };
    Ok(Outcome::reply(Reply::Data(
        String::new(),
        Bytes::from_static(text.as_bytes()),
    )))
}

#[cfg(test)]
mod tests {
    use super::VERBS;
    use crate::broker::exchange::hash::MAX_WEIGHT;

    /// The option and flag words of protocol.md's syntax block for
    /// `section` (`### PUB`): every lower-case word left of a `->`, once
    /// the `<placeholders>` are gone (`ttl=`, `persistent`, `drop-head`).
    fn documented_words(section: &str) -> Vec<String> {
        let doc = include_str!("../../protocol.md");
        let heading = format!("\n### {section}\n");
        let start = doc.find(&heading).map(|i| i + heading.len());
        let block = start.and_then(|i| {
            let open = doc[i..].find("```\n")? + i + 4;
            let close = doc[open..].find("```")? + open;
            Some(&doc[open..close])
        });
        let Some(block) = block else {
            panic!("protocol.md has no syntax block under {heading:?}")
        };
        let mut words = Vec::new();
        for line in block.lines() {
            let line = line.split("->").next().unwrap_or_default();
            let mut plain = String::new();
            let mut depth = 0;
            for c in line.chars() {
                match c {
                    '<' => depth += 1,
                    '>' => depth -= 1,
                    _ if depth > 0 => {}
                    c if c.is_ascii_lowercase() || c == '-' || c == '=' => plain.push(c),
                    _ => plain.push(' '),
                }
            }
            for w in plain.split(' ') {
                let w = w.trim_start_matches(['-', '=']);
                if w.len() > 1 && !words.iter().any(|k| k == w) {
                    words.push(w.to_string());
                }
            }
        }
        words
    }

    /// `HELP <verb>` names every option and flag protocol.md's syntax
    /// gives it.
    #[test]
    fn help_lists_every_documented_option() {
        for (verb, sections) in [
            ("PUB", &["PUB"][..]),
            ("DECLARE", &["DECLARE EXCHANGE", "DECLARE QUEUE"][..]),
            ("DELETE", &["DELETE EXCHANGE", "DELETE QUEUE"][..]),
            ("SUB", &["SUB"][..]),
            ("GET", &["GET"][..]),
            ("ACK", &["ACK"][..]),
            ("NACK", &["NACK"][..]),
            ("PEEK", &["PEEK"][..]),
            ("REDRIVE", &["REDRIVE"][..]),
            ("BIND", &["BIND"][..]),
            ("HELLO", &["HELLO"][..]),
            ("SEEK", &["SEEK"][..]),
        ] {
            let help = VERBS
                .iter()
                .find(|(v, _)| *v == verb)
                .map(|v| v.1)
                .unwrap_or_default();
            for section in sections {
                let words = documented_words(section);
                assert!(!words.is_empty(), "{section}");
                for w in words {
                    assert!(help.contains(&w), "HELP {verb} does not say {w:?}:\n{help}");
                }
            }
        }
    }

    #[test]
    fn bind_help_states_the_largest_hash_weight() {
        let bind = VERBS.iter().find(|(verb, _)| *verb == "BIND").map(|v| v.1);
        let bind = bind.unwrap_or_default();
        assert!(bind.contains(&format!("1 to {MAX_WEIGHT} ")), "{bind}");
    }
}
