-- Replace a reservation by the actual cost in every line it holds. Idempotent: a settled
-- (or reaped) reservation leaves a tombstone, and settling it again changes nothing.
-- KEYS[1] the reservation record, KEYS[2] the org's lease index, KEYS[3] its tombstone,
-- KEYS[4..] its budget counters (as recorded at reserve time, so a period rollover in
-- between does not move money)
-- ARGV[1] reservation id, ARGV[2] actual cost, ARGV[3] tombstone TTL (s), then one
-- counter TTL per budget counter (s, 0 = none)
-- Returns 1 if settled now, 0 if it already was, 2 if Redis had lost the reservation
-- (restarted empty): the spend is still recorded, there is nothing to un-reserve.
local amount = tonumber(redis.call('HGET', KEYS[1], 'amount'))
local actual = tonumber(ARGV[2])
local result = 1
if not amount then
  if redis.call('EXISTS', KEYS[3]) == 1 then
    return 0
  end
  amount = 0
  result = 2
end
for i = 4, #KEYS do
  if amount > 0 then
    redis.call('HINCRBY', KEYS[i], 'reserved', -amount)
  end
  if actual > 0 then
    redis.call('HINCRBY', KEYS[i], 'spent', actual)
  end
  local ttl = tonumber(ARGV[i])
  if ttl and ttl > 0 and redis.call('TTL', KEYS[i]) == -1 then
    redis.call('EXPIRE', KEYS[i], ttl)
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], actual, 'EX', tonumber(ARGV[3]))
return result
