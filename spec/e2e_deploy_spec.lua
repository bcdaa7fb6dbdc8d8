-- SPDX-License-Identifier: MIT
-- docs/deploy.md as it stands. Its ```nginx block, with the addresses, the
-- certificate and nginx's own files moved into a temporary directory, runs
-- Debian's nginx (HTTP/2 and TLS, a self-signed certificate) in front of rill
-- serving spec/apps/deploy.lua; curl is the browser. Its ```ini block is the
-- systemd unit: systemd-analyze verify reads it, and the directives the page
-- explains are checked one by one.
--
-- rill runs with --workers 2, as the unit does (RILL_DEPLOY_WORKERS=N for
-- another count; 1: a single process): a publish may land on another worker
-- than the stream it feeds, and the hub carries it across.
local core = require "rill.core"
local socket = require "socket"
local test = require "rill.test"

local TIMEOUT = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10
local WORKERS = tonumber(os.getenv("RILL_DEPLOY_WORKERS")) or 2
local NGINX = "/usr/sbin/nginx"

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Runs a shell command; returns its output (stdout and stderr) and whether it exited 0.
local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return out, ok == true
end

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The fenced blocks of one language in markdown text, in order.
local function fenced(text, lang)
  local out, open = {}, nil
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if open then
      if line:match("^%s*```%s*$") then
        out[#out + 1] = table.concat(open, "\n") .. "\n"
        open = nil
      else
        open[#open + 1] = line
      end
    elseif line:match("^%s*```%s*" .. lang .. "%s*$") then
      open = {}
    end
  end
  return out
end

local DOC = read_file("docs/deploy.md")
local NGINX_BLOCK = assert(fenced(DOC, "nginx")[1], "no ```nginx block in docs/deploy.md")
local UNIT_BLOCK = assert(fenced(DOC, "ini")[1], "no ```ini block in docs/deploy.md")

-- The unit's [Service] section as { key = value }.
local function service_section(unit)
  local section, keys = nil, {}
  for line in unit:gmatch("[^\n]+") do
    local name = line:match("^%[(.+)%]$")
    if name then
      section = name
    elseif section == "Service" and not line:match("^%s*#") then
      local k, v = line:match("^(%w+)=(.*)$")
      if k then keys[k] = v end
    end
  end
  return keys
end

-- Replaces pattern in text exactly once (else the page changed under the spec).
local function replace_once(text, pattern, replacement, what)
  local out, n = text:gsub(pattern, function() return replacement end)
  assert(n == 1, ("docs/deploy.md's nginx block: %d matches for %s (want 1)"):format(n, what))
  return out
end

local function seconds(v) -- nginx time: 120, 120s, 2m, 1h
  local n, unit = v:match("^(%d+)(%a*)$")
  local mult = ({ [""] = 1, s = 1, m = 60, h = 3600 })[unit]
  return n and mult and tonumber(n) * mult
end

-- Stops a spawned process by its pid: TERM, then KILL if it lingers; always reaped.
local function stop(proc)
  if not proc then return end
  proc:kill("TERM")
  if not proc:wait(5) then
    proc:kill("KILL")
    proc:wait(5)
  end
  proc:close()
end

describe("docs/deploy.md's systemd unit", function()
  local unit = service_section(UNIT_BLOCK)

  it("sets every directive the page explains", function()
    assert.same("exec", unit.Type)
    assert.matches("^/usr/local/bin/rill /srv/app/app%.lua ", unit.ExecStart)
    assert.matches(" %-%-listen 127%.0%.0%.1:8080", unit.ExecStart)
    assert.matches(" %-%-workers auto", unit.ExecStart)
    assert.matches(" %-%-pid%-file /run/rill/rill%.pid", unit.ExecStart)
    assert.same("/usr/local/bin/rill reload --pid-file /run/rill/rill.pid", unit.ExecReload)
    assert.same("SIGTERM", unit.KillSignal)
    assert.same("mixed", unit.KillMode)
    assert.same("65536", unit.LimitNOFILE)
    assert.same("rill", unit.RuntimeDirectory) -- /run/rill, where the pid file goes
    assert.matches("^%w+$", unit.User)
    assert.same("on-failure", unit.Restart)
  end)

  it("gives a stop more time than rill's --grace", function()
    local argv = {}
    for word in test.bin:gmatch("%S+") do argv[#argv + 1] = word end
    argv[#argv + 1] = "--help"
    local proc <close> = core.spawn(argv)
    assert.same(0, proc:wait(TIMEOUT))
    local default = tonumber(proc:log():match("%-%-grace SECONDS.-%(default (%d+)%)"))
    assert.is_number(default, "no --grace default in rill --help")
    local grace = tonumber(unit.ExecStart:match("%-%-grace (%d+)")) or default
    assert.is_true(tonumber(unit.TimeoutStopSec) > grace,
      ("TimeoutStopSec=%s, --grace %d"):format(tostring(unit.TimeoutStopSec), grace))
  end)

  it("passes systemd-analyze verify, without a warning", function()
    if not sh("command -v systemd-analyze"):find("systemd%-analyze") then
      pending("systemd-analyze is not installed")
      return
    end
    -- verify checks that ExecStart's and ExecReload's executable exist: the built one stands in
    local bin
    for word in test.bin:gmatch("%S+") do bin = word end
    bin = sh("realpath " .. quote(bin)):gsub("\n$", "")
    local dir = sh("mktemp -d"):gsub("\n$", "")
    finally(function() sh("rm -rf " .. quote(dir)) end)
    local text = UNIT_BLOCK:gsub("/usr/local/bin/rill", function() return bin end)
    write_file(dir .. "/rill.service", text)
    local out, ok = sh("timeout 30 systemd-analyze verify " .. quote(dir .. "/rill.service"))
    assert.is_true(ok, out)
    assert.same("", out)
  end)
end)

describe("rill behind nginx as docs/deploy.md sets it up", function()
  local dir, srv, nginx, port
  local procs = {} -- curl clients still running

  local function url(path)
    return ("https://localhost:%d%s"):format(port, path)
  end

  -- curl as the browser: HTTP/2 over TLS to nginx, the self-signed certificate accepted.
  local function curl_args(extra)
    local argv = { "curl", "--http2", "-k", "-sN", "--max-time", tostring(3 * TIMEOUT),
      "--resolve", ("localhost:%d:127.0.0.1"):format(port) }
    for _, a in ipairs(extra) do argv[#argv + 1] = a end
    return argv
  end

  local function curl_once(path)
    local cmd = {}
    for _, a in ipairs(curl_args({ url(path) })) do cmd[#cmd + 1] = quote(a) end
    return sh(table.concat(cmd, " "))
  end

  -- An endless request: curl -v prints the response head and every event line.
  local function stream(path, headers)
    local extra = { "-v" }
    for _, h in ipairs(headers or {}) do
      extra[#extra + 1] = "-H"
      extra[#extra + 1] = h
    end
    extra[#extra + 1] = url(path)
    local proc = core.spawn(curl_args(extra))
    procs[#procs + 1] = proc
    local line = proc:wait_for("< HTTP/", TIMEOUT)
    assert(line, "no response head through nginx:\n" .. proc:log() .. "\nnginx:\n" .. read_file(dir .. "/error.log"))
    return proc, line
  end

  local function publish(topic, data)
    local res = srv:request({ method = "POST", path = "/next/" .. topic, body = data })
    assert.same(202, res.status, res.body)
    return res.body
  end

  -- Waits for curl to print "data: <data>"; returns the position after that line.
  local function await(proc, data, from)
    local line, pos = proc:wait_for("data: " .. data, TIMEOUT, from)
    assert(line, ("'%s' did not come through:\n%s"):format(data, proc:log()))
    return pos
  end

  -- The data lines curl printed, and each one's event id.
  local function events(proc)
    local datas, ids, id = {}, {}, nil
    for line in proc:log():gmatch("[^\n]+") do
      if line:match("^id: ") then
        id = line:sub(5)
      elseif line:match("^data: ") then
        datas[#datas + 1] = line:sub(7)
        ids[line:sub(7)] = id
      end
    end
    return datas, ids
  end

  local function start()
    dir = sh("mktemp -d"):gsub("\n$", "")
    srv = test.server("spec/apps/deploy.lua",
      { args = WORKERS > 1 and { "--workers", tostring(WORKERS), "--pid-file", dir .. "/rill.pid" } or nil })

    local out, ok = sh(("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 -keyout %s -out %s")
      :format(quote(dir .. "/key.pem"), quote(dir .. "/cert.pem")))
    assert(ok, out)

    -- nginx cannot listen on port 0: a port the kernel just handed out and
    -- took back is free, and another process taking it in the next
    -- milliseconds is unlikely on a test machine (nginx would then fail to
    -- start, loudly, and the spec with it).
    local probe = assert(socket.bind("127.0.0.1", 0))
    port = select(2, probe:getsockname())
    probe:close()

    local conf = NGINX_BLOCK
    conf = replace_once(conf, "127%.0%.0%.1:8080", "127.0.0.1:" .. srv.port, "the upstream 127.0.0.1:8080")
    conf = replace_once(conf, "listen%s+443%s", ("listen 127.0.0.1:%d "):format(port), "listen 443")
    conf = replace_once(conf, "ssl_certificate%s+[^;]+;", "ssl_certificate " .. dir .. "/cert.pem;", "ssl_certificate")
    conf = replace_once(conf, "ssl_certificate_key%s+[^;]+;", "ssl_certificate_key " .. dir .. "/key.pem;",
      "ssl_certificate_key")
    write_file(dir .. "/nginx.conf", table.concat({
      "error_log " .. dir .. "/error.log notice;",
      "pid " .. dir .. "/nginx.pid;",
      "events { worker_connections 64; }",
      "http {",
      "access_log " .. dir .. "/access.log;",
      "client_body_temp_path " .. dir .. "/body;",
      "proxy_temp_path " .. dir .. "/proxy;",
      "fastcgi_temp_path " .. dir .. "/fastcgi;",
      "uwsgi_temp_path " .. dir .. "/uwsgi;",
      "scgi_temp_path " .. dir .. "/scgi;",
      conf,
      "}",
      "",
    }, "\n"))
    nginx = core.spawn({ NGINX, "-p", dir, "-c", dir .. "/nginx.conf", "-e", dir .. "/error.log",
      "-g", "daemon off; master_process off;" })

    -- ready when a request goes through it (bounded attempts; nginx exiting ends the wait)
    for _ = 1, 100 do
      local status = nginx:wait(0.05)
      if status then
        error(("nginx exited (%d):\n%s\n%s"):format(status, nginx:log(), read_file(dir .. "/error.log")))
      end
      if curl_once("/whoami"):match("^host=") then return end
    end
    error("nginx never answered:\n" .. nginx:log() .. "\n" .. read_file(dir .. "/error.log"))
  end

  local function stop_all()
    for _, p in ipairs(procs) do stop(p) end
    procs = {}
    stop(nginx)
    nginx = nil
    if srv then
      srv:stop()
      srv = nil
    end
    if dir then sh("rm -rf " .. quote(dir)) end
  end

  setup(function()
    local ok, err = pcall(start)
    if not ok then
      stop_all()
      error(err, 0)
    end
  end)

  teardown(function()
    local log = srv and srv:log() or ""
    local s = srv
    srv = nil
    stop_all()
    if s then
      local status = s:stop()
      assert.same(0, status, log)
    end
  end)

  after_each(function()
    for _, p in ipairs(procs) do stop(p) end
    procs = {}
  end)

  it("streams events over HTTP/2, one by one as each is published", function()
    local curl, head = stream("/events/live")
    assert.matches("< HTTP/2 200", head, nil, true)
    assert.truthy(curl:wait_for("< content-type: text/event-stream", TIMEOUT))
    local pos
    for k = 1, 5 do
      -- event k must be through nginx before event k + 1 exists: nothing is buffered
      publish("live", "event " .. k)
      pos = await(curl, "event " .. k, pos)
    end
    assert.same({ "event 1", "event 2", "event 3", "event 4", "event 5" }, (events(curl)))
  end)

  it("resumes through nginx with Last-Event-ID: exactly the events after it", function()
    local first = stream("/events/resume")
    local pos
    for k = 1, 5 do
      publish("resume", "event " .. k)
      pos = await(first, "event " .. k, pos)
    end
    local _, ids = events(first)
    assert.is_string(ids["event 3"], first:log())
    stop(first)

    local again, head = stream("/events/resume", { "Last-Event-ID: " .. ids["event 3"] })
    assert.matches("< HTTP/2 200", head, nil, true)
    pos = await(again, "event 5")
    publish("resume", "event 6")
    await(again, "event 6", pos)
    assert.same({ "event 4", "event 5", "event 6" }, (events(again)))
  end)

  it("forwards Host, X-Forwarded-For and X-Forwarded-Proto, on a keep-alive upstream connection", function()
    local first, ok = curl_once("/whoami")
    assert.is_true(ok, first)
    -- Connection "" keeps nginx from sending Connection: close to rill
    assert.matches("^host=localhost proto=https for=127%.0%.0%.1 connection=nil port=%d+\n$", first)
    -- and keepalive lets the next request, from another client, reuse that connection
    local second = curl_once("/whoami")
    assert.same(first, second)
  end)

  it("needs no buffering setting for rill.sse streams, and reads longer than a heartbeat", function()
    local s <close> = srv:open("/events/direct")
    assert.same(200, s.status)
    assert.same("no", s.headers["x-accel-buffering"])
    local heartbeat = tonumber(read_file("docs/sse.md"):match("`heartbeat` %(seconds, default (%d+)"))
    assert.is_number(heartbeat, "no heartbeat default in docs/sse.md")
    local timeout = seconds(assert(NGINX_BLOCK:match("proxy_read_timeout%s+(%w+);")))
    assert.is_true(timeout > heartbeat, ("proxy_read_timeout %ds, heartbeat %ds"):format(timeout, heartbeat))
    assert.matches("proxy_buffering%s+off;", NGINX_BLOCK)
    assert.matches("proxy_http_version%s+1%.1;", NGINX_BLOCK)
  end)
end)
