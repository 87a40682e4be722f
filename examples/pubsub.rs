//! Publish/subscribe with a fanout exchange: every subscriber gets every message.
//!
//! A `fanout` exchange ignores routing keys and gives each bound queue its
//! own copy of each message. Each of three subscribers declares its own
//! queue with a server-generated name (`DECLARE QUEUE "" exclusive`), binds
//! it to the exchange and subscribes with `ack=auto`. The publisher then
//! sends a few events, and every subscriber receives all of them, in order.
//! The exclusive queues disappear when their connections close.
//!
//! Run it against a broker:
//!
//! ```text
//! cargo run --release -- serve            # terminal 1
//! cargo run --example pubsub              # terminal 2
//! ```
//!
//! The address comes from `SLUICE_ADDR` (default `127.0.0.1:5680`).

use std::time::Duration;

use anyhow::{bail, Context};
use sluice::client::Client;

const SUBSCRIBERS: usize = 3;
const EVENTS: [&str; 4] = [
    "user signed up",
    "user logged in",
    "order placed",
    "user logged out",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("SLUICE_ADDR").unwrap_or_else(|_| "127.0.0.1:5680".into());
    let exchange = format!("events-{}", std::process::id());

    let mut publisher = Client::connect(&addr)
        .await
        .with_context(|| format!("connecting to {addr} (is `sluice serve` running?)"))?;
    publisher
        .request(&format!("DECLARE EXCHANGE {exchange} fanout"), None)
        .await?;

    // Each subscriber: its own exclusive queue, bound to the exchange.
    let mut subscribers = Vec::new();
    for i in 1..=SUBSCRIBERS {
        let mut c = Client::connect(&addr).await?;
        let declared = c.request("DECLARE QUEUE \"\" exclusive", None).await?;
        let queue = declared.words[0].clone();
        c.request(&format!("BIND {queue} {exchange}"), None).await?;
        c.request(&format!("SUB {queue} ack=auto tag=sub-{i}"), None)
            .await?;
        println!("subscriber {i}: queue {queue} bound to {exchange}");
        subscribers.push(tokio::spawn(subscriber(c, i)));
    }

    for event in EVENTS {
        let reply = publisher
            .request(&format!("PUB {exchange} \"\" \"{event}\""), None)
            .await?;
        // OK <msg-id> routed=<n>: one copy per bound queue.
        println!("published {event:?}: {}", reply.words.join(" "));
        if reply.words.get(1).map(String::as_str) != Some("routed=3") {
            bail!("expected routed=3, got {:?}", reply.words);
        }
    }

    for s in subscribers {
        s.await??;
    }
    publisher
        .request(&format!("DELETE EXCHANGE {exchange}"), None)
        .await?;
    println!("every subscriber got every event");
    Ok(())
}

/// Receives every event once, in publish order, then disconnects.
async fn subscriber(mut c: Client, i: usize) -> anyhow::Result<()> {
    for expected in EVENTS {
        let d = tokio::time::timeout(Duration::from_secs(10), c.next_delivery())
            .await
            .context("timed out waiting for an event")?
            .context("connection closed")?;
        let body = String::from_utf8_lossy(&d.body);
        println!("subscriber {i}: got {body:?} (exchange {})", d.exchange);
        if body != expected {
            bail!("subscriber {i}: expected {expected:?}, got {body:?}");
        }
    }
    // Dropping the client closes the connection: the exclusive queue goes too.
    Ok(())
}
