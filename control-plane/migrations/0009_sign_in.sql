-- Issue #12: people sign in with an OpenID provider. A person is issuer + subject (never
-- the email alone); sessions and login flows keep only hashes of their secrets; an org's
-- own IdP connection keeps its client secret sealed (AES-256-GCM, master key from the
-- environment); roles the IdP grants are marked so each sign-in can add and remove them.

ALTER TABLE users
  ADD COLUMN deactivated_at timestamptz,
  -- Platform admin granted by the platform IdP's groups: renewed by each sign-in, apart
  -- from is_platform_admin (bootstrap, by hand), which sign-ins never touch.
  ADD COLUMN idp_platform_admin_at timestamptz;

CREATE TABLE user_identities (
  issuer      text NOT NULL,
  subject     text NOT NULL,
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (issuer, subject)
);

-- An org's own identity provider (at most one per org; the platform's is in the config).
CREATE TABLE idp_connections (
  id                        uuid PRIMARY KEY,
  org_id                    uuid NOT NULL UNIQUE REFERENCES orgs (id) ON DELETE CASCADE,
  issuer                    text NOT NULL CONSTRAINT idp_connections_issuer_unique UNIQUE
                              CONSTRAINT idp_connections_issuer_format CHECK (issuer ~ '^https?://'),
  client_id                 text NOT NULL CHECK (length(client_id) BETWEEN 1 AND 500),
  client_secret_ciphertext  bytea NOT NULL,
  -- The ID token claim whose values group mappings match (a string or list of strings).
  groups_claim              text NOT NULL DEFAULT 'groups',
  created_at                timestamptz NOT NULL DEFAULT now(),
  updated_at                timestamptz NOT NULL DEFAULT now()
);

-- Home-realm discovery: an email domain belongs to one org (assigned by a platform admin).
CREATE TABLE org_domains (
  domain      text PRIMARY KEY CONSTRAINT org_domains_domain_format CHECK (domain ~ '^[a-z0-9.-]+\.[a-z]{2,}$'),
  org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A claim value of one connection (its issuer) that gives a role in the org.
CREATE TABLE group_mappings (
  id          uuid PRIMARY KEY,
  org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  issuer      text NOT NULL,
  claim       text NOT NULL DEFAULT 'groups' CHECK (length(claim) BETWEEN 1 AND 200),
  value       text NOT NULL CHECK (length(value) BETWEEN 1 AND 500),
  role        text NOT NULL CHECK (role IN ('org_admin', 'team_admin', 'member', 'viewer')),
  team_id     uuid,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (team_id, org_id) REFERENCES teams (id, org_id) ON DELETE CASCADE,
  CHECK (team_id IS NOT NULL OR role IN ('org_admin', 'viewer', 'member'))
);
CREATE UNIQUE INDEX group_mappings_one_per_value ON group_mappings
  (org_id, issuer, claim, value, role, coalesce(team_id, '00000000-0000-0000-0000-000000000000'));

-- Where a membership came from: by hand (kept until removed) or from the IdP (synced by
-- every sign-in, and ignored once not renewed within the configured age).
ALTER TABLE memberships
  ADD COLUMN source text NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'idp')),
  ADD COLUMN renewed_at timestamptz NOT NULL DEFAULT now();

-- Browser sessions: only the SHA-256 of the (256-bit random) session id is kept.
CREATE TABLE sessions (
  id            uuid PRIMARY KEY,
  secret_sha256 bytea NOT NULL UNIQUE,
  user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  issuer        text NOT NULL,
  source_ip     text NOT NULL DEFAULT '',
  user_agent    text NOT NULL DEFAULT '',
  last_seen_at  timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL,
  ended_at      timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_user ON sessions (user_id) WHERE ended_at IS NULL;

-- A sign-in under way: state (hashed), PKCE verifier and nonce, used once, for minutes.
CREATE TABLE login_flows (
  state_sha256   bytea PRIMARY KEY,
  issuer         text NOT NULL,
  pkce_verifier  text NOT NULL,
  nonce          text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Personal tokens minted from a session may be narrower than their owner's roles.
ALTER TABLE admin_tokens
  ADD COLUMN read_only boolean NOT NULL DEFAULT false;

CREATE TRIGGER idp_connections_touch BEFORE UPDATE ON idp_connections FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER group_mappings_touch BEFORE UPDATE ON group_mappings FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER sessions_touch BEFORE UPDATE ON sessions FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
