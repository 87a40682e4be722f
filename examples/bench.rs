//! A thin wrapper around `sluice bench` (the load generator, in
//! [`sluice::bench`]), kept for the old command line: with positional
//! arguments it runs the `queue` scenario, 1 publisher and 1 consumer on
//! one queue; anything else is handed to `sluice bench` as is.
//!
//! ```text
//! cargo run --release -- serve --data-dir /tmp/sluice-bench &
//! cargo run --release --example bench -- 200000 100 persistent
//! cargo run --release --example bench -- fanout --queues 8 --count 50000
//! ```
//!
//! Positional arguments (all optional): message count (default 20000),
//! body size in bytes (default 100, at least 16), `persistent` or
//! `transient` (default persistent). The address comes from `SLUICE_ADDR`
//! (default 127.0.0.1:5680) and the broker's pid, for its CPU and memory
//! figures, from `SLUICE_PID` (optional). `sluice bench --help` has the rest.

use std::process::ExitCode;

use clap::Parser;
use sluice::bench::BenchArgs;

/// Maps the old positional arguments onto `sluice bench queue` flags.
fn legacy(args: &[String]) -> Vec<String> {
    let count = args.first().map_or("20000", String::as_str);
    let size = args.get(1).map_or("100", String::as_str);
    let mode = args.get(2).map_or("persistent", String::as_str);
    let mut out: Vec<String> = ["queue", "--count", count, "--size", size]
        .into_iter()
        .map(String::from)
        .collect();
    if mode == "persistent" {
        out.push("--persistent".into());
    }
    out
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let positional = args
        .first()
        .is_none_or(|a| a.chars().all(|c| c.is_ascii_digit()));
    let argv = if positional { legacy(&args) } else { args };
    let bench = BenchArgs::parse_from(std::iter::once("bench".to_string()).chain(argv));
    match sluice::bench::run(bench) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
