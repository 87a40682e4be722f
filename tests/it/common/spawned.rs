//! The real `sluice` binary as a child process, for tests that need a
//! process of their own: its RSS and CPU time read from `/proc`, its own
//! file-descriptor limit, its log lines.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{sluice_bin, DEADLINE};

/// A `sluice serve` child on a fresh data directory, killed on drop.
pub struct Spawned {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every line it wrote to stderr so far (collected by a task, so the
    /// pipe never fills).
    log: Arc<Mutex<Vec<String>>>,
    /// The lines it wrote to stdout after the first (`listening tls on`).
    stdout: Arc<Mutex<Vec<String>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Spawned {
    /// `sluice serve --addr 127.0.0.1:0 --data-dir <tmp> <args>` with
    /// `RUST_LOG=warn`.
    pub async fn start(args: &[&str]) -> Spawned {
        Self::start_under(&[], args).await
    }

    /// The same, run through `wrapper` (e.g. `["prlimit", "--nofile=64:64", "--"]`).
    pub async fn start_under(wrapper: &[&str], args: &[&str]) -> Spawned {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = Self::launch(wrapper, Some(dir.path()), args, &[]).await;
        b._dir = Some(dir);
        b
    }

    /// The same on a given data directory (which outlives the process).
    pub async fn start_in(dir: &std::path::Path, args: &[&str]) -> Spawned {
        Self::launch(&[], Some(dir), args, &[]).await
    }

    /// [`Spawned::start_in`] with extra environment variables.
    pub async fn start_in_env(
        dir: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Spawned {
        Self::launch(&[], Some(dir), args, env).await
    }

    /// `sluice serve <args>` and nothing else (no `--addr`, no
    /// `--data-dir`: a config file or the environment gives them), with
    /// extra environment variables.
    pub async fn start_bare(args: &[&str], env: &[(&str, &str)]) -> Spawned {
        Self::launch(&[], None, args, env).await
    }

    async fn launch(
        wrapper: &[&str],
        dir: Option<&std::path::Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Spawned {
        match Self::try_launch(wrapper, dir, args, env).await {
            Ok(b) => b,
            Err((status, log)) => {
                panic!("sluice exited before listening ({status:?}): {log:?}")
            }
        }
    }

    /// `sluice serve --addr 127.0.0.1:0 --data-dir <dir> <args>`, which may
    /// refuse to start: then its exit status and log.
    pub async fn try_start_in(
        dir: &std::path::Path,
        args: &[&str],
    ) -> Result<Spawned, (std::process::ExitStatus, Vec<String>)> {
        Self::try_launch(&[], Some(dir), args, &[]).await
    }

    async fn try_launch(
        wrapper: &[&str],
        dir: Option<&std::path::Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Spawned, (std::process::ExitStatus, Vec<String>)> {
        let mut cmd = match wrapper.split_first() {
            Some((prog, rest)) => {
                let mut c = Command::new(prog);
                c.args(rest).arg(sluice_bin());
                c
            }
            None => Command::new(sluice_bin()),
        };
        cmd.arg("serve");
        if let Some(dir) = dir {
            cmd.args(["--addr", "127.0.0.1:0", "--data-dir"]).arg(dir);
        }
        // SLUICE_TEST_LOG: another filter for the broker's log, to debug a
        // test (e.g. `sluice::broker::alarm=trace`).
        let filter = std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "warn".into());
        cmd.args(args)
            .env("RUST_LOG", filter)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn sluice");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        // The process id tells apart the logs of the nodes of a cluster.
        let pid = child.id().unwrap_or(0);
        let log_reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[sluice {pid}] {line}");
                sink.lock().expect("log lock").push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(DEADLINE * 3, lines.next_line())
            .await
            .expect("no listening line in time")
            .expect("read stdout");
        let Some(first) = first else {
            let status = tokio::time::timeout(DEADLINE, child.wait())
                .await
                .expect("sluice closed its stdout but did not exit")
                .expect("wait");
            let _ = tokio::time::timeout(DEADLINE, log_reader).await;
            let log = log.lock().expect("log lock").clone();
            return Err((status, log));
        };
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .expect("listening address");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let sink = stdout.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("stdout lock").push(line);
            }
        });
        Ok(Spawned {
            child,
            addr,
            log,
            stdout,
            _dir: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("broker has exited")
    }

    /// Resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// User plus system CPU time so far, in clock ticks (1/100 s).
    pub fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("read /proc stat");
        let rest = stat.rsplit_once(')').expect("stat format").1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime: fields 14 and 15 of the line, 12 and 13 after the name.
        f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
    }

    /// Fails the test if the process has exited.
    pub fn assert_alive(&mut self, when: &str) {
        let status = self.child.try_wait().expect("try_wait");
        assert!(status.is_none(), "broker exited {when}: {status:?}");
    }

    /// Waits (up to the deadline) for the process to exit by itself.
    pub async fn exited(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("broker did not exit in time")
            .expect("wait")
    }

    /// SIGKILL, and wait for it.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill");
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, ...).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid");
        // SAFETY: kill(2) has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "signal {signal} failed");
    }

    /// Sends SIGTERM (no wait).
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid");
        // SAFETY: kill(2) has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM failed");
    }

    /// Waits up to `within` for the process to exit by itself; `None` if
    /// it is still running then.
    pub async fn exited_within(
        &mut self,
        within: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()
            .map(|s| s.expect("wait"))
    }

    /// Every log line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits (up to the deadline) for a stderr line containing `needle`.
    pub async fn wait_log(&self, needle: &str) -> String {
        wait_line(&self.log, needle, "log").await
    }

    /// Waits (up to the deadline) for a stdout line after the first
    /// containing `needle`.
    pub async fn wait_stdout(&self, needle: &str) -> String {
        wait_line(&self.stdout, needle, "stdout").await
    }

    /// The TLS port, from the `listening tls on HOST:PORT` line.
    pub async fn tls_addr(&self) -> SocketAddr {
        let line = self.wait_stdout("listening tls on ").await;
        line.trim_start_matches("listening tls on ")
            .parse()
            .unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }
}

/// Polls `lines` (filled by a reader task) for one containing `needle`.
async fn wait_line(lines: &Mutex<Vec<String>>, needle: &str, what: &str) -> String {
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(l) = lines
                .lock()
                .expect("lines lock")
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no {what} line containing {needle:?}"))
}
