-- Telemetry: the request log gateways stream back (usage_events, partitioned by day),
-- spend rollups per hour and per day maintained with it, budget alerts and the webhooks
-- they are delivered to.

-- One row per call a gateway handled. Partitioned by day on started_at, which is fixed
-- per event, so a replayed event hits the primary key in the same partition and is
-- skipped (ON CONFLICT DO NOTHING). Partitions usage_events_pYYYYMMDD are created ahead
-- and dropped after the retention period by the control plane's maintenance task; the
-- DEFAULT partition catches events outside them (clock skew, a replay older than every
-- partition) until a matching partition takes its rows over.
-- Ids are NULL for calls refused before a key was known. key_id is the key's public id.
CREATE TABLE usage_events (
  started_at           timestamptz NOT NULL,
  event_id             uuid NOT NULL,
  received_at          timestamptz NOT NULL DEFAULT now(),
  -- The gateway and region of the authenticated stream, not what the event claims.
  gateway_id           text NOT NULL,
  region_id            text NOT NULL,
  org_id               uuid,
  team_id              uuid,
  project_id           uuid,
  key_id               text,
  model                text NOT NULL,
  deployment_id        text NOT NULL,
  endpoint             text NOT NULL,
  -- tollgate.telemetry.v1.CallStatus: 1 ok, 2 rejected, 3 upstream error, 4 client gone.
  status               smallint NOT NULL,
  http_status          integer NOT NULL,
  error_code           text NOT NULL,
  streamed             boolean NOT NULL,
  ttfb_ms              integer NOT NULL,
  latency_ms           integer NOT NULL,
  prompt_tokens        bigint NOT NULL,
  completion_tokens    bigint NOT NULL,
  cache_read_tokens    bigint NOT NULL,
  cache_write_tokens   bigint NOT NULL,
  -- Micro-USD: what the call settled at, and what was reserved for it.
  cost_micros          bigint NOT NULL,
  reserved_micros      bigint NOT NULL,
  price_table_version  text NOT NULL,
  request_id           text NOT NULL,
  trace_id             text NOT NULL,
  attempts             integer NOT NULL,
  PRIMARY KEY (started_at, event_id)
) PARTITION BY RANGE (started_at);
CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;

-- Rollups: one row per (bucket, org, team, project, key, model), added to per ingested
-- batch (aggregated first, so a batch touches each row once). Never pruned: lifetime
-- budgets are summed from them. Buckets are UTC hour / day starts. Updates change only
-- the sums, which no index covers, so with room left on each page (fillfactor) they are
-- HOT updates that touch no index.
CREATE TABLE usage_hourly (
  bucket              timestamptz NOT NULL,
  org_id              uuid NOT NULL,
  team_id             uuid NOT NULL,
  project_id          uuid,
  key_id              text NOT NULL,
  model               text NOT NULL,
  requests            bigint NOT NULL,
  -- Calls whose status was not ok (rejected, upstream error, client disconnected).
  errors              bigint NOT NULL,
  prompt_tokens       bigint NOT NULL,
  completion_tokens   bigint NOT NULL,
  cache_read_tokens   bigint NOT NULL,
  cache_write_tokens  bigint NOT NULL,
  cost_micros         bigint NOT NULL
) WITH (fillfactor = 70);
-- NULLS NOT DISTINCT: a key without a project has one row per bucket and model.
CREATE UNIQUE INDEX usage_hourly_key ON usage_hourly (org_id, bucket, team_id, project_id, key_id, model) NULLS NOT DISTINCT;
CREATE INDEX usage_hourly_team ON usage_hourly (team_id, bucket);
CREATE INDEX usage_hourly_project ON usage_hourly (project_id, bucket) WHERE project_id IS NOT NULL;
CREATE INDEX usage_hourly_api_key ON usage_hourly (key_id, bucket);

CREATE TABLE usage_daily (LIKE usage_hourly) WITH (fillfactor = 70);
CREATE UNIQUE INDEX usage_daily_key ON usage_daily (org_id, bucket, team_id, project_id, key_id, model) NULLS NOT DISTINCT;
CREATE INDEX usage_daily_team ON usage_daily (team_id, bucket);
CREATE INDEX usage_daily_project ON usage_daily (project_id, bucket) WHERE project_id IS NOT NULL;
CREATE INDEX usage_daily_api_key ON usage_daily (key_id, bucket);

-- Where alerts go: an org's webhook gets every alert of the org, a team's only those of
-- budgets on the team, its projects and keys. The signing secret is derived from the
-- control plane's webhook key and the id, so it is never stored.
CREATE TABLE webhooks (
  id           uuid PRIMARY KEY,
  org_id       uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  team_id      uuid,
  url          text NOT NULL CONSTRAINT webhooks_url_format CHECK (url ~ '^https?://' AND length(url) <= 2048),
  description  text NOT NULL DEFAULT '' CONSTRAINT webhooks_description_length CHECK (length(description) <= 200),
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (team_id, org_id) REFERENCES teams (id, org_id) ON DELETE CASCADE
);
CREATE INDEX webhooks_org ON webhooks (org_id, team_id);
CREATE TRIGGER webhooks_touch BEFORE UPDATE ON webhooks FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- A threshold crossed in a budget period. The unique key makes it fire once per budget,
-- period and threshold whichever control-plane replica notices first. Kept when the
-- budget is deleted (history), so no foreign key to budgets.
CREATE TABLE budget_alerts (
  id             uuid PRIMARY KEY,
  org_id         uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  -- The team the budget's scope belongs to (NULL for an org budget).
  team_id        uuid,
  budget_id      uuid NOT NULL,
  scope_kind     text NOT NULL,
  scope_id       uuid NOT NULL,
  period         text NOT NULL,
  period_start   timestamptz NOT NULL,
  threshold_pct  integer NOT NULL,
  -- Micro-USD when it fired.
  spent_micros   bigint NOT NULL,
  amount_micros  bigint NOT NULL,
  fired_at       timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT budget_alerts_once UNIQUE (budget_id, period_start, threshold_pct)
);
CREATE INDEX budget_alerts_org ON budget_alerts (org_id, id);

-- The outbox: one row per alert and webhook to deliver it to, claimed by a delivery
-- worker of any replica (next_attempt_at doubles as the claim's lease).
CREATE TABLE alert_notifications (
  alert_id          uuid NOT NULL REFERENCES budget_alerts (id) ON DELETE CASCADE,
  webhook_id        uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
  org_id            uuid NOT NULL,
  -- pending (to be tried at next_attempt_at), delivered, or failed (attempts exhausted).
  state             text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts          integer NOT NULL DEFAULT 0,
  next_attempt_at   timestamptz NOT NULL DEFAULT now(),
  last_status_code  integer,
  last_error        text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (alert_id, webhook_id)
);
CREATE INDEX alert_notifications_due ON alert_notifications (next_attempt_at) WHERE state = 'pending';
CREATE TRIGGER alert_notifications_touch BEFORE UPDATE ON alert_notifications FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- The delivery log: one row per attempt.
CREATE TABLE webhook_deliveries (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  alert_id       uuid NOT NULL REFERENCES budget_alerts (id) ON DELETE CASCADE,
  webhook_id     uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
  org_id         uuid NOT NULL,
  attempt        integer NOT NULL,
  at             timestamptz NOT NULL DEFAULT now(),
  -- delivered (2xx) or failed.
  outcome        text NOT NULL CHECK (outcome IN ('delivered', 'failed')),
  status_code    integer,
  error          text,
  duration_ms    integer NOT NULL
);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id);
