//! The OpenAI Responses lane (`POST /v1/responses`).

use serde_json::{Map, Value};

use crate::pipeline::request::RequestError;
use crate::providers::{CallCx, ChunkStream, JsonRequest, Provider, ProviderError};

/// Checks a Responses body beyond what every body must be: `input` is required.
pub fn check(body: &Map<String, Value>) -> Result<(), RequestError> {
    match body.get("input") {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) if !items.is_empty() => Ok(()),
        _ => Err(RequestError::Invalid {
            message: "input must be a string or a non-empty array of input items".into(),
            param: Some("input"),
        }),
    }
}

/// The lane over a chat provider.
pub async fn via_chat<P: Provider + Sync + ?Sized>(
    _provider: &P,
    _req: &JsonRequest,
    _cx: CallCx<'_>,
) -> Result<ChunkStream, ProviderError> {
    Err(ProviderError::Unsupported {
        provider: P::KIND,
        what: "/v1/responses",
    })
}
