-- SPDX-License-Identifier: MIT
-- Limits that keep one handler from taking the worker down.
local socket = require "socket"
local test = require "rill.test"

describe("a runaway handler", function()
  local srv
  setup(function()
    srv = test.server("spec/apps/runaway.lua",
      { args = { "--max-instructions", "2000000", "--max-lua-memory", tostring(64 * 1024 * 1024) } })
  end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  it("that never yields is stopped with a 500, and the worker keeps serving", function()
    local res = srv:get("/spin")
    assert.same(500, res.status)
    assert.is_nil(res.body:find("budget", 1, true)) -- the client learns nothing internal
    assert.is_truthy(srv:wait_log("instruction budget exceeded"))
    assert.same("ok\n", srv:get("/ok").body)
  end)

  it("inside a stream's generator has its stream cut off", function()
    local res = srv:get("/spin-in-generator")
    assert.same(200, res.status)
    assert.same({ "started\n" }, res.chunks)
    assert.same("closed", res.ending)
    assert.same("ok\n", srv:get("/ok").body)
  end)

  it("inside an event stream's generator, resumed by C, has its stream cut off", function()
    local res = srv:get("/spin-in-sse-generator")
    assert.same(200, res.status)
    assert.truthy(res.body:find("data: started", 1, true), res.body)
    assert.same("closed", res.ending)
    assert.is_truthy(srv:wait_log("instruction budget exceeded"))
    assert.same("ok\n", srv:get("/ok").body)
  end)

  it("that works long but yields often is not stopped: the budget is per resume", function()
    assert.same("4000000\n", srv:get("/busy-but-fair").body)
  end)

  it("that allocates without bound gets a memory error and a 500", function()
    local res = srv:get("/hog")
    assert.same(500, res.status)
    assert.is_truthy(srv:wait_log("not enough memory"))
    assert.same("ok\n", srv:get("/ok").body)
    assert.same(500, srv:get("/hog").status) -- and again: the memory came back
    assert.same("ok\n", srv:get("/ok").body)
  end)
end)

describe("a handler that keeps all the memory it could get", function()
  local srv
  setup(function()
    srv = test.server("spec/apps/runaway.lua", { args = { "--max-lua-memory", tostring(32 * 1024 * 1024) } })
  end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  it("gets a 500, and the worker goes on answering with no room left", function()
    assert.same(500, srv:get("/hoard").status)
    for _ = 1, 3 do -- each request needs memory before its handler runs: never a crash
      local status = srv:get("/ok").status
      assert.is_true(status == 200 or status == 500, status)
    end
    assert.is_true(srv:stats().lua_kb > 30 * 1024)
  end)
end)

describe("--keepalive-timeout", function()
  local srv
  setup(function()
    srv = test.server("spec/apps/core.lua", { args = { "--keepalive-timeout", "0.3" } })
  end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  it("closes an idle keep-alive connection", function()
    local sock = srv:connect()
    sock:send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    sock:settimeout(5)
    assert.same("HTTP/1.1 200 OK", sock:receive("*l"))
    local rest, err = sock:receive("*a") -- the rest, then the server's close (not a timeout)
    assert.is_nil(err)
    assert.matches("hello world\n$", rest)
    sock:close()
  end)

  it("drops a client that stalls mid-request while others are served", function()
    local slow = srv:connect()
    slow:send("GET /hello HTTP/1.1\r\nHost: x\r\nX-Partial: ")
    assert.same("hello world\n", srv:get("/hello").body)
    slow:settimeout(5)
    local data, err, partial = slow:receive("*a") -- closed, not a timeout
    assert.are_not.equal("timeout", err)
    -- dropped by the inactivity timer (no answer), or, on a loaded machine, by
    -- the head's own --min-rate timer a moment later (a 408): either way, dropped
    data = data or partial
    assert.is_true(data == "" or data:find("^HTTP/1%.1 408 ") ~= nil, data)
    slow:close()
  end)

  it("keeps a client that sends a body slowly, byte by byte, for longer than the timeout", function()
    local sock = srv:connect()
    sock:send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n")
    for i = 1, 8 do -- 0.8 s in all: more than two timeouts, but never 0.3 s of silence
      socket.select(nil, nil, 0.1)
      sock:send(tostring(i))
    end
    sock:settimeout(5)
    local res = assert(test.response(sock, "POST"))
    assert.same(200, res.status)
    assert.same("12345678", res:rest())
    sock:close()
  end)

  it("drops a client that stops reading a whole reply", function()
    local before = srv:stats().connections
    local sock = srv:connect()
    sock:send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n") -- and never reads
    assert.same(before + 1, srv:settle(function(st) return st.connections > before end).connections)
    local stats = srv:settle(function(st) return st.connections <= before end)
    assert.same(before, stats.connections)
    sock:close()
  end)

  it("drops a stream's client that stops reading", function()
    local before = srv:stats().connections
    local sock = srv:connect()
    sock:send("GET /flood HTTP/1.1\r\nHost: x\r\n\r\n") -- endless chunks, never read
    assert.same(1, srv:settle(function(st) return st.streams == 1 end).streams)
    local stats = srv:settle(function(st) return st.connections <= before and st.streams == 0 end)
    assert.same(before, stats.connections)
    assert.same(0, stats.streams)
    sock:close()
  end)

  it("lets a handler take longer than the timeout before its first byte", function()
    assert.same("slept\n", srv:get("/sleep?s=1").body)
  end)

  it("drops an event stream's client that stops reading, though heartbeats keep being queued", function()
    local sse = test.server("spec/apps/limits.lua", { args = { "--keepalive-timeout", "0.3" } })
    local sock = sse:connect()
    sock:send("GET /sse-flood HTTP/1.1\r\nHost: x\r\n\r\n") -- and never reads
    local blocked = sse:settle(function(st) return st.blocked == 1 end)
    assert.same(1, blocked.streams)
    assert.same(1, blocked.blocked) -- the kernel's buffers and ours are full: only heartbeats now
    local stats = sse:settle(function(st) return st.connections == 0 and st.streams == 0 end)
    assert.same(0, stats.connections)
    assert.same(0, stats.streams)
    assert.same(0, stats.tasks)
    sock:close()
    assert.same(0, sse:stop(), sse:log())
  end)

  it("never cuts a stream, however long it is idle", function()
    local s = srv:open("/gated")
    assert.same("first\n", s:chunk(5))
    assert.is_nil(s:chunk(1)) -- idle for three timeouts
    srv:get("/release")
    assert.same("second\n", s:chunk(5))
    s:close()
  end)
end)

describe("size limits", function()
  local srv
  setup(function()
    srv = test.server("spec/apps/core.lua",
      { args = { "--max-header-bytes", "1024", "--max-body-bytes", "1000" } })
  end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  local function head(extra)
    return "GET /hello HTTP/1.1\r\nHost: x\r\n" .. extra .. "\r\n"
  end

  it("answer 431 to headers past --max-header-bytes, and close", function()
    local data, statuses, closed = srv:exchange(head(("X-Pad: " .. ("p"):rep(90) .. "\r\n"):rep(12)))
    assert.same({ 431 }, statuses)
    assert.is_true(closed)
    assert.matches("HTTP/1.1 431 Request Header Fields Too Large", data, 1, true)
  end)

  it("answer 414 to a request line past --max-header-bytes", function()
    local _, statuses, closed = srv:exchange("GET /" .. ("a"):rep(1100) .. " HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.same({ 414 }, statuses)
    assert.is_true(closed)
  end)

  it("let a head just under the limit through", function()
    local pad = ("p"):rep(1024 - #head("X-Pad: \r\n") - #"Connection: close\r\n")
    local _, statuses = srv:exchange(head("X-Pad: " .. pad .. "\r\nConnection: close\r\n"))
    assert.same({ 200 }, statuses)
  end)

  it("answer 413 to a body past --max-body-bytes, and close", function()
    local body = ("b"):rep(1001)
    local _, statuses, closed = srv:exchange("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "
      .. #body .. "\r\n\r\n" .. body)
    assert.same({ 413 }, statuses)
    assert.is_true(closed)
    local ok = srv:request({ method = "POST", path = "/echo", body = ("b"):rep(1000) })
    assert.same(1000, #ok.body)
  end)
end)

describe("--request-timeout", function()
  local srv
  setup(function()
    srv = test.server("spec/apps/core.lua",
      { args = { "--request-timeout", "0.5", "--keepalive-timeout", "30" } })
  end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  it("drops a client dripping a request (slowloris) while others are served", function()
    local slow = srv:connect()
    local request = "GET /hello HTTP/1.1\r\nHost: x\r\n" .. ("X-Drip: 1\r\n"):rep(40)
    local started, answer, err = socket.gettime()
    slow:settimeout(0.05) -- the drip's pace: one byte per read attempt
    for i = 1, #request do
      slow:send(request:sub(i, i))
      answer, err = slow:receive("*l")
      if answer or err == "closed" then break end
      if i % 20 == 0 then assert.same("hello world\n", srv:get("/hello").body) end
    end
    assert.same("HTTP/1.1 408 Request Timeout", answer)
    assert.is_true(socket.gettime() - started < 5, "dropped by the deadline, not at the end of the drip")
    slow:settimeout(5)
    local _, closed = slow:receive("*a")
    assert.is_nil(closed) -- nil error: the server closed it
    slow:close()
  end)

  it("does not count the time a reply takes against the next pipelined request", function()
    local _, statuses = srv:exchange("GET /sleep?s=1 HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.same({ 200, 200 }, statuses)
  end)
end)

describe("--max-connections", function()
  local srv
  setup(function()
    srv = test.server("spec/apps/core.lua", { args = { "--max-connections", "2" } })
  end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  local function hello(sock)
    sock:send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    local res = assert(test.response(sock))
    res:rest()
    return res.status
  end

  it("answers 503 past the limit and closes, and keeps serving the admitted", function()
    local a, b = srv:connect(), srv:connect()
    assert.same(200, hello(a))
    assert.same(200, hello(b))
    local data, statuses, closed = srv:exchange("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.same({ 503 }, statuses)
    assert.is_true(closed)
    assert.matches("too many connections", data, 1, true)
    assert.matches("Content%-Length: 0\r\n", data) -- it may be a HEAD's answer: no body
    assert.same("\r\n\r\n", data:sub(-4))
    assert.same(200, hello(a))
    assert.same(2, srv:stats().connections)
    a:close()
    local served -- the server sees a's close when it reads it: retry, bounded
    for _ = 1, 200 do
      local _, s = srv:exchange("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      served = s[1]
      if served == 200 then break end
    end
    assert.same(200, served)
    assert.same(200, hello(b))
    b:close()
  end)
end)

describe("a shed connection", function()
  local srv
  setup(function()
    srv = test.server("spec/apps/limits.lua", { args = { "--max-connections", "1", "--request-timeout", "60" } })
  end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  it("gets its 503 and is closed within seconds, even when its client keeps it open", function()
    local a = srv:connect()
    a:send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.same("hello\n", assert(test.response(a)):rest())
    local before = srv:stats().fds
    local b = srv:connect()
    b:send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    b:settimeout(5)
    local data, _, partial = b:receive("*a") -- the 503, then the server's end of sending
    assert.matches("^HTTP/1.1 503", data or partial)
    -- b stays open here: the server lets go of it by itself, long before the request timeout
    assert.same(before, srv:settle(function(st) return st.fds <= before end).fds)
    assert.same(1, srv:stats().connections)
    b:close()
    a:close()
  end)
end)

describe("out of file descriptors", function()
  it("stops accepting with one log line, and serves again once connections close", function()
    local bin = test.bin
    test.bin = "prlimit --nofile=64 " .. bin -- soft and hard: rill cannot raise it
    local ok, srv = pcall(test.server, "spec/apps/limits.lua", { args = { "--max-connections", "0" } })
    test.bin = bin
    assert(ok, srv)
    local socks = {}
    for i = 1, 80 do socks[i] = srv:connect() end -- more than 64 fds: the last wait in the backlog
    assert.is_truthy(srv:wait_log("Too many open files"))
    socks[1]:send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.same("hello\n", assert(test.response(socks[1])):rest())
    for i = 2, 80 do socks[i]:close() end
    -- A new client, behind the ones still queued, is served once others closed. (Retried,
    -- bounded: under valgrind an accept past its own lower limit closes the connection.)
    local body
    local deadline = socket.gettime() + 30
    for _ = 1, 300 do
      if socket.gettime() > deadline then break end
      local late = srv:connect()
      late:send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
      local res = test.response(late)
      body = res and res:rest()
      late:close()
      if body then break end
    end
    assert.same("hello\n", body)
    local log = srv:log()
    local _, lines = log:gsub("Too many open files", "")
    assert.same(1, lines, log:sub(1, 2000))
    socks[1]:close()
    assert.same(0, srv:stop(), srv:log():sub(1, 2000))
  end)
end)

describe("--header-timeout and --min-rate", function()
  -- Drips a head one byte per 50 ms for at most `seconds`; returns the first line answered and when.
  local function drip(srv, seconds)
    local slow = srv:connect()
    local request = "GET /hello HTTP/1.1\r\nHost: x\r\n" .. ("X-Drip: 1\r\n"):rep(200)
    local started, answer, err = socket.gettime()
    slow:settimeout(0.05)
    for i = 1, #request do
      slow:send(request:sub(i, i))
      answer, err = slow:receive("*l")
      if answer or err == "closed" or socket.gettime() - started > seconds then break end
    end
    local took = socket.gettime() - started
    slow:settimeout(5)
    local _, closed = slow:receive("*a")
    slow:close()
    return answer, took, closed
  end

  it("drop a client dripping a head byte by byte within seconds by default, with a 408", function()
    local srv = test.server("spec/apps/limits.lua")
    local answer, took, closed = drip(srv, 8)
    assert.same("HTTP/1.1 408 Request Timeout", answer)
    assert.is_true(took < 8, "dropped for its rate, before the 20 s --header-timeout")
    assert.is_nil(closed) -- nil error: the server closed it
    assert.same("hello\n", srv:get("/hello").body)
    assert.same(0, srv:stop(), srv:log())
  end)

  it("drop a head not whole within --header-timeout, whatever its rate", function()
    local srv = test.server("spec/apps/limits.lua", { args = { "--header-timeout", "0.5", "--min-rate", "0" } })
    local answer, took = drip(srv, 8)
    assert.same("HTTP/1.1 408 Request Timeout", answer)
    assert.is_true(took < 8, "dropped at the header timeout, before the 30 s --request-timeout")
    assert.same(0, srv:stop(), srv:log())
  end)

  it("keep a head that arrives in pieces over more than a second at a good rate", function()
    local srv = test.server("spec/apps/limits.lua", { args = { "--min-rate", "100" } })
    local sock = srv:connect()
    local head = "GET /hello HTTP/1.1\r\nHost: x\r\n" .. ("X-Pad: " .. ("p"):rep(141) .. "\r\n"):rep(4) .. "\r\n"
    local piece = math.ceil(#head / 5)
    for i = 1, #head, piece do -- 5 pieces of ~125 bytes, 0.3 s apart: each one buys 1.25 s more
      sock:send(head:sub(i, i + piece - 1))
      if i + piece <= #head then socket.select(nil, nil, 0.3) end
    end
    assert.same("hello\n", assert(test.response(sock)):rest())
    sock:close()
    assert.same(0, srv:stop(), srv:log())
  end)
end)

describe("--backlog", function()
  local core = require "rill.core"
  local function rill(...)
    local argv = {}
    for word in test.bin:gmatch("%S+") do argv[#argv + 1] = word end
    for _, a in ipairs({ ... }) do argv[#argv + 1] = a end
    local proc <close> = core.spawn(argv)
    return proc:wait(30), proc:log()
  end

  it("is listed by --help and taken with a count", function()
    local status, out = rill("--help")
    assert.same(0, status)
    assert.matches("--backlog N", out, 1, true)
    local srv = test.server("spec/apps/limits.lua", { args = { "--backlog", "16" } })
    assert.same("hello\n", srv:get("/hello").body)
    assert.same(0, srv:stop(), srv:log())
  end)

  it("refuses a count that is not from 1 to 65535, naming the option", function()
    for _, bad in ipairs({ "0", "-1", "abc", "65536", "99999999999999999999", "", "1.5" }) do
      local status, err = rill("spec/apps/limits.lua", "--listen", "127.0.0.1:0", "--backlog", bad)
      assert.same(2, status, bad)
      assert.matches("rill: --backlog wants a count from 1 to 65535, got '" .. bad .. "'", err, 1, true)
    end
  end)

  it("and the head limits refuse values that are not finite and non-negative", function()
    for _, opt in ipairs({ "--header-timeout", "--min-rate" }) do
      for _, bad in ipairs({ "-1", "abc", "nan", "inf", "1e300" }) do
        local status, err = rill("spec/apps/limits.lua", "--listen", "127.0.0.1:0", opt, bad)
        assert.same(2, status, opt .. " " .. bad)
        assert.matches("rill: " .. opt .. " wants ", err, 1, true)
      end
    end
  end)
end)
