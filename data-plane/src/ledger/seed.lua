-- Re-seed spent counters from the durable ledger: spent = max(redis, durable), so a
-- restarted (empty) Redis never forgets spend, and a seed never lowers live counters.
-- KEYS[i] budget counters; ARGV[i] durable spent for KEYS[i]; ARGV[#KEYS + i] TTL (s, 0 = none)
for i = 1, #KEYS do
  local durable = tonumber(ARGV[i])
  local live = tonumber(redis.call('HGET', KEYS[i], 'spent')) or 0
  if durable > live then
    redis.call('HSET', KEYS[i], 'spent', durable)
  end
  local ttl = tonumber(ARGV[#KEYS + i])
  if ttl > 0 and redis.call('TTL', KEYS[i]) == -1 then
    redis.call('EXPIRE', KEYS[i], ttl)
  end
end
return #KEYS
