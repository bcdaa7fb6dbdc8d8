-- SPDX-License-Identifier: MIT
-- Fixture for spec/e2e_framing_spec.lua: replies of every kind, handlers that
-- set framing fields, and effects called where Lua cannot yield.
local rill = require "rill"

local hits = 0

-- Calls an effect from a sort comparator inside pcall, then waits normally.
local function in_sort(effect)
  local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b) effect() return a < b end)
  rill.sleep(0.01) -- must still work: nothing was left armed
  return ("%s %s\n"):format(ok, err)
end

package.preload["spec.sleepy"] = function() rill.sleep(0.01) return true end

return rill.router {
  ["GET /hello"] = function() return "hello\n" end,
  ["GET /smuggled"] = function() hits = hits + 1 return "smuggled\n" end,
  ["GET /hits"] = function() return tostring(hits) end,
  ["GET /err"] = function() error("boom") end,
  ["GET /status/:n"] = function(req)
    return { status = tonumber(req.params.n) or req.params.n, body = "body\n" }
  end,
  ["GET /stream-status/:n"] = function(req)
    return { status = tonumber(req.params.n), body = coroutine.wrap(function() coroutine.yield("x\n") end) }
  end,
  ["GET /cl/:n"] = function(req) return { headers = { ["content-length"] = req.params.n }, body = "short" } end,
  ["GET /hop"] = function()
    return {
      headers = { ["transfer-encoding"] = "chunked", connection = "keep-alive", ["keep-alive"] = "timeout=5",
        te = "trailers", trailer = "x-t", upgrade = "h2c", ["x-kept"] = "yes" },
      body = "hop\n",
    }
  end,
  ["GET /hop-stream"] = function()
    return { headers = { ["content-length"] = "3", ["transfer-encoding"] = "gzip" }, body = { "a\n", "b\n" } }
  end,
  ["GET /close"] = function() return { headers = { connection = "close" }, body = "bye\n" } end,
  ["GET /list"] = function() return { body = { "a\n", 2, "\n" } } end,
  ["GET /badlist"] = function() return { body = { "a\n", {} } } end,
  ["GET /lazy"] = function()
    return { body = coroutine.wrap(function() coroutine.yield("one\n") coroutine.yield("two\n") end) }
  end,
  -- a handler that works for an hour before its reply: SIGTERM would give it --grace
  ["GET /slow"] = function() rill.sleep(3600) return "late\n" end,
  ["GET /sse"] = function()
    local sent = false
    return rill.sse(function()
      if sent then return nil end
      sent = true
      return { data = "hi" }
    end)
  end,
  ["GET /ctl/:b"] = function(req)
    return { headers = { ["x-a"] = "a" .. string.char(tonumber(req.params.b)) .. "b" }, body = "x" }
  end,
  ["GET /tab-value"] = function() return { headers = { ["x-a"] = "a\tb" }, body = "tab\n" } end,
  ["GET /nonlist"] = function() return { headers = { ["x-a"] = { a = 1 } }, body = "x" } end,
  ["GET /numkey"] = function() return { headers = { "x" }, body = "x" } end,
  ["GET /up/chunked"] = function() return { body = { "one\n", "two\n" } } end,
  ["GET /up/fixed"] = function() return "fixed body\n" end,
  ["GET /relay/:kind"] = function(req)
    local up = assert(rill.fetch(("http://%s/up/%s"):format(req.headers.host, req.params.kind)))
    return { status = up.status, headers = up.headers, body = up:chunks() }
  end,
  ["GET /relay-read/:kind"] = function(req)
    local up = assert(rill.fetch(("http://%s/up/%s"):format(req.headers.host, req.params.kind)))
    return { status = up.status, headers = up.headers, body = up:read() }
  end,
  ["POST /echo"] = function(req) return req.body end,
  ["GET /forward-bad/:how"] = function(req)
    local host = req.params.how == "empty" and {} or { "a", "b" }
    rill.fetch(("http://%s/hello"):format(req.headers.host), { headers = { host = host } })
    return "not reached\n"
  end,
  ["POST /seen-headers"] = function(req)
    local function show(name)
      local v = req.headers[name]
      return name .. "=" .. (type(v) == "table" and table.concat(v, "|") or tostring(v))
    end
    return table.concat({ show("x-multi"), show("x-one"), show("te"), show("upgrade"),
      show("content-length"), req.body }, "\n") .. "\n"
  end,
  ["GET /forward"] = function(req)
    local up = assert(rill.fetch(("http://%s/seen-headers"):format(req.headers.host), {
      method = "POST",
      body = "abc",
      headers = { ["x-multi"] = { "a", "b" }, ["x-one"] = 1, te = "trailers", upgrade = "h2c",
        ["content-length"] = "99", connection = "keep-alive", ["transfer-encoding"] = "chunked" },
    }))
    return up:read()
  end,
  ["GET /header/:name"] = function(req) return ("[%s]\n"):format(tostring(req.headers[req.params.name])) end,
  ["GET /core-out"] = function() return tostring(require("rill.core").out) .. "\n" end,
  ["GET /sort/sleep"] = function() return in_sort(function() rill.sleep(0.01) end) end,
  ["GET /sort/fetch"] = function(req)
    return in_sort(function() rill.fetch("http://" .. req.headers.host .. "/hello") end)
  end,
  ["GET /tostring/sleep"] = function()
    local t = setmetatable({}, { __tostring = function() rill.sleep(0.01) return "t" end })
    local ok, err = pcall(tostring, t)
    rill.sleep(0.01)
    return ("%s %s\n"):format(ok, err)
  end,
  ["GET /require/sleep"] = function()
    local ok, err = pcall(require, "spec.sleepy")
    rill.sleep(0.01)
    return ("%s %s\n"):format(ok, err)
  end,
  ["GET /wrap-in-sort"] = function()
    -- the nested coroutine could yield, but the handler around it cannot
    local ok, err = pcall(table.sort, { 2, 1 }, function(a, b)
      coroutine.wrap(function() rill.sleep(0.01) end)()
      return a < b
    end)
    rill.sleep(0.01)
    return ("%s %s\n"):format(ok, err)
  end,
  -- an option's __index closes the topic's only subscriber while subscribe runs
  ["GET /hub/index-closes"] = function()
    local _, _, _, first = rill.subscribe("index-room")
    local opts = setmetatable({}, { __index = function(_, k)
      if k == "queue" or k == "last_event_id" then first:close() end
    end })
    local _, _, _, second = rill.subscribe("index-room", opts)
    second:close()
    return "ok\n"
  end,
  -- dropped subscriptions collected (their __gc frees a topic) while others subscribe and publish
  ["GET /hub/gc-frees"] = function()
    collectgarbage("incremental", 1, 1000) -- a collection at almost every allocation
    for i = 1, 300 do
      local topic = "gc-room-" .. (i % 3)
      do rill.subscribe(topic) end -- dropped: only its __gc closes it
      local _, _, _, s = rill.subscribe(topic)
      rill.publish(topic, "e" .. i)
      s:close()
    end
    collectgarbage("incremental", 200, 100)
    collectgarbage()
    return "ok\n"
  end,
  ["GET /heartbeat/:s"] = function(req)
    return rill.sse(function() return nil end, { heartbeat = tonumber(req.params.s) })
  end,
}
