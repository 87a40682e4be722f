//! The schema registry's place in the broker: `SCHEMA ADD` and `SCHEMA
//! DELETE` stored with the topology (under the topology lock, so that a
//! delete and a `DECLARE EXCHANGE ... schema=` cannot interleave), which
//! exchange checks which subject, and the check itself on `PUB`. The
//! registry's rules, versions and validators are [`crate::schema`]'s.
//!
//! A `PUB` to an exchange without `schema=` pays one `Option` check
//! (`route_named` hands the exchange over only when it has one).

use std::sync::atomic::Ordering;

use bytes::Bytes;

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
    /// an exchange checks against it).
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
                        "schema subject {} is in use by exchange {} ({} in all): \
                         delete those exchanges first",
                        quote_for_message(subject),
                        quote_for_message(first),
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

    /// The exchanges that check bodies against `subject`, by name.
    pub(crate) fn schema_users(&self, subject: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .inner
            .exchanges
            .iter()
            .filter(|e| e.schema.as_deref() == Some(subject))
            .map(|e| e.name.to_string())
            .collect();
        out.sort();
        out
    }

    /// `NOT_FOUND` unless `DECLARE EXCHANGE ... schema=<subject>` names a
    /// subject that exists.
    pub(super) fn check_schema_exists(&self, subject: Option<&str>) -> Result<(), BrokerError> {
        match subject {
            Some(s) if !self.inner.schemas.contains(s) => Err(BrokerError::NotFound(format!(
                "schema subject {} (SCHEMA ADD it first)",
                quote_for_message(s)
            ))),
            _ => Ok(()),
        }
    }

    /// The check on `PUB` to `ex` (which has a schema): the publish with
    /// the `schema` and `schema-version` headers set, or `ERR SCHEMA`
    /// (counted against the exchange).
    pub(super) fn check_body(&self, ex: &Exchange, p: &Publish) -> Result<Publish, BrokerError> {
        let subject = ex.schema.as_deref().unwrap_or_default();
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
                ex.schema_rejections.fetch_add(1, Ordering::Relaxed);
                Err(BrokerError::Schema(rejection.to_string()))
            }
        }
    }
}
