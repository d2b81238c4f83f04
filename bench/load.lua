-- The request mix of bench/load.py for wrk, and the check of every answer against it.
--
-- bench/load.py writes the run's data into a directory and passes it as CEDARGATE_LOAD_DIR:
-- mix.lua (the cycle of requests, the demo users' `sub`s, the connections per thread) and
-- fresh-<thread>.txt (that thread's never-seen tokens, `user token` per line). Every thread
-- sends the same fixed cycle of requests, in order; a fresh-token slot takes the thread's next
-- token, so no token is sent twice (should a thread use up its slice, it starts it again and
-- those requests count as `fresh-reused`).
--
-- Which answer belongs to which request: wrk's response() does not say, so every request names
-- its kind and user in the query (`?load=ca.reader`), which no policy reads and the cache key
-- does not include; the demo backend echoes it in every 200. Hence:
-- - every 200 is checked on its own: it must name a kind that should be allowed, and carry the
--   principal of the user the request was sent as (a cached answer given to the wrong token
--   shows here). A 200 to a denied or bad-token request is a wrong answer, counted exactly.
-- - 401 and 403 bodies echo nothing, so they are checked by count, per thread: each kind of
--   request expects one status (cached-denied 403, bad 401), so per thread the answers of a
--   status can never exceed the requests sent that expect it, and the requests sent but not
--   answered can only be those in flight when wrk stopped (at most one per connection, as wrk
--   sends the next request on a connection only after the answer) or lost with a socket error.
--   An excess is a wrong answer; so is a shortfall beyond that tolerance. Wrong answers among
--   401/403 could only hide behind in-flight requests of the other status at the very end:
--   at most the connections of a thread, never a systematic error.
-- The results go to CEDARGATE_LOAD_RESULT as JSON; done() also prints them as a table.

local dir = os.getenv("CEDARGATE_LOAD_DIR")
local mix = dofile(dir .. "/mix.lua")

-- Kinds in report order, with the status each expects.
local KINDS = { "cached-allowed", "cached-denied", "fresh", "fresh-reused", "bad" }
local EXPECT = { ["cached-allowed"] = 200, ["cached-denied"] = 403, fresh = 200, ["fresh-reused"] = 200, bad = 401 }
-- The kind a tag names (`ca.reader` → cached-allowed), for the 200 check.
local TAG_KIND = { ca = "cached-allowed", cd = "cached-denied", fr = "fresh", fx = "fresh-reused",
                   bg = "bad", bf = "bad", bc = "bad" }

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

-- Per thread: the cycle's requests built once, the fresh tokens, the counters.
local cycle, fresh, n_fresh, next_fresh, pos = {}, {}, 0, 0, 0
stats = {}

local function bump(key, by)
  stats[key] = (stats[key] or 0) + (by or 1)
end

local function with_tag(path, tag)
  return path .. "?load=" .. tag
end

local function build(method, path, header, body)
  local headers = { Authorization = header }
  if body then headers["Content-Type"] = "application/json" end
  return wrk.format(method, path, headers, body)
end

function init(args)
  for _, slot in ipairs(mix.cycle) do
    -- A slot sends one request, or takes turns through several (the bad tokens' variants).
    local entry = { kind = slot.kind, subkind = slot.subkind, requests = {}, turn = 0,
                    counter = slot.tag and ("sent " .. slot.tag) }
    for _, header in ipairs(slot.headers or {}) do
      table.insert(entry.requests, build(slot.method, with_tag(slot.path, slot.tag), header, slot.body))
    end
    table.insert(cycle, entry)
  end
  local file = assert(io.open(string.format("%s/fresh-%d.txt", dir, id)))
  for line in file:lines() do
    local user, token = line:match("^(%S+) (%S+)$")
    if user then
      n_fresh = n_fresh + 1
      fresh[n_fresh] = { user = user, token = token }
    end
  end
  file:close()
end

local function fresh_request()
  next_fresh = next_fresh + 1
  local kind, tag = "fresh", "fr"
  if next_fresh > n_fresh then kind, tag = "fresh-reused", "fx" end
  local f = fresh[(next_fresh - 1) % n_fresh + 1]
  local route = mix.fresh_routes[f.user]
  return kind, build(route.method, with_tag(route.path, tag .. "." .. f.user), "Bearer " .. f.token, route.body)
end

function request()
  pos = pos % #cycle + 1
  local entry = cycle[pos]
  local kind, req = entry.kind, nil
  if kind == "fresh" then
    kind, req = fresh_request()
  else
    entry.turn = entry.turn % #entry.requests + 1
    req = entry.requests[entry.turn]
  end
  bump("sent " .. kind)
  if entry.subkind then bump("sent " .. entry.subkind) end
  if entry.counter then bump(entry.counter) end
  bump("sent")
  return req
end

local UNAUTHORIZED = '{"message":"Unauthorized"}'
local DENIED = '"Message":"User is not authorized to access this resource'
local EXPLICIT = 'with an explicit deny'

function response(status, headers, body)
  bump("answered")
  bump("status " .. status)
  if status >= 500 then bump("5xx") end
  if status == 200 then
    local tag = body:match('"query":"load=([%w%-]+%.[%w]+)"')
    local code, user = nil, nil
    if tag then code, user = tag:match("^(%w+)%.(%w+)$") end
    local kind = code and TAG_KIND[code]
    if not kind then
      bump("wrong 200 without a tag")
    elseif EXPECT[kind] ~= 200 then
      bump("wrong 200 to " .. kind)
    elseif not body:find('"principalId":"' .. (mix.subs[user] or "?") .. '"', 1, true) then
      bump("wrong 200 for another principal")
    else
      bump("ok " .. kind)
    end
  elseif status == 403 then
    if body:find(DENIED, 1, true) then
      bump("answered 403")
      if body:find(EXPLICIT, 1, true) then bump("403 explicit deny") else bump("403 no allow") end
    else
      bump("wrong 403 body")
    end
  elseif status == 401 then
    if body == UNAUTHORIZED then bump("answered 401") else bump("wrong 401 body") end
  else
    bump("wrong status")
  end
end

-- ---- done: per thread, expected against actual ----------------------------------------------

local function get(t, key) return t[key] or 0 end

local function check(t, tolerance)
  local out = { wrong = 0, unanswered = get(t, "sent") - get(t, "answered") }
  for key, value in pairs(t) do
    if key:find("^wrong") then out.wrong = out.wrong + value end
  end
  -- The answers each kind expects, beside what came back; 200s are attributed by their tag.
  local got = {
    ["cached-allowed"] = get(t, "ok cached-allowed"),
    fresh = get(t, "ok fresh"),
    ["fresh-reused"] = get(t, "ok fresh-reused"),
    ["cached-denied"] = get(t, "answered 403"),
    bad = get(t, "answered 401"),
  }
  out.kinds = {}
  for _, kind in ipairs(KINDS) do
    local sent = get(t, "sent " .. kind)
    local short = sent - got[kind]
    if short < 0 then out.wrong = out.wrong - short end
    out.kinds[kind] = { sent = sent, got = got[kind], short = short }
  end
  out.beyond_tolerance = math.max(0, out.unanswered - tolerance)
  out.wrong = out.wrong + out.beyond_tolerance
  return out
end

local function json(value, indent)
  indent = indent or ""
  if type(value) == "table" then
    local keys = {}
    for k in pairs(value) do table.insert(keys, k) end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do
      table.insert(parts, indent .. "  " .. string.format("%q", tostring(k)) .. ": " .. json(value[k], indent .. "  "))
    end
    return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
  elseif type(value) == "string" then
    return string.format("%q", value)
  else
    return string.format("%.17g", value)
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  -- A socket error can lose the request then on that connection (wrk reconnects).
  local tolerance = mix.connections_per_thread + errors.read + errors.write
  local result = {
    duration_s = summary.duration / 1e6,
    requests = summary.requests,
    requests_per_s = summary.requests / (summary.duration / 1e6),
    latency_us = { p50 = latency:percentile(50), p90 = latency:percentile(90),
                   p99 = latency:percentile(99), max = latency.max, mean = latency.mean },
    socket_errors = { connect = errors.connect, read = errors.read, write = errors.write,
                      timeout = errors.timeout },
    tolerance_per_thread = tolerance,
    threads = {},
    totals = {},
    wrong = 0,
    ["5xx"] = 0,
  }
  print()
  print(string.format("%-7s %-15s %9s %9s %7s", "thread", "kind", "sent", "answered", "short"))
  for i, thread in ipairs(threads) do
    local t = thread:get("stats")
    local c = check(t, tolerance)
    for _, kind in ipairs(KINDS) do
      local k = c.kinds[kind]
      if k.sent > 0 or k.got > 0 then
        print(string.format("%-7d %-15s %9d %9d %7d", i, kind .. " " .. EXPECT[kind], k.sent, k.got, k.short))
      end
    end
    print(string.format("%-7d %-15s %9d %9d %7d   (at most %d in flight; wrong answers %d)", i, "all",
      get(t, "sent"), get(t, "answered"), c.unanswered, tolerance, c.wrong))
    result.wrong = result.wrong + c.wrong
    result["5xx"] = result["5xx"] + get(t, "5xx")
    for key, value in pairs(t) do result.totals[key] = (result.totals[key] or 0) + value end
    result.threads[i] = { counts = t, unanswered = c.unanswered, wrong = c.wrong }
  end
  local out = io.open(os.getenv("CEDARGATE_LOAD_RESULT"), "w")
  out:write(json(result), "\n")
  out:close()
end
