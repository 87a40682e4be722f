//! Topology, user and schema registry changes on a cluster node. There they are not run
//! where they arrive: [`propose`] checks what it can here (permissions,
//! what a cluster refuses, `if-unused`/`if-empty`), then hands the change
//! to the cluster's metadata group as a [`MetaOp`] and answers once the
//! group has committed it and this node has applied it ([`send`]). Every
//! node applies each committed change to its own broker, in log order,
//! with [`apply_meta`]: the same broker calls the single-node handlers
//! make, as the group (an admin, on no connection). See protocol.md,
//! "Clusters".
//!
//! What stays on the node, as on a single broker: exclusive and
//! server-named queues (a connection's own), and the bindings and deletes
//! of such a queue. What a cluster refuses for now: `auto-delete` (an
//! exchange or queue that one node's consumers would delete for all) and
//! `expires=` (a timer of each node's own).
//!
//! The commands that touch replicated queues' logs share two waits here:
//! [`append`] (copies a `PUB` or `REDRIVE` sends to replicated queues) and
//! [`once_settled`] (an `ACK` or `PURGE` whose settlements must commit).

use std::sync::Arc;

use super::outcome::{Completion, Outcome, Pending};
use super::{bind, declare, delete, schema, user};
use crate::auth::{Kind, Perm};
use crate::broker::{Broker, Consensus, MetaAnswer, MetaOp, ReplicaMessage};
use crate::error::BrokerError;
use crate::protocol::command::{
    DeclareExchange, DeclareQueue, DeleteQueue, SchemaCommand, UserCommand,
};
use crate::protocol::parse::decode_one;
use crate::protocol::reply::Reply;
use crate::protocol::Command;
use crate::session_state::SessionState;

/// The connection id changes applied from the metadata group run as: no
/// connection's (so no exclusive queue is theirs).
const GROUP_CONN: u64 = u64::MAX;

/// On a cluster node: when `command` changes the replicated topology,
/// checks it and proposes it to the metadata group (`Some`, the outcome).
/// `None`: the command runs here, as on a single node.
pub(super) fn propose(
    command: &Command,
    consensus: Arc<dyn Consensus>,
    s: &mut SessionState,
) -> Result<Option<Outcome>, BrokerError> {
    let login = s.login();
    let proposed = match command {
        Command::DeclareExchange(c) => {
            login.check("DECLARE", Perm::Configure, Kind::Exchange, &c.name)?;
            refuse("auto-delete", c.auto_delete)?;
            Command::DeclareExchange(DeclareExchange {
                durable: true,
                ..c.clone()
            })
        }
        Command::DeclareQueue(c) => {
            let replicated = c.replicas.is_some_and(|r| r > 1);
            if replicated {
                replicable(c)?;
            } else if c.exclusive || c.name.is_empty() {
                return Ok(None);
            }
            login.check("DECLARE", Perm::Configure, Kind::Queue, &c.name)?;
            refuse("auto-delete", c.auto_delete)?;
            refuse("expires=", c.args.expires_ms.is_some())?;
            let declare = Command::DeclareQueue(DeclareQueue {
                durable: true,
                ..c.clone()
            });
            if replicated {
                // Answered once its group has a leader, so that a `SUB`
                // right after it finds one.
                let op = MetaOp::Command(frame(&declare)?);
                let led = Some(c.name.clone());
                return Ok(Some(send(consensus, op, led, |_| {})));
            }
            declare
        }
        Command::DeleteExchange(c) => {
            login.check("DELETE", Perm::Configure, Kind::Exchange, &c.name)?;
            command.clone()
        }
        Command::DeleteQueue(c) => {
            if is_local(s, &c.name) {
                return Ok(None);
            }
            login.check("DELETE", Perm::Configure, Kind::Queue, &c.name)?;
            // The conditions hold for the queue as this node sees it; the
            // group deletes it unconditionally, so that every node does.
            s.broker().check_delete_queue(c, s.conn_id())?;
            let name = c.name.clone();
            let delete = Command::DeleteQueue(DeleteQueue {
                if_unused: false,
                if_empty: false,
                ..c.clone()
            });
            let op = MetaOp::Command(frame(&delete)?);
            return Ok(Some(send(consensus, op, None, move |s| {
                s.forget_queue(&name)
            })));
        }
        Command::Bind(c) | Command::Unbind(c) => {
            if is_local(s, &c.queue) {
                return Ok(None);
            }
            let verb = match command {
                Command::Bind(_) => "BIND",
                _ => "UNBIND",
            };
            bind::may_bind(verb, c, s)?;
            command.clone()
        }
        Command::User(c @ (UserCommand::Permit(_) | UserCommand::Remove(_))) => {
            login.require_admin(user::verb(c))?;
            if let UserCommand::Permit(p) = c {
                user::change(p)?;
            }
            command.clone()
        }
        Command::Schema(c @ (SchemaCommand::Add(_) | SchemaCommand::Delete { .. })) => {
            login.require_admin(schema::verb(c))?;
            command.clone()
        }
        // `USER ADD` and `PASSWD` go to the group from `user.rs`, once
        // the password is hashed.
        _ => return Ok(None),
    };
    Ok(Some(send(
        consensus,
        MetaOp::Command(frame(&proposed)?),
        None,
        |_| {},
    )))
}

/// `PRECONDITION` unless a replicated queue can be what `c` declares: a
/// named, shared queue or stream (not a partitioned one), with no option
/// whose work a node would do on its own (a publish held for a full
/// queue: the node that routes it would hold it for another node's
/// queue);
/// `single-active`, `groups` (a copy carries its group), `ack-timeout=`,
/// `retry-delays=`, `max-priority=`, `ttl=`, `dead-letter=` and
/// `max-length=`/`max-bytes=` with `drop-head` are the leader's (a copy
/// carries its priority and TTL; what dies, expired, rejected or dropped
/// off the head, is settled in the log and dead-lettered by the leader),
/// and `dedup-window=` and `overflow=reject-publish` the log's (each
/// member's state machine drops a copy whose id it has within the
/// window, counted from each publish's time, or that would take it over
/// its limits, counting every copy not yet settled), and so they are
/// allowed. A stream's `delivery-limit=`, `dead-letter=` and
/// `ack-timeout=` are its leader's too: its log counts its groups'
/// failed deliveries (see `cluster/stream_replica.rs`).
fn replicable(c: &DeclareQueue) -> Result<(), BrokerError> {
    let a = &c.args;
    let refused = [
        ("a server-named queue", c.name.is_empty()),
        ("exclusive", c.exclusive),
        (
            "overflow=block",
            a.overflow == crate::protocol::command::Overflow::Block,
        ),
        ("partitions=", c.partitions.is_some()),
    ];
    match refused.iter().find(|(_, asked)| *asked) {
        Some((what, _)) => Err(BrokerError::Precondition(format!(
            "{what} is not supported on a replicated queue (replicas=) yet"
        ))),
        None => Ok(()),
    }
}

/// The outcome of a command that settled copies of the replicated queues
/// `queues` (recorded in their logs): `reply`, once those records are
/// committed (the connection reads on meanwhile) and store generation
/// `gen` is durable; with `conn`, once that connection's stream acks
/// relayed to other nodes' leaders are committed too.
pub(super) fn once_settled(
    c: Arc<dyn Consensus>,
    queues: Vec<String>,
    conn: Option<u64>,
    reply: Reply,
    gen: Option<u64>,
) -> Outcome {
    Outcome::Later(Pending::new(async move {
        let mut committed = match conn {
            Some(conn) => c.relayed_barrier(conn).await.map(|_| ()),
            None => Ok(()),
        };
        for q in queues {
            if let Err(e) = c.settled_barrier(&q).await {
                committed = Err(e);
            }
        }
        Box::new(move |_: &mut SessionState| {
            committed?;
            Ok(Outcome::Reply(reply, gen))
        }) as Completion
    }))
}

/// What replicated queues made of the copies [`append`]ed to them.
#[derive(Debug, Default)]
pub(super) struct Kept {
    /// A `dedup-window=` queue had its id.
    pub(super) duplicate: bool,
    /// The full `reject-publish` queues that refused it.
    pub(super) rejected: Vec<Arc<str>>,
}

/// Appends `copies` to their replicated queues' logs (a publish's, a
/// redrive's); `Ok` once every one is committed, with what the queues made
/// of them.
pub(super) fn append(
    broker: &Broker,
    copies: Vec<(Arc<str>, ReplicaMessage)>,
) -> impl std::future::Future<Output = Result<Kept, BrokerError>> + Send + 'static {
    // Handed to the queues' logs now, in order (a connection's pipelined
    // `PUB`s keep their order there); only the answers are waited for.
    let pending: Result<Vec<_>, BrokerError> = match broker.consensus() {
        Some(c) => Ok(copies
            .into_iter()
            .map(|(q, m)| (q.clone(), c.enqueue(q, m)))
            .collect()),
        None => Err(BrokerError::Internal("not a cluster node".into())),
    };
    async move {
        let mut kept = Kept::default();
        for (q, p) in pending? {
            for word in p.await? {
                match word.as_str() {
                    "duplicate" => kept.duplicate = true,
                    "rejected" => kept.rejected.push(q.clone()),
                    _ => {}
                }
            }
        }
        Ok(kept)
    }
}

/// `PRECONDITION` when a cluster node is asked for `option`.
fn refuse(option: &str, asked: bool) -> Result<(), BrokerError> {
    match asked {
        true => Err(BrokerError::Precondition(format!(
            "{option} is not supported in a cluster yet"
        ))),
        false => Ok(()),
    }
}

/// Whether `queue` is an exclusive queue on this node (a connection's
/// own, which only this node has).
fn is_local(s: &SessionState, queue: &str) -> bool {
    s.broker()
        .find_queue(queue)
        .is_some_and(|q| q.owner.is_some())
}

/// The wire frame of `command`, as the metadata group's log carries it.
fn frame(command: &Command) -> Result<String, BrokerError> {
    String::from_utf8(command.encode())
        .map_err(|_| BrokerError::Syntax("a topology command must be text".into()))
}

/// Proposes `op` and answers with what the group made of it, running
/// `then` on the connection first when it went through; with `led` (a
/// replicated queue's declaration), once that queue's group has a leader
/// too. The connection
/// reads no further commands meanwhile, so what it sends next sees the
/// change.
fn send(
    consensus: Arc<dyn Consensus>,
    op: MetaOp,
    led: Option<String>,
    then: impl FnOnce(&mut SessionState) + Send + 'static,
) -> Outcome {
    Outcome::Pending(Pending::new(async move {
        let answer = consensus.propose(op).await;
        if let (Ok(_), Some(queue)) = (&answer, led) {
            let _ = consensus.led(&queue).await;
        }
        Box::new(move |s: &mut SessionState| {
            let words = answer?;
            then(s);
            Ok(Outcome::reply(Reply::words(words)))
        }) as Completion
    }))
}

/// Applies one committed change to `broker` (on every node, in log
/// order): what it came to, and the generation to wait for before the
/// group records it applied.
pub(crate) fn apply_meta(broker: &Broker, op: &MetaOp) -> (MetaAnswer, Option<u64>) {
    let users = broker.users();
    let ran = match op {
        MetaOp::Command(frame) => run(broker, frame),
        MetaOp::UserAdd {
            name,
            hash,
            admin,
            configure,
            write,
            read,
        } => {
            let given = crate::protocol::command::PermissionArgs {
                configure: configure.clone(),
                write: write.clone(),
                read: read.clone(),
            };
            user::permissions(&given)
                .and_then(|perms| user::apply_add(users, name.clone(), hash.clone(), *admin, perms))
                .map(|gen| (Vec::new(), gen))
        }
        MetaOp::UserPasswd { name, hash } => {
            user::apply_passwd(users, name, hash.clone()).map(|gen| (Vec::new(), gen))
        }
        // The metadata group's state machine records it (`cluster/meta.rs`).
        MetaOp::TxOutcome { .. } => Err(BrokerError::Internal(
            "a transaction's outcome is no broker change".into(),
        )),
    };
    match ran {
        Ok((words, gen)) => (MetaAnswer::Ok(words), gen),
        Err(e) => {
            tracing::debug!(error = %e, "a replicated change was refused");
            (MetaAnswer::of(Err(e)), None)
        }
    }
}

/// Runs the command in `frame` as the group.
fn run(broker: &Broker, frame: &str) -> Result<(Vec<String>, Option<u64>), BrokerError> {
    let command = decode_one(frame.as_bytes()).map_err(|e| {
        BrokerError::Syntax(format!("a replicated change that does not parse: {e}"))
    })?;
    let anyone = |_: &str| Ok(());
    let users = broker.users();
    let none = |gen| (Vec::new(), gen);
    match command {
        Command::DeclareExchange(c) => broker.declare_exchange(&c).map(none),
        Command::DeclareQueue(c) => {
            declare::run_queue(broker, &c, GROUP_CONN, &anyone).map(|d| (d.words, d.gen))
        }
        Command::DeleteExchange(c) => broker.delete_exchange(&c.name, c.if_unused).map(none),
        Command::DeleteQueue(c) => delete::run_queue(broker, &c, GROUP_CONN),
        Command::Bind(c) => broker.bind(&c, GROUP_CONN).map(none),
        Command::Unbind(c) => broker.unbind(&c, GROUP_CONN).map(none),
        Command::User(UserCommand::Permit(p)) => user::apply_permit(users, &p).map(none),
        Command::User(UserCommand::Remove(name)) => user::apply_remove(users, &name).map(none),
        Command::Schema(c @ (SchemaCommand::Add(_) | SchemaCommand::Delete { .. })) => {
            schema::apply(broker, &c)
        }
        other => Err(BrokerError::Syntax(format!(
            "not a replicated change: {:?}",
            other
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::replicable;
    use crate::error::BrokerError;
    use crate::protocol::parse::parse_line;
    use crate::protocol::Command;

    fn check(line: &str) -> Result<(), BrokerError> {
        match parse_line(line.as_bytes(), None) {
            Ok(Command::DeclareQueue(d)) => replicable(&d),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn a_replicated_stream_takes_the_per_group_options_but_not_partitions() {
        assert!(check("DECLARE QUEUE s type=stream replicas=3 max-age=5").is_ok());
        assert!(check("DECLARE QUEUE q replicas=3 dead-letter=dlx delivery-limit=2").is_ok());
        for opt in [
            "dead-letter=dlx",
            "dead-letter-key=k",
            "delivery-limit=2",
            "ack-timeout=100",
        ] {
            let line = format!("DECLARE QUEUE s type=stream replicas=3 {opt}");
            assert!(check(&line).is_ok(), "{line}");
        }
        match check("DECLARE QUEUE s type=stream replicas=3 partitions=2") {
            Err(BrokerError::Precondition(m)) => assert!(m.contains("partitions="), "{m}"),
            other => panic!("partitions=: {other:?}"),
        }
    }
}
