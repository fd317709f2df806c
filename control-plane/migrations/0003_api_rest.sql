-- The admin API over the platform catalog (regions, providers, models, deployments) and
-- rate limits: the constraints the API's checks rely on, named so the store can map their
-- violations to the field at fault, and the indexes its lists and filters use.

-- Provider secrets are referenced, never stored: a credential is env:NAME or nothing.
ALTER TABLE providers
  ADD CONSTRAINT providers_credential_ref_format
    CHECK (credential_ref = '' OR credential_ref ~ '^env:[A-Z_][A-Z0-9_]*$'),
  ADD CONSTRAINT providers_name_length CHECK (length(name) BETWEEN 1 AND 200);

ALTER TABLE models
  ADD CONSTRAINT models_name_length CHECK (length(name) BETWEEN 1 AND 200);
-- Alias lookups (allow-lists, the deployments filter) search inside the arrays.
CREATE INDEX models_aliases ON models USING gin (aliases);

ALTER TABLE deployments
  ADD CONSTRAINT deployments_upstream_model_length CHECK (length(upstream_model) BETWEEN 1 AND 200);
CREATE INDEX deployments_model ON deployments (model_id);
CREATE INDEX deployments_region ON deployments (region_id);
CREATE INDEX deployments_provider ON deployments (provider_id);

-- A rate limit that limits nothing is a mistake, not a row.
ALTER TABLE rate_limits
  ADD CONSTRAINT rate_limits_some_limit
    CHECK (rpm IS NOT NULL OR tpm IS NOT NULL OR max_concurrent IS NOT NULL);
CREATE INDEX rate_limits_org ON rate_limits (org_id);
CREATE INDEX budgets_org ON budgets (org_id);
