//! `Idempotency-Key` on creates: the first answer is saved with the create (same
//! transaction) and returned again for a retry with the same key and body; the same key
//! with a different body is refused (422). A key is scoped to its caller, route and org:
//! the same key on another create or in another org is a new request, never a replay.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::{ApiError, FieldError};
use crate::auth::Principal;
use crate::store::Tx;
use crate::store::idempotency::{self, Saved};

pub struct Idempotency {
    key: Option<String>,
    /// `<route>:<org id or "-">`, e.g. `teams:0190…`.
    scope: String,
    request_hash: Vec<u8>,
}

impl Idempotency {
    /// `route` names the create (`"teams"`), `org` the org it creates in, if any.
    pub fn from_request(
        headers: &HeaderMap,
        route: &str,
        org: Option<Uuid>,
        body: &impl Serialize,
    ) -> Result<Self, ApiError> {
        let key = match headers.get("idempotency-key") {
            None => None,
            Some(v) => match v.to_str() {
                Ok(k) if !k.is_empty() && k.len() <= 255 => Some(k.to_owned()),
                _ => {
                    return Err(ApiError::invalid(vec![FieldError {
                        field: "Idempotency-Key".into(),
                        message: "1–255 visible ASCII characters".into(),
                    }]));
                }
            },
        };
        let request_hash = Sha256::digest(serde_json::to_vec(body).unwrap_or_default()).to_vec();
        let scope = match org {
            Some(org) => format!("{route}:{org}"),
            None => format!("{route}:-"),
        };
        Ok(Self {
            key,
            scope,
            request_hash,
        })
    }

    /// The saved answer of an earlier request with this key, if any.
    pub async fn replay(
        &self,
        tx: &mut Tx<'_>,
        principal: &Principal,
    ) -> Result<Option<Response>, ApiError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let Some(saved) = idempotency::find(tx, principal.user_id, &self.scope, key).await? else {
            return Ok(None);
        };
        if saved.request_hash != self.request_hash {
            return Err(ApiError::invalid(vec![FieldError {
                field: "Idempotency-Key".into(),
                message: "already used for a different request".into(),
            }]));
        }
        let status = StatusCode::from_u16(saved.status).unwrap_or(StatusCode::OK);
        Ok(Some((status, Json(saved.response)).into_response()))
    }

    /// Saves `body` as the answer a retry with this key gets (if a key was sent).
    pub async fn remember(
        self,
        tx: &mut Tx<'_>,
        principal: &Principal,
        status: StatusCode,
        body: &serde_json::Value,
    ) -> Result<(), ApiError> {
        if let Some(key) = &self.key {
            let saved = Saved {
                request_hash: self.request_hash,
                status: status.as_u16(),
                response: body.clone(),
            };
            idempotency::save(tx, principal.user_id, &self.scope, key, &saved).await?;
        }
        Ok(())
    }

    /// [`Self::remember`]s `body` and answers with it.
    pub async fn answer(
        self,
        tx: &mut Tx<'_>,
        principal: &Principal,
        status: StatusCode,
        body: serde_json::Value,
    ) -> Result<Response, ApiError> {
        self.remember(tx, principal, status, &body).await?;
        Ok((status, Json(body)).into_response())
    }
}
