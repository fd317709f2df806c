//! `TelemetryService.Report`: a gateway's stream of usage batches, answered with the
//! highest batch committed.
//!
//! Batches on one stream are taken one at a time, in order. Each is checked whole
//! ([`Batch::try_from`]) before anything is written, then stored with its rollups in one
//! statement ([`usage::ingest`]); only after the commit is its `seq` acknowledged. A
//! malformed batch ends the stream with `INVALID_ARGUMENT` and stores nothing; a
//! database failure ends it with `UNAVAILABLE` (the gateway keeps the batch and retries).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::Stream;
use time::OffsetDateTime;
use tollgate_proto::telemetry as proto;
use tonic::{Status, Streaming};
use uuid::Uuid;

use super::alerts::Touches;
use crate::store::Pool;
use crate::store::usage::{self, EventColumns};

/// Most events one batch may carry (a gateway splits bigger backlogs).
pub const MAX_EVENTS: usize = 10_000;
/// Free-text fields are cut to this many characters (they come from clients, e.g. the
/// model name, and must never make a batch unstorable).
const TEXT_CHARS: usize = 256;

/// A batch checked whole and laid out for the store.
#[derive(Debug)]
pub struct Batch {
    pub seq: u64,
    pub gateway_id: String,
    pub events: EventColumns,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("a batch carries at most {MAX_EVENTS} events, this one {0}")]
    TooLarge(usize),
    #[error("gateway_id must be 1-128 characters of [A-Za-z0-9._:-]")]
    GatewayId,
    #[error("event {index}: {field} {value:?} is not a UUID")]
    Id {
        index: usize,
        field: &'static str,
        value: String,
    },
    #[error("event {index}: key_id {value:?} is not a key's public id (8-32 letters and digits)")]
    KeyId { index: usize, value: String },
    #[error("event {index}: org_id, team_id and key_id are set together or not at all")]
    PartialScope { index: usize },
    #[error("event {index}: started_at_unix_ms {value} is not a time after 1970")]
    StartedAt { index: usize, value: i64 },
    #[error("event {index}: {field} is negative")]
    Negative { index: usize, field: &'static str },
}

fn valid_gateway_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

fn valid_public_id(id: &str) -> bool {
    (8..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Text Postgres stores as given: no NUL, at most [`TEXT_CHARS`] characters.
fn text(value: String) -> String {
    if !value.contains('\0') && value.len() <= TEXT_CHARS {
        return value;
    }
    value
        .chars()
        .take(TEXT_CHARS)
        .map(|c| if c == '\0' { '\u{fffd}' } else { c })
        .collect()
}

fn uuid(index: usize, field: &'static str, value: &str) -> Result<Option<Uuid>, BatchError> {
    if value.is_empty() {
        return Ok(None);
    }
    Uuid::parse_str(value)
        .map(Some)
        .map_err(|_| BatchError::Id {
            index,
            field,
            value: value.chars().take(64).collect(),
        })
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn saturating_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl TryFrom<proto::UsageBatch> for Batch {
    type Error = BatchError;

    fn try_from(batch: proto::UsageBatch) -> Result<Self, Self::Error> {
        if batch.events.len() > MAX_EVENTS {
            return Err(BatchError::TooLarge(batch.events.len()));
        }
        if !valid_gateway_id(&batch.gateway_id) {
            return Err(BatchError::GatewayId);
        }
        let mut c = EventColumns::default();
        for (index, e) in batch.events.into_iter().enumerate() {
            let event_id = uuid(index, "event_id", &e.event_id)?.ok_or(BatchError::Id {
                index,
                field: "event_id",
                value: String::new(),
            })?;
            let org_id = uuid(index, "org_id", &e.org_id)?;
            let team_id = uuid(index, "team_id", &e.team_id)?;
            let project_id = uuid(index, "project_id", &e.project_id)?;
            let key_id = (!e.key_id.is_empty()).then_some(e.key_id);
            if let Some(key) = key_id.as_deref().filter(|k| !valid_public_id(k)) {
                return Err(BatchError::KeyId {
                    index,
                    value: key.chars().take(64).collect(),
                });
            }
            if org_id.is_some() != team_id.is_some() || org_id.is_some() != key_id.is_some() {
                return Err(BatchError::PartialScope { index });
            }
            let started_at = (e.started_at_unix_ms > 0)
                .then(|| {
                    OffsetDateTime::from_unix_timestamp_nanos(
                        i128::from(e.started_at_unix_ms) * 1_000_000,
                    )
                    .ok()
                })
                .flatten()
                .ok_or(BatchError::StartedAt {
                    index,
                    value: e.started_at_unix_ms,
                })?;
            if e.cost_micros < 0 {
                return Err(BatchError::Negative {
                    index,
                    field: "cost_micros",
                });
            }
            if e.reserved_micros < 0 {
                return Err(BatchError::Negative {
                    index,
                    field: "reserved_micros",
                });
            }
            c.started_at.push(started_at);
            c.event_id.push(event_id);
            c.org_id.push(org_id);
            c.team_id.push(team_id);
            c.project_id.push(project_id);
            c.key_id.push(key_id);
            c.model.push(text(e.model));
            c.deployment_id.push(text(e.deployment_id));
            c.endpoint.push(text(e.endpoint));
            c.status
                .push(i16::try_from(e.status).unwrap_or(proto::CallStatus::Unspecified as i16));
            c.http_status.push(saturating_i32(e.http_status));
            c.error_code.push(text(e.error_code));
            c.streamed.push(e.streamed);
            c.ttfb_ms.push(saturating_i32(e.ttfb_ms));
            c.latency_ms.push(saturating_i32(e.latency_ms));
            c.prompt_tokens.push(saturating_i64(e.prompt_tokens));
            c.completion_tokens
                .push(saturating_i64(e.completion_tokens));
            c.cache_read_tokens
                .push(saturating_i64(e.cache_read_tokens));
            c.cache_write_tokens
                .push(saturating_i64(e.cache_write_tokens));
            c.cost_micros.push(e.cost_micros);
            c.reserved_micros.push(e.reserved_micros);
            c.price_table_version.push(text(e.price_table_version));
            c.request_id.push(text(e.request_id));
            c.trace_id.push(text(e.trace_id));
            c.attempts.push(saturating_i32(e.attempts));
        }
        Ok(Self {
            seq: batch.seq,
            gateway_id: batch.gateway_id,
            events: c,
        })
    }
}

pub type ReportStream = Pin<Box<dyn Stream<Item = Result<proto::ReportAck, Status>> + Send>>;

/// One gateway stream, authenticated as a gateway of `region`.
struct Session {
    pool: Pool,
    region: String,
    touches: Arc<Touches>,
    inbound: Streaming<proto::UsageBatch>,
    /// Every batch up to this one is stored.
    committed: u64,
    ended: bool,
}

impl Session {
    async fn commit(&mut self, batch: proto::UsageBatch) -> Result<(), Status> {
        let batch = Batch::try_from(batch).map_err(|e| {
            metrics::counter!("tollgate_usage_batches_refused_total").increment(1);
            tracing::warn!(region = %self.region, error = %e, "refused a usage batch");
            Status::invalid_argument(e.to_string())
        })?;
        let started = Instant::now();
        let ingested = usage::ingest(&self.pool, &self.region, &batch.gateway_id, &batch.events)
            .await
            .map_err(|e| {
                tracing::error!(gateway = %batch.gateway_id, error = %e, "storing a usage batch failed");
                Status::unavailable("control plane database unavailable")
            })?;
        metrics::histogram!("tollgate_usage_batch_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("tollgate_usage_events_ingested_total").increment(ingested.inserted);
        let replayed = u64::try_from(batch.events.len())
            .unwrap_or(0)
            .saturating_sub(ingested.inserted);
        if replayed > 0 {
            metrics::counter!("tollgate_usage_events_duplicate_total").increment(replayed);
            tracing::debug!(gateway = %batch.gateway_id, seq = batch.seq, replayed, "replayed usage events skipped");
        }
        self.committed = self.committed.max(batch.seq);
        if !ingested.touched.is_empty() {
            self.touches.add(ingested.touched);
        }
        Ok(())
    }
}

/// Acks each batch of `inbound` once committed; ends at the first bad batch or failure.
pub fn report(
    pool: Pool,
    region: String,
    touches: Arc<Touches>,
    inbound: Streaming<proto::UsageBatch>,
) -> ReportStream {
    let session = Session {
        pool,
        region,
        touches,
        inbound,
        committed: 0,
        ended: false,
    };
    Box::pin(futures_util::stream::unfold(
        session,
        |mut session| async move {
            if session.ended {
                return None;
            }
            match session.inbound.message().await {
                Ok(Some(batch)) => {
                    let answer = match session.commit(batch).await {
                        Ok(()) => Ok(proto::ReportAck {
                            committed_seq: session.committed,
                        }),
                        Err(status) => {
                            session.ended = true;
                            Err(status)
                        }
                    };
                    Some((answer, session))
                }
                Ok(None) => None,
                Err(status) => {
                    tracing::debug!(region = %session.region, %status, "usage stream ended");
                    None
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> proto::UsageEvent {
        proto::UsageEvent {
            event_id: id.to_owned(),
            org_id: Uuid::now_v7().to_string(),
            team_id: Uuid::now_v7().to_string(),
            key_id: "abcdEFGH1234".into(),
            model: "gpt".into(),
            started_at_unix_ms: 1_700_000_000_000,
            cost_micros: 5,
            ..Default::default()
        }
    }

    fn batch(events: Vec<proto::UsageEvent>) -> proto::UsageBatch {
        proto::UsageBatch {
            seq: 7,
            gateway_id: "gw-1".into(),
            events,
        }
    }

    #[test]
    fn a_good_batch_is_laid_out_in_columns() {
        let id = Uuid::now_v7().to_string();
        let mut anonymous = event(&Uuid::now_v7().to_string());
        anonymous.org_id.clear();
        anonymous.team_id.clear();
        anonymous.key_id.clear();
        anonymous.model = format!("a\0{}", "x".repeat(1000));
        let b = Batch::try_from(batch(vec![event(&id), anonymous])).unwrap();
        assert_eq!(b.seq, 7);
        assert_eq!(b.events.len(), 2);
        assert_eq!(b.events.event_id[0].to_string(), id);
        assert_eq!(b.events.org_id[1], None);
        assert_eq!(b.events.model[1].chars().count(), TEXT_CHARS);
        assert!(!b.events.model[1].contains('\0'));
        assert_eq!(
            b.events.started_at[0].unix_timestamp(),
            1_700_000_000,
            "ms → timestamptz"
        );
    }

    #[test]
    fn bad_batches_are_refused_whole_with_the_reason() {
        let good = || event(&Uuid::now_v7().to_string());
        let refused = |events: Vec<proto::UsageEvent>| Batch::try_from(batch(events)).unwrap_err();
        assert_eq!(
            refused(vec![good(), event("nope")]),
            BatchError::Id {
                index: 1,
                field: "event_id",
                value: "nope".into()
            }
        );
        let mut e = good();
        e.team_id.clear();
        assert_eq!(refused(vec![e]), BatchError::PartialScope { index: 0 });
        let mut e = good();
        e.key_id = "tg_bad!".into();
        assert!(matches!(
            refused(vec![e]),
            BatchError::KeyId { index: 0, .. }
        ));
        let mut e = good();
        e.started_at_unix_ms = 0;
        assert!(matches!(refused(vec![e]), BatchError::StartedAt { .. }));
        let mut e = good();
        e.cost_micros = -1;
        assert!(matches!(refused(vec![e]), BatchError::Negative { .. }));
        assert_eq!(
            refused(vec![proto::UsageEvent::default(); MAX_EVENTS + 1]),
            BatchError::TooLarge(MAX_EVENTS + 1)
        );
        let mut no_gateway = batch(vec![good()]);
        no_gateway.gateway_id.clear();
        assert_eq!(
            Batch::try_from(no_gateway).unwrap_err(),
            BatchError::GatewayId
        );
    }
}
