-- Rate limits of one call on every limited scope, checked and counted in one step.
-- KEYS[2i-1] scope i's window (hash: req, tok) for the current minute
-- KEYS[2i]   scope i's in-flight set (zset: call id scored by lease deadline)
-- ARGV[1] call id, ARGV[2] now (ms), ARGV[3] lease deadline (ms), ARGV[4] estimated tokens,
-- then per scope: rpm, tpm, max concurrent (-1 = no limit)
-- Returns {1, rpm limit, rpm left, tpm limit, tpm left} (-1 where no scope limits it) or
-- {0, scope index, 1 rpm | 2 tpm | 3 concurrency, limit, requests left, tokens left}.
local n = #KEYS / 2
local now = tonumber(ARGV[2])
local tokens = tonumber(ARGV[4])
for i = 1, n do
  local base = 4 + (i - 1) * 3
  local rpm, tpm, cc = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local w = redis.call('HMGET', KEYS[2 * i - 1], 'req', 'tok')
  local req, tok = tonumber(w[1]) or 0, tonumber(w[2]) or 0
  local req_left = rpm >= 0 and math.max(rpm - req, 0) or -1
  local tok_left = tpm >= 0 and math.max(tpm - tok, 0) or -1
  if rpm >= 0 and req + 1 > rpm then return {0, i, 1, rpm, req_left, tok_left} end
  if tpm >= 0 and tok + tokens > tpm then return {0, i, 2, tpm, req_left, tok_left} end
  if cc >= 0 then
    -- Slots of calls whose lease ran out (their gateway died) no longer count.
    redis.call('ZREMRANGEBYSCORE', KEYS[2 * i], '-inf', now)
    if redis.call('ZCARD', KEYS[2 * i]) + 1 > cc then return {0, i, 3, cc, req_left, tok_left} end
  end
end
local rpm_limit, rpm_left, tpm_limit, tpm_left = -1, -1, -1, -1
for i = 1, n do
  local base = 4 + (i - 1) * 3
  local rpm, tpm, cc = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local req = redis.call('HINCRBY', KEYS[2 * i - 1], 'req', 1)
  local tok = redis.call('HINCRBY', KEYS[2 * i - 1], 'tok', tokens)
  redis.call('PEXPIRE', KEYS[2 * i - 1], 120000)
  if rpm >= 0 and (rpm_left < 0 or rpm - req < rpm_left) then rpm_limit, rpm_left = rpm, math.max(rpm - req, 0) end
  if tpm >= 0 and (tpm_left < 0 or tpm - tok < tpm_left) then tpm_limit, tpm_left = tpm, math.max(tpm - tok, 0) end
  if cc >= 0 then
    redis.call('ZADD', KEYS[2 * i], tonumber(ARGV[3]), ARGV[1])
    redis.call('PEXPIREAT', KEYS[2 * i], tonumber(ARGV[3]) + 60000)
  end
end
return {1, rpm_limit, rpm_left, tpm_limit, tpm_left}
