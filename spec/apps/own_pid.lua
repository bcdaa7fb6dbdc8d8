-- SPDX-License-Identifier: MIT
-- The pid of the process that requires this (read from /proc after the fork:
-- each worker loads its app itself), for the fixtures that name who answered.
local f = assert(io.open("/proc/self/stat"))
local pid = f:read("n")
f:close()
return math.tointeger(pid)
