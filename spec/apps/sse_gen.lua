-- SPDX-License-Identifier: MIT
-- Fixture for spec/e2e_sse_generator_spec.lua: event streams written as
-- coroutine.wrap generators, which rill resumes from C as the request's task
-- once the handler returns (out.drive), on a lean socket when it can.
local rill = require "rill"

local closed = 0 -- generators whose <close> variable ran
local function guard()
  return setmetatable({}, { __close = function() closed = closed + 1 end })
end

-- what req says, one field a line, the same before and after the stream left evhttp
local function view(req)
  local lines = {}
  for _, k in ipairs({ "method", "path", "target", "remote_addr", "peer_addr", "remote_port", "scheme", "id", "body" }) do
    lines[#lines + 1] = k .. "=" .. tostring(req[k])
  end
  lines[#lines + 1] = "q=" .. tostring(req.query.q)
  local probe = req.headers["x-probe"]
  lines[#lines + 1] = "probe=" .. (type(probe) == "table" and table.concat(probe, "|") or tostring(probe))
  lines[#lines + 1] = "params=" .. tostring(req.params.name)
  lines[#lines + 1] = "tostring=" .. tostring(req)
  return table.concat(lines, "\n")
end

return rill.router {
  ["POST /gc"] = function() collectgarbage() collectgarbage() return "collected\n" end,
  ["GET /closed"] = function() return tostring(closed) end,
  ["GET /plain"] = function() return "plain body" end,

  -- the request's fields in the handler, then again from the generator after a sleep
  ["GET /view/:name"] = function(req)
    local before = view(req)
    return rill.sse(coroutine.wrap(function()
      coroutine.yield({ event = "before", data = before })
      rill.sleep(0.05)
      coroutine.yield({ event = "after", data = view(req) })
      local piece = req:body_reader()()
      coroutine.yield({ event = "body", data = tostring(piece) .. " " .. req:read_body() .. "." })
    end), { heartbeat = 0 })
  end,

  -- ends: by returning, by yielding nil, by returning a last value
  ["GET /finite"] = function()
    return rill.sse(coroutine.wrap(function()
      local g <close> = guard()
      rill.sleep(0.01)
      coroutine.yield("a")
      coroutine.yield({ event = "e", data = "b" })
    end), { heartbeat = 0 })
  end,
  ["GET /yields-nil"] = function()
    return rill.sse(coroutine.wrap(function()
      local g <close> = guard()
      coroutine.yield("a")
      coroutine.yield(nil)
      coroutine.yield("never")
    end), { heartbeat = 0 })
  end,
  ["GET /returns"] = function()
    return rill.sse(coroutine.wrap(function()
      coroutine.yield("a")
      rill.sleep(0.01)
      return "last"
    end), { heartbeat = 0 })
  end,

  -- fails after it left evhttp: a bad value, an error
  ["GET /bad-yield"] = function()
    return rill.sse(coroutine.wrap(function()
      local g <close> = guard()
      coroutine.yield("ok")
      rill.sleep(0.02)
      coroutine.yield(42) -- neither an event table nor a string
    end), { heartbeat = 0 })
  end,
  ["GET /bad-event"] = function()
    return rill.sse(coroutine.wrap(function()
      rill.sleep(0.02)
      coroutine.yield({ event = "two\nlines", data = "x" })
    end), { heartbeat = 0 })
  end,
  ["GET /raise"] = function()
    return rill.sse(coroutine.wrap(function()
      local g <close> = guard()
      coroutine.yield("ok")
      rill.sleep(0.02)
      error("generator broke")
    end), { heartbeat = 0 })
  end,

  -- idle until the client leaves
  ["GET /hold"] = function()
    return rill.sse(coroutine.wrap(function()
      local g <close> = guard()
      while true do
        rill.sleep(3600)
        coroutine.yield("tick")
      end
    end), { heartbeat = 0 })
  end,

  -- count strings of size bytes, with no effect between them: backpressure alone parks it
  ["GET /burst"] = function(req)
    local count, size = tonumber(req.query.count), tonumber(req.query.size)
    return rill.sse(coroutine.wrap(function()
      local pad = ("x"):rep(size)
      for i = 1, count do coroutine.yield(pad .. i) end
    end), { heartbeat = 0 })
  end,

  -- effects from inside the generator: a fetch of this server, then a published event
  -- (the handler's upstream is read by the generator: what the task opened stays open)
  ["GET /fetch"] = function(req)
    local url = "http://" .. req.headers.host .. "/plain"
    local early = assert(rill.fetch(url))
    return rill.sse(coroutine.wrap(function()
      rill.sleep(0.01)
      coroutine.yield("early " .. early.status .. " " .. assert(early:read()))
      local res = assert(rill.fetch(url))
      coroutine.yield(res.status .. " " .. assert(res:read()))
    end), { heartbeat = 0 })
  end,
  ["GET /hub/:topic"] = function(req)
    local sub = rill.subscribe(req.params.topic)
    return rill.sse(coroutine.wrap(function()
      for _ = 1, 2 do coroutine.yield(sub()) end -- published events, sent by reference
    end), { heartbeat = 0 })
  end,
  ["POST /publish/:topic"] = function(req)
    return { status = 202, body = rill.publish(req.params.topic, req.body) }
  end,

  -- a generator the handler already started: it goes on from where it stopped
  ["GET /started"] = function()
    local gen = coroutine.wrap(function()
      coroutine.yield("first")
      rill.sleep(0.01)
      coroutine.yield("second")
      coroutine.yield("third")
    end)
    local first = gen()
    assert(first == "first")
    return rill.sse(gen, { heartbeat = 0 })
  end,
  -- rill.sse(function(send) ...): the producer form, a generator of rill.sse's own
  ["GET /producer"] = function()
    return rill.sse(function(send)
      send("x")
      rill.sleep(0.01)
      send({ event = "y", data = "why" })
    end, { heartbeat = 0 })
  end,
  -- gzip'd, each event flushed: its trailer comes at the end, from the lean socket
  ["GET /gz"] = function()
    return rill.sse(coroutine.wrap(function()
      rill.sleep(0.01)
      for i = 1, 3 do coroutine.yield(("compressible event %d "):format(i):rep(20)) end
    end), { heartbeat = 0, compress = true })
  end,
  -- heartbeats on a driven stream
  ["GET /beats"] = function()
    return rill.sse(coroutine.wrap(function()
      rill.sleep(3600)
    end), { heartbeat = 0.05 })
  end,
}
