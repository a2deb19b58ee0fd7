--[[
  Run history of an entry: one {T}:history field, "<sent>,<skipped>,<missed>;" then
  fixed-width records (RECORD characters each, newest first; see storage/history.py).

  history_fields(key, names)          the fields of names (false where none), or nil when key is not a hash
  history_drop(key, names)            HDEL names, unless key is not a hash
  A history key of another type never fails a script (and needs no TYPE): pcall, and it is left alone.
  history_read(value, most)           sent, skipped, missed and the (most) whole records of a field; 0, 0, 0, "" if it does not read
  history_add(value, record, depth)   the field with record(s) first, at most depth records, their counters up;
                                      a trailing "+N" counts N more skipped runs
]]
local RECORD = 14
local function history_fields(key, names)
  local values = {}
  for first = 1, #names, 1000 do
    local part = redis.pcall('HMGET', key, unpack(names, first, math.min(first + 999, #names)))
    if part.err then return nil end
    for j = 1, #part do values[#values + 1] = part[j] end
  end
  return values
end
local function history_drop(key, names)
  for first = 1, #names, 1000 do
    redis.pcall('HDEL', key, unpack(names, first, math.min(first + 999, #names)))
  end
end
local function history_read(value, most)
  -- most: the records wanted (nil: all); cut from value at once, so a long field is copied once
  if value then
    local sent, skipped, missed, at = string.match(value, '^(%d+),(%d+),(%d+);()')
    if sent then
      local whole = #value - at + 1
      whole = whole - whole % RECORD
      if most and most * RECORD < whole then whole = most * RECORD end
      return tonumber(sent), tonumber(skipped), tonumber(missed), string.sub(value, at, at + whole - 1)
    end
  end
  return 0, 0, 0, ''
end
local function history_add(value, record, depth)
  -- record: one or more records, newest first; each counts, the newest depth are kept.
  -- Called for every run committed: it makes one new long string (the result) and one cut of the old records.
  local sent, skipped, missed, at
  if value then sent, skipped, missed, at = string.match(value, '^(%d+),(%d+),(%d+);()') end
  if not at then sent, skipped, missed, value, at = 0, 0, 0, '', 1 end
  local plus = string.find(record, '+', 1, true)
  if plus then
    skipped = skipped + tonumber(string.sub(record, plus + 1))
    record = string.sub(record, 1, plus - 1)
  end
  for i = 1, #record, RECORD do
    local code = string.byte(record, i)
    if code == 115 then -- s
      sent = sent + 1
    elseif code == 109 then -- m
      sent, missed = sent + 1, missed + 1
    else
      skipped = skipped + 1
    end
  end
  local room = depth * RECORD - #record
  if room <= 0 then return string.format('%d,%d,%d;%s', sent, skipped, missed, string.sub(record, 1, depth * RECORD)) end
  local old = #value - at + 1
  old = old - old % RECORD
  if old > room then old = room end
  return string.format('%d,%d,%d;%s%s', sent, skipped, missed, record, string.sub(value, at, at + old - 1))
end
