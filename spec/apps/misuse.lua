-- SPDX-License-Identifier: MIT
-- Fixture for spec/misuse_spec.lua: runs the Lua chunk a request carries, so
-- the sweep's cases live in the spec and run in a real request coroutine of a
-- real server (a crash or a hang shows as a dead or silent server, never as a
-- crashed busted).
--   POST /run   runs the body in pcall; answers "returned <n>\n<v1>\n..." or
--               "raised\n<message>"
--   POST /raw   returns what the body returns: an error reaches rill (a 500
--               and a log line), a table is the response
--   GET /ok     "ok"
--   GET /held   sends its head, then no body for 30 s (an upstream whose body
--               is not there yet, for the readers of rill.fetch)
--   GET /events one event, as text/event-stream (for rill.sse.follow)
local rill = require "rill"

local function load_case(req)
  local env = setmetatable({ rill = rill, req = req }, { __index = _G })
  return assert(load(req.body, "=case", "t", env))
end

local function report(ok, ...)
  if not ok then
    return "raised\n" .. tostring((...))
  end
  local out = { "returned " .. select("#", ...) }
  for i = 1, select("#", ...) do
    out[#out + 1] = tostring((select(i, ...)))
  end
  return table.concat(out, "\n")
end

return rill.router {
  ["POST /run"] = function(req)
    local fn = load_case(req)
    return report(pcall(fn))
  end,
  ["POST /raw"] = function(req)
    return load_case(req)()
  end,
  ["GET /ok"] = function()
    return "ok"
  end,
  ["GET /events"] = function()
    return { headers = { ["content-type"] = "text/event-stream" }, body = "data: x\n\n" }
  end,
  ["GET /held"] = function()
    return {
      body = function()
        rill.sleep(30)
      end,
    }
  end,
}
