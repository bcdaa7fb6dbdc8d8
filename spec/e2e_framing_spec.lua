-- SPDX-License-Identifier: MIT
-- Wire framing belongs to rill: whatever a handler returns or copies onto its
-- reply, each response on a connection is framed exactly one way, HEAD, 204
-- and 304 never carry body bytes, and nothing a client smuggles in a body
-- runs as a request. Responses are split by spec/support/wire.lua, strictly.
local test = require "rill.test"
local wire = require "spec.support.wire"

local LAST = "GET /hits HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

-- The line of the fixture where a route is defined: errors name it.
local function line_of(route)
  local n = 0
  for line in io.lines("spec/apps/replies.lua") do
    n = n + 1
    if line:find(route, 1, true) then return n end
  end
  error("no route " .. route)
end

local function get(path, extra)
  return ("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n"):format(path, extra or "")
end

describe("rill's framing", function()
  local srv
  setup(function() srv = test.server("spec/apps/replies.lua") end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  -- Sends bytes on one connection, reads to the close; returns the responses and leftovers.
  local function exchange(bytes, methods)
    local data, _, closed = srv:exchange(bytes, 5)
    assert(closed, "the connection stayed open")
    return wire.split(data, methods)
  end

  local function hits()
    return srv:get("/hits").body
  end

  describe("a request body evhttp would not read", function()
    local smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

    it("refuses a HEAD with a Content-Length body (400, closed) and runs nothing in it", function()
      local before = hits()
      local rs, rest = exchange(("HEAD /hello HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s")
        :format(#smuggled, smuggled), { "HEAD" })
      assert.same(1, #rs)
      assert.same(400, rs[1].status)
      assert.same("close", wire.one(rs[1], "connection"))
      assert.same("", rest)
      assert.same(before, hits())
    end)

    it("refuses a HEAD with a chunked body", function()
      local before = hits()
      local body = ("%x\r\n%s\r\n0\r\n\r\n"):format(#smuggled, smuggled)
      local rs = exchange("HEAD /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" .. body, { "HEAD" })
      assert.same({ 400 }, { rs[1].status })
      assert.same(before, hits())
    end)

    it("lets a HEAD with Content-Length: 0 through", function()
      local rs = exchange("HEAD /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" .. LAST, { "HEAD" })
      assert.same({ 200, 200 }, { rs[1].status, rs[2].status })
    end)

    for _, method in ipairs({ "GET", "OPTIONS", "DELETE" }) do
      it(("reads the body of a %s, so nothing in it runs"):format(method), function()
        local before = hits()
        local rs, rest = exchange(("%s /hello HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s%s")
          :format(method, #smuggled, smuggled, LAST))
        assert.same(2, #rs)
        assert.same("", rest)
        assert.same(before, rs[2].body) -- /hits, behind it on the same connection
      end)
    end
  end)

  describe("HEAD", function()
    local paths = {
      { "/hello", 200 }, { "/err", 500 }, { "/status/150", 500 }, { "/status/abc", 500 },
      { "/ctl/10", 500 }, { "/nope", 404 }, { "/lazy", 200 }, { "/list", 200 }, { "/sse", 200 },
    }
    for _, case in ipairs(paths) do
      local path, want = case[1], case[2]
      it(("gets no body bytes for %s (%d), on a kept-alive connection"):format(path, want), function()
        local rs, rest = exchange("HEAD " .. path .. " HTTP/1.1\r\nHost: x\r\n\r\n" .. LAST, { "HEAD" })
        assert.same(2, #rs, "a HEAD's body was taken for a response")
        assert.same(want, rs[1].status)
        assert.same("", rest)
        assert.matches("^%d+$", rs[2].body) -- the /hits reply behind it is intact
      end)
    end

    it("gets the Content-Length a GET would get", function()
      local rs = exchange("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n" .. get("/hello") .. LAST, { "HEAD" })
      assert.same(wire.one(rs[2], "content-length"), wire.one(rs[1], "content-length"))
      assert.same("6", wire.one(rs[1], "content-length"))
    end)

    it("gets no body from a 405 of the router", function()
      local rs, rest = exchange("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        .. "HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n" .. LAST, { "POST", "HEAD" })
      assert.same({ 405, 405, 200 }, { rs[1].status, rs[2].status, rs[3].status })
      assert.same("", rest)
    end)

    for _, line in ipairs({ "HEAD / HTTP/2.0", "HEAD / HTTP/1.1x", "HEAD /", "HEAD  / HTTP/1.1",
      "HEAD  HTTP/1.1", "HEAD //a:b HTTP/1.1", "HEAD //[x HTTP/1.1", "HEAD :x HTTP/1.1" }) do
      it(("gets rill's own bodiless 400 for a request line evhttp cannot parse: %q"):format(line), function()
        local rs, rest = exchange(line .. "\r\nHost: x\r\n\r\n", { "HEAD" })
        assert.same(1, #rs)
        assert.same(400, rs[1].status)
        assert.same("", rest)
        assert.same("text/plain; charset=utf-8", wire.one(rs[1], "content-type"))
      end)
    end

    it("gets no body from a refusal", function()
      local rs, rest = exchange("HEAD /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", { "HEAD" })
      assert.same(400, rs[1].status)
      assert.same("", rest)
    end)
  end)

  describe("status", function()
    it("answers 500 for a 1xx, which is no final status, and logs it", function()
      local res = srv:get("/status/150")
      assert.same(500, res.status)
      assert.is_truthy(srv:wait_log("response status must be an integer from 200 to 599 (got 150)"))
      assert.same(500, srv:get("/status/100").status)
    end)

    for _, status in ipairs({ 204, 304 }) do
      it(("sends no body and no framing with a %d, whatever the handler gave"):format(status), function()
        local rs, rest = exchange(get("/status/" .. status) .. get("/stream-status/" .. status) .. LAST)
        assert.same({ status, status, 200 }, { rs[1].status, rs[2].status, rs[3].status })
        for i = 1, 2 do
          assert.is_nil(rs[i].headers["content-length"])
          assert.is_nil(rs[i].headers["transfer-encoding"])
          assert.same("", rs[i].body)
        end
        assert.same("", rest)
      end)
    end

    it("gives a 204 no Content-Type", function()
      local rs = exchange(get("/status/204") .. LAST)
      assert.is_nil(rs[1].headers["content-type"])
    end)
  end)

  describe("a handler's framing fields", function()
    it("answer 500 when a Content-Length disagrees with the body, naming the app's line", function()
      assert.same(500, srv:get("/cl/99").status)
      assert.is_truthy(srv:wait_log(("spec/apps/replies.lua:%d: route 'GET /cl/:n': GET /cl/99: header 'content-length' says 99 bytes, the body has 5")
        :format(line_of('"GET /cl/:n"'))))
      local rs = exchange(get("/cl/5") .. LAST)
      assert.same({ 200, "short" }, { rs[1].status, rs[1].body })
    end)

    it("never reach the wire: rill writes the framing", function()
      local rs, rest = exchange(get("/hop") .. get("/hop-stream") .. LAST)
      assert.same("", rest)
      assert.same({ "hop\n", "a\nb\n" }, { rs[1].body, rs[2].body })
      assert.same("yes", wire.one(rs[1], "x-kept"))
      for _, name in ipairs({ "keep-alive", "te", "trailer", "upgrade" }) do
        assert.is_nil(rs[1].headers[name], name)
      end
      assert.is_nil(rs[1].headers["transfer-encoding"])
      assert.is_nil(rs[1].headers["connection"])
      assert.same("4", wire.one(rs[1], "content-length"))
      assert.same("chunked", wire.one(rs[2], "transfer-encoding"))
      assert.is_nil(rs[2].headers["content-length"])
    end)

    it("honour a Connection: close by closing after the reply", function()
      local data, _, closed = srv:exchange(get("/close") .. get("/smuggled"), 5)
      assert.is_true(closed)
      local rs, rest = wire.split(data)
      assert.same(1, #rs)
      assert.same("close", wire.one(rs[1], "connection"))
      assert.same("", rest)
    end)

    for _, kind in ipairs({ "chunked", "fixed" }) do
      it(("are safe to copy from a %s upstream (headers = up.headers), pipelined"):format(kind), function()
        local host = ("Host: %s:%d\r\n"):format(srv.host, srv.port)
        local function relay(path) return ("GET %s HTTP/1.1\r\n%s\r\n"):format(path, host) end
        local rs, rest = exchange(relay("/relay/" .. kind) .. relay("/relay-read/" .. kind) .. LAST)
        assert.same(3, #rs)
        assert.same("", rest)
        local want = kind == "chunked" and "one\ntwo\n" or "fixed body\n"
        assert.same({ want, want }, { rs[1].body, rs[2].body })
        for i = 1, 2 do
          local framing = (rs[i].headers["content-length"] and 1 or 0) + (rs[i].headers["transfer-encoding"] and 1 or 0)
          assert.same(1, framing, "framed exactly one way")
        end
      end)
    end
  end)

  describe("rill.fetch's own requests", function()
    it("carry list values once per item, and never a caller's framing or hop-by-hop fields", function()
      local res = srv:request({ path = "/forward", headers = { host = ("%s:%d"):format(srv.host, srv.port) } })
      assert.same(200, res.status)
      assert.same("x-multi=a|b\nx-one=1\nte=nil\nupgrade=nil\ncontent-length=3\nabc\n", res.body)
    end)
  end)

  describe("rill.fetch's request headers", function()
    it("refuse an empty list (it would drop the default Host) and two Hosts", function()
      assert.same(500, srv:get("/forward-bad/empty").status)
      assert.is_truthy(srv:wait_log("header 'host' needs a value or a non-empty list"))
      assert.same(500, srv:get("/forward-bad/two").status)
      assert.is_truthy(srv:wait_log("header 'host' needs one value"))
    end)
  end)

  describe("HTTP/1.0", function()
    it("gets a streamed body close-delimited, with Connection: close, even when it asked to keep alive", function()
      local data, _, closed = srv:exchange("GET /lazy HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" .. get("/smuggled"), 5)
      assert.is_true(closed)
      local rs = wire.split(data)
      assert.same(1, #rs)
      assert.is_true(rs[1].close_delimited)
      assert.same("one\ntwo\n", rs[1].body)
      assert.same("close", wire.one(rs[1], "connection"))
      assert.is_nil(rs[1].headers["transfer-encoding"])
      assert.is_nil(rs[1].headers["content-length"])
    end)

    it("keeps a whole reply's connection alive when asked", function()
      local rs = exchange("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /hits HTTP/1.0\r\n\r\n")
      assert.same(2, #rs)
      assert.same("keep-alive", wire.one(rs[1], "connection"))
    end)

    it("is closed after a chunked request body, even with keep-alive (RFC 9112 §6.1)", function()
      local data, _, closed = srv:exchange("POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "3\r\nabc\r\n0\r\n\r\n" .. get("/smuggled"), 5)
      assert.is_true(closed)
      local rs = wire.split(data)
      assert.same(1, #rs)
      assert.same("abc", rs[1].body)
      assert.same("close", wire.one(rs[1], "connection"))
    end)
  end)

  describe("response header values", function()
    for _, byte in ipairs({ 0, 1, 10, 13, 127 }) do
      it(("answer 500 for a control byte %d, naming the header"):format(byte), function()
        assert.same(500, srv:get("/ctl/" .. byte).status)
        assert.is_truthy(srv:wait_log(("header 'x-a' has a control character (byte %d)"):format(byte)))
      end)
    end

    it("may hold a tab", function()
      local res = srv:get("/tab-value")
      assert.same(200, res.status)
      assert.same("a\tb", res.headers["x-a"])
    end)

    it("answer 500 for a table that is not a list", function()
      assert.same(500, srv:get("/nonlist").status)
      assert.is_truthy(srv:wait_log("header 'x-a' has a table value that is not a list"))
    end)

    it("answer 500 for a numeric header name, without breaking the table walk", function()
      assert.same(500, srv:get("/numkey").status)
      assert.is_truthy(srv:wait_log("header names must be strings (got a number)"))
    end)
  end)

  describe("bodies", function()
    it("answer 500 before any byte for a list with a non-string element", function()
      local rs, rest = exchange(get("/badlist") .. LAST)
      assert.same({ 500, 200 }, { rs[1].status, rs[2].status })
      assert.same("", rest)
      assert.is_truthy(srv:wait_log(("spec/apps/replies.lua:%d: route 'GET /badlist': GET /badlist: body[2] is a table"):format(line_of('"GET /badlist"'))))
    end)

    it("write numbers in a list as text, as lazy bodies do", function()
      assert.same("a\n2\n", srv:get("/list").body)
    end)
  end)

  describe("request framing", function()
    it("sends a chunked body with trailing blanks after 'chunked' through the strict chunk scanner", function()
      for _, te in ipairs({ "chunked      ", "chunked\t", "chunked \t \t " }) do
        local rs = exchange("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " .. te .. "\r\n\r\n+3\r\nabc\r\n0\r\n\r\n" .. get("/smuggled"))
        assert.same(1, #rs, te)
        assert.same(400, rs[1].status, te)
      end
      local rs = exchange("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked      \r\n\r\n3\r\nabc\r\n0\r\n\r\n" .. LAST)
      assert.same({ 200, "abc" }, { rs[1].status, rs[1].body })
    end)

    it("refuses a Transfer-Encoding led by a tab, which evhttp would not read as chunked", function()
      local before = hits()
      local rs = exchange("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" .. get("/smuggled"))
      assert.same({ 400 }, { rs[1].status })
      assert.same(before, hits())
    end)

    it("takes a tab before a value as optional whitespace", function()
      local rs = exchange("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length:\t3\r\n\r\nabc"
        .. "GET /header/x-a HTTP/1.1\r\nHost: x\r\nX-A:\t v\r\n\r\n" .. LAST)
      assert.same({ 200, "abc" }, { rs[1].status, rs[1].body })
      assert.same("[v]\n", rs[2].body)
    end)

    it("answers 414 past the documented 8 KiB request line, and serves one just under it", function()
      local line = "GET /" .. ("a"):rep(8192 - #"GET / HTTP/1.1") .. " HTTP/1.1"
      assert.same(8192, #line)
      local rs = exchange(line .. "\r\nHost: x\r\n\r\n" .. LAST)
      assert.same({ 404, 200 }, { rs[1].status, rs[2].status })
      line = "GET /" .. ("a"):rep(8193 - #"GET / HTTP/1.1") .. " HTTP/1.1"
      rs = exchange(line .. "\r\nHost: x\r\n\r\n")
      assert.same({ 414 }, { rs[1].status })
    end)
  end)

  describe("effects where Lua cannot yield", function()
    for _, path in ipairs({ "/sort/sleep", "/sort/fetch", "/tostring/sleep", "/require/sleep", "/wrap-in-sort" }) do
      it(("fail clearly in %s, leave nothing armed, and the worker serves on"):format(path), function()
        local res = srv:get(path)
        assert.same(200, res.status)
        assert.matches("^false .*cannot run inside .*: call it from the handler or a coroutine.wrap generator", res.body)
        assert.matches("spec/apps/replies.lua:%d+:", res.body) -- the app's own line
        assert.same("hello\n", srv:get("/hello").body)
        assert.is_truthy(srv:settle(function(st) return st.tasks == 0 end))
      end)
    end
  end)

  describe("the hub (a use after free found in review)", function()
    it("survives an option's __index closing the topic's only subscriber during subscribe", function()
      assert.same("ok\n", srv:get("/hub/index-closes").body)
      assert.same("hello\n", srv:get("/hello").body)
    end)

    it("survives collected subscriptions freeing topics while others subscribe and publish", function()
      assert.same("ok\n", srv:get("/hub/gc-frees").body)
      assert.same("hello\n", srv:get("/hello").body)
    end)
  end)

  describe("rill.core.out", function()
    it("is the driver's alone: an app cannot reach it", function()
      assert.same("nil\n", srv:get("/core-out").body)
    end)
  end)

  describe("heartbeats", function()
    it("refuse a heartbeat that would fire every loop turn or overflow", function()
      for _, s in ipairs({ "1e300", "0.0000001", "-1" }) do
        assert.same(500, srv:get("/heartbeat/" .. s).status, s)
      end
      assert.is_truthy(srv:wait_log("heartbeat must be 0 (none) or from 0.001 to 1e9 seconds"))
    end)
  end)
end)

describe("rill and SIGHUP", function()
  it("logs it and keeps serving when there is no master to reload", function()
    local srv = test.server("spec/apps/replies.lua")
    srv.proc:kill("HUP")
    assert.is_truthy(srv:wait_log("SIGHUP ignored: reloading needs a master (--workers N, or --reload)"))
    assert.same("hello\n", srv:get("/hello").body)
    assert.same(0, srv:stop())
  end)
end)

describe("rill and SIGQUIT", function()
  it("exits at once, with no grace period for a handler still working", function()
    local srv = test.server("spec/apps/replies.lua", { args = { "--grace", "600" } })
    local s = srv:connect()
    s:send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.same(1, srv:settle(function(st) return st.tasks == 1 end).tasks)
    assert.same(0, srv:stop("QUIT", 10)) -- SIGTERM would wait 600 s for /slow
    assert.is_truthy(srv:wait_log("SIGQUIT: exiting now"))
    s:close()
  end)
end)

describe("rill under SIGTERM after every non-yieldable misuse", function()
  it("still exits 0", function()
    local srv = test.server("spec/apps/replies.lua")
    for _, path in ipairs({ "/sort/sleep", "/sort/fetch", "/tostring/sleep", "/require/sleep", "/wrap-in-sort" }) do
      srv:get(path)
    end
    assert.same(0, srv:stop())
  end)
end)
