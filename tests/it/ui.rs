//! The management UI in headless Chromium (skipped, saying so, when it is
//! not installed): a person's clicks and keystrokes, checked both on the
//! page and through the protocol, and screenshots of every view, saved
//! (to `$SLUICE_SCREENSHOTS`, or a temporary directory) and checked to be
//! real pictures of the viewport.

use std::path::{Path, PathBuf};

use crate::common::web::{chromium, png_size, Browser, VIEWPORT};
use crate::common::{TestConn, TestServer};

/// Where screenshots go: `$SLUICE_SCREENSHOTS` (kept), else a temporary
/// directory (removed with the guard).
fn shots_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("SLUICE_SCREENSHOTS") {
        Some(d) => {
            let d = PathBuf::from(d);
            std::fs::create_dir_all(&d).expect("screenshot dir");
            (d, None)
        }
        None => {
            let t = tempfile::tempdir().expect("screenshot dir");
            (t.path().to_path_buf(), Some(t))
        }
    }
}

/// Takes a screenshot and checks that it is a PNG of the whole viewport
/// with something on it (a blank page compresses to a few hundred bytes).
async fn shot(b: &mut Browser, dir: &Path, name: &str) {
    let png = b.screenshot(dir, name).await;
    assert_eq!(
        png_size(&png),
        Some(VIEWPORT),
        "{name} is not a viewport PNG"
    );
    assert!(
        png.len() > 20_000,
        "{name} is nearly empty: {} bytes",
        png.len()
    );
}

async fn server_with_http() -> TestServer {
    TestServer::start_with(|c| c.http = Some(([127, 0, 0, 1], 0).into())).await
}

async fn log_in(b: &mut Browser, user: &str, password: &str) {
    b.wait_for("!document.getElementById('login').hidden", "the login form")
        .await;
    b.type_into("#login-user", user).await;
    b.type_into("#login-password", password).await;
    b.click("#login-submit").await;
    let who = format!(
        "(document.getElementById('who-name') || {{}}).textContent === {}",
        serde_json::to_string(user).expect("name")
    );
    b.wait_for(&who, &format!("to be logged in as {user}"))
        .await;
}

/// `messages_ready` of `queue`, through the protocol.
async fn ready(c: &mut TestConn, queue: &str) -> u64 {
    let (_, text) = c.data(&format!("STATS QUEUE {queue}")).await;
    text.lines()
        .find_map(|l| l.strip_prefix("messages_ready"))
        .and_then(|v| v.trim().parse().ok())
        .expect("messages_ready")
}

#[tokio::test]
async fn a_user_logs_in_creates_a_queue_publishes_and_purges_and_a_reader_is_forbidden() {
    let Some(chromium) = chromium() else {
        println!("skipped: chromium not installed (apt-get install chromium)");
        return;
    };
    let (dir, _keep) = shots_dir();
    let srv = server_with_http().await;
    let url = format!("http://{}/", srv.http.expect("http"));
    let mut c = srv.conn().await;
    c.ok("USER ADD root \"root pw\" admin", "OK").await;
    c.ok("AUTH root \"root pw\"", "OK root").await;
    c.ok(
        "USER ADD reader r3ad configure=\"\" write=\"\" read=.*",
        "OK",
    )
    .await;
    // Some traffic, for the charts.
    c.ok("DECLARE QUEUE jobs", "OK jobs messages=0 consumers=0")
        .await;
    c.publish_n("jobs", 20).await;

    let mut b = Browser::launch(&chromium).await;
    b.goto(&url).await;
    shot(&mut b, &dir, "01-login.png").await;
    log_in(&mut b, "root", "root pw").await;

    // The overview: cards, and the charts once the sampler has two points.
    b.wait_for(
        "[...document.querySelectorAll('svg.timechart')].length === 3 && \
         [...document.querySelectorAll('svg.timechart')].every(s => Number(s.dataset.points) >= 3)",
        "three charts with points",
    )
    .await;
    let series = b
        .eval("[...document.querySelectorAll('#chart-rates polyline')].map(p => p.dataset.series).join(',')")
        .await;
    assert_eq!(series, "publish,deliver,ack");
    shot(&mut b, &dir, "02-overview.png").await;

    // Create a queue from the page.
    b.click("[data-tab=queues]").await;
    b.type_into("#new-queue-name", "orders").await;
    b.click("#new-queue-submit").await;
    b.wait_for(
        "document.querySelector('tr[data-queue=orders]') && document.getElementById('queue-detail').dataset.queue === 'orders'",
        "the new queue's row and drill-down",
    )
    .await;
    c.ok(
        "DECLARE QUEUE orders durable",
        "OK orders messages=0 consumers=0",
    )
    .await;

    // Publish into it, three times, and watch the depth change.
    b.type_into("#publish-body", "hello from the page").await;
    for _ in 0..3 {
        b.click("#publish-submit").await;
        b.wait_for(
            "document.getElementById('toast').textContent.includes('routed=1')",
            "the publish's confirm",
        )
        .await;
        b.eval("document.getElementById('toast').textContent = ''")
            .await;
    }
    b.wait_for(
        "document.querySelector('tr[data-queue=orders]').dataset.messages === '3'",
        "the depth to show 3",
    )
    .await;
    assert_eq!(ready(&mut c, "orders").await, 3);
    b.click("#peek-button").await;
    let bodies = b
        .wait_for(
            "[...document.querySelectorAll('#detail-messages-list .msg pre')].map(p => p.textContent).join('|')",
            "peeked messages",
        )
        .await;
    assert_eq!(bodies, "hello from the page");
    shot(&mut b, &dir, "03-queue.png").await;

    // Purge: the first click arms the button, the second purges.
    b.click("#purge-button").await;
    b.wait_for(
        "document.getElementById('purge-button').textContent === 'Really purge?'",
        "the purge button to ask",
    )
    .await;
    assert_eq!(
        ready(&mut c, "orders").await,
        3,
        "purged on the first click"
    );
    b.click("#purge-button").await;
    b.wait_for(
        "document.querySelector('tr[data-queue=orders]').dataset.messages === '0'",
        "the depth to show 0",
    )
    .await;
    assert_eq!(ready(&mut c, "orders").await, 0);
    let result = b
        .eval("document.getElementById('detail-result').textContent")
        .await;
    assert_eq!(result, "OK messages=3");

    // A reader may look but not purge: FORBIDDEN on the page, nothing
    // purged, and no Users tab.
    c.publish_n("orders", 2).await;
    b.click("#logout").await;
    log_in(&mut b, "reader", "r3ad").await;
    assert_eq!(
        b.eval("document.querySelector('[data-tab=users]').hidden")
            .await,
        true
    );
    b.click("[data-tab=queues]").await;
    b.click("[data-open=orders]").await;
    b.click("#purge-button").await;
    b.click("#purge-button").await;
    let code = b
        .wait_for(
            "document.getElementById('detail-result').dataset.code",
            "the purge's error",
        )
        .await;
    assert_eq!(code, "FORBIDDEN");
    let text = b.eval("document.getElementById('toast').textContent").await;
    assert!(
        text.as_str().is_some_and(
            |t| t.contains("PURGE needs configure permission on queue 'orders' (user reader)")
        ),
        "{text}"
    );
    assert_eq!(ready(&mut c, "orders").await, 2);
    shot(&mut b, &dir, "04-forbidden.png").await;
    println!("screenshots in {}", dir.display());
}
