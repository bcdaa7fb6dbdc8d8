-- SPDX-License-Identifier: MIT
-- rill.router: Lapis-style path routing for rill handlers.
--
--   local router = require "rill.router"
--   local app = router.new {
--     ["GET /"] = function(req) return "home" end,
--     ["GET /users/:id[%d]"] = function(req) return req.params.id end,
--   }
--   app:post("/users", create_user)
--   return app(req)            -- the router is itself a handler
--
-- Each route path is compiled once, when it is added, into one or more
-- anchored Lua patterns (one per combination of optional groups). Static
-- routes are kept in a hash table keyed by exact path. Precedence is a
-- total order computed from the pattern (see `before`), ending with the
-- order of declaration, so it never depends on how pattern text sorts.

local body = require "rill.body"
local is_callable = body.is_callable

local M = {}

local RANK_STATIC, RANK_PARAM, RANK_SPLAT = 1, 2, 3
local MAX_VARIANTS = 64   -- combinations of optional groups per route
local MAX_CAPTURES = 32   -- LUAI_MAXCAPTURES in a stock Lua build
local MAX_DEPTH = 16      -- nesting of optional groups
local TEXT_PLAIN = "text/plain; charset=utf-8"
local EMPTY = {}

local methods = {}
local Router = { __index = methods, __name = "rill.router" }

-- Raised inside the parser and caught by compile(), so deep recursion can
-- bail out without threading `nil, err` through every level.
local ParseError = {}

local function fail(msg)
  error(setmetatable({ msg = msg }, ParseError), 0)
end


local function lua_escape(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

-- Finds the end of a ":name[class]" body starting at i (just past '[').
-- '%' escapes the next character, exactly as in a Lua character class,
-- so "[%]]" is a class containing ']'.
local function scan_class(s, i)
  local j = i
  while j <= #s do
    local c = s:sub(j, j)
    if c == "%" then
      j = j + 2
    elseif c == "]" then
      local body = s:sub(i, j - 1)
      if body == "" or body == "^" then
        fail("empty character class at position " .. (i - 1))
      end
      if not pcall(string.find, "", "[" .. body .. "]") then
        fail("invalid character class '[" .. body .. "]'")
      end
      -- a parameter is one segment: a negated class is kept off '/', and a
      -- class that names '/' is refused rather than silently crossing it
      if body:sub(1, 1) == "^" then
        body = body .. "/"
      elseif ("/"):find("^[" .. body .. "]$") then
        fail("character class '[" .. body .. "]' matches '/' (a parameter is one segment; use '*')")
      end
      return body, j + 1
    else
      j = j + 1
    end
  end
  fail("unterminated '[' at position " .. (i - 1))
end

-- Records a capture name, rejecting duplicates so params never overwrite
-- each other silently. '*' is recorded under the name "splat".
local function add_name(st, name, is_splat)
  if st.names[name] then
    if is_splat or name == "splat" then
      fail(st.splat and "more than one '*'" or "':splat' clashes with '*'")
    end
    fail("duplicate parameter '" .. name .. "'")
  end
  st.names[name] = true
  st.captures = st.captures + 1
  if st.captures > MAX_CAPTURES then fail("too many parameters") end
end

-- Recursive descent over a route path. Returns the node list and the index
-- where it stopped: at a ')' closing this group, or just past the end.
local function parse_seq(s, i, st, depth)
  if depth > MAX_DEPTH then fail("optional groups nested too deeply") end
  local seq, lit = {}, {}
  local function flush()
    if #lit > 0 then
      seq[#seq + 1] = { lit = table.concat(lit) }
      lit = {}
    end
  end
  while i <= #s do
    local c = s:sub(i, i)
    if c == "(" then
      flush()
      local inner, j = parse_seq(s, i + 1, st, depth + 1)
      if s:sub(j, j) ~= ")" then fail("unbalanced '(' at position " .. i) end
      if #inner == 0 then fail("empty optional group at position " .. i) end
      seq[#seq + 1] = { opt = inner }
      st.optional = true
      i = j + 1
    elseif c == ")" then
      if depth == 0 then fail("unbalanced ')' at position " .. i) end
      break
    elseif c == ":" then
      flush()
      local name = s:match("^[%a_][%w_]*", i + 1)
      if not name then fail("':' without a parameter name at position " .. i) end
      local class
      i = i + 1 + #name
      if s:sub(i, i) == "[" then class, i = scan_class(s, i + 1) end
      add_name(st, name, false)
      if not class then st.unconstrained = st.unconstrained + 1 end
      seq[#seq + 1] = { param = name, class = class }
    elseif c == "*" then
      flush()
      add_name(st, "splat", true)
      st.splat = true
      seq[#seq + 1] = { splat = true, optional = depth > 0 }
      i = i + 1
    elseif c == "[" or c == "]" then
      fail("unexpected '" .. c .. "' at position " .. i
        .. " (brackets are only allowed right after a :param)")
    else
      lit[#lit + 1] = c
      st.literals = st.literals + 1
      i = i + 1
    end
  end
  flush()
  return seq, i
end

-- A variant is { pattern, names, opt_splat }: opt_splat is the index in
-- names of a '*' inside an optional group, which is left out of params when
-- it matched nothing (so `/:one(*)` on `/x` gives no splat, not "").
local function piece(node)
  if node.lit then return { pattern = lua_escape(node.lit), names = {} } end
  if node.splat then
    return { pattern = "(.*)", names = { "splat" }, opt_splat = node.optional and 1 or nil }
  end
  local class = node.class and ("[" .. node.class .. "]") or "[^/]"
  return { pattern = "(" .. class .. "+)", names = { node.param } }
end

local function join(a, b)
  local names = table.move(a.names, 1, #a.names, 1, {})
  table.move(b.names, 1, #b.names, #names + 1, names)
  local opt = a.opt_splat or (b.opt_splat and #a.names + b.opt_splat)
  return { pattern = a.pattern .. b.pattern, names = names, opt_splat = opt }
end

-- Turns a node list into every combination of present/absent optional
-- groups, "present" first so the most specific reading is tried first.
local function expand(seq)
  local variants = { { pattern = "", names = {} } }
  for _, node in ipairs(seq) do
    local options
    if node.opt then
      options = expand(node.opt)
      options[#options + 1] = { pattern = "", names = {} }
    else
      options = { piece(node) }
    end
    local product = {}
    for _, v in ipairs(variants) do
      for _, o in ipairs(options) do product[#product + 1] = join(v, o) end
    end
    if #product > MAX_VARIANTS then fail("too many optional groups") end
    variants = product
  end
  return variants
end

-- Compiles a route path into its variants and the facts precedence is
-- computed from (see `before`), or nil, err.
local function compile(path)
  if path:sub(1, 1) ~= "/" then return nil, "pattern must start with '/'" end
  local st = { names = {}, captures = 0, literals = 0, unconstrained = 0 }
  local ok, seq = pcall(parse_seq, path, 1, st, 0)
  if not ok then
    if getmetatable(seq) == ParseError then return nil, seq.msg end
    error(seq, 0)
  end
  local ok2, variants = pcall(expand, seq)
  if not ok2 then
    if getmetatable(variants) == ParseError then return nil, variants.msg end
    error(variants, 0)
  end
  for _, v in ipairs(variants) do v.pattern = "^" .. v.pattern .. "$" end
  local rank = RANK_PARAM
  if st.splat then
    rank = RANK_SPLAT
  elseif st.captures == 0 and not st.optional then
    rank = RANK_STATIC
  end
  return {
    rank = rank,
    prefix = (path:find("[:%*%(]") or #path + 1) - 1, -- literal text before the first capture or group
    unconstrained = st.unconstrained,
    captures = st.captures,
    literals = st.literals,
    variants = variants,
  }
end

-- "GET|post" -> set { GET = true, POST = true } and canonical key "GET|POST".
local function parse_methods(spec)
  local set, list = {}, {}
  for part in (spec .. "|"):gmatch("([^|]*)|") do
    if not part:match("^%a[%w_-]*$") then
      return nil, "invalid method '" .. part .. "'"
    end
    part = part:upper()
    if not set[part] then
      set[part] = true
      list[#list + 1] = part
    end
  end
  table.sort(list)
  return set, table.concat(list, "|")
end

-- Splits a table key like "GET|POST /form" into its method spec (or nil)
-- and path.
local function split_key(key)
  local k = key:match("^%s*(.-)%s*$")
  if k:sub(1, 1) == "/" then return nil, k end
  local spec, path = k:match("^(%S+)%s+(.*)$")
  if not spec then return nil, nil, "pattern must start with '/'" end
  return spec, path
end

-- The precedence, a total order (docs/handlers.md, "Precedence"): static
-- routes, then routes with parameters, then routes with a '*'; then the
-- longer literal prefix; fewer unconstrained parameters (so `:id[%d]` is
-- tried before `:name`); fewer captures; more literal characters; a route
-- for named methods before an any-method one; then declaration order.
local function before(a, b)
  if a.rank ~= b.rank then return a.rank < b.rank end
  if a.prefix ~= b.prefix then return a.prefix > b.prefix end
  if a.unconstrained ~= b.unconstrained then return a.unconstrained < b.unconstrained end
  if a.captures ~= b.captures then return a.captures < b.captures end
  if a.literals ~= b.literals then return a.literals > b.literals end
  if a.any ~= b.any then return b.any end
  return a.seq < b.seq
end

-- Validates and registers one route. Returns true, or nil plus the
-- offending argument (1 method, 2 path, 3 handler) and a message.
local function add_route(self, spec, path, handler)
  local display = (spec and spec .. " " or "") .. path
  local set, key = nil, ""
  if spec ~= nil then
    set, key = parse_methods(spec)
    if not set then return nil, 1, ("route '%s': %s"):format(display, key) end
  end
  local route, err = compile(path)
  if not route then return nil, 2, ("route '%s': %s"):format(display, err) end
  if not is_callable(handler) then
    return nil, 3, ("route '%s': handler must be a function or callable table, got %s")
      :format(display, type(handler))
  end
  local id = key .. " " .. path
  if self._ids[id] then
    return nil, 2, ("route '%s': duplicate route"):format(display)
  end
  if body.is_streamed_body(handler) then
    -- the gate must know at the head: every path this route may match starts with its literal part
    local ok, err = pcall(body.stream_body_path, path:match("^[^:*(]*"))
    if not ok then return nil, 3, ("route '%s': %s"):format(display, err) end
    route.streams = true
  end
  self._ids[id] = true
  route.path, route.handler, route.display = path, handler, display
  route.any, route.methods = set == nil, set or EMPTY
  self._seq = self._seq + 1
  route.seq = self._seq -- declaration order, the last tie-breaker
  self._routes[#self._routes + 1] = route
  self._dirty = true
  return true
end

-- Sorts routes and splits them into the static hash and the ordered
-- pattern list. Done lazily on the first request after a change.
local function rebuild(self)
  table.sort(self._routes, before)
  local static, dynamic = {}, {}
  for _, r in ipairs(self._routes) do
    if r.rank == RANK_STATIC then
      local list = static[r.path] or {}
      static[r.path] = list
      list[#list + 1] = r
    else
      dynamic[#dynamic + 1] = r
    end
  end
  self._static, self._dynamic, self._dirty = static, dynamic, false
end

local function bind(variant, ...)
  if (...) == nil then return nil end
  local params, names, opt = {}, variant.names, variant.opt_splat
  for i = 1, #names do
    local value = select(i, ...)
    if i ~= opt or value ~= "" then params[names[i]] = value end
  end
  return params
end

-- What a static route matches with: no parameters, and no table made for them.
local NO_PARAMS = {}

local function match_path(route, path)
  if route.rank == RANK_STATIC then return NO_PARAMS end -- hashed by exact path
  local variants = route.variants
  for i = 1, #variants do
    local v = variants[i]
    local params = bind(v, path:match(v.pattern))
    if params then return params end
  end
  return nil
end

-- Walks routes in precedence order. Returns the first route that matches
-- both path and method; routes matching only the path are collected in
-- `miss` for the HEAD->GET fallback and the Allow header of a 405.
local function scan(routes, path, method, miss)
  for i = 1, #routes do
    local route = routes[i]
    local params = match_path(route, path)
    if params then
      if route.any or route.methods[method] then return route, params, miss end
      miss = miss or { allowed = {} }
      if method == "HEAD" and not miss.route and route.methods.GET then
        miss.route, miss.params = route, params
      end
      for m in pairs(route.methods) do miss.allowed[m] = true end
    end
  end
  return nil, nil, miss
end

local function not_found()
  return {
    status = 404,
    headers = { ["content-type"] = TEXT_PLAIN },
    body = "not found\n",
  }
end

-- The Allow value of a 405: the methods that would match, sorted, HEAD
-- whenever GET (a HEAD is served by the GET route).
local function allow_value(allowed)
  if allowed.GET then allowed.HEAD = true end
  local list = {}
  for m in pairs(allowed) do list[#list + 1] = m end
  table.sort(list)
  return table.concat(list, ", ")
end

local function method_not_allowed(allow)
  return {
    status = 405,
    headers = { ["allow"] = allow, ["content-type"] = TEXT_PLAIN },
    body = "method not allowed\n",
  }
end

local function has_header(headers, name)
  for k in pairs(headers) do
    if type(k) == "string" and k:lower() == name then return true end
  end
  return false
end

-- Runs an app's not_found / method_not_allowed handler. Its answer is a
-- response like a route's, except that the status defaults to the 404/405
-- (a forgotten status must not turn a miss into a 200) and a 405 always
-- carries Allow. The app's table is copied, never changed: it may be shared.
local function run_miss(handler, req, status, allow)
  local res = handler(req, allow)
  local t = type(res)
  if t == "string" then
    return { status = status, headers = { ["allow"] = allow, ["content-type"] = TEXT_PLAIN }, body = res }
  elseif res == nil then
    return { status = status, headers = { ["allow"] = allow } }
  elseif t ~= "table" then
    return res -- rill.respond names the bad type
  end
  local out = {}
  for k, v in pairs(res) do out[k] = v end
  out.status = out.status or status
  if allow and type(out.headers) == "table" then
    if not has_header(out.headers, "allow") then
      local headers = { ["allow"] = allow }
      for k, v in pairs(out.headers) do headers[k] = v end
      out.headers = headers
    end
  elseif allow then
    out.headers = { ["allow"] = allow }
  end
  return out
end

-- Finds the route of method and path and runs its handler. plain: req is a
-- plain table (rill.test), which gets a fresh req.params; the server's req
-- makes an empty one when it is read.
-- What answers method and path: a route (req.params set), or nil with the
-- miss's status and, for a 405, its Allow value.
local function find(self, req, method, path, plain)
  if self._dirty then rebuild(self) end
  local static = self._static[path]
  if static then -- the common case first: a static route of this path takes this method
    for i = 1, #static do
      local r = static[i]
      if r.any or r.methods[method] then
        if plain then req.params = {} end
        return r
      end
    end
  end
  local found, params, miss = scan(static or EMPTY, path, method, nil)
  if not found then found, params, miss = scan(self._dynamic, path, method, miss) end
  if not found and miss and miss.route then found, params = miss.route, miss.params end
  if found then
    if params ~= NO_PARAMS then
      req.params = params
    elseif plain then
      req.params = {}
    end
    return found
  end
  if miss then return nil, 405, allow_value(miss.allowed) end
  return nil, 404
end

-- A route that reads its body whole gets it so, even on a path whose bodies are streamed.
local settle = body.settle

-- A custom 404/405 handler may read req.body as always; the built-in ones answer
-- without it (an unread streamed body: the reply closes the connection).
local function answer_miss(self, req, status, allow)
  if status == 405 then
    if self._method_not_allowed then
      if body.streaming then settle(req) end
      return run_miss(self._method_not_allowed, req, 405, allow)
    end
    return method_not_allowed(allow)
  end
  if self._not_found then
    if body.streaming then settle(req) end
    return run_miss(self._not_found, req, 404, nil)
  end
  return not_found()
end

-- Finds the route of method and path and runs its handler. plain: req is a
-- plain table (rill.test), which gets a fresh req.params; the server's req
-- makes an empty one when it is read.
local function route(self, req, method, path, plain)
  local r, status, allow = find(self, req, method, path, plain)
  if r then
    if body.streaming and not (plain or r.streams) then settle(req) end
    return r.handler(req)
  end
  return answer_miss(self, req, status, allow)
end

-- For rill.respond: the response, the function that made it and its route,
-- which an error in the response is named after (the app's file and line).
local function route_named(self, req, method, path)
  local r, status, allow = find(self, req, method, path, false)
  if r then
    if body.streaming and not r.streams then settle(req) end
    return (r.handler(req)), r.handler, r.display
  end
  local custom = status == 405 and self._method_not_allowed or self._not_found
  return (answer_miss(self, req, status, allow)), custom, status == 405 and "405" or "404"
end

local function dispatch(self, req)
  local t = type(req)
  if t ~= "table" and t ~= "userdata" then
    error(("bad argument #1 to 'router' (request expected, got %s)"):format(t), 2)
  end
  local method, path = req.method, req.path
  if type(method) ~= "string" or type(path) ~= "string" then
    error("bad argument #1 to 'router' (request needs string 'method' and 'path')", 2)
  end
  return route(self, req, method, path, t == "table")
end

Router.__call = dispatch

-- For the server's driver (rill.respond), which has the method and the path
-- at hand: no lookups through req for them.
function M.is_router(v) return getmetatable(v) == Router end
M.route = route
M.route_named = route_named

local function check_self(self, fname)
  if getmetatable(self) ~= Router then
    error(("calling '%s' on bad self (router expected, got %s)"):format(fname, type(self)), 3)
  end
end

-- app:add(method, path, handler); method nil (any) or "GET" / "GET|POST".
function methods.add(self, method, path, handler)
  check_self(self, "add")
  if method ~= nil and type(method) ~= "string" then
    error(("bad argument #1 to 'add' (string or nil expected, got %s)"):format(type(method)), 2)
  end
  if type(path) ~= "string" then
    error(("bad argument #2 to 'add' (string expected, got %s)"):format(type(path)), 2)
  end
  local ok, arg, msg = add_route(self, method, path, handler)
  if not ok then error(("bad argument #%d to 'add' (%s)"):format(arg, msg), 2) end
  return self
end

for _, name in ipairs { "get", "post", "put", "delete", "patch", "options" } do
  local verb = name:upper()
  methods[name] = function(self, path, handler)
    check_self(self, name)
    if type(path) ~= "string" then
      error(("bad argument #1 to '%s' (string expected, got %s)"):format(name, type(path)), 2)
    end
    local ok, arg, msg = add_route(self, verb, path, handler)
    if not ok then error(("bad argument #%d to '%s' (%s)"):format(arg - 1, name, msg), 2) end
    return self
  end
end

-- Reads the options of a router: its not_found and method_not_allowed
-- handlers. Returns true, or nil and a message for argument #2.
local function set_options(self, opts, fname)
  if opts == nil then return true end
  if type(opts) ~= "table" then
    return nil, ("bad argument #2 to '%s' (table or nil expected, got %s)"):format(fname, type(opts))
  end
  for k, v in pairs(opts) do
    if k ~= "not_found" and k ~= "method_not_allowed" then
      return nil, ("bad argument #2 to '%s' (unknown option '%s')"):format(fname, tostring(k))
    end
    if not is_callable(v) then
      return nil, ("bad argument #2 to '%s' (option '%s' must be a function or callable table, got %s)")
        :format(fname, k, type(v))
    end
  end
  self._not_found, self._method_not_allowed = opts.not_found, opts.method_not_allowed
  return true
end

-- Builds a router from a routes table; returns it, or nil and a message.
-- Keys are visited in sorted order, which is then their declaration order
-- (a Lua table has none) and makes the reported error deterministic.
local function build(routes, opts, fname)
  local self = setmetatable({ _routes = {}, _ids = {}, _static = {}, _dynamic = {},
    _dirty = false, _seq = 0 }, Router)
  local ok, err = set_options(self, opts, fname)
  if not ok then return nil, err end
  if routes == nil then return self end
  if type(routes) ~= "table" then
    return nil, ("bad argument #1 to '%s' (table expected, got %s)"):format(fname, type(routes))
  end
  local keys = {}
  for k in pairs(routes) do
    if type(k) ~= "string" then
      return nil, ("bad argument #1 to '%s' (route keys must be strings, got %s)")
        :format(fname, type(k))
    end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  for _, key in ipairs(keys) do
    local spec, path, perr = split_key(key)
    local added, msg
    if path then
      local _
      added, _, msg = add_route(self, spec, path, routes[key])
    else
      msg = ("route '%s': %s"):format(key, perr)
    end
    if not added then return nil, ("bad argument #1 to '%s' (%s)"):format(fname, msg) end
  end
  return self
end

-- Creates a router. `routes` maps "METHOD|METHOD /pattern" keys to handlers;
-- `opts` may give not_found(req) and method_not_allowed(req, allow) handlers.
function M.new(routes, opts)
  local self, err = build(routes, opts, "new")
  if not self then error(err, 2) end
  return self
end

return setmetatable(M, {
  __call = function(_, routes, opts)
    local self, err = build(routes, opts, "router")
    if not self then error(err, 2) end
    return self
  end,
})
