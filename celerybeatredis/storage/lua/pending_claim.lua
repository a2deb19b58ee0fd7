--[[
  Take the runs whose beat never said the broker took them (at-least-once delivery), to send them again.

  Runs whose resend time has come are leased (their resend time moves to now + lease), so one beat sends
  each; they stay pending until pending_clear.lua removes them once the broker has taken them.

  KEYS[1]  {T}:pending          zset   name -> resend time
  KEYS[2]  {T}:pending_ids      hash   name -> "<task id> <fire time> <stamp>" (a bare task id from an older beat)
  KEYS[3]  {T}:schedule         hash   name -> definition JSON
  KEYS[4]  {T}:total_run_count  hash

  ARGV[1]  most runs to take
  ARGV[2]  lease seconds
  ARGV[3]  now, Unix seconds ("" = the server's clock)

  Returns  {now, name, task id or false, definition or false, total_run_count or false, ...}
]]
local pending, pending_ids, schedule, run_count = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local rcall = redis.call
--@include checks

local problem = wrong_type({pending, pending_ids, schedule, run_count}, {'zset', 'hash', 'hash', 'hash'})
if problem then return redis.error_reply(problem) end
if not tonumber(ARGV[1]) or tonumber(ARGV[1]) < 1 then
  return redis.error_reply(bad_argument('pending_claim', 1, 'must be a number of runs, 1 or more'))
end
if not tonumber(ARGV[2]) then return redis.error_reply(bad_argument('pending_claim', 2, 'must be a number of seconds')) end
if ARGV[3] ~= '' and not tonumber(ARGV[3]) then
  return redis.error_reply(bad_argument('pending_claim', 3, 'must be a Unix time or ""'))
end
local now = tonumber(ARGV[3])
if not now then
  local t = rcall('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local names = rcall('ZRANGEBYSCORE', pending, '-inf', now, 'LIMIT', 0, limit)
local out = {tostring(now)}
for _, name in ipairs(names) do
  out[#out + 1] = name
  out[#out + 1] = rcall('HGET', pending_ids, name)
  out[#out + 1] = rcall('HGET', schedule, name)
  out[#out + 1] = rcall('HGET', run_count, name)
end
for _, name in ipairs(names) do rcall('ZADD', pending, now + lease, name) end
return out
