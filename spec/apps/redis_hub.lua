-- SPDX-License-Identifier: MIT
-- Fixture for spec/e2e_redis_spec.lua: the hub on Redis (--hub), every answer
-- naming the worker's pid. RILL_TEST_HISTORY sets the hub's history.
local rill = require "rill"

local PID = tostring(require "own_pid") -- read after the fork: each worker loads the app itself

local history = tonumber(os.getenv("RILL_TEST_HISTORY") or "")
if history then rill.hub.configure { history = history } end

-- "k=v" lines of a table, sorted (nested tables as k.k2=v).
local function lines(t, prefix, out)
  out = out or {}
  for k, v in pairs(t) do
    if type(v) == "table" then
      lines(v, prefix .. k .. ".", out)
    else
      out[#out + 1] = prefix .. k .. "=" .. tostring(v)
    end
  end
  table.sort(out)
  return out
end

-- 200 "<id> <pid>", or a refusal 409 with every value rill.publish returned, one a line
local function publish(topic, ev)
  local r = table.pack(rill.publish(topic, ev))
  if not r[1] then
    local out = { "n=" .. r.n }
    for i = 1, r.n do out[#out + 1] = tostring(r[i]) end
    return { status = 409, headers = { ["x-pid"] = PID }, body = table.concat(out, "\n") }
  end
  return { headers = { ["x-pid"] = PID }, body = r[1] .. " " .. PID }
end

return rill.router {
  ["GET /pid"] = function() return { headers = { ["x-pid"] = PID }, body = PID } end,
  ["POST /pub/:topic"] = function(req) return publish(req.params.topic, req.body) end,
  -- an event with the fields of the query: /pubf/t?event=e&id=1-1&retry=5 (data: the body)
  ["POST /pubf/:topic"] = function(req)
    return publish(req.params.topic, { data = req.body, event = req.query.event, id = req.query.id, retry = req.query.retry })
  end,
  -- an event with no field at all: an id alone
  ["POST /empty/:topic"] = function(req) return publish(req.params.topic, {}) end,
  ["POST /close/:topic"] = function(req)
    local r = table.pack(rill.close_topic(req.params.topic))
    return { headers = { ["x-pid"] = PID }, body = table.concat(lines({ r = r }, ""), "\n") }
  end,
  ["POST /disconnect/:topic"] = function(req)
    return { headers = { ["x-pid"] = PID }, body = tostring(rill.hub.disconnect(req.params.topic)) }
  end,
  ["GET /stats"] = function()
    return { headers = { ["x-pid"] = PID }, body = table.concat(lines(rill.hub.stats(), ""), "\n") }
  end,
  ["GET /events/:topic"] = function(req)
    local events, err, code = rill.subscribe(req.params.topic, { last_event_id = rill.sse.last_event_id(req) })
    if not events then return { status = 503, body = err .. " " .. tostring(code) } end
    return rill.sse(events, { headers = { ["x-pid"] = PID } })
  end,
  -- the same stream, read by a Lua loop (not the C pump)
  ["GET /loop/:topic"] = function(req)
    local events = rill.subscribe(req.params.topic, { last_event_id = rill.sse.last_event_id(req) })
    return rill.sse(coroutine.wrap(function()
      for ev in events do coroutine.yield(ev) end
    end), { headers = { ["x-pid"] = PID } })
  end,
}
