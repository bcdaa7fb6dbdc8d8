-- SPDX-License-Identifier: MIT
-- The bench workloads in rill (bench/run.sh), byte for byte as bench/bare_evhttp.c.
local rill = require "rill"

local lines = {}
for i = 1, 100 do lines[i] = ("line %03d of the hundred-line body\n"):format(i) end

return rill.router {
  ["GET /hello"] = function() return "hello world\n" end,
  ["GET /chunks"] = function()
    return { body = coroutine.wrap(function()
      for i = 1, 100 do coroutine.yield(lines[i]) end
    end) }
  end,
  -- an idle event stream: a subscription to a topic nobody publishes to
  ["GET /sse"] = function()
    return rill.sse(rill.subscribe("idle"), { heartbeat = 0 })
  end,
}
