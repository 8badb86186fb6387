"""The response scripts of the Redis store (key layout: ``redis_lua``).

A put writes its own fields into its thread's hash, counts itself on its parent and extends the
hash's TTL: O(1) commands whatever the chain's length. A history read is one script however long
the chain: the response's ancestor ids are stored with it, so it gathers their items directly.
"""
from __future__ import annotations

from .redis_lua import script

# put_response(rid, body, items, n_input, ids_json, ttl_ms, prev_id, conv_id, conv_seq, snapshot[, compacted]),
# shared by PUT_RESPONSE and the background scripts (redis_job_scripts): every check comes before its first
# write. ``compacted`` ('1'): a compaction's response, whose snapshot ``:s`` is its window (``:w``, read by
# HISTORY: in place of its own items). → 1 stored, -1 already stored (a retried write), 0 what it was built on
# vanished (copy it instead).
PUT_FUNCTION = """
local function put_response(rid, body, items, n_input, ids_json, ttl_ms, prev, conv, conv_seq, snapshot, compacted)
  if redis.call('EXISTS', rk(rid)) == 1 then return -1 end
  local us = now_us()
  local now = math.floor(us / 1000)
  local ttl = tonumber(ttl_ms)
  local es = fmt(now + ttl)
  local thread, chain = rid, '[]'
  if prev ~= '' then
    thread = redis.call('GET', rk(prev))
    if not thread then return 0 end
    local f = redis.call('HMGET', tk(thread), prev .. ':c', prev .. ':d', ':bc')
    if not f[2] then return 0 end
    if f[3] and redis.call('EXISTS', ck(f[3])) == 0 then return 0 end
    local ids = cjson.decode(f[1])
    ids[#ids + 1] = prev
    chain = cjson.encode(ids)
    conv = f[3] or ''
    redis.call('HINCRBY', tk(thread), prev .. ':k', 1)
  elseif conv ~= '' then
    if redis.call('EXISTS', ck(conv)) == 0 then return 0 end
  end
  local t = tk(thread)
  redis.call('HSET', t, rid .. ':b', body, rid .. ':d', items, rid .. ':n', n_input, rid .. ':c', chain,
    rid .. ':p', prev, rid .. ':k', '0', rid .. ':i', ids_json)
  if thread == rid then
    if conv ~= '' then redis.call('HSET', t, ':bc', conv, ':bs', conv_seq) end
    if snapshot ~= '' then redis.call('HSET', t, ':s', snapshot) end
    if compacted == '1' then redis.call('HSET', t, ':w', '1') end
    redis.call('PEXPIREAT', t, es)
  else
    redis.call('PEXPIREAT', t, es, 'GT')
  end
  if conv ~= '' then touch_conv(conv, now + ttl, ttl) end
  redis.call('SET', rk(rid), thread, 'PXAT', es)
  local ids = cjson.decode(ids_json)
  for i = 1, #ids do hold(ids[i], fmt(i - 1) .. ':' .. rid, us, es) end
  return 1
end
"""

# ARGV: P O rid body items n_input ids_json ttl_ms prev_id conv_id conv_seq snapshot compacted → as put_response
PUT_RESPONSE = script(PUT_FUNCTION + """
return put_response(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12],
  ARGV[13])
""")

# ARGV: P O rid → nil | {'pending'} (a background response not ended) | {'incomplete', why[, conversation id]}
#   | {'ok', n, n conversation items…, item arrays…}
HISTORY = script("""
local rid = ARGV[3]
local thread = redis.call('GET', rk(rid))
if not thread then return false end
local job = redis.call('HGET', jk(rid), 's')  -- a background response's state
if job and job ~= 'ended' then return {'pending'} end
local t = tk(thread)
local f = redis.call('HMGET', t, rid .. ':c', rid .. ':d', ':bc', ':bs', ':s', ':w')
if not f[2] then return {'incomplete', 'its items are gone'} end
local out = {'ok', '0'}
if f[3] then
  if redis.call('EXISTS', ck(f[3])) == 0 then
    return {'incomplete', 'its conversation ' .. f[3] .. ' was deleted', f[3]}
  end
  local ids = redis.call('ZRANGEBYSCORE', cik(f[3]), '-inf', f[4])
  local bodies = hmget_all(cbk(f[3]), ids)
  for i = 1, #ids do if bodies[i] then out[#out + 1] = bodies[i] end end
  out[2] = fmt(#out - 2)
end
if f[5] then out[#out + 1] = f[5] end
local chain = cjson.decode(f[1])
for i = 1, #chain do
  local d = redis.call('HGET', t, chain[i] .. ':d')
  if not d then return {'incomplete', 'the items of ' .. chain[i] .. ' are gone'} end
  if not (f[6] and i == 1) then out[#out + 1] = d end  -- a compaction root: its window stands for them
end
if not (f[6] and #chain == 0) then out[#out + 1] = f[2] end
return out
""")

# ARGV: P O rid field… → nil | {value…} of a visible response's fields
READ_RESPONSE = script("""
local rid = ARGV[3]
local thread = redis.call('GET', rk(rid))
if not thread then return false end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = rid .. ':' .. ARGV[i] end
return redis.call('HMGET', tk(thread), unpack(fields))
""")

# ARGV: P O rid → 1 deleted | 0 not found
DELETE_RESPONSE = script("""
local rid = ARGV[3]
local thread = redis.call('GET', rk(rid))
if not thread then return 0 end
redis.call('DEL', rk(rid))
local t = tk(thread)
redis.call('HDEL', t, rid .. ':b')
local ids = cjson.decode(redis.call('HGET', t, rid .. ':i') or '[]')
for i = 1, #ids do unhold(ids[i], fmt(i - 1) .. ':' .. rid) end
local node = rid
while node do
  if redis.call('EXISTS', rk(node)) == 1 then break end
  if tonumber(redis.call('HGET', t, node .. ':k') or '0') > 0 then break end
  local parent = redis.call('HGET', t, node .. ':p') or ''
  local f = {}
  for _, k in ipairs({'b', 'd', 'n', 'c', 'p', 'k', 'i'}) do f[#f + 1] = node .. ':' .. k end
  redis.call('HDEL', t, unpack(f))
  if parent == '' then
    redis.call('UNLINK', t)
    break
  end
  redis.call('HINCRBY', t, parent .. ':k', -1)
  node = parent
end
return 1
""")

# ARGV: P O item_id… → {id, pos, response id, items (or '' when sent already) | id, '-1', conv id, item}…:
# of each id's holders, newest first (then the pointer written before ix:), the first still live.
GET_ITEMS = script("""
local out, sent = {}, {}
local function take(id, holder)
  local pos, rid = string.match(holder, '^(%d+):(.*)$')
  if rid then
    local thread = redis.call('GET', rk(rid))
    local d = thread and redis.call('HGET', tk(thread), rid .. ':d')
    if not d then return false end
    if sent[rid] then d = '' end
    sent[rid] = true
    out[#out + 1] = id; out[#out + 1] = pos; out[#out + 1] = rid; out[#out + 1] = d
    return true
  end
  if string.sub(holder, 1, 2) ~= 'c:' then return false end
  local cid = string.sub(holder, 3)
  local body = redis.call('HGET', cbk(cid), id)
  if not body then return false end
  out[#out + 1] = id; out[#out + 1] = '-1'; out[#out + 1] = cid; out[#out + 1] = body
  return true
end
for i = 3, #ARGV do
  local id, done = ARGV[i], false
  for _, holder in ipairs(redis.call('ZREVRANGE', ixk(id), 0, -1)) do
    done = take(id, holder)
    if done then break end
  end
  if not done then
    local old = redis.call('GET', ik(id))
    if old then take(id, old) end
  end
end
return out
""")
