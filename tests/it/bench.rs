//! `sluice bench`: the real binary run with tiny numbers against an
//! in-process server, `--json`, checking that each scenario completes and
//! reports what it measured. `--pid` is this process (the server runs in
//! it), so the broker's CPU and RSS are sampled too.

use std::time::Duration;

use serde_json::Value;

use crate::common::{sluice_bin, TestServer};

/// Longer than `DEADLINE`: a bench run is several phases.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// `sluice bench <args> --addr <addr> --pid <this process> --json`: the
/// report, or a panic with stderr.
async fn bench(s: &TestServer, args: &[&str]) -> Value {
    let addr = s.addr.to_string();
    let mut all = args.to_vec();
    all.extend(["--addr", &addr]);
    report(bench_command(&[], &all), args).await
}

/// `sluice <before> bench <args> --pid <this process> --json --timeout 10`,
/// the environment's `SLUICE_*` removed.
fn bench_command(before: &[&str], args: &[&str]) -> tokio::process::Command {
    let pid = std::process::id().to_string();
    let mut c = tokio::process::Command::new(sluice_bin());
    c.args(before)
        .arg("bench")
        .args(args)
        .args(["--pid", &pid, "--json", "--timeout", "10"])
        .env_remove("SLUICE_ADDR")
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_USER")
        .env_remove("SLUICE_PASSWORD")
        .env_remove("SLUICE_PID")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    c
}

/// Runs `c` to its JSON report, or panics with stderr.
async fn report(mut c: tokio::process::Command, args: &[&str]) -> Value {
    let out = tokio::time::timeout(RUN_DEADLINE, c.output())
        .await
        .unwrap_or_else(|_| panic!("sluice bench {args:?} did not finish"))
        .expect("run sluice bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sluice bench {args:?}: {:?}\n{stderr}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{stdout:?}: {e}\n{stderr}"))
}

/// `sluice bench` finds the broker as every other command does: `-s` /
/// `--server`, or `SLUICE_SERVER`; `SLUICE_ADDR`, its old variable, still
/// works, after `SLUICE_SERVER`.
#[tokio::test]
async fn the_broker_comes_from_dash_s_or_sluice_server_like_other_commands() {
    let s = TestServer::start().await;
    let addr = s.addr.to_string();
    let nowhere = "127.0.0.1:1";
    let runs = [
        (
            "-s before the command",
            bench_command(&["-s", &addr], &["queue", "-n", "20"]),
        ),
        (
            "--server, with --size",
            bench_command(
                &[],
                &["queue", "-n", "20", "--size", "32", "--server", &addr],
            ),
        ),
        ("SLUICE_SERVER beats SLUICE_ADDR", {
            let mut c = bench_command(&[], &["queue", "-n", "20"]);
            c.env("SLUICE_SERVER", &addr).env("SLUICE_ADDR", nowhere);
            c
        }),
        ("SLUICE_ADDR alone", {
            let mut c = bench_command(&[], &["queue", "-n", "20"]);
            c.env("SLUICE_ADDR", &addr);
            c
        }),
    ];
    for (what, c) in runs {
        let r = report(c, &[what]).await;
        assert_eq!(r["published"]["count"], 20, "{what}: {r}");
        assert_eq!(r["acked"]["count"], 20, "{what}: {r}");
    }
    // And the flag beats the environment: a run pointed nowhere fails.
    let mut c = bench_command(&[], &["queue", "-n", "20", "-s", nowhere]);
    c.env("SLUICE_SERVER", &addr);
    let out = tokio::time::timeout(RUN_DEADLINE, c.output())
        .await
        .expect("finished")
        .expect("ran");
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(nowhere), "{stderr}");
}

#[tokio::test]
async fn queue_runs_with_tiny_numbers() {
    let s = TestServer::start().await;
    let r = bench(&s, &["queue", "-n", "300", "--window", "50"]).await;
    assert_eq!(r["scenario"], "queue");
    assert_eq!(r["published"]["count"], 300);
    assert_eq!(r["delivered"]["count"], 300);
    assert_eq!(r["acked"]["count"], 300);
    assert_eq!(r["latency"]["samples"], 300);
    assert_eq!(r["stream"], Value::Null);
    assert!(
        r["broker"]["total"]["avg_rss_bytes"].as_u64() > Some(0),
        "{r}"
    );
}

#[tokio::test]
async fn stream_runs_with_tiny_numbers_and_every_group_sees_every_offset() {
    let s = TestServer::start().await;
    let r = bench(
        &s,
        &[
            "stream",
            "-n",
            "500",
            "--groups",
            "2",
            "--window",
            "50",
            "--prefetch",
            "20",
        ],
    )
    .await;
    assert_eq!(r["scenario"], "stream", "{r}");
    let st = &r["stream"];
    assert_eq!(st["verified"], true, "{r}");
    assert_eq!(st["messages"], 500, "{r}");
    assert_eq!(st["append"]["count"], 500, "{r}");
    assert!(st["append"]["mb_per_sec"].as_f64() > Some(0.0), "{r}");
    assert_eq!(st["confirm_latency"]["samples"], 500, "{r}");
    assert_eq!(st["head"]["group"], "head");
    assert_eq!(st["head"]["read"]["count"], 500, "{r}");
    assert_eq!(r["latency"]["samples"], 500, "the head's latency: {r}");
    let first = st["head"]["first_offset"].as_u64().expect("head offsets");
    let groups = st["old_data"].as_array().expect("old_data");
    assert_eq!(groups.len(), 2, "{r}");
    for (i, g) in groups.iter().enumerate() {
        assert_eq!(g["group"], format!("g{}", i + 1), "{r}");
        assert_eq!(g["start"], "first");
        assert_eq!(g["read"]["count"], 500, "{r}");
        assert_eq!(g["first_offset"], first, "{r}");
        assert_eq!(g["last_offset"], first + 499, "{r}");
    }
    assert_eq!(st["old_data_total"]["count"], 1000, "{r}");
    assert!(
        st["old_data_broker"]["peak_rss_bytes"].as_u64() > Some(0),
        "{r}"
    );
    let phases: Vec<&Value> = r["broker"]["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| &p["phase"])
        .collect();
    assert_eq!(phases, ["append", "old-data"], "{r}");
}
