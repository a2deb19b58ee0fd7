--[[
  Extend the lease of a claimed batch its beat is still working on.

  Only entries whose score is still the lease held (compare-and-set) move to
  the new lease; an entry another beat or a user changed since is left as it
  is, and its commit fails as it would have. The new lease is the server's
  TIME plus the lease length, as in claim.lua.

  KEYS[1]  {T}:due  zset  name -> next due time

  ARGV[1]  the lease held (the score claim.lua or the last renewal set)
  ARGV[2]  lease in seconds
  ARGV[3..] names

  Returns  {new lease, entries renewed}
]]
local due = KEYS[1]
local held, lease_seconds = ARGV[1], tonumber(ARGV[2])
local rcall = redis.call
--@include each_slice
--@include checks

local problem = wrong_type({due}, {'zset'})
if problem then return redis.error_reply(problem) end
if not is_score(held) then return redis.error_reply(bad_argument('renew', 1, 'must be a score')) end
if not lease_seconds or lease_seconds <= 0 then return redis.error_reply(bad_argument('renew', 2, 'must be a number of seconds above 0')) end

local t = rcall('TIME')
local lease = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000 + lease_seconds)
local names = {}
for i = 3, #ARGV do names[#names + 1] = ARGV[i] end
local scores = multi('ZMSCORE', due, names)
local renewed = {}
for j = 1, #names do
  if scores[j] and tonumber(scores[j]) == tonumber(held) then
    renewed[#renewed + 1] = lease
    renewed[#renewed + 1] = names[j]
  end
end
each_slice(renewed, function(...) rcall('ZADD', due, ...) end)
return {lease, #renewed / 2}
