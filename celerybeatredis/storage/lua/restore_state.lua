--[[
  Give entries the run state they had elsewhere (import, migration), only
  where they have none yet: state beat already wrote here always wins, so
  running an import or a migration twice changes nothing. Key types and run
  counts are checked before the first write: all of the entries or none.

  Called before the definitions are written, so a beat that picks up a new
  entry already sees its restored state.

  KEYS[1]  {T}:total_run_count  hash
  KEYS[2]  {T}:last_run_at      hash

  ARGV     triples: name, total_run_count or "", last_run_at (ISO-8601) or ""

  Returns  number of entries whose state was restored
]]
local run_count, last_run = KEYS[1], KEYS[2]
local rcall = redis.call
--@include checks

local problem = wrong_type({run_count, last_run}, {'hash', 'hash'})
if problem then return redis.error_reply(problem) end
if #ARGV % 3 ~= 0 then return redis.error_reply('restore_state: three arguments per entry') end
problem = bad_counts_given('restore_state', ARGV, 3, 1)
if problem then return redis.error_reply(problem) end

local restored = 0
for i = 1, #ARGV, 3 do
  local name, count, last = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if rcall('HEXISTS', run_count, name) == 0 and rcall('HEXISTS', last_run, name) == 0 then
    if count ~= '' then rcall('HSET', run_count, name, count) end
    if last ~= '' then rcall('HSET', last_run, name, last) end
    if count ~= '' or last ~= '' then restored = restored + 1 end
  end
end
return restored
