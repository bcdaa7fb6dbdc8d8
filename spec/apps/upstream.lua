-- SPDX-License-Identifier: MIT
-- Fixture: the upstream that spec/e2e_fetch_spec.lua proxies through rill.
local rill = require "rill"

local released = false
local gzip_released = false
local empty_hits = 0

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
  -- ids 1..10, resuming after Last-Event-ID; drops every connection after
  -- three events, in the middle of a fourth; 204 once everything was sent
  ["GET /resumable"] = function(req)
    local last = tonumber(req.headers["last-event-id"]) or 0
    io.stderr:write(("upstream: resumable from %s\n"):format(req.headers["last-event-id"] or "start"))
    if last >= 10 then return { status = 204 } end
    return {
      headers = { ["content-type"] = "text/event-stream; charset=utf-8" },
      body = coroutine.wrap(function()
        coroutine.yield("\239\187\191retry: 10\n\n") -- a BOM opens each response
        for i = last + 1, math.min(last + 3, 10) do
          coroutine.yield(("id: %d\ndata: event %d\n\n"):format(i, i))
        end
        if last + 3 < 10 then
          coroutine.yield(("id: %d\ndata: partial"):format(last + 4))
          rill.sleep(0.001)
          error("drop mid-event")
        end
      end),
    }
  end,
  ["GET /empty-stream"] = function()
    empty_hits = empty_hits + 1
    return { headers = { ["content-type"] = "text/event-stream" }, body = "" }
  end,
  ["GET /empty-hits"] = function() return tostring(empty_hits) end,
  ["GET /no-content"] = function() return { status = 204 } end,
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
  ["GET /tick-events"] = function()
    return { headers = { ["content-type"] = "text/event-stream" }, body = coroutine.wrap(function()
      local mark <close> = setmetatable({}, { __close = function() io.stderr:write("upstream: tick-events closed\n") end })
      for i = 1, math.huge do coroutine.yield(("id: %d\ndata: tick %d\n\n"):format(i, i)); rill.sleep(0.01) end
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
