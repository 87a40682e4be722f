//! Layered settings for a subcommand (`sluice serve`): built-in defaults,
//! then a TOML file (`--config FILE` or `SLUICE_CONFIG`), then environment
//! variables, then flags; the later wins.
//!
//! There is one list of settings: the subcommand's clap arguments. An
//! argument `--some-flag` is also the environment variable
//! `SLUICE_SOME_FLAG` and the file key `some-flag`. A file's value becomes
//! the argument's default, so clap's own precedence (flag, environment,
//! default) gives the layering, and clap parses and checks a file's values
//! exactly as it does a flag's. [`describe`] shows the result and where each
//! value came from (`--print-config`).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// The prefix of every setting's environment variable.
pub(crate) const ENV_PREFIX: &str = "SLUICE_";
/// Arguments that are not settings: they say where settings come from or
/// what to do with them. `config` still has its environment variable.
const NOT_SETTINGS: &[&str] = &["config", "print_config", "help", "version"];

/// The parsed command line, with the file and environment applied.
#[derive(Debug)]
pub struct Layered {
    /// The matches of the whole command line.
    pub matches: ArgMatches,
    /// The config file read, if any, and the settings it set (their ids:
    /// `max_line` whether the file spelled it `max-line` or `max_line`).
    pub(crate) file: Option<(PathBuf, Vec<String>)>,
}

/// Why the settings could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The command line (or an environment variable) is wrong: clap's own
    /// error, which prints usage.
    #[error(transparent)]
    Args(#[from] clap::Error),
    /// A `SLUICE_*` environment variable's value is wrong.
    #[error("the environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong (clap's words, which name the flag).
        message: String,
    },
    /// The config file could not be read.
    #[error("reading the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not TOML, has a key that is no setting, or a value
    /// the setting does not take.
    #[error("the config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The environment variable of setting `id` (`data_dir` → `SLUICE_DATA_DIR`).
pub(crate) fn env_name(id: &str) -> String {
    format!("{ENV_PREFIX}{}", id.to_ascii_uppercase())
}

/// The ids of `sub`'s settings, in declaration order.
fn setting_ids(sub: &Command) -> Vec<String> {
    sub.get_arguments()
        .map(|a| a.get_id().as_str())
        .filter(|id| !NOT_SETTINGS.contains(id))
        .map(str::to_owned)
        .collect()
}

/// Gives every option of subcommand `sub` its `SLUICE_*` variable.
fn with_env(cmd: Command, sub: &str) -> Command {
    cmd.mut_subcommand(sub, |mut sc| {
        let ids: Vec<String> = sc
            .get_arguments()
            .filter(|a| !a.is_positional())
            .map(|a| a.get_id().as_str())
            .filter(|id| !NOT_SETTINGS.contains(id) || *id == "config")
            .map(str::to_owned)
            .collect();
        for id in ids {
            sc = sc.mut_arg(&id, |a| a.env(env_name(&id)));
        }
        sc
    })
}

/// Parses `args` (the program name first) against `cmd`, applying the
/// environment to subcommand `sub`'s options and, when `sub` runs with
/// `--config FILE`, the file's settings as their defaults.
pub fn parse(cmd: Command, sub: &str, args: Vec<OsString>) -> Result<Layered, LayerError> {
    let cmd = with_env(cmd, sub);
    let first = cmd
        .clone()
        .try_get_matches_from(&args)
        .map_err(|e| from_env(e, &cmd, sub, &args))?;
    let Some(path) = first
        .subcommand_matches(sub)
        .and_then(|m| m.try_get_one::<PathBuf>("config").ok().flatten())
        .cloned()
    else {
        return Ok(Layered {
            matches: first,
            file: None,
        });
    };
    let text = std::fs::read_to_string(&path).map_err(|source| LayerError::Read {
        path: path.clone(),
        source,
    })?;
    let file_error = |message: String| LayerError::File {
        path: path.clone(),
        message,
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
    let known = cmd
        .find_subcommand(sub)
        .map(setting_ids)
        .unwrap_or_default();
    let mut cmd = cmd;
    let mut keys = Vec::new();
    for (key, value) in table {
        let id = key.replace('-', "_");
        if !known.contains(&id) {
            let names: Vec<String> = known.iter().map(|k| k.replace('_', "-")).collect();
            return Err(file_error(format!(
                "unknown setting `{key}` (the settings are: {})",
                names.join(", ")
            )));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(file_error(format!(
                    "`{key}` must be a string, a number or true/false, not {}",
                    other.type_str()
                )))
            }
        };
        cmd = cmd.mut_subcommand(sub, |sc| sc.mut_arg(&id, |a| a.default_value(text)));
        keys.push(id);
    }
    let matches = cmd.try_get_matches_from(&args).map_err(|e| {
        // The command line parsed without the file: the file's value is wrong.
        let message = e.to_string();
        let first_line = message.lines().next().unwrap_or_default();
        file_error(first_line.trim_start_matches("error: ").to_owned())
    })?;
    Ok(Layered {
        matches,
        file: Some((path, keys)),
    })
}

/// Clap's error `e` about a value, when that value came from a setting's
/// environment variable (not given as a flag): [`LayerError::Env`], which
/// names the variable, since clap names only the flag. Any other error
/// stays clap's own.
fn from_env(e: clap::Error, cmd: &Command, sub: &str, args: &[OsString]) -> LayerError {
    use clap::error::{ContextKind, ContextValue};
    let text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let (Some(flag), Some(value)) = (
        text(ContextKind::InvalidArg),
        text(ContextKind::InvalidValue),
    ) else {
        return e.into();
    };
    let given = |long: &str| {
        let flag = format!("--{long}");
        args.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
        })
    };
    let from_env = cmd.find_subcommand(sub).and_then(|sc| {
        sc.get_arguments().find_map(|a| {
            let long = a.get_long()?;
            let names_it = flag == format!("--{long}") || flag.starts_with(&format!("--{long} "));
            let var = env_name(a.get_id().as_str());
            let set = std::env::var_os(&var).is_some_and(|v| v.to_string_lossy() == value);
            (names_it && set && !given(long)).then_some(var)
        })
    });
    match from_env {
        Some(var) => {
            let message = e.to_string();
            let first_line = message.lines().next().unwrap_or_default();
            LayerError::Env {
                var,
                message: first_line.trim_start_matches("error: ").to_owned(),
            }
        }
        None => e.into(),
    }
}

/// The effective settings of subcommand `sub` as a TOML document that
/// `--config` accepts, each value commented with where it came from.
pub fn describe(layered: &Layered, cmd: &Command, sub: &str) -> String {
    let mut out = String::from(
        "# sluice serve: the effective configuration.\n\
         # Each value comes from (later wins): its default, the --config file,\n\
         # the environment (SLUICE_<SETTING>), a flag (--<setting>).\n",
    );
    let (Some(m), Some(sc)) = (
        layered.matches.subcommand_matches(sub),
        cmd.find_subcommand(sub),
    ) else {
        return out;
    };
    let from_file = |id: &str| {
        layered
            .file
            .as_ref()
            .filter(|(_, ids)| ids.iter().any(|k| k == id))
            .map(|(path, _)| path.display().to_string())
    };
    for id in setting_ids(sc) {
        let key = id.replace('_', "-");
        let raw: Option<Vec<String>> = m.get_raw(&id).map(|vals| {
            vals.map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        });
        let Some(raw) = raw.filter(|v| !v.is_empty()) else {
            out.push_str(&format!("# {key}: not set\n"));
            continue;
        };
        // A secret is said to be set, never shown.
        let value = if key.contains("secret") {
            toml::Value::String("<hidden>".into())
        } else {
            toml_value(&raw.join(","))
        };
        let source = match m.value_source(&id) {
            Some(ValueSource::CommandLine) => format!("flag --{key}"),
            Some(ValueSource::EnvVariable) => format!("environment {}", env_name(&id)),
            _ => match from_file(&id) {
                Some(path) => format!("file {path}"),
                None => "default".to_owned(),
            },
        };
        out.push_str(&format!("{key} = {value}  # {source}\n"));
    }
    out
}

/// `text` as a TOML value: a boolean, integer or decimal fraction when it
/// is one, otherwise a quoted string.
fn toml_value(text: &str) -> toml::Value {
    if let Ok(b) = text.parse::<bool>() {
        toml::Value::Boolean(b)
    } else if let Ok(i) = text.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Some(f) = text
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && text.contains('.'))
    {
        toml::Value::Float(f)
    } else {
        toml::Value::String(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    /// A stand-in for `sluice`: subcommand `run` with a number, a string,
    /// a switch and the config file. Ids are unique to each test so that
    /// their environment variables do not meet across parallel tests.
    fn command(p: &str) -> Command {
        let arg = |name: String| Arg::new(name.clone()).long(name.replace('_', "-"));
        Command::new("sluice").subcommand(
            Command::new("run")
                .arg(
                    arg(format!("{p}_port"))
                        .default_value("5680")
                        .value_parser(clap::value_parser!(u16)),
                )
                .arg(arg(format!("{p}_dir")).default_value("./data"))
                .arg(arg(format!("{p}_quiet")).action(ArgAction::SetTrue))
                .arg(arg(format!("{p}_cert")))
                .arg(arg("config".into()).value_parser(clap::value_parser!(PathBuf)))
                .arg(arg("print_config".into()).action(ArgAction::SetTrue)),
        )
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("sluice")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), text).expect("write");
        f
    }

    fn run_matches(l: &Layered) -> &ArgMatches {
        l.matches.subcommand_matches("run").expect("run")
    }

    #[test]
    fn defaults_then_file_then_env_then_flags() {
        let f = file("a1-port = 7000\na1-dir = \"/srv/q\"\na1-quiet = true\n");
        let config = f.path().to_str().expect("utf-8 path");
        // The file alone.
        let l = parse(command("a1"), "run", args(&["run", "--config", config])).expect("parse");
        let m = run_matches(&l);
        assert_eq!(m.get_one::<u16>("a1_port"), Some(&7000));
        assert_eq!(
            m.get_one::<String>("a1_dir").map(String::as_str),
            Some("/srv/q")
        );
        assert!(m.get_flag("a1_quiet"));
        // The environment beats the file; a flag beats both.
        std::env::set_var("SLUICE_A1_PORT", "7100");
        std::env::set_var("SLUICE_A1_DIR", "/env");
        let l = parse(
            command("a1"),
            "run",
            args(&["run", "--config", config, "--a1-dir", "/flag"]),
        )
        .expect("parse");
        std::env::remove_var("SLUICE_A1_PORT");
        std::env::remove_var("SLUICE_A1_DIR");
        let m = run_matches(&l);
        assert_eq!(m.get_one::<u16>("a1_port"), Some(&7100));
        assert_eq!(
            m.get_one::<String>("a1_dir").map(String::as_str),
            Some("/flag")
        );
        let text = describe(&l, &command("a1"), "run");
        assert!(
            text.contains("a1-port = 7100  # environment SLUICE_A1_PORT"),
            "{text}"
        );
        assert!(
            text.contains("a1-dir = \"/flag\"  # flag --a1-dir"),
            "{text}"
        );
        assert!(
            text.contains(&format!("a1-quiet = true  # file {config}")),
            "{text}"
        );
        assert!(text.contains("# a1-cert: not set"), "{text}");
    }

    #[test]
    fn a_key_spelled_with_underscores_is_from_the_file() {
        let f = file("a4_port = 7000\n");
        let config = f.path().to_str().expect("utf-8 path");
        let l = parse(command("a4"), "run", args(&["run", "--config", config])).expect("parse");
        assert_eq!(run_matches(&l).get_one::<u16>("a4_port"), Some(&7000));
        let text = describe(&l, &command("a4"), "run");
        assert!(
            text.contains(&format!("a4-port = 7000  # file {config}")),
            "{text}"
        );
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        std::env::set_var("SLUICE_A5_PORT", "lots");
        let from_env = parse(command("a5"), "run", args(&["run"]));
        // A flag beats the variable: then the flag is what is wrong.
        let from_flag = parse(command("a5"), "run", args(&["run", "--a5-port", "lots"]));
        std::env::remove_var("SLUICE_A5_PORT");
        let e = from_env.expect_err("not a port");
        assert!(matches!(e, LayerError::Env { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with("the environment variable SLUICE_A5_PORT: ")
                && text.contains("lots")
                && text.contains("--a5-port"),
            "{text}"
        );
        let e = from_flag.expect_err("not a port");
        assert!(matches!(e, LayerError::Args(_)), "{e:?}");
    }

    #[test]
    fn without_a_file_the_defaults_show() {
        let l = parse(command("a2"), "run", args(&["run"])).expect("parse");
        assert!(l.file.is_none());
        let text = describe(&l, &command("a2"), "run");
        assert!(text.contains("a2-port = 5680  # default"), "{text}");
        assert!(text.contains("a2-quiet = false  # default"), "{text}");
        // What describe prints is a file that --config takes back.
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let table: toml::Table = toml::from_str(&body).expect("valid TOML");
        assert_eq!(
            table.get("a2-port").and_then(|v| v.as_integer()),
            Some(5680)
        );
    }

    #[test]
    fn a_bad_file_is_named_and_explained() {
        let unknown = file("a3-prot = 1\n");
        let e = parse(
            command("a3"),
            "run",
            args(&["run", "--config", unknown.path().to_str().expect("utf-8")]),
        )
        .expect_err("unknown key");
        let text = e.to_string();
        assert!(
            text.contains("unknown setting `a3-prot`") && text.contains("a3-port"),
            "{text}"
        );

        let bad_value = file("a3-port = 70000\n");
        let e = parse(
            command("a3"),
            "run",
            args(&["run", "--config", bad_value.path().to_str().expect("utf-8")]),
        )
        .expect_err("out of range");
        assert!(matches!(e, LayerError::File { .. }), "{e:?}");
        assert!(e.to_string().contains("70000"), "{e}");

        let not_toml = file("a3-port = = 1\n");
        let e = parse(
            command("a3"),
            "run",
            args(&["run", "--config", not_toml.path().to_str().expect("utf-8")]),
        )
        .expect_err("not toml");
        assert!(matches!(e, LayerError::File { .. }), "{e:?}");

        let table = file("[a3-port]\nx = 1\n");
        let e = parse(
            command("a3"),
            "run",
            args(&["run", "--config", table.path().to_str().expect("utf-8")]),
        )
        .expect_err("a table");
        assert!(e.to_string().contains("must be a string"), "{e}");

        let e = parse(
            command("a3"),
            "run",
            args(&["run", "--config", "/nonexistent/x.toml"]),
        )
        .expect_err("missing");
        assert!(matches!(e, LayerError::Read { .. }), "{e:?}");
    }
}
