//! `sluice user add|passwd|permit|remove|list`: user administration, on a
//! data directory or through a running broker.
//!
//! - On `--data-dir` when no broker runs there: the [`Registry`] on the
//!   directory itself, with the same rules as over the protocol, except
//!   that the first user need not be an admin (the operator owns the
//!   files).
//! - Through a broker, with its `USER` commands, when one runs on
//!   `--data-dir` (it holds the directory's lock: reached at
//!   `$SLUICE_SERVER`, else 127.0.0.1:5680) or when `-s/--server` names
//!   one; logged in with `--login`/`--login-password` (`SLUICE_USER`,
//!   `SLUICE_PASSWORD`), an admin once the broker has users. Its answers
//!   are printed as the offline ones are.
//!
//! Exit codes (main): 0 done, 1 failed (a refusal, no broker to reach,
//! ...), 2 bad usage (clap's own code, also for a bad name or pattern).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::auth::{password, table, Change, Pattern, Permissions, Registry, User, DEFAULT_PATTERN};
use crate::config::DEFAULT_DATA_DIR;
use crate::protocol::command::{
    PermissionArgs, Secret, UserAdd, UserCommand, UserPasswd, UserPermit,
};
use crate::protocol::Command;
use crate::store::{SledStore, StoreError};

use super::connect::{Conn, ConnectOptions, TlsOptions, DEFAULT_SERVER, DEFAULT_TIMEOUT};

/// `sluice user ...`
#[derive(clap::Args, Debug)]
pub struct UserArgs {
    /// What to do.
    #[command(subcommand)]
    pub(crate) action: UserAction,
    /// The broker's data directory: changed in place when no broker runs
    /// on it, else through that broker.
    #[arg(long, global = true, default_value = DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
    /// Change users through the broker at this address (its USER
    /// commands), whatever --data-dir says. Without it, a broker running
    /// on --data-dir is reached at $SLUICE_SERVER, else 127.0.0.1:5680.
    #[arg(
        short = 's',
        long,
        value_name = "HOST:PORT",
        global = true,
        help_heading = "Through a running broker"
    )]
    pub(crate) server: Option<String>,
    /// Log in to the broker as this user (an admin, once it has users).
    #[arg(
        long,
        env = "SLUICE_USER",
        value_name = "USER",
        global = true,
        help_heading = "Through a running broker"
    )]
    pub(crate) login: Option<String>,
    /// Password for --login.
    #[arg(
        long,
        env = "SLUICE_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        global = true,
        help_heading = "Through a running broker"
    )]
    pub(crate) login_password: Option<String>,
    /// Connect to the broker with TLS.
    #[arg(long, global = true, help_heading = "Through a running broker")]
    pub(crate) tls: bool,
    /// CA certificate(s) (PEM) to verify the broker with (implies --tls).
    #[arg(
        long,
        value_name = "FILE",
        global = true,
        help_heading = "Through a running broker"
    )]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Name to verify the broker's certificate against (implies --tls).
    #[arg(
        long,
        value_name = "NAME",
        global = true,
        help_heading = "Through a running broker"
    )]
    pub(crate) tls_server_name: Option<String>,
}

/// The password of `add` and `passwd`: prompted for (without echo) when
/// stdin is a terminal, else given one of these ways.
#[derive(clap::Args, Debug)]
pub(crate) struct PasswordArgs {
    /// Read the password from the first line of stdin.
    #[arg(long, conflicts_with = "password")]
    pub(crate) password_stdin: bool,
    /// The password itself (visible to other users in `ps` and in shell
    /// history: prefer the prompt or --password-stdin).
    #[arg(long)]
    pub(crate) password: Option<crate::auth::Secret>,
}

/// The three patterns (`add`: `.*` where left out; `permit`: unchanged).
#[derive(clap::Args, Debug)]
pub(crate) struct PatternArgs {
    /// Regex of the exchanges and queues the user may declare, delete,
    /// purge ("" for none).
    #[arg(long, value_parser = parse_pattern)]
    pub(crate) configure: Option<Pattern>,
    /// Regex of the exchanges the user may publish to and the queues it
    /// may bind.
    #[arg(long, value_parser = parse_pattern)]
    pub(crate) write: Option<Pattern>,
    /// Regex of the queues the user may consume from and the exchanges it
    /// may bind from.
    #[arg(long, value_parser = parse_pattern)]
    pub(crate) read: Option<Pattern>,
}

/// The subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum UserAction {
    /// Add a user (permissions default to ".*": everything).
    Add {
        /// User name (1-64 of A-Z a-z 0-9 _ . -).
        #[arg(value_parser = parse_name)]
        name: String,
        /// Tag the user admin (may run the USER commands).
        #[arg(long)]
        admin: bool,
        /// Permissions.
        #[command(flatten)]
        patterns: PatternArgs,
        /// Password source.
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Change a user's password.
    Passwd {
        /// User name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// Password source.
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Change a user's permissions or admin tag.
    Permit {
        /// User name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// Permissions.
        #[command(flatten)]
        patterns: PatternArgs,
        /// Tag the user admin.
        #[arg(long, conflicts_with = "no_admin")]
        admin: bool,
        /// Take the admin tag away.
        #[arg(long)]
        no_admin: bool,
    },
    /// Remove a user.
    Remove {
        /// User name.
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// List the users: name, tags, configure, write, read.
    List,
}

fn parse_name(s: &str) -> Result<String, String> {
    crate::protocol::parse::user_name(s.as_bytes()).map_err(|e| e.message)
}

fn parse_pattern(s: &str) -> Result<Pattern, String> {
    Pattern::new(s)
}

/// Runs `sluice user ...`; returns what to print on stdout.
pub fn run(args: UserArgs) -> anyhow::Result<String> {
    if let Some(server) = args.server.clone() {
        return through_broker(args, &server);
    }
    let dir = &args.data_dir;
    if SledStore::in_use(dir) {
        return through_running_broker(args);
    }
    let store = match SledStore::open(dir, crate::store::sled::DEFAULT_CACHE_BYTES) {
        Ok(s) => s,
        // It started meanwhile.
        Err(StoreError::Locked(_)) => return through_running_broker(args),
        Err(e) => {
            return Err(e).with_context(|| format!("opening the data directory {}", dir.display()))
        }
    };
    let users = Registry::open(Arc::new(store), None)?;
    // A change to a user who is not there says so, and where it looked (a
    // mistyped --data-dir is the other way to get here).
    let exists = |name: &str| {
        users.check_exists(name).map_err(|_| {
            anyhow::anyhow!(
                "user {name:?} does not exist in the data directory {} \
                 (`sluice user list` shows its users)",
                dir.display()
            )
        })
    };
    match args.action {
        UserAction::Add {
            name,
            admin,
            patterns,
            password,
        } => {
            users.check_absent(&name)?;
            let all = || Pattern::new(DEFAULT_PATTERN).map_err(anyhow::Error::msg);
            let perms = Permissions {
                configure: patterns.configure.map_or_else(all, Ok)?,
                write: patterns.write.map_or_else(all, Ok)?,
                read: patterns.read.map_or_else(all, Ok)?,
            };
            let hash =
                password::hash(&read_password(&password, &name)?).map_err(anyhow::Error::msg)?;
            users.add(User::new(name.clone(), hash, admin, perms))?;
            Ok(format!("user {name} added\n"))
        }
        UserAction::Passwd { name, password } => {
            exists(&name)?;
            let hash =
                password::hash(&read_password(&password, &name)?).map_err(anyhow::Error::msg)?;
            users.set_password(&name, hash)?;
            Ok(format!("password of {name} changed\n"))
        }
        UserAction::Permit {
            name,
            patterns,
            admin,
            no_admin,
        } => {
            exists(&name)?;
            let change = Change {
                configure: patterns.configure,
                write: patterns.write,
                read: patterns.read,
                admin: match (admin, no_admin) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
            };
            users.permit(&name, change)?;
            Ok(format!("permissions of {name} changed\n"))
        }
        UserAction::Remove { name } => {
            exists(&name)?;
            users.remove(&name)?;
            Ok(format!("user {name} removed\n"))
        }
        UserAction::List => Ok(table(&users.list())),
    }
}

/// A broker runs on `--data-dir`: the change goes through it, at
/// `$SLUICE_SERVER` or the default address (said on stderr, since no
/// address was given).
fn through_running_broker(args: UserArgs) -> anyhow::Result<String> {
    let server = std::env::var("SLUICE_SERVER")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    eprintln!(
        "sluice: a broker is running on {}: changing users through it, at {server}",
        args.data_dir.display()
    );
    through_broker(args, &server)
}

/// The change as a `USER` command to the broker at `server`; its answer
/// printed as the offline change's would be.
fn through_broker(args: UserArgs, server: &str) -> anyhow::Result<String> {
    let tls =
        (args.tls || args.tls_ca.is_some() || args.tls_server_name.is_some()).then(|| TlsOptions {
            ca: args.tls_ca.clone(),
            server_name: args.tls_server_name.clone(),
        });
    let opts = ConnectOptions {
        server: server.to_string(),
        credentials: args.login.clone().zip(args.login_password.clone()),
        tls,
        timeout: super::connect::parse_duration(DEFAULT_TIMEOUT).map_err(anyhow::Error::msg)?,
    };
    let perms = |p: PatternArgs| PermissionArgs {
        configure: p.configure.map(|p| p.as_str().to_string()),
        write: p.write.map(|p| p.as_str().to_string()),
        read: p.read.map(|p| p.as_str().to_string()),
    };
    let (command, done) = match args.action {
        UserAction::Add {
            name,
            admin,
            patterns,
            password,
        } => (
            UserCommand::Add(UserAdd {
                password: Secret(read_password(&password, &name)?),
                name: name.clone(),
                admin,
                perms: perms(patterns),
            }),
            format!("user {name} added\n"),
        ),
        UserAction::Passwd { name, password } => (
            UserCommand::Passwd(UserPasswd {
                password: Secret(read_password(&password, &name)?),
                name: name.clone(),
            }),
            format!("password of {name} changed\n"),
        ),
        UserAction::Permit {
            name,
            patterns,
            admin,
            no_admin,
        } => (
            UserCommand::Permit(UserPermit {
                name: name.clone(),
                perms: perms(patterns),
                admin: match (admin, no_admin) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
            }),
            format!("permissions of {name} changed\n"),
        ),
        UserAction::Remove { name } => (
            UserCommand::Remove(name.clone()),
            format!("user {name} removed\n"),
        ),
        UserAction::List => (UserCommand::List, String::new()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the client")?;
    let reply = runtime.block_on(async {
        let mut conn = Conn::open(&opts).await?;
        conn.request(&Command::User(command)).await
    });
    let reply = reply.with_context(|| format!("the broker at {server}"))?;
    Ok(match reply.data {
        // USER LIST: the table, as the broker aligned it.
        Some(table) => String::from_utf8_lossy(&table).into_owned(),
        None => done,
    })
}

/// The password: `--password`, one line of stdin, or a prompt (twice).
fn read_password(p: &PasswordArgs, name: &str) -> anyhow::Result<String> {
    let password = if let Some(pw) = &p.password {
        pw.0.clone()
    } else if p.password_stdin || !std::io::stdin().is_terminal() {
        if !p.password_stdin {
            bail!("stdin is not a terminal: pass --password-stdin to read the password from it");
        }
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let first = rpassword::prompt_password(format!("password for {name}: "))
            .context("reading the password")?;
        let again = rpassword::prompt_password("again: ").context("reading the password")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    };
    if password.is_empty() {
        bail!("the password must not be empty");
    }
    Ok(password)
}
