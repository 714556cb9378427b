"""The Lua scripts of the Redis backend: operations whose commands must happen together.

Each runs atomically in Redis (one round trip), so no other client sees the
state between its commands; those that publish do so inside the script, so
their events are ordered with the changes.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CURRENT", "INCR", "LB_ADD", "LB_INCR", "LIST_APPEND", "RETAIN"]

# ARGV[1]: the increment as text; ARGV[2]: 'i' for an int increment, 'f' for a float.
# Integers stay exact through INCRBY (the result is read back as text, since
# Lua numbers are doubles). Anything involving a float is added here as a
# double, like Python does (INCRBYFLOAT uses long doubles and prints 3.0 as
# "3", which would read back as an int), and stored in its shortest exact form
# (KEEPTTL: an incr keeps the key's TTL, as INCRBY does).
INCR: Final = """
local raw = redis.call('GET', KEYS[1])
if ARGV[2] == 'i' and (not raw or string.match(raw, '^%-?%d+$')) then
  local done = redis.pcall('INCRBY', KEYS[1], ARGV[1])
  if type(done) == 'table' and done.err then
    return redis.error_reply('TETHER_RANGE')
  end
  return redis.call('GET', KEYS[1])
end
local current = 0
if raw then
  current = tonumber(raw)
  if current == nil then
    return redis.error_reply('TETHER_NOTNUM')
  end
end
local value = current + tonumber(ARGV[1])
if value ~= value or value == math.huge or value == -math.huge then
  return redis.error_reply('TETHER_RANGE')
end
local text
for digits = 15, 17 do
  text = string.format('%.' .. digits .. 'g', value)
  if tonumber(text) == value then break end
end
if not string.find(text, '[%.e]') then
  text = text .. '.0'
end
redis.call('SET', KEYS[1], text, 'KEEPTTL')
return text
"""

# ARGV[1]: the JSON value; ARGV[2]: maxlen or ''; ARGV[3]: channel or '';
# ARGV[4]: the event frame to publish there (atomically with the append).
LIST_APPEND: Final = """
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  local maxlen = tonumber(ARGV[2])
  if n > maxlen then
    redis.call('LTRIM', KEYS[1], -maxlen, -1)
    n = maxlen
  end
end
if ARGV[3] ~= '' then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return n
"""

# A topic's current value (protocol 8): the hash KEYS[n] holds its last change's
# ``seq`` and frame. retain() makes ``data`` the new value: the seq goes past the
# old one and past the time in microseconds (so it grows even after the hash
# expired), the frame is stored, given ``ttl`` ms, and PUBLISHed, in one step
# with the change it describes. ``head .. seq .. tail .. data .. '}'`` is the
# frame (protocol.retained_event_parts).
_RETAIN_FN: Final = """
local function retain(key, channel, head, tail, data, ttl)
  local now = redis.call('TIME')
  local seq = tonumber(now[1]) * 1000000 + tonumber(now[2])
  local prev = tonumber(redis.call('HGET', key, 'seq'))
  if prev and prev >= seq then
    seq = prev + 1
  end
  local text = string.format('%d', seq)
  local frame = head .. text .. tail .. data .. '}'
  redis.call('HSET', key, 'seq', text, 'frame', frame)
  redis.call('PEXPIRE', key, ttl)
  redis.call('PUBLISH', channel, frame)
end
"""

# KEYS[1]: the current value's hash; ARGV: channel, head, tail, data JSON, ttl ms.
RETAIN: Final = (
    _RETAIN_FN
    + """
retain(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return 1
"""
)

# KEYS[1]: a topic's current value's hash; ARGV[1]: a node's marker channel;
# ARGV[2]: the marker. Returns the frame (or nil) and PUBLISHes the marker in the
# same step: every change published before the read reaches the node's
# listener before the marker does.
CURRENT: Final = """
local frame = redis.call('HGET', KEYS[1], 'frame')
redis.call('PUBLISH', ARGV[1], ARGV[2])
return frame
"""

# KEYS[1]: the board; KEYS[2]: the topic's current value (when ARGV[5] ~= '').
# ARGV[1]: score; ARGV[2]: member; ARGV[3]: keep or ''; ARGV[4]: top (0: none);
# ARGV[5]: channel or ''; ARGV[6], ARGV[7]: the event frame's head and tail;
# ARGV[8]: the current value's ttl in ms.
# Returns the top entries as [member, score, ...]; their scores become the
# topic's current value.
LB_ADD: Final = (
    _RETAIN_FN
    + """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[3]) - 1)
end
local top = tonumber(ARGV[4])
if top == 0 then
  return {}
end
local best = redis.call('ZREVRANGE', KEYS[1], 0, top - 1, 'WITHSCORES')
if ARGV[5] ~= '' then
  local scores = {}
  for i = 2, #best, 2 do
    scores[#scores + 1] = best[i]
  end
  retain(KEYS[2], ARGV[5], ARGV[6], ARGV[7], '[' .. table.concat(scores, ',') .. ']', ARGV[8])
end
return best
"""
)

# ARGV[1]: the increment (a finite double, as text); ARGV[2]: member.
# ZINCRBY would store an infinite sum (Redis refuses only NaN), which no JSON
# encoder takes back; the sum is made here as a double, as ZINCRBY does, and
# refused unless finite. A score already infinite (stored by an older
# release) reads as math.huge, so adding to it is refused too.
LB_INCR: Final = """
local raw = redis.call('ZSCORE', KEYS[1], ARGV[2])
local current = 0
if raw then
  current = tonumber(raw)
  if current == nil then
    current = math.huge
  end
end
local value = current + tonumber(ARGV[1])
if value ~= value or value == math.huge or value == -math.huge then
  return redis.error_reply('TETHER_RANGE')
end
redis.call('ZADD', KEYS[1], string.format('%.17g', value), ARGV[2])
return redis.call('ZSCORE', KEYS[1], ARGV[2])
"""
