-- SPDX-License-Identifier: MIT
-- Fixture for spec/e2e_access_log_spec.lua: one route per way a request ends.
local rill = require "rill"

-- A rotation while a worker loads the app: the log is moved before the worker is ready.
local moving = os.getenv("ACCESS_LOG_MOVE")
if moving then os.rename(moving, moving .. ".1") end

local function chunks(list, fail)
  local i = 0
  return coroutine.wrap(function()
    for _, c in ipairs(list) do
      i = i + 1
      coroutine.yield(c)
    end
    if fail then error("broken mid-stream") end
  end)
end

return rill.router {
  ["GET /hello"] = function() return "hello\n" end,
  -- an upstream that answers nothing for a minute, and a handler waiting on it
  ["GET /hang"] = function() rill.sleep(60) return "late\n" end,
  ["GET /via/:port"] = function(req)
    local up = assert(rill.fetch("http://127.0.0.1:" .. req.params.port .. "/hang", { timeout = 60 }))
    return up:read()
  end,
  -- two upstream requests to this server's own /hello: the line's upstream time is theirs
  ["GET /twice/:port"] = function(req)
    for _ = 1, 2 do
      local up = assert(rill.fetch("http://127.0.0.1:" .. req.params.port .. "/hello"))
      up:read()
    end
    return "fetched\n"
  end,
  ["GET /boom"] = function() error("boom") end,
  -- an error whose message is the request's body: what a client may put in the error log
  ["POST /raise"] = function(req) error(req.body, 0) end,
  -- a stream that waits until its client leaves, or the server stops
  ["GET /forever"] = function()
    return { body = coroutine.wrap(function()
      coroutine.yield("tick\n")
      while true do rill.sleep(3600) end
    end) }
  end,
  ["GET /finite"] = function() return { body = chunks({ "one\n", "two\n" }) } end,
  ["GET /broken"] = function() return { body = chunks({ "one\n" }, true) } end,
  ["GET /events/:topic"] = function(req)
    return rill.sse(rill.subscribe(req.params.topic, { queue = tonumber(req.query.queue) }))
  end,
  ["POST /disconnect/:topic"] = function(req) return tostring(rill.hub.disconnect(req.params.topic)) end,
  ["POST /publish/:topic"] = function(req)
    return { status = 202, body = rill.publish(req.params.topic, { data = req.body }) }
  end,
}
