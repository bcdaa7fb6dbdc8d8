-- SPDX-License-Identifier: MIT
-- CORS for EventSource and fetch: rill.cors(handler, opts) answers the
-- preflight OPTIONS (allowing the last-event-id header a reconnecting
-- EventSource sends) and adds the allow-origin headers to responses.
local type, pairs, ipairs, error, tostring, table = type, pairs, ipairs, error, tostring, table
local getmetatable = getmetatable

-- origin: "*", a string, a list of strings, or function(origin) → boolean.
local function allows(rule, origin)
  if rule == "*" then
    return true
  elseif type(rule) == "string" then
    return rule == origin
  elseif type(rule) == "function" then
    return rule(origin) == true
  end
  for _, o in ipairs(rule) do
    if o == origin then
      return true
    end
  end
  return false
end

local function as_table(res)
  if type(res) == "string" then
    return { body = res }
  elseif res == nil then
    return { status = 204 }
  end
  return res
end

-- Adds "Origin" to a handler's own Vary (under whatever case it spelled the
-- name), so a cache keeps the answers to different origins apart.
local function add_vary(headers)
  for k, v in pairs(headers) do
    if type(k) == "string" and k:lower() == "vary" then
      local list = type(v) == "table" and table.concat(v, ", ") or tostring(v)
      if not (", " .. list:lower() .. ","):find("[, ]origin,") and list ~= "*" then
        headers[k] = list .. ", Origin"
      end
      return
    end
  end
  headers.vary = "Origin"
end

local function with_headers(res, extra)
  local headers = {}
  for k, v in pairs(res.headers or {}) do
    headers[k] = v
  end
  for k, v in pairs(extra) do
    headers[k] = v
  end
  add_vary(headers)
  local out = {}
  for k, v in pairs(res) do
    out[k] = v
  end
  out.headers = headers
  return out
end

local is_callable = require("rill.body").is_callable

local function bad_opt(msg)
  error("bad argument #2 to 'cors' (" .. msg .. ")", 3)
end

-- Options are checked when the handler is built: a bad origin rule or a
-- header value with a line break would otherwise surface at the first
-- request, or reach the wire.
local function check_opts(opts)
  if type(opts) ~= "table" or opts.origin == nil then
    bad_opt("a table with origin expected")
  end
  local origin = opts.origin
  if type(origin) == "table" then
    for _, o in ipairs(origin) do
      if type(o) ~= "string" or o == "" then
        bad_opt("origin must list non-empty strings")
      end
    end
  elseif not ((type(origin) == "string" and origin ~= "") or is_callable(origin)) then
    bad_opt("origin must be \"*\", a string, a list of strings or a function, got " .. type(origin))
  end
  for _, name in ipairs { "methods", "headers" } do
    local v = opts[name]
    if v ~= nil and (type(v) ~= "string" or v:find("[%c]")) then
      bad_opt(name .. " must be a string without control characters")
    end
  end
  local max_age = opts.max_age
  if max_age ~= nil and not (math.type(max_age) and math.tointeger(max_age) and max_age >= 0 and max_age <= 1e9) then
    bad_opt("max_age must be an integer of seconds from 0 to 1e9, got " .. tostring(max_age))
  end
  if opts.credentials ~= nil and type(opts.credentials) ~= "boolean" then
    bad_opt("credentials must be a boolean")
  end
end

-- opts: origin (required), credentials (boolean), methods (default
-- "GET, POST, OPTIONS"), headers (extra request headers to allow, a string),
-- max_age (seconds a preflight is cached, default 600).
return function(handler, opts)
  if not is_callable(handler) then
    error(("bad argument #1 to 'cors' (function expected, got %s)"):format(type(handler)), 2)
  end
  check_opts(opts)
  local allow_headers = "last-event-id" .. (opts.headers and (", " .. opts.headers) or "")
  local methods = opts.methods or "GET, POST, OPTIONS"
  local max_age = tostring(math.tointeger(opts.max_age or 600))
  return function(req)
    local origin = req.headers.origin
    local ok = type(origin) == "string" and allows(opts.origin, origin)
    -- every answer depends on Origin, the refused and the absent one too:
    -- without Vary a cache could serve one origin's answer to another
    local base = {}
    if ok then
      base["access-control-allow-origin"] = (opts.origin == "*" and not opts.credentials) and "*" or origin
      if opts.credentials then
        base["access-control-allow-credentials"] = "true"
      end
    end
    if req.method == "OPTIONS" and req.headers["access-control-request-method"] then
      if ok then
        base["access-control-allow-methods"] = methods
        base["access-control-allow-headers"] = allow_headers
        base["access-control-max-age"] = max_age
      end
      add_vary(base)
      return { status = 204, headers = base }
    end
    return with_headers(as_table(handler(req)), base)
  end
end
