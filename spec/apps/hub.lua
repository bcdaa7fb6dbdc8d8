-- SPDX-License-Identifier: MIT
-- Fixture for spec/e2e_hub_spec.lua.
local rill = require "rill"

local function n(v) return v and tonumber(v) end

return rill.cors(rill.router {
  ["POST /publish/:topic"] = function(req)
    local id, err = rill.publish(req.params.topic, { event = req.query.event, data = req.body, id = req.query.id })
    if not id then return { status = 409, body = err .. "\n" } end
    return { status = 202, body = id }
  end,
  -- count events "<body><i>" in one handler: the subscribers' next turn finds them all at once
  ["POST /burst/:topic"] = function(req)
    for i = 1, n(req.query.count) do rill.publish(req.params.topic, req.body .. i) end
    return { status = 202, body = "published\n" }
  end,
  ["POST /gc"] = function() collectgarbage() collectgarbage() return "collected\n" end,
  -- the way most streams are written: a generator that waits
  ["GET /generator"] = function()
    return { body = coroutine.wrap(function()
      while true do
        rill.sleep(3600)
        coroutine.yield("tick\n")
      end
    end) }
  end,
  -- an idle event stream as most users write one: its generator parked in rill.sleep, resumed by C
  ["GET /sse-generator"] = function()
    return rill.sse(coroutine.wrap(function()
      while true do
        rill.sleep(3600)
        coroutine.yield({ comment = "tick" })
      end
    end), { heartbeat = 0 })
  end,
  ["GET /events/:topic"] = function(req)
    local events = rill.subscribe(req.params.topic, {
      last_event_id = rill.sse.last_event_id(req),
      queue = n(req.query.queue),
      overflow = req.query.overflow,
    })
    return rill.sse(events, { heartbeat = n(req.query.hb), retry = n(req.query.retry) })
  end,
  -- a long poll: the data of the next event (the subscription is held while the handler waits)
  ["GET /next/:topic"] = function(req)
    local next_event = rill.subscribe(req.params.topic)
    local ev = next_event()
    return ev and ev.data or "closed\n"
  end,
  ["POST /close/:topic"] = function(req) rill.close_topic(req.params.topic); return "closed\n" end,
  ["POST /drop/:topic"] = function(req) return tostring(rill.hub.disconnect(req.params.topic)) end,
  ["POST /configure"] = function(req)
    rill.hub.configure { history = n(req.query.history), queue = n(req.query.queue),
                         history_bytes = n(req.query.history_bytes),
                         total_history_bytes = n(req.query.total_history_bytes) }
    return "configured\n"
  end,
  ["GET /stats"] = function(req)
    local st = rill.hub.stats(req.query.topic)
    local out = {}
    for k, v in pairs(st) do out[#out + 1] = k .. "=" .. tostring(v) end
    table.sort(out)
    return table.concat(out, " ") .. "\n"
  end,
  -- send(): a producer function instead of an iterator
  ["GET /produced"] = function()
    return rill.sse(function(send)
      send("one")
      send({ event = "two", data = "2", id = "x2" })
    end)
  end,
  -- the tricky payloads of the encoder round trip, one event each
  ["GET /tricky"] = function()
    local cases = { "", "lone\rcr", "crlf\r\nline", "trailing\n", "ünïcødé ✓", ("m"):rep(1024 * 1024) }
    return rill.sse(coroutine.wrap(function()
      for _, data in ipairs(cases) do coroutine.yield({ data = data }) end
    end))
  end,
}, { origin = "https://app.example", credentials = true })
