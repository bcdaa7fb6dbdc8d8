-- SPDX-License-Identifier: MIT
-- Event streams written as coroutine.wrap generators (issue 17): once the
-- handler returns, rill resumes the generator's own coroutine from C as the
-- request's task (out.drive), and on a plain HTTP/1.1 connection the stream
-- leaves evhttp (src/lean.c). The generator must see its req as before, its
-- effects must work, its end, errors, <close> variables, backpressure, the
-- client's close and shutdown must behave as when a Lua loop drove it.
local test = require "rill.test"
local socket = require "socket"

local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10
local APP = "spec/apps/sse_gen.lua"

-- the line of the first occurrence of text in the fixture
local function line_of(text)
  local n = 0
  for line in io.lines(APP) do
    n = n + 1
    if line:find(text, 1, true) then return n end
  end
  error("not in the fixture: " .. text)
end

describe("a rill.sse generator resumed by C", function()
  local srv
  setup(function()
    srv = test.server(APP, { args = { "--keepalive-timeout", "1", "--max-instructions", "2000000",
      "--trust-proxy", "127.0.0.1" } })
  end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  local function lean_count(want)
    return srv:settle(function(st) return st.lean == want end, T).lean
  end

  local function closed()
    return tonumber(srv:get("/closed").body)
  end

  local function settle_closed(want)
    for _ = 1, 400 do -- bounded polling: the server sees a client's close when it reads it
      if closed() == want then return want end
      socket.select(nil, nil, 0.01)
    end
    return closed()
  end

  local function fields(data)
    local t = {}
    for k, v in data:gmatch("([%w_]+)=([^\n]*)") do t[k] = v end
    return t
  end

  it("leaves evhttp, says close, and its req reads the same after as before", function()
    local base = srv:stats()
    local s = srv:open("/view/abc?q=zz%20top", { headers = { ["X-Probe"] = { "probe value", "again" },
      ["X-Request-Id"] = "req-42", ["X-Forwarded-For"] = "203.0.113.7" } })
    assert.same(200, s.status)
    assert.same("close", s.headers["connection"])
    local before = assert(s:event(T))
    assert.same("before", before.event)
    assert.same(base.lean + 1, lean_count(base.lean + 1)) -- "after" is read from the stash
    local after = assert(s:event(T))
    assert.same("after", after.event)
    assert.same(fields(before.data), fields(after.data))
    local f = fields(after.data)
    assert.same("/view/abc", f.path)
    assert.same("/view/abc?q=zz%20top", f.target)
    assert.same("zz top", f.q)
    assert.same("probe value|again", f.probe) -- a repeated line, a list as on evhttp
    assert.same("abc", f.params)
    assert.same("req-42", f.id)
    assert.same("203.0.113.7", f.remote_addr) -- behind a --trust-proxy proxy
    assert.same("127.0.0.1", f.peer_addr)
    assert.is_truthy(tonumber(f.remote_port) > 0)
    assert.same("http", f.scheme)
    assert.same("", f.body)
    assert.same("rill.request (GET /view/abc?q=zz%20top)", f.tostring)
    local body = assert(s:event(T))
    assert.same("nil .", body.data) -- no body: the reader ends at once, read_body is ""
    local _, _, ending = s:rest(T)
    assert.same("end", ending)
    s:close()
    assert.is_truthy(srv:settle(function(st) return st.tasks == base.tasks and st.lean == base.lean end, T))
    assert.same(base.lean, srv:stats().lean)
  end)

  it("is lean while it sleeps (the stats line's lean), with a task and no driver coroutine", function()
    local base = srv:stats()
    local s = srv:open("/hold")
    assert.same(base.lean + 1, lean_count(base.lean + 1))
    assert.same(base.tasks + 1, srv:stats().tasks) -- the generator is the task
    local was = closed()
    s:close()
    assert.same(was + 1, settle_closed(was + 1)) -- the client left: its <close> ran
    assert.same(base.lean, lean_count(base.lean))
    assert.same(base.tasks, srv:settle(function(st) return st.tasks == base.tasks end, T).tasks)
  end)

  it("ends whole when the generator returns, and its <close> variable runs", function()
    local was = closed()
    local s = srv:open("/finite")
    assert.same("a", assert(s:event(T)).data)
    local ev = assert(s:event(T))
    assert.same("e", ev.event)
    assert.same("b", ev.data)
    local _, _, ending = s:rest(T)
    assert.same("end", ending)
    s:close()
    assert.same(was + 1, settle_closed(was + 1))
  end)

  it("ends whole at a yield of nil, as a for loop would, closing the generator", function()
    local was = closed()
    local s = srv:open("/yields-nil")
    local body, _, ending = s:rest(T)
    assert.same("end", ending)
    assert.truthy(body:find("data: a", 1, true), body)
    assert.falsy(body:find("never", 1, true), body)
    s:close()
    assert.same(was + 1, settle_closed(was + 1))
  end)

  it("sends a value the generator returns as its last event", function()
    local s = srv:open("/returns")
    local body, _, ending = s:rest(T)
    assert.same("end", ending)
    assert.truthy(body:find("data: a\n\ndata: last\n\n", 1, true), body)
    s:close()
  end)

  it("cuts the stream at a value that is no event, naming the generator's line", function()
    local was = closed()
    local s = srv:open("/bad-yield")
    local body, _, ending = s:rest(T)
    assert.same("closed", ending) -- no last chunk: the client must not take it as whole
    assert.truthy(body:find("data: ok", 1, true), body)
    s:close()
    local line = srv:wait_log("yielded a number", T)
    assert(line, srv:log())
    assert.truthy(line:find("an event table, a string or nil expected", 1, true), line)
    assert.truthy(srv:log():find("sse_gen.lua:" .. line_of("coroutine.yield(42)") .. ":", 1, true), srv:log())
    assert.same(was + 1, settle_closed(was + 1))
  end)

  it("cuts the stream at an event that cannot be encoded, with the encoder's reason", function()
    local s = srv:open("/bad-event")
    local _, _, ending = s:rest(T)
    assert.same("closed", ending)
    s:close()
    assert(srv:wait_log("the event field cannot contain a line break", T), srv:log())
    assert.truthy(srv:log():find("sse_gen.lua:" .. line_of('event = "two\\nlines"') .. ":", 1, true), srv:log())
  end)

  it("cuts the stream at the generator's error, logged with its line and traceback", function()
    local was = closed()
    local s = srv:open("/raise")
    local body, _, ending = s:rest(T)
    assert.same("closed", ending)
    assert.truthy(body:find("data: ok", 1, true), body)
    s:close()
    local line = srv:wait_log("generator broke", T)
    assert(line, srv:log())
    assert.matches("handler error: spec/apps/sse_gen.lua:" .. line_of('error("generator broke")') .. ": generator broke", line)
    assert.same(was + 1, settle_closed(was + 1))
  end)

  it("waits for a client that reads late, and delivers everything in order", function()
    local base = srv:stats()
    local count, size = 300, 16 * 1024
    local s = srv:open(("/burst?count=%d&size=%d"):format(count, size))
    assert.same(base.lean + 1, lean_count(base.lean + 1))
    assert.same(base.blocked + 1, srv:settle(function(st) return st.blocked == base.blocked + 1 end, T).blocked)
    socket.select(nil, nil, 0.2) -- far more than the socket holds is produced meanwhile: it must wait
    local pad = ("x"):rep(size)
    for i = 1, count do
      local ev = assert(s:event(T))
      assert.same(pad .. i, ev.data)
    end
    local _, _, ending = s:rest(T)
    assert.same("end", ending)
    s:close()
    assert.same(base.blocked, srv:settle(function(st) return st.blocked == base.blocked end, T).blocked)
  end)

  it("lets a client leave while the generator waits for it to read", function()
    local base = srv:stats()
    local s = srv:open("/burst?count=300&size=16384")
    assert.same(base.blocked + 1, srv:settle(function(st) return st.blocked == base.blocked + 1 end, T).blocked)
    s:close()
    local st = srv:settle(function(x) return x.blocked == base.blocked and x.tasks == base.tasks end, T)
    assert.same({ base.blocked, base.tasks, base.lean }, { st.blocked, st.tasks, st.lean })
  end)

  it("sends a burst faster than the budget allows in one resume, and serves others meanwhile", function()
    -- 300,000 events with no effect between them, to a client that keeps up: the lean socket
    -- takes each at once, so the generator must still give the loop its turns (and a fresh budget)
    local cmd = ("curl -sS -o /dev/null -w '%%{http_code} %%{size_download}' --max-time %d 'http://127.0.0.1:%d/burst?count=300000&size=1'")
      :format(T * 3, srv.port)
    local p = io.popen(cmd .. " 2>&1")
    local out = p:read("a")
    local ok = p:close()
    assert(ok, "curl: " .. out)
    assert.matches("^200 %d+", out)
    assert.is_true(tonumber(out:match(" (%d+)")) > 300000 * 10, out)
    assert.falsy(srv:log():find("instruction budget exceeded", 1, true), srv:log())
  end)

  it("compresses a lean generator stream, its gzip trailer at the end (curl --compressed)", function()
    local cmd = ("curl -sS --compressed --max-time %d http://127.0.0.1:%d/gz"):format(T, srv.port)
    local p = io.popen(cmd .. " 2>&1")
    local out = p:read("a")
    assert(p:close(), "curl: " .. out)
    for i = 1, 3 do
      assert.truthy(out:find(("data: " .. ("compressible event %d "):format(i):rep(20)), 1, true), out)
    end
  end)

  it("answers a HEAD of a generator route with its head alone, keep-alive", function()
    local sock = srv:connect()
    sock:settimeout(T)
    sock:send("HEAD /finite HTTP/1.1\r\nHost: x\r\n\r\nGET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
    local head = assert(test.response(sock, "HEAD", T))
    assert.same(200, head.status)
    assert.is_nil(head.headers["connection"])
    local again = assert(test.response(sock, "GET", T))
    assert.same("plain body", (again:rest(T)))
    sock:close()
  end)

  it("runs effects from the generator: a fetch, and a subscription's published events", function()
    local s = srv:open("/fetch")
    assert.same("early 200 plain body", assert(s:event(T)).data)
    assert.same("200 plain body", assert(s:event(T)).data)
    s:close()
    local base = srv:stats().lean
    local h = srv:open("/hub/gen-topic")
    assert.same(base + 1, lean_count(base + 1))
    for _, data in ipairs({ "one", "two" }) do
      assert.same(202, srv:request({ method = "POST", path = "/publish/gen-topic", body = data }).status)
      assert.same(data, assert(h:event(T)).data)
    end
    local _, _, ending = h:rest(T)
    assert.same("end", ending)
    h:close()
  end)

  it("goes on from where a generator the handler started stopped", function()
    local s = srv:open("/started")
    local body, _, ending = s:rest(T)
    assert.same("end", ending)
    assert.truthy(body:find("data: second\n\ndata: third\n\n", 1, true), body)
    assert.falsy(body:find("first", 1, true), body)
    s:close()
  end)

  it("drives rill.sse's producer form, function(send)", function()
    local s = srv:open("/producer")
    assert.same("x", assert(s:event(T)).data)
    local ev = assert(s:event(T))
    assert.same("y", ev.event)
    assert.same("why", ev.data)
    s:close()
  end)

  it("sends heartbeats while the generator sleeps", function()
    local s = srv:open("/beats")
    local got = 0
    for _ = 1, 3 do
      local chunk = assert(s:chunk(T))
      if chunk:find("^:") then got = got + 1 end
    end
    assert.is_true(got >= 2)
    s:close()
  end)

  it("stays on evhttp, keep-alive, with a request pipelined behind it", function()
    local base = srv:stats().lean
    local sock = srv:connect()
    sock:settimeout(T)
    sock:send("GET /finite HTTP/1.1\r\nHost: x\r\n\r\nGET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
    local s = assert(test.response(sock, "GET", T))
    assert.is_nil(s.headers["connection"])
    local _, _, ending = s:rest(T)
    assert.same("end", ending)
    local again = assert(test.response(sock, "GET", T))
    assert.same("plain body", (again:rest(T)))
    assert.same(base, srv:stats().lean)
    sock:close()
  end)

  it("stays on evhttp for HTTP/1.0, and its req still reads", function()
    local sock = srv:connect()
    sock:settimeout(T)
    sock:send("GET /view/ten?q=1 HTTP/1.0\r\nX-Probe: p\r\n\r\n")
    local s = assert(test.response(sock, "GET", T))
    local before = assert(s:event(T))
    local after = assert(s:event(T))
    assert.same(fields(before.data), fields(after.data))
    assert.same("p", fields(after.data).probe)
    sock:close()
  end)
end)

describe("rill.sse generators at shutdown", function()
  it("end with a retry and the last chunk, and the server exits cleanly", function()
    local srv = test.server(APP)
    finally(function() if not srv.stopped then srv:stop("KILL") end end)
    local streams = {}
    for i = 1, 5 do streams[i] = srv:open("/hold") end
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
