--[[
  Claim up to a batch of due entries and return what the scheduler needs.

  An entry is due when its score in {T}:due is <= now. Claiming moves its
  score to now + lease, so no other beat can claim it; commit.lua later
  checks that the score is still that lease (compare-and-set).
  Entries whose definition is gone are dropped from every index. Every key
  is checked for its type before the first write, so a claim that fails
  leases nothing.

  KEYS[1]  {T}:due              zset   name -> next due time
  KEYS[2]  {T}:schedule         hash   name -> definition JSON
  KEYS[3]  {T}:total_run_count  hash   name -> integer
  KEYS[4]  {T}:last_run_at      hash   name -> ISO-8601
  KEYS[5]  {T}:digest           hash   name -> "<sha1 prefix>[ <anchor>]"
  KEYS[6]  {T}:invalid          hash   name -> reason
  KEYS[7]  {T}:history          hash   name -> run history (dropped with a gone entry; left alone if not a hash)
  KEYS[8]  {T}:running          hash   name -> run marker of an entry with an overlap mode (see policies/overlap.py)

  ARGV[1]  batch size (most entries claimed)
  ARGV[2]  lease in seconds
  ARGV[3]  now in Unix seconds, or "" for the server's TIME

  Returns  {now, lease, next_score or "", removed, name, score, definition,
            total_run_count or false, last_run_at or false, digest or false,
            run marker or false, ...}
           seven values per claimed entry (markers are read only while
           {T}:running exists); next_score is the lowest score of the
           entries not claimed (another beat's lease among them: when it ends,
           its entries may be claimed again).
]]
local due, schedule, run_count, last_run, digest, invalid = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local history, running = KEYS[7], KEYS[8]
local batch, lease_seconds, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rcall = redis.call
--@include each_slice
--@include history
--@include checks

local problem = wrong_type({due, schedule, run_count, last_run, digest, invalid, running},
                           {'zset', 'hash', 'hash', 'hash', 'hash', 'hash', 'hash'})
if problem then return redis.error_reply(problem) end
if not batch or batch < 1 or batch % 1 ~= 0 then return redis.error_reply(bad_argument('claim', 1, 'must be a whole number, at least 1')) end
if not lease_seconds or lease_seconds <= 0 then return redis.error_reply(bad_argument('claim', 2, 'must be a number of seconds above 0')) end
if ARGV[3] ~= '' and not now then return redis.error_reply(bad_argument('claim', 3, 'must be Unix seconds or ""')) end

if not now then
  local t = rcall('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local now_s = string.format('%.6f', now)
local lease = string.format('%.6f', now + lease_seconds)

local picked = rcall('ZRANGEBYSCORE', due, '-inf', now_s, 'WITHSCORES', 'LIMIT', 0, batch)
local out = {now_s, lease, '', 0}
local removed = 0

local names = {}
for i = 1, #picked, 2 do names[#names + 1] = picked[i] end
-- The claimed entries are the lowest by rank: the one after them is the next to look at.
local head = rcall('ZRANGE', due, #names, #names, 'WITHSCORES')
local definitions = multi('HMGET', schedule, names)
local live, gone, leased = {}, {}, {}
for j = 1, #names do
  if definitions[j] then
    live[#live + 1] = j
    leased[#leased + 1] = lease
    leased[#leased + 1] = names[j]
  else
    gone[#gone + 1] = names[j]
  end
end
if #live > 0 then
  each_slice(leased, function(...) rcall('ZADD', due, ...) end)
  local live_names = {}
  for k = 1, #live do live_names[k] = names[live[k]] end
  local counts, lasts = multi('HMGET', run_count, live_names), multi('HMGET', last_run, live_names)
  local digests = multi('HMGET', digest, live_names)
  local markers = rcall('EXISTS', running) == 1 and multi('HMGET', running, live_names) or {}
  for k = 1, #live do
    local j = live[k]
    out[#out + 1] = names[j]
    out[#out + 1] = picked[2 * j]
    out[#out + 1] = definitions[j]
    out[#out + 1] = counts[k]
    out[#out + 1] = lasts[k]
    out[#out + 1] = digests[k]
    out[#out + 1] = markers[k] or false
  end
end
if #gone > 0 then
  each_slice(gone, function(...) rcall('ZREM', due, ...) end)
  for _, key in ipairs({run_count, last_run, digest, invalid, running}) do
    each_slice(gone, function(...) rcall('HDEL', key, ...) end)
  end
  history_drop(history, gone)
  removed = #gone
end

if head[2] then
  out[3] = head[2]
end
out[4] = removed
return out
