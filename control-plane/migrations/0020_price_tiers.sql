-- Issue #17: long-context price tiers of a deployment's own prices, thresholds ascending:
-- [{"above_prompt_tokens": 200000, "input_price": 2500000, "output_price": 15000000,
--   "cached_input_price": 250000, "cache_write_price": null}, ...]. The API validates
-- the entries; the table only keeps the shape.
ALTER TABLE deployments ADD COLUMN price_tiers jsonb NOT NULL DEFAULT '[]'
  CHECK (jsonb_typeof(price_tiers) = 'array');
