-- SPDX-License-Identifier: MIT
-- Fixture for spec/e2e_core_spec.lua: one route per behaviour under test.
local rill = require "rill"

local state = { released = false, closed = 0, produced = 0 }

-- A <close>-able marker: counts how many handlers were closed.
local function closer()
  return setmetatable({}, { __close = function() state.closed = state.closed + 1 end })
end

local function lines(t)
  local out = {}
  for k, v in pairs(t) do
    out[#out + 1] = k .. "=" .. (type(v) == "table" and table.concat(v, ",") or tostring(v))
  end
  table.sort(out)
  return table.concat(out, "\n") .. "\n"
end

return rill.router {
  ["GET /hello"] = function() return "hello world\n" end,
  ["GET /table"] = function()
    return { status = 201, headers = { ["x-multi"] = { "1", "2" }, ["content-type"] = "text/x-test" }, body = "made\n" }
  end,
  ["GET /list"] = function() return { body = { "a", "b", "c" } } end,
  ["GET /lazy"] = function()
    local i = 0
    return { body = function()
      i = i + 1
      if i <= 3 then return "line " .. i .. "\n" end
    end }
  end,
  ["GET /none"] = function() return nil end,
  ["GET /redirect"] = function() return { status = 302, headers = { location = "/hello" } } end,
  ["GET /query"] = function(req) return lines(req.query) end,
  ["GET /headers"] = function(req)
    return lines({ accept = req.headers.Accept, multi = req.headers["X-Multi"], id = req.id,
                   addr = req.remote_addr, method = req.method, path = req.path })
  end,
  ["POST /echo"] = function(req) return { headers = { ["content-type"] = "application/octet-stream" }, body = req.body } end,
  ["GET /users/:id[%d]"] = function(req) return "user " .. req.params.id .. "\n" end,
  -- a stream that outlives every reference to its req, through full collections
  ["GET /gc-stream"] = function()
    return { body = coroutine.wrap(function()
      coroutine.yield("a\n")
      collectgarbage()
      collectgarbage()
      coroutine.yield("b\n")
    end) }
  end,
  ["GET /static-params"] = function(req)
    local before = 0
    for _ in pairs(req.params) do before = before + 1 end
    req.params.mine = true
    local again = req.params.mine and 0 or 1
    return ("params: %d %d\n"):format(before, again)
  end,

  -- chunk 2 is produced only after /release: chunk 1 must have arrived alone
  ["GET /gated"] = function()
    state.released = false
    return { body = coroutine.wrap(function()
      coroutine.yield("first\n")
      while not state.released do rill.sleep(0.005) end
      io.stderr:write("gated: producing second\n")
      coroutine.yield("second\n")
    end) }
  end,
  ["GET /release"] = function() state.released = true; return "released\n" end,

  ["GET /sleep"] = function(req)
    rill.sleep(tonumber(req.query.s) or req.query.s)
    return "slept\n"
  end,
  -- an effect two coroutines deep, inside the user's own generators
  ["GET /nested"] = function()
    local inner = coroutine.wrap(function()
      for i = 1, 3 do rill.sleep(0.001); coroutine.yield(i) end
    end)
    return { body = coroutine.wrap(function()
      for i in inner do rill.sleep(0.001); coroutine.yield("n" .. i .. "\n") end
      local ok, v = coroutine.resume(coroutine.create(function() rill.sleep(0.001); return "resumed" end))
      coroutine.yield(tostring(ok) .. " " .. v .. "\n")
    end) }
  end,
  ["GET /error"] = function() error("boom") end,
  ["GET /error-mid"] = function()
    return { body = coroutine.wrap(function()
      coroutine.yield("partial\n")
      rill.sleep(0.001)
      error("mid-stream failure")
    end) }
  end,
  -- a req kept past its request: what it still tells, and what it refuses
  ["GET /keep"] = function(req) state.kept = req; return "kept\n" end,
  ["GET /kept"] = function()
    local ok, err = pcall(function() return state.kept.headers end)
    return ("%s %s %s\n"):format(state.kept.method, tostring(ok), tostring(err):match("read after the request ended") or err)
  end,
  ["GET /bad-status"] = function() return { status = 42, body = "x" } end,
  ["GET /bad-header"] = function() return { headers = { ["x-a"] = "a\r\nb" }, body = "x" } end,
  ["GET /bad-return"] = function() return true end,

  -- streams until the client leaves; counts closes
  ["GET /forever"] = function()
    return { body = coroutine.wrap(function()
      local mark <close> = closer()
      while true do coroutine.yield("tick\n"); rill.sleep(0.01) end
    end) }
  end,
  -- waits before its first byte; the client leaves meanwhile
  ["GET /wait"] = function()
    local mark <close> = closer()
    io.stderr:write("wait: started\n")
    rill.sleep(30)
    return "too late\n"
  end,
  ["GET /closed"] = function() return tostring(state.closed) .. "\n" end,

  -- produces 64 KiB chunks without ever waiting
  ["GET /flood"] = function()
    local chunk = string.rep("x", 65536)
    return { body = function() state.produced = state.produced + 1; return chunk end }
  end,
  ["GET /produced"] = function() return tostring(state.produced) .. "\n" end,
  -- a whole reply larger than what the sockets between client and server hold
  ["GET /big"] = function() return string.rep("x", 16 * 1024 * 1024) end,
}
