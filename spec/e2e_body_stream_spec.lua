-- SPDX-License-Identifier: MIT
-- Streamed request bodies (rill.streamed_body, req:body_reader()) end to end:
-- a 50 MiB upload relayed to an upstream the project did not write (Debian's
-- python3-h11, spec/support/h11_upstream.py) with the server's memory flat,
-- 100 Continue sent only when the handler reads, early replies, limits, and
-- the framing and smuggling cases on a body the gate reads itself. Responses
-- are split strictly by spec/support/wire.lua.
local test = require "rill.test"
local core = require "rill.core"
local socket = require "socket"
local procs = require "support.procs"
local wire = require "spec.support.wire"

local PYTHON = "/usr/bin/python3" -- Debian's, where python3-h11 is installed
local APP = "spec/apps/body_stream.lua"
local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10
local BIN = os.getenv("RILL_BIN") or ""
local INSTRUMENTED = BIN:find("valgrind", 1, true) or BIN:find("asan", 1, true)
local MIB = 1024 * 1024
local sh, must = procs.sh, procs.must

local SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
local LAST = "GET /hits HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

local function line_of(text)
  local n = 0
  for line in io.lines(APP) do
    n = n + 1
    if line:find(text, 1, true) then return n end
  end
  error("no line with " .. text)
end

local function post(path, headers, body)
  return ("POST %s HTTP/1.1\r\nHost: x\r\n%s\r\n%s"):format(path, headers or "", body or "")
end

local function chunked(pieces, trailers)
  local out = {}
  for _, p in ipairs(pieces) do out[#out + 1] = ("%x\r\n%s\r\n"):format(#p, p) end
  return table.concat(out) .. "0\r\n" .. (trailers or "") .. "\r\n"
end

-- The next response on sock: its status and body.
local function read_one(sock)
  local s = assert(test.response(sock, "POST", T))
  local body = s:rest(T)
  return s.status, body
end

local function vm_hwm_kb(pid)
  local f = assert(io.open("/proc/" .. pid .. "/status"))
  local kb = tonumber(f:read("a"):match("VmHWM:%s*(%d+)"))
  f:close()
  return kb
end

describe("streamed request bodies", function()
  local srv, upstream, dir

  setup(function()
    dir = procs.tmpdir()
    upstream = core.spawn({ PYTHON, "spec/support/h11_upstream.py" })
    local line = upstream:wait_for("upstream listening on ", T)
    assert(line, "the h11 upstream did not start (is python3-h11 installed?):\n" .. upstream:log())
    local port = line:match("(%d+)")
    srv = test.server(APP, { env = { UPSTREAM = "http://127.0.0.1:" .. port },
      args = { "--max-body-bytes", "1024", "--keepalive-timeout", "2" } })
  end)

  teardown(function()
    if srv then assert.same(0, srv:stop(), srv:log()) end
    if upstream then upstream:close() end -- killed by pid
    if dir then sh("rm -rf " .. dir) end
  end)

  -- Sends bytes on one connection, reads to the close: the responses and what is left.
  local function exchange(bytes, methods)
    local data, _, closed = srv:exchange(bytes, T)
    assert(closed, "the connection stayed open")
    return wire.split(data, methods)
  end

  local function hits()
    return srv:get("/hits").body
  end

  describe("relayed to an upstream", function()
    local file
    setup(function()
      file = dir .. "/upload"
      must(("head -c %d /dev/urandom > %s"):format(50 * MIB, file))
    end)

    local function sha256(path)
      return must("sha256sum " .. path):match("^(%x+)")
    end

    for _, how in ipairs({ { "a Content-Length", "-T %s" }, { "chunked", "-T - < %s" } }) do
      it(("relays a 50 MiB upload with %s to an h11 upstream, piece by piece, memory flat"):format(how[1]), function()
        local before = vm_hwm_kb(srv:pid())
        local out = must(("curl -sS -D - -o %s/answer %s http://127.0.0.1:%d/relay/file")
          :format(dir, how[2]:format(file), srv.port))
        assert.truthy(out:find("HTTP/1.1 100 Continue", 1, true), out) -- curl asked; the handler read
        assert.truthy(out:find("HTTP/1.1 200 OK", 1, true), out)
        local answer = procs.read_file(dir .. "/answer")
        assert.truthy(answer:find('"bytes": ' .. 50 * MIB, 1, true), answer)
        assert.truthy(answer:find('"sha256": "' .. sha256(file) .. '"', 1, true), answer)
        assert.truthy(answer:find('"chunked": true', 1, true), answer) -- sent on as it came
        local pieces = tonumber(out:match("x%-pieces: (%d+)"))
        local biggest = tonumber(out:match("x%-biggest: (%d+)"))
        assert.is_true(pieces >= 50 * MIB / (64 * 1024), out) -- never more than 64 KiB at once
        assert.is_true(biggest <= 64 * 1024, out)
        -- the Lua heap never held more than a few pieces (a buffered body would be 50 MiB)
        assert.is_true(tonumber(out:match("x%-lua%-kib: (%d+)")) < 8 * 1024, out)
        -- and the process did not grow by the upload (under ASan or valgrind RSS means little)
        if not INSTRUMENTED then
          local grew = vm_hwm_kb(srv:pid()) - before
          assert.is_true(grew < 16 * 1024, ("the server grew by %d KiB"):format(grew))
        end
      end)
    end

    it("raises a body function's wrong piece naming fetch's argument (500, logged with the line)", function()
      local out = must(("curl -sS -o /dev/null -w '%%{http_code}' -T /dev/null http://127.0.0.1:%d/relay-bad")
        :format(srv.port))
      assert.same("500", out)
      assert.truthy(srv:wait_log("the body function returned a number", T))
    end)
  end)

  describe("reading", function()
    it("gives a Content-Length body as it comes, sent in pieces", function()
      local sock = srv:connect()
      sock:send(post("/count", "Content-Length: 11\r\n"))
      sock:send("hello")
      sock:send(" world")
      local status, body = read_one(sock)
      sock:close()
      assert.same(200, status)
      assert.truthy(body:match("^11 %d+ %d+"), body)
    end)

    it("decodes a chunked body, trailers and all, and the next request on the connection is answered", function()
      local body = chunked({ "abc", ("x"):rep(5000), "z" }, "X-Sum: 1\r\n")
      local rs, rest = exchange(post("/count/100000", "Transfer-Encoding: chunked\r\n", body) .. LAST)
      assert.same("", rest)
      assert.same({ 200, 200 }, { rs[1].status, rs[2].status })
      assert.same(5004, tonumber(rs[1].body:match("^(%d+)")))
    end)

    it("answers requests pipelined behind streamed bodies in order, a streamed one behind another too", function()
      local before = hits()
      local bytes = post("/count", "Content-Length: 3\r\n", "abc")
        .. post("/count", "Transfer-Encoding: chunked\r\n", chunked({ "defg" }))
        .. post("/echo", "Content-Length: 2\r\n", "hi")
        .. post("/plain", "Content-Length: 4\r\n", "1234")
        .. SMUGGLED .. LAST
      local rs, rest = exchange(bytes)
      assert.same("", rest)
      assert.same(6, #rs)
      assert.truthy(rs[1].body:match("^3 "))
      assert.truthy(rs[2].body:match("^4 "))
      assert.same("echo hi 2\n", rs[3].body)
      assert.same("plain 4\n", rs[4].body)
      assert.same("smuggled\n", rs[5].body)
      assert.same(tostring(tonumber(before) + 1), rs[6].body)
    end)

    it("gives a streamed request pipelined behind another request its body", function()
      local rs, rest = exchange("GET /hits HTTP/1.1\r\nHost: x\r\n\r\n"
        .. post("/count", "Content-Length: 5\r\n", "hello") .. LAST)
      assert.same("", rest)
      assert.same(3, #rs)
      assert.truthy(rs[2].body:match("^5 1 5 "), rs[2].body)
    end)

    it("gives a custom 404 on a streamed path its req.body", function()
      local rs = exchange(post("/count/x", "Content-Length: 3\r\nConnection: close\r\n", "abc"))
      assert.same(404, rs[1].status)
      assert.same("not found, body 3\n", rs[1].body)
    end)

    it("echoes a body in a streaming reply as it arrives", function()
      local rs = exchange(post("/duplex", "Transfer-Encoding: chunked\r\nConnection: close\r\n",
        chunked({ "ping ", "pong" })))
      assert.same(200, rs[1].status)
      assert.same("ping pong", rs[1].body)
    end)

    it("has req.body whole for a route that reads it so, on a path whose bodies are streamed", function()
      local rs = exchange(post("/count-whole", "Content-Length: 5\r\nConnection: close\r\n", "12345"))
      assert.same("whole 5\n", rs[1].body)
    end)

    it("shows the framing field again in req.headers", function()
      local rs = exchange(post("/echo", "Transfer-Encoding: chunked\r\nConnection: close\r\n", chunked({ "ok" })))
      assert.same("echo ok 2\n", rs[1].body)
    end)

    it("reads an HTTP/1.0 body as evhttp does (whole), and the reader gives it", function()
      local data = srv:exchange("POST /count HTTP/1.0\r\nContent-Length: 4\r\n\r\nabcd", T)
      assert.truthy(data:find("\r\n\r\n4 1 4 ", 1, true), data)
    end)

    it("raises req.body read before the body, naming the app's line (500)", function()
      local rs = exchange(post("/unread", "Content-Length: 2\r\nConnection: close\r\n", "ab"))
      assert.same(500, rs[1].status)
      assert.truthy(srv:wait_log(("body_stream.lua:%d: req.body: this request's body is streamed")
        :format(line_of("return req.body")), T))
    end)
  end)

  describe("Expect: 100-continue", function()
    it("is answered only when the handler reads", function()
      local sock = srv:connect()
      sock:settimeout(T)
      sock:send(post("/count", "Content-Length: 4\r\nExpect: 100-continue\r\n"))
      local interim = assert(sock:receive("*l"))
      assert.same("HTTP/1.1 100 Continue", interim) -- LuaSocket's lines drop the CR
      assert.same("", assert(sock:receive("*l")))
      sock:send("abcd")
      local status, body = read_one(sock)
      sock:close()
      assert.same(200, status)
      assert.truthy(body:match("^4 "), body)
    end)

    it("is not answered by a handler that replies without reading: the reply says close, and closes", function()
      local rs, rest = exchange(post("/early", "Content-Length: 100000\r\nExpect: 100-continue\r\n"))
      assert.same(1, #rs) -- no 100 before it
      assert.same(200, rs[1].status)
      assert.same("close", wire.one(rs[1], "connection"))
      assert.same("", rest)
    end)

    it("gets the 413 of a body over the reader's limit, not a 100", function()
      local rs = exchange(post("/count/10", "Content-Length: 11\r\nExpect: 100-continue\r\n"))
      assert.same(1, #rs)
      assert.same(413, rs[1].status)
      assert.same("close", wire.one(rs[1], "connection"))
    end)
  end)

  describe("an early reply", function()
    it("reaches a client still sending a big body (curl), and the connection then closes", function()
      local file = dir .. "/five"
      must(("head -c %d /dev/zero > %s"):format(5 * MIB, file))
      local out = must(("curl -sS -H 'Expect:' --data-binary @%s http://127.0.0.1:%d/early"):format(file, srv.port))
      assert.same("early\n", out)
    end)

    it("closes without running a request inside the body it did not read", function()
      local before = hits()
      local body = "0123456789" .. SMUGGLED
      local rs, rest = exchange(post("/early", ("Content-Length: %d\r\n"):format(#body + 50), body))
      assert.same(1, #rs)
      assert.same("close", wire.one(rs[1], "connection"))
      assert.same("", rest)
      assert.same(before, hits())
    end)
  end)

  describe("refusing what it has not read", function()
    it("runs none of the requests in a body it did not read, however much of it came", function()
      local before = hits()
      local body = SMUGGLED:rep(4000) -- 144 KiB of requests, as the body of one
      for _, path in ipairs({ "/early", "/early-late" }) do
        local rs, rest = exchange(post(path, ("Content-Length: %d\r\n"):format(#body + 1000), body))
        assert.same(1, #rs)
        assert.same("early\n", rs[1].body)
        assert.same("", rest)
      end
      assert.same(before, hits())
    end)

    it("runs no request that came after the reader's window filled, lined up on a request's start", function()
      -- the window is 64 KiB: the first part fills it exactly, and what comes after it (a pause
      -- shapes the reads, whatever the outcome) starts with a whole request, left in the input
      local before = hits()
      local rest_of_body = SMUGGLED:rep(100)
      local sock = srv:connect()
      sock:settimeout(T)
      sock:send(post("/early-late", ("Content-Length: %d\r\n"):format(65536 + #rest_of_body), ("p"):rep(65536)))
      socket.sleep(0.1)
      sock:send(rest_of_body)
      local data = sock:receive("*a")
      sock:close()
      local rs, rest = wire.split(data)
      assert.same(1, #rs)
      assert.same("close", wire.one(rs[1], "connection"))
      assert.same("", rest)
      assert.same(before, hits())
    end)

    it("refuses a bad head of a streamed request (400), and runs nothing in its body", function()
      local before = hits()
      local body = SMUGGLED:rep(100)
      local rs, rest = exchange(("POST /count HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: %d\r\n\r\n%s")
        :format(#body + 10, body))
      assert.same(1, #rs)
      assert.same(400, rs[1].status)
      assert.same("close", wire.one(rs[1], "connection"))
      assert.same("", rest)
      assert.same(before, hits())
    end)
  end)

  describe("limits", function()
    it("takes a body bigger than --max-body-bytes on a streamed route, up to its reader's own limit", function()
      local big = ("b"):rep(100000)
      local rs = exchange(post("/count/200000", ("Content-Length: %d\r\nConnection: close\r\n"):format(#big), big))
      assert.same(200, rs[1].status)
      assert.truthy(rs[1].body:match("^100000 "))
    end)

    it("bounds a reader with no limit by --max-body-bytes (413); the body came whole, so the next request runs", function()
      local rs, rest = exchange(post("/count", "Content-Length: 2000\r\n", ("c"):rep(2000)) .. LAST)
      assert.same({ 413, 200 }, { rs[1].status, rs[2] and rs[2].status })
      assert.same("", rest)
    end)

    it("closes after the 413 of a body still arriving", function()
      local rs = exchange(post("/count", "Content-Length: 200000\r\n", ("c"):rep(2000)))
      assert.same(413, rs[1].status)
      assert.same("close", wire.one(rs[1], "connection"))
    end)

    it("answers a chunked body that grows past the limit with a 413 when it does", function()
      local rs = exchange(post("/count/10", "Transfer-Encoding: chunked\r\n", chunked({ "12345", "67890", "X" })))
      assert.same(413, rs[1].status)
    end)

    it("still answers 413 for a route that reads its body whole, past --max-body-bytes", function()
      local rs = exchange(post("/count-whole", "Content-Length: 2000\r\n", ("w"):rep(2000)))
      assert.same(413, rs[1].status)
    end)

    it("drops a client that stops sending its body, at --keepalive-timeout", function()
      local _, _, closed = srv:exchange(post("/count", "Content-Length: 100\r\n", "only ten.."), T + 4)
      assert.is_true(closed)
    end)

    it("drops it while a streaming reply waits for the body too", function()
      local data, _, closed = srv:exchange(post("/duplex", "Content-Length: 100\r\n", "only ten.."), T + 4)
      assert.is_true(closed)
      assert.truthy(data:find("only ten..", 1, true), data) -- what came was echoed; then the close
    end)

    it("keeps a client waiting for 100 Continue while the handler works longer than the timeout", function()
      local sock = srv:connect()
      sock:settimeout(T + 4)
      sock:send(post("/slow", "Content-Length: 4\r\nExpect: 100-continue\r\n"))
      assert.same("HTTP/1.1 100 Continue", assert(sock:receive("*l")))
      assert.same("", assert(sock:receive("*l")))
      sock:send("abcd")
      local status, body = read_one(sock)
      sock:close()
      assert.same(200, status)
      assert.truthy(body:match("^4 "), body)
    end)
  end)

  describe("framing", function()
    local bad = {
      { "a chunk size that is not hex", "zz\r\nab\r\n0\r\n\r\n" },
      { "a chunk extension", "2;x=1\r\nab\r\n0\r\n\r\n" },
      { "chunk data longer than its size", "2\r\nabc\r\n0\r\n\r\n" },
      { "a bare CR after a chunk size", "2\rab\r\n0\r\n\r\n" },
      { "a chunk size with a sign", "+2\r\nab\r\n0\r\n\r\n" },
    }
    for _, case in ipairs(bad) do
      it(("refuses %s (400, closed) and runs nothing after it"):format(case[1]), function()
        local before = hits()
        local rs, rest = exchange(post("/count", "Transfer-Encoding: chunked\r\n", case[2] .. SMUGGLED))
        assert.same(1, #rs)
        assert.same(400, rs[1].status)
        assert.same("close", wire.one(rs[1], "connection"))
        assert.same("", rest)
        assert.same(before, hits())
      end)
    end

    for _, case in ipairs({
      { "Content-Length and Transfer-Encoding", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n" },
      { "two Content-Lengths", "Content-Length: 5\r\nContent-Length: 6\r\n" },
      { "a Content-Length list", "Content-Length: 5, 5\r\n" },
      { "a Transfer-Encoding that is not chunked alone", "Transfer-Encoding: gzip, chunked\r\n" },
    }) do
      it(("leaves %s to the server's checks: 400, and nothing smuggled runs"):format(case[1]), function()
        local before = hits()
        local rs = exchange(post("/count", case[2], "5\r\nabcde\r\n0\r\n\r\n" .. SMUGGLED))
        assert.same(400, rs[1].status)
        assert.same(before, hits())
      end)
    end

    it("reads the body of any split the same (a generator of cuts)", function()
      local body = chunked({ "first piece", ("m"):rep(3000), "last" }, "T: 1\r\n")
      local req = post("/count/100000", "Transfer-Encoding: chunked\r\n", body)
      math.randomseed(7)
      for _ = 1, 20 do
        local sock = srv:connect()
        local at = 1
        while at <= #req do
          local n = math.random(1, 40)
          sock:send(req:sub(at, at + n - 1))
          at = at + n
        end
        local status, got = read_one(sock)
        sock:close()
        assert.same(200, status)
        assert.same(3015, tonumber(got:match("^(%d+)")))
      end
    end)
  end)

  describe("over TLS", function()
    local tls
    setup(function()
      must(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
        .. "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout %s/k.pem -out %s/c.pem"):format(dir, dir))
      tls = test.server(APP, { args = { "--listen", "https://127.0.0.1:0", "--tls-cert", dir .. "/c.pem",
        "--tls-key", dir .. "/k.pem" } })
    end)
    teardown(function()
      if tls then assert.same(0, tls:stop(), tls:log()) end
    end)

    it("answers a request behind a 100 Continue and a whole reply on the same connection at once", function()
      local out = must(("curl -sS --max-time %d --cacert %s/c.pem -H 'Expect: 100-continue' --data-binary hello "
        .. "%s/count/100 --next --max-time %d --cacert %s/c.pem %s/hits"):format(T, dir, tls.urls[2], T, dir, tls.urls[2]))
      assert.truthy(out:match("^5 1 5 %d+\n%d+$"), out)
    end)

    it("streams a 5 MiB upload, chunked and with a length", function()
      local file = dir .. "/tls5"
      must(("head -c %d /dev/urandom > %s"):format(5 * MIB, file))
      local url = tls.urls[2] .. "/count/10000000"
      local a = must(("curl -sS --cacert %s/c.pem --data-binary @%s %s"):format(dir, file, url))
      local b = must(("curl -sS --cacert %s/c.pem -H 'Transfer-Encoding: chunked' --data-binary @%s %s")
        :format(dir, file, url))
      assert.same(5 * MIB, tonumber(a:match("^(%d+)")))
      assert.same(5 * MIB, tonumber(b:match("^(%d+)")))
    end)
  end)
end)
