-- SPDX-License-Identifier: MIT
-- A tiny HTTPS upstream for spec/e2e_fetch_spec.lua (LuaSocket + LuaSec):
--   lua5.4 spec/support/tls_upstream.lua CERT KEY
-- prints "tls upstream listening on PORT" to stderr, serves one connection
-- at a time, and exits after 100 connections or 60 seconds.
local socket = require "socket"
local ssl = require "ssl"

local cert, key = arg[1], arg[2]
local ctx = assert(ssl.newcontext({ mode = "server", protocol = "any", certificate = cert, key = key }))
local server = assert(socket.bind("127.0.0.1", 0))
server:settimeout(1)
io.stderr:write(("tls upstream listening on %d\n"):format(select(2, server:getsockname())))
io.stderr:flush()

local routes = {
  ["/hello"] = function(conn)
    conn:send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n")
  end,
  -- three events, 50 ms apart, close-delimited and without close_notify
  ["/events"] = function(conn)
    conn:send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
    for i = 1, 3 do
      conn:send(("data: tls %d\n\n"):format(i))
      socket.sleep(0.05)
    end
  end,
}

local function serve(client)
  client:settimeout(5)
  local conn = ssl.wrap(client, ctx)
  if not conn or not conn:dohandshake() then
    return -- the client refused our certificate: that is what some specs test
  end
  local line = conn:receive("*l")
  repeat
    local header = conn:receive("*l")
  until header == "" or header == nil
  local path = line and line:match("^%u+ (%S+)")
  local route = routes[path]
  if route then
    route(conn)
  else
    conn:send("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
  end
  conn:close() -- the wrapped socket: closing `client` would leave it open
end

local deadline = socket.gettime() + 60
local served = 0
while served < 100 and socket.gettime() < deadline do
  local client = server:accept()
  if client then
    served = served + 1
    pcall(serve, client)
    client:close()
  end
end
