-- SPDX-License-Identifier: MIT
-- rill.fetch end to end: spec/apps/proxy.lua relays spec/apps/upstream.lua.
local test = require "rill.test"
local url = require "socket.url"

-- The upstream and the proxy each describe below runs; stopped cleanly at its end.
local function start_pair()
  local pair = { upstream = test.server("spec/apps/upstream.lua"), proxy = test.server("spec/apps/proxy.lua") }
  pair.up = ("http://127.0.0.1:%d"):format(pair.upstream.port)
  return pair
end

local function stop_pair(pair)
  assert.same(0, pair.proxy:stop(), pair.proxy:log())
  assert.same(0, pair.upstream:stop(), pair.upstream:log())
end

describe("rill.fetch", function()
  local pair, upstream, proxy, up
  setup(function()
    pair = start_pair()
    upstream, proxy, up = pair.upstream, pair.proxy, pair.up
  end)
  teardown(function() stop_pair(pair) end)

  local function via(route, path, extra)
    return ("/%s?up=%s%s"):format(route, url.escape(up .. path), extra or "")
  end

  local function event(i)
    return ("id: %d\ndata: %d %s\n\n"):format(i, i, ("x"):rep(20000))
  end

  it("relays a slow event stream as it arrives, byte for byte", function()
    local s = proxy:open(via("lines", "/events"))
    assert.same(200, s.status)
    assert.same("text/event-stream", s.headers["content-type"])
    -- event 0 (3 lines) arrives while the upstream cannot have sent event 2
    local got = {}
    while #table.concat(got) < #event(0) do got[#got + 1] = assert(s:chunk(5)) end
    assert.same(event(0), table.concat(got))
    assert.is_nil(upstream:log():find("upstream: sending 2", 1, true))
    assert.same("released\n", upstream:get("/release").body)
    local rest, _, ending = s:rest(5)
    assert.same("end", ending)
    local want = {}
    for i = 1, 9 do want[#want + 1] = event(i) end
    assert.same(table.concat(want), rest)
    s:close()
  end)

  it("relays chunks as they arrive", function()
    local s = proxy:open(via("chunks", "/forever"))
    assert.same("tick\n", s:chunk(5))
    assert.same("tick\n", s:chunk(5))
    s:close()
  end)

  it("gives status and headers before the body, and reads a whole body", function()
    local res = proxy:get(via("read", "/json"))
    assert.same('200 application/json {"ok":true}', res.body)
  end)

  it("sends the method, headers and body of the request", function()
    assert.same("POST yes payload", proxy:get(via("post", "/echo")).body)
  end)

  it("keeps line terminators and delivers a last line without one", function()
    local res = proxy:get(via("lines", "/unterminated"))
    assert.same({ "a\n", "b\r\n", "no newline" }, res.chunks)
  end)

  it("resolves a host name without blocking the loop", function()
    local res = proxy:get("/read?up=" .. url.escape(("http://localhost:%d/json"):format(upstream.port)))
    assert.same('200 application/json {"ok":true}', res.body)
  end)

  it("answers connection refused with an error value", function()
    local res = proxy:get("/read?up=" .. url.escape("http://127.0.0.1:9/"))
    assert.same(502, res.status)
    assert.matches("^refused connect 127.0.0.1:9: ", res.body)
  end)

  it("answers a name that does not resolve with a dns error", function()
    local res = proxy:get("/read?up=" .. url.escape("http://no-such-host.invalid/"))
    assert.same(502, res.status)
    assert.matches("^dns resolve no%-such%-host%.invalid: ", res.body)
  end)

  it("times out an upstream that sends no head", function()
    local res = proxy:get(via("status", "/slow-head", "&timeout=0.2"))
    assert.same(502, res.status)
    assert.matches("^timeout .*no response in time", res.body)
  end)

  it("times out an upstream that stalls between bytes", function()
    local res = proxy:get(via("read", "/stall", "&idle=0.2"))
    assert.same(502, res.status)
    assert.matches("^timeout .*no data for 0.2 s", res.body)
  end)

  it("reports a truncated upstream body", function()
    local res = proxy:get(via("read", "/truncated"))
    assert.same(502, res.status)
    assert.matches("^truncated .*truncated body", res.body)
  end)

  it("truncates the relayed stream when the upstream is truncated", function()
    local res = proxy:get(via("lines", "/truncated"))
    assert.same({ "partial\n" }, res.chunks)
    assert.same("closed", res.ending) -- never a clean end
    assert.is_truthy(proxy:wait_log("fetch failed (truncated)"))
  end)

  it("refuses a body larger than max_body", function()
    local res = proxy:get(via("read", "/big", "&max=1000000"))
    assert.same(502, res.status)
    assert.matches("^too_large body larger than 1000000 bytes", res.body)
  end)

  it("closes the upstream within a second of the client leaving", function()
    local s = proxy:open(via("chunks", "/forever"))
    assert.same("tick\n", s:chunk(5))
    s:close()
    assert.is_truthy(upstream:wait_log("upstream: forever closed", 1))
    local st = proxy:settle(function(x) return x.active == 0 end)
    assert.same(0, st.active)
  end)

  it("closes the upstream when the handler ends without reading the body", function()
    assert.same("abandoned 200\n", proxy:get(via("abandon", "/forever")).body)
    assert.is_truthy(upstream:wait_log("upstream: forever closed", 1))
  end)

  it("decodes a gzip upstream incrementally, each flushed block at once", function()
    local s = proxy:open(via("gunzip", "/gzip"))
    assert.same("none", s.headers["x-encoding"]) -- the decoded body has no encoding
    assert.same("data: one\n", s:chunk(5)) -- before the upstream produced event two
    assert.same("\n", s:chunk(5))
    assert.same("released\n", upstream:get("/gzip-release").body)
    local rest, _, ending = s:rest(5)
    assert.same("data: two\n\n", rest)
    assert.same("end", ending)
    s:close()
  end)

  it("passes gzip bytes through untouched unless asked to decode", function()
    assert.matches("^gzip %d+$", proxy:get(via("raw-encoding", "/gzip-bad")).body)
  end)

  it("answers corrupt gzip before the body with a protocol error", function()
    local res = proxy:get(via("gunzip", "/gzip-bad"))
    assert.same(502, res.status)
    assert.matches("^protocol .*gzip: incorrect header check", res.body)
  end)

  it("truncates a relay whose gzip data turns corrupt mid-stream", function()
    local s = proxy:open(via("gunzip", "/gzip-corrupt"))
    assert.same("data: one\n", s:chunk(5))
    assert.same("\n", s:chunk(5))
    assert.same("released\n", upstream:get("/gzip-release").body)
    local _, _, ending = s:rest(5)
    assert.same("closed", ending)
    s:close()
    assert.is_truthy(proxy:wait_log("fetch failed (protocol)"))
  end)

  it("runs 1,000 fetches at once in one worker", function()
    local before = proxy:stats()
    local socks = {}
    for i = 1, 1000 do
      socks[i] = proxy:connect()
      socks[i]:send(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n"):format(via("read", "/json")))
    end
    local ok = 0
    for i = 1, 1000 do
      socks[i]:settimeout(20)
      local status = socks[i]:receive("*l")
      if status == "HTTP/1.1 200 OK" then ok = ok + 1 end
      socks[i]:close()
    end
    assert.same(1000, ok)
    -- what is left open is exactly the idle connections kept for reuse
    local function settled(x) return x.active == 0 and x.fds - x.idle == before.fds - before.idle end
    local after = proxy:settle(settled)
    assert.same(before.fds - before.idle, after.fds - after.idle)
    assert.is_true(after.idle <= 64)
  end)

  it("reuses the connection for sequential requests to one upstream", function()
    local a, b = proxy:get(via("twice", "/port")).body:match("^(%d+) (%d+)$")
    assert.is_truthy(a)
    assert.same(a, b)
  end)

  it("retries on a new connection when a reused one closes before answering", function()
    local core = require "rill.core"
    local raw <close> = core.spawn({ "lua5.4", "spec/support/raw_upstream.lua" })
    local line = assert(raw:wait_for("raw upstream listening on", 10))
    local raw_up = url.escape("http://127.0.0.1:" .. line:match("(%d+)$") .. "/once")
    -- the second fetch goes out on conn 1, which the upstream then closes unanswered
    assert.same("conn 1 conn 2", proxy:get("/twice?up=" .. raw_up).body)
    assert.is_truthy(raw:wait_for("closing connection 1 on its request 2", 5))
  end)

  it("answers a response that is not HTTP with a protocol error", function()
    local core = require "rill.core"
    local raw <close> = core.spawn({ "lua5.4", "spec/support/raw_upstream.lua" })
    local line = assert(raw:wait_for("raw upstream listening on", 10))
    local res = proxy:get("/read?up=" .. url.escape("http://127.0.0.1:" .. line:match("(%d+)$") .. "/garbage"))
    assert.same(502, res.status)
    assert.matches("^protocol .*malformed status line", res.body)
  end)
end)

describe("rill.fetch's options", function()
  local rill = require "rill"
  local upstream, up
  setup(function()
    upstream = test.server("spec/apps/upstream.lua")
    up = ("http://127.0.0.1:%d/port"):format(upstream.port)
  end)
  teardown(function() assert.same(0, upstream:stop(), upstream:log()) end)

  -- The error that fn raises inside rill.run (nil when it raises none).
  local function raised(fn)
    local ok, err = pcall(rill.run, fn)
    return not ok and err or nil
  end

  it("refuses a duration that is not finite, negative or absurd, naming the option", function()
    for _, name in ipairs({ "timeout", "idle_timeout" }) do
      for _, bad in ipairs({ 0 / 0, math.huge, -math.huge, 1e300, -1, "5" }) do
        local err = raised(function() rill.fetch(up, { [name] = bad }) end)
        assert.matches("bad argument #2 to 'fetch' %(" .. name .. ": number", err)
      end
    end
  end)

  it("refuses a max_body that is not a size", function()
    for _, bad in ipairs({ 0 / 0, math.huge, 1e300, -1, 1.5 }) do
      local err = raised(function() rill.fetch(up, { max_body = bad }) end)
      assert.matches("bad argument #2 to 'fetch' %(max_body: integer from 0 to", err)
    end
  end)

  it("refuses a max_line for up:lines() that is not a positive size", function()
    for _, bad in ipairs({ -1, 0, 0 / 0, math.huge, 1e300, 2.5 }) do
      local err = raised(function()
        local res <close> = assert(rill.fetch(up))
        res:lines(bad)
      end)
      assert.matches("bad argument #1 to 'lines' %(integer from 1 to", err)
    end
  end)

  it("refuses a header table with a name that is not a string, naming it", function()
    local err = raised(function() rill.fetch(up, { headers = { "x-list-item" } }) end)
    assert.matches("bad argument #2 to 'fetch' %(a header name must be a string, got number%)", err)
  end)

  it("takes durations and sizes in range", function()
    assert.is_nil(raised(function()
      local res <close> = assert(rill.fetch(up, { timeout = 5, idle_timeout = 0.5, max_body = 100 }))
      assert.matches("^%d+$", res:read())
    end))
    assert.is_nil(raised(function()
      local res <close> = assert(rill.fetch(up))
      for line in res:lines(1000) do assert.matches("^%d+$", line) end
    end))
  end)
end)

describe("rill.fetch over https", function()
  local core = require "rill.core"
  local dir, tls, proxy, base

  -- a self-signed certificate for localhost and 127.0.0.1, and one for another name
  local function make_cert(name, san)
    local cmd = ("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=%s -addext subjectAltName=%s "
      .. "-keyout %s/%s.key -out %s/%s.pem 2>/dev/null"):format(name, san, dir, name, dir, name)
    assert(os.execute(cmd))
  end

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    make_cert("localhost", "DNS:localhost,IP:127.0.0.1")
    make_cert("other", "DNS:other.example")
    tls = core.spawn({ "lua5.4", "spec/support/tls_upstream.lua", dir .. "/localhost.pem", dir .. "/localhost.key" })
    local line = assert(tls:wait_for("tls upstream listening on", 10), tls:log())
    base = "https://127.0.0.1:" .. line:match("(%d+)$")
    proxy = test.server("spec/apps/proxy.lua")
  end)
  teardown(function()
    assert.same(0, proxy:stop(), proxy:log())
    tls:close()
    os.execute("rm -rf " .. dir)
  end)

  local function via(path, extra)
    return ("/tls?up=%s%s"):format(url.escape(base .. path), extra or "")
  end

  it("fetches from a server whose certificate the given CA file vouches for", function()
    local res = proxy:get(via("/hello", "&ca=" .. url.escape(dir .. "/localhost.pem")))
    assert.same(200, res.status)
    assert.same("hello\n", res.body)
  end)

  it("streams an https event stream as it arrives", function()
    local s = proxy:open(via("/events", "&ca=" .. url.escape(dir .. "/localhost.pem")))
    assert.same("data: tls 1\n", s:chunk(5))
    assert.same("\n", s:chunk(5))
    local rest, _, ending = s:rest(5)
    assert.same("data: tls 2\n\ndata: tls 3\n\n", rest)
    assert.same("end", ending)
    s:close()
  end)

  it("refuses a certificate no trusted CA signed, with a tls error", function()
    local res = proxy:get(via("/hello"))
    assert.same(502, res.status)
    assert.matches("^tls tls 127.0.0.1:%d+: certificate: self.signed certificate", res.body)
  end)

  it("refuses a certificate for another host name", function()
    local res = proxy:get(via("/hello", "&ca=" .. url.escape(dir .. "/other.pem")))
    assert.same(502, res.status)
    assert.matches("^tls ", res.body)
  end)

  it("skips the checks only when asked with insecure", function()
    assert.same("hello\n", proxy:get(via("/hello", "&insecure=1")).body)
  end)
end)

describe("server-sent events from an upstream", function()
  local pair, upstream, proxy, up
  setup(function()
    pair = start_pair()
    upstream, proxy, up = pair.upstream, pair.proxy, pair.up
  end)
  teardown(function() stop_pair(pair) end)

  -- the events of an encoded stream (our encoder writes LF line ends)
  local function parse(body)
    local events = {}
    for block in body:gmatch("(.-)\n\n") do
      local ev = {}
      for name, value in block:gmatch("([^:\n]*): ?([^\n]*)") do
        ev[name] = ev[name] and (ev[name] .. "\n" .. value) or value
      end
      events[#events + 1] = ev
    end
    return events
  end

  local function data_of(events)
    local out = {}
    for _, ev in ipairs(events) do
      if ev.data then out[#out + 1] = ev.data end
    end
    return out
  end

  it("parses events and passes id and retry blocks through", function()
    local res = proxy:get(("/events?up=%s"):format(url.escape(up .. "/resumable")))
    local events = parse(res.body)
    assert.same({ retry = "10" }, events[1]) -- the BOM was stripped, the retry block kept
    assert.same({ id = "1", data = "event 1" }, events[2])
    assert.same({ "event 1", "event 2", "event 3" }, data_of(events)) -- the partial event is dropped
  end)

  it("follows an upstream through drops: every event once, in order", function()
    local res = proxy:get(("/follow?up=%s"):format(url.escape(up .. "/resumable")))
    assert.same("end", res.ending) -- the upstream's 204 ends the follow
    local want = {}
    for i = 1, 10 do want[i] = "event " .. i end
    assert.same(want, data_of(parse(res.body)))
    assert.is_nil(res.body:find("partial", 1, true))
    -- each reconnect resumed from the last complete event's id
    for _, from in ipairs({ "start", "3", "6", "9", "10" }) do
      assert.is_truthy(upstream:wait_log("upstream: resumable from " .. from), from)
    end
  end)

  it("resumes from the client's own Last-Event-ID", function()
    local res = proxy:request({ path = ("/follow?up=%s"):format(url.escape(up .. "/resumable")),
      headers = { ["Last-Event-ID"] = "7" } })
    assert.same({ "event 8", "event 9", "event 10" }, data_of(parse(res.body)))
  end)

  it("stops when the upstream answers 204", function()
    local res = proxy:get(("/follow?up=%s"):format(url.escape(up .. "/no-content")))
    assert.same(200, res.status)
    assert.same("", res.body)
    assert.same("end", res.ending)
  end)

  it("fails like a browser on an answer that is not an event stream", function()
    local res = proxy:get(("/follow?up=%s"):format(url.escape(up .. "/json")))
    assert.same("closed", res.ending)
    assert.is_truthy(proxy:wait_log("upstream answered 200 application/json"))
  end)

  it("hangs up the upstream when its own client leaves", function()
    local s = proxy:open(("/follow?up=%s"):format(url.escape(up .. "/tick-events")))
    assert.matches("data: tick 1\n", s:chunk(5))
    s:close()
    assert.is_truthy(upstream:wait_log("upstream: tick-events closed"))
  end)

  it("does not spin on an upstream that answers empty streams", function()
    local s = proxy:open(("/follow?up=%s"):format(url.escape(up .. "/empty-stream")))
    assert.is_nil(s:chunk(0.5)) -- half a second of nothing to relay
    s:close()
    -- with a 10 ms floor doubling up to 5 s, half a second holds a handful of attempts
    local hits = tonumber(upstream:get("/empty-hits").body)
    assert.is_true(hits >= 2 and hits <= 10, "hits: " .. hits)
  end)
end)
