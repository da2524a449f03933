"""Lua scripts of the Redis hot state, for the operations that read and write in one round trip.

`RedisHotState` registers each once (`register_script` sends EVALSHA and falls back to EVAL on
NOSCRIPT).
"""

from __future__ import annotations

# Admission: flags first (KEYS[1..n], ARGV[1] = n, ARGV[2..n+1] = 1 for a stop flag), then, unless
# a stop flag is set, GCRA over the remaining keys, all or nothing (see base.gcra_params for the
# algorithm); with n = 0 it is plain rate limiting. Times are in microseconds from Redis TIME; the
# TAT is stored as a whole number with "%.0f" because Lua's tostring keeps only 14 significant
# digits, too few for epoch microseconds. Returns the flag values, the stop verdict and, per
# check, verdict, floor(diff) and ceil(TAT - now); Python shapes the result so both backends
# share it.
ADMIT = """
local n = tonumber(ARGV[1])
local values, stopped = {}, 0
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  values[i] = v
  if v and ARGV[1 + i] == '1' then stopped = 1 end
end
if stopped == 1 then return {values, 1, {}} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stored, tentative, verdicts, diffs = {}, {}, {}, {}
local all_ok = true
local m = #KEYS - n
for j = 1, m do
  local key = KEYS[n + j]
  local base = n + 1 + 3 * (j - 1)
  local interval = tonumber(ARGV[base + 1])
  local tolerance, cost = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  if tentative[key] == nil then
    local tat = tonumber(redis.call('GET', key)) or now
    if tat < now then tat = now end
    stored[key], tentative[key] = tat, tat
  end
  local new_tat = tentative[key] + interval * cost
  local diff = now - (new_tat - tolerance)
  if diff >= -1 then
    tentative[key], verdicts[j] = new_tat, 1
  else
    verdicts[j], all_ok = 0, false
  end
  diffs[j] = diff
end
local final = stored
if all_ok then
  final = tentative
  for key, tat in pairs(tentative) do
    if tat > now then
      redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
    end
  end
end
local out = {}
for j = 1, m do
  local key = KEYS[n + j]
  out[#out+1] = verdicts[j]
  out[#out+1] = math.floor(diffs[j])
  out[#out+1] = math.ceil(final[key] - now)
end
return {values, 0, out}
"""

# Bucketed window in one hash: field = bucket number (TIME seconds // bucket_s). Old buckets are
# dropped as they fall out, so the hash holds at most `buckets` fields.
WINDOW_ADD = """
local t = redis.call('TIME')
local bucket_s, n, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local current = math.floor(tonumber(t[1]) / bucket_s)
local oldest = current - n + 1
if amount ~= 0 then
  redis.call('HINCRBY', KEYS[1], current, amount)
  redis.call('EXPIRE', KEYS[1], bucket_s * (n + 1))
end
local counts = {}
for i = 1, n do counts[i] = 0 end
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local b = tonumber(flat[i])
  if b < oldest then
    redis.call('HDEL', KEYS[1], flat[i])
  elseif b <= current then
    counts[b - oldest + 1] = tonumber(flat[i + 1])
  end
end
return counts
"""

# SET NX and announce only when it set, so a cooldown that was already running stays silent.
SET_IF_ABSENT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('PUBLISH', KEYS[2], ARGV[3])
  return 1
end
return 0
"""
