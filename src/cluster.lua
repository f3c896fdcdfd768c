-- cluster.lua — the one Redis script behind --redis-url: sets one replica's
-- lease on the cluster's slots, atomically (a script runs alone in Redis),
-- so that the live replicas' leases never add up to more than the limit.
--
-- KEYS[1]  the cluster's hash: field = replica id,
--          value = "<lease> <expiry ms, Redis time> <demand>"
-- KEYS[2]  the epoch: set once, never expires; a Redis that lost its data
--          (restarted empty, failed over without the last writes) has a new
--          one, and replicas that knew the old one notice
-- KEYS[3]  the quarantine: while it exists (one TTL), grants are floors only
-- ARGV     id, floor, demand, ttl_ms, limit, epoch known (0: none), on_static
--   floor      the least lease to record: what the replica may be using now
--   demand     the slots it could use
--   on_static  1 when the replica admits on its static fallback now: it uses
--              slots no record shows
-- Returns  {usable, fair, replicas, ttl_ms, contended, epoch}
--   usable     what the replica may use: the lease recorded,
--              max(floor, min(demand, fair share, slots free)), but never
--              more than was free (a floor beyond it is recorded, as those
--              slots may be in use, and not handed out again)
--   fair       its max-min fair share of the limit over the live replicas'
--              demands (ties broken by id, so every replica computes the
--              same division)
--   replicas   live replicas, the caller included
--   contended  1 when the replicas want more than the limit
--
-- Quarantine: when the records cannot be trusted to show every slot in use
-- (a new epoch seen by a replica that knew the old one, or a replica coming
-- back from its static fallback), nobody gets more than its floor for one
-- TTL: by then every replica has written what it uses, or its lease lapsed.
--
-- Times are Redis's own (TIME), never the replicas' clocks. Records whose
-- expiry has passed are dropped here: a replica that died gives its slots
-- back one TTL after its last renewal.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local floor = tonumber(ARGV[2])
local demand = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local known = ARGV[6]
local on_static = ARGV[7] == '1'

-- Redis lost the records (restarted empty), or replicas admit on their
-- static fallback: slots are in use that no record shows. For one TTL
-- (until every lease granted before has been recorded again or has lapsed)
-- nobody gets more than its floor.
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = tostring(now)
  redis.call('SET', KEYS[2], epoch)
end
if (known ~= '0' and known ~= epoch) or on_static then
  redis.call('SET', KEYS[3], '1', 'PX', ttl, 'NX')
end
local fenced = redis.call('EXISTS', KEYS[3]) == 1

local others = 0
local live = {{id = id, demand = demand}}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local rid = fields[i]
  if rid ~= id then
    local l, e, d = string.match(fields[i + 1], '^(%d+) (%d+) (%d+)$')
    if l == nil or tonumber(e) <= now then
      redis.call('HDEL', KEYS[1], rid)
    else
      others = others + tonumber(l)
      live[#live + 1] = {id = rid, demand = tonumber(d)}
    end
  end
end

-- max-min fair shares: the smallest demands are met first, the rest split
-- what is left evenly (integer slots; the remainder goes to the last)
table.sort(live, function(a, b)
  if a.demand ~= b.demand then return a.demand < b.demand end
  return a.id < b.id
end)
local left, wanted, fair = limit, 0, 0
for k, r in ipairs(live) do
  local share = math.floor(left / (#live - k + 1))
  local give = math.min(r.demand, share)
  if k == #live then give = math.min(r.demand, left) end
  if r.id == id then fair = give end
  left = left - give
  wanted = wanted + r.demand
end

local free = limit - others
if free < 0 then free = 0 end
local lease = math.min(demand, fair, free)
if fenced then lease = 0 end
if lease < floor then lease = floor end

redis.call('HSET', KEYS[1], id, lease .. ' ' .. (now + ttl) .. ' ' .. demand)
redis.call('PEXPIRE', KEYS[1], ttl * 3)
local contended = 0
if wanted > limit then contended = 1 end
return {math.min(lease, free), fair, #live, ttl, contended, tonumber(epoch)}
