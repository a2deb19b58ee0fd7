--[[
  Make entries due at once, as a run: score -1 means "dispatch now".

  KEYS[1]  {T}:schedule  hash
  KEYS[2]  {T}:due       zset

  ARGV     names

  Key types are checked before the first write: all of the names or none.

  Returns  {1 or 0, ...} one per name: 0 = no such entry
]]
local schedule, due = KEYS[1], KEYS[2]
local rcall = redis.call
--@include checks

local problem = wrong_type({schedule, due}, {'hash', 'zset'})
if problem then return redis.error_reply(problem) end
local out = {}
for i, name in ipairs(ARGV) do
  if rcall('HEXISTS', schedule, name) == 1 then
    rcall('ZADD', due, -1, name)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
