--[[
  Undo the run of entries whose task could not be published.

  Only entries whose score is still the one commit.lua wrote are touched:
  the run count goes back down, last_run_at goes back, and the entry is due
  again at the retry score. With a reason, the entry is also quarantined
  (its task cannot be sent as defined; the retry score is then "inf").

  KEYS[1]  {T}:due              zset
  KEYS[2]  {T}:total_run_count  hash
  KEYS[3]  {T}:last_run_at      hash
  KEYS[4]  {T}:invalid          hash

  ARGV     five values per entry:
           name, committed score, retry score, previous last_run_at ("" = none),
           quarantine reason ("" = none)

  Returns  {1 or 0, ...} one per entry: 1 = reverted, 0 = changed meanwhile
]]
local due, run_count, last_run, invalid = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local rcall = redis.call

local out = {}
for i = 1, #ARGV, 5 do
  local name, committed, retry, previous_last, reason = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local current = rcall('ZSCORE', due, name)
  if current and tonumber(current) == tonumber(committed) then
    rcall('ZADD', due, retry, name)
    if rcall('HINCRBY', run_count, name, -1) <= 0 then
      rcall('HDEL', run_count, name)
    end
    if previous_last == '' then
      rcall('HDEL', last_run, name)
    else
      rcall('HSET', last_run, name, previous_last)
    end
    if reason ~= '' then
      rcall('HSET', invalid, name, reason)
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
