--[[
  Commit a claimed batch: next due times, run state, digests, quarantine.

  Each entry is written only if its score is still the lease that claim.lua
  set (compare-and-set); otherwise another beat or a user changed it since,
  and the entry is left alone. A run this very call already committed (the
  client resent it after a dropped connection lost the reply) is reported
  committed again, so its task is still sent once.

  KEYS[1]  {T}:due              zset
  KEYS[2]  {T}:total_run_count  hash
  KEYS[3]  {T}:last_run_at      hash
  KEYS[4]  {T}:digest           hash
  KEYS[5]  {T}:invalid          hash

  ARGV     nine values per entry:
           name, lease, next score ("inf" = never), ran ("1"/"0"),
           run time ISO-8601 (when ran), digest value, invalid reason ("" = valid),
           seed total_run_count ("" = none), seed last_run_at ("" = none)

  Returns  {1 or 0, ...} one per entry: 1 = committed (now or by a resent
           call), 0 = lease lost
]]
local due, run_count, last_run, digest, invalid = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local rcall = redis.call

local out = {}
for i = 1, #ARGV, 9 do
  local name = ARGV[i]
  local current = rcall('ZSCORE', due, name)
  if current and tonumber(current) == tonumber(ARGV[i + 1]) then
    rcall('ZADD', due, ARGV[i + 2], name)
    if ARGV[i + 7] ~= '' then rcall('HSETNX', run_count, name, ARGV[i + 7]) end
    if ARGV[i + 8] ~= '' then rcall('HSETNX', last_run, name, ARGV[i + 8]) end
    if ARGV[i + 3] == '1' then
      rcall('HINCRBY', run_count, name, 1)
      rcall('HSET', last_run, name, ARGV[i + 4])
    end
    rcall('HSET', digest, name, ARGV[i + 5])
    if ARGV[i + 6] ~= '' then
      rcall('HSET', invalid, name, ARGV[i + 6])
    else
      rcall('HDEL', invalid, name)
    end
    out[#out + 1] = 1
  elseif current and ARGV[i + 3] == '1' and tonumber(current) == tonumber(ARGV[i + 2])
      and rcall('HGET', last_run, name) == ARGV[i + 4] then
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
