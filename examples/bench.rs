//! A small load generator: one publisher pipelining confirmed publishes and
//! one consumer with prefetch and manual acks, on one durable queue. Prints
//! confirmed publishes/s, delivered-and-acked msgs/s and the publish→deliver
//! latency (p50/p99). The full benchmark tool (`sluice bench`) comes later.
//!
//! Run against a release broker:
//!
//! ```text
//! cargo run --release -- serve --data-dir /tmp/sluice-bench &
//! cargo run --release --example bench -- 200000 100 persistent
//! ```
//!
//! Arguments (all optional): message count (default 20000), body size in
//! bytes (default 100), `persistent` or `transient` (default persistent).
//! The address comes from `SLUICE_ADDR` (default 127.0.0.1:5680).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sluice::client::Client;

const WINDOW: usize = 512;
const PREFETCH: u32 = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("SLUICE_ADDR").unwrap_or_else(|_| "127.0.0.1:5680".into());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: usize = args
        .first()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let size: usize = args
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100)
        .max(16);
    let mode = args
        .get(2)
        .map(String::as_str)
        .unwrap_or("persistent")
        .to_string();
    let queue = format!("bench-{}", std::process::id());

    let mut admin = Client::connect(&addr).await?;
    admin
        .request(&format!("DECLARE QUEUE {queue} durable"), None)
        .await?;

    let start = Instant::now();
    let consumer = {
        let addr = addr.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut c = Client::connect(&addr).await?;
            c.request(&format!("SUB {queue} prefetch={PREFETCH} tag=bench"), None)
                .await?;
            let mut latencies = Vec::with_capacity(count);
            let mut acks = VecDeque::new();
            for _ in 0..count {
                let d = c
                    .next_delivery()
                    .await
                    .ok_or_else(|| anyhow::anyhow!("consumer connection closed"))?;
                let mut sent = [0u8; 16];
                sent.copy_from_slice(&d.body[..16]);
                let sent_ns = u128::from_be_bytes(sent);
                latencies.push(start.elapsed().as_nanos().saturating_sub(sent_ns));
                acks.push_back(c.send_ack(d.delivery_tag));
                c.flush().await?;
                while acks.len() > 4 * PREFETCH as usize {
                    if let Some(h) = acks.pop_front() {
                        h.wait().await?;
                    }
                }
            }
            for h in acks {
                h.wait().await?;
            }
            anyhow::Ok((start.elapsed(), latencies))
        })
    };

    let mut p = Client::connect(&addr).await?;
    let opts = if mode == "transient" {
        "transient"
    } else {
        "persistent"
    };
    let mut inflight = VecDeque::with_capacity(WINDOW);
    let mut body = vec![b'x'; size];
    for _ in 0..count {
        body[..16].copy_from_slice(&start.elapsed().as_nanos().to_be_bytes());
        inflight.push_back(p.send_publish("", &queue, opts, &body));
        if inflight.len() >= WINDOW {
            p.flush().await?;
            while inflight.len() > WINDOW / 2 {
                if let Some(h) = inflight.pop_front() {
                    h.wait().await?;
                }
            }
        }
    }
    p.flush().await?;
    for h in inflight {
        h.wait().await?;
    }
    let published = start.elapsed();
    let (consumed, mut lat) = consumer.await??;
    admin
        .request(&format!("DELETE QUEUE {queue}"), None)
        .await?;

    lat.sort_unstable();
    let pct = |q: f64| Duration::from_nanos(lat[((lat.len() as f64 - 1.0) * q) as usize] as u64);
    let rate = |d: Duration| count as f64 / d.as_secs_f64();
    println!("messages: {count} x {size} B, {mode}, publisher window {WINDOW}, prefetch {PREFETCH}, ack each");
    println!("confirmed publishes/s:        {:>10.0}", rate(published));
    println!("delivered and acked msgs/s:   {:>10.0}", rate(consumed));
    println!("latency publish->deliver p50: {:>10.2?}", pct(0.50));
    println!("latency publish->deliver p99: {:>10.2?}", pct(0.99));
    Ok(())
}
