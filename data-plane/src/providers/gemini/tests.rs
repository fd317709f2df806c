use serde_json::json;

use super::*;

const TEXT: &str = include_str!("../../../tests/fixtures/gemini/response_text.json");
const FUNCTION_CALL: &str =
    include_str!("../../../tests/fixtures/gemini/response_function_call.json");
const SAFETY: &str = include_str!("../../../tests/fixtures/gemini/response_safety.json");
const PROMPT_BLOCKED: &str =
    include_str!("../../../tests/fixtures/gemini/response_prompt_blocked.json");
const STREAM_TEXT: &str = include_str!("../../../tests/fixtures/gemini/stream_text.sse");
const STREAM_CALL: &str = include_str!("../../../tests/fixtures/gemini/stream_function_call.sse");
const EMBED_BATCH: &str = include_str!("../../../tests/fixtures/gemini/embed_batch.json");

fn request(body: Value) -> JsonRequest {
    JsonRequest {
        body: body.as_object().cloned().unwrap_or_default(),
        output_ceiling: Some(256),
    }
}

fn translate(body: Value) -> Result<Value, ProviderError> {
    request_body(&request(body))
}

fn refused_param(body: Value) -> String {
    match translate(body) {
        Err(ProviderError::Untranslatable { param, .. }) => param.unwrap_or_default(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn events(transcript: &str) -> Vec<SseEvent> {
    transcript
        .split("\n\n")
        .filter_map(|block| block.trim().strip_prefix("data: "))
        .map(|data| SseEvent {
            event: "message".into(),
            data: data.into(),
        })
        .collect()
}

fn run(transcript: &str) -> (Vec<Chunk>, Vec<Value>) {
    let mut translator = StreamTranslator::new("gemini-2.5-flash".into());
    let mut chunks = Vec::new();
    for event in events(transcript) {
        chunks.extend(translator.on_event(&event).expect("translates"));
    }
    assert!(translator.ended, "the finishReason ends the stream");
    let json = chunks
        .iter()
        .map(|c| serde_json::from_slice(&c.data).expect("chunk is JSON"))
        .collect();
    (chunks, json)
}

#[test]
fn system_roles_images_and_limits_are_translated() {
    let body = translate(json!({
        "model": "g",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?x=1"}}
            ]},
            {"role": "assistant", "content": "Un chat."},
            {"role": "user", "content": "Merci"},
            {"role": "user", "content": "!"}
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "seed": 7
    }))
    .unwrap();
    assert_eq!(
        body["systemInstruction"],
        json!({"parts": [{"text": "Be brief.\n\nAnswer in French."}]})
    );
    let contents = body["contents"].as_array().unwrap();
    assert_eq!(
        contents.len(),
        3,
        "consecutive user turns merge: {contents:?}"
    );
    assert_eq!(contents[0]["role"], "user");
    assert_eq!(
        contents[0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}})
    );
    assert_eq!(
        contents[0]["parts"][2],
        json!({"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?x=1"}})
    );
    assert_eq!(
        contents[1],
        json!({"role": "model", "parts": [{"text": "Un chat."}]})
    );
    assert_eq!(
        contents[2]["parts"],
        json!([{"text": "Merci"}, {"text": "!"}])
    );
    assert_eq!(
        body["generationConfig"],
        json!({"temperature": 0.2, "topP": 0.9, "seed": 7, "maxOutputTokens": 256,
               "stopSequences": ["END"]})
    );
}

#[test]
fn tools_calls_and_results_become_function_parts() {
    let body = translate(json!({
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_9", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_9", "content": "{\"temp\": 21}"},
            {"role": "tool", "tool_call_id": "call_9", "content": "sunny"}
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
    }))
    .unwrap();
    assert_eq!(
        body["tools"],
        json!([{"functionDeclarations": [{"name": "get_weather", "description": "Current weather",
            "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}}}]}])
    );
    assert_eq!(
        body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );
    let contents = body["contents"].as_array().unwrap();
    assert_eq!(
        contents[1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]})
    );
    assert_eq!(
        contents[2]["parts"],
        json!([
            {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
            {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}
        ])
    );
    let required = translate(json!({"messages": [], "tool_choice": "required"})).unwrap();
    assert_eq!(
        required["toolConfig"]["functionCallingConfig"]["mode"],
        "ANY"
    );
}

#[test]
fn json_mode_and_schemas_set_the_response_type() {
    let body =
        translate(json!({"messages": [], "response_format": {"type": "json_object"}})).unwrap();
    assert_eq!(
        body["generationConfig"]["responseMimeType"],
        "application/json"
    );
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let body = translate(
        json!({"messages": [], "response_format": {"type": "json_schema",
        "json_schema": {"name": "x", "schema": schema}}}),
    )
    .unwrap();
    assert_eq!(body["generationConfig"]["responseJsonSchema"], schema);
}

#[test]
fn requests_gemini_cannot_answer_are_refused() {
    assert_eq!(
        refused_param(json!({"messages": [], "logprobs": true})),
        "logprobs"
    );
    assert_eq!(
        refused_param(json!({"messages": [], "functions": []})),
        "functions"
    );
    assert_eq!(
        refused_param(
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]})
        ),
        "messages"
    );
    assert_eq!(
        refused_param(
            json!({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]})
        ),
        "messages",
        "a result for a call nobody made cannot be named"
    );
    assert_eq!(
        refused_param(json!({"messages": [{"role": "wizard", "content": "x"}]})),
        "messages"
    );
}

#[test]
fn a_text_response_becomes_a_chat_completion_with_thinking_billed_as_output() {
    let reply = response_body(&serde_json::from_str(TEXT).unwrap(), "gemini-2.5-flash").unwrap();
    assert_eq!(
        reply.body["choices"][0]["message"]["content"],
        "Hello! How can I help you today?"
    );
    assert_eq!(reply.body["choices"][0]["finish_reason"], "stop");
    assert_eq!(reply.body["model"], "gemini-2.5-flash");
    assert_eq!(
        reply.usage,
        Some(Usage {
            input: 12,
            output: 13,
            cache_read: 0,
            cache_write: 0
        })
    );
    assert_eq!(reply.body["usage"]["completion_tokens"], 13);
}

#[test]
fn function_calls_become_tool_calls_and_cached_tokens_stay_apart() {
    let reply = response_body(&serde_json::from_str(FUNCTION_CALL).unwrap(), "m").unwrap();
    let choice = &reply.body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_0");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris", "unit": "celsius"}));
    assert_eq!(
        reply.usage,
        Some(Usage {
            input: 28,
            output: 18,
            cache_read: 32,
            cache_write: 0
        })
    );
    assert_eq!(reply.body["usage"]["prompt_tokens"], 60);
}

#[test]
fn safety_stops_and_blocked_prompts_are_content_filtered() {
    let reply = response_body(&serde_json::from_str(SAFETY).unwrap(), "m").unwrap();
    assert_eq!(reply.body["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(reply.body["choices"][0]["message"]["content"], Value::Null);
    let reply = response_body(&serde_json::from_str(PROMPT_BLOCKED).unwrap(), "m").unwrap();
    assert_eq!(reply.body["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(reply.usage.unwrap().input, 7);
    assert!(matches!(
        response_body(&json!({}), "m"),
        Err(ProviderError::Protocol(_))
    ));
}

#[test]
fn a_text_stream_becomes_chunks_then_one_usage_chunk() {
    let (chunks, json) = run(STREAM_TEXT);
    let text: String = json
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(text, "The sky is blue.");
    assert_eq!(json[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(json[0]["id"], "chatcmpl-abc123");
    let last = chunks.last().unwrap();
    assert!(last.usage_only);
    assert_eq!(
        last.usage,
        Some(Usage {
            input: 10,
            output: 11,
            cache_read: 0,
            cache_write: 0
        }),
        "the last usageMetadata counts, thinking included"
    );
    assert_eq!(
        chunks.iter().filter(|c| c.usage.is_some()).count(),
        1,
        "usage is reported once"
    );
    assert_eq!(json[json.len() - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        chunks.iter().map(|c| c.text_chars).sum::<usize>(),
        "The sky is blue.".len()
    );
}

#[test]
fn a_function_call_stream_becomes_a_tool_call_delta() {
    let (_, json) = run(STREAM_CALL);
    let call = &json[1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(call["index"], 0);
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(json[1]["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn an_error_mid_stream_fails_it_in_band() {
    let mut translator = StreamTranslator::new("m".into());
    let first = &events(STREAM_TEXT)[0];
    assert!(translator.on_event(first).is_ok());
    let error = SseEvent {
        event: "message".into(),
        data: r#"{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}"#.into(),
    };
    assert!(matches!(
        translator.on_event(&error),
        Err(ProviderError::InStream(m)) if m == "The model is overloaded."
    ));
    assert!(translator.ended);
}

#[tokio::test]
async fn a_stream_cut_before_its_finish_reason_is_reported() {
    let first = events(STREAM_TEXT).remove(0);
    let stream = translate_stream(futures_util::stream::iter([Ok(first)]), "m".into());
    let items: Vec<_> = stream.collect().await;
    assert!(items[0].is_ok());
    assert!(matches!(
        items.last(),
        Some(Err(ProviderError::Protocol(_)))
    ));
}

#[test]
fn embeddings_use_embed_content_for_one_input_and_batches_for_many() {
    let one = request(json!({"model": "e", "input": "hello", "dimensions": 256}));
    let (method, body) = embeddings_body(&one, "gemini-embedding-001").unwrap();
    assert_eq!(method, "embedContent");
    assert_eq!(
        body,
        json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hello"}]},
               "outputDimensionality": 256})
    );
    let many = request(json!({"model": "e", "input": ["a", "b"]}));
    let (method, body) = embeddings_body(&many, "gemini-embedding-001").unwrap();
    assert_eq!(method, "batchEmbedContents");
    assert_eq!(body["requests"].as_array().unwrap().len(), 2);
    assert!(embeddings_body(&request(json!({"input": [[1, 2]]})), "m").is_err());
    let reply = embeddings_response(&serde_json::from_str(EMBED_BATCH).unwrap(), &many).unwrap();
    assert_eq!(reply.body["data"][1]["index"], 1);
    assert_eq!(reply.body["data"][0]["embedding"][0], 0.0123);
    // Gemini reports no usage: "a" and "b" are one o200k token each, × 1.2, rounded up.
    assert_eq!(reply.usage.map(|u| u.input), Some(3));
    assert_eq!(reply.body["usage"]["prompt_tokens"], 3);
}

#[test]
fn finish_reasons_map() {
    assert_eq!(finish_reason(Some("MAX_TOKENS"), false), "length");
    assert_eq!(finish_reason(Some("RECITATION"), false), "content_filter");
    assert_eq!(finish_reason(Some("STOP"), true), "tool_calls");
    assert_eq!(finish_reason(Some("OTHER"), false), "stop");
    assert_eq!(finish_reason(None, false), Value::Null);
}
