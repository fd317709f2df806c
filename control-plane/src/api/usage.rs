//! `GET /api/v1/usage`: an org's spend and traffic per hour or day from the rollups,
//! optionally grouped by team, project, key or model, as JSON or CSV.
//!
//! What a caller sees is decided by [`Principal::usage_view`]: org-wide roles see the
//! whole org, team admins their teams, members the keys they own. Rows outside that are
//! filtered in the query itself, so they never appear, not even in sums.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, Time};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, FieldError};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::usage::{self, GroupBy, Interval, UsageQuery, UsageRow};

/// Rows per page: default and most.
const DEFAULT_LIMIT: i64 = 1_000;
const MAX_LIMIT: i64 = 10_000;
/// Longest ranges: 93 days of hours, 10 years of days.
const MAX_HOURS: i64 = 93 * 24;
const MAX_DAYS: i64 = 3_660;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_usage))
}

/// Query parameters; each is checked, and all problems are answered at once (422).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// The org whose usage to report.
    #[param(required = true, value_type = String, format = Uuid)]
    pub org_id: Option<String>,
    /// `team`, `project`, `key` (the key's public id) or `model`; absent = one row per
    /// bucket.
    #[param(pattern = "^(team|project|key|model)$")]
    pub group_by: Option<String>,
    /// RFC 3339. Buckets starting at or after it (rounded down to the interval). Default:
    /// 24 hours (hourly) or 30 days (daily) before `to`.
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// RFC 3339. Buckets starting before it. Default: now.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// `hour` or `day` (default).
    #[param(pattern = "^(hour|day)$")]
    pub interval: Option<String>,
    /// `json` (default) or `csv`; `Accept: text/csv` also asks for CSV.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
    /// Rows per page, 1–10000 (default 1000).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 10000)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page (CSV: its `X-Next-Cursor` header).
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageReport {
    pub org_id: Uuid,
    /// `hour` or `day`.
    pub interval: String,
    /// What each row's `group` is: `team`, `project`, `key` or `model`; absent when
    /// not grouped.
    pub group_by: Option<String>,
    /// Start of the first bucket included.
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    /// Buckets start before this.
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    /// By bucket, then group.
    pub items: Vec<UsageRow>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A checked request.
#[derive(Debug)]
struct Checked {
    query: UsageQuery,
    group_name: Option<&'static str>,
    csv: bool,
}

fn floor(t: OffsetDateTime, interval: Interval) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    match interval {
        Interval::Day => t.replace_time(Time::MIDNIGHT),
        Interval::Hour => t.replace_time(Time::from_hms(t.hour(), 0, 0).unwrap_or(Time::MIDNIGHT)),
    }
}

fn cursor_text(row: &UsageRow) -> String {
    format!(
        "{}:{}",
        row.bucket.unix_timestamp(),
        row.group.as_deref().unwrap_or_default()
    )
}

fn parse_cursor(text: &str) -> Option<(OffsetDateTime, String)> {
    let (secs, group) = text.split_once(':')?;
    let bucket = OffsetDateTime::from_unix_timestamp(secs.parse().ok()?).ok()?;
    (!group.contains('\0')).then(|| (bucket, group.to_owned()))
}

fn wants_csv(params: &UsageParams, headers: &HeaderMap) -> bool {
    match params.format.as_deref() {
        Some(format) => format == "csv",
        None => headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/csv")),
    }
}

fn fail(errors: &mut Vec<FieldError>, field: &str, message: &str) {
    errors.push(FieldError {
        field: field.into(),
        message: message.into(),
    });
}

/// `Some(None)` when absent, `None` (and an error) when not RFC 3339.
fn time(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: Option<&str>,
) -> Option<Option<OffsetDateTime>> {
    match value.map(|v| OffsetDateTime::parse(v, &Rfc3339)) {
        None => Some(None),
        Some(Ok(t)) => Some(Some(t)),
        Some(Err(_)) => {
            fail(
                errors,
                field,
                "an RFC 3339 date-time, e.g. 2026-11-01T00:00:00Z",
            );
            None
        }
    }
}

fn check(
    params: &UsageParams,
    headers: &HeaderMap,
    now: OffsetDateTime,
) -> Result<Checked, ApiError> {
    let mut errors = Vec::new();
    let org_id = match params.org_id.as_deref().map(Uuid::parse_str) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            fail(&mut errors, "org_id", "must be a UUID");
            None
        }
        None => {
            fail(&mut errors, "org_id", "required");
            None
        }
    };
    let (group_by, group_name) = match params.group_by.as_deref() {
        None => (GroupBy::None, None),
        Some("team") => (GroupBy::Team, Some("team")),
        Some("project") => (GroupBy::Project, Some("project")),
        Some("key") => (GroupBy::Key, Some("key")),
        Some("model") => (GroupBy::Model, Some("model")),
        Some(_) => {
            fail(&mut errors, "group_by", "one of team, project, key, model");
            (GroupBy::None, None)
        }
    };
    let interval = match params.interval.as_deref() {
        None | Some("day") => Interval::Day,
        Some("hour") => Interval::Hour,
        Some(_) => {
            fail(&mut errors, "interval", "one of hour, day");
            Interval::Day
        }
    };
    if params
        .format
        .as_deref()
        .is_some_and(|f| f != "json" && f != "csv")
    {
        fail(&mut errors, "format", "one of json, csv");
    }
    let to = time(&mut errors, "to", params.to.as_deref());
    let from = time(&mut errors, "from", params.from.as_deref());
    let limit = match params.limit.as_deref().map(str::parse::<i64>) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            fail(&mut errors, "limit", "an integer between 1 and 10000");
            DEFAULT_LIMIT
        }
    };
    let after = match params.cursor.as_deref().map(parse_cursor) {
        None => None,
        Some(Some(after)) => Some(after),
        Some(None) => {
            fail(&mut errors, "cursor", "not a cursor this API gave out");
            None
        }
    };
    let (Some(org_id), Some(to), Some(from)) = (org_id, to, from) else {
        return Err(ApiError::invalid(errors));
    };
    let to = to.unwrap_or(now);
    let (default_span, max_span) = match interval {
        Interval::Hour => (Duration::hours(24), Duration::hours(MAX_HOURS)),
        Interval::Day => (Duration::days(30), Duration::days(MAX_DAYS)),
    };
    let from = floor(
        from.unwrap_or_else(|| to.checked_sub(default_span).unwrap_or(to)),
        interval,
    );
    if from >= to {
        fail(&mut errors, "from", "must be before to");
    } else if to - from > max_span {
        fail(
            &mut errors,
            "from",
            match interval {
                Interval::Hour => "hourly usage spans at most 93 days",
                Interval::Day => "daily usage spans at most 3660 days",
            },
        );
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    Ok(Checked {
        query: UsageQuery {
            org_id,
            interval,
            group_by,
            from,
            to,
            after,
            limit,
        },
        group_name,
        csv: wants_csv(params, headers),
    })
}

/// A CSV field: quoted when it must be, and never read as a formula by a spreadsheet.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn csv(rows: &[UsageRow], group_name: Option<&str>) -> String {
    let mut out = String::from("bucket,");
    if let Some(name) = group_name {
        out.push_str(name);
        out.push(',');
    }
    out.push_str("requests,errors,prompt_tokens,completion_tokens,cache_read_tokens,cache_write_tokens,cost_micros\n");
    for r in rows {
        out.push_str(&r.bucket.format(&Rfc3339).unwrap_or_default());
        out.push(',');
        if group_name.is_some() {
            out.push_str(&csv_field(r.group.as_deref().unwrap_or_default()));
            out.push(',');
        }
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            r.requests,
            r.errors,
            r.prompt_tokens,
            r.completion_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.cost_micros
        ));
    }
    out
}

/// Usage of an org per hour or day (buckets in UTC), from the rollups the gateways'
/// usage events feed; each row sums requests, tokens and micro-USD cost. Org admins and
/// viewers see the whole org, team admins their teams, members the keys they own.
#[utoipa::path(get, path = "/usage", tag = "usage", params(UsageParams),
    responses(
        (status = 200, description = "Usage rows (JSON, or CSV with a header row)",
            content((UsageReport = "application/json"), (String = "text/csv")),
            headers(("x-next-cursor" = String, description = "CSV only: the cursor of the next page, when there is one"))),
        (status = 400, description = "Malformed query"), (status = 401), (status = 404), (status = 422)))]
async fn get_usage(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(params): Query<UsageParams>,
) -> Result<Response, ApiError> {
    let checked = check(&params, &headers, OffsetDateTime::now_utc())?;
    let org_id = checked.query.org_id;
    require(&principal, Permission::ReadOrg(org_id))?;
    let visible = principal.usage_view(org_id);
    let mut rows = usage::usage(&state.pool, &checked.query, &visible).await?;
    let limit = usize::try_from(checked.query.limit).unwrap_or(usize::MAX);
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(cursor_text)
    } else {
        None
    };
    if checked.csv {
        let mut response = (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            csv(&rows, checked.group_name),
        )
            .into_response();
        if let Some(value) = next_cursor.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert("x-next-cursor", value);
        }
        return Ok(response);
    }
    Ok(Json(UsageReport {
        org_id,
        interval: match checked.query.interval {
            Interval::Hour => "hour",
            Interval::Day => "day",
        }
        .into(),
        group_by: checked.group_name.map(str::to_owned),
        from: checked.query.from,
        to: checked.query.to,
        items: rows,
        next_cursor,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn params(pairs: &[(&str, &str)]) -> UsageParams {
        let mut p = UsageParams::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "org_id" => p.org_id = v,
                "group_by" => p.group_by = v,
                "from" => p.from = v,
                "to" => p.to = v,
                "interval" => p.interval = v,
                "format" => p.format = v,
                "limit" => p.limit = v,
                "cursor" => p.cursor = v,
                _ => panic!("{k}"),
            }
        }
        p
    }

    fn fields(e: ApiError) -> Vec<String> {
        e.errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn every_bad_parameter_is_named_at_once() {
        let now = datetime!(2026-11-18 15:30 UTC);
        let bad = params(&[
            ("org_id", "x"),
            ("group_by", "user"),
            ("interval", "week"),
            ("format", "xml"),
            ("from", "yesterday"),
            ("limit", "0"),
            ("cursor", "nope"),
        ]);
        let e = check(&bad, &HeaderMap::new(), now).unwrap_err();
        assert_eq!(e.status, http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            fields(e),
            [
                "org_id", "group_by", "interval", "format", "from", "limit", "cursor"
            ]
        );
        let org = Uuid::now_v7().to_string();
        let backwards = params(&[
            ("org_id", &org),
            ("from", "2026-11-18T00:00:00Z"),
            ("to", "2026-11-17T00:00:00Z"),
        ]);
        assert_eq!(
            fields(check(&backwards, &HeaderMap::new(), now).unwrap_err()),
            ["from"]
        );
        let too_long = params(&[
            ("org_id", &org),
            ("interval", "hour"),
            ("from", "2020-01-01T00:00:00Z"),
        ]);
        assert_eq!(
            fields(check(&too_long, &HeaderMap::new(), now).unwrap_err()),
            ["from"]
        );
    }

    #[test]
    fn defaults_and_rounding() {
        let now = datetime!(2026-11-18 15:30 UTC);
        let org = Uuid::now_v7().to_string();
        let c = check(&params(&[("org_id", &org)]), &HeaderMap::new(), now).unwrap();
        assert_eq!(c.query.interval, Interval::Day);
        assert_eq!(c.query.to, now);
        assert_eq!(c.query.from, datetime!(2026-10-19 00:00 UTC));
        assert!(!c.csv);
        let mut accept = HeaderMap::new();
        accept.insert(header::ACCEPT, HeaderValue::from_static("text/csv"));
        let c = check(
            &params(&[
                ("org_id", &org),
                ("interval", "hour"),
                ("from", "2026-11-18T10:45:00+01:00"),
            ]),
            &accept,
            now,
        )
        .unwrap();
        assert_eq!(c.query.from, datetime!(2026-11-18 09:00 UTC));
        assert!(c.csv);
    }

    #[test]
    fn cursors_and_csv_round_trip() {
        let row = UsageRow {
            bucket: datetime!(2026-11-18 00:00 UTC),
            group: Some("=cmd,\"x\"".into()),
            requests: 2,
            errors: 1,
            prompt_tokens: 3,
            completion_tokens: 4,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            cost_micros: 99,
        };
        assert_eq!(
            parse_cursor(&cursor_text(&row)),
            Some((row.bucket, "=cmd,\"x\"".to_owned()))
        );
        assert_eq!(
            csv(&[row], Some("model")),
            "bucket,model,requests,errors,prompt_tokens,completion_tokens,cache_read_tokens,cache_write_tokens,cost_micros\n\
             2026-11-18T00:00:00Z,\"'=cmd,\"\"x\"\"\",2,1,3,4,0,0,99\n"
        );
    }
}
