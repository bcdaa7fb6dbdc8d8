-- SPDX-License-Identifier: MIT
-- Helpers the end-to-end specs of rill --workers share: processes (a pid's
-- state, signals, polling), a server with its master's log (the workers it
-- started, their exits, waiting for a line), steering a connection to one
-- worker, and clients. The clients speak to an app that answers as
-- spec/apps/workers.lua does: GET /pid answers the worker's pid (and every
-- answer has it in x-pid), POST /pub/<topic> publishes its body and answers
-- "<id> <pid>".
--
-- A "server" here is what test.server returns (M.start makes one), or any
-- table with a proc from core.spawn: the log functions read srv.proc only.
local core = require "rill.core"
local socket = require "socket"
local test = require "rill.test"
local assert = require "luassert" -- busted's assert, which a module does not see as a global
local procs = require "spec.support.procs"
local tmpdir = procs.tmpdir
local proc_state = procs.proc_state

local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10

local M = {}

---------------------------------------------------------------------------
-- Processes

local KILLED = {} -- the pids the specs SIGKILLed
M.KILLED = KILLED

-- Runs, as opposed to gone or a zombie (a zombie has finished).
local function alive(pid)
  local st = proc_state(pid)
  return st ~= nil and st ~= "Z" and st ~= "X"
end
M.alive = alive

-- A rill of ours (so that a pid reused by another program is left alone).
local function ours(pid)
  local f = io.open("/proc/" .. pid .. "/cmdline")
  if not f then return false end
  local c = f:read("a") or ""
  f:close()
  return c:find("rill", 1, true) ~= nil
end
M.ours = ours

-- Sends sig ("KILL", "STOP", ...) to pid; a SIGKILLed pid is noted in KILLED.
local function signal(pid, sig)
  assert(math.tointeger(pid) and pid > 1, "not a pid: " .. tostring(pid))
  if sig == "KILL" then KILLED[pid] = true end
  assert(os.execute(("kill -s %s %d 2>/dev/null"):format(sig, pid)), ("kill -s %s %d failed"):format(sig, pid))
end
M.signal = signal

-- Polls pred every 10 ms until it holds or timeout seconds pass.
local function wait_until(pred, timeout)
  local deadline = core.now() + timeout
  while not pred() do
    if core.now() > deadline then return false end
    socket.sleep(0.01)
  end
  return true
end
M.wait_until = wait_until

-- The argv of the rill under test (test.bin may be several words, as
-- "valgrind ... build/rill") followed by the arguments.
local function bin_argv(...)
  local argv = {}
  for word in test.bin:gmatch("%S+") do argv[#argv + 1] = word end
  for _, a in ipairs({ ... }) do argv[#argv + 1] = a end
  return argv
end
M.bin_argv = bin_argv

---------------------------------------------------------------------------
-- A rill server and its master's log

-- test.server on app, in a new private directory srv.dir with srv.pidfile in
-- it (rm -rf'd by kill_all). opts.workers: run as a master with that many
-- workers (--workers N --pid-file srv.pidfile); without it, one process and
-- no pid file. opts.args: more arguments, after those; opts.env: the
-- environment variables, as test.server takes them.
local function start(app, opts)
  opts = opts or {}
  local dir = tmpdir()
  local pidfile = dir .. "/rill.pid"
  local args = {}
  if opts.workers then
    for _, a in ipairs({ "--workers", tostring(opts.workers), "--pid-file", pidfile }) do args[#args + 1] = a end
  end
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
  local ok, srv = pcall(test.server, app, { args = args, env = opts.env })
  if not ok then
    os.execute("rm -rf '" .. dir .. "'")
    error(srv, 0)
  end
  srv.dir, srv.pidfile = dir, pidfile
  return srv
end
M.start = start

-- Every "worker K started (pid P, generation G)" line the master logged
-- (from byte from on, 1 unless given), in order: { {slot, pid, gen}, ... }.
local function started(srv, from)
  local out = {}
  for slot, pid, gen in srv.proc:log():sub(from or 1):gmatch("worker (%d+) started %(pid (%d+), generation (%d+)%)") do
    out[#out + 1] = { slot = tonumber(slot), pid = tonumber(pid), gen = tonumber(gen) }
  end
  return out
end
M.started = started

-- slot -> the pid last started in it
local function current(srv)
  local cur = {}
  for _, w in ipairs(started(srv)) do cur[w.slot] = w.pid end
  return cur
end
M.current = current

-- Kills the master and every worker it ever logged, whatever state they are
-- in, and removes srv.dir. A test.server (or M.start) server; nil is let be.
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
M.kill_all = kill_all

-- Waits for the master to exit; returns its status, with the whole log read
-- (srv:wait closes the pipe at once, and the last lines may still be in it).
local function exit_status(srv)
  local status, err = srv.proc:wait(T)
  if not status then return nil, err end
  srv:log()
  return srv:wait()
end
M.exit_status = exit_status

-- Every worker the master logged ended with status 0 at the stop, but those
-- the spec SIGKILLed; nothing from valgrind in the log (it follows the forks:
-- an error in a worker shows there, and makes the worker exit 99).
local function check_clean_exits(srv)
  local log = srv.proc:log()
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
M.check_clean_exits = check_clean_exits

-- The byte position of the end of the log so far: wait_for from there sees new lines only.
local function log_end(srv)
  return #srv.proc:log() + 1
end
M.log_end = log_end

-- Waits for a line containing text from byte from; returns the line and the position after it.
local function wait_line(srv, text, from, timeout)
  local line, pos = srv.proc:wait_for(text, timeout or T, from)
  assert(line, ("no log line %q within %s s:\n%s"):format(text, timeout or T, srv.proc:log()))
  return line, pos
end
M.wait_line = wait_line

---------------------------------------------------------------------------
-- Steering a connection to one worker: the workers share one listening
-- socket, and which of them accepts a new connection is the kernel's choice
-- (sequential connections mostly go to one of them). To reach a given worker
-- deterministically, the spec SIGSTOPs the other ones (waiting for /proc to
-- say "T"), connects, and SIGCONTs them: a stopped worker cannot accept, so
-- the one left running does. Keep-alive connections made that way stay
-- pinned to their worker for the rest of a case.

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
M.only = only

---------------------------------------------------------------------------
-- Clients

-- A keep-alive connection of ours: requests are sent and read separately, so
-- two connections can have a request in flight at once.
local Conn = {}
Conn.__index = Conn
M.Conn = Conn

function Conn:send(method, path, body)
  body = body or ""
  assert(self.sock:send(("%s %s HTTP/1.1\r\nHost: rill\r\nContent-Length: %d\r\n\r\n%s")
    :format(method, path, #body, body)))
end

-- The response to the oldest request in flight: status, body, headers.
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

-- A new keep-alive connection to srv (whichever worker accepts it).
local function connect(srv)
  return setmetatable({ sock = srv:connect() }, Conn)
end
M.connect = connect

-- A keep-alive connection served by worker pid.
local function pinned(srv, pid)
  return only(srv, pid, function()
    local c = connect(srv)
    local status, body = c:request("GET", "/pid")
    assert.same({ 200, tostring(pid) }, { status, body })
    return c
  end)
end
M.pinned = pinned

-- An event stream served by worker pid.
local function stream_on(srv, pid, path, headers)
  return only(srv, pid, function()
    local s = srv:open(path, { headers = headers })
    assert.same({ 200, tostring(pid) }, { s.status, s.headers["x-pid"] })
    return s
  end)
end
M.stream_on = stream_on

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
M.events = events

-- Reads the answer to a publish sent on c; returns the id and the publishing worker's pid.
local function read_publish(c)
  local status, body = c:read("POST")
  assert.equal(200, status, body)
  local id, pid = body:match("^(%S+) (%d+)$")
  assert(id, body)
  return id, tonumber(pid)
end
M.read_publish = read_publish

-- Publishes data to topic on c; returns the id and the publishing worker's pid.
local function publish(c, topic, data)
  c:send("POST", "/pub/" .. topic, data)
  return read_publish(c)
end
M.publish = publish

-- Publishes n events "<prefix><i>" to topic, alternately through the connections
-- in conns, one request in flight on each at once (the master orders them).
-- i counts from first (1 unless given). Returns data -> id, and pid -> how
-- many it published.
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
M.publish_many = publish_many

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
M.send_fresh = send_fresh

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
M.finish_fresh = finish_fresh

-- n requests on n connections open at once; returns the pids that answered.
local function fresh_batch(srv, n)
  local rs, pids = {}, {}
  for i = 1, n do rs[i] = send_fresh(srv) end
  for i = 1, n do pids[i] = assert(finish_fresh(rs[i])) end
  srv.proc:log() -- drains the server's stderr
  return pids
end
M.fresh_batch = fresh_batch

return M
