//! Field checks that answer with every problem at once (422), before the database sees
//! the request. The database constraints stay as the last line of defence.
//!
//! [`Body`] reads a JSON request body the same way: its shape is checked against the
//! type's own OpenAPI schema first, so one 422 names every missing, unknown or mistyped
//! field in plain words (serde alone stops at the first and words it for Rust).

use axum::Json;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::{ApiError, FieldError};

/// A JSON body of type `T`, every field checked before it is deserialized. Take it as
/// `Result<Body<T>, ApiError>` and `?` it after the permission check, so a caller
/// without the right learns nothing from a 422.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned + utoipa::ToSchema,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Not JSON at all (wrong content type, bad syntax) stays axum's 415 / 400.
        let Json(value) = Json::<Value>::from_request(req, state).await?;
        parse(value).map(Body)
    }
}

/// `value` as a `T`, or a 422 listing every field at fault.
pub fn parse<T: DeserializeOwned + utoipa::ToSchema>(value: Value) -> Result<T, ApiError> {
    let mut errors = Vec::new();
    match value.as_object() {
        None => errors.push(field_error("body", "must be a JSON object")),
        Some(object) => {
            let schema = serde_json::to_value(T::schema()).unwrap_or_default();
            shape_errors(&schema, object, &mut errors);
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    // What the schema cannot say (a number out of range, an unknown enum value) serde
    // does, with the path of the field.
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::invalid(vec![field_error(&field, &e.into_inner().to_string())])
    })
}

fn field_error(field: &str, message: &str) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// Missing required fields, unknown fields and values of the wrong JSON type, per the
/// object schema `schema` (a JSON Schema as utoipa renders it). Parts the schema leaves
/// to references or combinators are left to serde.
fn shape_errors(schema: &Value, object: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required = schema.get("required").and_then(Value::as_array);
    for name in required.into_iter().flatten().filter_map(Value::as_str) {
        if !object.contains_key(name) {
            errors.push(field_error(name, "missing: this field is required"));
        }
    }
    for (name, value) in object {
        match properties.get(name) {
            None => {
                let known: Vec<&str> = properties.keys().map(String::as_str).collect();
                errors.push(field_error(
                    name,
                    &format!("unknown field (known fields: {})", known.join(", ")),
                ));
            }
            Some(property) => {
                if let Some(message) = type_error(property, value) {
                    errors.push(field_error(name, &message));
                }
            }
        }
    }
}

/// Why `value` does not fit `schema`, in plain words; `None` if it does (or the schema
/// does not say).
fn type_error(schema: &Value, value: &Value) -> Option<String> {
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let nullable = types.contains(&"null");
    let fits = |t: &str| match t {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    };
    if value.is_null() {
        return (!nullable).then(|| "must not be null".to_owned());
    }
    let expected = types.iter().copied().find(|t| *t != "null")?;
    if !types.iter().any(|t| fits(t)) {
        return Some(describe(expected, schema));
    }
    match (value, schema.get("format").and_then(Value::as_str)) {
        (Value::String(s), Some("uuid")) if uuid::Uuid::parse_str(s).is_err() => {
            return Some(describe(expected, schema));
        }
        (Value::String(s), Some("date-time"))
            if time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .is_err() =>
        {
            return Some(describe(expected, schema));
        }
        _ => {}
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items"))
        && items
            .iter()
            .any(|item| type_error(item_schema, item).is_some())
    {
        return Some(describe(expected, schema));
    }
    None
}

/// "must be …" for a schema type, with its format or item type.
fn describe(expected: &str, schema: &Value) -> String {
    let format = schema.get("format").and_then(Value::as_str);
    let what = match (expected, format) {
        ("string", Some("uuid")) => "a UUID".to_owned(),
        ("string", Some("date-time")) => {
            "an RFC 3339 date-time such as 2030-01-01T00:00:00Z".to_owned()
        }
        ("string", _) => "a string".to_owned(),
        ("integer", _) => "a whole number".to_owned(),
        ("number", _) => "a number".to_owned(),
        ("boolean", _) => "true or false".to_owned(),
        ("array", _) => {
            let item = schema
                .get("items")
                .and_then(|i| i.get("type"))
                .and_then(|t| match t {
                    Value::String(t) => Some(t.as_str()),
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
                    _ => None,
                });
            match item {
                Some("string") => "a list of strings".to_owned(),
                Some("integer") => "a list of whole numbers".to_owned(),
                _ => "a list".to_owned(),
            }
        }
        ("object", _) => "an object".to_owned(),
        (other, _) => format!("of type {other}"),
    };
    let nullable = match schema.get("type") {
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "null"),
        _ => false,
    };
    if nullable {
        format!("must be {what} or null")
    } else {
        format!("must be {what}")
    }
}

pub use crate::service::checks::Checks;

#[cfg(test)]
mod tests {
    use super::{Checks, parse};

    #[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        id: uuid::Uuid,
        name: String,
        #[serde(default)]
        tags: Option<Vec<String>>,
        count: Option<u32>,
    }

    #[test]
    fn a_body_answers_with_every_bad_field_at_once() {
        let err = parse::<Sample>(serde_json::json!({
            "name": 5, "tags": [1], "count": "x", "extra": true
        }))
        .unwrap_err();
        let mut fields: Vec<(String, String)> = err
            .errors
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect();
        fields.sort();
        let names: Vec<&str> = fields.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            names,
            ["count", "extra", "id", "name", "tags"],
            "{fields:?}"
        );
        assert!(fields[0].1.contains("whole number"), "{fields:?}");
        assert!(fields[4].1.contains("list of strings"), "{fields:?}");
        // What the schema cannot see, serde reports with its path.
        let err = parse::<Sample>(serde_json::json!({
            "id": "01900000-0000-7000-8000-000000000000", "name": "n", "count": -1
        }))
        .unwrap_err();
        assert_eq!(err.errors[0].field, "count");
        assert!(
            parse::<Sample>(serde_json::json!({
                "id": "01900000-0000-7000-8000-000000000000", "name": "n", "tags": null
            }))
            .is_ok()
        );
    }

    fn fields(checks: Checks) -> Vec<String> {
        checks.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn credentials_are_references_never_secrets() {
        for good in [
            "env:OPENAI_API_KEY",
            "env:_K",
            "env:AZURE_KEY_2",
            "env:TOLLGATE_PROVIDER_OPENAI",
            "file:/run/secrets/tollgate/openai",
            "file:openai.key",
        ] {
            assert!(
                fields(Checks::default().credential_ref("c", good)).is_empty(),
                "{good}"
            );
        }
        for bad in [
            "sk-proj-abc",
            "env:",
            "env:lower",
            "env:1KEY",
            "env:A-B",
            "ENV:KEY",
            "file:",
            "file:../etc/passwd",
            "file:/run/secrets/../../etc/shadow",
            "env:TOLLGATE_AUTH__KEY_PEPPER",
            "env:TOLLGATE_CONTROL__ENROLLMENT_TOKEN",
        ] {
            assert_eq!(
                fields(Checks::default().credential_ref("c", bad)),
                ["c"],
                "{bad}"
            );
        }
    }

    #[test]
    fn base_urls_are_http_with_a_host() {
        for good in [
            "https://api.openai.com/v1",
            "http://10.0.0.5:8000/v1",
            "https://x.example",
        ] {
            assert!(
                fields(Checks::default().http_url("u", good)).is_empty(),
                "{good}"
            );
        }
        for bad in [
            "https://",
            "ftp://x.example",
            "api.openai.com",
            "https://a b.example",
            "http://x\0",
        ] {
            assert_eq!(fields(Checks::default().http_url("u", bad)), ["u"], "{bad}");
        }
    }

    #[test]
    fn base_urls_are_an_origin_and_a_path_only() {
        for good in [
            "https://api.openai.com/v1",
            "http://10.0.0.5:8000/v1/",
            "https://x.example",
        ] {
            assert!(
                fields(Checks::default().base_url("u", good)).is_empty(),
                "{good}"
            );
        }
        for bad in [
            "https://api.openai.com/v1?api-key=x",
            "https://api.openai.com/v1?",
            "https://api.openai.com/v1#frag",
            "https://user:pw@api.openai.com/v1",
            "https://user@api.openai.com",
            "ftp://x.example",
        ] {
            assert!(
                !fields(Checks::default().base_url("u", bad)).is_empty(),
                "{bad}"
            );
        }
    }
}
