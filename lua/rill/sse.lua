-- SPDX-License-Identifier: MIT
-- Server-sent events: an encoder exact to the WHATWG parsing rules, and
-- follow(), a resumable client of an upstream event stream.
local core = require "rill.core"
local wrap = require("rill.coroutine").wrap
local stands_for = require("rill.coroutine").stands_for
local close = require("rill.coroutine").close

local type, tostring, error = type, tostring, error
local getmetatable, setmetatable, pairs = getmetatable, setmetatable, pairs

local M = {}

local MAX_SECONDS = 1e9 -- the longest duration rill takes anywhere (src/luanum.h)

-- A duration option: a finite number of seconds from 0 to 1e9. NaN, an
-- infinity or 1e300 would turn a timer into "every loop turn" or "never".
local function check_seconds(v, fname, argn, name, level)
  if type(v) ~= "number" or v ~= v or v < 0 or v > MAX_SECONDS then
    error(("bad argument #%d to '%s' (%s must be a number of seconds from 0 to 1e9, got %s)")
      :format(argn, fname, name, tostring(v)), level + 1)
  end
end

local function check_opts(opts, fname, level)
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #2 to '%s' (table or nil expected, got %s)"):format(fname, type(opts)), level + 1)
  end
  return opts or {}
end

-- Encodes one event: a table {event=, data=, id=, retry=, comment=} or a
-- string (the data). data is split on every line end into data: lines; a
-- field that cannot be encoded raises rather than corrupt the stream. A
-- table with no data (id or retry only) encodes a block that moves the
-- client's state without firing an event.
M.encode = core.sse_encode -- src/sse.c

-- encode_parts(event) → prefix, suffix: the block encode gives for the event
-- with an id, cut where its id line goes (the hub fills in the id).
M.encode_parts = core.sse_encode_parts

-- parser([max_event_bytes]): the WHATWG parser rill itself uses, for Lua
-- clients and specs; p:feed(bytes) returns the blocks those bytes dispatched.
M.parser = core.sse_parser

---------------------------------------------------------------------------
-- rill.sse(source, opts): an event-stream response.

-- A function that declares a parameter is a producer taking send; an object
-- with an __sse metamethod (a tail) gives its own events; any other callable
-- (a coroutine.wrap generator, a subscription) is an iterator.
local function as_iterator(source)
  local mt = getmetatable(source)
  if type(mt) == "table" and mt.__sse then
    return mt.__sse(source)
  end
  if type(source) == "function" and debug.getinfo(source, "u").nparams >= 1 then
    return wrap(function()
      source(coroutine.yield)
    end)
  end
  if type(source) ~= "function" and not (type(mt) == "table" and mt.__call) then
    error(("bad argument #1 to 'sse' (an iterator or a function(send) expected, got %s)"):format(type(source)), 3)
  end
  return source
end

-- The body of an event stream: a plain function, not a coroutine, so that an
-- event reaches the wire with no coroutine switch besides the handler's own.
local function events_body(iter, retry)
  local last
  local function body()
    if retry then
      local first = retry
      retry = nil
      return first
    end
    last = iter(nil, last) -- as a generic for calls it
    if last == nil or type(last) == "userdata" then
      return last
    end
    return M.encode(last)
  end
  return stands_for(body, iter)
end

-- Returns a response streaming the events of source: tables or strings
-- (data), encoded as browsers read them; published hub events go out as
-- the bytes encoded once at publish. opts: heartbeat (seconds idle before a
-- comment line, default 15, 0 = none), retry (ms, sent first; default 3000,
-- false = none), status, headers, compress (gzip for clients that take it).
function M.response(source, opts)
  opts = check_opts(opts, "sse", 2)
  local iter = as_iterator(source)
  local heartbeat = opts.heartbeat == nil and 15 or opts.heartbeat
  check_seconds(heartbeat, "sse", 2, "heartbeat", 2)
  if heartbeat > 0 and heartbeat < 0.001 then -- shorter would fire every loop turn
    error(("bad argument #2 to 'sse' (heartbeat must be 0 (none) or from 0.001 to 1e9 seconds, got %s)")
      :format(tostring(heartbeat)), 2)
  end
  -- retry: is sticky in EventSource: a stream starts with the normal one, so
  -- a jittered value from a shutdown or a reload's drain does not stay
  local retry_ms = opts.retry
  if retry_ms == nil then
    retry_ms = M.DEFAULT_RETRY
  end
  if retry_ms ~= false then
    local ms = math.type(retry_ms) and math.tointeger(retry_ms)
    if not ms or ms < 0 or ms > MAX_SECONDS * 1000 then
      error(("bad argument #2 to 'sse' (retry must be an integer of milliseconds from 0 to 1e12, or false, got %s)")
        :format(tostring(retry_ms)), 2)
    end
  end
  if opts.headers ~= nil and type(opts.headers) ~= "table" then
    error(("bad argument #2 to 'sse' (headers must be a table, got %s)"):format(type(opts.headers)), 2)
  end
  if opts.compress ~= nil and type(opts.compress) ~= "boolean" then
    error(("bad argument #2 to 'sse' (compress must be a boolean, got %s)"):format(type(opts.compress)), 2)
  end
  local retry = retry_ms and M.encode({ retry = retry_ms })
  local headers = { ["content-type"] = "text/event-stream", ["cache-control"] = "no-cache", ["x-accel-buffering"] = "no" }
  for name, value in pairs(opts.headers or {}) do
    headers[name:lower()] = value
  end
  return {
    status = opts.status or 200,
    headers = headers,
    sse = heartbeat, -- the driver (rill.respond) marks the stream: heartbeats, shutdown jitter
    body = events_body(iter, retry),
    pump = { source = iter, first = retry }, -- the driver may feed a hub subscription from C
    compress = opts.compress, -- gzip, each event flushed (nil: the server's --compress)
  }
end

-- The retry: a stream starts with unless rill.sse's retry option says otherwise
-- (false: none), in milliseconds.
M.DEFAULT_RETRY = 3000

-- The resume point of a request: its Last-Event-ID header, or for a first
-- connection (EventSource cannot set headers) ?last_event_id= (the header wins).
function M.last_event_id(req)
  local t = type(req)
  if t ~= "table" and t ~= "userdata" then
    error(("bad argument #1 to 'last_event_id' (request expected, got %s)"):format(t), 2)
  end
  local id = req.headers["last-event-id"]
  if type(id) == "table" then
    id = id[#id]
  end
  if id == nil then
    id = req.query.last_event_id or req.query.lastEventId
  end
  return id
end

---------------------------------------------------------------------------
-- follow(url, opts): an upstream event stream followed as a browser's
-- EventSource would, for as long as the caller keeps pulling.

local DEFAULTS = { min_delay = 0.1, max_delay = 5 }

local function is_event_stream(content_type)
  local essence = type(content_type) == "string" and content_type:match("^%s*([^;%s]+)")
  return essence ~= nil and essence:lower() == "text/event-stream"
end

local function option(opts, name)
  local v = opts[name]
  if v == nil then
    return DEFAULTS[name]
  end
  check_seconds(v, "follow", 2, name, 3)
  return v
end

-- One connection attempt: "open" (state.up and state.events are set),
-- "dropped" (try again later), "stop" (a 204: never again) or "fail".
local function connect(url, opts, state)
  local headers = { accept = "text/event-stream", ["cache-control"] = "no-cache" }
  for k, v in pairs(opts.headers or {}) do
    headers[k] = v
  end
  if state.cursor and state.cursor ~= "" then
    headers["last-event-id"] = state.cursor
  end
  local up, err = core.fetch(url, { headers = headers, timeout = opts.timeout, idle_timeout = opts.idle_timeout })
  if not up then
    state.last_error = err
    return "dropped"
  end
  if up.status == 204 then
    close(up)
    return "stop" -- the upstream's way to say: do not reconnect
  end
  if up.status ~= 200 or not is_event_stream(up.headers["content-type"]) then
    state.last_error = ("upstream answered %d %s"):format(up.status, tostring(up.headers["content-type"]))
    close(up)
    return opts.retry_on_error and "dropped" or "fail"
  end
  state.up, state.events, state.progressed = up, up:events(opts.max_event_bytes), false
  return "open"
end

local function hang_up(state)
  local up = state.up
  state.up, state.events = nil, nil
  if up then
    close(up)
  end
end

-- The next wait: the upstream's retry: if it gave one, else a ladder from
-- min_delay doubling to max_delay, back to the start after progress. Never
-- below min_delay, so an upstream that answers empty streams cannot spin us.
local function next_delay(state, opts, progressed)
  if progressed then
    state.ladder = opts.min_delay
  else
    state.ladder = math.min((state.ladder or opts.min_delay) * 2, opts.max_delay)
  end
  return math.max(state.retry or state.ladder, opts.min_delay)
end

-- Follows an upstream event stream and returns an iterator of its events
-- (tables as from fetch:events()). When the stream drops or ends, it
-- reconnects with Last-Event-ID set to the id committed by the last complete
-- event, after the upstream's retry: or a backoff ladder, and goes on for as
-- long as the caller pulls (a handler's client stays). It stops on 204. A
-- non-200 or non-text/event-stream answer fails as in a browser (the
-- iterator raises) unless opts.retry_on_error, which backs off and retries.
-- opts: last_event_id, headers, min_delay (0.1 s), max_delay (5 s),
-- timeout, idle_timeout, max_event_bytes, retry_on_error.
function M.follow(url, opts)
  if type(url) ~= "string" then
    error(("bad argument #1 to 'follow' (string expected, got %s)"):format(type(url)), 2)
  end
  opts = check_opts(opts, "follow", 2)
  for _, name in ipairs { "timeout", "idle_timeout" } do -- checked here, not at the first pull
    if opts[name] ~= nil then check_seconds(opts[name], "follow", 2, name, 2) end
  end
  local max = opts.max_event_bytes
  if max ~= nil and not (math.type(max) and math.tointeger(max) and max > 0) then
    error(("bad argument #2 to 'follow' (max_event_bytes must be a positive integer, got %s)"):format(tostring(max)), 2)
  end
  local settings = {
    headers = opts.headers,
    timeout = opts.timeout,
    idle_timeout = opts.idle_timeout,
    max_event_bytes = opts.max_event_bytes,
    retry_on_error = opts.retry_on_error,
    min_delay = option(opts, "min_delay"),
    max_delay = option(opts, "max_delay"),
  }
  local state = { cursor = opts.last_event_id }
  -- A plain iterator, not a coroutine: an event costs no coroutine switch.
  local function next_event()
    while not state.stopped do
      if not state.up then
        local how = connect(url, settings, state)
        if how == "stop" then
          state.stopped = true
        elseif how == "fail" then
          error("sse.follow " .. url .. ": " .. state.last_error, 0)
        elseif how == "dropped" then
          core.sleep(next_delay(state, settings, false))
        end
      else
        local ok, ev = pcall(state.events)
        if ok and ev ~= nil then
          if ev.id ~= nil then
            state.cursor = ev.id -- committed at a blank line: the resume point
          end
          if ev.retry then
            state.retry = ev.retry / 1000
          end
          state.progressed = true
          return ev
        end
        if not ok then
          state.last_error = ev
        end
        hang_up(state)
        core.sleep(next_delay(state, settings, state.progressed))
      end
    end
  end
  -- closing the iterator (the client left) hangs up the upstream
  return stands_for(next_event, setmetatable({}, { __close = function() hang_up(state) end }))
end

return setmetatable(M, { __call = function(_, source, opts) return M.response(source, opts) end })
