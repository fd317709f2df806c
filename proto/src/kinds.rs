//! The one spelling of provider kinds. The admin API, the store, the gateway's TOML
//! snapshots, logs and metrics all name a kind with [`ProviderKind::name`], and read one
//! back with [`ProviderKind::from_name`], which knows no fallback: a name that is not
//! listed here is not a kind.

use crate::config::ProviderKind;

impl ProviderKind {
    /// Every kind a snapshot may carry, in wire order (`Unspecified` is not a kind).
    pub const ALL: [Self; 7] = [
        Self::Openai,
        Self::AzureOpenai,
        Self::Anthropic,
        Self::OpenaiCompatible,
        Self::Gemini,
        Self::Vertex,
        Self::Bedrock,
    ];

    /// [`Self::ALL`]'s names, in the same order (for `one_of` validation lists).
    pub const NAMES: [&'static str; 7] = [
        "openai",
        "azure",
        "anthropic",
        "openai_compatible",
        "gemini",
        "vertex",
        "bedrock",
    ];

    /// The kind's name everywhere outside protobuf; `None` for `Unspecified`.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::Unspecified => return None,
            Self::Openai => "openai",
            Self::AzureOpenai => "azure",
            Self::Anthropic => "anthropic",
            Self::OpenaiCompatible => "openai_compatible",
            Self::Gemini => "gemini",
            Self::Vertex => "vertex",
            Self::Bedrock => "bedrock",
        })
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == Some(name))
    }

    /// Every kind's name, for validation messages and docs.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.into_iter().filter_map(Self::name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_no_kind() {
        for kind in ProviderKind::ALL {
            let name = kind.name().expect("every listed kind has a name");
            assert_eq!(ProviderKind::from_name(name), Some(kind));
        }
        assert_eq!(ProviderKind::from_name("openai-compatible"), None);
        assert_eq!(ProviderKind::from_name(""), None);
        assert_eq!(ProviderKind::Unspecified.name(), None);
        assert_eq!(
            ProviderKind::names().collect::<Vec<_>>(),
            ProviderKind::NAMES.to_vec()
        );
    }

    #[test]
    fn all_lists_every_wire_value() {
        // A new enum value in config.proto must join ALL, or nobody can name it.
        let highest = ProviderKind::ALL.iter().map(|k| *k as i32).max();
        assert_eq!(highest, Some(ProviderKind::ALL.len() as i32));
        assert!(ProviderKind::try_from(highest.unwrap_or(0) + 1).is_err());
    }
}
