//! `ErrorCode`: the stable `ERR <CODE>` words of the wire, in one place.

use std::fmt;

/// The stable error codes of `ERR <CODE> <text>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Malformed words, bad number, unknown or duplicate option.
    Syntax,
    /// Unknown verb.
    UnknownCommand,
    /// No such exchange, queue or consumer tag.
    NotFound,
    /// Redeclare with other arguments, `if-unused`/`if-empty` failed.
    Precondition,
    /// A `mandatory` publish matched no queue.
    NoRoute,
    /// `overflow=reject-publish` and the queue is full.
    QueueFull,
    /// A literal over the configured limit.
    TooLarge,
    /// A line over the configured limit.
    LineTooLong,
    /// The stream cannot be re-synchronised; the connection closes.
    BadFrame,
    /// Delivery tag not outstanding on this connection.
    UnknownTag,
    /// Not authenticated.
    NoAuth,
    /// Authenticated but not permitted.
    Forbidden,
    /// Exclusive resource held by another connection.
    Locked,
    /// A configured limit.
    Limit,
    /// A server fault (storage).
    Internal,
    /// A cluster could not make the change now: no leader answered in
    /// time (an election, or this node cut off from a majority).
    Unavailable,
    /// A `PUB` body that is not JSON or fails its exchange's schema.
    Schema,
}

impl ErrorCode {
    /// The wire spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Syntax => "SYNTAX",
            ErrorCode::UnknownCommand => "UNKNOWN_COMMAND",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Precondition => "PRECONDITION",
            ErrorCode::NoRoute => "NO_ROUTE",
            ErrorCode::QueueFull => "QUEUE_FULL",
            ErrorCode::TooLarge => "TOO_LARGE",
            ErrorCode::LineTooLong => "LINE_TOO_LONG",
            ErrorCode::BadFrame => "BAD_FRAME",
            ErrorCode::UnknownTag => "UNKNOWN_TAG",
            ErrorCode::NoAuth => "NOAUTH",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::Locked => "LOCKED",
            ErrorCode::Limit => "LIMIT",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Schema => "SCHEMA",
        }
    }

    /// The code for a wire spelling (used by the client).
    pub(crate) fn parse(s: &str) -> Option<ErrorCode> {
        const ALL: [ErrorCode; 17] = [
            ErrorCode::Syntax,
            ErrorCode::UnknownCommand,
            ErrorCode::NotFound,
            ErrorCode::Precondition,
            ErrorCode::NoRoute,
            ErrorCode::QueueFull,
            ErrorCode::TooLarge,
            ErrorCode::LineTooLong,
            ErrorCode::BadFrame,
            ErrorCode::UnknownTag,
            ErrorCode::NoAuth,
            ErrorCode::Forbidden,
            ErrorCode::Locked,
            ErrorCode::Limit,
            ErrorCode::Internal,
            ErrorCode::Unavailable,
            ErrorCode::Schema,
        ];
        ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
