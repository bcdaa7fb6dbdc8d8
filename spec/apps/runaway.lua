-- SPDX-License-Identifier: MIT
-- Fixture for spec/e2e_limits_spec.lua: handlers that never yield or never stop allocating.
local rill = require "rill"

local hoard -- a chain of small tables, so that memory fills to the last few bytes

return rill.router {
  ["GET /ok"] = function() return "ok\n" end,
  ["GET /spin"] = function() while true do end end,
  ["GET /spin-in-generator"] = function()
    return { body = coroutine.wrap(function()
      coroutine.yield("started\n")
      while true do end
    end) }
  end,
  -- an event stream's generator, resumed by C (out.drive), that stops yielding
  ["GET /spin-in-sse-generator"] = function()
    return rill.sse(coroutine.wrap(function()
      coroutine.yield("started")
      rill.sleep(0.01) -- so it runs in a resume of its own, off evhttp
      while true do end
    end), { heartbeat = 0 })
  end,
  -- much work in total, but yielding often: within the budget of each resume
  ["GET /busy-but-fair"] = function()
    local n = 0
    for _ = 1, 40 do
      for _ = 1, 100000 do n = n + 1 end
      rill.sleep(0)
    end
    return tostring(n) .. "\n"
  end,
  -- fills the memory and keeps it: the next requests start with no room left
  ["GET /hoard"] = function()
    pcall(function() while true do hoard = { hoard, ("x"):rep(4000) } end end)
    while true do hoard = { hoard } end
  end,
  ["GET /hog"] = function()
    local t = {}
    while true do t[#t + 1] = ("x"):rep(1000) .. #t end
  end,
}
