-- SPDX-License-Identifier: MIT
-- End to end: a spawned rill serving spec/apps/core.lua.
local test = require "rill.test"


describe("rill core, end to end", function()
  local srv
  setup(function() srv = test.server("spec/apps/core.lua") end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  describe("response bodies", function()
    it("sends a string as 200 text/plain utf-8 with Content-Length", function()
      local res = srv:get("/hello")
      assert.same(200, res.status)
      assert.same("hello world\n", res.body)
      assert.same("12", res.headers["content-length"])
      assert.same("text/plain; charset=utf-8", res.headers["content-type"])
    end)

    it("sends a table's status, headers (a list repeats the header) and body", function()
      local res = srv:get("/table")
      assert.same(201, res.status)
      assert.same("made\n", res.body)
      assert.same("text/x-test", res.headers["content-type"])
      assert.same({ "1", "2" }, res.headers["x-multi"])
    end)

    it("sends a list body as chunks", function()
      local res = srv:get("/list")
      assert.same("chunked", res.headers["transfer-encoding"])
      assert.same({ "a", "b", "c" }, res.chunks)
      assert.same("end", res.ending)
    end)

    it("sends each value of a function iterator as its own chunk", function()
      local res = srv:get("/lazy")
      assert.same({ "line 1\n", "line 2\n", "line 3\n" }, res.chunks)
      assert.same("end", res.ending)
    end)

    it("answers 204 with no body when the handler returns nothing", function()
      local res = srv:get("/none")
      assert.same(204, res.status)
      assert.same("", res.body)
      assert.is_nil(res.headers["content-type"])
    end)

    it("sends a table with no body as an empty reply", function()
      local res = srv:get("/redirect")
      assert.same(302, res.status)
      assert.same("/hello", res.headers.location)
      assert.same("0", res.headers["content-length"])
      assert.is_nil(res.headers["content-type"]) -- no body, no type
    end)

    it("answers HEAD with the headers GET would send, without the body", function()
      local res = srv:request({ method = "HEAD", path = "/hello" })
      assert.same(200, res.status)
      assert.same("12", res.headers["content-length"])
      assert.same("text/plain; charset=utf-8", res.headers["content-type"])
      assert.same("", res.body)
    end)

    it("sends headers but no body for HEAD on a streamed route", function()
      local res = srv:request({ method = "HEAD", path = "/lazy" })
      assert.same(200, res.status)
      assert.same("", res.body)
    end)

    it("keeps an HTTP/1.0 connection open only when asked, and closes when asked", function()
      local data, statuses, closed = srv:exchange("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        .. "GET /hello HTTP/1.0\r\n\r\nGET /hello HTTP/1.0\r\n\r\n")
      assert.same({ 200, 200 }, statuses) -- the second one closed the connection
      assert.is_true(closed)
      assert.matches("^HTTP/1.0 200 OK\r\n.-Connection: keep%-alive\r\n\r\nhello world\n", data)
      local _, again, shut = srv:exchange("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        .. "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.same({ 200 }, again)
      assert.is_true(shut)
    end)

    it("gives a reply a status line with its reason, a Date, and a length even when empty", function()
      local sock = srv:connect()
      sock:send("GET /none HTTP/1.1\r\nHost: x\r\n\r\nGET /table HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      local data = sock:receive("*a")
      sock:close()
      assert.matches("^HTTP/1.1 204 No Content\r\nDate: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT\r\n\r\n", data)
      assert.matches("HTTP/1.1 201 Created\r\n", data)
      assert.matches("content%-length: 5\r\n", data:lower())
    end)
  end)

  describe("the request", function()
    it("decodes the query string, with lists for repeated keys", function()
      local res = srv:get("/query?a=1&b=x%20y&a=2&c=d+e&flag")
      assert.same("a=1,2\nb=x y\nc=d e\nflag=\n", res.body)
    end)

    it("gives headers with case-insensitive lookup, lists for repeats, method, path and peer", function()
      local res = srv:get("/headers", { Accept = "text/x", ["X-Multi"] = { "p", "q" }, ["X-Request-Id"] = "abc-123" })
      assert.same("accept=text/x\naddr=127.0.0.1\nid=abc-123\nmethod=GET\nmulti=p,q\npath=/headers\n", res.body)
    end)

    it("takes the request id from traceparent, or generates one", function()
      local tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
      assert.matches("id=4bf92f3577b34da6a3ce929d0e0e4736\n", srv:get("/headers", { traceparent = tp }).body, 1, true)
      local a = srv:get("/headers").body:match("id=(%w+)")
      local b = srv:get("/headers").body:match("id=(%w+)")
      assert.is_truthy(a)
      assert.are_not.equal(a, b)
    end)

    it("gives the request body", function()
      local body = ("0123456789"):rep(1000)
      local res = srv:request({ method = "POST", path = "/echo", body = body })
      assert.same(200, res.status)
      assert.same(body, res.body)
    end)

    it("routes with params, 404 and 405 with Allow", function()
      assert.same("user 42\n", srv:get("/users/42").body)
      assert.same(404, srv:get("/users/abc").status)
      local res = srv:request({ method = "DELETE", path = "/hello" })
      assert.same(405, res.status)
      assert.same("GET, HEAD", res.headers.allow)
    end)

    it("keeps a request's req alive as long as its handler runs, through collections", function()
      assert.same("a\nb\n", srv:get("/gc-stream").body)
      assert.same("a\nb\n", srv:get("/gc-stream").body)
    end)

    it("keeps a req read after its request ended from reading a later one's", function()
      assert.same("kept\n", srv:get("/keep").body)
      -- the next request may take the same place: the kept req must not see it
      assert.same("GET false read after the request ended\n", srv:get("/kept").body)
    end)

    it("gives a route without parameters its own empty, writable req.params", function()
      assert.same("params: 0 0\n", srv:get("/static-params").body)
      assert.same("params: 0 0\n", srv:get("/static-params").body) -- nothing left from the last one
    end)
  end)

  describe("streaming", function()
    it("delivers chunk 1 before the handler produces chunk 2", function()
      local s = srv:open("/gated")
      assert.same("first\n", s:chunk(5)) -- the producer is blocked until /release
      assert.is_nil(srv:log():find("gated: producing second", 1, true))
      assert.same("released\n", srv:get("/release").body)
      assert.same("second\n", s:chunk(5))
      assert.same("end", select(2, s:chunk(5)))
      s:close()
    end)

    it("runs effects inside the user's nested coroutines", function()
      local res = srv:get("/nested")
      assert.same({ "n1\n", "n2\n", "n3\n", "true resumed\n" }, res.chunks)
      assert.same("end", res.ending)
    end)

    it("resumes a handler after rill.sleep", function()
      local res = srv:get("/sleep?s=0.05")
      assert.same(200, res.status)
      assert.same("slept\n", res.body)
    end)

    it("stops pulling a fast iterator while the client does not read", function()
      local s = srv:open("/flood")
      assert.is_truthy(s:chunk(5))
      -- the client reads nothing more: the stream must park, not buffer
      local stats = srv:settle(function(st) return st.blocked == 1 end)
      assert.same(1, stats.blocked)
      -- the kernel's socket buffers may still take a few chunks: wait until
      -- production stops growing (each check is a round trip of the loop)
      local core = require "rill.core"
      local produced, previous, deadline = -1, -2, core.now() + 10
      while produced ~= previous and core.now() < deadline do
        previous = produced
        srv:stats()
        produced = tonumber(srv:get("/produced").body)
      end
      assert.same(previous, produced) -- parked: nothing pulled meanwhile
      -- 64 KiB chunks: the server's high-water mark plus the kernel's socket
      -- buffers hold at most a few MiB, far from unbounded
      assert.is_true(produced * 64 < 32 * 1024, "produced " .. produced .. " chunks")
      -- what the server itself holds: the chunks are not kept in Lua (the
      -- bound above covers the output buffers, which only hold produced chunks)
      local lua_kb = srv:stats().lua_kb
      assert.is_true(lua_kb < 16 * 1024, "lua_kb " .. lua_kb)
      -- the process size says the same on a plain run; under valgrind or ASan
      -- it is the tool's own size (shadow memory, quarantine), which depends
      -- on the machine
      if not test.bin:find("valgrind", 1, true) and not test.bin:find("asan", 1, true) then
        assert.is_true(srv:rss_kb() < 64 * 1024)
      end
      -- reading again unparks it
      for _ = 1, 200 do assert.is_truthy(s:chunk(5)) end
      assert.is_true(tonumber(srv:get("/produced").body) > produced)
      s:close()
      srv:settle(function(st) return st.streams == 0 end)
    end)
  end)

  describe("errors", function()
    it("answers 500 without the traceback, logs it, and keeps serving", function()
      local res = srv:get("/error")
      assert.same(500, res.status)
      assert.matches("^internal server error %(request %w+%)\n$", res.body)
      assert.is_nil(res.body:find("boom", 1, true))
      assert.is_truthy(srv:wait_log("boom"))
      assert.is_truthy(srv:wait_log("stack traceback"))
      assert.same("hello world\n", srv:get("/hello").body)
    end)

    it("closes the connection without the last chunk after an error mid-stream", function()
      local res = srv:get("/error-mid")
      assert.same(200, res.status)
      assert.same({ "partial\n" }, res.chunks)
      assert.same("closed", res.ending) -- truncated, never a clean end
      assert.is_truthy(srv:wait_log("mid-stream failure"))
      assert.same("hello world\n", srv:get("/hello").body)
    end)

    it("finds a log line written before a stats request", function()
      assert.same(500, srv:get("/error").status)
      srv:stats()
      assert.is_truthy(srv:wait_log("boom"))
    end)

    it("names the argument of a misused effect", function()
      assert.same(500, srv:get("/sleep?s=abc").status)
      assert.is_truthy(srv:wait_log("bad argument #1 to 'sleep'"))
    end)

    it("answers 500 for a bad status, a header with a newline, or a bad return value", function()
      assert.same(500, srv:get("/bad-status").status)
      assert.is_truthy(srv:wait_log("response status must be an integer from 200 to 599"))
      assert.same(500, srv:get("/bad-header").status)
      assert.is_truthy(srv:wait_log("header 'x-a' has a control character"))
      assert.same(500, srv:get("/bad-return").status)
      assert.is_truthy(srv:wait_log("handler returned a boolean"))
    end)
  end)

  describe("client disconnects", function()
    it("closes 200 streams whose clients left, and frees everything", function()
      local before = srv:settle(function(st) return st.streams == 0 and st.active == 0 end)
      local closed0 = tonumber(srv:get("/closed").body)
      local streams = {}
      for i = 1, 200 do
        streams[i] = srv:open("/forever")
        assert.same("tick\n", streams[i]:chunk(5))
      end
      assert.same(200, srv:stats().streams)
      for i = 1, 200 do streams[i]:close() end
      local after = srv:settle(function(st) return st.streams == 0 and st.active == 0 and st.fds == before.fds end)
      assert.same(0, after.streams)
      assert.same(0, after.active)
      assert.same(before.tasks, after.tasks)
      assert.same(before.fds, after.fds)
      assert.same(closed0 + 200, tonumber(srv:get("/closed").body)) -- every <close> ran
      assert.same("hello world\n", srv:get("/hello").body)
    end)

    it("notices a client leaving while the handler waits before its first byte", function()
      local closed0 = tonumber(srv:get("/closed").body)
      local sock = srv:connect()
      sock:send("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.is_truthy(srv:wait_log("wait: started"))
      sock:close()
      -- the handler sleeps 30 s: only the close can end it this soon
      local st = srv:settle(function(s) return s.active == 0 end, 5)
      assert.same(0, st.active)
      assert.same(closed0 + 1, tonumber(srv:get("/closed").body))
    end)
  end)
end)

describe("graceful shutdown", function()
  it("finishes in-flight requests, ends streams cleanly, and exits 0", function()
    local srv = test.server("spec/apps/core.lua", { args = { "--grace", "5" } })
    local stream = srv:open("/forever")
    assert.same("tick\n", stream:chunk(5))
    local slow = srv:connect()
    slow:send("GET /sleep?s=0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
    srv:settle(function(st) return st.active == 2 end)
    srv.proc:kill("TERM")
    assert.is_truthy(srv:wait_log("shutting down"))
    -- the slow request still gets its answer
    slow:settimeout(5)
    local status = slow:receive("*l")
    assert.same("HTTP/1.1 200 OK", status)
    slow:close()
    -- the stream ends with its terminating chunk
    local _, _, ending = stream:rest(5)
    assert.same("end", ending)
    stream:close()
    assert.same(0, srv:wait())
  end)

  it("exits 0 on SIGINT when idle", function()
    local srv = test.server("spec/apps/core.lua")
    assert.same("hello world\n", srv:get("/hello").body)
    assert.same(0, srv:stop("INT"))
  end)
end)
