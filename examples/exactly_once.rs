//! An exactly-once pipeline: `in → worker → out` with `TX`.
//!
//! A producer publishes orders into a durable queue `in`, each with an
//! `id=`. A worker takes them one at a time and, for each, acks the order
//! and publishes its result to `out` **in one transaction**: `TX BEGIN`,
//! `ACK <dtag>`, `PUB "" out id=result-<order id> ...`, `TX COMMIT`. The
//! commit is one atomic, fsync'd write: after a crash of the broker either
//! both happened (the order is gone, its result is in `out`) or neither
//! did (the order comes back `redelivered`, nothing was published), so
//! the worker never needs to ask which. `out` also has a `dedup-window=`
//! and the result's id is derived from the order's: a result published
//! twice by anything outside a transaction (a producer retrying a publish
//! whose confirm it never saw) is still stored once.
//!
//! The whole exchange is pipelined: the four lines go out in one write
//! and the worker waits once, for the commit's `OK`.
//!
//! Run it against a broker:
//!
//! ```text
//! cargo run --release -- serve            # terminal 1
//! cargo run --example exactly_once        # terminal 2
//! ```
//!
//! Kill the broker (`kill -9`) while it runs, restart it on the same
//! `--data-dir` and run the example again with `SLUICE_RESUME=1`: the
//! worker goes on where the last commit left off and the check at the end
//! still finds every result exactly once.
//!
//! The address comes from `SLUICE_ADDR` (default `127.0.0.1:5680`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use sluice::client::Client;

/// How many orders the producer publishes.
const ORDERS: usize = 50;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("SLUICE_ADDR").unwrap_or_else(|_| "127.0.0.1:5680".into());
    let resume = std::env::var_os("SLUICE_RESUME").is_some();
    let mut c = Client::connect(&addr)
        .await
        .with_context(|| format!("connecting to {addr} (is `sluice serve` running?)"))?;
    if !resume {
        // A fresh start: no orders, results or de-duplication windows left
        // from an earlier run.
        for q in ["orders.in", "orders.out"] {
            if let Err(e) = c.request(&format!("DELETE QUEUE {q}"), None).await {
                if e.code() != Some(sluice::protocol::ErrorCode::NotFound) {
                    return Err(e.into());
                }
            }
        }
    }
    c.request("DECLARE QUEUE orders.in durable dedup-window=3600000", None)
        .await?;
    c.request(
        "DECLARE QUEUE orders.out durable dedup-window=3600000",
        None,
    )
    .await?;

    if !resume {
        // The producer: `id=` makes a retried publish harmless (dedup-window).
        let confirms: Vec<_> = (1..=ORDERS)
            .map(|i| {
                let body = format!("order {i}: {} widgets", i * 3);
                c.send_publish("", "orders.in", &format!("id=order-{i}"), body.as_bytes())
            })
            .collect();
        c.flush().await?;
        for h in confirms {
            h.wait().await?;
        }
        println!("producer: {ORDERS} orders confirmed");
    }

    worker(&addr).await?;
    check(&mut c).await
}

/// Takes each order, publishes its result and acks the order, atomically.
async fn worker(addr: &str) -> anyhow::Result<()> {
    let mut w = Client::connect(addr).await?;
    w.request("SUB orders.in prefetch=1 tag=worker", None)
        .await?;
    let mut done = 0;
    loop {
        let d = match tokio::time::timeout(Duration::from_millis(500), w.next_delivery()).await {
            Ok(d) => d.context("connection closed")?,
            // Nothing for half a second: the queue is drained.
            Err(_) => break,
        };
        let order = String::from_utf8_lossy(&d.body).into_owned();
        let result = format!("shipped {order}");
        // Pipelined: one round trip for the whole transaction.
        let begin = w.send("TX BEGIN", None);
        let ack = w.send(&format!("ACK {}", d.delivery_tag), None);
        let publish = w.send_publish(
            "",
            "orders.out",
            &format!("id=result-{}", d.id),
            result.as_bytes(),
        );
        let commit = w.send("TX COMMIT", None);
        w.flush().await?;
        for h in [begin, ack, publish] {
            h.wait().await?;
        }
        let ok = commit.wait().await?;
        done += 1;
        println!(
            "worker: {} -> result-{} ({}{})",
            d.id,
            d.id,
            ok.words.join(" "),
            if d.redelivered { ", redelivered" } else { "" }
        );
    }
    println!("worker: {done} orders processed, orders.in drained");
    Ok(())
}

/// Reads `out` and checks that every order has exactly one result.
async fn check(c: &mut Client) -> anyhow::Result<()> {
    let mut results: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        let got = c
            .request("GET orders.out count=1000 ack=auto", None)
            .await?;
        if got.deliveries.is_empty() {
            break;
        }
        for d in got.deliveries {
            *results.entry(d.id).or_default() += 1;
        }
    }
    for i in 1..=ORDERS {
        match results.get(&format!("result-order-{i}")) {
            Some(1) => {}
            Some(n) => bail!("order-{i} has {n} results"),
            None => bail!("order-{i} has no result"),
        }
    }
    println!("check: {ORDERS} orders, each with exactly one result in orders.out");
    Ok(())
}
