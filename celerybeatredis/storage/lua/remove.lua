--[[
  Remove entries: definition, due time, run state, digest, quarantine, static mark and digest, run history,
  run marker and failure count.

  KEYS[1]  {T}:schedule         hash
  KEYS[2]  {T}:due              zset
  KEYS[3]  {T}:total_run_count  hash
  KEYS[4]  {T}:last_run_at      hash
  KEYS[5]  {T}:digest           hash
  KEYS[6]  {T}:invalid          hash
  KEYS[7]  {T}:statics          set
  KEYS[8]  {T}:static_digest    hash
  KEYS[9]  {T}:history          hash
  KEYS[10] {T}:running          hash   (a run in progress reported later finds no marker: nothing happens)
  KEYS[11] {T}:failures         hash

  ARGV     names

  Key types are checked before the first write ({T}:history is left alone
  when it is not a hash): all of the names or none.

  Returns  number of definitions removed
]]
local schedule, due, statics, static_digest = KEYS[1], KEYS[2], KEYS[7], KEYS[8]
local rcall = redis.call
--@include history
--@include checks
local problem = wrong_type({schedule, due, KEYS[3], KEYS[4], KEYS[5], KEYS[6], statics, static_digest, KEYS[10], KEYS[11]},
                           {'hash', 'zset', 'hash', 'hash', 'hash', 'hash', 'set', 'hash', 'hash', 'hash'})
if problem then return redis.error_reply(problem) end
local state = {KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[10], KEYS[11]}  -- run state, digest, invalid, running, failures

local removed = 0
for _, name in ipairs(ARGV) do
  removed = removed + rcall('HDEL', schedule, name)
  rcall('ZREM', due, name)
  for _, key in ipairs(state) do rcall('HDEL', key, name) end
  rcall('SREM', statics, name)
  rcall('HDEL', static_digest, name)
end
history_drop(KEYS[9], ARGV)
return removed
