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
  after_each(function()
    rill.hub.configure { history = 1000, history_bytes = 4 * 1024 * 1024, history_age = 3600,
                         max_topics = 10000, total_history_bytes = 64 * 1024 * 1024 }
  end)

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

  it("bounds all histories together, evicting the oldest events of any topic first", function()
    rill.hub.configure { total_history_bytes = 256 * 1024 }
    local evicted = rill.hub.stats().evicted
    local first = rill.publish("budget-a", ("a"):rep(1000))
    rill.publish("budget-a", ("a"):rep(1000)) -- the client below has not seen this one
    for i = 1, 400 do
      rill.publish(("budget-%d"):format(i % 7), ("b"):rep(1000))
    end
    local st = rill.hub.stats()
    assert.is_true(st.history_bytes <= 256 * 1024)
    assert.is_true(st.evicted > evicted)
    assert.same(0, rill.hub.stats("budget-a").history) -- the oldest went first
    assert.is_true(rill.hub.stats("budget-6").history > 0)
    rill.publish("budget-a", "new")
    assert.same({ "gap:expired", "new" }, drain("budget-a", first, 2))
  end)

  it("bounds the number of topics: a new one past max_topics gets nil, err, \"limit\"", function()
    rill.publish("topics-1", "x") -- a live topic, among those of the tests above
    rill.hub.configure { max_topics = 1 }
    local refused = rill.hub.stats().refused
    local id, err, code = rill.publish("topics-3", "x")
    assert.is_nil(id)
    assert.same("hub: too many topics (max_topics = 1)", err)
    assert.same("limit", code)
    assert.same({ nil, err, "limit" }, { rill.close_topic("topics-3") })
    assert.same({ nil, err, "limit" }, { rill.run(function() return rill.subscribe("topics-3") end) })
    assert.same(refused + 3, rill.hub.stats().refused)
    assert.truthy(rill.publish("topics-1", "an existing topic takes events as before"))
  end)

  it("makes room for a new topic by forgetting idle ones, then the first closed", function()
    rill.close_topic("closed-1")
    rill.close_topic("closed-2")
    rill.hub.configure { history_age = 0.05 }
    rill.publish("idle-1", "ages out")
    rill.run(function() rill.sleep(0.1) end) -- idle-1 (and the topics above) keep no history now
    rill.hub.configure { max_topics = rill.hub.stats().topics }
    assert.truthy(rill.publish("room-1", "x")) -- the idle topics made way
    rill.hub.configure { history_age = 3600 }
    assert.is_true(rill.hub.stats("closed-1").closed)
    rill.hub.configure { max_topics = rill.hub.stats().topics }
    assert.truthy(rill.publish("room-2", "x")) -- then closed-1, the first closed
    assert.is_false(rill.hub.stats("closed-1").closed)
    assert.is_true(rill.hub.stats("closed-2").closed)
    assert.is_nil(rill.publish("closed-2", "x"))
  end)

  it("keeps a closed topic closed after its last subscriber left", function()
    assert.is_true(rill.close_topic("closed-empty"))
    rill.run(function()
      local next_event = rill.subscribe("closed-empty")
      assert.is_nil(next_event()) -- nothing to replay: the stream ends
    end)
    collectgarbage()
    assert.is_true(rill.hub.stats("closed-empty").closed)
    local id, err = rill.publish("closed-empty", "x")
    assert.is_nil(id)
    assert.same("topic 'closed-empty' is closed", err)
  end)

  it("raises on a hub event closed by hand instead of reading freed memory", function()
    local first = rill.publish("gc-by-hand", "a")
    rill.publish("gc-by-hand", "b")
    local ev = rill.run(function() return rill.subscribe("gc-by-hand", { last_event_id = first })() end)
    assert.same("b", ev.data)
    getmetatable(ev).__gc(ev)
    getmetatable(ev).__gc(ev) -- twice is fine
    assert.has_error(function() return tostring(ev) end, "attempt to use a closed hub event")
    assert.has_error(function() return ev.data end, "attempt to use a closed hub event")
    assert.truthy(rill.publish("gc-by-hand", "the topic goes on"))
  end)

  it("checks every number of hub.configure and subscribe, naming the option", function()
    local function message(opts)
      local ok, err = pcall(rill.hub.configure, opts)
      assert.is_false(ok)
      return err
    end
    assert.matches("history_age: number from 0.001 to 1000000000 expected, got inf", message({ history_age = math.huge }))
    assert.matches("history_age: number", message({ history_age = 0 / 0 }))
    assert.matches("history_age: number", message({ history_age = 1e300 }))
    assert.matches("history: integer from 1", message({ history = -1 }))
    assert.matches("history_bytes: integer", message({ history_bytes = 1.5 }))
    assert.matches("queue: integer", message({ queue = 1e300 }))
    assert.matches("max_topics: integer from 1", message({ max_topics = 0 }))
    assert.matches("total_history_bytes: integer", message({ total_history_bytes = "big" }))
    local ok, err = pcall(rill.run, function() return rill.subscribe("t", { queue = 0 / 0 }) end)
    assert.is_false(ok)
    assert.matches("queue: integer from 1", err)
    assert.has_error(function() rill.sse.parser(2 ^ 40) end)
    assert.has_error(function() rill.sse.parser(0) end)
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
    assert.same("retry: 3000\n\ndata: a\n\n", res.body)
  end)

  it("refuses a source that is neither an iterator nor a producer", function()
    assert.has_error(function() rill.sse(42) end)
  end)

  -- retry: is sticky in EventSource: without the normal one first, a jittered
  -- retry: from a shutdown or a drain would stay with the client
  it("starts the stream with the normal retry: 3000, another one given, or none with retry = false", function()
    local function body(opts)
      return test.call(function() return rill.sse(function(send) send("a") end, opts) end).body
    end
    assert.same(3000, rill.sse.DEFAULT_RETRY)
    assert.same("retry: 3000\n\ndata: a\n\n", body(nil))
    assert.same("retry: 3000\n\ndata: a\n\n", body({ heartbeat = 0 }))
    assert.same("retry: 1500\n\ndata: a\n\n", body({ retry = 1500 }))
    assert.same("retry: 0\n\ndata: a\n\n", body({ retry = 0 }))
    assert.same("data: a\n\n", body({ retry = false }))
    for _, bad in ipairs({ "x", -1, 1.5, true }) do
      local ok, err = pcall(rill.sse, function(send) send("a") end, { retry = bad })
      assert.is_false(ok, tostring(bad))
      assert.matches("bad argument #2 to 'sse' (retry must be", err, 1, true)
    end
  end)
end)
