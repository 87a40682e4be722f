//! The management UI in headless Chromium (skipped, saying so, when it is
//! not installed): a person's clicks and keystrokes, checked both on the
//! page and through the protocol, and screenshots of every view, saved
//! (to `$SLUICE_SCREENSHOTS`, or a temporary directory) and checked to be
//! real pictures of the viewport. The schemas view: versions added, shown
//! and deleted from the page.

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

/// A browser on the page of an open broker (no users), once it says so.
async fn open_page(chromium: &Path, url: &str) -> Browser {
    let mut b = Browser::launch(chromium).await;
    b.goto(url).await;
    b.wait_for(
        "document.getElementById('who').textContent === 'open broker (no users)'",
        "the page to say the broker is open",
    )
    .await;
    b
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
    c.ok("DECLARE QUEUE jobs", "OK jobs messages=0 consumers=0")
        .await;

    let mut b = Browser::launch(&chromium).await;
    b.goto(&url).await;
    shot(&mut b, &dir, "01-login.png").await;
    log_in(&mut b, "root", "root pw").await;

    // Some traffic over a few of the sampler's points, for the charts:
    // publishes, and gets that deliver and ack.
    for round in 0..4 {
        c.publish_n("jobs", 30 + 10 * round).await;
        c.send("GET jobs count=20 ack=auto").await;
        line_starting(&mut c, "OK ").await;
        let points =
            "(s => s ? Number(s.dataset.points) : 0)(document.querySelector('svg.timechart'))";
        let before = b.eval(points).await.as_u64().unwrap_or(0);
        b.wait_for(&format!("{points} > {before}"), "another point")
            .await;
    }
    // The overview: cards, and the charts with their points.
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

/// Reads lines from `c` until one starts with `prefix` (deliveries and
/// their bodies in between are skipped); the line.
async fn line_starting(c: &mut TestConn, prefix: &str) -> String {
    line_where(c, |l| l.starts_with(prefix), prefix).await
}

/// Reads lines from `c` until one passes `test`; the line.
async fn line_where(c: &mut TestConn, test: impl Fn(&str) -> bool, what: &str) -> String {
    for _ in 0..100 {
        let l = c.line().await;
        if test(&l) {
            return l;
        }
    }
    panic!("no line {what}");
}

#[tokio::test]
async fn on_an_open_broker_the_page_binds_seeks_closes_a_connection_and_adds_the_first_user() {
    let Some(chromium) = chromium() else {
        println!("skipped: chromium not installed (apt-get install chromium)");
        return;
    };
    let (dir, _keep) = shots_dir();
    let srv = server_with_http().await;
    let url = format!("http://{}/", srv.http.expect("http"));
    let mut c = srv.conn().await;
    c.ok("DECLARE QUEUE errors", "OK errors messages=0 consumers=0")
        .await;
    // A consumer group on a stream, one offset acked of the two held.
    let mut worker = srv.conn().await;
    worker
        .ok("HELLO name=worker-7", "OK sluice 0.1.0 proto=1")
        .await;
    worker
        .ok(
            "DECLARE QUEUE events type=stream",
            "OK events messages=0 consumers=0",
        )
        .await;
    worker.publish_n("events", 5).await;
    worker
        .ok(
            "SUB events group=billing offset=first prefetch=2 tag=b1",
            "OK b1",
        )
        .await;
    line_starting(&mut worker, "NOTICE active b1").await;
    worker.msg().await;
    assert!(worker.msg().await.0.starts_with("MSG b1 2 "));
    // The ack frees a prefetch slot: offset 3 may come before its OK.
    worker.send("ACK 1").await;
    assert_eq!(line_starting(&mut worker, "OK").await, "OK");

    let mut b = open_page(&chromium, &url).await;

    // An exchange, a binding made from the page, and taken away again.
    b.click("[data-tab=exchanges]").await;
    b.type_into("#new-exchange-name", "logs").await;
    b.eval("document.getElementById('new-exchange-type').value = 'topic'")
        .await;
    b.click("#new-exchange button[type=submit]").await;
    b.wait_for(
        "document.querySelector('[data-exchange=logs]')",
        "the exchange",
    )
    .await;
    b.type_into("#bind-queue", "errors").await;
    b.type_into("#bind-exchange", "logs").await;
    b.type_into("#bind-key", "*.error").await;
    b.click("#new-binding button[type=submit]").await;
    b.wait_for(
        "document.querySelector('[data-exchange=logs] tr[data-binding=\"errors *.error\"]')",
        "the binding",
    )
    .await;
    let (rows, table) = c.data("LIST BINDINGS logs").await;
    assert_eq!(rows, "1", "{table}");
    assert!(table.contains("logs      errors  *.error"), "{table}");
    shot(&mut b, &dir, "05-exchanges.png").await;
    b.click("[data-exchange=logs] tr[data-binding=\"errors *.error\"] button")
        .await;
    b.wait_for(
        "!document.querySelector('[data-exchange=logs] tr[data-binding]')",
        "the binding to go",
    )
    .await;
    assert_eq!(c.data("LIST BINDINGS logs").await.0, "0");

    // The stream's group: committed offset 2 (offset 1 acked), lag 4,
    // offsets 2 and 3 in flight, b1 active; then SEEK from the page.
    b.click("[data-tab=streams]").await;
    let row = b
        .wait_for(
            "(r => r && [...r.cells].map(c => c.textContent).join('|'))(document.querySelector('tr[data-group=billing]'))",
            "the group's row",
        )
        .await;
    // Its cells: group, committed, lag, lag in time (how long ago offset 2
    // was published: it varies), in flight, members, active.
    let row = row.as_str().unwrap_or_default();
    let cells: Vec<&str> = row.split('|').collect();
    assert_eq!(cells.len(), 7, "{row}");
    assert!(
        cells[3].ends_with(" s") || cells[3].ends_with(" min"),
        "{row}"
    );
    let fixed: Vec<&str> = cells
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(_, c)| *c)
        .collect();
    assert_eq!(fixed.join("|"), "billing|2|4|2|b1|b1", "{row}");
    shot(&mut b, &dir, "06-streams.png").await;
    b.type_into("[data-stream=events] input[placeholder=group]", "billing")
        .await;
    b.type_into("[data-stream=events] input.grow", "first")
        .await;
    b.click("[data-stream=events] button[type=submit]").await;
    b.wait_for(
        "document.getElementById('toast').textContent === 'OK offset=1'",
        "the SEEK's reply",
    )
    .await;
    // The active member reads again from offset 1, once it has prefetch
    // room (what it held before the SEEK counts no more, but holds room).
    worker.send("ACK 3 multiple").await;
    line_where(
        &mut worker,
        |l| l.starts_with("MSG b1 ") && l.contains(" offset=1 "),
        "delivering offset 1 again",
    )
    .await;

    // The worker's connection, with its client name; closed by the page.
    b.click("[data-tab=connections]").await;
    let sel = "tr[data-connection] td:nth-child(3)";
    b.wait_for(
        &format!(
            "[...document.querySelectorAll('{sel}')].some(td => td.textContent === 'worker-7')"
        ),
        "the worker's connection",
    )
    .await;
    shot(&mut b, &dir, "07-connections.png").await;
    let id = b
        .eval(&format!(
            "[...document.querySelectorAll('{sel}')].find(td => td.textContent === 'worker-7').parentElement.dataset.connection"
        ))
        .await;
    let id = id.as_str().expect("connection id").to_string();
    let close = format!("tr[data-connection='{id}'] button");
    b.click(&close).await;
    b.click(&close).await;
    assert_eq!(
        line_starting(&mut worker, "NOTICE").await,
        "NOTICE closing reason=closed-by-admin"
    );
    let mut rest = String::new();
    while worker.read_line_or_close(&mut rest).await {}
    b.wait_for(
        &format!("!document.querySelector(\"tr[data-connection='{id}']\")"),
        "the closed connection to go",
    )
    .await;

    // The first user, added from the page: from then on it needs a login.
    b.click("[data-tab=users]").await;
    b.type_into("#new-user-name", "root").await;
    b.type_into("#new-user-password", "root pw").await;
    b.click("#new-user-admin").await;
    shot(&mut b, &dir, "08-users.png").await;
    b.click("#new-user button[type=submit]").await;
    log_in(&mut b, "root", "root pw").await;
    b.click("[data-tab=users]").await;
    b.wait_for(
        "document.querySelector('tr[data-user=root]')",
        "the user row",
    )
    .await;
    c.ok("AUTH root \"root pw\"", "OK root").await;
}

#[tokio::test]
async fn the_schemas_view_adds_shows_and_deletes_versions_and_subjects() {
    let Some(chromium) = chromium() else {
        println!("skipped: chromium not installed (apt-get install chromium)");
        return;
    };
    const V1: &str = r#"{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}"#;
    const BREAKS: &str = r#"{"type":"object","required":["id","total"]}"#;
    let (dir, _keep) = shots_dir();
    let srv = server_with_http().await;
    let url = format!("http://{}/", srv.http.expect("http"));
    let mut c = srv.conn().await;
    let mut b = open_page(&chromium, &url).await;

    // A first version, added from the page, then shown.
    b.click("[data-tab=schemas]").await;
    b.type_into("#new-schema-subject", "orders").await;
    b.type_into("#new-schema-text", V1).await;
    b.click("#new-schema-submit").await;
    b.wait_for(
        "document.querySelector('[data-subject=orders] tr[data-version=\"1\"]')",
        "version 1 of orders",
    )
    .await;
    assert_eq!(
        b.eval("document.getElementById('new-schema-result').textContent")
            .await,
        "OK orders version=1"
    );
    let (words, body) = c.data("SCHEMA GET orders").await;
    assert_eq!(
        (words.as_str(), body.as_str()),
        ("orders version=1 compat=backward", V1)
    );
    b.wait_for(
        "document.getElementById('schema-detail').dataset.shown === 'orders:1'",
        "version 1 shown",
    )
    .await;
    let shown = b
        .eval("JSON.parse(document.getElementById('schema-text').textContent)")
        .await;
    assert_eq!(
        shown,
        serde_json::from_str::<serde_json::Value>(V1).expect("json")
    );

    // A break of the rule is refused, with the broker's code and reason.
    b.type_into("#new-schema-text", BREAKS).await;
    b.click("#new-schema-submit").await;
    let code = b
        .wait_for(
            "document.getElementById('new-schema-result').dataset.code",
            "the refusal",
        )
        .await;
    assert_eq!(code, "PRECONDITION");
    // Under compat=none it goes in as version 2.
    b.eval("document.getElementById('new-schema-compat').value = 'none'")
        .await;
    b.click("#new-schema-submit").await;
    b.wait_for(
        "document.querySelector('[data-subject=orders] tr[data-version=\"2\"]') && \
         document.querySelector('[data-subject=orders] [data-compat]').textContent === 'none'",
        "version 2 under compat=none",
    )
    .await;
    // Version 1 again, from its row.
    b.click("[data-show=\"orders:1\"]").await;
    b.wait_for(
        "document.getElementById('schema-detail').dataset.shown === 'orders:1'",
        "version 1 shown again",
    )
    .await;

    // In use by a queue: the page says so, and the subject cannot go.
    c.ok(
        "DECLARE QUEUE q schema=orders",
        "OK q messages=0 consumers=0",
    )
    .await;
    b.wait_for(
        "document.querySelector('[data-subject=orders] [data-used-by=\"queue:q\"]')",
        "the queue among the users",
    )
    .await;
    shot(&mut b, &dir, "09-schemas.png").await;
    b.click("[data-delete-subject=orders]").await;
    b.click("[data-delete-subject=orders]").await;
    b.wait_for(
        "document.getElementById('toast').dataset.code === 'PRECONDITION'",
        "the delete's refusal",
    )
    .await;
    let (words, _) = c.data("SCHEMA GET orders version=1").await;
    assert_eq!(words, "orders version=1 compat=none");
    // One version can go (the shown one: its view closes).
    b.click("[data-delete-version=\"orders:1\"]").await;
    b.click("[data-delete-version=\"orders:1\"]").await;
    b.wait_for(
        "!document.querySelector('[data-subject=orders] tr[data-version=\"1\"]') && \
         document.getElementById('schema-detail').hidden",
        "version 1 to go",
    )
    .await;
    c.err("SCHEMA GET orders version=1", "NOT_FOUND").await;
    // With the queue gone, the whole subject.
    c.ok("DELETE QUEUE q", "OK messages=0").await;
    b.wait_for(
        "!document.querySelector('[data-subject=orders] [data-used-by]')",
        "the queue to leave the users",
    )
    .await;
    b.click("[data-delete-subject=orders]").await;
    b.click("[data-delete-subject=orders]").await;
    b.wait_for(
        "!document.querySelector('[data-subject=orders]')",
        "the subject to go",
    )
    .await;
    c.err("SCHEMA GET orders", "NOT_FOUND").await;
}
