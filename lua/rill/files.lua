-- SPDX-License-Identifier: MIT
-- Which Lua files the app loaded, for rill --reload: the master watches
-- their directories. files.record(app_path) wraps Lua's file searcher
-- (package.searchers[2]) so each module file that require finds is noted;
-- files.list() gives them, app_path first. Modules from package.preload
-- (rill's own, embedded) and C modules are not files the app can edit, so
-- they are not listed.
local package, pcall, error, type = package, pcall, error, type

local M = {}

local paths, seen = {}, {}
local original -- Lua's file searcher, once ours replaces it

local function add(path)
  if not seen[path] then
    seen[path] = true
    paths[#paths + 1] = path
  end
end

-- The file searcher, noting what it finds. A file that fails to compile
-- raises in the searcher; it is noted too, since fixing it must reload.
local function searcher(name, ...)
  local ok, loader, path = pcall(original, name, ...)
  if not ok then
    local found = package.searchpath(name, package.path)
    if found then add(found) end
    error(loader, 0)
  end
  if type(loader) == "function" and type(path) == "string" then
    add(path)
  end
  return loader, path
end

-- Starts a new list with app_path and installs the wrapper, once however
-- often it is called: wrapping our own wrapper, or one that calls ours,
-- would make require recurse.
function M.record(app_path)
  if type(app_path) ~= "string" then
    error("bad argument #1 to 'record' (string expected, got " .. type(app_path) .. ")", 2)
  end
  paths, seen = {}, {}
  add(app_path)
  if not original then
    original = package.searchers[2]
    package.searchers[2] = searcher
  end
end

-- The recorded paths, app_path first, each once: a new table the caller may keep.
function M.list()
  local out = {}
  for i = 1, #paths do out[i] = paths[i] end
  return out
end

return M
