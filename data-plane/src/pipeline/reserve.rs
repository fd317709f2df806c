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
use crate::snapshot::{Budget, ClampPolicy, Model, Period, ScopeKind, Snapshot};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    pub prompt_tokens: u64,
    pub max_output_tokens: u64,
    pub amount: Micros,
}

impl Estimate {
    /// Tokens the call may use, for tokens-per-minute limits.
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.max_output_tokens)
    }
}

/// What step 4 hands on: the reservation (none when no budget applies) and what the
/// rest of the call needs to know about it.
#[derive(Debug)]
pub struct Hold {
    pub reservation: Option<Reservation>,
    pub estimate: Estimate,
    /// The output ceiling the reservation pays for, sent upstream by every adapter
    /// (`None` for embeddings, which generate nothing).
    pub ceiling: Option<u64>,
    /// Set when a clamping budget lowered the ceiling below what was asked.
    pub clamped: Option<u64>,
    /// One attempt's worst case at `ceiling` and `prices`.
    pub worst_case: Micros,
    /// The most expensive prices of the model's deployments, which the worst case uses.
    pub prices: Prices,
    /// The reservation's lease deadline (Unix ms).
    pub deadline_ms: i64,
}

/// The most the call can cost.
pub fn estimate(model: &Model, req: &JsonRequest, endpoint: Endpoint) -> Estimate {
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
    let amount = money::worst_case(prompt_tokens, max_output_tokens, &max_prices(model));
    Estimate {
        prompt_tokens,
        max_output_tokens,
        amount,
    }
}

/// Per-field maximum over the model's deployments.
pub fn max_prices(model: &Model) -> Prices {
    model
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

/// Step 4: reserves the call's worst case in every budget that applies to the caller,
/// or — where a budget clamps and cannot pay for it all — what that budget has left,
/// down to a minimal answer, lowering the output ceiling to what was granted.
pub fn reserve<'a>(
    ledger: &'a Ledgers,
    snapshot: &Snapshot,
    caller: &Caller<'_>,
    grant: &Grant,
    endpoint: Endpoint,
    deadline_ms: i64,
) -> impl Future<Output = Result<Hold, ReserveError>> + Send + use<'a> {
    // Everything borrowed from the snapshot is read before the first await, so the
    // future holds only owned data and the ledger.
    let lines = budget_lines(snapshot, caller, OffsetDateTime::now_utc());
    reserve_lines(
        ledger,
        lines,
        grant.estimate,
        max_prices(&grant.model),
        endpoint,
        deadline_ms,
    )
}

async fn reserve_lines(
    ledger: &Ledgers,
    lines: Vec<BudgetLine>,
    estimate: Estimate,
    prices: Prices,
    endpoint: Endpoint,
    deadline_ms: i64,
) -> Result<Hold, ReserveError> {
    let reservation = if lines.is_empty() {
        None
    } else {
        let minimal_output = estimate.max_output_tokens.min(MIN_CLAMPED_OUTPUT_TOKENS);
        let request = ReserveRequest {
            id: uuid::Uuid::now_v7(),
            lines,
            amount: estimate.amount,
            min_amount: money::worst_case(estimate.prompt_tokens, minimal_output, &prices),
            deadline_ms,
        };
        let reservation = ledger.reserve(request).await.inspect_err(|_| {
            metrics::counter!("tollgate_reservations_refused_total").increment(1)
        })?;
        Some(reservation)
    };
    let clamped = reservation
        .as_ref()
        .filter(|r| r.amount < estimate.amount)
        .map(|r| affordable_output(r.amount, &estimate, &prices));
    let ceiling =
        (endpoint != Endpoint::Embeddings).then(|| clamped.unwrap_or(estimate.max_output_tokens));
    Ok(Hold {
        worst_case: reservation.as_ref().map_or(estimate.amount, |r| r.amount),
        reservation,
        estimate,
        ceiling,
        clamped,
        prices,
        deadline_ms,
    })
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
