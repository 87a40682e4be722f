//! Password hashing: argon2id with a random salt, stored as a PHC string.
//! Slow on purpose (tens of ms, about 19 MiB each): callers run it on the
//! blocking pool, a few at a time (see [`super::Registry`]).

use std::sync::OnceLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

/// Hashes `password` (argon2id, the crate's default cost: m=19 MiB, t=2,
/// p=1, as OWASP recommends), with a random salt from the OS.
pub(crate) fn hash(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h: PasswordHash| h.to_string())
        .map_err(|e| format!("hashing the password failed: {e}"))
}

/// Whether `password` matches the PHC string `hash`. A hash that does not
/// parse matches nothing. With `hash` `None` (no such user), a fixed hash
/// is checked instead, so that a wrong user name costs as much time as a
/// wrong password and does not tell that the user does not exist.
pub(crate) fn verify(hash: Option<&str>, password: &str) -> bool {
    let (stored, real) = match hash {
        Some(h) => (h, true),
        None => (dummy_hash(), false),
    };
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && real
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash("no such user").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify(Some(&h), "s3cret"));
        assert!(!verify(Some(&h), "S3cret"));
        assert_ne!(hash("s3cret").unwrap(), h, "random salt");
        assert!(!verify(None, "no such user"), "the dummy never matches");
        assert!(!verify(Some("not a phc string"), "x"));
    }
}
