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
    assert.matches("--listen HOST:PORT", out, 1, true)
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
