//! Layered settings, shared by every Tollgate binary: defaults (serde `default`s) ←
//! a TOML file ← `TOLLGATE_<SECTION>__<FIELD>` environment variables. Errors name the
//! field path (`server.listen: invalid socket address`).
//!
//! Nothing here reads or changes the process environment: callers pass the variables in
//! (`std::env::vars()` in `main`, a map in tests).

use serde::de::DeserializeOwned;

pub const ENV_PREFIX: &str = "TOLLGATE_";

/// How a binary writes its logs to stderr (`[server] log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, span fields (such as `request_id`) included, for log
    /// pipelines.
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("config file is not valid TOML")]
    Toml(#[source] toml::de::Error),
    #[error("{var}: {message}")]
    Env { var: String, message: String },
    #[error("{path}: {message}")]
    Field { path: String, message: String },
    /// Several bad values, each `path: message`, in the order they were found.
    #[error("{} problems:\n  {}", .0.len(), .0.join("\n  "))]
    Fields(Vec<String>),
}

/// The TOML document with the environment laid over it, for the `sections` a binary owns
/// (other `TOLLGATE_*` variables, such as credentials, are not settings and are ignored).
pub fn layered(
    toml_text: Option<&str>,
    env: impl IntoIterator<Item = (String, String)>,
    sections: &[&str],
) -> Result<toml::Table, SettingsError> {
    let mut table: toml::Table = match toml_text {
        Some(text) => text.parse().map_err(SettingsError::Toml)?,
        None => toml::Table::new(),
    };
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    env.sort();
    for (var, raw) in env {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        let [section, field] = path.as_slice() else {
            continue;
        };
        if !sections.contains(&section.as_str()) {
            continue;
        }
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section_table) = entry.as_table_mut() else {
            return Err(SettingsError::Env {
                var,
                message: format!("[{section}] in the file is not a table"),
            });
        };
        section_table.insert(field.clone(), env_value(&raw));
    }
    Ok(table)
}

/// Deserializes `table` into `T`, naming the field path of every bad value: after each
/// error the offending value is taken out (its default applies, or the element holding a
/// missing field is dropped) and the rest is tried again, so one run lists every problem
/// rather than the first. Paths use the file's own names and indices.
pub fn deserialize<T: DeserializeOwned>(table: toml::Table) -> Result<T, SettingsError> {
    /// Enough for any real file; a bound so a pathological one cannot loop for long.
    const MAX_PROBLEMS: usize = 50;
    let mut table = table;
    let mut problems: Vec<(String, String)> = Vec::new();
    // Per array (by its path in the file), the original indices of elements dropped so
    // far, so later errors in that array still name the file's index.
    let mut dropped: std::collections::HashMap<String, Vec<usize>> = Default::default();
    loop {
        let error = match serde_path_to_error::deserialize(toml::Value::Table(table.clone())) {
            Ok(value) if problems.is_empty() => return Ok(value),
            Ok(_) => break,
            Err(e) => e,
        };
        let (segments, path) = file_path(error.path(), &dropped);
        let message = clean(&error.inner().to_string());
        // A required field taken out for being bad (or for holding something bad) is then
        // missing: that is the same problem, already named.
        let echo = missing_field(&message).is_some_and(|field| {
            let full = if path.is_empty() {
                field.to_owned()
            } else {
                format!("{path}.{field}")
            };
            problems.iter().any(|(p, _)| {
                p.strip_prefix(full.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            })
        });
        if !echo {
            problems.push((path, message));
        }
        if problems.len() >= MAX_PROBLEMS || !take_out(&mut table, &segments, &mut dropped) {
            break;
        }
    }
    if let [(path, message)] = problems.as_slice() {
        return Err(SettingsError::Field {
            path: path.clone(),
            message: message.clone(),
        });
    }
    Err(SettingsError::Fields(
        problems
            .into_iter()
            .map(|(path, message)| format!("{path}: {message}"))
            .collect(),
    ))
}

/// One step of a path into the document: a table key or an array index (in the current,
/// possibly thinned, document).
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// The error's path as steps into the current document, and as text with the file's
/// indices (`keys[3].team`).
fn file_path(
    path: &serde_path_to_error::Path,
    dropped: &std::collections::HashMap<String, Vec<usize>>,
) -> (Vec<Step>, String) {
    use serde_path_to_error::Segment;
    let mut steps = Vec::new();
    let mut text = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Map { key } => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
                steps.push(Step::Key(key.clone()));
            }
            Segment::Seq { index } => {
                let mut original = *index;
                if let Some(gone) = dropped.get(&text) {
                    let mut gone = gone.clone();
                    gone.sort_unstable();
                    for g in gone {
                        if g <= original {
                            original += 1;
                        }
                    }
                }
                text.push_str(&format!("[{original}]"));
                steps.push(Step::Index(*index));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    (steps, text)
}

/// Removes the value at `steps` (the last step) from `table`; false when there is
/// nothing left to remove (an error about the document as a whole).
fn take_out(
    table: &mut toml::Table,
    steps: &[Step],
    dropped: &mut std::collections::HashMap<String, Vec<usize>>,
) -> bool {
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut at = ValueMut::Table(table);
    let mut text = String::new();
    for step in parents {
        at = match (at, step) {
            (ValueMut::Table(t), Step::Key(k)) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(k);
                match t.get_mut(k) {
                    Some(v) => ValueMut::of(v),
                    None => return false,
                }
            }
            (ValueMut::Array(a), Step::Index(i)) => {
                text.push_str(&format!("[{i}]"));
                match a.get_mut(*i) {
                    Some(v) => ValueMut::of(v),
                    None => return false,
                }
            }
            _ => return false,
        };
    }
    match (at, last) {
        (ValueMut::Table(t), Step::Key(k)) => t.remove(k).is_some(),
        (ValueMut::Array(a), Step::Index(i)) if *i < a.len() => {
            a.remove(*i);
            let gone = dropped.entry(text).or_default();
            // Record the file's index of what was just dropped.
            let mut original = *i;
            let mut earlier = gone.clone();
            earlier.sort_unstable();
            for g in earlier {
                if g <= original {
                    original += 1;
                }
            }
            gone.push(original);
            true
        }
        _ => false,
    }
}

enum ValueMut<'a> {
    Table(&'a mut toml::Table),
    Array(&'a mut Vec<toml::Value>),
    Scalar,
}

impl<'a> ValueMut<'a> {
    fn of(value: &'a mut toml::Value) -> Self {
        match value {
            toml::Value::Table(t) => Self::Table(t),
            toml::Value::Array(a) => Self::Array(a),
            _ => Self::Scalar,
        }
    }
}

/// The field a "missing field `x`" message names.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

/// serde's message without the `in `path`` tail the TOML deserializer appends (the path
/// is given already).
fn clean(message: &str) -> String {
    let message = match message.rfind("\nin `") {
        Some(at) => &message[..at],
        None => message,
    };
    message.trim().to_owned()
}

/// An environment value as TOML when it parses as a scalar or array (`8080`, `true`,
/// `["a", "b"]`), else as text.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_table())
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        #[serde(default)]
        server: Server,
        #[serde(default)]
        keys: Vec<Key>,
    }
    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    #[allow(dead_code)]
    struct Server {
        port: u16,
        name: String,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Key {
        id: String,
        team: String,
        #[serde(default)]
        weight: u32,
    }

    #[test]
    fn every_bad_value_is_named_with_the_file_path_and_index() {
        let text = "[server]\nport = \"x\"\nname = 5\n\
                    [[keys]]\nid = \"a\"\nteam = \"t\"\n\
                    [[keys]]\nid = \"b\"\n\
                    [[keys]]\nid = \"c\"\nteam = \"t\"\nweight = -1\n\
                    [[keys]]\nid = \"d\"\n";
        let table = layered(Some(text), Vec::new(), &[]).unwrap();
        let Err(SettingsError::Fields(problems)) = deserialize::<Doc>(table) else {
            panic!("expected several problems")
        };
        let paths: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or_default())
            .collect();
        // Sections in the table's (alphabetical) order.
        assert_eq!(
            paths,
            [
                "keys[1]",
                "keys[2].weight",
                "keys[3]",
                "server.name",
                "server.port"
            ],
            "{problems:#?}"
        );
        assert!(
            problems[0].contains("missing field `team`"),
            "{problems:#?}"
        );
        assert!(
            !problems.iter().any(|p| p.contains("\nin `")),
            "{problems:#?}"
        );
    }

    #[test]
    fn one_bad_value_is_one_field_error() {
        let table = layered(Some("[server]\nport = \"x\"\n"), Vec::new(), &[]).unwrap();
        match deserialize::<Doc>(table) {
            Err(SettingsError::Field { path, .. }) => assert_eq!(path, "server.port"),
            other => panic!("{other:?}"),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn env_overrides_the_file_for_owned_sections_only() {
        let table = layered(
            Some("[server]\nport = 1\nname = \"a\"\n"),
            env(&[
                ("TOLLGATE_SERVER__PORT", "2"),
                ("TOLLGATE_OTHER__X", "y"),
                ("HOME", "/root"),
            ]),
            &["server"],
        )
        .unwrap();
        assert_eq!(table["server"]["port"].as_integer(), Some(2));
        assert_eq!(table["server"]["name"].as_str(), Some("a"));
        assert!(!table.contains_key("other"));
    }

    #[test]
    fn env_values_are_typed_when_they_parse() {
        let table = layered(
            None,
            env(&[
                ("TOLLGATE_S__A", "true"),
                ("TOLLGATE_S__B", "http://x"),
                ("TOLLGATE_S__C", "[\"p\", \"q\"]"),
            ]),
            &["s"],
        )
        .unwrap();
        assert_eq!(table["s"]["a"].as_bool(), Some(true));
        assert_eq!(table["s"]["b"].as_str(), Some("http://x"));
        assert_eq!(table["s"]["c"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn bad_values_name_their_path() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct S {
            server: Server,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Server {
            port: u16,
        }
        let table = layered(Some("[server]\nport = \"x\"\n"), env(&[]), &["server"]).unwrap();
        let err = deserialize::<S>(table).unwrap_err();
        assert!(err.to_string().starts_with("server.port"), "{err}");
    }
}
