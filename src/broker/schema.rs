//! The schema registry's place in the broker: `SCHEMA ADD` and `SCHEMA
//! DELETE` stored with the topology (under the topology lock, so that a
//! delete and a `DECLARE ... schema=` cannot interleave), which exchange
//! or queue checks which subject, and the check itself on `PUB`. The
//! registry's rules, versions and validators are [`crate::schema`]'s.
//!
//! Who checks: an exchange declared with `schema=` checks every `PUB` to
//! it; a queue declared with `schema=` checks the `PUB`s to the default
//! exchange (`PUB "" <queue>`) only. A message reaching that queue through
//! another exchange is that exchange's business (its own `schema=`, or
//! none), as a RabbitMQ queue's arguments do not police the exchanges
//! bound to it; dead letters and redrives are not checked again.
//!
//! A `PUB` to an exchange (or queue) without `schema=` pays one `Option`
//! check (`route_named` hands a [`Checker`] over only when there is one).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::queue::Queue;
use super::{Broker, Exchange};
use crate::error::BrokerError;
use crate::protocol::command::{Publish, SchemaAdd};
use crate::protocol::reply::quote_for_message;
use crate::schema::{self, Registry};

/// The headers a checked message carries: the subject and the version it
/// was checked against. A client's own headers of these names are
/// replaced on an exchange with a schema.
pub(crate) const SUBJECT_HEADER: &str = "schema";
/// See [`SUBJECT_HEADER`].
pub(crate) const VERSION_HEADER: &str = "schema-version";

/// What checks a publish's body: the exchange it names, or, on the default
/// exchange, the queue its routing key names. Built only when that one has
/// a `schema=`.
#[derive(Debug, Clone)]
pub(crate) enum Checker {
    /// An exchange with `schema=`.
    Exchange(Arc<Exchange>),
    /// A queue with `schema=`, published to through the default exchange.
    Queue(Arc<Queue>),
}

impl Checker {
    /// The checker of a `PUB` to `ex`, when it has a schema.
    pub(super) fn of_exchange(ex: &Arc<Exchange>) -> Option<Checker> {
        ex.schema.is_some().then(|| Checker::Exchange(ex.clone()))
    }

    /// The checker of a `PUB "" <q>`, when `q` has a schema.
    pub(super) fn of_queue(q: &Arc<Queue>) -> Option<Checker> {
        q.args.schema.is_some().then(|| Checker::Queue(q.clone()))
    }

    /// The subject it checks against.
    fn subject(&self) -> &str {
        match self {
            Checker::Exchange(ex) => ex.schema.as_deref().unwrap_or_default(),
            Checker::Queue(q) => q.args.schema.as_deref().unwrap_or_default(),
        }
    }

    /// Where its rejections are counted (`sluice_schema_rejections_total`).
    fn rejections(&self) -> &AtomicU64 {
        match self {
            Checker::Exchange(ex) => &ex.schema_rejections,
            Checker::Queue(q) => &q.counters.schema_rejections,
        }
    }
}

/// Who uses a subject: an exchange or a queue, by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum User {
    /// An exchange declared with `schema=`.
    Exchange(String),
    /// A queue declared with `schema=`.
    Queue(String),
}

impl User {
    /// How `LIST SCHEMAS` shows it: an exchange by its name, a queue as
    /// `queue:<name>`.
    pub(crate) fn shown(&self) -> String {
        match self {
            User::Exchange(name) => name.clone(),
            User::Queue(name) => format!("queue:{name}"),
        }
    }

    /// How an error names it.
    fn described(&self) -> String {
        match self {
            User::Exchange(name) => format!("exchange {}", quote_for_message(name)),
            User::Queue(name) => format!("queue {}", quote_for_message(name)),
        }
    }
}

impl Broker {
    /// The schema registry.
    pub(crate) fn schemas(&self) -> &Registry {
        &self.inner.schemas
    }

    /// `SCHEMA ADD`: the version (new, or the existing identical one) and
    /// the generation to wait for when something was written.
    pub(crate) fn schema_add(&self, c: &SchemaAdd) -> Result<(u32, Option<u64>), BrokerError> {
        let _topology = self.inner.topology.lock();
        let added = self
            .inner
            .schemas
            .prepare_add(&c.subject, c.rule, &c.schema)?;
        let Some(subject) = added.changed else {
            return Ok((added.version, None));
        };
        let record = schema::encode(subject.record());
        let key = schema::subject_key(&c.subject);
        let gen = self
            .inner
            .disk
            .write(|s| s.topology.put_schema_record(&key, &record))?;
        self.inner.schemas.install(subject);
        tracing::info!(subject = %c.subject, version = added.version, "schema version added");
        Ok((added.version, Some(gen)))
    }

    /// `SCHEMA DELETE`: one version, or the whole subject (refused while
    /// an exchange or a queue checks against it).
    pub(crate) fn schema_delete(
        &self,
        subject: &str,
        version: Option<u32>,
    ) -> Result<Option<u64>, BrokerError> {
        let _topology = self.inner.topology.lock();
        let after = self.inner.schemas.prepare_delete(subject, version)?;
        let key = schema::subject_key(subject);
        let gen = match after {
            Some(kept) => {
                let record = schema::encode(kept.record());
                let gen = self
                    .inner
                    .disk
                    .write(|s| s.topology.put_schema_record(&key, &record))?;
                self.inner.schemas.install(kept);
                gen
            }
            None => {
                let users = self.schema_users(subject);
                if let Some(first) = users.first() {
                    return Err(BrokerError::Precondition(format!(
                        "schema subject {} is in use by {} ({} in all): \
                         delete those first",
                        quote_for_message(subject),
                        first.described(),
                        users.len()
                    )));
                }
                let gen = self
                    .inner
                    .disk
                    .write(|s| s.topology.delete_schema_record(&key))?;
                self.inner.schemas.remove(subject);
                gen
            }
        };
        tracing::info!(subject, ?version, "schema deleted");
        Ok(Some(gen))
    }

    /// The exchanges, then the queues, that check bodies against
    /// `subject`, each by name.
    pub(crate) fn schema_users(&self, subject: &str) -> Vec<User> {
        let mut out: Vec<User> = self
            .inner
            .exchanges
            .iter()
            .filter(|e| e.schema.as_deref() == Some(subject))
            .map(|e| User::Exchange(e.name.to_string()))
            .chain(
                self.inner
                    .queues
                    .iter()
                    .filter(|q| q.args.schema.as_deref() == Some(subject))
                    .map(|q| User::Queue(q.name.to_string())),
            )
            .collect();
        out.sort();
        out
    }

    /// `NOT_FOUND` unless `DECLARE EXCHANGE|QUEUE ... schema=<subject>`
    /// names a subject that exists.
    pub(super) fn check_schema_exists(&self, subject: Option<&str>) -> Result<(), BrokerError> {
        match subject {
            Some(s) if !self.inner.schemas.contains(s) => Err(BrokerError::NotFound(format!(
                "schema subject {} (SCHEMA ADD it first)",
                quote_for_message(s)
            ))),
            _ => Ok(()),
        }
    }

    /// The check on `PUB` by `by`: the publish with the `schema` and
    /// `schema-version` headers set, or `ERR SCHEMA` (counted against the
    /// exchange or queue).
    pub(super) fn check_body(&self, by: &Checker, p: &Publish) -> Result<Publish, BrokerError> {
        let subject = by.subject();
        match self.inner.schemas.validate(subject, &p.body) {
            Ok(version) => {
                let mut headers: Vec<_> = p
                    .headers
                    .iter()
                    .filter(|(n, _)| n != SUBJECT_HEADER && n != VERSION_HEADER)
                    .cloned()
                    .collect();
                headers.push((
                    SUBJECT_HEADER.to_string(),
                    Bytes::copy_from_slice(subject.as_bytes()),
                ));
                headers.push((VERSION_HEADER.to_string(), Bytes::from(version.to_string())));
                Ok(Publish {
                    headers,
                    ..p.clone()
                })
            }
            Err(rejection) => {
                by.rejections().fetch_add(1, Ordering::Relaxed);
                Err(BrokerError::Schema(rejection.to_string()))
            }
        }
    }
}
