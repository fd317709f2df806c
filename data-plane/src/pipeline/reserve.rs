//! Step 4: price the worst case and reserve it in every budget that applies.
//!
//! Worst case = prompt tokens (real tokenizer) × input price + output ceiling × output
//! price, at the most expensive deployment of the model — routing may fall back to any
//! of them, and the reservation must cover whichever serves the call.

use time::{Duration as TimeDuration, OffsetDateTime, Time};

use super::authenticate::Caller;
use super::authorize::Grant;
use crate::ledger::{BudgetLine, Ledger, Ledgers, Reservation, ReserveError, ReserveRequest};
use crate::money::{self, Micros, Prices};
use crate::providers::{Endpoint, JsonRequest};
use crate::snapshot::{Budget, ClampPolicy, Period, ScopeKind, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub prompt_tokens: u64,
    pub max_output_tokens: u64,
    pub amount: Micros,
}

/// The most the call can cost.
pub fn estimate(grant: &Grant, req: &JsonRequest, endpoint: Endpoint) -> Estimate {
    let model = &grant.model;
    let prompt_tokens = match endpoint {
        Endpoint::Chat => model
            .encoding
            .count_chat(req.messages(), req.body.get("tools")),
        Endpoint::Completions => req
            .body
            .get("prompt")
            .map_or(0, |p| model.encoding.count_input(p)),
        Endpoint::Embeddings => req
            .body
            .get("input")
            .map_or(0, |i| model.encoding.count_input(i)),
    };
    let max_output_tokens = match endpoint {
        Endpoint::Embeddings => 0,
        _ => req
            .max_output_tokens()
            .unwrap_or(u64::from(model.default_max_output_tokens)),
    };
    let amount = money::worst_case(prompt_tokens, max_output_tokens, &max_prices(grant));
    Estimate {
        prompt_tokens,
        max_output_tokens,
        amount,
    }
}

/// Per-field maximum over the model's deployments.
pub fn max_prices(grant: &Grant) -> Prices {
    grant
        .model
        .deployments
        .iter()
        .fold(Prices::default(), |acc, d| Prices {
            input: acc.input.max(d.prices.input),
            output: acc.output.max(d.prices.output),
            cached_input: acc.cached_input.max(d.prices.cached_input),
            cache_write: acc.cache_write.max(d.prices.cache_write),
        })
}

/// Every budget on the caller's key, project, team and org, in the period `now` is in.
pub fn budget_lines(
    snapshot: &Snapshot,
    caller: &Caller<'_>,
    now: OffsetDateTime,
) -> Vec<BudgetLine> {
    let mut scopes = vec![
        (ScopeKind::Key, caller.key.public_id.as_str()),
        (ScopeKind::Team, caller.team.id.as_str()),
        (ScopeKind::Org, caller.org.id.as_str()),
    ];
    if let Some(project) = caller.project {
        scopes.push((ScopeKind::Project, project.id.as_str()));
    }
    let mut lines = Vec::new();
    for (kind, id) in scopes {
        let Some(budgets) = snapshot.budgets.get(&(kind, id.to_owned())) else {
            continue;
        };
        lines.extend(budgets.iter().map(|b| line(b, now)));
    }
    lines
}

fn line(b: &Budget, now: OffsetDateTime) -> BudgetLine {
    BudgetLine {
        budget_id: b.id.clone(),
        org_id: b.org_id.clone(),
        period_start: period_start(b.period, now),
        limit: b.amount,
        clamp: b.clamp == ClampPolicy::Clamp,
        ttl_secs: counter_ttl(b.period),
    }
}

/// The current period's line of every budget in the snapshot (for re-seeding the ledger).
pub fn all_budget_lines(snapshot: &Snapshot, now: OffsetDateTime) -> Vec<BudgetLine> {
    snapshot
        .budgets
        .values()
        .flatten()
        .map(|b| line(b, now))
        .collect()
}

/// How long a period's counter is kept: the period plus a margin for late settlements.
fn counter_ttl(period: Period) -> u64 {
    const DAY: u64 = 24 * 3600;
    match period {
        Period::Day => 2 * DAY,
        Period::Week => 9 * DAY,
        Period::Month => 33 * DAY,
        Period::Total => 0,
    }
}

/// Output tokens a clamped call must still afford, or it is refused outright.
pub const MIN_CLAMPED_OUTPUT_TOKENS: u64 = 16;

/// Start of the UTC calendar period containing `now` (Unix seconds); 0 for `Total`.
pub fn period_start(period: Period, now: OffsetDateTime) -> i64 {
    let now = now.to_offset(time::UtcOffset::UTC);
    let midnight = now.replace_time(Time::MIDNIGHT);
    let start = match period {
        Period::Total => return 0,
        Period::Day => midnight,
        Period::Week => {
            midnight - TimeDuration::days(i64::from(now.weekday().number_days_from_monday()))
        }
        Period::Month => midnight - TimeDuration::days(i64::from(now.day()) - 1),
    };
    start.unix_timestamp()
}

/// Reserves `estimate.amount` in `lines` (or less, down to a minimal answer, where a
/// budget clamps); `None` when no budget applies.
pub async fn reserve(
    ledger: &Ledgers,
    lines: Vec<BudgetLine>,
    estimate: &Estimate,
    prices: &Prices,
    deadline_ms: i64,
) -> Result<Option<Reservation>, ReserveError> {
    if lines.is_empty() {
        return Ok(None);
    }
    let minimal_output = estimate.max_output_tokens.min(MIN_CLAMPED_OUTPUT_TOKENS);
    ledger
        .reserve(ReserveRequest {
            id: uuid::Uuid::now_v7(),
            lines,
            amount: estimate.amount,
            min_amount: money::worst_case(estimate.prompt_tokens, minimal_output, prices),
            deadline_ms,
        })
        .await
        .map(Some)
}

/// Output tokens a granted amount pays for, after the prompt (for clamping max_tokens).
pub fn affordable_output(granted: Micros, estimate: &Estimate, prices: &Prices) -> u64 {
    let prompt = money::worst_case(estimate.prompt_tokens, 0, prices);
    let left = (granted - prompt).0.max(0);
    if prices.output <= 0 {
        return estimate.max_output_tokens;
    }
    // tokens × price / 1M ≤ left  ⇔  tokens ≤ left × 1M / price (rounded down)
    let tokens = i128::from(left) * 1_000_000 / i128::from(prices.output);
    u64::try_from(tokens)
        .unwrap_or(u64::MAX)
        .min(estimate.max_output_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn periods_start_at_utc_calendar_boundaries() {
        // A Wednesday.
        let now = datetime!(2026-11-18 15:30:00 UTC);
        assert_eq!(
            period_start(Period::Day, now),
            datetime!(2026-11-18 00:00 UTC).unix_timestamp()
        );
        assert_eq!(
            period_start(Period::Week, now),
            datetime!(2026-11-16 00:00 UTC).unix_timestamp()
        );
        assert_eq!(
            period_start(Period::Month, now),
            datetime!(2026-11-01 00:00 UTC).unix_timestamp()
        );
        assert_eq!(period_start(Period::Total, now), 0);
        // Another offset is the same instant: periods are UTC whatever the input's offset.
        let same = datetime!(2026-11-19 01:30:00 +10:00);
        assert_eq!(
            period_start(Period::Day, same),
            period_start(Period::Day, now)
        );
    }
}
