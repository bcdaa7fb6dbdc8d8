-- SPDX-License-Identifier: MIT
-- A small JSON decoder for the lines test clients print (spec/support/*.py):
-- objects, arrays, strings (with \u escapes, as UTF-8), numbers, true,
-- false, null (as nil). decode(text) → value, or nil, error.
local M = {}

local escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function skip(s, i)
  return s:match("^[ \t\r\n]*()", i)
end

local value

local function string_at(s, i) -- s:sub(i, i) == '"'
  local out, j = {}, i + 1
  while true do
    local c = s:sub(j, j)
    if c == "" then error("unterminated string", 0) end
    if c == '"' then return table.concat(out), j + 1 end
    if c == "\\" then
      local e = s:sub(j + 1, j + 1)
      if e == "u" then
        local hex = s:sub(j + 2, j + 5)
        local cp = tonumber(hex, 16) or error("bad \\u escape", 0)
        j = j + 6
        if cp >= 0xD800 and cp <= 0xDBFF and s:sub(j, j + 1) == "\\u" then
          local lo = tonumber(s:sub(j + 2, j + 5), 16)
          cp, j = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00), j + 6
        end
        out[#out + 1] = utf8.char(cp)
      else
        out[#out + 1] = escapes[e] or error("bad escape \\" .. e, 0)
        j = j + 2
      end
    else
      local k = s:find('["\\]', j) or #s + 1
      out[#out + 1] = s:sub(j, k - 1)
      j = k
    end
  end
end

function value(s, i)
  i = skip(s, i)
  local c = s:sub(i, i)
  if c == "{" then
    local t = {}
    i = skip(s, i + 1)
    if s:sub(i, i) == "}" then return t, i + 1 end
    while true do
      if s:sub(i, i) ~= '"' then error("object key expected at " .. i, 0) end
      local k
      k, i = string_at(s, i)
      i = skip(s, i)
      if s:sub(i, i) ~= ":" then error("':' expected at " .. i, 0) end
      t[k], i = value(s, i + 1)
      i = skip(s, i)
      local d = s:sub(i, i)
      if d == "}" then return t, i + 1 end
      if d ~= "," then error("',' or '}' expected at " .. i, 0) end
      i = skip(s, i + 1)
    end
  elseif c == "[" then
    local t = {}
    i = skip(s, i + 1)
    if s:sub(i, i) == "]" then return t, i + 1 end
    while true do
      t[#t + 1], i = value(s, i)
      i = skip(s, i)
      local d = s:sub(i, i)
      if d == "]" then return t, i + 1 end
      if d ~= "," then error("',' or ']' expected at " .. i, 0) end
      i = i + 1
    end
  elseif c == '"' then
    return string_at(s, i)
  end
  if s:sub(i, i + 3) == "true" then return true, i + 4 end
  if s:sub(i, i + 4) == "false" then return false, i + 5 end
  if s:sub(i, i + 3) == "null" then return nil, i + 4 end
  local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  if num and num ~= "" then return tonumber(num), i + #num end
  error("unexpected " .. (c == "" and "end" or "'" .. c .. "'") .. " at " .. i, 0)
end

function M.decode(text)
  local ok, v, i = pcall(value, text, 1)
  if not ok then return nil, v end
  if skip(text, i) <= #text then return nil, "trailing bytes at " .. i end
  return v
end

return M
