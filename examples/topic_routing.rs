//! Topic routing: binding keys with `*` (exactly one word) and `#` (zero or
//! more words).
//!
//! Routing keys of a `topic` exchange are words separated by dots, here
//! `<region>.<service>.<level>` and a few shorter ones. Four queues bind
//! with patterns; the program publishes a set of keys, pulls each queue
//! with `GET` and checks that every queue got exactly the keys its pattern
//! matches:
//!
//! | queue  | binding key   | matches                                         |
//! |--------|---------------|-------------------------------------------------|
//! | all    | `#`           | every key, even the empty one                   |
//! | errors | `*.*.error`   | three words, the last one `error`               |
//! | eu     | `eu.#`        | `eu` alone, or `eu` followed by anything        |
//! | api    | `*.api.*`     | three words, the middle one `api`               |
//!
//! Run it against a broker:
//!
//! ```text
//! cargo run --release -- serve            # terminal 1
//! cargo run --example topic_routing       # terminal 2
//! ```
//!
//! The address comes from `SLUICE_ADDR` (default `127.0.0.1:5680`).

use anyhow::{bail, Context};
use sluice::client::Client;

/// Queue suffix, binding key, and the published keys it must receive.
const BINDINGS: [(&str, &str, &[&str]); 4] = [
    (
        "all",
        "#",
        &[
            "eu.api.error",
            "eu.web.info",
            "us.api.error",
            "us.db.warn",
            "eu",
            "eu.api",
            "",
        ],
    ),
    ("errors", "*.*.error", &["eu.api.error", "us.api.error"]),
    (
        "eu",
        "eu.#",
        &["eu.api.error", "eu.web.info", "eu", "eu.api"],
    ),
    ("api", "*.api.*", &["eu.api.error", "us.api.error"]),
];

/// What the publisher sends, in order.
const KEYS: [&str; 7] = [
    "eu.api.error",
    "eu.web.info",
    "us.api.error",
    "us.db.warn",
    "eu",
    "eu.api",
    "",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("SLUICE_ADDR").unwrap_or_else(|_| "127.0.0.1:5680".into());
    let pid = std::process::id();
    let exchange = format!("logs-{pid}");

    let mut c = Client::connect(&addr)
        .await
        .with_context(|| format!("connecting to {addr} (is `sluice serve` running?)"))?;
    c.request(&format!("DECLARE EXCHANGE {exchange} topic"), None)
        .await?;
    for (name, key, _) in BINDINGS {
        let queue = format!("{name}-{pid}");
        c.request(&format!("DECLARE QUEUE {queue}"), None).await?;
        // Quoting the binding key is optional here; it is required when a
        // key contains `=` (it would read as an option).
        c.request(&format!("BIND {queue} {exchange} \"{key}\""), None)
            .await?;
        println!("bound {queue} to {exchange} with {key:?}");
    }

    for key in KEYS {
        let id = c
            .publish(
                &exchange,
                key,
                "",
                format!("log line for {key:?}").as_bytes(),
            )
            .await?;
        println!("published {key:?} as {id}");
    }

    let mut failed = false;
    for (name, key, expected) in BINDINGS {
        let queue = format!("{name}-{pid}");
        // Pull everything with GET: its MSG lines arrive before its OK.
        let got = c
            .request(&format!("GET {queue} count=100 ack=auto"), None)
            .await?;
        let keys: Vec<&str> = got
            .deliveries
            .iter()
            .map(|d| d.routing_key.as_str())
            .collect();
        println!("{queue} ({key:?}) received {keys:?}");
        if keys != expected {
            println!("  expected {expected:?}");
            failed = true;
        }
        c.request(&format!("DELETE QUEUE {queue}"), None).await?;
    }
    c.request(&format!("DELETE EXCHANGE {exchange}"), None)
        .await?;
    if failed {
        bail!("some queue did not get what its binding key promises");
    }
    println!("every queue got exactly what its binding key matches");
    Ok(())
}
