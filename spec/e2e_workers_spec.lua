-- SPDX-License-Identifier: MIT
-- rill --workers 2 end to end, against spec/apps/workers.lua: both workers
-- serve, a killed worker is restarted without resetting queued connections,
-- the master's death ends the workers, the hub is one hub across workers
-- (one order, resume on any worker, a restarted worker's snapshot), and a
-- stop leaves no process behind.
--
-- Steering a connection to one worker: the workers share one listening
-- socket, and which of them accepts a new connection is the kernel's choice
-- (sequential connections mostly go to one of them). To reach a given worker
-- deterministically, the spec SIGSTOPs the other ones (waiting for /proc to
-- say "T"), connects, and SIGCONTs them: a stopped worker cannot accept, so
-- the one left running does. Keep-alive connections made that way stay
-- pinned to their worker for the rest of a case.
local core = require "rill.core"
local socket = require "socket"
local test = require "rill.test"
local procs = require "spec.support.procs"
local tmpdir = procs.tmpdir
local proc_state = procs.proc_state

local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10
local APP = "spec/apps/workers.lua"

---------------------------------------------------------------------------
-- Processes

local KILLED = {} -- the pids the spec SIGKILLed

-- Runs, as opposed to gone or a zombie (a zombie has finished).
local function alive(pid)
  local st = proc_state(pid)
  return st ~= nil and st ~= "Z"
end

-- A rill of ours (so that a pid reused by another program is left alone).
local function ours(pid)
  local f = io.open("/proc/" .. pid .. "/cmdline")
  if not f then return false end
  local c = f:read("a") or ""
  f:close()
  return c:find("rill", 1, true) ~= nil
end

local function signal(pid, sig)
  assert(math.tointeger(pid) and pid > 1, "not a pid: " .. tostring(pid))
  if sig == "KILL" then KILLED[pid] = true end
  assert(os.execute(("kill -s %s %d 2>/dev/null"):format(sig, pid)), ("kill -s %s %d failed"):format(sig, pid))
end

-- Polls pred every 10 ms until it holds or timeout seconds pass.
local function wait_until(pred, timeout)
  local deadline = core.now() + timeout
  while not pred() do
    if core.now() > deadline then return false end
    socket.sleep(0.01)
  end
  return true
end

---------------------------------------------------------------------------
-- A rill --workers 2 server


local function start(workers)
  local dir = tmpdir()
  local pidfile = dir .. "/rill.pid"
  local args = workers and { "--workers", tostring(workers), "--pid-file", pidfile } or nil
  local srv = test.server(APP, { args = args })
  srv.dir, srv.pidfile = dir, pidfile
  return srv
end

-- Every "worker K started (pid P, generation G)" line the master logged, in order.
local function started(srv)
  local out = {}
  for slot, pid, gen in srv:log():gmatch("worker (%d+) started %(pid (%d+), generation (%d+)%)") do
    out[#out + 1] = { slot = tonumber(slot), pid = tonumber(pid), gen = tonumber(gen) }
  end
  return out
end

-- slot -> the pid last started in it
local function current(srv)
  local cur = {}
  for _, w in ipairs(started(srv)) do cur[w.slot] = w.pid end
  return cur
end

-- Kills the master and every worker it ever logged, whatever state they are in.
local function kill_all(srv)
  if not srv then return end
  local master = srv.proc:pid()
  local workers = started(srv)
  srv:stop("KILL", T)
  for _, w in ipairs(workers) do
    if alive(w.pid) and ours(w.pid) then signal(w.pid, "KILL") end
  end
  if master > 0 and alive(master) and ours(master) then signal(master, "KILL") end
  if srv.dir then os.execute("rm -rf '" .. srv.dir .. "'") end
end

-- Waits for the master to exit; returns its status, with the whole log read
-- (srv:wait closes the pipe at once, and the last lines may still be in it).
local function exit_status(srv)
  local status, err = srv.proc:wait(T)
  if not status then return nil, err end
  srv:log()
  return srv:wait()
end

-- Every worker the master logged ended with status 0 at the stop, but those
-- the spec SIGKILLed; nothing from valgrind in the log (it follows the forks:
-- an error in a worker shows there, and makes the worker exit 99).
local function check_clean_exits(srv)
  local log = srv:log()
  for _, w in ipairs(started(srv)) do
    local how = log:match(("worker %d %%(pid %d, generation %d%%) ([^\n]*)"):format(w.slot, w.pid, w.gen))
    if KILLED[w.pid] then
      assert.equal("killed by signal 9 (Killed)", how)
    else
      assert.equal("exited with status 0", how, log)
    end
  end
  assert.is_nil(log:match("==%d+==[^\n]*"), log)
end

-- The byte position of the end of the log so far: wait_for from there sees new lines only.
local function log_end(srv)
  return #srv:log() + 1
end

-- Waits for a line containing text from byte from; returns the line and the position after it.
local function wait_line(srv, text, from, timeout)
  local line, pos = srv.proc:wait_for(text, timeout or T, from)
  assert(line, ("no log line %q within %s s:\n%s"):format(text, timeout or T, srv:log()))
  return line, pos
end

-- Runs fn with every current worker but pid stopped: new connections reach pid.
local function only(srv, pid, fn)
  local others = {}
  for _, p in pairs(current(srv)) do
    if p ~= pid and alive(p) then others[#others + 1] = p end
  end
  for _, p in ipairs(others) do signal(p, "STOP") end
  local ok, a, b = pcall(function()
    for _, p in ipairs(others) do
      assert(wait_until(function() return proc_state(p) == "T" end, T), "worker did not stop")
    end
    return fn()
  end)
  for _, p in ipairs(others) do signal(p, "CONT") end
  if not ok then error(a, 0) end
  return a, b
end

---------------------------------------------------------------------------
-- Clients

-- A keep-alive connection of ours: requests are sent and read separately, so
-- two connections can have a request in flight at once.
local Conn = {}
Conn.__index = Conn

function Conn:send(method, path, body)
  body = body or ""
  assert(self.sock:send(("%s %s HTTP/1.1\r\nHost: rill\r\nContent-Length: %d\r\n\r\n%s")
    :format(method, path, #body, body)))
end

function Conn:read(method)
  local s = assert(test.response(self.sock, method, T))
  local body = s:rest(T)
  return s.status, body, s.headers
end

function Conn:request(method, path, body)
  self:send(method, path, body)
  return self:read(method)
end

function Conn:close()
  self.sock:close()
end

-- A keep-alive connection served by worker pid.
local function pinned(srv, pid)
  return only(srv, pid, function()
    local c = setmetatable({ sock = srv:connect() }, Conn)
    local status, body = c:request("GET", "/pid")
    assert.same({ 200, tostring(pid) }, { status, body })
    return c
  end)
end

-- An event stream served by worker pid.
local function stream_on(srv, pid, path, headers)
  return only(srv, pid, function()
    local s = srv:open(path, { headers = headers })
    assert.same({ 200, tostring(pid) }, { s.status, s.headers["x-pid"] })
    return s
  end)
end

-- The next n events with data (skipping the opening retry: block and any
-- other block without data), as "id data" strings.
local function events(s, n)
  local out = {}
  while #out < n do
    local ev, err = s:event(T)
    assert(ev, ("event %d of %d: %s"):format(#out + 1, n, tostring(err)))
    if ev.data then out[#out + 1] = ev.id .. " " .. ev.data end
  end
  return out
end

-- Publishes data to topic on c; returns the id and the publishing worker's pid.
local function read_publish(c)
  local status, body = c:read("POST")
  assert.equal(200, status, body)
  local id, pid = body:match("^(%S+) (%d+)$")
  assert(id, body)
  return id, tonumber(pid)
end

local function publish(c, topic, data)
  c:send("POST", "/pub/" .. topic, data)
  return read_publish(c)
end

-- Publishes n events "<prefix><i>" to topic, alternately through the connections
-- in conns, one request in flight on each at once (the master orders them).
-- Returns data -> id, and pid -> how many it published.
local function publish_many(conns, topic, prefix, n, first)
  local ids, by = {}, {}
  local i = first or 1
  local last = i + n - 1
  while i <= last do
    local sent = {}
    for _, c in ipairs(conns) do
      if i > last then break end
      c:send("POST", "/pub/" .. topic, prefix .. i)
      sent[#sent + 1] = { c, prefix .. i }
      i = i + 1
    end
    for _, s in ipairs(sent) do
      local id, pid = read_publish(s[1])
      ids[s[2]] = id
      by[pid] = (by[pid] or 0) + 1
    end
  end
  return ids, by
end

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

-- A request on a new connection (Connection: close) sent now, read later.
local function send_fresh(srv)
  local sock = assert(socket.tcp())
  sock:settimeout(T)
  local ok, err = sock:connect(srv.host, srv.port)
  if not ok then
    sock:close()
    return { err = "connect: " .. err }
  end
  local sent, serr = sock:send("GET /pid HTTP/1.1\r\nHost: rill\r\nConnection: close\r\n\r\n")
  return { sock = sock, err = not sent and ("send: " .. serr) or nil }
end

-- The pid that answered, or nil and why not.
local function finish_fresh(r)
  if not r.sock then return nil, r.err end
  local data, err, partial = r.sock:receive("*a")
  r.sock:close()
  data = data or partial or ""
  local pid = data:match("^HTTP/1%.1 200 .-\r\n\r\n(%d+)$")
  if pid then return tonumber(pid) end
  return nil, ("%s (%q)"):format(tostring(err or r.err), data:sub(1, 60))
end

-- n requests on n connections open at once; returns the pids that answered.
local function fresh_batch(srv, n)
  local rs, pids = {}, {}
  for i = 1, n do rs[i] = send_fresh(srv) end
  for i = 1, n do pids[i] = assert(finish_fresh(rs[i])) end
  srv:log() -- drains the server's stderr
  return pids
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
    local c1 = setmetatable({ sock = single:connect() }, Conn)

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
    local argv = {}
    for word in test.bin:gmatch("%S+") do argv[#argv + 1] = word end
    for _, a in ipairs({ "stop", "--pid-file", srv.pidfile, "--timeout", tostring(2 * T) }) do argv[#argv + 1] = a end
    ctl = core.spawn(argv)
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
    local dir = tmpdir()
    local srv = test.server(APP, { args = { "--workers", "2", "--pid-file", dir .. "/rill.pid",
      "--worker-queue-bytes", "65536" } })
    srv.dir, srv.pidfile = dir, dir .. "/rill.pid"
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
    local argv = {}
    for word in test.bin:gmatch("%S+") do argv[#argv + 1] = word end
    for _, a in ipairs({ dir .. "/app.lua", "--listen", "127.0.0.1:0", "--workers", "2", "--pid-file", dir .. "/rill.pid" }) do
      argv[#argv + 1] = a
    end
    local proc = core.spawn(argv)
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
