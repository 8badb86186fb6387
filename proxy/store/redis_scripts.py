"""The Lua scripts of the Redis store: each operation is one script, atomic and one round trip.

Keys (``P`` is the prefix, ``rp:`` by default; ``O`` the owner's hash, so a foreign id is just
a missing key):

- ``P r:O:<response id>`` hash: ``l`` live (absent once deleted), ``e`` its own expiry (ms),
  ``r`` references (itself while live + live descendants), ``c`` ancestor ids (JSON array),
  ``b`` the Response JSON, ``d`` its input then output items (inside of a JSON array), ``n``
  the number of input items, ``i`` its item ids (JSON); a chain's first response may have
  ``s`` (the history it was built on, copied) or ``bc``/``bs`` (the conversation and position it
  was built on). The key's own TTL is its physical lifetime, extended by every descendant.
- ``P i:O:<item id>`` string: where the item is, ``r<pos>:<response id>`` or ``c:<conversation id>``.
- ``P c:O:<conversation id>`` hash: ``a`` created_at, ``m`` metadata JSON, ``q`` last position,
  ``z`` items' bytes, ``x`` until when the item pointers are kept; ``P ci:O:<id>`` zset item id →
  position; ``P cb:O:<id>`` hash item id → item JSON. The three share one TTL.

Checks come before writes (a Lua error does not roll back), and a script that deletes starts
with a command Redis allows under ``maxmemory`` (HDEL, DEL, ZREM), so a full Redis still lets
clients delete. Times come from the server (``TIME``), shared by every host. Keys are computed
in the scripts, so this needs a standalone Redis (or one primary with replicas), not a Cluster.
"""
from __future__ import annotations

from .redis_link import Script

_PRELUDE = """
local P, O = ARGV[1], ARGV[2]
local function rk(id) return P .. 'r:' .. O .. ':' .. id end
local function ik(id) return P .. 'i:' .. O .. ':' .. id end
local function ck(id) return P .. 'c:' .. O .. ':' .. id end
local function cik(id) return P .. 'ci:' .. O .. ':' .. id end
local function cbk(id) return P .. 'cb:' .. O .. ':' .. id end
local function fmt(n) return string.format('%d', n) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function live(l, e, now) return l == '1' and tonumber(e) > now end
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
    for i = 1, #ids do redis.call('PEXPIREAT', ik(ids[i]), keep) end
    redis.call('HSET', h, 'x', keep)
  end
end
local function plan_items(cid, first, limit)
  local size = tonumber(redis.call('HGET', ck(cid), 'z') or '0')
  local new, seen = {}, {}
  for i = first, #ARGV, 2 do
    local id = ARGV[i]
    if not seen[id] and not redis.call('ZSCORE', cik(cid), id) then
      seen[id] = true
      new[#new + 1] = i
      size = size + #ARGV[i + 1]
    end
  end
  return new, size
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
local function point_items(cid, new)
  local keep = redis.call('HGET', ck(cid), 'x')
  for _, i in ipairs(new) do redis.call('SET', ik(ARGV[i]), 'c:' .. cid, 'PXAT', keep) end
end
"""


def _script(body: str) -> Script:
    return Script(_PRELUDE + body)


# ARGV: P O rid body items n_input ids_json ttl_ms prev_id conv_id conv_seq snapshot
# → 1 stored, -1 already stored (a retried write), 0 what it was built on vanished.
PUT_RESPONSE = _script("""
local rid = ARGV[3]
local key = rk(rid)
if redis.call('EXISTS', key) == 1 then return -1 end
local now = now_ms()
local ttl = tonumber(ARGV[8])
local exp = now + ttl
local es = fmt(exp)
local prev, conv = ARGV[9], ARGV[10]
local chain = {}
if prev ~= '' then
  local f = redis.call('HMGET', rk(prev), 'l', 'e', 'c')
  if not live(f[1], f[2], now) then return 0 end
  chain = cjson.decode(f[3])
  chain[#chain + 1] = prev
  for i = 1, #chain do
    if redis.call('EXISTS', rk(chain[i])) == 0 then return 0 end
  end
  conv = redis.call('HGET', rk(chain[1]), 'bc') or ''
  if conv ~= '' and redis.call('EXISTS', ck(conv)) == 0 then return 0 end
  for i = 1, #chain do
    local k = rk(chain[i])
    redis.call('HINCRBY', k, 'r', 1)
    redis.call('PEXPIREAT', k, es, 'GT')
  end
elseif conv ~= '' and redis.call('EXISTS', ck(conv)) == 0 then
  return 0
end
if conv ~= '' then touch_conv(conv, exp, ttl) end
local cj = '[]'
if #chain > 0 then cj = cjson.encode(chain) end
redis.call('HSET', key, 'l', '1', 'e', es, 'r', '1', 'c', cj, 'b', ARGV[4], 'd', ARGV[5], 'n', ARGV[6], 'i', ARGV[7])
if #chain == 0 then
  if conv ~= '' then redis.call('HSET', key, 'bc', conv, 'bs', ARGV[11]) end
  if ARGV[12] ~= '' then redis.call('HSET', key, 's', ARGV[12]) end
end
redis.call('PEXPIREAT', key, es)
local ids = cjson.decode(ARGV[7])
for i = 1, #ids do
  redis.call('SET', ik(ids[i]), 'r' .. fmt(i - 1) .. ':' .. rid, 'PXAT', es)
end
return 1
""")

# ARGV: P O rid → nil | {'incomplete', why} | {'ok', part, part, …}
HISTORY = _script("""
local rid = ARGV[3]
local now = now_ms()
local f = redis.call('HMGET', rk(rid), 'l', 'e', 'c', 'd')
if not live(f[1], f[2], now) then return false end
local chain = cjson.decode(f[3])
local out = {'ok'}
local base = redis.call('HMGET', rk(chain[1] or rid), 'bc', 'bs', 's')
if base[1] then
  if redis.call('EXISTS', ck(base[1])) == 0 then
    return {'incomplete', 'its conversation ' .. base[1] .. ' was deleted'}
  end
  local ids = redis.call('ZRANGEBYSCORE', cik(base[1]), '-inf', base[2])
  local bodies = hmget_all(cbk(base[1]), ids)
  for i = 1, #ids do if bodies[i] then out[#out + 1] = bodies[i] end end
end
if base[3] then out[#out + 1] = base[3] end
for i = 1, #chain do
  local d = redis.call('HGET', rk(chain[i]), 'd')
  if not d then return {'incomplete', 'the items of ' .. chain[i] .. ' are gone'} end
  out[#out + 1] = d
end
out[#out + 1] = f[4]
return out
""")

# ARGV: P O rid field… → nil | {value…} of a live response
READ_RESPONSE = _script("""
local f = redis.call('HMGET', rk(ARGV[3]), 'l', 'e', unpack(ARGV, 4))
if not live(f[1], f[2], now_ms()) then return false end
local out = {}
for i = 3, #f do out[#out + 1] = f[i] end
return out
""")

# ARGV: P O rid → 1 deleted | 0 not found
DELETE_RESPONSE = _script("""
local rid = ARGV[3]
local key = rk(rid)
local f = redis.call('HMGET', key, 'l', 'e', 'c', 'i')
if not live(f[1], f[2], now_ms()) then return 0 end
redis.call('HDEL', key, 'b', 'l')
local ids = cjson.decode(f[4])
for i = 1, #ids do
  local p = redis.call('GET', ik(ids[i]))
  if p and string.match(p, '^r%d+:(.*)$') == rid then redis.call('DEL', ik(ids[i])) end
end
local chain = cjson.decode(f[3])
chain[#chain + 1] = rid
for i = 1, #chain do
  local k = rk(chain[i])
  if redis.call('EXISTS', k) == 1 and redis.call('HINCRBY', k, 'r', -1) <= 0 and not redis.call('HGET', k, 'l') then
    redis.call('DEL', k)
  end
end
return 1
""")

# ARGV: P O item_id… → {id, pos, response id, items (or '' when sent already) | id, '-1', conv id, item}…
GET_ITEMS = _script("""
local now = now_ms()
local out, sent = {}, {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local p = redis.call('GET', ik(id))
  if p then
    local pos, rid = string.match(p, '^r(%d+):(.*)$')
    if rid then
      local f = redis.call('HMGET', rk(rid), 'l', 'e', 'd')
      if live(f[1], f[2], now) then
        local d = f[3]
        if sent[rid] then d = '' end
        sent[rid] = true
        out[#out + 1] = id; out[#out + 1] = pos; out[#out + 1] = rid; out[#out + 1] = d
      end
    elseif string.sub(p, 1, 2) == 'c:' then
      local cid = string.sub(p, 3)
      local body = redis.call('HGET', cbk(cid), id)
      if body then
        out[#out + 1] = id; out[#out + 1] = '-1'; out[#out + 1] = cid; out[#out + 1] = body
      end
    end
  end
end
return out
""")

# ARGV: P O cid created_at metadata ttl_ms limit (item_id item)… → {'ok'} | {'too_large', size}
CREATE_CONVERSATION = _script("""
local cid, ttl, limit = ARGV[3], tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('EXISTS', ck(cid)) == 1 then return {'ok'} end
local new, size = plan_items(cid, 8, limit)
if size > limit then return {'too_large', fmt(size)} end
redis.call('HSET', ck(cid), 'a', ARGV[4], 'm', ARGV[5], 'q', '0', 'z', '0', 'x', '0')
write_items(cid, new, size)
touch_conv(cid, now_ms() + ttl, ttl)
point_items(cid, new)
return {'ok'}
""")

# ARGV: P O cid ttl_ms limit (item_id item)… → {'ok'} | {'missing'} | {'too_large', size}
APPEND_ITEMS = _script("""
local cid, ttl, limit = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('EXISTS', ck(cid)) == 0 then return {'missing'} end
local new, size = plan_items(cid, 6, limit)
if size > limit then return {'too_large', fmt(size)} end
write_items(cid, new, size)
touch_conv(cid, now_ms() + ttl, ttl)
point_items(cid, new)
return {'ok'}
""")

# ARGV: P O cid → nil | {created_at, metadata}
GET_CONVERSATION = _script("""
local f = redis.call('HMGET', ck(ARGV[3]), 'a', 'm')
if not f[1] then return false end
return f
""")

# ARGV: P O cid metadata ttl_ms → nil | {created_at, metadata}
UPDATE_CONVERSATION = _script("""
local cid, ttl = ARGV[3], tonumber(ARGV[5])
if redis.call('EXISTS', ck(cid)) == 0 then return false end
redis.call('HSET', ck(cid), 'm', ARGV[4])
touch_conv(cid, now_ms() + ttl, ttl)
return redis.call('HMGET', ck(cid), 'a', 'm')
""")

# ARGV: P O cid → 1 | 0
DELETE_CONVERSATION = _script("""
local cid = ARGV[3]
if redis.call('EXISTS', ck(cid)) == 0 then return 0 end
local ids = redis.call('ZRANGE', cik(cid), 0, -1)
local mine = 'c:' .. cid
for i = 1, #ids do
  if redis.call('GET', ik(ids[i])) == mine then redis.call('DEL', ik(ids[i])) end
end
redis.call('DEL', ck(cid), cik(cid), cbk(cid))
return 1
""")

# ARGV: P O cid → nil | {last position, item…}
CONVERSATION_CONTEXT = _script("""
local cid = ARGV[3]
local q = redis.call('HGET', ck(cid), 'q')
if not q then return false end
local ids = redis.call('ZRANGE', cik(cid), 0, -1)
local bodies = hmget_all(cbk(cid), ids)
local out = {q}
for i = 1, #ids do if bodies[i] then out[#out + 1] = bodies[i] end end
return out
""")

# ARGV: P O cid limit order after → nil | {'1' or '0' (has more), item…}
LIST_ITEMS = _script("""
local cid, limit, order, after = ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
if redis.call('EXISTS', ck(cid)) == 0 then return false end
local zi = cik(cid)
local ids
if after ~= '' then
  local s = redis.call('ZSCORE', zi, after)
  if not s then return {'0'} end
  if order == 'asc' then
    ids = redis.call('ZRANGEBYSCORE', zi, '(' .. s, '+inf', 'LIMIT', '0', fmt(limit + 1))
  else
    ids = redis.call('ZREVRANGEBYSCORE', zi, '(' .. s, '-inf', 'LIMIT', '0', fmt(limit + 1))
  end
elseif order == 'asc' then
  ids = redis.call('ZRANGE', zi, '0', fmt(limit))
else
  ids = redis.call('ZREVRANGE', zi, '0', fmt(limit))
end
local out = {'0'}
if #ids > limit then out[1] = '1'; ids[#ids] = nil end
local bodies = hmget_all(cbk(cid), ids)
for i = 1, #ids do if bodies[i] then out[#out + 1] = bodies[i] end end
return out
""")

# ARGV: P O cid item_id → nil | item
GET_ITEM = _script("""
if redis.call('EXISTS', ck(ARGV[3])) == 0 then return false end
return redis.call('HGET', cbk(ARGV[3]), ARGV[4])
""")

# ARGV: P O cid item_id ttl_ms → nil | {created_at, metadata}
DELETE_ITEM = _script("""
local cid, id, ttl = ARGV[3], ARGV[4], tonumber(ARGV[5])
local h = ck(cid)
if redis.call('EXISTS', h) == 0 then return false end
if redis.call('ZREM', cik(cid), id) == 0 then return false end
local body = redis.call('HGET', cbk(cid), id)
redis.call('HDEL', cbk(cid), id)
if body then redis.call('HINCRBY', h, 'z', -#body) end
if redis.call('GET', ik(id)) == 'c:' .. cid then redis.call('DEL', ik(id)) end
touch_conv(cid, now_ms() + ttl, ttl)
return redis.call('HMGET', h, 'a', 'm')
""")
