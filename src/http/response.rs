//! Responses: the one place that builds them, so that every error the
//! API gives has the same shape, `{"ok": false, "code": ..., "error":
//! ...}`, with the protocol's `ERR` code where one applies (`null`
//! otherwise), and every response is `Cache-Control: no-store`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::protocol::ErrorCode;

/// What the server answers.
pub(crate) type Reply = Response<Full<Bytes>>;

/// `body` as `content_type`, `200 OK`.
pub(crate) fn respond(body: impl Into<Bytes>, content_type: &'static str) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Plain text with `status`.
pub(crate) fn plain(status: StatusCode, text: &str) -> Reply {
    let mut r = respond(text.to_string(), "text/plain; charset=utf-8");
    *r.status_mut() = status;
    r
}

/// `value` as JSON, `200 OK`.
pub(crate) fn json<T: Serialize>(value: &T) -> Reply {
    json_status(StatusCode::OK, value)
}

/// `value` as JSON with `status`.
pub(crate) fn json_status<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut r = respond(body, "application/json");
            *r.status_mut() = status;
            r
        }
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    }
}

/// An error of the API.
#[derive(Debug, Serialize)]
pub(crate) struct ApiError {
    /// Always false: tells it from a command's result at a glance.
    ok: bool,
    /// The protocol's code, where one applies.
    code: Option<&'static str>,
    /// What went wrong, for a person.
    error: String,
}

/// An error with `status` and, where one applies, the protocol's `code`.
pub(crate) fn error(
    status: StatusCode,
    code: Option<ErrorCode>,
    message: impl Into<String>,
) -> Reply {
    json_status(
        status,
        &ApiError {
            ok: false,
            code: code.map(ErrorCode::as_str),
            error: message.into(),
        },
    )
}

/// `401 NOAUTH`: log in first.
pub(crate) fn unauthorized() -> Reply {
    error(
        StatusCode::UNAUTHORIZED,
        Some(ErrorCode::NoAuth),
        "authentication required: log in (POST /api/login)",
    )
}

/// The HTTP status that stands for a protocol error code.
pub(crate) fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Syntax
        | ErrorCode::UnknownCommand
        | ErrorCode::LineTooLong
        | ErrorCode::BadFrame => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound | ErrorCode::UnknownTag => StatusCode::NOT_FOUND,
        ErrorCode::Precondition | ErrorCode::Locked | ErrorCode::QueueFull => StatusCode::CONFLICT,
        ErrorCode::NoRoute | ErrorCode::Schema => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::NoAuth => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::Limit => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}
