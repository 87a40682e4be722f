//! TLS on the second port (`--tls-cert`/`--tls-key`/`--tls-addr`), with a
//! certificate generated at test time (rcgen): the same protocol over TLS,
//! a plain client on the TLS port told so in plain text and closed, a
//! silent one told after the handshake timeout, the CLI naming the port it
//! reached with the wrong transport either way, one connection budget for
//! both ports, and clear start-up errors for bad certificate files.

use std::time::Duration;

use sluice::client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::cert::Cert;
use crate::common::cli_run::cli;
use crate::common::spawned::Spawned;
use crate::common::{sluice_bin, TestServer, DEADLINE};

async fn tls_client(srv: &TestServer, cert: &Cert) -> Client {
    let addr = srv.tls_addr.expect("TLS port");
    tokio::time::timeout(
        DEADLINE,
        Client::connect_tls(addr, "localhost", &cert.client()),
    )
    .await
    .expect("TLS connect in time")
    .expect("TLS connect")
}

/// Reads until the server closes; what it sent.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let r = tokio::time::timeout(DEADLINE, s.read_to_end(&mut got))
        .await
        .expect("the server did not close the connection in time");
    // A reset is a close too.
    let _ = r;
    got
}

#[tokio::test]
async fn publish_and_consume_over_tls() {
    let cert = Cert::new();
    let srv = TestServer::start_with(|c| c.tls = Some(cert.files())).await;
    let mut publisher = tls_client(&srv, &cert).await;
    assert!(publisher.greeting.starts_with("HELLO sluice "));
    publisher
        .request("DECLARE QUEUE jobs durable", None)
        .await
        .expect("declare");
    let mut consumer = tls_client(&srv, &cert).await;
    consumer
        .request("SUB jobs prefetch=10", None)
        .await
        .expect("sub");
    // A body larger than a TLS record (16 KiB) and a few small ones.
    let big = vec![b'x'; 100_000];
    publisher
        .publish("", "jobs", "persistent", &big)
        .await
        .expect("publish big");
    for i in 0..10 {
        publisher
            .publish("", "jobs", "", format!("m{i}").as_bytes())
            .await
            .expect("publish");
    }
    let first = tokio::time::timeout(DEADLINE, consumer.next_delivery())
        .await
        .expect("delivery in time")
        .expect("delivery");
    assert_eq!(first.body.len(), big.len());
    consumer
        .request(&format!("ACK {}", first.delivery_tag), None)
        .await
        .expect("ack");
    for i in 0..10 {
        let d = tokio::time::timeout(DEADLINE, consumer.next_delivery())
            .await
            .expect("delivery in time")
            .expect("delivery");
        assert_eq!(&d.body[..], format!("m{i}").as_bytes());
        consumer
            .request(&format!("ACK {}", d.delivery_tag), None)
            .await
            .expect("ack");
    }
    // The plain port serves the same broker.
    let mut plain = srv.conn().await;
    plain
        .ok(
            "DECLARE QUEUE jobs durable",
            "OK jobs messages=0 consumers=1",
        )
        .await;
}

/// What a client that does not speak TLS reads on the TLS port.
const PLAIN_ON_TLS: &str = "ERR BAD_FRAME this is a TLS port, not plain text: connect with TLS (sluice --tls, openssl s_client) or to the plain-text port\r\n";

#[tokio::test]
async fn a_plain_client_on_the_tls_port_is_told_so_and_closed() {
    let cert = Cert::new();
    let srv = TestServer::start_with(|c| c.tls = Some(cert.files())).await;
    let mut s = TcpStream::connect(srv.tls_addr.expect("TLS port"))
        .await
        .expect("connect");
    s.write_all(b"PING\r\n").await.expect("write");
    let got = read_to_close(&mut s).await;
    // The mismatch, in plain text, and nothing of the protocol itself.
    assert_eq!(String::from_utf8_lossy(&got), PLAIN_ON_TLS);
    // The server goes on.
    let _ = tls_client(&srv, &cert).await;
}

#[tokio::test]
async fn a_silent_client_on_the_tls_port_is_told_after_the_handshake_timeout() {
    let cert = Cert::new();
    let srv = TestServer::start_with(|c| {
        c.tls = Some(cert.files());
        c.frame_timeout = Duration::from_millis(200);
    })
    .await;
    let mut s = TcpStream::connect(srv.tls_addr.expect("TLS port"))
        .await
        .expect("connect");
    let started = std::time::Instant::now();
    let got = read_to_close(&mut s).await;
    // A plain-text client waiting for a greeting learns why none comes.
    assert_eq!(String::from_utf8_lossy(&got), PLAIN_ON_TLS);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn the_cli_names_the_port_it_reached_with_the_wrong_transport() {
    let cert = Cert::new();
    let srv = TestServer::start_with(|c| {
        c.tls = Some(cert.files());
        // The CLI waits for a greeting in silence: told at this bound.
        c.frame_timeout = Duration::from_millis(300);
    })
    .await;
    let tls_addr = srv.tls_addr.expect("TLS port");
    // Plain text to the TLS port.
    let r = cli(tls_addr, &["get", "q"]).await;
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr
            .contains("BAD_FRAME this is a TLS port, not plain text"),
        "{r:?}"
    );
    // TLS to the plain port.
    let ca = cert.cert();
    let r = cli(
        srv.addr,
        &[
            "get",
            "q",
            "--tls-ca",
            ca.to_str().expect("utf-8 path"),
            "--tls-server-name",
            "localhost",
        ],
    )
    .await;
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains("the server did not answer in TLS")
            && r.stderr.contains("this looks like a plain-text port"),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_fails_its_handshake() {
    let cert = Cert::new();
    let other = Cert::new();
    let srv = TestServer::start_with(|c| c.tls = Some(cert.files())).await;
    let addr = srv.tls_addr.expect("TLS port");
    let e = Client::connect_tls(addr, "localhost", &other.client())
        .await
        .expect_err("an untrusted certificate");
    let chain = format!("{:#}", anyhow::Error::new(e));
    assert!(chain.contains("certificate"), "{chain}");
    // Nor does a name the certificate does not carry.
    let e = Client::connect_tls(addr, "example.com", &cert.client())
        .await
        .expect_err("a wrong name");
    let chain = format!("{:#}", anyhow::Error::new(e));
    assert!(chain.contains("certificate"), "{chain}");
}

#[tokio::test]
async fn both_ports_share_one_connection_budget() {
    let cert = Cert::new();
    let srv = TestServer::start_with(|c| {
        c.tls = Some(cert.files());
        c.max_connections = 1;
    })
    .await;
    let mut tls = tls_client(&srv, &cert).await;
    let mut plain = TcpStream::connect(srv.addr).await.expect("connect");
    let got = String::from_utf8_lossy(&read_to_close(&mut plain).await).into_owned();
    assert!(got.starts_with("ERR LIMIT "), "{got:?}");
    tls.request("PING", None)
        .await
        .expect("the TLS client goes on");
}

#[tokio::test]
async fn serve_prints_the_tls_port_and_serves_it() {
    let cert = Cert::new();
    let mut args = vec!["--in-memory".to_owned()];
    args.extend(cert.serve_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = Spawned::start(&args).await;
    let addr = b.tls_addr().await;
    let mut client = Client::connect_tls(addr, "localhost", &cert.client())
        .await
        .expect("TLS connect");
    let r = client.request("PING", None).await.expect("PING");
    assert_eq!(r.words, ["pong"]);
}

/// `sluice serve` with `args`: its exit status and stderr (it must exit
/// by itself, quickly).
async fn serve_fails(args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(sluice_bin())
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("sluice serve did not exit in time")
    .expect("run sluice");
    assert!(!out.status.success(), "serve {args:?} should fail");
    assert!(out.stdout.is_empty(), "nothing listens: {:?}", out.stdout);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn bad_certificate_files_are_a_clear_startup_error() {
    let cert = Cert::new();
    let key = cert.key();
    let key = key.to_str().expect("utf-8 path");
    let missing = cert.dir.path().join("missing.pem");
    let missing = missing.to_str().expect("utf-8 path");
    let err = serve_fails(&["--tls-cert", missing, "--tls-key", key]).await;
    assert!(
        err.contains("missing.pem") && err.contains("cannot read"),
        "{err}"
    );
    // A key where the certificate should be.
    let err = serve_fails(&["--tls-cert", key, "--tls-key", key]).await;
    assert!(
        err.contains("key.pem") && err.contains("no certificate"),
        "{err}"
    );
    // A key that is not the certificate's.
    let other = Cert::new();
    let other_key = other.key();
    let c = cert.cert();
    let err = serve_fails(&[
        "--tls-cert",
        c.to_str().expect("utf-8 path"),
        "--tls-key",
        other_key.to_str().expect("utf-8 path"),
    ])
    .await;
    assert!(err.contains("cert.pem"), "{err}");
    // One without the other.
    let err = serve_fails(&["--tls-key", key]).await;
    assert!(err.contains("--tls-cert"), "{err}");
}
