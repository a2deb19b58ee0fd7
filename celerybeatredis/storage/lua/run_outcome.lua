--[[
  A worker reports how a run sent by beat went: its history record (the one whose sent time is the stamp given)
  gets the outcome and the runtime; a failure is also kept as the entry's last failure, after the records. The
  schedule's counters of reported runs (/metrics) count every report, kept record or not.

  A record no longer kept (pushed out by newer runs), a field that does not read as history and a history key
  of another type are left alone. A retry (the run comes back with the same task id) does not replace an
  outcome that ends the run: the worker may report them in any order.

  KEYS[1]  {T}:history   hash   name -> run history (see storage/history.py)
  KEYS[2]  {T}:outcomes  hash   result letter -> runs reported so; "ms" -> their runtime summed

  ARGV[1]  entry name
  ARGV[2]  the run's history stamp (8 characters, the periodic_task_run header)
  ARGV[3]  outcome: "k" succeeded, "f" failed, "r" retried, "v" revoked
  ARGV[4]  runtime, 2 characters (storage/history.py, runtime_code)
  ARGV[5]  for a failure: "<exception type>: <first line>" (kept after "|<stamp> ")

  Returns  1 = written, 0 = no record of this run
]]
local history, outcomes = KEYS[1], KEYS[2]
local name, stamp, outcome, runtime, error_text = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local rcall = redis.call
--@include history
--@include checks

if not string.match(stamp, '^[0-9a-z]+$') or #stamp ~= 8 then
  return redis.error_reply(bad_argument('run_outcome', 2, 'must be a history stamp'))
end
if not string.match(outcome, '^[kfrv]$') then
  return redis.error_reply(bad_argument('run_outcome', 3, 'must be k, f, r or v'))
end
if not string.match(runtime, '^[0-9a-z][0-9a-z]$') then
  return redis.error_reply(bad_argument('run_outcome', 4, 'must be a runtime of 2 characters'))
end
if string.find(error_text, '|', 1, true) then
  return redis.error_reply(bad_argument('run_outcome', 5, 'must not hold "|"'))
end
local problem = wrong_type({outcomes}, {'hash'})
if problem then return redis.error_reply(problem) end
local stored = history_fields(history, {name})
rcall('HINCRBY', outcomes, outcome, 1)
rcall('HINCRBY', outcomes, 'ms', math.floor(math.exp(tonumber(runtime, 36) / 60) - 1 + 0.5))
if not (stored and stored[1]) then return 0 end
local sent, skipped, missed, records, failure = history_read(stored[1])
local at = history_find(records, stamp)
if not at then return 0 end
local was = string.sub(records, at + 14, at + 14)
if outcome == 'r' and was ~= '-' and was ~= 'r' then return 0 end
if outcome == 'f' then failure = '|' .. stamp .. ' ' .. error_text end
records = string.sub(records, 1, at + 13) .. outcome .. runtime .. string.sub(records, at + RECORD)
rcall('HSET', history, name, history_field(sent, skipped, missed, records, failure))
return 1
