//! The schema registry: subjects, their numbered JSON Schema versions and
//! compatibility rules, each version compiled once into a validator that
//! `PUB` checks bodies with. See protocol.md, "SCHEMA".
//!
//! This module owns the registry's state and rules (what a new version
//! may be, which version a body is checked against, how a record is
//! encoded), not its persistence nor which exchange or queue uses which
//! subject:
//! the broker (`broker/schema.rs`) writes what [`Registry::prepare_add`]
//! and [`Registry::prepare_delete`] return to the topology store, then
//! installs it, under its topology lock. The compatibility check is
//! [`compat`], pure.
//!
//! Validation is the `jsonschema` crate's (no validator of our own), built
//! without its remote and file `$ref` resolving: a schema refers only to
//! itself.

pub(crate) mod compat;

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::Value;

use crate::error::BrokerError;
use crate::protocol::command::Compat;

/// A subject as stored: its rule and every version kept, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SubjectRecord {
    /// The subject's name.
    pub(crate) subject: String,
    /// What a new version must keep.
    pub(crate) compat: Compat,
    /// Checked against every earlier version, not only the latest.
    pub(crate) transitive: bool,
    /// The number the next new version gets (numbers are never reused,
    /// even after a version is deleted).
    pub(crate) next_version: u32,
    /// The versions kept, oldest first.
    pub(crate) versions: Vec<VersionRecord>,
}

/// One version of a subject as stored: the schema text as it was given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct VersionRecord {
    /// Its number (1, 2, ...).
    pub(crate) version: u32,
    /// The JSON Schema, as the client sent it.
    pub(crate) schema: String,
}

/// A subject in memory: its record and each version parsed and compiled.
#[derive(Debug)]
pub(crate) struct Subject {
    record: SubjectRecord,
    /// Parallel to `record.versions`.
    parsed: Vec<Arc<Compiled>>,
}

/// One version parsed and compiled.
#[derive(Debug)]
struct Compiled {
    value: Value,
    validator: jsonschema::Validator,
}

impl Compiled {
    /// Parses and compiles `text`: `SYNTAX` when it is not JSON or not a
    /// JSON Schema (or refers to a schema elsewhere, which is not fetched).
    fn new(text: &str) -> Result<Compiled, BrokerError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| BrokerError::Syntax(format!("the schema is not valid JSON: {e}")))?;
        let validator = jsonschema::validator_for(&value)
            .map_err(|e| BrokerError::Syntax(format!("not a usable JSON Schema: {e}")))?;
        Ok(Compiled { value, validator })
    }
}

impl Subject {
    /// Builds a subject from its record, compiling every version.
    fn from_record(record: SubjectRecord) -> Result<Subject, BrokerError> {
        let parsed = record
            .versions
            .iter()
            .map(|v| Compiled::new(&v.schema).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Subject { record, parsed })
    }

    /// The record, as the store keeps it.
    pub(crate) fn record(&self) -> &SubjectRecord {
        &self.record
    }
}

/// What `SCHEMA ADD` came to, before it is stored.
#[derive(Debug)]
pub(crate) struct Added {
    /// The version number: the new one, or the existing identical one.
    pub(crate) version: u32,
    /// The subject to store and install; `None` when nothing changed (the
    /// same schema and rule again).
    pub(crate) changed: Option<Arc<Subject>>,
}

/// A row of `SCHEMA LIST` / `LIST SCHEMAS`.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    /// The subject.
    pub(crate) subject: String,
    /// Its latest version's number (0 when none is left).
    pub(crate) latest: u32,
    /// The version numbers kept, oldest first.
    pub(crate) versions: Vec<u32>,
    /// Its rule.
    pub(crate) compat: Compat,
    /// Transitive.
    pub(crate) transitive: bool,
}

/// What a `SCHEMA GET` shows.
#[derive(Debug, Clone)]
pub(crate) struct Shown {
    /// The version.
    pub(crate) version: u32,
    /// The subject's rule.
    pub(crate) compat: Compat,
    /// Transitive.
    pub(crate) transitive: bool,
    /// The schema text.
    pub(crate) schema: String,
}

/// Why a body was refused: the JSON pointer of the first error (`""` for
/// the whole body) and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// JSON pointer into the body.
    pub(crate) pointer: String,
    /// What is wrong there.
    pub(crate) reason: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pointer.is_empty() {
            true => write!(f, "\"\": {}", self.reason),
            false => write!(f, "{}: {}", self.pointer, self.reason),
        }
    }
}

/// The schema registry (see the module doc). Readers (every `PUB` to an
/// exchange with a schema) take its read lock briefly; changes are rare.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    subjects: RwLock<BTreeMap<String, Arc<Subject>>>,
}

fn no_subject(subject: &str) -> BrokerError {
    BrokerError::NotFound(format!(
        "schema subject {}",
        crate::protocol::reply::quote_for_message(subject)
    ))
}

impl Registry {
    /// A registry holding `records` (read back at start). A record that
    /// no longer compiles is skipped with a warning rather than stopping
    /// the broker.
    pub(crate) fn load(records: Vec<SubjectRecord>) -> Registry {
        let mut subjects = BTreeMap::new();
        for r in records {
            let name = r.subject.clone();
            match Subject::from_record(r) {
                Ok(s) => {
                    subjects.insert(name, Arc::new(s));
                }
                Err(e) => tracing::warn!(subject = %name, error = %e, "schema subject skipped"),
            }
        }
        Registry {
            subjects: RwLock::new(subjects),
        }
    }

    /// Whether `subject` exists.
    pub(crate) fn contains(&self, subject: &str) -> bool {
        self.subjects.read().contains_key(subject)
    }

    /// `SCHEMA ADD`: checks `text` (JSON, a JSON Schema, compatible under
    /// the subject's rule, or under `rule` when given, which becomes the
    /// subject's) and returns what to store. An identical schema already
    /// kept returns its version, as Confluent's registry does.
    pub(crate) fn prepare_add(
        &self,
        subject: &str,
        rule: Option<(Compat, bool)>,
        text: &str,
    ) -> Result<Added, BrokerError> {
        let compiled = Compiled::new(text)?;
        let current = self.subjects.read().get(subject).cloned();
        let mut record = match &current {
            Some(s) => s.record.clone(),
            None => SubjectRecord {
                subject: subject.to_string(),
                compat: Compat::default(),
                transitive: false,
                next_version: 1,
                versions: Vec::new(),
            },
        };
        let rule_changed = rule.is_some_and(|r| r != (record.compat, record.transitive));
        if let Some((compat, transitive)) = rule {
            record.compat = compat;
            record.transitive = transitive;
        }
        let mut parsed = current
            .as_ref()
            .map(|s| s.parsed.clone())
            .unwrap_or_default();
        if let Some(i) = parsed.iter().position(|c| c.value == compiled.value) {
            let version = record.versions[i].version;
            let changed =
                (current.is_none() || rule_changed).then(|| Arc::new(Subject { record, parsed }));
            return Ok(Added { version, changed });
        }
        let older: Vec<(u32, &Value)> = record
            .versions
            .iter()
            .zip(&parsed)
            .map(|(v, c)| (v.version, &c.value))
            .collect();
        compat::check(record.compat, record.transitive, &compiled.value, &older)
            .map_err(BrokerError::Precondition)?;
        let version = record.next_version;
        record.next_version = version.saturating_add(1);
        record.versions.push(VersionRecord {
            version,
            schema: text.to_string(),
        });
        parsed.push(Arc::new(compiled));
        Ok(Added {
            version,
            changed: Some(Arc::new(Subject { record, parsed })),
        })
    }

    /// Puts a subject returned by [`Registry::prepare_add`] or
    /// [`Registry::prepare_delete`] in place.
    pub(crate) fn install(&self, subject: Arc<Subject>) {
        self.subjects
            .write()
            .insert(subject.record.subject.clone(), subject);
    }

    /// `SCHEMA DELETE`: the subject without `version` (`Some`), or `None`
    /// when the whole subject goes (no version given, or its last one).
    pub(crate) fn prepare_delete(
        &self,
        subject: &str,
        version: Option<u32>,
    ) -> Result<Option<Arc<Subject>>, BrokerError> {
        let s = self
            .subjects
            .read()
            .get(subject)
            .cloned()
            .ok_or_else(|| no_subject(subject))?;
        let Some(version) = version else {
            return Ok(None);
        };
        let i = s
            .record
            .versions
            .iter()
            .position(|v| v.version == version)
            .ok_or_else(|| {
                BrokerError::NotFound(format!("version {version} of schema subject {subject}"))
            })?;
        if s.record.versions.len() == 1 {
            return Ok(None);
        }
        let mut record = s.record.clone();
        let mut parsed = s.parsed.clone();
        record.versions.remove(i);
        parsed.remove(i);
        Ok(Some(Arc::new(Subject { record, parsed })))
    }

    /// Removes a whole subject.
    pub(crate) fn remove(&self, subject: &str) {
        self.subjects.write().remove(subject);
    }

    /// `SCHEMA GET`: one version (the latest when `version` is `None`).
    pub(crate) fn get(&self, subject: &str, version: Option<u32>) -> Result<Shown, BrokerError> {
        let subjects = self.subjects.read();
        let s = subjects.get(subject).ok_or_else(|| no_subject(subject))?;
        let v = match version {
            None => s.record.versions.last(),
            Some(n) => s.record.versions.iter().find(|v| v.version == n),
        }
        .ok_or_else(|| {
            BrokerError::NotFound(format!(
                "version {} of schema subject {subject}",
                version.unwrap_or(0)
            ))
        })?;
        Ok(Shown {
            version: v.version,
            compat: s.record.compat,
            transitive: s.record.transitive,
            schema: v.schema.clone(),
        })
    }

    /// Every subject, by name.
    pub(crate) fn list(&self) -> Vec<Summary> {
        self.subjects
            .read()
            .values()
            .map(|s| Summary {
                subject: s.record.subject.clone(),
                latest: s.record.versions.last().map_or(0, |v| v.version),
                versions: s.record.versions.iter().map(|v| v.version).collect(),
                compat: s.record.compat,
                transitive: s.record.transitive,
            })
            .collect()
    }

    /// Checks `body` against the latest version of `subject`: that
    /// version's number, or why the body is refused.
    pub(crate) fn validate(&self, subject: &str, body: &[u8]) -> Result<u32, Rejection> {
        let (version, compiled) = {
            let subjects = self.subjects.read();
            let latest = subjects
                .get(subject)
                .and_then(|s| Some((s.record.versions.last()?.version, s.parsed.last()?.clone())));
            match latest {
                Some(l) => l,
                None => {
                    return Err(Rejection {
                        pointer: String::new(),
                        reason: format!("schema subject {subject} has no version"),
                    })
                }
            }
        };
        let value: Value = serde_json::from_slice(body).map_err(|e| Rejection {
            pointer: String::new(),
            reason: format!("the body is not valid JSON ({e})"),
        })?;
        match compiled.validator.validate(&value) {
            Ok(()) => Ok(version),
            Err(e) => Err(Rejection {
                pointer: e.instance_path().as_str().to_string(),
                reason: shortened(e.to_string()),
            }),
        }
    }
}

/// At most this many bytes of a rejection's reason: it quotes the value
/// that failed, which may be most of a large body.
const MAX_REASON_BYTES: usize = 300;

/// `reason` cut to [`MAX_REASON_BYTES`] (on a character boundary), with
/// `...` where it was cut.
fn shortened(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str("...");
    }
    reason
}

/// The key of a subject's record among the store's schema records.
pub(crate) fn subject_key(subject: &str) -> Vec<u8> {
    [b"s:".as_slice(), subject.as_bytes()].concat()
}

/// The key of an exchange's `schema=` among the store's schema records
/// (its value: the subject's name).
pub(crate) fn exchange_key(exchange: &str) -> Vec<u8> {
    [b"e:".as_slice(), exchange.as_bytes()].concat()
}

/// The key of a queue's `schema=` among the store's schema records (its
/// value: the subject's name).
pub(crate) fn queue_key(queue: &str) -> Vec<u8> {
    [b"q:".as_slice(), queue.as_bytes()].concat()
}

/// A subject's record as stored (JSON: the store's checksums guard it).
pub(crate) fn encode(record: &SubjectRecord) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

/// What the store's schema records hold, read back at start.
#[derive(Debug, Default)]
pub(crate) struct Stored {
    /// The subjects.
    pub(crate) subjects: Vec<SubjectRecord>,
    /// Exchange name → subject (`DECLARE EXCHANGE ... schema=`).
    pub(crate) exchanges: BTreeMap<String, String>,
    /// Queue name → subject (`DECLARE QUEUE ... schema=`).
    pub(crate) queues: BTreeMap<String, String>,
}

impl Stored {
    /// Sorts raw `(key, value)` records; a record that does not decode is
    /// corruption.
    pub(crate) fn read(
        records: Vec<crate::store::SchemaRecord>,
    ) -> Result<Stored, crate::store::StoreError> {
        let corrupt =
            |what: &str| crate::store::StoreError::Corrupt(format!("schema record: {what}"));
        let mut out = Stored::default();
        for (k, v) in records {
            match k.split_at_checked(2) {
                Some((b"s:", _)) => out
                    .subjects
                    .push(serde_json::from_slice(&v).map_err(|e| corrupt(&e.to_string()))?),
                Some((prefix @ (b"e:" | b"q:"), name)) => {
                    let name = String::from_utf8(name.to_vec()).map_err(|_| corrupt("name"))?;
                    let subject = String::from_utf8(v).map_err(|_| corrupt("subject name"))?;
                    match prefix {
                        b"e:" => out.exchanges.insert(name, subject),
                        _ => out.queues.insert(name, subject),
                    };
                }
                _ => return Err(corrupt("unknown key")),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"object","properties":{"id":{"type":"string"},"total":{"type":"number"}},"required":["id"]}"#;
    const V2_BREAKS: &str = r#"{"type":"object","properties":{"id":{"type":"string"},"total":{"type":"number"}},"required":["id","total"]}"#;

    fn added(r: &Registry, subject: &str, rule: Option<(Compat, bool)>, text: &str) -> u32 {
        let a = r.prepare_add(subject, rule, text).unwrap();
        if let Some(s) = a.changed {
            r.install(s);
        }
        a.version
    }

    #[test]
    fn identical_schema_returns_its_version_and_a_break_is_refused() {
        let r = Registry::default();
        assert_eq!(added(&r, "orders", None, V1), 1);
        // Same JSON, other spacing: the same version, nothing to store.
        let spaced = V1.replace(',', ", ");
        let again = r.prepare_add("orders", None, &spaced).unwrap();
        assert_eq!(again.version, 1);
        assert!(again.changed.is_none());
        let e = r.prepare_add("orders", None, V2_BREAKS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "not backward compatible with version 1: field `total` became required"
        );
        assert_eq!(
            added(&r, "orders", Some((Compat::None, false)), V2_BREAKS),
            2
        );
    }

    #[test]
    fn bodies_are_checked_against_the_latest_version() {
        let r = Registry::default();
        added(&r, "orders", None, V1);
        assert_eq!(r.validate("orders", br#"{"id":"a"}"#), Ok(1));
        let e = r.validate("orders", br#"{"id":7}"#).unwrap_err();
        assert_eq!(e.pointer, "/id");
        let e = r.validate("orders", b"{nope").unwrap_err();
        assert_eq!(e.pointer, "");
        assert!(e.reason.starts_with("the body is not valid JSON"), "{e}");
    }

    #[test]
    fn a_long_reason_is_cut() {
        let r = Registry::default();
        added(&r, "arr", None, r#"{"type":"array"}"#);
        let big = format!("{{\"k\":\"{}\"}}", "é".repeat(1000));
        let e = r.validate("arr", big.as_bytes()).unwrap_err();
        assert!(e.reason.len() <= MAX_REASON_BYTES + 3, "{}", e.reason.len());
        assert!(e.reason.ends_with("..."));
    }

    #[test]
    fn not_json_or_not_a_schema_is_a_syntax_error() {
        let r = Registry::default();
        let e = r.prepare_add("x", None, "{").unwrap_err();
        assert!(e.to_string().starts_with("the schema is not valid JSON"));
        let e = r.prepare_add("x", None, r#"{"type": 5}"#).unwrap_err();
        assert!(e.to_string().starts_with("not a usable JSON Schema"), "{e}");
    }

    #[test]
    fn deleted_version_numbers_are_not_reused() {
        let r = Registry::default();
        added(&r, "s", Some((Compat::None, false)), V1);
        added(&r, "s", None, V2_BREAKS);
        let s = r.prepare_delete("s", Some(2)).unwrap().unwrap();
        r.install(s);
        assert_eq!(added(&r, "s", None, r#"{"type":"object"}"#), 3);
        assert!(r.prepare_delete("s", Some(2)).is_err());
        assert!(r.prepare_delete("s", None).unwrap().is_none());
    }

    #[test]
    fn records_round_trip_through_the_store_encoding() {
        let r = Registry::default();
        added(&r, "orders", Some((Compat::Full, true)), V1);
        let rec = r.subjects.read()["orders"].record().clone();
        let stored = Stored::read(vec![
            (subject_key("orders"), encode(&rec)),
            (exchange_key("shop"), b"orders".to_vec()),
            (queue_key("shop"), b"audit".to_vec()),
        ])
        .unwrap();
        assert_eq!(stored.subjects, vec![rec]);
        assert_eq!(stored.exchanges["shop"], "orders");
        assert_eq!(stored.queues["shop"], "audit");
        assert!(Stored::read(vec![(b"x:shop".to_vec(), Vec::new())]).is_err());
    }
}
