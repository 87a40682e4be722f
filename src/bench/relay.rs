//! `sluice bench tx`: what `TX` costs. `--count` messages are put into a
//! queue `in` first; then `--workers` connections relay them to a queue
//! `out`, one delivery at a time (subscribed with `--prefetch`): with `TX BEGIN`, `ACK`,
//! `PUB`, `TX COMMIT` pipelined and one wait for the commit (the default),
//! or with `--plain`, a confirmed `PUB` followed by its `ACK` (two waits,
//! two fsyncs). The report's deliveries/s is the relay rate: run it both
//! ways and compare.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context};

use super::phase::Ctx;
use super::report::{Report, Throughput};
use super::target::Target;
use super::topology::Topology;
use super::{TxArgs, DEFAULT_COUNT};

/// Publishes in flight while `in` is filled.
const FILL_WINDOW: usize = 512;

/// Runs `sluice bench tx` (see the module docs).
pub(crate) async fn relay(
    ctx: &mut Ctx,
    topo: &mut Topology,
    a: &TxArgs,
) -> anyhow::Result<Report> {
    #[allow(irrefutable_let_patterns)]
    let Target::Sluice(endpoint) = &ctx.target
    else {
        return Err(anyhow!("`sluice bench tx` runs against sluice only"));
    };
    let input = topo.declare_queue("in").await?;
    let output = topo.declare_queue("out").await?;
    let count = ctx.common.count.unwrap_or(DEFAULT_COUNT);
    let body = vec![b'x'; ctx.common.size as usize];
    let mut filler = endpoint.connect().await?;
    let fill_start = Instant::now();
    let mut sent = 0u64;
    while sent < count {
        let n = (count - sent).min(FILL_WINDOW as u64);
        let confirms: Vec<_> = (0..n)
            .map(|_| filler.send_publish("", &input, "", &body))
            .collect();
        filler.flush().await?;
        for c in confirms {
            c.wait().await.context("filling the input queue")?;
        }
        sent += n;
    }
    let filled = Throughput::new(count, fill_start.elapsed().as_secs_f64());
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.workers {
        let mut c = endpoint.connect().await?;
        let (input, output, done, plain) = (input.clone(), output.clone(), done.clone(), a.plain);
        let prefetch = ctx.common.prefetch;
        workers.push(tokio::spawn(async move {
            c.request(&format!("SUB {input} prefetch={prefetch}"), None)
                .await?;
            while done.load(Ordering::Relaxed) < count {
                let Some(d) = c.next_delivery().await else {
                    break;
                };
                if plain {
                    let p = c.send_publish("", &output, "", &d.body);
                    c.flush().await?;
                    p.wait().await?;
                    let ack = c.send_ack(d.delivery_tag);
                    c.flush().await?;
                    ack.wait().await?;
                } else {
                    let begin = c.send("TX BEGIN", None);
                    let ack = c.send(&format!("ACK {}", d.delivery_tag), None);
                    let p = c.send_publish("", &output, "", &d.body);
                    let commit = c.send("TX COMMIT", None);
                    c.flush().await?;
                    for h in [begin, ack, p, commit] {
                        h.wait().await?;
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    while done.load(Ordering::Relaxed) < count {
        if workers.iter().all(|w| w.is_finished()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    for w in workers {
        w.abort();
        if let Ok(Err(e)) = w.await {
            return Err(e.context("a relay worker failed"));
        }
    }
    let relayed = done.load(Ordering::Relaxed);
    let settings = ctx.settings(
        1,
        a.workers,
        2,
        None,
        None,
        super::worker::Stop::Count(count),
    );
    let mut report = ctx.report("tx", settings, &[], None);
    report.published = filled;
    report.delivered = Throughput::new(relayed, secs);
    report.acked = Some(Throughput::new(relayed, secs));
    report.latency = None;
    report.elapsed_secs = secs;
    report.warnings.push(format!(
        "relayed {relayed} of {count} messages in → out {} (deliveries/s is the relay rate)",
        if a.plain {
            "with PUB then ACK (--plain)"
        } else {
            "with one TX each"
        }
    ));
    Ok(report)
}
