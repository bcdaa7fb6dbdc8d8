-- SPDX-License-Identifier: MIT
-- Lean streams (issue 17, src/lean.c): a C-fed event stream on a plain
-- HTTP/1.1 connection leaves evhttp once its handler has ended, and its
-- socket is its own. Events, heartbeats, backpressure, the client's close, a
-- client that stops reading, a topic's end and shutdown must all work as on
-- evhttp; a stream that cannot leave (a request pipelined behind it,
-- HTTP/1.0) stays. The stats line's `lean` counts them.
local test = require "rill.test"
local socket = require "socket"

local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10

describe("lean streams", function()
  local srv
  setup(function() srv = test.server("spec/apps/hub.lua", { args = { "--keepalive-timeout", "1" } }) end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  local function publish(topic, data)
    local res = srv:request({ method = "POST", path = "/publish/" .. topic, body = data })
    assert.same(202, res.status)
  end

  local function next_data(s)
    while true do
      local ev, err = s:event(T)
      if not ev then return nil, err end
      if ev.data then return ev end
    end
  end

  local function lean_count(want)
    return srv:settle(function(st) return st.lean == want end, T).lean
  end

  local function subscribers(topic, want)
    local left
    for _ = 1, 400 do -- bounded polling: the server sees a close when it reads it
      left = srv:get("/stats?topic=" .. topic).body:match("subscribers=(%d+)")
      if left == want then break end
      socket.select(nil, nil, 0.01)
    end
    return left
  end

  it("takes a C-fed stream off evhttp once its handler ended, and events still come", function()
    local base = srv:stats()
    local s = srv:open("/events/lean1")
    assert.same(200, s.status)
    assert.same(base.lean + 1, lean_count(base.lean + 1))
    publish("lean1", "first")
    publish("lean1", "second")
    assert.same("first", next_data(s).data)
    assert.same("second", next_data(s).data)
    s:close()
    assert.same("0", subscribers("lean1", "0"))
    assert.same(base.lean, lean_count(base.lean))
    local st = srv:settle(function(x) return x.connections == base.connections end, T)
    assert.same(base.connections, st.connections) -- its descriptor counted until it closed
  end)

  it("says Connection: close, and ends with the last chunk and a close when its topic closes", function()
    local s = srv:open("/events/lean2")
    assert.same("close", s.headers["connection"])
    assert.is_truthy(lean_count(1) >= 1)
    publish("lean2", "only")
    assert.same("only", next_data(s).data)
    srv:request({ method = "POST", path = "/close/lean2" })
    local _, _, ending = s:rest(T)
    assert.same("end", ending) -- the terminating chunk came: the body is whole
    s:close()
  end)

  it("sends heartbeats from its own socket", function()
    local s = srv:open("/events/lean3?hb=0.05")
    local got = 0
    for _ = 1, 3 do
      local chunk = assert(s:chunk(T))
      if chunk:find("^:") then got = got + 1 end
    end
    assert.is_true(got >= 2)
    s:close()
  end)

  it("delivers a burst bigger than the socket takes at once, in order, to a client that reads late", function()
    -- history enough for the whole burst: the subscriber is behind, not too slow
    srv:request({ method = "POST", path = "/configure?history=1000&history_bytes=16000000&total_history_bytes=64000000" })
    local s = srv:open("/events/lean4?queue=2000")
    lean_count(1)
    local payload = ("p"):rep(16 * 1024)
    local res = srv:request({ method = "POST", path = "/burst/lean4?count=300", body = payload })
    assert.same(202, res.status)
    for i = 1, 300 do
      local ev = assert(next_data(s))
      assert.same(payload .. i, ev.data)
    end
    s:close()
  end)

  it("drops a client that stops reading, at --keepalive-timeout", function()
    local sock = srv:connect()
    sock:send("GET /events/lean5?queue=100000 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    lean_count(1)
    local payload = ("q"):rep(64 * 1024)
    for _ = 1, 3 do -- far more than the socket's buffers hold, never read
      srv:request({ method = "POST", path = "/burst/lean5?count=100", body = payload })
    end
    assert.same("0", subscribers("lean5", "0"))
    sock:close()
  end)

  it("is cut off by the hub (hub.disconnect): the body ends without its last chunk", function()
    local s = srv:open("/events/lean8")
    lean_count(1)
    publish("lean8", "before")
    assert.same("before", next_data(s).data)
    srv:request({ method = "POST", path = "/drop/lean8" })
    local _, _, ending = s:rest(T)
    assert.same("closed", ending) -- cut: a client must not take it as whole
    s:close()
    assert.same("0", subscribers("lean8", "0"))
    lean_count(0)
  end)

  it("drops a client that keeps sending on its stream", function()
    local sock = srv:connect()
    sock:send("GET /events/lean9 HTTP/1.1\r\nHost: x\r\n\r\n")
    lean_count(1)
    sock:settimeout(0.05)
    for _ = 1, 64 do sock:send(("j"):rep(1024)) end -- nothing a stream's client should send
    assert.same("0", subscribers("lean9", "0"))
    sock:close()
  end)

  it("keeps a client that sent a little (under 16 KiB), and its end is whole", function()
    local sock = srv:connect()
    sock:settimeout(T)
    sock:send("GET /events/lean11 HTTP/1.1\r\nHost: x\r\n\r\n")
    local s = assert(test.response(sock, "GET", T))
    lean_count(1)
    sock:send(("k"):rep(8 * 1024)) -- odd, but not a flood: read and dropped
    publish("lean11", "kept")
    assert.same("kept", next_data(s).data)
    srv:request({ method = "POST", path = "/close/lean11" })
    local _, _, ending = s:rest(T)
    assert.same("end", ending) -- what it sent was read before the close: no reset over the end
    sock:close()
  end)

  it("keeps a HEAD of a subscription keep-alive: it never goes lean", function()
    local sock = srv:connect()
    sock:settimeout(T)
    sock:send("HEAD /events/lean10 HTTP/1.1\r\nHost: x\r\n\r\nGET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
    local head = assert(test.response(sock, "HEAD", T))
    assert.same(200, head.status)
    assert.is_nil(head.headers["connection"])
    local again = assert(test.response(sock, "GET", T))
    assert.same(200, again.status)
    sock:close()
  end)

  it("stays on evhttp with a request pipelined behind it, and still streams", function()
    local base = srv:stats().lean
    local sock = srv:connect()
    sock:settimeout(T)
    sock:send("GET /events/lean6 HTTP/1.1\r\nHost: x\r\n\r\nGET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
    local s = assert(test.response(sock, "GET", T))
    assert.same(200, s.status)
    assert.is_nil(s.headers["connection"]) -- it will not close: the request behind it is served
    assert.same("1", subscribers("lean6", "1"))
    assert.same(base, srv:stats().lean)
    publish("lean6", "still")
    assert.same("still", next_data(s).data)
    sock:close()
  end)

  it("stays on evhttp for HTTP/1.0 (close-delimited), and still streams", function()
    local base = srv:stats().lean
    local sock = srv:connect()
    sock:settimeout(T)
    sock:send("GET /events/lean7 HTTP/1.0\r\n\r\n")
    local s = assert(test.response(sock, "GET", T))
    assert.same("1", subscribers("lean7", "1"))
    assert.same(base, srv:stats().lean)
    publish("lean7", "ten")
    assert.same("ten", next_data(s).data)
    sock:close()
  end)
end)

describe("lean streams at shutdown", function()
  it("end with a retry and the last chunk, and the server exits cleanly", function()
    local srv = test.server("spec/apps/hub.lua")
    finally(function() if not srv.stopped then srv:stop("KILL") end end)
    local streams = {}
    for i = 1, 5 do streams[i] = srv:open("/events/bye") end
    assert.same(5, srv:settle(function(st) return st.lean == 5 end, T).lean)
    srv.proc:kill("TERM")
    for _, s in ipairs(streams) do
      local body, _, ending = s:rest(T)
      assert.truthy(body:find("retry: %d+"), body)
      assert.same("end", ending)
      s:close()
    end
    assert.same(0, srv:wait(T))
  end)
end)
