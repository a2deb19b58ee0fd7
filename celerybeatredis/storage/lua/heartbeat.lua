--[[
  Record one beat's heartbeat, and forget the beats gone silent.

  The record's "last_tick" is set to the server's TIME, the clock every beat
  and `celerybeatredis status` share. Redis before 7.4 has no per-field TTL:
  each write drops the fields whose last tick is more than ARGV[3] seconds
  old, and the key expires ARGV[3] seconds after the last write, so the hash
  holds only the beats heard from lately.

  KEYS[1]  {T}:beats  hash  beat id -> JSON record

  ARGV[1]  this beat's id
  ARGV[2]  its record (a JSON object)
  ARGV[3]  seconds after its last tick a beat is forgotten (whole number, at least 1)

  Returns  number of beats forgotten
]]
local key, id, ttl = KEYS[1], ARGV[1], tonumber(ARGV[3])
local rcall = redis.call
--@include checks
-- Everything that can fail is checked before the first write.
local problem = wrong_type({key}, {'hash'})
if problem then return redis.error_reply(problem) end
if not ttl or ttl < 1 then
  return redis.error_reply('heartbeat: ARGV[3] must be a number of seconds, at least 1')
end
local ok, record = pcall(cjson.decode, ARGV[2])
if not ok or type(record) ~= 'table' then
  return redis.error_reply('heartbeat: ARGV[2] must be a JSON object')
end
local t = rcall('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
record['last_tick'] = now
local before = now - ttl

local stale = {}
local fields = rcall('HGETALL', key)
for i = 1, #fields, 2 do
  local ok, beat = pcall(cjson.decode, fields[i + 1])
  local last = ok and type(beat) == 'table' and tonumber(beat['last_tick'] or '') or nil
  if fields[i] ~= id and (last == nil or last < before) then
    stale[#stale + 1] = fields[i]
  end
end
for _, field in ipairs(stale) do
  rcall('HDEL', key, field)
end
rcall('HSET', key, id, cjson.encode(record))
rcall('EXPIRE', key, ttl)
return #stale
