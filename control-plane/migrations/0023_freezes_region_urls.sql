-- Issue #13: emergency stop (freezes) and the public gateway URL of a region.

-- A freeze refuses every call whose key, project, team or org it names until it is
-- lifted. Lifted rows stay as the record of what was stopped, by whom and why.
CREATE TABLE freezes (
  id          uuid PRIMARY KEY,
  org_id      uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
  scope_kind  text NOT NULL CHECK (scope_kind IN ('org', 'team', 'project', 'key')),
  scope_id    uuid NOT NULL,
  reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
  created_by  text NOT NULL,
  lifted_at   timestamptz,
  lifted_by   text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
-- One active freeze per scope (a second is a 409, not a silent duplicate).
CREATE UNIQUE INDEX freezes_one_per_scope ON freezes (scope_kind, scope_id) WHERE lifted_at IS NULL;
CREATE INDEX freezes_org_active ON freezes (org_id) WHERE lifted_at IS NULL;
CREATE TRIGGER freezes_touch BEFORE UPDATE ON freezes FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
-- Gateways carry active freezes in their snapshot: any change republishes.
CREATE TRIGGER freezes_config_dirty AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON freezes
  FOR EACH STATEMENT EXECUTE FUNCTION notify_config_dirty();

-- As budgets and rate limits (0007): a deleted scope leaves no freeze naming it.
CREATE OR REPLACE FUNCTION delete_scoped_limits() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM budgets WHERE scope_kind = TG_ARGV[0] AND scope_id = OLD.id;
  DELETE FROM rate_limits WHERE scope_kind = TG_ARGV[0] AND scope_id = OLD.id;
  DELETE FROM freezes WHERE scope_kind = TG_ARGV[0] AND scope_id = OLD.id;
  RETURN NULL;
END $$;

-- Where callers reach the region's gateways (the portal's snippets show it); NULL = not
-- published. The API validates the shape; the check keeps psql writes honest too.
ALTER TABLE regions ADD COLUMN public_url text
  CHECK (public_url IS NULL OR (public_url ~ '^https?://[^/@?#[:space:]]+(/[^?#[:space:]]*)?$'));
