//! A work queue: one producer, two competing workers.
//!
//! The producer pipelines a batch of tasks into a durable queue through the
//! default exchange (`PUB "" <queue> ...`) and waits for every confirm. Two
//! workers subscribe to the same queue with `prefetch=1` and manual acks: the
//! queue gives each task to exactly one worker, and a worker gets its next
//! task only after it has acked the previous one, so the slow worker does
//! fewer tasks instead of holding a backlog. At the end the program checks
//! that every task was done exactly once and deletes the queue.
//!
//! Run it against a broker:
//!
//! ```text
//! cargo run --release -- serve            # terminal 1
//! cargo run --example work_queue          # terminal 2
//! ```
//!
//! The address comes from `SLUICE_ADDR` (default `127.0.0.1:5680`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use sluice::client::Client;
use tokio::sync::{mpsc, watch};

/// How many tasks the producer publishes.
const TASKS: usize = 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("SLUICE_ADDR").unwrap_or_else(|_| "127.0.0.1:5680".into());
    let queue = format!("tasks-{}", std::process::id());

    let mut producer = Client::connect(&addr)
        .await
        .with_context(|| format!("connecting to {addr} (is `sluice serve` running?)"))?;
    producer
        .request(&format!("DECLARE QUEUE {queue} durable"), None)
        .await?;

    // Two workers; worker 2 is three times slower than worker 1.
    let (done_tx, mut done_rx) = mpsc::channel::<(String, String)>(TASKS);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = Vec::new();
    for (name, work_ms) in [("worker-1", 10), ("worker-2", 30)] {
        let mut c = Client::connect(&addr).await?;
        let ok = c
            .request(
                &format!("SUB {queue} prefetch=1 ack=manual tag={name}"),
                None,
            )
            .await?;
        println!("{name}: subscribed ({})", ok.words.join(" "));
        workers.push(tokio::spawn(worker(
            c,
            name,
            work_ms,
            done_tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(done_tx);

    // The producer pipelines every publish, then waits for the confirms.
    let confirms: Vec<_> = (1..=TASKS)
        .map(|i| producer.send_publish("", &queue, "", format!("task {i}").as_bytes()))
        .collect();
    producer.flush().await?;
    for c in confirms {
        c.wait().await?;
    }
    println!("producer: {TASKS} tasks confirmed");

    // Collect the results: every task exactly once.
    let mut by_worker: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..TASKS {
        let (who, task) = tokio::time::timeout(Duration::from_secs(30), done_rx.recv())
            .await
            .context("timed out waiting for the workers")?
            .context("the workers stopped early")?;
        if !seen.insert(task.clone()) {
            bail!("{task} was done twice");
        }
        *by_worker.entry(who).or_default() += 1;
    }
    stop_tx.send(true)?;
    for w in workers {
        w.await??;
    }
    for (who, n) in &by_worker {
        println!("{who} did {n} tasks");
    }

    // Every task was acked, so the queue is empty.
    let deleted = producer
        .request(&format!("DELETE QUEUE {queue} if-empty"), None)
        .await?;
    println!("queue {queue} deleted ({})", deleted.words.join(" "));
    Ok(())
}

/// Takes tasks one at a time, "works" on each, acks it and reports it done.
async fn worker(
    mut c: Client,
    name: &'static str,
    work_ms: u64,
    done: mpsc::Sender<(String, String)>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        let d = tokio::select! {
            d = c.next_delivery() => d.context("connection closed")?,
            _ = stop.changed() => break,
        };
        let task = String::from_utf8_lossy(&d.body).into_owned();
        tokio::time::sleep(Duration::from_millis(work_ms)).await;
        // The ack's OK means the queue has forgotten the task (on disk too).
        let ack = c.send_ack(d.delivery_tag);
        c.flush().await?;
        ack.wait().await?;
        println!("{name}: {task} done (delivery tag {})", d.delivery_tag);
        done.send((name.to_string(), task)).await?;
    }
    c.request(&format!("UNSUB {name}"), None).await?;
    Ok(())
}
