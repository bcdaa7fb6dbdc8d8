-- SPDX-License-Identifier: MIT
-- Fixture for spec/e2e_metrics_spec.lua: things that move the counters, and the scrape.
local rill = require "rill"

local PID = tostring(require "own_pid") -- read after the fork: each worker loads the app itself

return rill.router {
  ["GET /pid"] = function() return { headers = { ["x-pid"] = PID }, body = PID } end,
  ["GET /hello"] = function() return { headers = { ["x-pid"] = PID }, body = "hello\n" } end,
  ["GET /boom"] = function() error("boom") end,
  ["GET /missing"] = function() return { status = 404, body = "no\n" } end,
  ["GET /spin"] = function() while true do end end,
  ["GET /events/:topic"] = function(req)
    return rill.sse(rill.subscribe(req.params.topic), { headers = { ["x-pid"] = PID } })
  end,
  ["POST /pub/:topic"] = function(req)
    return { headers = { ["x-pid"] = PID }, body = rill.publish(req.params.topic, req.body) .. " " .. PID }
  end,
  -- a fetch to 127.0.0.1:port/hello (a closed port: refused)
  ["GET /fetch/:port"] = function(req)
    local up, err = rill.fetch("http://127.0.0.1:" .. req.params.port .. "/hello", { timeout = 5 })
    if not up then return { status = 502, body = err .. "\n" } end
    return up:read()
  end,
  ["GET /metrics"] = rill.metrics(),
  ["GET /stats"] = function()
    local s = rill.stats()
    return ("requests.GET.2xx=%d streams=%d hub.published=%d workers=%d\n"):format(
      s.requests.GET["2xx"], s.streams, s.hub.published, s.workers)
  end,
}
