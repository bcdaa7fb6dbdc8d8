-- SPDX-License-Identifier: MIT
-- rill.files: the Lua files an app loaded, which rill --reload watches.
local files = require "rill.files"

describe("rill.files", function()
  local base, saved_path
  local made, names = {}, {}

  -- Writes source as module `name` in the temporary directory; returns its path.
  local function module(name, source)
    local path = base .. "_" .. name .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write(source)
    f:close()
    made[#made + 1] = path
    names[#names + 1] = name
    return path
  end

  before_each(function()
    base = os.tmpname() -- /tmp/lua_XXXXXX: modules go beside it as <base>_<name>.lua
    made = { base }
    names = {}
    saved_path = package.path
    package.path = base .. "_?.lua;" .. package.path
  end)

  after_each(function()
    package.path = saved_path
    for _, name in ipairs(names) do package.loaded[name] = nil end
    for _, path in ipairs(made) do os.remove(path) end
  end)

  it("lists the app first, then each module file require found, once", function()
    local leaf = module("files_leaf", "return 1\n")
    local top = module("files_top", 'require "files_leaf"\nreturn 2\n')
    files.record("app.lua")
    assert.same(2, require "files_top")
    require "files_leaf" -- cached: not searched again
    assert.same({ "app.lua", top, leaf }, files.list())
  end)

  it("does not list a preloaded module", function()
    package.preload.files_preloaded = function() return "pre" end
    files.record("app.lua")
    assert.same("pre", require "files_preloaded")
    package.preload.files_preloaded = nil
    package.loaded.files_preloaded = nil
    assert.same({ "app.lua" }, files.list())
  end)

  it("lists a module that fails to compile, since fixing it must reload", function()
    local bad = module("files_bad", "return (\n")
    files.record("app.lua")
    assert.has_error(function() require "files_bad" end)
    assert.same({ "app.lua", bad }, files.list())
  end)

  it("passes a missing module's error through", function()
    files.record("app.lua")
    local ok, err = pcall(require, "files_missing_module")
    assert.is_false(ok)
    assert.matches("module 'files_missing_module' not found", err, 1, true)
    assert.matches("no file '" .. base .. "_files_missing_module.lua'", err, 1, true)
    assert.same({ "app.lua" }, files.list())
  end)

  it("starts a new list on each record, wrapping the searcher once", function()
    local first = module("files_first", "return 1\n")
    files.record("old.lua")
    require "files_first"
    local wrapped = package.searchers[2]
    files.record("new.lua")
    assert.equal(wrapped, package.searchers[2])
    assert.same({ "new.lua" }, files.list())
    package.loaded.files_first = nil
    require "files_first"
    assert.same({ "new.lua", first }, files.list())
  end)

  it("gives a list the caller may change", function()
    files.record("app.lua")
    table.insert(files.list(), "x.lua")
    assert.same({ "app.lua" }, files.list())
  end)

  it("names the argument when the app path is not a string", function()
    assert.has_error(function() files.record(nil) end,
      "bad argument #1 to 'record' (string expected, got nil)")
  end)
end)
