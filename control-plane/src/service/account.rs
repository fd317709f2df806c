//! The signed-in person's own sessions and personal tokens.

use super::{Problem, Services};
use crate::auth::Principal;
use crate::store::sessions::{self, Session};
use crate::store::users::{self, Token};

pub async fn sessions(svc: &Services, principal: &Principal) -> Result<Vec<Session>, Problem> {
    Ok(sessions::list_sessions(&svc.pool, Some(principal.user_id), None).await?)
}

/// Tokens not revoked.
pub async fn tokens(svc: &Services, principal: &Principal) -> Result<Vec<Token>, Problem> {
    let mut tokens = users::list_tokens(&svc.pool, Some(principal.user_id)).await?;
    tokens.retain(|t| t.revoked_at.is_none());
    Ok(tokens)
}
