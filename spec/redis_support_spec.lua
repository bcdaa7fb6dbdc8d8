-- SPDX-License-Identifier: MIT
-- The support the Redis backplane's specs stand on (spec/support/redis.lua,
-- spec/support/stall_proxy.py), checked by itself: a private redis-server
-- that starts, answers, dies and comes back as asked, and a proxy that
-- forwards until it is told to stall. It runs no rill: redis-server and
-- python3 only.
local socket = require "socket"
local redis = require "spec.support.redis"

local PING = "*1\r\n$4\r\nPING\r\n"

local gone = redis.gone -- the process and all its threads ended

-- A raw connection to a port, to hold open across a stall.
local function connect(port)
  local sock = assert(socket.tcp())
  sock:settimeout(10)
  assert(sock:connect("127.0.0.1", port))
  return sock
end

describe("a private redis-server (spec/support/redis.lua)", function()
  teardown(function() redis.kill_all() end)

  it("answers PING on its own loopback port, with its data in its own directory", function()
    local srv = redis.start()
    assert.is_true(srv.port > 0)
    assert.same("redis://127.0.0.1:" .. srv.port, srv:url())
    assert.is_false(gone(srv.pid))
    assert.same("PONG", srv:command("PING"))
    assert.same(srv.dir, srv:command("CONFIG", "GET", "dir")[2])
    assert.matches("Ready to accept connections", srv:log())
  end)

  it("parses the replies of XADD, XRANGE, XLEN, DEL, FLUSHALL and CONFIG SET", function()
    local srv = redis.start()
    local id = srv:command("XADD", "topic", "*", "data", "a\r\nb") -- binary-safe
    assert.matches("^%d+%-%d+$", id)
    assert.same({ { id, { "data", "a\r\nb" } } }, srv:command("XRANGE", "topic", "-", "+"))
    assert.same(1, srv:command("XLEN", "topic"))
    assert.same({}, srv:command("XRANGE", "nothing", "-", "+"))
    assert.is_nil(srv:command("GET", "nothing"))
    assert.same("OK", srv:command("CONFIG", "SET", "maxmemory", "100mb"))
    assert.same(1, srv:command("DEL", "topic"))
    assert.same("OK", srv:command("FLUSHALL"))
    local none, err = srv:command("NOSUCHCOMMAND")
    assert.is_nil(none)
    assert.matches("^ERR unknown command", err)
  end)

  it("is gone once killed, and then refuses connections", function()
    local srv = redis.start()
    local pid = srv.pid
    srv:kill()
    assert.is_true(gone(pid))
    local none, err = srv:command("PING")
    assert.is_nil(none)
    assert.matches("^connect: ", err)
  end)

  it("stops on SIGTERM", function()
    local srv = redis.start()
    srv:stop()
    assert.is_true(gone(srv.pid))
    assert.matches("Received SIGTERM", srv:log())
  end)

  it("keeps a stream across a SIGKILL and a restart with appendonly", function()
    local srv = redis.start({ appendonly = true })
    local port, first = srv.port, srv.pid
    local id = srv:command("XADD", "topic", "*", "data", "kept")
    srv:kill()
    srv:restart()
    assert.same(port, srv.port)
    assert.are_not.equal(first, srv.pid)
    assert.same({ { id, { "data", "kept" } } }, srv:command("XRANGE", "topic", "-", "+"))
  end)

  it("loses the stream across a SIGKILL and a restart without appendonly", function()
    local srv = redis.start({ appendonly = false })
    srv:command("XADD", "topic", "*", "data", "lost")
    srv:kill()
    srv:restart()
    assert.same("PONG", srv:command("PING"))
    assert.same(0, srv:command("XLEN", "topic"))
  end)

  it("tries another port when the one it picked is taken", function()
    local taken = redis.start()
    local pick = redis.pick_port
    local picks = 0
    redis.pick_port = function()
      picks = picks + 1
      return picks == 1 and taken.port or pick()
    end
    finally(function() redis.pick_port = pick end)
    local srv = redis.start()
    assert.same(2, picks)
    assert.are_not.equal(taken.port, srv.port)
    assert.same("PONG", srv:command("PING"))
    assert.matches("Address already in use", srv:log()) -- the first attempt's
  end)

  it("raises with redis's reason when the port it was given is taken", function()
    local taken = redis.start()
    local ok, err = pcall(redis.start, { port = taken.port })
    assert.is_false(ok)
    assert.matches("Address already in use", err)
  end)
end)

describe("the stall proxy (spec/support/stall_proxy.py)", function()
  local srv
  setup(function() srv = redis.start() end)
  teardown(function() redis.kill_all() end)

  it("forwards, then after stall() leaves the connection open and unanswered", function()
    local proxy = redis.stall_proxy(srv.port)
    local sock = connect(proxy.port)
    finally(function() sock:close() end)
    sock:send(PING)
    assert.same("+PONG", sock:receive("*l"))
    assert.truthy(proxy:wait_line("accepted"))
    assert.same(1, proxy:stall())
    sock:send(PING)
    sock:settimeout(0.5) -- asserting an absence: a bounded wait is all there is
    local none, err = sock:receive("*l")
    assert.is_nil(none)
    assert.same("timeout", err) -- not "closed": no FIN, no RST
  end)

  it("forwards connections made after a stall, and closes the stalled ones on SIGUSR2", function()
    local proxy = redis.stall_proxy(srv.port)
    local old = connect(proxy.port)
    finally(function() old:close() end)
    assert.truthy(proxy:wait_line("accepted"))
    assert.same(1, proxy:stall())
    local new = connect(proxy.port)
    finally(function() new:close() end)
    new:send(PING)
    assert.same("+PONG", new:receive("*l"))
    assert.same(1, proxy:close_stalled())
    local none, err = old:receive("*l")
    assert.is_nil(none)
    assert.same("closed", err)
    new:send(PING) -- the new one was not stalled, so not closed either
    assert.same("+PONG", new:receive("*l"))
  end)

  it("exits on SIGTERM", function()
    local proxy = redis.stall_proxy(srv.port)
    proxy:stop()
    assert.is_true(gone(proxy.pid))
    assert.matches("\nexiting\n$", proxy:output()) -- by itself, not the SIGKILL after 5 s
    assert.is_false(proxy:alive())
  end)
end)

describe("kill_all", function()
  teardown(function() redis.kill_all() end) -- if the case fails before its own call

  it("kills every server and proxy still running, and removes their directories", function()
    local a, b = redis.start(), redis.start({ appendonly = true })
    local proxy = redis.stall_proxy(a.port)
    redis.kill_all()
    for _, p in ipairs({ a, b, proxy }) do
      assert.is_true(gone(p.pid))
      assert.is_nil(io.open(p.dir))
    end
  end)
end)
