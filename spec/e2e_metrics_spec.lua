-- SPDX-License-Identifier: MIT
-- rill.metrics() and rill.stats() end to end, against spec/apps/metrics.lua:
-- the scrape is parsed by Prometheus's own client (Debian's
-- python3-prometheus-client), and its counters move as requests, streams,
-- fetches and hub events happen; with --workers 2 one scrape is the sum over
-- both workers, and a worker's death takes nothing back from a total.
local core = require "rill.core"
local socket = require "socket"
local test = require "rill.test"
local procs = require "spec.support.procs"
local W = require "spec.support.workers"

local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10
local APP = "spec/apps/metrics.lua"
local PYTHON = "/usr/bin/python3" -- Debian's, where python3-prometheus-client is installed

-- The scrape of srv, parsed by the Prometheus client: samples["name{k=v,...}"] = value, types[family].
local function scrape(srv)
  local res = srv:get("/metrics")
  assert.equal(200, res.status)
  assert.equal("text/plain; version=0.0.4; charset=utf-8", res.headers["content-type"])
  local dir = procs.tmpdir()
  local f = assert(io.open(dir .. "/scrape.txt", "w"))
  f:write(res.body)
  f:close()
  local p = assert(io.popen(("%s spec/support/prom_parse.py %s/scrape.txt 2>&1"):format(PYTHON, dir)))
  local out = p:read("a")
  local ok = p:close()
  os.execute("rm -rf '" .. dir .. "'")
  assert(ok, "the Prometheus parser refused the scrape: " .. out)
  local samples, types = {}, {}
  for line in out:gmatch("[^\n]+") do
    local a, b, c = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    if a == "#type" then
      types[b] = c
    else
      samples[a .. "{" .. b .. "}"] = tonumber(c)
    end
  end
  return samples, types, res.body
end

local function value(samples, key)
  local v = samples[key]
  assert(v, "no sample " .. key)
  return v
end

local function eventually(pred, what)
  local deadline = core.now() + T
  while not pred() do
    assert(core.now() < deadline, "timed out waiting for " .. what)
    socket.sleep(0.02)
  end
end

-- A loopback port nothing listens on (bound, then closed).
local function closed_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

describe("rill.metrics()", function()
  local srv
  setup(function() srv = test.server(APP, { timeout = T }) end)
  teardown(function() assert.equal(0, srv:stop(), srv:log()) end)

  it("serves text that Prometheus's parser reads, with the documented families and types", function()
    local _, types = scrape(srv)
    local want = {
      rill_workers = "gauge", rill_http_requests = "counter", rill_http_request_duration_seconds = "histogram",
      rill_http_stream_duration_seconds = "histogram", rill_http_streams_ended = "counter",
      rill_http_response_bytes = "counter", rill_http_connections = "gauge", rill_http_streams = "gauge",
      rill_handler_errors = "counter", rill_handler_budget_stops = "counter", rill_lua_memory_stops = "counter",
      rill_fetch_requests = "counter", rill_fetch_duration_seconds = "histogram", rill_tails = "gauge",
      rill_tails_opened = "counter", rill_hub_topics = "gauge", rill_hub_subscribers = "gauge",
      rill_hub_events_published = "counter", rill_hub_events_delivered = "counter",
      rill_hub_subscribers_dropped = "counter", rill_hub_gaps = "counter", rill_hub_events_evicted = "counter",
      rill_hub_backplane_connected = "gauge", rill_hub_backplane_reconnects = "counter",
      rill_hub_backplane_lag_seconds = "gauge", rill_lua_memory_bytes = "gauge", rill_open_fds = "gauge",
      rill_access_log_dropped = "counter",
    }
    assert.same(want, types) -- the parser names a counter's family without _total
  end)

  it("counts requests by method and status class, their bytes and their durations", function()
    local before = scrape(srv)
    for _ = 1, 5 do assert.equal(200, srv:get("/hello").status) end
    assert.equal(404, srv:get("/missing").status)
    assert.equal(500, srv:get("/boom").status)
    local head = srv:request({ method = "HEAD", path = "/hello" })
    assert.equal(200, head.status)
    local after = scrape(srv)
    local function moved(key) return value(after, key) - value(before, key) end
    -- the scrape before this one counts too: it ended between the two
    assert.equal(5 + 1, moved("rill_http_requests_total{code=2xx,method=GET}"))
    assert.equal(1, moved("rill_http_requests_total{code=4xx,method=GET}"))
    assert.equal(1, moved("rill_http_requests_total{code=5xx,method=GET}"))
    assert.equal(1, moved("rill_http_requests_total{code=2xx,method=HEAD}"))
    assert.equal(1, moved("rill_handler_errors_total{}"))
    assert.equal(9, moved("rill_http_request_duration_seconds_count{}"))
    assert.equal(9, moved("rill_http_request_duration_seconds_bucket{le=+Inf}"))
    assert(moved("rill_http_response_bytes_total{}") >= 5 * #"hello\n")
    assert(value(after, "rill_http_request_duration_seconds_bucket{le=0.005}")
      <= value(after, "rill_http_request_duration_seconds_bucket{le=10}"), "buckets are cumulative")
    assert.equal(1, value(after, "rill_workers{}"))
  end)

  it("counts requests refused before Lua, by their status class", function()
    local before = scrape(srv)
    -- evhttp parses it, rill refuses it (two Content-Lengths); then a head too large for the gate
    local _, statuses = srv:exchange("GET /dup HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx")
    assert.same({ 400 }, statuses)
    _, statuses = srv:exchange("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " .. ("a"):rep(40000) .. "\r\n\r\n")
    assert.same({ 431 }, statuses)
    local after = scrape(srv)
    local function moved(key) return value(after, key) - value(before, key) end
    assert.equal(1, moved("rill_http_requests_total{code=4xx,method=GET}"))
    assert.equal(1, moved("rill_http_requests_total{code=4xx,method=other}")) -- its method unread
  end)

  it("counts a handler stopped by the instruction budget", function()
    local before = scrape(srv)
    assert.equal(500, srv:get("/spin").status)
    local after = scrape(srv)
    assert.equal(1, value(after, "rill_handler_budget_stops_total{}") - value(before, "rill_handler_budget_stops_total{}"))
  end)

  it("shows open streams and subscribers, and counts streams by how they ended and hub events", function()
    local before = scrape(srv)
    local s = srv:open("/events/m")
    eventually(function()
      local now = scrape(srv)
      return value(now, "rill_http_streams{}") == 1 and value(now, "rill_hub_subscribers{}") == 1
    end, "the stream and its subscription to show")
    for i = 1, 3 do assert.equal(200, srv:request({ method = "POST", path = "/pub/m", body = "e" .. i }).status) end
    for _ = 1, 3 do assert(s:event(T)) end
    s:close()
    eventually(function() return value(scrape(srv), "rill_http_streams{}") == 0 end, "the stream to end")
    local after = scrape(srv)
    local function moved(key) return value(after, key) - value(before, key) end
    assert.equal(3, moved("rill_hub_events_published_total{}"))
    assert.equal(3, moved("rill_hub_events_delivered_total{}"))
    assert.equal(1, moved("rill_http_streams_ended_total{end=client_gone}"))
    assert.equal(1, moved("rill_http_stream_duration_seconds_count{}"))
    assert.equal(0, value(after, "rill_hub_subscribers{}"))
    assert(value(after, "rill_http_connections{}") >= 1) -- the scrape's own
    assert(value(after, "rill_lua_memory_bytes{}") > 0)
    assert(value(after, "rill_open_fds{}") > 3)
  end)

  it("counts fetches by outcome", function()
    local before = scrape(srv)
    assert.equal(200, srv:get("/fetch/" .. srv.port).status)
    assert.equal(502, srv:get("/fetch/" .. closed_port()).status)
    local after = scrape(srv)
    local function moved(key) return value(after, key) - value(before, key) end
    assert.equal(1, moved("rill_fetch_requests_total{outcome=ok}"))
    assert.equal(1, moved("rill_fetch_requests_total{outcome=refused}"))
    assert.equal(2, moved("rill_fetch_duration_seconds_count{}"))
  end)

  it("gives the same figures to Lua as rill.stats()", function()
    local res = srv:get("/stats")
    assert.matches("^requests%.GET%.2xx=%d+ streams=0 hub%.published=%d+ workers=1\n$", res.body)
  end)

  it("raises for an options argument that is not a table", function()
    local rill = require "rill"
    assert.has_error(function() rill.metrics(5) end, "bad argument #1 to 'metrics' (table expected, got number)")
  end)
end)

describe("rill.metrics() with --workers 2", function()
  local srv
  setup(function() srv = W.start(APP, { workers = 2 }) end)
  teardown(function() W.kill_all(srv) end)

  it("sums both workers in one scrape, and a worker's death takes nothing back", function()
    local pids = {}
    for _, pid in pairs(W.current(srv)) do pids[#pids + 1] = pid end
    assert.equal(2, #pids)
    local before = scrape(srv)
    assert.equal(2, value(before, "rill_workers{}"))
    local key = "rill_http_requests_total{code=2xx,method=GET}"
    for i, pid in ipairs(pids) do -- 3 on the first worker, 4 on the second, each over its own connection
      local c = W.pinned(srv, pid) -- its own GET /pid counts too
      for _ = 1, i + 2 do assert.same(200, (c:request("GET", "/hello"))) end
      c:close()
    end
    local after = scrape(srv)
    assert.equal(3 + 4 + 2 + 1, value(after, key) - value(before, key)) -- + the two /pid, + a scrape
    -- a worker killed: its counters stay in the sum, its gauges go, its successor counts on
    local mark = W.log_end(srv)
    W.signal(pids[1], "KILL")
    W.wait_line(srv, "started", mark)
    local later
    eventually(function()
      later = scrape(srv)
      return value(later, "rill_workers{}") == 2
    end, "the restarted worker to be counted")
    assert(value(later, key) >= value(after, key), "a total went back")
  end)
end)

-- `rill stats --pid-file P` (SIGUSR2, then <P>.stats): its "name value" lines as a table.
local function rill_stats(pidfile)
  local dir = procs.tmpdir()
  local argv = { "sh", "-c", 'f=$1; shift; exec "$@" 2>"$f"', "sh", dir .. "/err" }
  for _, a in ipairs(W.bin_argv("stats", "--pid-file", pidfile, "--timeout", tostring(T))) do
    argv[#argv + 1] = a
  end
  local p = core.spawn(argv)
  local status = p:wait(T + 5)
  local out = p:log()
  p:close()
  local err = procs.read_file(dir .. "/err") or ""
  os.execute("rm -rf '" .. dir .. "'")
  assert.same(0, status, err)
  local t = {}
  for k, v in out:gmatch("([%w_]+) (%S+)\n") do t[k] = tonumber(v) or v end
  return t, out
end

describe("rill stats", function()
  it("prints a single process's figures, which move with its requests and streams", function()
    local dir = procs.tmpdir()
    local pidfile = dir .. "/rill.pid"
    local srv = test.server(APP, { args = { "--pid-file", pidfile } })
    local ok, err = pcall(function()
      local before = rill_stats(pidfile)
      assert.same("single", before.role)
      assert.same(1, before.workers)
      for _ = 1, 5 do assert.same(200, srv:get("/hello").status) end
      local s = srv:open("/events/metrics")
      local after, text = rill_stats(pidfile)
      assert.same(5, after.requests - before.requests, text)
      assert.same(5, after.requests_2xx - before.requests_2xx, text)
      assert.same(1, after.streams, text) -- a gauge, as of the answer
      assert.same(1, after.hub_subscribers, text)
      assert.is_true(after.bytes_out > before.bytes_out)
      s:close()
      assert(srv:wait_log("rill: stats requests="), "no stats line in the error log")
    end)
    assert.same(0, srv:stop("TERM", T))
    local left = io.open(pidfile .. ".stats")
    if left then left:close() end
    os.execute("rm -rf '" .. dir .. "'")
    assert(ok, err)
    assert.is_nil(left, "the stats file outlived the server")
  end)

  it("prints the master's figures and the sum over its workers", function()
    local srv = W.start(APP, { workers = 2 })
    local ok, err = pcall(function()
      local pids = {}
      for _, pid in pairs(W.current(srv)) do pids[#pids + 1] = pid end
      assert.equal(2, #pids)
      local before = rill_stats(srv.pidfile)
      for i, pid in ipairs(pids) do -- 3 on the first worker, 4 on the second, + each one's GET /pid
        local c = W.pinned(srv, pid)
        for _ = 1, i + 2 do assert.same(200, (c:request("GET", "/hello"))) end
        c:close()
      end
      local mark = W.log_end(srv)
      local after, text = rill_stats(srv.pidfile)
      assert.same("master", after.role, text)
      assert.same(2, after.workers, text)
      assert.same(2, after.workers_serving, text)
      assert.same(1, after.generation, text)
      assert.same(3 + 4 + 2, after.requests - before.requests, text)
      -- each worker's own stats line goes to the error log, as the master's does
      W.wait_line(srv, "master: stats workers=2", mark)
      W.wait_line(srv, "worker 1: stats requests=", mark)
      W.wait_line(srv, "worker 2: stats requests=", mark)
    end)
    W.kill_all(srv)
    assert(ok, err)
  end)
end)

describe("rill stats, against what may be lying around", function()
  local function exists(path)
    local f = io.open(path)
    if f then f:close() end
    return f ~= nil
  end

  it("a single process survives SIGUSR1 and SIGUSR2 while it loads, and removes an old run's answer", function()
    local dir = procs.tmpdir()
    local pidfile, go = dir .. "/rill.pid", dir .. "/go"
    local app = dir .. "/app.lua"
    local f = assert(io.open(app, "w"))
    -- the app's load waits for the spec: signals land while no handler exists
    f:write(([[
      io.open(%q, "w"):close()
      while not io.open(%q) do end
      return function() return "up\n" end
    ]]):format(dir .. "/loading", go))
    f:close()
    f = assert(io.open(pidfile .. ".stats", "w"))
    f:write("pid 1 answer 1\nrequests 999\n") -- a crashed run's
    f:close()
    local proc = core.spawn(W.bin_argv(app, "--listen", "127.0.0.1:0", "--pid-file", pidfile))
    local ok, err = pcall(function()
      assert(W.wait_until(function() return exists(dir .. "/loading") end, T), "the app never began to load")
      proc:kill("USR2")
      proc:kill("USR1")
      io.open(go, "w"):close()
      assert(proc:wait_for("rill listening on", T), "never listened:\n" .. proc:log())
      assert.is_false(exists(pidfile .. ".stats"), "the old answer was kept")
      local st = rill_stats(pidfile)
      assert.same("single", st.role)
      assert.same(0, st.requests)
    end)
    proc:kill("TERM")
    local status = proc:wait(T)
    os.execute("rm -rf '" .. dir .. "'")
    assert(ok, err)
    assert.same(0, status, proc:log())
  end)

  it("writes its answer to a file of its own, never through a link planted under the name", function()
    local dir = procs.tmpdir()
    local pidfile, victim = dir .. "/rill.pid", dir .. "/victim"
    local srv = test.server(APP, { args = { "--pid-file", pidfile } })
    local ok, err = pcall(function()
      local pid = assert(tonumber(procs.read_file(pidfile)))
      local f = assert(io.open(victim, "w"))
      f:write("keep\n")
      f:close()
      assert(os.execute(("ln -s %s %s.stats.tmp%d"):format(victim, pidfile, pid)))
      assert.same("single", rill_stats(pidfile).role)
      assert.same("keep\n", procs.read_file(victim))
    end)
    assert.same(0, srv:stop("TERM", T))
    os.execute("rm -rf '" .. dir .. "'")
    assert(ok, err)
  end)
end)
