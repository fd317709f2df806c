//! [`Problem`]: the service layer's one error, shaped as an RFC 9457 problem document —
//! a status that says whose fault it is (4xx the caller's, 5xx ours), a title, a
//! sentence, and field-level errors for validation failures. The REST API sends it as
//! problem+json, the web UI shows the field errors beside the fields and the sentence on
//! top. A 5xx never echoes internals; the cause is logged once, here.

use http::StatusCode;
use serde::Serialize;

use crate::auth::rbac::Denied;
use crate::store::StoreError;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the field, e.g. `slug`.
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            "send a valid admin API token as 'Authorization: Bearer tga_…' or sign in at /auth/login (tokens and sessions expire and can be ended)",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "your role does not allow this",
        )
    }

    /// A cookie-authenticated write without the session's CSRF token.
    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "CSRF token missing or wrong",
            "requests made with a session cookie that change anything must send the session's CSRF token in the X-CSRF-Token header",
        )
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", "no such object")
    }

    /// 422 with every invalid field at once.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid request",
                "some fields are invalid",
            )
        }
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found(),
            StoreError::Conflict { constraint } => {
                let field = constraint_field(&constraint);
                Self {
                    errors: vec![FieldError {
                        field: field.into(),
                        message: "already taken".into(),
                    }],
                    ..Self::new(
                        StatusCode::CONFLICT,
                        "Conflict",
                        format!("{field} is already taken"),
                    )
                }
            }
            StoreError::InUse { constraint } => Self::new(
                StatusCode::CONFLICT,
                "In use",
                format!(
                    "still used by {}: delete or change those first",
                    referrer(&constraint)
                ),
            ),
            StoreError::Invalid { constraint } => Self::invalid(vec![FieldError {
                field: constraint_field(&constraint).into(),
                message: format!("violates {constraint}"),
            }]),
            StoreError::Db(e) => {
                tracing::error!(error = %e, "database error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    "the request could not be completed",
                )
            }
        }
    }
}

/// The request field a constraint guards (constraint names follow `<table>_<field>_…`).
fn constraint_field(constraint: &str) -> &'static str {
    if constraint.contains("credential_ref") {
        "credential_ref"
    } else if constraint.contains("public_url") {
        "public_url"
    } else if constraint.contains("base_url") {
        "base_url"
    } else if constraint.contains("upstream_model") {
        "upstream_model"
    } else if constraint.contains("one_per_scope") {
        "scope_id"
    } else if constraint.contains("one_per_period") {
        "period"
    } else if constraint.ends_with("_pkey") {
        "id"
    } else if constraint.contains("slug") {
        "slug"
    } else if constraint.contains("name") {
        "name"
    } else if constraint.contains("email") {
        "email"
    } else if constraint.contains("team") {
        "team_id"
    } else {
        "body"
    }
}

/// What still points at a row a delete was refused for (foreign keys are named
/// `<referencing table>_<column>_fkey`).
fn referrer(constraint: &str) -> &'static str {
    if constraint.starts_with("deployments_") {
        "deployments"
    } else if constraint.starts_with("config_versions_") {
        "published config versions"
    } else {
        "other objects"
    }
}

/// For operator commands, which print the error instead of answering with it.
impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)?;
        for e in &self.errors {
            write!(f, "; {}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl From<Denied> for Problem {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Hidden => Self::not_found(),
            Denied::Forbidden => Self::forbidden(),
        }
    }
}

impl From<sqlx::Error> for Problem {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}
