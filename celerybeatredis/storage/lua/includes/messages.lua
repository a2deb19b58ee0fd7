--[[
  Task messages a commit writes with its runs (``exactly-once`` delivery): kombu's Redis commands, captured by
  beat (delivery/redis_messages.py), run here so a run and its message are written together or not at all.

  messages_read(text)   the list of {plan index, command, key, argument} decoded from JSON and checked, or
                        nil and the reason: a command other than lpush / pexpire / publish, or a queue key that
                        holds something other than a list (LPUSH would fail there, after the commit's writes)
  messages_write(list, fresh, names, pending, pending_ids)
                        runs each command whose plan index is true in fresh (the runs this call committed); a
                        "pending" item [index, "pending", task id, resend time] records the run of names[index]
                        in the pending zset and its task id (with its fire time and stamp) in the pending_ids
                        hash (at-least-once delivery)
]]
local MESSAGE_COMMANDS = {lpush = 'LPUSH', pexpire = 'PEXPIRE', publish = 'PUBLISH', pending = 'ZADD'}
local function messages_read(text)
  local ok, list = pcall(cjson.decode, text)
  if not ok or type(list) ~= 'table' then return nil, 'messages: the task messages must be a JSON list' end
  local checked = {}
  for k = 1, #list do
    local m = list[k]
    if type(m) ~= 'table' or type(m[1]) ~= 'number' or not MESSAGE_COMMANDS[m[2]] or type(m[3]) ~= 'string'
        or m[4] == nil then
      return nil, 'messages: item ' .. k .. ' is not [plan index, lpush|pexpire|publish|pending, key, argument]'
    end
    if m[2] == 'pending' and not tonumber(m[4]) then
      return nil, 'messages: item ' .. k .. ' has no resend time'
    end
    if m[2] == 'lpush' and not checked[m[3]] then
      local kind = redis.call('TYPE', m[3])['ok']
      if kind ~= 'list' and kind ~= 'none' then
        return nil, 'WRONGTYPE queue ' .. m[3] .. ' is a ' .. kind .. ', not a list: no run of this batch was committed'
      end
      checked[m[3]] = true
    end
  end
  return list
end
local function messages_write(list, fresh, names, pending, pending_ids)
  for k = 1, #list do
    local m = list[k]
    if fresh[m[1]] then
      if m[2] == 'pending' then
        redis.call('ZADD', pending, tostring(m[4]), names[m[1]])
        redis.call('HSET', pending_ids, names[m[1]], m[3])
      else
        redis.call(MESSAGE_COMMANDS[m[2]], m[3], tostring(m[4]))
      end
    end
  end
end
