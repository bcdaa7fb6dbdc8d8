-- SPDX-License-Identifier: MIT
-- Relays an upstream event stream to browsers, surviving upstream drops:
--   UPSTREAM=http://127.0.0.1:9000/events rill examples/sse_proxy.lua
-- A browser that reconnects with Last-Event-ID resumes where it left off.
local rill = require "rill"
local upstream = os.getenv("UPSTREAM") or "http://127.0.0.1:9000/events"

return rill.router {
  ["GET /events"] = function(req)
    local events = rill.sse.follow(upstream, { last_event_id = req.headers["last-event-id"] })
    return {
      headers = { ["content-type"] = "text/event-stream", ["cache-control"] = "no-cache" },
      body = coroutine.wrap(function()
        for ev in events do coroutine.yield(rill.sse.encode(ev)) end
      end),
    }
  end,
}
