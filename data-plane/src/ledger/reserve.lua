-- Reserve one call's worst case in every budget line, all or nothing, in one step.
-- KEYS[1..n]  budget counters (hashes: spent, reserved), one per line
-- KEYS[n+1]   the reservation record (hash: amount, deadline, lines)
-- KEYS[n+2]   the org's lease index (zset: reservation id scored by deadline)
-- ARGV[1] reservation id, ARGV[2] amount, ARGV[3] min amount (clamping), ARGV[4] deadline
-- (Unix ms), ARGV[5] record TTL (s), then per line: limit, clamp (1/0), counter TTL (s, 0 = none)
-- Returns {1, granted} or {0, index of the short line, what it has left}.
local n = #KEYS - 2
local amount = tonumber(ARGV[2])
local min_amount = tonumber(ARGV[3])
local grant = amount
for i = 1, n do
  local base = 5 + (i - 1) * 3
  local limit = tonumber(ARGV[base + 1])
  local counter = redis.call('HMGET', KEYS[i], 'spent', 'reserved')
  local left = limit - (tonumber(counter[1]) or 0) - (tonumber(counter[2]) or 0)
  if left < amount then
    if ARGV[base + 2] ~= '1' or left < min_amount then
      if left < 0 then left = 0 end
      return {0, i, left}
    end
    if left < grant then grant = left end
  end
end
local lines = {}
for i = 1, n do
  local ttl = tonumber(ARGV[5 + (i - 1) * 3 + 3])
  redis.call('HINCRBY', KEYS[i], 'reserved', grant)
  if ttl > 0 and redis.call('TTL', KEYS[i]) == -1 then
    redis.call('EXPIRE', KEYS[i], ttl)
  end
  lines[i] = KEYS[i]
end
redis.call('HSET', KEYS[n + 1], 'amount', grant, 'deadline', ARGV[4], 'lines', table.concat(lines, '\n'))
redis.call('EXPIRE', KEYS[n + 1], tonumber(ARGV[5]))
redis.call('ZADD', KEYS[n + 2], tonumber(ARGV[4]), ARGV[1])
return {1, grant}
