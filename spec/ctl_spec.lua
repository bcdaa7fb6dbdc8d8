-- SPDX-License-Identifier: MIT
-- rill reload, rill stop and rill stats (src/ctl.c), against a fake master
-- (spec/support/fake_master.sh) that speaks the pid and status file protocol.
-- They run as build/rillctl_test until main.c dispatches to rill_ctl_main;
-- RILLCTL_BIN may name another command ("valgrind ... build/rillctl_test").
local core = require "rill.core"

local CTL = os.getenv("RILLCTL_BIN") or "./build/rillctl_test"

describe("rill reload, stop and stats", function()
  local base, pidfile, errfile
  local procs = {}

  before_each(function()
    base = os.tmpname()
    pidfile = base .. ".pid"
    errfile = base .. ".err"
    procs = {}
  end)

  -- Every spawned process is killed (by pid) and reaped, whatever the test did.
  after_each(function()
    for _, p in ipairs(procs) do p:close() end
    for _, f in ipairs({ base, pidfile, pidfile .. ".status", pidfile .. ".status.tmp", pidfile .. ".stats",
                         pidfile .. ".stats.tmp", errfile }) do
      os.remove(f)
    end
  end)

  -- Starts the fake master in mode `fake`; returns it once its pid file is written.
  local function master(fake, env)
    env = env or {}
    env.FAKE = fake
    local m = core.spawn({ "sh", "spec/support/fake_master.sh", pidfile }, env)
    procs[#procs + 1] = m
    assert(m:wait_for("fake master ready", 5))
    return m
  end

  -- Runs the control command; returns its exit status, stdout and stderr.
  local function ctl(...)
    local argv = { "sh", "-c", 'f=$1; shift; exec "$@" 2>"$f"', "sh", errfile }
    for word in CTL:gmatch("%S+") do argv[#argv + 1] = word end
    for _, a in ipairs({ ... }) do argv[#argv + 1] = a end
    local p = core.spawn(argv)
    procs[#procs + 1] = p
    local status = p:wait(10)
    local f = io.open(errfile)
    local err = f and f:read("a") or ""
    if f then f:close() end
    return status, p:log(), err
  end

  local function write(path, text)
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
  end

  describe("reload", function()
    it("sends HUP and prints the master's pid once it reports success", function()
      local m = master("ok")
      local status, out, err = ctl("reload", "--pid-file", pidfile, "--timeout", "5")
      assert.same({ 0, "rill: reloaded (pid " .. m:pid() .. ")\n", "" }, { status, out, err })
      status, out = ctl("reload", "--pid-file", pidfile, "--timeout", "5") -- 1 → 2
      assert.same({ 0, "rill: reloaded (pid " .. m:pid() .. ")\n" }, { status, out })
    end)

    it("exits 1 with the error lines when the new code fails to load", function()
      master("failed")
      local status, out, err = ctl("reload", "--pid-file", pidfile, "--timeout", "5")
      assert.same(1, status)
      assert.same("", out)
      assert.same("rill: reload failed: app.lua:3: unexpected symbol near 'end'\nsecond line\n", err)
    end)

    it("refuses at once, sending nothing, when the process wrote no status (a single process)", function()
      local m = master("ok", { NOSTATUS = "1" })
      local status, out, err = ctl("reload", "--pid-file", pidfile, "--timeout", "5")
      assert.same({ 1, "" }, { status, out })
      assert.matches("rill: " .. pidfile .. ".status is missing: pid " .. m:pid() .. " runs no master", err, 1, true)
      assert.is_nil(io.open(pidfile .. ".status"), "no SIGHUP reached it (it would have written a status)")
    end)

    it("exits 1 after --timeout when the master never answers", function()
      master("deaf")
      local status, _, err = ctl("reload", "--pid-file", pidfile, "--timeout", "0.3")
      assert.same(1, status)
      assert.matches("rill: no reload result in " .. pidfile .. ".status after 0.3 s\n", err, 1, true)
    end)

    it("exits 1 when the master dies before answering", function()
      local m = master("die")
      local pid = m:pid()
      local status, _, err = ctl("reload", "--pid-file", pidfile, "--timeout", "5")
      assert.same(1, status)
      assert.same("rill: master (pid " .. pid .. ") exited during the reload\n", err)
      assert.same(3, m:wait(5))
    end)
  end)

  describe("stop", function()
    it("sends TERM and waits until the master has exited", function()
      local m = master("ok")
      local pid = m:pid()
      local status, out, err = ctl("stop", "--pid-file", pidfile, "--timeout", "5")
      assert.same({ 0, "rill: stopped (pid " .. pid .. ")\n", "" }, { status, out, err })
      assert.same(0, m:wait(5))
      assert.matches("got TERM", m:log(), 1, true)
    end)

    it("sends QUIT with --now", function()
      local m = master("ok")
      local status = ctl("stop", "--now", "--pid-file", pidfile, "--timeout", "5")
      assert.same(0, status)
      assert.same(0, m:wait(5))
      assert.matches("got QUIT", m:log(), 1, true)
    end)

    it("exits 1 after --timeout when the master does not exit", function()
      local m = master("stubborn")
      local status, _, err = ctl("stop", "--pid-file", pidfile, "--timeout", "0.3")
      assert.same(1, status)
      assert.same("rill: pid " .. m:pid() .. " still running after 0.3 s\n", err)
      assert.is_nil(m:wait(0)) -- still there, killed by after_each
    end)
  end)

  describe("without a running master", function()
    it("exits 1 naming a missing pid file", function()
      local status, _, err = ctl("reload", "--pid-file", pidfile)
      assert.same(1, status)
      assert.same("rill: cannot read pid file " .. pidfile .. ": No such file or directory\n", err)
    end)

    it("exits 1 on a pid file that holds no pid, never signalling 0, -1 or init", function()
      for _, text in ipairs({ "", "abc\n", "0\n", "-1\n", "1\n", "12 34\n", "+5\n", "99999999999999999999\n" }) do
        write(pidfile, text)
        for _, cmd in ipairs({ "reload", "stop" }) do
          local status, _, err = ctl(cmd, "--pid-file", pidfile)
          assert.same(1, status)
          assert.same("rill: pid file " .. pidfile .. " does not hold a pid\n", err)
        end
      end
    end)

    it("exits 1 when no process has the pid", function()
      local gone = core.spawn({ "true" })
      procs[#procs + 1] = gone
      local pid = gone:pid()
      assert.same(0, gone:wait(5))
      write(pidfile, pid .. "\n")
      local status, _, err = ctl("stop", "--pid-file", pidfile)
      assert.same(1, status)
      assert.same("rill: no rill running with pid " .. pid .. " (from " .. pidfile .. ")\n", err)
    end)
  end)

  describe("stats", function()
    it("sends USR2 and prints the figures of the answer, not a stale file's", function()
      write(pidfile .. ".stats", "pid 1 answer 9\nrequests 999\n") -- another run's
      local m = master("ok")
      local status, out, err = ctl("stats", "--pid-file", pidfile)
      assert.same(0, status, err)
      assert.same("role fake\nrequests 10\n", out)
      status, out = ctl("stats", "--pid-file", pidfile) -- the next answer, not the one before
      assert.same(0, status)
      assert.same("role fake\nrequests 20\n", out)
      m:close()
    end)

    it("reads past a FIFO planted under the answer's name instead of blocking on it", function()
      assert(os.execute("mkfifo " .. pidfile .. ".stats"))
      local m = master("ok") -- its answer replaces the FIFO
      local status, out, err = ctl("stats", "--pid-file", pidfile, "--timeout", "5")
      assert.same(0, status, err)
      assert.same("role fake\nrequests 10\n", out)
      m:close()
    end)

    it("fails naming the pid when no answer comes within --timeout", function()
      local m = master("deaf")
      local pid = m:pid()
      local status, out, err = ctl("stats", "--pid-file", pidfile, "--timeout", "0.3")
      assert.same(1, status)
      assert.same("", out)
      assert.same(("rill: no answer from pid %d in %s.stats after 0.3 s\n"):format(pid, pidfile), err)
    end)

    it("fails when the process exits instead of answering", function()
      local m = master("die")
      local pid = m:pid()
      local status, _, err = ctl("stats", "--pid-file", pidfile)
      assert.same(1, status)
      assert.same(("rill: pid %d exited before it answered\n"):format(pid), err)
    end)
  end)

  it("exits 2 with the usage on bad arguments", function()
    local cases = {
      {}, { "restart" }, { "reload", "--now" }, { "stop", "--bogus" }, { "reload", "--pid-file" },
      { "reload", "--pid-file", "" }, { "stop", "--timeout" }, { "stop", "--timeout", "0" },
      { "stop", "--timeout", "abc" }, { "stop", "--timeout", "nan" }, { "stop", "--timeout", "1e9" },
      { "stats", "--now" }, { "stats", "--bogus" }, { "stats", "--timeout", "-1" }, { "statistics" },
    }
    for _, args in ipairs(cases) do
      local status, out, err = ctl(table.unpack(args))
      assert.same(2, status, table.concat(args, " "))
      assert.same("", out)
      assert.same("usage: rill reload|stop|stats [--pid-file PATH] [--timeout SECONDS] [--now]\n"
        .. "       (--now: stop only)\n", err)
    end
  end)
end)
