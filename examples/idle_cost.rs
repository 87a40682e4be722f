//! What a backlog of messages with TTLs costs a broker at idle: the broker's
//! CPU time over an idle interval, first empty, then holding N messages
//! that each expire in an hour. Timers are a sorted index per queue and one
//! heap entry per queue, so the two figures should be the same.
//!
//! ```text
//! cargo run --release -- serve --data-dir /tmp/sluice-idle &
//! SLUICE_PID=$! cargo run --release --example idle_cost -- 1000000 10
//! ```
//!
//! Arguments (optional): message count (default 1,000,000) and the idle
//! interval in seconds (default 10). `SLUICE_PID` names the broker process
//! (its CPU time is read from `/proc/<pid>/stat`, Linux only);
//! `SLUICE_ADDR` its address (default 127.0.0.1:5680).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sluice::client::Client;

const WINDOW: usize = 1024;

/// User + system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc stat format"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line: 12 and 13 here.
    let utime: u64 = f.get(11).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let stime: u64 = f.get(12).map(|s| s.parse()).transpose()?.unwrap_or(0);
    Ok(utime + stime)
}

/// CPU milliseconds the broker used over `secs` seconds of idling.
async fn idle_cpu_ms(pid: &str, secs: u64) -> anyhow::Result<f64> {
    // Linux reports ticks of 1/100 s (USER_HZ) on every mainstream kernel.
    let before = cpu_ticks(pid)?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let after = cpu_ticks(pid)?;
    Ok((after - before) as f64 * 10.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("SLUICE_ADDR").unwrap_or_else(|_| "127.0.0.1:5680".into());
    let pid = std::env::var("SLUICE_PID")
        .map_err(|_| anyhow::anyhow!("set SLUICE_PID to the broker's process id"))?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: usize = args
        .first()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let secs: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(10);

    let empty = idle_cpu_ms(&pid, secs).await?;
    println!("empty broker:      {empty:>8.0} ms CPU in {secs} s idle");

    let mut c = Client::connect(&addr).await?;
    let queue = format!("idle-{}", std::process::id());
    c.request(&format!("DECLARE QUEUE {queue} ttl=3600000"), None)
        .await?;
    let body = vec![b'x'; 100];
    let start = Instant::now();
    let mut inflight = VecDeque::new();
    for i in 0..count {
        let ttl = 3_600_000 - (i % 1000) as u64;
        inflight.push_back(c.send_publish("", &queue, &format!("transient ttl={ttl}"), &body));
        if inflight.len() >= WINDOW || i + 1 == count {
            c.flush().await?;
            while let Some(h) = inflight.pop_front() {
                h.wait().await?;
            }
        }
    }
    let r = c
        .request(&format!("DECLARE QUEUE {queue} ttl=3600000"), None)
        .await?;
    println!(
        "published {count} messages with TTLs in {:.1} s: {}",
        start.elapsed().as_secs_f64(),
        r.words.join(" ")
    );
    // Let the publish burst's aftermath (allocator, logging) settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = idle_cpu_ms(&pid, secs).await?;
    println!("with the backlog:  {loaded:>8.0} ms CPU in {secs} s idle");
    Ok(())
}
