//! The queues and exchanges of one run, through an admin connection:
//! unique names (`<prefix>-<pid>-<hex>-<what>`), declared durable with
//! `--persistent`, and deleted by [`Topology::teardown`] at the end, also
//! after an error. The naming and the bookkeeping are shared; each request
//! goes to sluice as a text command or, with `--amqp`, to the AMQP admin
//! channel (`amqp.rs`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
#[cfg(feature = "amqp")]
use anyhow::bail;

use super::target::Target;
use sluice::client::{Client, ClientError, Response};
use sluice::protocol::token::encode_word;
use sluice::protocol::ErrorCode;

/// Bindings pipelined before their replies are awaited.
const BIND_BATCH: usize = 5_000;

/// The admin connection.
#[derive(Debug)]
enum Admin {
    Sluice(Client),
    #[cfg(feature = "amqp")]
    Amqp(Box<super::amqp::AmqpAdmin>),
}

/// A run's queues and exchanges.
#[derive(Debug)]
pub(crate) struct Topology {
    admin: Admin,
    base: String,
    durable: bool,
    /// `replicas=` for the queues (a cluster node), when given.
    replicas: Option<u8>,
    timeout: Duration,
    queues: Vec<String>,
    exchanges: Vec<String>,
    /// Schema subjects, deleted after the exchanges.
    schemas: Vec<String>,
}

impl Topology {
    /// Connects the admin connection; names will start with `prefix`.
    pub(crate) async fn connect(
        target: &Target,
        prefix: &str,
        durable: bool,
        replicas: Option<u8>,
        timeout: Duration,
    ) -> anyhow::Result<Topology> {
        let admin = match target {
            Target::Sluice(ep) => {
                Admin::Sluice(tokio::time::timeout(timeout, ep.connect()).await.map_err(
                    |_| anyhow!("connecting to {}: no greeting within {timeout:?}", ep.addr),
                )??)
            }
            #[cfg(feature = "amqp")]
            Target::Amqp(e) => Admin::Amqp(Box::new(e.admin(timeout).await?)),
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0);
        Ok(Topology {
            admin,
            base: format!("{prefix}-{}-{:06x}", std::process::id(), nanos & 0xff_ffff),
            durable,
            replicas,
            timeout,
            queues: Vec::new(),
            exchanges: Vec::new(),
            schemas: Vec::new(),
        })
    }

    /// The run's name for `what`.
    pub(crate) fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.base)
    }

    /// Sends `line` on the sluice admin connection and waits for its `OK`.
    async fn request(
        admin: &mut Client,
        timeout: Duration,
        line: &str,
    ) -> anyhow::Result<Response> {
        tokio::time::timeout(timeout, admin.request(line, None))
            .await
            .map_err(|_| anyhow!("{line}: no reply within {timeout:?}"))?
            .map_err(|e| anyhow!("{line}: {e}"))
    }

    /// The options of the run's queues.
    fn durable_flag(&self) -> String {
        let durable = if self.durable { " durable" } else { "" };
        match self.replicas {
            Some(n) => format!("{durable} replicas={n}"),
            None => durable.to_string(),
        }
    }

    /// Declares the queue `<base>-<what>` and returns its name.
    pub(crate) async fn declare_queue(&mut self, what: &str) -> anyhow::Result<String> {
        let name = self.name(what);
        self.queues.push(name.clone());
        let line = format!("DECLARE QUEUE {name}{}", self.durable_flag());
        match &mut self.admin {
            Admin::Sluice(c) => {
                Self::request(c, self.timeout, &line).await?;
            }
            #[cfg(feature = "amqp")]
            Admin::Amqp(a) => a.declare_queue(&name, self.durable).await?,
        }
        Ok(name)
    }

    /// The `DECLARE` of the stream `name` (always durable).
    fn stream_line(name: &str) -> String {
        format!("DECLARE QUEUE {name} type=stream durable")
    }

    /// Declares the stream `<base>-<what>` and returns its name (sluice
    /// only: streams are not measured over AMQP).
    pub(crate) async fn declare_stream(&mut self, what: &str) -> anyhow::Result<String> {
        let name = self.name(what);
        let line = Self::stream_line(&name);
        match &mut self.admin {
            Admin::Sluice(c) => {
                self.queues.push(name.clone());
                Self::request(c, self.timeout, &line).await?;
            }
            #[cfg(feature = "amqp")]
            Admin::Amqp(_) => bail!("streams are not measured over AMQP"),
        }
        Ok(name)
    }

    /// Messages in the stream `name` (by redeclaring it, which reports
    /// them).
    pub(crate) async fn stream_depth(&mut self, name: &str) -> anyhow::Result<u64> {
        let line = Self::stream_line(name);
        match &mut self.admin {
            Admin::Sluice(c) => {
                let r = Self::request(c, self.timeout, &line).await?;
                messages_of(&line, &r)
            }
            #[cfg(feature = "amqp")]
            Admin::Amqp(_) => bail!("streams are not measured over AMQP"),
        }
    }

    /// Declares the exchange `<base>-<what>` of type `kind` and returns its
    /// name.
    pub(crate) async fn declare_exchange(
        &mut self,
        what: &str,
        kind: &str,
    ) -> anyhow::Result<String> {
        self.declare_exchange_with(what, kind, "").await
    }

    /// Adds the schema subject `<base>-<what>` (`SCHEMA ADD`; sluice only)
    /// and returns its name.
    pub(crate) async fn add_schema(&mut self, what: &str, schema: &str) -> anyhow::Result<String> {
        let name = self.name(what);
        let line = format!("SCHEMA ADD {name}");
        match &mut self.admin {
            Admin::Sluice(c) => {
                tokio::time::timeout(self.timeout, c.request(&line, Some(schema.as_bytes())))
                    .await
                    .map_err(|_| anyhow!("{line}: no reply within {:?}", self.timeout))?
                    .map_err(|e| anyhow!("{line}: {e}"))?;
            }
            #[cfg(feature = "amqp")]
            Admin::Amqp(_) => bail!("schemas are sluice's"),
        }
        self.schemas.push(name.clone());
        Ok(name)
    }

    /// Declares the exchange `<base>-<what>` with `schema=<subject>`.
    pub(crate) async fn declare_checked_exchange(
        &mut self,
        what: &str,
        kind: &str,
        subject: &str,
    ) -> anyhow::Result<String> {
        self.declare_exchange_with(what, kind, &format!(" schema={subject}"))
            .await
    }

    /// Declares the exchange `<base>-<what>`, `extra` appended to the line.
    async fn declare_exchange_with(
        &mut self,
        what: &str,
        kind: &str,
        extra: &str,
    ) -> anyhow::Result<String> {
        let name = self.name(what);
        self.exchanges.push(name.clone());
        let line = format!(
            "DECLARE EXCHANGE {name} {kind}{}{extra}",
            self.durable_flag()
        );
        match &mut self.admin {
            Admin::Sluice(c) => {
                Self::request(c, self.timeout, &line).await?;
            }
            #[cfg(feature = "amqp")]
            Admin::Amqp(a) => a.declare_exchange(&name, kind, self.durable).await?,
        }
        Ok(name)
    }

    /// Binds `(queue, exchange, key)` triples (pipelined on sluice).
    pub(crate) async fn bind_all(
        &mut self,
        bindings: &[(String, String, String)],
    ) -> anyhow::Result<()> {
        match &mut self.admin {
            Admin::Sluice(c) => bind_all(c, self.timeout, bindings).await,
            #[cfg(feature = "amqp")]
            Admin::Amqp(a) => {
                for (queue, exchange, key) in bindings {
                    a.bind(queue, exchange, key).await?;
                }
                Ok(())
            }
        }
    }

    /// Ready messages in `queue` (by redeclaring it, which reports them).
    /// Leaves queue `name` in place at teardown (`backlog --keep`).
    pub(crate) fn keep(&mut self, name: &str) {
        self.queues.retain(|q| q != name);
    }

    pub(crate) async fn depth(&mut self, queue: &str) -> anyhow::Result<u64> {
        let line = format!("DECLARE QUEUE {queue}{}", self.durable_flag());
        match &mut self.admin {
            Admin::Sluice(c) => {
                let r = Self::request(c, self.timeout, &line).await?;
                messages_of(&line, &r)
            }
            // Only the scenarios that do not run over AMQP ask.
            #[cfg(feature = "amqp")]
            Admin::Amqp(_) => bail!("queue depth is not measured over AMQP"),
        }
    }

    /// Deletes every queue and exchange declared (queues first), and
    /// returns what went wrong (a queue or exchange already gone is fine).
    pub(crate) async fn teardown(&mut self) -> Vec<String> {
        let queues = std::mem::take(&mut self.queues);
        let exchanges = std::mem::take(&mut self.exchanges);
        let schemas = std::mem::take(&mut self.schemas);
        let leftover = format!("delete what is left of {}-* by hand", self.base);
        match &mut self.admin {
            Admin::Sluice(c) => {
                teardown(c, self.timeout, &queues, &exchanges, &schemas, &leftover).await
            }
            #[cfg(feature = "amqp")]
            Admin::Amqp(a) => a.teardown(&queues, &exchanges, &leftover).await,
        }
    }
}

/// The `messages=<n>` of a `DECLARE QUEUE` reply to `line`.
fn messages_of(line: &str, r: &Response) -> anyhow::Result<u64> {
    r.words
        .iter()
        .find_map(|w| w.strip_prefix("messages="))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("{line}: reply without messages=: OK {}", r.words.join(" ")))
}

/// `BIND`s on a sluice admin connection, pipelined in batches.
async fn bind_all(
    admin: &mut Client,
    timeout: Duration,
    bindings: &[(String, String, String)],
) -> anyhow::Result<()> {
    for chunk in bindings.chunks(BIND_BATCH) {
        let mut replies = Vec::with_capacity(chunk.len());
        for (queue, exchange, key) in chunk {
            let mut line = format!("BIND {queue} {exchange} ").into_bytes();
            // Quoted when it has to be (a key with '=' or a blank).
            encode_word(&mut line, key.as_bytes());
            let line = String::from_utf8_lossy(&line).into_owned();
            replies.push((admin.send(&line, None), line));
        }
        admin.flush().await.map_err(|e| anyhow!("BIND: {e}"))?;
        for (reply, line) in replies {
            tokio::time::timeout(timeout, reply.wait())
                .await
                .map_err(|_| anyhow!("{line}: no reply within {timeout:?}"))?
                .map_err(|e| anyhow!("{line}: {e}"))?;
        }
    }
    Ok(())
}

/// `DELETE`s on a sluice admin connection; see [`Topology::teardown`].
async fn teardown(
    admin: &mut Client,
    timeout: Duration,
    queues: &[String],
    exchanges: &[String],
    schemas: &[String],
    leftover: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let lines = queues
        .iter()
        .map(|q| format!("DELETE QUEUE {q}"))
        .chain(exchanges.iter().map(|e| format!("DELETE EXCHANGE {e}")))
        .chain(schemas.iter().map(|s| format!("SCHEMA DELETE {s}")));
    for line in lines {
        match tokio::time::timeout(timeout, admin.request(&line, None)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.code() == Some(ErrorCode::NotFound) => {}
            Ok(Err(e @ ClientError::Server { .. })) => {
                problems.push(format!("cleanup: {line}: {e}"));
            }
            Ok(Err(e)) => {
                problems.push(format!("cleanup: {line}: {e}; {leftover}"));
                break;
            }
            Err(_) => {
                problems.push(format!(
                    "cleanup: {line}: no reply within {timeout:?}; {leftover}"
                ));
                break;
            }
        }
    }
    problems
}
