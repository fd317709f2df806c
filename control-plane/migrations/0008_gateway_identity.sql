-- Gateway identity and usage integrity: the short-lived credentials each gateway process
-- gets for its region's enrollment token, and the usage events ingest refused.

-- One per gateway process (a pod that restarts enrolls anew): bound to one gateway id and
-- region, minted with one enrollment token, renewed by the gateway while it runs. Only a
-- SHA-256 of the secret is kept. Revoking the credential or its enrollment token ends its
-- streams (see notify_gateway_auth below).
CREATE TABLE gateway_credentials (
  id                   uuid PRIMARY KEY,
  gateway_id           text NOT NULL CHECK (length(gateway_id) BETWEEN 1 AND 128),
  region_id            text NOT NULL REFERENCES regions (id) ON DELETE CASCADE,
  enrollment_token_id  uuid NOT NULL REFERENCES enrollment_tokens (id) ON DELETE CASCADE,
  secret_sha256        bytea NOT NULL UNIQUE,
  prefix               text NOT NULL,
  issued_at            timestamptz NOT NULL DEFAULT now(),
  renewed_at           timestamptz,
  expires_at           timestamptz NOT NULL,
  revoked_at           timestamptz
);
CREATE INDEX gateway_credentials_gateway ON gateway_credentials (gateway_id, issued_at);
CREATE INDEX gateway_credentials_token ON gateway_credentials (enrollment_token_id);
CREATE INDEX gateway_credentials_expiry ON gateway_credentials (expires_at);

-- Every replica listens: a revoked credential or enrollment token ends the streams that
-- use it wherever they are held. Only a change of revoked_at (or a delete) notifies, so
-- the last_used_at bump of every authentication does not.
CREATE FUNCTION notify_gateway_auth() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('tollgate_gateway_auth', '');
  RETURN NULL;
END $$;
CREATE TRIGGER enrollment_tokens_auth AFTER UPDATE OF revoked_at OR DELETE ON enrollment_tokens
  FOR EACH STATEMENT EXECUTE FUNCTION notify_gateway_auth();
CREATE TRIGGER gateway_credentials_auth AFTER UPDATE OF revoked_at OR DELETE ON gateway_credentials
  FOR EACH STATEMENT EXECUTE FUNCTION notify_gateway_auth();

-- Usage events ingest refused (a key unknown in that org/team, a deployment of another
-- region, a cost above what was reserved, a time outside the window, ...), kept with the
-- reason and the event as sent, so nothing a gateway reported silently disappears. The
-- rest of their batch is stored and acked. A replayed refusal is kept once. Pruned with
-- the request log's retention.
CREATE TABLE usage_quarantine (
  -- The gateway of the authenticated stream, not what the event claims.
  gateway_id   text NOT NULL,
  -- As sent (it may be what made the event malformed).
  event_id     text NOT NULL,
  region_id    text NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now(),
  -- A fixed code (malformed, unknown_key, key_scope, deployment_region, future,
  -- too_old, tokens, reserved, cost_above_reserved, cost_above_tokens).
  reason       text NOT NULL,
  detail       text NOT NULL,
  event        jsonb NOT NULL,
  PRIMARY KEY (gateway_id, event_id)
);
CREATE INDEX usage_quarantine_received ON usage_quarantine (received_at);
