-- Fair scheduling across tenants (docs/fair-scheduling.md), atomic in Redis.
--
-- Every tenant with waiting jobs has its own list of message ids per priority
-- (<ns>:fair:q:<tenant> for the default, 5; <ns>:fair:q<p>:<tenant> for
-- another, listed in the sorted set <ns>:fair:prio:<tenant> while it holds
-- any; the priority before the tenant, which may hold ":" and digits) and a
-- place in the ring (<ns>:fair:ring). Within its turn a tenant's
-- higher priorities go first; its turns are the same whatever its priorities. Messages
-- wait in <ns>:fair:msgs until `refill` moves them, in deficit round robin
-- over the ring, into Dramatiq's own queue, which is kept at most `depth`
-- long: a newcomer waits behind at most one round of the ring plus `depth`.
-- A tenant's limits (<ns>:fair:limits:<tenant>) weigh its turn, cap the jobs
-- it has moved and not yet finished (slots: a sorted set of message ids by
-- lease expiry) and its rate (a token bucket).
--
-- A refill that finds Dramatiq's queue empty moves a turn's consecutive messages of
-- one job type and priority as one message of up to `bundle` jobs (a tenant with a
-- running cap excepted: a slot is one job): the first's, the other job ids in its
-- `more` option (ferry.worker.bundles). Only a type some worker has measured short
-- (<ns>:fair:short:<type>, renewed with the slots' leases) is bundled. Credit,
-- tokens and room still count jobs.
--
-- ARGV: command, namespace, queue name, now (ms), depth, hold (ms), bundle, then
--   push:    (tenant, message id, priority, encoded message) quads; then refills
--   refill:  lease (ms), number of releases R, number of short types S, R (tenant,
--            message id) pairs released, S job types measured short, then
--            (tenant, message id) pairs whose lease is renewed
--   peek:    tenants (empty: every tenant of the ring, up to 1000)
-- Returns: push/refill {moved, tenants waiting}; peek {tenant, waiting,
--   how long the oldest has waited (ms)} triples.

local command = ARGV[1]
local ns = ARGV[2]
local queue = ns .. ":" .. ARGV[3]
local queue_msgs = queue .. ".msgs"
local now = tonumber(ARGV[4])
local depth = tonumber(ARGV[5])
local hold = tonumber(ARGV[6])
local bundle = tonumber(ARGV[7])

-- Messages per command that takes many (Lua's unpack has a limit).
local CHUNK = 500

local msgs = ns .. ":fair:msgs"
-- The messages of several jobs in Dramatiq's queue: message id -> jobs beyond its first.
local bundles = ns .. ":fair:bundles"
local ring = ns .. ":fair:ring"
local credits = ns .. ":fair:credit"
local function waiting(t) return ns .. ":fair:q:" .. t end
local function waiting_at(t, p)
  if p == 5 then return waiting(t) end
  return ns .. ":fair:q" .. p .. ":" .. t
end
local function prios(t) return ns .. ":fair:prio:" .. t end
local function limits(t) return ns .. ":fair:limits:" .. t end
local function slots(t) return ns .. ":fair:slots:" .. t end
local function bucket(t) return ns .. ":fair:bucket:" .. t end
local function short_key(job_type) return ns .. ":fair:short:" .. job_type end

-- How many of its messages tenant `t` may move now (and its bucket, if any).
local function allowance(t, credit)
  local l = redis.call("hmget", limits(t), "max_running", "rate", "burst")
  local allowed = credit
  local cap = tonumber(l[1])
  if cap then
    redis.call("zremrangebyscore", slots(t), "-inf", now)
    allowed = math.min(allowed, cap - redis.call("zcard", slots(t)))
  end
  local rate, tokens = tonumber(l[2]), nil
  if rate then
    local burst = tonumber(l[3]) or 1
    local b = redis.call("hmget", bucket(t), "tokens", "at")
    tokens = math.min(burst, (tonumber(b[1]) or burst) + (now - (tonumber(b[2]) or now)) * rate / 1000)
    allowed = math.min(allowed, math.floor(tokens))
  end
  return allowed, cap, tokens
end

-- The list of tenant `t`'s highest waiting priority, and that priority (nil: none).
local function highest(t)
  local top = tonumber(redis.call("zrevrange", prios(t), 0, 0)[1])
  if top and top > 5 then return waiting_at(t, top), top end
  if redis.call("llen", waiting(t)) > 0 then return waiting(t), 5 end
  if top then return waiting_at(t, top), top end
  return nil, nil
end

-- Up to `n` of tenant `t`'s message ids, highest priority first (fewer if it has fewer).
local function pop(t, n)
  local ids = {}
  while #ids < n do
    local list, p = highest(t)
    if not list then break end
    local got = redis.call("lpop", list, n - #ids)
    if got then
      for _, id in ipairs(got) do ids[#ids + 1] = id end
    end
    if p ~= 5 and redis.call("llen", list) == 0 then
      redis.call("zrem", prios(t), p)
    elseif not got then
      break
    end
  end
  return ids
end

-- Consecutive messages of one job type and priority as one message each (up to
-- `bundle` jobs): {ids, encoded} of what goes into Dramatiq's queue. A message left
-- alone keeps its encoding. Each bundle is listed in `bundles`.
local function bundled(ids, data)
  local out_ids, out_data = {}, {}
  local head, key, more, members
  local short = {}
  local function is_short(job_type)
    if short[job_type] == nil then
      short[job_type] = redis.call("exists", short_key(job_type)) == 1
    end
    return short[job_type]
  end
  local function close()
    if head and #more > 0 then
      head.options.more = more
      local ok, encoded = pcall(cjson.encode, head)
      if ok then
        out_data[#out_data] = encoded
        redis.call("hset", bundles, out_ids[#out_ids], #more)
      else  -- each goes as it came
        for _, member in ipairs(members) do
          out_ids[#out_ids + 1] = member[1]
          out_data[#out_data + 1] = member[2]
        end
      end
    end
  end
  for i, id in ipairs(ids) do
    -- A message that does not decode as a job's goes as it is (the moves are done).
    local ok, m = pcall(cjson.decode, data[i])
    local k = nil
    if ok and type(m) == "table" and type(m.args) == "table" and type(m.args[1]) == "string"
      and type(m.options) == "table" and m.options.more == nil and m.options.eta == nil
      and type(m.actor_name) == "string" and is_short(m.actor_name) then
      k = m.actor_name .. "|" .. tostring(m.options.priority)
    end
    if k and head and k == key and #more + 1 < bundle then
      more[#more + 1] = m.args[1]
      members[#members + 1] = {id, data[i]}
    else
      close()
      out_ids[#out_ids + 1] = id
      out_data[#out_data + 1] = data[i]
      head, key, more, members = k and m or nil, k, {}, {}
    end
  end
  close()
  return out_ids, out_data
end

-- Move up to `n` of tenant `t`'s messages into Dramatiq's queue, a few commands for
-- all of them; a message whose data is gone is dropped and not counted.
local function move(t, n, cap, bundling)
  local moved = 0
  while moved < n do
    local ids = pop(t, math.min(n - moved, CHUNK))
    if #ids == 0 then break end
    local data = redis.call("hmget", msgs, unpack(ids))
    redis.call("hdel", msgs, unpack(ids))
    local found, encoded = {}, {}
    for i, id in ipairs(ids) do
      if data[i] then
        found[#found + 1] = id
        encoded[#encoded + 1] = data[i]
      end
    end
    if #found > 0 then
      moved = moved + #found
      local sent = found
      if bundling and not cap then sent, encoded = bundled(found, encoded) end
      local fields, held = {}, {}
      for i, id in ipairs(sent) do
        fields[#fields + 1] = id
        fields[#fields + 1] = encoded[i]
        held[#held + 1] = now + hold
        held[#held + 1] = id
      end
      redis.call("hset", queue_msgs, unpack(fields))
      redis.call("rpush", queue, unpack(sent))
      if cap then redis.call("zadd", slots(t), unpack(held)) end
    end
  end
  return moved
end

-- Every list of tenant `t`: the default priority's, and those of the others waiting.
local function lists(t)
  local all = {waiting(t)}
  for _, p in ipairs(redis.call("zrange", prios(t), 0, -1)) do
    all[#all + 1] = waiting_at(t, tonumber(p))
  end
  return all
end

local function refill()
  local queued = redis.call("llen", queue)
  -- Room counts jobs: a bundle still in the queue counts as each of its jobs.
  if queued == 0 then
    redis.call("del", bundles)
  else
    local listed = redis.call("hgetall", bundles)
    for i = 1, #listed, 2 do
      if redis.call("lpos", queue, listed[i]) then
        queued = queued + tonumber(listed[i + 1])
      else  -- fetched by a worker
        redis.call("hdel", bundles, listed[i])
      end
    end
  end
  local room = depth - queued
  -- Only into an empty queue, where a newcomer finds it cheap to look for them.
  local bundling = bundle > 1 and queued == 0
  local active = redis.call("llen", ring)
  local idle, total = 0, 0
  while room > 0 and active > 0 and idle < active do
    local t = redis.call("lindex", ring, 0)
    local credit = tonumber(redis.call("hget", credits, t))
      or tonumber(redis.call("hget", limits(t), "weight")) or 1
    -- Alone in the ring, a tenant's turn is the room: no one else waits for a turn.
    local alone = active == 1
    if alone then credit = math.max(credit, room) end
    local allowed, cap, tokens = allowance(t, credit)
    local moved = move(t, math.min(allowed, room), cap, bundling)
    if tokens then redis.call("hset", bucket(t), "tokens", tokens - moved, "at", now) end
    room, credit, total = room - moved, credit - moved, total + moved
    if not highest(t) then
      -- Nothing left: the tenant leaves the ring (a new job brings it back).
      redis.call("lpop", ring)
      redis.call("hdel", credits, t)
      active, idle = active - 1, 0
    elseif credit > 0 and room <= 0 and not alone then
      -- Out of room mid-turn: the tenant keeps the head and the rest of its turn.
      redis.call("hset", credits, t, credit)
    else
      -- Turn spent, or held back by a cap: next tenant.
      redis.call("lmove", ring, ring, "LEFT", "RIGHT")
      redis.call("hdel", credits, t)
      if moved == 0 then idle = idle + 1 else idle = 0 end
    end
  end
  return {total, active}
end

if command == "push" then
  local checked = {}
  local i = 8
  while i <= #ARGV do
    local t, p = ARGV[i], ARGV[i + 2]
    if not highest(t) then
      redis.call("rpush", ring, t)
    elseif not checked[t] and not redis.call("lpos", ring, t) then
      -- Jobs waiting, yet out of the ring: left by a worker of the release before
      -- priorities (it saw only the default list empty). Back into the ring.
      redis.call("rpush", ring, t)
    end
    checked[t] = true
    -- The run of messages of this tenant and priority: one HSET and one RPUSH.
    local fields, ids = {}, {}
    while i <= #ARGV and ARGV[i] == t and ARGV[i + 2] == p and #ids < CHUNK do
      fields[#fields + 1] = ARGV[i + 1]
      fields[#fields + 1] = ARGV[i + 3]
      ids[#ids + 1] = ARGV[i + 1]
      i = i + 4
    end
    redis.call("hset", msgs, unpack(fields))
    redis.call("rpush", waiting_at(t, tonumber(p)), unpack(ids))
    if tonumber(p) ~= 5 then redis.call("zadd", prios(t), p, p) end
  end
  return refill()
elseif command == "refill" then
  local lease = tonumber(ARGV[8])
  local released = tonumber(ARGV[9])
  local shorts = tonumber(ARGV[10])
  local first_short = 11 + 2 * released
  local first_renewal = first_short + shorts
  for i = 11, first_short - 1, 2 do redis.call("zrem", slots(ARGV[i]), ARGV[i + 1]) end
  for i = first_short, first_renewal - 1 do
    redis.call("set", short_key(ARGV[i]), 1, "PX", lease)
  end
  for i = first_renewal, #ARGV, 2 do
    redis.call("zadd", slots(ARGV[i]), "XX", now + lease, ARGV[i + 1])
  end
  return refill()
elseif command == "peek" then
  local tenants = {}
  for i = 8, #ARGV do tenants[#tenants + 1] = ARGV[i] end
  if #tenants == 0 then tenants = redis.call("lrange", ring, 0, 999) end
  local out = {}
  for _, t in ipairs(tenants) do
    -- The oldest waiting is at the head of one of its lists: the longest wait of the heads.
    local n, wait = 0, 0
    for _, list in ipairs(lists(t)) do
      n = n + redis.call("llen", list)
      local head = redis.call("lindex", list, 0)
      local data = head and redis.call("hget", msgs, head)
      local sent = data and cjson.decode(data)["message_timestamp"]
      if sent then wait = math.max(wait, now - sent) end
    end
    out[#out + 1] = t
    out[#out + 1] = n
    out[#out + 1] = wait
  end
  return out
end
return redis.error_reply("fair.lua: unknown command " .. tostring(command))
