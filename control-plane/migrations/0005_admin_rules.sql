-- Admin rules (issue #11 points 6, 11, 13).

-- Allow-lists: NULL = not set (every model), '{}' = empty (no model). Until now an empty
-- array meant "every model", so existing empty arrays become NULL: nothing changes for
-- anyone, and from here on no edit can widen access by emptying a list.
ALTER TABLE teams ALTER COLUMN allowed_models DROP NOT NULL, ALTER COLUMN allowed_models DROP DEFAULT;
ALTER TABLE projects ALTER COLUMN allowed_models DROP NOT NULL, ALTER COLUMN allowed_models DROP DEFAULT;
ALTER TABLE api_keys ALTER COLUMN allowed_models DROP NOT NULL, ALTER COLUMN allowed_models DROP DEFAULT;
UPDATE teams SET allowed_models = NULL WHERE allowed_models = '{}';
UPDATE projects SET allowed_models = NULL WHERE allowed_models = '{}';
UPDATE api_keys SET allowed_models = NULL WHERE allowed_models = '{}';

-- Admin tokens always expire (default 90 days from minting). Tokens minted before this
-- migration get 90 days from now rather than being cut off at once.
UPDATE admin_tokens SET expires_at = now() + interval '90 days' WHERE expires_at IS NULL;
ALTER TABLE admin_tokens ALTER COLUMN expires_at SET NOT NULL;

-- An idempotency key is scoped to the route and org it was used on: the same key sent
-- to another org (or another create) is a new request, never a replay of the first.
ALTER TABLE idempotency_keys ADD COLUMN scope text NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (user_id, scope, key);
