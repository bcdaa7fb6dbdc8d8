-- SPDX-License-Identifier: MIT
-- JSON and forms: req:json(), req:form(), the `{ json = value }` response
-- shorthand and rill.json, on Debian's lua-cjson (loaded on first use). A
-- body the client got wrong (a malformed document, the wrong Content-Type)
-- is a 400 with a short reason, never a traceback: rill.core.client_error.
local core = require "rill.core"

local type, pcall, require, error = type, pcall, require, error
local client_error = core.client_error

local M = {}

-- One cjson instance of our own, stricter than the default: no NaN or
-- Infinity in or out (not JSON), nesting bounded both ways.
local cjson
local function json_lib()
  if cjson then
    return cjson
  end
  local ok, lib = pcall(require, "cjson")
  if not ok then
    error("rill's JSON needs lua-cjson (Debian: apt-get install lua-cjson)", 0)
  end
  cjson = lib.new()
  cjson.decode_invalid_numbers(false)
  cjson.encode_invalid_numbers(false)
  cjson.decode_max_depth(128)
  cjson.encode_max_depth(128)
  return cjson
end

-- The media type of the request's body, lower-case, parameters dropped; nil
-- when absent, or when two Content-Type lines disagree on what it is.
local function media_type(req)
  local ct = req.headers["content-type"]
  if type(ct) == "table" then
    return nil
  end
  local mt = type(ct) == "string" and ct:match("^[ \t]*([^;%s]+)")
  return mt and mt:lower() or nil
end

local function is_json_type(mt)
  return mt == "application/json" or (mt ~= nil and mt:match("^application/[%w.!#$&^_-]+%+json$") ~= nil)
end

-- "Expected value but found invalid token at character 1" from cjson's message
local function cjson_reason(msg)
  msg = type(msg) == "string" and msg or "not JSON"
  return (msg:gsub("^.-:%d+: ", ""))
end

-- req:json(): the body decoded; JSON null is rill.json.null.
function M.req_json(req)
  if not is_json_type(media_type(req)) then
    client_error(400, "expected a JSON body (Content-Type: application/json)")
  end
  local body = req.body
  if body == nil or body == "" then
    client_error(400, "expected a JSON body, got an empty one")
  end
  local lib = json_lib()
  local ok, value = pcall(lib.decode, body)
  if not ok then
    client_error(400, "malformed JSON: " .. cjson_reason(value))
  end
  return value
end

-- req:form(): an application/x-www-form-urlencoded body, decoded as req.query is.
function M.req_form(req)
  if media_type(req) ~= "application/x-www-form-urlencoded" then
    client_error(400, "expected a form body (Content-Type: application/x-www-form-urlencoded)")
  end
  return core.query(req.body or "")
end

-- ---- request bodies as they arrive ---------------------------------------------------------

local body_chunk, body_streamed = core.body_chunk, core.body_streamed
local LIMIT_MAX = 2 ^ 53

local function check_limit(limit, fname)
  if limit == nil then
    return nil
  end
  local n = math.type(limit) == "float" and math.tointeger(limit) or limit
  if math.type(n) ~= "integer" or n < 0 or n > LIMIT_MAX then
    error(("bad argument #1 to '%s' (a size in bytes from 0 to 2^53 expected, got %s)")
      :format(fname, math.type(limit) and tostring(limit) or type(limit)), 3)
  end
  return n
end

local function too_large(limit)
  client_error(413, ("request body larger than %d bytes"):format(limit))
end

-- A request whose body is one string already (rill.test's, or one evhttp read whole).
local function string_reader(text, limit)
  local given = text == ""
  return function()
    if given then
      return nil
    end
    given = true
    if limit and #text > limit then
      too_large(limit)
    end
    return text
  end
end

local function is_streamed(req)
  return type(req) == "userdata" and body_streamed(req)
end

-- req:body_reader([limit]): an iterator of the body's pieces as they arrive, then nil.
-- Past limit bytes (default --max-body-bytes), a 413. An effect: it waits for the client.
function M.req_body_reader(req, limit)
  limit = check_limit(limit, "body_reader")
  if type(req) ~= "userdata" then
    return string_reader(req.body or "", limit)
  end
  return function()
    return body_chunk(req, limit)
  end
end

-- req:read_body([limit]): the whole body, as req.body then has it too.
function M.req_read_body(req, limit)
  limit = check_limit(limit, "read_body")
  if not is_streamed(req) then
    local text = req.body or ""
    if limit and #text > limit then
      too_large(limit)
    end
    return text
  end
  local parts, n = {}, 0
  for piece in M.req_body_reader(req, limit) do
    n = n + 1
    parts[n] = piece
  end
  local text = table.concat(parts)
  req.body = text
  return text
end

-- rill.streamed_body(handler): a handler that reads its request's body as it
-- arrives (req:body_reader()), mounted on a route or as the whole app. The
-- server then hands it the request at its head, with no body limit but the
-- reader's own.
local Streamed = { __name = "rill.streamed_body" }
Streamed.__index = Streamed
function Streamed.__call(self, req)
  return self.handler(req)
end

-- A function, or a table or userdata whose metatable has __call (the router's and the driver's too).
local function is_callable(v)
  if type(v) == "function" then
    return true
  end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end
M.is_callable = is_callable

-- Most apps never stream a body: the router reads M.streaming (a field, not a call) before settle.
M.streaming = false

function M.streamed_body(handler)
  if not is_callable(handler) then
    error(("bad argument #1 to 'streamed_body' (function expected, got %s)"):format(type(handler)), 2)
  end
  M.streaming = true
  return setmetatable({ handler = handler }, Streamed)
end

function M.is_streamed_body(v)
  return getmetatable(v) == Streamed
end

-- For the router: a route that did not ask for a streamed body, on a path whose
-- bodies are streamed (another route's), reads it whole first, as evhttp would have.
function M.settle(req)
  if is_streamed(req) then
    M.req_read_body(req)
  end
end

-- The gate learns the paths whose bodies are streamed before any request comes.
M.stream_body_path = core.stream_body_path

-- The text of value as JSON, or nil and why (a function, a cycle, NaN...).
function M.encode(value)
  local ok, text = pcall(json_lib().encode, value)
  if not ok then
    return nil, cjson_reason(text)
  end
  return text
end

-- rill.json: encode(value) → text (raises on what JSON cannot hold), decode(text) → value.
M.api = setmetatable({
  encode = function(value)
    local text, err = M.encode(value)
    if not text then
      error("rill.json.encode: " .. err, 2)
    end
    return text
  end,
  decode = function(text)
    if type(text) ~= "string" then
      error(("bad argument #1 to 'decode' (string expected, got %s)"):format(type(text)), 2)
    end
    local ok, value = pcall(json_lib().decode, text)
    if not ok then
      error("rill.json.decode: " .. cjson_reason(value), 2)
    end
    return value
  end,
}, {
  -- rill.json.null: what JSON null decodes to (and encodes from)
  __index = function(_, k)
    if k == "null" then
      return json_lib().null
    end
  end,
})

return M
