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

/// Deserializes `table` into `T`, naming the field path of the first bad value.
pub fn deserialize<T: DeserializeOwned>(table: toml::Table) -> Result<T, SettingsError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| SettingsError::Field {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
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
