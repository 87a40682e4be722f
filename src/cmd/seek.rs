//! `SEEK`: moving a stream consumer group's position (replay). See
//! protocol.md, "SEEK".

use crate::error::BrokerError;
use crate::protocol::command::Seek;
use crate::session::Session;

/// `SEEK <stream> <group> offset=first|last|next|<n> | time=<unix-ms>`
/// → `OK offset=<n>`.
pub(super) fn seek(c: Seek, _s: &mut Session) -> Result<(), BrokerError> {
    Err(BrokerError::NotFound(format!("stream {}", c.stream)))
}
