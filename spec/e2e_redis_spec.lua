-- SPDX-License-Identifier: MIT
-- The hub on Redis Streams (--hub redis://...), end to end against a real
-- redis-server the spec starts on a loopback port (spec/support/redis.lua):
-- several instances share one history per topic, ids are Redis stream ids,
-- and every loss (a Redis restarted empty, a trimmed history) is an in-band
-- rill-gap event, never silence. Faults: Redis killed and restarted with its
-- data, a reader whose connection stops answering (a stalling TCP proxy).
local core = require "rill.core"
local socket = require "socket"
local test = require "rill.test"
local redis = require "spec.support.redis"
local W = require "spec.support.workers"

local T = tonumber(os.getenv("RILL_TEST_TIMEOUT")) or 10
local APP = "spec/apps/redis_hub.lua"

---------------------------------------------------------------------------
-- Helpers

-- "<ms>-<seq>" → ms, seq (as integers); nil if not a stream id.
local function sid(id)
  local ms, seq = tostring(id):match("^(%d+)-(%d+)$")
  return math.tointeger(tonumber(ms)), math.tointeger(tonumber(seq))
end

local function sid_less(a, b)
  local am, as = sid(a)
  local bm, bs = sid(b)
  return am < bm or (am == bm and as < bs)
end

-- Stream ids strictly increasing, no data twice; each id the one its publisher got.
local function check_order(list, ids)
  local prev, seen = nil, {}
  for i, line in ipairs(list) do
    local id, data = line:match("^(%S+) (.*)$")
    assert(sid(id), "not a stream id: " .. tostring(id))
    if prev then assert(sid_less(prev, id), ("event %d: %s after %s"):format(i, id, prev)) end
    prev = id
    assert(not seen[data], "twice: " .. data)
    seen[data] = true
    if ids then assert.equal(ids[data], id, data) end
  end
end

-- data → id, as "id data" lines in id order, of the events after id `from` (all when nil).
local function after(ids, from)
  local out = {}
  for data, id in pairs(ids) do
    if not from or sid_less(from, id) then out[#out + 1] = id .. " " .. data end
  end
  table.sort(out, function(x, y) return sid_less(x:match("^%S+"), y:match("^%S+")) end)
  return out
end

-- The next event of s, data or not (the opening retry: block is skipped).
local function next_event(s)
  while true do
    local ev, err = s:event(T)
    assert(ev, "no event: " .. tostring(err))
    if ev.data or ev.event then return ev end
  end
end

-- Polls pred every 10 ms until it holds, or fails after timeout seconds.
local function eventually(pred, what, timeout)
  local deadline = core.now() + (timeout or T)
  while not pred() do
    assert(core.now() < deadline, "timed out waiting for " .. what)
    socket.sleep(0.01)
  end
end

local function hub_args(r, extra)
  local args = { "--hub", r:url(), "--hub-prefix", "spec:" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return args
end

-- A single-process rill on the hub in r.
local function single(r, opts)
  opts = opts or {}
  return test.server(APP, { args = hub_args(r, opts.args), env = opts.env, timeout = T })
end

-- A graceful stop (SIGTERM) that must exit 0: under ASan or valgrind a leak
-- or an invalid access on the way (closing Redis connections with commands
-- in flight, a reconnect timer, a follow freed mid-delivery) fails it.
local function stop_clean(srv)
  local status = srv:stop("TERM", T)
  assert.equal(0, status, srv:log())
  assert.is_nil(srv:log():match("==%d+==[^\n]*"), srv:log())
end

local function post(srv, path, body)
  return srv:request({ method = "POST", path = path, body = body or "" })
end

-- Publishes data on srv; returns its id (fails on a refusal).
local function publish(srv, topic, data)
  local res = post(srv, "/pub/" .. topic, data)
  assert.equal(200, res.status, res.body)
  return (res.body:match("^(%S+)"))
end

-- The stats of srv's hub as "k=v" → v.
local function stats(srv)
  local res = srv:get("/stats")
  local out = {}
  for k, v in res.body:gmatch("([%w_.]+)=([^\n]*)") do out[k] = v end
  return out
end

---------------------------------------------------------------------------

describe("rill --hub redis", function()
  local r
  setup(function() r = redis.start {} end)
  teardown(function() redis.kill_all() end)

  describe("two instances of two workers each", function()
    local a, b
    setup(function()
      a = W.start(APP, { workers = 2, args = hub_args(r) })
      b = W.start(APP, { workers = 2, args = hub_args(r) })
    end)
    teardown(function()
      W.kill_all(a)
      W.kill_all(b)
    end)


    it("gives 1,000 events published alternately on both to a subscriber on each of the four workers in one order", function()
      local c0 = W.pinned(a, W.current(a)[1])
      local start = W.publish(c0, "one", "start")
      local streams, conns = {}, {}
      for _, srv in ipairs({ a, b }) do
        for _, pid in pairs(W.current(srv)) do
          streams[#streams + 1] = W.stream_on(srv, pid, "/events/one", { ["Last-Event-ID"] = start })
          conns[#conns + 1] = W.pinned(srv, pid)
        end
      end
      assert.equal(4, #streams)
      local ids, by = W.publish_many(conns, "one", "e", 1000)
      local pids = 0
      for _, n in pairs(by) do
        assert.equal(250, n) -- every worker of both instances published its share
        pids = pids + 1
      end
      assert.equal(4, pids)
      local want = after(ids)
      for i, s in ipairs(streams) do
        local got = W.events(s, 1000)
        check_order(got, ids)
        assert.same(want, got, "subscriber " .. i)
        s:close()
      end
      for _, c in ipairs(conns) do c:close() end
      c0:close()
    end)

    it("resumes a subscriber moving from instance A to instance B with exactly the rest", function()
      local ca = W.pinned(a, W.current(a)[1])
      local start = W.publish(ca, "move", "start")
      local ids = W.publish_many({ ca }, "move", "m", 10)
      local sa = a:open("/events/move", { headers = { ["Last-Event-ID"] = start } })
      local first = W.events(sa, 4)
      sa:close()
      local last = first[4]:match("^%S+")
      local sb = b:open("/events/move", { headers = { ["Last-Event-ID"] = last } })
      assert.same(after(ids, last), W.events(sb, 6))
      local more = W.publish_many({ ca }, "move", "n", 3) -- and live from there
      assert.same(after(more), W.events(sb, 3))
      sb:close()
      ca:close()
    end)

    it("ends a closed topic on both instances after its backlog, and refuses publishes to it", function()
      local ca = W.pinned(a, W.current(a)[1])
      local start = W.publish(ca, "shut", "start")
      local ids = W.publish_many({ ca }, "shut", "s", 3)
      local res = post(a, "/close/shut")
      assert.matches("r.1=true", res.body, 1, true)
      local late = b:open("/events/shut", { headers = { ["Last-Event-ID"] = start } })
      assert.same(after(ids), W.events(late, 3))
      local rest = late:rest(T) -- the stream ends: the topic is closed
      assert.is_nil(rest:find("data:", 1, true))
      local refused = post(b, "/pub/shut", "x")
      assert.equal(409, refused.status)
      assert.matches("topic 'shut' is closed", refused.body, 1, true)
      ca:close()
    end)

    it("cuts the subscribers of a topic on every instance with hub.disconnect", function()
      local ca = W.pinned(a, W.current(a)[1])
      local start = W.publish(ca, "cut", "start")
      local sb = b:open("/events/cut", { headers = { ["Last-Event-ID"] = start } })
      W.publish_many({ ca }, "cut", "c", 1)
      W.events(sb, 1) -- subscribed, live
      assert.equal(200, post(a, "/disconnect/cut").status)
      local rest, _, ending = sb:rest(T)
      assert.is_nil(rest:find("data:", 1, true))
      assert.truthy(ending)
      ca:close()
    end)

    -- last: a graceful stop of both, every worker exiting cleanly
    it("stops both instances cleanly, every worker exiting with status 0", function()
      for _, srv in ipairs({ a, b }) do
        W.signal(srv.proc:pid(), "TERM")
        assert(W.exit_status(srv) == 0, srv:log())
        W.check_clean_exits(srv)
      end
    end)
  end)

  describe("one instance", function()
    local srv
    before_each(function() srv = single(r) end)
    after_each(function() stop_clean(srv) end)

    it("uses Redis stream ids as SSE ids and the entries' fields as the events'", function()
      local id = publish(srv, "fields", "one")
      local s = srv:open("/events/fields", { headers = { ["Last-Event-ID"] = "0-1" } })
      local res = post(srv, "/pubf/fields?event=tick&retry=250", "line1\nline2")
      assert.equal(200, res.status, res.body)
      local ev = next_event(s)
      assert.equal("rill-gap", ev.event) -- 0-1 is older than the stream's first entry: not one of its ids
      ev = next_event(s)
      assert.same({ id, "one" }, { ev.id, ev.data })
      ev = next_event(s)
      assert.same({ "tick", "line1\nline2", 250 }, { ev.event, ev.data, ev.retry })
      assert.equal(res.body:match("^%S+"), ev.id)
      s:close()
      local entries = r:command("XRANGE", "spec:fields", "-", "+")
      assert.equal(2, #entries)
      assert.equal(id, entries[1][1])
      assert.same({ "rill-prev", "0-0", "data", "one" }, entries[1][2]) -- each entry names the one before
      assert.same({ "rill-prev", id, "event", "tick", "data", "line1\nline2", "retry", "250" }, entries[2][2])
    end)

    it("delivers an entry another program XADDed, encoded as rill.sse.encode does", function()
      local start = publish(srv, "foreign", "mine")
      local s = srv:open("/events/foreign", { headers = { ["Last-Event-ID"] = start } })
      local id = r:command("XADD", "spec:foreign", "*", "event", "note", "data", "a\r\nb")
      local ev = next_event(s)
      assert.same({ id, "note", "a\nb" }, { ev.id, ev.event, ev.data })
      s:close()
    end)

    it("delivers hostile entries another program wrote, in order, each as SSE can carry it", function()
      local start = publish(srv, "hostile", "start")
      local s = srv:open("/loop/hostile", { headers = { ["Last-Event-ID"] = start } })
      local big = ("x"):rep(1024 * 1024)
      local entries = {
        { "event", "two\r\nlines", "data", "d1" },          -- an event name with a line break
        { "retry", "abc", "data", "d2" },                      -- retry that is no number
        { "retry", "-5", "data", "d3" },                       -- nor milliseconds
        { "retry", "99999999999999999999", "data", "d4" },     -- nor an integer
        { "data\0x", "not data", "data", "d5" },               -- a field name with NUL in it
        { "data", "a\0b" },                                    -- NUL in the data
        { "colour", "blue" },                                   -- no field rill knows
        { "data", big },                                        -- 1 MiB
      }
      local ids = {}
      for i, fields in ipairs(entries) do
        ids[i] = r:command("XADD", "spec:hostile", "*", table.unpack(fields))
        assert(sid(ids[i]), tostring(ids[i]))
      end
      local got = {}
      for i = 1, 7 do got[i] = next_event(s) end
      assert.same({ ids[1], "two  lines", "d1" }, { got[1].id, got[1].event, got[1].data })
      for i = 2, 4 do assert.same({ ids[i], "d" .. i }, { got[i].id, got[i].data }) end
      assert.is_nil(got[2].retry)
      assert.same({ ids[5], "d5" }, { got[5].id, got[5].data })
      assert.same({ ids[6], "a\0b" }, { got[6].id, got[6].data })
      -- entry 7 is a block with only its id: a browser dispatches no event for it
      assert.same({ ids[8], #big }, { got[7].id, #got[7].data })
      -- another process's disconnect: it acts, and is no event
      r:command("XADD", "spec:hostile", "*", "rill-disconnect", "someone-else\0", "data", "d9")
      local rest = s:rest(T) -- the stream ends (the client may resume)
      assert.is_nil(rest:find("d9", 1, true))
      publish(srv, "hostile", "after") -- the topic works on
    end)

    it("cuts the subscribers of a key that is not a stream, saying why, and refuses publishes to it", function()
      assert.equal("OK", r:command("SET", "spec:wrongtype", "a string"))
      local s = srv:open("/events/wrongtype", { headers = { ["Last-Event-ID"] = "1-1" } })
      local rest, _, ending = s:rest(T)
      assert.is_nil(rest:find("data:", 1, true))
      assert.truthy(ending)
      assert(srv:wait_log("topic 'wrongtype' cannot be read in redis (key spec:wrongtype): WRONGTYPE", T), srv:log())
      local res = post(srv, "/pub/wrongtype", "x")
      assert.equal(409, res.status)
      assert.matches("redis: [^\n]*WRONGTYPE", res.body)
      assert.equal("OK", r:command("DEL", "spec:wrongtype") == 1 and "OK" or "no")
      local id = publish(srv, "wrongtype", "fixed") -- a stream now: read again
      local s2 = srv:open("/events/wrongtype", { headers = { ["Last-Event-ID"] = "0-1" } })
      local ev = next_event(s2)
      assert.equal("rill-gap", ev.event)
      assert.same({ id .. " fixed" }, W.events(s2, 1))
      s2:close()
    end)

    it("keeps a live subscriber of an event whose own id is far in the past", function()
      local s = srv:open("/events/ancient")
      eventually(function() return stats(srv)["redis.topics"] == "1" end, "the topic to be followed")
      local res = post(srv, "/pubf/ancient?id=42-0", "old") -- 1970: older than any history_age
      assert.equal(200, res.status, res.body)
      local ev = next_event(s)
      assert.same({ "42-0", "old" }, { ev.id, ev.data })
      local id = publish(srv, "ancient", "next")
      assert.same({ id .. " next" }, W.events(s, 1)) -- not cut as "too slow"
      s:close()
    end)

    it("publishes an event with no field at all, as the in-memory hub does", function()
      local start = publish(srv, "bare", "start")
      local s = srv:open("/events/bare", { headers = { ["Last-Event-ID"] = start } })
      local res = post(srv, "/empty/bare")
      assert.equal(200, res.status, res.body)
      local id = publish(srv, "bare", "after")
      assert.same({ id .. " after" }, W.events(s, 1)) -- the bare one is an id alone: no event in a browser
      assert.equal(id, s:last_event_id())
      s:close()
    end)

    it("tells a subscriber whose process fell behind Redis's trimming, instead of skipping silently", function()
      -- Redis trims to about 5 (the publisher's history); the follower keeps 1000 of its own
      local other = single(r, { env = { RILL_TEST_HISTORY = "5" } })
      local start = publish(other, "behind", "start")
      local s = srv:open("/events/behind", { headers = { ["Last-Event-ID"] = start } })
      local ids = { b1 = publish(other, "behind", "b1") }
      assert.same(after(ids), W.events(s, 1))
      W.signal(srv:pid(), "STOP") -- its reader reads nothing while 300 more are published and trimmed
      local ok, err = pcall(function()
        assert(W.wait_until(function() return require("spec.support.procs").proc_state(srv:pid()) == "T" end, T))
        for i = 2, 300 do ids["b" .. i] = publish(other, "behind", "b" .. i) end
      end)
      W.signal(srv:pid(), "CONT")
      assert(ok, err)
      local seen, gap = {}, false
      while #seen == 0 or seen[#seen] ~= ids.b300 .. " b300" do
        local ev = next_event(s)
        if ev.event == "rill-gap" then
          assert.equal("expired", ev.data)
          gap = true
        else
          seen[#seen + 1] = ev.id .. " " .. ev.data
        end
      end
      assert.is_true(gap, "the subscriber was told it missed events")
      assert(#seen < 299, "the trimmed events are not there to deliver")
      check_order(seen, ids)
      s:close()
      -- resuming from before the hole: the gap, then what the history holds, all of it after the hole
      local back = srv:open("/events/behind", { headers = { ["Last-Event-ID"] = ids.b1 } })
      local ev = next_event(back)
      assert.same({ "rill-gap", "expired" }, { ev.event, ev.data })
      ids.b301 = publish(other, "behind", "b301")
      local replay = {}
      repeat
        ev = next_event(back)
        replay[#replay + 1] = ev.id .. " " .. ev.data
      until ev.data == "b301"
      check_order(replay, ids)
      assert(sid_less(ids.b2, replay[1]:match("^%S+")), "nothing from before the hole: " .. replay[1])
      assert.same(seen[#seen], replay[#replay - 1])
      back:close()
      -- from after it: exactly the rest
      local exact = srv:open("/events/behind", { headers = { ["Last-Event-ID"] = ids.b299 } })
      assert.same({ ids.b300 .. " b300", ids.b301 .. " b301" }, W.events(exact, 2))
      exact:close()
      stop_clean(other)
    end)

    it("escapes a topic name's line break in its log lines (names come from requests)", function()
      assert.equal("OK", r:command("SET", "spec:bad\nrill: error: forged", "a string"))
      local s = srv:open("/events/bad%0Arill:%20error:%20forged", { headers = { ["Last-Event-ID"] = "1-1" } })
      s:rest(T)
      assert(srv:wait_log("topic 'bad\\x0Arill: error: forged' cannot be read in redis", T), srv:log())
      assert.is_nil(srv:log():find("\nrill: error: forged", 1, true), srv:log())
      r:command("DEL", "spec:bad\nrill: error: forged")
    end)

    it("refuses a publisher's id that is not a stream id, and takes one that is", function()
      local res = post(srv, "/pubf/ids?id=abc", "x")
      assert.equal(409, res.status)
      assert.matches("stream id", res.body, 1, true)
      res = post(srv, "/pubf/ids?id=99999999999999-7", "x")
      assert.equal(200, res.status, res.body)
      assert.equal("99999999999999-7", res.body:match("^%S+"))
      res = post(srv, "/pubf/ids?id=5-5", "older") -- Redis refuses an id not after the last
      assert.equal(409, res.status)
      assert.matches("redis: ERR", res.body, 1, true)
      assert.matches("error", res.body, 1, true)
    end)

    it("reports the backplane in hub.stats()", function()
      local st = stats(srv)
      assert.equal("redis", st.backplane)
      assert.equal("true", st["redis.connected"])
      assert.equal("0", st["redis.reconnects"])
      assert.equal("127.0.0.1:" .. r.port, st["redis.address"])
    end)

    it("gives rill-gap expired to a client that fell behind a trimmed history, on the live and the loading path", function()
      srv:stop("KILL")
      srv = single(r, { env = { RILL_TEST_HISTORY = "5" } })
      local start = publish(srv, "trim", "start")
      local live = srv:open("/events/trim", { headers = { ["Last-Event-ID"] = start } })
      local ids = {}
      for i = 1, 300 do ids["t" .. i] = publish(srv, "trim", "t" .. i) end
      assert(r:command("XLEN", "spec:trim") < 300, "MAXLEN ~ trimmed the stream")
      live:close()
      local function behind(s)
        local ev = next_event(s)
        assert.same({ "rill-gap", "expired" }, { ev.event, ev.data })
        local got = W.events(s, 5)
        assert.same(table.move(after(ids), 296, 300, 1, {}), got)
        s:close()
      end
      -- this process follows the topic (the subscriber above): its own history, trimmed to 5
      local follower = srv:open("/events/trim", { headers = { ["Last-Event-ID"] = ids.t1 } })
      behind(follower)
      -- a fresh process loads the topic from Redis
      local fresh = single(r, { env = { RILL_TEST_HISTORY = "5" } })
      behind(fresh:open("/events/trim", { headers = { ["Last-Event-ID"] = ids.t1 } }))
      stop_clean(fresh)
    end)

    it("waits for a Last-Event-ID another instance gave before this one read it", function()
      local other = single(r)
      local start = publish(srv, "race", "start")
      local s = srv:open("/events/race", { headers = { ["Last-Event-ID"] = start } })
      local id = publish(other, "race", "r1")
      -- a client that got r1 elsewhere resumes here at once: nothing, not a gap, then what follows
      local s2 = srv:open("/events/race", { headers = { ["Last-Event-ID"] = id } })
      local id2 = publish(other, "race", "r2")
      local ev = next_event(s2)
      assert.same({ id2, "r2" }, { ev.id, ev.data })
      assert.same({ id .. " r1", id2 .. " r2" }, W.events(s, 2))
      s:close()
      s2:close()
      stop_clean(other)
    end)

    it("keeps following a topic for a while after its last subscriber left: a reconnect resumes without a load", function()
      local start = publish(srv, "again", "start")
      local s = srv:open("/events/again", { headers = { ["Last-Event-ID"] = start } })
      local ids = { a1 = publish(srv, "again", "a1") }
      assert.same(after(ids), W.events(s, 1))
      s:close()
      local loads = stats(srv)["redis.loads"]
      ids.a2 = publish(srv, "again", "a2") -- published while nobody here reads it
      local back = srv:open("/events/again", { headers = { ["Last-Event-ID"] = ids.a1 } })
      assert.same({ ids.a2 .. " a2" }, W.events(back, 1))
      assert.equal(loads, stats(srv)["redis.loads"])
      assert.equal("1", stats(srv)["redis.topics"])
      back:close()
    end)

    it("reads the same from a Lua loop as from the C pump", function()
      local start = publish(srv, "loop", "start")
      local s = srv:open("/loop/loop", { headers = { ["Last-Event-ID"] = start } })
      local ids = {}
      for i = 1, 3 do ids["l" .. i] = publish(srv, "loop", "l" .. i) end
      assert.same(after(ids), W.events(s, 3))
      s:close()
    end)
  end)

  describe("Redis restarted empty", function()
    it("gives a reconnecting client with an old id a rill-gap, and a live one too", function()
      local rr = redis.start {}
      local srv = single(rr)
      local start = publish(srv, "gone", "start")
      local live = srv:open("/events/gone", { headers = { ["Last-Event-ID"] = start } })
      local old = publish(srv, "gone", "g1")
      assert.same({ old .. " g1" }, W.events(live, 1))
      rr:kill()
      rr:restart() -- no persistence: the stream is gone
      assert(srv:wait_log("connected again", T), srv:log())
      local ev = next_event(live) -- still connected: told it may have missed events
      assert.equal("rill-gap", ev.event)
      local new = publish(srv, "gone", "g2")
      assert.same({ new .. " g2" }, W.events(live, 1))
      local back = srv:open("/events/gone", { headers = { ["Last-Event-ID"] = old } })
      ev = next_event(back)
      assert.equal("rill-gap", ev.event)
      assert.same({ new .. " g2" }, W.events(back, 1))
      back:close()
      live:close()
      stop_clean(srv)
      rr:kill()
    end)
  end)

  describe("Redis killed and restarted with its data", function()
    it("refuses publishes meanwhile, keeps the subscribers, and gives them every event once, in order", function()
      local rr = redis.start { appendonly = true }
      local srv = single(rr)
      local start = publish(srv, "crash", "start")
      local subs = {}
      for i = 1, 3 do
        subs[i] = srv:open(i == 3 and "/loop/crash" or "/events/crash", { headers = { ["Last-Event-ID"] = start } })
      end
      local ids = {}
      for i = 1, 50 do ids["a" .. i] = publish(srv, "crash", "a" .. i) end
      rr:kill()
      eventually(function()
        local res = post(srv, "/pub/crash", "while down")
        assert.equal(409, res.status, res.body)
        return res.body:find("unavailable", 1, true) ~= nil
      end, "publishes to be refused as unavailable")
      local res = post(srv, "/pub/crash", "while down")
      assert.matches("n=3\nnil\nredis unavailable: [^\n]+\nunavailable", res.body)
      rr:restart()
      assert(srv:wait_log("connected again", T), srv:log())
      for i = 1, 50 do ids["b" .. i] = publish(srv, "crash", "b" .. i) end
      local want = after(ids)
      for i, s in ipairs(subs) do
        local got = W.events(s, 100)
        check_order(got, ids)
        assert.same(want, got, "subscriber " .. i)
        s:close()
      end
      rr:kill() -- and a stop while it reconnects to nothing
      assert(srv:wait_log("unavailable", T), srv:log())
      stop_clean(srv)
    end)
  end)

  describe("a reader whose connection stops answering", function()
    it("is detected by the watchdog and reconnected, and its subscribers miss nothing", function()
      local proxy = redis.stall_proxy(r.port)
      local srv = test.server(APP, { args = { "--hub", "redis://127.0.0.1:" .. proxy.port, "--hub-prefix", "spec:" }, timeout = T })
      local ok, err = pcall(function()
        local start = publish(srv, "stall", "start")
        local s = srv:open("/events/stall", { headers = { ["Last-Event-ID"] = start } })
        local ids = { s1 = publish(srv, "stall", "s1") }
        assert.same(after(ids), W.events(s, 1))
        proxy:stall() -- both connections half-open: no FIN, no RST, no reply
        assert(srv:wait_log("unavailable", T), srv:log())
        assert(srv:wait_log("connected again", T), srv:log())
        ids.s2 = publish(srv, "stall", "s2")
        assert.same({ ids.s2 .. " s2" }, W.events(s, 1))
        s:close()
      end)
      if ok then ok, err = pcall(stop_clean, srv) end
      srv:stop("KILL")
      proxy:kill()
      assert(ok, err)
    end)
  end)

  describe("Redis busy (a script that does not end)", function()
    it("answers publishes unavailable, retries a load until Redis serves again, and then delivers", function()
      local rr = redis.start {}
      local srv = single(rr)
      local start = publish(srv, "busy", "start")
      assert.equal("OK", rr:command("CONFIG", "SET", "busy-reply-threshold", "100"))
      local blocker = assert(socket.connect("127.0.0.1", rr.port))
      local ok, err = pcall(function()
        -- a script that runs until SCRIPT KILL: past 100 ms every other client gets -BUSY
        assert(blocker:send("*3\r\n$4\r\nEVAL\r\n$14\r\nwhile 1 do end\r\n$1\r\n0\r\n"))
        local expected = {} -- a publish Redis took before the script began is an event like any
        eventually(function()
          local res = post(srv, "/pub/busy", "x")
          if res.status == 200 then expected[#expected + 1] = res.body:match("^%S+") .. " x" end
          return res.status == 409 and res.body:find("redis unavailable: [^\n]*BUSY") ~= nil
            and res.body:find("\nunavailable$") ~= nil
        end, "a publish to be refused as unavailable (BUSY)")
        -- a new subscriber's load meets BUSY too: it waits, and is read once Redis serves
        local s = srv:open("/events/busy", { headers = { ["Last-Event-ID"] = start } })
        assert(srv:wait_log("BUSY", T), srv:log())
        assert.equal("OK", rr:command("SCRIPT", "KILL"))
        local id
        eventually(function()
          local res = post(srv, "/pub/busy", "y")
          id = res.status == 200 and res.body:match("^%S+")
          return id
        end, "a publish to succeed again")
        expected[#expected + 1] = id .. " y"
        assert.same(expected, W.events(s, #expected))
        s:close()
      end)
      blocker:close()
      stop_clean(srv)
      rr:kill()
      assert(ok, err)
    end)
  end)

  describe("Redis with a user and a password (ACL)", function()
    it("connects as that user, and with a wrong password says why and refuses publishes", function()
      local rr = redis.start {}
      assert.equal("OK", rr:command("ACL", "SETUSER", "alice", "on", ">s3cr:t", "~*", "&*", "+@all"))
      local srv = test.server(APP, { args = { "--hub", ("redis://alice:s3cr%%3At@127.0.0.1:%d/0"):format(rr.port) }, timeout = T })
      local id = publish(srv, "acl", "hello")
      assert(sid(id), id)
      local clients = rr:command("CLIENT", "LIST")
      assert.matches("user=alice", clients, 1, true)
      stop_clean(srv)
      local bad = test.server(APP, { args = { "--hub", ("redis://alice:wrong@127.0.0.1:%d"):format(rr.port) }, timeout = T })
      assert(bad:wait_log("refused rill: WRONGPASS", T), bad:log())
      local res = post(bad, "/pub/acl", "x")
      assert.equal(409, res.status)
      assert.matches("unavailable", res.body, 1, true)
      stop_clean(bad)
      rr:kill()
    end)
  end)

  describe("Redis not there at start", function()
    it("starts anyway, refuses publishes as unavailable, and connects once Redis is up", function()
      local rr = redis.start {}
      rr:kill()
      local srv = single(rr)
      local res = post(srv, "/pub/late", "x")
      assert.equal(409, res.status)
      assert.matches("unavailable", res.body, 1, true)
      assert.equal("false", stats(srv)["redis.connected"])
      local s = srv:open("/events/late") -- waits (heartbeats go on) until Redis is there
      rr:restart()
      assert(srv:wait_log("connected", T), srv:log())
      local id
      eventually(function()
        local p = post(srv, "/pub/late", "y")
        id = p.status == 200 and p.body:match("^%S+")
        return id
      end, "a publish to succeed")
      assert.same({ id .. " y" }, W.events(s, 1))
      s:close()
      stop_clean(srv)
      rr:kill()
    end)
  end)
end)

describe("rill --hub", function()
  local function rill(...)
    local argv = {}
    for word in test.bin:gmatch("%S+") do argv[#argv + 1] = word end
    for _, a in ipairs({ ... }) do argv[#argv + 1] = a end
    local proc <close> = core.spawn(argv)
    local status = proc:wait(T)
    return status, proc:log()
  end

  it("refuses rediss:// with a reason, and exits 2", function()
    local status, err = rill(APP, "--hub", "rediss://127.0.0.1:6380")
    assert.equal(2, status)
    assert.matches("rediss:// (TLS) is not supported", err, 1, true)
  end)

  it("refuses what is not a redis:// URL, naming it", function()
    for _, url in ipairs({ "http://127.0.0.1:6379", "redis://", "redis://h:0", "redis://h:70000", "redis://h:1/x", "redis://h:1/2/3" }) do
      local status, err = rill(APP, "--hub", url)
      assert.equal(2, status, url)
      assert.matches("--hub: ", err, 1, true)
      assert.matches(url, err, 1, true)
    end
  end)
end)
