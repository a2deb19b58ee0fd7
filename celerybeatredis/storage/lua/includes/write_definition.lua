--[[
  write_definition(schedule, due, name, definition)  store an entry's new
                       definition and have beat look at it now (look_now)
]]
--@include look_now
local function write_definition(schedule, due, name, definition)
  redis.call('HSET', schedule, name, definition)
  look_now(due, name)
end
