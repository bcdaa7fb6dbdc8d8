-- SPDX-License-Identifier: MIT
-- Fixture for spec/e2e_strict_client_spec.lua (an h11 client) and
-- spec/e2e_smuggling_mutations_spec.lua: one route per body kind, status
-- and handler-supplied header a response's framing depends on. Every route
-- but /get-only answers any method. /smuggled counts its hits, which
-- /smuggled-count reports: a smuggled request must never run.
local rill = require "rill"

local smuggled = 0

local function lazy(n)
  local i = 0
  return function()
    i = i + 1
    if i <= n then return "line " .. i .. "\n" end
  end
end

-- The same server, as an upstream: the Host the client used names it.
local function self_fetch(req, path)
  return assert(rill.fetch("http://" .. req.headers.host .. path))
end

return rill.router {
  -- body kinds
  ["/string"] = function() return "hello\n" end,
  ["/empty-string"] = function() return "" end,
  ["/none"] = function() return nil end,
  ["/list"] = function() return { body = { "a", "b", "c" } } end,
  ["/empty-list"] = function() return { body = {} } end,
  ["/lazy"] = function() return { body = lazy(3) } end,
  ["/lazy-sleep"] = function()
    return { body = coroutine.wrap(function()
      for i = 1, 2 do rill.sleep(0.001); coroutine.yield("tick " .. i .. "\n") end
    end) }
  end,
  ["/sse"] = function()
    return rill.sse(function(send)
      send("one")
      send({ event = "two", data = "2" })
    end, { heartbeat = 0 })
  end,
  ["/redirect"] = function() return { status = 302, headers = { location = "/string" } } end,
  ["/created"] = function() return { status = 201, body = "made\n" } end,

  -- statuses that carry no body
  ["/s204"] = function() return { status = 204, body = "must not be sent\n" } end,
  ["/s204-list"] = function() return { status = 204, body = { "must ", "not" } } end,
  ["/s204-type"] = function() return { status = 204, headers = { ["content-type"] = "text/plain" } } end,
  -- 304 when If-None-Match names the tag, else 200 with the representation
  ["/etag"] = function(req)
    if req.headers["if-none-match"] == '"v1"' then
      return { status = 304, headers = { etag = '"v1"' }, body = "etag body\n" }
    end
    return { headers = { etag = '"v1"' }, body = "etag body\n" }
  end,
  ["/s304-lazy"] = function() return { status = 304, body = lazy(2) } end,

  -- framing and hop-by-hop headers set by the handler: rill's to write
  ["/h-cl-right"] = function() return { headers = { ["content-length"] = "6" }, body = "hello\n" } end,
  ["/h-cl-wrong"] = function() return { headers = { ["content-length"] = "99" }, body = "hello\n" } end,
  ["/h-cl-twocase"] = function()
    return { headers = { ["Content-Length"] = "6", ["content-length"] = "6" }, body = "hello\n" }
  end,
  ["/h-cl-list"] = function() return { headers = { ["content-length"] = "3" }, body = { "a", "b", "c" } } end,
  ["/h-cl-lazy"] = function() return { headers = { ["content-length"] = "2" }, body = lazy(3) } end,
  ["/h-te-string"] = function() return { headers = { ["transfer-encoding"] = "chunked" }, body = "hello\n" } end,
  ["/h-te-list"] = function() return { headers = { ["transfer-encoding"] = "gzip" }, body = { "a", "b", "c" } } end,
  ["/h-conn-close"] = function() return { headers = { connection = "close" }, body = "hello\n" } end,
  ["/h-conn-keepalive"] = function()
    return { headers = { connection = "keep-alive", ["keep-alive"] = "timeout=99" }, body = "hello\n" }
  end,
  ["/h-hop"] = function()
    return { headers = { te = "trailers", trailer = "x-sum", upgrade = "h2c" }, body = { "a", "b" } }
  end,

  -- the cookbook's relay: headers = up.headers, from a chunked and a fixed-length upstream
  ["/relay-chunked"] = function(req)
    local up = self_fetch(req, "/list")
    return { status = up.status, headers = up.headers, body = up:chunks() }
  end,
  ["/relay-chunked-read"] = function(req)
    local up = self_fetch(req, "/list")
    return { status = up.status, headers = up.headers, body = up:read() }
  end,
  ["/relay-length"] = function(req)
    local up = self_fetch(req, "/string")
    return { status = up.status, headers = up.headers, body = up:read() }
  end,
  ["/relay-length-stream"] = function(req)
    local up = self_fetch(req, "/string")
    return { status = up.status, headers = up.headers, body = up:chunks() }
  end,

  -- errors before the first byte: 500
  ["/error"] = function() error("boom") end,
  ["/bad-return"] = function() return true end,
  ["/status-99"] = function() return { status = 99, body = "x\n" } end,
  ["/status-150"] = function() return { status = 150, body = "x\n" } end,
  ["/status-150-lazy"] = function() return { status = 150, body = lazy(2) } end,
  ["/status-abc"] = function() return { status = "abc", body = "x\n" } end,
  ["/bad-header-ctl"] = function() return { headers = { ["x-bad"] = "a\1b" }, body = "x\n" } end,
  ["/bad-header-crlf"] = function() return { headers = { ["x-bad"] = "a\r\n b" }, body = "x\n" } end,
  ["/bad-header-nul"] = function() return { headers = { ["x-bad"] = "a\0b" }, body = "x\n" } end,
  ["/bad-header-table"] = function() return { headers = { ["x-bad"] = { key = "v" } }, body = "x\n" } end,
  ["/bad-list"] = function() return { body = { "a", {}, "c" } } end,

  -- the router's own answers
  ["GET /get-only"] = function() return "get only\n" end,

  -- the request that must never run
  ["/smuggled"] = function()
    smuggled = smuggled + 1
    io.stderr:write("framing: /smuggled ran\n")
    return "smuggled\n"
  end,
  ["/smuggled-count"] = function() return tostring(smuggled) .. "\n" end,
  ["/echo"] = function(req) return "got " .. #req.body .. "\n" end,
  -- the same, with the body streamed: the gate reads it itself (spec/e2e_smuggling_mutations_spec.lua)
  ["/stream-echo"] = rill.streamed_body(function(req) return "got " .. #req:read_body() .. "\n" end),
}
