-- SPDX-License-Identifier: MIT
-- An API gateway route: /api/... is fetched from the API server, with the
-- request id passed on and upstream failures mapped to 502 and 504.
--   API=http://127.0.0.1:9000 rill examples/fetch_json.lua
local rill = require "rill"
local api = os.getenv("API") or "http://127.0.0.1:9000"

local function failure(status, code)
  return { status = status, headers = { ["content-type"] = "application/json" },
           body = ('{"error":"%s"}\n'):format(code) }
end

return rill.router {
  ["GET /api/*"] = function(req)
    local target = req.target:match("^/api(/.*)$") -- the raw path and query
    local up, _, code = rill.fetch(api .. target, {
      timeout = 5,
      headers = { accept = "application/json", ["x-request-id"] = req.id },
    })
    if not up then
      return failure(code == "timeout" and 504 or 502, code)
    end
    local body, _, rcode = up:read()
    if not body then
      return failure(rcode == "timeout" and 504 or 502, rcode)
    end
    return { status = up.status, headers = { ["content-type"] = up.headers["content-type"] }, body = body }
  end,
}
