--[[
  Add or replace definitions and make beat look at them now.

  A changed or new definition gets score 0 in {T}:due; an unchanged one keeps
  its score. In "static" mode (entries from beat_schedule) a name that
  already exists as a dynamic entry is skipped, and written names join
  {T}:statics. In "new" mode nothing is written if any name exists: those
  names come back as skipped (an add never replaces an entry).

  KEYS[1]  {T}:schedule  hash
  KEYS[2]  {T}:due       zset
  KEYS[3]  {T}:statics   set

  ARGV[1]  "static", "dynamic" or "new"
  ARGV[2..] pairs: name, definition JSON

  Returns  {written, unchanged, skipped name, ...}
]]
local schedule, due, statics = KEYS[1], KEYS[2], KEYS[3]
local rcall = redis.call
local static = ARGV[1] == 'static'

local written, unchanged, skipped = 0, 0, {}
if ARGV[1] == 'new' then
  for i = 2, #ARGV, 2 do
    if rcall('HEXISTS', schedule, ARGV[i]) == 1 then skipped[#skipped + 1] = ARGV[i] end
  end
  if #skipped > 0 then
    local out = {0, 0}
    for _, name in ipairs(skipped) do out[#out + 1] = name end
    return out
  end
end
for i = 2, #ARGV, 2 do
  local name, definition = ARGV[i], ARGV[i + 1]
  local old = rcall('HGET', schedule, name)
  if static and old and rcall('SISMEMBER', statics, name) == 0 then
    skipped[#skipped + 1] = name
  else
    if old ~= definition then
      rcall('HSET', schedule, name, definition)
      local score = rcall('ZSCORE', due, name)
      if not score or tonumber(score) > 0 then
        rcall('ZADD', due, 0, name)
      end
      written = written + 1
    else
      if not rcall('ZSCORE', due, name) then
        rcall('ZADD', due, 0, name)
      end
      unchanged = unchanged + 1
    end
    if static then rcall('SADD', statics, name) end
  end
end
local out = {written, unchanged}
for _, name in ipairs(skipped) do out[#out + 1] = name end
return out
