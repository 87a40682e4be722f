//! How a CLI run ends: [`Exit`], the one map from outcomes to exit codes
//! (documented in README.md and every command's `--help`), and
//! [`CliError`], the failures that end a run early.

use std::process::ExitCode;

use crate::client::ClientError;
use crate::protocol::ErrorCode;

/// The exit-code table, shown after every client command's `--help`.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit status:
  0    success
  1    the server answered ERR (printed as `sluice: <CODE> <message>` on
       stderr), or reading stdin / writing stdout failed
  2    bad usage (unknown flag, missing argument, bad value)
  3    nothing to get: `get` found no message; `sub` ended by --timeout-idle
       before --count messages (without --count: before any message)
  4    no connection: connect failed or timed out, the connection closed,
       a reply did not come within --timeout
  5    authentication: the server answered NOAUTH or FORBIDDEN
  130  `sub` stopped by Ctrl-C (what was printed was acknowledged)
A closed stdout (`sluice sub q | head -1`) ends the command quietly with 0;
what was not written is not acknowledged and goes back to the queue.";

/// A run's outcome, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 0: done.
    Success = 0,
    /// 1: the server answered `ERR` (or stdin/stdout failed).
    Failed = 1,
    /// 2: bad usage (also clap's own code for a bad command line).
    Usage = 2,
    /// 3: nothing to get (an empty `get`, a `sub` that went idle).
    Nothing = 3,
    /// 4: the connection failed, closed or timed out.
    Connection = 4,
    /// 5: `ERR NOAUTH` / `ERR FORBIDDEN`.
    Auth = 5,
    /// 130: stopped by Ctrl-C, as shells report SIGINT.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// What ends a client command early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The server answered `ERR`.
    #[error("{code} {message}")]
    Server {
        /// The error code.
        code: ErrorCode,
        /// The server's text (with the CLI's context appended, if any).
        message: String,
    },
    /// Connecting failed, the connection closed, or a reply timed out.
    #[error("{0}")]
    Connection(String),
    /// The command line asks for something this build cannot do, or is
    /// inconsistent in a way clap does not check.
    #[error("{0}")]
    Usage(String),
    /// Reading stdin or writing stdout failed (not a closed pipe: that
    /// ends the command quietly, see [`CliError::exit`]).
    #[error("{context}: {source}")]
    Local {
        /// What was being done.
        context: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl CliError {
    /// The exit code for this failure.
    pub(crate) fn exit(&self) -> Exit {
        match self {
            CliError::Server { code, .. } => match code {
                ErrorCode::NoAuth | ErrorCode::Forbidden => Exit::Auth,
                _ => Exit::Failed,
            },
            CliError::Connection(_) => Exit::Connection,
            CliError::Usage(_) => Exit::Usage,
            CliError::Local { source, .. } if is_closed_pipe(source) => Exit::Success,
            CliError::Local { .. } => Exit::Failed,
        }
    }

    /// Whether to say nothing on stderr (a reader that went away, as in
    /// `sluice sub q | head -1`, is not an error worth a line).
    pub(crate) fn is_quiet(&self) -> bool {
        matches!(self, CliError::Local { source, .. } if is_closed_pipe(source))
    }

    /// The same error with `what` appended to a server message (which
    /// message of a batch failed).
    pub(crate) fn context(self, what: impl std::fmt::Display) -> CliError {
        match self {
            CliError::Server { code, message } => CliError::Server {
                code,
                message: format!("{message} ({what})"),
            },
            other => other,
        }
    }

    /// A stdout write failure.
    pub(crate) fn stdout(source: std::io::Error) -> CliError {
        CliError::Local {
            context: "writing to stdout",
            source,
        }
    }

    /// A stdin read failure.
    pub(crate) fn stdin(source: std::io::Error) -> CliError {
        CliError::Local {
            context: "reading stdin",
            source,
        }
    }
}

fn is_closed_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        match e {
            ClientError::Server { code, message } => CliError::Server { code, message },
            ClientError::Io(io) => CliError::Connection(format!("connection failed: {io}")),
            ClientError::Protocol(m) => CliError::Connection(format!("protocol error: {m}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_errors_have_their_own_exit_code() {
        let err = |code| CliError::Server {
            code,
            message: String::new(),
        };
        assert_eq!(err(ErrorCode::NoAuth).exit(), Exit::Auth);
        assert_eq!(err(ErrorCode::Forbidden).exit(), Exit::Auth);
        assert_eq!(err(ErrorCode::NotFound).exit(), Exit::Failed);
        assert_eq!(ExitCode::from(Exit::Interrupted), ExitCode::from(130));
    }

    #[test]
    fn a_closed_stdout_is_quiet_success() {
        let e = CliError::stdout(std::io::ErrorKind::BrokenPipe.into());
        assert!(e.is_quiet());
        assert_eq!(e.exit(), Exit::Success);
        let e = CliError::stdout(std::io::ErrorKind::Other.into());
        assert!(!e.is_quiet());
        assert_eq!(e.exit(), Exit::Failed);
    }
}
