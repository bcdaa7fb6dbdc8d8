-- SPDX-License-Identifier: MIT
-- A private redis-server for the specs of the Redis backplane, and a TCP
-- proxy that can stall (spec/support/stall_proxy.py). Plain lua5.4 and
-- LuaSocket, so it runs without a build of rill.
--
--   local redis = require "spec.support.redis"
--   local srv = redis.start{ appendonly = true }  -- its own port and dir
--   srv:command("XADD", "s", "*", "data", "x")    -- the parsed reply
--   srv:kill()                                    -- SIGKILL, pid gone
--   srv:restart()                                 -- same port and dir
--   local p = redis.stall_proxy(srv.port)         -- p.port forwards to srv
--   p:stall()                                     -- open connections hang
--   redis.kill_all()                              -- in teardown / finally
--
-- Never a fixed port, never a sleep to synchronise, never a probe connect:
-- a process is ready when its own output says so (polled every 10 ms up to
-- a deadline), and it is killed by pid, checked against /proc first so that
-- a pid reused by another program is left alone.
-- busted's own `lua` may be 5.1 (luarocks makes it the default): fail here,
-- before anything is spawned, rather than on a 5.4-only call with a process
-- already running.
assert(_VERSION == "Lua 5.4", "spec/support/redis.lua needs Lua 5.4: busted --lua=lua5.4")

local socket = require "socket"
local procs = require "spec.support.procs"

local M = {}

local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10 -- seconds any wait takes at most
local PYTHON = "/usr/bin/python3" -- Debian's, as the other specs' helpers use
local PROXY = "spec/support/stall_proxy.py"
local PROXY_CMD = PYTHON .. "\0" .. PROXY -- how its /proc/PID/cmdline starts
local PORT_TRIES = 5 -- a picked port another program took first: try another one

-- Every process started here and not known to be gone: kill_all's list.
local running = {}

---------------------------------------------------------------------------
-- Processes

local function quote(s)
  return "'" .. (tostring(s):gsub("'", "'\\''")) .. "'"
end

-- Polls pred every 10 ms until it returns a true value or timeout seconds pass.
local function wait_until(pred, timeout)
  local deadline = socket.gettime() + timeout
  while true do
    local v = pred()
    if v then return v end
    if socket.gettime() > deadline then return nil end
    socket.sleep(0.01)
  end
end

-- Finished, its sockets closed: no /proc entry, or a zombie (init reaps it
-- in its own time) with no thread left. redis-server has threads: after a
-- SIGKILL its main thread is a zombie while another one still exits, and
-- until that one is gone the listening socket still takes connections.
function M.gone(pid)
  local status = procs.read_file("/proc/" .. pid .. "/status")
  if status == "" then return true end
  return status:match("\nState:%s*(%S)") == "Z" and (tonumber(status:match("\nThreads:%s*(%d+)")) or 0) <= 1
end
local gone = M.gone

-- Whether pid still runs our program: its command line starts with want
-- (a pid reused by something else is not ours). Checked before a signal.
local function ours(pid, want)
  return not gone(pid) and procs.read_file("/proc/" .. pid .. "/cmdline"):sub(1, #want) == want
end

local function signal(pid, sig)
  os.execute(("kill -s %s %d 2>/dev/null"):format(sig, pid))
end

-- Runs argv in the background with its output appended to out, and returns
-- its pid: `&` forks a child that execs argv, and `echo $!` names it. Returns
-- once the child has exec'd (or ended), so that ours() can be trusted from
-- then on: just after the fork /proc shows the shell's command line, and
-- during the exec an empty one. A child that never gets there is SIGKILLed
-- here: it is the one we just forked, and no one else knows its pid.
local function spawn(argv, out, want)
  local words = {}
  for i, a in ipairs(argv) do words[i] = quote(a) end
  local cmd = table.concat(words, " ") .. " </dev/null >>" .. quote(out) .. " 2>&1 & echo $!"
  local p = assert(io.popen(cmd))
  local pid = math.tointeger(tonumber(p:read("l")))
  p:close()
  assert(pid and pid > 1, "no pid from: " .. cmd)
  if not wait_until(function() return gone(pid) or ours(pid, want) end, T) then
    signal(pid, "KILL")
    error("no exec within " .. T .. " s of: " .. cmd)
  end
  return pid
end

-- Sends sig to pid if it is still ours, then waits until it is gone; when
-- grace seconds pass first, SIGKILLs it and waits again. Raises if even
-- SIGKILL did not end it within T (a process in D state: worth knowing).
local function terminate(pid, want, sig, grace)
  if not ours(pid, want) then return end
  signal(pid, sig)
  if wait_until(function() return gone(pid) end, grace) then return end
  signal(pid, "KILL")
  assert(wait_until(function() return gone(pid) end, T), ("pid %d survived SIGKILL"):format(pid))
end

-- Waits for pattern in the file at path, from byte offset on; returns its
-- captures (or the match). Gives up early, with nil, when the process ends.
local function wait_output(path, offset, pattern, pid, timeout)
  local found
  wait_until(function()
    found = table.pack(procs.read_file(path):sub(offset + 1):match(pattern))
    if found[1] ~= nil then return true end
    found = nil
    return gone(pid) -- then no line will ever come
  end, timeout)
  if found then return table.unpack(found, 1, found.n) end
  return nil
end

local function file_size(path)
  return #procs.read_file(path)
end

---------------------------------------------------------------------------
-- RESP: one command, one reply, on a fresh connection

-- A command as RESP sends it: an array of bulk strings (binary-safe).
local function encode(args)
  local out = { "*" .. #args .. "\r\n" }
  for _, a in ipairs(args) do
    a = tostring(a)
    out[#out + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
  end
  return table.concat(out)
end

-- Reads one reply: bulk -> string, integer -> number, array -> table
-- (a nil element leaves a hole), nil bulk or array -> nil, status -> its
-- text; an error reply -> nil, message. Raises on a broken connection, so
-- that a half-read reply never passes for a nil one.
local function read_reply(sock)
  local line = assert(sock:receive("*l")) -- LuaSocket drops the CR
  local kind, rest = line:sub(1, 1), line:sub(2)
  if kind == "+" then return rest end
  if kind == "-" then return nil, rest end
  if kind == ":" then return math.tointeger(tonumber(rest)) end
  local n = math.tointeger(tonumber(rest))
  assert(n, "not a RESP reply: " .. line)
  if n < 0 then return nil end
  if kind == "$" then return assert(sock:receive(n + 2)):sub(1, n) end
  assert(kind == "*", "not a RESP reply: " .. line)
  local t = {}
  for i = 1, n do t[i] = read_reply(sock) end
  return t
end

-- Runs one command on 127.0.0.1:port; the reply as read_reply gives it, or
-- nil, "connect: ..." when nothing listens there.
local function command(port, ...)
  local sock = assert(socket.tcp())
  sock:settimeout(T)
  local ok, err = sock:connect("127.0.0.1", port)
  if not ok then
    sock:close()
    return nil, "connect: " .. err
  end
  assert(sock:send(encode({ ... })))
  local res = table.pack(pcall(read_reply, sock))
  sock:close()
  if not res[1] then error(res[2], 2) end
  return table.unpack(res, 2, res.n)
end

---------------------------------------------------------------------------
-- A redis-server

local Server = {}
Server.__index = Server

-- A loopback port nothing listened on a moment ago (the kernel's choice for
-- port 0). Someone may take it before redis binds it: start retries then.
-- A field so that a spec can hand start a taken port to test the retry.
function M.pick_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function argv(srv)
  local a = { "redis-server", "--port", srv.port, "--bind", "127.0.0.1", "--save", "",
    "--appendonly", srv.appendonly and "yes" or "no", "--dir", srv.dir, "--daemonize", "no",
    "--protected-mode", "no", "--logfile", srv.logfile }
  if srv.appendonly then
    a[#a + 1], a[#a + 2] = "--appendfsync", "always" -- a SIGKILL then loses no write
  end
  return a
end

-- One attempt on srv.port: true once redis says it is ready and answers
-- PING; false, why when it ended first (the bind failing, typically) or
-- did not get ready within T (then it is killed here).
local function launch(srv)
  local offset = file_size(srv.logfile) -- a restart appends to the same log
  srv.pid = spawn(argv(srv), srv.logfile, "redis-server")
  local ready = wait_output(srv.logfile, offset, "Ready to accept connections", srv.pid, T)
  if ready and command(srv.port, "PING") == "PONG" then return true end
  terminate(srv.pid, "redis-server", "KILL", T)
  local log = procs.read_file(srv.logfile):sub(offset + 1)
  return false, (ready and "no PONG after its ready line\n" or "") .. log
end

-- Starts a redis-server: opts.appendonly (default false), opts.dir (default
-- a new private directory, removed by kill_all), opts.port (default a free
-- one, retried a few times when taken). Raises with redis's log on failure.
function M.start(opts)
  opts = opts or {}
  local srv = setmetatable({ appendonly = opts.appendonly == true, dir = opts.dir }, Server)
  if not srv.dir then
    srv.dir, srv.own_dir = procs.tmpdir(), true
  end
  srv.logfile = srv.dir .. "/redis.log"
  running[srv] = true
  local why
  for _ = 1, opts.port and 1 or PORT_TRIES do
    srv.port = opts.port or M.pick_port()
    local ok, err = launch(srv)
    if ok then return srv end
    why = err
    if opts.port or not err:find("Address already in use", 1, true) then break end
  end
  error(("redis-server did not start on port %d:\n%s"):format(srv.port, why), 2)
end

function Server:url()
  return "redis://127.0.0.1:" .. self.port
end

-- Runs one command on a fresh connection: its parsed reply (see read_reply).
function Server:command(...)
  return command(self.port, ...)
end

function Server:alive()
  return self.pid ~= nil and ours(self.pid, "redis-server")
end

-- SIGKILL: a crash, with only what was fsynced left on disk.
function Server:kill()
  if self.pid then terminate(self.pid, "redis-server", "KILL", T) end
end

-- SIGTERM, as a service manager stops it; SIGKILL after 5 s.
function Server:stop()
  if self.pid then terminate(self.pid, "redis-server", "TERM", 5) end
end

-- A new redis-server on the same port and dir (stopping this one first if
-- it still runs): with appendonly its data comes back, without it is empty.
function Server:restart()
  self:stop()
  local ok, why = launch(self)
  if not ok then error(("redis-server did not restart on port %d:\n%s"):format(self.port, why), 2) end
  return self
end

-- Everything redis logged, across restarts.
function Server:log()
  return procs.read_file(self.logfile)
end

---------------------------------------------------------------------------
-- The stall proxy

local Proxy = {}
Proxy.__index = Proxy

-- Waits for the next output line containing text (after the last one a
-- wait found) and returns it, or nil after timeout (default T).
function Proxy:wait_line(text, timeout)
  return wait_until(function()
    local out = procs.read_file(self.out)
    local s, e = out:find(text, self.mark, true)
    if not s then return nil end
    local bol = out:sub(1, s):match(".*\n()") or 1
    self.mark = out:find("\n", e, true) or #out + 1
    return out:sub(bol, self.mark - 1)
  end, timeout or T)
end

-- SIGUSR1: the connections open now stop forwarding, both ways, and stay
-- open. Returns how many it stalled (its "stalled N" line).
function Proxy:stall()
  signal(self.pid, "USR1")
  local line = assert(self:wait_line("stalled ", T), "no 'stalled' line from the proxy:\n" .. self:output())
  return tonumber(line:match("stalled (%d+)"))
end

-- SIGUSR2: the stalled connections are closed. Returns how many.
function Proxy:close_stalled()
  signal(self.pid, "USR2")
  local line = assert(self:wait_line("closed ", T), "no 'closed' line from the proxy:\n" .. self:output())
  return tonumber(line:match("closed (%d+)"))
end

function Proxy:alive()
  return ours(self.pid, PROXY_CMD)
end

function Proxy:kill()
  terminate(self.pid, PROXY_CMD, "KILL", T)
end

-- SIGTERM (the proxy exits on it), SIGKILL after 5 s.
function Proxy:stop()
  terminate(self.pid, PROXY_CMD, "TERM", 5)
end

-- Everything the proxy printed.
function Proxy:output()
  return procs.read_file(self.out)
end

-- Starts spec/support/stall_proxy.py in front of 127.0.0.1:target_port and
-- waits for its "stall_proxy listening on PORT" line.
function M.stall_proxy(target_port)
  local dir = procs.tmpdir()
  local p = setmetatable({ dir = dir, own_dir = true, out = dir .. "/stall_proxy.out", mark = 1 }, Proxy)
  running[p] = true
  p.pid = spawn({ PYTHON, PROXY, tostring(target_port) }, p.out, PROXY_CMD)
  local port = wait_output(p.out, 0, "stall_proxy listening on (%d+)", p.pid, T)
  if not port then
    terminate(p.pid, PROXY_CMD, "KILL", T)
    error("stall_proxy did not start:\n" .. p:output(), 2)
  end
  p.port = tonumber(port)
  return p
end

---------------------------------------------------------------------------

-- Kills every server and proxy started here that still runs, and removes
-- the directories made for them; for teardown and finally.
function M.kill_all()
  for obj in pairs(running) do
    obj:kill()
    if obj.own_dir then os.execute("rm -rf " .. quote(obj.dir)) end
    running[obj] = nil
  end
end

return M
