-- SPDX-License-Identifier: MIT
-- A plain-socket upstream that misbehaves on purpose, for spec/e2e_fetch_spec.lua:
--   lua5.4 spec/support/raw_upstream.lua
-- prints "raw upstream listening on PORT" to stderr and serves one connection
-- at a time; exits after 100 connections or 60 seconds.
--   GET /once     answers "conn N" keeping the connection open, then closes it
--                 when a second request arrives on it, without answering
--   GET /garbage  answers bytes that are not HTTP
local socket = require "socket"

local server = assert(socket.bind("127.0.0.1", 0))
server:settimeout(1)
io.stderr:write(("raw upstream listening on %d\n"):format(select(2, server:getsockname())))
io.stderr:flush()

local function read_request(conn)
  local line = conn:receive("*l")
  if not line then return nil end
  repeat
    local header = conn:receive("*l")
  until header == "" or header == nil
  return line:match("^%u+ (%S+)")
end

local function serve(conn, n)
  conn:settimeout(5)
  local answered = 0
  while true do
    local path = read_request(conn)
    if not path then return end
    if path == "/garbage" then
      conn:send("NOT HTTP AT ALL\r\n\r\n")
      return
    end
    if answered > 0 then
      io.stderr:write(("raw upstream: closing connection %d on its request %d\n"):format(n, answered + 1))
      return
    end
    local body = "conn " .. n
    conn:send(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"):format(#body, body))
    answered = answered + 1
  end
end

local deadline = socket.gettime() + 60
local n = 0
while n < 100 and socket.gettime() < deadline do
  local conn = server:accept()
  if conn then
    n = n + 1
    pcall(serve, conn, n)
    conn:close()
  end
end
