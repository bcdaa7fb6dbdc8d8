-- SPDX-License-Identifier: MIT
-- Latency from an append to a file until a client of rill.tail has the line,
-- with inotify and with polling. Run from the repository root after make:
--   lua5.4 bench/tail_latency.lua [appends]
-- Bounded: 200 appends per mode (or the count given), each waited for at most 5 s.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/lua/?.so;" .. package.cpath
local rill = require "rill"
local test = require "rill.test"

local N = tonumber(arg[1]) or 200

local function percentile(sorted, p)
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

local function measure(srv, path, query)
  local s = srv:open("/lines?path=" .. path .. (query or ""))
  local f = assert(io.open(path, "a"))
  f:setvbuf("no")
  local times = {}
  for i = 1, N do
    local t0 = rill.now()
    f:write("line " .. i .. "\n")
    local line = assert(s:chunk(5), "no line within 5 s")
    assert(line == "line " .. i .. "\n", line)
    times[#times + 1] = (rill.now() - t0) * 1000
  end
  f:close()
  s:close()
  table.sort(times)
  return times
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local srv = test.server("spec/apps/tail.lua", { args = { "--tail-root", dir } })
local ok, err = pcall(function()
  print(("rill.tail: append → client latency, %d appends each, ms"):format(N))
  print("| mode | p50 | p90 | p99 | max |")
  print("|---|---|---|---|---|")
  for _, mode in ipairs({ { "inotify", "" }, { "poll 0.05 s", "&poll=0.05" } }) do
    local t = measure(srv, dir .. "/bench.log", mode[2])
    print(("| %s | %.3f | %.3f | %.3f | %.3f |"):format(mode[1], percentile(t, 0.5),
      percentile(t, 0.9), percentile(t, 0.99), t[#t]))
  end
end)
srv:stop()
os.execute("rm -rf " .. dir)
assert(ok, err)
