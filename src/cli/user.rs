//! `sluice user add|passwd|permit|remove|list`: user administration on a
//! data directory, for a broker that is not running (sled locks the
//! directory; a running broker takes the `USER` commands instead). The
//! same [`Registry`] rules apply as over the protocol, except that the
//! first user need not be an admin here (the operator owns the files).
//!
//! Exit codes (main): 0 done, 1 failed (the broker is running, ...),
//! 2 bad usage (clap's own code, also for a bad name or pattern).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::auth::{password, table, Change, Pattern, Permissions, Registry, User, DEFAULT_PATTERN};
use crate::config::DEFAULT_DATA_DIR;
use crate::store::{SledStore, StoreError};

/// `sluice user ...`
#[derive(clap::Args, Debug)]
pub struct UserArgs {
    /// What to do.
    #[command(subcommand)]
    pub(crate) action: UserAction,
    /// The broker's data directory (the broker must not be running).
    #[arg(long, global = true, default_value = DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
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
    let dir = &args.data_dir;
    let store = match SledStore::open(dir, crate::store::sled::DEFAULT_CACHE_BYTES) {
        Ok(s) => s,
        Err(StoreError::Locked(_)) => bail!(
            "the broker is running on this data directory ({}); use USER ADD, USER PASSWD, \
             USER PERMIT, USER REMOVE or USER LIST over the protocol instead",
            dir.display()
        ),
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
