-- SPDX-License-Identifier: MIT
-- Helpers for busted specs of rill apps.
--
--   local t = require "rill.test"
--   local srv = t.server("app.lua")     -- spawns rill on 127.0.0.1:0
--   local res = srv:get("/")            -- { status, headers, body }
--   local s = srv:open("/stream")       -- read a streamed body chunk by chunk
--   local chunk = s:chunk(2)            -- waits up to 2 s
--   srv:stop()                          -- SIGTERM, then the exit status
--
--   local res = t.call(handler, { method = "GET", path = "/x?a=1" })  -- in-process
--
-- A spawned server is killed when the spec ends however it ends: stop() in
-- teardown, the garbage collector, or the kernel when the test process dies.
require "rill" -- effect-aware coroutines for in-process calls
local core = require "rill.core"
local respond = require "rill.respond"
local body = require "rill.body"
local cookie = require "rill.cookie"
local sse = require "rill.sse"
local socket = require "socket"

local M = {}

---------------------------------------------------------------------------
-- Argument checks: misuse raises `bad argument #N to 'fn' (...)` at the
-- spec's line, as rill's own functions do. depth: how many calls the check
-- is below the public function (1: called by it directly).

local MAX_SECONDS = 1e9 -- the longest duration rill takes anywhere (src/luanum.h)

local function bad(argn, fname, msg, depth)
  error(("bad argument #%d to '%s' (%s)"):format(argn, fname, msg), depth + 2)
end

local function check_type(v, want, fname, argn, name, depth)
  if type(v) ~= want then
    bad(argn, fname, ("%s%s expected, got %s"):format(name and name .. ": " or "", want, type(v)), depth + 1)
  end
end

local function check_opt(v, want, fname, argn, name, depth)
  if v ~= nil then
    check_type(v, want, fname, argn, name, depth + 1)
  end
end

-- A timeout: nil (the default) or seconds from 0 to 1e9. NaN would make a
-- wait never end (or end at once), and inf or a negative is no timeout.
local function check_timeout(v, fname, argn, name, depth)
  if v ~= nil and not (type(v) == "number" and v >= 0 and v <= MAX_SECONDS) then
    local got = type(v) == "number" and tostring(v) or type(v)
    bad(argn, fname, ("%snumber from 0 to 1000000000 expected, got %s"):format(name and name .. ": " or "", got),
      depth + 1)
  end
end

-- Options of a request (M.open, srv:request, srv:open): nil or a table.
local function check_request_opts(opts, fname, argn, depth)
  check_opt(opts, "table", fname, argn, nil, depth + 1)
  if opts then
    check_timeout(opts.timeout, fname, argn, "timeout", depth + 1)
  end
end

-- The rill executable: $RILL_BIN, else build/rill in the current directory.
-- Words separated by spaces are a command prefix: "valgrind -q build/rill".
M.bin = os.getenv("RILL_BIN") or "build/rill"

-- Seconds a spec waits for the server at most (slow under valgrind).
local DEFAULT_TIMEOUT = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10

---------------------------------------------------------------------------
-- HTTP/1.1 client on LuaSocket: enough to read streams chunk by chunk.

local Stream = {}
Stream.__index = Stream

local function fail(self, err)
  self.err = err
  return nil, err
end

-- Reads one line (CRLF or LF stripped), keeping a partial line across timeouts.
function Stream:line(timeout)
  self.sock:settimeout(timeout or self.timeout)
  local line, err, partial = self.sock:receive("*l", self.pending)
  self.pending = nil
  if not line then
    self.pending = partial ~= "" and partial or nil
    return fail(self, err)
  end
  return line
end

function Stream:bytes(n, timeout)
  self.sock:settimeout(timeout or self.timeout)
  local data, err, partial = self.sock:receive(n - #(self.pending or ""), self.pending)
  self.pending = nil
  if not data then
    self.pending = partial ~= "" and partial or nil
    return fail(self, err)
  end
  return data
end

local function add_header(headers, name, value)
  name = name:lower()
  local old = headers[name]
  if old == nil then
    headers[name] = value
  elseif type(old) == "table" then
    old[#old + 1] = value
  else
    headers[name] = { old, value }
  end
end

-- Reads the status line and headers.
function Stream:head(timeout)
  local line, err = self:line(timeout)
  if not line then
    return nil, err
  end
  self.status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  self.headers = core.headers({})
  while true do
    line, err = self:line(timeout)
    if not line then
      return nil, err
    end
    if line == "" then
      break
    end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    add_header(self.headers, name, value)
  end
  local te = self.headers["transfer-encoding"]
  self.chunked = te ~= nil and te:lower() == "chunked"
  self.length = tonumber(self.headers["content-length"])
  if self.status == 204 or self.status == 304 or self.method == "HEAD" then
    self.length = 0
  end
  return self
end

-- The next piece of the body: a whole chunk when chunked, else what arrives.
-- nil, "end" after the body; nil, "timeout"; nil, "closed" when the
-- connection closed before a chunked body's end (truncation).
function Stream:chunk(timeout)
  if self.done then
    return nil, "end"
  end
  if self.chunked then
    local size_line, err = self:line(timeout)
    if not size_line then
      return nil, err
    end
    local size = tonumber(size_line:match("^%x+"), 16)
    if size == 0 then
      repeat
        size_line = self:line(timeout)
      until size_line == "" or size_line == nil
      self.done = true
      return nil, "end"
    end
    local data
    data, err = self:bytes(size + 2, timeout)
    if not data then
      return nil, err
    end
    return data:sub(1, size)
  end
  if self.length then
    if self.length == 0 then
      self.done = true
      return nil, "end"
    end
    local data, err = self:bytes(self.length, timeout)
    if not data then
      return nil, err
    end
    self.done = true
    return data
  end
  self.sock:settimeout(timeout or self.timeout)
  local data, err, partial = self.sock:receive(4096)
  if data or (partial and partial ~= "") then
    return data or partial
  end
  if err == "closed" then
    self.done = true
    return nil, "end"
  end
  return nil, err
end

-- Reads the rest of the body. Returns body, chunks, and the reason it ended
-- ("end", or "closed" for a truncated chunked body, or "timeout").
function Stream:rest(timeout)
  local chunks = {}
  while true do
    local c, err = self:chunk(timeout)
    if not c then
      return table.concat(chunks), chunks, err
    end
    chunks[#chunks + 1] = c
  end
end

-- The next server-sent event (a table as from rill.sse.parser(): data, event,
-- id, retry), parsed from the body as a browser parses it; nil, err. As in a
-- browser, a block that dispatches no event (no data: only retry: or id:,
-- such as the retry: every rill.sse stream starts with) is not returned, but
-- it moves the state an EventSource keeps: s.retry, the reconnection time in
-- ms (nil until the stream sent one), and s:last_event_id().
function Stream:event(timeout)
  self.sse_parser = self.sse_parser or sse.parser(16 * 1024 * 1024)
  self.sse_queue = self.sse_queue or {}
  while #self.sse_queue == 0 do
    local chunk, err = self:chunk(timeout)
    if not chunk then
      return nil, err
    end
    for _, ev in ipairs(self.sse_parser:feed(chunk)) do
      if ev.retry then
        self.retry = ev.retry
      end
      if ev.data then
        self.sse_queue[#self.sse_queue + 1] = ev
      end
    end
  end
  return table.remove(self.sse_queue, 1)
end

-- The id a browser would send as Last-Event-ID on reconnecting, from the
-- events read so far ("" before any id).
function Stream:last_event_id()
  return self.sse_parser and self.sse_parser:last_event_id() or ""
end

function Stream:close()
  if self.sock and not self.borrowed then
    self.sock:close()
  end
  self.sock = nil
end

Stream.__close = Stream.close
Stream.__gc = Stream.close

local function format_request(opts)
  local method = opts.method or "GET"
  local lines = { ("%s %s HTTP/1.1"):format(method, opts.path or "/") }
  local headers = opts.headers or {}
  local has = {}
  for name, value in pairs(headers) do
    has[name:lower()] = true
    local values = type(value) == "table" and value or { value }
    for _, v in ipairs(values) do
      lines[#lines + 1] = name .. ": " .. v
    end
  end
  if not has.host then
    lines[#lines + 1] = "Host: " .. opts.host_header
  end
  if opts.body and not has["content-length"] then
    lines[#lines + 1] = "Content-Length: " .. #opts.body
  end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (opts.body or "")
end

-- Opens a connection to host:port, sends the request, reads the head.
function M.open(host, port, opts)
  check_request_opts(opts, "open", 3, 1)
  opts = opts or {}
  local sock = assert(socket.tcp())
  sock:settimeout(opts.timeout or DEFAULT_TIMEOUT)
  local ok, err = sock:connect(host, port)
  if not ok then
    sock:close()
    return nil, "connect: " .. err
  end
  local s = setmetatable({ sock = sock, timeout = opts.timeout or DEFAULT_TIMEOUT, method = opts.method }, Stream)
  opts.host_header = host .. ":" .. port -- as curl and browsers send it
  sock:send(format_request(opts))
  local _, herr = s:head()
  if herr then
    s:close()
    return nil, herr
  end
  return s
end

-- Reads the next response on a connected LuaSocket you send requests on
-- yourself (pipelining, keep-alive loops): the stream after its head. The
-- socket stays yours: closing or collecting the stream leaves it open.
function M.response(sock, method, timeout)
  local s = setmetatable({ sock = sock, timeout = timeout or DEFAULT_TIMEOUT, method = method, borrowed = true }, Stream)
  local _, err = s:head()
  if err then
    return nil, err
  end
  return s
end

---------------------------------------------------------------------------
-- A rill server spawned for a spec.

local Server = {}
Server.__index = Server

-- Spawns rill on app with --listen 127.0.0.1:0 (and opts.args, with the
-- environment variables in opts.env), and waits for its "rill listening on"
-- line: never a probe connection.
function M.server(app, opts)
  check_type(app, "string", "server", 1, nil, 1)
  check_opt(opts, "table", "server", 2, nil, 1)
  opts = opts or {}
  check_timeout(opts.timeout, "server", 2, "timeout", 1)
  check_opt(opts.args, "table", "server", 2, "args", 1)
  check_opt(opts.env, "table", "server", 2, "env", 1)
  check_opt(opts.app_args, "table", "server", 2, "app_args", 1)
  local srv = setmetatable({ app = app, opts = opts }, Server)
  local ok, err = srv:launch("127.0.0.1:0")
  if not ok then
    error(err, 2)
  end
  return srv
end

-- How many --listen options args gives (each prints a "rill listening on" line).
local function count_listens(args)
  local n = 0
  for i, a in ipairs(args or {}) do
    if a == "--" then break end
    if (a == "--listen" or a == "-l") and args[i + 1] then
      n = n + 1
    elseif a:match("^%-%-listen=") or a:match("^%-l.") then
      n = n + 1
    end
  end
  return n
end

-- Spawns rill for srv on listen and waits for its "rill listening on" lines. true, or false and why.
function Server:launch(listen)
  local opts = self.opts
  local argv = {}
  for word in M.bin:gmatch("%S+") do
    argv[#argv + 1] = word
  end
  for _, a in ipairs({ self.app, "--listen", listen, table.unpack(opts.args or {}) }) do
    argv[#argv + 1] = a
  end
  if opts.app_args then
    argv[#argv + 1] = "--"
    for _, a in ipairs(opts.app_args) do argv[#argv + 1] = tostring(a) end
  end
  local proc = core.spawn(argv, opts.env)
  -- one line per --listen, in order: ours first, then those in opts.args
  local urls, from = {}, 1
  for _ = 1, 1 + count_listens(opts.args) do
    local line, err
    line, from = proc:wait_for("rill listening on ", opts.timeout or DEFAULT_TIMEOUT, from)
    if not line then
      err = from
      local log = proc:log()
      proc:close()
      return false, ("rill did not start on %s (%s):\n%s"):format(self.app, err, log)
    end
    urls[#urls + 1] = line:match("(https?://%S+)$")
  end
  local host, port = urls[1]:match("http://([^/]+):(%d+)$")
  self.proc, self.host, self.port, self.mark, self.stats_mark = proc, host, tonumber(port), 1, nil
  self.urls = urls
  self.stopped, self.status = false, nil
  return true
end

-- Stops the server (SIGTERM, as srv:stop) and starts it again on the same
-- port, with the same app, arguments and environment: clients reconnect to
-- the address they had (resume tests). Returns the old process's exit status.
function Server:restart(timeout)
  check_timeout(timeout, "restart", 1, nil, 1)
  local status = self:stop("TERM", timeout)
  local ok, err = self:launch(("%s:%d"):format(self.host, self.port))
  if not ok then
    error(err, 2)
  end
  return status
end

-- Sends a request and reads the whole response: { status, headers, body, chunks, ending }.
-- (Each request also drains the server's stderr, which would otherwise fill
-- its pipe and block the server on logging in a long spec.)
function Server:request(opts)
  check_type(opts, "table", "request", 1, nil, 1)
  check_request_opts(opts, "request", 1, 1)
  self.proc:log()
  local s = assert(M.open(self.host, self.port, opts))
  local body, chunks, ending = s:rest(opts.timeout)
  s:close()
  return { status = s.status, headers = s.headers, body = body, chunks = chunks, ending = ending }
end

function Server:get(path, headers)
  return self:request({ path = path, headers = headers })
end

-- Sends a request and returns the stream after its head, to read chunk by chunk.
function Server:open(path, opts)
  check_type(path, "string", "open", 1, nil, 1)
  check_request_opts(opts, "open", 2, 1)
  self.proc:log()
  opts = opts or {}
  opts.path = path
  return assert(M.open(self.host, self.port, opts))
end

-- A connected LuaSocket for raw bytes.
function Server:connect()
  local sock = assert(socket.tcp())
  sock:settimeout(DEFAULT_TIMEOUT)
  assert(sock:connect(self.host, self.port))
  return sock
end

-- Sends raw bytes on a new connection and reads until the server closes it.
-- Returns every byte received, the status codes of the responses in them,
-- and true when the server closed the connection (false: still open at timeout).
function Server:exchange(bytes, timeout)
  self.proc:log()
  local sock = self:connect()
  sock:settimeout(timeout or DEFAULT_TIMEOUT)
  sock:send(bytes)
  local data, err, partial = sock:receive("*a")
  sock:close()
  data = data or partial
  local statuses = {}
  for code in data:gmatch("HTTP/1%.%d (%d%d%d)") do statuses[#statuses + 1] = tonumber(code) end
  return data, statuses, err == nil or err == "closed"
end

-- Everything the server wrote to stderr so far.
function Server:log()
  return self.proc:log()
end

-- Waits for a stderr line containing text, written after the last wait.
function Server:wait_log(text, timeout)
  check_type(text, "string", "wait_log", 1, nil, 1)
  check_timeout(timeout, "wait_log", 2, nil, 1)
  local line, next_pos = self.proc:wait_for(text, timeout or DEFAULT_TIMEOUT, self.mark)
  if line then
    self.mark = next_pos
  end
  return line
end

-- The server's counters (SIGUSR2 prints them): requests, active, streams,
-- blocked, tasks, errors, lua_kb, fds. Stats lines are searched from their
-- own position, so they never make wait_log skip a line.
function Server:stats()
  self.proc:kill("USR2")
  local line, next_pos = self.proc:wait_for("rill: stats ", DEFAULT_TIMEOUT, self.stats_mark or 1)
  assert(line, "no stats line from the server")
  self.stats_mark = next_pos
  local stats = {}
  for k, v in line:gmatch("([%w_]+)=(%-?%d+)") do
    stats[k] = tonumber(v)
  end
  return stats
end

-- Polls stats until check(stats) is true or the timeout passes; returns the
-- last stats. For counters that settle after the loop processes closes.
function Server:settle(check, timeout)
  check_type(check, "function", "settle", 1, nil, 1)
  check_timeout(timeout, "settle", 2, nil, 1)
  local deadline = core.now() + (timeout or DEFAULT_TIMEOUT)
  local stats = self:stats()
  while not check(stats) and core.now() < deadline do
    socket.select(nil, nil, 0.02)
    stats = self:stats()
  end
  return stats
end

function Server:pid()
  return self.proc:pid()
end

-- The server's resident memory in KiB (VmRSS).
function Server:rss_kb()
  local f = assert(io.open("/proc/" .. self.proc:pid() .. "/status"))
  local kb = tonumber(f:read("a"):match("VmRSS:%s*(%d+)"))
  f:close()
  return kb
end

-- Waits for the server to exit by itself; returns its exit status (-N for
-- signal N), or nil, "timeout".
function Server:wait(timeout)
  check_timeout(timeout, "wait", 1, nil, 1)
  if self.stopped then
    return self.status
  end
  local status, err = self.proc:wait(timeout or DEFAULT_TIMEOUT)
  if status then
    self.stopped, self.status = true, status
    self.proc:log() -- its last lines may still be in the pipe
    self.proc:close()
  end
  return status, err
end

-- The signals proc:kill takes by name (src/process.c), besides numbers 1 to 64.
local SIGNALS = { TERM = true, KILL = true, INT = true, USR1 = true, STOP = true, CONT = true, HUP = true, QUIT = true }

local function is_signal(sig)
  if math.type(sig) then
    local n = math.tointeger(sig)
    return n ~= nil and n >= 1 and n <= 64
  end
  return sig == nil or SIGNALS[sig] ~= nil
end

-- Sends sig (default TERM) and waits for the exit; returns the exit status.
-- Kills the server if it has not exited within the timeout.
function Server:stop(sig, timeout)
  if not is_signal(sig) then
    bad(1, "stop", ("a signal name (\"TERM\", \"KILL\", ...) or number expected, got %s")
      :format(type(sig) == "string" and "'" .. sig .. "'" or tostring(sig)), 1)
  end
  check_timeout(timeout, "stop", 2, nil, 1)
  if self.stopped then
    return self.status
  end
  self.proc:kill(sig or "TERM")
  local status = self.proc:wait(timeout or DEFAULT_TIMEOUT)
  if not status then
    self.proc:kill("KILL")
    status = self.proc:wait()
  end
  self.stopped, self.status = true, status
  self.proc:log() -- its last lines may still be in the pipe
  self.proc:close()
  return status
end

Server.__close = function(self)
  self:stop("KILL")
end

---------------------------------------------------------------------------
-- In process: a handler called with a fake request, effects driven by rill.run.

local function split_target(target)
  local path, query = target:match("^([^?]*)%??(.*)$")
  return path, query
end

-- The fields of a fake request that must have a type; fname and argn name
-- the argument that carries them.
local FIELD_TYPES = { method = "string", path = "string", body = "string", headers = "table", query = "table",
  scheme = "string" }

local function check_fields(fields, fname, argn, depth)
  check_opt(fields, "table", fname, argn, nil, depth + 1)
  for name, want in pairs(FIELD_TYPES) do
    check_opt(fields and fields[name], want, fname, argn, name, depth + 1)
  end
  for name in pairs(fields and fields.headers or {}) do
    check_type(name, "string", fname, argn, "a header name", depth + 1)
  end
end

-- A fake req with the fields a real one has.
-- req:json(), req:form() and req.cookies, as the server's requests have them
local FakeRequest = {
  __index = function(req, key)
    if key == "json" then return body.req_json end
    if key == "form" then return body.req_form end
    if key == "body_reader" then return body.req_body_reader end
    if key == "read_body" then return body.req_read_body end
    if key == "cookies" then
      local c = cookie.parse(req)
      rawset(req, "cookies", c)
      return c
    end
  end,
}

function M.request(fields)
  check_fields(fields, "request", 1, 1)
  fields = fields or {}
  local path, query = split_target(fields.path or "/")
  local headers = core.headers({})
  for name, value in pairs(fields.headers or {}) do
    headers[name:lower()] = value
  end
  return setmetatable({
    method = fields.method or "GET",
    path = path,
    target = fields.path or "/",
    query = fields.query or core.query(query),
    headers = headers,
    body = fields.body or "",
    remote_addr = fields.remote_addr or "127.0.0.1",
    peer_addr = fields.peer_addr or fields.remote_addr or "127.0.0.1",
    remote_port = fields.remote_port or 0,
    id = fields.id or "test",
    scheme = fields.scheme or "http",
  }, FakeRequest)
end

-- The status and headers as the server would send them (it checks them the
-- same way, in C): framing fields are rill's, a default type for a body.
local function head_of(status, headers, with_body)
  local out = core.headers({})
  for name, value in pairs(core.check_response(status, headers)) do
    out[name:lower()] = value
  end
  local bodiless = status == 204 or status == 304
  if with_body and not bodiless and out["content-type"] == nil then
    out["content-type"] = "text/plain; charset=utf-8"
  elseif status == 204 then
    out["content-type"] = nil
  end
  return out
end

---------------------------------------------------------------------------
-- Virtual time for in-process tests

local Clock = {}
Clock.__index = Clock

-- rill.test.clock(): a fake clock, on until clock:stop() (or the end of a
-- `local clock <close>`). While it is on, rill.sleep (and rill.every, and
-- rill.now) run on virtual time, which moves by clock:advance(s) or, inside
-- t.call, t.stream's reads and rill.run, by itself whenever nothing else is
-- ready: straight to the next sleeper's deadline. One at a time.
function M.clock()
  core.clock_fake(true)
  return setmetatable({ on = true }, Clock)
end

-- Virtual seconds since the clock went on.
function Clock:now()
  return core.clock_now() or self.stopped_at
end

-- Moves virtual time s seconds, waking every sleeper due on the way, in
-- order, each running until it waits again. Returns how many woke.
function Clock:advance(s)
  if type(s) ~= "number" or s ~= s or s < 0 or s > 1e9 then
    bad(1, "advance", ("a number of seconds from 0 expected, got %s"):format(tostring(s)), 1)
  end
  if not self.on then
    error("advance: the clock was stopped", 2)
  end
  return core.clock_advance(s)
end

-- Back to real time; sleepers keep what they had left, as real timers.
function Clock:stop()
  if self.on then
    self.stopped_at = core.clock_now()
    core.clock_fake(false)
    self.on = false
  end
end
Clock.__close = Clock.stop

-- Runs the loop from outside any task until cond() is true, or timeout
-- seconds pass (virtual seconds while a fake clock is on; and never more
-- than that in real time, whatever the tasks do). Returns cond().
local function drive(cond, timeout)
  timeout = timeout or DEFAULT_TIMEOUT
  local real_deadline = socket.gettime() + timeout
  local virtual = core.clock_now()
  local virtual_deadline = virtual and virtual + timeout
  local busy = 0
  while not cond() do
    if socket.gettime() > real_deadline then
      return cond()
    end
    -- a fake clock moves once the loop is idle: real I/O in flight gets a moment first; and at
    -- least every 1,000 busy turns, so a stream of real events does not freeze it (as rill.run)
    local progressed = core.step(0) or (core.clock_next() ~= nil and core.step(0.001))
    busy = progressed and busy + 1 or 0
    if progressed and busy >= 1000 and core.clock_next() then
      busy = 0
      core.clock_step()
    elseif not progressed then
      local now_v, next_v = core.clock_now(), core.clock_next()
      if now_v and next_v and now_v + next_v > virtual_deadline then
        core.clock_advance(virtual_deadline - now_v) -- the timeout, on virtual time
        return cond()
      elseif now_v and next_v then
        core.clock_step() -- as rill.run does when idle: due sleepers, or on to the next deadline
      else
        local left = real_deadline - socket.gettime()
        if left <= 0 then
          return cond()
        end
        core.step(math.min(left, 0.05)) -- real events: a fetch, a tail
      end
    end
  end
  return true
end

---------------------------------------------------------------------------
-- In-process streams: t.stream

local LocalStream = {}
LocalStream.__index = LocalStream

-- The collector of a response, for t.call and t.stream: status, headers, and
-- each chunk to on_chunk (a whole reply's body too when reply_chunk is set).
local function collector(req, res, on_chunk, reply_chunk)
  local out = {}
  local function has_body(status)
    return status ~= 204 and status ~= 304 and req.method ~= "HEAD"
  end
  function out.reply(status, headers, body)
    res.status, res.headers = status, head_of(status, headers, body ~= nil)
    res.body = has_body(status) and body or ""
    if reply_chunk and res.body ~= "" then on_chunk(res.body) end
  end
  function out.file(status, headers, file, offset, length) -- rill.static's: read here, as the kernel would send it
    offset = offset or 0
    length = length or file:size() - offset -- the rest of it, as the server takes it
    local ok, body = pcall(file.read, file, offset, length)
    file:close()
    if not ok then error(body, 0) end
    out.reply(status, headers, body)
    res.headers["content-length"] = tostring(length)
    if not has_body(status) then res.body = "" end
  end
  function out.start(status, headers)
    res.status, res.headers, res.streamed = status, head_of(status, headers, true), true
    return has_body(status)
  end
  function out.write(chunk)
    on_chunk(tostring(chunk)) -- a hub event gives its encoded bytes
  end
  function out.finish()
    if res.chunks then res.body = table.concat(res.chunks) end
  end
  function out.sse(heartbeat)
    res.sse, res.heartbeat = true, heartbeat
  end
  return out
end

-- rill.test.stream(handler, fields): runs handler on a fake request (fields as
-- for t.request) in a task of its own and returns its response as a stream,
-- read as the spawned server's is: s.status, s.headers once the head is
-- there, s:chunk(timeout), s:event(timeout) (parsed server-sent events),
-- s:rest(timeout). s:close() is the client leaving: the handler's task is
-- cancelled where it waits (its <close> variables run, its effect undone)
-- and close returns that effect's name ("rill.sleep", "rill.fetch"), or nil
-- if the handler had ended. Timeouts are virtual while a fake clock is on.
function M.stream(handler, fields, timeout)
  local mt = getmetatable(handler)
  if type(handler) ~= "function" and not (type(mt) == "table" and mt.__call ~= nil) then
    bad(1, "stream", ("function expected, got %s"):format(type(handler)), 1)
  end
  check_fields(fields, "stream", 2, 1)
  check_timeout(timeout, "stream", 3, nil, 1)
  local req = M.request(fields)
  local s = setmetatable({ queue = {}, done = false, last = core.now() }, LocalStream)
  local out = collector(req, s, function(chunk)
    s.queue[#s.queue + 1] = chunk
    s.last = core.now()
  end, true)
  s.id = core.spawn_task(function()
    local ok, err = xpcall(respond, debug.traceback, handler, req, out)
    local code, reason = core.client_error_of(err)
    if not ok and code and s.status == nil then -- as the server answers one
      out.reply(code, nil, ("%s (request %s)\n"):format(reason, req.id))
      ok = true
    end
    s.done, s.err = true, not ok and err or nil
  end, "rill.test.stream")
  drive(function() return s.status ~= nil or s.done end, timeout)
  if s.err and s.status == nil then
    error(s.err, 2)
  end
  return s
end

-- The next chunk of the body; nil, "end" once the handler has ended (or
-- nil, "timeout", or nil and the handler's error). An event stream idle for
-- its heartbeat interval gets the server's heartbeat, a ":\n" comment, as a
-- chunk of its own (on virtual time too).
function LocalStream:chunk(timeout)
  check_timeout(timeout, "chunk", 1, nil, 1)
  local deadline = core.now() + (timeout or DEFAULT_TIMEOUT)
  local ready = function() return #self.queue > 0 or self.done end
  while true do
    local beat = self.sse and self.heartbeat and self.heartbeat > 0 and not self.done
      and self.last + self.heartbeat
    local wait = deadline - core.now()
    if beat and beat - core.now() < wait then
      wait = beat - core.now()
    end
    drive(ready, wait > 0 and wait or 0)
    if #self.queue > 0 then
      return table.remove(self.queue, 1)
    end
    if self.done then
      return nil, self.err or "end"
    end
    if beat and core.now() >= beat then
      self.last = core.now()
      return ":\n"
    end
    if core.now() >= deadline then
      return nil, "timeout"
    end
  end
end

-- The rest of the body, once the handler ends: body, chunks, "end" (or the error or "timeout").
LocalStream.rest = Stream.rest -- both read through self:chunk
LocalStream.event = Stream.event
LocalStream.last_event_id = Stream.last_event_id

function LocalStream:close()
  if self.closed then
    return self.cancelled
  end
  self.closed = true
  if core.background_alive(self.id) then
    self.cancelled = core.background_waiting(self.id) or "the running handler"
    core.cancel_background(self.id)
  end
  return self.cancelled
end
LocalStream.__close = LocalStream.close

-- Calls handler with a fake request (fields as for M.request) in a rill.run
-- task, so effects work. Returns { status, headers, body, chunks, streamed }.
-- opts.disconnect_after = n: the client leaves after the n-th chunk; then
-- res.disconnected is true and res.cancelled names the effect the handler
-- was cancelled in (nil if it had ended by then).
function M.call(handler, fields, opts)
  local mt = getmetatable(handler)
  if type(handler) ~= "function" and not (type(mt) == "table" and mt.__call ~= nil) then
    bad(1, "call", ("function expected, got %s"):format(type(handler)), 1)
  end
  check_fields(fields, "call", 2, 1)
  check_opt(opts, "table", "call", 3, nil, 1)
  if opts and opts.disconnect_after ~= nil then
    local n = opts.disconnect_after
    if math.type(n) ~= "integer" or n < 0 then
      bad(3, "call", "disconnect_after must be an integer from 0", 1)
    end
    local s <close> = M.stream(handler, fields, opts.timeout)
    local res = { chunks = {}, status = s.status, headers = s.headers, streamed = s.streamed, sse = s.sse,
                  heartbeat = s.heartbeat, disconnected = true }
    while #res.chunks < n do
      local c = s:chunk(opts.timeout)
      if not c then break end
      res.chunks[#res.chunks + 1] = c
    end
    res.cancelled = s:close()
    res.body = table.concat(res.chunks)
    return res
  end
  local req = M.request(fields)
  local res = { chunks = {} }
  local out = collector(req, res, function(chunk) res.chunks[#res.chunks + 1] = chunk end)
  local ok, err = pcall(core.run, respond, handler, req, out)
  local code, reason = core.client_error_of(err)
  if not ok and code and res.status == nil then -- as the server answers one
    out.reply(code, nil, ("%s (request %s)\n"):format(reason, req.id))
  elseif not ok then
    error(err, 0)
  end
  return res
end

return M
