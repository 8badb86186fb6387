"""The Lua side of the Redis store: the key layout and the functions every script shares.

Each store operation is one script (``redis_scripts``, ``redis_conversation_scripts``): atomic,
one round trip. ``P`` is the key prefix (``rp:`` by default), ``O`` the owner's hash, so a
foreign id is simply a missing key.

Responses — a chain of responses (a root and everything built on it, branches included) is
one *thread*:

- ``P r:O:<response id>`` string: the thread's id (its root's response id). Its TTL is the
  response's own lifetime, and a DELETE removes it: it exists while the response is visible.
- ``P t:O:<root id>`` hash, every response of the thread as fields ``<id>:b`` (the Response
  JSON), ``<id>:d`` (its input then output items, a JSON array), ``<id>:n``
  (number of input items), ``<id>:c`` (ancestor ids, JSON, oldest first), ``<id>:p`` (parent),
  ``<id>:k`` (kept children), ``<id>:i`` (its item ids, JSON); and what the root was built on:
  ``:bc``/``:bs`` (a conversation, up to a position) or ``:s`` (a copied history; with ``:w``, a
  compaction's window, which stands for the root's own items in every history). Its TTL is
  the longest own lifetime of its responses: each put extends it (``PEXPIREAT … GT``), so a
  descendant never outlives its ancestors' items. A DELETE frees a response's fields when it has
  no kept children, then its parent's the same way; the whole key goes with its root.
- ``P ix:O:<item id>`` sorted set: every *holder* of the item, ``<pos>:<response id>`` (at that
  position of its items) or ``c:<conversation id>``, scored by when it stored the item (µs, server
  time). One id is legitimately stored by several: a resolved ``item_reference`` stores the item
  again in the new response, a client resends an item with its id, a response's items are appended
  to its conversation. A lookup tries them newest first and takes the first still live (a visible
  response, a conversation that still has the item), so deleting or expiring the newest falls
  back to the others; a delete removes its own member only (``unhold``). The key's TTL is its
  longest-lived holder's, only ever extended (``hold``): an expired holder's member stays until
  then, or until a later ``hold`` finds it gone, skipped by every lookup meanwhile.
- ``P i:O:<item id>`` string, written by the code before ``ix:`` (one holder, the last writer):
  still read after the ``ix:`` holders, and removed by the deletes that remove its holder, so
  items stored before an upgrade (or by older workers during a rolling one) stay referenceable.

Conversations:

- ``P c:O:<id>`` hash ``a`` created_at, ``m`` metadata JSON, ``q`` last position, ``z`` items'
  bytes, ``x`` until when its item pointers are kept; ``P ci:O:<id>`` zset item id → position;
  ``P cb:O:<id>`` hash item id → item JSON. The three share one TTL, refreshed by every write.

Background jobs (issue 15): ``P job:O:<id>``, ``P ev:O:<id>``, ``P jobs``, ``P jobo:O`` and the
channel ``P cancel:<worker>``, described in ``redis_job_scripts``.

Checks come before writes (a Lua error does not roll back), and a script that deletes starts
with a command Redis allows under ``maxmemory`` (DEL, HDEL, ZREM), so a full Redis still lets
clients delete. Times come from the server (``TIME``), shared by every host. Keys are computed
in the scripts, so this needs a standalone Redis (or one primary with replicas), not a Cluster.
"""
from __future__ import annotations

from .redis_link import Script

_PRELUDE = """
local P, O = ARGV[1], ARGV[2]
local function rk(id) return P .. 'r:' .. O .. ':' .. id end
local function ik(id) return P .. 'i:' .. O .. ':' .. id end
local function ixk(id) return P .. 'ix:' .. O .. ':' .. id end
local function ck(id) return P .. 'c:' .. O .. ':' .. id end
local function cik(id) return P .. 'ci:' .. O .. ':' .. id end
local function cbk(id) return P .. 'cb:' .. O .. ':' .. id end
local function tk(id) return P .. 't:' .. O .. ':' .. id end
local function jk(id) return P .. 'job:' .. O .. ':' .. id end
local function fmt(n) return string.format('%d', n) end
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function now_ms() return math.floor(now_us() / 1000) end
-- ``member`` holds item ``id`` since ``us``, until ``keep`` (ms) at least. A new key (ZADD gives
-- it no TTL, which PEXPIREAT GT would take for an infinite one) gets its TTL from NX. Of an older
-- key's holders stored before ``keep`` is as far off as now, responses that are gone lose their
-- member (nothing removed it when they expired), two at most, oldest first up to the first still
-- there (with one TTL they expire in the order they were stored; conversations are passed over):
-- an item stored again and again keeps about its live holders.
local function hold(id, member, us, keep)
  local k = ixk(id)
  redis.call('ZADD', k, fmt(us), member)
  if redis.call('PEXPIREAT', k, keep, 'NX') == 1 then return end
  redis.call('PEXPIREAT', k, keep, 'GT')
  local before, dropped = '(' .. fmt(2 * us - tonumber(keep) * 1000), 0
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', k, '-inf', before, 'LIMIT', '0', '16')) do
    local rid = string.match(old, '^%d+:(.*)$')
    if rid then
      if dropped == 2 or redis.call('EXISTS', rk(rid)) == 1 then break end
      redis.call('ZREM', k, old)
      dropped = dropped + 1
    end
  end
end
local function unhold(id, member)
  redis.call('ZREM', ixk(id), member)
  if redis.call('GET', ik(id)) == member then redis.call('DEL', ik(id)) end
end
local function hmget_all(key, ids)
  local out = {}
  for i = 1, #ids, 1000 do
    local part = redis.call('HMGET', key, unpack(ids, i, math.min(i + 999, #ids)))
    for j = 1, #part do out[i + j - 1] = part[j] end
  end
  return out
end
local function touch_conv(cid, exp, ttl)
  local h = ck(cid)
  local ts = fmt(math.max(exp, tonumber(redis.call('PEXPIRETIME', h))))
  redis.call('PEXPIREAT', h, ts)
  redis.call('PEXPIREAT', cik(cid), ts)
  redis.call('PEXPIREAT', cbk(cid), ts)
  if tonumber(ts) > tonumber(redis.call('HGET', h, 'x') or '0') then
    local keep = fmt(tonumber(ts) + ttl)
    local ids = redis.call('ZRANGE', cik(cid), 0, -1)
    for i = 1, #ids do
      redis.call('PEXPIREAT', ixk(ids[i]), keep, 'GT')
      redis.call('PEXPIREAT', ik(ids[i]), keep, 'GT')  -- (an item appended before ix:)
    end
    redis.call('HSET', h, 'x', keep)
  end
end
-- The (item id, item) pairs from ARGV[first] to append: their ARGV positions and the size after.
-- An id the conversation holds, or the batch repeats, is skipped when ``skip``; else the third
-- result names it (``{index in the batch, 'held' or 'again'}``) and nothing is to be written.
local function plan_items(cid, first, limit, skip)
  local size = tonumber(redis.call('HGET', ck(cid), 'z') or '0')
  local new, seen = {}, {}
  for i = first, #ARGV, 2 do
    local id = ARGV[i]
    local why = (seen[id] and 'again') or (redis.call('ZSCORE', cik(cid), id) and 'held')
    if not why then
      seen[id] = true
      new[#new + 1] = i
      size = size + #ARGV[i + 1]
    elseif not skip then
      return new, size, {fmt((i - first) / 2), why}
    end
  end
  return new, size, nil
end
local function write_items(cid, new, size)
  local h = ck(cid)
  local seq = tonumber(redis.call('HGET', h, 'q') or '0')
  for _, i in ipairs(new) do
    seq = seq + 1
    redis.call('ZADD', cik(cid), fmt(seq), ARGV[i])
    redis.call('HSET', cbk(cid), ARGV[i], ARGV[i + 1])
  end
  redis.call('HSET', h, 'q', fmt(seq), 'z', fmt(size))
end
-- After ``write_items``: the conversation's TTL extended, and it made a holder of its new items.
local function point_items(cid, new, ttl)
  local us = now_us()
  touch_conv(cid, math.floor(us / 1000) + ttl, ttl)
  local keep = redis.call('HGET', ck(cid), 'x')
  for _, i in ipairs(new) do hold(ARGV[i], 'c:' .. cid, us, keep) end
end
"""


def script(body: str) -> Script:
    return Script(_PRELUDE + body)
