//! The wire format, in one page.
//!
//! A connection is a byte stream of **frames**: a line ending in `\n` (a `\r`
//! before it is dropped), or a line whose last token is `{N}` followed by
//! exactly N raw bytes and an end of line (a *literal*). The same framing is
//! used in both directions.
//!
//! - [`frame`] finds frame boundaries in a read buffer and enforces the line
//!   and literal limits, skipping oversize input without losing sync.
//! - [`token`] splits one complete line into words (quoting, escapes) and is
//!   the inverse of [`token::encode_word`].
//! - [`parse`] turns words into a typed [`command::Command`] or a typed
//!   [`error::ParseError`]: the verb table and what verbs share in
//!   `parse/mod.rs`, one grammar file per verb family beside it (named like
//!   its handler in `src/cmd/`). [`encode`] is its inverse
//!   ([`Command::encode`]), for clients, and the one spelling of every option
//!   keyword (names and enumerated values) that both use.
//! - [`error`] holds [`error::ParseError`], which the tokenizer and the
//!   parser both return, and how a refusal echoes input.
//! - [`reply`] is the only writer of server lines: replies (`OK`, `ERR`) and
//!   pushes (`MSG`, `NOTICE`).
//! - [`code`] holds the stable `ERR` codes.
//! - [`pattern`] compiles the permission regexes of `USER ADD|PERMIT`: the
//!   parser refuses a bad one, [`auth`](crate::auth) matches with it.
//! - [`table`] lays out the text of `LIST` tables and `STATS` blocks (and
//!   splits a table row back into cells).
//!
//! None of these modules does I/O: bytes in, values out, and back.

#[cfg(any(test, feature = "fuzzing"))]
pub mod check;
pub(crate) mod code;
pub mod command;
pub(crate) mod encode;
pub(crate) mod error;
pub mod frame;
pub mod parse;
pub(crate) mod pattern;
pub(crate) mod reply;
pub mod table;
pub mod token;

#[cfg(test)]
mod prop_tests;

pub use code::ErrorCode;
pub use command::Command;
