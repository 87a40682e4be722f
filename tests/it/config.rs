//! `sluice serve --config FILE`: a TOML file of settings, overridden by
//! `SLUICE_*` environment variables, overridden by flags; `--print-config`.

use std::process::Stdio;

use crate::common::spawned::Spawned;
use crate::common::{sluice_bin, TestConn};

/// A config file in a fresh directory that also holds the data directory.
fn config_file(extra: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let text = format!(
        "# sluice test config\naddr = \"127.0.0.1:0\"\ndata-dir = \"{}\"\n{extra}",
        data.display()
    );
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, text).expect("write config");
    let path = path.to_str().expect("utf-8 path").to_owned();
    (dir, path)
}

/// A 200-byte command line: over a 100-byte `max-line`, under 1000.
fn long_line() -> String {
    format!("PING {}", "x".repeat(195))
}

#[tokio::test]
async fn the_file_sets_the_broker_up_and_the_environment_overrides_it() {
    let (dir, path) = config_file("max-line = 100\n");
    let b = Spawned::start_bare(&["--config", &path], &[]).await;
    let mut c = TestConn::connect(b.addr).await;
    c.err(&long_line(), "LINE_TOO_LONG").await;
    assert!(
        dir.path().join("data").is_dir(),
        "the data directory comes from the file"
    );
    drop(b);

    let b = Spawned::start_bare(&["--config", &path], &[("SLUICE_MAX_LINE", "1000")]).await;
    let mut c = TestConn::connect(b.addr).await;
    // Not too long any more: PING takes no arguments.
    c.err(&long_line(), "SYNTAX").await;
    drop(b);

    // A flag beats the environment.
    let b = Spawned::start_bare(
        &["--config", &path, "--max-line", "100"],
        &[("SLUICE_MAX_LINE", "1000")],
    )
    .await;
    let mut c = TestConn::connect(b.addr).await;
    c.err(&long_line(), "LINE_TOO_LONG").await;
}

#[tokio::test]
async fn print_config_shows_each_value_and_where_it_came_from() {
    let (_dir, path) = config_file("frame-timeout = 5000\nmax-line = 100\n");
    let out = tokio::process::Command::new(sluice_bin())
        .args([
            "serve",
            "--config",
            &path,
            "--print-config",
            "--max-literal",
            "1024",
        ])
        .env("SLUICE_MAX_LINE", "2048")
        .stdout(Stdio::piped())
        .output()
        .await
        .expect("run sluice");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    for want in [
        format!("frame-timeout = 5000  # file {path}"),
        "max-line = 2048  # environment SLUICE_MAX_LINE".to_owned(),
        "max-literal = 1024  # flag --max-literal".to_owned(),
        "default-prefetch = 100  # default".to_owned(),
        "addr = \"127.0.0.1:0\"".to_owned(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
}

#[tokio::test]
async fn a_wrong_file_is_a_clear_error() {
    let (_dir, path) = config_file("max-lines = 100\n");
    let out = tokio::process::Command::new(sluice_bin())
        .args(["serve", "--config", &path])
        .output()
        .await
        .expect("run sluice");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&path) && err.contains("unknown setting `max-lines`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_bad_environment_value_names_the_variable() {
    let out = tokio::process::Command::new(sluice_bin())
        .args(["serve", "--addr", "127.0.0.1:0", "--in-memory"])
        .env("SLUICE_MAX_CONNECTIONS", "lots")
        .output()
        .await
        .expect("run sluice");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the environment variable SLUICE_MAX_CONNECTIONS")
            && err.contains("'lots'")
            && err.contains("--max-connections"),
        "{err}"
    );
}

#[tokio::test]
async fn print_config_labels_a_key_spelled_with_underscores_as_from_the_file() {
    let (_dir, path) = config_file("max_line = 100\nframe_timeout = 5000\n");
    let out = tokio::process::Command::new(sluice_bin())
        .args(["serve", "--config", &path, "--print-config"])
        .env_remove("SLUICE_MAX_LINE")
        .env_remove("SLUICE_FRAME_TIMEOUT")
        .stdout(Stdio::piped())
        .output()
        .await
        .expect("run sluice");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    for want in [
        format!("max-line = 100  # file {path}"),
        format!("frame-timeout = 5000  # file {path}"),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
}
