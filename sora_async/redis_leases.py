"""The account's slot pool in Redis: its keys and the three Lua scripts that change it.

Each script purges expired leases first and then reads and changes the pool in one atomic step,
in Redis's own clock (``TIME``), so no worker's clock is ever used. The key layout and the
protocol are described in :mod:`sora_async.governor_redis`, the worker side that calls them.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACQUIRE", "KEEP_MS", "KEY_PREFIX", "RATE_LIMITED", "SYNC", "account_keys"]

KEY_PREFIX: Final = "sora_async"
# Idle accounts' keys vanish after a day; every script call pushes this back.
KEEP_MS: Final = 24 * 3600 * 1000


def account_keys(account: str, prefix: str = KEY_PREFIX) -> tuple[list[str], str]:
    """The five keys and the wake-up channel of ``account`` (tests and operators read them)."""
    base = f"{prefix}:{{{account}}}"
    keys = [f"{base}:{name}" for name in ("leases", "live", "queue", "qexp", "cfg")]
    return keys, f"{base}:wake"


# KEYS: leases, live, queue, qexp, cfg. Helpers shared by the three scripts.
PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function purge(now)
  local freed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
  for _, id in ipairs(gone) do
    redis.call('ZREM', KEYS[3], id)
    redis.call('ZREM', KEYS[4], id)
  end
  return freed
end
-- A missing cfg is a first use (grace 0) or a Redis that lost its data (grace > 0: let the
-- live holders re-register their leases before anyone new is admitted).
local function load_cfg(now, default_total, grace)
  local v = redis.call('HMGET', KEYS[5], 'total', 'effective', 'paused_until', 'strikes')
  if not v[1] then
    local paused = now + grace
    redis.call('HSET', KEYS[5], 'total', default_total, 'effective', default_total,
               'paused_until', paused, 'strikes', 0)
    return default_total, default_total, paused, 0
  end
  return tonumber(v[1]), tonumber(v[2]), tonumber(v[3]), tonumber(v[4])
end
-- Wake the waiters that now fit: the first `free` of the queue, named in the message, so
-- that the others (in other processes) are not woken for nothing.
local function announce(channel, effective)
  local free = effective - redis.call('ZCARD', KEYS[1])
  if free <= 0 then return end
  local ids = redis.call('ZRANGE', KEYS[3], 0, free - 1)
  if #ids > 0 then redis.call('PUBLISH', channel, table.concat(ids, ' ')) end
end
local function keep(ms)
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ms) end
end
"""

# ARGV: lease id, ttl ms, default total, grace ms, queue ttl ms, channel, keep ms.
# Returns 1 (granted), 0 (wait for a wake-up), or -ms (paused for that long).
ACQUIRE = (
    PRELUDE
    + """
local function admit()
local now = now_ms()
local id, ttl = ARGV[1], tonumber(ARGV[2])
local freed = purge(now)
local _, effective, paused = load_cfg(now, tonumber(ARGV[3]), tonumber(ARGV[4]))
if redis.call('ZSCORE', KEYS[1], id) then
  -- Granted already (the answer was lost): renew and say so again.
  redis.call('ZADD', KEYS[1], now + ttl, id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
  return 1
end
if not redis.call('ZSCORE', KEYS[3], id) then
  redis.call('ZADD', KEYS[3], redis.call('HINCRBY', KEYS[5], 'seq', 1), id)
end
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[5]), id)
if freed > 0 then announce(ARGV[6], effective) end
if paused > now then return -(paused - now) end
local free = effective - redis.call('ZCARD', KEYS[1])
local rank = redis.call('ZRANK', KEYS[3], id)
if rank >= free then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, id)
redis.call('ZREM', KEYS[3], id)
redis.call('ZREM', KEYS[4], id)
-- Room left for the next in line: tell them now rather than at their fallback.
announce(ARGV[6], effective)
return 1
end
local answer = admit()
keep(tonumber(ARGV[7]))
return answer
"""
)

# ARGV: ttl ms, default total, grace ms, channel, keep ms, new total (0: unchanged),
#       successes, n, released ids..., m, held ids..., k, live ids...
# Returns {held on the account, effective, total, paused ms left, leases re-added}.
SYNC = (
    PRELUDE
    + """
local now = now_ms()
local ttl = tonumber(ARGV[1])
local freed = purge(now)
local total, effective, paused = load_cfg(now, tonumber(ARGV[2]), tonumber(ARGV[3]))
local new_eff = effective
local new_total = tonumber(ARGV[6])
if new_total > 0 and new_total ~= total then
  -- A cap reduced by a 429 keeps its evidence (under the new total); otherwise follow it.
  if effective < total then new_eff = math.min(effective, new_total) else new_eff = new_total end
  total = new_total
end
local successes = tonumber(ARGV[7])
local i = 8
local n = tonumber(ARGV[i])
for j = i + 1, i + n do
  freed = freed + redis.call('ZREM', KEYS[1], ARGV[j])
  redis.call('ZREM', KEYS[2], ARGV[j])
  redis.call('ZREM', KEYS[3], ARGV[j])
  redis.call('ZREM', KEYS[4], ARGV[j])
end
i = i + n + 1
n = tonumber(ARGV[i])
local readded = 0
for j = i + 1, i + n do
  readded = readded + redis.call('ZADD', KEYS[1], now + ttl, ARGV[j])
end
i = i + n + 1
n = tonumber(ARGV[i])
for j = i + 1, i + n do
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[j])
end
if successes > 0 then
  if now >= paused then new_eff = new_eff + successes end
  -- The server holds every live task of the account: that many fit, plus one probe.
  new_eff = math.min(total, math.max(new_eff, redis.call('ZCARD', KEYS[2]) + 1))
  redis.call('HSET', KEYS[5], 'strikes', 0)
end
redis.call('HSET', KEYS[5], 'total', total, 'effective', new_eff)
if freed > 0 or new_eff > effective then announce(ARGV[4], new_eff) end
keep(tonumber(ARGV[5]))
return {redis.call('ZCARD', KEYS[1]), new_eff, total, math.max(0, paused - now), readded}
"""
)

# ARGV: lease id, default total, grace ms, retry-after ms (-1: none), default pause ms,
#       max default pause ms, min pause ms, keep ms.
# Returns the pause in ms. The lease is given back: the refused create queues again.
RATE_LIMITED = (
    PRELUDE
    + """
local now = now_ms()
purge(now)
local _, effective, paused, strikes = load_cfg(now, tonumber(ARGV[2]), tonumber(ARGV[3]))
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
strikes = strikes + 1
local pause
local retry_after = tonumber(ARGV[4])
if retry_after >= 0 then
  pause = math.max(tonumber(ARGV[7]), retry_after)
else
  pause = math.min(tonumber(ARGV[6]), tonumber(ARGV[5]) * 2 ^ math.min(strikes - 1, 16))
end
paused = math.max(paused, now + math.floor(pause))
effective = math.max(1, math.min(effective, redis.call('ZCARD', KEYS[2]) + 1))
redis.call('HSET', KEYS[5], 'paused_until', paused, 'effective', effective, 'strikes', strikes)
keep(tonumber(ARGV[8]))
return paused - now
"""
)
