-- SPDX-License-Identifier: MIT
-- Fixture: the upstream that spec/e2e_fetch_spec.lua proxies through rill.
local rill = require "rill"

local released = false
local gzip_released = false

-- An SSE event padded well past 16 KiB, so no buffer granularity hides batching.
local function event(i)
  return ("id: %d\ndata: %d %s\n\n"):format(i, i, ("x"):rep(20000))
end

return rill.router {
  -- 10 events 200 ms apart; event 2 also waits for /release, so a client
  -- can prove it had event 0 before event 2 existed
  ["GET /events"] = function()
    released = false
    return {
      headers = { ["content-type"] = "text/event-stream" },
      body = coroutine.wrap(function()
        local mark <close> = setmetatable({}, { __close = function() io.stderr:write("upstream: stream closed\n") end })
        for i = 0, 9 do
          if i > 0 then rill.sleep(0.2) end
          while i == 2 and not released do rill.sleep(0.005) end
          io.stderr:write("upstream: sending " .. i .. "\n")
          coroutine.yield(event(i))
        end
      end),
    }
  end,
  ["GET /release"] = function() released = true; return "released\n" end,
  -- gzip with a sync flush per event; event two waits for /gzip-release
  ["GET /gzip"] = function()
    local deflate = require("zlib").deflate(6, 31)
    gzip_released = false
    return {
      headers = { ["content-encoding"] = "gzip", ["content-type"] = "text/event-stream" },
      body = coroutine.wrap(function()
        coroutine.yield(deflate("data: one\n\n", "sync"))
        while not gzip_released do rill.sleep(0.005) end
        coroutine.yield(deflate("data: two\n\n", "sync"))
        coroutine.yield(deflate("", "finish"))
      end),
    }
  end,
  ["GET /gzip-release"] = function() gzip_released = true; return "released\n" end,
  ["GET /gzip-bad"] = function()
    return { headers = { ["content-encoding"] = "gzip" }, body = "this is not gzip at all" }
  end,
  -- a good first block, then (after /gzip-release) bytes that are not gzip
  ["GET /gzip-corrupt"] = function()
    local deflate = require("zlib").deflate(6, 31)
    gzip_released = false
    return {
      headers = { ["content-encoding"] = "gzip" },
      body = coroutine.wrap(function()
        coroutine.yield(deflate("data: one\n\n", "sync"))
        while not gzip_released do rill.sleep(0.005) end
        coroutine.yield(("\255"):rep(64))
      end),
    }
  end,
  ["GET /forever"] = function()
    return { body = coroutine.wrap(function()
      local mark <close> = setmetatable({}, { __close = function() io.stderr:write("upstream: forever closed\n") end })
      while true do coroutine.yield("tick\n"); rill.sleep(0.01) end
    end) }
  end,
  ["GET /port"] = function(req) return tostring(req.remote_port) end,
  ["GET /json"] = function()
    return { headers = { ["content-type"] = "application/json" }, body = '{"ok":true}' }
  end,
  ["POST /echo"] = function(req)
    return { headers = { ["x-method"] = req.method, ["x-got"] = req.headers["x-test"] }, body = req.body }
  end,
  ["GET /slow-head"] = function() rill.sleep(5); return "late\n" end,
  ["GET /stall"] = function()
    return { body = coroutine.wrap(function() coroutine.yield("one\n"); rill.sleep(5); coroutine.yield("two\n") end) }
  end,
  ["GET /truncated"] = function()
    return { body = coroutine.wrap(function() coroutine.yield("partial\n"); rill.sleep(0.01); error("upstream dies") end) }
  end,
  ["GET /unterminated"] = function() return { body = { "a\n", "b\r\n", "no newline" } } end,
  ["GET /big"] = function() return ("y"):rep(3 * 1024 * 1024) end,
}
