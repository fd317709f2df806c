-- Config push: signed snapshots per region, gateway enrollment tokens and the fleet.

-- A published version is kept whole (signed bytes), so every control-plane replica pushes
-- byte-identical snapshots and a replica that starts later needs no rebuild to serve it.
-- content_sha256 is over the snapshot with version and time zeroed: an unchanged world
-- publishes no new version.
ALTER TABLE config_versions
  ADD COLUMN content_sha256 bytea NOT NULL DEFAULT '',
  ADD COLUMN payload bytea NOT NULL DEFAULT '',
  ADD COLUMN signature bytea NOT NULL DEFAULT '',
  ADD COLUMN key_id text NOT NULL DEFAULT '';
-- Snapshots are protobuf (already dense): storing them uncompressed saves the compression
-- pass on every publish of a big world.
ALTER TABLE config_versions ALTER COLUMN payload SET STORAGE EXTERNAL;

-- A gateway proves which region it serves with one of these; only a SHA-256 is kept.
CREATE TABLE enrollment_tokens (
  id            uuid PRIMARY KEY,
  region_id     text NOT NULL REFERENCES regions (id) ON DELETE CASCADE,
  token_sha256  bytea NOT NULL UNIQUE,
  prefix        text NOT NULL,
  name          text NOT NULL DEFAULT '',
  revoked_at    timestamptz,
  last_used_at  timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The fleet as the control plane last saw it. `replica` names the control-plane process
-- holding the gateway's stream.
CREATE TABLE gateways (
  id                 text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
  region_id          text NOT NULL REFERENCES regions (id) ON DELETE CASCADE,
  build              text NOT NULL DEFAULT '',
  replica            text NOT NULL DEFAULT '',
  -- The stream that last connected; a closing older stream must not mark it gone.
  session_id         uuid,
  connected          boolean NOT NULL DEFAULT false,
  connected_since    timestamptz,
  last_seen          timestamptz NOT NULL DEFAULT now(),
  applied_version    bigint NOT NULL DEFAULT 0,
  last_nack_version  bigint,
  last_nack_error    text,
  last_nack_at       timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER enrollment_tokens_touch BEFORE UPDATE ON enrollment_tokens FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER gateways_touch BEFORE UPDATE ON gateways FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- Whatever writes a table gateways depend on (API, CLI, a psql session) wakes the
-- publishers; Postgres folds repeats within one transaction into one notification.
CREATE FUNCTION notify_config_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('tollgate_config_dirty', '');
  RETURN NULL;
END $$;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['orgs', 'teams', 'projects', 'api_keys', 'regions', 'providers',
    'models', 'deployments', 'budgets', 'rate_limits']
  LOOP
    EXECUTE format('CREATE TRIGGER %I_config_dirty AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I
      FOR EACH STATEMENT EXECUTE FUNCTION notify_config_dirty()', t, t);
  END LOOP;
END $$;
