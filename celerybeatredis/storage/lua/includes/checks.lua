--[[
  Checks a script makes before its first write. Redis does not roll back a
  script that fails half-way, so a script finds everything that could make a
  command fail (a key of another type, a value that is not a number) first,
  and then either does all of its work or none.

  wrong_type(keys, kinds)      "WRONGTYPE <key> is a <type>, not a <kind>" for the first key that exists
                               with another type than kinds[i] ("hash", "zset", "set"), else nil
  is_integer(value)            whether value is text HINCRBY takes as a 64-bit integer, with room to go one up or down
  is_score(value)              whether value is text ZADD takes as a score ("inf", "-1", "1.5e9", not "nan")
  bad_argument(script, i, why) the error text for argument i of script, so a caller's mistake is one clear line
  bad_count_reason(name, key, value)  the quarantine reason of an entry whose stored run count is not an integer
  bad_counts_given(script, args, stride, at)  the error text for the first entry of args (stride values each, its
                               name first) whose run count (at values after the name) is neither "" nor an integer
]]
local function wrong_type(keys, kinds)
  for i = 1, #keys do
    local kind = redis.call('TYPE', keys[i])['ok']
    if kind ~= 'none' and kind ~= kinds[i] then
      return 'WRONGTYPE ' .. keys[i] .. ' is a ' .. kind .. ', not a ' .. kinds[i]
    end
  end
  return nil
end
local function is_integer(value)
  if type(value) ~= 'string' then return false end
  local digits = string.match(value, '^-?([1-9]%d*)$') or (value == '0' and '0')
  if not digits then return false end
  -- Same length compares as text: 2^63 - 2 is the largest count one more run still fits.
  return #digits < 19 or (#digits == 19 and digits <= '9223372036854775806')
end
local function is_score(value)
  if value == 'inf' or value == '+inf' or value == '-inf' then return true end
  local number = tonumber(value)
  return number ~= nil and number == number
end
local function bad_argument(script, i, why)
  return script .. ': argument ' .. i .. ' ' .. why
end
local function bad_count_reason(name, key, value)
  return "entry '" .. name .. "': field 'total_run_count': " .. key .. " holds '" .. string.sub(value, 1, 40)
    .. "', not an integer; set it right (or HDEL it), then make the entry due (ZADD ... 0)"
end
local function bad_counts_given(script, args, stride, at)
  for i = 1, #args, stride do
    local count = args[i + at]
    if count ~= '' and not is_integer(count) then
      return script .. ": entry '" .. args[i] .. "': field 'total_run_count': '" .. string.sub(count, 1, 40)
        .. "' is not an integer"
    end
  end
  return nil
end
