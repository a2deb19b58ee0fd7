--[[
  Commit a claimed batch: next due times, run state, digests, quarantine.

  Each entry is written only if its score is still the lease that claim.lua
  set (compare-and-set); otherwise another beat or a user changed it since,
  and the entry is left alone. A run this very call already committed (the
  client resent it after a dropped connection lost the reply) is reported
  committed again, so its task is still sent once. Names are unique within
  a call (claim.lua returns each once). The writes go out as one multi-field
  command per key (ZMSCORE, so Redis 6.2+).

  KEYS[1]  {T}:due              zset
  KEYS[2]  {T}:total_run_count  hash
  KEYS[3]  {T}:last_run_at      hash
  KEYS[4]  {T}:digest           hash
  KEYS[5]  {T}:invalid          hash
  KEYS[6]  {T}:history          hash   name -> "<sent>,<skipped>,<missed>;<record>..." (see storage/history.py)
  KEYS[7]  {T}:running          hash   name -> run marker (see policies/overlap.py)
  KEYS[8]  {T}:pending          zset   name -> when its run is sent again (at-least-once delivery)
  KEYS[9]  {T}:pending_ids      hash   name -> "<task id> <fire time> <stamp>" of that run

  ARGV[1]  history depth: records kept per entry (0 = history off: KEYS[6] untouched)
  ARGV     then eleven values per entry:
           name, lease, next score ("inf" = never), ran ("1"/"0"),
           run time ISO-8601 (when ran; not ran, it is written as the last run
           without counting one: missed runs let go), digest value ("" = leave it as it is),
           invalid reason ("" = valid),
           seed total_run_count ("" = none), seed last_run_at ("" = none),
           history record(s) (17 characters each, newest first, then "+N" for
           N more skipped runs; "" = none),
           run marker ("" = none; " h" = hold one run behind the marker in
           place, or, if it is gone, make the entry due at once: score 0)
  ARGV     then, optionally, one more: the runs' task messages (``exactly-once`` delivery), a JSON list of
           [plan index (1-based), "lpush" | "pexpire" | "publish", key, argument], or their pending records
           (``at-least-once``), [plan index, "pending", task id, resend time] (see includes/messages.lua);
           the commands of a run are run only when this call commits it (not when it finds it committed by
           an earlier send of the same call), after the commit's own writes

  History is written in this call (no round trip of its own): the record goes
  first, the oldest past the depth are cut off, the counters go up. A
  history key that is not a hash, or a field that does not read as history,
  never stops the commit: the key is left alone, the field starts afresh.

  Everything that can fail is checked before the first write (key types,
  scores, run counts), so the call does all of its work or none. An entry
  that would run while its stored total_run_count is not an integer is
  quarantined by name (score inf, reason in {T}:invalid); the rest go on.

  Returns  {1, 0 or -1, ...} one per entry: 1 = committed (now or by a resent
           call), 0 = lease lost, -1 = quarantined here (its reason is in {T}:invalid);
           an error, with nothing written, when the messages are malformed or a
           queue they go to is not a list
]]
local due, run_count, last_run, digest, invalid, history = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local running, pending, pending_ids = KEYS[7], KEYS[8], KEYS[9]
local rcall = redis.call
--@include each_slice
--@include history
--@include checks
--@include messages

local problem = wrong_type({due, run_count, last_run, digest, invalid, running, pending, pending_ids},
                           {'zset', 'hash', 'hash', 'hash', 'hash', 'hash', 'zset', 'hash'})
if problem then return redis.error_reply(problem) end
local depth = tonumber(ARGV[1])
if not depth or depth < 0 then return redis.error_reply(bad_argument('commit', 1, 'must be a history depth, 0 or more')) end
local with_messages = (#ARGV - 1) % 11 == 1
if (#ARGV - 1) % 11 > 1 then
  return redis.error_reply('commit: eleven arguments per entry after the first, then the messages or nothing')
end
local names = {}
for i = 2, #ARGV - 10, 11 do
  names[#names + 1] = ARGV[i]
  if not is_score(ARGV[i + 2]) then return redis.error_reply(bad_argument('commit', i + 2, 'must be a score')) end
  if ARGV[i + 7] ~= '' and not is_integer(ARGV[i + 7]) then
    return redis.error_reply(bad_argument('commit', i + 7, 'must be a run count'))
  end
end
local messages, fresh = nil, {}
if with_messages then
  messages, problem = messages_read(ARGV[#ARGV])
  if not messages then return redis.error_reply(problem) end
end
local scores, counts = multi('ZMSCORE', due, names), multi('HMGET', run_count, names)

local out = {}
local next_scores, runs, digests, valid, reasons, noted, records, marks = {}, {}, {}, {}, {}, {}, {}, {}
for j = 1, #names do
  local i = 11 * j - 9
  local name, lease, next_score, ran, run_at = names[j], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local new_digest, reason, seed_count, seed_last = ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
  local current = scores[j]
  local count = counts[j] or (seed_count ~= '' and seed_count) or nil
  if current and tonumber(current) == tonumber(lease) and ran == '1' and count and not is_integer(count) then
    -- Counting this run would fail the call: the entry is quarantined instead, and the others go on.
    next_scores[#next_scores + 1] = 'inf'
    next_scores[#next_scores + 1] = name
    reasons[#reasons + 1] = name
    reasons[#reasons + 1] = bad_count_reason(name, run_count, count)
    out[j] = -1
  elseif current and tonumber(current) == tonumber(lease) then
    local mark = ARGV[i + 10]
    if mark == ' h' then
      local held = rcall('HGET', running, name)
      if not held then
        next_score = '0'
      elseif string.sub(held, -2) ~= ' h' then
        rcall('HSET', running, name, held .. ' h')
      end
    elseif mark ~= '' then
      marks[#marks + 1] = name
      marks[#marks + 1] = mark
    end
    next_scores[#next_scores + 1] = next_score
    next_scores[#next_scores + 1] = name
    if seed_count ~= '' then rcall('HSETNX', run_count, name, seed_count) end
    if seed_last ~= '' then rcall('HSETNX', last_run, name, seed_last) end
    if ran == '1' then
      rcall('HINCRBY', run_count, name, 1)
      runs[#runs + 1] = name
      runs[#runs + 1] = run_at
    elseif run_at ~= '' then
      runs[#runs + 1] = name  -- missed runs let go (catchup): the schedule goes on from run_at, no run counted
      runs[#runs + 1] = run_at
    end
    if depth > 0 and ARGV[i + 9] ~= '' then
      noted[#noted + 1] = name
      records[#records + 1] = ARGV[i + 9]
    end
    if new_digest ~= '' then
      digests[#digests + 1] = name
      digests[#digests + 1] = new_digest
    end
    if reason ~= '' then
      reasons[#reasons + 1] = name
      reasons[#reasons + 1] = reason
    else
      valid[#valid + 1] = name
    end
    out[j] = 1
    fresh[j] = true
  elseif current and ran == '1' and tonumber(current) == tonumber(next_score)
      and rcall('HGET', last_run, name) == run_at then
    out[j] = 1
  else
    out[j] = 0
  end
end
each_slice(next_scores, function(...) rcall('ZADD', due, ...) end)
each_slice(runs, function(...) rcall('HSET', last_run, ...) end)
each_slice(digests, function(...) rcall('HSET', digest, ...) end)
each_slice(reasons, function(...) rcall('HSET', invalid, ...) end)
each_slice(marks, function(...) rcall('HSET', running, ...) end)
each_slice(valid, function(...) rcall('HDEL', invalid, ...) end)
local olds = #noted > 0 and history_fields(history, noted)
if olds then
  local fields = {}
  for k = 1, #noted do
    fields[#fields + 1] = noted[k]
    fields[#fields + 1] = history_add(olds[k], records[k], depth)
  end
  each_slice(fields, function(...) rcall('HSET', history, ...) end)
end
if messages then messages_write(messages, fresh, names, pending, pending_ids) end
return out
