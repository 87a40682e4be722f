//! `AUTH <user> <password>`: logging in. See protocol.md, "AUTH"; run by
//! `cmd/auth.rs`.

use super::{utf8, Args, Res};
use crate::protocol::command::{Auth, Command, Secret};

/// How `AUTH` is used.
pub(super) const USAGE: &str = "AUTH <user> <password>";

pub(super) fn auth(mut a: Args<'_>) -> Res<Command> {
    let user = utf8(&a.required("<user>")?.text, "user")?;
    let password = Secret(utf8(&a.required("<password>")?.text, "password")?);
    a.end(Command::Auth(Auth { user, password }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ok, syntax};
    use super::*;

    #[test]
    fn auth() {
        let auth = Auth {
            user: "Bob".into(),
            password: Secret("p=w d".into()),
        };
        assert_eq!(ok("AUTH Bob \"p=w d\""), Command::Auth(auth));
    }

    #[test]
    fn auth_errors() {
        assert!(syntax("AUTH bob").starts_with("missing <password>; usage: AUTH"));
        assert_eq!(syntax("AUTH a b c"), "unexpected argument \"c\"");
    }
}
