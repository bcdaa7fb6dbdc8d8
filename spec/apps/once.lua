-- SPDX-License-Identifier: MIT
-- once tasks and every-worker tasks, for spec/e2e_apps_spec.lua: each
-- publishes the pid of the worker that ran it.
local rill = require "rill"
local PID = tostring(dofile("spec/apps/own_pid.lua"))

rill.every(0.05, function() rill.publish("once", { data = PID }) end, { once = true })
rill.every(0.05, function() rill.publish("each", { data = PID }) end)

return rill.router {
  ["GET /pid"] = function() return PID end,
  ["GET /:topic"] = function(req) return rill.sse(rill.subscribe(req.params.topic)) end,
}
