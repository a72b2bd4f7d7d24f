"""The Lua scripts of the event stream and its holder lease.

Each runs atomically in Redis, so a check and the write it guards cannot be separated by
another client (a paused holder, a restart). Their keys are passed as ``KEYS`` (never built
inside a script). Entry ids are compared as numbers (``<ms>-<n>``, both exact in Lua's
doubles). Scripts return short status strings rather than booleans, whose reply type differs
between RESP2 and RESP3.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACQUIRE", "APPEND", "FETCH", "HEAD", "RELEASE", "RENEW"]

_IDS: Final = """
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function later(a, b)
  local am, an = parse(a)
  local bm, bn = parse(b)
  return am > bm or (am == bm and an > bn)
end
"""

#: Take the first free holder slot with a new fencing token.
#: KEYS: the fence counter, then the slot keys in slot order. ARGV: token, ttl in ms.
#: Returns ``{slot, "<fence>:<token>"}``, or ``{}`` when every slot is held. A slot that
#: already holds the token (an earlier acquisition whose answer was lost to a timeout) is
#: kept rather than left to expire. The counter starts at the Redis clock in ms, so fences
#: keep increasing even after Redis lost its data.
ACQUIRE: Final = """
local mine = ':' .. ARGV[1]
for i = 2, #KEYS do
  local value = redis.call('GET', KEYS[i])
  if value and string.sub(value, -#mine) == mine then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    return {i - 2, value}
  end
end
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    if redis.call('EXISTS', KEYS[1]) == 0 then
      local now = redis.call('TIME')
      redis.call('SET', KEYS[1], now[1] .. string.format('%03d', math.floor(now[2] / 1000)))
    end
    local value = string.format('%.0f:%s', redis.call('INCR', KEYS[1]), ARGV[1])
    redis.call('SET', KEYS[i], value, 'PX', ARGV[2])
    return {i - 2, value}
  end
end
return {}
"""

#: Extend a lease that is still ours. KEYS: the slot. ARGV: the lease value, ttl in ms.
RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 'held'
end
return 'lost'
"""

#: Give a lease up if it is still ours. KEYS: the slot. ARGV: the lease value.
RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 'released'
end
return 'lost'
"""

#: Append one envelope for the holder of a slot.
#: KEYS: the slot's lease, the stream, the content's dedup key, the trimmed mark.
#: ARGV: the lease value, the envelope, dedup ttl in ms, max length, max age in ms,
#: entries per ms (``SEQ_PER_MS``).
#: Returns ``{'fenced'}`` (the lease is not this value: another holder, or expired),
#: ``{'duplicate'}`` (this content was appended within the dedup ttl) or ``{'added', id}``.
#: Then trims exactly: entries past the max length and older than the max age (never the new
#: one), remembering the newest trimmed id.
APPEND: Final = (
    _IDS
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'fenced'} end
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3]) then return {'duplicate'} end
local id = redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])
local ms, n = parse(id)
if n >= tonumber(ARGV[6]) then
  -- The server clock stood still or went back for this many entries: go on at the next
  -- millisecond so that ids map one-to-one to seqs. Nobody saw the entry (this is atomic).
  redis.call('XDEL', KEYS[2], id)
  id = redis.call('XADD', KEYS[2], string.format('%.0f-0', ms + 1), 'e', ARGV[2])
end
local cut = false
local excess = redis.call('XLEN', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', excess)
  cut = oldest[#oldest][1]
end
local now = redis.call('TIME')
local horizon = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[5])
if horizon > 0 then
  local aged = redis.call('XREVRANGE', KEYS[2], string.format('(%.0f-0', horizon), '-', 'COUNT', 1)
  if #aged > 0 and (not cut or later(aged[1][1], cut)) then cut = aged[1][1] end
end
if cut then
  local cut_ms, cut_n = parse(cut)
  redis.call('XTRIM', KEYS[2], 'MINID', string.format('%.0f-%.0f', cut_ms, cut_n + 1))
  redis.call('SET', KEYS[4], cut)
end
return {'added', id}
"""
)

#: The entries after a position, if they all still exist in the expected epoch.
#: KEYS: the epoch, the stream, the trimmed mark.
#: ARGV: the expected epoch, the position (exclusive), the last id wanted ('+' for all), count.
#: Returns ``{'epoch'}`` (another epoch: Redis lost its data), ``{'gap', trimmed}`` (entries
#: after the position were trimmed), ``{'ahead'}`` (the position is past the newest entry)
#: or ``{'ok', entries}``.
FETCH: Final = (
    _IDS
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'epoch'} end
local trimmed = redis.call('GET', KEYS[3])
if trimmed and later(trimmed, ARGV[2]) then return {'gap', trimmed} end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local newest = '0-0'
if #last > 0 then newest = last[1][1] end
if later(ARGV[2], newest) then return {'ahead'} end
return {'ok', redis.call('XRANGE', KEYS[2], '(' .. ARGV[2], ARGV[3], 'COUNT', ARGV[4])}
"""
)

#: The epoch (created from the candidate when missing) and the newest entry id.
#: KEYS: the epoch, the stream. ARGV: a candidate epoch. Returns ``{epoch, id}``.
HEAD: Final = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local newest = '0-0'
if #last > 0 then newest = last[1][1] end
return {redis.call('GET', KEYS[1]), newest}
"""
