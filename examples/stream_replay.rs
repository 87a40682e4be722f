//! A stream read by a consumer group, then replayed with `SEEK`.
//!
//! A stream (`DECLARE QUEUE <name> type=stream`) is an append-only log:
//! every message gets an offset, and acking does not remove it. The
//! producer appends a few events; a consumer reads them as a member of
//! consumer group `audit` (`SUB <stream> group=audit offset=first`) and
//! acks each one, which commits the group's position. Then the producer
//! moves the group back to the first offset (`SEEK <stream> audit
//! offset=first`, as after fixing a bug in the consumer): the same,
//! still subscribed consumer receives every event again, in order and with
//! the same offsets. At the end the program checks both passes and deletes
//! the stream.
//!
//! Run it against a broker:
//!
//! ```text
//! cargo run --release -- serve            # terminal 1
//! cargo run --example stream_replay       # terminal 2
//! ```
//!
//! The address comes from `SLUICE_ADDR` (default `127.0.0.1:5680`).

use std::time::Duration;

use anyhow::{bail, Context};
use sluice::client::Client;

/// The events the producer appends.
const EVENTS: [&str; 4] = [
    "account opened",
    "deposit 100",
    "withdrawal 30",
    "deposit 5",
];

/// How long to wait for any one delivery.
const WAIT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("SLUICE_ADDR").unwrap_or_else(|_| "127.0.0.1:5680".into());
    let stream = format!("ledger-events-{}", std::process::id());

    let mut producer = Client::connect(&addr)
        .await
        .with_context(|| format!("connecting to {addr} (is `sluice serve` running?)"))?;
    let declared = producer
        .request(&format!("DECLARE QUEUE {stream} type=stream"), None)
        .await?;
    println!("declared stream {}", declared.words.join(" "));

    // Pipeline the appends, then wait for every confirm (each is on disk).
    let confirms: Vec<_> = EVENTS
        .iter()
        .enumerate()
        .map(|(i, e)| {
            producer.send_publish("", &stream, &format!("id=event-{}", i + 1), e.as_bytes())
        })
        .collect();
    producer.flush().await?;
    for c in confirms {
        c.wait().await?;
    }
    println!("producer: {} events appended", EVENTS.len());

    // A member of group `audit`; a new group starts at offset=first.
    let mut consumer = Client::connect(&addr).await?;
    let ok = consumer
        .request(
            &format!("SUB {stream} group=audit offset=first prefetch=10 tag=auditor"),
            None,
        )
        .await?;
    println!("consumer: subscribed as {}", ok.words.join(" "));
    let first = read_pass(&mut consumer, "first pass").await?;

    // Every event is acked: the group's committed position is past them.
    let moved = producer
        .request(&format!("SEEK {stream} audit offset=first"), None)
        .await?;
    println!(
        "producer: SEEK {stream} audit offset=first -> {}",
        moved.words.join(" ")
    );
    let replay = read_pass(&mut consumer, "replay").await?;
    if replay != first {
        bail!("the replay differs from the first pass: {first:?} vs {replay:?}");
    }
    println!(
        "the replay read the same {} events at the same offsets",
        replay.len()
    );

    consumer.request("UNSUB auditor", None).await?;
    let deleted = producer
        .request(&format!("DELETE QUEUE {stream}"), None)
        .await?;
    println!(
        "stream {stream} deleted with its groups ({})",
        deleted.words.join(" ")
    );
    Ok(())
}

/// Reads one delivery per event, checks the order, acks each (the ack's
/// OK means the group's new position is on disk) and returns
/// `(offset, body)` per event.
async fn read_pass(c: &mut Client, pass: &str) -> anyhow::Result<Vec<(u64, String)>> {
    let mut seen = Vec::new();
    for want in EVENTS {
        let d = tokio::time::timeout(WAIT, c.next_delivery())
            .await
            .with_context(|| format!("{pass}: timed out waiting for {want:?}"))?
            .context("connection closed")?;
        let body = String::from_utf8_lossy(&d.body).into_owned();
        let offset = d.offset.context("a stream delivery without offset=")?;
        if body != want {
            bail!("{pass}: expected {want:?}, got {body:?} at offset {offset}");
        }
        let ack = c.send_ack(d.delivery_tag);
        c.flush().await?;
        ack.wait().await?;
        println!("consumer ({pass}): offset {offset}: {body} (acked)");
        seen.push((offset, body));
    }
    Ok(seen)
}
