-- SPDX-License-Identifier: MIT
-- Relays an upstream event stream to browsers, surviving upstream drops:
--   UPSTREAM=http://127.0.0.1:9000/events rill examples/sse_proxy.lua
-- A browser that reconnects with Last-Event-ID resumes where it left off.
local rill = require "rill"
local upstream = os.getenv("UPSTREAM") or "http://127.0.0.1:9000/events"

return rill.router {
  ["GET /events"] = function(req)
    local events = rill.sse.follow(upstream, { last_event_id = rill.sse.last_event_id(req) })
    return rill.sse(events) -- each event encoded as it comes; heartbeats while idle
  end,
}
