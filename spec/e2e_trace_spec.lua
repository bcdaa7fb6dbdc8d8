-- SPDX-License-Identifier: MIT
-- Trace context end to end: rill.fetch inside a request sends traceparent and
-- x-request-id upstream (spec/apps/trace.lua calling another instance of itself).
local test = require "rill.test"
local url = require "socket.url"

local TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

-- The parts of a traceparent, or nil when it is not a version-00 one.
local function parts(tp)
  return tp:match("^00%-(%x+)%-(%x+)%-(%x%x)$")
end

describe("trace context to upstreams", function()
  local upstream, proxy
  setup(function()
    upstream = test.server("spec/apps/trace.lua")
    proxy = test.server("spec/apps/trace.lua")
  end)
  teardown(function()
    assert.same(0, proxy:stop(), proxy:log())
    assert.same(0, upstream:stop(), upstream:log())
  end)

  -- What the upstream got when proxy's handler fetched it, and the proxy's req.id.
  local function via(headers, extra)
    local up = ("http://127.0.0.1:%d/echo"):format(upstream.port)
    local res = proxy:get("/via?up=" .. url.escape(up) .. (extra or ""), headers)
    assert.same(200, res.status, res.body)
    return {
      id = res.body:match("^id=([^\n]*)\n"),
      traceparent = res.body:match("\ntraceparent=([^\n]*)\n"),
      request_id = res.body:match("\nx%-request%-id=([^\n]*)\n"),
    }
  end

  it("sends the incoming trace id with a new span id, its flags, and req.id", function()
    local got = via({ traceparent = TP })
    local trace, span, flags = parts(got.traceparent)
    assert.same("4bf92f3577b34da6a3ce929d0e0e4736", trace)
    assert.same(16, #span)
    assert.are_not.equal("00f067aa0ba902b7", span)
    assert.are_not.equal(("0"):rep(16), span)
    assert.same("01", flags)
    assert.same("4bf92f3577b34da6a3ce929d0e0e4736", got.id) -- req.id is the trace id
    assert.same(got.id, got.request_id)
    local other = via({ traceparent = TP })
    assert.are_not.equal(span, select(2, parts(other.traceparent)))
    assert.same("00", select(3, parts(via({ traceparent = TP:sub(1, -3) .. "00" }).traceparent)))
  end)

  it("keeps x-request-id as req.id, with the traceparent's trace id", function()
    local got = via({ traceparent = TP, ["X-Request-Id"] = "abc-123" })
    assert.same("abc-123", got.id)
    assert.same("abc-123", got.request_id)
    assert.same("4bf92f3577b34da6a3ce929d0e0e4736", (parts(got.traceparent)))
  end)

  it("starts a trace without a traceparent, and req.id is its trace id", function()
    local got = via()
    local trace, span, flags = parts(got.traceparent)
    assert.same(32, #trace)
    assert.same(16, #span)
    assert.same("01", flags)
    assert.same(trace, got.id)
    assert.same(trace, got.request_id)
    assert.are_not.equal(trace, (parts(via().traceparent)))
  end)

  it("ignores an invalid traceparent and never echoes it", function()
    local invalid = {
      TP:sub(1, -2), -- too short
      TP .. "-x", -- version 00 with more after the flags
      TP:gsub("4bf9", "4BF9"), -- upper case
      TP:gsub("4bf9", "4bg9"), -- not hex
      "ff" .. TP:sub(3), -- version ff
      "00-" .. ("0"):rep(32) .. "-00f067aa0ba902b7-01", -- all-zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-" .. ("0"):rep(16) .. "-01", -- all-zero span id
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      ("x"):rep(2000),
    }
    for _, tp in ipairs(invalid) do
      local got = via({ traceparent = tp })
      local trace = parts(got.traceparent)
      assert.same(32, #trace, tp)
      assert.are_not.equal("4bf92f3577b34da6a3ce929d0e0e4736", trace, tp)
      assert.are_not.equal(("0"):rep(32), trace, tp)
      assert.same(trace, got.id, tp)
    end
  end)

  it("passes on only the flags it knows (sampled, random), unknown ones zero", function()
    local function flags(f) return select(3, parts(via({ traceparent = TP:sub(1, -3) .. f }).traceparent)) end
    assert.same("03", flags("ff"))
    assert.same("02", flags("02"))
    assert.same("01", flags("09"))
    assert.same("00", flags("f0"))
  end)

  it("takes two traceparent lines as invalid: a new trace", function()
    local got = via({ traceparent = { TP, TP } })
    local trace = parts(got.traceparent)
    assert.same(32, #trace)
    assert.are_not.equal("4bf92f3577b34da6a3ce929d0e0e4736", trace)
    assert.same(trace, got.id)
  end)

  it("ignores two x-request-id lines: req.id is the trace id", function()
    local got = via({ traceparent = TP, ["X-Request-Id"] = { "abc", "def" } })
    assert.same("4bf92f3577b34da6a3ce929d0e0e4736", got.id)
    assert.same(got.id, got.request_id)
  end)

  it("takes a later version's traceparent and sends version 00", function()
    local got = via({ traceparent = "01" .. TP:sub(3) .. "-future" })
    assert.same("4bf92f3577b34da6a3ce929d0e0e4736", (parts(got.traceparent)))
  end)

  it("keeps the handler's own traceparent and x-request-id, in any case", function()
    local got = via({ traceparent = TP }, "&own=1")
    assert.same("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", got.traceparent)
    assert.same("mine", got.request_id)
  end)

  it("adds nothing outside a request (rill.run)", function()
    local rill = require "rill"
    local body = rill.run(function()
      local up = assert(rill.fetch(("http://127.0.0.1:%d/echo"):format(upstream.port)))
      return up:read()
    end)
    assert.same("traceparent=nil\nx-request-id=nil\n", body)
  end)
end)

-- A publish followed to its deliveries by trace id in the debug log, on each
-- backplane: in process, the master relay (--workers 2), Redis (--hub).
describe("trace ids on hub publishes (--log-level debug)", function()
  local W = require "spec.support.workers"
  local TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

  -- Publishes with a traceparent on c and checks srv's log for the publish and a delivery.
  local function check(srv, c)
    local start = W.publish(c, "traced", "start")
    local s = srv:open("/events/traced", { headers = { ["Last-Event-ID"] = start } })
    assert(c.sock:send(("POST /pub/traced HTTP/1.1\r\nHost: rill\r\ntraceparent: %s\r\nContent-Length: 1\r\n\r\nx")
      :format(TP)))
    local id = W.read_publish(c)
    assert.same({ id .. " x" }, W.events(s, 1))
    s:close()
    assert(srv:wait_log("publishes to 'traced' (trace " .. TRACE .. ")"), srv:log())
    assert(srv:wait_log("hub: event " .. id .. " of 'traced' to 1 subscribers here (trace " .. TRACE .. ")"), srv:log())
  end

  it("in one process", function()
    local srv = test.server("spec/apps/workers.lua", { args = { "--log-level", "debug" } })
    local ok, err = pcall(function() check(srv, W.connect(srv)) end)
    srv:stop()
    assert(ok, err)
  end)

  it("across the master relay", function()
    local srv = W.start("spec/apps/workers.lua", { workers = 2, args = { "--log-level", "debug" } })
    local ok, err = pcall(function()
      local pids = {}
      for _, pid in pairs(W.current(srv)) do pids[#pids + 1] = pid end
      -- published on one worker, delivered on the other: the trace crossed the relay
      local c = W.pinned(srv, pids[1])
      local start = W.publish(c, "traced", "start")
      local s = W.stream_on(srv, pids[2], "/events/traced", { ["Last-Event-ID"] = start })
      assert(c.sock:send(("POST /pub/traced HTTP/1.1\r\nHost: rill\r\ntraceparent: %s\r\nContent-Length: 1\r\n\r\nx")
        :format(TP)))
      local id = W.read_publish(c)
      assert.same({ id .. " x" }, W.events(s, 1))
      s:close()
      local line = W.wait_line(srv, ("debug: hub: event %s of 'traced' to 1 subscribers here (trace %s)"):format(id, TRACE), 1)
      assert.equal(tostring(pids[2]), line:match("rill%[(%d+)%]")) -- delivered where it was not published
    end)
    W.kill_all(srv)
    assert(ok, err)
  end)

  it("through Redis", function()
    local redis = require "spec.support.redis"
    local r = redis.start {}
    local srv = test.server("spec/apps/redis_hub.lua", { args = { "--log-level", "debug", "--hub", r:url() } })
    local ok, err = pcall(function() check(srv, W.connect(srv)) end)
    srv:stop()
    redis.kill_all()
    assert(ok, err)
  end)
end)

describe("the hub's debug lines", function()
  local srv
  setup(function() srv = test.server("spec/apps/hub.lua", { args = { "--log-level", "debug" } }) end)
  teardown(function() assert.same(0, srv:stop(), srv:log()) end)

  local function publish(path, body)
    return srv:request({ method = "POST", path = path, body = body or "x", headers = { traceparent = TP } })
  end

  it("name an event that the history drops at once (larger than history_bytes)", function()
    assert.same(200, srv:request({ method = "POST", path = "/configure?history_bytes=16" }).status)
    local s = srv:open("/events/tiny")
    local res = publish("/publish/tiny", ("x"):rep(64))
    assert.same(202, res.status)
    s:close() -- (an event the history cannot hold cuts its subscribers: they resume with a gap)
    assert(srv:wait_log("hub: event " .. res.body .. " of 'tiny' to 1 subscribers here (trace 4bf92f3577b34da6a3ce929d0e0e4736)"), srv:log())
    srv:request({ method = "POST", path = "/configure?history_bytes=4194304" })
  end)

  it("escape a topic name's control bytes, so a name cannot forge a line", function()
    assert.same(202, publish("/publish/a%0Arill:%20error:%20forged").status)
    assert(srv:wait_log("publishes to 'a\\x0Arill: error: forged'"), srv:log())
    assert.is_nil(srv:log():find("\nrill: error: forged", 1, true), srv:log())
  end)
end)
