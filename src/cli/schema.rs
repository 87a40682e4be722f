//! `sluice schema add|get|list|delete`: the schema registry from the
//! command line, one wire command each (`SCHEMA ADD`, `SCHEMA GET`,
//! `LIST SCHEMAS`, `SCHEMA DELETE`; see protocol.md, "SCHEMA"), with the
//! wire's argument names: `<subject>`, `--compat`, `--transitive`,
//! `--version`. `sluice ls schemas` is `list` by another name.

use serde_json::{Map, Value};

use crate::protocol::command::{Compat, List, ListKind as WireKind, SchemaAdd, SchemaCommand};
use crate::protocol::Command;

use super::connect::CommonArgs;
use super::exit::{CliError, Exit, EXIT_CODES_HELP};
use super::inspect::{self, request, ListKind};
use super::output::{scalar, Out};

/// `sluice schema ...`.
#[derive(clap::Subcommand, Debug)]
pub enum SchemaCommandArgs {
    /// Add a version to a subject (creating the subject).
    Add(AddArgs),
    /// Print a version of a subject (`SCHEMA GET`)
    ///
    /// Prints the schema exactly as it was added (the latest version, or
    /// --version N), so that `sluice schema get orders > orders.json` gives
    /// the file back. --json prints one object: subject, version, compat,
    /// transitive and schema (the schema as a JSON value).
    ///
    /// Examples:
    ///   sluice schema get orders
    ///   sluice schema get orders --version 1 --json
    #[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
    Get(VersionArgs),
    /// List the subjects, their versions, rules and users.
    List(ListArgs),
    /// Delete a subject, or one version of it (`SCHEMA DELETE`)
    ///
    /// Without --version the whole subject goes, which the broker refuses
    /// (exit 1, `PRECONDITION`) while an exchange or a queue is declared
    /// with schema= it. Deleting the last version deletes the subject.
    /// Version numbers are never reused. Needs the admin tag on a broker
    /// with users. Prints nothing on success.
    ///
    /// Examples:
    ///   sluice schema delete orders --version 1
    ///   sluice schema delete orders
    #[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
    Delete(VersionArgs),
}

/// Add a JSON Schema version to a subject (`SCHEMA ADD`).
///
/// Reads the schema from FILE, or from stdin with `-`. Prints
/// `<subject> version=<n>`: the new version's number, or that of the
/// version equal to it (then nothing changes). --compat (with
/// --transitive) sets the subject's rule for this and later versions; a
/// version that breaks the rule is refused (exit 1, `PRECONDITION`).
/// Needs the admin tag on a broker with users.
///
/// Examples:
///   sluice schema add orders orders-v1.json
///   sluice schema add audit - --compat full --transitive < audit.json
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
pub struct AddArgs {
    /// The subject.
    subject: String,
    /// The file holding the schema, or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    file: String,
    /// The subject's compatibility rule (default: the subject's, backward
    /// for a new one).
    #[arg(long, value_enum)]
    compat: Option<CompatArg>,
    /// Check against every earlier version, not only the latest.
    #[arg(long, requires = "compat")]
    transitive: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// `--compat`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum CompatArg {
    /// Any new version is accepted.
    None,
    /// The new version reads what the previous one accepted.
    Backward,
    /// The previous version reads what the new one accepts.
    Forward,
    /// Both.
    Full,
}

impl From<CompatArg> for Compat {
    fn from(c: CompatArg) -> Compat {
        match c {
            CompatArg::None => Compat::None,
            CompatArg::Backward => Compat::Backward,
            CompatArg::Forward => Compat::Forward,
            CompatArg::Full => Compat::Full,
        }
    }
}

/// A subject, and one of its versions (`schema get`, `schema delete`).
#[derive(clap::Args, Debug)]
pub struct VersionArgs {
    /// The subject.
    subject: String,
    /// One version (`get`: default the latest; `delete`: default the whole
    /// subject).
    #[arg(long, value_name = "N")]
    version: Option<u32>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// List the schema subjects (`LIST SCHEMAS`, as `sluice ls schemas`).
///
/// Prints the broker's table: subject, latest, versions, compat, used_by
/// (exchanges by name, queues as queue:NAME); --json prints an array of
/// objects.
///
/// Examples:
///   sluice schema list
///   sluice schema list 'ord*' --json
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES_HELP, verbatim_doc_comment)]
pub struct ListArgs {
    /// Only subjects matching this pattern (`*` any run of characters).
    pattern: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub(crate) common: CommonArgs,
}

/// Runs `sluice schema ...`.
pub(super) async fn schema(command: SchemaCommandArgs) -> Result<Exit, CliError> {
    match command {
        SchemaCommandArgs::Add(a) => add(a).await,
        SchemaCommandArgs::Get(a) => get(a).await,
        SchemaCommandArgs::List(a) => {
            let list = List {
                kind: WireKind::Schemas,
                pattern: a.pattern,
            };
            inspect::list_of(&a.common, list, ListKind::Schemas).await
        }
        SchemaCommandArgs::Delete(a) => {
            let cmd = Command::Schema(SchemaCommand::Delete {
                subject: a.subject,
                version: a.version,
            });
            // `OK`, no words: nothing to print.
            request(&a.common, &cmd).await?;
            Ok(Exit::Success)
        }
    }
}

/// `sluice schema add`.
async fn add(a: AddArgs) -> Result<Exit, CliError> {
    let schema = read_schema(&a.file).await?;
    let cmd = Command::Schema(SchemaCommand::Add(SchemaAdd {
        subject: a.subject,
        rule: a.compat.map(|c| (c.into(), a.transitive)),
        schema,
    }));
    let reply = request(&a.common, &cmd).await?;
    let mut out = Out::default();
    out.reply_words(a.common.json, "subject", &reply.words)?;
    out.flush()?;
    Ok(Exit::Success)
}

/// The schema text in `file` (`-`: stdin): UTF-8, checked as JSON Schema
/// by the broker, not here.
async fn read_schema(file: &str) -> Result<String, CliError> {
    let bytes = if file == "-" {
        use tokio::io::AsyncReadExt;
        let mut buf = Vec::new();
        tokio::io::stdin()
            .read_to_end(&mut buf)
            .await
            .map_err(CliError::stdin)?;
        buf
    } else {
        // A file named on the command line: small, read at once.
        std::fs::read(file)
            .map_err(|e| CliError::Usage(format!("reading the schema file {file:?}: {e}")))?
    };
    String::from_utf8(bytes)
        .map_err(|_| CliError::Usage(format!("the schema in {file:?} is not UTF-8 text")))
}

/// `sluice schema get`.
async fn get(a: VersionArgs) -> Result<Exit, CliError> {
    let cmd = Command::Schema(SchemaCommand::Get {
        subject: a.subject,
        version: a.version,
    });
    let reply = request(&a.common, &cmd).await?;
    let text = String::from_utf8_lossy(reply.data.as_deref().unwrap_or_default()).into_owned();
    let mut out = Out::default();
    if a.common.json {
        out.json(&get_json(&reply.words, &text))?;
    } else {
        out.bytes(text.as_bytes())?;
        if !text.ends_with('\n') {
            out.bytes(b"\n")?;
        }
    }
    out.flush()?;
    Ok(Exit::Success)
}

/// `SCHEMA GET`'s reply (`<subject> version=<n> compat=<rule>
/// [transitive]` and the schema) as one object.
fn get_json(words: &[String], schema: &str) -> Value {
    let mut m = Map::new();
    m.insert("transitive".into(), Value::Bool(false));
    for (i, w) in words.iter().enumerate() {
        match w.split_once('=') {
            Some(("compat", v)) => m.insert("compat".into(), Value::String(v.into())),
            Some((k, v)) => m.insert(k.into(), scalar(v)),
            None if i == 0 => m.insert("subject".into(), Value::String(w.clone())),
            None => m.insert(w.clone(), Value::Bool(true)),
        };
    }
    let schema = serde_json::from_str(schema).unwrap_or_else(|_| Value::String(schema.into()));
    m.insert("schema".into(), schema);
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn get_reply_becomes_one_object() {
        let words: Vec<String> = ["orders", "version=2", "compat=full", "transitive"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            get_json(&words, r#"{"type":"object"}"#),
            json!({"subject": "orders", "version": 2, "compat": "full",
                   "transitive": true, "schema": {"type": "object"}})
        );
        let words: Vec<String> = ["7", "version=1", "compat=none"].map(String::from).to_vec();
        assert_eq!(
            get_json(&words, "{}"),
            json!({"subject": "7", "version": 1, "compat": "none",
                   "transitive": false, "schema": {}})
        );
    }
}
