-- SPDX-License-Identifier: MIT
-- Runs a handler and turns what it returns into a response through `out`:
-- rill.core.out on the server, a collector in rill.test. Each request runs
-- this in its own coroutine (src/server.c).
local co = require "rill.coroutine"
local router = require "rill.router"

local type, tostring, error, getmetatable = type, tostring, error, getmetatable
local close_body = co.close
local is_router, route = router.is_router, router.route

-- Closes the body iterator when the stream ends, fails or is cancelled.
local Closer = { __close = function(c) close_body(c.body) end }

local function is_callable(v)
  if type(v) == "function" then
    return true
  end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

local function send_list(out, status, headers, list)
  if out.start(status, headers) then
    for i = 1, #list do
      local chunk = list[i]
      if type(chunk) ~= "string" then
        error(("body[%d] is a %s, expected a string"):format(i, type(chunk)), 0)
      end
      out.write(chunk)
    end
  end
  return out.finish()
end

local function send_lazy(out, status, headers, body, sse, pump)
  local closer <close> = setmetatable({ body = body }, Closer)
  local started = out.start(status, headers)
  headers = nil -- sent: not kept alive for as long as the stream lasts
  if started then
    if sse then
      out.sse(sse) -- an event stream (rill.sse): idle heartbeats, retry jitter at shutdown
    end
    -- a bare hub subscription is fed from C once this returns: no coroutine waits
    if pump and out.pump and out.pump(pump.source, pump.first) then
      closer.body = nil
      return
    end
    local chunk = body()
    while chunk ~= nil do
      local t = type(chunk)
      if t == "number" then
        chunk = tostring(chunk)
      elseif t ~= "string" and t ~= "userdata" then -- userdata: a published hub event
        error(("body iterator returned a %s, expected a string or nil"):format(t), 0)
      end
      out.write(chunk)
      chunk = body()
    end
  end
  return out.finish()
end

-- The server passes the same handler every time: whether it is a router is
-- asked once, not per request.
local last_handler, last_is_router

-- method and path come from the server (not from rill.test's in-process calls)
return function(handler, req, out, method, path)
  local res
  if path and handler ~= last_handler then
    last_handler, last_is_router = handler, is_router(handler)
  end
  if path and last_is_router then
    res = route(handler, req, method, path)
  else
    res = handler(req)
  end
  local t = type(res)
  if t == "string" then
    return out.reply(200, nil, res)
  elseif res == nil then
    return out.reply(204, nil, nil)
  elseif t ~= "table" then
    error(("handler returned a %s, expected a string, a table or nil"):format(t), 0)
  end
  local status, headers, body = res.status or 200, res.headers, res.body
  local bt = type(body)
  if body == nil or bt == "string" then
    return out.reply(status, headers, body)
  elseif is_callable(body) then
    return send_lazy(out, status, headers, body, res.sse, res.pump)
  elseif bt == "table" then
    return send_list(out, status, headers, body)
  end
  error(("response body is a %s, expected a string, a list of strings or an iterator"):format(bt), 0)
end
