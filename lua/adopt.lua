--[[
  Bring entries exported from another shard into this one.

  Safe to repeat: a definition already here is kept (it is the newer one if
  it was edited here after an interrupted move), and of the two run states
  the one with more runs wins, so no run is forgotten. The due time is
  re-derived by beat: a changed entry gets score 0 ("look now"), a pending
  "run now" keeps -1.

  KEYS[1]  {T}:schedule         hash
  KEYS[2]  {T}:due              zset
  KEYS[3]  {T}:total_run_count  hash
  KEYS[4]  {T}:last_run_at      hash
  KEYS[5]  {T}:digest           hash
  KEYS[6]  {T}:statics          set

  ARGV     seven values per entry, as export.lua returns them:
           name, definition, total_run_count ("" = none), last_run_at ("" = none),
           digest ("" = none), static ("1"/"0"), run now pending ("1"/"0")

  Returns  {adopted, merged}: entries new here, entries that were already here
]]
local schedule, due, run_count, last_run, digest, statics = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local rcall = redis.call

local adopted, merged = 0, 0
for i = 1, #ARGV, 7 do
  local name = ARGV[i]
  local changed = rcall('HSETNX', schedule, name, ARGV[i + 1]) == 1
  if changed then
    adopted = adopted + 1
    if ARGV[i + 4] ~= '' then rcall('HSET', digest, name, ARGV[i + 4]) end
  else
    merged = merged + 1
  end
  local here = tonumber(rcall('HGET', run_count, name) or '-1')
  local there = tonumber(ARGV[i + 2] ~= '' and ARGV[i + 2] or '-1')
  if there > here or (there == here and ARGV[i + 3] ~= '' and not rcall('HGET', last_run, name)) then
    if ARGV[i + 2] ~= '' then rcall('HSET', run_count, name, ARGV[i + 2]) end
    if ARGV[i + 3] ~= '' then rcall('HSET', last_run, name, ARGV[i + 3]) end
    changed = true
  end
  if ARGV[i + 5] == '1' then rcall('SADD', statics, name) end
  local score = rcall('ZSCORE', due, name)
  if ARGV[i + 6] == '1' then
    rcall('ZADD', due, -1, name)
  elseif not score or (changed and tonumber(score) > 0) then
    rcall('ZADD', due, 0, name)
  end
end
return {adopted, merged}
