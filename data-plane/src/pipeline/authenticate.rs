//! Step 1: who is calling. `Authorization: Bearer tg_…` (or Azure-style `api-key:`, or
//! Anthropic-style `x-api-key:`), looked up by public id in the snapshot, secret checked
//! by HMAC in constant time.

use http::HeaderMap;

use crate::snapshot::{ApiKey, Org, Project, Snapshot, Team};
use tollgate_keys as keys;

/// The authenticated caller, borrowed from the call's pinned snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'s> {
    pub key: &'s ApiKey,
    pub team: &'s Team,
    pub org: &'s Org,
    pub project: Option<&'s Project>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.")]
    Missing,
    /// Deliberately the same message for unknown, wrong, revoked and expired keys.
    #[error("Incorrect API key provided, or the key was revoked or has expired.")]
    Invalid,
}

pub fn authenticate<'s>(
    snapshot: &'s Snapshot,
    headers: &HeaderMap,
    pepper: &[u8],
    now_ms: i64,
) -> Result<Caller<'s>, AuthError> {
    let presented = presented_key(headers).ok_or(AuthError::Missing)?;
    let parsed = keys::parse(presented).ok_or(AuthError::Invalid)?;
    let key = snapshot
        .keys
        .get(parsed.public_id)
        .ok_or(AuthError::Invalid)?;
    if !keys::verify(pepper, parsed.secret, &key.secret_hmac) {
        return Err(AuthError::Invalid);
    }
    if key.revoked || key.expires_at_ms.is_some_and(|at| at <= now_ms) {
        return Err(AuthError::Invalid);
    }
    // References were validated when the snapshot was built; a miss here means a bug,
    // and refusing is the safe answer.
    let team = snapshot.teams.get(&key.team_id).ok_or(AuthError::Invalid)?;
    let org = snapshot.orgs.get(&key.org_id).ok_or(AuthError::Invalid)?;
    let project = match &key.project_id {
        Some(id) => Some(snapshot.projects.get(id).ok_or(AuthError::Invalid)?),
        None => None,
    };
    Ok(Caller {
        key,
        team,
        org,
        project,
    })
}

/// The header-only part of the call's admission, run before its body is read: a call
/// without a valid key is refused without the gateway buffering up to
/// `server.max_body_bytes` for it. The pipeline still authenticates in step 1 (the
/// snapshot may have changed in between; an HMAC costs about a microsecond).
pub fn precheck(
    snapshot: &Snapshot,
    headers: &HeaderMap,
    pepper: &[u8],
    now_ms: i64,
) -> Result<(), AuthError> {
    authenticate(snapshot, headers, pepper, now_ms).map(|_| ())
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?.trim();
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty());
    }
    // Azure's SDKs send `api-key`, Anthropic's `x-api-key`.
    headers
        .get("api-key")
        .or_else(|| headers.get("x-api-key"))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}
