-- Tollgate control plane: the whole schema of the truth. Every table has created_at and
-- updated_at; tenant-owned rows carry org_id so every query can filter on it; constraints
-- live here, in the database, and the store maps their violations to 409/422.

CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;

CREATE TABLE orgs (
  id          uuid PRIMARY KEY,
  slug        text NOT NULL UNIQUE CONSTRAINT orgs_slug_format CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  name        text NOT NULL CONSTRAINT orgs_name_length CHECK (length(name) BETWEEN 1 AND 200),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE teams (
  id              uuid PRIMARY KEY,
  org_id          uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  slug            text NOT NULL CONSTRAINT teams_slug_format CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  name            text NOT NULL CONSTRAINT teams_name_length CHECK (length(name) BETWEEN 1 AND 200),
  allowed_models  text[] NOT NULL DEFAULT '{}',
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT teams_slug_unique UNIQUE (org_id, slug),
  UNIQUE (id, org_id)
);

CREATE TABLE projects (
  id              uuid PRIMARY KEY,
  org_id          uuid NOT NULL,
  team_id         uuid NOT NULL,
  slug            text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  allowed_models  text[] NOT NULL DEFAULT '{}',
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (team_id, org_id) REFERENCES teams (id, org_id) ON DELETE CASCADE,
  CONSTRAINT projects_slug_unique UNIQUE (team_id, slug),
  UNIQUE (id, org_id)
);

CREATE TABLE users (
  id                 uuid PRIMARY KEY,
  email              text NOT NULL UNIQUE CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
  name               text NOT NULL DEFAULT '',
  is_platform_admin  boolean NOT NULL DEFAULT false,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);

-- A role in an org (team_id NULL) or in one of its teams.
CREATE TABLE memberships (
  id          uuid PRIMARY KEY,
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  team_id     uuid,
  role        text NOT NULL CHECK (role IN ('org_admin', 'team_admin', 'member', 'viewer')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (team_id, org_id) REFERENCES teams (id, org_id) ON DELETE CASCADE,
  CHECK (team_id IS NOT NULL OR role IN ('org_admin', 'viewer', 'member'))
);
CREATE UNIQUE INDEX memberships_one_role ON memberships (user_id, org_id, coalesce(team_id, '00000000-0000-0000-0000-000000000000'));

-- Admin API tokens: only a SHA-256 of the (256-bit random) token is kept.
CREATE TABLE admin_tokens (
  id            uuid PRIMARY KEY,
  user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  token_sha256  bytea NOT NULL UNIQUE,
  prefix        text NOT NULL,
  name          text NOT NULL DEFAULT '',
  expires_at    timestamptz,
  revoked_at    timestamptz,
  last_used_at  timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE regions (
  id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  name        text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Provider accounts. A credential is a reference (env:NAME) resolved on the gateway, or,
-- if stored at all, sealed with the control plane's master key (never plaintext).
CREATE TABLE providers (
  id                     uuid PRIMARY KEY,
  kind                   text NOT NULL CHECK (kind IN ('openai', 'azure', 'anthropic', 'openai_compatible')),
  name                   text NOT NULL UNIQUE,
  base_url               text NOT NULL CHECK (base_url ~ '^https?://'),
  credential_ref         text NOT NULL DEFAULT '',
  credential_ciphertext  bytea,
  created_at             timestamptz NOT NULL DEFAULT now(),
  updated_at             timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE models (
  id                         uuid PRIMARY KEY,
  name                       text NOT NULL UNIQUE,
  aliases                    text[] NOT NULL DEFAULT '{}',
  default_max_output_tokens  integer NOT NULL DEFAULT 4096 CHECK (default_max_output_tokens > 0),
  tokenizer                  text NOT NULL DEFAULT 'o200k_base' CHECK (tokenizer IN ('o200k_base', 'cl100k_base')),
  owned_by                   text NOT NULL DEFAULT '',
  created_at                 timestamptz NOT NULL DEFAULT now(),
  updated_at                 timestamptz NOT NULL DEFAULT now()
);

-- Prices in micro-USD per 1M tokens; NULL = the gateway's price table.
CREATE TABLE deployments (
  id                  uuid PRIMARY KEY,
  model_id            uuid NOT NULL REFERENCES models (id) ON DELETE CASCADE,
  region_id           text NOT NULL REFERENCES regions (id),
  provider_id         uuid NOT NULL REFERENCES providers (id),
  upstream_model      text NOT NULL,
  api_version         text NOT NULL DEFAULT '',
  input_price         bigint CHECK (input_price >= 0),
  output_price        bigint CHECK (output_price >= 0),
  cached_input_price  bigint CHECK (cached_input_price >= 0),
  cache_write_price   bigint CHECK (cache_write_price >= 0),
  weight              integer NOT NULL DEFAULT 1 CHECK (weight > 0),
  connect_ms          integer NOT NULL DEFAULT 5000 CHECK (connect_ms > 0),
  first_byte_ms       integer NOT NULL DEFAULT 120000 CHECK (first_byte_ms > 0),
  total_ms            integer NOT NULL DEFAULT 600000 CHECK (total_ms > 0),
  max_staleness_ms    bigint NOT NULL DEFAULT 0 CHECK (max_staleness_ms >= 0),
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Virtual keys tg_<public_id>_<secret>: only HMAC-SHA256(pepper, secret) is kept.
CREATE TABLE api_keys (
  id              uuid PRIMARY KEY,
  public_id       text NOT NULL UNIQUE CHECK (public_id ~ '^[A-Za-z0-9]{8,32}$'),
  display_prefix  text NOT NULL,
  secret_hmac     bytea NOT NULL CHECK (length(secret_hmac) = 32),
  org_id          uuid NOT NULL,
  team_id         uuid NOT NULL,
  project_id      uuid,
  owner_user_id   uuid REFERENCES users (id) ON DELETE SET NULL,
  name            text NOT NULL DEFAULT '',
  allowed_models  text[] NOT NULL DEFAULT '{}',
  status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
  expires_at      timestamptz,
  rotated_from    uuid REFERENCES api_keys (id),
  grace_until     timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (team_id, org_id) REFERENCES teams (id, org_id) ON DELETE CASCADE,
  FOREIGN KEY (project_id, org_id) REFERENCES projects (id, org_id) ON DELETE CASCADE
);
CREATE INDEX api_keys_org ON api_keys (org_id, team_id);

CREATE TABLE budgets (
  id                    uuid PRIMARY KEY,
  org_id                uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  scope_kind            text NOT NULL CHECK (scope_kind IN ('org', 'team', 'project', 'key')),
  scope_id              uuid NOT NULL,
  amount_micros         bigint NOT NULL CHECK (amount_micros >= 0),
  period                text NOT NULL CHECK (period IN ('day', 'week', 'month', 'total')),
  alert_thresholds_pct  integer[] NOT NULL DEFAULT '{50,80,100}',
  clamp                 boolean NOT NULL DEFAULT false,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT budgets_one_per_period UNIQUE (scope_kind, scope_id, period)
);

CREATE TABLE rate_limits (
  id              uuid PRIMARY KEY,
  org_id          uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  scope_kind      text NOT NULL CHECK (scope_kind IN ('org', 'team', 'project', 'key')),
  scope_id        uuid NOT NULL,
  rpm             integer CHECK (rpm >= 0),
  tpm             bigint CHECK (tpm >= 0),
  max_concurrent  integer CHECK (max_concurrent >= 0),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT rate_limits_one_per_scope UNIQUE (scope_kind, scope_id)
);

-- Append-only: the trigger below refuses UPDATE and DELETE.
CREATE TABLE audit_log (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at             timestamptz NOT NULL DEFAULT now(),
  actor_user_id  uuid,
  actor          text NOT NULL,
  org_id         uuid,
  action         text NOT NULL,
  object_type    text NOT NULL,
  object_id      text NOT NULL,
  before         jsonb,
  after          jsonb,
  request_id     text NOT NULL DEFAULT '',
  source_ip      text NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_org_at ON audit_log (org_id, at DESC);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();

CREATE TABLE config_versions (
  region_id   text NOT NULL REFERENCES regions (id),
  version     bigint NOT NULL CHECK (version > 0),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (region_id, version)
);

-- Retried creates with the same Idempotency-Key return the first answer.
CREATE TABLE idempotency_keys (
  user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
  request_hash  bytea NOT NULL,
  status        integer NOT NULL,
  response      jsonb NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, key)
);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['orgs', 'teams', 'projects', 'users', 'memberships', 'admin_tokens',
    'regions', 'providers', 'models', 'deployments', 'api_keys', 'budgets', 'rate_limits']
  LOOP
    EXECUTE format('CREATE TRIGGER %I_touch BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION touch_updated_at()', t, t);
  END LOOP;
END $$;
