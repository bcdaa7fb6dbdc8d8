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
