//! The dashboard in a real browser (headless Chromium, when installed), and
//! `sluice serve --http` as a process: its `http on` line and its bind
//! errors.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::web::chromium;
use crate::common::{sluice_bin, TestServer, DEADLINE};

/// Loads `url` in headless Chromium, lets the page run for `virtual_ms`
/// of (virtual) time, and returns the DOM it rendered.
async fn dump_dom(browser: &PathBuf, url: &str, virtual_ms: u64) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--virtual-time-budget={virtual_ms}"))
            .arg("--dump-dom")
            .arg(url)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium did not finish in time")
    .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `<tr ...>` of queue `name` and everything up to its `</tr>`.
fn queue_row<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("<tr data-queue=\"{name}\""))
        .unwrap_or_else(|| panic!("no row for {name} in\n{dom}"));
    let end = dom[start..].find("</tr>").expect("row end") + start;
    &dom[start..end]
}

fn attr<'a>(html: &'a str, name: &str) -> &'a str {
    let key = format!("{name}=\"");
    let at = html
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + key.len();
    let end = html[at..].find('"').expect("attribute end") + at;
    &html[at..end]
}

#[tokio::test]
async fn the_dashboard_shows_queues_with_sparklines_and_follows_them() {
    let Some(browser) = chromium() else {
        println!("skipped: chromium not installed (apt-get install chromium)");
        return;
    };
    let srv = TestServer::start_with(|c| c.http = Some(([127, 0, 0, 1], 0).into())).await;
    let url = format!("http://{}/", srv.http.expect("http"));
    let mut c = srv.conn().await;
    c.ok(
        "DECLARE QUEUE orders durable",
        "OK orders messages=0 consumers=0",
    )
    .await;
    c.ok("DECLARE QUEUE emails", "OK emails messages=0 consumers=0")
        .await;
    c.publish_n("orders", 7).await;

    let totals = dump_dom(&browser, &url, 2500).await;
    assert!(totals.contains("data-total=\"messages\""), "totals missing");
    let url = format!("{url}#queues");
    let dom = dump_dom(&browser, &url, 3500).await;
    let row = queue_row(&dom, "orders");
    assert_eq!(attr(row, "data-messages"), "7", "{row}");
    assert!(row.contains("<svg class=\"sparkline\""), "{row}");
    assert!(attr(row, "data-values").ends_with('7'), "{row}");
    assert_eq!(attr(queue_row(&dom, "emails"), "data-messages"), "0");
    // The page polled more than once in its (virtual) seconds.
    let polls: u32 = attr(&dom, "data-polls").parse().expect("polls");
    assert!(polls >= 2, "the page polled {polls} times");

    // Once the broker has sampled depth 7, more traffic: the next look
    // shows the new depth, and the sparkline goes from 7 to 12.
    let http = srv.http.expect("http");
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (_, _, body) = crate::common::http_request(http, "GET", "/api/overview").await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let sampled = v["queues"]
            .as_array()
            .and_then(|qs| qs.iter().find(|q| q["name"] == "orders"))
            .and_then(|q| q["depth_history"].as_array())
            .is_some_and(|h| h.iter().any(|d| d == 7));
        if sampled {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "depth 7 never sampled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.publish_n("orders", 5).await;
    let dom = dump_dom(&browser, &url, 2500).await;
    let row = queue_row(&dom, "orders");
    assert_eq!(attr(row, "data-messages"), "12", "{row}");
    let values: Vec<u64> = attr(row, "data-values")
        .split(',')
        .map(|v| v.parse().expect("value"))
        .collect();
    assert!(values.contains(&7), "{values:?}");
    assert_eq!(values.last(), Some(&12), "{values:?}");
}

/// `sluice serve --http 127.0.0.1:0` as a process: the lines on stdout.
async fn serve_lines(args: &[&str]) -> (tokio::process::Child, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(sluice_bin())
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sluice");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut out = Vec::new();
    while out.len() < 2 {
        match tokio::time::timeout(DEADLINE * 3, lines.next_line()).await {
            Ok(Ok(Some(l))) => out.push(l),
            _ => break,
        }
    }
    (child, out)
}

#[tokio::test]
async fn serve_prints_the_http_address_after_the_listening_line() {
    let (mut child, lines) = serve_lines(&["--http", "127.0.0.1:0"]).await;
    assert!(lines[0].starts_with("listening on 127.0.0.1:"), "{lines:?}");
    let http: std::net::SocketAddr = lines
        .get(1)
        .and_then(|l| l.strip_prefix("http on "))
        .unwrap_or_else(|| panic!("no http line: {lines:?}"))
        .parse()
        .expect("http address");
    let (status, _, body) = crate::common::http_request(http, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("sluice_connections 0"));
    child.kill().await.expect("kill");
}

#[tokio::test]
async fn an_http_address_in_use_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tokio::time::timeout(
        DEADLINE * 3,
        Command::new(sluice_bin())
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(["--http", &addr])
            .env("RUST_LOG", "warn")
            .output(),
    )
    .await
    .expect("sluice did not exit")
    .expect("run sluice");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("serving HTTP (--http) on {addr}")) && err.contains("in use"),
        "{err}"
    );
}
