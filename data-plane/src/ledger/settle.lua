-- Replace a reservation by the actual cost in every line it holds, or (reap mode) release
-- an expired one whose gateway never settled it. Idempotent: each ends in a tombstone.
-- The tombstone says how the reservation ended, not what it cost: `reaped` means the
-- reserved amount was released but the cost is still unknown, so a settlement arriving
-- after the reaper still adds its cost (and only then turns it into `settled`).
-- KEYS[1] the reservation record, KEYS[2] the org's lease index, KEYS[3] its tombstone,
-- KEYS[4..] its budget counters (as recorded at reserve time, so a period rollover in
-- between does not move money)
-- ARGV[1] reservation id, ARGV[2] actual cost, ARGV[3] tombstone TTL (s), ARGV[4] mode
-- ('settle' or 'reap'), then one counter TTL per budget counter (s, 0 = none): the TTL
-- of KEYS[i] is ARGV[i + 1]
-- Returns 1 if settled (or reaped) now, 0 if it already was, 2 if Redis had lost the
-- reservation (restarted empty: the spend is still recorded, there is nothing to
-- un-reserve), 3 if a reaped reservation got its late cost.
local amount = tonumber(redis.call('HGET', KEYS[1], 'amount'))
local actual = tonumber(ARGV[2])
local reap = ARGV[4] == 'reap'
local result = 1
if reap then
  if not amount then
    return 0
  end
  actual = 0
elseif not amount then
  local tomb = redis.call('GET', KEYS[3])
  if tomb == 'reaped' then
    result = 3
  elseif tomb then
    return 0
  else
    result = 2
  end
  amount = 0
end
for i = 4, #KEYS do
  if amount > 0 then
    redis.call('HINCRBY', KEYS[i], 'reserved', -amount)
  end
  if actual > 0 then
    redis.call('HINCRBY', KEYS[i], 'spent', actual)
  end
  local ttl = tonumber(ARGV[i + 1])
  if ttl and ttl > 0 and redis.call('TTL', KEYS[i]) == -1 then
    redis.call('EXPIRE', KEYS[i], ttl)
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], reap and 'reaped' or 'settled', 'EX', tonumber(ARGV[3]))
return result
