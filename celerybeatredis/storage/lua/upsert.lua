--[[
  Add or replace definitions and make beat look at them now.

  A changed or new definition gets score 0 in {T}:due; an unchanged one keeps
  its score. In "static" mode (entries from beat_schedule) a name that
  already exists as a dynamic entry is skipped, written names join
  {T}:statics, and {T}:static_digest records what was written, so that the
  next sync can tell an edit made in Redis (overwritten, and reported) from a
  change of beat_schedule. In "new" mode nothing is written if any name
  exists: those names come back as skipped (an add never replaces an entry).
  Key types are checked before the first write: all of the batch or none.

  KEYS[1]  {T}:schedule       hash
  KEYS[2]  {T}:due            zset
  KEYS[3]  {T}:statics        set
  KEYS[4]  {T}:static_digest  hash

  ARGV[1]  "static", "dynamic" or "new"
  ARGV[2..] pairs: name, definition JSON

  Returns  {written, unchanged, {skipped name, ...}, {overwritten name, ...}}
]]
local schedule, due, statics, static_digest = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode = ARGV[1]
local static = mode == 'static'
local rcall = redis.call
--@include write_definition
--@include checks

local problem = wrong_type({schedule, due, statics, static_digest}, {'hash', 'zset', 'set', 'hash'})
if problem then return redis.error_reply(problem) end
if mode ~= 'static' and mode ~= 'dynamic' and mode ~= 'new' then
  return redis.error_reply(bad_argument('upsert', 1, 'must be "static", "dynamic" or "new"'))
end
if #ARGV % 2 ~= 1 then return redis.error_reply('upsert: two arguments per entry after the mode') end

local function short_digest(text)
  return string.sub(redis.sha1hex(text), 1, 12)
end

local written, unchanged, skipped, overwritten = 0, 0, {}, {}
if mode == 'new' then
  for i = 2, #ARGV, 2 do
    if rcall('HEXISTS', schedule, ARGV[i]) == 1 then skipped[#skipped + 1] = ARGV[i] end
  end
  if #skipped > 0 then return {0, 0, skipped, overwritten} end
end

for i = 2, #ARGV, 2 do
  local name, definition = ARGV[i], ARGV[i + 1]
  local old = rcall('HGET', schedule, name)
  if static and old and rcall('SISMEMBER', statics, name) == 0 then
    skipped[#skipped + 1] = name
  else
    if old ~= definition then
      if static and old then
        local recorded = rcall('HGET', static_digest, name)
        if recorded and recorded ~= short_digest(old) then overwritten[#overwritten + 1] = name end
      end
      write_definition(schedule, due, name, definition)
      written = written + 1
    else
      if not rcall('ZSCORE', due, name) then
        rcall('ZADD', due, 0, name)
      end
      unchanged = unchanged + 1
    end
    if static then
      rcall('SADD', statics, name)
      rcall('HSET', static_digest, name, short_digest(definition))
    end
  end
end
return {written, unchanged, skipped, overwritten}
