-- SPDX-License-Identifier: MIT
-- Limits that keep one handler from taking the worker down.
local test = require "rill.test"

describe("a runaway handler", function()
  local srv
  setup(function()
    srv = test.server("spec/apps/runaway.lua",
      { args = { "--max-instructions", "2000000", "--max-lua-memory", tostring(64 * 1024 * 1024) } })
  end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  it("that never yields is stopped with a 500, and the worker keeps serving", function()
    local res = srv:get("/spin")
    assert.same(500, res.status)
    assert.is_nil(res.body:find("budget", 1, true)) -- the client learns nothing internal
    assert.is_truthy(srv:wait_log("instruction budget exceeded"))
    assert.same("ok\n", srv:get("/ok").body)
  end)

  it("inside a stream's generator has its stream cut off", function()
    local res = srv:get("/spin-in-generator")
    assert.same(200, res.status)
    assert.same({ "started\n" }, res.chunks)
    assert.same("closed", res.ending)
    assert.same("ok\n", srv:get("/ok").body)
  end)

  it("that works long but yields often is not stopped: the budget is per resume", function()
    assert.same("4000000\n", srv:get("/busy-but-fair").body)
  end)

  it("that allocates without bound gets a memory error and a 500", function()
    local res = srv:get("/hog")
    assert.same(500, res.status)
    assert.is_truthy(srv:wait_log("not enough memory"))
    assert.same("ok\n", srv:get("/ok").body)
    assert.same(500, srv:get("/hog").status) -- and again: the memory came back
    assert.same("ok\n", srv:get("/ok").body)
  end)
end)
