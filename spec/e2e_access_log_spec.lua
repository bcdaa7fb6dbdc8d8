-- SPDX-License-Identifier: MIT
-- The access log end to end, against spec/apps/access_log.lua: one line per
-- request with its exact fields, however it ended (a plain reply, a 404, a
-- 500, a refusal, a HEAD, a stream ended by its client, its handler, an
-- error, the hub's slow-subscriber policy, a shutdown); combined lines match
-- a strict pattern, json lines parse as JSON; a log nobody reads drops lines
-- and counts them, and never stalls requests or streams; the workers of one
-- master write whole lines to one file.
--
-- Lines are waited for with a bounded poll of the file, never a sleep.
local core = require "rill.core"
local json = require "support.json"
local socket = require "socket"
local test = require "rill.test"
local procs = require "spec.support.procs"
local tmpdir = procs.tmpdir
local read_file = procs.read_file

local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10
local APP = "spec/apps/access_log.lua"



-- Polls pred every 10 ms until it returns a value or T seconds pass.
local function wait_for(pred)
  local deadline = core.now() + T
  while true do
    local v = pred()
    if v then return v end
    if core.now() > deadline then return nil end
    socket.sleep(0.01)
  end
end

local function lines_of(path)
  local out = {}
  for l in read_file(path):gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

-- Waits for the first line of path, from line `from` on, that contains text.
local function wait_line(path, text, from)
  return wait_for(function()
    local ls = lines_of(path)
    for i = from or 1, #ls do
      if ls[i]:find(text, 1, true) then return ls[i], i end
    end
  end)
end

-- combined, plus " <duration_ms> <request id> <end> <upstream_ms or ->" (docs/running.md)
local COMBINED = '^(%S+) %- %- %[(%d%d)/(%u%l%l)/(%d%d%d%d):(%d%d):(%d%d):(%d%d) %+0000%] '
  .. '"([^"]*)" (%d%d%d) (%d+) "([^"]*)" "([^"]*)" (%d+%.%d%d%d) (%S+) ([%l_]+) ([%d.-]+)$'

local function parse_combined(l)
  local remote, day, mon, year, h, m, s, request, status, bytes, referer, ua, ms, id, ending, up = l:match(COMBINED)
  assert(remote, "not a combined line: " .. l)
  assert(up == "-" or up:match("^%d+%.%d%d%d$"), "upstream: " .. l)
  return { remote = remote, request = request, status = tonumber(status), bytes = tonumber(bytes),
           referer = referer, ua = ua, ms = tonumber(ms), id = id, ["end"] = ending, upstream = tonumber(up),
           time = { day = day, mon = mon, year = year, h = h, m = m, s = s } }
end

local function start(args, env)
  local dir = tmpdir()
  local log = dir .. "/access.log"
  local argv = { "--access-log", log }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local srv = test.server(APP, { args = argv, env = env })
  srv.dir, srv.access = dir, log
  return srv
end

-- The pids of the workers a master logged starting.
local function worker_pids(srv)
  local pids = {}
  for pid in srv:log():gmatch("worker %d+ started %(pid (%d+)") do pids[#pids + 1] = tonumber(pid) end
  return pids
end

-- After its master's stop: a worker still there (a zombie is done) is killed by its pid.
local function kill_left(pids)
  for _, pid in ipairs(pids) do
    local st = read_file("/proc/" .. pid .. "/stat"):match("^%d+ %b() (%S)")
    local cmd = read_file("/proc/" .. pid .. "/cmdline")
    if st and st ~= "Z" and cmd:find("rill", 1, true) then os.execute("kill -s KILL " .. pid) end
  end
end

-- Stops srv with SIGTERM: it must exit 0 (under valgrind: no error, no leak).
local function cleanup(srv)
  if not srv then return end
  local status = srv:stop("TERM", T)
  os.execute("rm -rf '" .. srv.dir .. "'")
  assert.same(0, status)
end

-- One request on its own connection: the line of the request id it was given.
local function logged(srv, path, headers, method)
  local id = ("t%08x"):format(math.random(0, 0x7fffffff))
  local h = { ["x-request-id"] = id }
  for k, v in pairs(headers or {}) do h[k] = v end
  local res = srv:request({ method = method, path = path, headers = h })
  return parse_combined(assert(wait_line(srv.access, " " .. id .. " "), "no line for " .. path)), res
end

describe("the access log (combined)", function()
  local srv
  setup(function() srv = start() end)
  teardown(function() cleanup(srv) end)

  it("logs the time a handler's rill.fetch calls took to their upstream's heads, summed", function()
    -- (its x-request-id goes upstream too: the two /hello lines carry it, so the line is found by its target)
    local from = #lines_of(srv.access) + 1
    srv:request({ path = "/twice/" .. srv.port })
    local l = parse_combined(assert(wait_line(srv.access, "GET /twice/", from)))
    assert.same({ "GET /twice/" .. srv.port .. " HTTP/1.1", 200 }, { l.request, l.status })
    assert(l.upstream and l.upstream > 0 and l.upstream <= l.ms, ("upstream %s of %s ms"):format(l.upstream, l.ms))
  end)

  it("logs the upstream time of a fetch cut off by its client leaving before the upstream answered", function()
    local from = #lines_of(srv.access) + 1
    local s = srv:connect()
    assert(s:send(("GET /via/%d HTTP/1.1\r\nHost: a\r\n\r\n"):format(srv.port)))
    -- both handlers running (/via waits on its fetch of /hang): then the client leaves
    assert.is_truthy(srv:settle(function(st) return st.tasks >= 2 end))
    s:close()
    local l = parse_combined(assert(wait_line(srv.access, "GET /via/", from)))
    assert.same({ 499, "client_gone" }, { l.status, l["end"] })
    assert(l.upstream and l.upstream >= 0, ("upstream %s ms"):format(tostring(l.upstream))) -- not "-"
  end)

  it("logs a plain reply with its exact fields", function()
    local before = os.time()
    local l = logged(srv, "/hello?x=1", { ["user-agent"] = 'agent "7"', referer = "http://example/" })
    local after = os.time()
    assert.same("127.0.0.1", l.remote)
    assert.same("GET /hello?x=1 HTTP/1.1", l.request)
    assert.same(200, l.status)
    assert.same(6, l.bytes)
    assert.same("http://example/", l.referer)
    assert.same("agent \\x227\\x22", l.ua) -- quotes escaped: the field ends at a bare quote
    assert.same("ok", l["end"])
    assert.is_nil(l.upstream) -- "-": it made no upstream request
    assert.is_true(l.ms >= 0 and l.ms < 5000)
    -- the line's time is the request's: between before and after (a month may turn meanwhile)
    local ok_before = os.date("!%Y %b", before) == l.time.year .. " " .. l.time.mon
    local ok_after = os.date("!%Y %b", after) == l.time.year .. " " .. l.time.mon
    assert.is_true(ok_before or ok_after, l.time.year .. " " .. l.time.mon)
  end)

  it("logs a 404 and a 500 as plain replies", function()
    local l = logged(srv, "/nowhere")
    assert.same({ "GET /nowhere HTTP/1.1", 404, "ok" }, { l.request, l.status, l["end"] })
    local l2, res = logged(srv, "/boom")
    assert.same({ "GET /boom HTTP/1.1", 500, "ok" }, { l2.request, l2.status, l2["end"] })
    assert.same(#res.body, l2.bytes)
  end)

  it("logs 0 bytes for a HEAD", function()
    local l = logged(srv, "/hello", nil, "HEAD")
    assert.same({ "HEAD /hello HTTP/1.1", 200, 0, "ok" }, { l.request, l.status, l.bytes, l["end"] })
  end)

  it("logs refused requests: a 400 with its request line, a head the gate refused as \"-\"", function()
    local from = #lines_of(srv.access) + 1
    -- evhttp parses it, rill refuses it (two Content-Lengths)
    local _, statuses = srv:exchange("GET /dup HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx")
    assert.same(400, statuses[1])
    local l = parse_combined(assert(wait_line(srv.access, "/dup", from)))
    assert.same({ "GET /dup HTTP/1.1", 400, "-", "refused" }, { l.request, l.status, l.id, l["end"] })
    -- a bad request line: the gate refuses the head before evhttp
    _, statuses = srv:exchange("GET /a b c HTTP/1.1\r\nHost: a\r\n\r\n")
    assert.same(400, statuses[1])
    -- a head too large: 431
    _, statuses = srv:exchange("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " .. ("a"):rep(40000) .. "\r\n\r\n")
    assert.same(431, statuses[1])
    local got = wait_for(function()
      local out = {}
      for i, line in ipairs(lines_of(srv.access)) do
        if i >= from and line:find('"-" 4', 1, true) then out[#out + 1] = parse_combined(line) end
      end
      return #out >= 2 and out
    end)
    assert.is_truthy(got, "no lines for the refused heads")
    assert.same({ 400, "-", "refused" }, { got[1].status, got[1].request, got[1]["end"] })
    assert.same({ 431, "-", "refused" }, { got[2].status, got[2].request, got[2]["end"] })
    assert.same("127.0.0.1", got[2].remote)
  end)

  it("logs a stream ended by its handler, with every body byte", function()
    local l = logged(srv, "/finite")
    assert.same({ 200, 8, "handler_end" }, { l.status, l.bytes, l["end"] })
  end)

  it("logs a stream cut by an error mid-stream", function()
    local l = logged(srv, "/broken")
    assert.same({ 200, 4, "error" }, { l.status, l.bytes, l["end"] })
  end)

  it("logs a stream ended by its client, with its whole life as duration", function()
    local s = srv:open("/forever", { headers = { ["x-request-id"] = "gone-1" } })
    assert.same("tick\n", s:chunk(T))
    local t0 = core.now()
    wait_for(function() return core.now() - t0 > 0.05 end) -- the stream lives a little
    s:close()
    local l = parse_combined(assert(wait_line(srv.access, " gone-1 ")))
    assert.same({ "GET /forever HTTP/1.1", 200, 5, "client_gone" }, { l.request, l.status, l.bytes, l["end"] })
    assert.is_true(l.ms >= 50, "duration " .. l.ms)
    assert.same(0, srv:settle(function(st) return st.streams == 0 end).streams)
  end)

  it("logs a subscriber the hub cut for being slow as slow_client, once its connection is gone", function()
    local s = srv:open("/events/slow?queue=1", { headers = { ["x-request-id"] = "slow-1" } })
    local big = ("b"):rep(128 * 1024)
    local cut = wait_for(function()
      srv:request({ method = "POST", path = "/publish/slow", body = big })
      return srv:log():find("too slow, disconnected", 1, true)
    end)
    assert.is_truthy(cut, "the hub did not cut the subscriber")
    -- its reply ends with what was queued: the line comes when the connection goes
    s:close()
    local l = parse_combined(assert(wait_line(srv.access, " slow-1 "), "no line for the slow subscriber"))
    assert.same({ "GET /events/slow?queue=1 HTTP/1.1", 200, "slow_client" }, { l.request, l.status, l["end"] })
    assert.is_true(l.bytes > 0)
  end)

  it("logs a subscriber hub.disconnect cut as disconnected, not slow_client", function()
    local s = srv:open("/events/dc", { headers = { ["x-request-id"] = "dc-1" } })
    local cut = wait_for(function()
      return srv:request({ method = "POST", path = "/disconnect/dc" }).body == "1"
    end)
    assert.is_truthy(cut, "hub.disconnect found no subscriber")
    s:close()
    local l = parse_combined(assert(wait_line(srv.access, " dc-1 "), "no line for the disconnected subscriber"))
    assert.same({ "GET /events/dc HTTP/1.1", 200, "disconnected" }, { l.request, l.status, l["end"] })
  end)

  it("cuts a long target, user agent and referer so that a line fits PIPE_BUF, ending each in ...", function()
    local target = "/hello?" .. ("t"):rep(6000)
    local ua = ("\xc3\xa9"):rep(1500) -- 3,000 bytes, each logged as \xHH
    srv:request({ path = target, headers = { ["x-request-id"] = "long-1", ["user-agent"] = ua,
                                             referer = ("r"):rep(3000) } })
    local line = assert(wait_line(srv.access, " long-1 "), "no line for the long request")
    assert.is_true(#line < 4096, "a line of " .. #line .. " bytes")
    local l = parse_combined(line)
    local logged_target = assert(l.request:match("^GET (%S+) HTTP/1%.1$"), l.request)
    assert.same(2048, #logged_target)
    assert.same(target:sub(1, 2045) .. "...", logged_target)
    assert.same("...", l.ua:sub(-3))
    assert.is_true(#l.ua <= 512 and #l.ua > 500, "user agent of " .. #l.ua)
    assert.same("...", (l.ua:gsub("\\x%x%x", ""))) -- cut between escapes, never inside one
    assert.same(("r"):rep(509) .. "...", l.referer)
  end)

  it("logs a refused HTTP/1.0 request as HTTP/1.0", function()
    local from = #lines_of(srv.access) + 1
    local _, statuses = srv:exchange("GET /dup10 HTTP/1.0\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx")
    assert.same(400, statuses[1])
    local l = parse_combined(assert(wait_line(srv.access, "/dup10", from)))
    assert.same({ "GET /dup10 HTTP/1.0", 400, "refused" }, { l.request, l.status, l["end"] })
  end)
end)

describe("the access log at SIGUSR1", function()
  it("reopens the file under its name: logrotate moves it, then signals", function()
    local srv = start()
    local ok, err = pcall(function()
      logged(srv, "/hello")
      assert(os.rename(srv.access, srv.access .. ".1"))
      srv.proc:kill("USR1")
      assert(srv:wait_log("logs reopened"), "no reopen line") -- said once both logs are reopened
      local l = logged(srv, "/finite")
      assert.same("handler_end", l["end"])
      assert.same(1, #lines_of(srv.access))
      assert.same(1, #lines_of(srv.access .. ".1"))
    end)
    cleanup(srv)
    assert(ok, err)
  end)
end)

describe("the access log, moved while a worker loads the app", function()
  it("reopens the file under its name once the worker is ready (the master sent it no SIGUSR1)", function()
    local dir = tmpdir()
    local log = dir .. "/access.log"
    local srv = test.server(APP, { args = { "--workers", "1", "--reload", "--pid-file", dir .. "/rill.pid",
                                            "--access-log", log },
                                   env = { ACCESS_LOG_MOVE = log } })
    local ok, err = pcall(function()
      assert.same(200, srv:get("/hello", { ["x-request-id"] = "moved-1" }).status)
      assert.is_truthy(wait_line(log, " moved-1 "), "the line went to the moved file")
      assert.same(0, #lines_of(log .. ".1"))
    end)
    local pids = worker_pids(srv)
    srv:stop("TERM", T)
    kill_left(pids)
    os.execute("rm -rf '" .. dir .. "'")
    assert(ok, err)
  end)
end)

describe("the access log at shutdown", function()
  it("logs a stream that a SIGTERM ended as shutdown", function()
    local srv = start()
    local ok, err = pcall(function()
      local s = srv:open("/forever", { headers = { ["x-request-id"] = "term-1" } })
      assert.same("tick\n", s:chunk(T))
      assert.same(0, srv:stop("TERM", T))
      s:close()
      local l = parse_combined(assert(wait_line(srv.access, " term-1 ")))
      assert.same({ 200, "shutdown" }, { l.status, l["end"] })
      assert.is_true(l.bytes >= 5) -- tick, and the retry: it got
    end)
    cleanup(srv)
    assert(ok, err)
  end)
end)

describe("the access log, streams cut by a timer", function()
  it("logs a stream whose client stopped reading, dropped by the inactivity timer, as timeout", function()
    local srv = start({ "--keepalive-timeout", "0.5" })
    local ok, err = pcall(function()
      -- a queue the hub never cuts: the client's unread output is what ends it
      local s = srv:open("/events/stuck?queue=100000", { headers = { ["x-request-id"] = "stuck-1" } })
      local big = ("b"):rep(128 * 1024)
      local line = wait_for(function()
        srv:request({ method = "POST", path = "/publish/stuck", body = big })
        return (read_file(srv.access):match("[^\n]* stuck%-1 [^\n]*"))
      end)
      s:close()
      assert.is_truthy(line, "no line for the stuck stream")
      local l = parse_combined(line)
      assert.same({ 200, "timeout" }, { l.status, l["end"] })
    end)
    cleanup(srv)
    assert(ok, err)
  end)

  it("logs a stream an old worker kept until the reload's drain deadline as drain", function()
    local dir = tmpdir()
    local log = dir .. "/access.log"
    local srv = test.server(APP, { args = { "--workers", "1", "--reload", "--pid-file", dir .. "/rill.pid",
                                            "--access-log", log, "--drain-timeout", "0.2" } })
    local ok, err = pcall(function()
      local s = srv:open("/forever", { headers = { ["x-request-id"] = "drain-1" } })
      assert.same("tick\n", s:chunk(T))
      srv.proc:kill("HUP")
      local l = parse_combined(assert(wait_line(log, " drain-1 "), "no line for the drained stream"))
      assert.same({ 200, "drain" }, { l.status, l["end"] })
      s:close()
    end)
    local pids = worker_pids(srv)
    srv:stop("TERM", T)
    kill_left(pids)
    os.execute("rm -rf '" .. dir .. "'")
    assert(ok, err)
  end)
end)

describe("the access log (json)", function()
  local srv
  setup(function() srv = start({ "--access-log-format", "json" }) end)
  teardown(function() cleanup(srv) end)

  it("writes one JSON object per line, strings escaped", function()
    srv:request({ path = "/hello?q=%22", headers = { ["x-request-id"] = "j-1", ["user-agent"] = 'a\\b"c\tt\xff\xc3\xa9' } })
    srv:request({ path = "/finite", headers = { ["x-request-id"] = "j-2" } })
    srv:request({ method = "HEAD", path = "/hello", headers = { ["x-request-id"] = "j-3" } })
    srv:exchange("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " .. ("a"):rep(40000) .. "\r\n\r\n")
    assert.is_truthy(wait_for(function() return #lines_of(srv.access) >= 4 end))
    -- a real parser, strict about control bytes and invalid UTF-8
    local cmd = ("python3 -c 'import json,sys\nfor l in open(sys.argv[1], encoding=\"utf-8\"): json.loads(l)' %s")
      :format(srv.access)
    assert.is_true(os.execute(cmd) == true, "python3 could not parse every line")
    local by = {}
    for _, l in ipairs(lines_of(srv.access)) do
      local v = assert(json.decode(l))
      by[v.request_id or v.status] = v
    end
    local a = by["j-1"]
    assert.same({ "GET", "/hello?q=%22", "1.1", 200, 6, "ok", "127.0.0.1" },
      { a.method, a.target, a.http_version, a.status, a.bytes_sent, a["end"], a.remote_addr })
    assert.same('a\\b"c\tt\u{fffd}\u{e9}', a.user_agent)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", a.time)
    assert.same("number", type(a.duration_ms))
    assert.is_nil(a.upstream_ms) -- JSON null: no rill.fetch
    assert.same({ "handler_end", 8 }, { by["j-2"]["end"], by["j-2"].bytes_sent })
    assert.same({ "HEAD", 0 }, { by["j-3"].method, by["j-3"].bytes_sent })
    assert.same({ 431, "refused" }, { by[431].status, by[431]["end"] })
    assert.is_nil(by[431].method)
    assert.same("127.0.0.1", a.peer_addr)
  end)

  it("cuts a long target and user agent at a UTF-8 boundary, ending in ..., in a line under PIPE_BUF", function()
    local target = "/hello?" .. ("t"):rep(6000)
    srv:request({ path = target, headers = { ["x-request-id"] = "j-long", ["user-agent"] = ("\xc3\xa9"):rep(1500) } })
    local line = assert(wait_line(srv.access, '"j-long"'), "no line for the long request")
    assert.is_true(#line < 4096, "a line of " .. #line .. " bytes")
    local cmd = ("python3 -c 'import json,sys\nfor l in open(sys.argv[1], encoding=\"utf-8\"): json.loads(l)' %s")
      :format(srv.access)
    assert.is_true(os.execute(cmd) == true, "python3 could not parse every line")
    local v = assert(json.decode(line))
    assert.same(target:sub(1, 2045) .. "...", v.target)
    assert.same(("\u{e9}"):rep(254) .. "...", v.user_agent) -- 508 bytes of whole characters, then ...
  end)
end)

describe("the access log with --trust-proxy", function()
  it("logs the client the proxy named as remote_addr, the proxy as peer_addr", function()
    local srv = start({ "--access-log-format", "json", "--trust-proxy", "127.0.0.1" })
    local ok, err = pcall(function()
      srv:request({ path = "/hello", headers = { ["x-request-id"] = "xff-1", ["x-forwarded-for"] = "203.0.113.7" } })
      local v = assert(json.decode(assert(wait_line(srv.access, '"xff-1"'), "no line")))
      assert.same({ "203.0.113.7", "127.0.0.1" }, { v.remote_addr, v.peer_addr })
    end)
    cleanup(srv)
    assert(ok, err)
  end)
end)

describe("a slow access log reader", function()
  it("drops lines and counts them, while requests and streams go on", function()
    local dir = tmpdir()
    local fifo = dir .. "/fifo"
    assert(os.execute("mkfifo " .. fifo))
    local reader = assert(io.open(fifo, "r+")) -- a reader that never reads, so rill's open succeeds
    local srv
    local ok, err = pcall(function()
      srv = test.server(APP, { args = { "--access-log", fifo } })
      local s = srv:open("/events/live")
      -- 500 lines of 3 KB (the fields' caps): past the pipe's 64 KiB and the 1 MiB buffer
      local ua, query = ("u"):rep(600), ("q"):rep(2100)
      local c = srv:connect()
      for i = 1, 500 do
        assert(c:send("GET /hello?" .. query .. " HTTP/1.1\r\nHost: a\r\nUser-Agent: " .. ua .. "\r\nReferer: " .. ua
          .. "\r\n\r\n"))
        local res = assert(test.response(c, "GET", T))
        assert.same(200, res.status)
        assert.same("hello\n", res:rest(T))
      end
      c:close() -- every reply came within its timeout: the blocked log stalled nothing
      srv:request({ method = "POST", path = "/publish/live", body = "still here" })
      local ev = s:event(T)
      assert.same("still here", ev and ev.data)
      s:close()
      assert.is_true(srv:stats().access_log_dropped > 0)
    end)
    local status = srv and srv:stop("TERM", T)
    local log = srv and srv:log() or ""
    reader:close()
    os.execute("rm -rf '" .. dir .. "'")
    assert(ok, err)
    assert.same(0, status)
    -- at exit, what the reader never took is counted and said
    assert.matches("access log: %d+ lines? lost at exit", log)
  end)
end)

describe("the access log behind a reader that comes back", function()
  it("gives it whole lines only, in order, and counts exactly the lines it missed", function()
    local dir = tmpdir()
    local fifo, copy = dir .. "/fifo", dir .. "/copy"
    assert(os.execute("mkfifo " .. fifo))
    local holder = assert(io.open(fifo, "r+")) -- keeps the pipe open, never reads
    local srv, cat
    local ok, err = pcall(function()
      srv = test.server(APP, { args = { "--access-log", fifo } })
      -- 500 lines of 3 KB: the pipe fills, then the buffer, then lines are dropped
      local ua, query = ("u"):rep(600), ("q"):rep(2100)
      local c = srv:connect()
      local function hello(target, agent)
        assert(c:send("GET " .. target .. " HTTP/1.1\r\nHost: a\r\nUser-Agent: " .. agent .. "\r\n\r\n"))
        local res = assert(test.response(c, "GET", T))
        assert.same("hello\n", res:rest(T))
      end
      for i = 1, 500 do hello("/hello?burst=" .. i .. "&" .. query, ua) end
      -- the reader comes back while more lines join the buffer's end: its front goes out as they
      -- come, the new lines dropped while the buffer is still past its limit, kept once it is not
      cat = core.spawn({ "sh", "-c", 'exec cat "$1" > "$2"', "sh", fifo, copy })
      local made, deadline = 0, core.now() + T
      repeat
        for _ = 1, 50 do
          made = made + 1
          hello("/hello?after=" .. made, "late")
        end
      until (made >= 300 and read_file(copy):find("after=", 1, true)) or core.now() > deadline
      made = made + 1
      hello("/hello?after=" .. made, "late") -- an after line got through: so does this one
      c:close()
      assert(wait_line(copy, "/hello?after=" .. made .. " "), "the last line never came")
      local dropped = srv:stats().access_log_dropped
      local seq = {}
      for _, l in ipairs(lines_of(copy)) do
        local f = parse_combined(l) -- every line whole: no tear, no two glued together
        local b = f.request:match("^GET /hello%?burst=(%d+)&")
        local a = f.request:match("^GET /hello%?after=(%d+) ")
        if b or a then seq[#seq + 1] = b and tonumber(b) or 500 + tonumber(a) end
      end
      for i = 2, #seq do assert.is_true(seq[i] > seq[i - 1], "lines out of order") end
      -- every line the reader missed was counted, none more: lines seen + dropped = lines made
      assert.same(500 + made, #seq + dropped)
      assert.is_true(dropped > 0, "nothing was dropped: the test did not fill the buffer")
    end)
    local status = srv and srv:stop("TERM", T)
    holder:close()
    if cat then cat:wait(T) end
    os.execute("rm -rf '" .. dir .. "'")
    assert(ok, err)
    assert.same(0, status)
  end)
end)

describe("the access log on a stdout that is a socket (journald)", function()
  -- python3 spawns rill with fd 1 one end of a socketpair, as systemd does
  local SCRIPT = [[
import fcntl, os, re, shlex, socket, subprocess, sys, urllib.request
a, b = socket.socketpair()
p = subprocess.Popen(shlex.split(sys.argv[1]) + [sys.argv[2], "--listen", "127.0.0.1:0", "--access-log", "-"],
                     stdout=b.fileno(), stderr=subprocess.PIPE, text=True)
try:
    port = None
    while port is None:
        l = p.stderr.readline()
        if not l: sys.exit("rill exited: no listening line")
        m = re.search(r"listening on http://[^:]+:(\d+)", l)
        port = m and m.group(1)
    urllib.request.urlopen("http://127.0.0.1:%s/hello" % port, timeout=10).read()
    a.settimeout(10)
    line = a.recv(65536).decode()
    if '"GET /hello HTTP/1.1" 200 6' not in line: sys.exit("no line: %r" % line)
    if fcntl.fcntl(b.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK: sys.exit("the shared socket became O_NONBLOCK")
finally:
    p.terminate()
    p.wait()
]]

  it("writes lines to it and leaves its shared description blocking", function()
    local dir = tmpdir()
    local f = assert(io.open(dir .. "/stdout_socket.py", "w"))
    f:write(SCRIPT)
    f:close()
    local ok = os.execute(("python3 %s '%s' %s"):format(dir .. "/stdout_socket.py", test.bin, APP))
    os.execute("rm -rf '" .. dir .. "'")
    assert.is_true(ok == true, "rill on a socket stdout: see the script's message above")
  end)
end)

describe("the access log with --workers 2", function()
  local proc_state = procs.proc_state

  it("has both workers write whole lines to one file", function()
    local pids = {}
    local dir = tmpdir()
    local log = dir .. "/access.log"
    local srv = test.server(APP, { args = { "--workers", "2", "--pid-file", dir .. "/rill.pid", "--access-log", log } })
    local ok, err = pcall(function()
      wait_for(function()
        pids = worker_pids(srv)
        return #pids >= 2
      end)
      assert.same(2, #pids)
      -- each worker in turn serves 50 requests, the other one SIGSTOPped (it cannot accept)
      for w = 1, 2 do
        local other = pids[3 - w]
        assert(os.execute("kill -s STOP " .. other))
        local stopped = wait_for(function() return proc_state(other) == "T" end)
        local ok2, err2 = pcall(function()
          assert.is_truthy(stopped)
          -- the id names the worker serving it: the other one is stopped
          for i = 1, 50 do
            assert.same(200, srv:get("/hello", { ["x-request-id"] = ("w%d-%d"):format(pids[w], i) }).status)
          end
        end)
        assert(os.execute("kill -s CONT " .. other))
        assert(ok2, err2)
      end
      assert.is_truthy(wait_for(function() return #lines_of(log) >= 100 end))
      local prefixes = {}
      for _, l in ipairs(lines_of(log)) do
        local p = parse_combined(l)
        assert.same("GET /hello HTTP/1.1", p.request)
        prefixes[assert(p.id:match("^w(%d+)%-%d+$"), p.id)] = true
      end
      local n = 0
      for _ in pairs(prefixes) do n = n + 1 end
      assert.same(2, n) -- each worker wrote its own 50 lines
      assert.same("\n", read_file(log):sub(-1))
    end)
    srv:stop("TERM", T)
    kill_left(pids)
    os.execute("rm -rf '" .. dir .. "'")
    assert(ok, err)
  end)
end)
