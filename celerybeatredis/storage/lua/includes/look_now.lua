--[[
  look_now(due, name)  have beat look at an entry now: score 0, unless it is
                       due already (0) or asked to run now (-1), which it keeps
]]
local function look_now(due, name)
  local score = redis.call('ZSCORE', due, name)
  if not score or tonumber(score) > 0 then
    redis.call('ZADD', due, 0, name)
  end
end
