-- Issue #17: Gemini, Vertex AI and Bedrock provider kinds; OpenAI-compatible presets;
-- the AWS region a Bedrock deployment signs for; deployments a gateway disabled.
ALTER TABLE providers DROP CONSTRAINT providers_kind_check;
ALTER TABLE providers ADD CONSTRAINT providers_kind_check CHECK (kind IN (
  'openai', 'azure', 'anthropic', 'openai_compatible', 'gemini', 'vertex', 'bedrock'));

-- Which OpenAI-compatible server's quirks apply; '' = none (plain OpenAI behaviour).
ALTER TABLE providers ADD COLUMN preset text NOT NULL DEFAULT ''
  CHECK (preset IN ('', 'vllm', 'ollama', 'groq', 'mistral', 'deepseek', 'xai', 'together'));
ALTER TABLE providers ADD CONSTRAINT providers_preset_kind
  CHECK (preset = '' OR kind = 'openai_compatible');

-- Bedrock: the AWS region requests are signed for; '' for other providers.
ALTER TABLE deployments ADD COLUMN cloud_region text NOT NULL DEFAULT ''
  CHECK (cloud_region ~ '^[a-z0-9-]*$');

-- What a gateway's last Ack said it left out ("id: why"), for the fleet view.
ALTER TABLE gateways ADD COLUMN disabled_deployments text[] NOT NULL DEFAULT '{}';
