--[[
  A worker started a run of an entry with an overlap mode: its marker lapses
  one timeout from now (the task may have waited in a queue).

  Only the marker of this very run is touched: a run that started after its
  marker lapsed (and another run was sent) leaves the newer marker alone.

  KEYS[1]  {T}:running  hash   name -> "<task id> <expires> <timeout>[ h]" (see policies/overlap.py)

  ARGV[1]  entry name
  ARGV[2]  the run's task id

  Returns  1 = renewed, 0 = no marker of this run
]]
local running = KEYS[1]
local name, task_id = ARGV[1], ARGV[2]
local rcall = redis.call
--@include checks

local problem = wrong_type({running}, {'hash'})
if problem then return redis.error_reply(problem) end
local mark = rcall('HGET', running, name)
if not mark then return 0 end
local found, _, timeout, rest = string.match(mark, '^(%S+) (%S+) (%S+)(.*)$')
if found ~= task_id or not tonumber(timeout) then return 0 end
local t = rcall('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
rcall('HSET', running, name, string.format('%s %.3f %s%s', found, now + tonumber(timeout), timeout, rest))
return 1
