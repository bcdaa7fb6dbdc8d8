-- SPDX-License-Identifier: MIT
-- Every example in examples/ runs here, as a user would run it.
local test = require "rill.test"

describe("examples/hello.lua", function()
  local srv
  setup(function() srv = test.server("examples/hello.lua") end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  it("answers hello world", function()
    local res = srv:get("/")
    assert.same(200, res.status)
    assert.same("hello world\n", res.body)
  end)
end)

describe("examples/clock.lua", function()
  local srv
  setup(function() srv = test.server("examples/clock.lua") end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  it("streams one timestamp line per chunk", function()
    local s = srv:open("/?n=2")
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ\n$", s:chunk(5))
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ\n$", s:chunk(5))
    assert.same("end", select(2, s:chunk(5)))
    s:close()
  end)

  it("keeps streaming until the client leaves", function()
    local s = srv:open("/")
    assert.is_truthy(s:chunk(5))
    s:close()
    assert.same(0, srv:settle(function(st) return st.streams == 0 end).streams)
  end)
end)

describe("examples/router.lua", function()
  local srv
  setup(function() srv = test.server("examples/router.lua") end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  it("routes params, optional segments and splats", function()
    assert.same("ada\n", srv:get("/users/1").body)
    assert.same(404, srv:get("/users/9").status)
    assert.same(404, srv:get("/users/x").status)
    assert.same("posts, page 1\n", srv:get("/posts").body)
    assert.same("posts, page 2\n", srv:get("/posts/2").body)
    assert.same("file a/b.txt\n", srv:get("/files/a/b.txt").body)
  end)

  it("answers 405 with Allow for a known path and another method", function()
    local res = srv:request({ method = "PUT", path = "/users" })
    assert.same(405, res.status)
    assert.same("POST", res.headers.allow)
  end)
end)
