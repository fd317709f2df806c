//! The admin API's one error response: the service layer's [`Problem`] as RFC 9457
//! problem+json (`ApiError` is its name on this side), with a field-level `errors` list
//! for validation failures.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use serde_json::json;

pub use crate::service::problem::{FieldError, Problem as ApiError};

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"type": "about:blank", "title": self.title, "status": self.status.as_u16(), "detail": self.detail});
        if !self.errors.is_empty() {
            body["errors"] = json!(self.errors);
        }
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        Self::new(e.status(), "Bad request body", e.body_text())
    }
}
