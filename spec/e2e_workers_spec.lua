-- SPDX-License-Identifier: MIT
-- rill --workers 2 end to end, against spec/apps/workers.lua: both workers
-- serve, a killed worker is restarted without resetting queued connections,
-- the master's death ends the workers, the hub is one hub across workers
-- (one order, resume on any worker, a restarted worker's snapshot), and a
-- stop leaves no process behind.
--
-- The processes, the master's log and the clients are spec/support/workers.lua's;
-- how a connection is steered to one worker (SIGSTOP the others) is told at its only().
local core = require "rill.core"
local test = require "rill.test"
local procs = require "spec.support.procs"
local support = require "spec.support.workers"
local tmpdir = procs.tmpdir
local proc_state = procs.proc_state
local alive, signal, wait_until = support.alive, support.signal, support.wait_until
local bin_argv = support.bin_argv
local started, current, kill_all = support.started, support.current, support.kill_all
local exit_status, check_clean_exits = support.exit_status, support.check_clean_exits
local log_end, wait_line, only = support.log_end, support.wait_line, support.only
local connect, pinned, stream_on, events = support.connect, support.pinned, support.stream_on, support.events
local publish, publish_many = support.publish, support.publish_many
local send_fresh, finish_fresh, fresh_batch = support.send_fresh, support.finish_fresh, support.fresh_batch

local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10
local APP = "spec/apps/workers.lua"

-- rill on APP with n workers (nil: one process, no master).
local function start(n, args)
  return support.start(APP, { workers = n, args = args })
end

---------------------------------------------------------------------------
-- The relay's ids

-- ids "<epoch>-<seq>": one epoch, seq strictly increasing, no data twice;
-- every event has the id its publisher was given.
local function check_order(list, ids)
  local epoch, seq, seen = nil, -1, {}
  for i, line in ipairs(list) do
    local id, data = line:match("^(%S+) (.*)$")
    local e, s = id:match("^(.+)-(%d+)$")
    assert(e, "not an <epoch>-<seq> id: " .. id)
    epoch = epoch or e
    assert.equal(epoch, e, "event " .. i)
    assert(tonumber(s) > seq, ("event %d: seq %s after %d"):format(i, s, seq))
    seq = tonumber(s)
    assert(not seen[data], "twice: " .. data)
    seen[data] = true
    if ids then assert.equal(ids[data], id, data) end
  end
end

local function seq_of(id)
  return tonumber(id:match("-(%d+)$"))
end

-- The events of data -> id published after id `from`, in id order, as "id data".
local function after(ids, from)
  local out = {}
  for data, id in pairs(ids) do
    if seq_of(id) > seq_of(from) then out[#out + 1] = id .. " " .. data end
  end
  table.sort(out, function(x, y) return seq_of(x:match("^%S+")) < seq_of(y:match("^%S+")) end)
  return out
end

local function slice(list, from, to)
  return table.move(list, from, to, 1, {})
end

---------------------------------------------------------------------------

describe("rill --workers 2", function()
  local srv
  setup(function() srv = start(2) end)
  -- a graceful stop after everything, every worker exiting cleanly
  teardown(function()
    srv.proc:kill("TERM")
    local status = exit_status(srv)
    local ok, err = pcall(check_clean_exits, srv)
    kill_all(srv)
    assert.equal(0, status)
    if not ok then error(err, 0) end
  end)

  -- item 1
  it("serves requests on fresh connections from both workers, each a worker the master logged", function()
    local cur = current(srv)
    local a, b = cur[1], cur[2]
    assert.same({ 1, 1 }, { started(srv)[1].gen, started(srv)[2].gen })
    assert.equal(2, #started(srv))
    assert.are_not.equal(a, b)
    local seen, total = {}, 0
    local function count(pids)
      for _, p in ipairs(pids) do
        seen[p] = (seen[p] or 0) + 1
        total = total + 1
      end
      return pids
    end
    -- as the kernel spreads them (no guarantee of both)...
    count(fresh_batch(srv, 20))
    count(fresh_batch(srv, 20))
    count(fresh_batch(srv, 20))
    -- ...and with the other worker stopped: each accepts on the shared socket by itself
    for _, p in ipairs(only(srv, a, function() return count(fresh_batch(srv, 20)) end)) do assert.equal(a, p) end
    for _, p in ipairs(only(srv, b, function() return count(fresh_batch(srv, 20)) end)) do assert.equal(b, p) end
    assert.equal(100, total)
    local pids = {}
    for p in pairs(seen) do pids[#pids + 1] = p end
    table.sort(pids)
    local want = { a, b }
    table.sort(want)
    assert.same(want, pids)
  end)

  -- item 2
  it("keeps serving while a worker is SIGKILLed under load, and restarts it into its slot", function()
    -- The load: rounds of CLIENTS requests, each on a new connection with
    -- Connection: close, all sent before any is read. The victim is
    -- SIGKILLed while one round is in flight.
    -- The criterion: the workers share the master's listening socket, so a
    -- connection the kernel has queued but no worker has accepted yet
    -- survives a worker's death and is accepted by the other one. Only a
    -- connection the victim had already accepted may fail (reset or closed
    -- without an answer): such failures are allowed in the round in flight
    -- at the kill, at most CLIENTS of them (all its connections). Once the
    -- master has logged the death (it reaped the victim, so its sockets are
    -- closed), every request must succeed: before the restart (the survivor
    -- alone) and after it.
    local CLIENTS, KILL_ROUND, DEAD_ROUNDS, AFTER_ROUNDS = 4, 10, 20, 20
    local cur = current(srv)
    local victim, survivor = cur[1], cur[2]
    local failures, in_kill_round, served_by_survivor = {}, 0, 0
    local restarted, from
    local function round(phase)
      local rs = {}
      for i = 1, CLIENTS do rs[i] = send_fresh(srv) end
      if phase == "kill" then signal(victim, "KILL") end
      for i = 1, CLIENTS do
        local pid, err = finish_fresh(rs[i])
        if not pid and phase == "kill" then
          in_kill_round = in_kill_round + 1
        elseif not pid then
          failures[#failures + 1] = phase .. ": " .. err
        elseif phase ~= "before" and phase ~= "kill" then
          if pid == survivor then served_by_survivor = served_by_survivor + 1 end
          if phase == "dead" then assert.equal(survivor, pid) end
        end
      end
      srv:log()
    end
    from = log_end(srv)
    for _ = 1, KILL_ROUND - 1 do round("before") end
    round("kill")
    local _, after_death = wait_line(srv, ("worker 1 (pid %d, generation 1) killed by signal 9"):format(victim), from)
    -- the survivor alone until the restart (a few rounds: it may come at once)
    for _ = 1, DEAD_ROUNDS do
      srv:log()
      if srv.proc:wait_for("worker 1 started (pid ", 0, after_death) then break end
      round("dead")
    end
    local line = wait_line(srv, "worker 1 started (pid ", after_death)
    restarted = tonumber(line:match("worker 1 started %(pid (%d+), generation 1%)"))
    assert(restarted, line)
    for _ = 1, AFTER_ROUNDS do round("restarted") end
    assert.same({}, failures)
    assert(in_kill_round <= CLIENTS)
    assert(served_by_survivor > 0)
    assert.are_not.equal(victim, restarted)
    assert.same({ restarted, survivor }, { current(srv)[1], current(srv)[2] })
    assert.is_true(alive(survivor))
    -- the restarted worker serves too, once ready
    assert.same({ restarted }, only(srv, restarted, function() return fresh_batch(srv, 1) end))
  end)

  -- item 4
  it("gives 1,000 events published through both workers to a subscriber on each in one order", function()
    local cur = current(srv)
    local a, b = cur[1], cur[2]
    local ca, cb = pinned(srv, a), pinned(srv, b)
    local sa, sb = stream_on(srv, a, "/events/order"), stream_on(srv, b, "/events/order")
    local ids, by = publish_many({ ca, cb }, "order", "e", 1000)
    assert.same({ [a] = 500, [b] = 500 }, by)
    local ga, gb = events(sa, 1000), events(sb, 1000)
    check_order(ga, ids)
    assert.same(ga, gb)
    for _, x in ipairs({ ca, cb, sa, sb }) do x:close() end
  end)

  -- item 5
  it("resumes a client on the other worker with exactly the rest, mid-way or at the end", function()
    local cur = current(srv)
    local a, b = cur[1], cur[2]
    local ca, cb = pinned(srv, a), pinned(srv, b)
    local mid = stream_on(srv, a, "/events/resume") -- leaves after 500, while publishing goes on
    local whole = stream_on(srv, b, "/events/resume") -- leaves after all 1,000
    local ids = publish_many({ ca, cb }, "resume", "e", 500)
    local first = events(mid, 500)
    mid:close()
    local more = publish_many({ ca, cb }, "resume", "e", 500, 501)
    for k, v in pairs(more) do ids[k] = v end
    local all = events(whole, 1000)
    whole:close()
    check_order(all, ids)
    assert.same(slice(all, 1, 500), first)
    -- mid-way, from worker a to worker b
    local last = first[500]:match("^%S+")
    local r1 = stream_on(srv, b, "/events/resume", { ["Last-Event-ID"] = last })
    -- at the end, from worker b to worker a
    local r2 = stream_on(srv, a, "/events/resume", { ["Last-Event-ID"] = all[1000]:match("^%S+") })
    assert.same(slice(all, 501, 1000), events(r1, 500))
    -- nothing repeated: the next event of both is the next one published
    local id = publish(cb, "resume", "after")
    assert.same({ id .. " after" }, events(r1, 1))
    assert.same({ id .. " after" }, events(r2, 1))
    for _, x in ipairs({ ca, cb, r1, r2 }) do x:close() end
  end)

  -- item 6
  it("resumes a client on a restarted worker from its history snapshot, then live", function()
    local cur = current(srv)
    local keep, victim = cur[1], cur[2]
    local ck, cv = pinned(srv, keep), pinned(srv, victim)
    local ids = publish_many({ ck, cv }, "again", "e", 20)
    cv:close()
    local from = log_end(srv)
    signal(victim, "KILL")
    local _, pos = wait_line(srv, ("worker 2 (pid %d, generation 1) killed by signal 9"):format(victim), from)
    local line = wait_line(srv, "worker 2 started (pid ", pos)
    local fresh = tonumber(line:match("worker 2 started %(pid (%d+), generation 1%)"))
    assert(fresh, line)
    -- with `keep` stopped, the connection waits in the queue until the new worker accepts
    local r = stream_on(srv, fresh, "/events/again", { ["Last-Event-ID"] = ids.e10 })
    local want = after(ids, ids.e10) -- e11 to e20, and e9 if the master took it after e10
    assert(#want >= 10)
    assert.same(want, events(r, #want))
    -- live events published through both
    local cf = pinned(srv, fresh)
    local live = {}
    for i = 1, 4 do
      local id, pid = publish(i % 2 == 1 and ck or cf, "again", "live" .. i)
      assert.equal(i % 2 == 1 and keep or fresh, pid)
      live[i] = id .. " live" .. i
    end
    assert.same(live, events(r, 4))
    -- both hold the same history (ck after a publish of its own, so it has cf's last)
    publish(ck, "barrier", "x")
    local _, on_keep = ck:request("GET", "/stats/again")
    local _, on_fresh = cf:request("GET", "/stats/again")
    assert.matches("history=24 ", on_keep)
    assert.equal(on_keep:gsub("subscribers=%d+", ""), on_fresh:gsub("subscribers=%d+", ""))
    for _, x in ipairs({ ck, cf, r }) do x:close() end
  end)

  -- item 8
  it("refuses a publish to a closed topic on every worker as one process does, and counts one history", function()
    local cur = current(srv)
    local a, b = cur[1], cur[2]
    local ca, cb = pinned(srv, a), pinned(srv, b)
    local single = start() -- one process, no master: the in-process hub
    finally(function() kill_all(single) end)
    local c1 = connect(single)

    local function scenario(conns)
      local out = {}
      publish_many(conns, "shut", "e", 3)
      local status, body = conns[1]:request("POST", "/close/shut")
      assert.equal(200, status, body)
      for _, c in ipairs(conns) do
        status, body = c:request("POST", "/pub/shut", "late")
        out[#out + 1] = status .. " " .. body
      end
      for _, c in ipairs(conns) do
        local _, st = c:request("GET", "/stats/shut")
        assert.matches("closed=true history=3 ", st)
      end
      -- the same history count on every worker after 8 events (the last through
      -- the last connection; the others then publish elsewhere: they have it too)
      publish_many(conns, "counted", "e", 8)
      for i = 1, #conns - 1 do publish(conns[i], "barrier", "x") end
      local stats = {}
      for _, c in ipairs(conns) do
        local _, st = c:request("GET", "/stats/counted")
        stats[#stats + 1] = st:match("history=%d+ ")
      end
      return out, stats
    end

    local want, want_stats = scenario({ c1 })
    assert.same({ "409 n=2\nnil\ntopic 'shut' is closed" }, want)
    assert.same({ "history=8 " }, want_stats)
    local got, got_stats = scenario({ ca, cb })
    assert.same({ want[1], want[1] }, got)
    assert.same({ "history=8 ", "history=8 " }, got_stats)
    for _, x in ipairs({ ca, cb, c1 }) do x:close() end
  end)
end)

-- item 3
describe("rill --workers 2 without its master", function()
  it("ends both workers when the master is SIGKILLed", function()
    local srv = start(2)
    finally(function() kill_all(srv) end)
    local workers = started(srv)
    assert.equal(2, #workers)
    srv.proc:kill("KILL")
    assert.equal(-9, exit_status(srv))
    for _, w in ipairs(workers) do
      assert(wait_until(function() return not alive(w.pid) end, T),
        ("worker %d (pid %d) still runs without its master (%s)"):format(w.slot, w.pid, tostring(proc_state(w.pid))))
    end
  end)
end)

-- item 7
describe("stopping rill --workers 2", function()
  -- every pid the master logged is gone, not even a zombie (the master
  -- reaped them before it exited), and the pid file is removed
  local function check_gone(srv, workers)
    for _, w in ipairs(workers) do
      assert.is_nil(proc_state(w.pid), ("worker %d (pid %d) left behind"):format(w.slot, w.pid))
    end
    assert.is_nil(io.open(srv.pidfile), "the pid file is left behind")
    assert.matches("master: stopped", srv:log())
    check_clean_exits(srv)
  end

  it("leaves no process behind after `rill stop`, a restarted worker included", function()
    local srv, ctl = start(2), nil
    finally(function() -- busted keeps one finally per test
      if ctl then ctl:close() end
      kill_all(srv)
    end)
    local victim = current(srv)[2]
    local from = log_end(srv)
    signal(victim, "KILL")
    local _, pos = wait_line(srv, ("worker 2 (pid %d, generation 1) killed by signal 9"):format(victim), from)
    wait_line(srv, "worker 2 started (pid ", pos)
    local workers = started(srv)
    assert.equal(3, #workers)
    local f = assert(io.open(srv.pidfile))
    assert.equal(srv.proc:pid(), tonumber(f:read("a")))
    f:close()
    ctl = core.spawn(bin_argv("stop", "--pid-file", srv.pidfile, "--timeout", tostring(2 * T)))
    assert.equal(0, ctl:wait(3 * T), ctl:log())
    assert.matches("rill: stopped %(pid " .. srv.proc:pid() .. "%)", ctl:log())
    assert.equal(0, exit_status(srv))
    check_gone(srv, workers)
  end)

  it("leaves no process behind after SIGTERM to the master", function()
    local srv = start(2)
    finally(function() kill_all(srv) end)
    local workers = started(srv)
    assert.equal(2, #workers)
    srv.proc:kill("TERM")
    assert.equal(0, exit_status(srv))
    check_gone(srv, workers)
  end)
end)

describe("rill --workers 2 with a worker that stops reading its hub events", function()
  it("kills it past --worker-queue-bytes and restarts it, and its clients resume exactly", function()
    local srv = start(2, { "--worker-queue-bytes", "65536" })
    finally(function() kill_all(srv) end)
    local cur = current(srv)
    local stuck, other = cur[2], cur[1]
    local c = pinned(srv, other)
    local first = publish(c, "q", "before")
    local from = log_end(srv)
    signal(stuck, "STOP") -- it reads nothing from now on: the master's queue to it grows
    assert(wait_until(function() return proc_state(stuck) == "T" end, T))
    local payload = ("x"):rep(2000)
    local ids, n = {}, 0
    -- bounded: the socket buffers take a few hundred KiB before the queue grows
    while n < 2000 and not srv:log():find("does not read its hub events", from, true) do
      n = n + 1
      ids[payload .. n] = publish(c, "q", payload .. n)
    end
    local _, pos = wait_line(srv, ("worker 2 (pid %d) does not read its hub events"):format(stuck), from)
    wait_line(srv, ("worker 2 (pid %d, generation 1) killed by signal 9"):format(stuck), pos)
    wait_line(srv, "worker 2 started (pid ", pos)
    local fresh = current(srv)[2]
    assert.are_not.equal(stuck, fresh)
    -- the restarted worker got the history: a client resuming there misses nothing
    local s = stream_on(srv, fresh, "/events/q", { ["last-event-id"] = first })
    local got = events(s, n)
    assert.same(after(ids, first), got)
    s:close()
    c:close()
    srv.proc:kill("TERM")
    assert.equal(0, exit_status(srv))
  end)
end)

describe("rill --workers 2 with an app that publishes at load time", function()
  it("exits 2, naming the app's line and why publishing waits", function()
    local dir = tmpdir()
    finally(function() os.execute("rm -rf '" .. dir .. "'") end)
    local app = assert(io.open(dir .. "/app.lua", "w"))
    app:write('local rill = require "rill"\nrill.publish("boot", "x")\nreturn function() return "hi" end\n')
    app:close()
    local proc = core.spawn(bin_argv(dir .. "/app.lua", "--listen", "127.0.0.1:0", "--workers", "2",
      "--pid-file", dir .. "/rill.pid"))
    finally(function() proc:close() end)
    assert.equal(2, proc:wait(T))
    local log = proc:log()
    assert.matches("app.lua:2: rill.publish waits for the hub's master %(%-%-workers%): call it inside a request handler or rill.run",
      log, 1, false, log)
    assert.is_nil(io.open(dir .. "/rill.pid"), "the pid file is removed")
  end)
end)

describe("rill --workers 2 with a worker that dies as soon as it starts", function()
  it("restarts it with backoff, 1 s then 2 s, logged, and serves again once it loads", function()
    local dir = tmpdir()
    local flag = dir .. "/broken"
    local app = assert(io.open(dir .. "/app.lua", "w"))
    -- the app dies at load while the flag file exists: a worker that cannot start
    app:write(([[
local f = io.open(%q)
if f then f:close() os.exit(3) end
local stat = assert(io.open("/proc/self/stat"))
local pid = tostring(math.tointeger(stat:read("n")))
stat:close()
return function() return pid end -- /pid too: pinned() asks it
]]):format(flag))
    app:close()
    local srv = test.server(dir .. "/app.lua", { args = { "--workers", "2", "--pid-file", dir .. "/rill.pid" } })
    srv.dir = dir
    finally(function() kill_all(srv) end)
    assert(io.open(flag, "w")):close()
    local victim = current(srv)[1]
    local from = log_end(srv)
    signal(victim, "KILL")
    local _, pos = wait_line(srv, ("worker 1 (pid %d, generation 1) killed by signal 9"):format(victim), from)
    -- its first replacement dies at once, and so does the next: they back off
    local line
    line, pos = wait_line(srv, "restarting it in", pos)
    assert.matches("worker 1 died 0%.%d s after its start: restarting it in 1 s", line)
    line, pos = wait_line(srv, "restarting it in", pos, 3 * T)
    assert.matches("worker 1 died 0%.%d s after its start: restarting it in 2 s", line)
    os.remove(flag)
    _, pos = wait_line(srv, "worker 1 started (pid ", pos, 3 * T)
    local fresh = current(srv)[1]
    local c = pinned(srv, fresh) -- it answers: it loaded
    c:close()
    srv.proc:kill("TERM")
    assert.equal(0, exit_status(srv))
  end)
end)
