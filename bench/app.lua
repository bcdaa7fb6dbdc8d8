-- SPDX-License-Identifier: MIT
-- The bench workloads in rill (bench/run.sh), byte for byte as bench/bare_evhttp.c
-- and bench/nginx.conf.in.
local rill = require "rill"

local lines = {}
for i = 1, 100 do lines[i] = ("line %03d of the hundred-line body\n"):format(i) end

local upstream = os.getenv("UPSTREAM") or "http://127.0.0.1:18320/events"

local static_root = os.getenv("STATIC_ROOT") -- bench/web.sh: files to serve

return rill.router {
  ["GET /assets/*"] = static_root and rill.static(static_root) or nil,
  ["GET /hello"] = function() return "hello world\n" end,
  ["GET /chunks"] = function()
    return { body = coroutine.wrap(function()
      for i = 1, 100 do coroutine.yield(lines[i]) end
    end) }
  end,
  -- an idle event stream: a subscription to a topic nobody publishes to
  ["GET /sse"] = function()
    return rill.sse(rill.subscribe("idle"), { heartbeat = 0 })
  end,
  -- the same idle stream written the way most users write one: a generator
  -- that sleeps (its coroutine stays parked in rill.sleep)
  ["GET /sse-gen"] = function()
    return rill.sse(coroutine.wrap(function()
      while true do
        rill.sleep(3600)
        coroutine.yield({ comment = "tick" })
      end
    end), { heartbeat = 0 })
  end,
  -- the C-fed stream with its default heartbeat (15 s): its timer's bytes (bench/massif.sh)
  ["GET /sse-hb"] = function()
    return rill.sse(rill.subscribe("idle"))
  end,
  -- a full collection, so that the bytes a massif snapshot counts are live ones
  ["GET /gc"] = function()
    collectgarbage("collect")
    return ("%.0f\n"):format(collectgarbage("count") * 1024)
  end,
  -- fan-out (bench/fanout.c, bench/fanthru.c): subscribers, and one publish to all of them
  ["GET /events/:topic"] = function(req)
    return rill.sse(rill.subscribe(req.params.topic), { heartbeat = 0 })
  end,
  -- compressed fan-out (bench/web.sh, bench/gzfan.py): the C pump sharing its topic's
  -- compression, and a generator (each subscriber its own compressor); plain twins of both
  ["GET /gz/events/:topic"] = function(req)
    return rill.sse(rill.subscribe(req.params.topic), { heartbeat = 0, compress = true })
  end,
  ["GET /gen/events/:topic"] = function(req)
    local sub = rill.subscribe(req.params.topic)
    return rill.sse(function() return sub() end, { heartbeat = 0, compress = req.query.gz ~= nil })
  end,
  ["POST /publish/:topic"] = function(req)
    return { status = 202, body = rill.publish(req.params.topic, req.body) }
  end,
  -- proxy latency (bench/proxylat.c): an upstream event stream relayed as it comes
  ["GET /relay"] = function()
    return rill.sse(rill.sse.follow(upstream), { heartbeat = 0 })
  end,
}
