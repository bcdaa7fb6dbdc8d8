-- SPDX-License-Identifier: MIT
-- Fixture for spec/e2e_deploy_spec.lua: rill behind nginx as docs/deploy.md
-- sets it up. A stream's events come from the hub, so each one is released
-- only when the spec publishes it (POST /next/:topic, the data in the body).
local rill = require "rill"

return rill.router {
  ["GET /events/:topic"] = function(req)
    -- a retry goes first: nginx's HTTP/2 sends the response head only with body bytes
    local events = rill.subscribe(req.params.topic, { last_event_id = rill.sse.last_event_id(req) })
    return rill.sse(events, { retry = 3000 })
  end,
  ["POST /next/:topic"] = function(req)
    local id, err = rill.publish(req.params.topic, { data = req.body })
    if not id then return { status = 409, body = err .. "\n" } end
    return { status = 202, body = id }
  end,
  -- what nginx's proxy_set_header lines made of the request, and nginx's port (a
  -- connection kept alive serves the next request from the same port)
  ["GET /whoami"] = function(req)
    local h = req.headers
    return ("host=%s proto=%s for=%s connection=%s port=%d\n"):format(tostring(h["Host"]),
      tostring(h["X-Forwarded-Proto"]), tostring(h["X-Forwarded-For"]), tostring(h["Connection"]), req.remote_port)
  end,
}
