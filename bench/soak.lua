-- wrk script for bench/soak.py: cycles through a plan of mixed requests and counts answers per kind.
--
--   wrk -t1 -c64 -d120s --latency -s bench/soak.lua http://127.0.0.1:PORT -- PLAN_FILE
--
-- PLAN_FILE (written by soak.py) has one request per line: kind TAB method TAB path TAB body (body may be empty).
-- Each request carries "X-Request-ID: soak.<kind>", which the service echoes, so response() knows the kind of
-- the request it answers even though many connections interleave. done() prints one line:
--   SOAK_COUNTS {"sent": {kind: n}, "statuses": {kind: {status: n}}}
-- "sent" counts request() calls: one per request written, plus the one wrk builds to check the script.
-- Counts are kept in flat tables keyed by strings ("get 200"): wrk 4.1's thread:get() crashes copying nested tables.

local threads = {}

-- Runs in the main Lua state once per thread, before init(): keep each thread to read its counts in done().
function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

local plan = {}
local kinds = {}
local position = 0
sent = {}
answers = {}

-- Runs in each thread's own Lua state: build every request once, so request() only hands out strings.
function init(args)
  local file = assert(io.open(args[1], "r"), "soak.lua needs the plan file after --")
  for line in file:lines() do
    local kind, method, path, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)$")
    assert(kind, "malformed plan line: " .. line:sub(1, 80))
    local headers = { ["X-Request-ID"] = "soak." .. kind }
    if body == "" then
      body = nil
    else
      headers["Content-Type"] = "application/json"
    end
    table.insert(plan, wrk.format(method, path, headers, body))
    table.insert(kinds, kind)
    sent[kind] = 0
  end
  file:close()
  assert(#plan > 0, "empty plan file")
  -- Threads start at different places in the cycle, so they do not send the same kinds in lockstep.
  position = math.floor((thread_number - 1) * #plan / 2) % #plan
end

function request()
  position = position % #plan + 1
  local kind = kinds[position]
  sent[kind] = sent[kind] + 1
  return plan[position]
end

-- The kind comes back in the echoed request id; an answer without one is counted under "unknown".
function response(status, headers, body)
  local id = headers["X-Request-ID"] or headers["x-request-id"] or ""
  local key = (id:match("^soak%.([%w_]+)$") or "unknown") .. " " .. status
  answers[key] = (answers[key] or 0) + 1
end

-- Minimal JSON for tables of tables of numbers: keys become strings, as JSON requires.
local function to_json(value)
  if type(value) ~= "table" then
    return tostring(value)
  end
  local parts = {}
  for key, item in pairs(value) do
    table.insert(parts, string.format("%q: %s", tostring(key), to_json(item)))
  end
  table.sort(parts)
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- Runs in the main state: each thread counted in its own Lua state, so fetch and add up their tables.
function done(summary, latency, requests)
  local all_sent, all_statuses = {}, {}
  for _, thread in ipairs(threads) do
    for kind, count in pairs(thread:get("sent")) do
      all_sent[kind] = (all_sent[kind] or 0) + count
    end
    for key, count in pairs(thread:get("answers")) do
      local kind, status = key:match("^(%S+) (%d+)$")
      all_statuses[kind] = all_statuses[kind] or {}
      all_statuses[kind][status] = (all_statuses[kind][status] or 0) + count
    end
  end
  io.write("SOAK_COUNTS ", to_json({ sent = all_sent, statuses = all_statuses }), "\n")
end
