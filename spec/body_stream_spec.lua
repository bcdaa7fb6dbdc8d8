-- SPDX-License-Identifier: MIT
-- Streamed request bodies in process: req:body_reader() and req:read_body() on
-- rill.test's requests (which have the body whole), rill.streamed_body, the
-- router's registration of streamed paths, and every argument checked.
local rill = require "rill"
local router = require "rill.router"
local test = require "rill.test"
local core = require "rill.core"

describe("req:body_reader()", function()
  it("gives a test request's body once, then nil", function()
    local res = test.call(function(req)
      local pieces = {}
      for piece in req:body_reader() do pieces[#pieces + 1] = piece end
      return table.concat(pieces, "|") .. " " .. #pieces
    end, { method = "POST", body = "hello" })
    assert.same("hello 1", res.body)
  end)

  it("gives nothing for an empty body", function()
    local res = test.call(function(req) return tostring(req:body_reader()()) end, { method = "POST" })
    assert.same("nil", res.body)
  end)

  it("answers a body over its limit with a 413", function()
    local res = test.call(function(req)
      for _ in req:body_reader(4) do end
      return "read"
    end, { method = "POST", body = "hello" })
    assert.same(413, res.status)
    assert.truthy(res.body:find("request body larger than 4 bytes", 1, true))
  end)

  it("takes an integral float as a limit", function()
    local res = test.call(function(req) return req:body_reader(5.0)() end, { method = "POST", body = "hello" })
    assert.same("hello", res.body)
  end)

  for _, bad in ipairs({ -1, 1.5, "10", {}, 2 ^ 60, 0 / 0 }) do
    it(("refuses a limit of %s, naming the argument"):format(tostring(bad)), function()
      local ok, err = pcall(function()
        local reader = test.request({ body = "x" }):body_reader(bad) -- not a tail call: the line is named
        return reader
      end)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("bad argument #1 to 'body_reader'", 1, true), err)
      assert.truthy(tostring(err):find("body_stream_spec.lua", 1, true), err) -- the caller's line
    end)
  end
end)

describe("req:read_body()", function()
  it("gives the whole body, and req.body has it", function()
    local res = test.call(function(req) return req:read_body() .. " " .. req.body end,
      { method = "POST", body = "abc" })
    assert.same("abc abc", res.body)
  end)

  it("answers a body over its limit with a 413", function()
    local res = test.call(function(req) return req:read_body(2) end, { method = "POST", body = "abc" })
    assert.same(413, res.status)
  end)

  it("refuses a bad limit naming the argument", function()
    local ok, err = pcall(function() return test.request({ body = "x" }):read_body("big") end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("bad argument #1 to 'read_body'", 1, true), err)
  end)
end)

describe("rill.streamed_body", function()
  it("wraps a handler: calling it calls the handler", function()
    local h = rill.streamed_body(function(req) return "got " .. req:read_body() end)
    assert.same("got xyz", test.call(h, { method = "POST", body = "xyz" }).body)
  end)

  for _, bad in ipairs({ "f", 1, {}, true }) do
    it(("refuses a %s for a handler"):format(type(bad)), function()
      local ok, err = pcall(rill.streamed_body, bad)
      assert.is_false(ok)
      assert.truthy(err:find("bad argument #1 to 'streamed_body' (function expected, got " .. type(bad), 1, true), err)
    end)
  end

  it("is a handler the router takes on any route, in a routes table too", function()
    local app = router.new({
      ["POST /up/:name"] = rill.streamed_body(function(req) return req.params.name .. ":" .. req:read_body() end),
    })
    app:put("/p/*", rill.streamed_body(function(req) return "p:" .. req:read_body() end))
    app:post("/whole", function(req) return "w:" .. req.body end)
    assert.same("a:1", test.call(app, { method = "POST", path = "/up/a", body = "1" }).body)
    assert.same("p:2", test.call(app, { method = "PUT", path = "/p/x/y", body = "2" }).body)
    assert.same("w:3", test.call(app, { method = "POST", path = "/whole", body = "3" }).body)
  end)
end)

describe("core.stream_body_path", function()
  for _, case in ipairs({ { "", "a path starting with '/' expected" }, { "up", "a path starting with '/' expected" },
    { "/" .. ("x"):rep(300), "path too long" } }) do
    it(("refuses %q"):format(case[1]:sub(1, 10)), function()
      local ok, err = pcall(core.stream_body_path, case[1])
      assert.is_false(ok)
      assert.truthy(err:find(case[2], 1, true), err)
    end)
  end

  it("refuses a non-string", function()
    local ok, err = pcall(core.stream_body_path, {})
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #1", 1, true), err)
  end)
end)

describe("core.body_chunk outside a request", function()
  it("raises a clear error in rill.run", function()
    local ok, err = pcall(core.run, function() return core.body_chunk() end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("no HTTP request here", 1, true), err)
  end)
end)
