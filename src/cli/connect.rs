//! The options every client command shares ([`CommonArgs`]: where the
//! broker is, credentials, TLS, the reply timeout, `--json`), their plain
//! form ([`ConnectOptions`]), and [`Conn`]: a connected, authenticated
//! [`Client`] whose every wait is bounded by `--timeout`.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use crate::client::{Client, ClientError, ReplyHandle, Response};
use crate::protocol::command::{Auth, Hello};
use crate::protocol::Command;
use crate::tls::TlsClientConfig;

use super::exit::CliError;

/// The broker address when neither `--server` nor `SLUICE_SERVER` says.
pub(crate) const DEFAULT_SERVER: &str = "127.0.0.1:5680";
/// How long connecting, and each reply, may take (`--timeout`).
pub(crate) const DEFAULT_TIMEOUT: &str = "10s";
/// The name the CLI gives its connections (`HELLO name=`), as the broker's
/// logs and connection list show them.
pub(crate) const CLIENT_NAME: &str = "sluice-cli";

/// Options shared by every client command. Each is `global`: it may come
/// before or after a nested subcommand (`sluice declare queue q -s HOST`).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct CommonArgs {
    /// Broker address; a cluster's nodes as a comma-separated list (the
    /// first that answers is used).
    #[arg(
        short = 's',
        long,
        env = "SLUICE_SERVER",
        default_value = DEFAULT_SERVER,
        value_name = "HOST:PORT",
        global = true,
        help_heading = "Connection"
    )]
    pub(crate) server: String,
    /// User name: sends `AUTH <user> <password>` after connecting.
    #[arg(
        long,
        env = "SLUICE_USER",
        requires = "password",
        global = true,
        help_heading = "Connection"
    )]
    pub(crate) user: Option<String>,
    /// Password for --user.
    #[arg(
        long,
        env = "SLUICE_PASSWORD",
        hide_env_values = true,
        requires = "user",
        global = true,
        help_heading = "Connection"
    )]
    pub(crate) password: Option<String>,
    /// Connect with TLS.
    #[arg(long, global = true, help_heading = "Connection")]
    pub(crate) tls: bool,
    /// CA certificate(s) (PEM) to verify the server with, instead of the
    /// system's roots (implies --tls).
    #[arg(long, value_name = "FILE", global = true, help_heading = "Connection")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Name to verify the server's certificate against (default: the host
    /// of --server; implies --tls).
    #[arg(long, value_name = "NAME", global = true, help_heading = "Connection")]
    pub(crate) tls_server_name: Option<String>,
    /// How long connecting, and waiting for each reply, may take (`500ms`,
    /// `10s`, `2m`; a bare number is milliseconds).
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_duration, global = true, help_heading = "Connection")]
    pub(crate) timeout: Duration,
    /// Print JSON: one JSON value per line on stdout, nothing else.
    #[arg(long, global = true, help_heading = "Output")]
    pub(crate) json: bool,
}

/// TLS settings of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsOptions {
    /// CA certificates to trust instead of the system's.
    pub(crate) ca: Option<PathBuf>,
    /// The name to check the certificate against (default: the host).
    pub(crate) server_name: Option<String>,
}

/// Where and how to connect: [`CommonArgs`] without clap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectOptions {
    /// `HOST:PORT`.
    pub(crate) server: String,
    /// `(user, password)` for `AUTH`.
    pub(crate) credentials: Option<(String, String)>,
    /// `Some` for a TLS connection.
    pub(crate) tls: Option<TlsOptions>,
    /// The bound on connecting and on each reply.
    pub(crate) timeout: Duration,
}

impl ConnectOptions {
    /// The servers `--server a,b,c` names, in order.
    pub(crate) fn servers(&self) -> impl Iterator<Item = &str> {
        self.server
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// The same options, for `server` alone.
    pub(crate) fn only(&self, server: &str) -> ConnectOptions {
        ConnectOptions {
            server: server.to_string(),
            ..self.clone()
        }
    }
}

impl From<&CommonArgs> for ConnectOptions {
    fn from(a: &CommonArgs) -> ConnectOptions {
        let tls =
            (a.tls || a.tls_ca.is_some() || a.tls_server_name.is_some()).then(|| TlsOptions {
                ca: a.tls_ca.clone(),
                server_name: a.tls_server_name.clone(),
            });
        ConnectOptions {
            server: a.server.clone(),
            credentials: a.user.clone().zip(a.password.clone()),
            tls,
            timeout: a.timeout,
        }
    }
}

impl Conn {
    /// Connects to `server`, bounded by the timeout: the client, or why not.
    async fn connect(opts: &ConnectOptions, server: &str) -> Result<Client, String> {
        let connect = async {
            match &opts.tls {
                None => Client::connect(server).await.map_err(|e| describe(&e)),
                Some(tls) => {
                    let config = tls_config(tls).map_err(|e| e.to_string())?;
                    let name = tls
                        .server_name
                        .clone()
                        .unwrap_or_else(|| host_of(server).to_owned());
                    Client::connect_tls(server, &name, &config)
                        .await
                        .map_err(|e| describe(&e))
                }
            }
        };
        match tokio::time::timeout(opts.timeout, connect).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {:?}", opts.timeout)),
        }
    }
}

/// A connected (and, with credentials, authenticated) client.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The connection.
    pub(crate) client: Client,
    timeout: Duration,
}

impl Conn {
    /// Connects, names the connection and authenticates, each bounded by
    /// the timeout.
    pub(crate) async fn open(opts: &ConnectOptions) -> Result<Conn, CliError> {
        // `--server a,b,c` (a cluster's nodes): the first that answers.
        let mut failed = Vec::new();
        let mut connected = None;
        for server in opts.servers() {
            match Conn::connect(opts, server).await {
                Ok(c) => {
                    connected = Some(c);
                    break;
                }
                Err(why) => failed.push(format!("{server}: {why}")),
            }
        }
        let Some(client) = connected else {
            return Err(CliError::Connection(format!(
                "cannot connect to {}",
                match failed.is_empty() {
                    true => "anything: --server is empty".to_string(),
                    false => failed.join("; "),
                }
            )));
        };
        let mut s = Conn {
            client,
            timeout: opts.timeout,
        };
        let hello = s.client.send_command(&Command::Hello(Hello {
            name: Some(CLIENT_NAME.into()),
            ..Hello::default()
        }));
        let auth = opts.credentials.as_ref().map(|(user, password)| {
            s.client.send_command(&Command::Auth(Auth {
                user: user.clone(),
                password: crate::protocol::command::Secret(password.clone()),
            }))
        });
        s.flush().await?;
        s.wait(hello).await?;
        if let Some(auth) = auth {
            s.wait(auth).await?;
        }
        Ok(s)
    }

    /// Sends one command and waits for its reply.
    pub(crate) async fn request(&mut self, command: &Command) -> Result<Response, CliError> {
        let h = self.client.send_command(command);
        self.flush().await?;
        self.wait(h).await
    }

    /// Writes what is queued.
    pub(crate) async fn flush(&mut self) -> Result<(), CliError> {
        let timeout = self.timeout;
        bounded(timeout, self.client.flush()).await
    }

    /// Waits for a reply, up to the timeout.
    pub(crate) async fn wait(&self, h: ReplyHandle) -> Result<Response, CliError> {
        self.wait_longer(h, Duration::ZERO).await
    }

    /// Waits for a reply that may legitimately take `extra` longer (a
    /// `GET wait=`).
    pub(crate) async fn wait_longer(
        &self,
        h: ReplyHandle,
        extra: Duration,
    ) -> Result<Response, CliError> {
        bounded(self.timeout + extra, h.wait()).await
    }
}

/// `fut`, bounded by `timeout`.
async fn bounded<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, crate::client::ClientError>>,
) -> Result<T, CliError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.map_err(CliError::from),
        Err(_) => Err(CliError::Connection(format!(
            "no reply from the server within {timeout:?}"
        ))),
    }
}

/// A client error with its I/O cause (`connection refused`), once.
fn describe(e: &crate::client::ClientError) -> String {
    match e {
        crate::client::ClientError::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// Parses `500ms`, `10s`, `2m`, `1h`, `7d` or a bare number of
/// milliseconds (the protocol's unit).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    parse_millis(s).map(Duration::from_millis)
}

/// [`parse_duration`] as milliseconds, for options the protocol takes in ms.
pub(crate) fn parse_millis(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        format!("{s:?} is not a duration (e.g. 500ms, 10s, 2m, 1h, 7d, or milliseconds)")
    })?;
    let scale = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h or d)")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// The system's CA bundle, trusted when `--tls-ca` is not given
/// (`SSL_CERT_FILE` overrides it, as for OpenSSL).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The client TLS configuration: `--tls-ca`, else `SSL_CERT_FILE`, else
/// the system's bundle.
fn tls_config(tls: &TlsOptions) -> Result<TlsClientConfig, ClientError> {
    let ca = tls
        .ca
        .clone()
        .or_else(|| std::env::var_os("SSL_CERT_FILE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
    TlsClientConfig::from_ca_file(&ca).map_err(|e| {
        ClientError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            e.to_string(),
        ))
    })
}

/// The host of `HOST:PORT` (`[::1]:5681` → `::1`), the name a certificate
/// is checked against by default.
fn host_of(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_take_units_and_default_to_milliseconds() {
        assert_eq!(parse_millis("250").unwrap(), 250);
        assert_eq!(parse_millis("250ms").unwrap(), 250);
        assert_eq!(parse_millis("10s").unwrap(), 10_000);
        assert_eq!(parse_millis("2m").unwrap(), 120_000);
        assert_eq!(parse_millis("1h").unwrap(), 3_600_000);
        assert!(parse_millis("").is_err());
        assert!(parse_millis("1.5s").is_err());
        assert_eq!(parse_millis("7d").unwrap(), 604_800_000);
        assert!(parse_millis("5w").is_err());
        assert!(parse_millis("-1").is_err());
        assert!(parse_millis("99999999999999999999h").is_err());
    }
}
