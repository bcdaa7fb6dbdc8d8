-- SPDX-License-Identifier: MIT
-- Apps on a real server (spec/apps/ticker.lua): a background ticker
-- publishing to subscribers, a failing rill.every restarted with backoff
-- while the server serves, a spawned task's <close> run at shutdown and at a
-- reload's drain, rill.args and rill.env through rill.test.server, and
-- srv:restart() keeping the port.
local core = require "rill.core"
local socket = require "socket"
local test = require "rill.test"
local json = require "support.json"
local procs = require "spec.support.procs"

local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10
local APP = "spec/apps/ticker.lua"

-- Polls GET path until its body is want, or T seconds pass.
local function eventually_body(srv, path, want)
  local deadline, body = core.now() + T, nil
  repeat
    body = srv:get(path).body
    if body == want then return true end
    socket.sleep(0.02)
  until core.now() > deadline
  return false, body
end

describe("background tasks on a server", function()
  it("a ticker publishes to subscribers: each gets the ticks in order", function()
    local srv <close> = test.server(APP)
    local a, b = srv:open("/ticks"), srv:open("/ticks")
    local first_a, first_b = json.decode(a:event(T).data).n, json.decode(b:event(T).data).n
    for i = 1, 3 do
      assert.same(first_a + i, json.decode(a:event(T).data).n)
      assert.same(first_b + i, json.decode(b:event(T).data).n)
    end
    a:close()
    b:close()
    assert.same(0, srv:stop("TERM"))
  end)

  it("logs a failing rill.every and runs it again after 1 s of backoff, serving meanwhile", function()
    local srv <close> = test.server(APP)
    local line = srv:wait_log("first run fails", T)
    assert(line, srv:log())
    assert.matches("^rill: error: rill%.every%(0%.05%) task at spec/apps/ticker%.lua:%d+: error: .*first run fails", line)
    assert.same("hello\n", srv:get("/hello").body) -- the server serves meanwhile
    assert(srv:wait_log("(next run in 1 s)", T))
    assert(eventually_body(srv, "/runs", "2\n"))
    assert.same(0, srv:stop("TERM"))
  end)

  it("cancels a spawned task at shutdown: its <close> runs and the server exits 0", function()
    local srv <close> = test.server(APP)
    assert.same("hello\n", srv:get("/hello").body)
    assert.same(0, srv:stop("TERM"))
    assert.matches("spawned task closed", srv:log(), 1, true)
  end)

  it("cancels the old generation's tasks at a reload's drain; the new one runs its own", function()
    local srv <close> = test.server(APP, { args = { "--workers", "2", "--pid-file", os.tmpname() } })
    local s = srv:open("/ticks")
    assert(s:event(T))
    local mark = #srv:log() + 1
    srv.proc:kill("HUP")
    assert(srv.proc:wait_for("spawned task closed", T, mark), srv:log())
    local s2 = srv:open("/ticks") -- the new worker's ticker
    assert(s2:event(T))
    s:close()
    s2:close()
    assert.same(0, srv:stop("TERM"))
  end)
end)

describe("configuration through rill.test.server", function()
  it("gives the app its arguments after -- as rill.args, and rill.env its environment", function()
    local srv <close> = test.server(APP, { app_args = { "--upstream", "http://x", "-v" },
                                           env = { RILL_SPEC_WHO = "ada", RILL_SPEC_PORT = "8081" } })
    local cfg = json.decode(srv:get("/config").body)
    assert.same({ "--upstream", "http://x", "-v" }, cfg.args)
    assert.same("ada", cfg.who)
    assert.same(8081, cfg.port)
    assert.same(0, srv:stop("TERM"))
  end)

  it("takes -- in args too, and gives an app with none an empty list and the defaults", function()
    local srv <close> = test.server(APP, { args = { "--grace", "1", "--", "one" } })
    assert.same({ "one" }, json.decode(srv:get("/config").body).args)
    assert.same(0, srv:stop("TERM"))
    local plain <close> = test.server(APP)
    local cfg = json.decode(plain:get("/config").body)
    assert.same({ args = {}, who = "nobody", port = 0 }, cfg)
  end)

  it("fails the app's load naming a variable that is not the number its default says", function()
    local app, dir = procs.app_file('local rill = require "rill"\nlocal port = rill.env("RILL_SPEC_PORT", 8080)\n'
      .. 'return function() return tostring(port) end\n')
    local ok, err = pcall(test.server, app, { env = { RILL_SPEC_PORT = "eighty" } })
    os.execute("rm -rf " .. dir)
    assert.is_false(ok)
    assert.matches('app.lua:2: environment variable RILL_SPEC_PORT="eighty" is not a number', err, 1, true)
  end)
end)

describe("srv:restart()", function()
  it("starts the server again on the same port, with the same app and arguments", function()
    local srv <close> = test.server(APP, { app_args = { "again" } })
    local port = srv.port
    assert.same(0, srv:restart())
    assert.same(port, srv.port)
    assert.same({ "again" }, json.decode(srv:get("/config").body).args)
    assert.same(0, srv:stop("TERM"))
  end)
end)

describe("a handler cancelled while it waits inside xpcall (as rill.every runs its function)", function()
  it("leaves nothing behind for the next: its error is logged as raised", function()
    local srv <close> = test.server("spec/apps/pcall_cancel.lua")
    for _ = 1, 3 do
      local s = srv:open("/waits") -- the head is there: the body waits in xpcall
      s:close()
      srv:settle(function(st) return st.streams == 0 end)
    end
    for _ = 1, 3 do
      assert.same(500, srv:get("/boom").status)
    end
    assert.same(0, srv:stop("TERM"))
    local log = srv:log()
    local _, n = log:gsub("handler error: spec/apps/pcall_cancel.lua:%d+: boom at last", "")
    assert.same(3, n, log)
    assert.is_nil(log:find("error in error handling", 1, true), log)
  end)
end)

describe("once tasks with --workers 2", function()
  local W = require "spec.support.workers"

  -- The pids that published the next n events of a stream on topic, as a set and a count.
  local function publishers(srv, topic, n)
    local s = srv:open("/" .. topic)
    local seen, count = {}, 0
    for _ = 1, n do
      local ev = assert(s:event(T))
      if not seen[ev.data] then count = count + 1 end
      seen[ev.data] = true
    end
    s:close()
    return seen, count
  end

  it("run in exactly one worker, and move to another when it is killed", function()
    local srv = W.start("spec/apps/once.lua", { workers = 2 })
    local ok, err = pcall(function()
      local pids = W.current(srv)
      local all = {}
      for _, pid in pairs(pids) do all[tostring(pid)] = true end
      local each, n_each = publishers(srv, "each", 40)
      assert.same(2, n_each) -- every-worker tasks: both
      for pid in pairs(each) do assert.is_true(all[pid]) end
      local once, n_once = publishers(srv, "once", 20)
      assert.same(1, n_once) -- the once task: one of them
      local leader = next(once)
      assert.is_true(all[leader])
      local mark = W.log_end(srv)
      W.signal(tonumber(leader), "KILL")
      W.wait_line(srv, "started", mark)
      -- a stream opened after the restart: live events only, and the dead worker publishes no more
      -- (one it published just before dying may still be on its way through the relay)
      local later, n_later = publishers(srv, "once", 20)
      assert.is_true(n_later <= 2)
      local s = srv:open("/once")
      local last
      for _ = 1, 10 do last = assert(s:event(T)).data end
      s:close()
      assert.is_true(last ~= leader, "the once task did not move")
      local now = W.current(srv)
      local serving = {}
      for _, pid in pairs(now) do serving[tostring(pid)] = true end
      assert.is_true(serving[last], "published by a worker that is not serving")
      assert.is_true(later[last])
    end)
    W.kill_all(srv)
    assert(ok, err)
  end)
end)

describe("the instruction budget, for the handler after one it stopped", function()
  it("stops every runaway handler, not only the first on a coroutine", function()
    local app, dir = procs.app_file('return function() while true do end end\n')
    local srv <close> = test.server(app, { args = { "--max-instructions", "1000000" } })
    os.execute("rm -rf " .. dir)
    for i = 1, 3 do
      local res = srv:request({ path = "/", timeout = T })
      assert.same(500, res.status, "runaway " .. i)
    end
    assert.same(0, srv:stop("TERM"))
  end)
end)
