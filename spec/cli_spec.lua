-- SPDX-License-Identifier: MIT
-- The rill command line: options, and one clear line for an app that cannot run.
local core = require "rill.core"
local test = require "rill.test"

-- Runs rill with args; returns the exit status and what it wrote to stderr.
local function rill(...)
  local argv = {}
  for word in test.bin:gmatch("%S+") do argv[#argv + 1] = word end
  for _, a in ipairs({ ... }) do argv[#argv + 1] = a end
  local proc <close> = core.spawn(argv)
  local status = proc:wait(10)
  return status, proc:log()
end

describe("rill command line", function()
  it("prints its options with --help and exits 0", function()
    local status, out = rill("--help")
    assert.same(0, status)
    assert.matches("--listen [http://|https://]HOST:PORT", out, 1, true)
    assert.matches("--tls-cert PEM", out, 1, true)
  end)

  it("prints its version with --version", function()
    local status, out = rill("--version")
    assert.same(0, status)
    assert.matches("^rill %d+%.%d+%.%d+ %(Lua 5%.4", out)
  end)

  it("exits 2 with the usage when no app is given", function()
    local status, err = rill()
    assert.same(2, status)
    assert.matches("usage: rill", err)
  end)

  it("exits 2 naming a missing app file, without listening", function()
    local status, err = rill("spec/apps/no_such_app.lua")
    assert.same(2, status)
    assert.matches("rill: cannot load spec/apps/no_such_app.lua: cannot open", err, 1, true)
    assert.is_nil(err:find("listening", 1, true))
    assert.same(1, select(2, err:gsub("\n", ""))) -- one line
  end)

  it("exits 2 naming the file and the Lua error for a syntax error", function()
    local status, err = rill("spec/apps/syntax_error.lua")
    assert.same(2, status)
    assert.matches("rill: cannot load spec/apps/syntax_error.lua: spec/apps/syntax_error.lua:4: unfinished string", err, 1, true)
    assert.is_nil(err:find("listening", 1, true))
  end)

  it("exits 2 when the app raises while loading", function()
    local status, err = rill("spec/apps/raises.lua")
    assert.same(2, status)
    assert.matches("no config found", err, 1, true)
  end)

  it("exits 2 when the app does not return a handler", function()
    local status, err = rill("spec/apps/returns_nil.lua")
    assert.same(2, status)
    assert.matches("spec/apps/returns_nil.lua must return a handler (a function or a router), got nil", err, 1, true)
  end)

  it("exits 2 on a malformed --listen", function()
    local status, err = rill("--listen", "nonsense", "examples/hello.lua")
    assert.same(2, status)
    assert.matches("--listen wants HOST:PORT", err, 1, true)
  end)

  it("exits 1 when the address cannot be bound", function()
    local srv = test.server("examples/hello.lua")
    local status, err = rill("--listen", "127.0.0.1:" .. srv.port, "examples/hello.lua")
    srv:stop()
    assert.same(1, status)
    assert.matches("cannot listen on 127.0.0.1:" .. srv.port, err, 1, true)
  end)

  it("announces the real port when asked for port 0", function()
    local srv = test.server("examples/hello.lua")
    assert.is_true(srv.port > 0)
    assert.matches("rill listening on http://127.0.0.1:" .. srv.port, srv:log(), 1, true)
    assert.same("hello world\n", srv:get("/").body)
    assert.same(0, srv:stop())
  end)
end)

describe("a single process with --pid-file", function()
  it("writes its pid, stops with `rill stop`, removes the file; `rill reload` refuses it at once", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 700 " .. dir))
    local pidfile = dir .. "/rill.pid"
    local srv = test.server("spec/apps/replies.lua", { args = { "--pid-file", pidfile } })
    finally(function()
      srv:stop("KILL")
      os.execute("rm -rf '" .. dir .. "'")
    end)
    local f = assert(io.open(pidfile))
    assert.equal(srv:pid(), tonumber(f:read("a")))
    f:close()
    local status, out = rill("reload", "--pid-file", pidfile, "--timeout", "5")
    assert.same(1, status)
    assert.matches("runs no master, and only a master reloads", out, 1, true)
    assert.same("hello\n", srv:get("/hello").body) -- it got no SIGHUP (it would only log it)
    assert.is_nil(srv:log():find("SIGHUP", 1, true))
    status, out = rill("stop", "--pid-file", pidfile, "--timeout", "10")
    assert.same(0, status)
    assert.matches("rill: stopped (pid " .. srv:pid() .. ")", out, 1, true)
    assert.same(0, srv:wait(10))
    assert.is_nil(io.open(pidfile), "the pid file is removed")
  end)
end)
