-- SPDX-License-Identifier: MIT
-- Fixture for spec/e2e_trace_spec.lua: one instance calls another with rill.fetch.
local rill = require "rill"

-- what the upstream got
local function echo(req)
  return ("traceparent=%s\nx-request-id=%s\n"):format(
    tostring(req.headers.traceparent), tostring(req.headers["x-request-id"]))
end

return rill.router {
  ["GET /echo"] = echo,
  -- fetches ?up=; ?own=1 sets the handler's own trace headers, in mixed case
  ["GET /via"] = function(req)
    local headers = nil
    if req.query.own then
      headers = { TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ["X-Request-ID"] = "mine" }
    end
    local up = assert(rill.fetch(req.query.up, { headers = headers }))
    return ("id=%s\n%s"):format(req.id, up:read())
  end,
}
