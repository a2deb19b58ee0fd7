--[[
  Remove entries: definition, due time, run state, digest, quarantine, static mark and digest.

  KEYS[1]  {T}:schedule         hash
  KEYS[2]  {T}:due              zset
  KEYS[3]  {T}:total_run_count  hash
  KEYS[4]  {T}:last_run_at      hash
  KEYS[5]  {T}:digest           hash
  KEYS[6]  {T}:invalid          hash
  KEYS[7]  {T}:statics          set
  KEYS[8]  {T}:static_digest    hash

  ARGV     names

  Returns  number of definitions removed
]]
local rcall = redis.call
local removed = 0
for _, name in ipairs(ARGV) do
  removed = removed + rcall('HDEL', KEYS[1], name)
  rcall('ZREM', KEYS[2], name)
  for k = 3, 6 do rcall('HDEL', KEYS[k], name) end
  rcall('SREM', KEYS[7], name)
  rcall('HDEL', KEYS[8], name)
end
return removed
