//! The dashboard's pages. Each handler asks the service layer, then lays the answer out
//! as blocks; writes redirect back (303) with a fixed outcome code, or — refused —
//! render the same page again with the typed values and the errors beside the fields.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use serde::Deserialize;
use time::{Date, Duration, OffsetDateTime, Time};
use tollgate_web_ui::{Bar, Block, Cell, Field, Filters, Flash, Form, Submitted, Table};
use uuid::Uuid;

use super::{Posted, Refused, Viewer, landing};
use crate::auth::rbac::Permission;
use crate::service::audit::AuditFilter;
use crate::service::keys::{KeyFilter, NewKey};
use crate::service::{self, Problem, Services, budgets, keys, orgs, teams};
use crate::store::budgets::Budget;
use crate::store::keys::Key;
use crate::store::orgs::Org;
use crate::store::teams::Team;
use crate::store::usage::{GroupBy, Interval, UsageQuery, UsageRow};

/// Micro-USD as dollars, as precise as needed (a budget of $0.001 shows so).
pub fn usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    let (whole, frac) = (m / 1_000_000, m % 1_000_000);
    if frac == 0 {
        return format!("{sign}${whole}.00");
    }
    let mut text = format!("{frac:06}");
    while text.len() > 2 && text.ends_with('0') {
        text.pop();
    }
    format!("{sign}${whole}.{text}")
}

fn when(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

fn day(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// The sentence a redirect's `?done=` code stands for (fixed codes, so a link cannot
/// make the page say anything else).
fn flash(done: Option<&str>) -> Option<Flash> {
    let text = match done? {
        "org" => "Org created.",
        "team" => "Team created.",
        "budget" => "Budget created.",
        "revoked" => "Key revoked. Gateways refuse it within seconds.",
        _ => return None,
    };
    Some(Flash {
        ok: true,
        text: text.into(),
    })
}

#[derive(Debug, Deserialize, Default)]
pub struct PageQuery {
    org: Option<Uuid>,
    done: Option<String>,
}

fn refused(problem: &Problem) -> Submitted {
    Submitted {
        values: Vec::new(),
        errors: problem
            .errors
            .iter()
            .map(|e| (e.field.clone(), e.message.clone()))
            .chain(
                problem
                    .errors
                    .is_empty()
                    .then(|| (String::new(), problem.to_string())),
            )
            .collect(),
    }
}

fn with_values(mut submitted: Submitted, posted: &Posted) -> Submitted {
    submitted.values = posted.fields.values();
    submitted
}

/// Whole days of rollups from `from` up to now.
fn usage_query(org_id: Uuid, group_by: GroupBy, from: OffsetDateTime) -> UsageQuery {
    UsageQuery {
        org_id,
        interval: Interval::Day,
        group_by,
        from,
        to: OffsetDateTime::now_utc() + Duration::days(1),
        after: None,
        limit: 1000,
    }
}

fn month_start() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_time(Time::MIDNIGHT) - Duration::days(i64::from(now.day()) - 1)
}

/// Sums rows by group, largest cost first.
fn by_group(rows: &[UsageRow]) -> Vec<(String, i64, i64)> {
    let mut sums: Vec<(String, i64, i64)> = Vec::new();
    for row in rows {
        let group = row.group.clone().unwrap_or_else(|| "—".into());
        match sums.iter_mut().find(|(g, _, _)| *g == group) {
            Some(entry) => {
                entry.1 = entry.1.saturating_add(row.requests);
                entry.2 = entry.2.saturating_add(row.cost_micros);
            }
            None => sums.push((group, row.requests, row.cost_micros)),
        }
    }
    sums.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)));
    sums
}

fn scope_name(budget: &Budget, org: &Org, teams: &[Team], keys: &[Key]) -> String {
    match budget.scope_kind.as_str() {
        "org" => format!("org {}", org.name),
        "team" => teams
            .iter()
            .find(|t| t.id == budget.scope_id)
            .map(|t| format!("team {}", t.name))
            .unwrap_or_else(|| "a team".into()),
        "key" => keys
            .iter()
            .find(|k| k.id == budget.scope_id)
            .map(|k| format!("key {} ({})", k.name, k.display_prefix))
            .unwrap_or_else(|| "a key".into()),
        _ => "a project".into(),
    }
}

/// The budgets table: amount, spent this period (settled calls, from the rollups) and
/// what is left.
async fn budget_table(
    svc: &Services,
    v: &Viewer,
    org: &Org,
    budgets: &[Budget],
    teams: &[Team],
    keys: &[Key],
) -> Result<Table, Problem> {
    let spent = service::usage::spent(svc, &v.principal, org.id, budgets).await?;
    let rows = budgets
        .iter()
        .zip(spent)
        .map(|(b, spent)| {
            let pct = if b.amount_micros > 0 {
                format!("{:.0} %", spent as f64 * 100.0 / b.amount_micros as f64)
            } else {
                "—".into()
            };
            vec![
                Cell::text(scope_name(b, org, teams, keys)),
                Cell::text(&b.period),
                Cell::num(usd(b.amount_micros)),
                Cell::num(usd(spent)),
                Cell::num(usd(b.amount_micros.saturating_sub(spent).max(0))),
                Cell::num(pct),
            ]
        })
        .collect();
    Ok(Table {
        id: "budgets".into(),
        caption:
            "Budgets this period (settled spend, from usage rollups; calls in flight are not in it)"
                .into(),
        columns: ["Scope", "Period", "#Budget", "#Spent", "#Left", "#Used"]
            .map(String::from)
            .to_vec(),
        rows,
        empty: "No budgets yet.".into(),
    })
}

async fn all_teams(svc: &Services, v: &Viewer, org: Uuid) -> Result<Vec<Team>, Problem> {
    Ok(teams::list(svc, &v.principal, org, None, 200).await?.items)
}

pub async fn overview(
    State(svc): State<Services>,
    viewer: Result<Viewer, Refused>,
    Query(q): Query<PageQuery>,
    nonce: axum::Extension<super::Nonce>,
) -> Response {
    let v = match viewer {
        Ok(v) => v,
        Err(Refused::SignIn) => return landing(nonce.0.0),
        Err(refused) => return refused.into_response(),
    };
    let org = match q.org {
        Some(id) => orgs::require_read(&svc.pool, &v.principal, id)
            .await
            .map(Some),
        None => orgs::list(&svc, &v.principal, None, 1)
            .await
            .map(|page| page.items.into_iter().next()),
    };
    let org = match org {
        Ok(org) => org,
        Err(problem) => return v.problem(q.org, &problem),
    };
    let Some(org) = org else {
        let mut blocks = vec![Block::Empty(
            "You have no org yet. Platform admins create orgs; ask one to add you to yours.".into(),
        )];
        if v.principal.platform_admin {
            blocks.push(Block::Links(vec![("Create an org".into(), "/orgs".into())]));
        }
        let shell = v.shell("Overview", None, "Overview", flash(q.done.as_deref()));
        return v.page(StatusCode::OK, shell, blocks);
    };
    match overview_blocks(&svc, &v, &org).await {
        Ok(blocks) => {
            let title = format!("Overview · {}", org.name);
            let shell = v.shell(&title, Some(org.id), "Overview", flash(q.done.as_deref()));
            v.page(StatusCode::OK, shell, blocks)
        }
        Err(problem) => v.problem(Some(org.id), &problem),
    }
}

async fn overview_blocks(svc: &Services, v: &Viewer, org: &Org) -> Result<Vec<Block>, Problem> {
    let month = month_start();
    let daily = service::usage::rows(
        svc,
        &v.principal,
        &usage_query(org.id, GroupBy::None, month - Duration::days(30)),
    )
    .await?;
    let this_month: Vec<&UsageRow> = daily.iter().filter(|r| r.bucket >= month).collect();
    let calls: i64 = this_month.iter().map(|r| r.requests).sum();
    let errors: i64 = this_month.iter().map(|r| r.errors).sum();
    let cost: i64 = this_month.iter().map(|r| r.cost_micros).sum();
    let error_rate = if calls > 0 {
        format!("{:.1} %", errors as f64 * 100.0 / calls as f64)
    } else {
        "—".into()
    };
    let mut blocks = vec![Block::Cards(vec![
        ("spent this month".into(), usd(cost)),
        ("calls this month".into(), calls.to_string()),
        ("error rate".into(), error_rate),
    ])];
    blocks.push(Block::Heading("Spend per day (last 30 days)".into()));
    if daily.is_empty() {
        blocks.push(Block::Empty(
            "No calls yet: make one with a key of this org and it shows here within a few seconds."
                .into(),
        ));
    } else {
        let bars: Vec<Bar> = daily
            .iter()
            .map(|r| Bar {
                label: day(r.bucket),
                value: r.cost_micros as f64,
                tip: format!(
                    "{} on {} ({} calls)",
                    usd(r.cost_micros),
                    day(r.bucket),
                    r.requests
                ),
            })
            .collect();
        blocks.push(Block::Chart {
            caption: "Spend per day".into(),
            bars,
        });
        blocks.push(Block::Table(Table {
            id: "daily".into(),
            caption: "Spend per day".into(),
            columns: ["Day", "#Calls", "#Errors", "#Spent"]
                .map(String::from)
                .to_vec(),
            rows: daily
                .iter()
                .rev()
                .map(|r| {
                    vec![
                        Cell::text(day(r.bucket)),
                        Cell::num(r.requests.to_string()),
                        Cell::num(r.errors.to_string()),
                        Cell::num(usd(r.cost_micros)),
                    ]
                })
                .collect(),
            empty: String::new(),
        }));
    }
    let teams = all_teams(svc, v, org.id).await?;
    let budget_list = budgets::list(svc, &v.principal, org.id, None, None).await?;
    let keys = keys::list(svc, &v.principal, org.id, &KeyFilter::default(), None, 200)
        .await?
        .items;
    blocks.push(Block::Heading("Budgets".into()));
    blocks.push(Block::Table(
        budget_table(svc, v, org, &budget_list, &teams, &keys).await?,
    ));
    for (group, title, id) in [
        (GroupBy::Model, "Top models this month", "top-models"),
        (GroupBy::Key, "Top keys this month", "top-keys"),
    ] {
        let rows =
            service::usage::rows(svc, &v.principal, &usage_query(org.id, group, month)).await?;
        let top = by_group(&rows);
        blocks.push(Block::Heading(title.into()));
        blocks.push(Block::Table(Table {
            id: id.into(),
            caption: title.into(),
            columns: [
                if group == GroupBy::Model {
                    "Model"
                } else {
                    "Key"
                },
                "#Calls",
                "#Spent",
            ]
            .map(String::from)
            .to_vec(),
            rows: top
                .into_iter()
                .take(10)
                .map(|(g, calls, cost)| {
                    let label = match group {
                        GroupBy::Key => keys
                            .iter()
                            .find(|k| k.public_id == g)
                            .map(|k| {
                                Cell::link(
                                    format!("{} ({})", k.name, k.display_prefix),
                                    format!("/orgs/{}/keys/{}", org.id, k.id),
                                )
                            })
                            .unwrap_or(Cell::text(g)),
                        _ => Cell::text(g),
                    };
                    vec![label, Cell::num(calls.to_string()), Cell::num(usd(cost))]
                })
                .collect(),
            empty: "No calls this month.".into(),
        }));
    }
    Ok(blocks)
}

fn org_form(v: &Viewer, submitted: Option<&Submitted>) -> Form {
    Form::new("new-org", "/orgs", &v.csrf, "Create org")
        .field(
            Field::text("Slug", "slug")
                .required()
                .hint("Lowercase letters, digits and '-', e.g. acme"),
        )
        .field(Field::text("Name", "name").required())
        .submitted(submitted)
}

async fn orgs_page(
    svc: &Services,
    v: &Viewer,
    flash: Option<Flash>,
    submitted: Option<&Submitted>,
    status: StatusCode,
) -> Response {
    let list = match orgs::list(svc, &v.principal, None, 200).await {
        Ok(page) => page.items,
        Err(problem) => return v.problem(None, &problem),
    };
    let mut blocks = vec![Block::Table(Table {
        id: "orgs".into(),
        caption: "Orgs".into(),
        columns: ["Name", "Slug", "Created"].map(String::from).to_vec(),
        rows: list
            .iter()
            .map(|o| {
                vec![
                    Cell::link(&o.name, format!("/orgs/{}", o.id)),
                    Cell::Code(o.slug.clone()),
                    Cell::text(day(o.created_at)),
                ]
            })
            .collect(),
        empty: "No orgs yet — create the first one below.".into(),
    })];
    if v.principal.allows(Permission::ManagePlatform) {
        blocks.push(Block::Heading("New org".into()));
        blocks.push(Block::Form(org_form(v, submitted)));
    }
    let shell = v.shell("Orgs", None, "Orgs", flash);
    v.page(status, shell, blocks)
}

pub async fn orgs(State(svc): State<Services>, v: Viewer, Query(q): Query<PageQuery>) -> Response {
    orgs_page(&svc, &v, flash(q.done.as_deref()), None, StatusCode::OK).await
}

pub async fn create_org(State(svc): State<Services>, posted: Posted) -> Response {
    let v = &posted.viewer;
    let new = orgs::NewOrg {
        slug: posted.fields.get("slug").to_owned(),
        name: posted.fields.get("name").to_owned(),
    };
    let created = async {
        let mut tx = svc.pool.begin().await.map_err(Problem::from)?;
        let org = orgs::create(&mut tx, &v.principal, &new).await?;
        tx.commit().await.map_err(Problem::from)?;
        Ok::<_, Problem>(org)
    }
    .await;
    match created {
        Ok(org) => Redirect::to(&format!("/orgs/{}?done=org", org.id)).into_response(),
        Err(problem)
            if problem.status.is_client_error()
                && problem.status != StatusCode::FORBIDDEN
                && problem.status != StatusCode::NOT_FOUND =>
        {
            let submitted = with_values(refused(&problem), &posted);
            orgs_page(&svc, v, None, Some(&submitted), problem.status).await
        }
        Err(problem) => v.problem(None, &problem),
    }
}

fn team_form(v: &Viewer, org: Uuid, submitted: Option<&Submitted>) -> Form {
    Form::new(
        "new-team",
        format!("/orgs/{org}/teams"),
        &v.csrf,
        "Create team",
    )
    .field(
        Field::text("Slug", "slug")
            .required()
            .hint("Unique in the org, e.g. search"),
    )
    .field(Field::text("Name", "name").required())
    .field(
        Field::text("Allowed models", "allowed_models")
            .hint("Comma-separated names or aliases; empty = every model"),
    )
    .submitted(submitted)
}

fn budget_form(
    v: &Viewer,
    org: Uuid,
    scopes: Vec<(String, String)>,
    submitted: Option<&Submitted>,
) -> Form {
    Form::new(
        "new-budget",
        format!("/orgs/{org}/budgets"),
        &v.csrf,
        "Create budget",
    )
    .field(Field::select("Applies to", "scope", scopes).required())
    .field(
        Field::number("Amount (USD)", "amount_usd")
            .required()
            .hint("e.g. 50 or 0.001"),
    )
    .field(Field::select(
        "Period",
        "period",
        ["month", "week", "day", "total"]
            .map(|p| (p.to_owned(), p.to_owned()))
            .to_vec(),
    ))
    .field(Field::select(
        "When the budget cannot pay for a call",
        "clamp",
        vec![
            ("false".into(), "refuse the call".into()),
            ("true".into(), "lower max_tokens to what is left".into()),
        ],
    ))
    .submitted(submitted)
}

async fn org_page(
    svc: &Services,
    v: &Viewer,
    org_id: Uuid,
    flash: Option<Flash>,
    team_sub: Option<&Submitted>,
    budget_sub: Option<&Submitted>,
    status: StatusCode,
) -> Response {
    let built = async {
        let org = orgs::require_read(&svc.pool, &v.principal, org_id).await?;
        let teams = all_teams(svc, v, org_id).await?;
        let budget_list = budgets::list(svc, &v.principal, org_id, None, None).await?;
        let keys = keys::list(svc, &v.principal, org_id, &KeyFilter::default(), None, 200)
            .await?
            .items;
        let mut blocks = vec![Block::Table(Table {
            id: "teams".into(),
            caption: "Teams".into(),
            columns: ["Team", "Slug", "Models"].map(String::from).to_vec(),
            rows: teams
                .iter()
                .map(|t| {
                    vec![
                        Cell::link(&t.name, format!("/orgs/{org_id}/teams/{}", t.id)),
                        Cell::Code(t.slug.clone()),
                        Cell::text(match &t.allowed_models {
                            None => "every model".into(),
                            Some(list) if list.is_empty() => "none".into(),
                            Some(list) => list.join(", "),
                        }),
                    ]
                })
                .collect(),
            empty: "No teams yet.".into(),
        })];
        let admin = v.principal.allows(Permission::AdminOrg(org_id));
        if admin {
            blocks.push(Block::Heading("New team".into()));
            blocks.push(Block::Form(team_form(v, org_id, team_sub)));
        }
        blocks.push(Block::Heading("Budgets".into()));
        blocks.push(Block::Table(
            budget_table(svc, v, &org, &budget_list, &teams, &keys).await?,
        ));
        if admin {
            let mut scopes = vec![(
                format!("org:{org_id}"),
                format!("the whole org ({})", org.name),
            )];
            scopes.extend(
                teams
                    .iter()
                    .map(|t| (format!("team:{}", t.id), format!("team {}", t.name))),
            );
            blocks.push(Block::Heading("New budget".into()));
            blocks.push(Block::Form(budget_form(v, org_id, scopes, budget_sub)));
        }
        Ok::<_, Problem>((org, blocks))
    }
    .await;
    match built {
        Ok((org, blocks)) => {
            let shell = v.shell(
                &format!("Teams · {}", org.name),
                Some(org_id),
                "Teams",
                flash,
            );
            v.page(status, shell, blocks)
        }
        Err(problem) => v.problem(Some(org_id), &problem),
    }
}

pub async fn org(
    State(svc): State<Services>,
    v: Viewer,
    Path(org_id): Path<Uuid>,
    Query(q): Query<PageQuery>,
) -> Response {
    org_page(
        &svc,
        &v,
        org_id,
        flash(q.done.as_deref()),
        None,
        None,
        StatusCode::OK,
    )
    .await
}

fn list_field(text: &str) -> Option<Vec<String>> {
    let items: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (!items.is_empty()).then_some(items)
}

/// Refusals the person can fix in the form come back into it; others get their page.
fn fixable(problem: &Problem) -> bool {
    matches!(
        problem.status,
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT | StatusCode::BAD_REQUEST
    )
}

pub async fn create_team(
    State(svc): State<Services>,
    Path(org_id): Path<Uuid>,
    posted: Posted,
) -> Response {
    let v = &posted.viewer;
    let new = teams::NewTeam {
        slug: posted.fields.get("slug").to_owned(),
        name: posted.fields.get("name").to_owned(),
        allowed_models: list_field(posted.fields.get("allowed_models")),
    };
    let created = async {
        let mut tx = svc.pool.begin().await.map_err(Problem::from)?;
        let team = teams::create(&svc, &mut tx, &v.principal, org_id, &new).await?;
        tx.commit().await.map_err(Problem::from)?;
        Ok::<_, Problem>(team)
    }
    .await;
    match created {
        Ok(_) => Redirect::to(&format!("/orgs/{org_id}?done=team")).into_response(),
        Err(problem) if fixable(&problem) => {
            let submitted = with_values(refused(&problem), &posted);
            org_page(
                &svc,
                v,
                org_id,
                None,
                Some(&submitted),
                None,
                problem.status,
            )
            .await
        }
        Err(problem) => v.problem(Some(org_id), &problem),
    }
}

/// Dollars typed into a form as micro-USD; `None` when it is not a plain amount.
fn micros(text: &str) -> Option<i64> {
    let text = text.trim().trim_start_matches('$');
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty()
        || frac.len() > 6
        || !whole
            .chars()
            .chain(frac.chars())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: i64 = format!("{frac:0<6}").parse().ok()?;
    whole.checked_mul(1_000_000)?.checked_add(frac)
}

pub async fn create_budget(
    State(svc): State<Services>,
    Path(org_id): Path<Uuid>,
    posted: Posted,
) -> Response {
    let v = &posted.viewer;
    let back = posted.fields.opt("back").map(str::to_owned);
    let mut errors = Vec::new();
    let amount = micros(posted.fields.get("amount_usd"));
    if amount.is_none() {
        errors.push((
            "amount_usd".to_owned(),
            "a dollar amount such as 50 or 0.001 (at most 6 decimals)".to_owned(),
        ));
    }
    let scope = posted
        .fields
        .get("scope")
        .split_once(':')
        .and_then(|(kind, id)| Some((kind.to_owned(), id.parse::<Uuid>().ok()?)));
    if scope.is_none() {
        errors.push((
            "scope".to_owned(),
            "choose what the budget applies to".to_owned(),
        ));
    }
    let result = match (amount, scope) {
        (Some(amount_micros), Some((scope_kind, scope_id))) => {
            let new = budgets::NewBudget {
                scope_kind,
                scope_id,
                amount_micros,
                period: posted.fields.get("period").to_owned(),
                alert_thresholds_pct: None,
                clamp: posted.fields.get("clamp") == "true",
            };
            budgets::create(&svc, &v.principal, org_id, &new)
                .await
                .map(|_| ())
        }
        _ => Err(Problem::invalid(Vec::new())),
    };
    match result {
        Ok(()) => Redirect::to(&format!(
            "{}?done=budget",
            back.unwrap_or(format!("/orgs/{org_id}"))
        ))
        .into_response(),
        Err(problem) if fixable(&problem) => {
            let mut submitted = with_values(refused(&problem), &posted);
            submitted
                .errors
                .retain(|(f, m)| !(f.is_empty() && m == "some fields are invalid"));
            for (field, message) in problem
                .errors
                .iter()
                .map(|e| (e.field.as_str(), e.message.clone()))
            {
                // The service names API fields; the form shows them as one amount and one scope.
                let shown = match field {
                    "amount_micros" => "amount_usd",
                    "scope_kind" | "scope_id" => "scope",
                    other => other,
                };
                submitted.errors.push((shown.to_owned(), message));
            }
            submitted.errors.extend(errors);
            match back
                .as_deref()
                .and_then(|b| b.rsplit_once("/teams/"))
                .and_then(|(_, t)| t.parse::<Uuid>().ok())
            {
                Some(team) => {
                    team_page(
                        &svc,
                        v,
                        org_id,
                        team,
                        None,
                        None,
                        Some(&submitted),
                        problem.status,
                    )
                    .await
                }
                None => {
                    org_page(
                        &svc,
                        v,
                        org_id,
                        None,
                        None,
                        Some(&submitted),
                        problem.status,
                    )
                    .await
                }
            }
        }
        Err(problem) => v.problem(Some(org_id), &problem),
    }
}

fn key_form(
    v: &Viewer,
    org: Uuid,
    teams: &[Team],
    fixed_team: Option<Uuid>,
    submitted: Option<&Submitted>,
) -> Form {
    let mut form = Form::new(
        "new-key",
        format!("/orgs/{org}/keys"),
        &v.csrf,
        "Create key",
    )
    .field(
        Field::text("Name", "name")
            .required()
            .hint("What the key is for, e.g. search-prod"),
    );
    form = match fixed_team {
        Some(team) => form
            .hidden("team_id", team.to_string())
            .hidden("back", format!("/orgs/{org}/teams/{team}")),
        None => form.field(
            Field::select(
                "Team",
                "team_id",
                teams
                    .iter()
                    .map(|t| (t.id.to_string(), t.name.clone()))
                    .collect(),
            )
            .required(),
        ),
    };
    form.field(
        Field::text("Allowed models", "allowed_models")
            .hint("Comma-separated; empty = what the team allows"),
    )
    .field(Field::text("Expires (UTC)", "expires_at").hint("YYYY-MM-DD or RFC 3339; empty = never"))
    .submitted(submitted)
}

fn key_rows(v: &Viewer, org: Uuid, keys: &[Key], teams: &[Team]) -> Vec<Vec<Cell>> {
    keys.iter()
        .map(|k| {
            let team = teams
                .iter()
                .find(|t| t.id == k.team_id)
                .map(|t| t.name.clone())
                .unwrap_or_default();
            let may_manage =
                keys::require_manage(&v.principal, org, k.team_id, k.owner_user_id).is_ok();
            let action = if k.status == "active" && may_manage {
                Cell::Action(Box::new(
                    Form::new(
                        &format!("revoke-{}", k.public_id),
                        format!("/orgs/{org}/keys/{}/revoke", k.id),
                        &v.csrf,
                        "Revoke",
                    )
                    .confirm(format!(
                        "Revoke key {}? Calls with it will be refused.",
                        k.name
                    )),
                ))
            } else {
                Cell::Blank
            };
            vec![
                Cell::link(
                    if k.name.is_empty() {
                        "(unnamed)".to_owned()
                    } else {
                        k.name.clone()
                    },
                    format!("/orgs/{org}/keys/{}", k.id),
                ),
                Cell::Code(format!("{}…", k.display_prefix)),
                Cell::text(team),
                Cell::text(&k.status),
                Cell::text(k.expires_at.map(when).unwrap_or_else(|| "never".into())),
                action,
            ]
        })
        .collect()
}

fn key_table(v: &Viewer, org: Uuid, keys: &[Key], teams: &[Team], empty: &str) -> Table {
    Table {
        id: "keys".into(),
        caption: "Keys".into(),
        columns: ["Name", "Prefix", "Team", "Status", "Expires", "Actions"]
            .map(String::from)
            .to_vec(),
        rows: key_rows(v, org, keys, teams),
        empty: empty.into(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn team_page(
    svc: &Services,
    v: &Viewer,
    org_id: Uuid,
    team_id: Uuid,
    flash: Option<Flash>,
    key_sub: Option<&Submitted>,
    budget_sub: Option<&Submitted>,
    status: StatusCode,
) -> Response {
    let built = async {
        let org = orgs::require_read(&svc.pool, &v.principal, org_id).await?;
        crate::auth::rbac::require(
            &v.principal,
            Permission::ReadTeam {
                org: org_id,
                team: team_id,
            },
        )?;
        let team = crate::store::teams::get(&svc.pool, org_id, team_id).await?;
        let filter = KeyFilter {
            team_id: Some(team_id),
            ..KeyFilter::default()
        };
        let keys = keys::list(svc, &v.principal, org_id, &filter, None, 200)
            .await?
            .items;
        let team_budgets: Vec<Budget> = budgets::list(svc, &v.principal, org_id, None, None)
            .await?
            .into_iter()
            .filter(|b| {
                (b.scope_kind == "team" && b.scope_id == team_id)
                    || (b.scope_kind == "key" && keys.iter().any(|k| k.id == b.scope_id))
            })
            .collect();
        let teams = vec![team.clone()];
        let mut blocks = vec![
            Block::Text(format!(
                "Models: {}",
                match &team.allowed_models {
                    None => "every model".into(),
                    Some(list) if list.is_empty() => "none".into(),
                    Some(list) => list.join(", "),
                }
            )),
            Block::Heading("Budgets".into()),
            Block::Table(budget_table(svc, v, &org, &team_budgets, &teams, &keys).await?),
        ];
        if v.principal.allows(Permission::AdminOrg(org_id))
            || v.principal.allows(Permission::AdminTeam {
                org: org_id,
                team: team_id,
            })
        {
            let mut scopes = Vec::new();
            if v.principal.allows(Permission::AdminOrg(org_id)) {
                scopes.push((format!("team:{team_id}"), format!("team {}", team.name)));
            }
            scopes.extend(keys.iter().filter(|k| k.status == "active").map(|k| {
                (
                    format!("key:{}", k.id),
                    format!("key {} ({})", k.name, k.display_prefix),
                )
            }));
            if !scopes.is_empty() {
                blocks.push(Block::Heading("New budget".into()));
                blocks.push(Block::Form(
                    budget_form(v, org_id, scopes, budget_sub)
                        .hidden("back", format!("/orgs/{org_id}/teams/{team_id}")),
                ));
            }
        }
        blocks.push(Block::Heading("Keys".into()));
        blocks.push(Block::Table(key_table(
            v,
            org_id,
            &keys,
            &teams,
            "No keys in this team yet.",
        )));
        if v.principal.allows(Permission::MintKey {
            org: org_id,
            team: team_id,
        }) {
            blocks.push(Block::Heading("New key".into()));
            blocks.push(Block::Form(key_form(
                v,
                org_id,
                &teams,
                Some(team_id),
                key_sub,
            )));
        }
        Ok::<_, Problem>((team, blocks))
    }
    .await;
    match built {
        Ok((team, blocks)) => {
            let shell = v.shell(&format!("Team {}", team.name), Some(org_id), "Teams", flash);
            v.page(status, shell, blocks)
        }
        Err(problem) => v.problem(Some(org_id), &problem),
    }
}

pub async fn team(
    State(svc): State<Services>,
    v: Viewer,
    Path((org_id, team_id)): Path<(Uuid, Uuid)>,
    Query(q): Query<PageQuery>,
) -> Response {
    team_page(
        &svc,
        &v,
        org_id,
        team_id,
        flash(q.done.as_deref()),
        None,
        None,
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Deserialize, Default)]
pub struct KeysQuery {
    q: Option<String>,
    status: Option<String>,
    team: Option<String>,
    cursor: Option<Uuid>,
    done: Option<String>,
}

async fn keys_page(
    svc: &Services,
    v: &Viewer,
    org_id: Uuid,
    q: &KeysQuery,
    submitted: Option<&Submitted>,
    status: StatusCode,
) -> Response {
    let built = async {
        let org = orgs::require_read(&svc.pool, &v.principal, org_id).await?;
        let teams = all_teams(svc, v, org_id).await?;
        let filter = KeyFilter {
            team_id: q.team.as_deref().and_then(|t| t.parse().ok()),
            project_id: None,
            status: q.status.clone().filter(|s| !s.is_empty()),
        };
        let page = keys::list(svc, &v.principal, org_id, &filter, q.cursor, 50).await?;
        let search = q.q.as_deref().unwrap_or_default().trim().to_lowercase();
        let shown: Vec<Key> = page
            .items
            .into_iter()
            .filter(|k| {
                search.is_empty()
                    || k.name.to_lowercase().contains(&search)
                    || k.display_prefix.to_lowercase().contains(&search)
            })
            .collect();
        let mut team_options = vec![(String::new(), "every team".to_owned())];
        team_options.extend(teams.iter().map(|t| (t.id.to_string(), t.name.clone())));
        let mut blocks = vec![Block::Filters(Filters {
            id: "key-filters".into(),
            action: format!("/orgs/{org_id}/keys"),
            fields: vec![
                Field::text("Search name or prefix", "q").value(q.q.clone().unwrap_or_default()),
                Field::select(
                    "Status",
                    "status",
                    vec![
                        (String::new(), "any".into()),
                        ("active".into(), "active".into()),
                        ("revoked".into(), "revoked".into()),
                    ],
                )
                .value(q.status.clone().unwrap_or_default()),
                Field::select("Team", "team", team_options)
                    .value(q.team.clone().unwrap_or_default()),
            ],
        })];
        blocks.push(Block::Table(key_table(
            v,
            org_id,
            &shown,
            &teams,
            "No keys match.",
        )));
        let next = page.next_cursor.map(|c| {
            format!(
                "/orgs/{org_id}/keys?cursor={c}&q={}&status={}&team={}",
                q.q.as_deref().unwrap_or_default(),
                q.status.as_deref().unwrap_or_default(),
                q.team.as_deref().unwrap_or_default()
            )
        });
        blocks.push(Block::Pager {
            prev: q.cursor.map(|_| format!("/orgs/{org_id}/keys")),
            next,
        });
        let mintable: Vec<Team> = teams
            .iter()
            .filter(|t| {
                v.principal.allows(Permission::MintKey {
                    org: org_id,
                    team: t.id,
                })
            })
            .cloned()
            .collect();
        if !mintable.is_empty() {
            blocks.push(Block::Heading("New key".into()));
            blocks.push(Block::Form(key_form(v, org_id, &mintable, None, submitted)));
        }
        Ok::<_, Problem>((org, blocks))
    }
    .await;
    match built {
        Ok((org, blocks)) => {
            let shell = v.shell(
                &format!("Keys · {}", org.name),
                Some(org_id),
                "Keys",
                flash(q.done.as_deref()),
            );
            v.page(status, shell, blocks)
        }
        Err(problem) => v.problem(Some(org_id), &problem),
    }
}

pub async fn keys(
    State(svc): State<Services>,
    v: Viewer,
    Path(org_id): Path<Uuid>,
    Query(q): Query<KeysQuery>,
) -> Response {
    keys_page(&svc, &v, org_id, &q, None, StatusCode::OK).await
}

fn expiry(text: &str) -> Result<Option<OffsetDateTime>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(at) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(Some(at));
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, &format)
        .map(|d| Some(d.with_time(Time::MIDNIGHT).assume_utc()))
        .map_err(|_| "a date (YYYY-MM-DD) or an RFC 3339 time".to_owned())
}

/// The one page that shows a key's secret: straight from the create or rotate answer,
/// never stored, never in a URL.
fn secret_page(
    v: &Viewer,
    org_id: Uuid,
    created: &crate::service::keys::CreatedKey,
    title: &str,
) -> Response {
    let mut blocks = Vec::new();
    if let Some(secret) = &created.key {
        blocks.push(Block::Secret {
            id: "new-key".into(),
            label: format!(
                "Key {} ({})",
                created.info.name, created.info.display_prefix
            ),
            value: secret.clone(),
            warning: "Copy it now: this is the only time it is shown. Tollgate keeps only a hash."
                .into(),
        });
    }
    blocks.push(Block::Links(vec![
        (
            "Key details".into(),
            format!("/orgs/{org_id}/keys/{}", created.info.id),
        ),
        ("All keys".into(), format!("/orgs/{org_id}/keys")),
    ]));
    let shell = v.shell(title, Some(org_id), "Keys", None);
    let mut response = v.page(StatusCode::CREATED, shell, blocks);
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

pub async fn create_key(
    State(svc): State<Services>,
    Path(org_id): Path<Uuid>,
    posted: Posted,
) -> Response {
    let v = &posted.viewer;
    let back = posted.fields.opt("back").map(str::to_owned);
    let mut errors = Vec::new();
    let team_id = posted.fields.get("team_id").parse::<Uuid>();
    if team_id.is_err() {
        errors.push(("team_id".to_owned(), "choose a team".to_owned()));
    }
    let expires_at = expiry(posted.fields.get("expires_at")).unwrap_or_else(|e| {
        errors.push(("expires_at".to_owned(), e));
        None
    });
    let result = match team_id {
        Ok(team_id) if errors.is_empty() => {
            let new = NewKey {
                team_id,
                project_id: None,
                name: posted.fields.get("name").to_owned(),
                allowed_models: list_field(posted.fields.get("allowed_models")),
                expires_at,
            };
            async {
                let mut tx = svc.pool.begin().await.map_err(Problem::from)?;
                let created = keys::create(&svc, &mut tx, &v.principal, org_id, &new).await?;
                tx.commit().await.map_err(Problem::from)?;
                Ok::<_, Problem>(created)
            }
            .await
        }
        _ => Err(Problem::invalid(Vec::new())),
    };
    match result {
        Ok(created) => secret_page(v, org_id, &created, "Key created"),
        Err(problem) if fixable(&problem) => {
            let mut submitted = with_values(refused(&problem), &posted);
            submitted
                .errors
                .retain(|(f, m)| !(f.is_empty() && m == "some fields are invalid"));
            submitted.errors.extend(errors);
            match back
                .as_deref()
                .and_then(|b| b.rsplit_once("/teams/"))
                .and_then(|(_, t)| t.parse::<Uuid>().ok())
            {
                Some(team) => {
                    team_page(
                        &svc,
                        v,
                        org_id,
                        team,
                        None,
                        Some(&submitted),
                        None,
                        problem.status,
                    )
                    .await
                }
                None => {
                    keys_page(
                        &svc,
                        v,
                        org_id,
                        &KeysQuery::default(),
                        Some(&submitted),
                        problem.status,
                    )
                    .await
                }
            }
        }
        Err(problem) => v.problem(Some(org_id), &problem),
    }
}

pub async fn key(
    State(svc): State<Services>,
    v: Viewer,
    Path((org_id, key_id)): Path<(Uuid, Uuid)>,
    Query(q): Query<PageQuery>,
) -> Response {
    let built = async {
        let key = keys::get(&svc, &v.principal, org_id, key_id).await?;
        let rows = service::usage::rows(
            &svc,
            &v.principal,
            &usage_query(org_id, GroupBy::Key, month_start() - Duration::days(30)),
        )
        .await?;
        let mine: Vec<&UsageRow> = rows
            .iter()
            .filter(|r| r.group.as_deref() == Some(key.public_id.as_str()))
            .collect();
        let calls: i64 = mine.iter().map(|r| r.requests).sum();
        let cost: i64 = mine.iter().map(|r| r.cost_micros).sum();
        let mut blocks = vec![
            Block::Table(Table {
                id: "key".into(),
                caption: "Key".into(),
                columns: vec!["Field".into(), "Value".into()],
                rows: vec![
                    vec![
                        Cell::text("Prefix"),
                        Cell::Code(format!("{}…", key.display_prefix)),
                    ],
                    vec![Cell::text("Status"), Cell::text(&key.status)],
                    vec![
                        Cell::text("Allowed models"),
                        Cell::text(
                            key.allowed_models
                                .as_ref()
                                .map(|l| l.join(", "))
                                .unwrap_or_else(|| "as its team".into()),
                        ),
                    ],
                    vec![
                        Cell::text("Expires"),
                        Cell::text(key.expires_at.map(when).unwrap_or_else(|| "never".into())),
                    ],
                    vec![
                        Cell::text("Grace until"),
                        Cell::text(key.grace_until.map(when).unwrap_or_else(|| "—".into())),
                    ],
                    vec![Cell::text("Created"), Cell::text(when(key.created_at))],
                ],
                empty: String::new(),
            }),
            Block::Cards(vec![
                ("calls (since last month)".into(), calls.to_string()),
                ("spent (since last month)".into(), usd(cost)),
            ]),
        ];
        if !mine.is_empty() {
            blocks.push(Block::Chart {
                caption: "Spend per day of this key".into(),
                bars: mine
                    .iter()
                    .map(|r| Bar {
                        label: day(r.bucket),
                        value: r.cost_micros as f64,
                        tip: format!("{} on {}", usd(r.cost_micros), day(r.bucket)),
                    })
                    .collect(),
            });
        } else {
            blocks.push(Block::Empty("No calls with this key yet.".into()));
        }
        if key.status == "active"
            && keys::require_manage(&v.principal, org_id, key.team_id, key.owner_user_id).is_ok()
        {
            blocks.push(Block::Heading("Rotate".into()));
            blocks.push(Block::Form(
                Form::new(
                    "rotate",
                    format!("/orgs/{org_id}/keys/{key_id}/rotate"),
                    &v.csrf,
                    "Rotate key",
                )
                .field(
                    Field::number("Old key keeps working for (hours)", "grace_hours")
                        .value("24")
                        .hint("0–720"),
                ),
            ));
            blocks.push(Block::Heading("Revoke".into()));
            blocks.push(Block::Form(
                Form::new(
                    "revoke",
                    format!("/orgs/{org_id}/keys/{key_id}/revoke"),
                    &v.csrf,
                    "Revoke key",
                )
                .confirm(format!(
                    "Revoke key {}? Calls with it will be refused.",
                    key.name
                )),
            ));
        }
        Ok::<_, Problem>((key, blocks))
    }
    .await;
    match built {
        Ok((key, blocks)) => {
            let shell = v.shell(
                &format!("Key {}", key.name),
                Some(org_id),
                "Keys",
                flash(q.done.as_deref()),
            );
            v.page(StatusCode::OK, shell, blocks)
        }
        Err(problem) => v.problem(Some(org_id), &problem),
    }
}

pub async fn revoke_key(
    State(svc): State<Services>,
    Path((org_id, key_id)): Path<(Uuid, Uuid)>,
    posted: Posted,
) -> Response {
    let v = &posted.viewer;
    match keys::revoke(&svc, &v.principal, org_id, key_id).await {
        Ok(_) => {
            Redirect::to(&format!("/orgs/{org_id}/keys/{key_id}?done=revoked")).into_response()
        }
        Err(problem) => v.problem(Some(org_id), &problem),
    }
}

pub async fn rotate_key(
    State(svc): State<Services>,
    Path((org_id, key_id)): Path<(Uuid, Uuid)>,
    posted: Posted,
) -> Response {
    let v = &posted.viewer;
    let grace = match posted.fields.opt("grace_hours").map(str::parse::<i64>) {
        None => Some(86_400),
        Some(Ok(hours)) => hours.checked_mul(3600),
        Some(Err(_)) => None,
    };
    let Some(grace) = grace else {
        let problem = Problem::invalid(vec![crate::service::FieldError {
            field: "grace_hours".into(),
            message: "whole hours, 0–720".into(),
        }]);
        return v.problem(Some(org_id), &problem);
    };
    match keys::rotate(&svc, &v.principal, org_id, key_id, Some(grace)).await {
        Ok(created) => secret_page(v, org_id, &created, "Key rotated"),
        Err(problem) => v.problem(Some(org_id), &problem),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct UsageParams {
    group: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

pub async fn usage(
    State(svc): State<Services>,
    v: Viewer,
    Path(org_id): Path<Uuid>,
    Query(p): Query<UsageParams>,
) -> Response {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let today = OffsetDateTime::now_utc().date();
    let mut errors = Vec::new();
    let mut date =
        |name: &str, text: Option<&str>, default: Date| match text.filter(|t| !t.is_empty()) {
            None => default,
            Some(t) => Date::parse(t, &format).unwrap_or_else(|_| {
                errors.push(format!("{name}: a date as YYYY-MM-DD"));
                default
            }),
        };
    let from = date("from", p.from.as_deref(), today - Duration::days(30));
    let to = date("to", p.to.as_deref(), today);
    let group = match p.group.as_deref().unwrap_or("") {
        "team" => GroupBy::Team,
        "project" => GroupBy::Project,
        "key" => GroupBy::Key,
        "model" => GroupBy::Model,
        _ => GroupBy::None,
    };
    let query = UsageQuery {
        org_id,
        interval: Interval::Day,
        group_by: group,
        from: from.with_time(Time::MIDNIGHT).assume_utc(),
        to: (to + Duration::days(1))
            .with_time(Time::MIDNIGHT)
            .assume_utc(),
        after: None,
        limit: 1000,
    };
    let built = async {
        let org = orgs::require_read(&svc.pool, &v.principal, org_id).await?;
        let rows = service::usage::rows(&svc, &v.principal, &query).await?;
        let mut per_day: Vec<(OffsetDateTime, i64)> = Vec::new();
        for r in &rows {
            match per_day.iter_mut().find(|(d, _)| *d == r.bucket) {
                Some(entry) => entry.1 = entry.1.saturating_add(r.cost_micros),
                None => per_day.push((r.bucket, r.cost_micros)),
            }
        }
        let group_name = p.group.clone().unwrap_or_default();
        let mut blocks = vec![Block::Filters(Filters {
            id: "usage-filters".into(),
            action: format!("/orgs/{org_id}/usage"),
            fields: vec![
                Field::select(
                    "Group by",
                    "group",
                    [
                        ("", "nothing"),
                        ("team", "team"),
                        ("project", "project"),
                        ("key", "key"),
                        ("model", "model"),
                    ]
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .to_vec(),
                )
                .value(group_name.clone()),
                Field {
                    input: tollgate_web_ui::Input::DateTime,
                    ..Field::text("From", "from").value(from.to_string())
                },
                Field {
                    input: tollgate_web_ui::Input::DateTime,
                    ..Field::text("To", "to").value(to.to_string())
                },
            ],
        })];
        for e in &errors {
            blocks.push(Block::Text(e.clone()));
        }
        if per_day.is_empty() {
            blocks.push(Block::Empty("No usage in this range.".into()));
        } else {
            blocks.push(Block::Chart {
                caption: "Spend per day".into(),
                bars: per_day
                    .iter()
                    .map(|(d, c)| Bar {
                        label: day(*d),
                        value: *c as f64,
                        tip: format!("{} on {}", usd(*c), day(*d)),
                    })
                    .collect(),
            });
        }
        blocks.push(Block::Table(Table {
            id: "usage".into(),
            caption: "Usage per day".into(),
            columns: [
                "Day",
                "Group",
                "#Calls",
                "#Errors",
                "#Prompt tokens",
                "#Completion tokens",
                "#Spent",
            ]
            .map(String::from)
            .to_vec(),
            rows: rows
                .iter()
                .map(|r| {
                    vec![
                        Cell::text(day(r.bucket)),
                        Cell::text(r.group.clone().unwrap_or_else(|| "—".into())),
                        Cell::num(r.requests.to_string()),
                        Cell::num(r.errors.to_string()),
                        Cell::num(r.prompt_tokens.to_string()),
                        Cell::num(r.completion_tokens.to_string()),
                        Cell::num(usd(r.cost_micros)),
                    ]
                })
                .collect(),
            empty: String::new(),
        }));
        let csv = format!(
            "/api/v1/usage?org_id={org_id}&interval=day&format=csv&from={}&to={}{}",
            query
                .from
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            query
                .to
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            if group_name.is_empty() {
                String::new()
            } else {
                format!("&group_by={group_name}")
            }
        );
        blocks.push(Block::Links(vec![(
            "Download CSV (the same data as GET /api/v1/usage)".into(),
            csv,
        )]));
        Ok::<_, Problem>((org, blocks))
    }
    .await;
    match built {
        Ok((org, blocks)) => {
            let shell = v.shell(
                &format!("Usage · {}", org.name),
                Some(org_id),
                "Usage",
                None,
            );
            v.page(StatusCode::OK, shell, blocks)
        }
        Err(problem) => v.problem(Some(org_id), &problem),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct AuditParams {
    action: Option<String>,
    object_type: Option<String>,
    before_id: Option<i64>,
}

/// What changed between an entry's before and after, field by field.
fn changes(before: Option<&serde_json::Value>, after: Option<&serde_json::Value>) -> String {
    let empty = serde_json::Map::new();
    let b = before.and_then(|v| v.as_object()).unwrap_or(&empty);
    let a = after.and_then(|v| v.as_object()).unwrap_or(&empty);
    let show = |v: Option<&serde_json::Value>| match v {
        None => "—".to_owned(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let mut out = Vec::new();
    let mut names: Vec<&String> = b.keys().chain(a.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        if matches!(name.as_str(), "updated_at" | "created_at") {
            continue;
        }
        let (x, y) = (b.get(name), a.get(name));
        if x != y {
            if before.is_none() {
                out.push(format!("{name}: {}", show(y)));
            } else {
                out.push(format!("{name}: {} → {}", show(x), show(y)));
            }
        }
    }
    out.join("; ")
}

pub async fn audit(
    State(svc): State<Services>,
    v: Viewer,
    Path(org_id): Path<Uuid>,
    Query(p): Query<AuditParams>,
) -> Response {
    let filter = AuditFilter {
        org_id: Some(org_id),
        action: p.action.clone().filter(|s| !s.is_empty()),
        object_type: p.object_type.clone().filter(|s| !s.is_empty()),
        before_id: p.before_id,
    };
    let built = async {
        let org = orgs::require_read(&svc.pool, &v.principal, org_id).await?;
        let entries = service::audit::list(&svc, &v.principal, &filter, 50).await?;
        let next = (entries.len() == 50)
            .then(|| entries.last().map(|e| e.id))
            .flatten()
            .map(|id| {
                format!(
                    "/orgs/{org_id}/audit?before_id={id}&action={}&object_type={}",
                    p.action.as_deref().unwrap_or_default(),
                    p.object_type.as_deref().unwrap_or_default()
                )
            });
        let blocks = vec![
            Block::Filters(Filters {
                id: "audit-filters".into(),
                action: format!("/orgs/{org_id}/audit"),
                fields: vec![
                    Field::select(
                        "Action",
                        "action",
                        ["", "create", "update", "delete"]
                            .map(|a| {
                                (
                                    a.to_owned(),
                                    if a.is_empty() {
                                        "any".to_owned()
                                    } else {
                                        a.to_owned()
                                    },
                                )
                            })
                            .to_vec(),
                    )
                    .value(p.action.clone().unwrap_or_default()),
                    Field::text("Object type", "object_type")
                        .value(p.object_type.clone().unwrap_or_default()),
                ],
            }),
            Block::Table(Table {
                id: "audit".into(),
                caption: "Audit log, newest first (secrets are never recorded)".into(),
                columns: ["When", "Who", "Action", "Object", "Change"]
                    .map(String::from)
                    .to_vec(),
                rows: entries
                    .iter()
                    .map(|e| {
                        vec![
                            Cell::text(when(e.at)),
                            Cell::text(&e.actor),
                            Cell::text(&e.action),
                            Cell::text(format!("{} {}", e.object_type, e.object_id)),
                            Cell::text(changes(e.before.as_ref(), e.after.as_ref())),
                        ]
                    })
                    .collect(),
                empty: "Nothing recorded yet.".into(),
            }),
            Block::Pager {
                prev: p.before_id.map(|_| format!("/orgs/{org_id}/audit")),
                next,
            },
        ];
        Ok::<_, Problem>((org, blocks))
    }
    .await;
    match built {
        Ok((org, blocks)) => {
            let shell = v.shell(
                &format!("Audit log · {}", org.name),
                Some(org_id),
                "Audit log",
                None,
            );
            v.page(StatusCode::OK, shell, blocks)
        }
        Err(problem) => v.problem(Some(org_id), &problem),
    }
}

pub async fn account(State(svc): State<Services>, v: Viewer) -> Response {
    let built = async {
        let sessions = service::account::sessions(&svc, &v.principal).await?;
        let tokens = service::account::tokens(&svc, &v.principal).await?;
        Ok::<_, Problem>((sessions, tokens))
    }
    .await;
    let (sessions, tokens) = match built {
        Ok(x) => x,
        Err(problem) => return v.problem(None, &problem),
    };
    let this = v.principal.session_id;
    let blocks = vec![
        Block::Table(Table {
            id: "roles".into(),
            caption: "Roles".into(),
            columns: ["Role", "Org", "Team"].map(String::from).to_vec(),
            rows: v
                .principal
                .memberships
                .iter()
                .map(|m| {
                    vec![
                        Cell::text(&m.role),
                        Cell::link(m.org_id.to_string(), format!("/?org={}", m.org_id)),
                        Cell::text(
                            m.team_id
                                .map(|t| t.to_string())
                                .unwrap_or_else(|| "whole org".into()),
                        ),
                    ]
                })
                .collect(),
            empty: if v.principal.platform_admin {
                "Platform admin: every org.".into()
            } else {
                "No role in any org yet — ask an admin to add you.".into()
            },
        }),
        Block::Table(Table {
            id: "sessions".into(),
            caption: "Sessions".into(),
            columns: ["Session", "From", "Since", "Last seen"]
                .map(String::from)
                .to_vec(),
            rows: sessions
                .iter()
                .map(|s| {
                    vec![
                        Cell::text(format!(
                            "{}{}",
                            s.id,
                            if Some(s.id) == this {
                                " (this one)"
                            } else {
                                ""
                            }
                        )),
                        Cell::text(&s.source_ip),
                        Cell::text(when(s.created_at)),
                        Cell::text(when(s.last_seen_at)),
                    ]
                })
                .collect(),
            empty: String::new(),
        }),
        Block::Table(Table {
            id: "tokens".into(),
            caption: "Personal API tokens".into(),
            columns: ["Name", "Prefix", "Expires"].map(String::from).to_vec(),
            rows: tokens
                .iter()
                .map(|t| {
                    vec![
                        Cell::text(&t.name),
                        Cell::Code(format!("{}…", t.prefix)),
                        Cell::text(when(t.expires_at)),
                    ]
                })
                .collect(),
            empty: "No personal tokens. Mint one with POST /api/v1/tokens from this session."
                .into(),
        }),
        Block::Heading("API calls from a script of this session".into()),
        Block::Csrf(v.csrf.clone()),
    ];
    let shell = v.shell("Account", None, "Account", None);
    v.page(StatusCode::OK, shell, blocks)
}

#[cfg(test)]
mod tests {
    use super::{changes, micros, usd};

    #[test]
    fn dollars_round_trip_through_micros() {
        assert_eq!(micros("50"), Some(50_000_000));
        assert_eq!(micros("$0.001"), Some(1_000));
        assert_eq!(micros(".5"), Some(500_000));
        assert_eq!(micros("1.0000001"), None);
        assert_eq!(micros("-3"), None);
        assert_eq!(micros("abc"), None);
        assert_eq!(micros(""), None);
        assert_eq!(usd(1_000), "$0.001");
        assert_eq!(usd(50_000_000), "$50.00");
        assert_eq!(usd(41), "$0.000041");
    }

    #[test]
    fn an_audit_change_names_each_changed_field() {
        let before = serde_json::json!({"status": "active", "name": "k", "updated_at": "a"});
        let after = serde_json::json!({"status": "revoked", "name": "k", "updated_at": "b"});
        assert_eq!(
            changes(Some(&before), Some(&after)),
            "status: active → revoked"
        );
        assert_eq!(changes(None, Some(&after)), "name: k; status: revoked");
    }
}
