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

describe("--keepalive-timeout", function()
  local srv
  setup(function()
    srv = test.server("spec/apps/core.lua", { args = { "--keepalive-timeout", "0.3" } })
  end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  it("closes an idle keep-alive connection", function()
    local sock = srv:connect()
    sock:send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    sock:settimeout(5)
    assert.same("HTTP/1.1 200 OK", sock:receive("*l"))
    local rest, err = sock:receive("*a") -- the rest, then the server's close (not a timeout)
    assert.is_nil(err)
    assert.matches("hello world\n$", rest)
    sock:close()
  end)

  it("drops a client that stalls mid-request while others are served", function()
    local slow = srv:connect()
    slow:send("GET /hello HTTP/1.1\r\nHost: x\r\nX-Partial: ")
    assert.same("hello world\n", srv:get("/hello").body)
    slow:settimeout(5)
    local data, err, partial = slow:receive("*a") -- closed without an answer, not a timeout
    assert.are_not.equal("timeout", err)
    assert.same("", data or partial)
    slow:close()
  end)

  it("lets a handler take longer than the timeout before its first byte", function()
    assert.same("slept\n", srv:get("/sleep?s=1").body)
  end)

  it("never cuts a stream, however long it is idle", function()
    local s = srv:open("/gated")
    assert.same("first\n", s:chunk(5))
    assert.is_nil(s:chunk(1)) -- idle for three timeouts
    srv:get("/release")
    assert.same("second\n", s:chunk(5))
    s:close()
  end)
end)
