-- SPDX-License-Identifier: MIT
-- Fixture for spec/e2e_workers_spec.lua: every answer names the worker's pid.
local rill = require "rill"

local PID = tostring(require "own_pid") -- read after the fork: each worker loads the app itself

local function headers(extra)
  local h = { ["x-pid"] = PID }
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

return rill.router {
  ["GET /pid"] = function() return { headers = headers(), body = PID } end,
  -- answers "<id> <pid>"; a refusal 409 with every value rill.publish returned, one a line
  ["POST /pub/:topic"] = function(req)
    local r = table.pack(rill.publish(req.params.topic, req.body))
    if not r[1] then
      local lines = { "n=" .. r.n }
      for i = 1, r.n do lines[#lines + 1] = tostring(r[i]) end
      return { status = 409, headers = headers(), body = table.concat(lines, "\n") }
    end
    return { status = 200, headers = headers(), body = r[1] .. " " .. PID }
  end,
  ["POST /close/:topic"] = function(req)
    rill.close_topic(req.params.topic)
    return { headers = headers(), body = "closed " .. PID }
  end,
  ["GET /stats/:topic"] = function(req)
    local st = rill.hub.stats(req.params.topic)
    local out = {}
    for k, v in pairs(st) do out[#out + 1] = k .. "=" .. tostring(v) end
    table.sort(out)
    return { headers = headers(), body = table.concat(out, " ") }
  end,
  ["GET /events/:topic"] = function(req)
    local events = rill.subscribe(req.params.topic, { last_event_id = rill.sse.last_event_id(req) })
    return rill.sse(events, { headers = headers() })
  end,
}
