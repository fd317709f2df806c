//! The price table shipped with the gateway (`prices/prices.toml`, compiled in), used
//! for deployments that do not set their own prices.

use std::collections::HashMap;

use serde::Deserialize;

use crate::money::Prices;

const BUILT_IN: &str = include_str!("../prices/prices.toml");

#[derive(Debug, Clone)]
pub struct PriceTable {
    /// Recorded with every usage event.
    pub version: String,
    models: HashMap<String, Prices>,
}

#[derive(Debug, thiserror::Error)]
pub enum PriceTableError {
    #[error("price table is not valid TOML")]
    Toml(#[source] toml::de::Error),
    #[error("price table lists {0:?} twice")]
    Duplicate(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    version: String,
    models: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    input: i64,
    output: i64,
    #[serde(default)]
    cached_input: i64,
    #[serde(default)]
    cache_write: i64,
}

impl PriceTable {
    pub fn built_in() -> Result<Self, PriceTableError> {
        Self::parse(BUILT_IN)
    }

    pub fn parse(text: &str) -> Result<Self, PriceTableError> {
        let file: TableFile = toml::from_str(text).map_err(PriceTableError::Toml)?;
        let mut models = HashMap::new();
        for e in file.models {
            let prices = Prices {
                input: e.input,
                output: e.output,
                cached_input: e.cached_input,
                cache_write: e.cache_write,
            };
            if models.insert(e.name.clone(), prices).is_some() {
                return Err(PriceTableError::Duplicate(e.name));
            }
        }
        Ok(Self {
            version: file.version,
            models,
        })
    }

    /// Exact name, else the longest listed name that `model` extends with `-…`
    /// (dated snapshots such as `gpt-4o-2024-08-06`).
    pub fn lookup(&self, model: &str) -> Option<Prices> {
        if let Some(p) = self.models.get(model) {
            return Some(*p);
        }
        let mut candidate = model;
        while let Some((head, _)) = candidate.rsplit_once('-') {
            if let Some(p) = self.models.get(head) {
                return Some(*p);
            }
            candidate = head;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_table_parses_and_has_a_version() {
        let table = PriceTable::built_in().unwrap();
        assert!(!table.version.is_empty());
        assert_eq!(table.lookup("gpt-4o").unwrap().input, 2_500_000);
    }

    #[test]
    fn dated_snapshots_price_as_their_family_but_not_as_a_sibling() {
        let table = PriceTable::built_in().unwrap();
        assert_eq!(table.lookup("gpt-4o-2024-08-06"), table.lookup("gpt-4o"));
        assert_eq!(
            table.lookup("gpt-4o-mini-2024-07-18"),
            table.lookup("gpt-4o-mini")
        );
        assert_ne!(table.lookup("gpt-4o-mini"), table.lookup("gpt-4o"));
        assert_eq!(
            table.lookup("claude-sonnet-4-5-20250929"),
            table.lookup("claude-sonnet-4-5")
        );
        assert_eq!(table.lookup("no-such-model"), None);
    }

    #[test]
    fn bedrock_model_ids_price_without_their_version_suffix() {
        let table = PriceTable::built_in().unwrap();
        let haiku = table
            .lookup("anthropic.claude-3-5-haiku-20241022-v1:0")
            .expect("priced");
        assert_eq!((haiku.input, haiku.output), (800_000, 4_000_000));
        assert_eq!(
            table.lookup("amazon.nova-pro-v1:0"),
            table.lookup("amazon.nova-pro")
        );
    }

    #[test]
    fn duplicates_are_refused() {
        let text = "version = \"x\"\n[[models]]\nname=\"a\"\ninput=1\noutput=1\n[[models]]\nname=\"a\"\ninput=1\noutput=1\n";
        assert!(matches!(
            PriceTable::parse(text),
            Err(PriceTableError::Duplicate(_))
        ));
    }
}
