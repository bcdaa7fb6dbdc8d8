-- SPDX-License-Identifier: MIT
-- Fixture for spec/e2e_trust_proxy_spec.lua: who the request came from.
local rill = require "rill"

return rill.router {
  ["GET /addr"] = function(req)
    return ("remote_addr=%s\npeer_addr=%s\n"):format(req.remote_addr, req.peer_addr)
  end,
}
