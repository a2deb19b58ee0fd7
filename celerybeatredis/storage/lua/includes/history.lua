--[[
  Run history of an entry: one {T}:history field, "<sent>,<skipped>,<missed>:" then fixed-width records
  (RECORD characters each, newest first), then "|<stamp> <error>" once a run failed (see storage/history.py).
  A field written before runs had outcomes ("...;" then 14-character records) reads as if each record had none.

  history_fields(key, names)          the fields of names (false where none), or nil when key is not a hash
  history_drop(key, names)            HDEL names, unless key is not a hash
  A history key of another type never fails a script (and needs no TYPE): pcall, and it is left alone.
  history_read(value, most)           sent, skipped, missed, the (most) whole records of a field and its last
                                      failure ("" or "|..."); 0, 0, 0, "", "" if it does not read
  history_field(sent, skipped, missed, records, failure)   the field of these parts
  history_add(value, record, depth)   the field with record(s) first, at most depth records, their counters up;
                                      a trailing "+N" counts N more skipped runs
  history_find(records, stamp)        the position of the record of the run sent at stamp (a sent run), or nil
]]
local RECORD, OLD_RECORD, NO_OUTCOME = 17, 14, '-00'
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
    local sent, skipped, missed, sep, at = string.match(value, '^(%d+),(%d+),(%d+)([:;])()')
    if sent then
      local bar = string.find(value, '|', at, true)
      local failure = bar and string.sub(value, bar) or ''
      local whole = (bar or #value + 1) - at
      local width = sep == ':' and RECORD or OLD_RECORD
      whole = whole - whole % width
      if most and most * width < whole then whole = most * width end
      local records = string.sub(value, at, at + whole - 1)
      if width == OLD_RECORD then
        local parts = {}
        for i = 1, #records, OLD_RECORD do parts[#parts + 1] = string.sub(records, i, i + OLD_RECORD - 1) .. NO_OUTCOME end
        records = table.concat(parts)
      end
      return tonumber(sent), tonumber(skipped), tonumber(missed), records, failure
    end
  end
  return 0, 0, 0, '', ''
end
local function history_field(sent, skipped, missed, records, failure)
  return string.format('%d,%d,%d:%s%s', sent, skipped, missed, records, failure)
end
local function history_add(value, record, depth)
  -- record: one or more records, newest first; each counts, the newest depth are kept.
  -- Called for every run committed: it makes one new long string (the result) and one cut of the old records.
  local sent, skipped, missed, records, failure = history_read(value, depth)
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
  if room <= 0 then return history_field(sent, skipped, missed, string.sub(record, 1, depth * RECORD), failure) end
  return history_field(sent, skipped, missed, record .. string.sub(records, 1, room), failure)
end
local function history_find(records, stamp)
  for at = 1, #records, RECORD do
    if string.sub(records, at + 1, at + #stamp) == stamp then
      local code = string.sub(records, at, at)
      if code == 's' or code == 'm' then return at end
      return nil
    end
  end
  return nil
end
