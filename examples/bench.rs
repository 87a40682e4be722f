//! A thin wrapper around `sluice bench` (the load generator, which is part
//! of the `sluice` binary, not of the library), kept for the old command
//! line: with positional arguments it runs the `queue` scenario, 1
//! publisher and 1 consumer on one queue; anything else is handed to
//! `sluice bench` as is.
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
//!
//! It runs the `sluice` binary of the same build (`target/<profile>/sluice`,
//! next to `target/<profile>/examples/`): the first command above builds
//! it; otherwise `cargo build [--release] --bin sluice` first.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

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

/// The `sluice` binary cargo built with this example: this program is
/// `target/<profile>/examples/bench`, the binary `target/<profile>/sluice`.
fn sluice_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("sluice");
    bin.is_file().then_some(bin)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let positional = args
        .first()
        .is_none_or(|a| a.chars().all(|c| c.is_ascii_digit()));
    let argv = if positional { legacy(&args) } else { args };
    let Some(bin) = sluice_binary() else {
        eprintln!(
            "bench: error: no sluice binary next to this example's directory; \
             build it first: cargo build [--release] --bin sluice"
        );
        return ExitCode::FAILURE;
    };
    // Replaces this process: the report, the exit status and Ctrl-C (which
    // deletes the run's queues) are `sluice bench`'s own.
    let e = Command::new(&bin).arg("bench").args(argv).exec();
    eprintln!("bench: error: running {}: {e}", bin.display());
    ExitCode::FAILURE
}
