//! The broker's log as an operator reads it: colours only on a terminal
//! and never with `NO_COLOR`; a first start says `new data directory`,
//! a restart says how the previous run ended.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::spawned::Spawned;
use crate::common::{sluice_bin, DEADLINE};

/// The start of an ANSI colour sequence.
const ESC: &str = "\x1b[";

/// Reads `lines` until one contains `needle` (up to the deadline): every
/// line so far.
async fn lines_until(mut lines: impl AsyncBufReadExt + Unpin, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        loop {
            let mut line = String::new();
            match lines.read_line(&mut line).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
            let found = line.contains(needle);
            seen.push(line);
            if found {
                return true;
            }
        }
    })
    .await;
    assert_eq!(read, Ok(true), "no line with {needle:?} in {seen:?}");
    seen
}

/// `sluice serve` on a new data directory, its stderr piped, `RUST_LOG`
/// at info and `NO_COLOR` as given: its log lines up to `new data
/// directory`.
async fn piped_log(no_color: Option<&str>) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let mut child = cmd.spawn().expect("spawn sluice serve");
    let stderr = child.stderr.take().expect("stderr");
    lines_until(BufReader::new(stderr), "new data directory").await
}

#[tokio::test]
async fn a_piped_log_has_no_colours_with_or_without_no_color() {
    for no_color in [None, Some("1")] {
        let log = piped_log(no_color).await;
        assert!(
            log.iter().all(|l| !l.contains(ESC)),
            "NO_COLOR={no_color:?}: escape codes in a piped log: {log:?}"
        );
        // The level is still there, as plain text.
        assert!(log.iter().any(|l| l.contains(" INFO ")), "{log:?}");
    }
}

/// `sluice serve` on a terminal (a pseudo-terminal made by util-linux's
/// `script`), with `NO_COLOR` as given: what the terminal showed up to
/// `new data directory`. `None` where `script` is not installed.
async fn terminal_log(no_color: Option<&str>) -> Option<Vec<String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = format!(
        "exec '{}' serve --addr 127.0.0.1:0 --data-dir '{}'",
        sluice_bin().display(),
        dir.path().display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &serve, "/dev/null"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    // Killing `script` on drop hangs its terminal up: the broker gets
    // SIGHUP and ends.
    let Ok(mut child) = cmd.spawn() else {
        eprintln!("skipped: no `script` (util-linux) to make a terminal");
        return None;
    };
    let stdout = child.stdout.take().expect("stdout");
    let log = lines_until(BufReader::new(stdout), "new data directory").await;
    drop(child);
    Some(log)
}

#[tokio::test]
async fn on_a_terminal_the_log_is_coloured_unless_no_color_is_set() {
    let Some(coloured) = terminal_log(None).await else {
        return;
    };
    assert!(
        coloured.iter().any(|l| l.contains(ESC)),
        "no colours on a terminal: {coloured:?}"
    );
    let Some(plain) = terminal_log(Some("1")).await else {
        return;
    };
    assert!(
        plain.iter().all(|l| !l.contains(ESC)),
        "colours on a terminal with NO_COLOR=1: {plain:?}"
    );
}

#[tokio::test]
async fn a_first_start_says_new_data_directory_and_a_restart_how_the_last_run_ended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8 path");
    let args = ["--addr", "127.0.0.1:0", "--data-dir", data_arg];
    let info = [("RUST_LOG", "info")];

    let mut b = Spawned::start_bare(&args, &info).await;
    let line = b.wait_log("new data directory").await;
    assert!(
        line.ends_with(&format!("new data directory {data_arg}")),
        "{line}"
    );
    assert!(
        b.log_lines().iter().all(|l| !l.contains("clean=")),
        "a first start has no previous run: {:?}",
        b.log_lines()
    );
    b.terminate();
    assert!(b.exited().await.success());

    // After a clean stop.
    let mut b = Spawned::start_bare(&args, &info).await;
    let line = b.wait_log("recovered").await;
    assert!(line.contains("clean=true"), "{line}");
    assert!(
        b.log_lines()
            .iter()
            .all(|l| !l.contains("new data directory")),
        "{:?}",
        b.log_lines()
    );

    // After a crash.
    b.kill().await;
    let b = Spawned::start_bare(&args, &info).await;
    let line = b.wait_log("recovered").await;
    assert!(line.contains("clean=false"), "{line}");
}
