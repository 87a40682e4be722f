//! `USER ADD|PASSWD|PERMIT|REMOVE|LIST`: user names, new passwords and
//! permission patterns (checked by compiling them, see
//! [`pattern`](crate::protocol::pattern)). See protocol.md, "USER"; run by
//! `cmd/user.rs`.

use super::{choice, plain_word, utf8, Args, Opt, Res, Spec};
use crate::protocol::command::{
    Command, PermissionArgs, Secret, UserAdd, UserCommand, UserPasswd, UserPermit,
};
use crate::protocol::encode::opt;
use crate::protocol::error::{show, ParseError};
use crate::protocol::pattern::Pattern;
use crate::protocol::token::Token;

/// How `USER` is used.
pub(super) const USAGE: &str = "USER ADD|PASSWD|PERMIT|REMOVE|LIST ...";

/// The longest user name, in bytes.
pub(crate) const MAX_USER_NAME_BYTES: usize = 64;

/// A user name: 1 to [`MAX_USER_NAME_BYTES`] bytes of `A-Z a-z 0-9 _ . -`
/// (no `/` or `:`, so that a `<vhost>/<user>` key stays unambiguous).
/// `sluice user` checks its argument with this too.
pub(crate) fn user_name(text: &[u8]) -> Res<String> {
    plain_word(text, "user name", MAX_USER_NAME_BYTES)
}

/// A new password: any non-empty text.
fn new_password(tok: &Token) -> Res<Secret> {
    if tok.text.is_empty() {
        return Err(ParseError::syntax("password must not be empty"));
    }
    utf8(&tok.text, "password").map(Secret)
}

/// A permission pattern: a regex that compiles (`""` grants nothing).
fn pattern(what: &str, v: &[u8]) -> Res<String> {
    let text = utf8(v, what)?;
    Pattern::new(&text).map_err(|e| ParseError::syntax(format!("{what}: {e}")))?;
    Ok(text)
}

pub(super) fn user(mut a: Args<'_>) -> Res<Command> {
    const SUB_VERBS: &[(&str, u8)] = &[
        ("ADD", 0),
        ("PASSWD", 1),
        ("PERMIT", 2),
        ("REMOVE", 3),
        ("LIST", 4),
    ];
    let tok = a.required("ADD, PASSWD, PERMIT, REMOVE or LIST")?;
    let sub = choice("USER", &tok.text, SUB_VERBS).map_err(|_| {
        ParseError::syntax(format!(
            "USER: expected ADD, PASSWD, PERMIT, REMOVE or LIST, got {}",
            show(&tok.text)
        ))
    })?;
    let spec = Spec {
        flags: &[opt::ADMIN],
        values: &[opt::CONFIGURE, opt::WRITE, opt::READ],
        ..Spec::default()
    };
    let cmd = match sub {
        0 | 2 => {
            a.usage = if sub == 0 {
                "USER ADD <name> <password> [admin] [configure=<re>] [write=<re>] [read=<re>]"
            } else {
                "USER PERMIT <name> [configure=<re>] [write=<re>] [read=<re>] [admin=true|false]"
            };
            let name = user_name(&a.required("<name>")?.text)?;
            let password = if sub == 0 {
                Some(new_password(a.required("<password>")?)?)
            } else {
                None
            };
            let mut perms = PermissionArgs::default();
            let mut admin = None;
            for o in a.options(&spec)? {
                match o {
                    Opt::Flag(_, on) => admin = Some(on),
                    Opt::Value(opt::CONFIGURE, v) => {
                        perms.configure = Some(pattern(opt::CONFIGURE, v)?)
                    }
                    Opt::Value(opt::WRITE, v) => perms.write = Some(pattern(opt::WRITE, v)?),
                    Opt::Value(_, v) => perms.read = Some(pattern(opt::READ, v)?),
                    Opt::Header(_) => {}
                }
            }
            match password {
                Some(password) => UserCommand::Add(UserAdd {
                    name,
                    password,
                    admin: admin.unwrap_or(false),
                    perms,
                }),
                None => UserCommand::Permit(UserPermit { name, perms, admin }),
            }
        }
        1 => {
            a.usage = "USER PASSWD <name> <password>";
            let name = user_name(&a.required("<name>")?.text)?;
            let password = new_password(a.required("<password>")?)?;
            UserCommand::Passwd(UserPasswd { name, password })
        }
        3 => {
            a.usage = "USER REMOVE <name>";
            UserCommand::Remove(user_name(&a.required("<name>")?.text)?)
        }
        _ => UserCommand::List,
    };
    a.end(Command::User(cmd))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::testing::{err, ok};
    use super::*;
    use crate::protocol::code::ErrorCode;

    #[test]
    fn user_commands() {
        let add = ok("user add alice \"pa ss\" ADMIN write=^orders\\. read=\"\"");
        assert_eq!(
            add,
            Command::User(UserCommand::Add(UserAdd {
                name: "alice".into(),
                password: Secret("pa ss".into()),
                admin: true,
                perms: PermissionArgs {
                    configure: None,
                    write: Some("^orders\\.".into()),
                    read: Some(String::new()),
                },
            }))
        );
        assert!(
            !format!("{add:?}").contains("pa ss"),
            "no password in Debug"
        );
        assert_eq!(
            ok("USER PERMIT bob admin=false configure=x"),
            Command::User(UserCommand::Permit(UserPermit {
                name: "bob".into(),
                perms: PermissionArgs {
                    configure: Some("x".into()),
                    ..PermissionArgs::default()
                },
                admin: Some(false),
            }))
        );
        assert_eq!(
            ok("USER PASSWD bob a=b"),
            Command::User(UserCommand::Passwd(UserPasswd {
                name: "bob".into(),
                password: Secret("a=b".into()),
            }))
        );
        assert_eq!(
            ok("USER REMOVE bob"),
            Command::User(UserCommand::Remove("bob".into()))
        );
        assert_eq!(ok("USER LIST"), Command::User(UserCommand::List));
        for bad in [
            "USER",
            "USER FOO",
            "USER ADD",
            "USER ADD bob",
            "USER ADD bob \"\"",
            "USER ADD a/b pw",
            "USER ADD bob pw write=(",
            "USER ADD bob pw admin admin",
            "USER ADD bob pw other=1",
            "USER PERMIT bob read=*",
            "USER REMOVE",
            "USER REMOVE bob extra",
            "USER LIST extra",
        ] {
            assert_eq!(err(bad).code, ErrorCode::Syntax, "{bad}");
        }
        assert!(err("USER ADD bob pw write=(").message.contains("write"));
        let long = "u".repeat(MAX_USER_NAME_BYTES + 1);
        assert_eq!(err(&format!("USER REMOVE {long}")).code, ErrorCode::Syntax);
    }
}
