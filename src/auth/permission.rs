//! Permissions as RabbitMQ has them: per user, three regular expressions
//! over resource names (`configure`, `write`, `read`), matched unanchored;
//! `""` grants nothing. Pure: no I/O, no locks. The compiled regex itself,
//! [`Pattern`], lives in [`crate::protocol::pattern`], below both the parser
//! (which refuses a bad one) and this module (which matches with it).

pub use crate::protocol::pattern::Pattern;

/// The pattern a new user gets for each permission unless told otherwise:
/// everything.
pub const DEFAULT_PATTERN: &str = ".*";

/// Which permission a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Perm {
    /// Declare, delete, purge.
    Configure,
    /// Publish to an exchange; be the destination of a binding.
    Write,
    /// Consume, get, peek; be the source of a binding.
    Read,
}

impl Perm {
    /// Its name, as `USER PERMIT` and the error messages spell it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Perm::Configure => "configure",
            Perm::Write => "write",
            Perm::Read => "read",
        }
    }
}

/// What kind of resource a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An exchange.
    Exchange,
    /// A queue.
    Queue,
}

impl Kind {
    /// `exchange` or `queue`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Exchange => "exchange",
            Kind::Queue => "queue",
        }
    }
}

/// A user's three patterns.
#[derive(Debug, Clone, PartialEq)]
pub struct Permissions {
    /// Declare, delete, purge.
    pub(crate) configure: Pattern,
    /// Publish; binding destination.
    pub(crate) write: Pattern,
    /// Consume; binding source.
    pub(crate) read: Pattern,
}

impl Permissions {
    /// All three from their sources.
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Permissions, String> {
        Ok(Permissions {
            configure: Pattern::new(configure)?,
            write: Pattern::new(write)?,
            read: Pattern::new(read)?,
        })
    }

    /// The pattern of one permission.
    pub(crate) fn get(&self, perm: Perm) -> &Pattern {
        match perm {
            Perm::Configure => &self.configure,
            Perm::Write => &self.write,
            Perm::Read => &self.read,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pattern_grants_everything() {
        let all = Pattern::new(DEFAULT_PATTERN).unwrap();
        assert!(all.allows(""), "the default exchange is the name \"\"");
        assert!(all.allows("anything"));
    }

    #[test]
    fn permissions_pick_the_pattern_of_each_perm() {
        let p = Permissions::new("^c", "^w", "^r").unwrap();
        assert!(p.get(Perm::Configure).allows("c1"));
        assert!(p.get(Perm::Write).allows("w1"));
        assert!(p.get(Perm::Read).allows("r1"));
        assert!(!p.get(Perm::Read).allows("w1"));
    }
}
