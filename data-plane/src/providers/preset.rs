//! OpenAI-compatible servers differ from OpenAI in a few known ways. Each [`Preset`]
//! states them as data, so supporting another such server is one row here, not an
//! adapter: the [`super::openai`] adapter reads the row and nothing else.

/// How a server says how many tokens a streamed answer used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamUsage {
    /// Only when asked with `stream_options.include_usage` (OpenAI's way).
    WhenAsked,
    /// In the last chunk whether asked or not; the server refuses `stream_options`.
    Always,
    /// Never: the gateway counts the streamed text itself.
    Never,
}

/// Where a server reads its credential from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthHeader {
    /// `Authorization: Bearer <credential>`.
    Bearer,
    /// The credential as the whole value of this header.
    Named(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quirks {
    pub auth: AuthHeader,
    pub stream_usage: StreamUsage,
    /// The output-limit field the server honours; the other one is not sent.
    pub max_tokens_field: &'static str,
    /// Whether `n` > 1 (several answers) is served; if not, such calls are refused
    /// before anything goes upstream.
    pub supports_n: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Vllm,
    Ollama,
    Groq,
    Mistral,
    DeepSeek,
    Xai,
    Together,
}

/// No preset: behave as OpenAI's own API does.
pub const OPENAI: Quirks = Quirks {
    auth: AuthHeader::Bearer,
    stream_usage: StreamUsage::WhenAsked,
    max_tokens_field: "max_tokens",
    supports_n: true,
};

impl Preset {
    pub const ALL: [Self; 7] = [
        Self::Vllm,
        Self::Ollama,
        Self::Groq,
        Self::Mistral,
        Self::DeepSeek,
        Self::Xai,
        Self::Together,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Vllm => "vllm",
            Self::Ollama => "ollama",
            Self::Groq => "groq",
            Self::Mistral => "mistral",
            Self::DeepSeek => "deepseek",
            Self::Xai => "xai",
            Self::Together => "together",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// What each server does, from its own API reference.
    pub fn quirks(self) -> Quirks {
        let q = |stream_usage, max_tokens_field, supports_n| Quirks {
            auth: AuthHeader::Bearer,
            stream_usage,
            max_tokens_field,
            supports_n,
        };
        match self {
            Self::Vllm => q(StreamUsage::WhenAsked, "max_tokens", true),
            // Ollama's OpenAI endpoint serves one answer per call.
            Self::Ollama => q(StreamUsage::WhenAsked, "max_tokens", false),
            // Groq refuses n > 1 and documents `max_completion_tokens`.
            Self::Groq => q(StreamUsage::WhenAsked, "max_completion_tokens", false),
            // Mistral puts usage in its last chunk unasked and rejects unknown fields.
            Self::Mistral => q(StreamUsage::Always, "max_tokens", true),
            Self::DeepSeek => q(StreamUsage::WhenAsked, "max_tokens", false),
            Self::Xai => q(StreamUsage::WhenAsked, "max_completion_tokens", true),
            Self::Together => q(StreamUsage::Always, "max_tokens", true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for preset in Preset::ALL {
            assert_eq!(Preset::from_name(preset.name()), Some(preset));
        }
        assert_eq!(Preset::from_name("openai"), None);
        assert_eq!(Preset::from_name("VLLM"), None);
    }
}
