--[[
  Multi-field commands over a whole list, in slices that stay within Lua's unpack limit.

  each_slice(list, fn)        calls fn(unpack(slice)) for each slice of up to SLICE values
  multi(command, key, names)  one reply value per name, from `command key name...` run slice by slice
]]
local SLICE = 1000
local function each_slice(list, fn)
  for first = 1, #list, SLICE do
    fn(unpack(list, first, math.min(first + SLICE - 1, #list)))
  end
end
local function multi(command, key, names)
  local values = {}
  each_slice(names, function(...)
    local part = redis.call(command, key, ...)
    for j = 1, #part do values[#values + 1] = part[j] end
  end)
  return values
end
