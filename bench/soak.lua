-- SPDX-License-Identifier: MIT
-- Soak: 20,000 mixed requests and 2,000 mid-stream disconnects against one
-- worker (spec/apps/core.lua), then the server's RSS and descriptors against
-- where they started. Run from the repository root after make:
--   lua5.4 bench/soak.lua [requests] [disconnects]
-- Bounded in count; each request waits at most 10 s.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/lua/?.so;" .. package.cpath
local rill = require "rill"
local test = require "rill.test"
local socket = require "socket"

local REQUESTS = tonumber(arg[1]) or 20000
local DISCONNECTS = tonumber(arg[2]) or 2000


-- A keep-alive connection sending one request after another.
local function requests(srv, n)
  local mix = {
    "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    "GET /query?a=1&b=2&a=3 HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /lazy HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /list HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /users/42 HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /none HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /error HTTP/1.1\r\nHost: x\r\n\r\n",
  }
  local sock, done = nil, 0
  while done < n do
    if not sock or done % 1000 == 0 then -- a fresh connection now and then
      srv:log() -- drains the server's stderr: a full pipe would block its logging
      if sock then sock:close() end
      sock = srv:connect()
      sock:settimeout(10)
    end
    local req = mix[done % #mix + 1]
    sock:send(req)
    local s = assert(test.response(sock, req:match("^%u+"), 10))
    s:rest(10)
    done = done + 1
  end
  sock:close()
end

local function disconnects(srv, n)
  for i = 1, n do
    if i % 500 == 0 then srv:log() end
    local s = srv:open("/forever")
    assert(s:chunk(10))
    s:close()
  end
end

local srv = test.server("spec/apps/core.lua")
local ok, err = pcall(function()
  requests(srv, 200) -- warm up: the pools and caches every server fills
  local before = srv:settle(function(st) return st.active == 0 end)
  local rss0 = srv:rss_kb()
  local t0 = rill.now()
  requests(srv, REQUESTS)
  disconnects(srv, DISCONNECTS)
  local elapsed = rill.now() - t0
  local after = srv:settle(function(st) return st.active == 0 and st.streams == 0 end)
  local rss1 = srv:rss_kb()
  print(("soak: %d requests and %d mid-stream disconnects in %.1f s"):format(REQUESTS, DISCONNECTS, elapsed))
  print("| | before | after |")
  print("|---|---|---|")
  print(("| RSS (KiB) | %d | %d |"):format(rss0, rss1))
  print(("| fds | %d | %d |"):format(before.fds, after.fds))
  print(("| Lua KiB | %d | %d |"):format(before.lua_kb, after.lua_kb))
  print(("| tasks | %d | %d |"):format(before.tasks, after.tasks))
  assert(after.fds == before.fds, "descriptors leaked")
  assert(after.tasks == before.tasks, "coroutines leaked")
  assert(rss1 - rss0 < 8 * 1024, "RSS grew by more than 8 MiB")
  print("soak: fds and tasks back where they started, RSS within 8 MiB")
end)
local status = srv:stop()
if not ok then
  io.stderr:write(srv:log())
end
assert(ok, err)
assert(status == 0, "rill exited with " .. tostring(status))
