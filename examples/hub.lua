-- SPDX-License-Identifier: MIT
-- A publish/subscribe hub for browsers: open http://127.0.0.1:8080/ in two
-- tabs and publish from one. EventSource reconnects on its own with
-- Last-Event-ID and gets exactly the events it missed.
local rill = require "rill"

return rill.router {
  -- the page, from this file's directory (only "/" is routed: nothing else there is served)
  ["GET /"] = rill.static(".", { index = "hub.html" }),
  ["POST /publish/:topic"] = function(req)
    rill.publish(req.params.topic, { event = "msg", data = req.body })
    return { status = 202 }
  end,
  ["GET /events/:topic"] = function(req)
    local events = rill.subscribe(req.params.topic, { last_event_id = rill.sse.last_event_id(req) })
    return rill.sse(events, { retry = 500 })
  end,
  -- ends every stream of a topic: the browsers reconnect and resume (a demo of resume)
  ["POST /drop/:topic"] = function(req)
    return ("dropped %d\n"):format(rill.hub.disconnect(req.params.topic))
  end,
}
