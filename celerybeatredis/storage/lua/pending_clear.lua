--[[
  Forget pending runs the broker has taken (or that were put back unsent): at-least-once delivery.

  A run is forgotten only while its recorded task id is the one given, so a later run of the entry,
  committed meanwhile by another beat, stays pending.

  KEYS[1]  {T}:pending          zset
  KEYS[2]  {T}:pending_ids      hash   name -> "<task id> <fire time> <stamp>" (a bare task id from an older beat)

  ARGV     two values per run: name, task id

  Returns  the number of runs forgotten
]]
local pending, pending_ids = KEYS[1], KEYS[2]
local rcall = redis.call
--@include checks

local problem = wrong_type({pending, pending_ids}, {'zset', 'hash'})
if problem then return redis.error_reply(problem) end
if #ARGV % 2 ~= 0 then return redis.error_reply('pending_clear: two arguments per run (name, task id)') end
local cleared = 0
for i = 1, #ARGV, 2 do
  local value = rcall('HGET', pending_ids, ARGV[i])
  if value and string.match(value, '^%S+') == ARGV[i + 1] then
    rcall('HDEL', pending_ids, ARGV[i])
    rcall('ZREM', pending, ARGV[i])
    cleared = cleared + 1
  end
end
return cleared
