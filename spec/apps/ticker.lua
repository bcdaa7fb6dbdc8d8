-- SPDX-License-Identifier: MIT
-- Background tasks, configuration and the hub, for spec/e2e_apps_spec.lua.
local rill = require "rill"

local n = 0
rill.every(0.05, function()
  n = n + 1
  rill.publish("ticks", { data = rill.json.encode({ n = n }) })
end)

local failures = 0
rill.every(0.05, function()
  failures = failures + 1
  if failures == 1 then error("first run fails") end
  rill.sleep(3600) -- once is enough
end)

rill.spawn(function()
  local _ <close> = setmetatable({}, { __close = function() io.stderr:write("spawned task closed\n") end })
  rill.sleep(3600)
end)

return rill.router {
  ["GET /ticks"] = function() return rill.sse(rill.subscribe("ticks")) end,
  ["GET /runs"] = function() return tostring(failures) .. "\n" end,
  ["GET /config"] = function() return { json = { args = rill.args, who = rill.env("RILL_SPEC_WHO", "nobody"),
                                                 port = rill.env("RILL_SPEC_PORT", 0) } } end,
  ["GET /hello"] = function() return "hello\n" end,
}
