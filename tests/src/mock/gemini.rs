//! Google's Gemini API as documented for `v1beta`: `POST /v1beta/models/{model}:{method}`
//! with `generateContent`, `streamGenerateContent` (`?alt=sse`: every event a whole
//! `GenerateContentResponse` with the newest parts and the running `usageMetadata`),
//! `embedContent` and `batchEmbedContents`; errors as `{"error":{code,message,status}}`.
//! Vertex AI serves the same bodies under
//! `/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:{method}`.
//!
//! Usage follows the mock's fixed rule; `thoughts=<n>` adds thinking tokens, which like
//! the real API's count within `maxOutputTokens`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::stream::{data, sse_response};
use super::{Behavior, Flavor, Shared, error_response, piece, prepare, prompt_tokens};

/// The Google OAuth2 token endpoint the mock plays (`POST /token`).
#[derive(Debug, Clone)]
pub struct TokenEndpoint {
    /// The service account's public key: assertions must verify with it.
    pub public_key_pem: String,
    /// `expires_in` of the tokens minted (s).
    pub lifetime_secs: u64,
}

#[derive(Debug, Deserialize)]
struct Assertion {
    iss: String,
    scope: String,
    aud: String,
    iat: u64,
    exp: u64,
}

#[derive(Debug, Deserialize)]
pub struct AltQuery {
    alt: Option<String>,
}

/// `/v1beta/models/{model}:{method}` (Gemini API).
pub async fn call(
    State(shared): State<Arc<Shared>>,
    Path(call): Path<String>,
    Query(query): Query<AltQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    dispatch(&shared, &call, query, &headers, &body).await
}

/// `/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:{method}`
/// (Vertex AI; the bearer token is checked like any other credential).
pub async fn vertex_call(
    State(shared): State<Arc<Shared>>,
    Path((_project, _location, call)): Path<(String, String, String)>,
    Query(query): Query<AltQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = check_bearer(&shared, &headers) {
        return refused;
    }
    dispatch(&shared, &call, query, &headers, &body).await
}

/// With a token endpoint configured, a Vertex call must carry a token it minted.
pub(super) fn check_bearer(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    shared.options.google_token.as_ref()?;
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let minted = shared
        .minted
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if presented.is_some_and(|p| minted.iter().any(|t| t == p)) {
        return None;
    }
    Some(error_response(
        Flavor::Google,
        StatusCode::UNAUTHORIZED,
        "mock: Request had invalid authentication credentials.",
        None,
    ))
}

/// `POST /token`: the `jwt-bearer` grant. The assertion must be an RS256 JWT of the
/// configured service account for the cloud-platform scope, at most an hour long.
pub async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let refuse = |message: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": message})),
        )
            .into_response()
    };
    let Some(endpoint) = shared.options.google_token.clone() else {
        return refuse("mock: no token endpoint configured");
    };
    let form = String::from_utf8_lossy(&body).into_owned();
    let field = |name: &str| {
        form.split('&')
            .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    if field("grant_type").as_deref()
        != Some("urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
    {
        return refuse("mock: grant_type must be jwt-bearer");
    }
    let Some(assertion) = field("assertion") else {
        return refuse("mock: no assertion");
    };
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(endpoint.public_key_pem.as_bytes())
    else {
        return refuse("mock: bad public key");
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    let claims = match jsonwebtoken::decode::<Assertion>(&assertion, &key, &validation) {
        Ok(decoded) => decoded.claims,
        Err(e) => return refuse(&format!("mock: invalid JWT signature or claims: {e}")),
    };
    if claims.iss.is_empty()
        || claims.scope != "https://www.googleapis.com/auth/cloud-platform"
        || !claims.aud.ends_with("/token")
        || claims.exp.saturating_sub(claims.iat) > 3600
    {
        return refuse("mock: wrong issuer, scope, audience or lifetime");
    }
    let token = format!("ya29.mock-{}", shared.next_id());
    shared
        .minted
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(token.clone());
    Json(
        json!({"access_token": token, "expires_in": endpoint.lifetime_secs,
        "token_type": "Bearer"}),
    )
    .into_response()
}

async fn dispatch(
    shared: &Shared,
    call: &str,
    query: AltQuery,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let Some((model, method)) = call.rsplit_once(':') else {
        return error_response(
            Flavor::Google,
            StatusCode::NOT_FOUND,
            "mock: expected models/{model}:{method}",
            None,
        );
    };
    let (body, model, behavior) =
        match prepare(shared, Flavor::Google, headers, body, Some(model)).await {
            Ok(prepared) => prepared,
            Err(response) => return response,
        };
    match method {
        "generateContent" => generate(shared, &body, &model, behavior, false),
        "streamGenerateContent" if query.alt.as_deref() == Some("sse") => {
            generate(shared, &body, &model, behavior, true)
        }
        "streamGenerateContent" => error_response(
            Flavor::Google,
            StatusCode::BAD_REQUEST,
            "mock: only alt=sse streams are served",
            None,
        ),
        "embedContent" => embed(&body, false),
        "batchEmbedContents" => embed(&body, true),
        _ => error_response(
            Flavor::Google,
            StatusCode::NOT_FOUND,
            "mock: unknown method",
            None,
        ),
    }
}

/// The function the mock "calls": the one `allowedFunctionNames` names, else the first
/// declared, unless `mode` is `NONE`.
fn chosen_function(body: &Value) -> Option<String> {
    let config = body.pointer("/toolConfig/functionCallingConfig");
    if config.and_then(|c| c.get("mode")).and_then(Value::as_str) == Some("NONE") {
        return None;
    }
    if let Some(name) = config
        .and_then(|c| c.pointer("/allowedFunctionNames/0"))
        .and_then(Value::as_str)
    {
        return Some(name.to_owned());
    }
    body.pointer("/tools/0/functionDeclarations/0/name")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn generate(
    shared: &Shared,
    body: &Value,
    model: &str,
    behavior: Behavior,
    stream: bool,
) -> Response {
    if body
        .get("contents")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return error_response(
            Flavor::Google,
            StatusCode::BAD_REQUEST,
            "mock: * GenerateContentRequest.contents: contents is not specified",
            None,
        );
    }
    let id = format!("mock{}", shared.next_id());
    let cap = body
        .pointer("/generationConfig/maxOutputTokens")
        .and_then(Value::as_u64);
    let completion = behavior.completion_tokens(cap);
    // Thinking counts within maxOutputTokens, after the answer itself in this mock.
    let thoughts = match cap {
        Some(cap) => behavior
            .thoughts
            .min(cap.saturating_sub(u64::from(completion))),
        None => behavior.thoughts,
    };
    let prompt = prompt_tokens(body) + behavior.cache_read;
    let json_mode = body
        .pointer("/generationConfig/responseMimeType")
        .and_then(Value::as_str)
        == Some("application/json");
    let function = chosen_function(body);
    let finish = if behavior.truncated(cap) {
        "MAX_TOKENS"
    } else {
        "STOP"
    };
    let usage = |candidates: u64| {
        let mut u = json!({
            "promptTokenCount": prompt,
            "candidatesTokenCount": candidates,
            "totalTokenCount": prompt + candidates + thoughts,
        });
        if thoughts > 0 {
            u["thoughtsTokenCount"] = thoughts.into();
        }
        if behavior.cache_read > 0 {
            u["cachedContentTokenCount"] = behavior.cache_read.into();
        }
        u
    };
    let response = |parts: Value, finish: Option<&str>, candidates: u64| {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        if let Some(finish) = finish {
            candidate["finishReason"] = finish.into();
        }
        let mut r = json!({"candidates": [candidate], "modelVersion": model, "responseId": id});
        if behavior.usage {
            r["usageMetadata"] = usage(candidates);
        }
        r
    };
    let text = |range: std::ops::Range<u32>| -> String { range.map(piece).collect() };
    if !stream {
        let parts = match &function {
            Some(name) => json!([{"functionCall": {"name": name, "args": {"ok": true}}}]),
            None if json_mode => {
                json!([{"text": json!({"answer": text(0..completion)}).to_string()}])
            }
            None => json!([{"text": text(0..completion)}]),
        };
        return Json(response(parts, Some(finish), u64::from(completion))).into_response();
    }
    let mut events = Vec::new();
    match &function {
        Some(name) => events.push(data(&response(
            json!([{"functionCall": {"name": name, "args": {"ok": true}}}]),
            Some(finish),
            u64::from(completion),
        ))),
        None => {
            for i in 0..completion {
                let last = i + 1 == completion;
                events.push(data(&response(
                    json!([{"text": piece(i)}]),
                    last.then_some(finish),
                    u64::from(i + 1),
                )));
            }
            if completion == 0 {
                events.push(data(&response(json!([]), Some(finish), 0)));
            }
        }
    }
    let error = data(
        &json!({"error": {"code": 503, "message": "mock: injected mid-stream error",
        "status": "UNAVAILABLE"}}),
    );
    sse_response(events, error, &behavior)
}

fn embed(body: &Value, batch: bool) -> Response {
    let bad =
        |message: &str| error_response(Flavor::Google, StatusCode::BAD_REQUEST, message, None);
    let requests: Vec<&Value> = if batch {
        match body.get("requests").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => list.iter().collect(),
            _ => return bad("mock: `requests` must be a non-empty array"),
        }
    } else {
        vec![body]
    };
    let mut embeddings = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        if request.pointer("/content/parts/0/text").is_none() {
            return bad("mock: every request needs content.parts[].text");
        }
        let dimensions = request
            .get("outputDimensionality")
            .and_then(Value::as_u64)
            .map_or(8, |d| usize::try_from(d).unwrap_or(8).clamp(1, 4096));
        embeddings.push(json!({"values": super::openai::embedding(index, dimensions)}));
    }
    let answer = if batch {
        json!({"embeddings": embeddings})
    } else {
        json!({"embedding": embeddings.remove(0)})
    };
    Json(answer).into_response()
}

/// Google's error body: `{"error": {"code", "message", "status"}}`.
pub fn error_body(status: StatusCode, message: &str) -> Value {
    let name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        500..=599 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    };
    json!({"error": {"code": status.as_u16(), "message": message, "status": name}})
}
