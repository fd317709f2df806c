//! Step 4: price the worst case and reserve it in every budget that applies.
//!
//! Worst case = prompt tokens (every billed input part, the provider family's safety
//! factor; counted first by the cheap bound of [`Counting::Bound`], by the real tokenizer
//! only where the bound would refuse or clamp) × input price (or the cache-write price, when higher) + output
//! ceiling × answers billed (`n`, `best_of`) × output price, at the most expensive
//! deployment of the model — routing may fall back to any of them, and the reservation
//! must cover whichever serves the call. A call the model cannot take as asked (an
//! endpoint it does not serve, `max_tokens` above its limit, a prompt past its context
//! window, too many answers) is an [`EstimateError`]: a 400 before anything is reserved.

use time::{Duration as TimeDuration, OffsetDateTime, Time};

use super::authenticate::Caller;
use super::authorize::Grant;
use crate::ledger::{BudgetLine, Ledger, Ledgers, Reservation, ReserveError, ReserveRequest};
use crate::money::{self, Micros, Prices};
use crate::providers::{Endpoint, Fault, JsonRequest};
use crate::snapshot::{Budget, ClampPolicy, Model, Period, ScopeKind, Snapshot};
use crate::tokenize::{Counting, Family, Prompt};

/// The worst case of one call, in tokens and money.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Prompt tokens, with the provider family's safety factor applied.
    pub prompt_tokens: u64,
    /// The output ceiling of one answer (what goes upstream as `max_tokens`).
    pub max_output_tokens: u64,
    /// Answers the provider bills: `n`, or for legacy completions max(`n`, `best_of`).
    pub choices: u64,
    pub amount: Micros,
    /// How the prompt was counted: the bound is never below the tokenizer's count.
    pub counting: Counting,
}

impl Estimate {
    /// Output tokens billed at most: every answer at its ceiling.
    pub fn output_tokens(&self) -> u64 {
        self.max_output_tokens.saturating_mul(self.choices)
    }

    /// Tokens the call may use, for the TPM limit.
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.output_tokens())
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

/// A call the model cannot take as asked: refused with 400 before anything is limited,
/// reserved or sent. Always [`Fault::Client`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EstimateError {
    #[error(
        "{param} is too large: {requested}. This model supports at most {limit} completion tokens, whereas you provided {requested}."
    )]
    OutputTooLarge {
        param: &'static str,
        requested: u64,
        limit: u32,
    },
    #[error(
        "This model's maximum context length is {limit} tokens. However, your {what} resulted in {prompt} tokens. Please reduce the length of the {what}."
    )]
    ContextTooLong {
        param: &'static str,
        what: &'static str,
        limit: u32,
        prompt: u64,
    },
    #[error("{model} does not serve {path}; it serves {serves}.")]
    Endpoint {
        model: String,
        path: &'static str,
        serves: String,
    },
    #[error("{param} must be an integer between 1 and {max}, got {got}.")]
    Choices {
        param: &'static str,
        got: String,
        max: u32,
    },
    #[error("best_of must be greater than or equal to n.")]
    BestOfBelowN,
    #[error(
        "{model} allows at most {limit} answer{} per call, whereas you asked for {requested} ({param}).",
        if *.limit == 1 { "" } else { "s" }
    )]
    ChoicesNotAllowed {
        model: String,
        param: &'static str,
        requested: u64,
        limit: u32,
    },
}

impl EstimateError {
    pub fn fault(&self) -> Fault {
        Fault::Client
    }

    /// The request field at fault, for OpenAI's `param`.
    pub fn param(&self) -> &'static str {
        match self {
            Self::OutputTooLarge { param, .. }
            | Self::ContextTooLong { param, .. }
            | Self::Choices { param, .. }
            | Self::ChoicesNotAllowed { param, .. } => param,
            Self::Endpoint { .. } => "model",
            Self::BestOfBelowN => "best_of",
        }
    }

    /// OpenAI's `code` where it has one for the case.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::ContextTooLong { .. } => Some("context_length_exceeded"),
            Self::OutputTooLarge { .. } | Self::ChoicesNotAllowed { .. } => Some("invalid_value"),
            Self::Endpoint { .. } => Some("unsupported_endpoint"),
            Self::Choices { .. } | Self::BestOfBelowN => None,
        }
    }
}

/// The most the call can cost, or why the model cannot take it: the endpoint must be one
/// the model serves, `max_tokens` within its output limit, the prompt within its context
/// window, and `n`/`best_of` within 1..=its `max_n`. Several answers multiply the output
/// part (and the token count); the prompt is billed once.
///
/// The prompt is counted by its bound; only a bound past the context window is counted
/// again by the tokenizer, which decides.
pub fn estimate(
    model: &Model,
    req: &JsonRequest,
    endpoint: Endpoint,
) -> Result<Estimate, EstimateError> {
    estimate_counted(model, req, endpoint, Counting::Bound)
}

/// [`estimate`], counting the prompt as `counting` says.
pub fn estimate_counted(
    model: &Model,
    req: &JsonRequest,
    endpoint: Endpoint,
    counting: Counting,
) -> Result<Estimate, EstimateError> {
    check_endpoint(model, endpoint)?;
    let choices = choices(model, req, endpoint)?;
    let (param, what) = match endpoint {
        Endpoint::Chat | Endpoint::Messages => ("messages", "messages"),
        Endpoint::Completions => ("prompt", "prompt"),
        Endpoint::Embeddings => ("input", "input"),
        Endpoint::Responses => ("input", "input"),
    };
    let mut prompt = read_prompt(model, req, endpoint, counting);
    if let Some(limit) = model.context_window {
        let limit_tokens = u64::from(limit);
        let mut counted = prompt.text + prompt.image_tokens(&model.image_rules);
        if counted > limit_tokens && prompt.counting == Counting::Bound {
            prompt = read_prompt(model, req, endpoint, Counting::Exact);
            counted = prompt.text + prompt.image_tokens(&model.image_rules);
        }
        if counted > limit_tokens {
            return Err(EstimateError::ContextTooLong {
                param,
                what,
                limit,
                prompt: counted,
            });
        }
    }
    let prompt_tokens = prompt_tokens(model, &prompt);
    let max_output_tokens = match endpoint {
        Endpoint::Embeddings => 0,
        _ => output_ceiling(model, req)?,
    };
    let mut estimate = Estimate {
        prompt_tokens,
        max_output_tokens,
        choices,
        amount: Micros::ZERO,
        counting: prompt.counting,
    };
    estimate.amount = money::worst_case(
        prompt_tokens,
        estimate.output_tokens(),
        &max_prices(model, prompt_tokens),
    );
    Ok(estimate)
}

fn read_prompt(model: &Model, req: &JsonRequest, endpoint: Endpoint, counting: Counting) -> Prompt {
    let encoding = model.encoding;
    match endpoint {
        Endpoint::Chat => encoding.chat_prompt(&req.body, counting),
        Endpoint::Completions => encoding.completion_prompt(&req.body, counting),
        Endpoint::Embeddings => encoding.embedding_prompt(&req.body, counting),
        // The lanes are counted as the chat request they amount to.
        Endpoint::Messages | Endpoint::Responses => {
            encoding.chat_prompt(&crate::lanes::prompt_view(req, endpoint), counting)
        }
    }
}

/// The prompt as the model's deployments count it at most: text by the family that
/// counts the most, images by the costliest rule. (The two maxima may come from
/// different deployments of a mixed model: more than any one bills, still a bound.)
fn prompt_tokens(model: &Model, prompt: &Prompt) -> u64 {
    let text = if model.families.is_empty() {
        prompt.text_tokens(Family::OpenAi)
    } else {
        let text = model.families.iter().map(|f| prompt.text_tokens(*f));
        text.max().unwrap_or(0)
    };
    text + prompt.image_tokens(&model.image_rules)
}

fn check_endpoint(model: &Model, endpoint: Endpoint) -> Result<(), EstimateError> {
    let modes = model.modes;
    let serves = match endpoint {
        // The lanes are chat by another name.
        Endpoint::Chat | Endpoint::Messages | Endpoint::Responses => modes.chat,
        Endpoint::Completions => modes.completions,
        Endpoint::Embeddings => modes.embeddings,
    };
    if serves {
        return Ok(());
    }
    let served: Vec<&str> = [
        (modes.chat, Endpoint::Chat),
        (modes.completions, Endpoint::Completions),
        (modes.embeddings, Endpoint::Embeddings),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, e)| e.path())
    .collect();
    Err(EstimateError::Endpoint {
        model: model.name.clone(),
        path: endpoint.path(),
        serves: served.join(" and "),
    })
}

/// The client's `max_completion_tokens`/`max_tokens`, refused above the model's limit;
/// else the model's default.
fn output_ceiling(model: &Model, req: &JsonRequest) -> Result<u64, EstimateError> {
    let Some(requested) = req.max_output_tokens() else {
        return Ok(u64::from(model.default_max_output_tokens));
    };
    match model.max_output_tokens {
        Some(limit) if requested > u64::from(limit) => Err(EstimateError::OutputTooLarge {
            param: ["max_completion_tokens", "max_tokens", "max_output_tokens"]
                .into_iter()
                .find(|field| req.body.get(*field).is_some_and(|v| !v.is_null()))
                .unwrap_or("max_tokens"),
            requested,
            limit,
        }),
        _ => Ok(requested),
    }
}

/// Answers billed: `n` (chat, completions) and `best_of` (completions, which bills
/// max(n, best_of) answers though it returns n), each an integer in 1..=the model's
/// `max_n`. Embeddings have no such field.
fn choices(model: &Model, req: &JsonRequest, endpoint: Endpoint) -> Result<u64, EstimateError> {
    let fields: &[&'static str] = match endpoint {
        Endpoint::Chat => &["n"],
        Endpoint::Completions => &["n", "best_of"],
        // One answer per call, by the lanes' definition.
        Endpoint::Embeddings | Endpoint::Messages | Endpoint::Responses => return Ok(1),
    };
    let mut values = [1u64; 2];
    for (slot, field) in values.iter_mut().zip(fields) {
        let Some(value) = req.body.get(*field).filter(|v| !v.is_null()) else {
            continue;
        };
        let n = value
            .as_u64()
            .filter(|n| (1..=u64::from(crate::snapshot::MAX_N)).contains(n))
            .ok_or_else(|| EstimateError::Choices {
                param: field,
                got: value.to_string(),
                max: crate::snapshot::MAX_N,
            })?;
        if n > u64::from(model.max_n) {
            return Err(EstimateError::ChoicesNotAllowed {
                model: model.name.clone(),
                param: field,
                requested: n,
                limit: model.max_n,
            });
        }
        *slot = n;
    }
    let [n, best_of] = values;
    if endpoint == Endpoint::Completions
        && req.body.get("best_of").is_some_and(|v| !v.is_null())
        && best_of < n
    {
        return Err(EstimateError::BestOfBelowN);
    }
    Ok(n.max(best_of))
}

/// Per-field maximum over the model's deployments of the rates a prompt estimated at
/// `prompt_tokens` is reserved at (each deployment's tier for it, [`Prices::reserved_at`]).
pub fn max_prices(model: &Model, prompt_tokens: u64) -> Prices {
    model.deployments.iter().fold(Prices::default(), |acc, d| {
        acc.max_with(&d.prices.reserved_at(prompt_tokens))
    })
}

/// A refusal names the budget as its owner knows it ("team search: $0.41 left this
/// month"), never by id.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BudgetError {
    #[error("{scope}: {remaining} left {period}, the call may cost up to {needed}")]
    Insufficient {
        scope: String,
        period: &'static str,
        remaining: Micros,
        needed: Micros,
    },
    #[error(transparent)]
    Ledger(ReserveError),
}

/// What a budget is called in a refusal: its scope's kind and name, and its period.
fn budget_label(b: &Budget, caller: &Caller<'_>) -> (String, &'static str) {
    // A name where the scope has one, else its id (a standalone config may name none).
    let named = |name: &str, id: &str| {
        if name.is_empty() {
            id.to_owned()
        } else {
            name.to_owned()
        }
    };
    let scope = match b.scope {
        ScopeKind::Key => format!(
            "key {}",
            named(&caller.key.name, &caller.key.display_prefix)
        ),
        ScopeKind::Project => format!(
            "project {}",
            caller
                .project
                .map_or(b.scope_id.clone(), |p| named(&p.name, &p.id))
        ),
        ScopeKind::Team => format!("team {}", named(&caller.team.name, &caller.team.id)),
        ScopeKind::Org => format!("org {}", named(&caller.org.name, &caller.org.id)),
    };
    let period = match b.period {
        Period::Day => "today",
        Period::Week => "this week",
        Period::Month => "this month",
        Period::Total => "in total",
    };
    (scope, period)
}

/// Every budget on the caller's key, project, team and org, in the period `now` is in.
pub fn budget_lines(
    snapshot: &Snapshot,
    caller: &Caller<'_>,
    now: OffsetDateTime,
) -> Vec<BudgetLine> {
    let mut lines = Vec::new();
    for (kind, id) in scopes(caller) {
        let Some(budgets) = snapshot.budgets.get(&(kind, id.to_owned())) else {
            continue;
        };
        lines.extend(budgets.iter().map(|b| line(b, now)));
    }
    lines
}

/// The scopes a caller's budgets may hang on.
fn scopes<'c>(caller: &'c Caller<'_>) -> Vec<(ScopeKind, &'c str)> {
    let mut scopes = vec![
        (ScopeKind::Key, caller.key.public_id.as_str()),
        (ScopeKind::Team, caller.team.id.as_str()),
        (ScopeKind::Org, caller.org.id.as_str()),
    ];
    if let Some(project) = caller.project {
        scopes.push((ScopeKind::Project, project.id.as_str()));
    }
    scopes
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
///
/// A worst case priced on the prompt's bound that a budget would refuse or clamp is
/// priced again on the tokenizer's count (the bound's clamped reservation released
/// first), so that the bound never refuses or shortens a call the real count lets
/// through.
pub fn reserve<'a>(
    ledger: &'a Ledgers,
    snapshot: &Snapshot,
    caller: &Caller<'_>,
    grant: &Grant,
    req: &'a JsonRequest,
    endpoint: Endpoint,
    deadline_ms: i64,
) -> impl Future<Output = Result<Hold, BudgetError>> + Send + use<'a> {
    // Everything borrowed from the snapshot is read before the first await, so the
    // future holds only owned data, the ledger and the request.
    let lines = budget_lines(snapshot, caller, OffsetDateTime::now_utc());
    let labels: Vec<(String, String, &'static str)> = scopes(caller)
        .into_iter()
        .filter_map(|(kind, id)| snapshot.budgets.get(&(kind, id.to_owned())))
        .flatten()
        .map(|b| {
            let (scope, period) = budget_label(b, caller);
            (b.id.clone(), scope, period)
        })
        .collect();
    let mut grant = grant.clone();
    // Kept for a second attempt only when there can be one.
    let retry_lines =
        (grant.estimate.counting == Counting::Bound && !lines.is_empty()).then(|| lines.clone());
    async move {
        // The long-context tier follows the prompt's count, so a recount re-prices.
        let prices = max_prices(&grant.model, grant.estimate.prompt_tokens);
        let mut result =
            reserve_lines(ledger, lines, grant.estimate, prices, endpoint, deadline_ms).await;
        let tight = match &result {
            Ok(hold) => hold.clamped.is_some(),
            Err(e) => matches!(e, ReserveError::Insufficient { .. }),
        };
        if tight
            && let Some(lines) = retry_lines
            && grant.count_exactly(req, endpoint)
        {
            let released = match &result {
                Ok(Hold {
                    reservation: Some(bound),
                    ..
                }) => ledger.release(bound).await,
                _ => Ok(()),
            };
            match released {
                Ok(()) => {
                    metrics::counter!("tollgate_estimates_recounted_total", "step" => "reserve")
                        .increment(1);
                    let prices = max_prices(&grant.model, grant.estimate.prompt_tokens);
                    result =
                        reserve_lines(ledger, lines, grant.estimate, prices, endpoint, deadline_ms)
                            .await;
                }
                // The clamped reservation stands (it is a valid one, only tighter than
                // the real count would have made it).
                Err(e) => tracing::warn!(error = %e, "could not release a bound reservation"),
            }
        }
        result.map_err(|e| match e {
            ReserveError::Insufficient {
                budget_id,
                remaining,
                needed,
            } => {
                let (scope, period) = labels
                    .iter()
                    .find(|(id, _, _)| *id == budget_id)
                    .map_or((format!("budget {budget_id}"), "now"), |(_, s, p)| {
                        (s.clone(), *p)
                    });
                BudgetError::Insufficient {
                    scope,
                    period,
                    remaining,
                    needed,
                }
            }
            other => BudgetError::Ledger(other),
        })
    }
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
            min_amount: money::worst_case(
                estimate.prompt_tokens,
                minimal_output.saturating_mul(estimate.choices),
                &prices,
            ),
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

/// Output tokens of one answer a granted amount pays for, after the prompt, when every
/// one of the call's answers may use them (for clamping max_tokens).
pub fn affordable_output(granted: Micros, estimate: &Estimate, prices: &Prices) -> u64 {
    let prompt = money::worst_case(estimate.prompt_tokens, 0, prices);
    let left = (granted - prompt).0.max(0);
    if prices.output <= 0 {
        return estimate.max_output_tokens;
    }
    // choices × tokens × price / 1M ≤ left  ⇔  tokens ≤ left × 1M / (price × choices)
    let tokens = i128::from(left) * 1_000_000
        / (i128::from(prices.output) * i128::from(estimate.choices.max(1)));
    u64::try_from(tokens)
        .unwrap_or(u64::MAX)
        .min(estimate.max_output_tokens)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};
    use time::macros::datetime;

    use super::*;
    use crate::prices::PriceTable;
    use crate::snapshot::file::StaticSnapshot;
    use crate::snapshot::{Credentials, MAX_N};

    /// gpt-4o as OpenAI publishes it (128k context, 16,384 output tokens, $2.50/$10 per
    /// 1M), a Claude model, a chat-only model that refuses n > 1, an embedding model, and
    /// a model served by gpt-4o and gpt-4o-mini.
    const CATALOG: &str = r#"
[[orgs]]
id = "acme"
[[models]]
name = "gpt-4o"
context_window = 128000
max_output_tokens = 16384
modes = ["chat", "completions"]
[[models]]
name = "claude"
max_output_tokens = 64000
[[models]]
name = "single"
max_n = 1
modes = ["chat"]
[[models]]
name = "embed"
modes = ["embeddings"]
[[models]]
name = "vision"
[[deployments]]
id = "oai"
model = "gpt-4o"
provider = "openai"
base_url = "https://api.openai.com/v1"
[[deployments]]
id = "ant"
model = "claude"
provider = "anthropic"
base_url = "https://api.anthropic.com"
upstream_model = "claude-sonnet-4-5"
[[deployments]]
id = "one"
model = "single"
provider = "openai"
base_url = "https://api.openai.com/v1"
upstream_model = "gpt-4o"
[[deployments]]
id = "emb"
model = "embed"
provider = "openai"
base_url = "https://api.openai.com/v1"
upstream_model = "text-embedding-3-small"
[[deployments]]
id = "v-4o"
model = "vision"
provider = "openai"
base_url = "https://api.openai.com/v1"
upstream_model = "gpt-4o"
[[deployments]]
id = "v-mini"
model = "vision"
provider = "openai"
base_url = "https://api.openai.com/v1"
upstream_model = "gpt-4o-mini"
[[models]]
name = "long"
[[deployments]]
id = "long"
model = "long"
provider = "openai"
base_url = "https://api.openai.com/v1"
upstream_model = "gpt-4o"
prices = { input = 1000000, output = 2000000, tiers = [{ above_prompt_tokens = 100, input = 3000000, output = 5000000 }] }
"#;

    fn grant(model: &str) -> Arc<Model> {
        let file: StaticSnapshot = toml::from_str(CATALOG).expect("parses");
        let snapshot = Snapshot::from_proto(
            file.into_proto("local").expect("converts"),
            &PriceTable::built_in().expect("price table"),
            &Credentials::form_only(),
        )
        .expect("valid");
        Arc::clone(snapshot.model(model).expect("model"))
    }

    fn request(body: Value) -> JsonRequest {
        let Value::Object(body) = body else {
            panic!("an object")
        };
        JsonRequest {
            body,
            output_ceiling: None,
        }
    }

    fn chat(model: &str, extra: Value) -> JsonRequest {
        let mut body =
            json!({"model": model, "messages": [{"role": "user", "content": "hello world"}]});
        if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        request(body)
    }

    #[test]
    fn the_reservation_takes_the_long_context_tier_above_and_near_its_threshold() {
        let g = grant("long");
        let mut seen = [false; 3]; // base, near (within 5% below), above
        for words in 1..140 {
            let text = vec!["word"; words].join(" ");
            let body = json!({"max_tokens": 10, "messages": [{"role": "user", "content": text}]});
            let e = estimate(&g, &chat("long", body), Endpoint::Chat).unwrap();
            let p = e.prompt_tokens;
            // 1 µ$/2 µ$ per token up to 100 prompt tokens, 3 µ$/5 µ$ above.
            let (tier, expected) = if p > 100 {
                (2, p * 3 + 50)
            } else if p + p / 20 > 100 {
                (1, p * 3 + 50)
            } else {
                (0, p + 20)
            };
            seen[tier] = true;
            assert_eq!(
                e.amount,
                Micros(i64::try_from(expected).unwrap()),
                "{p} tokens"
            );
            assert_eq!(
                max_prices(&g, p).output,
                if tier == 0 { 2_000_000 } else { 5_000_000 }
            );
        }
        assert_eq!(seen, [true; 3], "every side of the threshold was tried");
    }

    #[test]
    fn max_tokens_above_the_model_limit_is_refused_naming_it() {
        let err = estimate(
            &grant("gpt-4o"),
            &chat("gpt-4o", json!({"max_tokens": 100_000_000})),
            Endpoint::Chat,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "max_tokens is too large: 100000000. This model supports at most 16384 completion tokens, whereas you provided 100000000."
        );
        assert_eq!((err.param(), err.fault()), ("max_tokens", Fault::Client));
        let err = estimate(
            &grant("gpt-4o"),
            &chat("gpt-4o", json!({"max_completion_tokens": 16_385})),
            Endpoint::Chat,
        )
        .unwrap_err();
        assert_eq!(err.param(), "max_completion_tokens");
        // At the limit is fine, and is what is priced.
        let at_limit = estimate(
            &grant("gpt-4o"),
            &chat("gpt-4o", json!({"max_tokens": 16_384})),
            Endpoint::Chat,
        )
        .unwrap();
        assert_eq!(at_limit.max_output_tokens, 16_384);
    }

    #[test]
    fn endpoints_outside_the_model_modes_are_refused() {
        let embed = request(json!({"model": "gpt-4o", "input": "hi"}));
        let err = estimate(&grant("gpt-4o"), &embed, Endpoint::Embeddings).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gpt-4o does not serve /v1/embeddings; it serves /v1/chat/completions and /v1/completions."
        );
        assert_eq!(err.param(), "model");
        let err = estimate(&grant("embed"), &chat("embed", json!({})), Endpoint::Chat).unwrap_err();
        assert!(matches!(err, EstimateError::Endpoint { .. }), "{err:?}");
        assert!(
            estimate(
                &grant("embed"),
                &request(json!({"model": "embed", "input": "hi"})),
                Endpoint::Embeddings
            )
            .is_ok()
        );
    }

    #[test]
    fn a_prompt_past_the_context_window_is_refused_naming_it() {
        // "hello " is one o200k token: 130,000 of them pass the 128k window.
        let long = "hello ".repeat(130_000);
        let req =
            request(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": long}]}));
        let err = estimate(&grant("gpt-4o"), &req, Endpoint::Chat).unwrap_err();
        assert_eq!(err.code(), Some("context_length_exceeded"));
        assert_eq!(err.param(), "messages");
        assert!(
            err.to_string().starts_with("This model's maximum context length is 128000 tokens. However, your messages resulted in 1300"),
            "{err}"
        );
    }

    #[test]
    fn n_multiplies_the_output_part_and_the_tokens() {
        let g = grant("gpt-4o");
        let one = estimate_counted(
            &g,
            &chat("gpt-4o", json!({"max_tokens": 1000})),
            Endpoint::Chat,
            Counting::Exact,
        )
        .unwrap();
        let four = estimate_counted(
            &g,
            &chat("gpt-4o", json!({"max_tokens": 1000, "n": 4})),
            Endpoint::Chat,
            Counting::Exact,
        )
        .unwrap();
        assert_eq!((one.choices, four.choices), (1, 4));
        assert_eq!(four.max_output_tokens, 1000, "the ceiling of one answer");
        assert_eq!(four.tokens(), four.prompt_tokens + 4000);
        // 9 prompt tokens at $2.50/M + 4 × 1000 at $10/M = 23 + 40,000 µ$ (rounded up once).
        assert_eq!(four.amount, Micros(40_023));
        assert_eq!(one.amount, Micros(10_023));
    }

    #[test]
    fn best_of_bills_the_larger_of_it_and_n() {
        let g = grant("gpt-4o");
        let req = request(
            json!({"model": "gpt-4o", "prompt": "hello world", "max_tokens": 100, "n": 2, "best_of": 5}),
        );
        assert_eq!(
            estimate(&g, &req, Endpoint::Completions).unwrap().choices,
            5
        );
        let req = request(json!({"model": "gpt-4o", "prompt": "hi", "n": 3, "best_of": 2}));
        assert_eq!(
            estimate(&g, &req, Endpoint::Completions).unwrap_err(),
            EstimateError::BestOfBelowN
        );
        // best_of means nothing to chat: not billed there.
        let req = chat("gpt-4o", json!({"best_of": 5}));
        assert_eq!(estimate(&g, &req, Endpoint::Chat).unwrap().choices, 1);
    }

    #[test]
    fn n_must_be_a_sane_positive_integer() {
        let g = grant("gpt-4o");
        for bad in [
            json!(0),
            json!(-1),
            json!(MAX_N + 1),
            json!(2.5),
            json!("2"),
        ] {
            let err = estimate(&g, &chat("gpt-4o", json!({"n": bad})), Endpoint::Chat).unwrap_err();
            assert!(
                matches!(err, EstimateError::Choices { param: "n", .. }),
                "{bad}: {err:?}"
            );
        }
        let req = request(json!({"model": "gpt-4o", "prompt": "hi", "best_of": 0}));
        assert_eq!(
            estimate(&g, &req, Endpoint::Completions)
                .unwrap_err()
                .param(),
            "best_of"
        );
        assert_eq!(
            estimate(&g, &chat("gpt-4o", json!({"n": null})), Endpoint::Chat)
                .unwrap()
                .choices,
            1
        );
    }

    #[test]
    fn a_model_may_refuse_more_than_one_answer() {
        let g = grant("single");
        let err = estimate(&g, &chat("single", json!({"n": 2})), Endpoint::Chat).unwrap_err();
        assert_eq!(
            err.to_string(),
            "single allows at most 1 answer per call, whereas you asked for 2 (n)."
        );
        assert_eq!(err.param(), "n");
        assert!(estimate(&g, &chat("single", json!({"n": 1})), Endpoint::Chat).is_ok());
    }

    #[test]
    fn claude_prompts_carry_the_safety_factor_and_the_cache_write_price() {
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(100);
        let body = |model: &str| {
            request(
                json!({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": text}]}),
            )
        };
        let gpt = estimate(&grant("gpt-4o"), &body("gpt-4o"), Endpoint::Chat).unwrap();
        let claude = estimate(&grant("claude"), &body("claude"), Endpoint::Chat).unwrap();
        assert_eq!(claude.prompt_tokens, (gpt.prompt_tokens * 13).div_ceil(10));
        // claude-sonnet-4-5: prompt at the $3.75 cache-write price, not the $3 input one.
        let expected = (claude.prompt_tokens * 3_750_000 + 100 * 15_000_000).div_ceil(1_000_000);
        assert_eq!(claude.amount, Micros(i64::try_from(expected).unwrap()));
    }

    #[test]
    fn images_count_by_size_and_detail() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&1024u32.to_be_bytes());
        png.extend_from_slice(&1024u32.to_be_bytes());
        let b64 = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(&png)
        };
        let with_image = |detail: &str| {
            chat(
                "gpt-4o",
                json!({"messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b64}"), "detail": detail}}
                ]}]}),
            )
        };
        let exact = |model: &Model, req: &JsonRequest| {
            estimate_counted(model, req, Endpoint::Chat, Counting::Exact).unwrap()
        };
        let g = grant("gpt-4o");
        // 3 priming + 3 framing + "user" = 7, plus the image by OpenAI's rule.
        let high = exact(&g, &with_image("high"));
        assert_eq!(high.prompt_tokens, 7 + 765);
        let low = exact(&g, &with_image("low"));
        assert_eq!(low.prompt_tokens, 7 + 85);
        // The bound counts "user" as its 4 bytes and the image the same way.
        let bound = estimate(&g, &with_image("high"), Endpoint::Chat).unwrap();
        assert_eq!(
            (bound.prompt_tokens, bound.counting),
            (10 + 765, Counting::Bound)
        );
        // A model that may go to gpt-4o-mini reserves its rule: 2833 + 4 × 5667 for the
        // 1024 × 1024 image in high detail, 2833 in low (not gpt-4o's 765 and 85).
        let vision = grant("vision");
        let high = exact(&vision, &with_image("high"));
        assert_eq!(high.prompt_tokens, 7 + 25501);
        let low = exact(&vision, &with_image("low"));
        assert_eq!(low.prompt_tokens, 7 + 2833);
    }

    #[test]
    fn the_estimate_is_the_bound_unless_the_bound_would_refuse() {
        let g = grant("gpt-4o");
        let req = chat("gpt-4o", json!({"max_tokens": 100}));
        let bound = estimate(&g, &req, Endpoint::Chat).unwrap();
        let exact = estimate_counted(&g, &req, Endpoint::Chat, Counting::Exact).unwrap();
        // 3 + 3 + "user" + "hello world": 9 tokens, 21 bytes' worth of bound.
        assert_eq!((exact.prompt_tokens, exact.counting), (9, Counting::Exact));
        assert_eq!((bound.prompt_tokens, bound.counting), (21, Counting::Bound));
        assert!(bound.amount > exact.amount);
        // "hello " is 6 bytes but one token: 25,000 of them are 150,000 bytes, past the
        // 128k window by their bound, within it by the tokenizer, which decides.
        let long = "hello ".repeat(25_000);
        let req =
            request(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": long}]}));
        let recounted = estimate(&g, &req, Endpoint::Chat).unwrap();
        assert_eq!(recounted.counting, Counting::Exact);
        assert!(recounted.prompt_tokens < 128_000, "{recounted:?}");
        // A grant already counted exactly has nothing to count again.
        let mut granted = Grant {
            model: Arc::clone(&g),
            estimate: recounted,
        };
        assert!(!granted.count_exactly(&req, Endpoint::Chat));
        let short = chat("gpt-4o", json!({"max_tokens": 100}));
        let mut granted = Grant {
            model: Arc::clone(&g),
            estimate: bound,
        };
        assert!(granted.count_exactly(&short, Endpoint::Chat));
        assert_eq!(granted.estimate, exact);
    }

    #[test]
    fn clamping_shares_what_is_left_among_the_answers() {
        let g = grant("gpt-4o");
        let four = estimate_counted(
            &g,
            &chat("gpt-4o", json!({"max_tokens": 1000, "n": 4})),
            Endpoint::Chat,
            Counting::Exact,
        )
        .unwrap();
        let prices = max_prices(&g, four.prompt_tokens);
        // 23 µ$ of prompt + 20,000 µ$ left = 2,000 output tokens = 500 per answer.
        assert_eq!(affordable_output(Micros(20_023), &four, &prices), 500);
    }

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
