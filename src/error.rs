//! [`BrokerError`]: every way a command can fail inside the broker, and the
//! single map from those failures to wire `ERR` codes.

use crate::protocol::reply::Reply;
use crate::protocol::ErrorCode;
use crate::store::StoreError;

/// A failed command. Each variant maps to exactly one `ERR` code.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No such exchange, queue or consumer.
    #[error("{0}")]
    NotFound(String),
    /// Redeclared differently, or an `if-unused`/`if-empty` that does not hold.
    #[error("{0}")]
    Precondition(String),
    /// An exclusive resource held by another connection.
    #[error("{0}")]
    Locked(String),
    /// A mandatory message that no queue took.
    #[error("{0}")]
    NoRoute(String),
    /// A delivery tag that is not outstanding on this connection.
    #[error("delivery tag {0} is not outstanding on this connection")]
    UnknownTag(u64),
    /// A configured limit.
    #[error("{0}")]
    Limit(String),
    /// A queue at its length limit with `overflow=reject-publish`.
    #[error("{0}")]
    QueueFull(String),
    /// A request that parsed but is malformed (say, a permission pattern
    /// that does not compile).
    #[error("{0}")]
    Syntax(String),
    /// Not authenticated (or the user was removed).
    #[error("{0}")]
    NoAuth(String),
    /// Authenticated, but the user's permissions do not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A cluster could not make the change now (no leader answered).
    #[error("{0}")]
    Unavailable(String),
    /// A server fault another node reported (its store failed).
    #[error("{0}")]
    Internal(String),
    /// A `PUB` body refused by its exchange's schema: `<json-pointer>:
    /// <reason>`.
    #[error("{0}")]
    Schema(String),
}

impl BrokerError {
    /// The wire code of this failure.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            BrokerError::NotFound(_) => ErrorCode::NotFound,
            BrokerError::Precondition(_) => ErrorCode::Precondition,
            BrokerError::Locked(_) => ErrorCode::Locked,
            BrokerError::NoRoute(_) => ErrorCode::NoRoute,
            BrokerError::UnknownTag(_) => ErrorCode::UnknownTag,
            BrokerError::Limit(_) => ErrorCode::Limit,
            BrokerError::QueueFull(_) => ErrorCode::QueueFull,
            BrokerError::Syntax(_) => ErrorCode::Syntax,
            BrokerError::NoAuth(_) => ErrorCode::NoAuth,
            BrokerError::Forbidden(_) => ErrorCode::Forbidden,
            BrokerError::Store(_) | BrokerError::Internal(_) => ErrorCode::Internal,
            BrokerError::Unavailable(_) => ErrorCode::Unavailable,
            BrokerError::Schema(_) => ErrorCode::Schema,
        }
    }

    /// The error another node answered, from its wire code and text.
    pub(crate) fn from_wire(code: &str, text: String) -> BrokerError {
        match ErrorCode::parse(code) {
            Some(ErrorCode::NotFound) => BrokerError::NotFound(text),
            Some(ErrorCode::Precondition) => BrokerError::Precondition(text),
            Some(ErrorCode::Locked) => BrokerError::Locked(text),
            Some(ErrorCode::NoRoute) => BrokerError::NoRoute(text),
            Some(ErrorCode::Limit) => BrokerError::Limit(text),
            Some(ErrorCode::QueueFull) => BrokerError::QueueFull(text),
            Some(ErrorCode::Syntax) => BrokerError::Syntax(text),
            Some(ErrorCode::NoAuth) => BrokerError::NoAuth(text),
            Some(ErrorCode::Forbidden) => BrokerError::Forbidden(text),
            Some(ErrorCode::Unavailable) => BrokerError::Unavailable(text),
            Some(ErrorCode::Schema) => BrokerError::Schema(text),
            _ => BrokerError::Internal(text),
        }
    }

    /// `ERR LIMIT <what> (<flag> <max>)`: a configured limit refused a
    /// command, which changed nothing.
    pub(crate) fn limit(
        what: impl std::fmt::Display,
        flag: &str,
        max: impl std::fmt::Display,
    ) -> Self {
        BrokerError::Limit(format!("{what} ({flag} {max})"))
    }

    /// The `ERR` reply for this failure.
    pub(crate) fn to_reply(&self) -> Reply {
        Reply::Err(self.code(), self.to_string())
    }
}
