//! Prompt token counts before the call, for the budget reservation, with the model's
//! real BPE encoding (tiktoken; the tables ship inside the crate, nothing is fetched).
//!
//! The count follows OpenAI's documented accounting for chat (a few tokens of framing
//! per message). For other providers' models it is an estimate from the same encoding;
//! the settlement later uses the provider's own numbers, so an estimate only decides how
//! much is reserved, never what is charged.

use serde_json::Value;
use tiktoken_rs::CoreBPE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    O200k,
    Cl100k,
}

/// Tokens of framing per chat message, and for priming the reply (OpenAI cookbook).
const PER_MESSAGE: u64 = 3;
const REPLY_PRIMING: u64 = 3;
/// A conservative flat charge for an image part (a 512×512-tile high-detail image).
const PER_IMAGE: u64 = 765;

impl Encoding {
    /// `""` means the default (o200k, used by current OpenAI models).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "" | "o200k_base" => Some(Self::O200k),
            "cl100k_base" => Some(Self::Cl100k),
            _ => None,
        }
    }

    fn bpe(self) -> &'static CoreBPE {
        match self {
            Self::O200k => tiktoken_rs::o200k_base_singleton(),
            Self::Cl100k => tiktoken_rs::cl100k_base_singleton(),
        }
    }

    /// Loads the BPE tables now rather than on the first call (~100 ms).
    pub fn warm_up(self) {
        let _ = self.bpe();
    }

    pub fn count(self, text: &str) -> u64 {
        self.bpe().encode_ordinary(text).len() as u64
    }

    /// Prompt tokens of a chat request: messages (text and image parts, tool calls) and
    /// tool definitions.
    pub fn count_chat(self, messages: &[Value], tools: Option<&Value>) -> u64 {
        let mut total = REPLY_PRIMING;
        for message in messages {
            total += PER_MESSAGE;
            if let Some(fields) = message.as_object() {
                for (name, value) in fields {
                    total += match name.as_str() {
                        "content" => self.count_content(value),
                        "role" | "name" => value.as_str().map_or(0, |s| self.count(s)),
                        // Tool calls and anything else structured: count its JSON text.
                        _ => self.count(&value.to_string()),
                    };
                }
            }
        }
        if let Some(tools) = tools {
            total += self.count(&tools.to_string());
        }
        total
    }

    /// Tokens of a `content` value: a string, or an array of typed parts.
    pub fn count_content(self, content: &Value) -> u64 {
        match content {
            Value::String(s) => self.count(s),
            Value::Array(parts) => parts
                .iter()
                .map(|part| match part.get("type").and_then(Value::as_str) {
                    Some("text") => part
                        .get("text")
                        .and_then(Value::as_str)
                        .map_or(0, |s| self.count(s)),
                    Some("image_url" | "image" | "input_image") => PER_IMAGE,
                    _ => self.count(&part.to_string()),
                })
                .sum(),
            Value::Null => 0,
            other => self.count(&other.to_string()),
        }
    }

    /// Tokens of a completions `prompt` or embeddings `input`: a string, an array of
    /// strings, or token-id arrays (counted as given).
    pub fn count_input(self, input: &Value) -> u64 {
        match input {
            Value::String(s) => self.count(s),
            Value::Number(_) => 1,
            Value::Array(items) => items.iter().map(|item| self.count_input(item)).sum(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_match_the_real_encoding() {
        // "hello world" is two tokens in both encodings.
        assert_eq!(Encoding::O200k.count("hello world"), 2);
        assert_eq!(Encoding::Cl100k.count("hello world"), 2);
        assert_eq!(Encoding::O200k.count(""), 0);
    }

    #[test]
    fn chat_adds_per_message_framing() {
        let messages = [json!({"role": "user", "content": "hello world"})];
        // 3 priming + 3 framing + "user" (1) + "hello world" (2)
        assert_eq!(Encoding::O200k.count_chat(&messages, None), 9);
    }

    #[test]
    fn image_parts_and_token_arrays_are_counted() {
        let content = json!([{"type": "text", "text": "hello world"}, {"type": "image_url", "image_url": {"url": "data:"}}]);
        assert_eq!(Encoding::O200k.count_content(&content), 2 + PER_IMAGE);
        assert_eq!(Encoding::O200k.count_input(&json!([[1, 2, 3], [4]])), 4);
    }

    #[test]
    fn unknown_encoding_names_are_refused() {
        assert_eq!(Encoding::from_name("p50k"), None);
        assert_eq!(Encoding::from_name(""), Some(Encoding::O200k));
    }
}
