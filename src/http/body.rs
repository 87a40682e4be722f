//! Request bodies: read only by the `POST` routes, bounded in size
//! ([`MAX_BODY_BYTES`], `413` beyond: said by `Content-Length` before
//! anything is read, or found while reading) and in time
//! ([`BODY_READ_TIMEOUT`], `408`), and decoded as JSON (`400` when it is
//! not the object the route takes).

use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::{Request, StatusCode};
use serde::de::DeserializeOwned;

use super::response::{error, Reply};
use crate::protocol::ErrorCode;

/// The largest request body read: a message published from the page and
/// its JSON wrapping.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a body may take to arrive.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads `req`'s body and decodes it as a `T`.
pub(crate) async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Reply> {
    let announced = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES);
    let bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, body.collect()).await {
        Err(_) => {
            return Err(error(
                StatusCode::REQUEST_TIMEOUT,
                None,
                format!(
                    "the request body did not arrive within {} s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            ))
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Ok(Err(e)) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                None,
                format!("reading the body: {e}"),
            ))
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            Some(ErrorCode::Syntax),
            format!("the body is not the JSON this takes: {e}"),
        )
    })
}

fn too_large() -> Reply {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        Some(ErrorCode::TooLarge),
        format!("request body over {MAX_BODY_BYTES} bytes"),
    )
}
