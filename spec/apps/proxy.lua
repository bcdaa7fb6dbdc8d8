-- SPDX-License-Identifier: MIT
-- Fixture: relays the upstream named by ?up= in several ways.
local rill = require "rill"

-- the encoded events of an iterator of event tables
local function encoded(events)
  return coroutine.wrap(function()
    for ev in events do coroutine.yield(rill.sse.encode(ev)) end
  end)
end

local function fail(err, code)
  return { status = 502, body = ("%s %s\n"):format(code, err) }
end

return rill.router {
  ["GET /lines"] = function(req)
    local up, err, code = rill.fetch(req.query.up)
    if not up then return fail(err, code) end
    return { status = up.status, headers = { ["content-type"] = up.headers["content-type"] }, body = up:lines() }
  end,
  ["GET /chunks"] = function(req)
    local up, err, code = rill.fetch(req.query.up)
    if not up then return fail(err, code) end
    return { status = up.status, body = up:chunks() }
  end,
  ["GET /read"] = function(req)
    local up, err, code = rill.fetch(req.query.up, { idle_timeout = tonumber(req.query.idle), max_body = tonumber(req.query.max) })
    if not up then return fail(err, code) end
    local body, rerr, rcode = up:read()
    if not body then return fail(rerr, rcode) end
    return ("%d %s %s"):format(up.status, up.headers["content-type"], body)
  end,
  ["GET /post"] = function(req)
    local up = assert(rill.fetch(req.query.up, { method = "POST", body = "payload", headers = { ["X-Test"] = "yes" } }))
    return up.headers["x-method"] .. " " .. up.headers["x-got"] .. " " .. up:read()
  end,
  ["GET /status"] = function(req)
    local up, err, code = rill.fetch(req.query.up, { timeout = tonumber(req.query.timeout) })
    if not up then return fail(err, code) end
    return tostring(up.status)
  end,
  -- decodes a gzip upstream as it arrives
  ["GET /gunzip"] = function(req)
    local up, err, code = rill.fetch(req.query.up, { decompress = true })
    if not up then return fail(err, code) end
    return { status = up.status, headers = { ["x-encoding"] = up.headers["content-encoding"] or "none" }, body = up:lines() }
  end,
  ["GET /raw-encoding"] = function(req)
    local up = assert(rill.fetch(req.query.up))
    return up.headers["content-encoding"] .. " " .. #up:read()
  end,
  -- https: ?ca= a PEM file to trust, ?insecure=1
  ["GET /tls"] = function(req)
    local up, err, code = rill.fetch(req.query.up, { ca_file = req.query.ca, insecure = req.query.insecure == "1" })
    if not up then return fail(err, code) end
    return { status = up.status, body = up:lines() }
  end,
  -- parsed events, re-encoded
  ["GET /events"] = function(req)
    local up = assert(rill.fetch(req.query.up))
    return { headers = { ["content-type"] = "text/event-stream" }, body = encoded(up:events()) }
  end,
  -- follows the upstream through drops, resuming with Last-Event-ID
  ["GET /follow"] = function(req)
    local events = rill.sse.follow(req.query.up, { last_event_id = req.headers["last-event-id"], min_delay = 0.01 })
    return { headers = { ["content-type"] = "text/event-stream" }, body = encoded(events) }
  end,
  -- two requests one after the other
  ["GET /twice"] = function(req)
    local a = assert(rill.fetch(req.query.up)):read()
    local b = assert(rill.fetch(req.query.up)):read()
    return a .. " " .. b
  end,
  -- fetches, then answers without reading the body
  ["GET /abandon"] = function(req)
    local up = assert(rill.fetch(req.query.up))
    return "abandoned " .. up.status .. "\n"
  end,
}
