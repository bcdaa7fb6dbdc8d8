-- SPDX-License-Identifier: MIT
-- Helpers the end-to-end specs of workers, reload and logs share: a private
-- temporary directory, a whole file, and a process's state from /proc.
local M = {}

-- A new directory only we can read (mode 700).
function M.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -m 700 " .. p))
  return p
end

-- An app file of source in a new private directory: its path, and the directory (rm -rf it).
function M.app_file(source, name)
  local dir = M.tmpdir()
  local path = dir .. "/" .. (name or "app.lua")
  local f = assert(io.open(path, "w"))
  f:write(source)
  f:close()
  return path, dir
end

-- Runs a shell command: its output (stdout and stderr) and exit status.
function M.sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

-- Runs a shell command that must succeed: its output; else an error with it.
function M.must(cmd)
  local out, code = M.sh(cmd)
  assert(code == 0, cmd .. ":\n" .. out)
  return out
end

-- The whole file, or "" when there is none (yet).
function M.read_file(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- The state letter of /proc/PID/stat ("R", "S", "T", "Z"...), nil when the pid is gone.
function M.proc_state(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read("a") or ""
  f:close()
  return s:match("^%d+ %b() (%S)")
end

return M
