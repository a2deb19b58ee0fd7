--[[
  Claim up to a batch of due entries and return what the scheduler needs.

  An entry is due when its score in {T}:due is <= now. Claiming moves its
  score to now + lease, so no other beat can claim it; commit.lua later
  checks that the score is still that lease (compare-and-set).
  Entries whose definition is gone are dropped from every index.

  KEYS[1]  {T}:due              zset   name -> next due time
  KEYS[2]  {T}:schedule         hash   name -> definition JSON
  KEYS[3]  {T}:total_run_count  hash   name -> integer
  KEYS[4]  {T}:last_run_at      hash   name -> ISO-8601
  KEYS[5]  {T}:digest           hash   name -> "<sha1> <anchor>"
  KEYS[6]  {T}:invalid          hash   name -> reason

  ARGV[1]  batch size (most entries claimed)
  ARGV[2]  lease in seconds
  ARGV[3]  now in Unix seconds, or "" for the server's TIME

  Returns  {now, lease, next_score or "", removed, name, score, definition,
            total_run_count or false, last_run_at or false, digest or false, ...}
           six values per claimed entry; next_score is the lowest score left
           after the claim.
]]
local due, schedule, run_count, last_run, digest, invalid = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local rcall = redis.call

local now = tonumber(ARGV[3])
if not now then
  local t = rcall('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local now_s = string.format('%.6f', now)
local lease = string.format('%.6f', now + tonumber(ARGV[2]))

local picked = rcall('ZRANGEBYSCORE', due, '-inf', now_s, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
local out = {now_s, lease, '', 0}
local removed = 0
for i = 1, #picked, 2 do
  local name = picked[i]
  local definition = rcall('HGET', schedule, name)
  if definition then
    rcall('ZADD', due, lease, name)
    out[#out + 1] = name
    out[#out + 1] = picked[i + 1]
    out[#out + 1] = definition
    out[#out + 1] = rcall('HGET', run_count, name)
    out[#out + 1] = rcall('HGET', last_run, name)
    out[#out + 1] = rcall('HGET', digest, name)
  else
    rcall('ZREM', due, name)
    rcall('HDEL', run_count, name)
    rcall('HDEL', last_run, name)
    rcall('HDEL', digest, name)
    rcall('HDEL', invalid, name)
    removed = removed + 1
  end
end

local head = rcall('ZRANGE', due, 0, 0, 'WITHSCORES')
if head[2] then
  out[3] = head[2]
end
out[4] = removed
return out
