-- A call ended: free its in-flight slots and correct tokens/min from the estimate to
-- what it really used. Idempotent enough: ZREM of a gone member is a no-op, and the
-- token correction is only sent once per call.
-- KEYS[2i-1] scope i's window of the call's minute, KEYS[2i] scope i's in-flight set
-- ARGV[1] call id, ARGV[2] token correction (actual - estimated; may be negative)
local delta = tonumber(ARGV[2])
for i = 1, #KEYS / 2 do
  redis.call('ZREM', KEYS[2 * i], ARGV[1])
  if delta ~= 0 and redis.call('EXISTS', KEYS[2 * i - 1]) == 1 then
    redis.call('HINCRBY', KEYS[2 * i - 1], 'tok', delta)
  end
end
return 1
