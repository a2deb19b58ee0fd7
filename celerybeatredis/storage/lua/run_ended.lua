--[[
  A worker ended a run sent by beat: its marker goes (a run held behind it
  becomes due at once), and the entry's consecutive failures are counted.

  Only the marker of this very run goes; the due score is changed only for an
  entry still in the due index (XX), so a removed entry stays removed. A held
  run made due overrides a beat's claim in progress: that beat's commit is
  refused and the entry is decided afresh.

  KEYS[1]  {T}:running   hash   name -> run marker (see policies/overlap.py)
  KEYS[2]  {T}:due       zset
  KEYS[3]  {T}:failures  hash   name -> consecutive failed runs

  ARGV[1]  entry name
  ARGV[2]  the run's task id
  ARGV[3]  "1" = the run has a marker to drop, "0" = none
  ARGV[4]  outcome: "ok", "failed" or "other" (neither: leaves the count alone)
  ARGV[5]  failures that pause the entry (0 = do not count); the count is
           reset when it gets there, so one worker reports the pause

  Returns  {marker: 0 none of this run, 1 dropped, 2 dropped and held run made due;
            consecutive failures after this run (0 when not counted or reset)}
]]
local running, due, failures = KEYS[1], KEYS[2], KEYS[3]
local name, task_id, has_marker, outcome, limit = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]) or 0
local rcall = redis.call
--@include checks

local problem = wrong_type({running, due, failures}, {'hash', 'zset', 'hash'})
if problem then return redis.error_reply(problem) end
local mark = has_marker == '1' and rcall('HGET', running, name)
local held = mark and rcall('ZSCORE', due, name)
local prior = limit > 0 and tonumber(rcall('HGET', failures, name)) or 0

local dropped = 0
if mark and string.match(mark, '^(%S+) ') == task_id then
  rcall('HDEL', running, name)
  dropped = 1
  if held and string.sub(mark, -2) == ' h' then
    rcall('ZADD', due, 'XX', 0, name)
    dropped = 2
  end
end
local count = 0
if limit > 0 then
  if outcome == 'ok' then
    rcall('HDEL', failures, name)
  elseif outcome == 'failed' then
    count = prior + 1
    if count >= limit then
      rcall('HDEL', failures, name)
    else
      rcall('HSET', failures, name, count)
    end
  end
end
return {dropped, count}
