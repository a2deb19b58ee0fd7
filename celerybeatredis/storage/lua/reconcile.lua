--[[
  One bounded step of the reconciler, which finds edits made without the API.

  Scans a slice of {T}:schedule: an entry missing from {T}:due, or whose
  definition's SHA-1 does not start with the digits in {T}:digest, gets score 0
  ("look now"). Scans a slice of {T}:due: a name with no definition left is
  dropped from every index. The cursors live in {T}:meta, so several beats
  share one pass. Key types are checked before the first write.

  KEYS[1]  {T}:schedule         hash
  KEYS[2]  {T}:due              zset
  KEYS[3]  {T}:digest           hash
  KEYS[4]  {T}:meta             hash   reconcile_schedule_cursor, reconcile_due_cursor
  KEYS[5]  {T}:total_run_count  hash
  KEYS[6]  {T}:last_run_at      hash
  KEYS[7]  {T}:invalid          hash
  KEYS[8]  {T}:history          hash   (left alone when it is not a hash)
  KEYS[9]  {T}:synced           hash   set when beat_schedule was synced; only read here

  ARGV[1]  COUNT hint for each scan

  Returns  {definitions seen, entries poked, due names seen, entries dropped,
            1 if the schedule pass wrapped around else 0,
            1 if {T}:synced exists else 0 (gone: the schedule's data was lost)}
]]
local schedule, due, digest, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local run_count, last_run, invalid, history, synced = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local count = tonumber(ARGV[1])
local rcall = redis.call
--@include each_slice
--@include history
--@include checks

local problem = wrong_type({schedule, due, digest, meta, run_count, last_run, invalid},
                           {'hash', 'zset', 'hash', 'hash', 'hash', 'hash', 'hash'})
if problem then return redis.error_reply(problem) end
if not count or count < 1 then return redis.error_reply(bad_argument('reconcile', 1, 'must be a count, at least 1')) end

local hcursor = rcall('HGET', meta, 'reconcile_schedule_cursor') or '0'
local zcursor = rcall('HGET', meta, 'reconcile_due_cursor') or '0'

local page = rcall('HSCAN', schedule, hcursor, 'COUNT', count)
local fields = page[2]
local names = {}
for i = 1, #fields, 2 do names[#names + 1] = fields[i] end
local seen, poked = #names, 0
local scores, digests = multi('ZMSCORE', due, names), multi('HMGET', digest, names)
local look = {}
for j = 1, #names do
  local score, stored = scores[j], digests[j]
  -- The stored digest starts with the definition's SHA-1 in hex, whole or its first 12 digits.
  local sha = stored and string.match(stored, '^%x+')
  local fresh = sha and #sha >= 12 and string.sub(redis.sha1hex(fields[2 * j]), 1, #sha) == sha
  if not score or (not fresh and tonumber(score) > 0) then
    look[#look + 1] = 0
    look[#look + 1] = names[j]
    poked = poked + 1
  end
end
each_slice(look, function(...) rcall('ZADD', due, ...) end)

local zseen, dropped = 0, 0
local zpage = rcall('ZSCAN', due, zcursor, 'COUNT', count)
for i = 1, #zpage[2], 2 do
  local name = zpage[2][i]
  zseen = zseen + 1
  if rcall('HEXISTS', schedule, name) == 0 then
    rcall('ZREM', due, name)
    rcall('HDEL', run_count, name)
    rcall('HDEL', last_run, name)
    rcall('HDEL', digest, name)
    rcall('HDEL', invalid, name)
    history_drop(history, {name})
    dropped = dropped + 1
  end
end

rcall('HSET', meta, 'reconcile_schedule_cursor', page[1], 'reconcile_due_cursor', zpage[1])
local wrapped = 0
if page[1] == '0' then wrapped = 1 end
return {seen, poked, zseen, dropped, wrapped, rcall('EXISTS', synced)}
