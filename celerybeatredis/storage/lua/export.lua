--[[
  Take entries out of service in this shard so they can move to another one.

  Each entry's due score becomes inf: no beat claims it from here on, and a
  beat still holding a claim on it cannot commit it (its lease no longer
  matches). Nothing is deleted; remove.lua does that once the entries are
  safely in their new shard. Key types are checked before the first write.

  KEYS[1]  {T}:schedule         hash   name -> definition JSON
  KEYS[2]  {T}:due              zset   name -> next due time
  KEYS[3]  {T}:total_run_count  hash   name -> integer
  KEYS[4]  {T}:last_run_at      hash   name -> ISO-8601
  KEYS[5]  {T}:digest           hash   name -> "<sha1 prefix>[ <anchor>]"
  KEYS[6]  {T}:statics          set    names from beat_schedule

  ARGV     names

  Returns  {name, definition, total_run_count or false, last_run_at or false,
            digest or false, static (1/0), run now pending (1/0), ...}
           seven values per entry that exists; missing names are skipped
]]
local schedule, due, run_count, last_run, digest, statics = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local rcall = redis.call
--@include checks

local problem = wrong_type({schedule, due, run_count, last_run, digest, statics}, {'hash', 'zset', 'hash', 'hash', 'hash', 'set'})
if problem then return redis.error_reply(problem) end

local out = {}
for _, name in ipairs(ARGV) do
  local definition = rcall('HGET', schedule, name)
  if definition then
    local score = rcall('ZSCORE', due, name)
    rcall('ZADD', due, 'inf', name)
    out[#out + 1] = name
    out[#out + 1] = definition
    out[#out + 1] = rcall('HGET', run_count, name)
    out[#out + 1] = rcall('HGET', last_run, name)
    out[#out + 1] = rcall('HGET', digest, name)
    out[#out + 1] = rcall('SISMEMBER', statics, name)
    if score and tonumber(score) < 0 then out[#out + 1] = 1 else out[#out + 1] = 0 end
  end
end
return out
