-- SPDX-License-Identifier: MIT
-- Fixture for spec/e2e_tail_spec.lua: ?path= names the file to tail.
local rill = require "rill"

local function options(req)
  local from = req.query.from
  if from and from:match("^%d+$") then
    from = math.tointeger(tonumber(from)) or tonumber(from)
  elseif from and from:match("^offset=%-?%d+$") then
    from = { offset = tonumber(from:match("%-?%d+")) }
  end
  return { from = from, strip = req.query.strip == "1", max_line = tonumber(req.query.max_line),
           poll = tonumber(req.query.poll), last_event_id = rill.sse.last_event_id(req) }
end

return rill.router {
  -- the raw lines, each with its terminator
  ["GET /lines"] = function(req)
    local lines, err, code = rill.tail(req.query.path, options(req))
    if not lines then return { status = code == "forbidden" and 403 or 500, body = err .. "\n" } end
    return { body = lines }
  end,
  -- lines and their offsets, one "offset:line" chunk each
  ["GET /offsets"] = function(req)
    local lines = assert(rill.tail(req.query.path, options(req)))
    return { body = coroutine.wrap(function()
      for line, offset in lines do coroutine.yield(offset .. ":" .. line) end
    end) }
  end,
  -- as server-sent events whose ids resume exactly
  ["GET /sse"] = function(req)
    return rill.sse(assert(rill.tail(req.query.path, options(req))), { heartbeat = 0 })
  end,
}
