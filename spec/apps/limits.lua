-- SPDX-License-Identifier: MIT
-- Fixture for spec/e2e_limits_spec.lua: clients that hold on to connections.
local rill = require "rill"

local event = { data = ("x"):rep(65536) }

return rill.router {
  ["GET /hello"] = function() return "hello\n" end,
  -- big events as fast as the client takes them; heartbeats every 50 ms while it takes none
  ["GET /sse-flood"] = function()
    return rill.sse(function() return event end, { heartbeat = 0.05 })
  end,
}
