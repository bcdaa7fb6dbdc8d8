-- SPDX-License-Identifier: MIT
-- Cookies: req.cookies (the Cookie header, parsed on first use) and
-- rill.cookie(name, value, opts), the text of a Set-Cookie header (RFC 6265).
-- Values are percent-encoded where a cookie may not hold a byte as it is,
-- and decoded on the way in, so any string makes the round trip.
local type, tostring, error, pairs, math_type = type, tostring, error, pairs, math.type
local char, format = string.char, string.format

local M = {}

local function decode(s)
  return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

-- req.cookies: name → value; the first of a repeated name wins, as browsers send the most
-- specific first. A pair with no "=" or an empty name is skipped.
function M.parse(req)
  local out = {}
  local header = req.headers["cookie"]
  if type(header) == "table" then -- several Cookie lines (HTTP/2 splits them): one list
    header = table.concat(header, "; ")
  end
  if type(header) ~= "string" then
    return out
  end
  for pair in header:gmatch("[^;]+") do
    local name, value = pair:match("^[ \t]*([^=]-)[ \t]*=[ \t]*(.-)[ \t]*$")
    if name and name ~= "" and out[name] == nil then
      value = value:match('^"(.*)"$') or value
      out[name] = decode(value)
    end
  end
  return out
end

-- A cookie-octet as it is; anything else (and "%") as %XX.
local function encode(s)
  return (s:gsub("[^%w!#$&'()*+%-./:<=>?@%[%]^_`{|}~]", function(c) return format("%%%02X", c:byte()) end))
end

-- level 3: the caller of rill.cookie, from a helper it called (4) or itself (3)
local function arg_error(n, msg, level)
  error(("bad argument #%d to 'cookie' (%s)"):format(n, msg), level or 3)
end

-- An attribute's value: text with no ";" and no control byte, or the header would break.
local function attr_text(v, name)
  if type(v) ~= "string" or v == "" or v:find("[%c;]") then
    arg_error(3, ("%s must be a non-empty string without ';' or control bytes"):format(name), 4)
  end
  return v
end

local SAME_SITE = { strict = "Strict", lax = "Lax", none = "None" }
local KNOWN = { path = true, domain = true, max_age = true, expires = true, secure = true,
                http_only = true, same_site = true }

-- rill.cookie(name, value, opts) → "name=value; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Lax"
function M.cookie(name, value, opts)
  if type(name) ~= "string" or not name:match("^[%w!#$%%&'*+%-.^_`|~]+$") then
    arg_error(1, "a cookie name is a non-empty token: letters, digits and !#$%&'*+-.^_`|~")
  end
  local vt = type(value)
  if vt == "number" then
    value = tostring(value)
  elseif vt ~= "string" then
    arg_error(2, ("string expected, got %s"):format(vt))
  end
  if opts ~= nil and type(opts) ~= "table" then
    arg_error(3, ("table expected, got %s"):format(type(opts)))
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not KNOWN[k] then
      arg_error(3, ("unknown option '%s' (path, domain, max_age, expires, secure, http_only, same_site)"):format(tostring(k)))
    end
  end
  local parts = { name .. "=" .. encode(value) }
  if opts.path ~= nil then parts[#parts + 1] = "Path=" .. attr_text(opts.path, "path") end
  if opts.domain ~= nil then parts[#parts + 1] = "Domain=" .. attr_text(opts.domain, "domain") end
  if opts.max_age ~= nil then
    if math_type(opts.max_age) ~= "integer" then
      arg_error(3, "max_age must be an integer number of seconds")
    end
    parts[#parts + 1] = "Max-Age=" .. opts.max_age
  end
  if opts.expires ~= nil then
    local t = opts.expires
    if type(t) ~= "number" or t ~= t or t < 0 or t > 253402300799 then
      arg_error(3, "expires must be a time in seconds since 1970 (os.time())")
    end
    parts[#parts + 1] = "Expires=" .. os.date("!%a, %d %b %Y %H:%M:%S GMT", math.floor(t))
  end
  local same_site = opts.same_site
  if same_site ~= nil then
    same_site = type(same_site) == "string" and SAME_SITE[same_site:lower()]
    if not same_site then
      arg_error(3, "same_site must be 'Strict', 'Lax' or 'None'")
    end
    if same_site == "None" and not opts.secure then
      arg_error(3, "same_site 'None' needs secure = true (browsers refuse it otherwise)")
    end
  end
  if opts.secure then parts[#parts + 1] = "Secure" end
  if opts.http_only then parts[#parts + 1] = "HttpOnly" end
  if same_site then parts[#parts + 1] = "SameSite=" .. same_site end
  return table.concat(parts, "; ")
end

return M
