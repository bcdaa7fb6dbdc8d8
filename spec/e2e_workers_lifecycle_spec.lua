-- SPDX-License-Identifier: MIT
-- The lifecycle of rill --workers 2 (src/master.c, src/server.c, src/main.c),
-- one case per fix of a review, each of which failed before it:
--  1. an app that runs rill.run at load time serves (a worker said READY
--     before its server existed, and never accepted);
--  2. a reload after a failed one starts generation 3 (numbers were reused);
--  3. SIGUSR1 to the master while a new generation loads kills nothing
--     (it was forwarded to the loading workers, whose default is to die);
--  4. a SIGHUP during the first generation's start is kept, not lost;
--  5. ^C (SIGINT to the master and to every worker, as a terminal sends it
--     to the process group) is one graceful stop: a request in flight gets
--     its answer (the worker took the master's SIGTERM for a second signal);
--  6. SIGTERM while a reload's new generation loads: the master ends, and
--     every process it started with it;
--  7. in process: the hub refuses an empty topic name (under workers the
--     master took one for a protocol violation and killed the worker).
-- And one case per fix of a second review, each of which failed before it:
--  8. a reload's drain closes a keep-alive connection that a reply, begun
--     before the drain, left idle (it waited for the client or the 60 s
--     keep-alive timeout, and so did the old worker's exit);
--  9. pkill-style stop (SIGTERM to every worker, then to the master, back to
--     back) is graceful: a request in flight gets its answer (the master's
--     forwarded SIGTERM was a worker's "second signal: exiting now");
-- 10. --worker-queue-bytes beyond 2^40 is refused at the command line (it
--     overflowed, and every worker was killed at its start, forever);
-- 11. --reload watches the files of a failed load: fixing a new module in a
--     new directory reloads (that directory was never watched);
-- 12. rill stop --now while a new generation loads: the loading workers are
--     killed by SIGKILL, none by SIGQUIT's default (a core dump).
-- Apps are written to a temporary directory; the slow ones take a second to
-- load (os.execute("sleep 1") at their top level). Every process (the
-- master, each worker pid from its log) is killed by pid in after_each,
-- whatever the test did. No sleeps: the spec waits for log lines.
local core = require "rill.core"
local socket = require "socket"
local test = require "rill.test"
local support = require "spec.support.workers"
local proc_state = require("spec.support.procs").proc_state
local alive, signal, wait_until = support.alive, support.signal, support.wait_until
local bin_argv, started, only = support.bin_argv, support.started, support.only

local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10

---------------------------------------------------------------------------
-- Files

local function save(path, text)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, path))
end

local function read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

---------------------------------------------------------------------------
-- Apps

local PID_FN = [[
local function my_pid()
  local f = io.open("/proc/self/stat")
  local p = f:read("n")
  f:close()
  return math.tointeger(p)
end
local PID = tostring(my_pid())
]]

-- A plain app: GET /pid answers "<version> <pid>".
local function app_source(version, prelude)
  return ([[
local rill = require "rill"
%s
%s
return rill.router {
  ["GET /pid"] = function() return %q .. " " .. PID end,
  ["GET /slow"] = function()
    io.stderr:write("app: slow request begun in " .. PID .. "\n")
    rill.sleep(0.5)
    return "done " .. PID
  end,
}
]]):format(PID_FN, prelude or "", version)
end

local SLOW_LOAD = 'os.execute("sleep 1") -- a second to load\n'

---------------------------------------------------------------------------

describe("rill --workers 2 lifecycle", function()
  local dir, procs, pids

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 700 '" .. dir .. "'"))
    procs, pids = {}, {}
  end)

  after_each(function()
    -- the stopped ones go on first (a SIGKILL works on them anyway), then
    -- every worker by pid if it still runs our app, then the master and the
    -- helpers (kill and reap)
    for pid in pairs(pids) do
      local cmdline = read_file("/proc/" .. pid .. "/cmdline") or ""
      if alive(pid) and cmdline:find(dir, 1, true) then
        local k = core.spawn({ "kill", "-KILL", tostring(pid) })
        k:wait(5)
        k:close()
      end
    end
    for _, p in ipairs(procs) do p:close() end
    os.execute("rm -rf '" .. dir .. "'")
  end)

  local function spawn(argv)
    local p = core.spawn(argv)
    procs[#procs + 1] = p
    return p
  end

  -- Every worker the master's log names from byte `from` on, each noted for after_each.
  local function workers(m, from)
    local found = started(m, from)
    for _, w in ipairs(found) do pids[w.pid] = true end
    return found
  end

  local function wait_log(m, text, from, timeout)
    local line, pos = m.proc:wait_for(text, timeout or T, from)
    workers(m)
    assert(line, ("no %q in the log within %s s:\n%s"):format(text, timeout or T, m.proc:log()))
    return line, pos
  end

  local Master = {}
  Master.__index = Master

  -- Spawns the master on dir/app.lua, with --workers 2; waits for "rill
  -- listening on" unless opts.no_wait.
  local function start(opts)
    opts = opts or {}
    local pidfile = dir .. "/rill.pid"
    local proc = spawn(bin_argv(dir .. "/app.lua", "--listen", "127.0.0.1:0", "--workers", "2",
      "--pid-file", pidfile, table.unpack(opts.args or {})))
    local m = setmetatable({ proc = proc, pidfile = pidfile }, Master)
    if not opts.no_wait then m:listening() end
    return m
  end

  function Master:listening()
    local line = wait_log(self, "rill listening on ", 1, 3 * T)
    self.host, self.port = line:match("http://([^/]+):(%d+)$")
    self.port = tonumber(self.port)
  end

  -- Runs `rill <cmd> --pid-file ... --timeout 20`: exit status, stdout, stderr.
  local function ctl(m, cmd, ...)
    local errfile = dir .. "/ctl.err"
    local argv = { "sh", "-c", 'f=$1; shift; exec "$@" 2>"$f"', "sh", errfile }
    for _, a in ipairs(bin_argv(cmd, "--pid-file", m.pidfile, "--timeout", "20", ...)) do argv[#argv + 1] = a end
    local p = spawn(argv)
    local status = p:wait(30)
    m.proc:log() -- keeps the master's pipe drained
    workers(m)
    return status, p:log(), read_file(errfile) or ""
  end

  -- GET path on a new connection: status, body (nil and why if no answer came).
  local function get(m, path, timeout)
    m.proc:log()
    local s, err = test.open(m.host, m.port, { path = path, timeout = timeout or T })
    if not s then return nil, err end
    local body, _, ending = s:rest(timeout or T)
    s:close()
    if ending ~= "end" then return nil, "body: " .. tostring(ending) end
    return s.status, body
  end

  -- The master exited 0 within T, and every worker it logged is gone (reaped: not even a zombie).
  local function assert_all_gone(m, clean)
    local status, err = m.proc:wait(T)
    assert.same(0, status, ("the master: %s\n%s"):format(tostring(err), m.proc:log()))
    local log = m.proc:log()
    local list = workers(m)
    assert(#list > 0)
    for _, w in ipairs(list) do
      assert.is_nil(proc_state(w.pid), ("worker %d (pid %d) left behind"):format(w.slot, w.pid))
      if clean then
        local how = log:match(("%%(pid %d, generation %d%%) ([^\n]*)"):format(w.pid, w.gen))
        assert.same("exited with status 0", how, log)
      end
    end
    assert.is_nil(log:find("AddressSanitizer", 1, true), log)
    assert.is_nil(log:find("runtime error:", 1, true), log)
    -- valgrind's lines: none, but the leak report of a worker killed by a signal while it
    -- loaded (it never ran its cleanup: its Lua state is "possibly lost"); an error is never
    local killed = {}
    for pid in log:gmatch("%(pid (%d+), generation %d+%) killed by signal") do killed[pid] = true end
    for pid, line in log:gmatch("==(%d+)==([^\n]*)") do
      local leak_report = not line:find("Invalid", 1, true) and not line:find("ninitialised", 1, true)
        and not line:find("definitely lost in", 1, true) and not line:find("Syscall param", 1, true)
        and not line:find("Mismatched", 1, true) and not line:find("Conditional jump", 1, true)
      assert(killed[pid] and leak_report, log)
    end
  end

  -- 1
  it("serves an app that runs rill.run at load time, on both workers", function()
    save(dir .. "/app.lua", app_source("v1", "rill.run(function() rill.sleep(0.05) end)\n"))
    local m = start()
    local list = workers(m)
    assert.same(2, #list)
    for _, w in ipairs(list) do
      local status, body = only(m, w.pid, function() return get(m, "/pid", T) end)
      assert.same({ 200, "v1 " .. w.pid }, { status, body }, m.proc:log())
    end
    m.proc:kill("TERM")
    assert_all_gone(m, true)
  end)

  -- 2
  it("never reuses a generation number: the reload after a failed one starts generation 3", function()
    save(dir .. "/app.lua", app_source("v1"))
    local m = start()
    local gen1 = workers(m)
    assert.same(2, #gen1)

    save(dir .. "/app.lua", app_source("v2"):gsub("local rill = ", "local rill = = ", 1))
    local mark = #m.proc:log() + 1
    local status, out, err = ctl(m, "reload")
    assert.same({ 1, "" }, { status, out })
    assert.matches("^rill: reload failed: [^\n]*unexpected symbol near '='", err)
    wait_log(m, "reloading: starting generation 2", mark)
    local _, pos = wait_log(m, "reload failed, generation 1 serves on: ", mark)
    local failed = workers(m, mark)
    for _, w in ipairs(failed) do
      assert.same(2, w.gen)
      wait_log(m, ("worker %d (pid %d, generation 2) "):format(w.slot, w.pid), mark)
    end

    save(dir .. "/app.lua", app_source("v3"))
    status, out, err = ctl(m, "reload")
    assert.same({ 0, "rill: reloaded (pid " .. m.proc:pid() .. ")\n", "" }, { status, out, err })
    wait_log(m, "reloading: starting generation 3", pos)
    wait_log(m, "reloaded: generation 3 serves, 2 old worker(s) draining", pos)
    assert.is_nil(m.proc:log():find("starting generation 2", pos, true), m.proc:log())
    assert.matches("^2 ok\n", read_file(m.pidfile .. ".status"))
    local gen3 = workers(m, pos)
    assert.same(2, #gen3)
    for _, w in ipairs(gen3) do assert.same(3, w.gen) end
    local s, body = get(m, "/pid")
    assert.same(200, s)
    assert.matches("^v3 %d+$", body)
    m.proc:kill("TERM")
    assert_all_gone(m)
  end)

  -- 3
  it("keeps a loading generation alive through SIGUSR1 and SIGUSR2 to the master", function()
    save(dir .. "/app.lua", app_source("v1", SLOW_LOAD))
    local m = start()
    assert.same(2, #workers(m))
    local mark = #m.proc:log() + 1
    m.proc:kill("HUP")
    local _, pos = wait_log(m, "worker 1 started (pid ", mark)
    m.proc:kill("USR1") -- at once: generation 2 loads for a second
    m.proc:kill("USR2")
    wait_log(m, "master: logs reopened", mark)
    local line = wait_log(m, "master: stats ", mark)
    assert.matches("starting=%d", line)
    wait_log(m, "reloaded: generation 2 serves, 2 old worker(s) draining", pos)
    local log = m.proc:log()
    assert.is_nil(log:find("killed by signal 10", 1, true), log)
    assert.is_nil(log:find("killed by signal 12", 1, true), log)
    assert.is_nil(log:find("reload failed", 1, true), log)
    local gen2 = workers(m, mark)
    assert.same(2, #gen2)
    for _, w in ipairs(gen2) do
      assert.same(2, w.gen)
      assert.is_true(alive(w.pid), "pid " .. w.pid)
    end
    local s, body = get(m, "/pid")
    assert.same(200, s)
    assert.matches("^v1 %d+$", body)
    m.proc:kill("TERM")
    assert_all_gone(m, true)
  end)

  -- 4
  it("keeps a SIGHUP that comes while the first generation starts", function()
    save(dir .. "/app.lua", app_source("v1", SLOW_LOAD))
    local m = start({ no_wait = true })
    wait_log(m, "worker 1 started (pid ", 1)
    assert.is_nil(m.proc:log():find("rill listening on", 1, true), "the first generation loaded already")
    m.proc:kill("HUP")
    m:listening()
    wait_log(m, "reloading: starting generation 2", 1)
    wait_log(m, "reloaded: generation 2 serves, 2 old worker(s) draining", 1)
    -- the master writes it right after that line
    local status_file = m.pidfile .. ".status"
    wait_until(function() return read_file(status_file) == "1 ok\n" end, T)
    assert.same("1 ok\n", read_file(status_file))
    local gen2 = {}
    for _, w in ipairs(workers(m)) do
      if w.gen == 2 then gen2[w.pid] = true end
    end
    local s, body = get(m, "/pid")
    assert.same(200, s)
    local pid = tonumber(body:match("^v1 (%d+)$"))
    assert.is_true(gen2[pid], body)
    m.proc:kill("TERM")
    assert_all_gone(m, true)
  end)

  -- 5
  it("stops gracefully at ^C (SIGINT to the master and every worker): a request in flight gets its answer", function()
    save(dir .. "/app.lua", app_source("v1"))
    local m = start()
    local list = workers(m)
    assert.same(2, #list)
    local sock = assert(socket.tcp())
    sock:settimeout(T)
    finally(function() sock:close() end)
    assert(sock:connect(m.host, m.port))
    assert(sock:send("GET /slow HTTP/1.1\r\nHost: rill\r\n\r\n"))
    local line = wait_log(m, "app: slow request begun in ", 1)
    local serving = tonumber(line:match("begun in (%d+)"))
    -- the terminal's process group: every worker and the master
    for _, w in ipairs(list) do signal(w.pid, "INT") end
    m.proc:kill("INT")
    local s, err = test.response(sock, "GET", T)
    assert(s, ("no answer: %s\n%s"):format(tostring(err), m.proc:log()))
    local body, _, ending = s:rest(T)
    assert.same({ 200, "done " .. serving, "end" }, { s.status, body, ending }, m.proc:log())
    assert_all_gone(m, true)
    assert.is_nil(m.proc:log():find("second signal", 1, true), m.proc:log())
  end)

  -- 6
  it("ends at SIGTERM while a reload's new generation loads, with every worker", function()
    save(dir .. "/app.lua", app_source("v1", SLOW_LOAD))
    local m = start()
    assert.same(2, #workers(m))
    local mark = #m.proc:log() + 1
    m.proc:kill("HUP")
    wait_log(m, "worker 2 started (pid ", mark)
    assert.is_nil(m.proc:log():find("reloaded: generation 2", mark, true))
    m.proc:kill("TERM")
    assert_all_gone(m)
    assert.same(4, #workers(m))
    assert.matches("master: stopped", m.proc:log())
  end)

  -- 8
  it("closes, at a reload's drain, a keep-alive connection that a reply begun before it left idle", function()
    -- the body's second half waits for the spec's go (a file), not for a time: under valgrind a
    -- reload can take longer than any fixed pause
    local go = dir .. "/go"
    os.remove(go)
    save(dir .. "/app.lua", [[
local rill = require "rill"
]] .. PID_FN .. [[
local GO = ]] .. ("%q"):format(go) .. [[

return rill.router {
  ["GET /ab"] = function()
    return { body = coroutine.wrap(function()
      io.stderr:write("app: lazy body begun in " .. PID .. "\n")
      coroutine.yield("a")
      for _ = 1, 2400 do -- two minutes at most
        local f = io.open(GO)
        if f then f:close() break end
        rill.sleep(0.05)
      end
      coroutine.yield("b")
    end) }
  end,
}
]])
    local m = start({ args = { "--drain-timeout", "30" } })
    local list = workers(m)
    assert.same(2, #list)
    local sock = assert(socket.tcp())
    sock:settimeout(T)
    finally(function() sock:close() end)
    assert(sock:connect(m.host, m.port))
    assert(sock:send("GET /ab HTTP/1.1\r\nHost: rill\r\n\r\n")) -- keep-alive: HTTP/1.1, no Connection: close
    local s = assert(test.response(sock, "GET", T))
    assert.same(200, s.status)
    assert.is_nil(s.headers["connection"])
    assert.same("a", s:chunk(T))
    local line = wait_log(m, "app: lazy body begun in ", 1)
    local pid = tonumber(line:match("begun in (%d+)"))
    local serving
    for _, w in ipairs(list) do
      if w.pid == pid then serving = w end
    end
    assert(serving, line)

    local mark = #m.proc:log() + 1
    local status, out, err = ctl(m, "reload")
    assert.same({ 0, "rill: reloaded (pid " .. m.proc:pid() .. ")\n", "" }, { status, out, err })
    -- the drain began while the body went on
    wait_log(m, ("worker %d: draining: 1 request(s) go on for up to 30 s"):format(serving.slot), mark)
    save(go, "go\n")
    local body, _, ending = s:rest(T)
    assert.same({ "b", "end" }, { body, ending }, m.proc:log())

    -- the client sends nothing more: the server closes the connection
    local t0 = core.now()
    sock:settimeout(5)
    local data, rerr, partial = sock:receive(1)
    assert.same({ nil, "closed", "" }, { data, rerr, partial }, m.proc:log())
    assert.is_true(core.now() - t0 < 5)
    wait_log(m, ("worker %d (pid %d, generation 1) exited with status 0"):format(serving.slot, serving.pid),
      mark, 5)
    m.proc:kill("TERM")
    assert_all_gone(m, true)
  end)

  -- 9
  it("stops gracefully at a pkill (SIGTERM to every worker, then the master): a request in flight gets its answer", function()
    save(dir .. "/app.lua", app_source("v1"))
    local m = start()
    local list = workers(m)
    assert.same(2, #list)
    local sock = assert(socket.tcp())
    sock:settimeout(T)
    finally(function() sock:close() end)
    assert(sock:connect(m.host, m.port))
    assert(sock:send("GET /slow HTTP/1.1\r\nHost: rill\r\n\r\n"))
    local line = wait_log(m, "app: slow request begun in ", 1)
    local serving = tonumber(line:match("begun in (%d+)"))
    -- one kill(1), the workers first, as pkill sends them one after another
    local targets = {}
    for _, w in ipairs(list) do
      assert(alive(w.pid))
      targets[#targets + 1] = w.pid
    end
    targets[#targets + 1] = m.proc:pid()
    assert(os.execute("kill -s TERM " .. table.concat(targets, " ")))
    local s, rerr = test.response(sock, "GET", T)
    assert(s, ("no answer: %s\n%s"):format(tostring(rerr), m.proc:log()))
    local body, _, ending = s:rest(T)
    assert.same({ 200, "done " .. serving, "end" }, { s.status, body, ending }, m.proc:log())
    assert_all_gone(m, true)
    assert.is_nil(m.proc:log():find("second signal", 1, true), m.proc:log())
  end)

  -- 10
  it("refuses a --worker-queue-bytes beyond 2^40 at the command line, exit 2", function()
    save(dir .. "/app.lua", app_source("v1"))
    local m = start({ no_wait = true, args = { "--worker-queue-bytes", "18446744073709551615" } })
    local status = m.proc:wait(5)
    local log = m.proc:log()
    workers(m)
    assert.same(2, status, log)
    assert.matches("--worker-queue-bytes wants a number of bytes from 4096 to 2^40, got '18446744073709551615'",
      log, 1, true)
    assert.same(0, #workers(m), log)
  end)

  -- 11
  it("--reload: a failed load's new module, in a new directory, reloads once fixed", function()
    save(dir .. "/mod.lua", 'return { value = "one" }\n')
    save(dir .. "/app.lua", [[
local rill = require "rill"
local mod = require "mod"
return rill.router {
  ["GET /value"] = function() return mod.value end,
}
]])
    local m = start({ args = { "--reload" } })
    assert.same(2, #workers(m))
    assert.same({ 200, "one" }, { get(m, "/value") })

    -- a new module in a new directory, with a syntax error
    assert(os.execute("mkdir '" .. dir .. "/sub'"))
    save(dir .. "/sub/extra.lua", 'return { value = = "extra" }\n')
    local mark = #m.proc:log() + 1
    save(dir .. "/app.lua", [[
local rill = require "rill"
local mod = require "mod"
local extra = require "sub.extra"
return rill.router {
  ["GET /value"] = function() return mod.value .. " " .. extra.value end,
}
]])
    wait_log(m, "--reload: a Lua file changed", mark)
    local _, pos = wait_log(m, "reload failed, generation 1 serves on: ", mark)
    assert.matches("extra.lua:1: unexpected symbol near '='", m.proc:log():sub(pos), 1, true)
    assert.same({ 200, "one" }, { get(m, "/value") })

    -- fixed, that file alone: the master reloads by itself
    save(dir .. "/sub/extra.lua", 'return { value = "extra" }\n')
    local _, pos2 = wait_log(m, "--reload: a Lua file changed", pos)
    wait_log(m, "reloaded: generation 3 serves, 2 old worker(s) draining", pos2)
    assert.same({ 200, "one extra" }, { get(m, "/value") })
    m.proc:kill("TERM")
    assert_all_gone(m)
  end)

  -- 12
  it("rill stop --now while a new generation loads: the loading workers are killed, none dumps core", function()
    -- a busy loop, not os.execute: system() ignores SIGQUIT while it waits
    local busy = "do local t = os.clock() + 1; while os.clock() < t do end end -- a second to load\n"
    save(dir .. "/app.lua", app_source("v1", busy))
    local m = start()
    local gen1 = workers(m)
    assert.same(2, #gen1)
    local mark = #m.proc:log() + 1
    m.proc:kill("HUP")
    wait_log(m, "worker 2 started (pid ", mark)
    local status, out, err = ctl(m, "stop", "--now")
    assert.same({ 0, "" }, { status, err }, out .. m.proc:log())
    assert_all_gone(m)
    local log = m.proc:log()
    assert.is_nil(log:find("reloaded: generation 2", mark, true), "generation 2 loaded already:\n" .. log)
    assert.is_nil(log:find("killed by signal 3", 1, true), log)
    local gen2 = workers(m, mark)
    assert.same(2, #gen2)
    for _, w in ipairs(gen2) do
      assert.same(2, w.gen)
      assert.matches(("worker %d %%(pid %d, generation 2%%) killed by signal 9"):format(w.slot, w.pid), log)
    end
    for _, w in ipairs(gen1) do
      assert.is_nil(proc_state(w.pid), "pid " .. w.pid)
    end
  end)
end)

-- 7
describe("the hub in process", function()
  it("refuses an empty topic name to publish and to close", function()
    local hub = require("rill.core").hub
    local ok, err = pcall(hub.publish, "", nil, "", "\n", {})
    assert.is_false(ok)
    assert.matches("a topic name expected", tostring(err), 1, true)
    ok, err = pcall(hub.close, "")
    assert.is_false(ok)
    assert.matches("a topic name expected", tostring(err), 1, true)
  end)
end)
