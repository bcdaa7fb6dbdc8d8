-- SPDX-License-Identifier: MIT
-- Reloads end to end: a real master (`rill --workers 2 --pid-file ...`,
-- src/master.c) and `rill reload` / `rill stop` (src/ctl.c), against apps
-- the spec writes to a temporary directory and rewrites, as a deploy or an
-- editor does:
--  - a reload under load: a request loop on 4 keep-alive connections
--    (spec/support/reload_load.py) and 200 open event streams; nothing
--    fails, the new code answers, the old streams live until the drain
--    deadline, then end with a retry: and resume on the new workers with
--    exactly the events they missed;
--  - a reload with a syntax error: refused with the Lua error, the old
--    workers serve on; fixed, it reloads;
--  - --reload (development): a module rewritten by rename reloads the app,
--    and open streams end at once.
-- Every process (the master, each worker pid from its log, the helpers) is
-- killed by pid in after_each, whatever the test did.
local core = require "rill.core"
local test = require "rill.test"
local json = require "support.json"
local support = require "spec.support.workers"
local alive, bin_argv, started, wait_line = support.alive, support.bin_argv, support.started, support.wait_line

local PYTHON = "/usr/bin/python3"
local DRAIN = 3 -- --drain-timeout of the reload case, seconds
local STREAMS = 200
local TIMEOUT = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10

-- The app of the reload cases: its version is in its code.
local function app_source(version)
  return ([[
local rill = require "rill"
local VERSION = %q
local function pid()
  local f = io.open("/proc/self/stat")
  local p = f:read("n")
  f:close()
  return p
end
return rill.router {
  ["GET /version"] = function() return VERSION .. " " .. pid() .. "\n" end,
  ["GET /events/:topic"] = function(req)
    return rill.sse(rill.subscribe(req.params.topic, { last_event_id = rill.sse.last_event_id(req) }))
  end,
  ["POST /publish/:topic"] = function(req)
    return { status = 202, body = rill.publish(req.params.topic, req.body) }
  end,
}
]]):format(version)
end

-- Writes path as an editor saves it: a temporary file renamed over it.
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

describe("rill reload", function()
  local dir, procs, pids

  before_each(function()
    dir = os.tmpname() -- a fresh name; a directory in its place
    os.remove(dir)
    assert(os.execute("mkdir -m 700 '" .. dir .. "'"))
    procs, pids = {}, {}
  end)

  after_each(function()
    -- the workers first (by pid, if they still run our app), then the
    -- master and the helpers (kill and reap)
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

  -- Every worker pid the master's log names, from byte `from` on, each noted
  -- for after_each: { {slot, pid, gen}, ... }.
  local function workers(m, from)
    local found = started(m, from)
    for _, w in ipairs(found) do pids[w.pid] = true end
    return found
  end

  local function pid_set(list)
    local set = {}
    for _, w in ipairs(list) do set[w.pid] = true end
    return set
  end

  -- Starts the master on dir/app.lua; returns { proc, host, port, pidfile }.
  local function start(args)
    local pidfile = dir .. "/rill.pid"
    local argv = bin_argv(dir .. "/app.lua", "--listen", "127.0.0.1:0", "--pid-file", pidfile, table.unpack(args))
    local proc = spawn(argv)
    local line, err = proc:wait_for("rill listening on ", TIMEOUT)
    local m = { proc = proc, pidfile = pidfile }
    workers(m)
    assert(line, ("rill did not start (%s):\n%s"):format(err, proc:log()))
    m.host, m.port = line:match("http://([^/]+):(%d+)$")
    m.port = tonumber(m.port)
    return m
  end

  -- Runs `rill <cmd> --pid-file ... --timeout 20`: exit status, stdout, stderr.
  local function ctl(m, cmd)
    local errfile = dir .. "/ctl.err"
    local argv = { "sh", "-c", 'f=$1; shift; exec "$@" 2>"$f"', "sh", errfile }
    for _, a in ipairs(bin_argv(cmd, "--pid-file", m.pidfile, "--timeout", "20")) do argv[#argv + 1] = a end
    local p = spawn(argv)
    local status = p:wait(30)
    m.proc:log() -- keeps the master's pipe drained
    return status, p:log(), read_file(errfile) or ""
  end

  -- After rill stop: the master exited 0, every worker it started exited 0
  -- (but those of `failed`, a generation that never served), none is left,
  -- and no sanitizer spoke (an ASan build exits non-zero and says why).
  local function assert_stopped(m, failed)
    assert.same(0, m.proc:wait(TIMEOUT))
    local log = m.proc:log()
    for pid in pairs(pids) do
      assert.is_false(alive(pid), "pid " .. pid)
      if not (failed and failed[pid]) then
        local how = log:match("%(pid " .. pid .. ", generation %d+%) ([^\n]*)")
        assert.same("exited with status 0", how, log)
      end
    end
    assert.is_nil(log:find("AddressSanitizer", 1, true), log)
    assert.is_nil(log:find("runtime error:", 1, true), log)
  end

  local function request(m, opts)
    local s = assert(test.open(m.host, m.port, opts))
    local body, _, ending = s:rest(TIMEOUT)
    s:close()
    assert.same("end", ending)
    return s.status, body
  end

  local function version(m)
    local status, body = request(m, { path = "/version" })
    assert.same(200, status)
    local v, pid = body:match("^(v%d+) (%d+)\n$")
    assert(v, body)
    return v, tonumber(pid)
  end

  local function publish(m, topic, data)
    local status, id = request(m, { method = "POST", path = "/publish/" .. topic, body = data })
    assert.same(202, status)
    return id
  end

  -- An event stream, its blocks parsed here (not by rill's parser): rill
  -- writes LF line ends only. s:block() → { id, data, retry, event } or nil, err.
  local function open_stream(m, topic, last_id)
    local s = assert(test.open(m.host, m.port,
      { path = "/events/" .. topic, headers = { ["Last-Event-ID"] = last_id } }))
    assert.same(200, s.status)
    s.buf, s.blocks = "", {}
    function s.block(self, timeout)
      while true do
        local b, e = self.buf:find("\n\n", 1, true)
        if b then
          local text = self.buf:sub(1, b - 1)
          self.buf = self.buf:sub(e + 1)
          local ev = {}
          for line in (text .. "\n"):gmatch("([^\n]*)\n") do
            local field, value = line:match("^([^:]*): ?(.*)$")
            if field == "data" then
              ev.data = ev.data and ev.data .. "\n" .. value or value
            elseif field == "id" or field == "event" then
              ev[field] = value
            elseif field == "retry" then
              ev.retry = tonumber(value)
            end
          end
          if ev.id then self.last_id = ev.id end
          return ev
        end
        local chunk, err = self:chunk(timeout)
        if not chunk then return nil, err end
        self.buf = self.buf .. chunk
      end
    end
    -- the next block with data (the retry: first, heartbeats are skipped)
    function s.next_data(self, timeout)
      while true do
        local ev, err = self:block(timeout)
        if not ev or ev.data then return ev, err end
      end
    end
    return s
  end

  it("swaps the code under load: no request fails, streams live until the deadline, then resume", function()
    save(dir .. "/app.lua", app_source("v1"))
    local m = start({ "--workers", "2", "--drain-timeout", tostring(DRAIN) })
    local gen1 = workers(m)
    assert.same(2, #gen1)
    local old = pid_set(gen1)
    local v, pid = version(m)
    assert.same("v1", v)
    assert.is_true(old[pid])

    -- 200 streams on the old workers, each with its retry: first and one event
    local topic = "reload"
    local streams = {}
    for i = 1, STREAMS do
      streams[i] = open_stream(m, topic)
      assert.same({ retry = 3000 }, streams[i]:block(TIMEOUT))
    end
    local id1 = publish(m, topic, "e1")
    for i, s in ipairs(streams) do
      assert.same({ id = id1, data = "e1" }, s:next_data(TIMEOUT), "stream " .. i)
    end

    -- the request loop runs; the code changes on disk; rill reload
    local load = spawn({ PYTHON, "spec/support/reload_load.py", tostring(m.port), "4", "v2", "20", "50000", "25" })
    assert(load:wait_for("load: running", TIMEOUT), load:log())
    save(dir .. "/app.lua", app_source("v2"))
    local mark = #m.proc:log() + 1
    local t0 = core.now()
    local status, out, err = ctl(m, "reload")
    assert.same({ 0, "rill: reloaded (pid " .. m.proc:pid() .. ")\n", "" }, { status, out, err })
    local _, after_reload = wait_line(m, "reloaded: generation 2 serves, 2 old worker(s) draining", mark)
    local gen2 = workers(m, mark)
    assert.same(2, #gen2)
    local new = pid_set(gen2)

    -- new requests answer v2, from the new workers
    for _ = 1, 4 do
      v, pid = version(m)
      assert.same("v2", v)
      assert.is_true(new[pid], "pid " .. pid)
    end

    -- an event published now reaches every old stream: none was cut
    local id2 = publish(m, topic, "e2")
    for i, s in ipairs(streams) do
      assert.same({ id = id2, data = "e2" }, s:next_data(TIMEOUT), "stream " .. i)
    end
    assert.is_true(core.now() < t0 + DRAIN, "the events came after the drain deadline: the test is too slow")

    -- the loop: not one failure, and every connection ended on the new code
    local done = load:wait_for("load: done ", 30)
    assert(done, load:log())
    local report = assert(json.decode(done:match("load: done (.*)$")))
    assert.same(0, report.failures, load:log())
    assert.same(4, report.finished, load:log())
    assert.is_false(report.timed_out)
    for i, seen in ipairs(report.versions) do
      assert.is_true((seen.v1 or 0) > 0 and (seen.v2 or 0) >= 20, "connection " .. i .. ": " .. done)
    end
    for _, p in ipairs(report.pids) do assert.is_true(old[p] or new[p], "pid " .. p) end
    load:wait(10)

    -- the deadline: each old stream gets a jittered retry: and its terminating chunk
    for i, s in ipairs(streams) do
      local ev, why = s:block(DRAIN + TIMEOUT)
      assert(ev, ("stream %d: %s"):format(i, why))
      if i == 1 then
        assert.is_true(core.now() >= t0 + DRAIN, "a stream ended before the drain deadline")
      end
      assert.is_nil(ev.data, "stream " .. i)
      assert.is_true(ev.retry >= 500 and ev.retry < 60000, "retry " .. tostring(ev.retry))
      local rest, _, ending = s:rest(TIMEOUT)
      assert.same({ "", "end" }, { s.buf .. rest, ending }, "stream " .. i) -- the chunk of size 0, no reset
      assert.same(id2, s.last_id)
      s:close()
    end
    -- every one of the 200 was still open at the deadline, and both old workers exit cleanly
    local ended = 0
    for n in m.proc:log():sub(after_reload):gmatch("drain deadline: ending (%d+) request%(s%)") do
      ended = ended + tonumber(n)
    end
    assert.same(STREAMS, ended, m.proc:log())
    for _, w in ipairs(gen1) do
      wait_line(m, ("worker %d (pid %d, generation 1) exited with status 0"):format(w.slot, w.pid), mark)
      assert.is_false(alive(w.pid))
    end

    -- they resume on the new workers with their Last-Event-ID: exactly what they missed
    local id3 = publish(m, topic, "e3")
    local id4 = publish(m, topic, "e4")
    for i, s in ipairs(streams) do
      streams[i] = open_stream(m, topic, s.last_id)
    end
    for i, s in ipairs(streams) do
      assert.same({ id = id3, data = "e3" }, s:next_data(TIMEOUT), "stream " .. i)
      assert.same({ id = id4, data = "e4" }, s:next_data(TIMEOUT), "stream " .. i)
    end
    local id5 = publish(m, topic, "e5")
    for i, s in ipairs(streams) do
      assert.same({ id = id5, data = "e5" }, s:next_data(TIMEOUT), "stream " .. i) -- nothing repeated
      s:close()
    end

    -- rill stop: the master and every worker are gone
    status, out = ctl(m, "stop")
    assert.same({ 0, "rill: stopped (pid " .. m.proc:pid() .. ")\n" }, { status, out })
    assert_stopped(m)
  end)

  it("refuses new code that does not compile: the error, the old workers serving on; fixed, it reloads", function()
    save(dir .. "/app.lua", app_source("v1"))
    local m = start({ "--workers", "2", "--drain-timeout", tostring(DRAIN) })
    local gen1 = workers(m)
    assert.same(2, #gen1)
    local old = pid_set(gen1)

    local broken = app_source("v2"):gsub("local VERSION = ", "local VERSION = = ", 1)
    save(dir .. "/app.lua", broken)
    local mark = #m.proc:log() + 1
    local status, out, err = ctl(m, "reload")
    assert.same(1, status)
    assert.same("", out)
    assert.matches("^rill: reload failed: [^\n]*app%.lua:2: unexpected symbol near '='", err)
    wait_line(m, "reload failed, generation 1 serves on: ", mark)
    local status_file = read_file(m.pidfile .. ".status")
    assert.matches("^1 failed\n[^\n]*app%.lua:2: unexpected symbol near '='", status_file)
    -- the new workers are gone (they never accepted); the old ones serve on
    local failed = pid_set(workers(m, mark))
    for _, w in ipairs(workers(m, mark)) do
      assert.same(2, w.gen)
      wait_line(m, ("worker %d (pid %d, generation 2) "):format(w.slot, w.pid), mark)
      assert.is_false(alive(w.pid))
    end
    for _ = 1, 6 do
      local v, pid = version(m)
      assert.same("v1", v)
      assert.is_true(old[pid], "pid " .. pid)
    end
    for _, w in ipairs(gen1) do assert.is_true(alive(w.pid)) end
    assert.is_nil(m.proc:log():find("generation 1) ", 1, true)) -- no old worker exited

    -- fixed: it reloads
    save(dir .. "/app.lua", app_source("v3"))
    mark = #m.proc:log() + 1
    status, out, err = ctl(m, "reload")
    assert.same({ 0, "rill: reloaded (pid " .. m.proc:pid() .. ")\n", "" }, { status, out, err })
    assert.matches("^2 ok\n", read_file(m.pidfile .. ".status"))
    local new = pid_set(workers(m, mark))
    local v, pid = version(m)
    assert.same("v3", v)
    assert.is_true(new[pid], "pid " .. pid)

    status = ctl(m, "stop")
    assert.same(0, status)
    assert_stopped(m, failed)
  end)

  it("--reload: a module saved by rename reloads the app, and its streams end at once", function()
    save(dir .. "/mod.lua", 'return { value = "one" }\n')
    save(dir .. "/app.lua", [[
local rill = require "rill"
local mod = require "mod"
return rill.router {
  ["GET /value"] = function() return mod.value .. "\n" end,
  ["GET /events/:topic"] = function(req) return rill.sse(rill.subscribe(req.params.topic)) end,
}
]])
    local m = start({ "--reload" })
    local gen1 = workers(m)
    assert.same(1, #gen1)
    assert.same({ 200, "one\n" }, { request(m, { path = "/value" }) })
    local s = open_stream(m, "dev")
    assert.same({ retry = 3000 }, s:block(TIMEOUT))

    local mark = #m.proc:log() + 1
    save(dir .. "/mod.lua", 'return { value = "two" }\n')
    wait_line(m, "--reload: a Lua file changed", mark)
    wait_line(m, "reloaded: generation 2 serves, 1 old worker(s) draining", mark)
    workers(m, mark)
    assert.same({ 200, "two\n" }, { request(m, { path = "/value" }) })

    -- drain 0: the stream got its retry: and ended, cleanly
    local ev = assert(s:block(TIMEOUT))
    assert.is_nil(ev.data)
    assert.is_true(ev.retry >= 500)
    local rest, _, ending = s:rest(TIMEOUT)
    assert.same({ "", "end" }, { s.buf .. rest, ending })
    s:close()
    wait_line(m, ("worker 1 (pid %d, generation 1) exited with status 0"):format(gen1[1].pid), mark)

    local status = ctl(m, "stop")
    assert.same(0, status)
    assert_stopped(m)
  end)
end)
