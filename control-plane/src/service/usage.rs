//! What the dashboard shows of spend: rollup rows as the caller may see them, and each
//! budget's spend in its current period.

use time::OffsetDateTime;
use tollgate_data_plane::pipeline::reserve::period_start;
use tollgate_data_plane::snapshot::Period;
use uuid::Uuid;

use super::{Problem, Services};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::budgets::Budget;
use crate::store::usage::{self, PeriodRef, UsageQuery, UsageRow};

/// Usage rows of `query.org_id` that the caller may see (all of the org, its teams, or
/// its own keys), up to `query.limit + 1` (one more tells there is another page).
pub async fn rows(
    svc: &Services,
    principal: &Principal,
    query: &UsageQuery,
) -> Result<Vec<UsageRow>, Problem> {
    require(principal, Permission::ReadOrg(query.org_id))?;
    let visible = principal.usage_view(query.org_id);
    Ok(usage::usage(&svc.pool, query, &visible).await?)
}

fn period(name: &str) -> Period {
    match name {
        "day" => Period::Day,
        "week" => Period::Week,
        "month" => Period::Month,
        _ => Period::Total,
    }
}

/// Start of `budget`'s current period (UTC calendar; the epoch for `total`).
pub fn period_began(budget: &Budget, now: OffsetDateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(period_start(period(&budget.period), now))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Micro-USD each budget's scope spent this period, from the rollups (settled calls the
/// gateways reported; in-flight reservations are not in them), in `budgets` order.
pub async fn spent(
    svc: &Services,
    principal: &Principal,
    org_id: Uuid,
    budgets: &[Budget],
) -> Result<Vec<i64>, Problem> {
    require(principal, Permission::ReadOrg(org_id))?;
    let now = OffsetDateTime::now_utc();
    let periods: Vec<PeriodRef> = budgets
        .iter()
        .filter(|b| b.org_id == org_id)
        .map(|b| {
            let since = period_began(b, now);
            // Periods begin at a midnight, so whole days cover them from the start.
            PeriodRef {
                budget_id: b.id,
                since,
                first_day: since,
            }
        })
        .collect();
    Ok(usage::spent(&svc.pool, &periods).await?)
}
