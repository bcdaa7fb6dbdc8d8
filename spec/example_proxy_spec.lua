-- spec/example_proxy_spec.lua: examples/sse_proxy.lua between a real upstream and a client
local t = require "rill.test"

-- An upstream of our own: a hub topic to follow, and a way to publish to it.
local UPSTREAM = [[
local rill = require "rill"
return rill.router {
  ["GET /events"] = function(req)
    return rill.sse(rill.subscribe("feed", { last_event_id = rill.sse.last_event_id(req) }))
  end,
  ["POST /publish"] = function(req) return rill.publish("feed", { data = req.body }) end,
}
]]

describe("the SSE proxy", function()
  local dir, upstream, proxy
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    local f = assert(io.open(dir .. "/upstream.lua", "w"))
    f:write(UPSTREAM)
    f:close()
    upstream = t.server(dir .. "/upstream.lua")
    proxy = t.server("examples/sse_proxy.lua",
      { env = { UPSTREAM = ("http://127.0.0.1:%d/events"):format(upstream.port) } })
  end)
  teardown(function()
    proxy:stop()
    upstream:stop()
    os.execute("rm -rf " .. dir)
  end)

  local function publish(text)
    assert.same(200, upstream:request({ method = "POST", path = "/publish", body = text }).status)
  end

  -- Publishes `text` until it comes out of s: then the proxy follows the upstream (it connects
  -- to it when a client connects, so an event published before then is not this client's).
  -- Returns that event and the ones before it (a rill-gap, say).
  local function until_following(s, text)
    local before = {}
    for _ = 1, 100 do
      publish(text)
      local ev = s:event(0.2)
      while ev and ev.data ~= text do
        before[#before + 1] = ev
        ev = s:event(0.2)
      end
      if ev then return ev, before end
    end
    error("the proxy never followed the upstream")
  end

  it("relays the upstream's events, and resumes a client that reconnects with its Last-Event-ID", function()
    local s = proxy:open("/events")
    until_following(s, "hello")
    for i = 1, 3 do publish("event " .. i) end
    local seen = {}
    for i = 1, 3 do seen[i] = assert(s:event(5)) end
    assert.same({ "event 1", "event 2", "event 3" }, { seen[1].data, seen[2].data, seen[3].data })
    s:close() -- the browser goes away...
    publish("event 4")
    publish("event 5")
    -- ...and comes back with the id of the last event it saw: the proxy asks the upstream for the rest
    local back = proxy:open("/events", { headers = { ["last-event-id"] = seen[3].id } })
    assert.same("event 4", assert(back:event(5)).data)
    assert.same("event 5", assert(back:event(5)).data)
    back:close()
  end)

  it("survives the upstream restarting: the proxy reconnects and relays what comes next", function()
    local s = proxy:open("/events")
    until_following(s, "before")
    upstream:restart() -- same port: the proxy's follow reconnects to it, with the last id it had
    local ev, before = until_following(s, "after the restart")
    assert.same("after the restart", ev.data)
    -- the new upstream does not know that id: the client is told it may have missed events
    assert.same("rill-gap", before[1] and before[1].event)
    s:close()
  end)
end)
