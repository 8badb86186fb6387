"""The conversation scripts of the Redis store (key layout: ``redis_lua``).

An append checks the conversation, its items' ids and the size bound first, then gives its items
consecutive positions in one atomic script: appends racing from any number of workers lose nothing
and never interleave. An item id is in a conversation once: a batch with one it holds, or with one
twice, is refused whole (``{'duplicate', index, 'held' | 'again'}``), or, when told to skip them,
appended without those items.
"""
from __future__ import annotations

from .redis_lua import script

# ARGV: P O cid created_at metadata ttl_ms limit (item_id item)…
#   → {'ok'} | {'too_large', size} | {'duplicate', index, 'again'}
CREATE_CONVERSATION = script("""
local cid, ttl, limit = ARGV[3], tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('EXISTS', ck(cid)) == 1 then return {'ok'} end
local new, size, dup = plan_items(cid, 8, limit, false)
if dup then return {'duplicate', dup[1], dup[2]} end
if size > limit then return {'too_large', fmt(size)} end
redis.call('HSET', ck(cid), 'a', ARGV[4], 'm', ARGV[5], 'q', '0', 'z', '0', 'x', '0')
write_items(cid, new, size)
point_items(cid, new, ttl)
return {'ok'}
""")

# ARGV: P O cid ttl_ms limit skip ('1': skip held ids) (item_id item)…
#   → {'ok', index of each item added…} | {'missing'} | {'too_large', size} | {'duplicate', index, why}
APPEND_ITEMS = script("""
local cid, ttl, limit = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('EXISTS', ck(cid)) == 0 then return {'missing'} end
local new, size, dup = plan_items(cid, 7, limit, ARGV[6] == '1')
if dup then return {'duplicate', dup[1], dup[2]} end
if size > limit then return {'too_large', fmt(size)} end
write_items(cid, new, size)
point_items(cid, new, ttl)
local out = {'ok'}
for _, i in ipairs(new) do out[#out + 1] = fmt((i - 7) / 2) end
return out
""")

# ARGV: P O cid → nil | {created_at, metadata}
GET_CONVERSATION = script("""
local f = redis.call('HMGET', ck(ARGV[3]), 'a', 'm')
if not f[1] then return false end
return f
""")

# ARGV: P O cid metadata ttl_ms → nil | {created_at, metadata}
UPDATE_CONVERSATION = script("""
local cid, ttl = ARGV[3], tonumber(ARGV[5])
if redis.call('EXISTS', ck(cid)) == 0 then return false end
redis.call('HSET', ck(cid), 'm', ARGV[4])
touch_conv(cid, now_ms() + ttl, ttl)
return redis.call('HMGET', ck(cid), 'a', 'm')
""")

# ARGV: P O cid → 1 | 0
DELETE_CONVERSATION = script("""
local cid = ARGV[3]
if redis.call('EXISTS', ck(cid)) == 0 then return 0 end
local ids = redis.call('ZRANGE', cik(cid), 0, -1)
for i = 1, #ids do unhold(ids[i], 'c:' .. cid) end
redis.call('DEL', ck(cid), cik(cid), cbk(cid))
return 1
""")

# ARGV: P O cid → nil | {last position, item…}
CONVERSATION_CONTEXT = script("""
local cid = ARGV[3]
local q = redis.call('HGET', ck(cid), 'q')
if not q then return false end
local ids = redis.call('ZRANGE', cik(cid), 0, -1)
local bodies = hmget_all(cbk(cid), ids)
local out = {q}
for i = 1, #ids do if bodies[i] then out[#out + 1] = bodies[i] end end
return out
""")

# ARGV: P O cid limit order after → nil | {'after'} (no item of the conversation has that id)
#   | {'1' or '0' (has more), item…}
LIST_ITEMS = script("""
local cid, limit, order, after = ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
if redis.call('EXISTS', ck(cid)) == 0 then return false end
local zi = cik(cid)
local ids
if after ~= '' then
  local s = redis.call('ZSCORE', zi, after)
  if not s then return {'after'} end
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
GET_ITEM = script("""
if redis.call('EXISTS', ck(ARGV[3])) == 0 then return false end
return redis.call('HGET', cbk(ARGV[3]), ARGV[4])
""")

# ARGV: P O cid item_id ttl_ms → nil | {created_at, metadata}
DELETE_ITEM = script("""
local cid, id, ttl = ARGV[3], ARGV[4], tonumber(ARGV[5])
local h = ck(cid)
if redis.call('EXISTS', h) == 0 then return false end
if redis.call('ZREM', cik(cid), id) == 0 then return false end
local body = redis.call('HGET', cbk(cid), id)
redis.call('HDEL', cbk(cid), id)
if body then redis.call('HINCRBY', h, 'z', -#body) end
unhold(id, 'c:' .. cid)
touch_conv(cid, now_ms() + ttl, ttl)
return redis.call('HMGET', h, 'a', 'm')
""")
