//! From Postgres to one `Snapshot` per region. Orgs, teams, projects, keys and budgets are
//! global; models and deployments are those served in the region. Only what a gateway
//! can use is sent: revoked and expired keys are left out (an unknown key is a 401
//! anyway), and so are budgets, limits and freezes on them.

use std::collections::{HashMap, HashSet};

use sqlx::PgConnection;
use time::OffsetDateTime;
use tollgate_proto::config as proto;
use uuid::Uuid;

use crate::store::deployments::PriceTier;

#[derive(sqlx::FromRow)]
struct OrgRow {
    id: Uuid,
    name: String,
}

#[derive(sqlx::FromRow)]
struct TeamRow {
    id: Uuid,
    org_id: Uuid,
    name: String,
    allowed_models: Option<Vec<String>>,
}

#[derive(sqlx::FromRow)]
struct ProjectRow {
    id: Uuid,
    org_id: Uuid,
    team_id: Uuid,
    name: String,
    allowed_models: Option<Vec<String>>,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: Uuid,
    public_id: String,
    display_prefix: String,
    secret_hmac: Vec<u8>,
    org_id: Uuid,
    team_id: Uuid,
    project_id: Option<Uuid>,
    owner_user_id: Option<Uuid>,
    name: String,
    allowed_models: Option<Vec<String>>,
    expires_at: Option<OffsetDateTime>,
}

#[derive(sqlx::FromRow)]
struct ModelRow {
    name: String,
    aliases: Vec<String>,
    default_max_output_tokens: i32,
    tokenizer: String,
    owned_by: String,
    context_window: Option<i32>,
    max_output_tokens: Option<i32>,
    modes: Vec<String>,
    max_n: i32,
}

#[derive(sqlx::FromRow)]
struct DeploymentRow {
    id: Uuid,
    model: String,
    region_id: String,
    kind: String,
    preset: String,
    cloud_region: String,
    base_url: String,
    credential_ref: String,
    upstream_model: String,
    api_version: String,
    input_price: Option<i64>,
    output_price: Option<i64>,
    cached_input_price: Option<i64>,
    cache_write_price: Option<i64>,
    #[sqlx(json)]
    price_tiers: Vec<PriceTier>,
    weight: i32,
    connect_ms: i32,
    first_byte_ms: i32,
    total_ms: i32,
    max_staleness_ms: i64,
}

#[derive(sqlx::FromRow)]
struct BudgetRow {
    id: Uuid,
    org_id: Uuid,
    scope_kind: String,
    scope_id: Uuid,
    amount_micros: i64,
    period: String,
    alert_thresholds_pct: Vec<i32>,
    clamp: bool,
}

#[derive(sqlx::FromRow)]
struct LimitRow {
    scope_kind: String,
    scope_id: Uuid,
    rpm: Option<i32>,
    tpm: Option<i64>,
    max_concurrent: Option<i32>,
}

/// Everything gateways need, read in one consistent (repeatable-read) transaction.
pub struct World {
    pub regions: Vec<String>,
    orgs: Vec<proto::Org>,
    teams: Vec<proto::Team>,
    projects: Vec<proto::Project>,
    keys: Vec<proto::ApiKey>,
    budgets: Vec<proto::Budget>,
    freezes: Vec<proto::Freeze>,
    models: Vec<ModelRow>,
    deployments: Vec<DeploymentRow>,
}

fn limits(
    rows: &HashMap<(String, Uuid), proto::Limits>,
    kind: &str,
    id: Uuid,
) -> Option<proto::Limits> {
    rows.get(&(kind.to_owned(), id)).copied()
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl World {
    pub async fn load(db: &mut PgConnection) -> Result<Self, sqlx::Error> {
        let regions: Vec<String> = sqlx::query_scalar("SELECT id FROM regions ORDER BY id")
            .fetch_all(&mut *db)
            .await?;
        let limit_rows: Vec<LimitRow> = sqlx::query_as(
            "SELECT scope_kind, scope_id, rpm, tpm, max_concurrent FROM rate_limits",
        )
        .fetch_all(&mut *db)
        .await?;
        let limit_map: HashMap<(String, Uuid), proto::Limits> = limit_rows
            .into_iter()
            .map(|l| {
                let limits = proto::Limits {
                    rpm: l.rpm.and_then(|v| u32::try_from(v).ok()),
                    tpm: l.tpm.and_then(|v| u64::try_from(v).ok()),
                    max_concurrent: l.max_concurrent.and_then(|v| u32::try_from(v).ok()),
                };
                ((l.scope_kind, l.scope_id), limits)
            })
            .collect();

        let orgs: Vec<OrgRow> = sqlx::query_as("SELECT id, name FROM orgs ORDER BY id")
            .fetch_all(&mut *db)
            .await?;
        let orgs = orgs
            .into_iter()
            .map(|o| proto::Org {
                id: o.id.to_string(),
                name: o.name,
                limits: limits(&limit_map, "org", o.id),
            })
            .collect();
        let teams: Vec<TeamRow> =
            sqlx::query_as("SELECT id, org_id, name, allowed_models FROM teams ORDER BY id")
                .fetch_all(&mut *db)
                .await?;
        let teams = teams
            .into_iter()
            .map(|t| proto::Team {
                id: t.id.to_string(),
                org_id: t.org_id.to_string(),
                name: t.name,
                allowed_models_set: t.allowed_models.is_some(),
                allowed_models: t.allowed_models.unwrap_or_default(),
                limits: limits(&limit_map, "team", t.id),
            })
            .collect();
        let projects: Vec<ProjectRow> = sqlx::query_as(
            "SELECT id, org_id, team_id, name, allowed_models FROM projects ORDER BY id",
        )
        .fetch_all(&mut *db)
        .await?;
        let projects = projects
            .into_iter()
            .map(|p| proto::Project {
                id: p.id.to_string(),
                org_id: p.org_id.to_string(),
                team_id: p.team_id.to_string(),
                name: p.name,
                allowed_models_set: p.allowed_models.is_some(),
                allowed_models: p.allowed_models.unwrap_or_default(),
                limits: limits(&limit_map, "project", p.id),
            })
            .collect();

        let key_rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT id, public_id, display_prefix, secret_hmac, org_id, team_id, project_id,
                    owner_user_id, name, allowed_models, expires_at
               FROM api_keys
              WHERE status = 'active' AND (expires_at IS NULL OR expires_at > now())
              ORDER BY id",
        )
        .fetch_all(&mut *db)
        .await?;
        // Budgets and limits name keys by row id; gateways know them by public id.
        let public_ids: HashMap<Uuid, String> = key_rows
            .iter()
            .map(|k| (k.id, k.public_id.clone()))
            .collect();
        let keys = key_rows
            .into_iter()
            .map(|k| proto::ApiKey {
                limits: limits(&limit_map, "key", k.id),
                public_id: k.public_id,
                display_prefix: k.display_prefix,
                secret_hmac: k.secret_hmac,
                status: proto::KeyStatus::Active.into(),
                expires_at_unix_ms: k.expires_at.map_or(0, unix_ms),
                org_id: k.org_id.to_string(),
                team_id: k.team_id.to_string(),
                project_id: k.project_id.map(|p| p.to_string()).unwrap_or_default(),
                owner_user_id: k.owner_user_id.map(|u| u.to_string()).unwrap_or_default(),
                allowed_models_set: k.allowed_models.is_some(),
                allowed_models: k.allowed_models.unwrap_or_default(),
                name: k.name,
            })
            .collect();

        let budget_rows: Vec<BudgetRow> = sqlx::query_as(
            "SELECT id, org_id, scope_kind, scope_id, amount_micros, period, alert_thresholds_pct, clamp
               FROM budgets ORDER BY id",
        )
        .fetch_all(&mut *db)
        .await?;
        let budgets = budget_rows
            .into_iter()
            .filter_map(|b| {
                let (kind, scope_id) = match b.scope_kind.as_str() {
                    "org" => (proto::ScopeKind::Org, b.scope_id.to_string()),
                    "team" => (proto::ScopeKind::Team, b.scope_id.to_string()),
                    "project" => (proto::ScopeKind::Project, b.scope_id.to_string()),
                    // A budget on a revoked or expired key has nothing left to limit.
                    _ => (proto::ScopeKind::Key, public_ids.get(&b.scope_id)?.clone()),
                };
                let period = match b.period.as_str() {
                    "day" => proto::BudgetPeriod::Day,
                    "week" => proto::BudgetPeriod::Week,
                    "month" => proto::BudgetPeriod::Month,
                    _ => proto::BudgetPeriod::Total,
                };
                Some(proto::Budget {
                    id: b.id.to_string(),
                    scope: Some(proto::Scope {
                        kind: kind.into(),
                        id: scope_id,
                    }),
                    org_id: b.org_id.to_string(),
                    amount_micros: b.amount_micros,
                    period: period.into(),
                    alert_thresholds_pct: b
                        .alert_thresholds_pct
                        .into_iter()
                        .filter_map(|p| u32::try_from(p).ok())
                        .collect(),
                    clamp: if b.clamp {
                        proto::ClampPolicy::Clamp
                    } else {
                        proto::ClampPolicy::Refuse
                    }
                    .into(),
                })
            })
            .collect();

        let freezes = crate::store::freezes::all_active(&mut *db)
            .await?
            .into_iter()
            .filter_map(|f| {
                let (kind, scope_id) = match f.scope_kind.as_str() {
                    "org" => (proto::ScopeKind::Org, f.scope_id.to_string()),
                    "team" => (proto::ScopeKind::Team, f.scope_id.to_string()),
                    "project" => (proto::ScopeKind::Project, f.scope_id.to_string()),
                    // A revoked or expired key is refused anyway.
                    _ => (proto::ScopeKind::Key, public_ids.get(&f.scope_id)?.clone()),
                };
                Some(proto::Freeze {
                    id: f.id.to_string(),
                    scope: Some(proto::Scope {
                        kind: kind.into(),
                        id: scope_id,
                    }),
                    org_id: f.org_id.to_string(),
                    reason: f.reason,
                })
            })
            .collect();

        let models: Vec<ModelRow> = sqlx::query_as(
            "SELECT name, aliases, default_max_output_tokens, tokenizer, owned_by,
                    context_window, max_output_tokens, modes, max_n
               FROM models ORDER BY name",
        )
        .fetch_all(&mut *db)
        .await?;
        let deployments: Vec<DeploymentRow> = sqlx::query_as(
            "SELECT d.id, m.name AS model, d.region_id, p.kind, p.preset, d.cloud_region,
                    p.base_url, p.credential_ref,
                    d.upstream_model, d.api_version, d.input_price, d.output_price,
                    d.cached_input_price, d.cache_write_price, d.price_tiers, d.weight, d.connect_ms,
                    d.first_byte_ms, d.total_ms, d.max_staleness_ms
               FROM deployments d
               JOIN models m ON m.id = d.model_id
               JOIN providers p ON p.id = d.provider_id
              ORDER BY d.id",
        )
        .fetch_all(&mut *db)
        .await?;

        Ok(Self {
            regions,
            orgs,
            teams,
            projects,
            keys,
            budgets,
            freezes,
            models,
            deployments,
        })
    }

    /// The region's snapshot with version 0 and no timestamp: the publisher hashes it to
    /// see whether anything changed, then stamps and signs it.
    pub fn snapshot_for(&self, region: &str) -> proto::Snapshot {
        let deployments: Vec<proto::Deployment> = self
            .deployments
            .iter()
            .filter(|d| d.region_id == region)
            .filter_map(deployment)
            .collect();
        let served: HashSet<&str> = deployments.iter().map(|d| d.model.as_str()).collect();
        let (here, elsewhere): (Vec<&ModelRow>, Vec<&ModelRow>) = self
            .models
            .iter()
            .partition(|m| served.contains(m.name.as_str()));
        proto::Snapshot {
            version: 0,
            region: region.to_owned(),
            generated_at_unix_ms: 0,
            orgs: self.orgs.clone(),
            teams: self.teams.clone(),
            projects: self.projects.clone(),
            keys: self.keys.clone(),
            models: here
                .into_iter()
                .map(|m| proto::Model {
                    name: m.name.clone(),
                    aliases: m.aliases.clone(),
                    default_max_output_tokens: u32::try_from(m.default_max_output_tokens)
                        .unwrap_or(4096),
                    tokenizer: m.tokenizer.clone(),
                    owned_by: m.owned_by.clone(),
                    context_window: positive(m.context_window),
                    max_output_tokens: positive(m.max_output_tokens),
                    modes: m.modes.iter().map(|mode| model_mode(mode).into()).collect(),
                    max_n: u32::try_from(m.max_n).unwrap_or(1),
                })
                .collect(),
            deployments,
            budgets: self.budgets.clone(),
            freezes: self.freezes.clone(),
            models_elsewhere: elsewhere
                .into_iter()
                .flat_map(|m| std::iter::once(&m.name).chain(&m.aliases).cloned())
                .collect(),
        }
    }
}

/// A token limit on the wire: 0 = unknown.
fn positive(v: Option<i32>) -> u32 {
    v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

/// The database allows only these three; anything else would be refused by the gateway.
fn model_mode(mode: &str) -> proto::ModelMode {
    match mode {
        "chat" => proto::ModelMode::Chat,
        "completions" => proto::ModelMode::Completions,
        "embeddings" => proto::ModelMode::Embeddings,
        _ => proto::ModelMode::Unspecified,
    }
}

/// `None` (and an error logged) for a kind no gateway knows: the table's CHECK makes it
/// impossible, and guessing a wire format would send a credential to the wrong API.
fn deployment(d: &DeploymentRow) -> Option<proto::Deployment> {
    let Some(provider) = proto::ProviderKind::from_name(&d.kind) else {
        tracing::error!(deployment = %d.id, kind = %d.kind, "unknown provider kind; deployment left out of the snapshot");
        return None;
    };
    // Prices on the deployment override the gateway's table only when all are known.
    let prices = match (d.input_price, d.output_price) {
        (Some(input), Some(output)) => Some(proto::Prices {
            input_micros_per_mtok: input,
            output_micros_per_mtok: output,
            cached_input_micros_per_mtok: d.cached_input_price.unwrap_or(input),
            cache_write_micros_per_mtok: d.cache_write_price.unwrap_or(input),
            tiers: d
                .price_tiers
                .iter()
                .map(|t| proto::PriceTier {
                    above_prompt_tokens: u64::try_from(t.above_prompt_tokens).unwrap_or(0),
                    input_micros_per_mtok: t.input_price,
                    output_micros_per_mtok: t.output_price,
                    cached_input_micros_per_mtok: t.cached_input_price.unwrap_or(t.input_price),
                    cache_write_micros_per_mtok: t.cache_write_price.unwrap_or(t.input_price),
                })
                .collect(),
        }),
        _ => None,
    };
    let ms = |v: i32| u32::try_from(v).unwrap_or(0);
    Some(proto::Deployment {
        id: d.id.to_string(),
        model: d.model.clone(),
        provider: provider.into(),
        preset: d.preset.clone(),
        cloud_region: d.cloud_region.clone(),
        base_url: d.base_url.clone(),
        upstream_model: d.upstream_model.clone(),
        credential_ref: d.credential_ref.clone(),
        api_version: d.api_version.clone(),
        prices,
        weight: u32::try_from(d.weight).unwrap_or(1),
        region: d.region_id.clone(),
        timeouts: Some(proto::Timeouts {
            connect_ms: ms(d.connect_ms),
            first_byte_ms: ms(d.first_byte_ms),
            total_ms: ms(d.total_ms),
        }),
        max_staleness_ms: u64::try_from(d.max_staleness_ms).unwrap_or(0),
    })
}
