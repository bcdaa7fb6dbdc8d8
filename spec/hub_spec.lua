-- SPDX-License-Identifier: MIT
-- The hub in process, under rill.run: history bounds, resume points, errors.
local rill = require "rill"
local test = require "rill.test"

-- Collects what a subscription yields without waiting: the events already there.
local function drain(topic, last_event_id, n)
  return rill.run(function()
    local next_event = rill.subscribe(topic, { last_event_id = last_event_id })
    local got = {}
    for _ = 1, n do
      local ev = next_event()
      got[#got + 1] = ev.event == "rill-gap" and ("gap:" .. ev.data) or ev.data
    end
    return got
  end)
end

describe("the hub", function()
  after_each(function() rill.hub.configure { history = 1000, history_bytes = 4 * 1024 * 1024, history_age = 3600 } end)

  it("bounds a topic's history by bytes", function()
    rill.hub.configure { history_bytes = 200 }
    local first
    for i = 1, 10 do
      local id = rill.publish("by-bytes", ("%02d"):rep(10):format(i, i, i, i, i, i, i, i, i, i))
      first = first or id
    end
    local st = rill.hub.stats("by-bytes")
    assert.is_true(st.history_bytes <= 200)
    assert.is_true(st.history < 10)
    assert.same("gap:expired", drain("by-bytes", first, 1)[1])
  end)

  it("bounds a topic's history by age", function()
    rill.hub.configure { history_age = 0.05 }
    local seen = rill.publish("by-age", "seen")
    rill.publish("by-age", "unseen")
    rill.run(function() rill.sleep(0.1) end) -- both age out
    rill.publish("by-age", "new")
    assert.same({ "gap:expired", "new" }, drain("by-age", seen, 2))
  end)

  it("sends no gap when only events the client had left the history", function()
    rill.hub.configure { history_age = 0.05 }
    local last = rill.publish("aged-seen", "seen")
    rill.run(function() rill.sleep(0.1) end)
    rill.publish("aged-seen", "new")
    assert.same({ "new" }, drain("aged-seen", last, 1))
  end)

  it("resumes right after a given id, as in a browser's Last-Event-ID", function()
    rill.publish("given", { id = "a", data = "1" })
    rill.publish("given", { id = "b", data = "2" })
    rill.publish("given", { id = "c", data = "3" })
    assert.same({ "2", "3" }, drain("given", "a", 2))
  end)

  it("refuses a bad topic or event, naming the argument", function()
    assert.has_error(function() rill.publish(nil, "x") end,
      "bad argument #1 to 'publish' (a topic name expected, got nil)")
    assert.has_error(function() rill.publish("t", 42) end,
      "bad argument #2 to 'publish' (table or string expected, got number)")
    assert.has_error(function() rill.publish("t", { data = "x", event = "a\nb" }) end)
    assert.has_error(function() rill.subscribe("t") end) -- outside a handler
  end)

  it("counts topics, subscribers and published events", function()
    local before = rill.hub.stats()
    rill.publish("counted", "x")
    local after = rill.hub.stats()
    assert.same(before.published + 1, after.published)
  end)
end)

describe("rill.sse.last_event_id", function()
  it("prefers the Last-Event-ID header to the query parameter", function()
    local req = test.request({ path = "/e?last_event_id=q", headers = { ["Last-Event-ID"] = "h" } })
    assert.same("h", rill.sse.last_event_id(req))
    assert.same("q", rill.sse.last_event_id(test.request({ path = "/e?last_event_id=q" })))
    assert.is_nil(rill.sse.last_event_id(test.request({ path = "/e" })))
  end)
end)

describe("rill.sse in process", function()
  it("marks the response as an event stream with its heartbeat", function()
    local res = test.call(function() return rill.sse(function(send) send("a") end, { heartbeat = 5 }) end)
    assert.same("text/event-stream", res.headers["content-type"])
    assert.same(5, res.heartbeat)
    assert.same("data: a\n\n", res.body)
  end)

  it("refuses a source that is neither an iterator nor a producer", function()
    assert.has_error(function() rill.sse(42) end)
  end)
end)
