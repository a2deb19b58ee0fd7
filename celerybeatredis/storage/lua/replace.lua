--[[
  Replace definitions only where they still hold the text the caller read
  (compare-and-set), so an edit never overwrites a change made meanwhile.

  A replaced definition gets score 0 in {T}:due ("look now") unless it is
  already due now (0) or asked to run now (-1), as in upsert.lua.
  Key types are checked before the first write.

  KEYS[1]  {T}:schedule  hash
  KEYS[2]  {T}:due       zset

  ARGV     triples: name, expected definition JSON, new definition JSON

  Returns  {code, ...} one per triple: 1 = replaced, 0 = changed meanwhile,
           -1 = no such entry
]]
local schedule, due = KEYS[1], KEYS[2]
local rcall = redis.call
--@include write_definition
--@include checks

local problem = wrong_type({schedule, due}, {'hash', 'zset'})
if problem then return redis.error_reply(problem) end
if #ARGV % 3 ~= 0 then return redis.error_reply('replace: three arguments per entry') end

local out = {}
for i = 1, #ARGV, 3 do
  local name, expected, definition = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local old = rcall('HGET', schedule, name)
  if not old then
    out[#out + 1] = -1
  elseif old ~= expected then
    out[#out + 1] = 0
  else
    if old ~= definition then
      write_definition(schedule, due, name, definition)
    end
    out[#out + 1] = 1
  end
end
return out
