-- SPDX-License-Identifier: MIT
-- Streams the time once a second until the client leaves (curl -N).
-- ?n=3 stops after three lines.
local rill = require "rill"

return function(req)
  local n = tonumber(req.query.n) or math.huge
  return {
    headers = { ["cache-control"] = "no-cache" },
    body = coroutine.wrap(function()
      for i = 1, n do
        if i > 1 then
          rill.sleep(1)
        end
        coroutine.yield(os.date("!%Y-%m-%dT%H:%M:%SZ") .. "\n")
      end
    end),
  }
end
