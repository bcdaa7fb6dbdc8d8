-- SPDX-License-Identifier: MIT
-- Splits the bytes a server sent on one connection into responses, framed
-- strictly as RFC 9112 §6.3 says a client must: no body for HEAD, 1xx, 204
-- and 304; chunked; Content-Length; else up to the close. Anything that does
-- not parse is an error, and bytes left over are returned, so a spec sees
-- exactly how a response was framed (a desync shows as leftovers or a
-- response too many).
local M = {}

local function header_list(head)
  local headers, order = {}, {}
  for line in head:gmatch("[^\r\n]*\r\n") do
    local name, value = line:match("^([^:]+):[ \t]*(.-)[ \t]*\r\n$")
    assert(name, "malformed header line: " .. ("%q"):format(line))
    name = name:lower()
    headers[name] = headers[name] or {}
    table.insert(headers[name], value)
    order[#order + 1] = name
  end
  return headers, order
end

local function dechunk(data, pos)
  local body = {}
  while true do
    local size, after = data:match("^(%x+)\r\n()", pos)
    assert(size, "malformed chunk size at byte " .. pos)
    size = tonumber(size, 16)
    if size == 0 then
      local trailers_end = data:find("\r\n", after, true)
      assert(trailers_end == after, "trailers after the last chunk")
      return table.concat(body), after + 2
    end
    body[#body + 1] = data:sub(after, after + size - 1)
    assert(data:sub(after + size, after + size + 1) == "\r\n", "no CRLF after chunk data")
    pos = after + size + 2
  end
end

-- methods: the request method of each response, in order ("GET" when absent).
-- Returns the responses and what followed the last one.
function M.split(data, methods)
  local responses, pos = {}, 1
  while pos <= #data do
    local method = (methods or {})[#responses + 1] or "GET"
    local version, status, head_end = data:match("^HTTP/(1%.[01]) (%d%d%d) [^\r\n]*\r\n()", pos)
    if not version then break end
    local blank = data:find("\r\n\r\n", head_end - 2, true)
    assert(blank, "a head without its blank line")
    local headers, order = header_list(data:sub(head_end, blank + 1))
    local r = { version = version, status = tonumber(status), headers = headers, order = order }
    pos = blank + 4
    local te, cl = headers["transfer-encoding"], headers["content-length"]
    if method == "HEAD" or r.status < 200 or r.status == 204 or r.status == 304 then
      r.body = ""
    elseif te then
      assert(#te == 1 and te[1]:lower() == "chunked", "a Transfer-Encoding other than chunked")
      assert(not cl, "both Transfer-Encoding and Content-Length")
      r.body, pos = dechunk(data, pos)
    elseif cl then
      assert(#cl == 1 and cl[1]:match("^%d+$"), "a bad or repeated Content-Length")
      local n = tonumber(cl[1])
      assert(pos + n - 1 <= #data, "a body shorter than its Content-Length")
      r.body = data:sub(pos, pos + n - 1)
      pos = pos + n
    else
      r.body, r.close_delimited = data:sub(pos), true
      pos = #data + 1
    end
    responses[#responses + 1] = r
  end
  return responses, data:sub(pos)
end

-- The single value of a header, or nil; errors when it repeats.
function M.one(r, name)
  local v = r.headers[name]
  assert(not v or #v == 1, "header " .. name .. " repeated")
  return v and v[1]
end

return M
