//! The `sluice` command-line client run as a child process: its exit code,
//! stdout and stderr, as a script would see them.

use std::net::SocketAddr;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{sluice_bin, DEADLINE};

/// What a CLI run left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Each stdout line as JSON.
    pub fn json_lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
}

/// `sluice <args> -s <addr>`, fed `stdin`, with the environment's
/// `SLUICE_*` removed so that only the arguments count.
pub fn command(addr: SocketAddr, args: &[&str]) -> Command {
    let mut c = Command::new(sluice_bin());
    c.args(args)
        .arg("-s")
        .arg(addr.to_string())
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_USER")
        .env_remove("SLUICE_PASSWORD")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    c
}

pub async fn cli_in(addr: SocketAddr, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = command(addr, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).await.expect("write stdin");
    drop(input);
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("sluice {args:?} did not finish"))
        .expect("wait");
    Run {
        code: out.status.code().expect("exit code, not a signal"),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub async fn cli(addr: SocketAddr, args: &[&str]) -> Run {
    cli_in(addr, args, b"").await
}

/// `sluice <args>` with no `-s` added and the environment's `SLUICE_*`
/// removed, then `env` set: for tests of where the options go.
pub async fn cli_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(sluice_bin());
    c.args(args)
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_USER")
        .env_remove("SLUICE_PASSWORD")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(DEADLINE, c.output())
        .await
        .unwrap_or_else(|_| panic!("sluice {args:?} did not finish"))
        .expect("run sluice");
    Run {
        code: out.status.code().expect("exit code, not a signal"),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
