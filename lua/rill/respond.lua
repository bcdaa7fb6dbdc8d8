-- SPDX-License-Identifier: MIT
-- Runs a handler and turns what it returns into a response through `out`:
-- rill.core.out on the server, a collector in rill.test. Each request runs
-- this in its own coroutine (src/server.c). Everything a response is made of
-- is checked before its first byte goes out, and an error names the app's
-- handler (its file and line) and the request, not this file.
local body_mod = require "rill.body"
local co = require "rill.coroutine"
local cookie = require "rill.cookie"
local core = require "rill.core"
local router = require "rill.router"

local type, tostring, error, getmetatable, pcall, pairs = type, tostring, error, getmetatable, pcall, pairs
local getinfo = debug.getinfo
local close_body, thread_of = co.close, co.thread_of
local is_router, route = router.is_router, router.route_named

-- Closes the body iterator when the stream ends, fails or is cancelled.
local Closer = { __close = function(c) close_body(c.body) end }

local function is_file(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name == "rill.file"
end

local is_callable = body_mod.is_callable

-- "app.lua:12: route 'GET /users/:id': GET /users/7: " for an error in what
-- the handler defined at app.lua:12 returned.
local function origin(fn, req, name)
  local where = "handler"
  local info = type(fn) == "function" and getinfo(fn, "S")
  if info and info.what == "Lua" then
    where = info.short_src .. ":" .. info.linedefined
  end
  if name then
    where = ("%s: route '%s'"):format(where, name)
  end
  return ("%s: %s %s: "):format(where, tostring(req.method), tostring(req.path))
end

-- fn and name: the handler and its route, passed down as two arguments (no table per request)
local function fail(fn, name, req, msg)
  error(origin(fn, req, name) .. tostring(msg), 0)
end

-- out.reply / out.start, their errors (a bad status or header) named after the handler.
local function checked(fn, name, req, call, ...)
  local ok, res = pcall(call, ...)
  if not ok then
    fail(fn, name, req, res)
  end
  return res
end

-- A list body is checked whole before its head goes out: a bad element is a
-- 500, never a 200 cut short. Numbers are written as text, as a lazy body's are.
local function check_list(fn, name, req, list)
  for i = 1, #list do
    local t = type(list[i])
    if t ~= "string" and t ~= "number" then
      fail(fn, name, req, ("body[%d] is a %s, expected a string"):format(i, t))
    end
  end
end

local function send_list(fn, name, req, out, status, headers, list, compress)
  check_list(fn, name, req, list)
  if checked(fn, name, req, out.start, status, headers, compress) then
    for i = 1, #list do
      local chunk = list[i]
      out.write(type(chunk) == "number" and tostring(chunk) or chunk)
    end
  end
  return out.finish()
end

local function send_lazy(fn, name, req, out, status, headers, body, sse, pump, compress)
  local closer <close> = setmetatable({ body = body }, Closer)
  local source = type(pump) == "table" and pump.source or nil -- rill.sse's: a stream C may feed
  -- an event stream's coroutine.wrap generator: C resumes its coroutine as the request's task
  local gen = sse and out.drive and thread_of(source)
  local started = checked(fn, name, req, out.start, status, headers, compress, source, gen)
  headers = nil -- sent: not kept alive for as long as the stream lasts
  if started then
    if sse then
      out.sse(sse) -- an event stream (rill.sse): idle heartbeats, retry jitter at shutdown
    end
    -- a bare hub subscription is fed from C once this returns, and a generator is resumed
    -- by C: either way no coroutine of the driver's waits, nor this frame's tables
    if source and out.pump and out.pump(source, pump.first) or gen and out.drive(gen, pump.first) then
      closer.body = nil
      return
    end
    local chunk = body()
    while chunk ~= nil do
      local t = type(chunk)
      if t == "number" then
        chunk = tostring(chunk)
      elseif t ~= "string" and t ~= "userdata" then -- userdata: a published hub event
        fail(fn, name, req, ("body iterator returned a %s, expected a string or nil"):format(t))
      end
      out.write(chunk)
      chunk = body()
    end
  end
  return out.finish()
end

-- req:json(), req:form() and req.cookies, on the server's requests and rill.test's alike
core.extend_request({ json = body_mod.req_json, form = body_mod.req_form,
  body_reader = body_mod.req_body_reader, read_body = body_mod.req_read_body }, { cookies = cookie.parse })

local function has_content_type(headers)
  for name in pairs(headers) do
    if type(name) == "string" and name:lower() == "content-type" then
      return true
    end
  end
  return false
end

-- { json = value, status =, headers = }: the body is value as JSON, application/json
-- unless the handler names its own type. The handler's headers table is not changed.
local function json_reply(fn, name, req, res)
  if res.body ~= nil then
    fail(fn, name, req, "response has both json and body: give one")
  end
  local text, err = body_mod.encode(res.json)
  if not text then
    fail(fn, name, req, "response json cannot be encoded: " .. err)
  end
  local headers = res.headers
  if headers ~= nil and type(headers) ~= "table" then
    return text, headers -- out.reply says what is wrong with it
  end
  local out = { ["content-type"] = "application/json" }
  if headers and has_content_type(headers) then
    out = {}
  end
  for k, v in pairs(headers or {}) do out[k] = v end
  return text, out
end

-- The server passes the same handler every time: whether it is a router is
-- asked once, not per request.
local last_handler, last_is_router

-- method and path come from the server (not from rill.test's in-process calls)
return function(handler, req, out, method, path)
  local res, fn, name
  if path and handler ~= last_handler then
    last_handler, last_is_router = handler, is_router(handler)
  end
  if path and last_is_router then
    res, fn, name = route(handler, req, method, path)
  else
    res = handler(req)
  end
  fn = fn or handler
  local t = type(res)
  if t == "string" then
    return out.reply(200, nil, res)
  elseif res == nil then
    return out.reply(204, nil, nil)
  elseif t ~= "table" then
    fail(fn, name, req, ("handler returned a %s, expected a string, a table or nil"):format(t))
  end
  local status, headers, body, compress = res.status or 200, res.headers, res.body, res.compress
  if compress ~= nil and type(compress) ~= "boolean" then
    fail(fn, name, req, ("response compress must be a boolean, got %s"):format(type(compress)))
  end
  if res.json ~= nil then
    body, headers = json_reply(fn, name, req, res)
  end
  local bt = type(body)
  if body == nil or bt == "string" then
    return checked(fn, name, req, out.reply, status, headers, body, compress)
  elseif bt == "userdata" and is_file(body) then -- rill.static's: sent by the kernel
    return checked(fn, name, req, out.file, status, headers, body, res.offset or 0, res.length)
  elseif is_callable(body) then
    return send_lazy(fn, name, req, out, status, headers, body, res.sse, res.pump, compress)
  elseif bt == "table" then
    return send_list(fn, name, req, out, status, headers, body, compress)
  end
  fail(fn, name, req, ("response body is a %s, expected a string, a list of strings or an iterator"):format(bt))
end
