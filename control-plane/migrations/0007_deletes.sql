-- Deletes leave nothing behind that names what was deleted, so no deletion can make a
-- snapshot invalid (and freeze config), and none can widen access. Triggers rather than
-- store code, so deletes by cascade (an org's teams, a team's projects and keys) and from
-- a psql session are covered too.

-- Budgets and rate limits name their scope polymorphically (scope_kind + scope_id), so no
-- foreign key can cascade to them: the scope's own delete removes them.
CREATE FUNCTION delete_scoped_limits() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM budgets WHERE scope_kind = TG_ARGV[0] AND scope_id = OLD.id;
  DELETE FROM rate_limits WHERE scope_kind = TG_ARGV[0] AND scope_id = OLD.id;
  RETURN NULL;
END $$;
CREATE TRIGGER teams_delete_scoped_limits AFTER DELETE ON teams
  FOR EACH ROW EXECUTE FUNCTION delete_scoped_limits('team');
CREATE TRIGGER projects_delete_scoped_limits AFTER DELETE ON projects
  FOR EACH ROW EXECUTE FUNCTION delete_scoped_limits('project');
CREATE TRIGGER api_keys_delete_scoped_limits AFTER DELETE ON api_keys
  FOR EACH ROW EXECUTE FUNCTION delete_scoped_limits('key');

-- The scope lookups of the triggers above.
CREATE INDEX budgets_scope ON budgets (scope_kind, scope_id);

-- A name that no longer resolves (a deleted model, or an alias taken off a model) leaves
-- every allow-list. A list keeps its other entries; one left with none is empty, which
-- means "no model" -- never NULL ("every model"), so a deletion can only narrow access.
-- A NULL list (not set) stays NULL: `NULL && x` is not true.
CREATE FUNCTION forget_model_names() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  gone text[];
BEGIN
  IF TG_OP = 'DELETE' THEN
    gone := array_prepend(OLD.name, OLD.aliases);
  ELSE
    gone := ARRAY(SELECT unnest(array_prepend(OLD.name, OLD.aliases))
                  EXCEPT SELECT unnest(array_prepend(NEW.name, NEW.aliases)));
  END IF;
  IF cardinality(gone) = 0 THEN
    RETURN NULL;
  END IF;
  UPDATE teams SET allowed_models = ARRAY(
      SELECT u.m FROM unnest(allowed_models) WITH ORDINALITY AS u(m, i)
       WHERE u.m <> ALL (gone) ORDER BY u.i)
   WHERE allowed_models && gone;
  UPDATE projects SET allowed_models = ARRAY(
      SELECT u.m FROM unnest(allowed_models) WITH ORDINALITY AS u(m, i)
       WHERE u.m <> ALL (gone) ORDER BY u.i)
   WHERE allowed_models && gone;
  UPDATE api_keys SET allowed_models = ARRAY(
      SELECT u.m FROM unnest(allowed_models) WITH ORDINALITY AS u(m, i)
       WHERE u.m <> ALL (gone) ORDER BY u.i)
   WHERE allowed_models && gone;
  RETURN NULL;
END $$;
CREATE TRIGGER models_forget_names AFTER UPDATE OF name, aliases OR DELETE ON models
  FOR EACH ROW EXECUTE FUNCTION forget_model_names();

-- What deletes before this migration left behind.
DELETE FROM budgets b WHERE
     (b.scope_kind = 'team' AND NOT EXISTS (SELECT 1 FROM teams t WHERE t.id = b.scope_id))
  OR (b.scope_kind = 'project' AND NOT EXISTS (SELECT 1 FROM projects p WHERE p.id = b.scope_id))
  OR (b.scope_kind = 'key' AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = b.scope_id));
DELETE FROM rate_limits r WHERE
     (r.scope_kind = 'team' AND NOT EXISTS (SELECT 1 FROM teams t WHERE t.id = r.scope_id))
  OR (r.scope_kind = 'project' AND NOT EXISTS (SELECT 1 FROM projects p WHERE p.id = r.scope_id))
  OR (r.scope_kind = 'key' AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = r.scope_id));
CREATE FUNCTION known_model_names(names text[]) RETURNS text[] LANGUAGE sql STABLE AS $$
  SELECT ARRAY(SELECT u.m FROM unnest(names) WITH ORDINALITY AS u(m, i)
                WHERE EXISTS (SELECT 1 FROM models WHERE name = u.m OR aliases @> ARRAY[u.m])
                ORDER BY u.i)
$$;
UPDATE teams SET allowed_models = known_model_names(allowed_models)
 WHERE allowed_models <> known_model_names(allowed_models);
UPDATE projects SET allowed_models = known_model_names(allowed_models)
 WHERE allowed_models <> known_model_names(allowed_models);
UPDATE api_keys SET allowed_models = known_model_names(allowed_models)
 WHERE allowed_models <> known_model_names(allowed_models);
DROP FUNCTION known_model_names(text[]);

-- The fleet view's record of config the builder could not publish: one row per region
-- and org whose data was set aside (org_id NULL: the whole region's snapshot was held
-- back). Rewritten by every build; a fixed org's row goes away.
CREATE TABLE config_errors (
  region_id   text NOT NULL REFERENCES regions (id) ON DELETE CASCADE,
  org_id      uuid,
  -- `previous` (the org serves its last published config), `omitted` (the org is left
  -- out of the region's snapshot) or `held` (the region's snapshot was not published).
  action      text NOT NULL CHECK (action IN ('previous', 'omitted', 'held')),
  message     text NOT NULL,
  since       timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT config_errors_one UNIQUE NULLS NOT DISTINCT (region_id, org_id)
);
