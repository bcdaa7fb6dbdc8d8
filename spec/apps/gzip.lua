-- SPDX-License-Identifier: MIT
-- The app spec/e2e_gzip_spec.lua compresses: whole replies with and
-- without compress, a generator stream with heartbeats, and hub streams fed
-- by publishes the client makes (each event read before the next exists).
local rill = require("rill")

local text = string.rep("the quick brown fox jumps over the lazy dog\n", 40)

return rill.router({
  ["GET /text"] = function() return { body = text, compress = true } end,
  ["GET /small"] = function() return { body = "tiny\n", compress = true } end,
  ["GET /default"] = function() return text end, -- compressed only with --compress
  ["GET /never"] = function() return { body = text, compress = false } end,
  ["GET /png"] = function() return { body = text, headers = { ["content-type"] = "image/png" }, compress = true } end,
  ["GET /encoded"] = function()
    return { body = text, headers = { ["content-encoding"] = "identity" }, compress = true }
  end,
  ["GET /json"] = function() return { json = { list = { text, text } }, compress = true } end,
  ["GET /empty"] = function() return { status = 204, compress = true } end,
  ["GET /bad-compress"] = function() return { body = text, compress = "yes" } end,
  ["GET /etag"] = function() return { body = text, headers = { etag = '"v1"' }, compress = true } end,
  ["GET /no-transform"] = function()
    return { body = text, headers = { ["cache-control"] = "public, no-transform" }, compress = true }
  end,
  ["GET /partial"] = function()
    return { status = 206, body = text, headers = { ["content-range"] = "bytes 0-1759/9999" }, compress = true }
  end,
  ["POST /close/:topic"] = function(req)
    rill.close_topic(req.params.topic)
    return { status = 204 }
  end,
  ["GET /ticks"] = function(req)
    local n = tonumber(req.query.n) or 5
    return rill.sse(coroutine.wrap(function()
      for i = 1, n do
        coroutine.yield({ id = tostring(i), event = "tick", data = ('{"i":%d,"pad":"%s"}'):format(i, ("x"):rep(i)) })
        rill.sleep(0.1) -- ten heartbeat intervals: heartbeats fall between events, on any machine
      end
    end), { compress = true, heartbeat = 0.01 })
  end,
  ["GET /events/:topic"] = function(req)
    local sub = rill.subscribe(req.params.topic, { last_event_id = rill.sse.last_event_id(req) })
    local beat = req.query.beat and tonumber(req.query.beat) or 0
    return rill.sse(sub, { heartbeat = beat, compress = req.query.plain == nil })
  end,
  ["POST /publish/:topic"] = function(req)
    rill.publish(req.params.topic, { event = "msg", data = req.body })
    return { status = 204 }
  end,
  ["GET /hub-stats"] = function()
    local st = rill.hub.stats()
    return ("%d %d %d\n"):format(st.gz_shared, st.gz_alone, st.gz_sent)
  end,
  ["GET /forever"] = function()
    return rill.sse(coroutine.wrap(function()
      coroutine.yield({ data = "first" })
      rill.sleep(3600)
    end), { compress = true })
  end,
})
