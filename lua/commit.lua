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
  KEYS[6]  {T}:history          hash   name -> "<sent>,<skipped>,<missed>;<record>..." (see history.py)
  KEYS[7]  {T}:pending          zset   name -> when its run is sent again (at-least-once delivery)
  KEYS[8]  {T}:pending_ids      hash   name -> that run's task id

  ARGV[1]  history depth: records kept per entry (0 = history off: KEYS[6] untouched)
  ARGV     then ten values per entry:
           name, lease, next score ("inf" = never), ran ("1"/"0"),
           run time ISO-8601 (when ran), digest value ("" = leave it as it is),
           invalid reason ("" = valid),
           seed total_run_count ("" = none), seed last_run_at ("" = none),
           history record (14 characters, "" = none)
  ARGV     then, optionally, one more: the runs' task messages (``exactly-once`` delivery), a JSON list of
           [plan index (1-based), "lpush" | "pexpire" | "publish", key, argument], or their pending records
           (``at-least-once``), [plan index, "pending", task id, resend time] (see includes/messages.lua);
           the commands of a run are run only when this call commits it (not when it finds it committed by
           an earlier send of the same call), after the commit's own writes

  History is written in this call (no round trip of its own): the record goes
  first, the oldest past the depth are cut off, the counters go up. A
  history key that is not a hash, or a field that does not read as history,
  never stops the commit: the key is left alone, the field starts afresh.

  Returns  {1 or 0, ...} one per entry: 1 = committed (now or by a resent
           call), 0 = lease lost; an error, with nothing written, when the
           messages are malformed or a queue they go to is not a list
]]
local due, run_count, last_run, digest, invalid, history = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local pending, pending_ids = KEYS[7], KEYS[8]
local rcall = redis.call
--@include each_slice
--@include history
--@include messages

local depth = tonumber(ARGV[1]) or 0
local names = {}
for i = 2, #ARGV - 9, 10 do names[#names + 1] = ARGV[i] end
local messages, fresh = nil, {}
if #ARGV % 10 == 2 then
  local problem
  messages, problem = messages_read(ARGV[#ARGV])
  if not messages then return redis.error_reply(problem) end
end
local scores = multi('ZMSCORE', due, names)

local out = {}
local next_scores, runs, digests, valid, reasons, noted, records = {}, {}, {}, {}, {}, {}, {}
for j = 1, #names do
  local i = 10 * j - 8
  local name, lease, next_score, ran, run_at = names[j], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local new_digest, reason, seed_count, seed_last = ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
  local current = scores[j]
  if current and tonumber(current) == tonumber(lease) then
    next_scores[#next_scores + 1] = next_score
    next_scores[#next_scores + 1] = name
    if seed_count ~= '' then rcall('HSETNX', run_count, name, seed_count) end
    if seed_last ~= '' then rcall('HSETNX', last_run, name, seed_last) end
    if ran == '1' then
      rcall('HINCRBY', run_count, name, 1)
      runs[#runs + 1] = name
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
