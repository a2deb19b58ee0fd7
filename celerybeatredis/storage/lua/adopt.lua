--[[
  Bring entries exported from another shard into this one.

  Safe to repeat: a definition already here is kept (it is the newer one if
  it was edited here after an interrupted move), and of the two run states
  the one with more runs wins, so no run is forgotten. The due time is
  re-derived by beat: a changed entry gets score 0 ("look now"), a pending
  "run now" keeps -1. Key types and the run counts brought in are checked
  before the first write: all of the entries or none.

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
--@include look_now
--@include checks

local problem = wrong_type({schedule, due, run_count, last_run, digest, statics}, {'hash', 'zset', 'hash', 'hash', 'hash', 'set'})
if problem then return redis.error_reply(problem) end
if #ARGV % 7 ~= 0 then return redis.error_reply('adopt: seven arguments per entry') end
problem = bad_counts_given('adopt', ARGV, 7, 2)
if problem then return redis.error_reply(problem) end

local adopted, merged = 0, 0
for i = 1, #ARGV, 7 do
  local name, definition, count, last = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local new_digest, static, run_now = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local changed = rcall('HSETNX', schedule, name, definition) == 1
  if changed then
    adopted = adopted + 1
    if new_digest ~= '' then rcall('HSET', digest, name, new_digest) end
  else
    merged = merged + 1
  end
  -- A run count here that is not an integer counts as none: the one brought in replaces it.
  local stored = rcall('HGET', run_count, name)
  local here = is_integer(stored) and tonumber(stored) or -1
  local there = tonumber(count ~= '' and count or '-1')
  if there > here or (there == here and last ~= '' and not rcall('HGET', last_run, name)) then
    if count ~= '' then rcall('HSET', run_count, name, count) end
    if last ~= '' then rcall('HSET', last_run, name, last) end
    changed = true
  end
  if static == '1' then rcall('SADD', statics, name) end
  if run_now == '1' then
    rcall('ZADD', due, -1, name)
  elseif changed then
    look_now(due, name)
  elseif not rcall('ZSCORE', due, name) then
    rcall('ZADD', due, 0, name)
  end
end
return {adopted, merged}
