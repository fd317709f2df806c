//! The price table shipped with the gateway (`prices/prices.toml`, compiled in), used
//! for deployments that do not set their own prices.

use std::collections::HashMap;

use serde::Deserialize;

use crate::money::{self, PriceTier, Prices, TierError};

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
    #[error("price table entry {name:?}: {error}")]
    Tiers { name: String, error: TierError },
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
    /// Long-context tiers, ascending.
    #[serde(default)]
    tiers: Vec<TierEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierEntry {
    above_prompt_tokens: u64,
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
            let tiers: Vec<PriceTier> = e
                .tiers
                .iter()
                .map(|t| PriceTier {
                    above_prompt_tokens: t.above_prompt_tokens,
                    input: t.input,
                    output: t.output,
                    cached_input: t.cached_input,
                    cache_write: t.cache_write,
                })
                .collect();
            money::check_tiers(&tiers).map_err(|error| PriceTableError::Tiers {
                name: e.name.clone(),
                error,
            })?;
            let prices = Prices {
                tiers: tiers.into(),
                ..Prices::flat(e.input, e.output, e.cached_input, e.cache_write)
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
            return Some(p.clone());
        }
        let mut candidate = model;
        while let Some((head, _)) = candidate.rsplit_once('-') {
            if let Some(p) = self.models.get(head) {
                return Some(p.clone());
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
    fn long_context_tiers_of_the_published_models_are_in_the_table() {
        let table = PriceTable::built_in().unwrap();
        let tier = |model: &str| {
            let p = table.lookup(model).expect("priced");
            let t = *p.tiers.first().expect("tiered");
            (t.above_prompt_tokens, t.input, t.output)
        };
        assert_eq!(tier("gemini-2.5-pro"), (200_000, 2_500_000, 15_000_000));
        assert_eq!(tier("claude-sonnet-4-5"), (200_000, 6_000_000, 22_500_000));
        assert_eq!(
            tier("claude-sonnet-4-20250514"),
            (200_000, 6_000_000, 22_500_000)
        );
        assert_eq!(
            tier("anthropic.claude-sonnet-4-5-20250929-v1:0"),
            (200_000, 6_000_000, 22_500_000)
        );
        // Flash has one price at every prompt size.
        assert!(table.lookup("gemini-2.5-flash").unwrap().tiers.is_empty());
    }

    #[test]
    fn tiers_out_of_order_are_refused() {
        let text = "version = \"x\"\n[[models]]\nname=\"a\"\ninput=1\noutput=1\n[[models.tiers]]\nabove_prompt_tokens=9\ninput=2\noutput=2\n[[models.tiers]]\nabove_prompt_tokens=9\ninput=3\noutput=3\n";
        let err = PriceTable::parse(text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "price table entry \"a\": tier 1: above_prompt_tokens must be above the previous tier's"
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
