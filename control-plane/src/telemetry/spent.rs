//! `TelemetryService.Spent`: the durable spend of budget periods, from the rollups — what
//! a gateway restores its Redis counters from (`max(redis, durable)`) after Redis lost
//! them.

use time::{OffsetDateTime, Time};
use tollgate_proto::telemetry as proto;
use tonic::Status;
use uuid::Uuid;

use crate::store::Pool;
use crate::store::usage::{self, PeriodRef};

/// Most budgets one request may ask about.
pub const MAX_BUDGETS: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpentError {
    #[error("at most {MAX_BUDGETS} budgets per request, this one asks for {0}")]
    TooMany(usize),
    #[error("budgets[{index}]: budget_id {value:?} is not a UUID")]
    BudgetId { index: usize, value: String },
    #[error("budgets[{index}]: period_start_unix_s {value} is not a time from 1970 on")]
    PeriodStart { index: usize, value: i64 },
}

/// The period of `r`: from its start (whole hours up to the first midnight from the
/// hourly rollup, then whole days).
fn period(index: usize, r: &proto::BudgetPeriodRef) -> Result<PeriodRef, SpentError> {
    let budget_id = Uuid::parse_str(&r.budget_id).map_err(|_| SpentError::BudgetId {
        index,
        value: r.budget_id.chars().take(64).collect(),
    })?;
    let bad_start = || SpentError::PeriodStart {
        index,
        value: r.period_start_unix_s,
    };
    if r.period_start_unix_s < 0 {
        return Err(bad_start());
    }
    let since =
        OffsetDateTime::from_unix_timestamp(r.period_start_unix_s).map_err(|_| bad_start())?;
    let midnight = since.replace_time(Time::MIDNIGHT);
    let first_day = if midnight == since {
        since
    } else {
        midnight
            .date()
            .next_day()
            .map(|d| d.midnight().assume_utc())
            .ok_or_else(bad_start)?
    };
    Ok(PeriodRef {
        budget_id,
        since,
        first_day,
    })
}

pub fn periods(request: &proto::SpentRequest) -> Result<Vec<PeriodRef>, SpentError> {
    if request.budgets.len() > MAX_BUDGETS {
        return Err(SpentError::TooMany(request.budgets.len()));
    }
    request
        .budgets
        .iter()
        .enumerate()
        .map(|(i, r)| period(i, r))
        .collect()
}

pub async fn answer(
    pool: &Pool,
    request: &proto::SpentRequest,
) -> Result<proto::SpentReply, Status> {
    let periods = periods(request).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let spent_micros = usage::spent(pool, &periods).await.map_err(|e| {
        tracing::error!(error = %e, "summing spend failed");
        Status::unavailable("control plane database unavailable")
    })?;
    Ok(proto::SpentReply { spent_micros })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn one(id: &str, start: i64) -> Result<PeriodRef, SpentError> {
        period(
            0,
            &proto::BudgetPeriodRef {
                budget_id: id.into(),
                period_start_unix_s: start,
            },
        )
    }

    #[test]
    fn periods_split_into_hours_and_whole_days() {
        let id = Uuid::now_v7().to_string();
        let month = datetime!(2026-11-01 00:00 UTC);
        let p = one(&id, month.unix_timestamp()).unwrap();
        assert_eq!((p.since, p.first_day), (month, month));
        let p = one(&id, datetime!(2026-11-18 15:00 UTC).unix_timestamp()).unwrap();
        assert_eq!(p.first_day, datetime!(2026-11-19 00:00 UTC));
        let total = one(&id, 0).unwrap();
        assert_eq!(total.since.unix_timestamp(), 0);
        assert!(matches!(one("x", 0), Err(SpentError::BudgetId { .. })));
        assert!(matches!(one(&id, -5), Err(SpentError::PeriodStart { .. })));
    }
}
