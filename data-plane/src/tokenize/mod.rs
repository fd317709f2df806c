//! Prompt token counts before the call, for the budget reservation, with the model's
//! real BPE encoding (tiktoken; the tables ship inside the crate, nothing is fetched).
//!
//! A request is read once into a [`Prompt`]: text tokens (OpenAI's documented accounting
//! for chat, a few tokens of framing per message, plus every other billed input part:
//! tools, legacy functions, response-format schemas, predictions, tool calls and their
//! results) and its images. It is then priced per deployment: text for the provider's
//! [`Family`], scaled by a safety factor where its tokenizer counts more than tiktoken
//! ([`Prompt::text_tokens`]), and images by the published rule of the deployment's
//! upstream model ([`image_rules`], [`Prompt::image_tokens`]). The settlement later uses the
//! provider's own numbers, so an estimate only decides how much is reserved (an upper
//! bound), never what is charged.
//!
//! Running the BPE costs more than the rest of a call's own work, and grows with the
//! prompt. So a prompt is first read with [`Counting::Bound`]: every text counted as its
//! UTF-8 length, which a byte-level BPE can never exceed (each token stands for at least
//! one byte). The steps that decide something with the count — the context window, a
//! tokens-per-minute limit, a budget that would refuse or clamp — ask for
//! [`Counting::Exact`] only when the bound would make them say no.

pub mod image;

use serde_json::{Map, Value};
use tiktoken_rs::CoreBPE;

use self::image::{Image, ImageRule};
use crate::snapshot::ProviderKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    O200k,
    Cl100k,
}

/// How a prompt's text is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Counting {
    /// The encoding's real BPE.
    #[default]
    Exact,
    /// The text's UTF-8 length: never below the BPE's count, and free.
    Bound,
}

/// Bytes `value`'s JSON text has, without building the text.
fn json_len(value: &Value) -> u64 {
    struct Len(u64);
    impl std::io::Write for Len {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut len = Len(0);
    // Writing a `Value` into a sink that cannot fail cannot fail.
    let _ = serde_json::to_writer(&mut len, value);
    len.0
}

/// Tokens of framing per chat message, and for priming the reply (OpenAI cookbook).
const PER_MESSAGE: u64 = 3;
const REPLY_PRIMING: u64 = 3;

/// Chat fields besides `messages` that the provider reads as prompt: tool and function
/// definitions, the tool choice, a JSON schema to answer in, a predicted output.
/// (OpenAI bills a prediction's rejected tokens as completion tokens, inside the
/// completion limit the output ceiling already prices; counting it as input as well keeps
/// the bound safe whichever way a provider accounts for it.)
const CHAT_INPUT_FIELDS: &[&str] = &[
    "tools",
    "functions",
    "tool_choice",
    "function_call",
    "response_format",
    "prediction",
];

/// Who counts the prompt upstream. Decides the text safety factor, and the image rule
/// outside OpenAI's (whose rule depends on the model: [`image_rules`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// OpenAI's models (and anything else served through the OpenAI API): tiktoken is
    /// their real tokenizer.
    OpenAi,
    Anthropic,
    Gemini,
}

impl Family {
    /// From a deployment: its provider kind, or for OpenAI-compatible servers and
    /// gateways, the upstream model's name (`claude-…`, `gemini-…`).
    pub fn of(provider: ProviderKind, upstream_model: &str) -> Self {
        let name = upstream_model.to_ascii_lowercase();
        // Names may carry a vendor prefix (`anthropic/claude-…`, `google/gemini-…`).
        let base = name.rsplit('/').next().unwrap_or(&name);
        if provider == ProviderKind::Anthropic || base.starts_with("claude") {
            Self::Anthropic
        } else if matches!(provider, ProviderKind::Gemini | ProviderKind::Vertex)
            || base.starts_with("gemini")
        {
            Self::Gemini
        } else {
            Self::OpenAi
        }
    }

    /// The factor (as a ratio) the tiktoken count of text is multiplied by so that it
    /// stays above what the provider's own tokenizer counts.
    ///
    /// - Claude: Anthropic's tokenizer is not public. Published comparisons of the same
    ///   prompts (Vantage's 2025 study of Claude 3.5 Sonnet against GPT-4o) measured
    ///   about 16% more tokens for English prose, 21% for maths and 30% for Python code;
    ///   1.3 covers the worst of them.
    /// - Gemini: its SentencePiece vocabulary counts within roughly ±15% of o200k on
    ///   measured prose and code; 1.2 is our margin over that.
    fn text_factor(self) -> (u64, u64) {
        match self {
            Self::OpenAi => (1, 1),
            Self::Anthropic => (13, 10),
            Self::Gemini => (12, 10),
        }
    }
}

/// The rules a deployment's images are billed by: its family's, and for OpenAI's family
/// the upstream model's entry in OpenAI's table (several when the table could not tell
/// them apart; the estimate takes the largest).
pub fn image_rules(provider: ProviderKind, upstream_model: &str) -> &'static [ImageRule] {
    match Family::of(provider, upstream_model) {
        Family::Anthropic => &[ImageRule::Anthropic],
        Family::Gemini => &[ImageRule::Gemini],
        Family::OpenAi => {
            let name = upstream_model.to_ascii_lowercase();
            ImageRule::openai(name.rsplit('/').next().unwrap_or(&name))
        }
    }
}

/// A request's prompt, read once, priced per deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompt {
    /// Text, structure and framing, in tokens of the model's tiktoken encoding (or, for
    /// [`Counting::Bound`], at most that many).
    pub text: u64,
    pub images: Vec<Image>,
    /// How `text` was counted.
    pub counting: Counting,
}

impl Prompt {
    /// Text tokens `family` bills at most: the count scaled by its safety factor. (The
    /// unscaled [`Prompt::text`] is what is checked against a context window, so that no
    /// prompt the provider would take is refused for our margin.)
    pub fn text_tokens(&self, family: Family) -> u64 {
        let (num, den) = family.text_factor();
        self.text.saturating_mul(num).div_ceil(den)
    }

    /// Image tokens billed at most under the costliest of `rules` (a model's
    /// deployments' rules); none given means gpt-4o's.
    pub fn image_tokens(&self, rules: &[ImageRule]) -> u64 {
        let billed = |rule: &ImageRule| self.images.iter().map(|i| rule.tokens(i)).sum();
        if rules.is_empty() {
            return billed(&ImageRule::GPT_4O);
        }
        rules.iter().map(billed).max().unwrap_or(0)
    }
}

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

    /// The prompt of a chat request: every message (text and image parts, tool calls
    /// and tool results, names) and every other input field ([`CHAT_INPUT_FIELDS`]).
    pub fn chat_prompt(self, body: &Map<String, Value>, counting: Counting) -> Prompt {
        let c = Counter {
            encoding: self,
            counting,
        };
        let mut prompt = Prompt {
            text: REPLY_PRIMING,
            images: Vec::new(),
            counting,
        };
        let messages = body.get("messages").and_then(Value::as_array);
        for message in messages.into_iter().flatten() {
            prompt.text += PER_MESSAGE;
            if let Some(fields) = message.as_object() {
                for (name, value) in fields {
                    match name.as_str() {
                        "content" => c.content(value, &mut prompt),
                        "role" | "name" => {
                            prompt.text += value.as_str().map_or(0, |s| c.text(s));
                        }
                        // Tool calls (their arguments), function calls and anything else
                        // structured: its JSON text.
                        _ => prompt.text += c.json(value),
                    }
                }
            }
        }
        for field in CHAT_INPUT_FIELDS {
            match body.get(*field) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => prompt.text += c.text(s),
                Some(value) => prompt.text += c.json(value),
            }
        }
        prompt
    }

    /// The prompt of a completions request: `prompt`, and `suffix` (also read as input).
    pub fn completion_prompt(self, body: &Map<String, Value>, counting: Counting) -> Prompt {
        let c = Counter {
            encoding: self,
            counting,
        };
        let text = ["prompt", "suffix"]
            .iter()
            .filter_map(|field| body.get(*field))
            .map(|v| c.input(v))
            .sum();
        Prompt {
            text,
            images: Vec::new(),
            counting,
        }
    }

    /// The prompt of an embeddings request: `input`.
    pub fn embedding_prompt(self, body: &Map<String, Value>, counting: Counting) -> Prompt {
        let c = Counter {
            encoding: self,
            counting,
        };
        Prompt {
            text: body.get("input").map_or(0, |i| c.input(i)),
            images: Vec::new(),
            counting,
        }
    }
}

/// Counts text one way or the other.
#[derive(Clone, Copy)]
struct Counter {
    encoding: Encoding,
    counting: Counting,
}

impl Counter {
    fn text(self, text: &str) -> u64 {
        match self.counting {
            Counting::Exact => self.encoding.count(text),
            Counting::Bound => text.len() as u64,
        }
    }

    /// A structured value, by its JSON text.
    fn json(self, value: &Value) -> u64 {
        match self.counting {
            Counting::Exact => self.encoding.count(&value.to_string()),
            Counting::Bound => json_len(value),
        }
    }

    /// A `content` value: a string, or an array of typed parts (text, images, and any
    /// other part by its JSON text). Tool results arrive here too (role `tool`).
    fn content(self, content: &Value, prompt: &mut Prompt) {
        match content {
            Value::String(s) => prompt.text += self.text(s),
            Value::Array(parts) => {
                for part in parts {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text" | "input_text") => {
                            prompt.text += part
                                .get("text")
                                .and_then(Value::as_str)
                                .map_or(0, |s| self.text(s));
                        }
                        Some("image_url" | "image" | "input_image") => {
                            prompt.images.push(Image::from_part(part));
                        }
                        _ => prompt.text += self.json(part),
                    }
                }
            }
            Value::Null => {}
            other => prompt.text += self.json(other),
        }
    }

    /// A completions `prompt` or embeddings `input`: a string, an array of strings, or
    /// token-id arrays (a token id is one token whichever way the text is counted).
    fn input(self, input: &Value) -> u64 {
        match input {
            Value::String(s) => self.text(s),
            Value::Number(_) => 1,
            Value::Array(items) => items.iter().map(|item| self.input(item)).sum(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("an object"),
        }
    }

    #[test]
    fn counts_match_the_real_encoding() {
        // "hello world" is two tokens in both encodings.
        assert_eq!(Encoding::O200k.count("hello world"), 2);
        assert_eq!(Encoding::Cl100k.count("hello world"), 2);
        assert_eq!(Encoding::O200k.count(""), 0);
    }

    #[test]
    fn chat_adds_per_message_framing() {
        let req = body(json!({"messages": [{"role": "user", "content": "hello world"}]}));
        // 3 priming + 3 framing + "user" (1) + "hello world" (2)
        assert_eq!(Encoding::O200k.chat_prompt(&req, Counting::Exact).text, 9);
    }

    #[test]
    fn every_billed_input_field_counts() {
        let e = Encoding::O200k;
        let bare = body(json!({"messages": [{"role": "user", "content": "hi"}]}));
        let base = e.chat_prompt(&bare, Counting::Exact).text;
        let schema = json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {"city": {"type": "string"}}}}});
        let function = json!([{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
        for (field, value) in [
            (
                "tools",
                json!([{"type": "function", "function": function[0]}]),
            ),
            ("functions", function.clone()),
            ("response_format", schema.clone()),
            (
                "prediction",
                json!({"type": "content", "content": "fn main() { println!(\"hi\"); }"}),
            ),
        ] {
            let mut req = bare.clone();
            req.insert(field.into(), value.clone());
            assert_eq!(
                e.chat_prompt(&req, Counting::Exact).text,
                base + e.count(&value.to_string()),
                "{field}"
            );
        }
    }

    #[test]
    fn tool_calls_and_tool_results_count() {
        let e = Encoding::O200k;
        let arguments = "{\"city\": \"Paris, the capital of France\"}";
        let result = "It is 31 degrees and sunny in Paris today.";
        let req = body(json!({"messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": result}]},
        ]}));
        let prompt = e.chat_prompt(&req, Counting::Exact);
        assert!(
            prompt.text > e.count(arguments) + e.count(result),
            "arguments and results are in the count: {}",
            prompt.text
        );
    }

    #[test]
    fn images_are_priced_per_family() {
        let req = body(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "hello world"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/dog.png"}},
        ]}]}));
        let prompt = Encoding::O200k.chat_prompt(&req, Counting::Exact);
        assert_eq!(prompt.images.len(), 2);
        // 3 + 3 + "user" + "hello world" = 9 text; low = 85; unknown size = 1445 (gpt-4o).
        assert_eq!(prompt.text_tokens(Family::OpenAi), 9);
        let gpt_4o = image_rules(ProviderKind::OpenAi, "gpt-4o");
        assert_eq!(prompt.image_tokens(gpt_4o), 85 + 1445);
        assert_eq!(prompt.image_tokens(&[]), 85 + 1445, "no rule: gpt-4o's");
        // Anthropic: no detail, unknown size = its 1600 cap, each; text × 1.3 rounded up.
        assert_eq!(prompt.text_tokens(Family::Anthropic), 12);
        let claude = image_rules(ProviderKind::Anthropic, "claude-sonnet-4-5");
        assert_eq!(prompt.image_tokens(claude), 1600 * 2);
    }

    #[test]
    fn image_rules_follow_each_deployments_upstream_model() {
        use ProviderKind::*;
        let mini = image_rules(OpenAi, "gpt-4o-mini");
        let patches = image_rules(AzureOpenAi, "gpt-4.1-nano");
        assert_eq!(image_rules(OpenAiCompatible, "openai/gpt-4o-mini"), mini);
        assert_eq!(image_rules(OpenAi, "GPT-4o-Mini-2024-07-18"), mini);
        assert_eq!(image_rules(AzureOpenAi, "prod-4o"), &[ImageRule::GPT_4O]);
        assert_eq!(
            image_rules(OpenAiCompatible, "google/gemini-2.5-pro"),
            &[ImageRule::Gemini]
        );
        // A model served by gpt-4o and gpt-4o-mini deployments reserves for the mini,
        // per request: one low image and one of unknown size.
        let prompt = Prompt {
            text: 0,
            images: vec![
                Image {
                    size: Some((1024, 1024)),
                    detail: image::Detail::Low,
                },
                Image {
                    size: None,
                    detail: image::Detail::High,
                },
            ],
            counting: Counting::Exact,
        };
        let both: Vec<ImageRule> = [ImageRule::GPT_4O].iter().chain(mini).copied().collect();
        assert_eq!(prompt.image_tokens(&both), 2833 + (2833 + 8 * 5667));
        // The nano's patches (1536 × 2.46 for the unknown one) are less than that.
        let all: Vec<ImageRule> = both.iter().chain(patches).copied().collect();
        assert_eq!(prompt.image_tokens(&all), 2833 + (2833 + 8 * 5667));
        assert_eq!(prompt.image_tokens(patches), 2520 + 3779);
    }

    #[test]
    fn safety_factors_keep_other_tokenizers_under_the_estimate() {
        let prompt = Prompt {
            text: 1000,
            images: Vec::new(),
            counting: Counting::Exact,
        };
        assert_eq!(prompt.text_tokens(Family::OpenAi), 1000);
        assert_eq!(prompt.text_tokens(Family::Anthropic), 1300);
        assert_eq!(prompt.text_tokens(Family::Gemini), 1200);
    }

    #[test]
    fn families_follow_provider_and_model_name() {
        use ProviderKind::*;
        assert_eq!(Family::of(Anthropic, "whatever"), Family::Anthropic);
        assert_eq!(
            Family::of(OpenAiCompatible, "anthropic/claude-sonnet-4-5"),
            Family::Anthropic
        );
        assert_eq!(
            Family::of(OpenAiCompatible, "gemini-2.5-pro"),
            Family::Gemini
        );
        assert_eq!(Family::of(OpenAi, "gpt-4o"), Family::OpenAi);
        assert_eq!(Family::of(AzureOpenAi, "prod-4o"), Family::OpenAi);
    }

    #[test]
    fn completions_and_embeddings_inputs() {
        let e = Encoding::O200k;
        let req = body(json!({"prompt": ["hello world", [1, 2, 3]], "suffix": "hello world"}));
        assert_eq!(e.completion_prompt(&req, Counting::Exact).text, 2 + 3 + 2);
        let req = body(json!({"input": [[1, 2, 3], [4]]}));
        assert_eq!(e.embedding_prompt(&req, Counting::Exact).text, 4);
    }

    #[test]
    fn the_bound_counts_bytes_and_json_text() {
        let req = body(json!({"messages": [
            {"role": "user", "content": "héllo wörld", "name": "ann"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1"}]},
        ], "tools": [{"type": "function"}]}));
        let prompt = Encoding::O200k.chat_prompt(&req, Counting::Bound);
        let tool_calls = json!([{"id": "c1"}]).to_string().len() as u64;
        let tools = json!([{"type": "function"}]).to_string().len() as u64;
        // priming + 2 × framing + "user" + 13 bytes + "ann" + "assistant" + the JSON texts.
        let expected = 3 + 2 * 3 + 4 + 13 + 3 + 9 + tool_calls + tools;
        assert_eq!(prompt.text, expected);
        assert_eq!(prompt.counting, Counting::Bound);
        let req = body(json!({"input": ["héllo", [1, 2, 3]]}));
        assert_eq!(
            Encoding::O200k.embedding_prompt(&req, Counting::Bound).text,
            6 + 3
        );
    }

    mod bound {
        use proptest::prelude::*;
        use serde_json::{Map, Value, json};

        use super::super::{Counting, Encoding};

        /// Text as prompts have it: prose, code, whitespace runs, any Unicode.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                "\\PC{0,80}",
                "[ \t\n]{0,20}",
                "[a-zA-Z0-9 {}();:.,_'\"\\-]{0,120}",
                "[\\u{1F300}-\\u{1FAFF}é中文한국어 ]{0,40}",
            ]
        }

        /// Any JSON value, a few levels deep.
        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                text().prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec((text(), inner), 0..4)
                        .prop_map(|fields| Value::Object(fields.into_iter().collect())),
                ]
            })
        }

        /// A content part: text, an image (inline or linked), or anything else.
        fn part() -> impl Strategy<Value = Value> {
            prop_oneof![
                text().prop_map(|t| json!({"type": "text", "text": t})),
                text().prop_map(|t| json!({"type": "input_text", "text": t})),
                text().prop_map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
                Just(
                    json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}})
                ),
                value(),
            ]
        }

        fn content() -> impl Strategy<Value = Value> {
            prop_oneof![
                text().prop_map(Value::from),
                Just(Value::Null),
                prop::collection::vec(part(), 0..4).prop_map(Value::Array),
                value(),
            ]
        }

        fn message() -> impl Strategy<Value = Value> {
            (
                prop_oneof![
                    Just("user".to_owned()),
                    Just("system".to_owned()),
                    Just("tool".to_owned()),
                    text()
                ],
                content(),
                proptest::option::of(text()),
                proptest::option::of(value()),
            )
                .prop_map(|(role, content, name, tool_calls)| {
                    let mut m = json!({"role": role, "content": content});
                    if let Some(name) = name {
                        m["name"] = name.into();
                    }
                    if let Some(calls) = tool_calls {
                        m["tool_calls"] = calls;
                    }
                    m
                })
        }

        fn chat() -> impl Strategy<Value = Map<String, Value>> {
            (
                prop_oneof![
                    prop::collection::vec(message(), 0..5).prop_map(Value::Array),
                    value(),
                ],
                prop::collection::vec(
                    (
                        prop::sample::select(super::super::CHAT_INPUT_FIELDS),
                        value(),
                    ),
                    0..4,
                ),
            )
                .prop_map(|(messages, extra)| {
                    let mut body = Map::new();
                    body.insert("messages".into(), messages);
                    for (field, v) in extra {
                        body.insert((*field).into(), v);
                    }
                    body
                })
        }

        fn input() -> impl Strategy<Value = Value> {
            prop_oneof![
                text().prop_map(Value::from),
                prop::collection::vec(text().prop_map(Value::from), 0..4).prop_map(Value::Array),
                prop::collection::vec(any::<u32>().prop_map(Value::from), 0..8)
                    .prop_map(Value::Array),
                value(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]

            #[test]
            fn chat_bound_is_never_below_the_tokenizer(body in chat()) {
                for e in [Encoding::O200k, Encoding::Cl100k] {
                    let exact = e.chat_prompt(&body, Counting::Exact);
                    let bound = e.chat_prompt(&body, Counting::Bound);
                    prop_assert!(bound.text >= exact.text, "{} < {}", bound.text, exact.text);
                    prop_assert_eq!(&bound.images, &exact.images);
                }
            }

            #[test]
            fn completion_and_embedding_bounds_are_never_below_the_tokenizer(
                prompt in input(),
                suffix in proptest::option::of(input()),
            ) {
                let mut body = Map::new();
                body.insert("prompt".into(), prompt.clone());
                body.insert("input".into(), prompt);
                if let Some(suffix) = suffix {
                    body.insert("suffix".into(), suffix);
                }
                for e in [Encoding::O200k, Encoding::Cl100k] {
                    let exact = e.completion_prompt(&body, Counting::Exact).text;
                    let bound = e.completion_prompt(&body, Counting::Bound).text;
                    prop_assert!(bound >= exact, "{} < {}", bound, exact);
                    let exact = e.embedding_prompt(&body, Counting::Exact).text;
                    let bound = e.embedding_prompt(&body, Counting::Bound).text;
                    prop_assert!(bound >= exact, "{} < {}", bound, exact);
                }
            }
        }
    }

    #[test]
    fn unknown_encoding_names_are_refused() {
        assert_eq!(Encoding::from_name("p50k"), None);
        assert_eq!(Encoding::from_name(""), Some(Encoding::O200k));
    }
}
