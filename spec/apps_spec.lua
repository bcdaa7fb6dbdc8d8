-- SPDX-License-Identifier: MIT
-- Apps in process: background tasks (rill.spawn, rill.every), the fake
-- clock of rill.test (rill.sleep, rill.every and rill.now on virtual time,
-- the spec never sleeping: every assertion is on the virtual clock and on
-- order, never on wall time), rill.test.stream's event reader, disconnect
-- injection (the handler's <close> runs, its pending effect is cancelled),
-- and rill.env.
local rill = require "rill"
local core = require "rill.core"
local socket = require "socket"
local t = require "rill.test"
local procs = require "spec.support.procs"

after_each(function() -- no task or clock outlives its spec
  core.stop_background()
  core.clock_fake(false)
end)

describe("the fake clock", function()
  it("runs a handler that sleeps 60 s between three events in virtual time: all three, at 0, 60 and 120", function()
    local clock <close> = t.clock()
    local wall = socket.gettime()
    local function ticker()
      local n = 0
      return rill.sse(function()
        n = n + 1
        if n > 3 then return nil end
        if n > 1 then rill.sleep(60) end
        return { data = ("%d at %g"):format(n, clock:now()) }
      end)
    end
    local res = t.call(ticker)
    assert.same({ "1 at 0", "2 at 60", "3 at 120" }, { res.body:match("data: (1 at %S+).-data: (2 at %S+).-data: (3 at %S+)") })
    assert.same(120, clock:now())
    assert.is_true(socket.gettime() - wall < 5, "it waited in real time") -- a bound, not a timing
  end)

  it("gives rill.test.stream's reader each event as virtual time reaches it; a read's timeout is virtual too", function()
    local clock <close> = t.clock()
    local s <close> = t.stream(function()
      local n = 0
      return rill.sse(function()
        n = n + 1
        if n > 1 then rill.sleep(30) end
        return n <= 3 and { id = tostring(n), data = tostring(rill.now()) } or nil
      end)
    end)
    assert.same(200, s.status)
    assert.same("1", s:event(1).id)
    assert.same(0, clock:now())
    local none, why = s:event(10) -- the next is 30 s away
    assert.same({ nil, "timeout" }, { none, why })
    assert.same(10, clock:now())
    assert.same("2", s:event(25).id) -- due at 30
    assert.same(30, clock:now())
    assert.same("3", s:event(60).id)
    assert.same(60, clock:now())
    assert.same({ nil, "end" }, { s:event(60) })
    assert.same("3", s:last_event_id())
  end)

  it("moves rill.now with it, and clock:advance wakes sleepers in deadline order", function()
    local clock = t.clock()
    local t0 = rill.now()
    local order = {}
    for _, d in ipairs({ 5, 1, 3, 1 }) do
      rill.spawn(function() rill.sleep(d) order[#order + 1] = ("%g@%g"):format(d, clock:now()) end)
    end
    core.step() -- they start, and sleep
    assert.same(0, clock:advance(0.5))
    assert.same({}, order)
    assert.same(3, clock:advance(3))
    assert.same({ "1@1", "1@1", "3@3" }, order)
    assert.same(3.5, clock:now())
    assert.near(3.5, rill.now() - t0, 1e-9)
    clock:stop()
    assert.same(3.5, clock:now())
    assert.has_error(function() clock:advance(1) end, "advance: the clock was stopped")
  end)

  it("refuses a second clock, and a bad advance", function()
    local clock <close> = t.clock()
    assert.has_error(function() t.clock() end)
    for _, bad in ipairs({ -1, 0 / 0, "1", 1e10 }) do
      assert.has_error(function() clock:advance(bad) end)
    end
  end)
end)

describe("rill.every and rill.spawn", function()
  it("runs an every task on its period, publishing to the hub", function()
    local clock <close> = t.clock()
    local seen = {}
    rill.spawn(function() -- a subscriber, as a stream's would be
      for ev in rill.subscribe("apps-ticks") do seen[#seen + 1] = ev.data end
    end)
    local task = rill.every(10, function() rill.publish("apps-ticks", { data = ("%g"):format(clock:now()) }) end)
    core.step()
    clock:advance(35)
    for _ = 1, 10 do core.step() end -- deliveries wake the subscriber from events of their own
    assert.same({ "0", "10", "20", "30" }, seen)
    assert.is_true(task:running())
    assert.is_true(task:cancel())
    assert.is_false(task:running())
    assert.is_false(task:cancel())
  end)

  it("restarts a failing every task with backoff: 1 s, 2 s, 4 s..., then its period once it succeeds", function()
    local clock <close> = t.clock()
    local runs = {}
    rill.every(0.5, function()
      runs[#runs + 1] = clock:now()
      if #runs <= 4 then error("not yet") end
    end)
    core.step()
    clock:advance(20)
    assert.same({ 0, 1, 3, 7, 15, 15.5, 16 }, { table.unpack(runs, 1, 7) })
  end)

  it("never runs two of one every task at once: a run longer than the period is followed at once", function()
    local clock <close> = t.clock()
    local starts = {}
    rill.every(1, function() starts[#starts + 1] = clock:now() rill.sleep(2.5) end)
    core.step()
    clock:advance(8)
    assert.same({ 0, 2.5, 5, 7.5 }, starts)
  end)

  it("runs a spawned task once; an error ends it", function()
    local clock <close> = t.clock()
    local done = {}
    local a = rill.spawn(function() rill.sleep(1) done[#done + 1] = "a" end)
    local b = rill.spawn(function() error("b fails") end)
    core.step()
    clock:advance(2)
    assert.same({ "a" }, done)
    assert.is_false(a:running())
    assert.is_false(b:running())
  end)

  it("runs a cancelled task's <close> variables and undoes its sleep", function()
    local closed = false
    local task = rill.spawn(function()
      local _ <close> = setmetatable({}, { __close = function() closed = true end })
      rill.sleep(3600)
    end)
    core.step()
    assert.is_true(task:running())
    task:cancel()
    assert.is_true(closed)
  end)

  it("raises bad argument naming the caller for a bad period or function", function()
    for _, args in ipairs({ { 0, print }, { -1, print }, { 0 / 0, print }, { "1", print }, { 1, nil }, { 1, "f" } }) do
      local ok, err = pcall(function()
        local task = rill.every(args[1], args[2])
        return task
      end)
      assert.is_false(ok)
      assert.matches("^spec/apps_spec.lua:%d+: bad argument #%d to 'every'", err)
    end
    local ok, err = pcall(function()
      local task = rill.spawn(42)
      return task
    end)
    assert.is_false(ok)
    assert.matches("^spec/apps_spec.lua:%d+: bad argument #1 to 'spawn'", err)
  end)
end)

describe("disconnect injection", function()
  it("closes the client after the 3rd chunk: the handler's <close> runs and its pending fetch is cancelled", function()
    -- an upstream that accepts and never answers: the fetch waits
    local upstream = assert(socket.bind("127.0.0.1", 0))
    local _, port = upstream:getsockname()
    local closed, fetched = false, 0
    local res = t.call(function()
      local n = 0
      return { body = function()
        local _ <close> = setmetatable({}, { __close = function() closed = true end })
        n = n + 1
        if n <= 3 then return "chunk " .. n .. "\n" end
        fetched = fetched + 1
        rill.fetch("http://127.0.0.1:" .. port .. "/never", { timeout = 3600 })
        return "unreachable\n"
      end }
    end, nil, { disconnect_after = 3 })
    upstream:close()
    assert.is_true(res.disconnected)
    assert.same("chunk 1\nchunk 2\nchunk 3\n", res.body)
    assert.same("rill.fetch", res.cancelled)
    assert.same(1, fetched)
    assert.is_true(closed)
  end)

  it("says nothing was cancelled when the handler had ended", function()
    local res = t.call(function() return { body = { "a", "b" } } end, nil, { disconnect_after = 5 })
    assert.same("ab", res.body)
    assert.is_nil(res.cancelled)
  end)
end)

describe("rill.test.stream", function()
  it("answers a client error as the server does", function()
    local s = t.stream(function(req) return { json = req:json() } end,
      { method = "POST", headers = { ["content-type"] = "application/json" }, body = "{" })
    assert.same(400, s.status)
    assert.matches("^malformed JSON", (s:rest()))
  end)

  it("raises the handler's error before its head", function()
    assert.has_error(function() t.stream(function() error("boom") end) end)
  end)
end)

describe("rill.env", function()
  it("reads a variable, its default when unset, as a number or boolean like the default", function()
    assert.same(os.getenv("HOME"), rill.env("HOME"))
    assert.same("d", rill.env("RILL_SPEC_SURELY_UNSET", "d"))
    assert.same(8, rill.env("RILL_SPEC_SURELY_UNSET", 8))
    assert.has_error(function() rill.env(nil) end)
    assert.has_error(function() rill.env("") end)
  end)
end)

describe("once tasks", function()
  after_each(function() core.background_lead(true) end) -- as a single process always is

  it("run only while the process holds the lead, start again from the beginning when it comes back", function()
    local clock <close> = t.clock()
    local runs, spawns, closed = {}, {}, 0
    core.background_lead(false) -- a worker the master has not given the lead
    local task = rill.every(10, function() runs[#runs + 1] = clock:now() end, { once = true })
    local spawned = rill.spawn(function()
      local _ <close> = setmetatable({}, { __close = function() closed = closed + 1 end })
      spawns[#spawns + 1] = clock:now()
      rill.sleep(3600)
    end, { once = true })
    core.step()
    clock:advance(25)
    assert.same({ {}, {} }, { runs, spawns }) -- dormant
    assert.is_false(task:running())
    core.background_lead(true)
    core.step()
    clock:advance(15)
    assert.same({ { 25, 35 }, { 25 } }, { runs, spawns })
    assert.is_true(task:running())
    core.background_lead(false) -- the lead moves away: the runs end, <close> included
    assert.same(1, closed)
    assert.is_false(task:running())
    assert.is_false(spawned:running())
    clock:advance(30)
    assert.same(2, #runs)
    core.background_lead(true) -- back: each starts from the beginning
    core.step()
    assert.same({ { 25, 35, 70 }, { 25, 70 } }, { runs, spawns })
    assert.is_true(task:cancel()) -- cancelled for good: the lead coming back does not start it
    core.background_lead(false)
    core.background_lead(true)
    core.step()
    assert.same(3, #runs)
  end)

  it("checks the options", function()
    for _, opts in ipairs({ "once", { once = 1 }, { ones = true } }) do
      local ok, err = pcall(function()
        local task = rill.spawn(print, opts)
        return task
      end)
      assert.is_false(ok)
      assert.matches("^spec/apps_spec.lua:%d+: bad argument #2 to 'spawn'", err)
    end
  end)
end)

describe("rill.test.stream's heartbeats", function()
  it("beats an idle event stream at its interval, on virtual time", function()
    local clock <close> = t.clock()
    local s <close> = t.stream(function()
      local n = 0
      return rill.sse(function()
        n = n + 1
        if n > 1 then rill.sleep(40) end
        return { data = tostring(n) }
      end, { heartbeat = 15 })
    end)
    assert.same("retry: 3000\n\n", s:chunk(1))
    assert.same("data: 1\n\n", s:chunk(1))
    assert.same(":\n", s:chunk(20))
    assert.same(15, clock:now())
    assert.same(":\n", s:chunk(20))
    assert.same(30, clock:now())
    assert.same("data: 2\n\n", s:chunk(20)) -- at 40: before the next beat at 45
    assert.same(40, clock:now())
  end)
end)

describe("background tasks whose <close> cancels tasks", function()
  it("survives a <close> that cancels a sibling, itself, or every task, at a stop", function()
    local order = {}
    local sibling = rill.every(1, function() rill.sleep(3600) end)
    local me
    me = rill.spawn(function()
      local _ <close> = setmetatable({}, { __close = function()
        order[#order + 1] = "closing"
        sibling:cancel()
        me:cancel()
        core.stop_background()
      end })
      rill.sleep(3600)
    end)
    core.step()
    assert.is_true(me:running())
    core.stop_background()
    assert.same({ "closing" }, order)
    assert.is_false(me:running())
    assert.is_false(sibling:running())
  end)

  it("survives a <close> that cancels its own task as the task fails, or as the lead goes", function()
    local me
    me = rill.spawn(function()
      local _ <close> = setmetatable({}, { __close = function() me:cancel() end })
      error("failing with a <close>")
    end)
    core.step()
    assert.is_false(me:running())
    local once
    once = rill.spawn(function()
      local _ <close> = setmetatable({}, { __close = function() once:cancel() end })
      rill.sleep(3600)
    end, { once = true })
    core.step()
    core.background_lead(false) -- the lead goes: its <close> cancels it for good
    core.background_lead(true)
    core.step()
    assert.is_false(once:running())
    assert.is_false(once:cancel())
  end)
end)

describe("the fake clock, against tasks that poll", function()
  it("moves past a task that polls with rill.sleep(0), in rill.run and in advance", function()
    local clock <close> = t.clock()
    local polls = 0
    local took = rill.run(function()
      local done = false
      rill.spawn(function() rill.sleep(1) done = true end)
      while not done do polls = polls + 1 rill.sleep(0) end
      return clock:now()
    end)
    assert.same(1, took)
    assert.is_true(polls > 0)
    local spins = 0
    rill.spawn(function() while true do spins = spins + 1 rill.sleep(0) end end)
    core.step()
    clock:advance(5) -- the poller gets its turns at each instant, and time still moves
    assert.same(6, clock:now())
    assert.is_true(spins > 0)
  end)

  it("is turned on and off by the spec only, and rill.now never goes back when it stops", function()
    local clock = t.clock()
    local ok, err = pcall(rill.run, function() core.clock_fake(false) end)
    assert.is_false(ok)
    assert.matches("not from a task", err)
    local before = rill.now()
    clock:advance(1000)
    clock:stop()
    assert.is_true(rill.now() >= before + 1000)
  end)
end)

describe("the fake clock, while real I/O is in flight", function()
  it("gives the I/O the time it takes instead of spinning a ticker through virtual time", function()
    local app, dir = procs.app_file('local rill = require "rill"\nreturn function() rill.sleep(0.3) return "late\\n" end\n')
    local upstream <close> = t.server(app)
    os.execute("rm -rf " .. dir)
    local clock <close> = t.clock()
    local ticks = 0
    rill.every(1, function() ticks = ticks + 1 end)
    local started = socket.gettime() -- real time: the clock is fake
    local res = t.call(function()
      local up = assert(rill.fetch(("http://127.0.0.1:%d/"):format(upstream.port)))
      return (assert(up:read()))
    end)
    assert.same("late\n", res.body)
    -- a step of virtual time waits for the loop to be idle a millisecond: at most about one step
    -- per real millisecond the fetch took, however slow the machine (it was hundreds per ms)
    local ms = (socket.gettime() - started) * 1000
    assert.is_true(ticks <= 2 * ms + 50, ("%d ticks in %.0f ms"):format(ticks, ms))
  end)
end)

describe("a client error changed by the handler", function()
  it("is no longer a client error, and its metatable is hidden", function()
    local ok, err = pcall(t.call, function(req)
      local fine, e = pcall(req.json, req)
      assert(not fine)
      assert.same("rill.client_error", getmetatable(e))
      e.status = nil
      error(e)
    end, { method = "POST", headers = { ["content-type"] = "application/json" }, body = "{" })
    assert.is_false(ok) -- raised, as a handler's own error is (the server answers it 500)
    assert.same("client error (changed since it was raised)", tostring(err))
  end)
end)

describe("rill.spawn from inside a handler", function()
  it("runs the function it was given, outliving the request", function()
    local ran = {}
    local res = t.call(function()
      rill.spawn(function() rill.sleep(0.01) ran[#ran + 1] = "spawned" end)
      return "replied\n"
    end)
    assert.same("replied\n", res.body)
    assert.same({}, ran) -- not yet: it outlives the request
    for _ = 1, 100 do
      if #ran > 0 then break end
      core.step(0.05)
    end
    assert.same({ "spawned" }, ran)
  end)
end)

describe("the fake clock, turned on and off many times", function()
  it("keeps rill.now moving as far as the clocks advanced, no further", function()
    local t0 = rill.now()
    for _ = 1, 60 do
      local clock = t.clock()
      clock:advance(60)
      clock:stop()
    end
    local moved = rill.now() - t0
    assert.is_true(moved >= 3600, moved)
    assert.is_true(moved < 3600 + 60, moved) -- real time spent, not a doubling offset
  end)
end)

describe("rill.test's reads, against a handler that polls", function()
  it("return once the task it waits for is due, on virtual time", function()
    local clock <close> = t.clock()
    local function poller()
      local flag = false
      rill.spawn(function() rill.sleep(1) flag = true end)
      return { body = function()
        if flag == nil then return nil end
        while not flag do rill.sleep(0) end
        flag = nil
        return "flagged at " .. clock:now()
      end }
    end
    local s <close> = t.stream(poller)
    assert.same("flagged at 1.0", s:chunk(5))
  end)
end)

describe("once tasks from a handler", function()
  it("are refused: a once task is made at the app's top level", function()
    local ok, err = pcall(t.call, function()
      rill.spawn(function() end, { once = true })
    end)
    assert.is_false(ok)
    assert.matches("a once task is made at the app's top level", err, 1, true)
  end)
end)
