//! Virtual keys. The full key (`tg_<public id>_<secret>`) is in the create and rotate
//! answers only — never again, and never stored.
//!
//! Who may do what ([`crate::auth::rbac::TABLE`]): team and org admins manage every key
//! of their teams; a member of a team mints and manages only keys it owns, in that team;
//! viewers and org-wide members mint nothing; org-wide readers see all keys.

use http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::checks::Checks;
use super::{FieldError, Problem, Services, models, teams};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::keys::{self, Filter, Key, NewKeyRow};
use crate::store::{Page, Tx, audit};

/// Longest grace period of a rotation (30 days), in seconds.
pub const MAX_GRACE_SECS: i64 = 30 * 24 * 3600;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub team_id: Uuid,
    pub project_id: Option<Uuid>,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub name: String,
    /// Narrows the team's allow-list: absent or `null` = as the team, `[]` = no model.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    /// RFC 3339; absent = never expires.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// A key with its full text — the only time the secret is shown.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// `tg_<public id>_<secret>`: store it now, it cannot be shown again. Absent from
    /// the answer replayed to a retry with the same `Idempotency-Key`: the secret is
    /// never stored, so only the first answer has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(flatten)]
    pub info: Key,
}

/// Which keys to list.
#[derive(Debug, Default, Clone)]
pub struct KeyFilter {
    pub team_id: Option<Uuid>,
    pub project_id: Option<Uuid>,
    /// `active` or `revoked`.
    pub status: Option<String>,
}

pub fn json(key: &Key) -> serde_json::Value {
    serde_json::to_value(key).unwrap_or_default()
}

fn pepper(svc: &Services) -> Result<&[u8], Problem> {
    svc.key_pepper
        .as_ref()
        .map(|p| p.expose_secret().as_bytes())
        .ok_or_else(|| {
            tracing::error!("auth.key_pepper is not set: keys cannot be minted");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Keys unavailable",
                "this control plane has no key pepper configured",
            )
        })
}

/// May `principal` change a key of `team` owned by `owner`? Admins of the team any;
/// others their own, if their role in the team lets them manage own keys.
pub fn require_manage(
    principal: &Principal,
    org: Uuid,
    team: Uuid,
    owner: Option<Uuid>,
) -> Result<(), Problem> {
    if principal.allows(Permission::AdminTeam { org, team }) {
        return Ok(());
    }
    if owner == Some(principal.user_id) {
        return Ok(require(principal, Permission::ManageOwnKey { org, team })?);
    }
    Ok(require(principal, Permission::AdminTeam { org, team })?)
}

/// Org-wide readers (and admins) see every key; others only their own.
pub fn owner_filter(principal: &Principal, org: Uuid) -> Option<Uuid> {
    (!principal.allows(Permission::ReadAllKeys(org))).then_some(principal.user_id)
}

/// Mints, stores and audits a key in the caller's transaction. Admins of the team create
/// team keys; anyone else's key is their own.
pub async fn create(
    svc: &Services,
    tx: &mut Tx<'_>,
    principal: &Principal,
    org_id: Uuid,
    new: &NewKey,
) -> Result<CreatedKey, Problem> {
    require(principal, Permission::ReadOrg(org_id))?;
    require(
        principal,
        Permission::MintKey {
            org: org_id,
            team: new.team_id,
        },
    )?;
    let owner = (!principal.allows(Permission::AdminTeam {
        org: org_id,
        team: new.team_id,
    }))
    .then_some(principal.user_id);
    let allowed = new.allowed_models.as_deref();
    let mut checks = Checks::default()
        .text("name", &new.name)
        .models("allowed_models", allowed.unwrap_or_default());
    if new.name.chars().count() > 200 {
        checks = checks.name("name", &new.name);
    }
    checks
        .check(
            new.expires_at
                .is_none_or(|at| at > OffsetDateTime::now_utc()),
            "expires_at",
            "must be in the future",
        )
        .done()?;
    models::require_known(&svc.pool, "allowed_models", allowed.unwrap_or_default()).await?;
    let team = crate::store::teams::get(&svc.pool, org_id, new.team_id).await?;
    teams::require_within(&svc.pool, "allowed_models", &team, allowed).await?;
    if let Some(project_id) = new.project_id {
        let project = crate::store::projects::get(&svc.pool, org_id, project_id).await?;
        if project.team_id != new.team_id {
            return Err(Problem::invalid(vec![FieldError {
                field: "project_id".into(),
                message: "the project belongs to another team".into(),
            }]));
        }
    }
    let minted = tollgate_keys::generate(pepper(svc)?);
    let row = NewKeyRow {
        org_id,
        team_id: new.team_id,
        project_id: new.project_id,
        owner_user_id: owner,
        name: &new.name,
        allowed_models: allowed,
        expires_at: new.expires_at,
        rotated_from: None,
    };
    let key = keys::create(tx, &row, &minted).await?;
    audit::record(
        tx,
        &principal.actor(),
        Some(org_id),
        "create",
        "key",
        &key.id.to_string(),
        None,
        Some(json(&key)),
    )
    .await?;
    Ok(CreatedKey {
        key: Some(minted.full),
        info: key,
    })
}

pub async fn list(
    svc: &Services,
    principal: &Principal,
    org_id: Uuid,
    filter: &KeyFilter,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Page<Key>, Problem> {
    super::orgs::require_read(&svc.pool, principal, org_id).await?;
    if let Some(status) = &filter.status {
        Checks::default()
            .one_of("status", status, &["active", "revoked"])
            .done()?;
    }
    let filter = Filter {
        team_id: filter.team_id,
        project_id: filter.project_id,
        status: filter.status.as_deref(),
        owner: owner_filter(principal, org_id),
    };
    Ok(keys::list(&svc.pool, org_id, filter, cursor, limit).await?)
}

/// One key, if the caller may see it (others' keys are 404 to members).
pub async fn get(
    svc: &Services,
    principal: &Principal,
    org_id: Uuid,
    key_id: Uuid,
) -> Result<Key, Problem> {
    require(principal, Permission::ReadOrg(org_id))?;
    let key = keys::get(&svc.pool, org_id, key_id).await?;
    if owner_filter(principal, org_id).is_some_and(|me| key.owner_user_id != Some(me)) {
        return Err(Problem::not_found());
    }
    Ok(key)
}

/// A new key now (shown once), the old one valid until the grace deadline.
pub async fn rotate(
    svc: &Services,
    principal: &Principal,
    org_id: Uuid,
    key_id: Uuid,
    grace_seconds: Option<i64>,
) -> Result<CreatedKey, Problem> {
    require(principal, Permission::ReadOrg(org_id))?;
    let grace = grace_seconds.unwrap_or(86_400);
    if !(0..=MAX_GRACE_SECS).contains(&grace) {
        return Err(Problem::invalid(vec![FieldError {
            field: "grace_seconds".into(),
            message: format!("between 0 and {MAX_GRACE_SECS}"),
        }]));
    }
    let minted = tollgate_keys::generate(pepper(svc)?);
    let mut tx = svc.pool.begin().await?;
    let old = keys::get_for_update(&mut tx, org_id, key_id).await?;
    require_manage(principal, org_id, old.team_id, old.owner_user_id)?;
    if old.status != "active" {
        return Err(Problem::invalid(vec![FieldError {
            field: "key_id".into(),
            message: "a revoked key cannot be rotated".into(),
        }]));
    }
    let row = NewKeyRow {
        org_id,
        team_id: old.team_id,
        project_id: old.project_id,
        owner_user_id: old.owner_user_id,
        name: &old.name,
        allowed_models: old.allowed_models.as_deref(),
        expires_at: old.expires_at,
        rotated_from: Some(old.id),
    };
    let new = keys::create(&mut tx, &row, &minted).await?;
    let graced = keys::start_grace(
        &mut tx,
        org_id,
        key_id,
        OffsetDateTime::now_utc() + time::Duration::seconds(grace),
    )
    .await?;
    let actor = principal.actor();
    audit::record(
        &mut tx,
        &actor,
        Some(org_id),
        "update",
        "key",
        &key_id.to_string(),
        Some(json(&old)),
        Some(json(&graced)),
    )
    .await?;
    audit::record(
        &mut tx,
        &actor,
        Some(org_id),
        "create",
        "key",
        &new.id.to_string(),
        None,
        Some(json(&new)),
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedKey {
        key: Some(minted.full),
        info: new,
    })
}

/// Revokes a key, effective at once (the next config version leaves it out).
pub async fn revoke(
    svc: &Services,
    principal: &Principal,
    org_id: Uuid,
    key_id: Uuid,
) -> Result<Key, Problem> {
    require(principal, Permission::ReadOrg(org_id))?;
    let mut tx = svc.pool.begin().await?;
    let before = keys::get_for_update(&mut tx, org_id, key_id).await?;
    require_manage(principal, org_id, before.team_id, before.owner_user_id)?;
    let after = keys::revoke(&mut tx, org_id, key_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "update",
        "key",
        &key_id.to_string(),
        Some(json(&before)),
        Some(json(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}
