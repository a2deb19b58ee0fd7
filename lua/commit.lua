--[[
  Commit a claimed batch: next due times, run state, digests, quarantine.

  Each entry is written only if its score is still the lease that claim.lua
  set (compare-and-set); otherwise another beat or a user changed it since,
  and the entry is left alone. A run this very call already committed (the
  client resent it after a dropped connection lost the reply) is reported
  committed again, so its task is still sent once. Names are unique within
  a call (claim.lua returns each once). The writes go out as one multi-field
  command per key (ZMSCORE, so Redis 6.2+).

  KEYS[1]  {T}:due              zset
  KEYS[2]  {T}:total_run_count  hash
  KEYS[3]  {T}:last_run_at      hash
  KEYS[4]  {T}:digest           hash
  KEYS[5]  {T}:invalid          hash

  ARGV     nine values per entry:
           name, lease, next score ("inf" = never), ran ("1"/"0"),
           run time ISO-8601 (when ran), digest value ("" = leave it as it is),
           invalid reason ("" = valid),
           seed total_run_count ("" = none), seed last_run_at ("" = none)

  Returns  {1 or 0, ...} one per entry: 1 = committed (now or by a resent
           call), 0 = lease lost
]]
local due, run_count, last_run, digest, invalid = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local rcall = redis.call

-- Multi-field commands over the whole batch, in slices that stay within Lua's unpack limit.
local SLICE = 1000
local function each_slice(list, fn)
  for first = 1, #list, SLICE do
    fn(unpack(list, first, math.min(first + SLICE - 1, #list)))
  end
end

local names = {}
for i = 1, #ARGV, 9 do names[#names + 1] = ARGV[i] end
local scores = {}
each_slice(names, function(...)
  local part = rcall('ZMSCORE', due, ...)
  for j = 1, #part do scores[#scores + 1] = part[j] end
end)

local out = {}
local next_scores, runs, digests, valid, reasons = {}, {}, {}, {}, {}
for j = 1, #names do
  local i = 9 * j - 8
  local name = names[j]
  local current = scores[j]
  if current and tonumber(current) == tonumber(ARGV[i + 1]) then
    next_scores[#next_scores + 1] = ARGV[i + 2]
    next_scores[#next_scores + 1] = name
    if ARGV[i + 7] ~= '' then rcall('HSETNX', run_count, name, ARGV[i + 7]) end
    if ARGV[i + 8] ~= '' then rcall('HSETNX', last_run, name, ARGV[i + 8]) end
    if ARGV[i + 3] == '1' then
      rcall('HINCRBY', run_count, name, 1)
      runs[#runs + 1] = name
      runs[#runs + 1] = ARGV[i + 4]
    end
    if ARGV[i + 5] ~= '' then
      digests[#digests + 1] = name
      digests[#digests + 1] = ARGV[i + 5]
    end
    if ARGV[i + 6] ~= '' then
      reasons[#reasons + 1] = name
      reasons[#reasons + 1] = ARGV[i + 6]
    else
      valid[#valid + 1] = name
    end
    out[j] = 1
  elseif current and ARGV[i + 3] == '1' and tonumber(current) == tonumber(ARGV[i + 2])
      and rcall('HGET', last_run, name) == ARGV[i + 4] then
    out[j] = 1
  else
    out[j] = 0
  end
end
each_slice(next_scores, function(...) rcall('ZADD', due, ...) end)
each_slice(runs, function(...) rcall('HSET', last_run, ...) end)
each_slice(digests, function(...) rcall('HSET', digest, ...) end)
each_slice(reasons, function(...) rcall('HSET', invalid, ...) end)
each_slice(valid, function(...) rcall('HDEL', invalid, ...) end)
return out
