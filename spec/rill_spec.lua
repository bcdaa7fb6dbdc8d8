-- SPDX-License-Identifier: MIT
-- The Lua API in process: rill.run, rill.sleep, effect-aware coroutines, and
-- handlers called with fake requests through rill.test.call.
local rill = require "rill"
local test = require "rill.test"

describe("rill.run", function()
  it("returns what the function returns, with arguments passed in", function()
    assert.same({ 3, "x" }, { rill.run(function(a, b) return a + b, "x" end, 1, 2) })
  end)

  it("raises the function's error", function()
    assert.has_error(function() rill.run(function() error({ code = 7 }) end) end, { code = 7 })
  end)

  it("drives rill.sleep on the event loop", function()
    local t0 = rill.now()
    rill.run(function() rill.sleep(0.05) end)
    -- it waited: libevent's timers run on a coarse clock and may fire a few ms early
    assert.is_true(rill.now() - t0 >= 0.04)
  end)

  it("gives back all of 2000 results, and takes 2000 arguments", function()
    local t = {}
    for i = 1, 2000 do t[i] = i end
    local back = table.pack(rill.run(function() return table.unpack(t) end))
    assert.same(2000, back.n)
    assert.same(2000, back[2000])
    assert.same(2000, rill.run(function(...) return select("#", ...) end, table.unpack(t)))
  end)

  it("cannot be nested inside a running task", function()
    local ok, err = pcall(rill.run, function() return rill.run(function() end) end)
    assert.is_false(ok)
    assert.matches("cannot be called inside a handler or another rill.run", err)
  end)
end)

describe("rill.sleep", function()
  it("names its argument on bad input", function()
    local ok, err = pcall(rill.run, function() rill.sleep("soon") end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'sleep' %(number expected, got string%)", err)
    ok, err = pcall(rill.run, function() rill.sleep(-1) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'sleep' %(number from 0 to 1000000000 expected, got %-1%)", err)
  end)

  it("raises outside a handler or rill.run", function()
    local ok, err = pcall(rill.sleep, 0)
    assert.is_false(ok)
    assert.matches("only be used inside a request handler or rill.run", err)
  end)
end)

describe("effect-aware coroutines", function()
  it("pass an effect through coroutine.wrap and coroutine.resume, at any depth", function()
    local got = rill.run(function()
      local out = {}
      local gen = coroutine.wrap(function()
        local inner = coroutine.create(function()
          rill.sleep(0)
          coroutine.yield("a")
          rill.sleep(0)
          return "b"
        end)
        local _, a = coroutine.resume(inner)
        coroutine.yield(a)
        local _, b = coroutine.resume(inner)
        coroutine.yield(b)
      end)
      out[#out + 1] = gen()
      out[#out + 1] = gen()
      return out
    end)
    assert.same({ "a", "b" }, got)
  end)

  it("leave ordinary coroutine use unchanged", function()
    local co = coroutine.create(function(x) local y = coroutine.yield(x + 1); return y * 2 end)
    assert.same({ true, 2 }, { coroutine.resume(co, 1) })
    assert.same({ true, 20 }, { coroutine.resume(co, 10) })
    assert.same({ false, "cannot resume dead coroutine" }, { coroutine.resume(co) })
  end)

  it("raise a wrapped generator's error with its position, as Lua's wrap does", function()
    local gen = coroutine.wrap(function() error("gen failed") end)
    local ok, err = pcall(gen)
    assert.is_false(ok)
    assert.matches("gen failed", err)
  end)

  it("run a stream of many effects in constant stack", function()
    local n = rill.run(function()
      local gen = coroutine.wrap(function()
        for i = 1, 20000 do rill.sleep(0); coroutine.yield(i) end
      end)
      local last
      for v in gen do last = v end
      return last
    end)
    assert.same(20000, n)
  end)
end)

describe("rill.test.call", function()
  it("calls a handler with a fake request and collects a string reply", function()
    local res = test.call(function(req) return req.method .. " " .. req.path .. " " .. req.query.a end,
      { path = "/x?a=1" })
    assert.same(200, res.status)
    assert.same("GET /x 1", res.body)
    assert.same("text/plain; charset=utf-8", res.headers["Content-Type"])
  end)

  it("collects the chunks of a lazy body that uses effects", function()
    local res = test.call(function()
      return { body = coroutine.wrap(function()
        for i = 1, 3 do rill.sleep(0); coroutine.yield(i .. ";") end
      end) }
    end)
    assert.same({ "1;", "2;", "3;" }, res.chunks)
    assert.same("1;2;3;", res.body)
  end)

  it("answers 204 for nil and keeps a table's status and headers", function()
    assert.same(204, test.call(function() end).status)
    local res = test.call(function() return { status = 201, headers = { ["X-A"] = "b" }, body = "ok" } end)
    assert.same(201, res.status)
    assert.same("b", res.headers["x-a"])
  end)

  it("gives fake requests case-insensitive headers", function()
    local res = test.call(function(req) return req.headers["content-type"] end,
      { headers = { ["Content-Type"] = "text/x" } })
    assert.same("text/x", res.body)
  end)

  it("raises a handler's error", function()
    assert.has_error(function() test.call(function() error("bad", 0) end) end, "bad")
  end)

  it("routes through a router", function()
    local app = rill.router { ["GET /u/:id"] = function(req) return "u" .. req.params.id end }
    assert.same("u7", test.call(app, { path = "/u/7" }).body)
    assert.same(404, test.call(app, { path = "/v" }).status)
  end)
end)

describe("rill.core.spawn's process", function()
  local core = require "rill.core"

  it("refuses timeouts, positions and signals that are not finite and in range", function()
    local p <close> = core.spawn({ "sh", "-c", "echo ready >&2" })
    assert.truthy(p:wait_for("ready", 10))
    assert.same(0, p:wait(10))
    local bad = {
      function() p:wait_for("x", 0 / 0) end,
      function() p:wait_for("x", math.huge) end,
      function() p:wait_for("x", -1) end,
      function() p:wait_for("x", 1, 0) end,
      function() p:wait_for("x", 1, 0 / 0) end,
      function() p:wait(0 / 0) end,
      function() p:wait(1e300) end,
      function() p:kill(1e300) end,
      function() p:kill(0) end,
    }
    for i, fn in ipairs(bad) do
      local ok, err = pcall(fn)
      assert.is_false(ok, "case " .. i)
      assert.matches("bad argument #%d to '[%w_]+' %([a-z]+ from ", err)
    end
  end)
end)
