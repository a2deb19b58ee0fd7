--[[
  Undo the run of entries whose task could not be published.

  Only entries whose score is still the one commit.lua wrote are touched:
  the run count goes back down, last_run_at goes back, and the entry is due
  again at the retry score. With a reason, the entry is also quarantined
  (its task cannot be sent as defined; the retry score is then "inf").
  The run's history record (the one whose sent time is the stamp given)
  becomes a publish error ("e") and the sent (and missed) counters go back
  down, whatever the score: a run not sent is never counted as sent, even
  when another beat or a user changed the entry meanwhile.

  KEYS[1]  {T}:due              zset
  KEYS[2]  {T}:total_run_count  hash
  KEYS[3]  {T}:last_run_at      hash
  KEYS[4]  {T}:invalid          hash
  KEYS[5]  {T}:history          hash
  KEYS[6]  {T}:running          hash   the run's marker (policies/overlap.py) goes: the run was never sent

  ARGV     six values per entry:
           name, committed score, retry score, previous last_run_at ("" = none),
           quarantine reason ("" = none), the run's history stamp ("" = no record)

  Key types and scores are checked before the first write. An entry whose
  stored total_run_count is not an integer cannot be counted back: it is
  quarantined by name instead (score inf, reason in {T}:invalid).

  Returns  {1, 0 or -1, ...} one per entry: 1 = reverted, 0 = changed meanwhile,
           -1 = quarantined here
]]
local due, run_count, last_run, invalid, history, running = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local rcall = redis.call
--@include history
--@include checks

local problem = wrong_type({due, run_count, last_run, invalid, running}, {'zset', 'hash', 'hash', 'hash', 'hash'})
if problem then return redis.error_reply(problem) end
if #ARGV % 6 ~= 0 then return redis.error_reply('revert: six arguments per entry') end
for i = 1, #ARGV, 6 do
  if not is_score(ARGV[i + 1]) then return redis.error_reply(bad_argument('revert', i + 1, 'must be a score')) end
  if not is_score(ARGV[i + 2]) then return redis.error_reply(bad_argument('revert', i + 2, 'must be a score')) end
end

-- The record of the run sent at stamp (newer runs of another beat may come first) becomes "e", uncounted.
local function unsent(name, stamp)
  local stored = stamp ~= '' and history_fields(history, {name})
  if not (stored and stored[1]) then return end
  local sent, skipped, missed, records, failure = history_read(stored[1])
  local at = history_find(records, stamp)
  if at then
    if string.sub(records, at, at) == 'm' then missed = missed - 1 end
    rcall('HSET', history, name, history_field(math.max(sent - 1, 0), skipped, math.max(missed, 0),
          string.sub(records, 1, at - 1) .. 'e' .. string.sub(records, at + 1), failure))
  end
end

local out = {}
for i = 1, #ARGV, 6 do
  local name, committed, retry, previous_last, reason = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local current = rcall('ZSCORE', due, name)
  local count = current and tonumber(current) == tonumber(committed) and rcall('HGET', run_count, name)
  if count and not is_integer(count) then
    rcall('ZADD', due, 'inf', name)
    rcall('HSET', invalid, name, bad_count_reason(name, run_count, count))
    out[#out + 1] = -1
  elseif current and tonumber(current) == tonumber(committed) then
    rcall('ZADD', due, retry, name)
    rcall('HDEL', running, name)
    if rcall('HINCRBY', run_count, name, -1) <= 0 then
      rcall('HDEL', run_count, name)
    end
    if previous_last == '' then
      rcall('HDEL', last_run, name)
    else
      rcall('HSET', last_run, name, previous_last)
    end
    if reason ~= '' then
      rcall('HSET', invalid, name, reason)
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  unsent(name, ARGV[i + 5])
end
return out
