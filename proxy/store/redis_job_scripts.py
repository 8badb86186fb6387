"""The background-job scripts of the Redis store (key layout: ``redis_lua``; design: ``jobs``).

Per job, beside its response and with its TTL:

- ``P job:O:<id>`` hash ``s`` state (``queued``, ``in_progress``, ``ended``), ``w`` the worker
  running it, ``v`` its body's version, ``e`` ``1`` when its events are logged, ``z`` the log's
  bytes, ``q`` the last sequence number logged, ``x`` the response's expiry (ms), ``k`` how it ended,
  ``c`` while a cancelled job's log is still open for its worker: until when (ms, its lease deadline);
- ``P ev:O:<id>`` a Stream of its events, the event with sequence number ``n`` under the id
  ``0-(n+1)`` (so ``XRANGE``/``XREAD`` after an id is "after a sequence number", and a retried
  append cannot log an event twice), closed by one entry ``e`` (how it ended) when the job ends;
- ``P jobs`` zset ``O:<id>`` → lease deadline (ms, server time) of every job not ended, scanned by
  the reapers; ``P jobo:O`` zset ``<id>`` → the same deadline per owner: the owner's cap counts
  the live ones, so a dead worker's slot comes back when its lease runs out, with nothing to leak;
- ``P cancel:<worker>``, a channel: a cancel publishes the id there for the worker running it.

Writes that continue a job (start, append, finish) name the worker and do nothing once the job
is not that worker's running job any more (cancelled, or reaped): its late writes never undo an
ending. ``end_job`` orders its writes so that a Redis refusing writes half-way (OOM) still
leaves a job either running or ended, never off the reapers' list while running.
"""
from __future__ import annotations

from .redis_link import Script
from .redis_lua import script
from .redis_scripts import PUT_FUNCTION

_JOBS = """
local function evk(id) return P .. 'ev:' .. O .. ':' .. id end
local function ev_id(seq) return '0-' .. fmt(seq + 1) end
local function running(j, worker)
  local f = redis.call('HMGET', j, 's', 'w', 'z', 'q', 'x', 'e')
  if not f[1] or f[1] == 'ended' or f[2] ~= worker then return nil end
  return f
end
-- The events of ARGV[first..] (seq, data pairs) not logged yet, and the log's size with them.
local function plan_events(f, first)
  local size, last, new = tonumber(f[3]), tonumber(f[4]), {}
  for i = first, #ARGV, 2 do
    if tonumber(ARGV[i]) > last then
      size = size + #ARGV[i + 1]
      new[#new + 1] = i
    end
  end
  return new, size
end
local function log_events(rid, f, new, size)
  if #new == 0 then return end
  local ev, last = evk(rid), f[4]
  for _, i in ipairs(new) do
    redis.call('XADD', ev, ev_id(tonumber(ARGV[i])), 'd', ARGV[i + 1])
    last = ARGV[i]
  end
  redis.call('HSET', jk(rid), 'z', fmt(size), 'q', last)
  redis.call('PEXPIREAT', ev, f[5])
end
-- Log the events of ARGV[first..] for ARGV[4]'s running job (ARGV[5]: the log's bound): nil, or the refusal.
local function append(rid, first)
  local f = running(jk(rid), ARGV[4])
  if not f then return {'ended'} end
  local new, size = plan_events(f, first)
  if size > tonumber(ARGV[5]) then return {'too_large', fmt(size)} end
  log_events(rid, f, new, size)
  return nil
end
local function close_log(rid, last, kind, exp)
  redis.call('XADD', evk(rid), ev_id(tonumber(last) + 1), 'e', kind)
  redis.call('PEXPIREAT', evk(rid), exp)
end
-- End the job; ``hold_until`` (a cancel's: the lease deadline) leaves its log open for its worker.
local function end_job(rid, kind, hold_until)
  local j = jk(rid)
  local f = redis.call('HMGET', j, 'q', 'e', 'x')
  redis.call('HSET', j, 's', 'ended', 'k', kind)
  redis.call('HINCRBY', j, 'v', 1)
  redis.call('ZREM', P .. 'jobs', O .. ':' .. rid)
  redis.call('ZREM', P .. 'jobo:' .. O, rid)
  if f[2] == '1' then
    if hold_until and tonumber(hold_until) > now_ms() then
      redis.call('HSET', j, 'c', hold_until)
    else
      close_log(rid, f[1], kind, f[3])
    end
  end
end
"""


def _script(body: str) -> Script:
    return script(PUT_FUNCTION + _JOBS + body)


# ARGV: P O rid body items n_input ids_json ttl_ms prev conv conv_seq snapshot worker lease_ms max_per_owner events
# → {'ok'} | {'limit', live} | {'put', 0 (what it was built on vanished: copy it) or -1 (stored before)}
CREATE_BACKGROUND = _script("""
local rid, now = ARGV[3], now_ms()
local mine = P .. 'jobo:' .. O
local live = redis.call('ZCOUNT', mine, '(' .. fmt(now), '+inf')
if live >= tonumber(ARGV[15]) then return {'limit', fmt(live)} end
local put = put_response(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12])
if put == -1 and redis.call('EXISTS', jk(rid)) == 1 then return {'ok'} end
if put ~= 1 then return {'put', fmt(put)} end
local exp = redis.call('PEXPIRETIME', rk(rid))
local deadline = fmt(now + tonumber(ARGV[14]))
redis.call('HSET', jk(rid), 's', 'queued', 'w', ARGV[13], 'v', '0', 'e', ARGV[16], 'z', '0', 'q', '-1', 'x', fmt(exp))
redis.call('PEXPIREAT', jk(rid), fmt(exp))
redis.call('ZADD', P .. 'jobs', deadline, O .. ':' .. rid)
redis.call('ZADD', mine, deadline, rid)
return {'ok'}
""")

# ARGV: P O rid body worker → 1 | 0 (not this worker's running job)
START = _script("""
local rid = ARGV[3]
if not running(jk(rid), ARGV[5]) then return 0 end
local thread = redis.call('GET', rk(rid))
if thread then redis.call('HSET', tk(thread), rid .. ':b', ARGV[4]) end
redis.call('HSET', jk(rid), 's', 'in_progress')
redis.call('HINCRBY', jk(rid), 'v', 1)
return 1
""")

# ARGV: P O rid worker limit (seq data)… → {'ok'} | {'ended'} | {'too_large', size}
APPEND = _script("""
return append(ARGV[3], 6) or {'ok'}
""")

# ARGV: P O rid worker limit body items ids_json outcome (seq data)…
# → {'ok'} | {'ended'} | {'too_large', size}: the last events, the final body and items, the job ended.
FINISH = _script("""
local rid = ARGV[3]
local refused = append(rid, 10)
if refused then return refused end
local thread = redis.call('GET', rk(rid))
if thread then
  local t = tk(thread)
  local n = tonumber(redis.call('HGET', t, rid .. ':n') or '0')
  redis.call('HSET', t, rid .. ':b', ARGV[6], rid .. ':d', ARGV[7], rid .. ':i', ARGV[8])
  local es = fmt(redis.call('PEXPIRETIME', rk(rid)))
  local ids, us = cjson.decode(ARGV[8]), now_us()
  for i = n + 1, #ids do hold(ids[i], fmt(i - 1) .. ':' .. rid, us, es) end
end
end_job(rid, ARGV[9], nil)
return {'ok'}
""")

# ARGV: P O rid worker limit (seq data)… → 1 | 0 (not this worker's cancelled job with its log open):
# the events its live client got that the log lacks (none if they would pass the bound), then the log closed.
CLOSE = _script("""
local rid, j = ARGV[3], jk(ARGV[3])
local f = redis.call('HMGET', j, 's', 'w', 'z', 'q', 'x', 'e', 'c')
if f[1] ~= 'ended' or f[2] ~= ARGV[4] or not f[7] or tonumber(f[7]) <= now_ms() then return 0 end
local new, size = plan_events(f, 6)
if size <= tonumber(ARGV[5]) then log_events(rid, f, new, size) end
redis.call('HDEL', j, 'c')
close_log(rid, redis.call('HGET', j, 'q'), redis.call('HGET', j, 'k'), f[5])
return 1
""")

# ARGV: P O rid body version outcome only_expired
# → {'ok'} | {'ended'} | {'changed'} | {'alive'} | {'gone'}: end a job from outside (cancel, reaper);
# an empty body leaves the stored one as it is (its response is gone).
END = _script("""
local rid = ARGV[3]
local f = redis.call('HMGET', jk(rid), 's', 'v', 'w')
if not f[1] then  -- expired with its response (or evicted): only its lease entries are left
  redis.call('ZREM', P .. 'jobs', O .. ':' .. rid)
  redis.call('ZREM', P .. 'jobo:' .. O, rid)
  return {'gone'}
end
if f[1] == 'ended' then return {'ended'} end
if f[2] ~= ARGV[5] then return {'changed'} end
if ARGV[7] == '1' then
  local deadline = redis.call('ZSCORE', P .. 'jobs', O .. ':' .. rid)
  if deadline and tonumber(deadline) > now_ms() then return {'alive'} end
end
local thread = redis.call('GET', rk(rid))
if thread and ARGV[4] ~= '' then redis.call('HSET', tk(thread), rid .. ':b', ARGV[4]) end
local hold = nil
if ARGV[7] ~= '1' and ARGV[6] == 'cancelled' then hold = redis.call('ZSCORE', P .. 'jobs', O .. ':' .. rid) end
end_job(rid, ARGV[6], hold)
redis.call('PUBLISH', P .. 'cancel:' .. f[3], rid)
return {'ok'}
""")

# ARGV: P O rid → nil | {state, version, body or nil}
SNAPSHOT = _script("""
local rid = ARGV[3]
local f = redis.call('HMGET', jk(rid), 's', 'v')
if not f[1] then return false end
local thread = redis.call('GET', rk(rid))
local body = thread and redis.call('HGET', tk(thread), rid .. ':b')
return {f[1], f[2], body}
""")

# ARGV: P O rid after count → nil | {'none'} (no log kept) | {ended '1'/'0', event…}
READ = _script("""
local rid, count = ARGV[3], tonumber(ARGV[5])
local f = redis.call('HMGET', jk(rid), 's', 'e', 'c')
if not f[1] then return false end
if f[2] ~= '1' then return {'none'} end
local entries = redis.call('XRANGE', evk(rid), '(' .. ev_id(tonumber(ARGV[4])), '+', 'COUNT', count)
local out = {'0'}
for _, e in ipairs(entries) do
  if e[2][1] == 'e' then
    out[1] = '1'
    break
  end
  out[#out + 1] = e[2][2]
end
local held = f[3] and tonumber(f[3]) > now_ms()
if out[1] == '0' and f[1] == 'ended' and not held and #entries < count then out[1] = '1' end
return out
""")

# ARGV: P '' worker lease_ms (owner id)… → ids no longer this worker's running jobs; renews the others.
RENEW = _script("""
local worker, deadline, lost = ARGV[3], fmt(now_ms() + tonumber(ARGV[4])), {}
for i = 5, #ARGV, 2 do
  local o, rid = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', P .. 'job:' .. o .. ':' .. rid, 's', 'w')
  if f[1] and f[1] ~= 'ended' and f[2] == worker then
    redis.call('ZADD', P .. 'jobs', 'XX', deadline, o .. ':' .. rid)
    redis.call('ZADD', P .. 'jobo:' .. o, 'XX', deadline, rid)
  else
    lost[#lost + 1] = rid
  end
end
return lost
""")

# ARGV: P '' limit → {'O:id'…} whose lease ran out
EXPIRED = _script("""
return redis.call('ZRANGEBYSCORE', P .. 'jobs', '-inf', fmt(now_ms()), 'LIMIT', '0', ARGV[3])
""")
