//! The links (`link.rs`) over sluice's own text protocol, on a
//! [`Client`]: [`SluicePublisher`] (pipelined `PUB`s whose `OK` must say
//! `routed=N`), [`SluiceConsumer`] (a `SUB`, acked with `ACK <tag>`), and
//! the [`SluiceEndpoint`] that connects them (`--server`, `--tls`,
//! `--user`). Their AMQP counterparts are in `amqp.rs`.

use anyhow::{anyhow, bail, Context};

use super::link::{ConsumeLink, PublishLink, Received};
use super::worker::{PublishPlan, StreamRead};
use super::{AckMode, CommonArgs};
use sluice::client::{Client, ReplyHandle};
use sluice::protocol::command::Subscribe;
use sluice::protocol::Command;
use sluice::tls::TlsClientConfig;

/// A sluice publisher: pipelined `PUB`s whose `OK` must say `routed=N`.
#[derive(Debug)]
pub(crate) struct SluicePublisher {
    client: Client,
    exchange: String,
    delivery: &'static str,
    expect_routed: u64,
}

impl PublishLink for SluicePublisher {
    type Pending = (ReplyHandle, u64);

    async fn publish(&mut self, key: &str, body: &[u8]) -> anyhow::Result<Self::Pending> {
        let reply = self
            .client
            .send_publish(&self.exchange, key, self.delivery, body);
        Ok((reply, self.expect_routed))
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.client.flush().await?)
    }

    async fn confirmed((reply, expect_routed): Self::Pending) -> anyhow::Result<()> {
        let r = reply.wait().await.context("PUB")?;
        let routed = r
            .words
            .iter()
            .find_map(|w| w.strip_prefix("routed="))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("PUB reply without routed=: OK {}", r.words.join(" ")))?;
        if routed != expect_routed {
            bail!(
                "the broker routed a message to {routed} queue(s), expected {expect_routed} (OK {})",
                r.words.join(" ")
            );
        }
        Ok(())
    }

    async fn close(self) {}
}

/// A sluice subscription (`SUB ... prefetch= ack=`), acked with `ACK <tag>`.
#[derive(Debug)]
pub(crate) struct SluiceConsumer {
    client: Client,
}

impl ConsumeLink for SluiceConsumer {
    type Pending = ReplyHandle;

    async fn next_delivery(&mut self) -> anyhow::Result<Option<Received>> {
        Ok(self.client.next_delivery().await.map(|d| Received {
            tag: d.delivery_tag,
            redelivered: d.redelivered,
            offset: d.offset,
            body: d.body,
        }))
    }

    async fn ack(&mut self, tag: u64) -> anyhow::Result<Self::Pending> {
        Ok(self.client.send_ack(tag))
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.client.flush().await?)
    }

    async fn acked(pending: Self::Pending) -> anyhow::Result<()> {
        pending.wait().await.context("ACK")?;
        Ok(())
    }

    async fn close(self) {}
}

/// A sluice broker: its address, how to reach it over TLS (`--tls`), and
/// who to log in as (`--user`, `--password`).
#[derive(Clone)]
pub(crate) struct SluiceEndpoint {
    /// `--server` (or `--addr`, `SLUICE_SERVER`, `SLUICE_ADDR`).
    pub(crate) addr: String,
    /// What to trust and the server name, with `--tls`.
    tls: Option<(TlsClientConfig, String)>,
    /// `--user`, `--password`: sent as `AUTH` on every connection.
    login: Option<(String, String)>,
}

impl std::fmt::Debug for SluiceEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.login.as_ref().map(|(u, _)| u);
        f.debug_struct("SluiceEndpoint")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("user", &user)
            .finish_non_exhaustive()
    }
}

impl SluiceEndpoint {
    /// `--server`, with `--tls` and `--tls-ca` what to trust, with `--user`
    /// and `--password` who to log in as.
    pub(crate) fn from_args(common: &CommonArgs) -> anyhow::Result<SluiceEndpoint> {
        let tls = match &common.tls_ca {
            Some(ca) if common.tls => Some((
                TlsClientConfig::from_ca_file(ca)?,
                common.tls_server_name.clone(),
            )),
            _ => None,
        };
        Ok(SluiceEndpoint {
            addr: common.addr(),
            tls,
            login: common
                .user
                .clone()
                .map(|u| (u, common.password.clone().unwrap_or_default().0)),
        })
    }

    /// The address as the report shows it.
    pub(crate) fn display_addr(&self) -> String {
        if self.tls.is_some() {
            format!("{} (TLS)", self.addr)
        } else {
            self.addr.clone()
        }
    }

    /// A new connection (over TLS with `--tls`), logged in when a user was
    /// given.
    pub(crate) async fn connect(&self) -> anyhow::Result<Client> {
        let addr = &self.addr;
        let mut client = match &self.tls {
            None => Client::connect(addr.as_str()).await,
            Some((tls, name)) => Client::connect_tls(addr.as_str(), name, tls).await,
        }
        .map_err(|e| anyhow::Error::new(e).context(format!("connecting to {addr}")))?;
        if let Some((user, password)) = &self.login {
            let auth = client.send_command(&Command::Auth(sluice::protocol::command::Auth {
                user: user.clone(),
                password: sluice::protocol::command::Secret(password.clone()),
            }));
            let replied = match client.flush().await {
                Ok(()) => auth.wait().await,
                Err(e) => Err(e),
            };
            replied.map_err(|e| anyhow!("AUTH {user} at {addr}: {e}"))?;
        }
        Ok(client)
    }

    /// Connects a publisher for `plan`.
    pub(crate) async fn publisher(&self, plan: &PublishPlan) -> anyhow::Result<SluicePublisher> {
        let client = self
            .connect()
            .await
            .map_err(|e| e.context(format!("publisher {}", plan.index)))?;
        Ok(SluicePublisher {
            client,
            exchange: plan.exchange.clone(),
            delivery: if plan.persistent {
                "persistent"
            } else {
                "transient"
            },
            expect_routed: plan.expect_routed,
        })
    }

    /// Connects a consumer and subscribes it to `queue` (as a member of
    /// a group, from a start offset, for a `stream` read); deliveries may
    /// start at once.
    pub(crate) async fn consumer(
        &self,
        queue: &str,
        prefetch: u32,
        ack: AckMode,
        index: u64,
        stream: Option<&StreamRead>,
    ) -> anyhow::Result<SluiceConsumer> {
        let mut client = self
            .connect()
            .await
            .map_err(|e| e.context(format!("consumer {index}")))?;
        let sub = subscribe_command(queue, prefetch, ack, index, stream);
        let reply = client.send_command(&sub);
        let replied = match client.flush().await {
            Ok(()) => reply.wait().await,
            Err(e) => Err(e),
        };
        replied.map_err(|e| {
            let line = String::from_utf8_lossy(&sub.encode())
                .trim_end()
                .to_string();
            anyhow!("consumer {index}: {line}: {e}")
        })?;
        Ok(SluiceConsumer { client })
    }
}

/// The `SUB` of consumer `index`: `SUB <queue> prefetch= ack= tag=bench-<index>`,
/// with `group=` and `offset=` for a stream read.
fn subscribe_command(
    queue: &str,
    prefetch: u32,
    ack: AckMode,
    index: u64,
    stream: Option<&StreamRead>,
) -> Command {
    Command::Subscribe(Subscribe {
        queue: queue.to_string(),
        prefetch: Some(prefetch),
        prefetch_bytes: None,
        ack: match ack {
            AckMode::Manual => sluice::protocol::command::AckMode::Manual,
            AckMode::Auto => sluice::protocol::command::AckMode::Auto,
        },
        tag: Some(format!("bench-{index}")),
        exclusive: false,
        group: stream.map(|s| s.group.clone()),
        start: stream.map(|s| s.start),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_reads_subscribe_with_group_and_offset() {
        let read = StreamRead {
            group: "g1".into(),
            start: sluice::protocol::command::StreamStart::First,
        };
        let line = subscribe_command("bench-s", 100, AckMode::Manual, 1, Some(&read)).encode();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "SUB bench-s prefetch=100 tag=bench-1 group=g1 offset=first\r\n"
        );
        let read = StreamRead {
            group: "head".into(),
            start: sluice::protocol::command::StreamStart::Next,
        };
        let line = subscribe_command("s", 7, AckMode::Auto, 0, Some(&read)).encode();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "SUB s prefetch=7 ack=auto tag=bench-0 group=head offset=next\r\n"
        );
        let line = subscribe_command("q", 100, AckMode::Manual, 3, None).encode();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "SUB q prefetch=100 tag=bench-3\r\n"
        );
        // The parser reads it back as it was built.
        let sub = subscribe_command("bench-s", 100, AckMode::Manual, 1, Some(&read));
        let line = sub.encode();
        let parsed = sluice::protocol::parse::parse_line(line.trim_ascii_end(), None).unwrap();
        assert_eq!(parsed, sub);
    }
}
