-- SPDX-License-Identifier: MIT
-- The error log end to end (docs/running.md, "The error log"): --log-level
-- hides the lines below it and marks error and warn lines; --error-log FILE
-- takes every line from stderr except "rill listening on"; SIGUSR1 reopens
-- the file after a rotation; a bad level is refused with exit status 2.
--
-- Lines are waited for with a bounded poll, never a sleep.
local core = require "rill.core"
local socket = require "socket"
local test = require "rill.test"
local procs = require "spec.support.procs"
local tmpdir = procs.tmpdir
local read_file = procs.read_file

local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10
local APP = "spec/apps/access_log.lua"



local function wait_for(pred)
  local deadline = core.now() + T
  while true do
    local v = pred()
    if v then return v end
    if core.now() > deadline then return nil end
    socket.sleep(0.01)
  end
end

-- The first line of path that contains text, once there is one.
local function wait_line(path, text)
  return wait_for(function()
    for l in read_file(path):gmatch("([^\n]*)\n") do
      if l:find(text, 1, true) then return l end
    end
  end)
end

describe("the error log", function()
  it("at --log-level error keeps a handler error, marked error:, and hides info lines", function()
    local srv <close> = test.server(APP, { args = { "--log-level", "error" } })
    assert.same(500, srv:get("/boom").status)
    local line = srv:wait_log("handler error", T)
    assert(line, "no handler error logged:\n" .. srv:log())
    assert.matches("^rill: error: request %S+: handler error: .*boom", line)
    assert.same(0, srv:stop("TERM"))
    local log = srv:log()
    assert.is_nil(log:find("shutting down", 1, true), log)
    assert.is_nil(log:find("\nrill: [^e]", 1), log)
  end)

  it("keeps a handler error one entry: a line break in its text cannot forge a line, control bytes are escaped", function()
    local srv <close> = test.server(APP)
    local forged = "oops\nrill: shutting down: 0 request(s) in flight\r\27[2Jcleared\n"
    assert.same(500, srv:request({ method = "POST", path = "/raise", body = forged }).status)
    local line = srv:wait_log("handler error: oops", T)
    assert(line, "no handler error logged:\n" .. srv:log())
    assert.same(0, srv:stop("TERM"))
    local log = srv:log()
    -- the message's second line is a continuation (a tab first), never a line of rill's own
    assert.truthy(log:find("handler error: oops\n\trill: shutting down: 0 request(s) in flight\\x0D\\x1B[2Jcleared\n",
      1, true), log)
    local _, starts = log:gsub("\nrill: shutting down", "")
    assert.same(1, starts, log) -- the real one, at the SIGTERM
    assert.is_nil(log:find("\r", 1, true), log)
    assert.is_nil(log:find("\27", 1, true), log)
  end)

  it("indents a traceback's lines under its entry", function()
    local srv <close> = test.server(APP)
    assert.same(500, srv:get("/boom").status)
    assert(srv:wait_log("handler error", T))
    assert.same(0, srv:stop("TERM"))
    for l in srv:log():gmatch("[^\n]+") do -- every line is rill's own or a continuation of one
      assert.truthy(l:match("^rill") or l:match("^\t"), l)
    end
    assert.truthy(srv:log():find("\n\tstack traceback:", 1, true), srv:log())
  end)

  it("at --log-level warn shows a slow subscriber's warn line, without info lines", function()
    local srv <close> = test.server(APP, { args = { "--log-level", "warn" } })
    local s = srv:open("/events/slow?queue=1")
    local big = ("b"):rep(128 * 1024)
    local cut = wait_for(function()
      srv:request({ method = "POST", path = "/publish/slow", body = big })
      return srv:log():match("[^\n]*too slow, disconnected[^\n]*")
    end)
    assert(cut, "the hub did not cut the subscriber:\n" .. srv:log())
    assert.matches("^rill: warn: hub: request %x+: subscriber of 'slow' too slow", cut) -- its request named
    s:close()
    assert.same(0, srv:stop("TERM"))
    assert.is_nil(srv:log():find("shutting down", 1, true), srv:log())
  end)

  it("writes info lines with no level word at the default level", function()
    local srv <close> = test.server(APP)
    assert.same(0, srv:stop("TERM"))
    assert.matches("rill: shutting down: 0 request(s) in flight", srv:log(), 1, true)
  end)

  it("goes to --error-log FILE, from the master and its workers, while 'rill listening on' stays on stderr", function()
    local dir = tmpdir()
    local path = dir .. "/error.log"
    local srv <close> = test.server(APP, { args = { "--workers", "2", "--pid-file", dir .. "/rill.pid",
                                                    "--error-log", path } })
    assert(wait_line(path, "worker 2 started"), "no start line in the file:\n" .. read_file(path))
    assert.same(500, srv:get("/boom").status)
    local line = wait_line(path, "handler error")
    assert(line, "no handler error in the file:\n" .. read_file(path))
    assert.matches("^rill%[%d+%] worker %d: error: request %S+: handler error: ", line)
    local stderr = srv:log()
    assert.matches("rill listening on http://", stderr, 1, true)
    assert.is_nil(stderr:find("handler error", 1, true), stderr)
    assert.is_nil(stderr:find("started", 1, true), stderr)
    assert.same(0, srv:stop("TERM"))
    assert(wait_line(path, "master: stopped"), read_file(path))
    assert.is_nil(srv:log():find("stopped", 1, true), srv:log())
    os.execute("rm -rf " .. dir)
  end)

  it("opens --error-log FILE again at SIGUSR1 after a rotation, in the master and the workers", function()
    local dir = tmpdir()
    local path = dir .. "/error.log"
    local srv <close> = test.server(APP, { args = { "--workers", "2", "--pid-file", dir .. "/rill.pid",
                                                    "--error-log", path } })
    assert(wait_line(path, "worker 2 started"), read_file(path))
    assert(os.rename(path, path .. ".1"))
    srv.proc:kill("USR1")
    -- each process says so in the new file: the master, then each worker
    assert(wait_line(path, "master: logs reopened"), "no master line in the new file:\n" .. read_file(path))
    assert(wait_for(function()
      local _, n = read_file(path):gsub("worker %d: logs reopened", "")
      return n == 2
    end), "the workers' lines are not in the new file:\n" .. read_file(path))
    assert.is_nil(read_file(path):find("stats ", 1, true), "SIGUSR1 printed stats") -- SIGUSR2's now
    assert.same(500, srv:get("/boom").status)
    assert(wait_line(path, "handler error"), "no handler error in the new file:\n" .. read_file(path))
    assert.same(0, srv:stop("TERM"))
    local old = read_file(path .. ".1")
    assert.matches("worker 1 started", old, 1, true)
    assert.is_nil(old:find("handler error", 1, true), old)
    assert.is_nil(old:find("reopened", 1, true), old)
    assert.matches("stopped", read_file(path), 1, true)
    os.execute("rm -rf " .. dir)
  end)

  it("exits 2 naming --log-level for a level it does not know", function()
    local argv = {}
    for word in test.bin:gmatch("%S+") do argv[#argv + 1] = word end
    for _, a in ipairs({ "--log-level", "loud", APP }) do argv[#argv + 1] = a end
    local proc <close> = core.spawn(argv)
    assert.same(2, proc:wait(T))
    assert.matches("--log-level wants error, warn, info or debug, got 'loud'", proc:log(), 1, true)
  end)

  it("at --log-level error still says why a master's workers cannot load the app", function()
    local dir = tmpdir()
    finally(function() os.execute("rm -rf '" .. dir .. "'") end)
    local argv = {}
    for word in test.bin:gmatch("%S+") do argv[#argv + 1] = word end
    for _, a in ipairs({ "spec/apps/syntax_error.lua", "--listen", "127.0.0.1:0", "--workers", "2",
      "--pid-file", dir .. "/rill.pid", "--log-level", "error" }) do
      argv[#argv + 1] = a
    end
    local proc <close> = core.spawn(argv)
    assert.same(2, proc:wait(T))
    local log = proc:log()
    assert.matches("master: error: cannot load spec/apps/syntax_error.lua: spec/apps/syntax_error.lua:4:", log, 1, true)
    assert.is_nil(log:find("started (pid", 1, true), "info lines are hidden")
  end)

  it("exits 1 naming the file when --error-log cannot be opened", function()
    local argv = {}
    for word in test.bin:gmatch("%S+") do argv[#argv + 1] = word end
    for _, a in ipairs({ "--error-log", "/nonexistent/dir/error.log", APP }) do argv[#argv + 1] = a end
    local proc <close> = core.spawn(argv)
    assert.same(1, proc:wait(T))
    assert.matches("cannot open the error log /nonexistent/dir/error.log", proc:log(), 1, true)
  end)
end)
