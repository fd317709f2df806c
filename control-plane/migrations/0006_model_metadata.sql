-- Model metadata the gateways check a call against before anything is reserved or sent:
-- the context window and the largest answer (tokens; NULL = unknown, no check), the
-- endpoints the model serves, and the largest `n` a call may ask for (1 = refuse n > 1).
ALTER TABLE models
  ADD COLUMN context_window     integer CHECK (context_window > 0),
  ADD COLUMN max_output_tokens  integer CHECK (max_output_tokens > 0),
  ADD COLUMN modes              text[] NOT NULL DEFAULT '{chat,completions,embeddings}'
    CHECK (cardinality(modes) > 0 AND modes <@ ARRAY['chat', 'completions', 'embeddings']),
  ADD COLUMN max_n              integer NOT NULL DEFAULT 128 CHECK (max_n BETWEEN 1 AND 128),
  -- The default answer length must be one the model can give.
  ADD CONSTRAINT models_default_within_max_output
    CHECK (max_output_tokens IS NULL OR default_max_output_tokens <= max_output_tokens);

-- Existing rows keep serving every endpoint, except models that are plainly embedding
-- models by name: those never answered chat or completions calls anyway.
UPDATE models SET modes = '{embeddings}' WHERE name ILIKE '%embedding%';
